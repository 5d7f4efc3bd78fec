"""A CPU kernel that runs the fused separable kernel's arithmetic from a fraction of its
code (``separable_2d_quick_kernel``), for the seconds until that kernel is compiled.

The fused kernel (``_separable_kernels.separable_2d_kernel``) is fast because of its many
sweeps: four output rows at once, seven to nine taps unrolled, a window shifted in
registers. Compiling them takes most of a first call's time. Every one of those sweeps
computes each output as the same chain of fused multiply-adds in tap order, so a kernel
that adds one tap at a time to a row of sums (``_sweeps._tap``) gives the same values bit for bit.
This is that kernel: the same arguments and the same values, run on the calling thread
(no workers, no task queue, no helpers called by address: each of those is code to
compile), output rows one at a time, its vertical and horizontal passes one tap a sweep,
and the work around them (the border pads, the squares of a magnitude, the check for
non-finite sums) written into the kernel instead of compiled as helpers of their own: the
pads are one loop over the padded row, 0.3 s less to compile than a padding function that
Numba inlines. It comes in two variants, one for sums of terms and one for sums of squares
and magnitudes (:func:`_quick_kernel`), and a call compiles the one it needs: 0.15-0.2 s less
than one kernel with both. It compiles in about a sixth of the fast kernel's time (0.8-1.3 s
against 6-7 s on a 2-core machine, besides Numba's own start) and runs at 0.25 to 1 times its
speed on 2 threads (``_tiers`` says when each runs).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import (
    MAGNITUDE,
    SUM,
    _buffer,
    _helper,
    _Kernel,
    _opaque,
    _source_index,
    _thread_count,
)
from ._sweeps import _tap
from ._tiers import PythonTwin
from ._views import row_view


def _column_pass_by_one(acc, plane, offsets, weights, n_taps, i, mode_y, cval):
    """``_separable_kernels._column_pass``, one tap a sweep: the same chains in tap order."""
    h = plane.shape[0]
    acc[:] = 0
    outside = acc.dtype.type(0)
    for a in range(n_taps):
        q = _source_index(i + offsets[a], h, mode_y)
        if q < 0:
            outside += weights[a] * cval
        else:
            _tap(acc, row_view(plane, q, 0, None), weights[a])
    if outside != 0:
        for j in range(acc.size):
            acc[j] += outside


def _row_pass_by_one(acc, bufs, offsets, weights, counts, lo, t, n_terms, add):
    """``_separable_kernels._row_pass`` (``acc`` (+)= the row pass of terms ``t ..
    n_terms - 1`` of the padded rows ``bufs``), its taps in order, one to a sweep."""
    w = acc.size
    if not add:
        acc[:] = 0
    while t < n_terms:
        for b in range(counts[t]):
            s = offsets[t, b] - lo
            _tap(acc, row_view(bufs, t, s, s + w), weights[t, b])
        t += 1


_row_pass_by_one = _helper(_row_pass_by_one, quick=True)
_column_pass_by_one = _helper(_column_pass_by_one, quick=True)


def _quick_kernel(squares):
    """The twin of the fused kernel's sums (``squares`` False: ``SUM``) or of its sums of
    squares (``SUM_SQUARES``, ``MAGNITUDE``): Numba prunes the other way of combining the
    terms, a closure constant, before it types the kernel, so each compiles only its own."""

    def separable_2d_quick(
        src,
        col_off,
        col_w,
        col_n,
        row_off,
        row_w,
        row_n,
        mode_y,
        mode_x,
        cval,
        pad_x,
        combine,
        inv_divisor,
        accumulate,
        out,
        block,
        nonfinite,
        helpers,
        missing,
        threads,
    ):
        """``_separable_kernels._separable_2d``, with the same arguments and values, from less
        code: on the calling thread, output rows one at a time, one tap a sweep.

        ``helpers``, ``missing`` and ``threads`` are the fast kernel's, unused here; a task's
        non-finite sums are flagged in ``nonfinite`` as the fast kernel flags them.
        """
        _thread_count()  # starts the threading layer, as the fast kernel does (``_cpu.run`` asks for it)
        n_planes, h, w = src.shape
        lo = hi = 0  # the first and last sample an output sample's row taps read, relative to it
        for t in range(row_n.size):
            for b in range(row_n[t]):
                lo = row_off[t, b] if row_off[t, b] < lo else lo
                hi = row_off[t, b] if row_off[t, b] > hi else hi
        padded = w + hi - lo
        n_blocks = (h + block - 1) // block
        n_terms = col_n.size
        summed = not squares and (n_terms > 1 or accumulate)  # added up in the output row
        bufs = _buffer((n_terms, padded), out)
        hacc = _buffer(w if squares else 0, out)
        total = _buffer(w if squares else 0, out)
        for p in range(n_planes):
            plane = src[p]
            for i in range(h):
                row_out = row_view(out, (p, i), 0, None)
                if squares:  # the terms' total starts from the output or zero
                    for j in range(w):
                        total[j] = row_out[j] if accumulate else 0
                for t in range(n_terms):
                    row = row_view(bufs, t, -lo, -lo + w)
                    _column_pass_by_one(row, plane, col_off[t], col_w[t], col_n[t], i, mode_y, cval)
                    padded_row = row_view(bufs, t, 0, None)
                    for k in range(padded - w):  # the pads, from the row itself (or pad_x)
                        p_k = k if k < -lo else k + w
                        q = _source_index(_opaque(p_k) + lo, w, mode_x)
                        padded_row[p_k] = pad_x[t] if q < 0 else padded_row[q - lo]
                    if squares:  # one term's square into the total
                        _row_pass_by_one(hacc, bufs, row_off, row_w, row_n, lo, t, t + 1, False)
                        for j in range(w):
                            total[j] += hacc[j] * hacc[j]
                if squares:
                    for j in range(w):
                        row_out[j] = np.sqrt(total[j]) * inv_divisor if combine == MAGNITUDE else total[j]
                else:
                    _row_pass_by_one(row_out, bufs, row_off, row_w, row_n, lo, 0, n_terms, accumulate)
                    if summed:
                        for j in range(w):
                            v = row_out[j]
                            if v - v != 0:
                                nonfinite[p * n_blocks + i // block] = 1

    return separable_2d_quick


_sums_quick = _Kernel(_quick_kernel(False), 14, takes_threads=True, calls_helper=True, quick=True)
_squares_quick = _Kernel(_quick_kernel(True), 14, takes_threads=True, calls_helper=True, quick=True)


def _separable_2d_by_combine(*args):
    """The twin of ``args``' way of combining the terms (``args[11]``), compiled when first
    called (``_tiers.PythonTwin``)."""
    return (_sums_quick if args[11] == SUM else _squares_quick).dispatcher(*args)


separable_2d_quick_kernel = PythonTwin(_separable_2d_by_combine, 14)
