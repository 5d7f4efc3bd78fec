"""CPU kernels of the running-sum (uniform) filter: O(1) work per sample, any size.

Each line is extended by its border mode (the caller passes ``source``: for every
position of the extended line, the index of the sample read there, -1 for ``cval``)
and swept once, adding the sample entering the window and subtracting the one
leaving it. The running sum is kept as an unevaluated pair ``hi + lo`` of float64
(an error-free ``two_sum`` per update, renormalised): its error is about 2**-100 of
the window's magnitude, so ``(hi + lo) / size`` is the float64 mean of the window
whatever came before it on the line. That is what makes a result independent of
where a line starts (dask blocks, CUDA threads) and equal to scipy.ndimage's values
(exactly for integer input, whose sums are exact in float64; to float64 rounding
for float input, where scipy's plain running sum drifts).

The same update (:func:`accumulate`) is compiled inline into the CUDA kernel
(``_uniform_cuda``), so both backends perform identical arithmetic.

This module imports Numba and is imported on first use only.
"""

import numba
import numpy as np
from numba import prange

from ._cpu_kernels import _enable_cache

# Lines swept together by the last-axis kernel: independent running sums keep the
# floating-point units busy while each line is read in order.
LINES_PER_TASK = 32
# Columns swept together by the other-axes kernel (one contiguous run of a row).
COLUMNS_PER_TASK = 256


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _accumulate(hi, lo, value):
    """``hi + lo + value`` as a renormalised pair (error-free up to ``lo``'s rounding)."""
    s = hi + value
    bb = s - hi
    err = (hi - (s - bb)) + (value - bb)
    lo = lo + err
    hi = s + lo
    lo = lo - (hi - s)
    return hi, lo


accumulate = numba.njit(inline="always", cache=False)(_accumulate)


def _jit(func):
    """``@njit(parallel=True)`` in the kernels' versioned on-disk cache (``warmup.cache_dir``)."""
    return _enable_cache(numba.njit(parallel=True, nogil=True, error_model="numpy")(func))


def _helper(func):
    """A kernel's helper, compiled once and cached; kept out of line, where its loop
    over independent sums is vectorised."""
    return _enable_cache(numba.njit(nogil=True, error_model="numpy")(func))


@_helper
def add_lanes(entering, hi, lo):
    """``hi + lo += entering``, lane by lane (the update of :func:`accumulate`)."""
    for c in range(hi.size):
        v = entering[c]
        s = hi[c] + v
        bb = s - hi[c]
        err = (hi[c] - (s - bb)) + (v - bb)
        lw = lo[c] + err
        h = s + lw
        lo[c] = lw - (h - s)
        hi[c] = h


@_helper
def step_lanes(entering, leaving, hi, lo, means, inv):
    """One step of the running sums: add ``entering``, subtract ``leaving``, write the means.

    The same operations, in the same order, as two :func:`accumulate` calls."""
    for c in range(hi.size):
        v = entering[c]
        s = hi[c] + v
        bb = s - hi[c]
        err = (hi[c] - (s - bb)) + (v - bb)
        lw = lo[c] + err
        h = s + lw
        lw = lw - (h - s)
        v = -leaving[c]
        s = h + v
        bb = s - h
        err = (h - (s - bb)) + (v - bb)
        lw = lw + err
        h = s + lw
        lw = lw - (h - s)
        hi[c] = h
        lo[c] = lw
        means[c] = (h + lw) / inv


@_jit
def uniform_last_axis(src, source, size, cval, out, nonfinite):
    """Running means along the last axis of the 2-D ``src`` (lines, n) into ``out``.

    :data:`LINES_PER_TASK` lines are swept together: their extended samples are
    gathered into a position-major buffer, so each step updates that many
    independent sums at once. Non-finite samples count as zero here; the lines of
    a task that met one are flagged in ``nonfinite`` for :func:`fix_nonfinite`.
    """
    n_lines, n = src.shape
    ext = n + size - 1
    inv = np.float64(size)
    n_tasks = (n_lines + LINES_PER_TASK - 1) // LINES_PER_TASK
    for task in prange(n_tasks):
        first = task * LINES_PER_TASK
        m = min(LINES_PER_TASK, n_lines - first)
        buf = np.zeros((ext, LINES_PER_TASK))
        bad = 0.0
        for r in range(m):
            line = src[first + r]
            for k in range(ext):
                j = source[k]
                v = cval if j < 0 else np.float64(line[max(j, 0)])
                finite = v - v == 0.0
                bad += 0.0 if finite else 1.0
                buf[k, r] = v if finite else 0.0
        hi = np.zeros(LINES_PER_TASK)
        lo = np.zeros(LINES_PER_TASK)
        means = np.empty((n, LINES_PER_TASK))
        for k in range(size):
            add_lanes(buf[k], hi, lo)
        for r in range(LINES_PER_TASK):
            means[0, r] = (hi[r] + lo[r]) / inv
        for i in range(1, n):
            step_lanes(buf[i + size - 1], buf[i - 1], hi, lo, means[i], inv)
        for r in range(m):
            line_out = out[first + r]
            for i in range(n):
                line_out[i] = means[i, r]
            nonfinite[first + r] = bad > 0.0


def _load_row(src, o, j, c0, w, cval, dst):
    """Row ``j`` of plane ``o`` (columns ``c0`` to ``c0 + w``) as float64 in ``dst``,
    ``cval`` for ``j < 0``, non-finite values as 0; returns how many were non-finite."""
    bad = 0.0
    if j < 0:
        finite = cval - cval == 0.0
        for c in range(w):
            dst[c] = cval if finite else 0.0
        return 0.0 if finite else np.float64(w)
    row = src[o, j, c0 : c0 + w]
    for c in range(w):
        v = np.float64(row[c])
        finite = v - v == 0.0
        bad += 0.0 if finite else 1.0
        dst[c] = v if finite else 0.0
    return bad


load_row = numba.njit(inline="always", cache=False)(_load_row)


@_jit
def uniform_middle_axis(src, source, size, cval, out, nonfinite):
    """Running means along axis 1 of the 3-D ``src`` (outer, n, inner) into ``out``.

    Each task sweeps :data:`COLUMNS_PER_TASK` columns of one plane, a row at a
    time; ``nonfinite`` has one flag per plane and block of columns.
    """
    n_outer, n, n_inner = src.shape
    inv = np.float64(size)
    per_outer = (n_inner + COLUMNS_PER_TASK - 1) // COLUMNS_PER_TASK
    for task in prange(n_outer * per_outer):
        o = task // per_outer
        c0 = (task % per_outer) * COLUMNS_PER_TASK
        w = min(COLUMNS_PER_TASK, n_inner - c0)
        hi = np.zeros(w)
        lo = np.zeros(w)
        entering = np.empty(w)
        leaving = np.empty(w)
        bad = 0.0
        means = np.empty(w)
        for k in range(size):
            bad += load_row(src, o, source[k], c0, w, cval, entering)
            add_lanes(entering, hi, lo)
        dst = out[o, 0, c0 : c0 + w]
        for c in range(w):
            dst[c] = (hi[c] + lo[c]) / inv
        for i in range(1, n):
            bad += load_row(src, o, source[i + size - 1], c0, w, cval, entering)
            load_row(src, o, source[i - 1], c0, w, cval, leaving)
            step_lanes(entering, leaving, hi, lo, means, inv)
            dst = out[o, i, c0 : c0 + w]
            for c in range(w):
                dst[c] = means[c]
        nonfinite[o, task % per_outer] = bad > 0.0


def _nonfinite_result(n_nan, n_pos, n_neg):
    """The mean of a window holding non-finite samples, as a sum of them gives it."""
    if n_nan > 0 or (n_pos > 0 and n_neg > 0):
        return np.nan
    return np.inf if n_pos > 0 else -np.inf


nonfinite_result = numba.njit(inline="always", cache=False)(_nonfinite_result)


def _fix_nonfinite(src, source, size, cval, out, o, c):
    """Set the windows of line ``src[o, :, c]`` that hold NaN or inf to what a sum gives."""
    n = src.shape[1]
    n_nan = 0
    n_pos = 0
    n_neg = 0
    for k in range(n + size - 1):
        j = source[k]
        v = cval if j < 0 else np.float64(src[o, j, c])
        if v != v:
            n_nan += 1
        elif v == np.inf:
            n_pos += 1
        elif v == -np.inf:
            n_neg += 1
        if k >= size:
            j = source[k - size]
            v = cval if j < 0 else np.float64(src[o, j, c])
            if v != v:
                n_nan -= 1
            elif v == np.inf:
                n_pos -= 1
            elif v == -np.inf:
                n_neg -= 1
        if k >= size - 1 and n_nan + n_pos + n_neg > 0:
            out[o, k - size + 1, c] = nonfinite_result(n_nan, n_pos, n_neg)


fix_nonfinite_line = numba.njit(inline="always", cache=False)(_fix_nonfinite)


@_helper
def fix_nonfinite(src, source, size, cval, out, outer, columns):
    """:func:`fix_nonfinite_line` on the 3-D (outer, n, inner) arrays, for the lines
    ``(outer[t], c)`` with ``c`` in ``[columns[t, 0], columns[t, 1])``."""
    for t in range(outer.size):
        for c in range(columns[t, 0], columns[t, 1]):
            fix_nonfinite_line(src, source, size, cval, out, outer[t], c)
