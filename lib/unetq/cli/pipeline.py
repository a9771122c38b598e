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
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, DeadKernelError
from nbconvert import HTMLExporter
from tqdm.auto import tqdm

from ..io import atomic_path, write_json
from ..machine import machine_info
from ..studies.figures import column_label
from ..paths import UnwritableFolder, publish, reports_dir, writable
from .sweep import NOTEBOOKS_DIR, STALL_S, RunResult, execute, parse_value

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


#: What nbconvert writes on an image without alt text (a page that still has it lacks real alt text).
_NO_ALT = "No description has been provided for this image"
#: A text output that is a Python object's repr, not something written for a reader.
_OBJECT_REPR = re.compile(r"^\s*\[?\s*<[\w.]+(?: object)?(?: at 0x[0-9a-fA-F]+|[^<>]*)>(?:,\s*<[^<>]+>)*\s*\]?\s*$")
_WIDGET_REPR = re.compile(r"^\s*(?:Tab|HBox|VBox|Dropdown|IntSlider|Output|HTML)\((?:children|value|options)=")
_LITERAL_REPR = re.compile(r"^\s*(?:\[.*\]|\{.*\}|\(.*,.*\))\s*$", re.S)

#: Page style added to every rendered notebook: the navigation bar, and wide tables and outputs
#: scrolling in their own box instead of spilling over the page.
_PAGE_STYLE = """<style id="unetq-page-style">
.unetq-nav{font-family:system-ui,sans-serif;font-size:14px;max-width:1100px;margin:0.6em auto 0;padding:0 1em}
.unetq-nav a{text-decoration:none}
.jp-OutputArea-output{max-width:100%;overflow-x:auto}
.jp-RenderedHTMLCommon table,table.dataframe{display:block;max-width:100%;overflow-x:auto}
.unetq-table-wrap{max-width:100%;overflow-x:auto}
.jp-RenderedImage img{max-width:100%;height:auto}
</style>"""
_HEADING = re.compile(r"^\s*#+\s+(.+?)\s*#*\s*$", re.M)


def notebook_title(nb) -> str:
    """The notebook's title for people: its first Markdown heading, without Markdown marks."""
    for cell in nb.cells:
        m = _HEADING.search(cell.source) if cell.cell_type == "markdown" else None
        if m:
            return re.sub(r"[*_`]", "", m.group(1)).strip()
    return ""


def _plain_text(data: Any) -> str:
    return "".join(data) if isinstance(data, list) else str(data or "")


def _is_repr(text: str) -> bool:
    """Whether a text output is a bare Python repr (a list, a dict, ``<object at 0x..>``, a widget)."""
    t = text.strip()
    return bool(t) and bool(_OBJECT_REPR.match(t) or _WIDGET_REPR.match(t) or _LITERAL_REPR.match(t))


def _tidy_dataframe_html(markup: str) -> str:
    """A pandas table for a reader: the bare row-number index column dropped, units added to the
    column headers that name one (:func:`unetq.studies.figures.column_label`)."""
    def header_units(head: re.Match) -> str:
        return re.sub(r"<th([^>]*)>([^<]+)</th>",
                      lambda c: f"<th{c.group(1)}>{html.escape(column_label(html.unescape(c.group(2))))}</th>",
                      head.group(0))

    def one(m: re.Match) -> str:
        table = m.group(0)
        head = re.search(r"<thead>(.*?)</thead>", table, re.S)
        body = re.search(r"<tbody>(.*?)</tbody>", table, re.S)
        if not head or not body:
            return table
        head_rows = [r.strip() for r in re.findall(r"<tr[^>]*>.*?</tr>", head.group(1), re.S)]
        body_rows = [r.strip() for r in re.findall(r"<tr[^>]*>.*?</tr>", body.group(1), re.S)]
        row_numbers = bool(body_rows) and all(re.match(r"<tr[^>]*>\s*<th>(\d+|\.\.\.)</th>", r) for r in body_rows)
        plain_head = bool(head_rows) and all(re.match(r"<tr[^>]*>\s*<th>[^<]*</th>", r) for r in head_rows)
        index_name_row = len(head_rows) > 1 and re.fullmatch(r"<tr[^>]*>\s*<th>[^<]+</th>(\s*<th></th>)+\s*</tr>",
                                                              head_rows[-1], re.S)
        if row_numbers and plain_head and not index_name_row:
            table = re.sub(r"(<tbody>.*?</tbody>)", lambda b: re.sub(r"(<tr[^>]*>\s*)<th>(?:\d+|\.\.\.)</th>", r"\1",
                                                                    b.group(0)), table, flags=re.S)
            table = re.sub(r"(<thead>.*?</thead>)", lambda h: re.sub(r"(<tr[^>]*>\s*)<th>[^<]*</th>", r"\1",
                                                                    h.group(0)), table, flags=re.S)
        return re.sub(r"<thead>.*?</thead>", header_units, table, flags=re.S)

    return re.sub(r"<table[^>]*class=\"dataframe\"[^>]*>.*?</table>", one, markup, flags=re.S)


def _prepare(nb, title: str) -> dict[str, list[str]]:
    """Clean the outputs of ``nb`` for a reader, in place: stderr streams and bare object reprs
    dropped, pandas tables tidied; returns ``{image data: [alt text, ...]}`` in page order (the
    figure's own alt text, else the section it sits in)."""
    alts: dict[str, list[str]] = {}
    section = title
    n = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heads = _HEADING.findall(cell.source)
            if heads:
                section = re.sub(r"[*_`]", "", heads[-1]).strip()
            continue
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream" and out.get("name") == "stderr":
                continue
            data = out.get("data", {})
            if kind in ("execute_result", "display_data"):
                if set(data) <= {"text/plain"} and _OBJECT_REPR.match(_plain_text(data.get("text/plain"))):
                    continue
                if "text/html" in data:
                    data["text/html"] = _tidy_dataframe_html(_plain_text(data["text/html"]))
                for mime in ("image/png", "image/jpeg"):
                    if mime in data:
                        n += 1
                        meta = out.get("metadata", {}).get(mime) or {}
                        alt = meta.get("alt") if isinstance(meta, dict) else None
                        alts.setdefault(re.sub(r"\s", "", _plain_text(data[mime])), []).append(
                            alt or f"Figure {n} of “{section}”")
            kept.append(out)
        cell.outputs = kept
    return alts


def render_html(ipynb: str | os.PathLike, html_path: str | os.PathLike | None = None,
                index_href: str | None = "../index.html") -> Path:
    """Render an executed notebook to HTML with the code hidden (narrative and outputs only), for
    a reader: the notebook's title (its first heading) as the page title, a link back to the
    index at the top (``index_href``; None: none), alt text on every figure (its own, else the
    section it belongs to), no stderr outputs (profiler and warning noise) nor bare object reprs,
    pandas tables without their row-number index and with units in their headers, and wide
    tables scrolling in their own box (:func:`check_page` finds what is left)."""
    ipynb = Path(ipynb)
    html_path = Path(html_path) if html_path else ipynb.with_suffix(".html")
    nb = nbformat.read(ipynb, as_version=4)
    title = notebook_title(nb) or ipynb.stem
    nb.metadata["title"] = title
    alts = _prepare(nb, title)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)

    def alt_for(tag: re.Match) -> str:
        t = tag.group(0)
        src = re.search(r'\ssrc="([^"]*)"', t)
        data = re.sub(r"\s", "", src.group(1).split(",", 1)[-1]) if src else ""
        have = re.search(r'\salt="([^"]*)"', t)
        mine = alts.get(data) or []
        alt = (mine.pop(0) if len(mine) > 1 else mine[0] if mine else "") \
            or (html.unescape(have.group(1)) if have and have.group(1) != _NO_ALT else "") or f"Figure of “{title}”"
        t = re.sub(r'\salt="[^"]*"', "", t)
        return t[:4] + f' alt="{html.escape(alt, quote=True)}"' + t[4:]

    body = re.sub(r"<img\b[^>]*>", alt_for, body)
    body = body.replace("</head>", _PAGE_STYLE + "\n</head>", 1)
    if index_href:
        nav = (f'<nav class="unetq-nav"><a href="{html.escape(index_href)}">&larr; Report index</a> '
               f'&middot; {html.escape(title)}</nav>')
        m = re.search(r"<body[^>]*>", body)
        body = body[:m.end()] + nav + body[m.end():] if m else nav + body
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")
    return _readable(html_path)


class _PageParser(HTMLParser):
    """Collects what :func:`check_page` looks at."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title, self.in_title, self.in_style = "", False, False
        self.links: list[tuple[str, bool]] = []  # (href, before the first heading or output)
        self.imgs: list[dict] = []
        self.styles: list[str] = []
        self.stderr = 0
        self.texts: list[str] = []
        self.seen_content = False
        self.tables: list[dict] = []
        self._text_depth, self._buf = 0, []
        self._table, self._part, self._cell = None, None, None
        self._div_styles: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        mime = a.get("data-mime-type", "")
        if tag == "title":
            self.in_title = True
        elif tag == "style":
            self.in_style = True
        elif tag == "a" and a.get("href"):
            self.links.append((a["href"], not self.seen_content))
        elif tag == "img":
            self.imgs.append(a)
        if tag in ("h1", "h2") or "jp-OutputArea-output" in a.get("class", ""):
            self.seen_content = True
        if mime == "application/vnd.jupyter.stderr":
            self.stderr += 1
        if tag == "div":
            self._div_styles.append(a.get("style", "") + " " + a.get("class", ""))
            if self._text_depth:
                self._text_depth += 1
            elif mime in ("text/plain", "application/vnd.jupyter.stdout"):
                self._text_depth, self._buf = 1, []
        if tag == "table":
            wrapped = any("overflow" in d or "unetq-table-wrap" in d for d in self._div_styles)
            self._table = dict(head=[], rows=[], wrapped=wrapped)
        elif self._table is not None and tag in ("thead", "tbody"):
            self._part = tag
        elif self._table is not None and tag == "tr":
            (self._table["head"] if self._part == "thead" else self._table["rows"]).append([])
        elif self._table is not None and tag in ("th", "td"):
            self._cell = [tag, ""]

    def handle_endtag(self, tag):
        if tag == "title":
            self.in_title = False
        elif tag == "style":
            self.in_style = False
        elif tag == "div":
            if self._div_styles:
                self._div_styles.pop()
            if self._text_depth:
                self._text_depth -= 1
                if not self._text_depth:
                    self.texts.append("".join(self._buf))
        elif tag in ("th", "td") and self._cell is not None and self._table is not None:
            rows = self._table["head"] if self._part == "thead" else self._table["rows"]
            if rows:
                rows[-1].append((self._cell[0], self._cell[1].strip()))
            self._cell = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table, self._part = None, None

    def handle_data(self, data):
        if self.in_title:
            self.title += data
        if self.in_style:
            self.styles.append(data)
        if self._text_depth:
            self._buf.append(data)
        if self._cell is not None:
            self._cell[1] += data


def _number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def check_page(page: str, index: bool = False, units: bool = False) -> list[str]:
    """What a reader would stumble on in a rendered page (:func:`render_html`, or the index with
    ``index=True``), one line each (empty: none): no real ``<title>``, no link back to
    ``index.html`` before the first heading or output (not asked of the index), an ``<img>``
    without alt text, stderr output boxes, bare Python reprs (lists, dicts, ``<... at 0x..>``,
    widgets) as outputs, a pandas row-number index column, a table without a scrolling container,
    and (``units``) a numeric table column whose header names no unit. Uses only
    :mod:`html.parser`."""
    p = _PageParser()
    p.feed(page)
    problems = []
    title = p.title.strip()
    if not title or title.lower() in ("notebook", "untitled") or re.fullmatch(r"[\w.-]+\.(ipynb|html)|\d\d_\w+", title):
        problems.append(f"page title {title!r} is not the notebook's title")
    if not index and not any(top and href.split("#")[0].endswith("index.html") for href, top in p.links):
        problems.append("no link back to index.html at the top of the page")
    for img in p.imgs:
        alt = img.get("alt", "").strip()
        if not alt or alt == _NO_ALT:
            problems.append(f"image without alt text ({img.get('src', '')[:40]}...)")
    if p.stderr:
        problems.append(f"{p.stderr} stderr output box(es)")
    for t in p.texts:
        if _is_repr(t):
            problems.append(f"bare Python repr as output: {t.strip()[:60]!r}")
    scroll_css = re.search(r"table[^{]*\{[^}]*overflow-x:\s*auto", " ".join(p.styles)) is not None
    for t in p.tables:
        if t["rows"] and all(r and r[0][0] == "th" and re.fullmatch(r"\d+|\.\.\.", r[0][1]) for r in t["rows"]):
            problems.append("table shows the pandas row-number index column")
        if not (scroll_css or t["wrapped"]):
            problems.append("table without a scrolling container (a wide one spills over the page)")
        if units and t["head"] and t["rows"]:
            for j, (_, name) in enumerate(t["head"][-1]):
                cells = [r[j][1] for r in t["rows"] if j < len(r) and r[j][1] not in ("", "–", "NaN", "nan")]
                if cells and all(_number(c) for c in cells) and "(" not in name:
                    problems.append(f"numeric column {name!r} has no unit in its header")
    return problems


def _status_table(records: Sequence[Mapping[str, Any]], root: Path | None = None) -> str:
    """The index's table of notebooks: a link to each page that exists (under ``root`` when
    given), the status coloured by its kind (``ok``, ``ok (earlier run)``, ``failed``...), the run
    time, the note; inside a scrolling box."""
    colour = {"ok": "#1a7f37", "failed": "#cf222e"}
    rows = []
    for r in records:
        name = html.escape(r["notebook"])
        page = r.get("html")
        if page and root is not None and not (root / page).exists():
            page = None
        link = f'<a href="{html.escape(page)}">{name}</a>' if page else name
        st = r.get("status", "not run")
        secs = f'{r["seconds"]:.1f}' if r.get("seconds") else ""
        note = html.escape(r.get("note", ""))
        rows.append(f'<tr><td>{link}</td><td style="color:{colour.get(st.split(" ")[0], "#57606a")}">'
                    f'<b>{html.escape(st)}</b></td><td style="text-align:right">{secs}</td><td>{note}</td></tr>')
    return ('<div class="unetq-table-wrap" style="overflow-x:auto;max-width:100%"><table class="unetq-status">'
            '<thead><tr><th>notebook</th><th>status</th><th>run time (s)</th>'
            '<th>note</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table></div>")


_STYLE = """<style>
.unetq-header{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em}
.unetq-status{border-collapse:collapse;margin:0.5em 0 1.5em}
.unetq-status td,.unetq-status th{border:1px solid #d0d7de;padding:4px 10px;font-size:14px}
.unetq-status th{background:#f6f8fa}
</style>"""


INDEX_TITLE = "unetq: efficient U-Nets for road-crack segmentation"


def write_index(records: Sequence[Mapping[str, Any]], root: str | os.PathLike | None = None,
                preset: str | None = None) -> Path:
    """``root/index.html``: run summary with links, then the executed report notebook (code hidden),
    or a note saying it did not run. Its title is the study's (:data:`INDEX_TITLE`, with the
    preset), not the report notebook's, and the report page's link back to the index is left out."""
    root = Path(root) if root else reports_dir()
    m = machine_info()
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (f'{_STYLE}<div class="unetq-header"><h1>unetq: efficient U-Nets for road-crack segmentation</h1>'
              f'<p>Preset <b>{html.escape(str(preset))}</b>, run {when} on {html.escape(str(m["cpu"]))} '
              f'({m["cores"]} cores), GPU: {html.escape(str(m["gpu"]))}.</p>'
              f'<h2>Notebooks</h2>{_status_table(records, root)}</div>')
    title = html.escape(f"{INDEX_TITLE} (preset {preset})" if preset else INDEX_TITLE)
    report = next((r for r in records if Path(r["notebook"]).stem == REPORT_NOTEBOOK), None)
    report_html = root / "notebooks" / f"{REPORT_NOTEBOOK}.html"
    if report and report.get("status") == "ok" and report_html.exists():
        page = report_html.read_text(encoding="utf-8")
        page = re.sub(r'<nav class="unetq-nav">.*?</nav>', "", page, count=1, flags=re.S)
        page = re.sub(r"<title>.*?</title>", f"<title>{title}</title>", page, count=1, flags=re.S)
        m_body = re.search(r"<main[^>]*>", page) or re.search(r"<body[^>]*>", page)
        if m_body:
            page = page[:m_body.end()] + header + page[m_body.end():]
        else:
            page = header + page
    else:
        why = (f"the report notebook {REPORT_NOTEBOOK} {report['status']}" if report
               else f"the report notebook {REPORT_NOTEBOOK} was not part of this run")
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
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


def run_pipeline(preset: str = "quick", only: str | Iterable[str] | None = None, start: str | None = None,
                 parameters: Mapping[str, Any] | None = None,
                 notebooks_dir: str | os.PathLike = NOTEBOOKS_DIR, root: str | os.PathLike | None = None,
                 kernel_name: str = "python3", progress: bool = True,
                 stall_s: float | None = STALL_S, cell_timeout_s: float | None = None) -> list[dict]:
    """Execute the selected notebooks in order (see the module docstring); returns one record per
    notebook. Raises :class:`PipelineError` (after writing the index) when one fails.
    A notebook fails when its kernel stalls (no CPU use and no output for ``stall_s`` seconds;
    ``unetq.cli.sweep.Liveness``), never because it is slow; ``cell_timeout_s`` is an optional
    hard limit per cell (default none). With ``progress``, a line per running cell (cell, time so
    far, kernel CPU, last output line) goes to stderr every minute."""
    root = writable(Path(root) if root else reports_dir(), "UNETQ_REPORTS_DIR")
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
                      stall_s=stall_s, cell_timeout_s=cell_timeout_s,
                      report=(lambda line: tqdm.write(line, file=sys.stderr)) if progress else None)
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
    ap.add_argument("--stall-minutes", type=float, default=STALL_S / 60,
                    help="stop a notebook whose kernel used no CPU and wrote no output this long (default 10)")
    args = ap.parse_args(argv)
    try:
        if args.refresh_notebooks:
            for r in refresh_notebooks(args.notebooks_dir, only=args.only):
                print(f"refreshed {r.notebook} ({r.seconds:.1f} s)")
            return 0
        extra = {k: parse_value(v) for k, v in args.param}
        if args.data:
            extra["dataset"] = str(Path(args.data).expanduser().resolve())
        publish()  # the main job writes the committed report (unless UNETQ_REPORTS_DIR says otherwise)
        records = run_pipeline(args.preset, only=args.only, start=args.start, parameters=extra,
                               notebooks_dir=args.notebooks_dir, stall_s=args.stall_minutes * 60)
    except UnwritableFolder as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
