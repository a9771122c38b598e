"""Pipeline and sweep: tiny throwaway notebooks executed with papermill and the python3 kernel."""
import json

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


def test_pipeline_cell_timeout_fails_the_notebook(nbdir, tmp_path):
    _nb(nbdir / "01_slow.ipynb", "import time\ntime.sleep(30)")
    with pytest.raises(pipeline.PipelineError) as ei:
        pipeline.run_pipeline("quick", notebooks_dir=nbdir, root=tmp_path / "reports", progress=False,
                              cell_timeout_s=2)
    r = ei.value.result
    assert r.status == "failed" and r.seconds < 25 and "01_slow.ipynb" in str(ei.value)
    assert pipeline.CELL_TIMEOUT_S["quick"] >= 600  # far above the longest quick cell


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
