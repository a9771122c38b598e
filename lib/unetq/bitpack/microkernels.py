"""Register-blocked XOR/AND-popcount micro-kernels with the threshold fused in, written as LLVM
IR (numba ``@intrinsic``).

One call computes ``npx`` output pixels x ``8 * nvec`` output channels (one output word per
pixel when ``8 * nvec`` = 64, or the low bits of it) of a packed convolution:

    v[p, c] = sum_{r < nrows} sum_{k < K} f(a[a_off + r*a_rstride + p*a_pstride + k],
                                             w[w_off + r*w_rstride + k*8nvec + c])
    out[out_off + p*out_pstride] = ((OR_c (v[p, c] <= t[t_off + c]) << c) ^ flip_mask) & valid_mask

with ``f`` one of

- ``"xor"``:      popc(a ^ w)                       (binary weights)
- ``"xor_and"``:  popc((a ^ s) & m)                 (masked weights, one popcount)
- ``"sub"``:      popc(a ^ pos) - popc(a ^ neg)     (masked weights, the paper's two popcounts)

The ``npx * nvec`` accumulators are ``<8 x i64>`` SSA values (zmm registers); each activation
word is broadcast once per pixel and each weight vector loaded once per ``k`` and reused for the
``npx`` pixels; ``llvm.ctpop.v8i64`` compiles to ``vpopcntq`` on CPUs with AVX-512 VPOPCNTDQ
(and to a correct shuffle-based sequence elsewhere). The threshold is a vector compare whose
8-bit masks are assembled into the output word (``vpcmpq`` into a mask register + ``kmov``), so
the bits are written packed without a scalar loop. numba's own loop vectorizer keeps such
accumulators in memory and packs bits one by one, which costs 2-4x more.

Arguments: ``(a, a_off, a_pstride, a_rstride, nrows, K, w, m, w_off, w_rstride, t, t_off,
flip_mask, valid_mask, out, out_off, out_pstride)``; arrays are 1-D contiguous (``a``, ``w``,
``m``, ``out`` uint64; ``t`` int64); ``m`` is ignored by ``"xor"`` (pass ``w``) and is the mask
(``"xor_and"``) or ``neg`` plane (``"sub"``, with ``w`` = ``pos``).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

MODES = ("xor", "xor_and", "sub")
NVECS = (1, 2, 4, 8)


def pixels_per_call(nvec: int) -> int:
    """Pixels per call: 16 accumulators (8 pixels when nvec <= 2)."""
    return min(8, 16 // nvec)


def _make(mode: str, nvec: int, npx: int):
    if mode not in MODES:
        raise ValueError(mode)

    @intrinsic
    def micro(typingctx, a, a_off, a_pstride, a_rstride, nrows, K, w, m, w_off, w_rstride, t, t_off,
              flip_mask, valid_mask, out, out_off, out_pstride):
        sig = types.void(a, a_off, a_pstride, a_rstride, nrows, K, w, m, w_off, w_rstride, t, t_off,
                         flip_mask, valid_mask, out, out_off, out_pstride)

        def codegen(context, builder, signature, args):
            i64, i8 = ir.IntType(64), ir.IntType(8)
            vt = ir.VectorType(i64, 8)
            vptr = vt.as_pointer()
            st = signature.args

            def data(i):
                return context.make_array(st[i])(context, builder, args[i]).data

            def scalar(i):
                return context.cast(builder, args[i], st[i], types.int64)

            def c64(v):
                return ir.Constant(i64, v)

            a_ptr, w_ptr, m_ptr, t_ptr, o_ptr = data(0), data(6), data(7), data(10), data(14)
            a_off_v, a_ps, a_rs, nrows_v, k_v = (scalar(i) for i in (1, 2, 3, 4, 5))
            w_off_v, w_rs, t_off_v, o_off_v, o_ps = (scalar(i) for i in (8, 9, 11, 15, 16))
            fmask = context.cast(builder, args[12], st[12], types.uint64)
            vmask = context.cast(builder, args[13], st[13], types.uint64)
            ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt]), "llvm.ctpop.v8i64")
            zero = ir.Constant(vt, [0] * 8)
            lanes = 8 * nvec

            def vload(ptr, off):
                return builder.load(builder.bitcast(builder.gep(ptr, [off]), vptr), align=8)

            slots = {(p, j): cgutils.alloca_once_value(builder, zero) for p in range(npx) for j in range(nvec)}
            undef = ir.Constant(vt, ir.Undefined)
            mask0 = ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8)
            with cgutils.for_range(builder, nrows_v) as rloop:
                r = rloop.index
                a_row = builder.add(a_off_v, builder.mul(r, a_rs))
                w_row = builder.add(w_off_v, builder.mul(r, w_rs))
                with cgutils.for_range(builder, k_v) as kloop:
                    k = kloop.index
                    wbase = builder.add(w_row, builder.mul(k, c64(lanes)))
                    wv = [vload(w_ptr, builder.add(wbase, c64(8 * j))) for j in range(nvec)]
                    mv = ([vload(m_ptr, builder.add(wbase, c64(8 * j))) for j in range(nvec)]
                          if mode != "xor" else None)
                    for p in range(npx):
                        aoff = builder.add(builder.add(a_row, builder.mul(a_ps, c64(p))), k)
                        aval = builder.load(builder.gep(a_ptr, [aoff]))
                        splat = builder.shuffle_vector(
                            builder.insert_element(undef, aval, ir.Constant(ir.IntType(32), 0)), undef, mask0)
                        for j in range(nvec):
                            if mode == "xor":
                                pc = builder.call(ctpop, [builder.xor(splat, wv[j])])
                            elif mode == "xor_and":
                                pc = builder.call(ctpop, [builder.and_(builder.xor(splat, wv[j]), mv[j])])
                            else:
                                pc = builder.sub(builder.call(ctpop, [builder.xor(splat, wv[j])]),
                                                 builder.call(ctpop, [builder.xor(splat, mv[j])]))
                            builder.store(builder.add(builder.load(slots[p, j]), pc), slots[p, j])
            # fused threshold: bit c = (v <= t[c]), packed with vector compares
            tv = [vload(t_ptr, builder.add(t_off_v, c64(8 * j))) for j in range(nvec)]
            for p in range(npx):
                word = c64(0)
                for j in range(nvec):
                    le = builder.icmp_signed("<=", builder.load(slots[p, j]), tv[j])  # <8 x i1>
                    bits = builder.zext(builder.bitcast(le, i8), i64)
                    word = builder.or_(word, builder.shl(bits, c64(8 * j)) if j else bits)
                word = builder.and_(builder.xor(word, fmask), vmask)
                dst = builder.add(o_off_v, builder.mul(o_ps, c64(p)))
                builder.store(word, builder.gep(o_ptr, [dst]))
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
