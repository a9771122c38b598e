"""The bit-packed MBU-Net: packed layers and the whole network (``pack_mbu``).

Every binary/masked layer of a trained :class:`unetq.models.mbu_unet.MBUNet` becomes a packed
layer whose output bits equal the PyTorch model's eval-mode binary activations exactly:

- 3x3 convs (``PackedConv3x3``) and 2x2 transposed convs (``PackedConvT2x2``): XOR (+AND)
  popcount kernels with BatchNorm + sign folded into per-channel integer thresholds;
- max-pooling: OR of the bits; concatenation: the skip and upsampled paths are two segments of
  one buffer (written in place by their producers, no copy);
- the first conv (with ``stem="float"`` both input convs) runs in PyTorch -- the model's own
  modules, so its float output is the same tensor -- and is binarised with the float64
  BatchNorm threshold, in bands of rows (``FIRST_BAND_BYTES`` of output each, with the rows of
  context the convs need): one whole-image call of oneDNN's kernel for three input channels
  took 45 % of the network at 512 px, a band stays in cache and is binarised while it is there.
  On the first image of each shape the bands are checked against the whole-image call bit for
  bit, and a shape where they differ runs whole (``first_band_rows``); with ``stem="int8"`` the
  second input conv (whole image) is an exact integer convolution (``IntegerConv3x3``: 7-bit
  activations x int8 weights, ONNX Runtime ``ConvInteger``) scaled as the model scales it; with
  ``stem="thermo"`` the first conv's output is binarised at several thresholds per channel (one
  kernel pass);
- the last 1x1 conv runs in float on the +-1 activations (logits equal up to float rounding).

Threads: the numba kernels spread rows over threads, except layers below ``SERIAL_WORK``, which
run on the calling thread; the float first conv runs in bands of rows, each on one torch
thread, as many bands at once as numba has threads (``_first_conv_bits``). ``chunk_rows=0``
gives each thread one equal share of a layer's rows (numba's static schedule); ``chunk_rows=n``
hands out chunks of about n rows to whichever thread is free (``numba.parallel_chunksize``), so
a thread slowed by other load on its core does less of the work instead of holding up the
layer. Not thread-safe: a ``PackedMBU`` reuses its activation buffers.

Masked layers use the single-popcount form ``a.b = popc(m) - 2 popc((a' ^ s') & m)`` by default
(``masked_form="xor_and"``) or the paper's subtractive encoding with two popcounts
(``masked_form="subtractive"``); both give identical bits.

Sizes: the full network needs H, W divisible by 16 (four poolings, each undone by a
transposed conv); single packed layers accept any size (max-pool floors odd sizes).

Non-finite input: ``PackedMBU`` (and the CUDA engine) reject images holding NaN or Inf with a
``ValueError`` (:func:`check_finite_input`), as every ``unetq.deploy`` runner does: a NaN has no
defined binary activation (the int8 stem's integer cast of NaN is undefined, and the engine's and
the model's outputs differed on it), so no output is given for it.
"""
from __future__ import annotations

import contextlib
import copy
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import TensorProto, helper, numpy_helper

from ..machine import ort_session_options
from ..models.binary_layers import BNSign
from ..models.mbu_unet import LAYER_NAMES, MBUNet
from . import kernels
from .packing import (MASKED_FORMS, Segments, float32_thresholds, fold_threshold, lane_block, new_buffer,
                      pack_weight_planes, unpack_activations)

PACKABLE_KINDS = ("binary", "masked")
#: Layers with less work than this (vector XOR-popcount steps) run on the calling thread: for
#: them, waking the worker threads costs more than it saves.
SERIAL_WORK = 60_000
#: Bytes of float output per band of rows of the first conv (:meth:`PackedMBU._first_conv_bits`).
FIRST_BAND_BYTES = 4 << 20


def _integer_weight(module) -> np.ndarray:
    with torch.no_grad():
        q = module.quantized_weight().detach().cpu().double().numpy()
    if not np.all(np.isin(q, (-1.0, 0.0, 1.0))):
        raise ValueError(f"{type(module).__name__}: quantized weights are not in {{-1,0,+1}}")
    return q.astype(np.int8)


def _check_bnsign(bn, where: str):
    if not isinstance(bn, BNSign):
        raise ValueError(f"{where}: expected BatchNorm + sign (BNSign) after the conv, got {type(bn).__name__}; "
                         "the packed engine needs binary activations (activation='binary')")
    theta, direction = bn.thresholds()
    return theta.numpy(), direction.numpy().astype(np.int64)


class _PackedIntLayer:
    """Shared packing of a binary/masked layer: weights ``wq[Cout, Cin, taps]`` in {-1,0,+1}."""

    taps = 9

    def __init__(self, wq: np.ndarray, kind: str, theta, direction, in_segments: Segments,
                 masked_form: str = "xor_and", name: str = "layer"):
        if kind not in PACKABLE_KINDS:
            raise ValueError(f"{name}: kind {kind!r} cannot be packed (only {PACKABLE_KINDS})")
        if masked_form not in MASKED_FORMS:
            raise ValueError(f"masked_form must be one of {MASKED_FORMS}, got {masked_form!r}")
        if kind == "binary" and np.any(wq == 0):
            raise ValueError(f"{name}: binary layer has zero weights")
        self.name, self.kind, self.masked_form = name, kind, masked_form
        self.cout, self.cin, _ = wq.shape
        self.in_segments = in_segments
        self.cb = lane_block(self.cout)
        self.nblk = -(-self.cout // self.cb)
        cpad = self.nblk * self.cb
        if kind == "binary":
            self.planes = pack_weight_planes(wq, in_segments, {"w": lambda q: q > 0})
        elif masked_form == "xor_and":
            self.planes = pack_weight_planes(wq, in_segments, {"s": lambda q: q > 0, "m": lambda q: q != 0})
        else:
            self.planes = pack_weight_planes(wq, in_segments, {"pos": lambda q: q > 0, "neg": lambda q: q < 0})
        form = "neg_dot" if (kind == "masked" and masked_form == "subtractive") else "mismatch"
        nnz = (wq != 0).sum(axis=1)  # [Cout, taps] terms per output channel and tap
        self.t, self.flip = self._fold(theta, direction, nnz, form, cpad)
        # kernel form: int64 thresholds, flip bits and valid bits as one mask word per block
        self.t64 = np.ascontiguousarray(self.t, dtype=np.int64)
        lanes = np.arange(self.cb, dtype=np.uint64)
        f = self.flip.reshape(self.flip.shape[:-1] + (self.nblk, self.cb)).astype(np.uint64)
        self.fmask = np.ascontiguousarray(np.bitwise_or.reduce(f << lanes, axis=-1), dtype=np.uint64)
        nvalid = np.minimum(self.cb, self.cout - self.cb * np.arange(self.nblk))
        self.vmask = np.array([(1 << int(v)) - 1 for v in nvalid], dtype=np.uint64)

    def _fold(self, theta, direction, nnz, form, cpad):
        return fold_threshold(theta, direction, nnz.sum(axis=1), form, cpad)

    @property
    def nbytes(self) -> int:
        """Bit planes + one int32 threshold and one flip bit per output channel (and tap)."""
        return int(sum(p.nbytes for p in self.planes.values()) + self.t.nbytes + self.fmask.nbytes)

    def _kernel_args(self):
        """(mode id, plane a, plane b) for ``kernels.conv3x3`` / ``kernels.convt2x2``."""
        p = self.planes
        if self.kind == "binary":
            return kernels.MODE_IDS["xor"], p["w"], p["w"]
        if self.masked_form == "xor_and":
            return kernels.MODE_IDS["xor_and"], p["s"], p["m"]
        return kernels.MODE_IDS["sub"], p["pos"], p["neg"]

    #: ``(parallel, serial)`` numba kernels of the layer type
    _kernels: tuple = ()

    def __call__(self, inp: np.ndarray, out: np.ndarray, out_off: int = 0) -> np.ndarray:
        """Run the layer on a padded bit buffer ``inp`` into ``out`` (at word ``out_off``)."""
        if inp.shape[-1] != self.in_segments.total_words:
            raise ValueError(f"{self.name}: input buffer has {inp.shape[-1]} words, expected "
                             f"{self.in_segments.total_words}")
        mode, wa, wb = self._kernel_args()
        n, hp, wp, wd = inp.shape
        work = n * (hp - 2) * (wp - 2) * self.nblk * self.taps * wd * (self.cb // 8) * (1 if mode == 0 else 2)
        parallel, serial = self._kernels
        (serial if work < SERIAL_WORK else parallel)(mode, inp, wa, wb, self.t64, self.fmask, self.vmask, out,
                                                     out_off)
        return out


class PackedConv3x3(_PackedIntLayer):
    """3x3 stride-1 conv (+1 padding) + BatchNorm + sign on a padded bit buffer."""

    _kernels = (kernels.conv3x3, kernels.conv3x3_serial)

    @classmethod
    def from_torch(cls, conv, bn, in_segments: Segments | None = None, masked_form="xor_and", name="conv"):
        w = _integer_weight(conv)  # [Cout, Cin, 3, 3]
        if w.shape[2:] != (3, 3) or conv.stride != (1, 1) or conv.pad != 1 or conv.pad_value != 1.0:
            raise ValueError(f"{name}: packed 3x3 convs need kernel 3, stride 1, padding 1 with value +1")
        theta, direction = _check_bnsign(bn, name)
        in_segments = in_segments or Segments([w.shape[1]])
        return cls(w.reshape(w.shape[0], w.shape[1], 9), conv.kind, theta, direction, in_segments,
                   masked_form, name)


class PackedConvT2x2(_PackedIntLayer):
    """2x2 stride-2 transposed conv + BatchNorm + sign (thresholds per tap: the number of
    nonzero masked weights differs per tap)."""

    taps = 4
    _kernels = (kernels.convt2x2, kernels.convt2x2_serial)

    def _fold(self, theta, direction, nnz, form, cpad):
        ts, fs = zip(*(fold_threshold(theta, direction, nnz[:, k], form, cpad) for k in range(4)))
        return np.stack(ts), np.stack(fs)

    @classmethod
    def from_torch(cls, ct, bn, in_segments: Segments | None = None, masked_form="xor_and", name="convT"):
        w = _integer_weight(ct)  # [Cin, Cout, 2, 2]
        if w.shape[2:] != (2, 2) or ct.stride != (2, 2):
            raise ValueError(f"{name}: packed transposed convs need kernel 2, stride 2")
        theta, direction = _check_bnsign(bn, name)
        wq = np.ascontiguousarray(w.transpose(1, 0, 2, 3)).reshape(w.shape[1], w.shape[0], 4)
        in_segments = in_segments or Segments([w.shape[0]])
        return cls(wq, ct.kind, theta, direction, in_segments, masked_form, name)


def maxpool(inp: np.ndarray, in_segments: Segments, seg: int, out: np.ndarray, out_off: int = 0) -> np.ndarray:
    """2x2 max-pool of segment ``seg`` of ``inp`` into ``out`` (floor for odd sizes)."""
    nw = -(-in_segments.channels[seg] // 64)
    work = out.shape[0] * (out.shape[1] - 2) * (out.shape[2] - 2) * nw
    kern = kernels.maxpool2x2_serial if work < SERIAL_WORK else kernels.maxpool2x2
    kern(inp, in_segments.offsets[seg], nw, out, out_off)
    return out


# --------------------------------------------------------------------------------------------
# the whole network
# --------------------------------------------------------------------------------------------
_BAND_POOLS: dict[int, ThreadPoolExecutor] = {}


def _band_pool() -> ThreadPoolExecutor:
    """Threads for the first conv's bands, as many as numba's; one pool per thread count, shared
    by every ``PackedMBU`` of the process."""
    n = numba.get_num_threads()
    if n not in _BAND_POOLS:
        _BAND_POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix=f"unetq-first-conv-{n}")
    return _BAND_POOLS[n]


@contextlib.contextmanager
def _one_torch_thread():
    """torch on one thread inside the block (the setting is process-wide), restored after. The
    first conv runs so: a multi-threaded torch call leaves OpenMP workers spinning that then
    compete with the numba kernels for the cores (oneDNN splits this conv over pixels and
    channels, never over the 27-term sums, so the result does not depend on the thread count)."""
    threads = torch.get_num_threads()
    try:
        if threads != 1:
            torch.set_num_threads(1)
        yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)


def check_finite_input(x, who: str = "PackedMBU") -> None:
    """``ValueError`` when the image batch ``x`` (numpy or torch) holds NaN or Inf. Fast path: a
    finite sum proves every value finite; the element-wise count only runs when it is not."""
    if isinstance(x, torch.Tensor):
        if x.numel() == 0 or not x.is_floating_point() or bool(torch.isfinite(x.sum())):
            return
        bad = int((~torch.isfinite(x)).sum())
    else:
        x = np.asarray(x)
        if x.size == 0 or not np.issubdtype(x.dtype, np.floating):
            return
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.sum(x, dtype=np.float32)):
                return
        bad = int((~np.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{who} input holds {bad} NaN/Inf value(s); non-finite input is rejected "
                         "(the packed engine and the model would disagree on it)")


class PackedMBU:
    """A packed MBU-Net: callable on float32 NCHW numpy images (H, W divisible by 16, finite:
    NaN / Inf raise ``ValueError``), returns float32 logits NCHW. ``nbytes``: bytes of
    everything it holds (bit planes, thresholds, the float first and last layers)."""

    def __init__(self, model: nn.Module, masked_form: str = "xor_and", chunk_rows: int = 0):
        if not isinstance(model, MBUNet):
            raise TypeError(f"pack_mbu needs an MBUNet, got {type(model).__name__}")
        if model.activation != "binary":
            raise ValueError("pack_mbu needs binary activations (activation='binary'), "
                             f"this model uses {model.activation!r}")
        bad = {n: k for n, k in model.kinds.items() if k not in PACKABLE_KINDS
               and not (n == "input_c2" and getattr(model, "stem", "binary") in ("float", "int8"))}
        if bad:
            raise ValueError(f"pack_mbu: layers {bad} are not binary/masked; the packed engine supports "
                             f"only {PACKABLE_KINDS}")
        if not (isinstance(chunk_rows, (int, np.integer)) and chunk_rows >= 0):
            raise ValueError(f"chunk_rows must be an integer >= 0, got {chunk_rows!r}")
        self.masked_form = masked_form
        self.chunk_rows = int(chunk_rows)
        self.kinds = dict(model.kinds)
        self.config = dict(getattr(model, "config", {}))
        self.in_channels, self.classes = model.in_channels, model.classes
        self.channels = c = model.channels
        # Up-Ci output channels (classic: c[4-i]; seed 001's paper backbone: c[3-i], the last c[0])
        self.up_channels = tuple(getattr(model, "up_channels", (c[3], c[2], c[1], c[0])))
        model = model.eval()
        # first conv: the model's own module (same float output), thresholds of its BNSign
        P3, PT = PackedConv3x3.from_torch, PackedConvT2x2.from_torch
        f = masked_form
        self.stem = getattr(model, "stem", "binary")
        self.stem_int = None
        levels = 1  # thresholds per first-conv channel (a thermometer code when > 1)
        # module path of the BNSign whose bits feed input_c2 (the "a1" buffer), as layer_outputs names it
        self.a1_key = "input.0.1"
        if self.stem == "int8":
            # float conv 1 (+BN+ReLU) in PyTorch, then the 7-bit x int8 conv 2 as an exact
            # integer convolution (ONNX Runtime ConvInteger), scaled as the model does
            self.first_conv = copy.deepcopy(model.input[0]).eval()
            self.stem_int = IntegerConv3x3(model.input[1][0])
            self.stem_conv2 = copy.deepcopy(model.input[1][0]).eval()  # for engines that run it in torch
            self.first_theta, self.first_dir = _check_bnsign(model.input[1][1], "input conv 2")
            self.input_c2 = None
        elif self.stem == "thermo":
            # float conv 1 in PyTorch, binarised at several thresholds per channel (the model's
            # BNSign over the repeated channels), then the packed input_c2 on all of them
            self.first_conv = copy.deepcopy(model.input[0][0]).eval()
            levels = model.input[0][1].k
            self.first_theta, self.first_dir = _check_bnsign(model.input[0][2], "input conv 1 (thermometer)")
            self.a1_key = "input.0.2"
            self.input_c2 = P3(model.input[1][0], model.input[1][1], masked_form=f, name="input_c2")
        elif self.stem == "float":
            # both input convs in float (the model's modules), binarised after the second one
            self.first_conv = nn.Sequential(copy.deepcopy(model.input[0]), copy.deepcopy(model.input[1][0])).eval()
            self.first_theta, self.first_dir = _check_bnsign(model.input[1][1], "input conv 2")
            self.input_c2 = None
        else:
            self.first_conv = copy.deepcopy(model.input[0][0]).eval()
            self.first_theta, self.first_dir = _check_bnsign(model.input[0][1], "input conv 1")
            self.input_c2 = P3(model.input[1][0], model.input[1][1], masked_form=f, name="input_c2")
        # binarised channel k reads first-conv channel k // levels
        self.first_src = np.arange(len(self.first_theta), dtype=np.int64) // levels
        self.a1_channels = len(self.first_theta)  # binary channels entering input_c2
        self.first_t32, self.first_mode = float32_thresholds(self.first_theta, self.first_dir)
        self.down = []
        for i, name in enumerate(LAYER_NAMES[:4]):
            dc = getattr(model, name)[1]
            self.down.append((P3(dc[0][0], dc[0][1], masked_form=f, name=f"{name}.conv1"),
                              P3(dc[1][0], dc[1][1], masked_form=f, name=f"{name}.conv2")))
        self.up_ct, self.up_c = [], []
        for i in range(1, 5):
            ct = getattr(model, f"up_ct{i}")
            self.up_ct.append(PT(ct[0], ct[1], masked_form=f, name=f"up_ct{i}"))
            cu = c[4 - i]
            dc = getattr(model, f"up_c{i}")
            self.up_c.append((P3(dc[0][0], dc[0][1], Segments([cu, cu]), masked_form=f, name=f"up_c{i}.conv1"),
                              P3(dc[1][0], dc[1][1], masked_form=f, name=f"up_c{i}.conv2")))
        self.out_weight = model.output.weight.detach().double().numpy()[:, :, 0, 0].copy()
        self.out_bias = model.output.bias.detach().double().numpy().copy()
        self._buffers: dict = {}
        #: rows of context each band of the first conv needs on either side (one per 3x3 conv)
        self.first_halo = sum((m.kernel_size[0] - 1) // 2 for m in self.first_conv.modules()
                              if isinstance(m, nn.Conv2d))
        #: ``(N, H, W) -> rows per band`` of the first conv for that input shape (``H``: whole
        #: image), decided on its first image (:meth:`_first_conv_bits`)
        self.first_band_rows: dict = {}

    # ---------------------------------------------------------------- sizes
    def packed_layers(self):
        if self.input_c2 is not None:
            yield self.input_c2
        for a, b in self.down:
            yield a
            yield b
        for ct, (a, b) in zip(self.up_ct, self.up_c):
            yield ct
            yield a
            yield b

    @property
    def nbytes(self) -> int:
        """Bytes of the packed model: bit planes + thresholds + float first/last layers."""
        first = sum(t.numel() * t.element_size() for t in self.first_conv.state_dict().values()
                    if t.is_floating_point())
        if self.stem_int is not None:
            first += self.stem_int.nbytes
        first += self.first_theta.size * 4 + self.first_dir.size  # float32 threshold + int8 direction
        last = (self.out_weight.size + self.out_bias.size) * 4  # float32
        return int(sum(l.nbytes for l in self.packed_layers()) + first + last)

    # ---------------------------------------------------------------- inference
    def _plan(self, n, h, w):
        key = (n, h, w)
        if key not in self._buffers:
            c = self.channels
            b = {}
            b["a1"] = new_buffer(n, h, w, Segments([self.a1_channels]))
            for lvl in range(4):  # concat buffers [skip, up] at levels 1..4, pooled + mid buffers
                s = 1 << lvl
                u = self.up_channels[3 - lvl]  # Up-C output at this level
                b[f"cat{lvl}"] = new_buffer(n, h // s, w // s, Segments([c[lvl], c[lvl]]))
                b[f"pool{lvl}"] = new_buffer(n, h // (2 * s), w // (2 * s), Segments([c[lvl]]))
                b[f"mid_d{lvl}"] = new_buffer(n, h // (2 * s), w // (2 * s), Segments([c[lvl + 1]]))
                b[f"mid_u{lvl}"] = new_buffer(n, h // s, w // s, Segments([u]))
                b[f"out_u{lvl}"] = new_buffer(n, h // s, w // s, Segments([u]))
            b["bottom"] = new_buffer(n, h // 16, w // 16, Segments([c[4]]))
            self._buffers = {key: b}  # keep one plan (memory)
        return self._buffers[key]

    def _first_conv(self, x: np.ndarray) -> np.ndarray:
        """The first (float) conv, by the model's own PyTorch module so that its output is
        the tensor the model binarises. It runs on one torch thread (:func:`_one_torch_thread`)."""
        with _one_torch_thread(), torch.no_grad():
            return self.first_conv(torch.from_numpy(x)).numpy()

    def _first_conv_bits(self, x: np.ndarray, out: np.ndarray) -> None:
        """The first conv (:meth:`_first_conv`'s module) binarised into the bit buffer ``out``,
        one band of rows at a time: each band is convolved with ``first_halo`` rows of context on
        either side (whose outputs, padded at the band's edge, are dropped) and binarised while
        it is in cache, by one of the engine's threads (bands handed to whichever thread is
        free, torch on one thread meanwhile, so each band runs on the thread that took it).
        Every output pixel is the same 27-term (float stem: two-conv) sum as in the whole-image
        call; that oneDNN orders it the same in a band is checked on the first image of each
        shape, bit for bit, and a shape where any band differs runs whole from then on."""
        n, _, h, w = x.shape
        key = (n, h, w)
        rows = self.first_band_rows.get(key)
        if rows is None:
            channels = int(self.first_src.max()) + 1
            rows = int(min(h, max(1, FIRST_BAND_BYTES // (4 * n * channels * w))))
        if rows >= h:
            whole = self._first_conv(x)
        else:
            t = torch.from_numpy(x)
            whole = self._first_conv(x) if key not in self.first_band_rows else None  # the check's reference

            def band(r0: int) -> bool:
                r1 = min(h, r0 + rows)
                a, e = max(0, r0 - self.first_halo), min(h, r1 + self.first_halo)
                with torch.no_grad():
                    y = self.first_conv(t[:, :, a:e])[:, :, r0 - a:r1 - a]
                if whole is not None and not torch.equal(y, torch.from_numpy(whole[:, :, r0:r1])):
                    return False  # oneDNN summed this band in another order
                kernels.threshold_pack_float_serial(np.ascontiguousarray(y.numpy()), self.first_src, self.first_t32,
                                                    self.first_mode, out, 0, r0)
                return True

            with _one_torch_thread():
                if all(_band_pool().map(band, range(0, h, rows))):
                    self.first_band_rows[key] = rows
                    return
        kernels.threshold_pack_float(whole, self.first_src, self.first_t32, self.first_mode, out, 0)
        self.first_band_rows[key] = h

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with numba.parallel_chunksize(self.chunk_rows):  # 0: one equal share per thread; n: dynamic
            return self._forward(x)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"PackedMBU expects float32 [N, {self.in_channels}, H, W], got shape {x.shape}")
        n, _, h, w = x.shape
        if h % 16 or w % 16:
            raise ValueError(f"PackedMBU needs H and W divisible by 16, got {h}x{w}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        check_finite_input(x)
        c = self.channels
        b = self._plan(n, h, w)
        if self.stem_int is not None:  # int8 stem: exact integer conv 2 (whole image), binarised into the skip
            y = self.stem_int(self._first_conv(x))
            kernels.threshold_pack_float(y, self.first_src, self.first_t32, self.first_mode, b["cat0"], 0)
        elif self.input_c2 is None:  # float stem: its second conv is binarised straight into the skip
            self._first_conv_bits(x, b["cat0"])
        else:
            self._first_conv_bits(x, b["a1"])
            self.input_c2(b["a1"], b["cat0"], 0)
        for lvl, (c1, c2) in enumerate(self.down):
            cat = b[f"cat{lvl}"]
            maxpool(cat, Segments([c[lvl], c[lvl]]), 0, b[f"pool{lvl}"])
            c1(b[f"pool{lvl}"], b[f"mid_d{lvl}"])
            c2(b[f"mid_d{lvl}"], b[f"cat{lvl + 1}"] if lvl < 3 else b["bottom"], 0)
        prev = b["bottom"]
        for i in range(4):
            lvl = 3 - i
            cat = b[f"cat{lvl}"]
            up_off = -(-c[lvl] // 64)  # words of the skip segment
            self.up_ct[i](prev, cat, up_off)
            c1, c2 = self.up_c[i]
            c1(cat, b[f"mid_u{lvl}"])
            c2(b[f"mid_u{lvl}"], b[f"out_u{lvl}"])
            prev = b[f"out_u{lvl}"]
        out = np.empty((n, self.classes, h, w), dtype=np.float32)
        kernels.conv1x1_float(prev, 0, self.up_channels[3], self.out_weight, self.out_bias, out)
        return out

    def layer_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run ``x``; every binary activation, unpacked to +-1 float32 NCHW, keyed by the
        module path of the PyTorch ``BNSign`` that produces it (e.g. ``"down_c1.1.0.1"``), so
        tests can compare them layer by layer with forward hooks."""
        self(x)
        b = next(iter(self._buffers.values()))
        c = self.channels

        def seg(name, channels, k=0):
            full = unpack_activations(b[name], Segments(channels))
            start = sum(channels[:k])
            return full[:, start:start + channels[k]]

        out = {"input.1.1": seg("cat0", [c[0], c[0]], 0)}
        if self.input_c2 is not None:
            out[self.a1_key] = seg("a1", [self.a1_channels])
        for i in range(4):
            out[f"down_c{i + 1}.1.0.1"] = seg(f"mid_d{i}", [c[i + 1]])
            out[f"down_c{i + 1}.1.1.1"] = (seg(f"cat{i + 1}", [c[i + 1], c[i + 1]], 0) if i < 3
                                           else seg("bottom", [c[4]]))
        for i in range(1, 5):
            lvl = 4 - i
            out[f"up_ct{i}.1"] = seg(f"cat{lvl}", [c[lvl], c[lvl]], 1)
            out[f"up_c{i}.0.1"] = seg(f"mid_u{lvl}", [self.up_channels[i - 1]])
            out[f"up_c{i}.1.1"] = seg(f"out_u{lvl}", [self.up_channels[i - 1]])
        return out


class IntegerConv3x3:
    """The ``IntConv2d`` of an int8 stem as an exact integer convolution: the model's own
    activation quantizer (PyTorch) gives the 7-bit integers, ONNX Runtime's ``ConvInteger``
    (uint8 x uint8 with weight zero point 128, int32 accumulator; VNNI where the CPU has it)
    computes ``acc = conv(q_a, q_w)`` exactly, and ``float32(acc * (s_a * s_w))`` (float64
    product) is the model's eval output bit for bit."""

    def __init__(self, conv):
        qw, scale = conv.integer_parts()
        qw = qw.detach().numpy().astype(np.int16)
        if qw.min() < -128 or qw.max() > 127:
            raise ValueError("IntegerConv3x3 needs int8 weights")
        self.act = copy.deepcopy(conv.act_quantizer).eval()
        self.scale = scale.numpy().astype(np.float64).reshape(1, -1, 1, 1)
        self.pad, self.cout, self.cin = conv.pad, qw.shape[0], qw.shape[1]
        self.nbytes = int(qw.size + 8 * self.cout + 4)  # int8 weights + float64 scales + clip
        p = self.pad
        graph = helper.make_graph(
            [helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["acc"], pads=[p, p, p, p])], "int8_stem",
            [helper.make_tensor_value_info("x", TensorProto.UINT8, [None, self.cin, None, None])],
            [helper.make_tensor_value_info("acc", TensorProto.INT32, None)],
            [numpy_helper.from_array((qw + 128).astype(np.uint8), "w"),
             numpy_helper.from_array(np.array(0, np.uint8), "xz"),
             numpy_helper.from_array(np.array(128, np.uint8), "wz")])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        self.session = ort.InferenceSession(proto.SerializeToString(), ort_session_options(spinning=False),
                                            providers=["CPUExecutionProvider"])

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Float activations (NCHW, the model's conv-1 output after ReLU) -> float32 conv output."""
        with torch.no_grad():
            q = self.act.integer(torch.from_numpy(y)).numpy().astype(np.uint8)
        acc = self.session.run(None, {"x": q})[0]
        return (acc.astype(np.float64) * self.scale).astype(np.float32)


def pack_mbu(model: nn.Module, masked_form: str = "xor_and", chunk_rows: int = 0) -> PackedMBU:
    """Pack a trained MBU-Net (all configurable layers binary or masked, binary activations)."""
    return PackedMBU(model, masked_form, chunk_rows)
