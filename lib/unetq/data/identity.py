"""Which dataset a run used: a short, stable identity (layout name + content hash) that goes
into every results row, checkpoint name and figure name, so runs on different data never mix."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from ..config import StudyConfig
from .layouts import detect_layout, find_samples
from .synthetic import GENERATOR_VERSION

#: The identity of the built-in generator's data: the generator version is part of it, so rows
#: of an older generator (``"synthetic"``, before versions were recorded) never mix with new ones.
SYNTHETIC = f"synthetic-v{GENERATOR_VERSION}"


def is_synthetic(source) -> bool:
    """Whether ``source`` names the built-in generator (``None`` or ``"synthetic"``)."""
    return source is None or str(source) == "synthetic"


@functools.lru_cache(maxsize=64)
def _identity(root: str, mtime_ns: int) -> str:
    layout = detect_layout(root)
    h = hashlib.sha1()
    for s in sorted(find_samples(root, layout=layout), key=lambda s: s.id):
        for p in (s.image, *s.masks):
            h.update(str(Path(p).relative_to(root)).encode())
            h.update(str(Path(p).stat().st_size).encode())
    return f"{layout}-{h.hexdigest()[:8]}"


def dataset_identity(source) -> str:
    """:data:`SYNTHETIC` (``"synthetic-v<generator version>"``) for the built-in generator; for a
    real dataset folder
    ``"<layout>-<8 hex digits>"``: the detected layout and a hash of every image and mask file's
    relative path and size (the same files in another folder give the same identity; one changed
    file gives another)."""
    if is_synthetic(source):
        return SYNTHETIC
    root = Path(source).expanduser().resolve()
    return _identity(str(root), root.stat().st_mtime_ns)


def run_tag(cfg: StudyConfig) -> str:
    """``<preset>`` on the built-in data, ``<preset>_<dataset identity>`` on a real dataset: the
    part of file and folder names that keeps runs on different data apart."""
    ds = dataset_identity(cfg.source)
    return cfg.preset if ds == SYNTHETIC else f"{cfg.preset}_{ds}"


def run_columns(cfg: StudyConfig) -> dict:
    """The columns that say which run a results row belongs to: ``preset`` and ``dataset``."""
    return dict(preset=cfg.preset, dataset=dataset_identity(cfg.source))
