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

TAPS = 9  # the longest run (``_separable_kernels._run_length``)

# LLVM reads the shifts' inline assembly with the CPU's assembly parser, which Numba does
# not start
llvmlite.binding.initialize_native_asmparser()


def _vector_bytes(context):
    """Bytes of the widest vector worth shifting in registers on the CPU compiled for: 64
    with AVX-512F, else 0 (none)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return 64 if "+avx512f" in features.split(",") else 0


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
    arrays = (acc, row)
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    dtype = acc.dtype
    if not (
        isinstance(dtype, types.Float)
        and row.dtype == dtype
        and isinstance(weights, types.UniTuple)
        and weights.count == TAPS
        and weights.dtype == dtype
    ):
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array  # not imported by a kernel loaded from the cache

        acc_value, row_value, start_value, run_value, first_value, weights_value = args
        intp = context.get_value_type(types.intp)
        itemsize = context.get_abi_sizeof(context.get_value_type(dtype))
        lanes = _vector_bytes(context) // itemsize
        if lanes == 0:
            return ir.Constant(intp, 0)
        out = make_array(signature.args[0])(context, builder, value=acc_value)
        src = make_array(signature.args[1])(context, builder, value=row_value)
        n = builder.extract_value(out.shape, 0)
        row_size = builder.extract_value(src.shape, 0)
        start = context.cast(builder, start_value, signature.args[2], types.intp)
        run = context.cast(builder, run_value, signature.args[3], types.intp)
        first = context.cast(builder, first_value, signature.args[4], types.boolean)

        # whole vectors j = 0, lanes, ...: the step reads row[start + j .. start + j + 2 * lanes)
        width = ir.Constant(intp, lanes)
        fit_out = builder.sdiv(n, width)
        fit_row = builder.sub(builder.sdiv(builder.sub(row_size, start), width), ir.Constant(intp, 1))
        count = builder.select(builder.icmp_signed("<", fit_out, fit_row), fit_out, fit_row)
        count = builder.select(
            builder.icmp_signed("<", count, ir.Constant(intp, 0)), ir.Constant(intp, 0), count
        )
        runs = [builder.icmp_signed("==", run, ir.Constant(intp, r)) for r in (7, 8, 9)]
        count = builder.select(builder.or_(builder.or_(*runs[:2]), runs[2]), count, ir.Constant(intp, 0))

        element = context.get_value_type(dtype)
        vector = ir.VectorType(element, lanes)
        bits = ir.VectorType(ir.IntType(8 * itemsize), lanes)
        name = f"llvm.fmuladd.v{lanes}f{8 * itemsize}"  # the overload for these vectors
        fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), name)
        zero = ir.Constant(vector, None)

        def splat(value):
            one = builder.insert_element(
                ir.Constant(vector, ir.Undefined), value, ir.Constant(ir.IntType(32), 0)
            )
            return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), lanes), None))

        taps = [splat(builder.extract_value(weights_value, k)) for k in range(TAPS)]
        source = builder.gep(src.data, [start])

        def shift(low, high, k):
            """Samples ``k .. k + lanes - 1`` of ``low`` followed by ``high``: one ``valignd``
            (``valignq``), which LLVM does not choose for such a shuffle (it permutes with
            ``vpermt2ps``, an index vector and a copy a step, slower than the loads)."""
            instruction = "valignd" if itemsize == 4 else "valignq"
            return builder.asm(
                ir.FunctionType(bits, [bits, bits]),
                f"{instruction} $${k}, $1, $2, $0",
                "=v,v,v",
                [low, high],
                False,
            )

        def load(pointer, at):
            address = builder.bitcast(builder.gep(pointer, [at]), vector.as_pointer())
            return builder.load(address, align=itemsize)

        def sweep(n_taps):
            with cgutils.for_range(builder, count) as loop:
                j = builder.mul(loop.index, width)
                low = load(source, j)
                high = load(source, builder.add(j, width))
                low_bits, high_bits = builder.bitcast(low, bits), builder.bitcast(high, bits)
                total = builder.select(first, zero, load(out.data, j))
                for k in range(n_taps):
                    if k == 0:
                        window = low
                    elif k == lanes:  # float64: the ninth tap reads the next vector itself
                        window = high
                    else:
                        window = builder.bitcast(shift(low_bits, high_bits, k), vector)
                    total = builder.call(fmuladd, [window, taps[k], total])
                address = builder.bitcast(builder.gep(out.data, [j]), vector.as_pointer())
                builder.store(total, address, align=itemsize)

        _, is_eight, is_nine = runs
        with builder.if_else(is_nine) as (nine, fewer):
            with nine:
                sweep(9)
            with fewer:
                with builder.if_else(is_eight) as (eight, seven):
                    with eight:
                        sweep(8)
                    with seven:
                        sweep(7)
        return builder.mul(count, width)

    return types.intp(acc, row, start, run, first, weights), codegen


ROWS = TAPS + 3  # the source rows of four output rows' run of ``TAPS`` taps


@numba.extending.intrinsic
def four_row_run(typingctx, accs, rows, run, first, weights):
    """The vertical sweep of ``run`` (7, 8 or 9; else none) taps for four output rows:
    ``accs[r][j]`` = ``first ? 0 : accs[r][j]``, then ``fma(rows[r + k][j], weights[k], .)``
    for ``k`` = 0 .. ``run - 1`` in that order (``_separable_kernels._quad_run``'s chains).
    Returns how many samples it swept (whole pairs of vectors); the caller sweeps the rest
    (all of them where the CPU has no wide vectors).

    Each source row is loaded once a step for the (up to) four chains it feeds, and the
    step sweeps two vectors of each row: eight independent chains of fused multiply-adds,
    issued source row by source row, keep the multiply-add units busy where the four chains
    of one vector, one after the other, left them idle half the time.

    ``accs`` is a tuple of four 1-D C-contiguous float arrays and ``rows`` of ``ROWS`` (at
    least as long as ``accs[0]``, of the same type, not overlapping them; those past
    ``run + 3`` unused); ``weights`` a tuple of ``TAPS`` floats of that type.
    """
    if not (isinstance(accs, types.UniTuple) and accs.count == 4):
        return None
    if not (isinstance(rows, types.UniTuple) and rows.count == ROWS):
        return None
    arrays = (accs.dtype, rows.dtype)
    if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" for a in arrays):
        return None
    dtype = accs.dtype.dtype
    if not (
        isinstance(dtype, types.Float)
        and rows.dtype.dtype == dtype
        and isinstance(weights, types.UniTuple)
        and weights.count == TAPS
        and weights.dtype == dtype
    ):
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array  # not imported by a kernel loaded from the cache

        accs_value, rows_value, run_value, first_value, weights_value = args
        intp = context.get_value_type(types.intp)
        itemsize = context.get_abi_sizeof(context.get_value_type(dtype))
        lanes = _vector_bytes(context) // itemsize
        if lanes == 0:
            return ir.Constant(intp, 0)
        acc_type, row_type = signature.args[0].dtype, signature.args[1].dtype
        outs = [
            make_array(acc_type)(context, builder, builder.extract_value(accs_value, r)) for r in range(4)
        ]
        srcs = [
            make_array(row_type)(context, builder, builder.extract_value(rows_value, q)) for q in range(ROWS)
        ]
        n = builder.extract_value(outs[0].shape, 0)
        run = context.cast(builder, run_value, signature.args[2], types.intp)
        first = context.cast(builder, first_value, signature.args[3], types.boolean)

        step = ir.Constant(intp, 2 * lanes)
        count = builder.sdiv(n, step)
        runs = [builder.icmp_signed("==", run, ir.Constant(intp, r)) for r in (7, 8, 9)]
        count = builder.select(builder.or_(builder.or_(*runs[:2]), runs[2]), count, ir.Constant(intp, 0))

        element = context.get_value_type(dtype)
        vector = ir.VectorType(element, lanes)
        name = f"llvm.fmuladd.v{lanes}f{8 * itemsize}"
        fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3), name)
        zero = ir.Constant(vector, None)

        def splat(value):
            one = builder.insert_element(
                ir.Constant(vector, ir.Undefined), value, ir.Constant(ir.IntType(32), 0)
            )
            return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), lanes), None))

        taps = [splat(builder.extract_value(weights_value, k)) for k in range(TAPS)]

        def address(array, at):
            return builder.bitcast(builder.gep(array.data, [at]), vector.as_pointer())

        def sweep(n_taps):
            with cgutils.for_range(builder, count) as loop:
                j = builder.mul(loop.index, step)
                at = [j, builder.add(j, ir.Constant(intp, lanes))]  # the step's two vectors
                sums = [
                    [
                        builder.select(first, zero, builder.load(address(outs[r], at[v]), align=itemsize))
                        for v in (0, 1)
                    ]
                    for r in range(4)
                ]
                for q in range(n_taps + 3):  # source row q feeds output row r with tap q - r
                    samples = [builder.load(address(srcs[q], at[v]), align=itemsize) for v in (0, 1)]
                    for r in range(4):
                        k = q - r
                        if 0 <= k < n_taps:
                            for v in (0, 1):
                                sums[r][v] = builder.call(fmuladd, [samples[v], taps[k], sums[r][v]])
                for r in range(4):
                    for v in (0, 1):
                        builder.store(sums[r][v], address(outs[r], at[v]), align=itemsize)

        _, is_eight, is_nine = runs
        with builder.if_else(is_nine) as (nine, fewer):
            with nine:
                sweep(9)
            with fewer:
                with builder.if_else(is_eight) as (eight, seven):
                    with eight:
                        sweep(8)
                    with seven:
                        sweep(7)
        return builder.mul(count, step)

    return types.intp(accs, rows, run, first, weights), codegen
