"""The MBU-Net study of notebook ``05_mbu_net``: trained configurations, the accuracy table
(seed 001 Table 1), sparsity (Figure 3a), the Pareto frontier of Dice against frames per second
(Figure 7) and the packed engine's speed against PyTorch FP32 and ONNX Runtime INT8.

Training budget. The main MBU-Net (cost-aware masking of the ``k`` cheapest layers) and the
full-precision U-Net it is compared with are trained from scratch with the same preset (width,
image size, epochs, batch, Adam). Every other configuration (pure binary, INT8/INT4 weights,
other numbers of masked layers) starts from the trained MBU-Net's latent weights and is
fine-tuned for ``finetune_epochs`` with its own quantizers: a shared start that keeps the
notebook inside its time budget (seed 001 trains each configuration from scratch). The tables
say which row was trained how (``training`` column).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import paths
from ..io import machine_info, upsert_csv

PAPER_LABELS = {"fp": "Full precision", "int8": "INT8", "int4": "INT4", "mbu": "MBU-Net", "binary": "Binary"}


# --------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------
#: The MBU-Net input block of the study (notebook 05's ``stem`` parameter, the benchmarks).
#: ``"thermo"``: the first conv's output binarised at 4 thresholds per channel. Measured on
#: the built-in data (quick preset, width 16, 12 epochs; full-precision U-Net test Dice 0.546):
#: binary stem 0.430, thermometer 0.522, float stem (A.2) 0.526, int8 stem 0.501; end to end
#: at 256x256 the thermometer stem costs a fraction of a millisecond, the float stem's second
#: float conv several (``python -m unetq.bitpack.benchmark --stem ...``).
DEFAULT_STEM = "thermo"


#: Learning rate of the main MBU-Net relative to the preset's (the full-precision U-Net's). On
#: the built-in data (quick preset, 12 epochs, Adam, 1 thread) the two learning rates tried gave:
#: U-Net 0.546 at 1e-3, 0.415 at 2e-3; MBU-Net 0.518 at 1e-3, 0.552 at 2e-3. Binary latent
#: weights must cross zero to change a sign, so the binary network wants the larger step; each
#: model is compared at the better of the two (seed 001 also trains its quantized models with
#: other settings than the full-precision one). Epochs, data, batch and image size are shared.
DEFAULT_LR_FACTOR = 2.0


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


def _normalise(obj):
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def schedule(cfg: dict, decay_epochs: int = 3, decay_factor: float = 0.1,
             lr_factor: float = DEFAULT_LR_FACTOR) -> tuple[dict, dict]:
    """The two phases of the main MBU-Net's training within the preset's epoch budget:
    ``(cfg1, cfg2)`` = ``epochs - d`` epochs at ``lr = preset lr * lr_factor``, then ``d`` epochs
    at ``lr * decay_factor`` (``d = min(decay_epochs, epochs - 1)``). Binary networks trained with
    Adam at a constant learning rate keep flipping weight signs and their validation scores
    jump from epoch to epoch; the low-rate phase lets them settle (the trainer has no
    learning-rate schedule of its own)."""
    from ..presets import get_preset

    epochs = int(cfg["epochs"])
    d = max(0, min(int(decay_epochs), epochs - 1))
    base = {k: v for k, v in cfg.items() if k != "preset"}
    base["bn_recalibration"] = True  # see unetq.train.recalibrate_batchnorm
    lr = cfg["lr"] * lr_factor
    cfg1 = get_preset(cfg["preset"], **{**base, "epochs": epochs - d, "lr": lr})
    cfg2 = get_preset(cfg["preset"], **{**base, "epochs": d, "lr": lr * decay_factor})
    return cfg1, cfg2


def train_main(cfg: dict, model_kw: dict, splits=None, decay_epochs: int = 3, decay_factor: float = 0.1,
               lr_factor: float = DEFAULT_LR_FACTOR):
    """The main MBU-Net (``create_model`` keywords ``model_kw``) trained from scratch within the
    preset's epochs (:func:`schedule`: constant learning rate, then ``decay_epochs`` at
    ``lr * decay_factor``); both phases cached. Returns ``(model, ckpt)`` whose ``history``
    covers all epochs and whose ``training`` says how it was trained."""
    from ..train import load_or_train

    cfg1, cfg2 = schedule(cfg, decay_epochs, decay_factor, lr_factor)
    model, ck1 = load_or_train("mbu_unet", cfg1, splits=splits, **model_kw)
    how = f"from scratch: {_epochs(cfg1['epochs'])} lr {cfg1['lr']:g}"
    if cfg2["epochs"] == 0:
        return model, dict(ck1, training=how)
    if splits is None:
        from ..data import splits_from_preset

        splits = splits_from_preset(cfg)
    model, ck2 = finetune(model, ck1, cfg2, "decay", cfg2["epochs"], splits, **model_kw)
    n1 = len(ck1["history"])
    history = list(ck1["history"]) + [dict(h, epoch=h["epoch"] + n1) for h in ck2["history"]]
    return model, dict(ck2, history=history, best_epoch=n1 + int(ck2["best_epoch"]),
                       training=f"{how} + {_epochs(cfg2['epochs'])} lr {cfg2['lr']:g}")


def fp_reference(cfg: dict, splits=None):
    """The full-precision U-Net of seed 000 with the same preset (shared with ``02_unet``)."""
    from ..train import load_or_train

    return load_or_train("unet", cfg, splits=splits)


def finetune(start_model, start_ckpt: dict, cfg: dict, label: str, epochs: int, splits, **model_kw):
    """``(model, ckpt)``: an MBU-Net variant built with ``model_kw`` from ``start_model``'s
    weights, fine-tuned ``epochs`` epochs (Adam, the preset's lr and batch), best validation
    loss kept, test split evaluated. Cached under ``checkpoints_dir()`` and reused when the start
    checkpoint, the variant and the training settings are the same."""
    from ..io import save_torch
    from ..models import create_model
    from ..train import TrainConfig, checkpoint_path, evaluate, fit, load_checkpoint, read_checkpoint

    tcfg = TrainConfig.from_preset(cfg, epochs=int(epochs), bn_recalibration=True)
    identity = _normalise(dict(start=start_ckpt.get("identity"), start_best=start_ckpt.get("best_val_loss"),
                               model=model_kw, train=tcfg.identity(), label=label))
    path = checkpoint_path("mbu_unet", cfg, tag=f"ft{int(epochs)}_{label}", **model_kw)
    if path.exists():
        ck = read_checkpoint(path)
        if _normalise(ck.get("identity")) == identity and "test_metrics" in ck:
            model, ck = load_checkpoint(path)
            return model, ck
    torch.manual_seed(tcfg.seed)
    model = create_model("mbu_unet", width=cfg["width"], **model_kw)
    model.load_state_dict(start_model.state_dict(), strict=True)  # same parameters, other quantizers
    result = fit(model, splits, tcfg, path, meta=dict(finetuned_from=start_ckpt.get("checkpoint_name")))
    test = evaluate(model, splits["test"], batch_size=tcfg.batch_size, device=tcfg.device)
    ck = dict(model_config=model.config, state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()},
              train_config=tcfg.to_dict(), history=result.history.to_dict("records"),
              best_epoch=result.best_epoch, best_val_loss=result.best_val_loss, identity=identity,
              test_metrics={k: float(v) for k, v in test.items()}, total_time_s=result.total_time_s,
              finetuned_from=start_ckpt.get("checkpoint_name"), machine=machine_info())
    save_torch(_normalise({k: v for k, v in ck.items() if k != "state_dict"}) | {"state_dict": ck["state_dict"]},
               path)
    return model.eval(), ck


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
WEIGHTS = {"fp": "fp32", "int8": "int8", "int4": "int4", "binary": "binary"}


def accuracy_row(label: str, model, ckpt: dict, cfg: dict, training: str, packed: dict | None = None) -> dict:
    """One row of the accuracy table (test split of ``ckpt``)."""
    from ..models.mbu_unet import LAYER_NAMES

    kinds = getattr(model, "kinds", None) or {}
    masked = [n for n in LAYER_NAMES if kinds.get(n) == "masked"]
    t = ckpt.get("test_metrics", {})
    row = dict(preset=cfg["preset"], config=label, paper_row=PAPER_LABELS.get(label, f"MBU-Net ({label})"),
               arch="unet" if label == "fp" else "mbu_unet", width=cfg["width"], image_size=cfg["image_size"],
               weights=WEIGHTS.get(label, "binary + masked"), activations="fp32" if label == "fp" else "binary",
               masked_layers=len(masked), masked=" ".join(masked), training=training,
               epochs=len(ckpt.get("history", [])), best_epoch=ckpt.get("best_epoch"),
               test_loss=t.get("loss"), test_iou=t.get("iou"), test_dice=t.get("dice"),
               test_iou_img=t.get("iou_img"), test_dice_img=t.get("dice_img"), test_n=t.get("n"))
    row["packed_dice"] = packed.get("dice") if packed else None
    row["packed_iou"] = packed.get("iou") if packed else None
    return row


def train_variants(cfg: dict, main_model, main_ckpt: dict, variants: dict, finetune_epochs: int, splits,
                   lr_factor: float = 0.1, main_lr_factor: float = DEFAULT_LR_FACTOR) -> dict:
    """Fine-tune every ``label -> create_model keywords`` variant from the trained main MBU-Net
    for ``finetune_epochs`` at ``preset lr * main_lr_factor * lr_factor`` (the end of the main
    run's schedule; cached); returns ``label -> (model, ckpt)``."""
    from tqdm.auto import tqdm

    from ..presets import get_preset

    ft_cfg = get_preset(cfg["preset"], **{**{k: v for k, v in cfg.items() if k != "preset"},
                                          "lr": cfg["lr"] * main_lr_factor * lr_factor})
    out = {}
    for label, kw in tqdm(list(variants.items()), desc="MBU-Net variants", unit="config"):
        if label == "mbu":
            continue
        out[label] = finetune(main_model, main_ckpt, ft_cfg, label, finetune_epochs, splits, **kw)
    return out


def accuracy_table(cfg: dict, fp, main, variants: dict, finetune_epochs: int, splits) -> pd.DataFrame:
    """Seed 001 Table 1 on this data: the full-precision U-Net, the main MBU-Net and every
    fine-tuned variant, with the packed engine's Dice next to PyTorch's for packable models."""
    from tqdm.auto import tqdm

    bs = cfg["batch_size"]
    rows = [accuracy_row("fp", fp[0], fp[1], cfg, f"from scratch: {_epochs(cfg['epochs'])} lr {cfg['lr']:g}")]
    items = [("mbu", main, main[1].get("training", "from scratch (preset)"))] + [
        (k, v, f"fine-tuned {_epochs(finetune_epochs)} from the MBU-Net, lr {v[1]['train_config']['lr']:g}")
        for k, v in variants.items()]
    for label, (model, ck), how in tqdm(items, desc="accuracy", unit="config"):
        rows.append(accuracy_row(label, model, ck, cfg, how, packed_metrics(model, splits["test"], bs)))
    return pd.DataFrame(rows)


def pareto_table(acc: pd.DataFrame, speed: pd.DataFrame, case_of: dict) -> pd.DataFrame:
    """Dice (accuracy table) against frames/s (speed table) per masked-layer count;
    ``case_of``: accuracy ``config`` -> speed ``case``."""
    sp = speed.set_index("case")
    rows = []
    for config, case in case_of.items():
        r = acc.set_index("config").loc[config]
        rows.append(dict(preset=r["preset"], config=config, masked_layers=int(r["masked_layers"]),
                         masked=r["masked"], test_dice=r["test_dice"], test_iou=r["test_iou"],
                         packed_dice=r["packed_dice"], case=case, fps=sp.loc[case, "fps"],
                         median_ms=sp.loc[case, "median_ms"], image_size=sp.loc[case, "image_size"],
                         batch_size=sp.loc[case, "batch_size"], threads=sp.loc[case, "threads"],
                         **{k: sp.loc[case, k] for k in machine_info()}))
    return pd.DataFrame(rows).sort_values("masked_layers").reset_index(drop=True)


def packed_metrics(model, dataset, batch_size: int = 8) -> dict | None:
    """Loss/IoU/Dice of the bit-packed engine on ``dataset`` (``None`` for unpackable models)."""
    from ..deploy import evaluate_runner
    from .engine import pack_mbu

    try:
        packed = pack_mbu(model)
    except (ValueError, TypeError):
        return None
    return evaluate_runner(packed, dataset, batch_size=batch_size)


def sparsity_table(models: dict, cfg: dict) -> pd.DataFrame:
    """``zero_fraction`` of every masked layer of each ``label -> model``."""
    from ..models.mbu_unet import zero_fraction

    parts = []
    for label, m in models.items():
        z = zero_fraction(m)
        z.insert(0, "config", label)
        parts.append(z)
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    df.insert(0, "preset", cfg["preset"])
    return df


def write_table(df: pd.DataFrame, name: str, key: list[str]) -> pd.DataFrame:
    """Merge ``df`` into ``results_dir()/name`` (rows with the same ``key`` replaced)."""
    return upsert_csv(df, paths.results_dir() / name, key=key)


# --------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------
def set_threads(n: int | None = None) -> int:
    """Same thread count for torch, ONNX Runtime (sessions created afterwards) and numba."""
    import numba

    from ..bench import pin_threads

    n = pin_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return n


def measure_speed(cases: dict, image_size: int, batch_size: int = 1, repeats: int = 20, warmup: int = 3,
                  time_cap_s: float = 120.0, seed: int = 0, threads: int | None = None,
                  block: int = 5) -> pd.DataFrame:
    """Latency of ``name -> callable(x)`` on one random batch, timed in interleaved blocks
    (``unetq.bench.measure_blocks``: each case in its steady state, background load spread over
    all). One row per case: median, spread, frames/s, plus the machine columns."""
    from ..bench import measure_blocks

    threads = set_threads(threads)
    x = np.random.default_rng(seed).random((batch_size, 3, image_size, image_size), dtype=np.float32)
    stats = measure_blocks({k: (f, lambda: x) for k, f in cases.items()}, repeats=repeats, warmup=warmup,
                           block=block, time_cap_s=time_cap_s)
    rows = []
    info = machine_info()
    for name, s in stats.items():
        rows.append(dict(case=name, batch_size=batch_size, image_size=image_size, threads=threads,
                         median_ms=1e3 * s["median_s"], q1_ms=1e3 * s["q1_s"], q3_ms=1e3 * s["q3_s"],
                         iqr_ms=1e3 * s["iqr_s"], p10_ms=1e3 * s["p10_s"], p90_ms=1e3 * s["p90_s"],
                         repeats=s["n"], method=f"interleaved blocks of {block}",
                         fps=batch_size / s["median_s"], **info))
    return pd.DataFrame(rows)


def torch_callable(model):
    model = model.eval()

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def speed_cases(packed_models: dict, unet, image_size: int, calib_data=None, calib_images: int = 32,
                with_ort: bool = True, workdir: Path | None = None) -> tuple[dict, dict, dict]:
    """``(cases, sizes, notes)``: callables for the packed MBU-Nets (``label -> PackedMBU``),
    the U-Net in PyTorch FP32 and, when ONNX Runtime is available, in ONNX Runtime FP32 and
    INT8 (engineer D's runners; INT8 calibrated on ``calib_data``); ``sizes`` holds each case's
    model size in bytes; ``notes`` why a case is missing."""
    cases, sizes, notes = {}, {}, {}
    for label, p in packed_models.items():
        cases[label] = p
        sizes[label] = p.nbytes
    cases["U-Net torch FP32"] = torch_callable(unet)
    sizes["U-Net torch FP32"] = sum(t.numel() * t.element_size() for t in unet.state_dict().values())
    if with_ort:
        try:
            from ..deploy import make_runner

            workdir = Path(workdir or paths.models_dir() / f"mbu_speed_unet_{image_size}")
            r32 = make_runner("onnxruntime", "fp32", model=unet, image_size=image_size, workdir=workdir)
            cases["U-Net ONNX Runtime FP32"], sizes["U-Net ONNX Runtime FP32"] = r32, r32.model_size_bytes
            if calib_data is None:
                calib_data = np.random.default_rng(0).random((calib_images, 3, image_size, image_size),
                                                             dtype=np.float32)
            r8 = make_runner("onnxruntime", "int8", model=unet, image_size=image_size, workdir=workdir,
                             calib_data=calib_data, calib_images=calib_images)
            cases["U-Net ONNX Runtime INT8"], sizes["U-Net ONNX Runtime INT8"] = r8, r8.model_size_bytes
        except Exception as e:  # noqa: BLE001 -- reported, not hidden
            notes["U-Net ONNX Runtime"] = f"not measured: {type(e).__name__}: {e}"
    return cases, sizes, notes


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def plot_cost_ranking(rank: pd.DataFrame, image_size: int = 512):
    """Figure 4 + Table A.4: operations, parameters and cost score per layer (rank order)."""
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

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
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    d = pareto.sort_values("masked_layers")
    sc = ax.scatter(d["fps"], d["test_dice"], c=d["masked_layers"], cmap="viridis", s=60, zorder=3)
    ax.plot(d["fps"], d["test_dice"], color="0.7", lw=1, zorder=2)
    for _, r in d.iterrows():
        ax.annotate(f"k={int(r['masked_layers'])}", (r["fps"], r["test_dice"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)
    if refs is not None:
        for i, (_, r) in enumerate(refs.sort_values("fps").iterrows()):
            ax.scatter([r["fps"]], [r["test_dice"]], marker="s", color="#c44e52", zorder=3)
            label = str(r["case"]).replace("U-Net ", "").replace("ONNX Runtime", "ORT")
            ax.annotate(label, (r["fps"], r["test_dice"]), textcoords="offset points",
                        xytext=(4, 6 + 10 * (i % 3)), fontsize=8, color="#c44e52")  # staggered: no overlap
    fig.colorbar(sc, ax=ax, label="masked layers (cost order)")
    size = f", {image_size}×{image_size}" if image_size else ""
    ax.set_xlabel(f"frames per second (batch 1{size}, this CPU)")
    ax.set_ylabel("test Dice (split level)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_speed(speed: pd.DataFrame):
    """Median latency (ms per batch) with the interquartile range as error bars."""
    import matplotlib.pyplot as plt

    d = speed.sort_values("median_ms")
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(d) + 1.2))
    y = np.arange(len(d))
    err = np.vstack([d["median_ms"] - d["q1_ms"], d["q3_ms"] - d["median_ms"]])
    ax.barh(y, d["median_ms"], xerr=err, color="#4c72b0", capsize=3)
    ax.set_yticks(y, d["case"])
    ax.invert_yaxis()
    b = int(d["batch_size"].iloc[0]) if len(d) else 1
    ax.set_xlabel(f"latency per batch of {b} (ms, median; bars: interquartile range)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def elapsed(t0: float) -> str:
    return f"{time.perf_counter() - t0:.0f} s"


def exactness_report(model, dataset, n: int = 4, masked_form: str = "xor_and") -> dict:
    """Compare the packed engine with PyTorch's eval forward on the first ``n`` images of
    ``dataset``: every binary activation map (forward hooks on the ``BNSign`` modules) and the
    logits. Returns ``maps``, ``identical`` (all maps bit-equal), ``mismatched_maps``,
    ``logits_close`` and ``max_abs_logit_diff``."""
    from ..models.binary_layers import BNSign
    from .engine import pack_mbu

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
