"""Where the study reads and writes. Every location can be moved with an environment variable,
so tests and nbval write to a scratch folder instead of the committed ``reports/``."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _dir(env: str, default: Path) -> Path:
    p = Path(os.environ.get(env, default)).expanduser()
    if not p.is_absolute():
        p = REPO_ROOT / p
    p.mkdir(parents=True, exist_ok=True)
    return p


def reports_dir() -> Path:
    """Root of everything a run produces (``UNETQ_REPORTS_DIR``, default ``<repo>/reports``)."""
    return _dir("UNETQ_REPORTS_DIR", REPO_ROOT / "reports")


def results_dir() -> Path:
    """Tidy result tables (CSV) written by the notebooks."""
    return _dir("UNETQ_RESULTS_DIR", reports_dir() / "results")


def figures_dir() -> Path:
    return _dir("UNETQ_FIGURES_DIR", reports_dir() / "figures")


def checkpoints_dir() -> Path:
    """Trained weights (not committed)."""
    return _dir("UNETQ_CHECKPOINTS_DIR", reports_dir() / "checkpoints")


def models_dir() -> Path:
    """Exported ONNX / quantized / packed models (not committed)."""
    return _dir("UNETQ_MODELS_DIR", reports_dir() / "models")


def data_dir() -> Path:
    """Generated datasets and caches (``UNETQ_DATA_DIR``, default ``<repo>/data``; not committed)."""
    return _dir("UNETQ_DATA_DIR", REPO_ROOT / "data")
