"""Atomic writes: every file the study writes (tables, JSON, checkpoints, exported models) goes
through a temporary file next to its destination and a rename, so a killed run never leaves a
half-written result.

Temporary files are named ``.<name>.<pid>-<random>.tmp``. A process killed mid-write (SIGKILL,
power loss) leaves its temporary file behind; the next write of the same target removes such
stale files (:func:`clean_stale_temps`): only those of that exact target, older than the current
process and written by a process that is no longer running (or, for names without a pid, by the
older naming scheme, older than the current process).

:func:`locked` serialises read-modify-write updates of one file across processes (two sweeps
that upsert rows into the same results table at the same moment would otherwise each rename
their own merge over the file, and the rows of the first would be lost)."""
from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import psutil


def _process_start() -> float:
    try:
        return psutil.Process().create_time()
    except psutil.Error:  # pragma: no cover - no process table: only files older than now
        return float("inf")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        return psutil.pid_exists(pid)
    except psutil.Error:  # pragma: no cover - unknown: keep the file
        return True


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left next to ``path`` when a writer was
    killed; returns the removed paths. A file is removed only when its name is a temporary of
    exactly this target, its modification time is older than the start of the current process,
    and the process whose pid its name holds is not running (names of the older scheme, without a
    pid, only need to be older than the current process). Files that vanish meanwhile (another
    process cleaning) or cannot be removed are left alone."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = re.escape(path.name)
    with_pid = re.compile(rf"\.{name}\.(\d+)-[a-z0-9_]+\.tmp")
    legacy = re.compile(rf"\.{name}\.[a-z0-9_]{{8}}\.tmp")
    started = _process_start()
    removed = []
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        m = with_pid.fullmatch(p.name)
        if m is None and not legacy.fullmatch(p.name):
            continue
        try:
            if p.stat().st_mtime >= started or (m is not None and _pid_alive(int(m.group(1)))):
                continue
            p.unlink()
        except OSError:
            continue
        removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``. Stale
    temporary files of ``path`` from killed writers are removed first (:func:`clean_stale_temps`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
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


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``.<name>.lock`` next to ``path`` while the
    block runs: other processes entering :func:`locked` for the same path wait. The lock file is
    left in place (removing it would race with a waiter that already opened it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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
