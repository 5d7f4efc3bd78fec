"""CPU kernel of the last pass of a fused separable term along a short first axis
(:func:`combine_planes`), for filters whose last axis holds a few samples and runs in front
(``_narrow_tail.last_axis_first``).

The fused kernel (``_separable_kernels``) ends each output row with its horizontal pass: per
output sample, one chain of fused multiply-adds over the terms' taps in order (a sum), or a
chain per term squared into a total (a magnitude). Here a term's chain runs along the first
axis of ``values`` (C, N), ``C`` planes of ``N`` samples, each tap a whole plane, and
continues the sum or the total that the term before it left in the output: the same
operations in the same order, so the same values, vectorised over the planes.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import MAGNITUDE, SUM, _buffer, _fmuladd, _imin, _jit, _next_task, _task_queue
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
