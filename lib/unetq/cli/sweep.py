"""Run one notebook over a parameter grid with papermill.

Command line::

    python -m unetq.cli.sweep 02_unet -p lr 1e-1 1e-2 1e-3 -p width 8 16 --preset quick

runs ``notebooks/02_unet.ipynb`` once per point of the grid (here 3 x 2 = 6 runs, in the order
given), passing ``preset`` and the grid values as papermill parameters. ``NOTEBOOK`` is a path, a
file name, a stem (``02_unet``) or just its number (``02``).

- **Outputs** are named by their parameters:
  ``reports/runs/sweeps/<nb>/<nb>__lr=0.01__width=16.ipynb`` (values written as Python writes
  them, so ``1e-2`` becomes ``0.01`` and ``1e-5`` becomes ``1e-05``; ``--out`` moves the folder).
- **Each configuration has its own run folder** ``<out>/<nb>__preset=quick__lr=0.01__width=16/``
  holding its result tables and figures; it reads the committed tables beneath its own rows
  (``unetq.paths``), so a sweep never changes the committed ``reports/``. Trained weights go to
  the shared cache, named by what trained them.
- **The summary** ``<out>/sweep.csv`` gets each configuration's row as soon as it ends:
  parameters, status, seconds, output, its run folder and headline metrics (mean test Dice, IoU,
  loss, epochs trained of the runs it trained, ...). Rows are upserted by parameters compared by
  value, so re-runs and other sweeps into the same folder keep every other row; a configuration
  skipped as already done keeps the row of the run that did the work.
- **Progress**: a line per running cell (which cell, time so far, kernel CPU use, last output
  line) every minute. A notebook is stopped only when its kernel *stalls* (no CPU use and no
  output for ``--stall-minutes``), never because it is slow.
- **Re-running skips configurations already done**: a configuration is done when its output
  notebook exists, papermill recorded no exception and an end time in it, and the parameters it
  recorded (preset included) are the requested ones. Outputs are written under a temporary name
  and renamed when the run ends, so a killed run never looks done. Failed runs are kept (with
  papermill's error marker) and are run again next time. ``--force`` re-runs everything.
- **On Ray** (``--ray`` for a local instance, ``--ray ADDRESS`` to join a cluster whose nodes share
  this file system; ``--ray-cpus``/``--ray-gpus`` per task): each configuration is one Ray task
  (one papermill execution in its own run folder), with the same skipping, per-configuration
  summary rows (written here as tasks finish) and failure reporting. Ray is the optional
  ``cluster`` extra.
- A failed configuration does not stop the sweep; the command exits with status 1 and names the
  failed configurations (notebook, cell and exception) at the end.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import nbformat
import pandas as pd
import papermill as pm
import psutil
from papermill.exceptions import PapermillExecutionError
from tqdm.auto import tqdm

from .. import paths, results
from ..machine import long_job_env
from ..paths import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def parse_value(text: str) -> Any:
    """A command-line value as Python: ``"8"`` -> 8, ``"1e-2"`` -> 0.01, ``"True"`` -> True,
    ``"None"`` -> None, anything else stays a string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def format_value(v: Any) -> str:
    """A parameter value as it appears in a file name (``0.01``, ``1e-05``, ``16``, ``adam``)."""
    s = repr(v) if isinstance(v, float) else str(v)
    return re.sub(r"[^A-Za-z0-9.+\-]+", "-", s).strip("-") or "empty"


def resolve_notebook(name: str | os.PathLike, notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> Path:
    """``notebooks/NN_name.ipynb`` from a path, file name, stem or the number ``NN``."""
    p = Path(name)
    if p.suffix == ".ipynb" and p.exists():
        return p
    d = Path(notebooks_dir)
    stem = p.name[:-6] if p.name.endswith(".ipynb") else p.name
    exact = d / f"{stem}.ipynb"
    if exact.exists():
        return exact
    hits = sorted(d.glob(f"{stem}_*.ipynb")) if re.fullmatch(r"\d+", stem) else []
    if len(hits) == 1:
        return hits[0]
    raise FileNotFoundError(
        f"notebook {str(name)!r} not found in {d} "
        f"(have: {', '.join(q.name for q in sorted(d.glob('*.ipynb'))) or 'none'})")


def grid(params: Mapping[str, Sequence[Any]]) -> list[dict]:
    """Every combination of ``params`` (name -> values), in the order given."""
    names = list(params)
    for n in names:
        if not list(params[n]):
            raise ValueError(f"sweep parameter {n!r} has no values")
    return [dict(zip(names, combo)) for combo in itertools.product(*(params[n] for n in names))]


def output_name(stem: str, point: Mapping[str, Any]) -> str:
    """``<stem>__lr=0.01__width=16.ipynb``."""
    parts = [f"{k}={format_value(v)}" for k, v in point.items()]
    return "__".join([stem, *parts]) + ".ipynb"


def _recorded(nb) -> dict:
    return dict(nb.metadata.get("papermill", {}) or {})


def is_done(path: str | os.PathLike, parameters: Mapping[str, Any] | None = None) -> bool:
    """Whether ``path`` is a completed papermill output with no exception (and, when
    ``parameters`` is given, run with those parameters)."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:
        return False
    pm = _recorded(nb)
    if not pm or pm.get("exception") or not pm.get("end_time"):
        return False
    if any(c.get("metadata", {}).get("papermill", {}).get("exception") for c in nb.cells):
        return False
    if parameters is not None:
        rec = {k: format_value(v) for k, v in (pm.get("parameters") or {}).items()}
        if any(rec.get(k) != format_value(v) for k, v in parameters.items()):
            return False
    return True


@dataclass
class RunResult:
    """One papermill execution: what ran, how it ended and where its output is."""

    notebook: str
    output: str
    parameters: dict = field(default_factory=dict)
    status: str = "not run"  # ok | failed | skipped (already done) | not run
    seconds: float = 0.0
    error: str = ""
    cell_index: int | None = None
    exec_count: int | None = None
    cell_source: str = ""

    def describe(self) -> str:
        if self.status != "failed":
            return f"{self.notebook}: {self.status}"
        where = f"cell {self.cell_index}" if self.cell_index is not None else "startup"
        if self.exec_count is not None:
            where += f" (In [{self.exec_count}])"
        src = self.cell_source.strip().splitlines()
        first = f" `{src[0][:80]}`" if src else ""
        return f"{self.notebook} failed at {where}{first}: {self.error}"


class UnknownParameter(ValueError):
    """A parameter passed to a notebook that its ``parameters`` cell does not declare."""


def check_parameters(notebook: str | os.PathLike, parameters: Mapping[str, Any]) -> None:
    """:class:`UnknownParameter` naming the notebook, the unknown names and the declared ones
    when ``parameters`` holds a name the notebook's ``parameters`` cell does not assign
    (papermill would only log a warning and run with its default)."""
    declared = pm.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise UnknownParameter(f"{Path(notebook).name} has no parameter {', '.join(map(repr, unknown))}; "
                               f"its parameters are {', '.join(declared) or 'none'}")


#: A notebook whose kernel used no CPU and wrote no output for this long is stalled (seconds).
STALL_S = 600.0


class Liveness:
    """Watches one running notebook from a thread: the CPU time of its kernel (and the kernel's
    children, e.g. data-loader workers) and the partial output file papermill rewrites whenever a
    cell's output changes. A kernel that neither used CPU nor wrote output for ``stall_s``
    seconds is stalled: its threads' stacks are written to its stderr (:meth:`_dump_stacks`), it
    is killed (so papermill stops) and :attr:`stalled` says why. A slow
    kernel that works is never stopped, however long it takes. Every ``report_s`` seconds (and
    when the running cell changes) ``report(line)`` gets a progress line: the cell, how long it
    has run, the kernel's CPU use and its last line of text output."""

    def __init__(self, name: str, partial: Path, stall_s: float = STALL_S, interval_s: float = 5.0,
                 report=None, report_s: float = 60.0, min_cpu_s: float = 0.05):
        self.name, self.partial, self.stall_s, self.interval_s = name, Path(partial), float(stall_s), interval_s
        self.report, self.report_s, self.min_cpu_s = report, report_s, min_cpu_s
        self.stalled = ""
        self.stalled_cell: tuple[int | None, str] = (None, "")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"liveness {name}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _kernels() -> list:
        me = psutil.Process()
        out = []
        for p in me.children(recursive=False):
            try:
                if "ipykernel" in " ".join(p.cmdline()):
                    out += [p, *p.children(recursive=True)]
            except psutil.Error:
                pass
        return out

    @classmethod
    def _cpu(cls) -> float:
        total = 0.0
        for p in cls._kernels():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _dump_stacks(self, wait_s: float = 3.0) -> None:
        """Before a stalled kernel is killed: SIGABRT to it, so that Python's fault handler
        (``PYTHONFAULTHANDLER``, set for every kernel :func:`execute` starts) writes every thread's
        stack to the kernel's stderr (the job's log): where it waited, for the next diagnosis."""
        for p in self._kernels():
            try:
                if "ipykernel" in " ".join(p.cmdline()):
                    p.send_signal(signal.SIGABRT)
            except psutil.Error:
                pass
        time.sleep(wait_s)

    def _cell(self) -> tuple[int | None, int, str, str]:
        """``(index, cells, first source line, last output line)`` of the running cell."""
        i, n, c = _running_cell(self.partial)
        if c is None:
            return None, n, "", ""
        src = next((ln for ln in c.source.splitlines() if ln.strip() and not ln.startswith("#")), "")
        text = "".join(o.get("text", "") for o in c.get("outputs", []) if o.get("output_type") == "stream")
        last = next((ln for ln in reversed(re.split(r"[\r\n]+", text)) if ln.strip()), "")
        return i, n, src.strip()[:60], last.strip()[:100]

    def _watch(self) -> None:
        t0 = last_alive = last_report = time.monotonic()
        cpu0 = last_cpu = self._cpu()
        last_mtime, last_cell = None, None
        while not self._stop.wait(self.interval_s):
            now, cpu = time.monotonic(), self._cpu()
            mtime = self.partial.stat().st_mtime if self.partial.exists() else None
            if cpu - last_cpu >= self.min_cpu_s or mtime != last_mtime:
                last_alive = now
            last_cpu, changed, last_mtime = cpu, mtime != last_mtime, mtime
            if now - last_alive > self.stall_s:
                i, _, c = _running_cell(self.partial)
                self.stalled_cell = (i, c.source if c is not None else "")
                self.stalled = (f"stalled: the kernel used no CPU and wrote no output for "
                                f"{now - last_alive:.0f} s (limit {self.stall_s:.0f} s)")
                self._dump_stacks()
                for p in self._kernels():
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                return
            if self.report is not None and (changed or now - last_report >= self.report_s):
                idx, n, src, last = self._cell() if mtime is not None else (None, 0, "", "")
                if idx != last_cell or now - last_report >= self.report_s:
                    last_cell, last_report = idx, now
                    where = f"cell {idx + 1}/{n} `{src}`" if idx is not None else "starting"
                    busy = 100 * (cpu - cpu0) / max(now - t0, 1e-9)
                    self.report(f"  {self.name}: {where}, {_minutes(now - t0)} so far, kernel CPU "
                                f"{busy:.0f}% on average" + (f" | {last}" if last else ""))


def _minutes(s: float) -> str:
    return f"{int(s // 60)} min {int(s % 60):02d} s" if s >= 60 else f"{s:.0f} s"


@contextlib.contextmanager
def environment(values: Mapping[str, str] | None):
    """``os.environ`` with ``values`` set (inherited by the kernels started inside), restored after."""
    values = dict(values or {})
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(input_path: str | os.PathLike, output_path: str | os.PathLike, parameters: Mapping | None = None,
            kernel_name: str = "python3", cwd: str | os.PathLike | None = None,
            log_output: bool = False, cell_timeout_s: float | None = None, stall_s: float | None = STALL_S,
            report=None, env: Mapping[str, str] | None = None) -> RunResult:
    """Run one notebook with papermill into ``output_path`` (written under a temporary name and
    renamed at the end, whether it failed or not). Never raises for errors inside the notebook:
    the returned :class:`RunResult` says which cell failed and why. A kernel that uses no CPU and
    writes no output for ``stall_s`` seconds is stopped (:class:`Liveness`; None: never);
    ``cell_timeout_s`` (default None) is an optional hard limit per cell. ``report(line)``
    receives progress lines while it runs; ``env`` is set for the kernel, on top of
    :func:`unetq.machine.long_job_env` (passive OpenMP waiting, so a busy machine slows the job
    down instead of stalling it)."""
    input_path, output_path = Path(input_path), Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.stem}.partial.ipynb")
    res = RunResult(notebook=input_path.name, output=str(output_path), parameters=dict(parameters or {}))
    t0 = time.perf_counter()
    try:
        check_parameters(input_path, parameters or {})
    except UnknownParameter as e:
        res.status, res.error = "failed", f"UnknownParameter: {e}"
        return res
    watch = Liveness(input_path.stem, tmp, stall_s or float("inf"), report=report)
    try:
        with environment({"PYTHONFAULTHANDLER": "1", **long_job_env(env)}), watch:
            pm.execute_notebook(
                str(input_path), str(tmp), parameters=dict(parameters or {}), kernel_name=kernel_name,
                cwd=str(cwd or input_path.parent), progress_bar=False, log_output=log_output,
                execution_timeout=int(cell_timeout_s) if cell_timeout_s else None,
            )
        res.status = "ok"
    except PapermillExecutionError as e:
        res.status = "failed"
        res.error = f"{e.ename}: {e.evalue}"
        res.cell_index, res.exec_count, res.cell_source = e.cell_index, e.exec_count, e.source or ""
    except Exception as e:  # kernel died, bad notebook file, missing kernel...
        res.status = "failed"
        res.error = f"{type(e).__name__}: {e}"
    if watch.stalled:
        res.status, res.error = "failed", f"{watch.stalled}, so it was stopped"
        if res.cell_index is None:
            res.cell_index, res.cell_source = watch.stalled_cell
    res.seconds = time.perf_counter() - t0
    if tmp.exists():
        os.replace(tmp, output_path)
    return res


def _running_cell(path: Path) -> tuple[int | None, int, Any]:
    """``(index, number of cells, cell)`` of the cell papermill marks as running in the (partial)
    output notebook ``path``; ``(None, n, None)`` when none runs or the file cannot be read."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:
        return None, 0, None
    for i, c in enumerate(nb.cells):
        if c.get("metadata", {}).get("papermill", {}).get("status") == "running":
            return i, len(nb.cells), c
    return None, len(nb.cells), None


#: Headline columns of the tables a configuration wrote, averaged into its summary row.
HEADLINE = {"training": ("test_dice", "test_iou", "test_loss", "val_loss", "epochs_trained", "train_time_s"),
            "accuracy_by_format": ("dice", "iou"), "mbu_accuracy": ("dice", "iou")}


def headline(results_root: str | os.PathLike) -> dict:
    """The headline metrics of one configuration's own result tables (``HEADLINE``; the mean over
    its rows, e.g. over training seeds, with ``<table>_rows``); ``{}`` when it wrote none."""
    out: dict = {}
    for stem, cols in HEADLINE.items():
        p = Path(results_root) / f"{stem}.csv"
        if not p.exists():
            continue
        try:
            df = pd.read_csv(p)
        except Exception:
            continue
        out[f"{stem}_rows"] = len(df)
        for c in cols:
            if c in df:
                v = pd.to_numeric(df[c], errors="coerce").mean()
                out[c if stem == "training" else f"{stem}_{c}"] = round(float(v), 5) if pd.notna(v) else None
    return out


def _summary_table(point_names: Iterable[str]) -> results.Table:
    return results.Table("sweep", {f"param_{k}": "str" for k in point_names})


def _summary_row(r: RunResult, run_root: Path) -> dict:
    return dict({f"param_{k}": format_value(v) for k, v in r.parameters.items()},
                status=r.status, seconds=round(r.seconds, 2), output=Path(r.output).name,
                results=str(run_root), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                error=r.describe() if r.status == "failed" else "", **headline(run_root / "results"))


def _recorded_seconds(path: Path) -> float:
    try:
        return float(_recorded(nbformat.read(path, as_version=4)).get("duration") or 0.0)
    except Exception:
        return 0.0


def _run_config(nb: str, target: str, full: dict, kernel_name: str, stall_s, env: dict) -> RunResult:
    """One configuration, in whatever process runs it (this one, or a Ray worker)."""
    return execute(nb, target, full, kernel_name=kernel_name, stall_s=stall_s, env=env)


#: Tries to start a local Ray instance: Ray gives its raylet a fixed 30 s to register, which a
#: 2-core machine under other load can miss (seen in CI beside two training jobs).
RAY_START_ATTEMPTS = 3


def start_ray(address: str | None = None, num_cpus: int | None = None):
    """Join the Ray cluster at ``address`` (``"auto"``: the one this machine belongs to), or
    start a local Ray instance (``address`` None or ``"local"``, with ``num_cpus``). Ray is an
    optional extra (``pip install -e .[cluster]``); without it a clear error says so."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs Ray: pip install -e '.[cluster]' (or pip install ray)") from None
    if not ray.is_initialized():
        if address in (None, "local"):
            for attempt in range(1, RAY_START_ATTEMPTS + 1):
                try:
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
                    break
                except Exception as e:  # noqa: BLE001 -- only Ray's start-up timeout is retried
                    if "timed out during startup" not in str(e) or attempt == RAY_START_ATTEMPTS:
                        raise
                    ray.shutdown()  # a busy machine: Ray waits 30 s (fixed) for its raylet; try again
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def run_sweep(notebook: str | os.PathLike, params: Mapping[str, Sequence[Any]], preset: str | None = "quick",
              out_dir: str | os.PathLike | None = None, force: bool = False, kernel_name: str = "python3",
              notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, progress: bool = True,
              stall_s: float | None = STALL_S, ray_address: str | None = None,
              ray_resources: Mapping[str, float] | None = None) -> list[RunResult]:
    """Run ``notebook`` for every point of the grid ``params``; see the module docstring.
    ``preset`` (when not None) is passed as the ``preset`` parameter of every run.

    Each configuration runs in its own folder ``<out>/<configuration>/`` (its result tables and
    figures; trained weights stay in the shared cache), and its row of ``<out>/sweep.csv`` is
    written as soon as it ends (status, seconds, headline metrics). A configuration skipped as
    already done keeps the row of the run that did it.

    ``ray_address``: run the configurations as Ray tasks instead of one after the other
    (``"local"``: a local Ray instance; an address: join that cluster, whose nodes must see the
    same file system). Each task is one papermill execution with ``ray_resources`` (default
    ``{"num_cpus": 1}``; e.g. ``{"num_gpus": 1}``); skipping, per-configuration summary rows and
    failure reporting are those of the local sweep, written by this process as tasks finish.
    Results are returned in grid order."""
    nb = resolve_notebook(notebook, notebooks_dir)
    stem = nb.stem
    out = paths.writable(Path(out_dir) if out_dir else paths.runs_dir() / "sweeps" / stem)
    cache = dict(UNETQ_CHECKPOINTS_DIR=str(paths.checkpoints_dir()), UNETQ_MODELS_DIR=str(paths.models_dir()),
                 UNETQ_DATA_DIR=str(paths.data_dir()), UNETQ_PUBLISHED_DIR=str(paths.published_dir()))
    runs: dict[int, RunResult] = {}
    todo = []  # (index, full, target, run_root, env)
    points = grid(params)
    for i, point in enumerate(points):
        full = ({"preset": preset} if preset is not None else {}) | dict(point)
        table = _summary_table(full)
        target = out / output_name(stem, point)
        run_root = out / output_name(stem, full)[:-len(".ipynb")]
        if not force and is_done(target, full):
            runs[i] = RunResult(nb.name, str(target), full, status="skipped (already done)")
            key = {f"param_{k}": format_value(v) for k, v in full.items()}
            if not results.has_key(table, results.read(table, root=out).df, key):
                # no row of the run that did the work (e.g. an older sweep): rebuild it
                done = RunResult(nb.name, str(target), full, status="ok (earlier run)",
                                 seconds=_recorded_seconds(target))
                results.write(table, pd.DataFrame([_summary_row(done, run_root)]), root=out)
            continue
        todo.append((i, full, target, run_root, dict(cache, UNETQ_REPORTS_DIR=str(paths.writable(run_root)))))

    bar = tqdm(total=len(todo), desc=f"sweep {stem}" + (" (Ray)" if ray_address else ""), disable=not progress)

    def finished(i: int, full: dict, run_root: Path, r: RunResult) -> None:
        runs[i] = r
        results.write(_summary_table(full), pd.DataFrame([_summary_row(r, run_root)]), root=out)
        bar.update(1)
        bar.set_postfix_str(f"{r.status} {r.seconds:.0f} s")

    if ray_address is None:
        for i, full, target, run_root, env in todo:
            r = execute(nb, target, full, kernel_name=kernel_name, stall_s=stall_s, env=env,
                        report=(lambda line: tqdm.write(line, file=sys.stderr)) if progress else None)
            finished(i, full, run_root, r)
    elif todo:
        ray = start_ray(ray_address)
        task = ray.remote(**dict(ray_resources or {"num_cpus": 1}))(_run_config)
        pending = {task.remote(str(nb), str(target), full, kernel_name, stall_s, env): (i, full, target, run_root)
                   for i, full, target, run_root, env in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i, full, target, run_root = pending.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except Exception as e:  # the task itself died (worker lost, ...): a failed configuration
                r = RunResult(nb.name, str(target), full, status="failed",
                              error=f"Ray task failed: {type(e).__name__}: {e}")
            finished(i, full, run_root, r)
    bar.close()
    return [runs[i] for i in range(len(points))]


def _params_arg(values: Iterable[Sequence[str]]) -> dict[str, list]:
    out: dict[str, list] = {}
    for name, *vals in values:
        if not vals:
            raise SystemExit(f"-p {name}: give at least one value")
        out.setdefault(name, []).extend(parse_value(v) for v in vals)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.sweep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook", help="notebook path, file name, stem (02_unet) or number (02)")
    ap.add_argument("-p", "--param", nargs="+", action="append", default=[], metavar=("NAME", "VALUE"),
                    help="a parameter and its values, e.g. -p lr 1e-1 1e-2 (repeat for a grid)")
    ap.add_argument("--preset", default="quick", help="study preset passed to every run (default quick)")
    ap.add_argument("--out", default=None, help="output folder (default reports/runs/sweeps/<nb>)")
    ap.add_argument("--stall-minutes", type=float, default=STALL_S / 60,
                    help="stop a notebook whose kernel used no CPU and wrote no output this long (default 10)")
    ap.add_argument("--force", action="store_true", help="re-run configurations already done")
    ap.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                    help="run configurations as Ray tasks: on a local Ray instance (no ADDRESS) or on the "
                         "cluster at ADDRESS ('auto': the one this machine belongs to)")
    ap.add_argument("--ray-cpus", type=float, default=1.0, help="CPUs per Ray task (default 1)")
    ap.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per Ray task (e.g. 1)")
    ap.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR))
    args = ap.parse_args(argv)
    params = _params_arg(args.param)
    if not params:
        ap.error("give at least one -p NAME VALUE...")
    try:
        res = run_sweep(args.notebook, params, preset=args.preset, out_dir=args.out, force=args.force,
                        notebooks_dir=args.notebooks_dir, stall_s=args.stall_minutes * 60, ray_address=args.ray,
                        ray_resources=dict(num_cpus=args.ray_cpus, num_gpus=args.ray_gpus))
    except (paths.UnwritableFolder, FileNotFoundError, UnknownParameter, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [r for r in res if r.status == "failed"]
    for r in res:
        print(f"{r.status:>24}  {Path(r.output).name}  ({r.seconds:.1f} s)")
    if failed:
        print("\nfailed configurations:\n" + "\n".join("  " + r.describe() for r in failed), file=sys.stderr)
        return 1
    print(json.dumps({"runs": len(res), "failed": 0}))
    return 0


__all__ = ["parse_value", "format_value", "resolve_notebook", "grid", "output_name", "is_done",
           "RunResult", "execute", "run_sweep", "main"]

if __name__ == "__main__":
    sys.exit(main())
