"""The main job: run the study's notebooks in order with papermill and build the HTML report.

Command line::

    python -m unetq.cli.pipeline --preset quick            # 01 -> 08, then reports_dir()/index.html
    python -m unetq.cli.pipeline --preset quick --only 02,03
    python -m unetq.cli.pipeline --preset quick --from 05
    python -m unetq.cli.pipeline --preset quick --data /path/to/dataset   # a real dataset
    python -m unetq.cli.pipeline --refresh-notebooks       # re-execute notebooks/*.ipynb in place

Each notebook ``notebooks/NN_name.ipynb`` is executed with kernel ``python3`` and
``-p preset <preset>`` (and ``-p dataset <PATH>`` with ``--data``; a parameter a notebook does
not declare fails that notebook) into ``reports_dir()/notebooks/NN_name.ipynb`` and rendered, code hidden, to
``NN_name.html`` beside it. ``reports_dir()/index.html`` holds the narrative and plots of the
executed report notebook (``08_report``) and links to every notebook's HTML with its status and
run time; ``reports_dir()/pipeline.json`` keeps the same records. A failed notebook stops the run:
the index is still written (what ran, what failed, what did not run) and the command exits with
status 1 naming the notebook, the cell and the exception. Outputs are written atomically, so a
re-run is safe.

``--refresh-notebooks`` re-executes the committed notebooks *in place* with their stored default
parameters (the ``ci`` preset) so the outputs nbval compares are fresh; it does not add papermill
metadata to them.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbconvert import HTMLExporter
from tqdm.auto import tqdm

from ..io import atomic_path, write_json
from ..machine import machine_info
from ..paths import reports_dir
from .sweep import NOTEBOOKS_DIR, RunResult, execute, parse_value

REPORT_NOTEBOOK = "08_report"


class PipelineError(RuntimeError):
    """A notebook of the pipeline failed; ``result`` says which and where."""

    def __init__(self, result: RunResult):
        self.result = result
        super().__init__(result.describe())


def discover(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR) -> list[Path]:
    """The study notebooks ``NN_name.ipynb`` in ``notebooks_dir``, in order."""
    d = Path(notebooks_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"notebook folder {d} does not exist")
    return sorted(p for p in d.glob("*.ipynb") if re.match(r"\d\d_", p.name))


def select(paths: Sequence[Path], only: str | Iterable[str] | None = None, start: str | None = None) -> list[Path]:
    """Filter ``paths`` by ``only`` (``"02,03"``: numbers or stems) and ``start`` (``"05"``: that
    notebook and the ones after it). Unknown names are an error."""
    def key(p: Path) -> tuple[str, str]:
        return p.name[:2], p.stem

    def matches(p: Path, name: str) -> bool:
        name = name.strip().removesuffix(".ipynb")
        return name in key(p)

    out = list(paths)
    if only:
        names = [n for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
        for n in names:
            if not any(matches(p, n) for p in paths):
                raise ValueError(f"--only: no notebook {n!r} (have {', '.join(p.stem for p in paths)})")
        out = [p for p in out if any(matches(p, n) for n in names)]
    if start:
        idx = [i for i, p in enumerate(out) if matches(p, start)]
        if not idx:
            raise ValueError(f"--from: no notebook {start!r} (have {', '.join(p.stem for p in out)})")
        out = out[idx[0]:]
    return out


def _readable(path: Path) -> Path:
    """Atomic writes create their temporary file private (0600); a report is meant to be read."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
    return path


def render_html(ipynb: str | os.PathLike, html_path: str | os.PathLike | None = None) -> Path:
    """Render an executed notebook to HTML with the code hidden (narrative and outputs only)."""
    ipynb = Path(ipynb)
    html_path = Path(html_path) if html_path else ipynb.with_suffix(".html")
    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return _readable(html_path)


def _status_table(records: Sequence[Mapping[str, Any]]) -> str:
    colour = {"ok": "#1a7f37", "failed": "#cf222e"}
    rows = []
    for r in records:
        name = html.escape(r["notebook"])
        link = f'<a href="{html.escape(r["html"])}">{name}</a>' if r.get("html") else name
        st = r.get("status", "not run")
        secs = f'{r["seconds"]:.1f}' if r.get("seconds") else ""
        note = html.escape(r.get("note", ""))
        rows.append(f'<tr><td>{link}</td><td style="color:{colour.get(st, "#57606a")}"><b>{html.escape(st)}</b>'
                    f'</td><td style="text-align:right">{secs}</td><td>{note}</td></tr>')
    return ('<table class="unetq-status"><thead><tr><th>notebook</th><th>status</th><th>run time (s)</th>'
            '<th>note</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


_STYLE = """<style>
.unetq-header{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em}
.unetq-status{border-collapse:collapse;margin:0.5em 0 1.5em}
.unetq-status td,.unetq-status th{border:1px solid #d0d7de;padding:4px 10px;font-size:14px}
.unetq-status th{background:#f6f8fa}
</style>"""


def write_index(records: Sequence[Mapping[str, Any]], root: str | os.PathLike | None = None,
                preset: str | None = None) -> Path:
    """``root/index.html``: run summary with links, then the executed report notebook (code hidden),
    or a note saying it did not run."""
    root = Path(root) if root else reports_dir()
    m = machine_info()
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (f'{_STYLE}<div class="unetq-header"><h1>unetq: efficient U-Nets for road-crack segmentation</h1>'
              f'<p>Preset <b>{html.escape(str(preset))}</b>, run {when} on {html.escape(str(m["cpu"]))} '
              f'({m["cores"]} cores), GPU: {html.escape(str(m["gpu"]))}.</p>'
              f'<h2>Notebooks</h2>{_status_table(records)}</div>')
    report = next((r for r in records if Path(r["notebook"]).stem == REPORT_NOTEBOOK), None)
    report_html = root / "notebooks" / f"{REPORT_NOTEBOOK}.html"
    if report and report.get("status") == "ok" and report_html.exists():
        page = report_html.read_text(encoding="utf-8")
        m_body = re.search(r"<main[^>]*>", page) or re.search(r"<body[^>]*>", page)
        if m_body:
            page = page[:m_body.end()] + header + page[m_body.end():]
        else:
            page = header + page
    else:
        why = (f"the report notebook {REPORT_NOTEBOOK} {report['status']}" if report
               else f"the report notebook {REPORT_NOTEBOOK} was not part of this run")
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>unetq report</title></head><body>"
                f"{header}<div class='unetq-header'><p><b>No report:</b> {html.escape(why)}.</p></div>"
                f"</body></html>")
    out = root / "index.html"
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return _readable(out)


def _record(nb: Path, res: RunResult | None, root: Path) -> dict:
    html_rel = f"notebooks/{nb.stem}.html"
    if res is None:
        return dict(notebook=nb.name, status="not run", seconds=0.0, html=None, note="")
    return dict(notebook=nb.name, status=res.status, seconds=round(res.seconds, 2),
                html=html_rel if (root / html_rel).exists() else None,
                note=res.describe() if res.status == "failed" else "",
                parameters=res.parameters)


#: Per-cell time limit of the main job by preset (seconds; None: no limit). The longest ``quick``
#: cell (MBU-Net training) takes about 5 minutes on a 2-core CPU; a stalled kernel then fails
#: the notebook with its name and cell instead of hanging the job.
CELL_TIMEOUT_S: dict[str, float | None] = {"ci": 900, "quick": 1800, "paper": None}


def run_pipeline(preset: str = "quick", only: str | Iterable[str] | None = None, start: str | None = None,
                 parameters: Mapping[str, Any] | None = None,
                 notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, root: str | os.PathLike | None = None,
                 kernel_name: str = "python3", progress: bool = True,
                 cell_timeout_s: float | None = -1) -> list[dict]:
    """Execute the selected notebooks in order (see the module docstring); returns one record per
    notebook. Raises :class:`PipelineError` (after writing the index) when one fails.
    ``cell_timeout_s``: per-cell limit (default :data:`CELL_TIMEOUT_S` of the preset; None: none)."""
    root = Path(root) if root else reports_dir()
    out_dir = root / "notebooks"
    all_nbs = discover(notebooks_dir)
    chosen = select(all_nbs, only, start)
    if not chosen:
        raise ValueError(f"no notebooks to run in {notebooks_dir}")
    params = {"preset": preset, **(parameters or {})}
    previous = _previous_records(root)
    done: dict[str, RunResult] = {}
    failure: RunResult | None = None
    bar = tqdm(chosen, desc="pipeline", disable=not progress)
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        res = execute(nb, out_dir / nb.name, params, kernel_name=kernel_name, cwd=nb.parent,
                      cell_timeout_s=CELL_TIMEOUT_S.get(preset) if cell_timeout_s == -1 else cell_timeout_s)
        done[nb.name] = res
        if Path(res.output).exists():
            _readable(Path(res.output))
            try:
                render_html(res.output, out_dir / f"{nb.stem}.html")
            except Exception as e:  # an unrenderable notebook must not hide the run's status
                res.error = (res.error + "; " if res.error else "") + f"HTML rendering failed: {e}"
        if res.status == "failed":
            failure = res
            break
    records = []
    for nb in all_nbs:
        if nb.name in done:
            records.append(_record(nb, done[nb.name], root))
        elif nb in chosen:
            records.append(_record(nb, None, root))
        elif nb.name in previous and previous[nb.name].get("status") not in ("not run", "not selected"):
            rec = dict(previous[nb.name])
            if "earlier run" not in rec["status"]:
                was = (rec.get("parameters") or {}).get("preset")
                rec["status"] = f"{rec['status']} (earlier run{f', preset {was}' if was and was != preset else ''})"
            records.append(rec)
        else:
            records.append(dict(_record(nb, None, root), status="not selected"))
    _readable(write_json(dict(preset=preset, finished=_dt.datetime.now().isoformat(timespec="seconds"),
                              notebooks=records), root / "pipeline.json"))
    write_index(records, root, preset=preset)
    if failure is not None:
        raise PipelineError(failure)
    return records


def _previous_records(root: Path) -> dict[str, dict]:
    p = root / "pipeline.json"
    try:
        return {r["notebook"]: r for r in json.loads(p.read_text())["notebooks"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def refresh_notebooks(notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, only: str | None = None,
                      kernel_name: str = "python3", timeout: int | None = None,
                      progress: bool = True) -> list[RunResult]:
    """Re-execute ``notebooks_dir/NN_*.ipynb`` in place with their stored parameters (nbclient, no
    papermill metadata). Stops at the first failure with :class:`PipelineError`; the failing
    notebook is left unchanged on disk."""
    results = []
    for nb_path in tqdm(select(discover(notebooks_dir), only), desc="refresh", disable=not progress):
        nb = nbformat.read(nb_path, as_version=4)
        client = NotebookClient(nb, kernel_name=kernel_name, timeout=timeout,
                                resources={"metadata": {"path": str(nb_path.parent)}})
        res = RunResult(notebook=nb_path.name, output=str(nb_path), parameters={})
        t0 = time.perf_counter()
        try:
            client.execute()
            res.status = "ok"
        except (CellExecutionError, DeadKernelError, Exception) as e:  # noqa: B014
            res.status = "failed"
            res.error = f"{getattr(e, 'ename', type(e).__name__)}: {getattr(e, 'evalue', e)}"
            for i, c in enumerate(nb.cells):
                if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", [])):
                    res.cell_index, res.exec_count, res.cell_source = i, c.get("execution_count"), c.source
                    break
        res.seconds = time.perf_counter() - t0
        results.append(res)
        if res.status == "failed":
            raise PipelineError(res)
        with atomic_path(nb_path) as tmp:
            nbformat.write(nb, tmp)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unetq.cli.pipeline", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="quick", help="study preset passed to every notebook (default quick)")
    ap.add_argument("--data", default=None, metavar="PATH",
                    help="root folder of a real dataset (Kaggle, DeepCrack, Carvana, ISIC 2018, DSB2018 layouts) "
                         "passed to every notebook as its dataset parameter; default: the built-in generator")
    ap.add_argument("--only", default=None, help="comma-separated notebooks to run, e.g. 02,03")
    ap.add_argument("--from", dest="start", default=None, help="start at this notebook, e.g. 05")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="an extra papermill parameter for every notebook")
    ap.add_argument("--refresh-notebooks", action="store_true",
                    help="re-execute notebooks/*.ipynb in place with their stored (ci) parameters")
    ap.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR))
    args = ap.parse_args(argv)
    try:
        if args.refresh_notebooks:
            for r in refresh_notebooks(args.notebooks_dir, only=args.only):
                print(f"refreshed {r.notebook} ({r.seconds:.1f} s)")
            return 0
        extra = {k: parse_value(v) for k, v in args.param}
        if args.data:
            extra["dataset"] = str(Path(args.data).expanduser().resolve())
        records = run_pipeline(args.preset, only=args.only, start=args.start, parameters=extra,
                               notebooks_dir=args.notebooks_dir)
    except PipelineError as e:
        print(f"pipeline stopped: {e}", file=sys.stderr)
        print(f"index: {reports_dir() / 'index.html'}", file=sys.stderr)
        return 1
    for r in records:
        print(f"{r['status']:>18}  {r['notebook']}  {r.get('seconds') or 0:.1f} s")
    print(f"report: {reports_dir() / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
