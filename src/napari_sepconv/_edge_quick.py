"""A quick twin of the 3x3 edge magnitude kernel (``_edge_kernels.edge_magnitude_3x3``): the
same arguments and values from less code to compile, for the moment until that kernel is
compiled (``_tiers`` says when each runs).

The fast kernel shares its rows among threads: a task queue, workers started on the
threading layer, each calling the helper that makes a task's rows by its address. This
kernel calls the same helper (``_edge_kernels._edge_magnitude_rows``, so the values are the
same by construction) for every plane, on the calling thread: no workers and no queue to
compile, and the helper it compiles is the one the fast kernel loads later.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

from ._cpu_kernels import _buffer, _Kernel, _thread_count
from ._edge_kernels import _call_edge_magnitude_rows


def _edge_magnitude_3x3_quick(
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
    """``_edge_kernels._edge_magnitude_3x3`` on the calling thread, a plane at a time.
    ``block`` and ``threads`` are the fast kernel's, unused here."""
    _thread_count()  # starts the threading layer, as the fast kernel does (``_cpu.run`` asks for it)
    n_planes, h, w = src.shape
    rows_s = _buffer(w + 2, out)
    rows_d = _buffer(w + 2, out)
    outside = _buffer(w, src)
    for p in range(n_planes):
        weights = (smooth_y, derivative_y, smooth_x, derivative_x)
        rows = (src, p, 0, h) + weights + (mode_y, mode_x, pad_smooth, pad_derivative, inv_divisor)
        _call_edge_magnitude_rows(helpers, missing, rows + (cval, rows_s, rows_d, outside, out))
        if missing[0] != 0:  # the helper is not loaded yet: the engine loads it and calls again
            return


edge_magnitude_3x3_quick = _Kernel(
    _edge_magnitude_3x3_quick, 11, takes_threads=True, calls_helper=True, quick=True
)
