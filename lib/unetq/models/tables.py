"""Per-block tables of a model: parameters, output shapes and MACs (``param_table``, the rows of
the papers' architecture tables), per-block execution time (``profile_layers``, seed 002 Tables
5-6), the bytes of its weights (``weight_bytes``). ``paper_param_table`` gives the counts the
papers print, for side-by-side comparison.

Every model in ``unetq.models`` has ``model.blocks() -> [(name, module), ...]``; a block is a
direct child that the model's forward calls once. Both tables hook those modules."""
from __future__ import annotations

import contextlib
from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if not hasattr(model, "blocks"):
        raise TypeError(f"{type(model).__name__} has no blocks() method; build it with unetq.models.create_model")
    return list(model.blocks())


def _in_channels(model: nn.Module, in_channels: int | None) -> int:
    if in_channels is not None:
        return in_channels
    cfg = getattr(model, "config", None) or {}
    return int(cfg.get("in_channels", getattr(model, "in_channels", 3)))


def _last_tensor(out) -> torch.Tensor:
    """The tensor a block hands on: the block output, or the last tensor of a tuple (U-Net Down
    blocks return ``(skip, pooled)``; the papers list the pooled shape)."""
    if isinstance(out, torch.Tensor):
        return out
    tensors = [t for t in out if isinstance(t, torch.Tensor)] if isinstance(out, (tuple, list)) else []
    if not tensors:
        raise TypeError(f"block returned {type(out).__name__}, expected a tensor or a tuple of tensors")
    return tensors[-1]


def _shape_str(t: torch.Tensor) -> str:
    return str([int(d) for d in t.shape[1:]])


@contextlib.contextmanager
def _block_hooks(blocks, pre: Callable[[str], None], post: Callable[[str, object], None]):
    handles = []
    try:
        for name, mod in blocks:
            handles.append(mod.register_forward_pre_hook(lambda m, a, name=name: pre(name)))
            handles.append(mod.register_forward_hook(lambda m, a, out, name=name: post(name, out)))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run a block with ``model`` in eval mode, restoring its training mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def param_table(model: nn.Module, image_size: int = 256, in_channels: int | None = None,
                batch_size: int = 1) -> pd.DataFrame:
    """One row per block: ``block, output_shape, params, macs`` and a final ``Total`` row.

    ``output_shape`` is the block's output without the batch dimension, e.g. ``"[64, 128, 128]"``;
    ``params`` the trainable+frozen parameters of the block (BatchNorm running statistics are
    buffers, not parameters, as in the papers); ``macs`` the multiply-accumulates of one forward
    pass of ``batch_size`` images of ``image_size``² counted by ``torch.utils.flop_counter``
    (FLOPs / 2 of convolutions, transposed convolutions and matmuls; BatchNorm, ReLU, pooling and
    concatenation are not counted). The forward runs on the ``meta`` device (shapes only, no
    arithmetic), falling back to a real no-grad forward for models that cannot run on ``meta``.
    """
    blocks = _blocks(model)
    cin = _in_channels(model, in_channels)
    records: dict[str, dict] = {}
    fc_box: list[FlopCounterMode] = []
    start: dict[str, int] = {}

    def pre(name: str) -> None:
        start[name] = fc_box[0].get_total_flops()

    def post(name: str, out) -> None:
        rec = records.setdefault(name, {"flops": 0})
        rec["flops"] += fc_box[0].get_total_flops() - start.pop(name)
        rec["output_shape"] = _shape_str(_last_tensor(out))

    def run(meta: bool) -> torch.Tensor:
        records.clear()
        fc_box.clear()
        fc = FlopCounterMode(display=False)
        fc_box.append(fc)
        if meta:
            x = torch.zeros(batch_size, cin, image_size, image_size, device="meta")
            state = {n: torch.empty_like(t, device="meta")
                     for n, t in [*model.named_parameters(), *model.named_buffers()]}
            call = lambda: torch.func.functional_call(model, state, (x,))  # noqa: E731
        else:
            dev = next(model.parameters()).device
            x = torch.zeros(batch_size, cin, image_size, image_size, device=dev)
            call = lambda: model(x)  # noqa: E731
        with torch.no_grad(), _block_hooks(blocks, pre, post), fc:
            out = call()
        return out

    with eval_mode(model):
        try:
            out = run(meta=True)
        except ValueError:  # bad input size / channels: the model's own clear message
            raise
        except Exception:  # a model with ops that have no meta kernel: count on real tensors
            out = run(meta=False)

    total_flops = fc_box[0].get_total_flops()
    rows = []
    for name, mod in blocks:
        if name not in records:
            raise RuntimeError(f"block {name!r} of {type(model).__name__} was not called by forward()")
        rows.append(dict(block=name, output_shape=records[name]["output_shape"],
                         params=sum(p.numel() for p in mod.parameters()),
                         macs=records[name]["flops"] // 2))
    total_params = sum(p.numel() for p in model.parameters())
    in_blocks = sum(r["params"] for r in rows)
    if total_params != in_blocks:  # parameters outside every block: show them, so rows add up
        rows.append(dict(block="(outside blocks)", output_shape="", params=total_params - in_blocks,
                         macs=(total_flops - sum(r["macs"] * 2 for r in rows)) // 2))
    rows.append(dict(block="Total", output_shape=_shape_str(_last_tensor(out)), params=total_params,
                     macs=total_flops // 2))
    df = pd.DataFrame(rows, columns=["block", "output_shape", "params", "macs"])
    return df.astype({"params": "int64", "macs": "int64"})


def profile_layers(model: nn.Module, image_size: int = 256, repeats: int = 5, device: str | torch.device = "cpu",
                   batch_size: int = 1, in_channels: int | None = None, warmup: int = 1) -> pd.DataFrame:
    """Mean execution time of every block per forward pass, measured with ``torch.profiler``.

    Each block runs inside a ``record_function("block::<name>")`` scope (opened and closed by
    forward hooks, so a trace shows the blocks too). On CUDA the hooks synchronise before and after
    each block, so a scope's CPU time covers its kernels. The model is moved to ``device`` and run
    in eval mode under ``torch.inference_mode`` on random input (its training flag is restored).

    Returns ``DataFrame[block, time_ms, share_percent]``: ``time_ms`` the mean per forward pass of
    ``batch_size`` images, ``share_percent`` the block's share of the sum over blocks.
    """
    from torch.profiler import ProfilerActivity, profile, record_function
    from tqdm.auto import tqdm

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("profile_layers(device='cuda') but CUDA is not available on this machine")
    blocks = _blocks(model)
    cin = _in_channels(model, in_channels)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    open_scopes: dict[str, record_function] = {}

    def pre(name: str) -> None:
        sync()
        scope = record_function(f"block::{name}")
        scope.__enter__()
        open_scopes[name] = scope

    def post(name: str, out) -> None:
        sync()
        open_scopes.pop(name).__exit__(None, None, None)

    model.to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, cin, image_size, image_size, generator=gen).to(device)
    with eval_mode(model), torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        with _block_hooks(blocks, pre, post), profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in tqdm(range(repeats), desc=f"profile {type(model).__name__}", leave=False):
                model(x)
    events = {e.key: e for e in prof.key_averages()}
    rows = []
    for name, _ in blocks:
        ev = events.get(f"block::{name}")
        if ev is None:
            raise RuntimeError(f"block {name!r} of {type(model).__name__} was not called by forward()")
        rows.append(dict(block=name, time_ms=ev.cpu_time_total / 1000.0 / repeats))
    df = pd.DataFrame(rows, columns=["block", "time_ms"])
    df["share_percent"] = 100.0 * df["time_ms"] / df["time_ms"].sum()
    return df


def weight_bytes(model: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes of the model's weights: every tensor of its ``state_dict`` (parameters and buffers),
    floating-point ones counted in ``dtype`` when given (e.g. ``torch.float16``), others as they
    are. The one definition of a model's FP32 (or FP16/BF16) size in the study."""
    total = 0
    for t in model.state_dict().values():
        size = torch.empty((), dtype=dtype).element_size() if dtype is not None and t.is_floating_point() \
            else t.element_size()
        total += t.numel() * size
    return int(total)


# The counts the papers print (seed 000 Tables 1-2, seed 002 Tables 3-4), at width 64 with one
# output class, and the values re-derived from the architecture where a table has a typo.
# (block, paper row label, printed, correct, note); printed None = the paper has no such row.
_PAPER_TABLES: dict[str, list[tuple]] = {
    "unet": [
        ("Down1", "DownConv 1", 38_720, 38_720, ""),
        ("Down2", "DownConv 2", 221_550, 221_440, "typo in seed 000 Table 1 (221.550)"),
        ("Down3", "DownConv 3", 885_248, 885_248, ""),
        ("Down4", "DownConv 4", 3_539_968, 3_539_968, ""),
        ("Bottleneck", "Bottleneck", 14_157_824, 14_157_824, ""),
        ("Up1", "UpConv 1", 9_176_576, 9_176_576, "includes the ConvTranspose"),
        ("Up2", "UpConv 2", 2_294_528, 2_294_528, "includes the ConvTranspose"),
        ("Up3", "UpConv 3", 573_824, 573_824, "includes the ConvTranspose"),
        ("Up4", "UpConv 4", 143_552, 143_552, "includes the ConvTranspose"),
        ("Output", "Ouput Layer", 65, 65, ""),
        ("Total", "Total Params", 31_031_855, 31_031_745, "carries the +110 of the Down2 typo"),
    ],
    "ghost_unet": [
        ("Down1", "Ghost DownConv 1", 2_976, 2_976, ""),
        ("Down2", "Ghost DownConv 2", 13_952, 13_952, ""),
        ("Down3", "Ghost DownConv 3", 52_480, 52_480, ""),
        ("Down4", "Ghost DownConv 4", 203_264, 203_264, ""),
        ("Bottleneck", "Bottleneck", 14_157_824, 14_157_824, "plain double conv"),
        ("Up1", "Ghost UpConv 1", 2_497_536, 2_497_536, "includes the ConvTranspose"),
        ("Up2", "Ghost UpConv 2", 626_176, 626_176, "includes the ConvTranspose"),
        ("Up3", "Ghost UpConv 3", 157_440, 157_440, "includes the ConvTranspose"),
        ("Up4", "Ghost UpConv 4", 39_808, 39_808, "includes the ConvTranspose"),
        ("Output", "Ouput Layer", 65, 65, ""),
        ("Total", "Total Params", 17_751_521, 17_751_521, ""),
    ],
    "squeeze_unet": [
        ("Initial", "Convolution [3x3x64]x2", 38_592, 38_592, ""),
        ("DS1", "DS1", 47_104, 47_104, ""),
        ("DS2", "DS 2", 141_312, 141_312, ""),
        ("DS3", "DS 3", 376_832, 376_832, ""),
        ("DS4", "DS 4", 942_080, 942_080, ""),
        ("TF1", "(unnamed) 1x1x80, 2x2x256, 1x1x256", 184_320, 184_320, ""),
        ("US1", "US1", 425_984, 425_984, ""),
        ("TF2", "(unnamed) 1x1x64, 2x2x128, 1x1x128", 73_728, 73_728, ""),
        ("US2", "US2", 159_744, 159_744, ""),
        ("TF3", "(unnamed) 1x1x48, 2x2x64, 1x1x64", 27_684, 27_648, "typo in seed 002 Table 4 (27684)"),
        ("US3", "US3", 53_248, 53_248, ""),
        ("FinalUp", "Transposed Convolution [2x2x64]", 32_768, 32_768, ""),
        ("FinalConv", "Convolution [3x3x64]x2", 110_592, 110_592, ""),
        ("Head", "(not in the tables) 1x1 conv", None, 65, "bias included here; not in the paper"),
        ("Total", "about 2.6 M", None, 2_614_017, "2,613,952 before the head"),
    ],
}


def paper_param_table(name: str) -> pd.DataFrame:
    """The paper's per-block parameter counts for ``name`` (width 64, one class):
    ``DataFrame[block, paper_row, paper_params, correct_params, note]``; ``paper_params`` is what
    the table prints (``<NA>`` where it has no such row), ``correct_params`` the value re-derived
    from the architecture (differs only where the paper has a typo)."""
    if name not in _PAPER_TABLES:
        raise ValueError(f"no paper table for {name!r}; have {sorted(_PAPER_TABLES)}")
    df = pd.DataFrame(_PAPER_TABLES[name], columns=["block", "paper_row", "paper_params", "correct_params", "note"])
    return df.astype({"paper_params": "Int64", "correct_params": "int64"})
