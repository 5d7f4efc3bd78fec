"""Anchored running sums of four lines at once, one line in each lane of a vector.

A running sum is a chain: each step adds to the sum of the step before, so one line's
sums run at the latency of an addition, two operations a sample (``_uniform_kernels.sums_of``
interleaves four segments to hide it). Four lines whose samples are interleaved
(sample ``p`` of line ``r`` at ``4 * p + r``) are summed by the same chains in the four
lanes of a vector: one vector subtraction and one vector addition for four samples. Each
lane does the operations of the one-line loop in its order, so the sums have the same bits.

:func:`lane_sums` emits the loop in LLVM vector operations: Numba's vectorisers leave
chains carried from one iteration to the next as scalars.

This module imports Numba and is imported on first use only (by ``_uniform_kernels``).
"""

import llvmlite.ir
import numba.extending
from numba.core import cgutils, types

# Lines summed together: the lanes of a vector of four float64 values.
LANES = 4


def _f64_lines(array):
    return (
        isinstance(array, types.Array)
        and array.ndim == 1
        and array.layout == "C"
        and array.dtype == types.float64
    )


@numba.extending.intrinsic
def lane_sums(typingctx, ext, sums, first, K, size, steps, segments):
    """The running sums of ``segments`` (a constant) segments of four interleaved lines,
    the ``j``-th starting at position ``first + j * K``, swept together.

    Position ``p`` of lane ``r`` is ``ext[4 * p + r]`` (and ``sums[4 * p + r]``). A segment
    starting at ``a`` gets ``sums[a]`` = the sum of ``ext[a .. a + size - 1]`` added left
    to right from zero, then, for ``t < steps``, ``sums[a + t + 1] = sums[a + t] +
    (ext[a + t + size] - ext[a + t])``: ``_uniform_kernels.sums_of``'s chain, lane by lane.
    Nothing is checked: the caller passes positions inside both arrays.
    """
    if not (
        _f64_lines(ext)
        and _f64_lines(sums)
        and sums.mutable
        and all(isinstance(t, types.Integer) for t in (first, K, size, steps))
        and isinstance(segments, types.IntegerLiteral)
    ):
        return None
    count = segments.literal_value

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array

        ext_data = make_array(signature.args[0])(context, builder, args[0]).data
        sums_data = make_array(signature.args[1])(context, builder, args[1]).data
        first_p, k_p, size_p, steps_p = (
            context.cast(builder, value, ty, types.intp) for value, ty in zip(args[2:6], signature.args[2:6])
        )
        vector = llvmlite.ir.VectorType(llvmlite.ir.DoubleType(), LANES)

        def at(data, position):
            item = builder.gep(data, [builder.mul(position, cgutils.intp_t(LANES))])
            return builder.bitcast(item, vector.as_pointer())

        starts = [builder.add(first_p, builder.mul(k_p, cgutils.intp_t(j))) for j in range(count)]
        chains = [
            cgutils.alloca_once_value(builder, llvmlite.ir.Constant(vector, [0.0] * LANES)) for _ in starts
        ]
        with cgutils.for_range(builder, size_p) as loop:
            for start, chain in zip(starts, chains):
                sample = builder.load(at(ext_data, builder.add(start, loop.index)), align=8)
                builder.store(builder.fadd(builder.load(chain), sample), chain)
        for start, chain in zip(starts, chains):
            builder.store(builder.load(chain), at(sums_data, start), align=8)
        with cgutils.for_range(builder, steps_p) as loop:
            for start, chain in zip(starts, chains):
                leaving = builder.add(start, loop.index)
                entering = builder.load(at(ext_data, builder.add(leaving, size_p)), align=8)
                difference = builder.fsub(entering, builder.load(at(ext_data, leaving), align=8))
                total = builder.fadd(builder.load(chain), difference)
                builder.store(total, chain)
                builder.store(total, at(sums_data, builder.add(leaving, cgutils.intp_t(1))), align=8)
        return context.get_dummy_value()

    return types.none(ext, sums, first, K, size, steps, segments), codegen
