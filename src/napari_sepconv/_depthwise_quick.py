"""Quick twins of the depthwise kernels (``_depthwise_kernels.depthwise_2d`` of small kernels,
``depthwise_planar`` of large ones, ``depthwise_passes_2d`` of rank-1 ones): the same
arguments and values from a fraction of their code, for the seconds until those kernels are
compiled (``_tiers`` says when each runs).

Each output sample of the first two fast kernels is one chain of fused multiply-adds over its
channel's taps, a tap with a zero weight left out for that channel:

- ``depthwise_2d`` takes the taps in their list order (kernel row by kernel row) and starts
  the chain with the first product, except where its first sweep takes one tap alone (a
  kernel row of one tap, or a tap with a zero weight in some channel), which adds that
  product to zero;
- ``depthwise_planar`` takes them column by column of the kernel and adds the first to zero.

However the fast kernels group the taps into sweeps, read rows in place or through a
padded copy, or gather the channels apart, a row gets these operations in this order. So
the twins pad the source rows that an output row reads, then add its taps one at a time,
on the calling thread: no workers, no task queue and no helpers called by address to
compile. The rank-1 kernel's two passes are two such chains from zero: down the columns
into a padded row, then along it.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numpy as np

from ._cpu import TILE_VALUES
from ._cpu_kernels import (
    _buffer,
    _flat,
    _highest,
    _imax,
    _imin,
    _inlined,
    _Kernel,
    _lowest,
    _source_index,
    _thread_count,
)
from ._depthwise_kernels import _fma_flat
from ._views import row_view


def _pad_pixels(row, src_row, lo, mode_x, multiplier, cval):
    """``row`` = the channel-last ``src_row`` (W, C) from x = ``lo`` on, extended by border
    mode ``mode_x``, each input channel repeated ``multiplier`` times (output channel
    ``c*M + m``), converted to ``row``'s type."""
    w, n_in = src_row.shape
    n_out = n_in * multiplier
    to = row.dtype.type
    count = row.size // n_out
    inside_first = _imin(_imax(-lo, 0), count)
    inside_last = _imax(_imin(w - lo, count), inside_first)
    if multiplier == 1 and inside_last > inside_first:  # the pixels inside the image: one flat run
        dst = row_view(row, (), inside_first * n_out, inside_last * n_out)
        run = row_view(_flat(src_row), (), (inside_first + lo) * n_in, None)
        for e in range(dst.size):
            dst[e] = to(run[e])
    skipped = inside_last - inside_first if multiplier == 1 else 0  # the run copied above
    for k in range(count - skipped):  # the other pixels, one at a time
        pp = k if k < inside_first else k + skipped
        inside = inside_first <= pp < inside_last
        qx = pp + lo if inside else _source_index(pp + lo, w, mode_x)
        at = pp * n_out
        for c in range(n_in):
            v = cval if qx < 0 else to(src_row[qx, c])
            for m in range(multiplier):
                row[at + c * multiplier + m] = v


_pad_pixels = _inlined(_pad_pixels)


def _add_tap(acc, values, weights):
    """``acc += values * weights`` (``_depthwise_kernels._fma_flat``: a zero weight adds
    nothing to its channel); ``weights`` are the output channels' weights tiled over a
    multiple of the channel count, which the sweep goes through piece by piece."""
    period = weights.size
    for s0 in range(0, acc.size, period):
        n = _imin(period, acc.size - s0)
        _fma_flat(
            row_view(acc, (), s0, s0 + n), row_view(weights, (), 0, n), row_view(values, (), s0, s0 + n), True
        )


_add_tap = _inlined(_add_tap)


def _depthwise_quick(src, out, row_start, top, lo, rows, taps, weights, product_first, modes, cval):
    """``out[p, r]`` for every plane and output row: the taps added one at a time, tap ``t``
    reading padded source row ``tap_row[t]`` from value ``tap_at[t]`` on (``taps``: ``tap_row,
    tap_at``) with its weights ``weights[t]`` (``_add_tap``). Padded row ``j`` of output row
    ``r`` is image row ``row_start + r + top + j`` from x = ``lo`` on; ``rows`` holds them as a
    ring, so that an output row pads one row. The chain starts with the first product where
    ``product_first``, else with zero. ``modes`` are the border modes along y and x."""
    _thread_count()  # starts the threading layer, as the fast kernels do (``_cpu.run`` asks for it)
    mode_y, mode_x = modes
    tap_row, tap_at = taps
    n_planes, h, w, n_in = src.shape
    n_out = out.shape[3]
    n_rows = rows.shape[0]
    # the first product, fused with -0, is the product itself (its sign included); fused
    # with +0, a product of -0 becomes +0, as a chain that starts from zero makes it
    start = -0.0 if product_first else 0.0
    for p in range(n_planes):
        for r in range(out.shape[1]):
            for j in range(0 if r == 0 else n_rows - 1, n_rows):
                q = _source_index(row_start + r + top + j, h, mode_y)
                row = row_view(rows, (r + j) % n_rows, 0, None)
                if q < 0:
                    row[:] = cval
                else:
                    _pad_pixels(row, src[p, q], lo, mode_x, n_out // n_in, cval)
            acc = _flat(out[p, r])
            acc[:] = start
            for t in range(tap_row.size):
                values = row_view(rows, (r + tap_row[t]) % n_rows, tap_at[t], tap_at[t] + w * n_out)
                _add_tap(acc, values, row_view(weights, t, 0, None))


_depthwise_quick = _inlined(_depthwise_quick)


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
    """``_depthwise_kernels._depthwise_2d``: its arguments and values, on the calling thread.
    ``multiplier`` (the channel counts say it), ``chunk``, ``block``, ``helpers`` and
    ``missing`` are the fast kernel's, unused here."""
    n_taps = tap_y.size
    n_out = out.shape[3]
    lo = _lowest(tap_x)
    tap_row = _buffer(n_taps, np.int64)
    tap_at = _buffer(n_taps, np.int64)
    for t in range(n_taps):
        tap_row[t] = tap_y[t] - tap_y[0]
        tap_at[t] = (tap_x[t] - lo) * n_out
    # the fast kernel's first sweep: up to four taps of the first kernel row (three of five
    # or six), or one where any of them has a zero weight, which it adds to zero
    row_end = 0
    while row_end < n_taps and tap_y[row_end] == tap_y[0]:
        row_end += 1
    group = _imin(4, row_end)
    if group == 4 and (row_end == 5 or row_end == 6):
        group = 3
    for u in range(group):
        if tap_has_zero[u]:
            group = 1
    padded = src.shape[2] + _highest(tap_x) - lo
    rows = _buffer((tap_y[n_taps - 1] - tap_y[0] + 1, padded * n_out), out)
    taps, modes = (tap_row, tap_at), (mode_y, mode_x)
    _depthwise_quick(src, out, row_start, tap_y[0], lo, rows, taps, tap_tiles, group > 1, modes, cval)


# ``calls_helper``: the fast kernel's arguments, the table of helpers' addresses included (this
# kernel calls none)
depthwise_2d_quick = _Kernel(_depthwise_2d_quick, 10, calls_helper=True, quick=True)


def _depthwise_planar_quick(
    src,
    columns,
    dense,
    top,
    left,
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
    """``_depthwise_kernels._depthwise_planar``: its arguments and values, on the calling
    thread. ``dense``, ``multiplier`` (the channel counts say it), ``chunk``, ``block``,
    ``helpers`` and ``missing`` are the fast kernel's, unused here."""
    n_out, kw, kh = columns.shape
    tap_row = _buffer(kw * kh, np.int64)
    tap_at = _buffer(kw * kh, np.int64)
    weights = _buffer((kw * kh, n_out * -(-TILE_VALUES // n_out)), out)  # tiled as ``_cpu`` tiles them
    for dx in range(kw):  # the taps column by column, as the fast kernel adds them
        for dy in range(kh):
            t = dx * kh + dy
            tap_row[t] = dy
            tap_at[t] = dx * n_out
            for e in range(weights.shape[1]):
                weights[t, e] = columns[e % n_out, dx, dy]
    rows = _buffer((kh, (src.shape[2] + kw - 1) * n_out), out)
    taps, modes = (tap_row, tap_at), (mode_y, mode_x)
    _depthwise_quick(src, out, row_start, -top, -left, rows, taps, weights, False, modes, cval)


depthwise_planar_quick = _Kernel(_depthwise_planar_quick, 10, calls_helper=True, quick=True)


def _depthwise_passes_quick(
    src,
    col_off,
    col_tiles,
    col_zero,
    row_off,
    row_tiles,
    row_zero,
    multiplier,
    mode_y,
    mode_x,
    cval,
    pad_x,
    row_start,
    out,
    chunk,
    block,
    helpers,
    missing,
):
    """``_depthwise_kernels._depthwise_passes_2d``: its arguments and values, on the calling
    thread. ``col_zero``, ``row_zero``, ``chunk``, ``block``, ``helpers`` and ``missing`` are
    the fast kernel's, unused here."""
    _thread_count()  # starts the threading layer, as the fast kernel does (``_cpu.run`` asks for it)
    n_planes, h, w, n_in = src.shape
    n_out = out.shape[3]
    lo = _imin(0, _lowest(row_off))  # the padded row holds the row itself and both reaches
    padded = w + _imax(0, _highest(row_off)) - lo
    buf = _buffer(padded * n_out, out)
    pixels = _buffer(w * n_out, out)
    inner = row_view(buf, (), -lo * n_out, (w - lo) * n_out)
    for p in range(n_planes):
        for r in range(out.shape[1]):
            inner[:] = 0  # the column pass, from zero
            for a in range(col_off.size):
                q = _source_index(row_start + r + col_off[a], h, mode_y)
                if q < 0:
                    pixels[:] = cval
                else:
                    _pad_pixels(pixels, src[p, q], 0, mode_x, multiplier, cval)
                _add_tap(inner, pixels, row_view(col_tiles, a, 0, None))
            for k in range(padded - w):  # its pads: ``pad_x`` in constant mode, else its own samples
                pp = k if k < -lo else k + w
                qx = _source_index(pp + lo, w, mode_x)
                for c in range(n_out):
                    buf[pp * n_out + c] = pad_x[c] if qx < 0 else buf[(qx - lo) * n_out + c]
            row_out = _flat(out[p, r])
            row_out[:] = 0  # the row pass, from zero
            for b in range(row_off.size):
                at = (row_off[b] - lo) * n_out
                values = row_view(buf, (), at, at + w * n_out)
                _add_tap(row_out, values, row_view(row_tiles, b, 0, None))


depthwise_passes_quick = _Kernel(_depthwise_passes_quick, 13, calls_helper=True, quick=True)
