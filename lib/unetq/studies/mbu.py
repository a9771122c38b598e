"""The MBU-Net study of notebook ``05_mbu_net``: trained configurations, the accuracy table
(seed 001 Table 1), sparsity (Figure 3a), the Pareto frontier of Dice against frames per second
(Figure 7) and the packed engine's speed against PyTorch FP32 and ONNX Runtime INT8. Its tables
(``mbu_*.csv``) are written through :mod:`unetq.results`.

Training budget. The main MBU-Net (cost-aware masking of the ``k`` cheapest layers) and the
full-precision U-Net it is compared with are trained from scratch with the same preset (width,
image size, epochs, batch, Adam). Every other configuration (pure binary, INT8/INT4 weights,
other numbers of masked layers) starts from the trained MBU-Net's latent weights and is
fine-tuned for ``finetune_epochs`` with its own quantizers: a shared start that keeps the
notebook inside its time budget (seed 001 trains each configuration from scratch). The tables
say which row was trained how (``training`` column).
"""
from __future__ import annotations

import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import paths, results
from ..bitpack import pack_mbu
from ..config import StudyConfig
from ..data import run_columns
from ..deploy import TorchRunner, evaluate_runner, make_runner
from ..deploy.quantize import calibration_batch, calibration_count
from ..machine import machine_info
from ..models import weight_bytes
from ..models.binary_layers import BNSign
from ..models.mbu_unet import LAYER_NAMES, table_a4, zero_fraction
from ..train import load_or_train
from .architectures import record_training
from .figures import format_colour, format_key, legend_outside
from .tuning import tuned

PAPER_LABELS = {"fp": "Full precision", "int8": "INT8", "int4": "INT4", "mbu": "MBU-Net", "binary": "Binary"}


# --------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------
#: The MBU-Net input block of the study (notebook 05's ``stem`` parameter, the benchmarks).
#: ``"thermo"``: the first conv's output binarised at 4 thresholds per channel (one 64-bit word
#: per pixel in the packed engine). Notebook 05 run with ``-p stem binary|thermo|float|int8``
#: compares the stems' accuracy (``mbu_accuracy.csv``), ``python -m unetq.cli.bitpack_benchmark
#: --stem ...`` their speed.
DEFAULT_STEM = "thermo"


#: Learning rate of the main MBU-Net relative to the preset's (every other model's), the
#: ``lr_factor`` parameter of notebook 05: 1, the same procedure as every architecture. Binary
#: latent weights must cross zero to change a sign, so the binary network may prefer another
#: step; a sweep of notebooks 02 and 05 over the learning rate (``python -m unetq.cli.sweep``)
#: shows which one each model prefers, and a factor other than 1 is then an ablation row.
DEFAULT_LR_FACTOR = 1.0


def resolve_masked(masked="cost-aware-top-k", k: int = 4):
    """The ``masked=`` keyword of ``create_model("mbu_unet")`` for a notebook parameter:
    ``"cost-aware-top-k"`` -> ``k``; a list of layer names is passed through."""
    if isinstance(masked, str):
        if masked != "cost-aware-top-k":
            raise ValueError(f"masked must be 'cost-aware-top-k' or a list of layer names, got {masked!r}")
        return int(k)
    return list(masked)


def configurations(main_masked, pareto_k=(0, 4, 8, 12), stem: str = DEFAULT_STEM) -> dict[str, dict]:
    """``label -> create_model keywords`` of every MBU-Net variant of the study (``"mbu"`` is
    the main one); ``stem`` (``"binary"``, ``"thermo"``, ``"float"`` or ``"int8"``, see
    ``mbu_unet``) applies to all."""
    extra = {} if stem == "binary" else dict(stem=stem)
    out = {"mbu": dict(masked=main_masked, **extra)}
    out["binary"] = dict(masked=0, **extra)
    own_c2 = stem in ("binary", "thermo")  # input_c2 is a binary/masked layer of its own
    out["int8"] = dict(base="int8", layers={"input_c2": "int8"} if own_c2 else {}, **extra)
    out["int4"] = dict(base="int4", layers={"input_c2": "int4"} if own_c2 else {}, **extra)
    for k in pareto_k:
        if k == 0 or (isinstance(main_masked, int) and k == main_masked):
            continue
        out[f"k{k}"] = dict(masked=int(k), **extra)
    return out


def _epochs(n: int) -> str:
    return f"{int(n)} epoch" + ("" if int(n) == 1 else "s")


def schedule(cfg: StudyConfig, decay_epochs: int = 3, decay_factor: float = 0.1,
             lr_factor: float = DEFAULT_LR_FACTOR) -> tuple[StudyConfig, StudyConfig]:
    """The two phases of the main MBU-Net's training within the preset's epoch budget:
    ``(cfg1, cfg2)`` = ``epochs - d`` epochs at ``lr = preset lr * lr_factor``, then ``d`` epochs
    at ``lr * decay_factor`` (``d = min(decay_epochs, epochs - 1)``), both with BatchNorm
    re-estimation. Binary networks trained with Adam at a constant learning rate keep flipping
    weight signs and their validation scores jump from epoch to epoch; the low-rate phase lets
    them settle (the trainer has no learning-rate schedule of its own)."""
    epochs = int(cfg.epochs)
    d = max(0, min(int(decay_epochs), epochs - 1))
    lr = cfg.lr * lr_factor
    base = cfg.replace(bn_recalibration=True)  # see unetq.train.recalibrate_batchnorm
    return base.replace(epochs=epochs - d, lr=lr), base.replace(epochs=d, lr=lr * decay_factor)


def train_main(cfg: StudyConfig, model_kw: dict, splits=None, decay_epochs: int = 0, decay_factor: float = 0.1,
               lr_factor: float = DEFAULT_LR_FACTOR):
    """The main MBU-Net (``create_model`` keywords ``model_kw``) trained from scratch. With
    ``decay_epochs=0`` (default) by the same procedure as every architecture (the preset's
    epochs cap, early stopping, learning-rate schedule and BatchNorm re-estimation) at
    ``lr * lr_factor``; with ``decay_epochs > 0`` by :func:`schedule` (constant learning rate,
    then ``decay_epochs`` at ``lr * decay_factor``, both phases cached), an ablation. Returns
    ``(model, ckpt)`` whose ``history`` covers all epochs and whose ``training`` says how it was
    trained."""
    if decay_epochs <= 0:
        run = cfg.replace(lr=cfg.lr * lr_factor)
        model, ck = load_or_train("mbu_unet", run, splits=splits, **model_kw)
        return model, dict(ck, training=_procedure(run, ck))
    cfg1, cfg2 = schedule(cfg, decay_epochs, decay_factor, lr_factor)
    model, ck1 = load_or_train("mbu_unet", cfg1, splits=splits, **model_kw)
    how = f"from scratch: {_epochs(cfg1.epochs)} lr {cfg1.lr:g}"
    if cfg2.epochs == 0:
        return model, dict(ck1, training=how)
    model, ck2 = finetune(model, ck1, cfg2, "decay", cfg2.epochs, splits, **model_kw)
    n1 = len(ck1["history"])
    history = list(ck1["history"]) + [dict(h, epoch=h["epoch"] + n1) for h in ck2["history"]]
    return model, dict(ck2, history=history, best_epoch=n1 + int(ck2["best_epoch"]),
                       training=f"{how} + {_epochs(cfg2.epochs)} lr {cfg2.lr:g}")


def _procedure(cfg: StudyConfig, ck: dict) -> str:
    stop = f", early stopping {cfg.patience}" if cfg.patience else ""
    return (f"from scratch: {len(ck['history'])} of {_epochs(cfg.epochs)}{stop}, lr {cfg.lr:g} "
            f"({cfg.lr_schedule}), seed {cfg.train_seed}")


def fp_reference(cfg: StudyConfig, splits=None):
    """The full-precision U-Net of seed 000 with the same preset (shared with ``02_unet``)."""
    model, ck = load_or_train("unet", cfg, splits=splits)
    return model, dict(ck, training=_procedure(cfg, ck))


def train_compared(cfg: StudyConfig, model_kw: dict, splits, decay_epochs: int = 0,
                   lr_factor: float = DEFAULT_LR_FACTOR) -> tuple[list, list]:
    """``(fps, mains)``: the full-precision U-Net and the main MBU-Net for every training seed
    (``train_seed`` 0 .. ``cfg.seeds`` - 1, same data), each ``(model, ckpt)``, each at its own
    learning rate chosen on validation (``unetq.studies.tuning.tuned``)."""
    fps, mains = [], []
    for s in range(cfg.seeds):
        run = cfg.replace(train_seed=s)
        fps.append(fp_reference(tuned("unet", run), splits))
        mains.append(train_main(tuned("mbu_unet", run), model_kw, splits, decay_epochs=decay_epochs,
                                lr_factor=lr_factor))
        record_training("unet", run, fps[-1][1])
        if decay_epochs <= 0:  # the common procedure: a training.csv row like every architecture's
            record_training("mbu_unet", run, mains[-1][1])
    return fps, mains


def describe_compared(fps: list, mains: list) -> str:
    lines = []
    for name, runs in (("full-precision U-Net", fps), ("MBU-Net", mains)):
        for m, ck in runs:
            t = ck["test_metrics"]
            lines.append(f"{name:22s} best epoch {ck['best_epoch']:>2} of {len(ck['history'])}: test Dice "
                         f"{t['dice']:.4f}, IoU {t['iou']:.4f}  ({ck.get('training', '')})")
    return "\n".join(lines)


def gap_summary(acc: pd.DataFrame) -> str:
    """Test Dice of the full-precision U-Net minus the MBU-Net's, per seed, and their mean and
    standard deviation (``acc``: :func:`accuracy_table`)."""
    a = acc[acc["config"].isin(["fp", "mbu"])].pivot_table(index="train_seed", columns="config", values="test_dice")
    gaps = (a["fp"] - a["mbu"]).dropna()
    spread = f" ± {gaps.std(ddof=1):.4f} (std over {len(gaps)} seeds)" if len(gaps) > 1 else " (one seed)"
    return (f"Dice drop of MBU-Net against the full-precision U-Net: {gaps.mean():+.4f}{spread}; "
            "seed 001 reports 0.029 on average")


def finetune(start_model, start_ckpt: dict, cfg: StudyConfig, label: str, epochs: int, splits, **model_kw):
    """``(model, ckpt)``: an MBU-Net variant built with ``model_kw``, initialised from
    ``start_model``'s weights (same parameters, other quantizers) and fine-tuned ``epochs``
    epochs (Adam, the preset's lr and batch, BatchNorm re-estimation), best validation loss kept,
    test split evaluated: :func:`unetq.train.load_or_train` with ``start=``, cached under
    ``checkpoints_dir()`` as ``mbu_unet_<preset>_ft<epochs>_<label>...``."""
    return load_or_train("mbu_unet", cfg.replace(epochs=int(epochs), bn_recalibration=True),
                         tag=f"ft{int(epochs)}_{label}", splits=splits, start=(start_model, start_ckpt),
                         verbose=False, **model_kw)


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
WEIGHTS = {"fp": "fp32", "int8": "int8", "int4": "int4", "binary": "binary"}


def accuracy_row(label: str, model, ckpt: dict, cfg: StudyConfig, training: str,
                 packed: dict | None = None) -> dict:
    """One row of the accuracy table (test split of ``ckpt``)."""
    kinds = getattr(model, "kinds", None) or {}
    masked = [n for n in LAYER_NAMES if kinds.get(n) == "masked"]
    t = ckpt.get("test_metrics", {})
    row = dict(**run_columns(cfg), config=label, paper_row=PAPER_LABELS.get(label, f"MBU-Net ({label})"),
               arch="unet" if label == "fp" else "mbu_unet", width=cfg.width, image_size=cfg.image_size,
               weights=WEIGHTS.get(label, "binary + masked"), activations="fp32" if label == "fp" else "binary",
               masked_layers=len(masked), masked=" ".join(masked), training=training,
               epochs=len(ckpt.get("history", [])), best_epoch=ckpt.get("best_epoch"),
               test_loss=t.get("loss"), test_iou=t.get("iou"), test_dice=t.get("dice"),
               test_iou_img=t.get("iou_img"), test_dice_img=t.get("dice_img"), test_n=t.get("n"))
    row["packed_dice"] = packed.get("dice") if packed else None
    row["packed_iou"] = packed.get("iou") if packed else None
    return row


def train_variants(cfg: StudyConfig, main_model, main_ckpt: dict, variants: dict, finetune_epochs: int, splits,
                   lr_factor: float = 0.1, main_lr_factor: float = DEFAULT_LR_FACTOR) -> dict:
    """Fine-tune every ``label -> create_model keywords`` variant from the trained main MBU-Net
    for ``finetune_epochs`` at ``preset lr * main_lr_factor * lr_factor`` (the end of the main
    run's schedule; cached); returns ``label -> (model, ckpt)``."""
    ft_cfg = cfg.replace(lr=tuned("mbu_unet", cfg).lr * main_lr_factor * lr_factor)
    out = {}
    for label, kw in tqdm(list(variants.items()), desc="MBU-Net variants", unit="config"):
        if label == "mbu":
            continue
        out[label] = finetune(main_model, main_ckpt, ft_cfg, label, finetune_epochs, splits, **kw)
    return out


def accuracy_table(cfg: StudyConfig, fps: list, mains: list, variants: dict, finetune_epochs: int,
                   splits) -> pd.DataFrame:
    """Seed 001 Table 1 on this data: the full-precision U-Net and the main MBU-Net of every
    training seed, and every variant fine-tuned from the seed-0 MBU-Net, with the packed
    engine's Dice next to PyTorch's for packable models (column ``train_seed``)."""
    bs = cfg.batch_size
    items = []
    for (fp, main) in zip(fps, mains):
        items += [("fp", fp, fp[1].get("training", "")), ("mbu", main, main[1].get("training", ""))]
    items += [(k, v, f"fine-tuned {_epochs(finetune_epochs)} from the seed-0 MBU-Net, "
                     f"lr {v[1]['train_config']['lr']:g}") for k, v in variants.items()]
    rows = []
    for label, (model, ck), how in tqdm(items, desc="accuracy", unit="config"):
        packed = None if label == "fp" else packed_metrics(model, splits["test"], bs)
        row = accuracy_row(label, model, ck, cfg, how, packed)
        row["train_seed"] = int(ck["train_config"]["seed"])
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_table(acc: pd.DataFrame, speed: pd.DataFrame, case_of: dict) -> pd.DataFrame:
    """Dice (accuracy table) against frames/s (speed table) per masked-layer count;
    ``case_of``: accuracy ``config`` -> speed ``case``."""
    sp = speed.set_index("case")
    rows = []
    for config, case in case_of.items():
        r = acc.set_index("config").loc[config]
        rows.append(dict(preset=r["preset"], dataset=r.get("dataset"), config=config, masked_layers=int(r["masked_layers"]),
                         masked=r["masked"], test_dice=r["test_dice"], test_iou=r["test_iou"],
                         packed_dice=r["packed_dice"], case=case, fps=sp.loc[case, "fps"],
                         median_ms=sp.loc[case, "median_ms"], image_size=sp.loc[case, "image_size"],
                         batch_size=sp.loc[case, "batch_size"], threads=sp.loc[case, "threads"],
                         **{k: sp.loc[case, k] for k in machine_info()}))
    return pd.DataFrame(rows).sort_values("masked_layers").reset_index(drop=True)


def packed_metrics(model, dataset, batch_size: int = 8) -> dict | None:
    """Loss/IoU/Dice of the bit-packed engine on ``dataset`` (``None`` for unpackable models)."""
    try:
        packed = pack_mbu(model)
    except (ValueError, TypeError):
        return None
    return evaluate_runner(packed, dataset, batch_size=batch_size)


def sparsity_table(models: dict, cfg: StudyConfig) -> pd.DataFrame:
    """``zero_fraction`` of every masked layer of each ``label -> model``."""
    parts = []
    for label, m in models.items():
        z = zero_fraction(m)
        z.insert(0, "config", label)
        parts.append(z)
    return stamp(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), cfg)


def stamp(df: pd.DataFrame, cfg: StudyConfig) -> pd.DataFrame:
    """``df`` with the run's ``preset`` and ``dataset`` columns first."""
    return results.lead_columns(df, run_columns(cfg))


# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------
def size_report(packed_bytes: int, model) -> str:
    """How much smaller the packed model is than its FP32 weights (``weight_bytes``)."""
    fp32 = weight_bytes(model)
    return (f"packed MBU-Net {packed_bytes:,} bytes: {fp32 / packed_bytes:.1f}x smaller than its FP32 "
            f"weights ({fp32:,} bytes)")


def speed_cases(packed_models: dict, unet, image_size: int, calib_data=None, calib_images: int | None = None,
                with_ort: bool = True, workdir: Path | None = None) -> tuple[dict, dict, dict]:
    """``(cases, sizes, notes)``: callables for the packed MBU-Nets (``label -> PackedMBU``),
    the U-Net in PyTorch FP32 and, when ONNX Runtime is available, in ONNX Runtime FP32 and
    INT8 (the deployment runners; INT8 calibrated on ``calib_images`` images of ``calib_data``,
    a dataset or array, or by default on :func:`~unetq.deploy.quantize.calibration_batch`'s random
    images; ``calib_images`` defaults to the same pixel budget, ``calibration_count``); ``sizes``
    holds each case's model size in bytes; ``notes`` why a case is missing."""
    cases, sizes, notes = {}, {}, {}
    for label, p in packed_models.items():
        cases[label] = p
        sizes[label] = p.nbytes
    cases["U-Net torch FP32"] = TorchRunner(unet, "fp32", device="cpu")
    sizes["U-Net torch FP32"] = weight_bytes(unet)
    if with_ort:
        try:
            workdir = Path(workdir or paths.models_dir() / f"mbu_speed_unet_{image_size}")
            r32 = make_runner("onnxruntime", "fp32", model=unet, image_size=image_size, workdir=workdir)
            cases["U-Net ONNX Runtime FP32"], sizes["U-Net ONNX Runtime FP32"] = r32, r32.model_size_bytes
            if calib_images is None:
                calib_images = calibration_count(image_size)
            if calib_data is None:
                calib_data = calibration_batch(image_size)
            r8 = make_runner("onnxruntime", "int8", model=unet, image_size=image_size, workdir=workdir,
                             calib_data=calib_data, calib_images=calib_images)
            cases["U-Net ONNX Runtime INT8"], sizes["U-Net ONNX Runtime INT8"] = r8, r8.model_size_bytes
        except Exception as e:  # noqa: BLE001 -- reported, not hidden
            notes["U-Net ONNX Runtime"] = f"not measured: {type(e).__name__}: {e}"
    return cases, sizes, notes


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def paper_table_a4(w_op: float = 0.5) -> tuple[pd.DataFrame, str]:
    """Seed 001 Table A.4 recomputed on the paper's backbone (``unetq.models.mbu_unet.table_a4``)
    and a sentence saying, from the table itself, how many scores match the printed ones to three
    decimals, which do not, and whether the masking order differs."""
    t = table_a4(w_op)
    same = t["score"].round(3) == t["printed"]
    off = t[~same]
    text = f"{int(same.sum())} of {len(t)} recomputed scores equal the printed Table A.4 to three decimals"
    if len(off):
        text += "; " + ", ".join(f"{r.label} computes to {r.score:.3f} where the table prints {r.printed:.3f}"
                                 for r in off.itertuples())
    text += (". The masking order is the same as the printed ranking" if (t["rank"] == t["printed_rank"]).all()
             else ". The masking order differs from the printed ranking")
    if len(off) and (t["rank"] == t["printed_rank"]).all():
        text += " (so a misprint there changes no rank)"
    cols = ["rank", "label", "ops", "params", "op_norm", "param_norm", "score", "printed", "diff"]
    return t[cols], text + "."


def plot_cost_ranking(rank: pd.DataFrame, image_size: int = 512):
    """Figure 4 + Table A.4: operations, parameters and cost score per layer (rank order)."""
    df = rank.sort_values("rank")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    y = np.arange(len(df))
    axes[0].barh(y, df["ops"] / 1e9, color="#4c72b0")
    axes[0].set_xlabel(f"operations per {image_size}×{image_size} image (GOP, mult + add)")
    axes[1].barh(y, df["params"] / 1e6, color="#55a868")
    axes[1].set_xlabel("weights (millions)")
    axes[2].barh(y, df["score"], color="#c44e52")
    axes[2].set_xlabel("cost score (Eq. 2, w_op = 0.5; dimensionless)")
    axes[0].set_yticks(y, [f"{r}. {lab}" for r, lab in zip(df["rank"], df["label"])])
    axes[0].invert_yaxis()
    axes[0].set_ylabel("layer (masking priority)")
    fig.tight_layout()
    return fig


def plot_sparsity(sp: pd.DataFrame):
    """Figure 3a: share of zero weights in every masked layer."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    configs = list(dict.fromkeys(sp["config"]))
    layers = list(dict.fromkeys(sp["label"]))
    w = 0.8 / max(1, len(configs))
    for i, c in enumerate(configs):
        d = sp[sp["config"] == c].set_index("label").reindex(layers)
        ax.bar(np.arange(len(layers)) + i * w, 100 * d["zero_fraction"], width=w, label=c)
    ax.set_xticks(np.arange(len(layers)) + w * (len(configs) - 1) / 2, layers, rotation=30)
    ax.set_ylabel("weights equal to zero (%)")
    ax.set_xlabel("masked layer")
    ax.set_ylim(0, 100)
    ax.legend(title="configuration")
    fig.tight_layout()
    return fig


def plot_pareto(pareto: pd.DataFrame, refs: pd.DataFrame | None = None, image_size: int | None = None):
    """Figure 7: test Dice against frames per second (batch 1) as layers are masked in cost order."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    d = pareto.sort_values("masked_layers")
    sc = ax.scatter(d["fps"], d["test_dice"], c=d["masked_layers"], cmap="viridis", s=60, zorder=3)
    ax.plot(d["fps"], d["test_dice"], color="0.7", lw=1, zorder=2)
    for _, r in d.iterrows():
        ax.annotate(f"k={int(r['masked_layers'])}", (r["fps"], r["test_dice"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    if refs is not None:
        for i, (_, r) in enumerate(refs.sort_values("fps").iterrows()):
            colour = format_colour(str(r["case"]))
            ax.scatter([r["fps"]], [r["test_dice"]], marker="s", color=colour, zorder=3)
            label = str(r["case"]).replace("U-Net ", "").replace("ONNX Runtime", "ORT")
            ax.annotate(label, (r["fps"], r["test_dice"]), textcoords="offset points",
                        xytext=(4, 6 + 10 * (i % 3)), fontsize=8, color=colour)  # staggered: no overlap
    fig.colorbar(sc, ax=ax, label="masked layers (cost order)")
    size = f", {image_size}×{image_size}" if image_size else ""
    ax.set_xlabel(f"frames per second (batch 1{size}, this CPU)")
    ax.set_ylabel("test Dice (split level)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_speed(speed: pd.DataFrame):
    """Median latency (ms per batch) with the interquartile range as error bars, each bar in its
    engine's colour (:data:`unetq.studies.figures.FORMAT_COLOURS`), the legend outside."""
    d = speed.sort_values("median_ms")
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(d) + 1.2))
    y = np.arange(len(d))
    err = np.vstack([d["median_ms"] - d["q1_ms"], d["q3_ms"] - d["median_ms"]])
    colours = [format_colour(c) for c in d["case"]]
    ax.barh(y, d["median_ms"], xerr=err, color=colours, capsize=3)
    for key in dict.fromkeys(format_key(c) or "other" for c in d["case"]):
        ax.barh([0], [0], color=format_colour(key), label=key)  # legend entries, nothing drawn
    ax.set_yticks(y, d["case"])
    ax.invert_yaxis()
    b = int(d["batch_size"].iloc[0]) if len(d) else 1
    ax.set_xlabel(f"latency per batch of {b} (ms, median; bars: interquartile range)")
    ax.set_title("Latency of the packed MBU-Net engine and its peers")
    ax.grid(alpha=0.3, axis="x")
    legend_outside(fig, [ax], title="engine")
    return fig


def elapsed(t0: float) -> str:
    return f"{time.perf_counter() - t0:.0f} s"


def exactness_report(model, dataset, n: int = 4, masked_form: str = "xor_and") -> dict:
    """Compare the packed engine with PyTorch's eval forward on the first ``n`` images of
    ``dataset``: every binary activation map (forward hooks on the ``BNSign`` modules) and the
    logits. Returns ``maps``, ``identical`` (all maps bit-equal), ``mismatched_maps``,
    ``logits_close`` and ``max_abs_logit_diff``."""
    x = torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))]).float()
    model = model.eval().cpu()
    acts = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: acts.__setitem__(name, out.numpy()))
             for name, m in model.named_modules() if isinstance(m, BNSign)]
    try:
        with torch.no_grad():
            ref = model(x).numpy()
    finally:
        for h in hooks:
            h.remove()
    packed = pack_mbu(model, masked_form=masked_form)
    got = packed.layer_outputs(x.numpy())
    bad = [k for k in acts if k not in got or not np.array_equal(got[k], acts[k])]
    logits = packed(x.numpy())
    diff = float(np.abs(logits - ref).max())
    return dict(maps=len(acts), identical=not bad, mismatched_maps=bad,
                logits_close=bool(diff <= 1e-5 * max(1.0, float(np.abs(ref).max()))), max_abs_logit_diff=diff)
