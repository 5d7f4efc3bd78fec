"""A CPU kernel that runs the fused separable kernel's arithmetic from a fraction of its
code (``separable_2d_quick_kernel``), for the seconds until that kernel is compiled.

The fused kernel (``_separable_kernels.separable_2d_kernel``) is fast because of its many
sweeps: four output rows at once, seven to nine taps unrolled, a window shifted in
registers. Compiling them takes most of a first call's time. Every one of those sweeps
computes each output as the same chain of fused multiply-adds in tap order, so a kernel
that adds one tap at a time to a row of sums (``_tap``) gives the same values bit for bit.
This is that kernel: the same arguments, the same tasks, its vertical and horizontal passes
one tap a sweep, and the work around them (the border pads, the squares of a magnitude, the
check for non-finite sums) written into the worker instead of compiled as helpers of their
own. It compiles in about a third of the fast kernel's time (about 2 s against 6-9 s on a
2-core machine) and runs at 0.45 to 1.3 times its speed (``_tiers`` says when each runs).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import (
    MAGNITUDE,
    SUM,
    _buffer,
    _fmuladd,
    _helper,
    _imin,
    _inlined,
    _Kernel,
    _limit_threads,
    _next_task,
    _pad_table,
    _set_thread_count,
    _source_index,
    _task_queue,
)
from ._helper_calls import looked_up_call
from ._separable_kernels import _row_reach
from ._views import row_view
from ._workers import worker_helper, worker_launch


def _tap(acc, row, w):
    """``acc[j] = row[j] * w + acc[j]``, each product fused with its sum (``_fmuladd``)."""
    t = acc.dtype.type
    for j in range(acc.size):
        acc[j] = _fmuladd(t(row[j]), w, acc[j])


_tap = _inlined(_tap)


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


_row_pass_by_one = _helper(_row_pass_by_one)
_call_row_pass, _row_pass_found = looked_up_call(_row_pass_by_one)
_column_pass_by_one = _helper(_column_pass_by_one)
_call_column_pass, _column_pass_found = looked_up_call(_column_pass_by_one)


def _quick_worker(worker, state):
    """Worker ``worker``'s tasks of ``_separable_2d_quick`` (``_workers``): each output row
    as ``_separable_kernels._separable_rows`` makes it, one row at a time."""
    (
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
        queue,
        n_blocks,
        n_tasks,
        lo,
        padded,
        helpers,
        missing,
    ) = state
    h, w = src.shape[1], src.shape[2]
    n_terms = col_n.size
    direct = n_terms == 1 and combine == SUM and not accumulate
    summed = combine == SUM and not direct  # added up in the output row
    bufs = _buffer((n_terms, padded), out)
    hacc = _buffer(w, out)
    total = _buffer(w, out)
    source = _buffer(padded, np.int64)
    _pad_table(source, lo, w, mode_x)
    row = row_view(bufs, 0, -lo, -lo + w)  # arguments of the types the calls below pass
    if not (
        _column_pass_found(helpers, missing, (row, src[0], col_off[0], col_w[0], 0, 0, mode_y, cval))
        and _row_pass_found(helpers, missing, (hacc, bufs, row_off, row_w, row_n, lo, 0, 0, False))
    ):
        return
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        p = task // n_blocks
        first = (task % n_blocks) * block
        plane = src[p]
        for i in range(first, _imin(h, first + block)):
            row_out = row_view(out, (p, i), 0, None)
            if not (direct or summed):  # the terms' total starts from the output or zero
                for j in range(w):
                    total[j] = row_out[j] if accumulate else 0
            for t in range(n_terms):
                row = row_view(bufs, t, -lo, -lo + w)
                column = (row, plane, col_off[t], col_w[t], col_n[t], i, mode_y, cval)
                _call_column_pass(helpers, missing, column)
                padded_row = row_view(bufs, t, 0, None)  # the row extended by the border mode
                for q in range(-lo):
                    padded_row[q] = pad_x[t] if source[q] < 0 else row[source[q]]
                for q in range(w - lo, padded):
                    padded_row[q] = pad_x[t] if source[q] < 0 else row[source[q]]
                if not (direct or summed):  # one term's square into the total
                    _call_row_pass(helpers, missing, (hacc, bufs, row_off, row_w, row_n, lo, t, t + 1, False))
                    for j in range(w):
                        total[j] += hacc[j] * hacc[j]
            if direct or summed:
                terms = (row_out, bufs, row_off, row_w, row_n, lo, 0, n_terms, accumulate)
                _call_row_pass(helpers, missing, terms)
                if summed:
                    for j in range(w):
                        v = row_out[j]
                        if v - v != 0:
                            nonfinite[task] = 1
            else:
                for j in range(w):
                    row_out[j] = np.sqrt(total[j]) * inv_divisor if combine == MAGNITUDE else total[j]
        task = _next_task(queue, worker, n_tasks)


_quick_worker = worker_helper(_quick_worker)
_run_quick = worker_launch(_quick_worker)


def _separable_2d_quick(
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
    code: output rows one at a time, taps four to a sweep (``_quick_worker``)."""
    w = src.shape[2]
    lo, hi = _row_reach(row_off, row_n)
    previous = _limit_threads(threads)
    n_blocks = (src.shape[1] + block - 1) // block
    n_tasks = src.shape[0] * n_blocks
    queue = _task_queue(n_tasks)
    state = (
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
        queue,
        n_blocks,
        n_tasks,
        lo,
        w + hi - lo,
        helpers,
        missing,
    )
    _run_quick(helpers, missing, queue, state)
    _set_thread_count(previous)


separable_2d_quick_kernel = _Kernel(_separable_2d_quick, 14, takes_threads=True, calls_helper=True)
