"""CPU kernel of fused 2-D separable filtering (``separable_2d_kernel``): a vertical and
a horizontal pass per output row, for every one-term 2-D separable call, sums of
terms and their magnitudes (``_cpu_kernels`` says how kernels are written and
compiled).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import numba
import numpy as np

from ._cpu_kernels import (
    MAGNITUDE,
    SUM,
    _buffer,
    _fmuladd,
    _helper,
    _imax,
    _imin,
    _inlined,
    _Kernel,
    _like,
    _limit_threads,
    _next_task,
    _pad_table,
    _set_thread_count,
    _source_index,
    _task_queue,
)
from ._helper_calls import helper_call, looked_up_call
from ._sweeps import _place, _sweep
from ._vector_sweeps import four_row_run, shifted_run
from ._views import row_view
from ._workers import worker_helper, worker_launch


def _chain4(s, j, r0, r1, r2, r3, w0, w1, w2, w3):
    """``s`` plus sample ``j`` of rows ``r0 .. r3`` times ``w0 .. w3``, one fused multiply-add
    after another (samples converted to the type of ``s`` first)."""
    s = _fmuladd(_like(r0[j], s), w0, s)
    s = _fmuladd(_like(r1[j], s), w1, s)
    s = _fmuladd(_like(r2[j], s), w2, s)
    return _fmuladd(_like(r3[j], s), w3, s)


def _chain9(s, j, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8):
    """``_chain4`` of nine rows."""
    s = _chain4(_chain4(s, j, r0, r1, r2, r3, w0, w1, w2, w3), j, r4, r5, r6, r7, w4, w5, w6, w7)
    return _fmuladd(_like(r8[j], s), w8, s)


_chain4 = _inlined(_chain4)
_chain9 = _inlined(_chain9)


def _sweep8(acc, first, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6, w7):
    """``_sweep`` of eight rows: the same chain of fused multiply-adds, in the same order,
    from zero where ``first`` (``acc`` written without being read, as a zeroed ``acc``
    would start it).

    Eight taps per pass over ``acc`` load and store it half as often as two
    sweeps of four, and each call's loop set-up is paid once for eight taps.
    """
    t = acc.dtype.type
    for j in range(acc.size):
        s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, t(0) if first else acc[j]))
        s = _fmuladd(t(r3[j]), w3, _fmuladd(t(r2[j]), w2, s))
        s = _fmuladd(t(r5[j]), w5, _fmuladd(t(r4[j]), w4, s))
        acc[j] = _fmuladd(t(r7[j]), w7, _fmuladd(t(r6[j]), w6, s))


_sweep8 = _inlined(_sweep8)


def _sweep7(acc, first, r0, r1, r2, r3, r4, r5, r6, w0, w1, w2, w3, w4, w5, w6):
    """``_sweep8`` of seven rows (the rest of a 15-tap kernel after eight, a 7-tap one)."""
    t = acc.dtype.type
    for j in range(acc.size):
        s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, t(0) if first else acc[j]))
        s = _fmuladd(t(r3[j]), w3, _fmuladd(t(r2[j]), w2, s))
        s = _fmuladd(t(r5[j]), w5, _fmuladd(t(r4[j]), w4, s))
        acc[j] = _fmuladd(t(r6[j]), w6, s)


_sweep7 = _inlined(_sweep7)


def _start9(acc, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8):
    """The first sweep of a row, nine taps: ``acc`` written without being read (the chain
    of ``_sweep`` from zero, as a zeroed ``acc`` would start it)."""
    zero = acc.dtype.type(0)
    for j in range(acc.size):
        acc[j] = _chain9(zero, j, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8)


_start9 = _inlined(_start9)


def _row_run(acc, run, first, r0, r1, r2, r3, r4, r5, r6, r7, r8, taps):
    """The sweep of ``run`` taps (``_run_length``): ``_start9``, ``_sweep8`` or ``_sweep7``,
    from zero where ``first``; rows and weights (``taps``, ``_run_weights``) past the run
    are not read."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = taps
    if run == 9:
        _start9(acc, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8)
    elif run == 8:
        _sweep8(acc, first, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6, w7)
    else:
        _sweep7(acc, first, r0, r1, r2, r3, r4, r5, r6, w0, w1, w2, w3, w4, w5, w6)


_row_run = _inlined(_row_run)


def _run_weights(weights, a, e):
    """The weights of a run of taps ``a .. e`` (seven to nine) as nine values, the last
    repeated past ``e`` (unused)."""
    return (
        weights[a],
        weights[a + 1],
        weights[a + 2],
        weights[a + 3],
        weights[a + 4],
        weights[a + 5],
        weights[a + 6],
        weights[_imin(a + 7, e)],
        weights[_imin(a + 8, e)],
    )


_run_weights = _inlined(_run_weights)


def _run_length(left, first):
    """Taps of the next sweep of a row when ``left`` remain, or 0: groups of up to four,
    or, for a first sweep, a zeroed row to add to.

    A first sweep writes the row without reading it: nine taps (``_start9``), else eight
    or seven, whichever leaves a rest that eights and a last seven take. After it, eight
    or the last seven (``_sweep8``, ``_sweep7``). So 15 taps go as eight and seven, 16 as
    nine and seven, 14 as seven and seven.
    """
    if first:
        for run in (9, 8, 7):
            rest = left - run
            if rest >= 0 and (rest % 8 == 0 or rest % 8 == 7):
                return run
        return 0
    if left >= 8 or left == 7:
        return _imin(left, 8)
    return 0


_run_length = _inlined(_run_length)


def _column_pass(acc, plane, offsets, weights, n_taps, i, mode_y, cval):
    """``acc`` = correlation of ``plane`` along y, for output row ``i``.

    Up to four source rows share one pass over ``acc``. Mirrored taps are not
    paired here: reading each source row once for four output rows
    (``_column_pass_four``) saves more than pairing would, and both passes must
    sum alike. Rows outside the image (constant mode) add ``weight * cval``.
    """
    h = plane.shape[0]
    acc[:] = 0
    outside = acc.dtype.type(0)  # what the taps reading rows outside the image add
    a = 0
    while a < n_taps:
        n = 0
        t0 = t1 = t2 = t3 = a
        while n < 4 and a < n_taps:
            if _source_index(i + offsets[a], h, mode_y) < 0:
                outside += weights[a] * cval
            else:
                t0, t1, t2, t3 = _place(n, a, t0, t1, t2, t3)
                n += 1
            a += 1
        if n == 0:
            break
        _sweep(
            acc,
            n,
            row_view(plane, _source_index(i + offsets[t0], h, mode_y), 0, None),
            weights[t0],
            row_view(plane, _source_index(i + offsets[t1], h, mode_y), 0, None),
            weights[t1],
            row_view(plane, _source_index(i + offsets[t2], h, mode_y), 0, None),
            weights[t2],
            row_view(plane, _source_index(i + offsets[t3], h, mode_y), 0, None),
            weights[t3],
        )
    if outside != 0:
        for j in range(acc.size):
            acc[j] += outside


def _tap4(s, j, ra, rb, rc, rd, w):
    """One tap of four output rows: the sums ``s`` plus ``ra[j] * w`` .. ``rd[j] * w``,
    each a fused multiply-add (samples converted to the sums' type first)."""
    return (
        _fmuladd(_like(ra[j], s[0]), w, s[0]),
        _fmuladd(_like(rb[j], s[0]), w, s[1]),
        _fmuladd(_like(rc[j], s[0]), w, s[2]),
        _fmuladd(_like(rd[j], s[0]), w, s[3]),
    )


def _quad7(s, j, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, w0, w1, w2, w3, w4, w5, w6):
    """Seven taps of four output rows (``_tap4`` in tap order): rows ``r0 .. r6`` into
    ``s[0]``, ``r1 .. r7`` into ``s[1]``, ``r2 .. r8`` into ``s[2]``, ``r3 .. r9`` into
    ``s[3]``."""
    s = _tap4(s, j, r0, r1, r2, r3, w0)
    s = _tap4(s, j, r1, r2, r3, r4, w1)
    s = _tap4(s, j, r2, r3, r4, r5, w2)
    s = _tap4(s, j, r3, r4, r5, r6, w3)
    s = _tap4(s, j, r4, r5, r6, r7, w4)
    s = _tap4(s, j, r5, r6, r7, r8, w5)
    return _tap4(s, j, r6, r7, r8, r9, w6)


_tap4 = _inlined(_tap4)
_quad7 = _inlined(_quad7)


def _quad_run(acc0, acc1, acc2, acc3, run, first, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, taps):
    """The four-row sweep of ``run`` taps (``_run_length``): rows ``r0 .. r[run - 1]`` into
    ``acc0`` and so on to ``r3 .. r[run + 2]`` into ``acc3``; a ``first`` sweep writes the
    rows without reading them. Rows and weights (``taps``, ``_run_weights``) past the run
    are not read.

    Each row's chain of fused multiply-adds runs in tap order from zero, as in
    ``_column_pass``, so both give the same values bit for bit. Each source row is
    loaded once for the four output rows: about half the loads of two rows at a time.
    """
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = taps
    zero = acc0.dtype.type(0)
    for j in range(acc0.size):
        s = (zero, zero, zero, zero) if first else (acc0[j], acc1[j], acc2[j], acc3[j])
        s = _quad7(s, j, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, w0, w1, w2, w3, w4, w5, w6)
        if run > 7:
            s = _tap4(s, j, r7, r8, r9, r10, w7)
        if run > 8:
            s = _tap4(s, j, r8, r9, r10, r11, w8)
        acc0[j], acc1[j], acc2[j], acc3[j] = s


_quad_run = _inlined(_quad_run)


def _sweep_four(acc0, acc1, acc2, acc3, n, r0, r1, r2, r3, r4, r5, r6, w0, w1, w2, w3):
    """``_quad_run`` of up to four taps (``n``): rows ``r0 .. r[n - 1]`` into ``acc0`` and so
    on to ``r3 .. r[n + 2]`` into ``acc3``, added to them. Rows and weights past the taps
    are not read."""
    for j in range(acc0.size):
        s = _tap4((acc0[j], acc1[j], acc2[j], acc3[j]), j, r0, r1, r2, r3, w0)
        if n > 1:
            s = _tap4(s, j, r1, r2, r3, r4, w1)
        if n > 2:
            s = _tap4(s, j, r2, r3, r4, r5, w2)
        if n > 3:
            s = _tap4(s, j, r3, r4, r5, r6, w3)
        acc0[j], acc1[j], acc2[j], acc3[j] = s


_sweep_four = _inlined(_sweep_four)


def _fill_ring(ring, plane, start, stop):
    """Rows ``start .. stop - 1`` of ``plane``, converted to the ring's type (or copied, for
    rows that alias in the L1 cache: ``_ring_rows``), into ``ring`` (row ``q`` at
    ``q % ring.shape[0]``, its first ``plane.shape[1]`` samples): each source row
    converted once, not once a tap."""
    zero = ring.dtype.type(0)  # the ring's type (``row[0]``, stored to, would be read again)
    for q in range(start, stop):
        row = row_view(ring, q % ring.shape[0], 0, None)
        src = row_view(plane, q, 0, None)
        for j in range(src.size):
            row[j] = _like(src[j], zero)


def _aliasing(w, itemsize, rows):
    """Whether the vertical pass reads rows of ``w`` samples through a ring of copies
    (``rows``: the ring's rows, the taps' reach plus four).

    Rows a multiple of 4 KiB apart fall on the same sets of the L1 data cache (8-way on
    the machines measured), and the ten to twelve rows of a sweep (``_quad_run``) evict
    each other. Copying them into a ring with longer rows (``_ring_width``) costs a pass
    over the image, which more taps repay: on 2048-wide float32 images, filters of 7 to
    11 taps ran 5-15 % faster reading the image in place, 13 taps and more as fast or
    faster from the ring (65 taps: 12 %).
    """
    return _ring_width(w, itemsize) != w and rows >= 16


def _ring_width(w, itemsize):
    """Samples of a row of the ring for rows of ``w`` samples: ``w``, or a cache line more
    where rows of ``w`` samples would lie a multiple of 4 KiB apart (``_aliasing``)."""
    if (w * itemsize) % 4096 != 0:
        return w
    return w + 64 // itemsize


_aliasing = _inlined(_aliasing)
_ring_width = _inlined(_ring_width)


def _ring_rows(src, out, rows):
    """Rows of the ring of copied source rows: ``rows`` where a kernel reads ``src`` as
    another type than ``out``'s (uint8, converted once a row) or where the rows of ``src``
    alias in the L1 cache (``_aliasing``), else 0 (it reads ``src`` itself)."""


def _pass_rows(plane, ring):
    """What the column pass reads without a ring of copies: the ring where ``plane`` is
    converted (always one), else ``plane``."""


@numba.extending.overload(_ring_rows)
def _ring_rows_typed(src, out, rows):
    if src.dtype != out.dtype:
        return lambda src, out, rows: rows
    return lambda src, out, rows: rows if _aliasing(src.shape[2], src.itemsize, rows) else 0


@numba.extending.overload(_pass_rows)
def _pass_rows_typed(plane, ring):
    if plane.dtype != ring.dtype:
        return lambda plane, ring: ring
    return lambda plane, ring: plane


def _column_pass_four(acc0, acc1, acc2, acc3, plane, offsets, weights, n_taps, i, period):
    """``_column_pass`` for output rows ``i`` to ``i + 3`` at once, for dense taps.

    The taps' offsets are consecutive and every row they read lies inside the
    image. The four rows share most of their source rows: each is read once
    and feeds every accumulator it reaches (``_quad_run``, and ``_sweep_four`` for
    groups of up to four taps). However the taps are grouped into sweeps,
    each row's chain of fused multiply-adds runs in tap order from zero, as in
    ``_column_pass``, so both give the same values bit for bit. Source row ``q`` is
    ``plane[q % period]``: ``plane`` is the image plane (``period`` its height) or a
    ring of copied or converted rows, whose rows may be longer than the image's
    (``_ring_width``: the sweeps read as many samples as they write). The rows are
    indexed here, not through a helper Numba would inline at each of the 19 sites. A sweep
    of seven to nine taps goes through ``four_row_run`` first (eight chains at once, where
    the CPU has 512-bit vectors), and ``_quad_run`` sweeps the samples it leaves.
    """
    top = i + offsets[0]  # the source row of tap 0 for output row i
    first = True  # the first sweep writes the rows without reading them
    a = 0
    while a < n_taps:
        run = _run_length(n_taps - a, first)
        if run == 0 and first:  # the sweeps add to zeroed rows
            acc0[:] = 0
            acc1[:] = 0
            acc2[:] = 0
            acc3[:] = 0
            first = False
            continue
        if run > 0:  # seven to nine taps in one sweep
            e = a + run - 1  # rows and weights past the run's last tap repeat it (unused)
            rows = (
                row_view(plane, (top + a) % period, 0, None),
                row_view(plane, (top + a + 1) % period, 0, None),
                row_view(plane, (top + a + 2) % period, 0, None),
                row_view(plane, (top + a + 3) % period, 0, None),
                row_view(plane, (top + a + 4) % period, 0, None),
                row_view(plane, (top + a + 5) % period, 0, None),
                row_view(plane, (top + a + 6) % period, 0, None),
                row_view(plane, (top + a + 7) % period, 0, None),
                row_view(plane, (top + a + 8) % period, 0, None),
                row_view(plane, (top + a + 9) % period, 0, None),
                row_view(plane, (top + _imin(a + 10, e + 3)) % period, 0, None),
                row_view(plane, (top + _imin(a + 11, e + 3)) % period, 0, None),
            )
            taps = _run_weights(weights, a, e)
            done = four_row_run((acc0, acc1, acc2, acc3), rows, run, first, taps)
            if done < acc0.size:  # the rest, from sample ``done`` on
                _quad_run(
                    row_view(acc0, (), done, None),
                    row_view(acc1, (), done, None),
                    row_view(acc2, (), done, None),
                    row_view(acc3, (), done, None),
                    run,
                    first,
                    row_view(rows[0], (), done, None),
                    row_view(rows[1], (), done, None),
                    row_view(rows[2], (), done, None),
                    row_view(rows[3], (), done, None),
                    row_view(rows[4], (), done, None),
                    row_view(rows[5], (), done, None),
                    row_view(rows[6], (), done, None),
                    row_view(rows[7], (), done, None),
                    row_view(rows[8], (), done, None),
                    row_view(rows[9], (), done, None),
                    row_view(rows[10], (), done, None),
                    row_view(rows[11], (), done, None),
                    taps,
                )
            first = False
            a += run
            continue
        n = _imin(4, n_taps - a)
        k1, k2, k3 = a + _imin(1, n - 1), a + _imin(2, n - 1), a + _imin(3, n - 1)
        q = top + a
        last = top + n_taps + 2  # the last source row the four rows read
        _sweep_four(
            acc0,
            acc1,
            acc2,
            acc3,
            n,
            row_view(plane, q % period, 0, None),
            row_view(plane, (q + 1) % period, 0, None),
            row_view(plane, (q + 2) % period, 0, None),
            row_view(plane, (q + 3) % period, 0, None),
            row_view(plane, _imin(q + 4, last) % period, 0, None),
            row_view(plane, _imin(q + 5, last) % period, 0, None),
            row_view(plane, _imin(q + 6, last) % period, 0, None),
            weights[a],
            weights[k1],
            weights[k2],
            weights[k3],
        )
        a += n


_column_pass = _helper(_column_pass)
_column_pass_four = _helper(_column_pass_four)
_fill_ring = _helper(_fill_ring)
# ``_separable_rows`` calls the passes by address (``_helper_calls``), so that their code is
# not linked into it and optimised again (0.6 s of a cold compile)
_call_column_pass, _column_pass_found = looked_up_call(_column_pass)
_call_column_pass_four, _column_pass_four_found = looked_up_call(_column_pass_four)


def _pad_row(buf, lo, w, source, pad):
    """Extend the row ``buf[-lo:-lo + w]`` over the rest of ``buf`` by the border mode.

    ``source`` (``_pad_table``) names the sample each position holds; ``pad`` is
    the value outside the image in constant mode.
    """
    inner = row_view(buf, (), -lo, -lo + w)
    for pp in range(-lo):
        q = source[pp]
        buf[pp] = pad if q < 0 else inner[q]
    for pp in range(w - lo, buf.size):
        q = source[pp]
        buf[pp] = pad if q < 0 else inner[q]


def _row_pass(acc, bufs, offsets, weights, counts, lo, t, n_terms, add):
    """``acc`` (+)= the sum over terms ``t .. n_terms - 1`` of the row pass of ``bufs[t]``.

    ``bufs[t]`` is term ``t``'s padded row (``bufs[t, p]`` is x = p + lo).
    The taps of all the terms go through a few sweeps over ``acc`` (seven to
    nine of one term, or up to four), so a sum of separable terms writes its
    output row once, with no row per term. A sweep of seven to nine consecutive taps
    shifts one window in registers (``shifted_run``, where the CPU has 512-bit vectors),
    and ``_row_run`` sweeps the samples it leaves, in the same order of operations.
    """
    w = acc.size
    first = not add  # the first sweep writes acc without reading it
    b = 0
    while t < n_terms:
        run = _run_length(counts[t] - b, first)
        if run == 0 and first:  # the sweeps add to a zeroed row
            acc[:] = 0
            first = False
            continue
        if run > 0:  # seven to nine taps of one term in one sweep
            o = offsets[t]
            e = b + run - 1  # taps past the run's last repeat it (unused)
            taps = _run_weights(weights[t], b, e)
            consecutive = True  # the taps read one window, shifted by one sample a tap
            for k in range(1, run):
                consecutive = consecutive and o[b + k] == o[b] + k
            done = 0  # samples swept with the window shifted in registers (``shifted_run``)
            if consecutive:
                done = shifted_run(acc, row_view(bufs, t, 0, None), o[b] - lo, run, first, taps)
            if done < w:
                s = o[b] - lo + done  # the rest, from sample ``done`` on
                s7, s8 = s + o[_imin(b + 7, e)] - o[b], s + o[_imin(b + 8, e)] - o[b]
                _row_run(
                    row_view(acc, (), done, None),
                    run,
                    first,
                    row_view(bufs, t, s, s + w - done),
                    row_view(bufs, t, s + o[b + 1] - o[b], s + o[b + 1] - o[b] + w - done),
                    row_view(bufs, t, s + o[b + 2] - o[b], s + o[b + 2] - o[b] + w - done),
                    row_view(bufs, t, s + o[b + 3] - o[b], s + o[b + 3] - o[b] + w - done),
                    row_view(bufs, t, s + o[b + 4] - o[b], s + o[b + 4] - o[b] + w - done),
                    row_view(bufs, t, s + o[b + 5] - o[b], s + o[b + 5] - o[b] + w - done),
                    row_view(bufs, t, s + o[b + 6] - o[b], s + o[b + 6] - o[b] + w - done),
                    row_view(bufs, t, s7, s7 + w - done),
                    row_view(bufs, t, s8, s8 + w - done),
                    taps,
                )
            first = False
            b += run
            if b == counts[t]:
                t += 1
                b = 0
            continue
        n = 0
        t0 = t1 = t2 = t3 = 0
        b0 = b1 = b2 = b3 = 0
        while n < 4 and t < n_terms:
            if n == 0:
                t0, b0 = t, b
            elif n == 1:
                t1, b1 = t, b
            elif n == 2:
                t2, b2 = t, b
            else:
                t3, b3 = t, b
            n += 1
            b += 1
            if b == counts[t]:
                t += 1
                b = 0
        if n < 2:
            t1, b1 = t0, b0
        if n < 3:
            t2, b2 = t1, b1
        if n < 4:
            t3, b3 = t2, b2
        s0, s1 = offsets[t0, b0] - lo, offsets[t1, b1] - lo
        s2, s3 = offsets[t2, b2] - lo, offsets[t3, b3] - lo
        _sweep(
            acc,
            n,
            row_view(bufs, t0, s0, s0 + w),
            weights[t0, b0],
            row_view(bufs, t1, s1, s1 + w),
            weights[t1, b1],
            row_view(bufs, t2, s2, s2 + w),
            weights[t2, b2],
            row_view(bufs, t3, s3, s3 + w),
            weights[t3, b3],
        )
    if first:  # no taps
        acc[:] = 0


def _nonfinite(row):
    """Whether ``row`` holds NaN or an infinity."""
    count = 0
    for j in range(row.size):
        v = row[j]
        count += 1 if v - v != 0 else 0
    return count > 0


def _add_square(total, values):
    """``total += values ** 2``."""
    for j in range(total.size):
        total[j] += values[j] * values[j]


def _start_row(total, row_out, accumulate):
    """The terms' ``total`` before the first: the output row itself, or zeros."""
    for j in range(total.size):
        total[j] = row_out[j] if accumulate else 0


def _finish_row(total, combine, inv_divisor, row_out):
    """The output row from the terms' ``total``: its square root for a magnitude."""
    for j in range(total.size):
        row_out[j] = np.sqrt(total[j]) * inv_divisor if combine == MAGNITUDE else total[j]


_pad_row = _helper(_pad_row)
_row_pass = _helper(_row_pass)
_call_row_pass, _row_pass_found = looked_up_call(_row_pass)
_nonfinite = _helper(_nonfinite)
_add_square = _helper(_add_square)
_start_row = _helper(_start_row)
_finish_row = _helper(_finish_row)


def _column_reach(col_off, col_n):
    """The first and last source row an output row's column taps read, relative to it, over
    all terms; and whether a term's taps are dense (rows the four-row pass reads)."""
    top = col_off[0, 0]
    bottom = col_off[0, col_n[0] - 1]
    dense = False
    for t in range(col_n.size):
        n = col_n[t]
        top = _imin(top, col_off[t, 0])
        bottom = _imax(bottom, col_off[t, n - 1])
        dense = dense or (n > 1 and col_off[t, n - 1] - col_off[t, 0] == n - 1)
    return top, bottom, dense


_column_reach = _inlined(_column_reach)


def _row_reach(row_off, row_n):
    """The first and last sample an output sample's row taps read, relative to it (at most
    0 and at least 0), over all terms."""
    lo = 0
    hi = 0
    for t in range(row_n.size):
        for b in range(row_n[t]):
            lo = _imin(lo, row_off[t, b])
            hi = _imax(hi, row_off[t, b])
    return lo, hi


_row_reach = _inlined(_row_reach)


def _separable_rows(
    plane,
    first,
    last,
    col_off,
    col_w,
    col_n,
    row_off,
    row_w,
    row_n,
    mode_y,
    source,
    mode_x,
    cval,
    pad_x,
    combine,
    inv_divisor,
    accumulate,
    lo,
    bufs,
    hacc,
    totals,
    ring,
    out,
    helpers,
    missing,
):
    """Rows ``first .. last - 1`` of one plane of ``_separable_2d``, in the task's buffers
    (``source``: the rows' pad, ``_pad_table``, made here, as ``_cpu_kernels`` says why;
    ``ring``: rows of ``plane`` converted to the output's type or copied, ``_ring_rows``, or
    none); whether a row of a sum came out NaN or infinite.

    The passes are called by address (``helpers``, ``missing``: ``_helper_calls``), all
    looked up before anything is written: where one is missing, nothing is done.
    """
    h, w = plane.shape
    _pad_table(source, lo, w, mode_x)
    n_terms = col_n.size
    direct = n_terms == 1 and combine == SUM and not accumulate
    summed = combine == SUM and not direct  # added up in the output row
    nonfinite = False
    rows = _pass_rows(plane, ring)  # what the four-row vertical pass reads without a ring
    top, bottom, dense_terms = _column_reach(col_off, col_n)
    period = ring.shape[0] if dense_terms else 0  # no four-row pass, no ring to fill
    row = row_view(bufs, (0, 0), -lo, -lo + w)  # arguments of the types the calls below pass
    offsets, weights = col_off[0], col_w[0]
    ready = _row_pass_found(
        helpers, missing, (hacc, bufs[0], row_off, row_w, row_n, lo, 0, 0, False)
    ) and _column_pass_found(helpers, missing, (row, plane, offsets, weights, 0, first, mode_y, cval))
    if dense_terms:  # the four-row pass, reading the ring or the plane
        from_ring = (row, row, row, row, ring, offsets, weights, 0, first, period)
        from_plane = (row, row, row, row, rows, offsets, weights, 0, first, h)
        ready = ready and _column_pass_four_found(helpers, missing, from_ring)
        ready = ready and _column_pass_four_found(helpers, missing, from_plane)
    if not ready:
        return False
    converted = 0  # source rows below this one are in the ring
    i = first
    while i < last:
        n_rows = _imin(4 if dense_terms else 1, last - i)  # four rows share source rows
        if not (direct or summed):
            for r in range(n_rows):
                _start_row(row_view(totals, r, 0, None), row_view(out, i + r, 0, None), accumulate)
        if period > 0 and n_rows == 4:  # the rows the four output rows read, copied once
            start = _imax(_imax(converted, i + top), 0)
            stop = _imin(i + 4 + bottom, h)
            if start < stop:
                _fill_ring(ring, plane, start, stop)
                converted = stop
        for t in range(n_terms):
            n_col = col_n[t]
            dense = col_off[t, n_col - 1] - col_off[t, 0] == n_col - 1
            inside = i + col_off[t, 0] >= 0 and i + 3 + col_off[t, n_col - 1] < h
            if n_rows == 4 and dense and n_col > 1 and inside:
                a0, a1 = row_view(bufs, (0, t), -lo, -lo + w), row_view(bufs, (1, t), -lo, -lo + w)
                a2, a3 = row_view(bufs, (2, t), -lo, -lo + w), row_view(bufs, (3, t), -lo, -lo + w)
                if period > 0:  # the ring (typed as ``rows`` unless the input is read-only)
                    four = (a0, a1, a2, a3, ring, col_off[t], col_w[t], n_col, i, period)
                    _call_column_pass_four(helpers, missing, four)
                else:
                    _call_column_pass_four(
                        helpers, missing, (a0, a1, a2, a3, rows, col_off[t], col_w[t], n_col, i, h)
                    )
            else:
                for r in range(n_rows):
                    row = row_view(bufs, (r, t), -lo, -lo + w)
                    one = (row, plane, col_off[t], col_w[t], n_col, i + r, mode_y, cval)
                    _call_column_pass(helpers, missing, one)
            for r in range(n_rows):
                _pad_row(row_view(bufs, (r, t), 0, None), lo, w, source, pad_x[t])
                if not (direct or summed):  # one term's square into the total
                    term = (hacc, bufs[r], row_off, row_w, row_n, lo, t, t + 1, False)
                    _call_row_pass(helpers, missing, term)
                    _add_square(row_view(totals, r, 0, None), hacc)
        for r in range(n_rows):
            if direct or summed:
                row_out = row_view(out, i + r, 0, None)
                terms = (row_out, bufs[r], row_off, row_w, row_n, lo, 0, n_terms, accumulate)
                _call_row_pass(helpers, missing, terms)
                if summed and _nonfinite(row_out):
                    nonfinite = True
            else:
                _finish_row(row_view(totals, r, 0, None), combine, inv_divisor, row_view(out, i + r, 0, None))
        i += n_rows
    return nonfinite


_separable_rows = _helper(_separable_rows)
_call_rows = helper_call(_separable_rows)


def _separable_2d_worker(worker, state):
    """Worker ``worker``'s tasks of ``_separable_2d`` (``_workers``)."""
    (
        src,
        col_off,
        col_w,
        col_n,
        row_off,
        row_w,
        row_n,
        mode_y,
        mode_x,
        cval,
        pad_x,
        combine,
        inv_divisor,
        accumulate,
        out,
        block,
        nonfinite,
        helpers,
        missing,
        queue,
        n_blocks,
        n_tasks,
        lo,
        padded,
        ring_rows,
        ring_w,
    ) = state
    h = src.shape[1]
    n_terms = col_n.size
    bufs = _buffer((4, n_terms, padded), out)
    hacc = _buffer(out.shape[2], out)
    totals = _buffer((4, out.shape[2]), out)
    ring = _buffer((_ring_rows(src, out, ring_rows), ring_w), out)
    source = _buffer(padded, np.int64)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        first = (task % n_blocks) * block
        if _call_rows(
            helpers,
            missing,
            (
                src[task // n_blocks],
                first,
                _imin(h, first + block),
                col_off,
                col_w,
                col_n,
                row_off,
                row_w,
                row_n,
                mode_y,
                source,
                mode_x,
                cval,
                pad_x,
                combine,
                inv_divisor,
                accumulate,
                lo,
                bufs,
                hacc,
                totals,
                ring,
                out[task // n_blocks],
                helpers,
                missing,
            ),
        ):
            nonfinite[task] = 1
        task = _next_task(queue, worker, n_tasks)


_separable_2d_worker = worker_helper(_separable_2d_worker)
_run_separable_2d = worker_launch(_separable_2d_worker)


def _separable_2d(
    src,
    col_off,
    col_w,
    col_n,
    row_off,
    row_w,
    row_n,
    mode_y,
    mode_x,
    cval,
    pad_x,
    combine,
    inv_divisor,
    accumulate,
    out,
    block,
    nonfinite,
    helpers,
    missing,
    threads,
):
    """Sum (or magnitude) of separable terms over the last two axes of ``src`` (P, H, W).

    Term ``t`` correlates columns with ``col_w[t, :col_n[t]]`` and rows with
    ``row_w[t, :row_n[t]]``. Output rows go four at a time: the vertical pass
    fills a padded row buffer per row and term that stays in cache (for dense
    taps away from the top and bottom the four rows come from one read of their
    shared source rows); the horizontal pass reads them, all terms' taps in
    one sweep for a sum, and each output row is written once. ``pad_x[t]`` is the value
    outside the image along x in constant mode (what the vertical pass would
    give there). Sums (several terms, or one added to ``out``) set
    ``nonfinite[task]`` when a row of that task came out NaN or infinite. A task's work is
    ``_separable_rows``, called by address (``helpers``, ``missing``: ``_helper_calls``),
    and the workers are ``_separable_2d_worker`` (``_workers``).
    """
    n_planes, h, w = src.shape
    lo, hi = _row_reach(row_off, row_n)
    top, bottom, _ = _column_reach(col_off, col_n)
    previous = _limit_threads(threads)
    n_blocks = (h + block - 1) // block
    n_tasks = n_planes * n_blocks
    queue = _task_queue(n_tasks)
    _run_separable_2d(
        helpers,
        missing,
        queue,
        (
            src,
            col_off,
            col_w,
            col_n,
            row_off,
            row_w,
            row_n,
            mode_y,
            mode_x,
            cval,
            pad_x,
            combine,
            inv_divisor,
            accumulate,
            out,
            block,
            nonfinite,
            helpers,
            missing,
            queue,
            n_blocks,
            n_tasks,
            lo,
            w + hi - lo,
            bottom - top + 4,  # the source rows of four output rows
            _ring_width(w, out.itemsize),
        ),
    )
    _set_thread_count(previous)


separable_2d_kernel = _Kernel(_separable_2d, 14, takes_threads=True, calls_helper=True)
