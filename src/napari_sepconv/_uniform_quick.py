"""Quick twins of the running-sum kernels (``_uniform_kernels``): the same arguments and the
same values from a fraction of their code, for the seconds until those kernels are compiled
(``_tiers`` says when each runs).

The fast kernels share segments of lines among the threads, each task's work a helper
called by address; along the last axis they extend a line piece by piece and sweep four
segments at once. Every output is the same chain of operations however the work is shared
(its segment's window summed left to right from its anchor, then a sample entering and one
leaving per step, then the mean), so these kernels, which sweep one segment at a time over
whole lines and whole rows on the calling thread, give the same values bit for bit: no
workers, no task queue and no helpers called by address to compile. A segment whose sum
ends non-finite is flagged as the fast kernels flag it (``_uniform.uniform_pass`` then
computes it again).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import _buffer, _imin, _Kernel, _thread_count
from ._uniform_kernels import COLUMNS, _inline, _jit
from ._views import row_view


@_inline
def _mean(s, size, divide):
    """``s / size`` (``divide``: integer input) or ``s * (1 / size)``, as the fast kernels'."""
    size_f = np.float64(size)
    return s / size_f if divide else s * (1.0 / size_f)


@_inline
def _start_rows(src, o, source, a, size, cval, acc, c0):
    """``acc`` = the sums of the window of output ``a`` along axis 1 of plane ``o``, columns
    ``c0`` on: the rows ``source[a .. a + size - 1]`` (``cval`` where -1) added in order."""
    w = acc.size
    for c in range(w):
        acc[c] = 0.0
    for k in range(size):
        j = source[a + k]
        row = row_view(src, (o, j if j >= 0 else 0), c0, c0 + w)
        for c in range(w):
            acc[c] = acc[c] + (cval if j < 0 else np.float64(row[c]))


@_inline
def _step_rows(src, o, source, i, size, cval, divide, acc, c0, dst):
    """Advance ``acc`` from output ``i - 1`` to output ``i`` (the row entering the window
    added, the one leaving it subtracted, either may be ``cval``), the means into ``dst``."""
    w = acc.size
    j_in = source[i + size - 1]
    j_out = source[i - 1]
    row_in = row_view(src, (o, j_in if j_in >= 0 else 0), c0, c0 + w)
    row_out = row_view(src, (o, j_out if j_out >= 0 else 0), c0, c0 + w)
    for c in range(w):
        v_in = cval if j_in < 0 else np.float64(row_in[c])
        v_out = cval if j_out < 0 else np.float64(row_out[c])
        s = acc[c] + (v_in - v_out)
        acc[c] = s
        dst[c] = _mean(s, size, divide)


@_inline
def _nonfinite(values):
    """Whether a value of the float64 array ``values`` is not finite."""
    bad = 0.0
    for c in range(values.size):
        bad += values[c] - values[c]
    return bad != 0.0 or bad != bad


@_inline
def _line_means(ext, n, K, size, divide, sums, dst, flags):
    """``dst[i]`` = mean of ``ext[i : i + size]`` for ``i < n``, the running sums anchored at
    the multiples of ``K`` (into ``sums``); ``flags[q]`` = whether segment ``q``'s sum ended
    non-finite."""
    for q in range(flags.size):
        a = q * K
        s = 0.0
        for k in range(size):
            s = s + ext[a + k]
        sums[a] = s
        for i in range(a + 1, a + _imin(K, n - a)):
            s = s + (ext[i + size - 1] - ext[i - 1])
            sums[i] = s
        flags[q] = s - s != 0.0
    for i in range(n):
        dst[i] = _mean(sums[i], size, divide)


def _middle_axis_quick(src, source, size, K, cval, divide, out, flags, helpers, missing):
    """``_uniform_kernels.middle_axis``: its arguments and values, on the calling thread, a
    segment of whole rows at a time. ``helpers`` and ``missing`` are the fast kernel's,
    unused here."""
    _thread_count()  # starts the threading layer, as the fast kernel does (``_cpu.run`` asks for it)
    n_outer, n, n_inner = src.shape
    acc = _buffer(n_inner, np.float64)
    for o in range(n_outer):
        for s in range(flags.shape[1]):
            a = s * K
            _start_rows(src, o, source, a, size, cval, acc, 0)
            first = row_view(out, (o, a), 0, n_inner)
            for c in range(n_inner):
                first[c] = _mean(acc[c], size, divide)
            for i in range(a + 1, a + _imin(K, n - a)):
                _step_rows(src, o, source, i, size, cval, divide, acc, 0, row_view(out, (o, i), 0, n_inner))
            for b in range(flags.shape[2]):
                flags[o, s, b] = _nonfinite(row_view(acc, (), b * COLUMNS, _imin((b + 1) * COLUMNS, n_inner)))


def _last_axis_quick(src, source, before, size, K, cval, divide, out, flags, stream, helpers, missing):
    """``_uniform_kernels.last_axis``: its arguments and values, on the calling thread, a
    whole line at a time. ``before`` is where the line starts in ``source``'s extension;
    ``stream``, ``helpers`` and ``missing`` are the fast kernel's, unused here."""
    _thread_count()
    n_lines, n = src.shape
    ext = _buffer(n + size - 1, np.float64)
    sums = _buffer(n, np.float64)
    for line in range(n_lines):
        row = row_view(src, line, 0, n)
        for k in range(ext.size):
            j = source[k]
            ext[k] = cval if j < 0 else np.float64(row[j if j >= 0 else 0])
        _line_means(ext, n, K, size, divide, sums, row_view(out, line, 0, n), row_view(flags, line, 0, None))


def _last_two_axes_quick(
    src,
    source0,
    size0,
    K0,
    source1,
    before1,
    size1,
    K1,
    cval,
    divide0,
    divide1,
    out,
    flags,
    stream,
    helpers,
    missing,
):
    """``_uniform_kernels.last_two_axes``: its arguments and values, on the calling thread,
    each row's means along axis 1 written into the extended line swept along axis 2.
    ``stream``, ``helpers`` and ``missing`` are the fast kernel's, unused here."""
    _thread_count()
    n_outer, n0, n1 = src.shape
    acc = _buffer(n1, np.float64)
    ext = _buffer(n1 + size1 - 1, np.float64)
    sums = _buffer(n1, np.float64)
    row_flags = _buffer((n1 + K1 - 1) // K1, np.bool_)
    row = row_view(ext, (), before1, before1 + n1)
    for o in range(n_outer):
        for s in range(flags.shape[1]):
            a = s * K0
            bad = False
            _start_rows(src, o, source0, a, size0, cval, acc, 0)
            for i in range(a, a + _imin(K0, n0 - a)):
                if i == a:
                    for c in range(n1):
                        row[c] = _mean(acc[c], size0, divide0)
                else:
                    _step_rows(src, o, source0, i, size0, cval, divide0, acc, 0, row)
                for k in range(ext.size):  # the border positions, from the row itself
                    j = source1[k]
                    if k < before1 or k >= before1 + n1:
                        ext[k] = cval if j < 0 else ext[before1 + j]
                _line_means(ext, n1, K1, size1, divide1, sums, row_view(out, (o, i), 0, n1), row_flags)
                for q in range(row_flags.size):
                    bad = bad or row_flags[q]
            flags[o, s] = bad or _nonfinite(acc)


middle_axis_quick = _Kernel(_middle_axis_quick, 6, calls_helper=True, reads_any=True, jit=_jit, quick=True)
last_axis_quick = _Kernel(_last_axis_quick, 7, calls_helper=True, reads_any=True, jit=_jit, quick=True)
last_two_axes_quick = _Kernel(
    _last_two_axes_quick, 11, calls_helper=True, reads_any=True, jit=_jit, quick=True
)
