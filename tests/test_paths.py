"""Where runs write: the committed report only from the main job, run folders for the rest."""
import pandas as pd
import pytest

from unetq import paths, results


@pytest.fixture
def study(tmp_path, monkeypatch):
    pub = tmp_path / "reports"
    monkeypatch.setenv("UNETQ_PUBLISHED_DIR", str(pub))
    monkeypatch.delenv("UNETQ_REPORTS_DIR", raising=False)
    for v in ("UNETQ_RESULTS_DIR", "UNETQ_FIGURES_DIR", "UNETQ_CHECKPOINTS_DIR", "UNETQ_MODELS_DIR"):
        monkeypatch.delenv(v, raising=False)
    return pub


def _row(arch, dice, preset="quick"):
    return dict(arch=arch, preset=preset, dataset="synthetic-v3", width=16, image_size=96, lr=3e-3, epochs=20,
                amp="off", train_seed=0, test_dice=dice)


def test_an_interactive_run_writes_its_own_folder_and_reads_the_committed_rows_beneath(study):
    # the committed study (written as the main job would)
    results.write(results.TRAINING, pd.DataFrame([_row("unet", 0.7), _row("ghost_unet", 0.8)]),
                  root=study / "results")
    assert paths.reports_dir() == study / "runs" / "interactive" and not paths.is_published()
    assert paths.checkpoints_dir() == study / "checkpoints"  # the weight cache is shared
    # an interactive run re-trains one model: its row goes to its own folder ...
    results.write(results.TRAINING, pd.DataFrame([_row("unet", 0.75)]))
    committed = pd.read_csv(study / "results" / "training.csv")
    assert sorted(committed["test_dice"]) == [0.7, 0.8]  # ... the committed table is untouched
    # ... and its reads see the committed rows beneath its own
    df = results.read(results.TRAINING, "quick").df.set_index("arch")
    assert df.loc["unet", "test_dice"] == 0.75 and df.loc["ghost_unet", "test_dice"] == 0.8 and len(df) == 2


def test_the_main_job_publishes(study, monkeypatch):
    assert paths.publish() == study and paths.is_published()
    results.write(results.TRAINING, pd.DataFrame([_row("unet", 0.7)]))
    assert (study / "results" / "training.csv").exists()
    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(study / "elsewhere"))
    assert paths.publish() == study / "elsewhere"  # an explicit folder (tests, a scratch study) wins


def test_a_folder_that_cannot_be_made_is_named(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("UNETQ_REPORTS_DIR", str(blocker / "r"))
    with pytest.raises(paths.UnwritableFolder, match=r"cannot create the folder .*file/r.*UNETQ_REPORTS_DIR"):
        paths.reports_dir()
    with pytest.raises(paths.UnwritableFolder, match="cannot write to the folder"):
        paths.writable(blocker / "x")
