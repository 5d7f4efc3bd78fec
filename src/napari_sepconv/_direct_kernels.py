"""CPU kernel of direct 2-D correlation (``correlate_2d``: ``filter2d`` kernels that do
not factor into few separable terms; ``_cpu_kernels`` says how kernels are written
and compiled).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import (
    _buffer,
    _fill_padded_row,
    _helper,
    _highest,
    _imin,
    _Kernel,
    _lowest,
    _next_task,
    _opaque,
    _pad_table,
    _source_index,
    _task_queue,
)
from ._helper_calls import helper_call
from ._sweeps import _sweep
from ._views import row_view
from ._workers import worker_helper, worker_launch


def _taps_pass(acc, ring, tap_slot, tap_x, tap_w, lo):
    """``acc`` = the taps of ``_correlate_2d`` over the padded rows of ``ring``, four per sweep.

    Tap ``t`` reads ring row ``tap_slot[t]`` from x offset ``tap_x[t]``
    (``ring[s, p]`` is x = p + lo).
    """
    w = acc.size
    acc[:] = 0
    n_taps = tap_w.size
    t = 0
    while t < n_taps:
        n = _imin(4, n_taps - t)
        k1, k2, k3 = t + _imin(1, n - 1), t + _imin(2, n - 1), t + _imin(3, n - 1)
        s0, s1 = tap_x[t] - lo, tap_x[k1] - lo
        s2, s3 = tap_x[k2] - lo, tap_x[k3] - lo
        _sweep(
            acc,
            n,
            row_view(ring, tap_slot[t], s0, s0 + w),
            tap_w[t],
            row_view(ring, tap_slot[k1], s1, s1 + w),
            tap_w[k1],
            row_view(ring, tap_slot[k2], s2, s2 + w),
            tap_w[k2],
            row_view(ring, tap_slot[k3], s3, s3 + w),
            tap_w[k3],
        )
        t += n


_taps_pass = _helper(_taps_pass)


def _correlate_2d_rows(
    src, p, first, last, tap_y, tap_x, tap_w, mode_y, mode_x, source, cval, ring, slots, out
):
    """Rows ``first .. last - 1`` of plane ``p`` of ``_correlate_2d``.

    ``ring`` (the kernel's height, the padded row) and ``slots`` (one per
    tap) are the task's buffers, ``source`` the task's buffer for the rows' pad
    (``_pad_table``, made here, as ``_cpu_kernels`` says why).
    """
    h = src.shape[1]
    lo = _lowest(tap_x)
    _pad_table(source, lo, src.shape[2], mode_x)
    top = _lowest(tap_y)
    span = ring.shape[0]
    for i in range(first, last):
        # rows i + top .. i + top + span - 1; all are new in the task's first row
        new_first = i + top if i == first else i + top + span - 1
        for y in range(new_first, i + top + span):
            q = _source_index(y, h, mode_y)
            row = row_view(ring, y % span, 0, None)
            if q < 0:
                row[:] = cval
            else:
                _fill_padded_row(row, row_view(src, (p, q), 0, None), lo, source, cval)
        for t in range(tap_y.size):  # a scalar loop (``_opaque``): LLVM vectorised the modulos
            slots[t] = (i + tap_y[_opaque(t)]) % span
        _taps_pass(row_view(out, (p, i), 0, None), ring, slots, tap_x, tap_w, lo)


_correlate_2d_rows = _helper(_correlate_2d_rows)
_call_correlate_2d_rows = helper_call(_correlate_2d_rows)


def _correlate_2d_worker(worker, state):
    """Worker ``worker``'s tasks of ``_correlate_2d`` (``_workers``)."""
    (
        src,
        tap_y,
        tap_x,
        tap_w,
        mode_y,
        mode_x,
        cval,
        out,
        block,
        helpers,
        missing,
        queue,
        n_blocks,
        n_tasks,
        span,
        padded,
    ) = state
    h = src.shape[1]
    ring = _buffer((span, padded), out)
    slots = _buffer(tap_y.size, np.int64)
    source = _buffer(padded, np.int64)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        first = (task % n_blocks) * block
        _call_correlate_2d_rows(
            helpers,
            missing,
            (
                src,
                task // n_blocks,
                first,
                _imin(h, first + block),
                tap_y,
                tap_x,
                tap_w,
                mode_y,
                mode_x,
                source,
                cval,
                ring,
                slots,
                out,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_correlate_2d_worker = worker_helper(_correlate_2d_worker)
_run_correlate_2d = worker_launch(_correlate_2d_worker)


def _correlate_2d(src, tap_y, tap_x, tap_w, mode_y, mode_x, cval, out, block, helpers, missing):
    """Direct 2-D correlation of each plane of ``src`` (P, H, W) with the given taps.

    Each task keeps the source rows its output rows read in a ring of
    border-extended rows, each padded once (``ring[(i + dy) % span]`` holds
    row ``i + dy``); the taps then go four at a time through one sweep over
    the output row, in the order given. The workers are ``_correlate_2d_worker``.
    """
    n_planes, h, w = src.shape
    span = _highest(tap_y) - _lowest(tap_y) + 1
    padded = w + _highest(tap_x) - _lowest(tap_x)
    n_blocks = (h + block - 1) // block
    n_tasks = n_planes * n_blocks
    queue = _task_queue(n_tasks)
    state = (
        src,
        tap_y,
        tap_x,
        tap_w,
        mode_y,
        mode_x,
        cval,
        out,
        block,
        helpers,
        missing,
        queue,
        n_blocks,
        n_tasks,
        span,
        padded,
    )
    _run_correlate_2d(helpers, missing, queue, state)


correlate_2d = _Kernel(_correlate_2d, 7, calls_helper=True)
