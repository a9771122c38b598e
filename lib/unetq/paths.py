"""Where the study reads and writes. Every location can be moved with an environment variable,
so tests and nbval write to a scratch folder instead of the committed ``reports/``.

Two roots: :func:`published_dir` is the committed report (``reports/``), which only the main
job (``make all``, ``python -m unetq.cli.pipeline``) and the learning-rate sweep it relies on
write, by setting ``UNETQ_REPORTS_DIR`` to it (:func:`publish`). Everything else, a notebook
opened in JupyterLab or one configuration of a sweep, writes into its own run folder,
:func:`reports_dir` (default ``reports/runs/interactive``; a sweep gives each configuration
``reports/runs/sweeps/<notebook>/<configuration>``), and reads the committed tables beneath its
own rows (``unetq.results.read``), so an interactive run sees the committed study without ever
changing it. Trained weights and exported models are a cache shared by every run
(:func:`checkpoints_dir`, :func:`models_dir`): their names say what produced them."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class UnwritableFolder(OSError):
    """A folder the study must write to cannot be created or written; the message names it."""


def writable(folder: str | os.PathLike, env: str | None = None) -> Path:
    """``folder``, created if missing, after checking a file can be written in it; otherwise
    :class:`UnwritableFolder` in one line naming the folder, the reason and (``env``) the
    environment variable that moves it."""
    p = Path(folder)
    hint = f"; set {env} to a writable folder" if env else ""
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UnwritableFolder(f"cannot write to the folder {p}: {e.strerror or e}{hint}") from None
    return p


def _dir(env: str, default: Path) -> Path:
    p = Path(os.environ.get(env, default)).expanduser()
    if not p.is_absolute():
        p = REPO_ROOT / p
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UnwritableFolder(f"cannot create the folder {p}: {e.strerror or e}; set {env} to a writable folder") from None
    return p


def published_dir() -> Path:
    """The committed report (``UNETQ_PUBLISHED_DIR``, default ``<repo>/reports``)."""
    return _dir("UNETQ_PUBLISHED_DIR", REPO_ROOT / "reports")


def runs_dir() -> Path:
    """Run folders of interactive sessions and sweeps (``reports/runs``, not committed)."""
    return published_dir() / "runs"


def reports_dir() -> Path:
    """Root of everything this run writes (``UNETQ_REPORTS_DIR``; default
    ``reports/runs/interactive``, the main job sets it to :func:`published_dir`)."""
    return _dir("UNETQ_REPORTS_DIR", runs_dir() / "interactive")


def is_published() -> bool:
    """Whether this run writes the committed report."""
    return reports_dir().resolve() == published_dir().resolve()


def publish() -> Path:
    """Make this process (and the notebook kernels it starts) write the committed report, unless
    ``UNETQ_REPORTS_DIR`` already names a folder (tests, a user's choice); returns the folder."""
    os.environ.setdefault("UNETQ_REPORTS_DIR", str(published_dir()))
    return reports_dir()


def _cache_root() -> Path:
    # Weights and exported models are shared by every run folder; only an explicit
    # UNETQ_REPORTS_DIR (tests, a scratch study) keeps its own cache.
    return Path(os.environ["UNETQ_REPORTS_DIR"]) if os.environ.get("UNETQ_REPORTS_DIR") else published_dir()


def results_dir() -> Path:
    """Tidy result tables (CSV) written by the notebooks."""
    return _dir("UNETQ_RESULTS_DIR", reports_dir() / "results")


def figures_dir() -> Path:
    return _dir("UNETQ_FIGURES_DIR", reports_dir() / "figures")


def checkpoints_dir() -> Path:
    """Trained weights (not committed)."""
    return _dir("UNETQ_CHECKPOINTS_DIR", _cache_root() / "checkpoints")


def models_dir() -> Path:
    """Exported ONNX / quantized / packed models (not committed)."""
    return _dir("UNETQ_MODELS_DIR", _cache_root() / "models")


def data_dir() -> Path:
    """Generated datasets and caches (``UNETQ_DATA_DIR``, default ``<repo>/data``; not committed)."""
    return _dir("UNETQ_DATA_DIR", REPO_ROOT / "data")
