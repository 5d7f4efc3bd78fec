"""Quick twins of the 1-D pass kernels (``_line_kernels``): the same arguments and the same
values from a fraction of their code, for the seconds until those kernels are compiled
(``_tiers`` says when each runs).

``correlate_lines`` and ``correlate_rows`` share their tasks among the threads and sweep four
tap pairs at once over a task's sums (``_line_kernels._accumulate_taps4``), which is most of
the code Numba types and LLVM optimises. Every sum is the same chain of operations however
the pairs are grouped (a product rounded, then added, pair after pair), so a kernel that adds
one pair a sweep (``_line_kernels._accumulate_taps``) gives the same values bit for bit.
These are those kernels, run on the calling thread: no workers, no task queue and no
helpers called by address to compile; the twin along the last axis pads its lines in place
(``_cpu_kernels._extend_line``: no pad table or padding helper to compile either). Each
compiles in about half the time of its fast kernel (0.6-0.9 s against 1.5-2 s on a 2-core
machine, besides Numba's own start) and runs at 0.4 to 0.8 times its speed on 2 threads.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

from ._cpu_kernels import (
    _buffer,
    _extend_line,
    _imax,
    _imin,
    _Kernel,
    _source_index,
    _thread_count,
)
from ._line_kernels import BAND_BYTES, _accumulate_taps, _tap_row
from ._views import row_view


def _correlate_lines_quick(src, offsets, weights, symmetry, mode, cval, out, block, helpers, missing):
    """``_line_kernels._correlate_lines``: its arguments and values, on the calling thread,
    one tap pair a sweep. ``block``, ``helpers`` and ``missing`` are the fast kernel's,
    unused here."""
    _thread_count()  # starts the threading layer, as the fast kernel does (``_cpu.run`` asks for it)
    n_lines, n = src.shape
    k = offsets.size
    lo = hi = offsets[0]
    for t in range(k):
        lo = offsets[t] if offsets[t] < lo else lo
        hi = offsets[t] if offsets[t] > hi else hi
    padded = n + hi - lo
    buf = _buffer(padded, out)  # the line extended by the border mode: buf[p] is at p + lo
    acc = _buffer(n, out)
    first = k // 2 if symmetry != 0 else k - 1  # SciPy's order (``_line_kernels._correlate_lines``)
    pairs = k // 2 if symmetry != 0 else k - 1
    for line in range(n_lines):
        _extend_line(buf, row_view(src, line, 0, n), lo, mode, cval, True)
        s = offsets[first] - lo
        seg = row_view(buf, (), s, s + n)
        for j in range(n):
            acc[j] = seg[j] * weights[first]
        for t in range(pairs):
            sa = offsets[t] - lo
            sb = offsets[k - 1 - t] - lo if symmetry != 0 else sa
            _accumulate_taps(
                acc, row_view(buf, (), sa, sa + n), row_view(buf, (), sb, sb + n), weights[t], symmetry
            )
        out_row = row_view(out, line, 0, n)
        for j in range(n):
            out_row[j] = acc[j]


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


correlate_lines_quick = _Kernel(_correlate_lines_quick, 6, calls_helper=True)
correlate_rows_quick = _Kernel(_correlate_rows_quick, 6, calls_helper=True)
