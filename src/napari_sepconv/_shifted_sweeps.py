"""The horizontal sweep of consecutive taps with the window shifted in registers
(``shifted_run``), for the fused separable kernel's row pass.

Each output of a sweep of seven to nine taps reads the padded row at seven to nine
consecutive positions. Loaded once per tap, every vector load but one in 16 straddles two
cache lines, and the loads, not the multiply-adds, set the pace: two vectors loaded per
step and shifted against each other (``valignd``) feed the same chain of fused
multiply-adds, in the same order, with the same values, in half the time (17 taps, as
nine and eight, over 2048 rows of 2048 samples on one Zen 4 core: 3.8 ms with a load a
tap, 1.8 ms shifted; ``gaussian`` sigma 2 on 2048² float32, two threads: 2.8 -> 2.5 ms).

Where the CPU has no 512-bit vectors (AVX-512F), shifting 256-bit vectors across their
halves takes two instructions, no faster than the loads: ``shifted_run`` then does
nothing and the caller's loops do all.

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
