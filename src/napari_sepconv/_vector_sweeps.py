"""The fused separable kernel's sweeps of seven to nine taps as explicit vector loops, where
the CPU has 512-bit vectors (AVX-512F); elsewhere they sweep nothing and the kernel's own
loops do all. Both give the bits of those loops: the same fused multiply-adds on the same
values in the same order, only loaded and issued differently.

``shifted_run``, the row pass. Each output reads the padded row at seven to nine
consecutive positions. Loaded once per tap, every vector load but one in 16 straddles two
cache lines, and the loads, not the multiply-adds, set the pace: two vectors loaded per
step and shifted against each other (``valignd``) feed the same chain in half the time (17
taps, as nine and eight, over 2048 rows of 2048 samples on one Zen 4 core: 3.8 ms with a
load a tap, 1.8 ms shifted; ``gaussian`` sigma 2 on 2048² float32, two threads: 2.8 ->
2.5 ms).

``four_row_run``, the vertical pass. Four output rows share their source rows; the loop
LLVM made of ``_quad_run`` ran the four chains of one vector one after the other, and the
multiply-add units waited on them. Two vectors a step, each source row loaded once and
fed to the chains it reaches, give eight independent chains issued row by row (17 taps on
2048² float32, one thread: the vertical pass 2.27 -> 2.11 ms; ``gaussian`` uint8 into
float32, two threads: 2.1-2.5 -> 1.9-2.2 ms).

This module imports Numba and is imported on first use only (by ``_separable_kernels``).
"""

import llvmlite.binding
import llvmlite.ir as ir
import numba.extending
from numba.core import cgutils, types

from ._cpu_kernels import fmuladd_call

TAPS = 9  # the longest run (``_separable_kernels._run_length``)
ROWS = TAPS + 3  # the source rows of four output rows' run of ``TAPS`` taps

# LLVM reads the shifts' inline assembly with the CPU's assembly parser, which Numba does
# not start
llvmlite.binding.initialize_native_asmparser()


def _vector_bytes(context):
    """Bytes of the vectors the loops use on the CPU compiled for: 64 with AVX-512F, else 0
    (no loop)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return 64 if "+avx512f" in features.split(",") else 0


def _float_type(arrays, weights):
    """The float type of ``arrays`` (1-D, C-contiguous, all of it) where ``weights`` is a
    tuple of ``TAPS`` of it; else None (no such loop)."""
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    dtype = arrays[0].dtype
    if not isinstance(dtype, types.Float) or any(a.dtype != dtype for a in arrays):
        return None
    if not (isinstance(weights, types.UniTuple) and weights.count == TAPS and weights.dtype == dtype):
        return None
    return dtype


class _Vectors:
    """The vector operations of a loop on samples of ``dtype``: ``lanes`` samples a vector
    (0 where the CPU has no wide vectors)."""

    def __init__(self, context, builder, dtype):
        self.builder = builder
        self.itemsize = context.get_abi_sizeof(context.get_value_type(dtype))
        self.lanes = _vector_bytes(context) // self.itemsize
        self.intp = context.get_value_type(types.intp)
        if self.lanes == 0:
            return
        self.type = ir.VectorType(context.get_value_type(dtype), self.lanes)
        self.bits = ir.VectorType(ir.IntType(8 * self.itemsize), self.lanes)
        self.zero = ir.Constant(self.type, None)

    def constant(self, value):
        return ir.Constant(self.intp, value)

    def fmuladd(self, a, b, c):
        return fmuladd_call(self.builder, a, b, c)

    def splat(self, value):
        """A vector of ``value`` in every lane."""
        b = self.builder
        one = b.insert_element(ir.Constant(self.type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), None))

    def taps(self, weights_value):
        return [self.splat(self.builder.extract_value(weights_value, k)) for k in range(TAPS)]

    def _address(self, pointer, at):
        return self.builder.bitcast(self.builder.gep(pointer, [at]), self.type.as_pointer())

    def load(self, pointer, at):
        """The vector at sample ``at`` of ``pointer`` (any alignment)."""
        return self.builder.load(self._address(pointer, at), align=self.itemsize)

    def store(self, value, pointer, at):
        self.builder.store(value, self._address(pointer, at), align=self.itemsize)

    def shift(self, low, high, k):
        """Samples ``k .. k + lanes - 1`` of ``low`` followed by ``high`` (``k`` from 0 to
        ``lanes``): one ``valignd`` (``valignq``), which LLVM does not choose for such a
        shuffle (it permutes with ``vpermt2ps``, an index vector and a copy a step, slower
        than the loads)."""
        if k == 0:
            return low
        if k == self.lanes:  # float64: the ninth tap reads the next vector itself
            return high
        b = self.builder
        instruction = "valignd" if self.itemsize == 4 else "valignq"
        shifted = b.asm(
            ir.FunctionType(self.bits, [self.bits, self.bits]),
            f"{instruction} $${k}, $1, $2, $0",
            "=v,v,v",
            [b.bitcast(low, self.bits), b.bitcast(high, self.bits)],
            False,
        )
        return b.bitcast(shifted, self.type)


def _by_run(builder, run, count, sweep):
    """``sweep(9)``, ``sweep(8)`` or ``sweep(7)`` as ``run`` says; ``count`` where ``run`` is
    one of them, else 0 (no sweep)."""
    intp = count.type
    is_seven, is_eight, is_nine = (builder.icmp_signed("==", run, ir.Constant(intp, r)) for r in (7, 8, 9))
    with builder.if_else(is_nine) as (nine, fewer):
        with nine:
            sweep(9)
        with fewer:
            with builder.if_else(is_eight) as (eight, seven):
                with eight:
                    sweep(8)
                with seven:
                    with builder.if_then(is_seven):
                        sweep(7)
    return builder.select(builder.or_(builder.or_(is_seven, is_eight), is_nine), count, ir.Constant(intp, 0))


@numba.extending.intrinsic
def shifted_run(typingctx, acc, row, start, run, first, weights):
    """Sweep ``run`` (7, 8 or 9; else none) consecutive taps over the first samples of ``acc``:
    ``acc[j]`` = ``first ? 0 : acc[j]``, then ``fma(row[start + j + k], weights[k], .)`` for
    ``k`` = 0 .. ``run - 1``, in that order (``_separable_kernels._row_run``'s chain). Returns
    how many samples it swept, whole vectors that read inside ``row``: the caller sweeps the
    rest (all of them where the CPU has no wide vectors).

    ``acc`` and ``row`` are 1-D C-contiguous arrays of one float type that do not overlap;
    ``weights`` is a tuple of ``TAPS`` of them (those past ``run`` unused).
    """
    dtype = _float_type((acc, row), weights)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array  # not imported by a kernel loaded from the cache

        acc_value, row_value, start_value, run_value, first_value, weights_value = args
        vectors = _Vectors(context, builder, dtype)
        lanes = vectors.lanes
        if lanes == 0:
            return vectors.constant(0)
        out = make_array(signature.args[0])(context, builder, value=acc_value)
        src = make_array(signature.args[1])(context, builder, value=row_value)
        n = builder.extract_value(out.shape, 0)
        row_size = builder.extract_value(src.shape, 0)
        start = context.cast(builder, start_value, signature.args[2], types.intp)
        run = context.cast(builder, run_value, signature.args[3], types.intp)
        first = context.cast(builder, first_value, signature.args[4], types.boolean)

        # whole vectors j = 0, lanes, ...: the step reads row[start + j .. start + j + 2 * lanes)
        width = vectors.constant(lanes)
        fit_out = builder.sdiv(n, width)
        fit_row = builder.sub(builder.sdiv(builder.sub(row_size, start), width), vectors.constant(1))
        count = builder.select(builder.icmp_signed("<", fit_out, fit_row), fit_out, fit_row)
        count = builder.select(
            builder.icmp_signed("<", count, vectors.constant(0)), vectors.constant(0), count
        )
        taps = vectors.taps(weights_value)
        source = builder.gep(src.data, [start])

        def sweep(n_taps):
            with cgutils.for_range(builder, count) as loop:
                j = builder.mul(loop.index, width)
                low = vectors.load(source, j)
                high = vectors.load(source, builder.add(j, width))
                total = builder.select(first, vectors.zero, vectors.load(out.data, j))
                for k in range(n_taps):
                    total = vectors.fmuladd(vectors.shift(low, high, k), taps[k], total)
                vectors.store(total, out.data, j)

        return builder.mul(_by_run(builder, run, count, sweep), width)

    return types.intp(acc, row, start, run, first, weights), codegen


@numba.extending.intrinsic
def four_row_run(typingctx, accs, rows, run, first, weights):
    """The vertical sweep of ``run`` (7, 8 or 9; else none) taps for four output rows:
    ``accs[r][j]`` = ``first ? 0 : accs[r][j]``, then ``fma(rows[r + k][j], weights[k], .)``
    for ``k`` = 0 .. ``run - 1`` in that order (``_separable_kernels._quad_run``'s chains).
    Returns how many samples it swept (whole pairs of vectors); the caller sweeps the rest
    (all of them where the CPU has no wide vectors).

    Each source row is loaded once a step for the (up to) four chains it feeds, and the
    step sweeps two vectors of each row: eight independent chains of fused multiply-adds,
    issued source row by source row.

    ``accs`` is a tuple of four 1-D C-contiguous float arrays and ``rows`` of ``ROWS`` (at
    least as long as ``accs[0]``, of the same type, not overlapping them; those past
    ``run + 3`` unused); ``weights`` a tuple of ``TAPS`` floats of that type.
    """
    if not (isinstance(accs, types.UniTuple) and accs.count == 4):
        return None
    if not (isinstance(rows, types.UniTuple) and rows.count == ROWS):
        return None
    dtype = _float_type((accs.dtype, rows.dtype), weights)
    if dtype is None:
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array  # not imported by a kernel loaded from the cache

        accs_value, rows_value, run_value, first_value, weights_value = args
        vectors = _Vectors(context, builder, dtype)
        lanes = vectors.lanes
        if lanes == 0:
            return vectors.constant(0)
        acc_type, row_type = signature.args[0].dtype, signature.args[1].dtype
        accs = [
            make_array(acc_type)(context, builder, builder.extract_value(accs_value, r)) for r in range(4)
        ]
        outs = [acc.data for acc in accs]
        srcs = [
            make_array(row_type)(context, builder, builder.extract_value(rows_value, q)).data
            for q in range(ROWS)
        ]
        n = builder.extract_value(accs[0].shape, 0)
        run = context.cast(builder, run_value, signature.args[2], types.intp)
        first = context.cast(builder, first_value, signature.args[3], types.boolean)
        step = vectors.constant(2 * lanes)
        count = builder.sdiv(n, step)
        taps = vectors.taps(weights_value)

        def sweep(n_taps):
            with cgutils.for_range(builder, count) as loop:
                j = builder.mul(loop.index, step)
                at = [j, builder.add(j, vectors.constant(lanes))]  # the step's two vectors
                sums = [
                    [builder.select(first, vectors.zero, vectors.load(outs[r], a)) for a in at]
                    for r in range(4)
                ]
                for q in range(n_taps + 3):  # source row q feeds output row r with tap q - r
                    samples = [vectors.load(srcs[q], a) for a in at]
                    for r in range(4):
                        if 0 <= q - r < n_taps:
                            sums[r] = [vectors.fmuladd(x, taps[q - r], s) for x, s in zip(samples, sums[r])]
                for r in range(4):
                    for total, a in zip(sums[r], at):
                        vectors.store(total, outs[r], a)

        return builder.mul(_by_run(builder, run, count, sweep), step)

    return types.intp(accs, rows, run, first, weights), codegen
