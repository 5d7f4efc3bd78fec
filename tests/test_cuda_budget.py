"""Register, spill and division budget of the hot CUDA kernels, from ``ptxas -v``.

No GPU needed: each kernel is compiled to PTX by Numba for sm_80 and sm_90 and
assembled by ``ptxas`` from the ``nvidia-cuda-nvcc-cu12`` wheel (which
``numba-cuda[cu12]`` installs). Budgets: registers within the launch bounds (so
at least half occupancy, float32 and float64), no spills, no 64-bit division or
remainder anywhere in the kernel, and no negative-index wraparound (array indices that cannot be
negative are unsigned).
"""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="compiles real PTX, not for the simulator"
)


def _ptxas():
    try:
        import nvidia.cuda_nvcc
    except ImportError:
        return None
    for root in nvidia.cuda_nvcc.__path__:
        path = Path(root) / "bin" / "ptxas"
        if path.exists():
            return path
    return None


PTXAS = _ptxas()
needs_ptxas = pytest.mark.skipif(
    PTXAS is None, reason="ptxas not found: install nvidia-cuda-nvcc-cu12 (numba-cuda[cu12] brings it)"
)


def _cases():
    from napari_sepconv import _cuda_kernels as K

    gauss15 = tuple(range(-7, 8))
    rank2 = (tuple(range(-5, 6)),) * 2
    wide = tuple(range(-16, 16))  # FUSED_MAX_TAPS: 64 taps, all passes together
    eight = (tuple(range(-4, 4)),) * 4  # FUSED_MAX_TERMS terms
    cases = []
    for src in (np.float32, np.uint8):
        cases.append(("edge3", src, np.float32, (0,), K.EDGE3_BOUNDS, 64))
    for mode in (0, 1, 4):
        cases.append(("fused", np.float32, np.float32, (mode, (gauss15,), (gauss15,), 0, False), None, 64))
    cases.append(("fused", np.float32, np.float32, (3, rank2, rank2, 0, False), None, 64))
    cases.append(("fused", np.float32, np.float32, (0, (wide,), (wide,), 0, False), None, 64))
    cases.append(("fused", np.float32, np.float32, (1, eight, eight, 2, False), None, 64))
    # float64: reflect borders at 7 and 15 taps and the two-term magnitude spilled at 64
    # registers before the fused kernels took the division-free border index and kept a
    # float64 sum of terms in shared memory
    taps7 = tuple(range(-3, 4))
    farid = (tuple(range(-2, 3)),) * 2
    sobel = ((-1, 0, 1), (-1, 1))  # float64 Sobel: the fused kernel, not the 3x3 one
    for spec in (
        (0, (gauss15,), (gauss15,), 0, False),
        (0, (taps7,), (taps7,), 0, False),
        (0, sobel, sobel[::-1], 2, False),
        (1, sobel, sobel[::-1], 2, False),
        (3, (gauss15,), (gauss15,), 0, True),
        (0, farid, farid, 2, False),
        (0, eight, eight, 0, True),
    ):
        cases.append(("fused", np.float64, np.float64, spec, None, 64))
    # the channel kernels (launched with their bounds) and the direct 2-D kernel: tile sizes,
    # channel counts and modes are values here, but no index needs a 64-bit division
    for name in ("depthwise", "depthwise_passes", "depthwise_separable", "pointwise"):
        tiled = None if name == "depthwise_separable" else True  # its only variant is tiled
        cases.append((name, np.float32, np.float32, tiled, K.BOUNDS[name], 64))
    cases.append(("correlate_2d", np.float32, np.float32, True, None, 128))
    # the channel kernels generated per plan: (taps, zero flags, C, M[, C_out]), tile 4 x 32
    for size, n_in, multiplier in ((3, 16, 1), (7, 16, 1), (5, 3, 2)):
        taps = _square_taps(size)
        cases.append(("depthwise_plan", np.float32, np.float32, (taps, n_in, multiplier), None, 64))
    cases.append(("pointwise_plan", np.float32, np.float32, (16, 32, 64, True), None, 64))
    seven = (tuple(range(-3, 4)), (False,) * 7)
    for mode in (0, 1):  # rank-1 per channel: 7 + 7 taps, 16 channels
        cases.append(("depthwise_passes_plan", np.float32, np.float32, (mode, seven, 16), None, 64))
    cases.append(("depthwise_separable_plan", np.float32, np.float32, (_square_taps(3), 16, 1, 32), None, 64))
    return cases


def _square_taps(size):
    """``(tap_y, tap_x)`` of a dense ``size`` x ``size`` kernel, row by row."""
    r = range(-(size // 2), size - size // 2)
    return tuple(y for y in r for x in r), tuple(x for y in r for x in r)


def _generic_signature(name, dtype):
    """The types ``_cuda._generic_recipe`` compiles kernel ``name`` for: C arrays, int64
    sizes and codes, scalars of the output type."""
    from numba.core import types

    f, i, u8 = numba_type(dtype), types.int64, types.uint8

    def a(t, n):
        return types.Array(t, n, "C")

    taps = (a(i, 1), a(i, 1), a(f, 2), a(u8, 1))  # offsets y and x, weights, zero flags
    geometry = (i, i, i, i, i, i, i, f)  # multiplier, y_lo, y_span, x_lo, x_span, modes, cval
    return {
        "depthwise": (a(f, 4), *taps, *geometry, i, i, i, a(f, 4)),
        "depthwise_passes": (
            a(f, 4),
            a(i, 1),
            a(f, 2),
            a(i, 1),
            a(f, 2),
            i,
            i,
            i,
            i,
            i,
            f,
            a(f, 1),
            i,
            i,
            i,
            a(f, 4),
        ),
        "depthwise_separable": (a(f, 4), *taps, *geometry, a(f, 2), a(f, 1), i, i, i, a(f, 4)),
        "pointwise": (a(f, 2), a(f, 2), a(f, 1), i, i, a(f, 2)),
        "correlate_2d": (a(f, 3), a(i, 1), a(i, 1), a(f, 1), i, i, i, i, i, i, f, a(f, 3)),
    }[name]


def numba_type(dtype):
    import numba

    return numba.from_dtype(np.dtype(dtype))


def _compile(name, src, dtype, spec, bounds):
    """PTX of one case for each architecture of ``ARCHITECTURES``."""
    import numba
    from numba import types

    from napari_sepconv import _cuda_kernels as K

    flat = lambda dt: types.Array(numba.from_dtype(np.dtype(dt)), 1, "C")  # noqa: E731
    f, i = numba.from_dtype(np.dtype(dtype)), types.int32
    if name == "edge3":
        (mode,) = spec
        kernel = K.build_edge3(np.dtype(dtype), mode, mode)
        sig = (flat(src), flat(dtype), i, i, i, i, f, f, f, f, flat(dtype))
    elif name == "depthwise_plan":
        taps, n_in, multiplier = spec
        zeros = (False,) * len(taps[0])
        kernel = K.build_depthwise_plan(np.dtype(dtype), 0, 0, taps, zeros, n_in, multiplier, (4, 32))
        sig = (flat(src), flat(dtype), i, i, i, i, i, f, flat(dtype))
        bounds = K.CHANNEL_BOUNDS
    elif name == "pointwise_plan":
        kernel = K.build_pointwise_plan(np.dtype(dtype), *spec)
        sig = (flat(src), flat(dtype), flat(dtype), types.int64, flat(dtype))
        bounds = K.CHANNEL_BOUNDS
    elif name == "depthwise_passes_plan":
        mode, taps, n_in = spec
        kernel = K.build_depthwise_passes_plan(np.dtype(dtype), mode, mode, taps, taps, n_in, 1, (4, 32))
        sig = (flat(src), flat(dtype), flat(dtype), flat(dtype), i, i, i, i, i, f, flat(dtype))
        bounds = K.CHANNEL_BOUNDS
    elif name == "depthwise_separable_plan":
        taps, n_in, multiplier, n_out = spec
        zeros = (False,) * len(taps[0])
        kernel = K.build_depthwise_separable_plan(
            np.dtype(dtype), 0, 0, taps, zeros, n_in, multiplier, n_out, (4, 32)
        )
        sig = (flat(src), flat(dtype), flat(dtype), flat(dtype), i, i, i, i, f, flat(dtype))
        bounds = K.CHANNEL_BOUNDS
    elif name != "fused":
        kernel = K.python_kernel(name, np.dtype(dtype), spec)
        sig = _generic_signature(name, dtype)
    else:
        mode, cols, rows, combine, accumulate = spec
        kernel = K.build_fused(np.dtype(dtype), mode, mode, cols, rows, combine, accumulate)
        sig = (flat(src), i, i, i, i, f, f) + (f,) * K.fused_weight_count(cols, rows) + (flat(dtype),)
        bounds = bounds or K.FUSED_BOUNDS
    return _ptx_per_architecture(kernel, sig, bounds)


ARCHITECTURES = ((8, 0), (9, 0))


def _ptx_per_architecture(kernel, sig, bounds):
    """``{cc: ptx}``: the kernel typed and lowered once (most of the time), then NVVM per
    architecture; ``compile_ptx`` per architecture where numba-cuda's internals differ."""
    from numba import cuda

    try:
        from numba.cuda.compiler import _compile_pyfunc_with_fixup

        library, _ = _compile_pyfunc_with_fixup(
            kernel, sig, device=False, abi="numba", cc=ARCHITECTURES[0], launch_bounds=bounds
        )
        return {cc: library.get_asm_strs(cc=cc)[0] for cc in ARCHITECTURES}
    except (ImportError, TypeError, AttributeError):
        return {cc: cuda.compile_ptx(kernel, sig, cc=cc, launch_bounds=bounds)[0] for cc in ARCHITECTURES}


def _wraparounds(ptx):
    """Numba's negative-index wraparound in ``ptx``: the index's sign spread over 64 bits
    (``shr.s64 s, i, 63``), masked with the axis length (``and.b64 m, s, n``) and added."""
    lines = ptx.splitlines()
    found = []
    for at, line in enumerate(lines):
        sign = re.search(r"shr\.s64\s+(%rd\d+), %rd\d+, 63;", line)
        if sign and any(
            re.search(rf"and\.b64\s+%rd\d+, {sign.group(1)}, ", near) for near in lines[at + 1 : at + 4]
        ):
            found.append(line.strip())
    return found


def _assemble(ptx, cc, tmp_path):
    """``ptxas -v`` of ``ptx`` for ``cc``: registers used, and the spill store and load bytes."""
    path = tmp_path / "kernel.ptx"
    path.write_text(ptx)
    arch = f"sm_{cc[0]}{cc[1]}"
    proc = subprocess.run(
        [str(PTXAS), "-v", "--gpu-name", arch, str(path), "-o", str(tmp_path / "kernel.cubin")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    registers = int(re.search(r"Used (\d+) registers", proc.stderr).group(1))
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", proc.stderr)]
    assert spills, proc.stderr
    return registers, spills, proc.stderr


@needs_ptxas
@pytest.mark.parametrize("case", range(len(_cases())))
def test_specialised_kernels_fit_their_register_budget(case, tmp_path):
    """Each case for sm_80 and sm_90 (one Numba compile, two NVVM and ptxas runs); the
    failures of both architectures are reported together."""
    name, src, dtype, spec, bounds, max_registers = _cases()[case]
    failures = []
    for cc, ptx in _compile(name, src, dtype, spec, bounds).items():
        assert f".target sm_{cc[0]}{cc[1]}" in ptx
        divisions = [line.strip() for line in ptx.splitlines() if re.search(r"\b(div|rem)\.[su]64", line)]
        wraparounds = _wraparounds(ptx)
        registers, spills, log = _assemble(ptx, cc, tmp_path)
        if divisions or wraparounds or registers > max_registers or any(spills):
            failures.append((cc, divisions[:5], wraparounds[:5], registers, spills, log))
    assert not failures, failures
