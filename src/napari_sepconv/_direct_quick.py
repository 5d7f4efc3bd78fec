"""A quick twin of the direct 2-D kernel (``_direct_kernels.correlate_2d``): the same
arguments and the same values from a fraction of its code, for the seconds until that kernel
is compiled (``_tiers`` says when each runs).

The direct kernel keeps each task's source rows in a ring of padded rows and sweeps four taps
at once over an output row (``_sweeps._sweep``), in tasks that the threads share. Each output
is the same chain of fused multiply-adds in tap order however the taps are grouped, so a
kernel that pads the source row of each kernel row and adds its taps one at a time to the
output row (``_sweeps._tap``) gives the same values bit for bit. This is that kernel, run on
the calling thread: no workers, no task queue, no ring and no helpers called by address to
compile. It compiles in about half the time of the fast kernel and runs at 0.3 to 0.6 times
its speed on 2 threads.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu_kernels import (
    _buffer,
    _fill_padded_row,
    _highest,
    _Kernel,
    _lowest,
    _pad_table,
    _source_index,
    _thread_count,
)
from ._sweeps import _tap
from ._views import row_view


def _correlate_2d_quick(src, tap_y, tap_x, tap_w, mode_y, mode_x, cval, out, block, helpers, missing):
    """``_direct_kernels._correlate_2d``: its arguments and values, on the calling thread,
    one tap a sweep. ``block``, ``helpers`` and ``missing`` are the fast kernel's, unused
    here."""
    _thread_count()  # starts the threading layer, as the fast kernel does (``_cpu.run`` asks for it)
    n_planes, h, w = src.shape
    lo = _lowest(tap_x)
    padded = w + _highest(tap_x) - lo
    row = _buffer(padded, out)  # a tap's source row, extended by the border mode
    source = _buffer(padded, np.int64)
    _pad_table(source, lo, w, mode_x)
    for p in range(n_planes):
        for i in range(h):
            acc = row_view(out, (p, i), 0, None)
            acc[:] = 0
            padded_q = -2  # the source row ``row`` holds (-1: a row of cval)
            for t in range(tap_w.size):
                q = _source_index(i + tap_y[t], h, mode_y)
                if q != padded_q:  # the taps of a kernel row read one source row
                    if q < 0:
                        row[:] = cval
                    else:
                        _fill_padded_row(row, row_view(src, (p, q), 0, None), lo, source, cval)
                    padded_q = q
                s = tap_x[t] - lo
                _tap(acc, row_view(row, (), s, s + w), tap_w[t])


correlate_2d_quick = _Kernel(_correlate_2d_quick, 7, calls_helper=True, quick=True)
