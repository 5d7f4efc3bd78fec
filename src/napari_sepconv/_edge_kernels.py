"""CPU kernel of 3x3 edge magnitudes (``edge_magnitude_3x3``: Sobel, Scharr and Prewitt
of 2-D planes, both derivatives and their magnitude in one pass; ``_cpu_kernels`` says
how kernels are written and compiled).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._boundary import CONSTANT
from ._cpu_kernels import (
    _buffer,
    _helper,
    _imin,
    _Kernel,
    _limit_threads,
    _next_task,
    _set_thread_count,
    _source_index,
    _task_queue,
)
from ._helper_calls import helper_call
from ._views import row_view, row_view_or
from ._workers import worker_helper, worker_launch


def _edge_magnitude_rows(
    src,
    p,
    first,
    last,
    smooth_y,
    derivative_y,
    smooth_x,
    derivative_x,
    mode_y,
    mode_x,
    pad_smooth,
    pad_derivative,
    inv_divisor,
    cval,
    rows_s,
    rows_d,
    outside,
    out,
):
    """Rows ``first .. last - 1`` of plane ``p`` of ``_edge_magnitude_3x3``.

    ``rows_s`` and ``rows_d`` (``w + 2`` values) are the task's row buffers,
    ``outside`` its row of ``cval`` (filled here, as ``_cpu_kernels`` says why).
    """
    outside[:] = cval
    h, w = src.shape[1], src.shape[2]
    s0, s1, s2 = smooth_y[0], smooth_y[1], smooth_y[2]
    d0, d2 = derivative_y[0], derivative_y[1]
    hs0, hs1, hs2 = smooth_x[0], smooth_x[1], smooth_x[2]
    hd0, hd2 = derivative_x[0], derivative_x[1]
    to_acc = out.dtype.type
    s_in = row_view(rows_s, (), 1, w + 1)
    d_in = row_view(rows_d, (), 1, w + 1)
    left = _source_index(-1, w, mode_x)  # the same for every row
    right = _source_index(w, w, mode_x)
    for i in range(first, last):
        q0 = _source_index(i - 1, h, mode_y)
        q2 = _source_index(i + 1, h, mode_y)
        r0 = row_view_or(q0 >= 0, src, (p, q0), 0, w, outside)
        r1 = row_view(src, (p, i), 0, w)
        r2 = row_view_or(q2 >= 0, src, (p, q2), 0, w, outside)
        for j in range(w):
            a = to_acc(r0[j])
            b = to_acc(r1[j])
            c = to_acc(r2[j])
            s_in[j] = s0 * a + s1 * b + s2 * c
            d_in[j] = d0 * a + d2 * c
        if mode_x == CONSTANT:
            rows_s[0] = rows_s[w + 1] = pad_smooth
            rows_d[0] = rows_d[w + 1] = pad_derivative
        else:
            rows_s[0], rows_s[w + 1] = s_in[left], s_in[right]
            rows_d[0], rows_d[w + 1] = d_in[left], d_in[right]
        s_a, s_c = row_view(rows_s, (), 0, w), row_view(rows_s, (), 2, w + 2)
        d_a, d_b, d_c = row_view(rows_d, (), 0, w), d_in, row_view(rows_d, (), 2, w + 2)
        row_out = row_view(out, (p, i), 0, w)
        for j in range(w):
            gx = hd0 * s_a[j] + hd2 * s_c[j]
            gy = hs0 * d_a[j] + hs1 * d_b[j] + hs2 * d_c[j]
            row_out[j] = np.sqrt(gx * gx + gy * gy) * inv_divisor


_edge_magnitude_rows = _helper(_edge_magnitude_rows)
_call_edge_magnitude_rows = helper_call(_edge_magnitude_rows)


def _edge_magnitude_worker(worker, state):
    """Worker ``worker``'s tasks of ``_edge_magnitude_3x3`` (``_workers``)."""
    (
        src,
        smooth_y,
        derivative_y,
        smooth_x,
        derivative_x,
        mode_y,
        mode_x,
        cval,
        pad_smooth,
        pad_derivative,
        inv_divisor,
        out,
        block,
        helpers,
        missing,
        queue,
        n_blocks,
        n_tasks,
    ) = state
    h, w = src.shape[1], src.shape[2]
    rows_s = _buffer(w + 2, out)
    rows_d = _buffer(w + 2, out)
    outside = _buffer(w, src)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        first = (task % n_blocks) * block
        _call_edge_magnitude_rows(
            helpers,
            missing,
            (
                src,
                task // n_blocks,
                first,
                _imin(h, first + block),
                smooth_y,
                derivative_y,
                smooth_x,
                derivative_x,
                mode_y,
                mode_x,
                pad_smooth,
                pad_derivative,
                inv_divisor,
                cval,
                rows_s,
                rows_d,
                outside,
                out,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_edge_magnitude_worker = worker_helper(_edge_magnitude_worker)
_run_edge_magnitude = worker_launch(_edge_magnitude_worker)


def _edge_magnitude_3x3(
    src,
    smooth_y,
    derivative_y,
    smooth_x,
    derivative_x,
    mode_y,
    mode_x,
    cval,
    pad_smooth,
    pad_derivative,
    inv_divisor,
    out,
    block,
    helpers,
    missing,
    threads,
):
    """``sqrt(gx**2 + gy**2) * inv_divisor`` of a 3x3 edge operator, in one sweep per row.

    Smoothing weights offsets -1, 0, +1 and derivative weights offsets -1 and
    +1 (the zero centre is left out, as scipy leaves it out of the footprint).
    Each output row reads its three source rows once, filling the vertically
    smoothed row ``S`` and differentiated row ``D``; then ``gx =
    derivative_x(S)`` and ``gy = smooth_x(D)``. ``pad_*`` are the values
    beyond the image along x in constant mode; rows beyond it hold ``cval``. The
    workers are ``_edge_magnitude_worker``.
    """
    n_planes, h, _ = src.shape
    previous = _limit_threads(threads)
    n_blocks = (h + block - 1) // block
    n_tasks = n_planes * n_blocks
    queue = _task_queue(n_tasks)
    state = (
        src,
        smooth_y,
        derivative_y,
        smooth_x,
        derivative_x,
        mode_y,
        mode_x,
        cval,
        pad_smooth,
        pad_derivative,
        inv_divisor,
        out,
        block,
        helpers,
        missing,
        queue,
        n_blocks,
        n_tasks,
    )
    _run_edge_magnitude(helpers, missing, queue, state)
    _set_thread_count(previous)


edge_magnitude_3x3 = _Kernel(_edge_magnitude_3x3, 11, takes_threads=True, calls_helper=True)
