"""CPU kernels of 1-D passes along one axis (``correlate1d`` and every pass that is not
fused): ``correlate_lines`` along the last axis, ``correlate_rows`` along another,
whole rows at a time (``_cpu_kernels`` says how kernels are written and compiled).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numba
import numpy as np

from ._cpu_kernels import (
    _buffer,
    _fill_padded_row,
    _helper,
    _highest,
    _imax,
    _imin,
    _inlined,
    _Kernel,
    _lowest,
    _next_task,
    _pad_table,
    _source_index,
    _task_queue,
)
from ._helper_calls import helper_call
from ._streaming import prefetch
from ._views import row_view, row_view_or
from ._workers import worker_helper, worker_launch


def _accumulate_taps(acc, seg_a, seg_b, w, sign):
    """``acc += (seg_a + sign * seg_b) * w``, or ``acc += seg_a * w`` when ``sign`` is 0.

    Samples are converted to the accumulator's type first (so integer input
    cannot wrap, and the arithmetic is the accumulator's). Inlined by LLVM
    (``_cpu_kernels._inlined``: typed once, not at each call site): ``acc`` is always
    a task buffer, never one of the rows it reads.
    """
    to_acc = acc.dtype.type
    if sign > 0:
        for j in range(acc.size):
            acc[j] += (to_acc(seg_a[j]) + to_acc(seg_b[j])) * w
    elif sign < 0:
        for j in range(acc.size):
            acc[j] += (to_acc(seg_a[j]) - to_acc(seg_b[j])) * w
    else:
        for j in range(acc.size):
            acc[j] += to_acc(seg_a[j]) * w


_accumulate_taps = _inlined(_accumulate_taps)


def _accumulate_taps4(acc, a0, b0, a1, b1, a2, b2, a3, b3, w0, w1, w2, w3, sign):
    """Four ``_accumulate_taps`` in one pass over ``acc``: the same operations in the same order.

    Each product is rounded, then added, as four separate calls would; the
    running sum stays in a register between them.
    """
    to_acc = acc.dtype.type
    if sign > 0:
        for j in range(acc.size):
            s = acc[j] + (to_acc(a0[j]) + to_acc(b0[j])) * w0
            s = s + (to_acc(a1[j]) + to_acc(b1[j])) * w1
            s = s + (to_acc(a2[j]) + to_acc(b2[j])) * w2
            acc[j] = s + (to_acc(a3[j]) + to_acc(b3[j])) * w3
    elif sign < 0:
        for j in range(acc.size):
            s = acc[j] + (to_acc(a0[j]) - to_acc(b0[j])) * w0
            s = s + (to_acc(a1[j]) - to_acc(b1[j])) * w1
            s = s + (to_acc(a2[j]) - to_acc(b2[j])) * w2
            acc[j] = s + (to_acc(a3[j]) - to_acc(b3[j])) * w3
    else:
        for j in range(acc.size):
            s = acc[j] + to_acc(a0[j]) * w0
            s = s + to_acc(a1[j]) * w1
            s = s + to_acc(a2[j]) * w2
            acc[j] = s + to_acc(a3[j]) * w3


_accumulate_taps4 = _inlined(_accumulate_taps4)


def _correlate_lines_block(
    src, first_line, last_line, offsets, weights, symmetry, mode, source, cval, lo, buf, acc, out
):
    """Lines ``first_line .. last_line - 1`` of ``_correlate_lines``, in the task's ``buf``
    (the padded line, its pad from ``source``: ``_pad_table``, made here, as
    ``_cpu_kernels`` says why) and ``acc``."""
    n = src.shape[1]
    _pad_table(source, lo, n, mode)
    k = offsets.size
    for line in range(first_line, last_line):
        _fill_padded_row(buf, row_view(src, line, 0, n), lo, source, cval)
        first = k // 2 if symmetry != 0 else k - 1
        start = offsets[first] - lo
        seg = row_view(buf, (), start, start + n)
        for j in range(n):
            acc[j] = seg[j] * weights[first]
        # tap pair t reads buf from a_t (and, when symmetric, from b_t); four pairs a sweep
        pairs = k // 2 if symmetry != 0 else k - 1
        t = 0
        while t < pairs:
            if pairs - t >= 4:
                a0, a1, a2, a3 = (
                    offsets[t] - lo,
                    offsets[t + 1] - lo,
                    offsets[t + 2] - lo,
                    offsets[t + 3] - lo,
                )
                if symmetry != 0:
                    b0, b1 = offsets[k - 1 - t] - lo, offsets[k - 2 - t] - lo
                    b2, b3 = offsets[k - 3 - t] - lo, offsets[k - 4 - t] - lo
                else:
                    b0, b1, b2, b3 = a0, a1, a2, a3
                _accumulate_taps4(
                    acc,
                    row_view(buf, (), a0, a0 + n),
                    row_view(buf, (), b0, b0 + n),
                    row_view(buf, (), a1, a1 + n),
                    row_view(buf, (), b1, b1 + n),
                    row_view(buf, (), a2, a2 + n),
                    row_view(buf, (), b2, b2 + n),
                    row_view(buf, (), a3, a3 + n),
                    row_view(buf, (), b3, b3 + n),
                    weights[t],
                    weights[t + 1],
                    weights[t + 2],
                    weights[t + 3],
                    symmetry,
                )
                t += 4
            else:
                sa = offsets[t] - lo
                sb = offsets[k - 1 - t] - lo if symmetry != 0 else sa
                row_a, row_b = row_view(buf, (), sa, sa + n), row_view(buf, (), sb, sb + n)
                _accumulate_taps(acc, row_a, row_b, weights[t], symmetry)
                t += 1
        out_row = row_view(out, line, 0, n)
        for j in range(n):
            out_row[j] = acc[j]


_correlate_lines_block = _helper(_correlate_lines_block)
_call_lines_block = helper_call(_correlate_lines_block)


def _correlate_lines_worker(worker, state):
    """Worker ``worker``'s tasks of ``_correlate_lines`` (``_workers``)."""
    src, offsets, weights, symmetry, mode, cval, out, block, helpers, missing, queue, n_tasks, lo, padded = (
        state
    )
    n_lines, n = src.shape
    buf = _buffer(padded, out)
    acc = _buffer(n, out)
    source = _buffer(padded, np.int64)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        _call_lines_block(
            helpers,
            missing,
            (
                src,
                task * block,
                _imin(n_lines, (task + 1) * block),
                offsets,
                weights,
                symmetry,
                mode,
                source,
                cval,
                lo,
                buf,
                acc,
                out,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_correlate_lines_worker = worker_helper(_correlate_lines_worker)
_run_lines = worker_launch(_correlate_lines_worker)


def _correlate_lines(src, offsets, weights, symmetry, mode, cval, out, block, helpers, missing):
    """1-D correlation of each row of ``src`` (lines, n) into ``out``.

    Sums in scipy.ndimage's order, so the values match ``correlate1d`` bit
    for bit: for a (anti)symmetric kernel the centre tap, then pairs
    ``(x[-j] +/- x[j]) * w[-j]`` (half the multiplications); otherwise the
    last tap, then the others in order. The workers are ``_correlate_lines_worker``.
    """
    n_lines, n = src.shape
    lo = _lowest(offsets)
    n_tasks = (n_lines + block - 1) // block
    queue = _task_queue(n_tasks)
    state = (
        src,
        offsets,
        weights,
        symmetry,
        mode,
        cval,
        out,
        block,
        helpers,
        missing,
        queue,
        n_tasks,
        lo,
        n + _highest(offsets) - lo,
    )
    _run_lines(helpers, missing, queue, state)


def _tap_row(src, o, q, outside, c0, c1):
    """Columns ``c0 .. c1 - 1`` of row ``q`` of ``src[o]``, or ``outside`` (those columns of a
    row of ``cval``) where the border mode reads no row (``q < 0``)."""
    return row_view_or(q >= 0, src, (o, q), c0, c1, outside)


_tap_row = numba.njit(inline="always", cache=False)(_tap_row)


def _correlate_rows_block(
    src, o, first_row, last_row, c0, c1, offsets, weights, symmetry, mode, cval, acc, rows, outside, out
):
    """Rows ``first_row .. last_row - 1``, columns ``c0 .. c1 - 1``, of ``src[o]`` for
    ``_correlate_rows``, in the task's ``acc``, ``rows`` (each tap's source row) and
    ``outside`` (filled here with ``cval``, as ``_cpu_kernels`` says why: the rows outside
    the image in constant mode, where the caller made ``src`` float)."""
    outside[:] = cval
    n = src.shape[1]
    k = offsets.size
    first = k // 2 if symmetry != 0 else k - 1
    pairs = k // 2 if symmetry != 0 else k - 1
    for i in range(first_row, last_row):
        for t in range(k):
            rows[t] = _source_index(i + offsets[t], n, mode)
        if i + 2 < last_row:  # the source row a later output row adds, asked for ahead
            ahead = _source_index(i + 2 + offsets[k - 1], n, mode)
            if ahead >= 0:
                prefetch(row_view(src, (o, ahead), c0, c1))
        row = _tap_row(src, o, rows[first], outside, c0, c1)
        for j in range(acc.size):
            acc[j] = row[j] * weights[first]
        t = 0
        while t < pairs:
            # tap pair t reads rows[t] and, when symmetric, rows[k - 1 - t]
            if pairs - t >= 4:  # four pairs in one sweep
                b0 = k - 1 - t if symmetry != 0 else t
                step = -1 if symmetry != 0 else 1
                _accumulate_taps4(
                    acc,
                    _tap_row(src, o, rows[t], outside, c0, c1),
                    _tap_row(src, o, rows[b0], outside, c0, c1),
                    _tap_row(src, o, rows[t + 1], outside, c0, c1),
                    _tap_row(src, o, rows[b0 + step], outside, c0, c1),
                    _tap_row(src, o, rows[t + 2], outside, c0, c1),
                    _tap_row(src, o, rows[b0 + 2 * step], outside, c0, c1),
                    _tap_row(src, o, rows[t + 3], outside, c0, c1),
                    _tap_row(src, o, rows[b0 + 3 * step], outside, c0, c1),
                    weights[t],
                    weights[t + 1],
                    weights[t + 2],
                    weights[t + 3],
                    symmetry,
                )
                t += 4
            else:
                row_a = _tap_row(src, o, rows[t], outside, c0, c1)
                row_b = _tap_row(src, o, rows[k - 1 - t if symmetry != 0 else t], outside, c0, c1)
                _accumulate_taps(acc, row_a, row_b, weights[t], symmetry)
                t += 1
        out_row = row_view(out, (o, i), c0, c1)
        for j in range(acc.size):
            out_row[j] = acc[j]


_correlate_rows_block = _helper(_correlate_rows_block)
_call_rows_block = helper_call(_correlate_rows_block)

# Columns of a band of ``_correlate_rows``: its sums (8 KiB) stay in L1, and the source rows
# of one output row in L2 for the next rows of the band.
BAND_BYTES = 8192
# Rows of a task when a row holds several bands: the source rows of one band are read
# again by the next rows of the task from L2, not from memory.
BAND_ROWS = 64


def _correlate_rows_worker(worker, state):
    """Worker ``worker``'s tasks of ``_correlate_rows`` (``_workers``)."""
    (
        src,
        offsets,
        weights,
        symmetry,
        mode,
        cval,
        out,
        block,
        helpers,
        missing,
        queue,
        n_tasks,
        n_blocks,
        band,
        n_bands,
    ) = state
    n = src.shape[1]
    inner = src.shape[2]
    k = offsets.size
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        o = task // (n_blocks * n_bands)
        rest = task - o * (n_blocks * n_bands)
        first_row = (rest // n_bands) * block
        c0 = (rest % n_bands) * band
        c1 = _imin(inner, c0 + band)
        acc = _buffer(c1 - c0, out)
        rows = _buffer(k, np.int64)  # the source row of each tap, -1 outside the image
        outside = _buffer(c1 - c0, src)
        _call_rows_block(
            helpers,
            missing,
            (
                src,
                o,
                first_row,
                _imin(n, first_row + block),
                c0,
                c1,
                offsets,
                weights,
                symmetry,
                mode,
                cval,
                acc,
                rows,
                outside,
                out,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_correlate_rows_worker = worker_helper(_correlate_rows_worker)
_run_rows = worker_launch(_correlate_rows_worker)


def _correlate_rows(src, offsets, weights, symmetry, mode, cval, out, block, helpers, missing):
    """1-D correlation along axis 1 of ``src`` (outer, n, inner), vectorised over ``inner``.

    Same summation order as ``_correlate_lines``. The source row of each tap
    is found once per output row (one border-mode lookup in the code, which
    keeps the compiled kernel small). Long rows (planes of a volume, filtered
    along z) go in bands of columns, each band ``BAND_ROWS`` rows at a time: a
    sweep over whole planes would stream its sums and every tap's plane from
    memory once per output plane. The workers are ``_correlate_rows_worker``.
    """
    n_outer, n, inner = src.shape
    band = _imax(1, BAND_BYTES // out.itemsize)
    n_bands = (inner + band - 1) // band
    if n_bands > 1:
        block = _imax(block, BAND_ROWS)
    else:
        band = inner
    n_blocks = (n + block - 1) // block
    n_tasks = n_outer * n_blocks * n_bands
    queue = _task_queue(n_tasks)
    state = (
        src,
        offsets,
        weights,
        symmetry,
        mode,
        cval,
        out,
        block,
        helpers,
        missing,
        queue,
        n_tasks,
        n_blocks,
        band,
        n_bands,
    )
    _run_rows(helpers, missing, queue, state)


correlate_lines = _Kernel(_correlate_lines, 6, calls_helper=True)
correlate_rows = _Kernel(_correlate_rows, 6, calls_helper=True)
