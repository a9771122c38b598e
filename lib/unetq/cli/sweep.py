"""Run one notebook over a parameter grid with papermill.

Command line::

    python -m unetq.cli.sweep 02_unet -p lr 1e-1 1e-2 1e-3 -p width 8 16 --preset quick

runs ``notebooks/02_unet.ipynb`` once per point of the grid (here 3 x 2 = 6 runs, in the order
given), passing ``preset`` and the grid values as papermill parameters. ``NOTEBOOK`` is a path, a
file name, a stem (``02_unet``) or just its number (``02``).

- **Outputs** are named by their parameters:
  ``reports_dir()/sweeps/<nb>/<nb>__lr=0.01__width=16.ipynb`` (values written as Python writes
  them, so ``1e-2`` becomes ``0.01`` and ``1e-5`` becomes ``1e-05``), and a summary table of the
  runs, ``reports_dir()/sweeps/<nb>/sweep.csv`` (parameters, status, seconds, output).
- **Results are appended**: the notebooks upsert their own rows (keyed by their parameters) into the
  results tables, so a sweep adds rows without clobbering earlier runs.
- **Re-running skips configurations already done**: a configuration is done when its output
  notebook exists, papermill recorded no exception and an end time in it, and the parameters it
  recorded (preset included) are the requested ones. Outputs are written under a temporary name
  and renamed when the run ends, so a killed run never looks done. Failed runs are kept (with
  papermill's error marker) and are run again next time. ``--force`` re-runs everything.
- A failed configuration does not stop the sweep; the command exits with status 1 and names the
  failed configurations (notebook, cell and exception) at the end.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import nbformat
import pandas as pd
import papermill as pm
from papermill.exceptions import PapermillExecutionError
from tqdm.auto import tqdm

from .. import results
from ..paths import REPO_ROOT, reports_dir

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


def execute(input_path: str | os.PathLike, output_path: str | os.PathLike, parameters: Mapping | None = None,
            kernel_name: str = "python3", cwd: str | os.PathLike | None = None,
            log_output: bool = False, cell_timeout_s: float | None = None) -> RunResult:
    """Run one notebook with papermill into ``output_path`` (written under a temporary name and
    renamed at the end, whether it failed or not). Never raises for errors inside the notebook:
    the returned :class:`RunResult` says which cell failed and why. ``cell_timeout_s`` fails a
    cell that runs (or waits on its kernel) longer than that."""
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
    try:
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
    res.seconds = time.perf_counter() - t0
    if tmp.exists():
        os.replace(tmp, output_path)
    return res


def run_sweep(notebook: str | os.PathLike, params: Mapping[str, Sequence[Any]], preset: str | None = "quick",
              out_dir: str | os.PathLike | None = None, force: bool = False, kernel_name: str = "python3",
              notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, progress: bool = True) -> list[RunResult]:
    """Run ``notebook`` for every point of the grid ``params``; see the module docstring.
    ``preset`` (when not None) is passed as the ``preset`` parameter of every run."""
    nb = resolve_notebook(notebook, notebooks_dir)
    stem = nb.stem
    out = Path(out_dir) if out_dir else reports_dir() / "sweeps" / stem
    runs = []
    points = grid(params)
    for point in tqdm(points, desc=f"sweep {stem}", disable=not progress):
        full = ({"preset": preset} if preset is not None else {}) | dict(point)
        target = out / output_name(stem, point)
        if not force and is_done(target, full):
            runs.append(RunResult(nb.name, str(target), full, status="skipped (already done)"))
            continue
        runs.append(execute(nb, target, full, kernel_name=kernel_name))
    rows = [dict({f"param_{k}": format_value(v) for k, v in r.parameters.items()},
                 status=r.status, seconds=round(r.seconds, 2), output=Path(r.output).name,
                 error=r.describe() if r.status == "failed" else "") for r in runs]
    if rows:
        df = pd.DataFrame(rows)
        summary = results.Table("sweep", {c: "str" for c in df.columns if c.startswith("param_")})
        results.write(summary, df, root=out)
    return runs


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
    ap.add_argument("--out", default=None, help="output folder (default reports_dir()/sweeps/<nb>)")
    ap.add_argument("--force", action="store_true", help="re-run configurations already done")
    ap.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR))
    args = ap.parse_args(argv)
    params = _params_arg(args.param)
    if not params:
        ap.error("give at least one -p NAME VALUE...")
    res = run_sweep(args.notebook, params, preset=args.preset, out_dir=args.out, force=args.force,
                    notebooks_dir=args.notebooks_dir)
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
