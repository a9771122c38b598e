"""What every study's figures share: saving a figure (atomically, into ``figures_dir()``), showing
one as an image, and the colours of the error map (one table, so every legend matches what is
drawn)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from IPython.display import Image

from .. import paths
from ..config import StudyConfig
from ..data import SYNTHETIC, dataset_identity
from ..io import atomic_path
from ..metrics import ERROR_CLASSES

#: Colour of each class of :func:`unetq.metrics.error_classes` (0 true negative, 1 true positive,
#: 2 false positive, 3 false negative): every error map and every legend use this table.
ERROR_COLOURS = {"true negative": "#000000", "true positive": "#ffffff",
                 "false positive": "#e4572e", "false negative": "#29a8ff"}
assert tuple(ERROR_COLOURS) == ERROR_CLASSES


def error_image(classes) -> np.ndarray:
    """An error-class map (``unetq.metrics.error_classes``) as ``uint8 [H, W, 3]`` RGB in
    :data:`ERROR_COLOURS`."""
    classes = np.asarray(classes)
    lut = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in ERROR_COLOURS.values()], np.uint8)
    return lut[classes]


def figure_name(name: str, cfg: StudyConfig | None = None) -> str:
    """``name`` on the built-in data; ``<stem>_<dataset identity>.png`` for a run on a real
    dataset, so figures of different data never overwrite each other."""
    ds = dataset_identity(cfg.source) if cfg is not None else SYNTHETIC
    if ds == SYNTHETIC:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}_{ds}.{ext}" if dot else f"{name}_{ds}"


def save_figure(fig, name: str, cfg: StudyConfig | None = None, folder: str | os.PathLike | None = None) -> Path:
    """Save ``fig`` atomically as ``folder/figure_name(name, cfg)`` (PNG; default folder
    ``paths.figures_dir()``)."""
    path = Path(folder or paths.figures_dir()) / figure_name(name, cfg)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def figure_image(fig, dpi: int = 85) -> Image:
    """A matplotlib figure as an IPython PNG image (displays the same with or without pyplot's
    inline backend, and in nbconvert's HTML)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return Image(data=buf.getvalue(), format="png")


def to_hw(a: np.ndarray) -> np.ndarray:
    """[C, H, W] or [H, W] -> [H, W] (first channel) or [H, W, 3] for an RGB image."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.clip(np.transpose(a, (1, 2, 0)), 0, 1)
    if a.ndim == 3:
        return a[0]
    if a.ndim == 2:
        return a
    raise ValueError(f"expected an image [C, H, W] or [H, W], got shape {a.shape}")


