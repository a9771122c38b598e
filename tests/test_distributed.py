"""torchrun / DistributedDataParallel on the CPU (gloo): two processes train like one, and a
killed run resumes to the weights of an uninterrupted one (unetq.train.distributed)."""
import json
import os
import subprocess
import sys

import pytest
import torch

#: Documented tolerance of a 2-process run against one process: the Dice term of the loss is
#: computed per rank on half of each global batch (see unetq.train.distributed).
REL_TOL = 0.01


def _train(tmp_path, name, nproc=None, extra=(), check=True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--standalone"] \
        if nproc else [sys.executable]
    cmd += ["-m", "unetq.cli.train", "--arch", "unet", "--preset", "ci", "--epochs", "2",
            "--checkpoint", str(tmp_path / f"{name}.pt"), "--json", str(tmp_path / f"{name}.json"), *extra]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def _summary(tmp_path, name):
    return json.loads((tmp_path / f"{name}.json").read_text())


@pytest.mark.slow
def test_two_processes_train_like_one_and_resume_after_a_kill(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    _train(tmp_path, "one")
    _train(tmp_path, "ddp", nproc=2)
    one, ddp = _summary(tmp_path, "one"), _summary(tmp_path, "ddp")
    assert ddp["world_size"] == 2 and one["world_size"] == 1
    for a, b in zip(one["history"], ddp["history"]):
        for k in ("train_loss", "val_loss"):
            assert b[k] == pytest.approx(a[k], rel=REL_TOL), (k, a[k], b[k])
    # killed after epoch 1 (no clean-up), then the same command again: resumes and ends where an
    # uninterrupted run of the same world size ends
    killed = _train(tmp_path, "resumed", nproc=2, extra=["--kill-after-epoch", "1"], check=False)
    assert killed.returncode != 0 and not (tmp_path / "resumed.json").exists()
    assert (tmp_path / "resumed.resume.pt").exists() or any(tmp_path.glob("resumed*.pt"))
    _train(tmp_path, "resumed", nproc=2)
    res = _summary(tmp_path, "resumed")
    assert res["resumed_from_epoch"] == 1
    assert [h["val_loss"] for h in res["history"]] == pytest.approx([h["val_loss"] for h in ddp["history"]], abs=1e-6)
    a = torch.load(tmp_path / "ddp.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "resumed.pt", weights_only=False)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_a_study_run_with_processes_trains_under_torchrun(tmp_path, monkeypatch):
    """``processes=2`` (a preset / notebook parameter): load_or_train starts torchrun, rank 0
    writes the checkpoint, and the run is its own (the world size is part of its identity)."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this torch build")
    from unetq.config import get_preset
    from unetq.train import checkpoint_path, load_or_train
    monkeypatch.setenv("UNETQ_CHECKPOINTS_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one = get_preset("ci", epochs=2)
    two = one.replace(processes=2)
    assert checkpoint_path("unet", two) != checkpoint_path("unet", one)
    _, c1 = load_or_train("unet", one, progress=False, verbose=False)
    m2, c2 = load_or_train("unet", two, progress=False, verbose=False)
    assert checkpoint_path("unet", two).exists() and c2["identity"]["processes"] == 2
    assert c2["best_val_loss"] == pytest.approx(c1["best_val_loss"], rel=REL_TOL)
    assert not m2.training
