"""CPU kernels of a fused separable term's passes for filters whose last axis holds a few
samples and runs in front (``_narrow_tail.last_axis_first``): the vertical pass along the
rows (:func:`vertical_along_rows`) and the horizontal pass along a short first axis
(:func:`combine_planes`).

The fused kernel's vertical pass (``_separable_kernels._column_pass``) is, per output, a chain
of fused multiply-adds from zero over the taps inside the image, in tap order, then (constant
mode) the sum of the outside taps' weights times ``cval``, added last where it is not zero.
:func:`vertical_along_rows` runs the same operations along each row of the moved copy.

The fused kernel (``_separable_kernels``) ends each output row with its horizontal pass: per
output sample, one chain of fused multiply-adds over the terms' taps in order (a sum), or a
chain per term squared into a total (a magnitude). Here a term's chain runs along the first
axis of ``values`` (C, N), ``C`` planes of ``N`` samples, each tap a whole plane, and
continues the sum or the total that the term before it left in the output: the same
operations in the same order, so the same values, vectorised over the planes.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import (
    MAGNITUDE,
    SUM,
    _buffer,
    _fmuladd,
    _imax,
    _imin,
    _jit,
    _next_task,
    _source_index,
    _task_queue,
)
from ._sweeps import _sweep
from ._views import row_view
from ._workers import worker_helper, worker_launch

# Samples of a plane per task.
CHUNK = 2048


def _combine_worker(worker, state):
    """Worker ``worker``'s tasks of :func:`combine_planes` (``_workers``)."""
    values, sources, weights, pad, combine, inv_divisor, accumulate, out, queue, n_tasks = state
    n = values.shape[1]
    t = out.dtype.type
    term = _buffer(CHUNK, out)
    n_chunks = (n + CHUNK - 1) // CHUNK
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        c = task // n_chunks
        lo = (task - c * n_chunks) * CHUNK
        hi = _imin(n, lo + CHUNK)
        dst = row_view(out, c, lo, hi)
        if not accumulate:
            dst[:] = t(0)
        # the chain: the output's sum (or a zeroed term) plus each tap in order
        acc = dst if combine == SUM else row_view(term, (), 0, hi - lo)
        if combine != SUM:
            acc[:] = t(0)
        for k in range(weights.size):
            q = sources[c, k]
            w = weights[k]
            if q < 0:
                for j in range(acc.size):
                    acc[j] = _fmuladd(pad, w, acc[j])
            else:
                row = row_view(values, q, lo, hi)
                for j in range(acc.size):
                    acc[j] = _fmuladd(row[j], w, acc[j])
        if combine != SUM:  # the term's square into the total
            for j in range(dst.size):
                dst[j] += acc[j] * acc[j]
            if combine == MAGNITUDE:
                for j in range(dst.size):
                    dst[j] = np.sqrt(dst[j]) * inv_divisor
        task = _next_task(queue, worker, n_tasks)


_combine_worker = worker_helper(_combine_worker)
_run_combine = worker_launch(_combine_worker)


@_jit
def _combine_planes(values, sources, weights, pad, combine, inv_divisor, accumulate, out, helpers, missing):
    n_tasks = out.shape[0] * ((values.shape[1] + CHUNK - 1) // CHUNK)
    queue = _task_queue(n_tasks)
    state = (values, sources, weights, pad, combine, inv_divisor, accumulate, out, queue, n_tasks)
    _run_combine(helpers, missing, queue, state)


def combine_planes(values, sources, weights, pad, combine, inv_divisor, accumulate, out):
    """A term's horizontal pass and its share of the combination of ``_separable_kernels``'
    fused kernel, along the first axis of ``values`` (C, N) into ``out`` (C, N).

    ``sources[c, k]`` is the plane that tap ``k`` reads for output plane ``c`` (-1: the
    constant ``pad``), ``weights[k]`` its weight. ``combine``: ``SUM`` (the chain of fused
    multiply-adds over the taps, from ``out`` where ``accumulate``, else from zero),
    ``SUM_SQUARES`` or ``MAGNITUDE`` (the chain from zero, its square added to ``out`` or
    to zero; then the square root times ``inv_divisor`` for a magnitude). Arrays are
    C-contiguous, of ``out``'s float type but ``sources`` (int64); ``pad`` and
    ``inv_divisor`` are scalars of that type.
    """
    from ._cpu import run

    run(
        _combine_planes,
        values,
        sources,
        weights,
        pad,
        combine,
        inv_divisor,
        accumulate,
        out,
        taps=int(weights.size),
        calls_helper=True,
    )


# Rows of a task of :func:`vertical_along_rows`.
ROWS = 16


def _vertical_rows_worker(worker, state):
    """Worker ``worker``'s tasks of :func:`vertical_along_rows` (``_workers``)."""
    src, offsets, weights, mode, cval, out, queue, n_tasks = state
    n_rows, n = src.shape
    t = out.dtype.type
    k = offsets.size
    before = 0
    after = 0
    for a in range(k):
        before = _imax(before, -offsets[a])
        after = _imax(after, offsets[a])
    lo = _imin(before, n)  # outputs lo .. hi - 1 read only samples inside the row
    hi = _imax(n - after, lo)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        for r in range(task * ROWS, _imin(n_rows, (task + 1) * ROWS)):
            row = row_view(src, r, 0, n)
            acc = row_view(out, r, lo, hi)
            acc[:] = t(0)
            a = 0
            while a < k:  # up to four taps a sweep, in tap order
                m = _imin(4, k - a)
                a1, a2, a3 = _imin(a + 1, k - 1), _imin(a + 2, k - 1), _imin(a + 3, k - 1)
                _sweep(
                    acc,
                    m,
                    row_view(row, (), lo + offsets[a], hi + offsets[a]),
                    weights[a],
                    row_view(row, (), lo + offsets[a1], hi + offsets[a1]),
                    weights[a1],
                    row_view(row, (), lo + offsets[a2], hi + offsets[a2]),
                    weights[a2],
                    row_view(row, (), lo + offsets[a3], hi + offsets[a3]),
                    weights[a3],
                )
                a += m
            dst = row_view(out, r, 0, n)
            for e in range(n - (hi - lo)):  # the outputs before lo and from hi on
                j = e if e < lo else e + hi - lo
                s = t(0)
                outside = t(0)
                for b in range(k):
                    q = _source_index(j + offsets[b], n, mode)
                    if q < 0:
                        outside += weights[b] * cval
                    else:
                        s = _fmuladd(t(row[q]), weights[b], s)
                if outside != 0:
                    s += outside
                dst[j] = s
        task = _next_task(queue, worker, n_tasks)


_vertical_rows_worker = worker_helper(_vertical_rows_worker)
_run_vertical_rows = worker_launch(_vertical_rows_worker)


@_jit
def _vertical_along_rows(src, offsets, weights, mode, cval, out, helpers, missing):
    n_tasks = (src.shape[0] + ROWS - 1) // ROWS
    queue = _task_queue(n_tasks)
    state = (src, offsets, weights, mode, cval, out, queue, n_tasks)
    _run_vertical_rows(helpers, missing, queue, state)


def vertical_along_rows(src, offsets, weights, mode, cval, out):
    """The fused kernel's vertical pass (``offsets``, ``weights`` of ``out``'s float type,
    ``mode``, ``cval``), run along each row of ``src`` (rows, n) into ``out`` (rows, n): the
    same operations for each output, so the same bits. Both C-contiguous; ``src`` of
    ``out``'s type or uint8 (converted sample by sample, as the fused kernel converts)."""
    from ._cpu import run

    run(
        _vertical_along_rows,
        src,
        offsets,
        weights,
        mode,
        cval,
        out,
        taps=int(offsets.size),
        calls_helper=True,
    )
