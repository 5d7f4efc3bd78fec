"""A quick twin of the depthwise kernel of small kernels (``_depthwise_kernels.depthwise_2d``):
the same arguments and values from less code to compile, for the moment until that kernel
is compiled (``_tiers`` says when each runs).

The fast kernel shares its output rows among threads: a task queue, workers started on the
threading layer, each calling the helper that makes a task's rows by its address. This
kernel calls the same helper (``_depthwise_kernels._depthwise_2d_rows``, so the values are
the same by construction) for every plane, on the calling thread: no workers and no queue
to compile, and the helper it compiles is the one the fast kernel loads later.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

from ._cpu_kernels import _buffer, _Kernel, _thread_count
from ._depthwise_kernels import _call_depthwise_2d_rows, _depthwise_2d_layout


def _depthwise_2d_quick(
    src,
    tap_y,
    tap_x,
    tap_tiles,
    tap_has_zero,
    multiplier,
    mode_y,
    mode_x,
    cval,
    row_start,
    out,
    chunk,
    block,
    helpers,
    missing,
):
    """``_depthwise_kernels._depthwise_2d`` on the calling thread, a plane at a time.
    ``block`` is the fast kernel's, unused here."""
    _thread_count()  # starts the threading layer, as the fast kernel does (``_cpu.run`` asks for it)
    n_planes, h, w, n_in = src.shape
    n_rows = out.shape[1]
    lo, hi, inner_first, inner_last, nine = _depthwise_2d_layout(w, tap_y, tap_x, tap_has_zero, multiplier)
    buf = _buffer((chunk + hi - lo) * n_in * multiplier, out)
    for p in range(n_planes):
        taps = (
            tap_y,
            tap_x,
            tap_tiles,
            tap_has_zero,
            multiplier,
            mode_y,
            mode_x,
            cval,
            row_start,
            out,
            chunk,
        )
        layout = (lo, hi, inner_first, inner_last, nine, buf, helpers, missing)
        _call_depthwise_2d_rows(helpers, missing, (src, p, 0, n_rows) + taps + layout)
        if missing[0] != 0:  # the helper is not loaded yet: the engine loads it and calls again
            return


depthwise_2d_quick = _Kernel(_depthwise_2d_quick, 10, calls_helper=True)
