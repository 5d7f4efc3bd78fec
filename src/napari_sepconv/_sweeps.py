"""Multiply-add sweeps over rows, inlined by the separable, direct 2-D and depthwise
kernels: ``acc += r0 * w0 + ...`` over up to four rows (``_sweep``), or over two
output rows at once (``_sweep_two`` and its unrolled seven- and eight-row forms),
each product fused with its sum (``_cpu_kernels._fmuladd``).

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

from ._cpu_kernels import _fmuladd, _inlined


def _sweep(acc, n, r0, w0, r1, w1, r2, w2, r3, w3):
    """``acc += r0 * w0``, then ``+= r1 * w1`` and so on over the first ``n`` (1 to 4) rows.

    One pass over ``acc``, each product fused with its sum (``_fmuladd``).
    Samples are converted to the accumulator's type first (integer input
    cannot wrap). Callers start from a zeroed ``acc``: one loop per ``n``
    keeps the compiled code (and its compile time) small.
    """
    t = acc.dtype.type
    if n == 1:
        for j in range(acc.size):
            acc[j] = _fmuladd(t(r0[j]), w0, acc[j])
    elif n == 2:
        for j in range(acc.size):
            acc[j] = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
    elif n == 3:
        for j in range(acc.size):
            s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
            acc[j] = _fmuladd(t(r2[j]), w2, s)
    else:
        for j in range(acc.size):
            s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
            acc[j] = _fmuladd(t(r3[j]), w3, _fmuladd(t(r2[j]), w2, s))


_sweep = _inlined(_sweep)


def _tap(acc, row, w):
    """``acc += row * w``: ``_sweep`` of one row, without its loops for two to four (the quick
    twins, ``_tiers``, add one tap a sweep: less code to compile)."""
    t = acc.dtype.type
    for j in range(acc.size):
        acc[j] = _fmuladd(t(row[j]), w, acc[j])


_tap = _inlined(_tap)


def _place(n, a, t0, t1, t2, t3):
    """Taps ``(t0, t1, t2, t3)`` of a group with tap ``a`` in slot ``n`` and every later slot.

    Slots past the group's last tap repeat it, which is what ``_sweep`` takes.
    """
    if n == 0:
        return a, a, a, a
    if n == 1:
        return t0, a, a, a
    if n == 2:
        return t0, t1, a, a
    return t0, t1, t2, a


_place = _inlined(_place)


def _sweep_two(acc0, acc1, n, r0, r1, r2, r3, r4, w0, w1, w2, w3):
    """``_sweep`` of rows ``r0 .. r[n-1]`` into ``acc0`` and of ``r1 .. r[n]`` into ``acc1``.

    The same weights and the same operations in the same order as ``_sweep``
    (so a row comes out bit for bit the same either way), each source row
    read once for both.
    """
    t = acc0.dtype.type
    for j in range(acc0.size):
        a, b = t(r0[j]), t(r1[j])
        s0 = _fmuladd(a, w0, acc0[j])
        s1 = _fmuladd(b, w0, acc1[j])
        if n > 1:
            c = t(r2[j])
            s0 = _fmuladd(b, w1, s0)
            s1 = _fmuladd(c, w1, s1)
            if n > 2:
                d = t(r3[j])
                s0 = _fmuladd(c, w2, s0)
                s1 = _fmuladd(d, w2, s1)
                if n > 3:
                    e = t(r4[j])
                    s0 = _fmuladd(d, w3, s0)
                    s1 = _fmuladd(e, w3, s1)
        acc0[j] = s0
        acc1[j] = s1


_sweep_two = _inlined(_sweep_two)


def _sweep_two8(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7):
    """``_sweep_two`` of eight taps (rows ``r0 .. r7`` into ``acc0``, ``r1 .. r8`` into ``acc1``)."""
    t = acc0.dtype.type
    for j in range(acc0.size):
        a, b = t(r0[j]), t(r1[j])
        s0 = _fmuladd(a, w0, acc0[j])
        s1 = _fmuladd(b, w0, acc1[j])
        a = t(r2[j])
        s0 = _fmuladd(b, w1, s0)
        s1 = _fmuladd(a, w1, s1)
        b = t(r3[j])
        s0 = _fmuladd(a, w2, s0)
        s1 = _fmuladd(b, w2, s1)
        a = t(r4[j])
        s0 = _fmuladd(b, w3, s0)
        s1 = _fmuladd(a, w3, s1)
        b = t(r5[j])
        s0 = _fmuladd(a, w4, s0)
        s1 = _fmuladd(b, w4, s1)
        a = t(r6[j])
        s0 = _fmuladd(b, w5, s0)
        s1 = _fmuladd(a, w5, s1)
        b = t(r7[j])
        s0 = _fmuladd(a, w6, s0)
        s1 = _fmuladd(b, w6, s1)
        a = t(r8[j])
        acc0[j] = _fmuladd(b, w7, s0)
        acc1[j] = _fmuladd(a, w7, s1)


_sweep_two8 = _inlined(_sweep_two8)


def _sweep_two7(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6):
    """``_sweep_two`` of seven taps (rows ``r0 .. r6`` into ``acc0``, ``r1 .. r7`` into ``acc1``)."""
    t = acc0.dtype.type
    for j in range(acc0.size):
        a, b = t(r0[j]), t(r1[j])
        s0 = _fmuladd(a, w0, acc0[j])
        s1 = _fmuladd(b, w0, acc1[j])
        a = t(r2[j])
        s0 = _fmuladd(b, w1, s0)
        s1 = _fmuladd(a, w1, s1)
        b = t(r3[j])
        s0 = _fmuladd(a, w2, s0)
        s1 = _fmuladd(b, w2, s1)
        a = t(r4[j])
        s0 = _fmuladd(b, w3, s0)
        s1 = _fmuladd(a, w3, s1)
        b = t(r5[j])
        s0 = _fmuladd(a, w4, s0)
        s1 = _fmuladd(b, w4, s1)
        a = t(r6[j])
        s0 = _fmuladd(b, w5, s0)
        s1 = _fmuladd(a, w5, s1)
        b = t(r7[j])
        acc0[j] = _fmuladd(a, w6, s0)
        acc1[j] = _fmuladd(b, w6, s1)


_sweep_two7 = _inlined(_sweep_two7)
