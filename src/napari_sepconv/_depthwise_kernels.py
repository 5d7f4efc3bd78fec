"""CPU kernels of depthwise (per-channel) filtering of channel-last images:
``depthwise_2d`` (direct taps), ``depthwise_passes_2d`` (rank-1 kernels as two
passes) and ``depthwise_planar`` (many taps: each channel is gathered into rows of
its own, so that every tap multiplies by a scalar weight, and gathered back to
channel-last at the end). ``_cpu_kernels`` says how kernels are written and compiled.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

from ._boundary import CONSTANT
from ._cpu_kernels import (
    _any_set,
    _buffer,
    _flat,
    _fmuladd,
    _helper,
    _highest,
    _imax,
    _imin,
    _inlined,
    _Kernel,
    _lowest,
    _next_task,
    _source_index,
    _task_queue,
)
from ._helper_calls import helper_call, looked_up_call
from ._sweeps import _place, _sweep, _sweep_two, _sweep_two7, _sweep_two8
from ._views import row_view
from ._workers import worker_helper, worker_launch


def _fma_flat(acc, weights, values, skip_zero):
    """``acc += weights * values`` elementwise; zero weights add nothing (not even NaN).

    Values are converted to the accumulator's type first, as a padded copy of
    them would be, so in-place and copied samples give the same results.
    """
    to = acc.dtype.type
    if skip_zero:
        for e in range(acc.size):
            a = acc[e]
            acc[e] = _fmuladd(to(values[e]), weights[e], a) if weights[e] != 0 else a
    else:
        for e in range(acc.size):
            acc[e] = _fmuladd(to(values[e]), weights[e], acc[e])


_fma_flat = _inlined(_fma_flat)


def _fill_pixels(buf, src_row, x_first, count, w, n_in, multiplier, mode_x, outside, cval):
    """``buf`` = ``count`` pixels of a channel-last row from x = ``x_first``, border-extended.

    Each input channel is repeated ``multiplier`` times (the output channel
    layout ``c*M + m``); ``outside`` marks a row beyond the image in constant
    mode. Pixels inside the image are copied as one flat run when M is 1.
    """
    n_out = n_in * multiplier
    if outside:
        buf[: count * n_out] = cval
        return
    inside_first = _imin(_imax(x_first, 0), w)
    inside_last = _imax(_imin(x_first + count, w), inside_first)
    if multiplier == 1 and inside_last > inside_first:
        flat = _flat(src_row)
        dst = buf[(inside_first - x_first) * n_in : (inside_last - x_first) * n_in]
        run = flat[inside_first * n_in : inside_last * n_in]
        for e in range(dst.size):
            dst[e] = run[e]
    for pp in range(count):
        x = x_first + pp
        if multiplier == 1 and inside_first <= x < inside_last:
            continue
        qx = x if 0 <= x < w else _source_index(x, w, mode_x)
        base = pp * n_out
        if qx < 0:
            buf[base : base + n_out] = cval
        else:
            pix = src_row[qx]
            for c in range(n_in):
                for m in range(multiplier):
                    buf[base + c * multiplier + m] = pix[c]


_fill_pixels = _helper(_fill_pixels)


def _depthwise_taps_row(part, tiles, tap_x, has_zero, t, end, lo, n_out, window, first):
    """Taps ``t .. end`` (one kernel row) of ``_depthwise_2d`` on ``part``, up to four per sweep.

    ``window`` holds the source pixels from x offset ``lo`` on, channel-last;
    tap ``u`` reads it from ``(tap_x[u] - lo) * n_out``. ``tiles[u]`` holds
    tap ``u``'s channel weights repeated over a few pixels (a length that is a
    multiple of ``n_out``, small enough to stay in the L1 cache); ``part`` is
    swept in pieces of that length. ``first`` writes ``part`` instead of adding
    to it. Several taps share one sweep, so ``part`` is loaded and stored once
    per four (or three, two) products; taps with a zero weight go one at a
    time, leaving that channel's product out.
    """
    length = part.size
    period = tiles.shape[1]
    to = part.dtype.type  # samples read in place are converted as a padded copy is
    zero = to(0)
    while t < end:
        group = _imin(4, end - t)
        if group == 4 and (end - t == 5 or end - t == 6):
            group = 3  # 5 and 6 taps as 3 + 2 and 3 + 3, not 4 + 1 and 4 + 2
        for u in range(t, t + group):
            if has_zero[u]:
                group = 1
        a = (tap_x[t] - lo) * n_out
        b = (tap_x[t + 1] - lo) * n_out if group > 1 else a
        c = (tap_x[t + 2] - lo) * n_out if group > 2 else a
        d = (tap_x[t + 3] - lo) * n_out if group > 3 else a
        for s0 in range(0, length, period):
            n = _imin(period, length - s0)
            acc = part[s0 : s0 + n]
            va, wa = window[a + s0 : a + s0 + n], tiles[t, :n]
            if group == 1:
                if first:
                    acc[:] = zero
                _fma_flat(acc, wa, va, has_zero[t])
                continue
            vb, wb = window[b + s0 : b + s0 + n], tiles[t + 1, :n]
            if group == 2:
                if first:
                    for e in range(n):
                        acc[e] = _fmuladd(to(vb[e]), wb[e], to(va[e]) * wa[e])
                else:
                    for e in range(n):
                        acc[e] = _fmuladd(to(vb[e]), wb[e], _fmuladd(to(va[e]), wa[e], acc[e]))
                continue
            vc, wc = window[c + s0 : c + s0 + n], tiles[t + 2, :n]
            if group == 3:
                if first:
                    for e in range(n):
                        s = _fmuladd(to(vb[e]), wb[e], to(va[e]) * wa[e])
                        acc[e] = _fmuladd(to(vc[e]), wc[e], s)
                else:
                    for e in range(n):
                        s = _fmuladd(to(vb[e]), wb[e], _fmuladd(to(va[e]), wa[e], acc[e]))
                        acc[e] = _fmuladd(to(vc[e]), wc[e], s)
                continue
            vd, wd = window[d + s0 : d + s0 + n], tiles[t + 3, :n]
            if first:
                for e in range(n):
                    s = _fmuladd(to(vb[e]), wb[e], to(va[e]) * wa[e])
                    acc[e] = _fmuladd(to(vd[e]), wd[e], _fmuladd(to(vc[e]), wc[e], s))
            else:
                for e in range(n):
                    s = _fmuladd(to(vb[e]), wb[e], _fmuladd(to(va[e]), wa[e], acc[e]))
                    acc[e] = _fmuladd(to(vd[e]), wd[e], _fmuladd(to(vc[e]), wc[e], s))
        t += group
        first = False


_depthwise_taps_row = _helper(_depthwise_taps_row)


def _depthwise_taps_3x3(part, tiles, tap_x, lo, n_out, top, middle, bottom):
    """All nine taps of a dense 3x3 kernel on ``part``, in one sweep.

    ``top``, ``middle`` and ``bottom`` are the source rows of kernel rows 0,
    1 and 2, read in place as in ``_depthwise_taps_row``. The products join
    one chain of multiply-adds in tap order, the same operations as three
    ``_depthwise_taps_row`` sweeps, so results do not depend on which ran.
    """
    length = part.size
    period = tiles.shape[1]
    to = part.dtype.type
    a, b, c = (tap_x[0] - lo) * n_out, (tap_x[1] - lo) * n_out, (tap_x[2] - lo) * n_out
    d, e, f = (tap_x[3] - lo) * n_out, (tap_x[4] - lo) * n_out, (tap_x[5] - lo) * n_out
    g, k, m = (tap_x[6] - lo) * n_out, (tap_x[7] - lo) * n_out, (tap_x[8] - lo) * n_out
    for s0 in range(0, length, period):
        n = _imin(period, length - s0)
        acc = row_view(part, (), s0, s0 + n)
        v0, v1, v2 = (
            row_view(top, (), a + s0, a + s0 + n),
            row_view(top, (), b + s0, b + s0 + n),
            row_view(top, (), c + s0, c + s0 + n),
        )
        v3, v4 = row_view(middle, (), d + s0, d + s0 + n), row_view(middle, (), e + s0, e + s0 + n)
        v5 = row_view(middle, (), f + s0, f + s0 + n)
        v6, v7 = row_view(bottom, (), g + s0, g + s0 + n), row_view(bottom, (), k + s0, k + s0 + n)
        v8 = row_view(bottom, (), m + s0, m + s0 + n)
        t0, t1, t2, t3, t4 = (
            row_view(tiles, 0, 0, n),
            row_view(tiles, 1, 0, n),
            row_view(tiles, 2, 0, n),
            row_view(tiles, 3, 0, n),
            row_view(tiles, 4, 0, n),
        )
        t5, t6, t7, t8 = (
            row_view(tiles, 5, 0, n),
            row_view(tiles, 6, 0, n),
            row_view(tiles, 7, 0, n),
            row_view(tiles, 8, 0, n),
        )
        for j in range(n):
            x = _fmuladd(to(v2[j]), t2[j], _fmuladd(to(v1[j]), t1[j], to(v0[j]) * t0[j]))
            x = _fmuladd(to(v5[j]), t5[j], _fmuladd(to(v4[j]), t4[j], _fmuladd(to(v3[j]), t3[j], x)))
            acc[j] = _fmuladd(to(v8[j]), t8[j], _fmuladd(to(v7[j]), t7[j], _fmuladd(to(v6[j]), t6[j], x)))


_depthwise_taps_3x3 = _helper(_depthwise_taps_3x3)
# ``_depthwise_2d_rows`` calls its helpers by address (``_helper_calls``), so that their
# code is not linked into it and optimised again
_call_fill_pixels, _fill_pixels_found = looked_up_call(_fill_pixels)
_call_taps_row, _taps_row_found = looked_up_call(_depthwise_taps_row)
_call_taps_3x3, _taps_3x3_found = looked_up_call(_depthwise_taps_3x3)


def _depthwise_2d_rows(
    src,
    p,
    first,
    last,
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
    lo,
    hi,
    inner_first,
    inner_last,
    nine,
    buf,
    helpers,
    missing,
):
    """Output rows ``first .. last - 1`` of plane ``p`` of ``_depthwise_2d``.

    ``buf`` (``(chunk + hi - lo) * C * M`` values) is the task's buffer for
    border-extended pixels. Its helpers are called by address (``helpers``, ``missing``:
    ``_helper_calls``), all looked up before anything is written: where one is missing,
    nothing is done.
    """
    h, w, n_in = src.shape[1], src.shape[2], src.shape[3]
    n_out = n_in * multiplier
    n_taps = tap_y.size
    part = _flat(out[p, first])[:0]  # arguments of the types the calls below pass
    window = _flat(src[p, 0])[:0]
    read_in_place = (part, tap_tiles, tap_x, tap_has_zero, 0, 0, lo, n_out, window, True)
    copied = (part, tap_tiles, tap_x, tap_has_zero, 0, 0, lo, n_out, buf[:0], True)
    fill = (buf, src[p, 0], 0, 0, w, n_in, multiplier, mode_x, True, cval)
    ready = _taps_row_found(helpers, missing, read_in_place) and _taps_row_found(helpers, missing, copied)
    ready = ready and _fill_pixels_found(helpers, missing, fill)
    if nine:  # the nine taps of a dense 3x3 kernel in one sweep
        nine_taps = (part, tap_tiles, tap_x, lo, n_out, window, window, window)
        ready = ready and _taps_3x3_found(helpers, missing, nine_taps)
    if not ready:
        return
    for r in range(first, last):
        i = row_start + r
        row_out = _flat(out[p, r])
        x0 = 0
        while x0 < w:
            # pixels [inner_first, inner_last) read only pixels inside the image
            if x0 < inner_first:
                n_px = _imin(chunk, inner_first - x0)
            elif x0 < inner_last:
                n_px = _imin(chunk, inner_last - x0)
            else:
                n_px = _imin(chunk, w - x0)
            part = row_view(row_out, (), x0 * n_out, (x0 + n_px) * n_out)
            in_place = inner_first <= x0 < inner_last
            span = (n_px + hi - lo) * n_out
            t = 0
            if nine and in_place:
                q0 = _source_index(i + tap_y[0], h, mode_y)
                q1 = _source_index(i + tap_y[3], h, mode_y)
                q2 = _source_index(i + tap_y[6], h, mode_y)
                if q0 >= 0 and q1 >= 0 and q2 >= 0:
                    at = (x0 + lo) * n_in
                    _call_taps_3x3(
                        helpers,
                        missing,
                        (
                            part,
                            tap_tiles,
                            tap_x,
                            lo,
                            n_out,
                            _flat(src[p, q0])[at : at + span],
                            _flat(src[p, q1])[at : at + span],
                            _flat(src[p, q2])[at : at + span],
                        ),
                    )
                    t = n_taps
            while t < n_taps:
                dy = tap_y[t]
                end = t
                while end < n_taps and tap_y[end] == dy:
                    end += 1
                q = _source_index(i + dy, h, mode_y)
                if in_place and q >= 0:
                    at = (x0 + lo) * n_in
                    window = _flat(src[p, q])[at : at + span]
                    taps = (part, tap_tiles, tap_x, tap_has_zero, t, end, lo, n_out, window, t == 0)
                    _call_taps_row(helpers, missing, taps)
                else:
                    pixels = (
                        buf,
                        src[p, _imax(q, 0)],
                        x0 + lo,
                        n_px + hi - lo,
                        w,
                        n_in,
                        multiplier,
                        mode_x,
                        q < 0,
                        cval,
                    )
                    _call_fill_pixels(helpers, missing, pixels)
                    padded = row_view(buf, (), 0, span)
                    taps = (part, tap_tiles, tap_x, tap_has_zero, t, end, lo, n_out, padded, t == 0)
                    _call_taps_row(helpers, missing, taps)
                t = end
            x0 += n_px


_depthwise_2d_rows = _helper(_depthwise_2d_rows)
_call_depthwise_2d_rows = helper_call(_depthwise_2d_rows)


def _depthwise_2d_worker(worker, state):
    """Worker ``worker``'s tasks of ``_depthwise_2d`` (``_workers``)."""
    (
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
        queue,
        n_blocks,
        n_tasks,
        lo,
        hi,
        inner_first,
        inner_last,
        nine,
    ) = state
    n_in = src.shape[3]
    n_rows = out.shape[1]
    buf = _buffer((chunk + hi - lo) * n_in * multiplier, out)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        first = (task % n_blocks) * block
        _call_depthwise_2d_rows(
            helpers,
            missing,
            (
                src,
                task // n_blocks,
                first,
                _imin(n_rows, first + block),
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
                lo,
                hi,
                inner_first,
                inner_last,
                nine,
                buf,
                helpers,
                missing,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_depthwise_2d_worker = worker_helper(_depthwise_2d_worker)
_run_depthwise_2d = worker_launch(_depthwise_2d_worker)


def _depthwise_2d_layout(w, tap_y, tap_x, tap_has_zero, multiplier):
    """What ``_depthwise_2d_rows`` takes of the taps besides them, for planes ``w`` pixels
    wide: the lowest and highest x offsets, the pixels whose taps all read the source row in
    place (``inner_first .. inner_last - 1``), and whether the kernel is a dense 3x3 one (rows
    of three taps, no zero weight), which runs in one sweep where all its rows are read in
    place."""
    lo = _lowest(tap_x)
    hi = _highest(tap_x)
    n_taps = tap_y.size
    inner_first = _imin(w, _imax(0, -lo)) if multiplier == 1 else w
    inner_last = _imax(inner_first, _imin(w, w - hi))
    nine = n_taps == 9 and not _any_set(tap_has_zero)
    for t in range(0, n_taps if nine else 0, 3):
        nine = nine and tap_y[t] == tap_y[t + 2]
    return lo, hi, inner_first, inner_last, nine


_depthwise_2d_layout = _inlined(_depthwise_2d_layout)


def _depthwise_2d(
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
    """Per-channel 2-D correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M).

    Output channel ``c*M + m`` correlates input channel ``c`` with its own
    kernel, given as one tap list shared by all channels (offsets ``tap_y``,
    ``tap_x``, sorted by ``tap_y``) and per tap the channels' weights tiled
    over a few pixels (``tap_tiles[t]``, a multiple of ``C * M`` long), so the
    inner loop is one flat vector loop over (x, channel), written straight
    into the output row, ``chunk`` pixels at a time. Away from the left and right borders (and with M = 1)
    the taps read the source row in place; elsewhere a border-extended copy.
    A zero weight is left out for its channel (``tap_has_zero`` marks taps
    that have one). Output rows are image rows ``row_start .. row_start + R``,
    for callers working in row bands. The workers are ``_depthwise_2d_worker``.
    """
    n_planes, h, w, n_in = src.shape
    n_rows = out.shape[1]
    lo, hi, inner_first, inner_last, nine = _depthwise_2d_layout(w, tap_y, tap_x, tap_has_zero, multiplier)
    n_blocks = (n_rows + block - 1) // block
    n_tasks = n_planes * n_blocks
    queue = _task_queue(n_tasks)
    state = (
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
        queue,
        n_blocks,
        n_tasks,
        lo,
        hi,
        inner_first,
        inner_last,
        nine,
    )
    _run_depthwise_2d(helpers, missing, queue, state)


depthwise_2d = _Kernel(_depthwise_2d, 10, calls_helper=True)


def _gather_planar(planar, width, src_plane, q_first, x_first, h, w, multiplier, mode_y, mode_x, cval):
    """``planar[k, j, xx]`` = input channel ``k // multiplier`` at row ``q_first + j``, x ``x_first + xx``.

    Channel-last source rows become one border-extended row per output
    channel (its first ``width`` values), converted to the accumulator's type.
    """
    n_out, n_rows = planar.shape[0], planar.shape[1]
    n_in = src_plane.shape[2]
    to = planar.dtype.type
    inside_first = _imin(_imax(-x_first, 0), width)
    inside_last = _imax(_imin(w - x_first, width), inside_first)
    for j in range(n_rows):
        q = _source_index(q_first + j, h, mode_y)
        if q < 0:
            for k in range(n_out):
                planar[k, j, :width] = cval
            continue
        flat = _flat(src_plane[q])
        # pixels inside the image: 16 at a time for many channels (each pixel's channels
        # are read together), else one channel at a time
        blocks = (inside_last - inside_first) // 16 if n_in >= 8 else 0
        for b in range(blocks):
            xx = inside_first + 16 * b
            pixels = src_plane[q, x_first + xx : x_first + xx + 16]
            for k in range(n_out):
                dst = planar[k, j, xx : xx + 16]
                c = k // multiplier
                for x in range(16):
                    dst[x] = to(pixels[x, c])
        for k in range(n_out):
            c = k // multiplier
            row = planar[k, j, :width]
            inside = row[inside_first + 16 * blocks : inside_last]
            run = flat[(x_first + inside_first + 16 * blocks) * n_in + c :]
            for xx in range(inside.size):
                inside[xx] = to(run[xx * n_in])
            for xx in range(inside_first):
                qx = _source_index(x_first + xx, w, mode_x)
                row[xx] = cval if qx < 0 else to(flat[qx * n_in + c])
            for xx in range(inside_last, width):
                qx = _source_index(x_first + xx, w, mode_x)
                row[xx] = cval if qx < 0 else to(flat[qx * n_in + c])


def _planar_channel(acc0, acc1, two, rows, top, columns, dense):
    """One output channel of ``_depthwise_planar`` for output row ``top`` (and ``top + 1``).

    ``rows[j]`` is the channel's padded source row ``j``; ``columns[dx, dy]``
    its kernel (``dense[dx]`` when column ``dx`` has no zero weight). Column by
    column, up to eight taps share a sweep. A pair of output rows reads each
    source row of a dense column once for both; every other column goes row by
    row, leaving zero weights out. Either way a row gets the same operations
    in the same order.
    """
    n = acc0.size
    kw, kh = columns.shape
    acc0[:] = 0
    if two:
        acc1[:] = 0
    for dx in range(kw):
        col = columns[dx]
        if two and dense[dx] and kh > 1:
            a = 0
            while a < kh:
                r = top + a
                if kh - a >= 7:  # seven or eight taps of the column in one sweep
                    w_ = col[a : a + 8] if kh - a >= 8 else col[a : a + 7]
                    if kh - a >= 8:
                        _sweep_two8(
                            acc0,
                            acc1,
                            rows[r, dx : dx + n],
                            rows[r + 1, dx : dx + n],
                            rows[r + 2, dx : dx + n],
                            rows[r + 3, dx : dx + n],
                            rows[r + 4, dx : dx + n],
                            rows[r + 5, dx : dx + n],
                            rows[r + 6, dx : dx + n],
                            rows[r + 7, dx : dx + n],
                            rows[r + 8, dx : dx + n],
                            w_[0],
                            w_[1],
                            w_[2],
                            w_[3],
                            w_[4],
                            w_[5],
                            w_[6],
                            w_[7],
                        )
                        a += 8
                    else:
                        _sweep_two7(
                            acc0,
                            acc1,
                            rows[r, dx : dx + n],
                            rows[r + 1, dx : dx + n],
                            rows[r + 2, dx : dx + n],
                            rows[r + 3, dx : dx + n],
                            rows[r + 4, dx : dx + n],
                            rows[r + 5, dx : dx + n],
                            rows[r + 6, dx : dx + n],
                            rows[r + 7, dx : dx + n],
                            w_[0],
                            w_[1],
                            w_[2],
                            w_[3],
                            w_[4],
                            w_[5],
                            w_[6],
                        )
                        a += 7
                    continue
                g = _imin(4, kh - a)
                _sweep_two(
                    acc0,
                    acc1,
                    g,
                    rows[r, dx : dx + n],
                    rows[r + 1, dx : dx + n],
                    rows[r + _imin(2, g), dx : dx + n],
                    rows[r + _imin(3, g), dx : dx + n],
                    rows[r + _imin(4, g), dx : dx + n],
                    col[a],
                    col[a + _imin(1, g - 1)],
                    col[a + _imin(2, g - 1)],
                    col[a + _imin(3, g - 1)],
                )
                a += g
            continue
        for r in range(2 if two else 1):
            acc = acc0 if r == 0 else acc1
            a = 0
            while a < kh:
                g = 0
                t0 = t1 = t2 = t3 = a
                while g < 4 and a < kh:
                    if col[a] != 0:
                        t0, t1, t2, t3 = _place(g, a, t0, t1, t2, t3)
                        g += 1
                    a += 1
                if g == 0:
                    break
                b = top + r
                _sweep(
                    acc,
                    g,
                    rows[b + t0, dx : dx + n],
                    col[t0],
                    rows[b + t1, dx : dx + n],
                    col[t1],
                    rows[b + t2, dx : dx + n],
                    col[t2],
                    rows[b + t3, dx : dx + n],
                    col[t3],
                )


def _scatter_planar(planar_rows, n_rows, n, out_rows, x_first):
    """``out_rows[r, x_first + x, k]`` = ``planar_rows[r, k, x]`` for ``x < n``: back to channel-last."""
    n_out = planar_rows.shape[1]
    for r in range(n_rows):
        src = planar_rows[r]
        if n_out >= 8:  # each pixel's channels written together
            dst = out_rows[r]
            for x in range(n):
                pix = dst[x_first + x]
                for k in range(n_out):
                    pix[k] = src[k, x]
        else:
            flat = _flat(out_rows[r])
            for k in range(n_out):
                run = flat[x_first * n_out + k :]
                values = src[k, :n]
                for x in range(n):
                    run[x * n_out] = values[x]


_gather_planar = _helper(_gather_planar)
_planar_channel = _helper(_planar_channel)
_scatter_planar = _helper(_scatter_planar)
# ``_depthwise_planar_rows`` calls them by address, as ``_depthwise_2d_rows`` its helpers
_call_gather_planar, _gather_planar_found = looked_up_call(_gather_planar)
_call_planar_channel, _planar_channel_found = looked_up_call(_planar_channel)
_call_scatter_planar, _scatter_planar_found = looked_up_call(_scatter_planar)


def _depthwise_planar_rows(
    src,
    p,
    first,
    last,
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
    planar,
    result,
    helpers,
    missing,
):
    """Output rows ``first .. last - 1`` of plane ``p`` of ``_depthwise_planar``.

    ``planar`` (C*M, ``last - first + kh - 1``, ``chunk + kw - 1``) and
    ``result`` (2, C*M, ``chunk``) are the task's buffers. Its helpers are called by
    address, all looked up before anything is written (as in ``_depthwise_2d_rows``).
    """
    h, w = src.shape[1], src.shape[2]
    n_out = result.shape[1]
    kw = columns.shape[1]
    row = result[0, 0, :0]  # arguments of the types the calls below pass
    gather = (planar, 0, src[p], 0, 0, h, w, multiplier, mode_y, mode_x, cval)
    if not (
        _gather_planar_found(helpers, missing, gather)
        and _planar_channel_found(helpers, missing, (row, row, True, planar[0], 0, columns[0], dense[0]))
        and _scatter_planar_found(helpers, missing, (result, 0, 0, out[p, first:first], 0))
    ):
        return
    for x0 in range(0, w, chunk):
        n_px = _imin(chunk, w - x0)
        gather = (
            planar,
            n_px + kw - 1,
            src[p],
            row_start + first - top,
            x0 - left,
            h,
            w,
            multiplier,
            mode_y,
            mode_x,
            cval,
        )
        _call_gather_planar(helpers, missing, gather)
        r = first
        while r < last:
            two = last - r > 1
            for k in range(n_out):
                channel = (
                    result[0, k, :n_px],
                    result[1, k, :n_px],
                    two,
                    planar[k],
                    r - first,
                    columns[k],
                    dense[k],
                )
                _call_planar_channel(helpers, missing, channel)
            count = 2 if two else 1
            _call_scatter_planar(helpers, missing, (result, count, n_px, out[p, r : r + count], x0))
            r += count


_depthwise_planar_rows = _helper(_depthwise_planar_rows)
_call_depthwise_planar_rows = helper_call(_depthwise_planar_rows)


def _depthwise_planar_worker(worker, state):
    """Worker ``worker``'s tasks of ``_depthwise_planar`` (``_workers``)."""
    (
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
        queue,
        n_blocks,
        n_tasks,
    ) = state
    n_rows = out.shape[1]
    n_out = out.shape[3]
    kw, kh = columns.shape[1], columns.shape[2]
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        first = (task % n_blocks) * block
        planar = _buffer((n_out, _imin(block, n_rows - first) + kh - 1, chunk + kw - 1), out)
        result = _buffer((2, n_out, chunk), out)
        _call_depthwise_planar_rows(
            helpers,
            missing,
            (
                src,
                task // n_blocks,
                first,
                _imin(n_rows, first + block),
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
                planar,
                result,
                helpers,
                missing,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_depthwise_planar_worker = worker_helper(_depthwise_planar_worker)
_run_depthwise_planar = worker_launch(_depthwise_planar_worker)


def _depthwise_planar(
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
    """Per-channel 2-D correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M), planar.

    For larger kernels. Each task takes a block of output rows and, a chunk of
    ``chunk`` pixels at a time, gathers the source rows they read into one
    padded row per output channel (``_gather_planar``). Each channel's weights
    are then scalars, and each tap is one vector multiply-add along x, as in
    the separable passes; rows come back to channel-last at the end. Output
    channel ``k`` correlates with ``columns[k]`` (kw, kh), the kernel
    transposed, anchored at row ``top`` and column ``left``. Output rows are
    image rows ``row_start .. row_start + R``. The workers are ``_depthwise_planar_worker``.
    """
    n_blocks = (out.shape[1] + block - 1) // block
    n_tasks = src.shape[0] * n_blocks
    queue = _task_queue(n_tasks)
    state = (
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
        queue,
        n_blocks,
        n_tasks,
    )
    _run_depthwise_planar(helpers, missing, queue, state)


depthwise_planar = _Kernel(_depthwise_planar, 10, calls_helper=True)


def _depthwise_passes_rows(
    src,
    p,
    first,
    last,
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
    buf,
    pixels,
):
    """Output rows ``first .. last - 1`` of plane ``p`` of ``_depthwise_passes_2d``.

    ``buf`` (the padded row, ``(w + hi - lo) * C * M`` values) and ``pixels``
    (``chunk * C * M``) are the task's buffers.
    """
    h, w, n_in = src.shape[1], src.shape[2], src.shape[3]
    n_out = n_in * multiplier
    lo = _imin(0, _lowest(row_off))  # the buffer holds the row itself and both reaches
    padded = buf.size // n_out
    inner = buf[-lo * n_out : (w - lo) * n_out]
    for r in range(first, last):
        i = row_start + r
        inner[:] = 0
        for a in range(col_off.size):
            q = _source_index(i + col_off[a], h, mode_y)
            for x0 in range(0, w, chunk):
                length = _imin(chunk, w - x0) * n_out
                target = inner[x0 * n_out : x0 * n_out + length]
                if q >= 0 and multiplier == 1:  # the source row itself, any dtype
                    _fma_flat(
                        target,
                        col_tiles[a, :length],
                        _flat(src[p, q])[x0 * n_in : x0 * n_in + length],
                        col_zero[a],
                    )
                else:
                    _fill_pixels(
                        pixels,
                        src[p, _imax(q, 0)],
                        x0,
                        length // n_out,
                        w,
                        n_in,
                        multiplier,
                        mode_x,
                        q < 0,
                        cval,
                    )
                    _fma_flat(target, col_tiles[a, :length], pixels[:length], col_zero[a])
        for pp in range(padded):
            if 0 <= pp + lo < w:
                continue
            base = pp * n_out
            if mode_x == CONSTANT:
                for c in range(n_out):
                    buf[base + c] = pad_x[c]
            else:
                s = (_source_index(pp + lo, w, mode_x) - lo) * n_out
                for c in range(n_out):
                    buf[base + c] = buf[s + c]
        row_out = _flat(out[p, r])
        row_out[:] = 0
        for b in range(row_off.size):
            for x0 in range(0, w, chunk):
                length = _imin(chunk, w - x0) * n_out
                start = (x0 + row_off[b] - lo) * n_out
                _fma_flat(
                    row_out[x0 * n_out : x0 * n_out + length],
                    row_tiles[b, :length],
                    buf[start : start + length],
                    row_zero[b],
                )


_depthwise_passes_rows = _helper(_depthwise_passes_rows)
_call_depthwise_passes_rows = helper_call(_depthwise_passes_rows)


def _depthwise_passes_worker(worker, state):
    """Worker ``worker``'s tasks of ``_depthwise_passes_2d`` (``_workers``)."""
    (
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
        queue,
        n_blocks,
        n_tasks,
        padded,
    ) = state
    n_rows = out.shape[1]
    n_out = out.shape[3]
    buf = _buffer(padded * n_out, out)
    pixels = _buffer(chunk * n_out, out)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        first = (task % n_blocks) * block
        _call_depthwise_passes_rows(
            helpers,
            missing,
            (
                src,
                task // n_blocks,
                first,
                _imin(n_rows, first + block),
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
                buf,
                pixels,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_depthwise_passes_worker = worker_helper(_depthwise_passes_worker)
_run_depthwise_passes = worker_launch(_depthwise_passes_worker)


def _depthwise_passes_2d(
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
    """Per-channel rank-1 kernels as a column pass and a row pass, channel-last.

    Like ``_depthwise_2d``, but output channel ``k`` correlates with
    ``outer(column_k, row_k)``: the column pass fills a padded row buffer for
    the whole width, the row pass reads it. Weights come tiled over ``chunk``
    pixels; ``pad_x[k]`` is the value outside the image along x in constant
    mode. Zero weights are left out per channel. The workers are
    ``_depthwise_passes_worker``.
    """
    n_planes, w = src.shape[0], src.shape[2]
    n_rows = out.shape[1]
    padded = w + _imax(0, _highest(row_off)) - _imin(0, _lowest(row_off))
    n_blocks = (n_rows + block - 1) // block
    n_tasks = n_planes * n_blocks
    queue = _task_queue(n_tasks)
    state = (
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
        queue,
        n_blocks,
        n_tasks,
        padded,
    )
    _run_depthwise_passes(helpers, missing, queue, state)


depthwise_passes_2d = _Kernel(_depthwise_passes_2d, 13, calls_helper=True)
