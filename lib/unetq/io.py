"""Atomic writes (temp file + rename, so a killed run never leaves a half-written result) and a
description of the machine that every results row carries."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600 files; give results the usual permissions (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **kw) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=kw.pop("index", False), **kw)
    return Path(path)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
    return Path(path)


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def upsert_csv(df: pd.DataFrame, path: str | os.PathLike, key: list[str]) -> pd.DataFrame:
    """Merge ``df`` into the table at ``path``: rows whose ``key`` columns match are replaced,
    the others kept. Written atomically; returns the merged table."""
    path = Path(path)
    if path.exists():
        old = pd.read_csv(path)
        if set(key) <= set(old.columns):
            keys_new = set(map(tuple, df[key].astype(str).values))
            keep = [tuple(r) not in keys_new for r in old[key].astype(str).values]
            df = pd.concat([old[keep], df], ignore_index=True)
    write_csv(df, path)
    return df


def machine_info() -> dict:
    """CPU model, core count, GPU (if any) and library versions, for every results row."""
    import torch

    info = {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    for mod in ("onnxruntime", "onnx", "numba", "tensorrt"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed here
            info[mod] = "not installed"
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
