"""A CPU kernel that runs the fused separable kernel's arithmetic from a fraction of its
code (``separable_2d_quick_kernel``), for the seconds until that kernel is compiled.

The fused kernel (``_separable_kernels.separable_2d_kernel``) is fast because of its many
sweeps: four output rows at once, seven to nine taps unrolled, a window shifted in
registers. Compiling them takes most of a first call's time. Every one of those sweeps
computes each output as the same chain of fused multiply-adds in tap order, so a kernel
that runs the chains one row and up to four taps at a time (``_sweeps._sweep``) gives the
same values bit for bit. This is that kernel: the same arguments, the same tasks, its
vertical pass the fused kernel's own ``_column_pass``, and a row pass that groups the taps
of every term by four. It compiles in about half the time (3.5-4.5 s against 7-9 s on a
2-core machine) and runs at 0.6 to 1.06 times the fused kernel's speed (``_tiers`` says when
each runs).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import (
    SUM,
    _buffer,
    _helper,
    _imin,
    _Kernel,
    _limit_threads,
    _next_task,
    _pad_table,
    _set_thread_count,
    _task_queue,
)
from ._helper_calls import looked_up_call
from ._separable_kernels import (
    _add_square,
    _call_column_pass,
    _column_pass_found,
    _finish_row,
    _nonfinite,
    _pad_row,
    _row_reach,
    _start_row,
)
from ._sweeps import _sweep
from ._views import row_view
from ._workers import worker_helper, worker_launch


def _row_pass_by_four(acc, bufs, offsets, weights, counts, lo, t, n_terms, add):
    """``_separable_kernels._row_pass`` (``acc`` (+)= the row pass of terms ``t ..
    n_terms - 1`` of the padded rows ``bufs``), its taps in order, four to a sweep."""
    w = acc.size
    if not add:
        acc[:] = 0
    b = 0
    while t < n_terms:
        n = 0
        t0 = t1 = t2 = t3 = t
        b0 = b1 = b2 = b3 = b
        while n < 4 and t < n_terms:
            if n == 1:
                t1, b1 = t, b
            elif n == 2:
                t2, b2 = t, b
            elif n == 3:
                t3, b3 = t, b
            n += 1
            b += 1
            if b == counts[t]:
                t += 1
                b = 0
        s0, s1 = offsets[t0, b0] - lo, offsets[t1, b1] - lo
        s2, s3 = offsets[t2, b2] - lo, offsets[t3, b3] - lo
        _sweep(
            acc,
            n,
            row_view(bufs, t0, s0, s0 + w),
            weights[t0, b0],
            row_view(bufs, t1, s1, s1 + w),
            weights[t1, b1],
            row_view(bufs, t2, s2, s2 + w),
            weights[t2, b2],
            row_view(bufs, t3, s3, s3 + w),
            weights[t3, b3],
        )


_row_pass_by_four = _helper(_row_pass_by_four)
_call_row_pass, _row_pass_found = looked_up_call(_row_pass_by_four)


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
            if not (direct or summed):
                _start_row(total, row_out, accumulate)
            for t in range(n_terms):
                row = row_view(bufs, t, -lo, -lo + w)
                column = (row, plane, col_off[t], col_w[t], col_n[t], i, mode_y, cval)
                _call_column_pass(helpers, missing, column)
                _pad_row(row_view(bufs, t, 0, None), lo, w, source, pad_x[t])
                if not (direct or summed):  # one term's square into the total
                    _call_row_pass(helpers, missing, (hacc, bufs, row_off, row_w, row_n, lo, t, t + 1, False))
                    _add_square(total, hacc)
            if direct or summed:
                terms = (row_out, bufs, row_off, row_w, row_n, lo, 0, n_terms, accumulate)
                _call_row_pass(helpers, missing, terms)
                if summed and _nonfinite(row_out):
                    nonfinite[task] = 1
            else:
                _finish_row(total, combine, inv_divisor, row_out)
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
