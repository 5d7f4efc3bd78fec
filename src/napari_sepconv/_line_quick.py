"""Quick twins of the 1-D pass kernels (``_line_kernels``): the same arguments and the same
values from a fraction of their code, for the seconds until those kernels are compiled
(``_tiers`` says when each runs).

``correlate_lines`` and ``correlate_rows`` share their tasks among the threads and sweep four
tap pairs at once over a task's sums (``_line_kernels._accumulate_taps4``), which is most of
the code Numba types and LLVM optimises. Every sum is the same chain of operations however
the pairs are grouped (a product rounded, then added, pair after pair), so a kernel that adds
one pair a sweep (``_line_kernels._accumulate_taps``) gives the same values bit for bit.
The twin of ``correlate_rows`` is that kernel, run on the calling thread: no workers, no
task queue and no helpers called by address to compile. It compiles in about a third of
the time of its fast kernel (0.5-0.7 s against 1.5-2 s on a 2-core machine, besides Numba's
own start) and runs at 0.4 to 0.8 times its speed on 2 threads. The twin of
``correlate_lines`` runs it on a transposed copy of the lines: a filter along both axes of
an image compiles one twin, not two.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._boundary import CONSTANT
from ._cpu_kernels import _buffer, _imax, _imin, _Kernel, _source_index, _thread_count, load_for
from ._line_kernels import BAND_BYTES, _accumulate_taps, _tap_row
from ._tiers import PythonTwin
from ._views import row_view


def _correlate_lines_by_rows(src, offsets, weights, symmetry, mode, cval, out, block, helpers, missing):
    """``_line_kernels._correlate_lines``: its arguments and values, from the rows twin
    (:func:`_correlate_rows_quick`) run on a transposed copy of the lines, whose columns are
    then the lines: the same sums of the same samples, and nothing to compile where the rows
    twin is compiled for these types already (a pass along each axis of an image)."""
    dtype = out.dtype
    if mode == CONSTANT and src.dtype != dtype:
        src = src.astype(dtype)  # the rows twin's outside row holds cval (``_cpu.correlate_axis``)
    columns = _transpose(src, np.empty(src.shape[::-1], src.dtype))[np.newaxis]
    result = np.empty(columns.shape, dtype)
    args = (columns, offsets, weights, symmetry, mode, cval, result, block, helpers, missing)
    load_for(correlate_rows_quick.dispatcher, args)
    correlate_rows_quick.dispatcher(*args)
    _transpose(result[0], out)


def _transpose(src, dst):
    """``dst[...] = src.T`` (2-D), in strips of 16 rows of ``src`` where both sides are long:
    each strip's columns then fill whole cache lines of ``dst`` (2-3 times NumPy's plain
    transposed copy at 2048²)."""
    if min(src.shape) < 256:
        dst[...] = src.T
        return dst
    for i in range(0, src.shape[0], 16):
        dst[:, i : i + 16] = src[i : i + 16].T
    return dst


def _correlate_rows_quick(src, offsets, weights, symmetry, mode, cval, out, block, helpers, missing):
    """``_line_kernels._correlate_rows``: its arguments and values, on the calling thread,
    one tap pair a sweep over a band of columns (``BAND_BYTES`` of sums). ``block``,
    ``helpers`` and ``missing`` are the fast kernel's, unused here."""
    _thread_count()
    n_outer, n, inner = src.shape
    k = offsets.size
    first = k // 2 if symmetry != 0 else k - 1  # SciPy's order (``_line_kernels._correlate_lines``)
    pairs = k // 2 if symmetry != 0 else k - 1
    band = _imax(1, BAND_BYTES // out.itemsize)
    sums = _buffer(_imin(inner, band), out)
    outside = _buffer(_imin(inner, band), src)  # a row of cval, where the caller made src float
    outside[:] = cval
    for o in range(n_outer):
        for c0 in range(0, inner, band):
            c1 = _imin(inner, c0 + band)
            acc = row_view(sums, (), 0, c1 - c0)
            border = row_view(outside, (), 0, c1 - c0)
            for i in range(n):
                row = _tap_row(src, o, _source_index(i + offsets[first], n, mode), border, c0, c1)
                for j in range(acc.size):
                    acc[j] = row[j] * weights[first]
                for t in range(pairs):
                    row_a = _tap_row(src, o, _source_index(i + offsets[t], n, mode), border, c0, c1)
                    b = k - 1 - t if symmetry != 0 else t
                    row_b = _tap_row(src, o, _source_index(i + offsets[b], n, mode), border, c0, c1)
                    _accumulate_taps(acc, row_a, row_b, weights[t], symmetry)
                out_row = row_view(out, (o, i), c0, c1)
                for j in range(acc.size):
                    out_row[j] = acc[j]


correlate_rows_quick = _Kernel(_correlate_rows_quick, 6, calls_helper=True, quick=True)
correlate_lines_quick = PythonTwin(_correlate_lines_by_rows, 6)
