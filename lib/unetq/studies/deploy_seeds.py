"""Every representation of every training seed (``python -m unetq.cli.deploy_seeds``,
``make deploy-seeds``).

Notebook 06 deploys training seed 0 of each architecture. Whether the study's answer ("which
architecture, in which representation") holds for another training run is a question of the
other seeds: :func:`run` exports each seed's model (at the architecture's chosen learning rate)
to every representation this machine runs (ONNX Runtime FP32/FP16/INT8, OpenVINO FP32/BF16/INT8
and NNCF INT8, PyTorch FP32/BF16; INT8 calibrated on the same training images as notebook 06,
and the INT8 configuration notebook 06's procedure chooses for that seed) and scores it on the
test split, writing ``accuracy_by_format_seeds.csv`` one architecture and
seed at a time. The report's "Stability across training seeds" section recomputes the
recommendation from each seed's accuracies (``unetq.studies.report.seed_stability``). No timing
is involved: it can run beside other work.
"""
from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from .. import paths, results
from ..config import StudyConfig
from ..data import run_tag, splits_from_preset
from ..train import load_or_train
from .quantization import (REPRESENTATIONS, accuracy_by_format, choose_int8_config, export_representations,
                           int8_accuracy, slow_representations)
from .tuning import tuned

#: The architectures notebook 06 deploys (the MBU-Net's per-seed accuracy, packed engine
#: included, is in ``mbu_accuracy.csv``).
ARCHS = ("unet", "ghost_unet", "squeeze_unet")


def run(cfg: StudyConfig, archs=ARCHS, seeds=None, representations=REPRESENTATIONS, tolerance: float = 0.01,
        record: bool = True, progress: bool = True) -> pd.DataFrame:
    """Accuracy of every representation of every training seed (``seeds``: default
    ``range(cfg.seeds)``) of ``archs``, plus the INT8 configuration notebook 06 would choose for
    that seed (``int8_name="chosen"``: the first within ``tolerance`` of FP32 on the validation
    split); rows carry ``train_seed``. A seed whose checkpoint is missing is trained (by the
    study's procedure) first."""
    splits = splits_from_preset(cfg)
    parts = []
    jobs = [(a, s) for a in archs for s in (seeds if seeds is not None else range(cfg.seeds))]
    for arch, seed in tqdm(jobs, desc="deploy: architecture x seed", unit="model", disable=not progress):
        run_cfg = tuned(arch, cfg).replace(train_seed=int(seed))
        model, _ = load_or_train(arch, run_cfg, splits=splits, verbose=False)
        model = model.cpu().eval()
        folder = paths.models_dir() / f"{arch}_{run_tag(cfg)}_seed{seed}"
        files = export_representations(arch, model, splits, run_cfg, folder=folder)
        df = accuracy_by_format(arch, model, files, splits["test"], run_cfg, representations, progress=False,
                                skip=slow_representations())
        # notebook 06's INT8 procedure: the first configuration within `tolerance` on the validation split
        name, qcfg, _ = choose_int8_config(files.fp32, files.calib, splits["val"], tolerance=tolerance,
                                           progress=False, cache_dir=files.folder / "calib")
        files.add_int8("chosen", qcfg)
        chosen = int8_accuracy(arch, files, splits["test"], run_cfg, names=["chosen"]).assign(chosen_as=name)
        df = pd.concat([df, chosen], ignore_index=True)
        df.insert(df.columns.get_loc("split") + 1, "train_seed", int(seed))
        if record:  # model by model: a killed run keeps what it scored
            results.write(results.ACCURACY_SEEDS, df)
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Test Dice mean ± std over training seeds per architecture, representation and INT8
    configuration (scored rows only), with the number of seeds and of collapsed seeds."""
    df = df.assign(int8_name=df["int8_name"].fillna("").astype(str)) if "int8_name" in df else df.assign(int8_name="")
    keys = ["arch", "backend", "precision", "int8_name"]
    scored = df[df["status"].astype(str) == "ok"]
    out = results.seed_summary(scored, keys, ["dice", "iou"])
    collapsed = df[df["status"].astype(str).str.startswith("collapsed")].groupby(keys).size().rename("collapsed_seeds")
    out = out.join(collapsed, on=keys) if len(collapsed) else out.assign(collapsed_seeds=0)
    return out.fillna({"collapsed_seeds": 0})
