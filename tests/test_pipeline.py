"""Pipeline and sweep: tiny throwaway notebooks executed with papermill and the python3 kernel."""
import base64
import json
import os

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from unetq.cli import pipeline, sweep


def _nb(path, *cells, params="preset = 'ci'\nlr = None\nwidth = None"):
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell("# tiny"), p, *[new_code_cell(c) for c in cells]])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    return d


# --------------------------------------------------------------------------- pure helpers
def test_parse_and_format_values():
    assert sweep.parse_value("8") == 8
    assert sweep.parse_value("1e-2") == 0.01
    assert sweep.parse_value("True") is True
    assert sweep.parse_value("adam") == "adam"
    assert sweep.format_value(0.01) == "0.01"
    assert sweep.format_value(1e-5) == "1e-05"
    assert sweep.format_value("a/b c") == "a-b-c"
    assert sweep.output_name("02_unet", {"lr": 0.01, "width": 16}) == "02_unet__lr=0.01__width=16.ipynb"


def test_grid_order_and_errors():
    g = sweep.grid({"lr": [0.1, 0.01], "width": [8, 16]})
    assert g == [{"lr": 0.1, "width": 8}, {"lr": 0.1, "width": 16},
                 {"lr": 0.01, "width": 8}, {"lr": 0.01, "width": 16}]
    with pytest.raises(ValueError, match="width"):
        sweep.grid({"width": []})


def test_select_and_resolve(nbdir):
    for name in ("01_a", "02_b", "03_c", "08_report"):
        _nb(nbdir / f"{name}.ipynb", "x = 1")
    nbs = pipeline.discover(nbdir)
    assert [p.stem for p in pipeline.select(nbs, only="02,03")] == ["02_b", "03_c"]
    assert [p.stem for p in pipeline.select(nbs, start="03")] == ["03_c", "08_report"]
    assert [p.stem for p in pipeline.select(nbs, only="01_a,08")] == ["01_a", "08_report"]
    with pytest.raises(ValueError, match="99"):
        pipeline.select(nbs, only="99")
    assert sweep.resolve_notebook("02", nbdir).name == "02_b.ipynb"
    with pytest.raises(FileNotFoundError, match="nope"):
        sweep.resolve_notebook("nope", nbdir)


# --------------------------------------------------------------------------- executed notebooks
def test_pipeline_failure_names_notebook_and_cell(nbdir, tmp_path):
    _nb(nbdir / "01_ok.ipynb", "print('hello', preset)")
    _nb(nbdir / "02_bad.ipynb", "y = 2", "raise ValueError('boom from the tiny notebook')")
    _nb(nbdir / "03_after.ipynb", "z = 3")
    root = tmp_path / "reports"
    with pytest.raises(pipeline.PipelineError) as ei:
        pipeline.run_pipeline("quick", notebooks_dir=nbdir, root=root, progress=False)
    msg = str(ei.value)
    assert "02_bad.ipynb" in msg and "ValueError" in msg and "boom from the tiny notebook" in msg
    assert "cell" in msg and "raise ValueError" in msg
    r = ei.value.result
    assert r.status == "failed" and r.cell_index is not None
    # the index marks what ran, what failed and what did not run
    index = (root / "index.html").read_text()
    assert "01_ok.ipynb" in index and "02_bad.ipynb" in index and "03_after.ipynb" in index
    status = {n["notebook"]: n["status"] for n in json.loads((root / "pipeline.json").read_text())["notebooks"]}
    assert status == {"01_ok.ipynb": "ok", "02_bad.ipynb": "failed", "03_after.ipynb": "not run"}
    assert (root / "notebooks" / "01_ok.html").exists()
    executed = nbformat.read(root / "notebooks" / "01_ok.ipynb", as_version=4)
    assert executed.metadata.papermill["parameters"] == {"preset": "quick"}
    html = (root / "notebooks" / "01_ok.html").read_text()
    assert "hello quick" in html and "print(" not in html  # outputs shown, code hidden
    # a partial re-run keeps the earlier statuses of the notebooks it did not run
    recs = pipeline.run_pipeline("quick", only="01", notebooks_dir=nbdir, root=root, progress=False)
    assert [r["status"] for r in recs] == ["ok", "failed (earlier run)", "not selected"]
    assert oct((root / "index.html").stat().st_mode & 0o777) != oct(0o600)  # readable report


def test_pipeline_index_embeds_report(nbdir, tmp_path):
    _nb(nbdir / "08_report.ipynb", "print('REPORT-BODY-' + preset)")
    root = tmp_path / "reports"
    recs = pipeline.run_pipeline("ci", notebooks_dir=nbdir, root=root, progress=False)
    assert [r["status"] for r in recs] == ["ok"]
    index = (root / "index.html").read_text()
    assert "REPORT-BODY-ci" in index and "notebooks/08_report.html" in index
    assert not list((root / "notebooks").glob(".*partial*"))


def test_sweep_names_and_skips_done(nbdir, tmp_path, monkeypatch):
    nb = _nb(nbdir / "02_train.ipynb",
             "from unetq import results\nimport pandas as pd, os, pathlib\n"
             "p = pathlib.Path(os.environ['SWEEP_TABLE'])\n"
             "results.write(results.Table(p.stem, {'lr': 'float', 'width': 'int'}),\n"
             "              pd.DataFrame([{'lr': lr, 'width': width}]), root=p.parent)\n"
             "assert width != 99, 'width 99 fails on purpose'")
    out = tmp_path / "sweeps"
    table = tmp_path / "results.csv"
    monkeypatch.setenv("SWEEP_TABLE", str(table))
    res = sweep.run_sweep("02", {"lr": [0.01], "width": [8, 99]}, preset="ci", out_dir=out,
                          notebooks_dir=nbdir, progress=False)
    assert [r.status for r in res] == ["ok", "failed"]
    assert "width 99 fails on purpose" in res[1].describe() and "02_train.ipynb" in res[1].describe()
    ok = out / "02_train__lr=0.01__width=8.ipynb"
    bad = out / "02_train__lr=0.01__width=99.ipynb"
    assert ok.exists() and bad.exists()
    assert sweep.is_done(ok, {"preset": "ci", "lr": 0.01, "width": 8})
    assert not sweep.is_done(ok, {"preset": "quick", "lr": 0.01, "width": 8})  # other preset
    assert not sweep.is_done(bad)
    # second sweep: the done point is skipped, the failed one re-runs, a new one is appended
    res2 = sweep.run_sweep(nb, {"lr": [0.01], "width": [8, 99, 16]}, preset="ci", out_dir=out,
                           notebooks_dir=nbdir, progress=False)
    assert [r.status for r in res2] == ["skipped (already done)", "failed", "ok"]
    rows = pd.read_csv(table)
    assert sorted(rows["width"]) == [8, 16, 99]  # earlier rows kept, nothing clobbered
    summary = pd.read_csv(out / "sweep.csv")
    assert len(summary) == 3 and set(summary["param_width"]) == {8, 16, 99}


def test_sweep_cli_exit_code(nbdir, tmp_path):
    _nb(nbdir / "05_x.ipynb", "assert lr < 1")
    rc = sweep.main(["05", "-p", "lr", "0.5", "--preset", "ci", "--out", str(tmp_path / "o"),
                     "--notebooks-dir", str(nbdir)])
    assert rc == 0
    assert (tmp_path / "o" / "05_x__lr=0.5.ipynb").exists()


def test_incomplete_output_is_not_done(tmp_path):
    p = tmp_path / "x.ipynb"
    assert not sweep.is_done(p)
    nb = new_notebook(cells=[new_code_cell("1")])
    nb.metadata["papermill"] = {"exception": None, "end_time": None, "parameters": {}}
    nbformat.write(nb, p)
    assert not sweep.is_done(p)  # killed mid-run: no end time
    nb.metadata["papermill"]["end_time"] = "2024-01-01T00:00:00"
    nbformat.write(nb, p)
    assert sweep.is_done(p)
    p.write_text("{not json")
    assert not sweep.is_done(p)


def test_refresh_notebooks_in_place(nbdir):
    p = _nb(nbdir / "01_r.ipynb", "print(6 * 7)")
    (res,) = pipeline.refresh_notebooks(nbdir, progress=False)
    assert res.status == "ok"
    nb = nbformat.read(p, as_version=4)
    assert "42" in nb.cells[2].outputs[0]["text"]
    assert "papermill" not in nb.metadata
    _nb(nbdir / "02_f.ipynb", "1 / 0")
    with pytest.raises(pipeline.PipelineError, match="02_f.ipynb.*ZeroDivisionError"):
        pipeline.refresh_notebooks(nbdir, only="02", progress=False)


def test_a_stalled_kernel_fails_but_a_slow_working_one_finishes(nbdir, tmp_path, capfd):
    # stalled: no CPU, no output -> stopped with the reason and the cell, long before the sleep ends
    _nb(nbdir / "01_slow.ipynb", "import time\ntime.sleep(120)")
    with pytest.raises(pipeline.PipelineError) as ei:
        pipeline.run_pipeline("quick", notebooks_dir=nbdir, root=tmp_path / "reports", progress=False,
                              stall_s=4)
    # before it was killed, the kernel's stacks went to its stderr: where it waited
    err = capfd.readouterr().err
    assert "Fatal Python error: Aborted" in err and "Thread" in err, err[-2000:]
    r = ei.value.result
    assert r.status == "failed" and r.seconds < 60 and "01_slow.ipynb" in str(ei.value)
    assert "stalled" in r.error and r.cell_index is not None and "sleep" in r.cell_source
    assert "stalled" in r.describe() and "time.sleep(120)" not in r.describe().split(":")[0]
    # slow but working (busy for longer than the stall limit, printing nothing): finishes, and
    # progress lines name the running cell
    lines = []
    busy = _nb(nbdir / "02_busy.ipynb", "import time\nt = time.time()\nwhile time.time() - t < 8:\n    pass")
    res = sweep.execute(busy, tmp_path / "busy.ipynb", {}, stall_s=3, report=lines.append)
    assert res.status == "ok", res.error
    assert any("02_busy" in ln and "kernel CPU" in ln for ln in lines)
    assert pipeline.STALL_S >= 300  # a stall limit, not a time limit: no CELL_TIMEOUT_S any more
    assert not hasattr(pipeline, "CELL_TIMEOUT_S")


def test_sweep_rows_are_written_as_each_configuration_ends(nbdir, tmp_path, monkeypatch):
    """A configuration's summary row (status, seconds, headline metrics) is in sweep.csv before
    the next configuration starts; each configuration writes into its own run folder; a skipped
    configuration keeps the row of the run that did the work."""
    out = tmp_path / "sweeps"
    monkeypatch.setenv("SWEEP_OUT", str(out))
    nb = _nb(nbdir / "02_t.ipynb",
             "import os, pathlib, pandas as pd\nfrom unetq import paths\n"
             "here = paths.reports_dir()\n"
             "assert here.name == f'02_t__preset=ci__width={width}', here\n"
             "if width == 16:  # the first configuration's row is already there\n"
             "    s = pd.read_csv(pathlib.Path(os.environ['SWEEP_OUT']) / 'sweep.csv')\n"
             "    assert list(s['param_width']) == [8] and s['status'][0] == 'ok', s\n"
             "pd.DataFrame([{'test_dice': width / 100, 'test_iou': 0.1}, {'test_dice': width / 50, 'test_iou': 0.3}]"
             ").to_csv(paths.results_dir() / 'training.csv', index=False)")
    res = sweep.run_sweep(nb, {"width": [8, 16]}, preset="ci", out_dir=out, notebooks_dir=nbdir, progress=False)
    assert [r.status for r in res] == ["ok", "ok"], [r.error for r in res]
    s = pd.read_csv(out / "sweep.csv").set_index("param_width")
    assert s.loc[16, "test_dice"] == pytest.approx(0.24) and s.loc[8, "test_iou"] == pytest.approx(0.2)
    assert s.loc[8, "training_rows"] == 2 and s.loc[8, "seconds"] > 0
    first = s.loc[8].copy()
    res2 = sweep.run_sweep(nb, {"width": [8]}, preset="ci", out_dir=out, notebooks_dir=nbdir, progress=False)
    assert res2[0].status == "skipped (already done)"
    s2 = pd.read_csv(out / "sweep.csv").set_index("param_width")
    assert len(s2) == 2 and s2.loc[8, "status"] == "ok" and s2.loc[8, "seconds"] == first["seconds"]
    # a summary lost: the skipped configuration's row is rebuilt from its output, metrics included
    (out / "sweep.csv").unlink()
    sweep.run_sweep(nb, {"width": [8]}, preset="ci", out_dir=out, notebooks_dir=nbdir, progress=False)
    s3 = pd.read_csv(out / "sweep.csv")
    assert s3["status"].tolist() == ["ok (earlier run)"] and s3["test_dice"][0] == pytest.approx(0.12)
    assert s3["seconds"][0] > 0


def test_an_unwritable_output_folder_is_one_clear_line(nbdir, tmp_path, monkeypatch, capsys):
    _nb(nbdir / "05_x.ipynb", "x = 1")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = sweep.main(["05", "-p", "lr", "0.5", "--out", str(blocker / "o"), "--notebooks-dir", str(nbdir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(blocker / "o") in err and "Traceback" not in err
    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(blocker / "reports"))
    rc = pipeline.main(["--preset", "ci", "--notebooks-dir", str(nbdir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(blocker / "reports") in err


def test_unknown_parameter_is_an_error(nbdir, tmp_path):
    _nb(nbdir / "01_a.ipynb", "x = 1")
    with pytest.raises(pipeline.PipelineError, match=r"01_a.ipynb has no parameter 'source'.*preset, lr, width"):
        pipeline.run_pipeline("ci", parameters={"source": "/data"}, notebooks_dir=nbdir, root=tmp_path / "r",
                              progress=False)
    res = sweep.run_sweep("01", {"widht": [8]}, preset="ci", out_dir=tmp_path / "s", notebooks_dir=nbdir,
                          progress=False)
    assert res[0].status == "failed" and "no parameter 'widht'" in res[0].error


def _nonsquare_kaggle(root, n=24, w=96, h=64, seed=3):
    """A small dataset in the Kaggle layout with non-square PNG images (crops of generated cracks)."""
    from PIL import Image

    from unetq.data import make_synthetic_cracks

    src = root.parent / (root.name + "_src")
    make_synthetic_cracks(src, n, max(w, h), seed)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for p in sorted((src / sub).iterdir()):
            Image.open(p).crop((0, 0, w, h)).save(root / sub / (p.stem + ".png"))
    return root


@pytest.mark.slow
def test_main_job_on_a_real_dataset_folder(tmp_path, monkeypatch):
    """``make all DATA=...``: every notebook on a non-square Kaggle-layout folder (ci preset); every
    data-dependent results row, checkpoint and figure names that dataset."""
    from unetq.data import dataset_identity

    root = _nonsquare_kaggle(tmp_path / "cracks")
    ds = dataset_identity(root)
    reports = tmp_path / "reports"
    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(reports))
    monkeypatch.setenv("UNETQ_DATA_DIR", str(tmp_path / "data"))
    rc = pipeline.main(["--preset", "ci", "--data", str(root)])
    assert rc == 0
    status = {n["notebook"]: n["status"] for n in json.loads((reports / "pipeline.json").read_text())["notebooks"]}
    assert set(status.values()) == {"ok"} and len(status) == 8
    data_free = ("params_", "profile_", "mbu_cost_ranking")  # architecture-only tables: no data in them
    for p in sorted((reports / "results").glob("*.csv")):
        if p.name.startswith(data_free):
            continue
        t = pd.read_csv(p)
        assert set(t["dataset"]) == {ds}, p.name
    assert {p.name.split("_ci_")[0] for p in (reports / "checkpoints").glob(f"*_ci_{ds}*.pt")} >= \
        {"unet", "ghost_unet", "squeeze_unet", "mbu_unet"}
    figures = list((reports / "figures").glob("*.png"))
    assert figures and all(p.stem.endswith(ds) for p in figures)
    stats = pd.read_csv(reports / "results" / "data_stats.csv")
    assert set(stats["source"]) == {str(root.resolve())}


# --------------------------------------------------------------------------- the HTML pages
def _reader_notebook(path, title="03 · A small study"):
    """An executed-looking notebook: a heading, a stderr stream, a figure (with and without its own
    alt text), a pandas table, a bare object repr."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from nbformat.v4 import new_output

    from unetq.studies.figures import figure_image

    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot([1, 2], [3, 4])
    ax.set(title="loss per epoch", xlabel="epoch", ylabel="loss (BCE + Dice)")
    fig.suptitle("Training loss of the small model")
    img = figure_image(fig)
    assert img.metadata["alt"].startswith("Training loss of the small model.")  # read off the titles
    b64 = base64.b64encode(img.data).decode()
    df = pd.DataFrame(dict(arch=["unet", "ghost_unet"], latency_ms=[1.5, 2.5], batch_size=[1, 1]))
    c1 = new_code_cell("x")
    c1.outputs = [new_output("stream", name="stderr", text="USDT: profiler_start\n"),
                  new_output("display_data", data={"image/png": b64, "text/plain": "<Figure>"},
                             metadata={"image/png": {"alt": "Training loss of the small model."}}),
                  new_output("display_data", data={"image/png": b64, "text/plain": "<Figure size 300x200>"})]
    c2 = new_code_cell("df")
    c2.outputs = [new_output("execute_result", data={"text/html": df._repr_html_(), "text/plain": repr(df)},
                             execution_count=2),
                  new_output("execute_result", data={"text/plain": "[<matplotlib.lines.Line2D at 0x7f00>]"},
                             execution_count=3)]
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}\n\nText."), new_markdown_cell("## Training"), c1, c2])
    nbformat.write(nb, path)
    return path


def test_render_html_is_written_for_a_reader(tmp_path):
    from nbconvert import HTMLExporter

    nb = _reader_notebook(tmp_path / "03_small.ipynb")
    # what nbconvert alone gives: the checker finds every defect
    raw, _ = HTMLExporter(exclude_input=True).from_notebook_node(nbformat.read(nb, as_version=4))
    problems = pipeline.check_page(raw)
    for what in ("page title", "index.html", "alt text", "stderr", "repr", "index column"):
        assert any(what in p for p in problems), (what, problems)
    # the rendered page
    page = pipeline.render_html(nb, tmp_path / "notebooks" / "03_small.html").read_text()
    assert pipeline.check_page(page) == []
    assert "<title>03 · A small study</title>" in page
    nav = page.index('href="../index.html"')
    assert nav < page.index("<h1") and nav < page.index('<div class="jp-OutputArea')
    assert 'alt="Training loss of the small model."' in page  # the figure's own alt text
    assert 'alt="Figure 2 of “Training”"' in page  # else the section it sits in
    assert "profiler_start" not in page and 'data-mime-type="application/vnd.jupyter.stderr"' not in page
    assert "Line2D" not in page
    assert "latency_ms (ms)" in page and "<th>0</th>" not in page  # units, no row-number index
    assert "overflow-x:auto" in page  # wide tables scroll in their own box


def test_index_page_has_the_study_title_and_no_link_to_itself(tmp_path):
    root = tmp_path / "reports"
    (root / "notebooks").mkdir(parents=True)
    nb = _reader_notebook(tmp_path / "08_report.ipynb", title="08 · Report: which model")
    pipeline.render_html(nb, root / "notebooks" / "08_report.html")
    rec = [dict(notebook="08_report.ipynb", status="ok", seconds=1.0, html="notebooks/08_report.html", note=""),
           dict(notebook="09_gone.ipynb", status="ok (earlier run)", seconds=1.0, html="notebooks/09_gone.html",
                note="")]
    page = pipeline.write_index(rec, root, preset="quick").read_text()
    assert pipeline.check_page(page, index=True) == []
    assert f"<title>{pipeline.INDEX_TITLE} (preset quick)</title>" in page
    assert 'class="unetq-nav"' not in page  # the report's own link back to the index is left out
    assert 'href="notebooks/08_report.html"' in page and 'href="notebooks/09_gone.html"' not in page  # no dead link


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no headless browser: {CHROMIUM} is absent "
                                                          "(apt-get install chromium)")
def test_rendered_page_in_a_headless_browser(tmp_path):
    """Chromium loads the rendered page: the title is the notebook's and nothing is wider than the
    window (a wide table scrolls in its own box)."""
    import re
    import subprocess

    nb = _reader_notebook(tmp_path / "03_small.ipynb")
    wide = nbformat.read(nb, as_version=4)
    df = pd.DataFrame({f"column_number_{i}_ms": [1.5, 2.5] for i in range(40)})
    wide.cells[3].outputs[0]["data"]["text/html"] = df._repr_html_()
    nbformat.write(wide, nb)
    page = pipeline.render_html(nb, tmp_path / "03_small.html")
    probe = ("<script>window.addEventListener('load',function(){var p=document.createElement('div');"
             "p.id='probe';p.setAttribute('data-scroll',document.documentElement.scrollWidth);"
             "p.setAttribute('data-window',window.innerWidth);document.body.appendChild(p);});</script>")
    page.write_text(page.read_text().replace("</body>", probe + "</body>"))
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=700,600",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<title>03 · A small study</title>" in out
    m = re.search(r'id="probe" data-scroll="(\d+)" data-window="(\d+)"', out)
    assert m and int(m.group(1)) <= int(m.group(2)), m and m.groups()


def test_a_sweep_on_a_local_ray_instance_gives_the_tables_of_a_local_sweep(nbdir, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is the optional cluster extra (pip install -e '.[cluster]')")
    nb = _nb(nbdir / "02_r.ipynb",
             "import pandas as pd\nfrom unetq import paths\n"
             "pd.DataFrame([{'width': width, 'test_dice': width / 100, 'test_iou': width / 200}]"
             ").to_csv(paths.results_dir() / 'training.csv', index=False)\n"
             "assert width != 99, 'width 99 fails on purpose'")
    grid = {"width": [8, 16, 99]}
    local = sweep.run_sweep(nb, grid, preset="ci", out_dir=tmp_path / "local", notebooks_dir=nbdir, progress=False)
    sweep.start_ray("local", num_cpus=2)  # the CI machine's two cores
    try:
        on_ray = sweep.run_sweep(nb, grid, preset="ci", out_dir=tmp_path / "ray", notebooks_dir=nbdir,
                                 progress=False, ray_address="local")
        again = sweep.run_sweep(nb, grid, preset="ci", out_dir=tmp_path / "ray", notebooks_dir=nbdir,
                                progress=False, ray_address="local")
    finally:
        ray.shutdown()
    assert [r.status for r in on_ray] == [r.status for r in local] == ["ok", "ok", "failed"]
    assert "width 99 fails on purpose" in on_ray[2].describe()
    assert [r.status for r in again] == ["skipped (already done)", "skipped (already done)", "failed"]
    same = ["param_preset", "param_width", "status", "output", "test_dice", "test_iou", "training_rows"]
    a = pd.read_csv(tmp_path / "local" / "sweep.csv").sort_values("param_width")[same].reset_index(drop=True)
    b = pd.read_csv(tmp_path / "ray" / "sweep.csv").sort_values("param_width")[same].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    for w in (8, 16):
        run = f"02_r__preset=ci__width={w}"
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "local" / run / "results" / "training.csv"),
                                      pd.read_csv(tmp_path / "ray" / run / "results" / "training.csv"))


def test_kernels_of_long_jobs_wait_passively_unless_the_user_chose(nbdir, tmp_path, monkeypatch):
    """Notebook kernels of the main job and of sweeps start with OMP_WAIT_POLICY=PASSIVE (spinning
    OpenMP threads make a busy 2-core machine several times slower); a user's own setting wins."""
    from unetq.machine import LONG_JOB_ENV, long_job_env

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert LONG_JOB_ENV == {"OMP_WAIT_POLICY": "PASSIVE"} and long_job_env() == LONG_JOB_ENV
    assert long_job_env({"OMP_WAIT_POLICY": "ACTIVE"})["OMP_WAIT_POLICY"] == "ACTIVE"
    nb = _nb(nbdir / "02_env.ipynb", "import os\nassert os.environ.get('OMP_WAIT_POLICY') == want, os.environ.get('OMP_WAIT_POLICY')",
             params="preset = 'ci'\nwant = 'PASSIVE'")
    assert sweep.execute(nb, tmp_path / "a.ipynb", {}).status == "ok"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert long_job_env() == {}
    res = sweep.execute(nb, tmp_path / "b.ipynb", {"want": "ACTIVE"})
    assert res.status == "ok", res.error
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # restored after the run


def test_oversubscription_benchmark_runs_every_case(monkeypatch):
    from unetq.cli import oversubscription

    df = oversubscription.run(seconds=0.3, width=2, size=16, batch=2, settle_s=0.5)
    assert list(df["case"]) == [c for c, _, _ in oversubscription.CASES]
    assert list(df["probe_policy"]) == ["default", "PASSIVE", "default", "PASSIVE"]
    assert list(df["competitor"]) == ["none", "none", "default", "PASSIVE"]
    assert (df["steps"] > 0).all() and df["x_vs_alone_default"].iloc[0] == 1.0
    assert {"cpu", "cpu_isa", "cores"} <= set(df.columns)


def test_a_local_ray_start_that_times_out_under_load_is_tried_again(monkeypatch):
    """Ray gives its raylet a fixed 30 s to register; on a busy 2-core machine that can pass, so a
    local start is tried again (a few times), while any other error is raised at once."""
    import sys
    import types

    calls = []

    def init(**kw):
        calls.append(kw)
        if len([c for c in calls if c != "shutdown"]) < 3:
            raise Exception("The current node timed out during startup. This could happen because ...")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: calls.append("shutdown"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert sweep.start_ray("local", num_cpus=2) is fake
    assert [c for c in calls if c == "shutdown"] == ["shutdown", "shutdown"] and len(calls) == 5
    calls.clear()

    def broken(**kw):
        calls.append(kw)
        raise ValueError("bad num_cpus")

    fake.init = broken
    with pytest.raises(ValueError, match="bad num_cpus"):
        sweep.start_ray("local", num_cpus=-1)
    assert len(calls) == 1
    calls.clear()
    fake.init = lambda **kw: (_ for _ in ()).throw(Exception("The current node timed out during startup."))
    with pytest.raises(Exception, match="timed out during startup"):
        sweep.start_ray("local")
