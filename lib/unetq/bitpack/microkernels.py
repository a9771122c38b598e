"""Register-blocked XOR/AND-popcount micro-kernels, written as LLVM IR (numba ``@intrinsic``).

A micro-kernel computes, for ``npx`` pixels and ``8 * nvec`` output-channel lanes,

    acc[p, c] (+)= sum_{k < K} f(a[a_off + p * a_stride + k], w[w_off + k * 8 nvec + c])

with ``f`` one of

- ``"xor"``:      popc(a ^ w)                       (binary weights)
- ``"xor_and"``:  popc((a ^ s) & m)                 (masked weights, one popcount)
- ``"sub"``:      popc(a ^ pos) - popc(a ^ neg)     (masked weights, the paper's two popcounts)

The ``npx * nvec`` accumulators are ``<8 x i64>`` SSA values (they live in zmm registers), each
``a`` word is broadcast once per pixel and each weight vector is loaded once per ``k`` and reused
for the ``npx`` pixels. ``llvm.ctpop.v8i64`` compiles to ``vpopcntq`` on CPUs with
AVX-512 VPOPCNTDQ (and to a correct shuffle-based sequence elsewhere). numba's loop vectorizer
alone keeps the accumulators in memory and spends a third of its time on loop overhead, which
is why these kernels are written by hand.

Arguments (all arrays 1-D contiguous views): ``(a, a_off, a_stride, w, m, w_off, K, acc, init)``;
``m`` is ignored by ``"xor"`` (pass ``w``), it is the mask (``"xor_and"``) or ``neg`` plane
(``"sub"``, with ``w`` = ``pos``); ``acc`` is int64 ``[npx * 8 nvec]`` (pixel-major); ``init`` != 0
starts from zero instead of the values in ``acc``.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

MODES = ("xor", "xor_and", "sub")
NVECS = (1, 2, 4, 8)


def pixels_per_call(nvec: int) -> int:
    """Pixels per micro-kernel call: 16 accumulators (8 for nvec=1..2 -> 8 pixels)."""
    return min(8, 16 // nvec)


def _make(mode: str, nvec: int, npx: int):
    if mode not in MODES:
        raise ValueError(mode)

    @intrinsic
    def micro(typingctx, a, a_off, a_stride, w, m, w_off, K, acc, init):
        sig = types.void(a, a_off, a_stride, w, m, w_off, K, acc, init)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            vt = ir.VectorType(i64, 8)
            vptr = vt.as_pointer()
            st = signature.args

            def data(i):
                return context.make_array(st[i])(context, builder, args[i]).data

            def as_i64(i):
                return context.cast(builder, args[i], st[i], types.int64)

            a_ptr, w_ptr, m_ptr, acc_ptr = data(0), data(3), data(4), data(7)
            a_off_v, a_str_v, w_off_v, k_v, init_v = (as_i64(i) for i in (1, 2, 5, 6, 8))
            ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt]), "llvm.ctpop.v8i64")
            zero = ir.Constant(vt, [0] * 8)
            is_init = builder.icmp_signed("!=", init_v, ir.Constant(i64, 0))
            lanes = 8 * nvec

            def vload(ptr, off):
                return builder.load(builder.bitcast(builder.gep(ptr, [off]), vptr), align=8)

            def vstore(val, ptr, off):
                builder.store(val, builder.bitcast(builder.gep(ptr, [off]), vptr), align=8)

            slots = {}
            for p in range(npx):
                for j in range(nvec):
                    off = ir.Constant(i64, p * lanes + 8 * j)
                    start = builder.select(is_init, zero, vload(acc_ptr, off))
                    slots[p, j] = cgutils.alloca_once_value(builder, start)
            undef = ir.Constant(vt, ir.Undefined)
            mask0 = ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8)
            with cgutils.for_range(builder, k_v) as loop:
                k = loop.index
                wbase = builder.add(w_off_v, builder.mul(k, ir.Constant(i64, lanes)))
                wv = [vload(w_ptr, builder.add(wbase, ir.Constant(i64, 8 * j))) for j in range(nvec)]
                mv = ([vload(m_ptr, builder.add(wbase, ir.Constant(i64, 8 * j))) for j in range(nvec)]
                      if mode != "xor" else None)
                for p in range(npx):
                    aoff = builder.add(builder.add(a_off_v, builder.mul(a_str_v, ir.Constant(i64, p))), k)
                    aval = builder.load(builder.gep(a_ptr, [aoff]))
                    splat = builder.shuffle_vector(builder.insert_element(undef, aval, ir.Constant(ir.IntType(32), 0)),
                                                   undef, mask0)
                    for j in range(nvec):
                        if mode == "xor":
                            pc = builder.call(ctpop, [builder.xor(splat, wv[j])])
                        elif mode == "xor_and":
                            pc = builder.call(ctpop, [builder.and_(builder.xor(splat, wv[j]), mv[j])])
                        else:
                            pc = builder.sub(builder.call(ctpop, [builder.xor(splat, wv[j])]),
                                             builder.call(ctpop, [builder.xor(splat, mv[j])]))
                        builder.store(builder.add(builder.load(slots[p, j]), pc), slots[p, j])
            for p in range(npx):
                for j in range(nvec):
                    vstore(builder.load(slots[p, j]), acc_ptr, ir.Constant(i64, p * lanes + 8 * j))
            return context.get_dummy_value()

        return sig, codegen

    micro.__name__ = f"micro_{mode}_v{nvec}_p{npx}"
    return micro


# Module-level names (numba resolves intrinsics as globals; explicit names keep caching simple).
xor_v1_p8, xor_v1_p1 = _make("xor", 1, 8), _make("xor", 1, 1)
xor_v2_p8, xor_v2_p1 = _make("xor", 2, 8), _make("xor", 2, 1)
xor_v4_p4, xor_v4_p1 = _make("xor", 4, 4), _make("xor", 4, 1)
xor_v8_p2, xor_v8_p1 = _make("xor", 8, 2), _make("xor", 8, 1)
xa_v1_p8, xa_v1_p1 = _make("xor_and", 1, 8), _make("xor_and", 1, 1)
xa_v2_p8, xa_v2_p1 = _make("xor_and", 2, 8), _make("xor_and", 2, 1)
xa_v4_p4, xa_v4_p1 = _make("xor_and", 4, 4), _make("xor_and", 4, 1)
xa_v8_p2, xa_v8_p1 = _make("xor_and", 8, 2), _make("xor_and", 8, 1)
sub_v1_p8, sub_v1_p1 = _make("sub", 1, 8), _make("sub", 1, 1)
sub_v2_p8, sub_v2_p1 = _make("sub", 2, 8), _make("sub", 2, 1)
sub_v4_p4, sub_v4_p1 = _make("sub", 4, 4), _make("sub", 4, 1)
sub_v8_p2, sub_v8_p1 = _make("sub", 8, 2), _make("sub", 8, 1)
