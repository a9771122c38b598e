"""The packed engine on CUDA: Triton kernels for the binary / masked 3x3 and 2x2-transposed
convolutions, PyTorch ops for the rest (max-pool = OR of bits, the float first and last layers).

Same layout and thresholds as the CPU engine (``kernels``, ``packing``): padded NHWC bit buffers
(uint64 words stored as int64 tensors), weight planes ``[nblk, taps, WD, CB]``, output bit
``(v <= t) ^ flip``. Each program computes ``BLOCK_P`` pixels of one output row x ``CB`` output
channels (one output word), with XOR (+AND) and ``popc`` (libdevice ``__nv_popcll``) on 64-bit
words. These kernels run on the CUDA cores: they do not use the binary tensor-core (BMMA)
instructions of seed 001, which Hopper GPUs no longer have.

Nothing here is imported by ``unetq.bitpack`` unless asked for: this module needs ``triton`` and a
CUDA device (``unavailable_reason()`` says why not, ``None`` when both are present).
"""
from __future__ import annotations

import copy
import os

import numpy as np
import torch

from ..machine import cuda_available
from .engine import PackedConvT2x2, check_finite_input
from .packing import Segments, valid_bits

try:  # pragma: no cover - needs triton
    import triton
    import triton.language as tl

    try:
        from triton.language.extra import libdevice
    except ImportError:  # older triton
        from triton.language.extra.cuda import libdevice
    _TRITON_ERROR = None
except Exception as e:  # noqa: BLE001
    triton = tl = libdevice = None
    _TRITON_ERROR = f"{type(e).__name__}: {e}"

BLOCK_P = 32


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def unavailable_reason() -> str | None:
    """``None`` when the Triton engine can run (Triton importable and a CUDA device present, or
    Triton's CPU interpreter switched on with ``TRITON_INTERPRET=1``, which runs the kernels on
    CPU tensors); otherwise why not."""
    if _TRITON_ERROR is not None:
        return f"triton is not installed ({_TRITON_ERROR})"
    if _interpreted():
        return None
    if not cuda_available():
        return "no CUDA device"
    return None


# The two kernels below share their XOR (+AND / -) popcount accumulation on purpose: they differ
# in the tap loop (9 taps read around a pixel vs one input pixel written to 4 output taps), and
# the accumulation is kept inline in each so that Triton sees the whole loop body; the kernels
# can only be compiled and checked on a CUDA machine (tests/test_bitpack_triton.py there).
if triton is not None:  # pragma: no cover - compiled only where triton exists

    @triton.jit
    def _bitor(a, b):
        return a | b

    @triton.jit
    def _popc(x, LIBDEVICE: tl.constexpr):
        """popcount of int64 words as int32: ``__nv_popcll`` on the GPU; a SWAR fallback for
        Triton's CPU interpreter (``TRITON_INTERPRET=1``), which has no libdevice."""
        if LIBDEVICE:
            return libdevice.popc(x)
        else:
            u = x.to(tl.uint64, bitcast=True)
            u = u - ((u >> 1) & 0x5555555555555555)
            u = (u & 0x3333333333333333) + ((u >> 2) & 0x3333333333333333)
            u = (u + (u >> 4)) & 0x0F0F0F0F0F0F0F0F
            return ((u * 0x0101010101010101) >> 56).to(tl.int32)

    @triton.jit
    def _threshold_store(acc, t_ptr, f_ptr, out_ptr, out_idx, pmask, cbase, cout, CB: tl.constexpr):
        cs = tl.arange(0, CB)
        tv = tl.load(t_ptr + cbase + cs)
        fv = tl.load(f_ptr + cbase + cs)
        valid = (cbase + cs) < cout
        bit = ((acc <= tv[None, :]).to(tl.int64) ^ fv[None, :].to(tl.int64)) & valid[None, :].to(tl.int64)
        word = tl.reduce(bit << cs[None, :].to(tl.int64), 1, _bitor)
        tl.store(out_ptr + out_idx, word, mask=pmask)

    @triton.jit
    def _conv3x3_kernel(inp, wa, wb, t, flip, out, H, W, Hp, Wp, WD, WDO, out_off, cout,
                        MODE: tl.constexpr, CB: tl.constexpr, BLOCK: tl.constexpr,
                        LIBDEVICE: tl.constexpr):
        pid = tl.program_id(0)
        b = tl.program_id(1)
        nxb = tl.cdiv(W, BLOCK)
        row = pid // nxb
        n = row // H
        y = row % H
        xs = (pid % nxb) * BLOCK + tl.arange(0, BLOCK)
        pm = xs < W
        cs = tl.arange(0, CB)
        acc = tl.zeros([BLOCK, CB], dtype=tl.int32)
        for tap in tl.static_range(9):
            ky = tap // 3
            kx = tap % 3
            abase = ((n * Hp + y + ky) * Wp + xs + kx) * WD
            wbase = (b * 9 + tap) * WD * CB
            for w in range(WD):
                a = tl.load(inp + abase + w, mask=pm, other=0)
                wv = tl.load(wa + wbase + w * CB + cs)
                x = a[:, None] ^ wv[None, :]
                if MODE == 0:
                    acc += _popc(x, LIBDEVICE)
                elif MODE == 1:
                    mv = tl.load(wb + wbase + w * CB + cs)
                    acc += _popc(x & mv[None, :], LIBDEVICE)
                else:
                    nv = tl.load(wb + wbase + w * CB + cs)
                    acc += _popc(x, LIBDEVICE) - _popc(a[:, None] ^ nv[None, :], LIBDEVICE)
        out_idx = ((n * Hp + y + 1) * Wp + xs + 1) * WDO + out_off + b
        _threshold_store(acc, t, flip, out, out_idx, pm, b * CB, cout, CB)

    @triton.jit
    def _convt2x2_kernel(inp, wa, wb, t, flip, out, H, W, Hp, Wp, WD, Hpo, Wpo, WDO, out_off, cout, cpad,
                         MODE: tl.constexpr, CB: tl.constexpr, BLOCK: tl.constexpr,
                        LIBDEVICE: tl.constexpr):
        pid = tl.program_id(0)
        bt = tl.program_id(1)
        b = bt // 4
        tap = bt % 4
        di = tap // 2
        dj = tap % 2
        nxb = tl.cdiv(W, BLOCK)
        row = pid // nxb
        n = row // H
        i = row % H
        js = (pid % nxb) * BLOCK + tl.arange(0, BLOCK)
        pm = js < W
        cs = tl.arange(0, CB)
        acc = tl.zeros([BLOCK, CB], dtype=tl.int32)
        abase = ((n * Hp + i + 1) * Wp + js + 1) * WD
        wbase = (b * 4 + tap) * WD * CB
        for w in range(WD):
            a = tl.load(inp + abase + w, mask=pm, other=0)
            wv = tl.load(wa + wbase + w * CB + cs)
            x = a[:, None] ^ wv[None, :]
            if MODE == 0:
                acc += _popc(x, LIBDEVICE)
            elif MODE == 1:
                mv = tl.load(wb + wbase + w * CB + cs)
                acc += _popc(x & mv[None, :], LIBDEVICE)
            else:
                nv = tl.load(wb + wbase + w * CB + cs)
                acc += _popc(x, LIBDEVICE) - _popc(a[:, None] ^ nv[None, :], LIBDEVICE)
        out_idx = ((n * Hpo + 2 * i + di + 1) * Wpo + 2 * js + dj + 1) * WDO + out_off + b
        _threshold_store(acc, t + tap * cpad, flip + tap * cpad, out, out_idx, pm, b * CB, cout, CB)


def _as_i64(a: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.int64)).to(device)


def new_buffer_cuda(n: int, h: int, w: int, segments: Segments, device="cuda") -> torch.Tensor:
    """CUDA twin of ``packing.new_buffer`` (int64 words)."""
    buf = torch.zeros((n, h + 2, w + 2, segments.total_words), dtype=torch.int64, device=device)
    border = _as_i64(np.concatenate([valid_bits(c) for c in segments.channels]), device)
    buf[:, 0], buf[:, -1], buf[:, :, 0], buf[:, :, -1] = border, border, border, border
    return buf


class CudaPackedLayer:
    """A ``PackedConv3x3`` / ``PackedConvT2x2`` with its planes and thresholds on the GPU."""

    def __init__(self, layer, device="cuda"):
        self.layer = layer
        self.transposed = isinstance(layer, PackedConvT2x2)
        self.mode, wa, wb = layer._kernel_args()
        self.wa, self.wb = _as_i64(wa, device), _as_i64(wb, device)
        self.t = torch.from_numpy(np.ascontiguousarray(layer.t)).to(device, torch.int32)
        self.flip = torch.from_numpy(np.ascontiguousarray(layer.flip)).to(device, torch.int32)
        self.cb, self.nblk, self.cout = layer.cb, layer.nblk, layer.cout
        self.cpad = self.nblk * self.cb

    def __call__(self, inp: torch.Tensor, out: torch.Tensor, out_off: int = 0) -> torch.Tensor:
        why = unavailable_reason()
        if why is not None:
            raise RuntimeError(f"the Triton packed engine cannot run: {why}")
        n, hp, wp, wd = inp.shape
        h, w = hp - 2, wp - 2
        grid = (n * h * triton.cdiv(w, BLOCK_P), self.nblk * (4 if self.transposed else 1))
        if self.transposed:
            _convt2x2_kernel[grid](inp, self.wa, self.wb, self.t, self.flip, out, h, w, hp, wp, wd,
                                   out.shape[1], out.shape[2], out.shape[3], out_off, self.cout, self.cpad,
                                   MODE=self.mode, CB=self.cb, BLOCK=BLOCK_P, LIBDEVICE=not _interpreted())
        else:
            _conv3x3_kernel[grid](inp, self.wa, self.wb, self.t, self.flip, out, h, w, hp, wp, wd,
                                  out.shape[3], out_off, self.cout, MODE=self.mode, CB=self.cb, BLOCK=BLOCK_P, LIBDEVICE=not _interpreted())
        return out


def _pack_bits_cuda(bits: torch.Tensor, out: torch.Tensor, out_off: int) -> None:
    """bool ``[N, C, H, W]`` -> words in the interior of ``out`` at ``out_off``."""
    n, c, h, w = bits.shape
    nw = -(-c // 64)
    b = bits.permute(0, 2, 3, 1).to(torch.int64)
    b = torch.nn.functional.pad(b, (0, nw * 64 - c)).view(n, h, w, nw, 64)
    shifts = torch.arange(63, device=bits.device, dtype=torch.int64)
    low = (b[..., :63] << shifts).sum(-1)  # distinct bits: sum == OR, no overflow below bit 63
    words = low | (b[..., 63] << 63)
    out[:, 1:h + 1, 1:w + 1, out_off:out_off + nw] = words


def unpack_cuda(buf: torch.Tensor, off: int, c: int) -> torch.Tensor:
    """Interior channels of a CUDA bit buffer -> +-1 float32 ``[N, C, H, W]``."""
    nw = -(-c // 64)
    words = buf[:, 1:-1, 1:-1, off:off + nw]
    shifts = torch.arange(64, device=buf.device, dtype=torch.int64)
    bits = (words.unsqueeze(-1) >> shifts) & 1
    bits = bits.flatten(-2)[..., :c]
    return (bits.to(torch.float32) * 2 - 1).permute(0, 3, 1, 2).contiguous()


class PackedMBUCuda:
    """The packed MBU-Net on a CUDA device (Triton kernels). Built from a CPU ``PackedMBU``;
    callable on float32 NCHW (numpy or tensor; NaN / Inf raise ``ValueError``), returns float32
    numpy logits."""

    def __init__(self, packed, device="cuda"):
        why = unavailable_reason()
        if why is not None:
            raise RuntimeError(f"PackedMBUCuda cannot run here: {why}")
        self.packed, self.device = packed, torch.device(device)
        # the stem in PyTorch on the device: the first conv (binary stem), both float convs
        # (float stem), or conv 1 + the exact IntConv2d eval path (int8 stem, float64 on the GPU)
        first = packed.first_conv
        if getattr(packed, "stem_int", None) is not None:
            first = torch.nn.Sequential(packed.first_conv, packed.stem_conv2)
        self.first_conv = copy.deepcopy(first).to(self.device).eval()
        self.theta = torch.from_numpy(packed.first_theta).to(self.device)
        self.direction = torch.from_numpy(packed.first_dir).to(self.device)
        self.src = torch.from_numpy(packed.first_src).to(self.device)  # thermometer: repeated channels
        self.input_c2 = CudaPackedLayer(packed.input_c2, device) if packed.input_c2 is not None else None
        self.down = [(CudaPackedLayer(a, device), CudaPackedLayer(b, device)) for a, b in packed.down]
        self.up_ct = [CudaPackedLayer(ct, device) for ct in packed.up_ct]
        self.up_c = [(CudaPackedLayer(a, device), CudaPackedLayer(b, device)) for a, b in packed.up_c]
        self.out_weight = torch.from_numpy(packed.out_weight).float().to(self.device)
        self.out_bias = torch.from_numpy(packed.out_bias).float().to(self.device)
        self.nbytes = packed.nbytes
        self._plans: dict = {}

    def _plan(self, n, h, w):
        key = (n, h, w)
        if key not in self._plans:
            c, d = self.packed.channels, self.device
            b = {"a1": new_buffer_cuda(n, h, w, Segments([self.packed.a1_channels]), d)}
            for lvl in range(4):
                s = 1 << lvl
                b[f"cat{lvl}"] = new_buffer_cuda(n, h // s, w // s, Segments([c[lvl], c[lvl]]), d)
                b[f"pool{lvl}"] = new_buffer_cuda(n, h // (2 * s), w // (2 * s), Segments([c[lvl]]), d)
                b[f"mid_d{lvl}"] = new_buffer_cuda(n, h // (2 * s), w // (2 * s), Segments([c[lvl + 1]]), d)
                u = self.packed.up_channels[3 - lvl]  # Up-C output at this level
                b[f"mid_u{lvl}"] = new_buffer_cuda(n, h // s, w // s, Segments([u]), d)
                b[f"out_u{lvl}"] = new_buffer_cuda(n, h // s, w // s, Segments([u]), d)
            b["bottom"] = new_buffer_cuda(n, h // 16, w // 16, Segments([c[4]]), d)
            self._plans = {key: b}
        return self._plans[key]

    @staticmethod
    def _maxpool(inp, nw, out):
        ho, wo = out.shape[1] - 2, out.shape[2] - 2
        v = lambda dy, dx: inp[:, 1 + dy:1 + dy + 2 * ho:2, 1 + dx:1 + dx + 2 * wo:2, :nw]  # noqa: E731
        out[:, 1:ho + 1, 1:wo + 1, :nw] = v(0, 0) | v(0, 1) | v(1, 0) | v(1, 1)

    @torch.no_grad()
    def run(self, x) -> torch.Tensor:
        """Logits as a CUDA tensor (no host copy)."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
        x = x.to(self.device, torch.float32)
        n, _, h, w = x.shape
        if h % 16 or w % 16:
            raise ValueError(f"PackedMBUCuda needs H and W divisible by 16, got {h}x{w}")
        check_finite_input(x, "PackedMBUCuda")
        c = self.packed.channels
        b = self._plan(n, h, w)
        y = self.first_conv(x).double()[:, self.src]
        th, d = self.theta.view(1, -1, 1, 1), self.direction.view(1, -1, 1, 1)
        bits = torch.where(d > 0, y >= th, torch.where(d < 0, y <= th, torch.isinf(th) & (th < 0)))
        if self.input_c2 is None:  # float / int8 stem: binarised straight into the skip
            _pack_bits_cuda(bits, b["cat0"], 0)
        else:
            _pack_bits_cuda(bits, b["a1"], 0)
            self.input_c2(b["a1"], b["cat0"], 0)
        for lvl, (c1, c2) in enumerate(self.down):
            self._maxpool(b[f"cat{lvl}"], -(-c[lvl] // 64), b[f"pool{lvl}"])
            c1(b[f"pool{lvl}"], b[f"mid_d{lvl}"])
            c2(b[f"mid_d{lvl}"], b[f"cat{lvl + 1}"] if lvl < 3 else b["bottom"], 0)
        prev = b["bottom"]
        for i in range(4):
            lvl = 3 - i
            self.up_ct[i](prev, b[f"cat{lvl}"], -(-c[lvl] // 64))
            c1, c2 = self.up_c[i]
            c1(b[f"cat{lvl}"], b[f"mid_u{lvl}"])
            c2(b[f"mid_u{lvl}"], b[f"out_u{lvl}"])
            prev = b[f"out_u{lvl}"]
        a = unpack_cuda(prev, 0, self.packed.up_channels[3])
        return torch.einsum("kc,nchw->nkhw", self.out_weight, a) + self.out_bias.view(1, -1, 1, 1)

    def __call__(self, x) -> np.ndarray:
        return self.run(x).float().cpu().numpy()

    def layer_outputs(self, x) -> dict[str, np.ndarray]:
        """Binary activations as numpy +-1 arrays, keyed like ``PackedMBU.layer_outputs``."""
        self.run(x)
        b = next(iter(self._plans.values()))
        c = self.packed.channels
        u = lambda name, off, ch: unpack_cuda(b[name], off, ch).cpu().numpy()  # noqa: E731
        w = lambda ch: -(-ch // 64)  # noqa: E731
        out = {"input.1.1": u("cat0", 0, c[0])}
        if self.input_c2 is not None:
            out[self.packed.a1_key] = u("a1", 0, self.packed.a1_channels)
        for i in range(4):
            out[f"down_c{i + 1}.1.0.1"] = u(f"mid_d{i}", 0, c[i + 1])
            out[f"down_c{i + 1}.1.1.1"] = u(f"cat{i + 1}", 0, c[i + 1]) if i < 3 else u("bottom", 0, c[4])
        for i in range(1, 5):
            lvl = 4 - i
            out[f"up_ct{i}.1"] = u(f"cat{lvl}", w(c[lvl]), c[lvl])
            out[f"up_c{i}.0.1"] = u(f"mid_u{lvl}", 0, self.packed.up_channels[i - 1])
            out[f"up_c{i}.1.1"] = u(f"out_u{lvl}", 0, self.packed.up_channels[i - 1])
        return out
