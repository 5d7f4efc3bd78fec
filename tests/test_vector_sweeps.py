"""The fused kernel's explicit vector loops (``_vector_sweeps``): the row pass's window
shifted in registers and the vertical pass's eight chains give the bits of the plain
chains of fused multiply-adds, read only inside their rows, and leave the rest to the
caller; compiled for a CPU without AVX-512, the kernel gives the same bits."""

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from napari_sepconv._cpu_kernels import _fmuladd  # noqa: E402
from napari_sepconv._vector_sweeps import ROWS, TAPS, four_row_run, shifted_run  # noqa: E402


@numba.njit
def _shifted(acc, row, start, run, first, taps):
    return shifted_run(acc, row, start, run, first, taps)


@numba.njit
def _chain(acc, row, start, run, first, taps):
    """``_separable_kernels._row_run``'s chain, one sample at a time."""
    for j in range(acc.size):
        s = acc.dtype.type(0) if first else acc[j]
        for k in range(run):
            s = _fmuladd(row[start + j + k], taps[k], s)
        acc[j] = s


@numba.njit
def _four(accs, rows, run, first, taps):
    return four_row_run(accs, rows, run, first, taps)


@numba.njit
def _four_chains(accs, rows, start, run, first, taps):
    """``_separable_kernels._quad_run``'s chains from sample ``start`` on, one sample at a time."""
    for r in range(4):
        acc = accs[r]
        for j in range(start, acc.size):
            s = acc.dtype.type(0) if first else acc[j]
            for k in range(run):
                s = _fmuladd(rows[r + k][j], taps[k], s)
            acc[j] = s


def _wide_vectors():
    import llvmlite.binding as llvm

    return bool(llvm.get_host_cpu_features().get("avx512f", False))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_shifted_sweep_gives_the_chains_bits_and_reads_inside_the_row(dtype):
    rng = np.random.default_rng(7)
    lanes = 64 // np.dtype(dtype).itemsize
    swept_any = False
    for n in [0, 1, lanes - 1, lanes, lanes + 1, 2 * lanes - 1, 2 * lanes, 2 * lanes + 3, 100, 2048]:
        for start in [0, 1, 5, 9, lanes]:
            for run in (7, 8, 9):
                for slack in (0, 1, lanes - 1, lanes + 7):
                    first = bool(rng.integers(2))
                    row = rng.standard_normal(start + n + run - 1 + slack).astype(dtype)
                    row[rng.integers(row.size, size=2)] = [np.nan, np.inf][: min(2, row.size)]
                    taps = tuple(dtype(v) for v in rng.standard_normal(TAPS))
                    before = rng.standard_normal(n).astype(dtype)
                    expected = before.copy()
                    _chain(expected, row, start, run, first, taps)
                    got = before.copy()
                    done = _shifted(got, row, start, run, first, taps)
                    assert 0 <= done <= n and done % lanes == 0
                    if done:  # its last step read row[start + done - lanes .. start + done + lanes)
                        assert start + done + lanes <= row.size
                        swept_any = True
                    np.testing.assert_array_equal(got[done:], before[done:])  # left to the caller
                    _chain(got[done:], row[done:], start, run, first, taps)
                    assert got.tobytes() == expected.tobytes(), (n, start, run, slack, first)
    assert swept_any == _wide_vectors()  # on a CPU with 512-bit vectors, the shifts ran


@pytest.mark.parametrize("run", [0, 6, 10])
def test_a_run_it_has_no_sweep_for_is_left_to_the_caller(run):
    row = np.ones(200, np.float32)
    acc = np.full(100, 7.0, np.float32)
    assert _shifted(acc, row, 0, run, True, (np.float32(1.0),) * TAPS) == 0
    assert (acc == 7.0).all()


_HASWELL = (
    "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,+pclmul,"
    "+popcnt,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"
)

_HASHES = """
import hashlib, numpy as np, napari_sepconv as sc
rng = np.random.default_rng(3)
img = rng.standard_normal((37, 301)).astype(np.float32)
w15 = rng.standard_normal(15)
outs = [sc.gaussian_filter(img, 2.0), sc.gaussian_filter(img.astype(np.float64), 3.0, mode="wrap"),
        sc.separable_filter(img, [w15, w15], mode="constant", cval=0.5)]
from numba.core.registry import cpu_target
from napari_sepconv._vector_sweeps import _vector_bytes
digest = hashlib.sha256(b"".join(o.tobytes() for o in outs)).hexdigest()
print(_vector_bytes(cpu_target.target_context), digest)
"""


def test_a_cpu_without_wide_vectors_gives_the_same_bits(tmp_path):
    """Compiled for a CPU without AVX-512 (``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES``), the row
    pass sweeps with its own loops alone: the same values as with the shifted windows."""
    import os
    import subprocess
    import sys

    def run(**env):
        proc = subprocess.run(
            [sys.executable, "-c", _HASHES], capture_output=True, text=True, env=dict(os.environ, **env)
        )
        assert proc.returncode == 0, proc.stderr
        vector_bytes, digest = proc.stdout.split()
        return int(vector_bytes), digest

    here = run()
    plain = run(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=_HASWELL, NUMBA_CACHE_DIR=str(tmp_path))
    assert here[0] == (64 if _wide_vectors() else 0) and plain[0] == 0
    assert plain[1] == here[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_four_row_sweep_gives_the_chains_bits(dtype):
    rng = np.random.default_rng(8)
    lanes = 64 // np.dtype(dtype).itemsize
    swept_any = False
    for n in [0, 1, lanes, 2 * lanes - 1, 2 * lanes, 2 * lanes + 1, 4 * lanes + 5, 300]:
        for run in (6, 7, 8, 9, 10):
            first = bool(rng.integers(2))
            rows = tuple(rng.standard_normal(n + int(rng.integers(3))).astype(dtype) for _ in range(ROWS))
            if n:
                rows[3][rng.integers(n)] = np.nan
                rows[5][rng.integers(n)] = np.inf
            taps = tuple(dtype(v) for v in rng.standard_normal(TAPS))
            before = [rng.standard_normal(n).astype(dtype) for _ in range(4)]
            expected = tuple(b.copy() for b in before)
            if 7 <= run <= 9:
                _four_chains(expected, rows, 0, run, first, taps)
            got = tuple(b.copy() for b in before)
            done = _four(got, rows, run, first, taps)
            assert 0 <= done <= n and done % (2 * lanes) == 0
            if not 7 <= run <= 9:
                assert done == 0
                continue
            swept_any = swept_any or done > 0
            for g, b in zip(got, before, strict=True):
                np.testing.assert_array_equal(g[done:], b[done:])  # left to the caller
            _four_chains(got, rows, done, run, first, taps)
            for g, e in zip(got, expected, strict=True):
                assert g.tobytes() == e.tobytes(), (n, run, first)
    assert swept_any == _wide_vectors()
