"""Output rows written past the caches (non-temporal stores), for outputs too large to stay
in them, and input rows asked for ahead of their use (:func:`prefetch`).

A row written the usual way is first read into the cache, line by line, then written
back: a large output costs its size twice in memory traffic, and evicts the input rows
the next output rows read. Non-temporal stores write whole cache lines straight to
memory. :func:`scale_row` writes ``dst[i] = src[i] * factor`` that way:
the same operations as the scalar loop, so the same values, in 64-byte vector stores
aligned to 64 bytes, the samples before the first such boundary and after the last one
stored as usual. A fence then orders the stores before whatever the thread does next
(non-temporal stores are not ordered with other stores). :func:`scale_rows` does the same
for four rows whose samples lie interleaved (``_lane_sums``), taking them apart with
vector shuffles, where the four rows lie alike against the 64-byte boundaries.

Kernels choose it for outputs larger than the caches (``STREAM_BYTES``): a small output
read again soon is better left in them.

A kernel whose rows alternate between reading memory and computing in the caches (the
fused running sums, ``_uniform_kernels``) asks for its next input row with
:func:`prefetch` before the computing part, so that the row arrives while it runs.

This module imports Numba and is imported on first use only.
"""

import llvmlite.ir
import numba
import numba.extending
from numba.core import cgutils, types

from ._cpu_kernels import _imin

# Outputs of at least this many bytes are written past the caches.
STREAM_BYTES = 8 << 20

_LINE = 64  # bytes a vector store writes, and the alignment it needs


@numba.extending.intrinsic
def _misalignment(typingctx, array):
    """The address of ``array``'s first sample modulo 64 bytes."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array

        data = make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.ptrtoint(data, cgutils.intp_t)
        return builder.urem(address, cgutils.intp_t(_LINE))

    return types.intp(array), codegen


@numba.extending.intrinsic
def _scale_lines(typingctx, src, dsts, start, lines, factor):
    """``dsts[r][start + k] = src[(start + k) * L + r] * factor`` (``L`` rows in the tuple
    ``dsts``, their samples interleaved in ``src``) for the ``lines`` times 64 bytes of each
    row from ``start``, which lies on a 64-byte boundary of every row: one vector product and
    one non-temporal store per 64 bytes of a row, the rows' samples taken apart by shuffles.
    All are contiguous 1-D arrays, ``src`` at least ``L`` times as long as the rows and of a
    type as wide."""
    if not (
        isinstance(dsts, types.UniTuple)
        and all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in (src, dsts.dtype))
        and isinstance(src.dtype, types.Float)
        and isinstance(dsts.dtype.dtype, types.Float)
        and src.dtype.bitwidth >= dsts.dtype.dtype.bitwidth  # a product rounded to dst's type
        and src.dtype == factor
    ):
        return None
    rows = dsts.count

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array

        src_ty, dsts_ty = signature.args[0], signature.args[1]
        src_array = make_array(src_ty)(context, builder, args[0])
        dst_arrays = [
            make_array(dsts_ty.dtype)(context, builder, value)
            for value in cgutils.unpack_tuple(builder, args[1], rows)
        ]
        start_index, n_lines, factor_value = args[2:]
        src_elem = context.get_data_type(src_ty.dtype)
        dst_elem = context.get_data_type(dsts_ty.dtype.dtype)
        lanes = _LINE // context.get_abi_sizeof(dst_elem)
        block_vec = llvmlite.ir.VectorType(src_elem, lanes * rows)
        src_vec = llvmlite.ir.VectorType(src_elem, lanes)
        dst_vec = llvmlite.ir.VectorType(dst_elem, lanes)
        splat = cgutils.get_null_value(src_vec)
        for lane in range(lanes):
            splat = builder.insert_element(splat, factor_value, cgutils.int32_t(lane))
        picks = [
            llvmlite.ir.Constant(
                llvmlite.ir.VectorType(cgutils.int32_t, lanes), [k * rows + r for k in range(lanes)]
            )
            for r in range(rows)
        ]
        nontemporal = builder.module.add_metadata([cgutils.int32_t(1)])
        with cgutils.for_range(builder, n_lines) as loop:
            first = builder.add(start_index, builder.mul(loop.index, cgutils.intp_t(lanes)))
            at = builder.mul(first, cgutils.intp_t(rows))
            source = builder.bitcast(builder.gep(src_array.data, [at]), block_vec.as_pointer())
            block = builder.load(source, align=context.get_abi_sizeof(src_elem))
            for r, dst_array in enumerate(dst_arrays):
                row = block if rows == 1 else builder.shuffle_vector(block, block, picks[r])
                values = builder.fmul(row, splat)
                if dst_elem != src_elem:
                    values = builder.fptrunc(values, dst_vec)
                target = builder.bitcast(builder.gep(dst_array.data, [first]), dst_vec.as_pointer())
                store = builder.store(values, target, align=_LINE)
                store.set_metadata("nontemporal", nontemporal)
        with builder.if_then(builder.icmp_signed(">", n_lines, n_lines.type(0))):
            _order_stores(builder)
        return context.get_dummy_value()

    return types.none(src, dsts, start, lines, factor), codegen


def _order_stores(builder):
    """Order the non-temporal stores before the thread's later stores: ``sfence`` on x86
    (the instruction made for it), LLVM's strongest fence elsewhere."""
    if builder.module.triple.split("-")[0] in ("x86_64", "i386", "i586", "i686"):
        sfence = builder.module.declare_intrinsic(
            "llvm.x86.sse.sfence", fnty=llvmlite.ir.FunctionType(llvmlite.ir.VoidType(), [])
        )
        builder.call(sfence, [])
    else:
        builder.fence("seq_cst")


def _scale_row(src, dst, factor):
    """``dst[i] = src[i] * factor`` for every ``i`` of ``dst`` (``src`` at least as long),
    the bulk in non-temporal stores."""
    n = dst.size
    if src.size < n:
        raise ValueError("scale_row: src is shorter than dst")
    itemsize = dst.itemsize
    off = _misalignment(dst)
    head = n if off % itemsize != 0 else _imin(n, ((_LINE - off) % _LINE) // itemsize)
    lanes = _LINE // itemsize
    lines = (n - head) // lanes
    for i in range(head):
        dst[i] = src[i] * factor
    _scale_lines(src, (dst,), head, lines, factor)
    for i in range(head + lines * lanes, n):
        dst[i] = src[i] * factor


scale_row = numba.njit(inline="always", cache=False)(_scale_row)


def _scale_rows(src, d0, d1, d2, d3, factor):
    """``d_r[i] = src[4 * i + r] * factor`` for every ``i`` of the four rows ``d_r`` (of one
    length, their samples interleaved in ``src``, at least four times as long), the bulk in
    non-temporal stores where the four rows lie alike against 64-byte boundaries."""
    n = d0.size
    if src.size < 4 * n or d1.size != n or d2.size != n or d3.size != n:
        raise ValueError("scale_rows: src is shorter than the rows, or their lengths differ")
    itemsize = d0.itemsize
    off = _misalignment(d0)
    alike = off == _misalignment(d1) and off == _misalignment(d2) and off == _misalignment(d3)
    head = n if off % itemsize != 0 or not alike else _imin(n, ((_LINE - off) % _LINE) // itemsize)
    lanes = _LINE // itemsize
    lines = (n - head) // lanes
    for i in range(head):
        d0[i] = src[4 * i] * factor
        d1[i] = src[4 * i + 1] * factor
        d2[i] = src[4 * i + 2] * factor
        d3[i] = src[4 * i + 3] * factor
    _scale_lines(src, (d0, d1, d2, d3), head, lines, factor)
    for i in range(head + lines * lanes, n):
        d0[i] = src[4 * i] * factor
        d1[i] = src[4 * i + 1] * factor
        d2[i] = src[4 * i + 2] * factor
        d3[i] = src[4 * i + 3] * factor


scale_rows = numba.njit(inline="always", cache=False)(_scale_rows)


@numba.extending.intrinsic
def prefetch(typingctx, array):
    """Ask for the cache lines of the contiguous 1-D ``array`` to be brought into the
    second-level cache ahead of their use: one prefetch per 64 bytes, a hint that changes
    no value and never faults."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array

        ary = make_array(signature.args[0])(context, builder, args[0])
        item = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        nbytes = builder.mul(ary.nitems, cgutils.intp_t(item))
        base = builder.bitcast(ary.data, cgutils.voidptr_t)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch",
            fnty=llvmlite.ir.FunctionType(
                llvmlite.ir.VoidType(),
                [cgutils.voidptr_t, cgutils.int32_t, cgutils.int32_t, cgutils.int32_t],
            ),
        )
        lines = builder.udiv(builder.add(nbytes, cgutils.intp_t(_LINE - 1)), cgutils.intp_t(_LINE))
        with cgutils.for_range(builder, lines) as loop:
            ptr = builder.gep(base, [builder.mul(loop.index, cgutils.intp_t(_LINE))])
            builder.call(fn, [ptr, cgutils.int32_t(0), cgutils.int32_t(2), cgutils.int32_t(1)])
        return context.get_dummy_value()

    return types.none(array), codegen
