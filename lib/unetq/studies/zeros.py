"""Do the zeros emerge? Seed 001's sparsity claim tested (``python -m unetq.cli.mbu_zeros``).

Seed 001 says the zero state of masked layers is "automatically applied" by STE training and
that trained masked layers hold more than 80 % zeros on average, many above 90 % (Figure 3a).
The study's default ternary rule (``zeros="ratio"``: zero where ``|w| <= 0.7 mean|w|``, TWN)
cannot test that: its threshold follows the weights, so the zero fraction stays near 40 %
whatever training does. ``zeros="emergent"`` fixes the threshold on the latent weights instead
(zero where ``|w| <= 0.5``, latent weights starting uniform on [-1, 1], so half are zero at
initialisation), so how many weights end up zero is decided by training alone.
``"emergent-torch-init"`` is the same rule with the latent weights starting from PyTorch's own
layer initialisation (bound 1/sqrt(fan_in), far inside the dead zone): every masked weight starts
at zero and becomes +-1 only when training pushes it out, which is what a model built from
standard layers would start from. Each run's zero fractions at initialisation are recorded as
epoch 0.

:func:`run` trains MBU-Nets from scratch under both rules with the main study's procedure (the
preset's epoch cap, early stopping, schedule and BatchNorm re-estimation; the MBU-Net's chosen
learning rate from the committed sweep; the preset's training seeds) and records, per run,
epoch and masked layer, the zero fraction, with the run's test Dice. Runs are cached
checkpoints like every other (the ratio rule with the study's main configuration is the main
MBU-Net of notebook 05, so it is loaded, not retrained). Results: ``mbu_zeros.csv``.
"""
from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import results
from ..config import StudyConfig
from ..data import run_columns, splits_from_preset
from ..models import create_model
from ..models.mbu_unet import DEFAULT_BACKBONE, LAYER_LABELS
from ..train import load_or_train
from .mbu import DEFAULT_STEM
from .tuning import chosen_lr

#: ternary rule -> ``create_model`` keywords. ``"emergent-torch-init"``: the emergent rule with
#: latent weights starting from PyTorch's own initialisation (all inside the dead zone), what a
#: model built from standard layers, as seed 001's presumably was, starts from.
RULES = {"ratio": {}, "emergent": dict(zeros="emergent"),
         "emergent-torch-init": dict(zeros="emergent", latent_init="torch")}


def model_kw(rule: str, masked: int, backbone: str = DEFAULT_BACKBONE, stem: str = DEFAULT_STEM) -> dict:
    """``create_model("mbu_unet", ...)`` keywords of one configuration; the main study's
    (ratio rule, default backbone) spelled exactly as notebook 05 spells them, so its
    checkpoints are shared."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    kw = dict(masked=int(masked), **({} if stem == "binary" else dict(stem=stem)), **RULES[rule])
    if backbone != DEFAULT_BACKBONE:
        kw["backbone"] = backbone
    return kw


def init_zero_fractions(cfg: StudyConfig, kw: dict) -> dict[str, float]:
    """``{layer: zero fraction}`` of the masked layers as training starts: the model built the
    way ``unetq.train.runs`` builds it (``torch.manual_seed(train_seed)``, then ``create_model``)."""
    torch.manual_seed(cfg.train_seed)
    return create_model("mbu_unet", width=cfg.width, **kw).zero_fractions()


def run_rows(ckpt: dict, rule: str, masked: int, backbone: str, cfg: StudyConfig,
             init: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per epoch and masked layer of one trained run (``ckpt``): its zero fraction
    then (epoch 0: ``init``, the fractions at initialisation), with the run's metrics (best
    epoch, test Dice) on every row."""
    rows = []
    for rec in [dict(epoch=0, zeros_by_layer=init)] * bool(init) + list(ckpt["history"]):
        for layer, frac in (rec.get("zeros_by_layer") or {}).items():
            rows.append(dict(epoch=int(rec["epoch"]), layer=layer, label=LAYER_LABELS.get(layer, layer),
                             zero_fraction=float(frac)))
    t = ckpt.get("test_metrics", {})
    df = pd.DataFrame(rows, columns=["epoch", "layer", "label", "zero_fraction"])
    meta = dict(**run_columns(cfg), backbone=backbone, rule=rule, masked_layers=int(masked), width=cfg.width,
                image_size=cfg.image_size, lr=cfg.lr, train_seed=cfg.train_seed, best_epoch=int(ckpt["best_epoch"]),
                epochs_trained=len(ckpt["history"]), test_dice=float(t.get("dice", float("nan"))),
                test_iou=float(t.get("iou", float("nan"))), checkpoint=ckpt.get("checkpoint_name", ""))
    df = results.lead_columns(df, meta)
    df["is_best_epoch"] = df["epoch"] == df["best_epoch"]
    return df


def run(cfg: StudyConfig, rules=("emergent", "ratio"), masked=(4,), backbone: str = DEFAULT_BACKBONE,
        seeds: int | None = None, splits=None, record: bool = True) -> pd.DataFrame:
    """Train (or load) every rule x masked-layer count x seed and return their
    :func:`run_rows`, upserted into ``mbu_zeros.csv`` run by run when ``record``. A run trained before the
    zero fraction was recorded per epoch (no ``zeros_by_layer`` in its history) contributes no
    rows and is reported."""
    lr, _ = chosen_lr("mbu_unet", cfg)
    base = cfg.replace(lr=lr)
    splits = splits if splits is not None else splits_from_preset(base)
    parts, missing = [], []
    jobs = [(r, int(k), s) for r in rules for k in masked for s in range(seeds or cfg.seeds)]
    for rule, k, seed in tqdm(jobs, desc="zeros: rule x masked x seed", unit="run"):
        run_cfg = base.replace(train_seed=seed)
        kw = model_kw(rule, k, backbone)
        _, ck = load_or_train("mbu_unet", run_cfg, splits=splits, **kw)
        df = run_rows(ck, rule, k, backbone, run_cfg, init_zero_fractions(run_cfg, kw))
        if df.empty:
            missing.append(ck.get("checkpoint_name", "?"))
            continue
        if record:  # run by run: a killed study keeps every run it finished
            results.write(results.MBU_ZEROS, df)
        parts.append(df)
    if missing:
        print(f"no per-epoch zero fractions in {', '.join(missing)} (trained before they were recorded)")
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, rule and masked-layer count: at each run's best epoch, the zero fraction
    averaged over masked layers (seed 001's "on average, each layer"), its smallest and largest
    layer, the share of layers above 80 % and 90 %, and the test Dice; mean and standard
    deviation over seeds."""
    best = df[df["is_best_epoch"]]
    if best.empty:
        return pd.DataFrame()
    keys = ["backbone", "rule", "masked_layers"]
    start = df[df["epoch"] == 0].groupby(keys + ["train_seed"])["zero_fraction"].mean().rename("at_init")
    per_run = best.groupby(keys + ["train_seed"]).agg(
        zero_fraction=("zero_fraction", "mean"), min_layer=("zero_fraction", "min"),
        max_layer=("zero_fraction", "max"), above_80=("zero_fraction", lambda v: float((v > 0.8).mean())),
        above_90=("zero_fraction", lambda v: float((v > 0.9).mean())), test_dice=("test_dice", "first"),
        best_epoch=("best_epoch", "first")).join(start).reset_index()
    return results.seed_summary(per_run, keys, ["at_init", "zero_fraction", "min_layer", "max_layer", "above_80",
                                                "above_90", "test_dice", "best_epoch"])


def verdict(summ: pd.DataFrame, claim: float = 0.8) -> str:
    """One sentence per configuration: does the mean zero fraction per masked layer exceed
    seed 001's ``claim`` (80 %), and by how much its seeds vary."""
    if summ.empty:
        return "not run yet: python -m unetq.cli.mbu_zeros --preset <preset>"
    lines = []
    for _, r in summ.iterrows():
        m, s = r["zero_fraction_mean"], r["zero_fraction_std"]
        spread = f" ± {s:.1%}" if s == s else ""
        side = "above" if m > claim else "below"
        init = r.get("at_init_mean", float("nan"))
        start = f" (from {init:.1%} at initialisation)" if init == init else ""
        lines.append(f"{r['rule']} rule, {r['backbone']} backbone, {int(r['masked_layers'])} masked layers: "
                     f"{m:.1%}{spread} zeros per masked layer on average{start} ({int(r['seeds'])} seed(s)), "
                     f"{side} seed 001's {claim:.0%}; test Dice {r['test_dice_mean']:.4f}")
    return "\n".join(lines)


def recorded(cfg: StudyConfig) -> tuple[pd.DataFrame, str]:
    """``(summary, verdict)`` of this preset's and dataset's rows of ``mbu_zeros.csv`` (what
    notebook 05 shows; the command that fills it when there are none)."""
    rows = recorded_rows(cfg)
    if rows.empty:
        return pd.DataFrame(), (f"not run yet: no rows for preset {cfg.preset}; run `python -m "
                                f"unetq.cli.mbu_zeros --preset {cfg.preset}`")
    s = summary(rows)
    return s, verdict(s)


def plot(df: pd.DataFrame):
    """Zero fraction of each masked layer against the epoch (0: at initialisation), one panel per
    rule, mean over seeds with its range shaded; seed 001's 80 % drawn.
    ``df``: rows of :func:`run` or ``mbu_zeros.csv``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    rules = [r for r in RULES if r in set(df["rule"])]
    fig, axes = plt.subplots(1, len(rules), figsize=(4.6 * len(rules) + 1.5, 3.6), sharey=True, squeeze=False)
    order = [v for v in LAYER_LABELS.values() if v in set(df["label"])] + sorted(
        set(df["label"]) - set(LAYER_LABELS.values()))
    for i, (ax, rule) in enumerate(zip(axes[0], rules)):
        d = df[df["rule"] == rule]
        sns.lineplot(d, x="epoch", y="zero_fraction", hue="label", hue_order=order, errorbar=("pi", 100), ax=ax,
                     legend=i == len(rules) - 1)
        ax.axhline(0.8, color="k", ls="--", lw=0.8)
        ax.set(title=f"{rule} rule ({d['train_seed'].nunique()} seed(s))", xlabel="epoch (0: initialisation)",
               ylabel="zero fraction of the masked layer" if i == 0 else "", ylim=(0, 1))
    leg = axes[0][-1].get_legend()
    if leg is not None:
        leg.set_bbox_to_anchor((1.02, 0.5))
        leg.set_loc("center left")
        leg.set_title("masked layer")
    fig.suptitle("Zeros of the masked layers during training (dashed: seed 001's 80 %)", fontsize=10)
    fig.tight_layout()
    return fig


def recorded_rows(cfg: StudyConfig) -> pd.DataFrame:
    """This preset's and dataset's rows of ``mbu_zeros.csv`` (empty when there are none)."""
    got = results.read(results.MBU_ZEROS, **run_columns(cfg))
    return got.df if got.df is not None else pd.DataFrame()
