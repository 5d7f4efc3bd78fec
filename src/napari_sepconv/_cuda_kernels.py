"""CUDA kernels of the GPU engine (``_cuda``), written for Numba's CUDA target.

The kernels mirror those of ``_cpu``: same taps, same border maths (the
inline ``_boundary`` helper, compiled into every kernel), same summation order,
and arithmetic in the output's float type (float32 for float32 data). Each
``build_*`` function returns the plain Python kernel for one output dtype;
``_cuda`` compiles it with ``cuda.jit`` on first use, and the tests compile
every one of them to PTX.

Layout of the 2-D kernels: a block of ``BX x BY`` threads computes a tile of
``TX x TY`` outputs, each thread ``ROWS`` rows ``BY`` apart. The tile's input
(or the first pass's result) is loaded once into shared memory, with a halo of
the kernel's reach on each side; neighbouring threads load neighbouring
addresses, so loads are coalesced. Positions outside the image are resolved
while loading, so the inner loops read shared memory only. The halo is a
runtime size, so the tile lives in dynamic shared memory; ``_cuda`` checks that
it fits and otherwise runs a variant that reads global memory (``tiled=False``)
or another plan.

Channel kernels (channel-last data) use flat blocks of ``THREADS`` threads over
(pixel, channel) pairs, channel fastest, with runtime tile sizes; the depthwise
and depthwise-separable kernels are also generated per plan, with constant
taps, channel counts and tile sizes.

Grid ``y`` and ``z`` dimensions are capped at 65535 blocks, so kernels loop
over the tiles they are given (``range(blockIdx, n, gridDim)``); every thread
of a block runs the same iterations, so ``syncthreads`` inside those loops is
safe.

This module imports ``numba.cuda``; it is imported by ``_cuda`` only.
"""

import math
from functools import lru_cache

import numba
import numpy as np
from numba import cuda

from ._boundary import CONSTANT, source_index

_source_index = source_index()

# Combine codes of ``separable_2d`` (the same as ``_cpu``).
SUM = 0
SUM_SQUARES = 1
MAGNITUDE = 2

# 2-D tiles: a 32 x 8 block computes 32 x 32 outputs, 4 rows per thread.
BX = 32
BY = 8
ROWS = 4
TX = BX
TY = BY * ROWS
THREADS = BX * BY


_SIMULATED = bool(cuda.config.ENABLE_CUDASIM)


class _SimulatedType:
    """A scalar type under the simulator: casts as NumPy does (what a Numba type's call
    does there too, at a few times the cost) and serves as a shared array's dtype."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.itemsize = self.dtype.itemsize
        self._cast = self.dtype.type

    def __call__(self, value):
        return self._cast(value)


def _cast_type(dtype):
    """The kernels' scalar type ``dtype``: Numba's, or a :class:`_SimulatedType`."""
    return _SimulatedType(dtype) if _SIMULATED else numba.from_dtype(np.dtype(dtype))


def _checked_index(i):
    """``_u`` under the simulator: the index as it is, refused if negative (a cast per
    index costs microseconds there, and these kernels run in Python)."""
    if i < 0:
        raise IndexError(f"negative index {i}")
    return i


# Array indices that are known to be non-negative: unsigned, so that Numba leaves
# out its negative-index wraparound (three instructions per index) in hot loops.
_u = _checked_index if _SIMULATED else numba.uint64


def _inline(func):
    """A device function compiled into its callers (the simulator runs it as Python)."""
    return cuda.jit(device=True, inline="always")(func)


# --------------------------------------------------------------------------
# Device helpers, compiled inline into the kernels
# --------------------------------------------------------------------------

_i32, _u32, _i64 = (np.int32, np.uint32, np.int64) if _SIMULATED else (numba.int32, numba.uint32, numba.int64)


def _index_near32(i, n, mode):
    """:func:`_index32` for positions at most one line length outside the line (``-(n - 1)
    <= i <= 2n - 2``; any position in constant and nearest mode), without its division;
    elsewhere an index inside the line (never out of bounds, the value unused: a fused
    kernel's tile beyond its last output). ``_index32`` takes it for those positions."""
    if i >= 0 and i < n:
        return i
    if mode == 1:  # constant
        return _i32(-1)
    if mode == 4:  # wrap
        m = i + n if i < 0 else i - n
    elif mode == 0:  # reflect
        m = -1 - i if i < 0 else n + n - 1 - i
    elif mode == 3:  # mirror
        m = -i if i < 0 else n + n - 2 - i
    else:  # nearest
        m = i
    return min(max(m, _i32(0)), n - 1)


_index_near32 = _inline(_index_near32)


def _index32(i, n, mode):
    """``_boundary.source_index`` in 32-bit arithmetic (positions and lengths below 2**31):
    ``mode`` is a compile-time constant in the kernels generated per plan, a value in the
    channel and direct 2-D kernels."""
    if mode == 1 or mode == 2 or (i >= 1 - n and i <= n + n - 2):
        return _index_near32(i, n, mode)  # inside, or one reflection away: no division
    if mode == 4:  # wrap
        period = n
    elif mode == 0:  # reflect
        period = n + n
    else:  # mirror
        if n == 1:
            return _i32(0)
        period = n + n - 2
    if i >= 0:
        m = _i32(_u32(i) % _u32(period))
    else:
        m = _i32(period - 1 - _i32(_u32(-1 - i) % _u32(period)))
    if mode == 4 or m < n:
        return m
    if mode == 0:
        return period - 1 - m
    return period - m


_index32 = _inline(_index32)


def _div32(a, b):
    """``a // b`` for ``0 <= a < 2**32`` and ``0 < b < 2**32``, in 32-bit unsigned arithmetic
    (a 64-bit division is a long software routine on the GPU)."""
    return _i64(_u32(a) // _u32(b))


_div32 = _inline(_div32)


def _divmod32(a, b):
    """``divmod(a, b)`` as ``_div32`` computes it: quotient and remainder, one division."""
    q = _u32(a) // _u32(b)
    return _i64(q), _i64(_u32(a) - q * _u32(b))


_divmod32 = _inline(_divmod32)


def _tap_sum(buf, base, stride, off, w, sym):
    """1-D correlation at one sample, the values in ``buf[base + off[t] * stride]``.

    Summed in ``_cpu.correlate_lines``'s (and scipy.ndimage's) order: for a
    (anti)symmetric kernel the centre tap, then mirrored pairs; otherwise the
    last tap, then the others in order.
    """
    k = off.size
    first = k // 2 if sym != 0 else k - 1
    acc = w[_u(first)] * buf[_u(base + off[_u(first)] * stride)]
    if sym > 0:
        for t in range(k // 2):
            a = buf[_u(base + off[_u(t)] * stride)]
            acc += (a + buf[_u(base + off[_u(k - 1 - t)] * stride)]) * w[_u(t)]
    elif sym < 0:
        for t in range(k // 2):
            a = buf[_u(base + off[_u(t)] * stride)]
            acc += (a - buf[_u(base + off[_u(k - 1 - t)] * stride)]) * w[_u(t)]
    else:
        for t in range(k - 1):
            acc += buf[_u(base + off[_u(t)] * stride)] * w[_u(t)]
    return acc


_tap_sum = _inline(_tap_sum)


def _fetch(src, o, q, j, cval):
    """``src[o, q, j]``, or ``cval`` where the border mode gave ``q = -1``."""
    if q < 0:
        return cval
    return src[o, q, j]


_fetch = _inline(_fetch)


def _tap_sum_at(src, o, i, j, n, off, w, sym, mode, cval):
    """``_tap_sum`` along axis 1 of ``src`` (outer, n, inner), reading global memory."""
    k = off.size
    first = k // 2 if sym != 0 else k - 1
    acc = w[first] * _fetch(src, o, _source_index(i + off[first], n, mode), j, cval)
    for t in range(k // 2 if sym != 0 else k - 1):
        a = _fetch(src, o, _source_index(i + off[t], n, mode), j, cval)
        if sym > 0:
            acc += (a + _fetch(src, o, _source_index(i + off[k - 1 - t], n, mode), j, cval)) * w[t]
        elif sym < 0:
            acc += (a - _fetch(src, o, _source_index(i + off[k - 1 - t], n, mode), j, cval)) * w[t]
        else:
            acc += a * w[t]
    return acc


_tap_sum_at = _inline(_tap_sum_at)


def _pixel(src, p, qy, qx, c, cval):
    """``src[p, qy, qx, c]``, or ``cval`` outside the image (constant mode)."""
    if qy < 0 or qx < 0:
        return cval
    return src[_u(p), _u(qy), _u(qx), _u(c)]


_pixel = _inline(_pixel)


def _load_channel_tile(smem, src, p, y_first, x_first, th, tw, mode_y, mode_x, cval):
    """Copy rows ``y_first ..`` and pixels ``x_first ..`` (all channels) of plane ``p``.

    ``smem[(r * tw + c) * n_in + ch]`` holds the pixel at ``(y_first + r,
    x_first + c)``, border-resolved; consecutive threads copy consecutive
    channels and pixels, so a row of the tile is one coalesced read.
    """
    h = src.shape[1]
    w = src.shape[2]
    n_in = src.shape[3]
    for idx in range(cuda.threadIdx.x, th * tw * n_in, THREADS):
        pix, ch = _divmod32(idx, n_in)
        r = _div32(pix, tw)
        c = pix - r * tw
        qy = _index32(y_first + r, h, mode_y)
        qx = _index32(x_first + c, w, mode_x)
        smem[_u(idx)] = _pixel(src, p, qy, qx, ch, cval)


_load_channel_tile = _inline(_load_channel_tile)


def _depthwise_from_tile(smem, base, tw, n_in, k, multiplier, tap_y, tap_x, tap_w, tap_zero, zero):
    """Depthwise output channel ``k`` at the tile pixel whose top-left tap reads ``base``.

    Taps in order, a zero weight left out for its channel (as ``_cpu``).
    """
    c = _div32(k, multiplier)
    acc = zero
    for t in range(tap_y.size):
        wt = tap_w[_u(t), _u(k)]
        if tap_zero[_u(t)] and wt == 0:
            continue
        acc += wt * smem[_u((base + tap_y[_u(t)] * tw + tap_x[_u(t)]) * n_in + c)]
    return acc


_depthwise_from_tile = _inline(_depthwise_from_tile)


def _column_pass(src, p, y, gx, k, multiplier, col_off, col_w, mode_y, mode_x, cval, pad_x, zero):
    """Vertical pass of depthwise channel ``k`` at row ``y``, column ``gx`` (any ``gx``).

    Outside the image along x it is ``pad_x[k]`` in constant mode, and the
    pass at the border-mode column otherwise (``_cpu.depthwise_passes``).
    """
    h = src.shape[1]
    w = src.shape[2]
    if mode_x == CONSTANT and (gx < 0 or gx >= w):
        return pad_x[_u(k)]
    qx = _index32(gx, w, mode_x)
    c = _div32(k, multiplier)
    acc = zero
    for a in range(col_off.size):
        wa = col_w[_u(a), _u(k)]
        if wa == 0:
            continue
        qy = _index32(y + col_off[_u(a)], h, mode_y)
        acc += wa * _pixel(src, p, qy, qx, c, cval)
    return acc


_column_pass = _inline(_column_pass)


# --------------------------------------------------------------------------
# 1-D passes
# --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def build_correlate_x(dtype):
    """1-D correlation along the last axis of ``src`` (lines, n): shared tile of lines."""
    nbt = _cast_type(dtype)

    def correlate_x(src, off, w, sym, lo, span, mode, cval, out):
        n_lines, n = src.shape
        tw = TX + span
        smem = cuda.shared.array(0, nbt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        x0 = cuda.blockIdx.x * TX
        x = x0 + tx
        for by in range(cuda.blockIdx.y, (n_lines + TY - 1) // TY, cuda.gridDim.y):
            y0 = by * TY
            for r in range(ty, min(TY, n_lines - y0), BY):
                for c in range(tx, tw, BX):
                    q = _source_index(x0 + lo + c, n, mode)
                    if q < 0:
                        smem[_u(r * tw + c)] = cval
                    else:
                        smem[_u(r * tw + c)] = src[_u(y0 + r), _u(q)]
            cuda.syncthreads()
            for rr in range(ROWS):
                ly = ty + rr * BY
                if y0 + ly < n_lines and x < n:
                    out[_u(y0 + ly), _u(x)] = _tap_sum(smem, ly * tw + tx - lo, 1, off, w, sym)
            cuda.syncthreads()

    return correlate_x


@lru_cache(maxsize=None)
def build_correlate_y(dtype):
    """1-D correlation along axis 1 of ``src`` (outer, n, inner): coalesced along ``inner``."""
    nbt = _cast_type(dtype)

    def correlate_y(src, off, w, sym, lo, span, mode, cval, out):
        n_outer, n, inner = src.shape
        th = TY + span
        smem = cuda.shared.array(0, nbt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        x0 = cuda.blockIdx.x * TX
        x = x0 + tx
        for o in range(cuda.blockIdx.z, n_outer, cuda.gridDim.z):
            for by in range(cuda.blockIdx.y, (n + TY - 1) // TY, cuda.gridDim.y):
                y0 = by * TY
                if x < inner:
                    for r in range(ty, th, BY):
                        q = _source_index(y0 + lo + r, n, mode)
                        if q < 0:
                            smem[_u(r * TX + tx)] = cval
                        else:
                            smem[_u(r * TX + tx)] = src[_u(o), _u(q), _u(x)]
                cuda.syncthreads()
                for rr in range(ROWS):
                    ly = ty + rr * BY
                    if y0 + ly < n and x < inner:
                        out[_u(o), _u(y0 + ly), _u(x)] = _tap_sum(smem, (ly - lo) * TX + tx, TX, off, w, sym)
                cuda.syncthreads()

    return correlate_y


@lru_cache(maxsize=None)
def build_correlate_any(dtype):
    """1-D correlation along axis 1 of (outer, n, inner), one thread per output.

    For kernels too long for a shared-memory tile; reads global memory.
    """

    def correlate_any(src, off, w, sym, mode, cval, out):
        n_outer, n, inner = src.shape
        for flat in range(cuda.grid(1), n_outer * n * inner, cuda.gridsize(1)):
            j = flat % inner
            rest = flat // inner
            i = rest % n
            o = rest // n
            out[o, i, j] = _tap_sum_at(src, o, i, j, n, off, w, sym, mode, cval)

    return correlate_any


# --------------------------------------------------------------------------
# Fused separable terms over the last two axes
# --------------------------------------------------------------------------

# Tap-count limits of the unrolled ``separable_2d`` variants (larger kernels use the generic one).
UNROLLED_TAPS = (4, 8, 16)


@lru_cache(maxsize=None)
def build_separable_2d(dtype, max_taps=None):
    """Sum (or magnitude) of separable terms over the last two axes of ``src`` (P, H, W).

    Shared memory holds the input tile and, for one term at a time, the
    vertical pass over the tile's rows and its x halo; the horizontal pass
    reads that and each thread keeps its ``ROWS`` running totals in registers,
    so the output is written once. Term ``t`` correlates columns with
    ``col_w[t, :col_n[t]]`` and rows with ``row_w[t, :row_n[t]]``; the taps'
    offsets come as positions in the shared tile (``col_at = (offset - y_lo) *
    tile width``, ``row_at = offset - x_lo``), so the inner loops only add.
    ``pad_x[t]`` is the vertical pass outside the image along x in constant
    mode, as in ``_cpu.separable_2d``.

    With ``max_taps`` (every pass has at most that many taps, the tables
    padded to that width) each term's taps are read once into registers and
    the tap loops unroll: short kernels such as the edge filters then cost a
    few instructions per tap.
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)
    unrolled = max_taps is not None
    n_regs = max_taps if unrolled else 1

    def separable_2d(
        src,
        col_at,
        col_w,
        col_n,
        row_at,
        row_w,
        row_n,
        y_lo,
        y_span,
        x_lo,
        x_span,
        mode_y,
        mode_x,
        cval,
        pad_x,
        combine,
        divisor,
        accumulate,
        out,
    ):
        n_planes, h, w = src.shape
        tw = TX + x_span
        mid = (TY + y_span) * tw  # where the vertical pass starts in shared memory
        smem = cuda.shared.array(0, nbt)
        total = cuda.local.array(ROWS, nbt)
        cw = cuda.local.array(n_regs, nbt)  # the term's taps, in registers when unrolled
        ca = cuda.local.array(n_regs, numba.int64)
        rw = cuda.local.array(n_regs, nbt)
        ra = cuda.local.array(n_regs, numba.int64)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        x0 = cuda.blockIdx.x * TX
        x = x0 + tx
        p = cuda.blockIdx.z
        while p < n_planes:
            for by in range(cuda.blockIdx.y, (h + TY - 1) // TY, cuda.gridDim.y):
                y0 = by * TY
                for r in range(ty, TY + y_span, BY):
                    qy = _source_index(y0 + y_lo + r, h, mode_y)
                    for c in range(tx, tw, BX):
                        qx = _source_index(x0 + x_lo + c, w, mode_x)
                        if qy < 0:
                            smem[_u(r * tw + c)] = cval
                        elif qx < 0:
                            smem[_u(r * tw + c)] = zero  # replaced by pad_x after the pass
                        else:
                            smem[_u(r * tw + c)] = src[_u(p), _u(qy), _u(qx)]
                for rr in range(ROWS):
                    y = y0 + ty + rr * BY
                    if accumulate != 0 and y < h and x < w:
                        total[rr] = out[_u(p), _u(y), _u(x)]
                    else:
                        total[rr] = zero
                for t in range(col_n.size):
                    n_col = col_n[t]
                    n_row = row_n[t]
                    if unrolled:
                        for a in range(n_regs):
                            cw[a] = col_w[_u(t), _u(a)]
                            ca[a] = col_at[_u(t), _u(a)]
                            rw[a] = row_w[_u(t), _u(a)]
                            ra[a] = row_at[_u(t), _u(a)]
                    cuda.syncthreads()  # tile loaded, or the previous term's pass read
                    for r in range(ty, TY, BY):
                        for c in range(tx, tw, BX):
                            gx = x0 + x_lo + c
                            if mode_x == CONSTANT and (gx < 0 or gx >= w):
                                v = pad_x[t]
                            else:
                                v = zero
                                at = r * tw + c
                                if unrolled:
                                    for a in range(n_regs):
                                        if a < n_col:
                                            v += cw[a] * smem[_u(at + ca[a])]
                                else:
                                    for a in range(n_col):
                                        v += col_w[_u(t), _u(a)] * smem[_u(at + col_at[_u(t), _u(a)])]
                            smem[_u(mid + r * tw + c)] = v
                    cuda.syncthreads()
                    for rr in range(ROWS):
                        at = mid + (ty + rr * BY) * tw + tx
                        hsum = zero
                        if unrolled:
                            for b in range(n_regs):
                                if b < n_row:
                                    hsum += rw[b] * smem[_u(at + ra[b])]
                        else:
                            for b in range(n_row):
                                hsum += row_w[_u(t), _u(b)] * smem[_u(at + row_at[_u(t), _u(b)])]
                        if combine == SUM:
                            total[rr] += hsum
                        else:
                            total[rr] += hsum * hsum
                for rr in range(ROWS):
                    y = y0 + ty + rr * BY
                    if y < h and x < w:
                        if combine == MAGNITUDE:
                            out[_u(p), _u(y), _u(x)] = math.sqrt(total[rr]) / divisor
                        else:
                            out[_u(p), _u(y), _u(x)] = total[rr]
                cuda.syncthreads()
            p += cuda.gridDim.z

    return separable_2d


# Edge magnitudes of 3x3 operators: threads per block and output rows per thread.
EDGE_THREADS = 128
EDGE_ROWS = 16


def _edge_sample(src, p, qy, qx, cval, zero):
    """``src[p, qy, qx]``; ``cval`` for rows outside (``qy < 0``).

    Columns outside in constant mode (``qx < 0``) read as ``zero``: their
    smoothed and differentiated values are replaced afterwards.
    """
    if qy < 0:
        return cval
    if qx < 0:
        return zero
    return src[_u(p), _u(qy), _u(qx)]


_edge_sample = _inline(_edge_sample)


@lru_cache(maxsize=None)
def build_edge_magnitude_3x3(dtype):
    """``sqrt(gx**2 + gy**2) * inv_divisor`` of a 3x3 edge operator, in one read of the image.

    The GPU twin of ``_cpu.edge_magnitude_3x3``: ``weights`` holds the
    smoothing (offsets -1, 0, 1) and derivative (offsets -1, 1) weights down
    the columns, then across the rows: ``s0 s1 s2 d0 d2 hs0 hs1 hs2 hd0 hd2``.
    Each thread owns one column and ``EDGE_ROWS`` consecutive output rows; it
    keeps the 3 x 3 window in registers and slides it down, reading one new
    source row (three neighbouring values, shared with the neighbouring
    threads through the L1 cache) per output row, so the image is read from
    memory about once and the output written once. ``pad_smooth`` and
    ``pad_derivative`` are the vertical passes beyond the image along x in
    constant mode; rows beyond it hold ``cval``.
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)

    def edge_magnitude_3x3(src, weights, mode_y, mode_x, cval, pad_smooth, pad_derivative, inv_divisor, out):
        n_planes, h, w = src.shape
        x = cuda.blockIdx.x * EDGE_THREADS + cuda.threadIdx.x
        if x >= w:
            return
        s0, s1, s2 = weights[0], weights[1], weights[2]
        d0, d2 = weights[3], weights[4]
        hs0, hs1, hs2 = weights[5], weights[6], weights[7]
        hd0, hd2 = weights[8], weights[9]
        ql = _source_index(x - 1, w, mode_x)
        qr = _source_index(x + 1, w, mode_x)
        pad_l = mode_x == CONSTANT and ql < 0
        pad_r = mode_x == CONSTANT and qr < 0
        n_strips = (h + EDGE_ROWS - 1) // EDGE_ROWS
        p = cuda.blockIdx.z
        while p < n_planes:
            for strip in range(cuda.blockIdx.y, n_strips, cuda.gridDim.y):
                y0 = strip * EDGE_ROWS
                q = _source_index(y0 - 1, h, mode_y)
                a_l = nbt(_edge_sample(src, p, q, ql, cval, zero))
                a_c = nbt(_edge_sample(src, p, q, x, cval, zero))
                a_r = nbt(_edge_sample(src, p, q, qr, cval, zero))
                b_l = nbt(_edge_sample(src, p, y0, ql, cval, zero))
                b_c = nbt(_edge_sample(src, p, y0, x, cval, zero))
                b_r = nbt(_edge_sample(src, p, y0, qr, cval, zero))
                for y in range(y0, min(h, y0 + EDGE_ROWS)):
                    q = _source_index(y + 1, h, mode_y)
                    c_l = nbt(_edge_sample(src, p, q, ql, cval, zero))
                    c_c = nbt(_edge_sample(src, p, q, x, cval, zero))
                    c_r = nbt(_edge_sample(src, p, q, qr, cval, zero))
                    sm_l = pad_smooth if pad_l else s0 * a_l + s1 * b_l + s2 * c_l
                    sm_r = pad_smooth if pad_r else s0 * a_r + s1 * b_r + s2 * c_r
                    df_l = pad_derivative if pad_l else d0 * a_l + d2 * c_l
                    df_c = d0 * a_c + d2 * c_c
                    df_r = pad_derivative if pad_r else d0 * a_r + d2 * c_r
                    gx = hd0 * sm_l + hd2 * sm_r
                    gy = hs0 * df_l + hs1 * df_c + hs2 * df_r
                    out[_u(p), _u(y), _u(x)] = math.sqrt(gx * gx + gy * gy) * inv_divisor
                    a_l, a_c, a_r = b_l, b_c, b_r
                    b_l, b_c, b_r = c_l, c_c, c_r
            p += cuda.gridDim.z

    return edge_magnitude_3x3


# --------------------------------------------------------------------------
# Direct 2-D correlation
# --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def build_correlate_2d(dtype, tiled=True):
    """Direct 2-D correlation of each plane of ``src`` (P, H, W) with a tap list.

    Taps in the order given (``_cpu.correlate_2d`` sums them in that order).
    ``tiled=False`` reads global memory, for kernels whose tile would not fit
    in shared memory.
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)

    def correlate_2d(src, tap_y, tap_x, tap_w, y_lo, y_span, x_lo, x_span, mode_y, mode_x, cval, out):
        n_planes, h, w = src.shape
        tw = TX + x_span
        smem = cuda.shared.array(0, nbt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        x0 = cuda.blockIdx.x * TX
        x = x0 + tx
        p = cuda.blockIdx.z
        while p < n_planes:
            y0 = cuda.blockIdx.y * TY
            while y0 < h:
                if tiled:
                    for r in range(ty, TY + y_span, BY):
                        qy = _index32(y0 + y_lo + r, h, mode_y)
                        for c in range(tx, tw, BX):
                            qx = _index32(x0 + x_lo + c, w, mode_x)
                            if qy < 0 or qx < 0:
                                smem[_u(r * tw + c)] = cval
                            else:
                                smem[_u(r * tw + c)] = src[_u(p), _u(qy), _u(qx)]
                    cuda.syncthreads()
                for rr in range(ROWS):
                    ly = ty + rr * BY
                    y = y0 + ly
                    if y < h and x < w:
                        acc = zero
                        at = (ly - y_lo) * tw + tx - x_lo
                        for t in range(tap_w.size):
                            if tiled:
                                v = smem[_u(at + tap_y[_u(t)] * tw + tap_x[_u(t)])]
                            else:
                                qy = _index32(y + tap_y[t], h, mode_y)
                                qx = _index32(x + tap_x[t], w, mode_x)
                                if qy < 0 or qx < 0:
                                    v = cval
                                else:
                                    v = nbt(src[p, qy, qx])
                            acc += tap_w[_u(t)] * v
                        out[_u(p), _u(y), _u(x)] = acc
                if tiled:
                    cuda.syncthreads()
                y0 += cuda.gridDim.y * TY
            p += cuda.gridDim.z

    return correlate_2d


# --------------------------------------------------------------------------
# Channel filters, channel-last: src (P, H, W, C), out (P, R, W, C*M)
# --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def build_depthwise(dtype, tiled=True):
    """Per-channel 2-D correlation, output rows ``row_start ..`` (row bands).

    Output channel ``k = c*M + m`` correlates input channel ``c`` with the
    weights ``tap_w[:, k]`` at offsets ``(tap_y, tap_x)``, a zero weight left
    out for its channel, as ``_cpu.depthwise_2d``. A block computes
    ``tile_h x tile_w`` pixels, every output channel, from a shared tile of
    the input (all channels, with the halo).
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)

    def depthwise(
        src,
        tap_y,
        tap_x,
        tap_w,
        tap_zero,
        multiplier,
        y_lo,
        y_span,
        x_lo,
        x_span,
        mode_y,
        mode_x,
        cval,
        row_start,
        tile_h,
        tile_w,
        out,
    ):
        n_planes, h, w, n_in = src.shape
        n_rows = out.shape[1]
        n_out = out.shape[3]
        tw = tile_w + x_span
        smem = cuda.shared.array(0, nbt)
        x0 = cuda.blockIdx.x * tile_w
        p = cuda.blockIdx.z
        while p < n_planes:
            r0 = cuda.blockIdx.y * tile_h
            while r0 < n_rows:
                if tiled:
                    _load_channel_tile(
                        smem,
                        src,
                        p,
                        row_start + r0 + y_lo,
                        x0 + x_lo,
                        tile_h + y_span,
                        tw,
                        mode_y,
                        mode_x,
                        cval,
                    )
                    cuda.syncthreads()
                for idx in range(cuda.threadIdx.x, tile_h * tile_w * n_out, THREADS):
                    pix, k = _divmod32(idx, n_out)
                    lr = _div32(pix, tile_w)
                    lc = pix - lr * tile_w
                    if r0 + lr < n_rows and x0 + lc < w:
                        if tiled:
                            acc = _depthwise_from_tile(
                                smem,
                                (lr - y_lo) * tw + lc - x_lo,
                                tw,
                                n_in,
                                k,
                                multiplier,
                                tap_y,
                                tap_x,
                                tap_w,
                                tap_zero,
                                zero,
                            )
                        else:
                            y = row_start + r0 + lr
                            c = _div32(k, multiplier)
                            acc = zero
                            for t in range(tap_y.size):
                                wt = tap_w[_u(t), _u(k)]
                                if tap_zero[_u(t)] and wt == 0:
                                    continue
                                qy = _index32(y + tap_y[_u(t)], h, mode_y)
                                qx = _index32(x0 + lc + tap_x[_u(t)], w, mode_x)
                                acc += wt * nbt(_pixel(src, p, qy, qx, c, cval))
                        out[_u(p), _u(r0 + lr), _u(x0 + lc), _u(k)] = acc
                if tiled:
                    cuda.syncthreads()
                r0 += cuda.gridDim.y * tile_h
            p += cuda.gridDim.z

    return depthwise


@lru_cache(maxsize=None)
def build_depthwise_passes(dtype, tiled=True):
    """Per-channel rank-1 kernels ``outer(col_w[:, k], row_w[:, k])`` as two passes.

    The vertical pass over the tile's rows and its x halo goes to shared
    memory; the horizontal pass reads it. ``pad_x[k]`` is the vertical pass
    outside the image along x in constant mode. Zero weights are left out per
    channel, as ``_cpu.depthwise_passes_2d``. ``tiled=False`` recomputes the
    vertical pass for every horizontal tap instead (kernels too wide for a
    tile).
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)

    def depthwise_passes(
        src,
        col_off,
        col_w,
        row_off,
        row_w,
        multiplier,
        x_lo,
        x_span,
        mode_y,
        mode_x,
        cval,
        pad_x,
        row_start,
        tile_h,
        tile_w,
        out,
    ):
        n_planes, h, w, n_in = src.shape
        n_rows = out.shape[1]
        n_out = out.shape[3]
        tw = tile_w + x_span
        smem = cuda.shared.array(0, nbt)
        x0 = cuda.blockIdx.x * tile_w
        p = cuda.blockIdx.z
        while p < n_planes:
            r0 = cuda.blockIdx.y * tile_h
            while r0 < n_rows:
                if tiled:
                    for idx in range(cuda.threadIdx.x, tile_h * tw * n_out, THREADS):
                        pix, k = _divmod32(idx, n_out)
                        lr = _div32(pix, tw)
                        smem[_u(idx)] = _column_pass(
                            src,
                            p,
                            row_start + r0 + lr,
                            x0 + x_lo + pix - lr * tw,
                            k,
                            multiplier,
                            col_off,
                            col_w,
                            mode_y,
                            mode_x,
                            cval,
                            pad_x,
                            zero,
                        )
                    cuda.syncthreads()
                for idx in range(cuda.threadIdx.x, tile_h * tile_w * n_out, THREADS):
                    pix, k = _divmod32(idx, n_out)
                    lr = _div32(pix, tile_w)
                    lc = pix - lr * tile_w
                    if r0 + lr < n_rows and x0 + lc < w:
                        acc = zero
                        for b in range(row_off.size):
                            wb = row_w[_u(b), _u(k)]
                            if wb == 0:
                                continue
                            if tiled:
                                v = smem[_u((lr * tw + lc + row_off[_u(b)] - x_lo) * n_out + k)]
                            else:
                                v = _column_pass(
                                    src,
                                    p,
                                    row_start + r0 + lr,
                                    x0 + lc + row_off[_u(b)],
                                    k,
                                    multiplier,
                                    col_off,
                                    col_w,
                                    mode_y,
                                    mode_x,
                                    cval,
                                    pad_x,
                                    zero,
                                )
                            acc += wb * v
                        out[_u(p), _u(r0 + lr), _u(x0 + lc), _u(k)] = acc
                if tiled:
                    cuda.syncthreads()
                r0 += cuda.gridDim.y * tile_h
            p += cuda.gridDim.z

    return depthwise_passes


@lru_cache(maxsize=None)
def build_depthwise_separable(dtype):
    """Depthwise filtering then pointwise mixing, the intermediate kept in shared memory.

    A block loads an input tile (all channels, with the halo), computes the
    depthwise result of its ``tile_h x tile_w`` pixels for all ``C*M``
    channels into shared memory, and mixes those into the ``C_out`` outputs:
    ``out[..., o] = sum_k pw[o, k] * mid[..., k] (+ bias[o])``. The
    intermediate never reaches global memory.
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)

    def depthwise_separable(
        src,
        tap_y,
        tap_x,
        tap_w,
        tap_zero,
        multiplier,
        y_lo,
        y_span,
        x_lo,
        x_span,
        mode_y,
        mode_x,
        cval,
        pw,
        bias,
        has_bias,
        tile_h,
        tile_w,
        out,
    ):
        n_planes, h, w, n_in = src.shape
        n_mid = tap_w.shape[1]
        n_out = out.shape[3]
        tw = tile_w + x_span
        mid = (tile_h + y_span) * tw * n_in  # where the depthwise result starts
        smem = cuda.shared.array(0, nbt)
        x0 = cuda.blockIdx.x * tile_w
        p = cuda.blockIdx.z
        while p < n_planes:
            r0 = cuda.blockIdx.y * tile_h
            while r0 < h:
                _load_channel_tile(
                    smem, src, p, r0 + y_lo, x0 + x_lo, tile_h + y_span, tw, mode_y, mode_x, cval
                )
                cuda.syncthreads()
                for idx in range(cuda.threadIdx.x, tile_h * tile_w * n_mid, THREADS):
                    pix, k = _divmod32(idx, n_mid)
                    lr = _div32(pix, tile_w)
                    smem[_u(mid + idx)] = _depthwise_from_tile(
                        smem,
                        (lr - y_lo) * tw + pix - lr * tile_w - x_lo,
                        tw,
                        n_in,
                        k,
                        multiplier,
                        tap_y,
                        tap_x,
                        tap_w,
                        tap_zero,
                        zero,
                    )
                cuda.syncthreads()
                for idx in range(cuda.threadIdx.x, tile_h * tile_w * n_out, THREADS):
                    pix, o = _divmod32(idx, n_out)
                    lr = _div32(pix, tile_w)
                    lc = pix - lr * tile_w
                    if r0 + lr < h and x0 + lc < w:
                        acc = zero
                        for k in range(n_mid):
                            acc += pw[_u(o), _u(k)] * smem[_u(mid + pix * n_mid + k)]
                        if has_bias != 0:
                            acc += bias[_u(o)]
                        out[_u(p), _u(r0 + lr), _u(x0 + lc), _u(o)] = acc
                cuda.syncthreads()
                r0 += cuda.gridDim.y * tile_h
            p += cuda.gridDim.z

    return depthwise_separable


@lru_cache(maxsize=None)
def build_pointwise(dtype, tiled=True):
    """``out[i, o] = sum_c weights[o, c] * src[i, c] (+ bias[o])`` over pixels ``i``.

    The weights and a tile of ``tile_n`` pixels go to shared memory; each
    thread computes one (pixel, output channel) pair, channel fastest, so the
    stores are coalesced.
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)

    def pointwise(src, weights, bias, has_bias, tile_n, out):
        n_px, n_in = src.shape
        n_out = out.shape[1]
        smem = cuda.shared.array(0, nbt)
        px_tile = n_out * n_in  # pixels after the weights
        tid = cuda.threadIdx.x
        if tiled:
            for idx in range(tid, n_out * n_in, THREADS):
                o, c = _divmod32(idx, n_in)
                smem[_u(idx)] = weights[_u(o), _u(c)]
        px0 = cuda.blockIdx.x * tile_n
        while px0 < n_px:
            if tiled:
                for idx in range(tid, tile_n * n_in, THREADS):
                    lp, c = _divmod32(idx, n_in)
                    if px0 + lp < n_px:
                        smem[_u(px_tile + idx)] = src[_u(px0 + lp), _u(c)]
                cuda.syncthreads()
            for idx in range(tid, tile_n * n_out, THREADS):
                lp, o = _divmod32(idx, n_out)
                if px0 + lp < n_px:
                    acc = zero
                    for c in range(n_in):
                        if tiled:
                            acc += smem[_u(o * n_in + c)] * smem[_u(px_tile + lp * n_in + c)]
                        else:
                            acc += weights[_u(o), _u(c)] * nbt(src[_u(px0 + lp), _u(c)])
                    if has_bias != 0:
                        acc += bias[_u(o)]
                    out[_u(px0 + lp), _u(o)] = acc
            if tiled:
                cuda.syncthreads()
            px0 += cuda.gridDim.x * tile_n

    return pointwise


# --------------------------------------------------------------------------
# Element-wise kernels on flat (1-D, contiguous) arrays
# --------------------------------------------------------------------------


@lru_cache(maxsize=None)
def build_combine(dtype):
    """``out = values`` or ``values ** 2``, added to ``out`` unless ``first``."""

    def combine(out, values, squares, first):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            v = values[i]
            if squares != 0:
                v = v * v
            if first != 0:
                out[i] = v
            else:
                out[i] = out[i] + v

    return combine


@lru_cache(maxsize=None)
def build_finish_magnitude(dtype):
    """``out = sqrt(out) / divisor``."""

    def finish_magnitude(out, divisor):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = math.sqrt(out[i]) / divisor

    return finish_magnitude


@lru_cache(maxsize=None)
def build_apply_mask(dtype):
    """``out *= mask`` (a uint8 mask of the same shape: NaN stays NaN, as on the CPU)."""

    def apply_mask(out, mask):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = out[i] * mask[i]

    return apply_mask


@lru_cache(maxsize=None)
def build_convert(dtype):
    """``out = src * scale`` computed in float64 and stored as float ``dtype``.

    Float16 to float32, and signed integers scaled as ``img_as_float`` scales
    them (``clamp``: the most negative value maps to -1).
    """

    def convert(src, scale, clamp, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            v = numba.float64(src[i]) * scale
            if clamp != 0 and v < -1.0:
                v = -1.0
            out[i] = v

    return convert


@lru_cache(maxsize=None)
def build_cast(dtype):
    """Cast floats to ``dtype`` with scipy.ndimage's C conversions, as the CPU does.

    Floats round to nearest. Integers and bool follow ``_casting``: the value truncated
    toward zero to a 32-bit integer (64-bit for ``uint32``, ``int64`` and ``uint64``), the
    "indefinite" lowest value where it does not fit (NaN included), then its low bits;
    bool is true where the low byte is not 0, so 0.5 and 256 are both false.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":

        def cast_float(src, out):
            for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
                out[i] = src[i]

        return cast_float
    wide32 = dtype.itemsize < 4 or (dtype.kind == "i" and dtype.itemsize == 4)
    high = dtype.kind == "u" and dtype.itemsize == 8  # values from 2**63 on: uint64 only
    truth = dtype.kind == "b"
    # Truncation toward zero fits from ``low`` (exclusive) to ``bound`` (exclusive): -2**31 - 1
    # is exact in float64, -2**63 - 1 is not, and below -2**63 the floats are whole numbers.
    bound = 2.0**31 if wide32 else 2.0**63
    low = -(2.0**31) - 1.0 if wide32 else -(2.0**63) - 2048.0
    indefinite = np.int64(np.iinfo(np.int32 if wide32 else np.int64).min)
    top = np.int64(np.iinfo(np.int64).min)  # the top bit, flipped for uint64 from 2**63
    store = _cast_type(np.uint8 if truth else dtype)  # keeps the low bits

    def cast_integer(src, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            v = numba.float64(src[i])
            flip = high and v >= bound
            if flip:
                v -= bound
            wide = indefinite
            if v > low and v < bound:
                wide = numba.int64(numba.int32(v)) if wide32 else numba.int64(v)
            if flip:
                wide ^= top
            if truth:
                out[i] = (wide & 255) != 0
            else:
                out[i] = store(wide)

    return cast_integer


@lru_cache(maxsize=None)
def build_gather(dtype):
    """Copy a strided view into a contiguous array: ``out[i]`` = the ``i``-th element in C order.

    ``flat`` is the view's memory from its first element; ``shape`` and
    ``strides`` (in elements) describe it, any number of dimensions.
    """

    def gather(flat, shape, strides, out):
        ndim = shape.size
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            rest = i
            offset = 0
            for d in range(ndim - 1, -1, -1):
                offset += (rest % shape[d]) * strides[d]
                rest //= shape[d]
            out[i] = flat[offset]

    return gather


# Every kernel, by name: (builder, variants). A variant is the builder's second
# argument (``tiled``, or ``max_taps`` for ``separable_2d``); ``_cuda`` launches
# them by (name, dtype, variant) and the tests compile every one to PTX.
BUILDERS = {
    "correlate_x": (build_correlate_x, (None,)),
    "correlate_y": (build_correlate_y, (None,)),
    "correlate_any": (build_correlate_any, (None,)),
    "separable_2d": (build_separable_2d, (None,) + UNROLLED_TAPS),
    "edge_magnitude_3x3": (build_edge_magnitude_3x3, (None,)),
    "correlate_2d": (build_correlate_2d, (True, False)),
    "depthwise": (build_depthwise, (True, False)),
    "depthwise_passes": (build_depthwise_passes, (True, False)),
    "depthwise_separable": (build_depthwise_separable, (None,)),
    "pointwise": (build_pointwise, (True, False)),
    "combine": (build_combine, (None,)),
    "finish_magnitude": (build_finish_magnitude, (None,)),
    "apply_mask": (build_apply_mask, (None,)),
    "convert": (build_convert, (None,)),
    "cast": (build_cast, (None,)),
    "gather": (build_gather, (None,)),
}


def python_kernel(name, dtype, variant=None):
    """The plain Python function of kernel ``name`` for output ``dtype`` (and variant)."""
    builder, _ = BUILDERS[name]
    dtype = np.dtype(dtype)
    return builder(dtype) if variant is None else builder(dtype, variant)


# --------------------------------------------------------------------------
# Kernels specialised on what a plan knows
# --------------------------------------------------------------------------
#
# The kernels below are generated for one plan's constants: the output dtype,
# the border mode of each axis, the tap offsets (so the tap count) of every
# pass, the number of channels and the multiplier. Tap loops then unroll with
# their shared-memory offsets as immediates, the weights are read once into
# registers, and the tile sizes are static. Arrays come flat (1-D) and the
# index arithmetic inside a plane is 32-bit: ``_cuda`` sends planes of fewer
# than 2**31 elements only. Tiles whose source lies wholly inside the image are
# loaded without any border arithmetic. The border maths itself is
# ``_index32``: ``_boundary``'s with 32-bit unsigned remainders.


def _generated(name, source, env):
    """The function ``name`` defined by Python ``source`` run in ``env``."""
    namespace = dict(env)
    exec(compile(source, f"<napari_sepconv kernel {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def _kernel_env(dtype):
    nbt = _cast_type(dtype)
    return {
        "cuda": cuda,
        "math": math,
        "nbt": nbt,
        "zero": np.dtype(dtype).type(0),
        "i32": _i32,
        "u32": _u32,
        "i64": _i64,
        "u64": _u,
        "index32": _index32,
        "index_near32": _index_near32,
        "div32": _div32,
        "divmod32": _divmod32,
    }


# Sobel-like 3x3 edge magnitude: threads per block, output rows per thread.
EDGE3_THREADS = 128
EDGE3_ROWS = 16


@lru_cache(maxsize=None)
def build_edge3(dtype, mode_y, mode_x):
    """``build_edge_magnitude_3x3`` specialised on the border modes, on flat arrays.

    Each thread owns one column and ``EDGE3_ROWS`` rows and slides a 3 x 3
    window down them, reading one new source row per output row. Rows and
    columns inside the image take no border arithmetic; the plane index is
    64-bit, offsets inside a plane 32-bit. ``weights``: ``s0 s1 s2 d0 d2 hs0
    hs1 hs2 hd0 hd2`` as in ``build_edge_magnitude_3x3``.
    """
    nbt = _cast_type(dtype)
    zero = np.dtype(dtype).type(0)
    const_x = mode_x == CONSTANT
    const_y = mode_y == CONSTANT

    def edge3(src, weights, h, w, n_planes, n_strips, cval, pad_smooth, pad_derivative, inv_divisor, out):
        x = _i32(cuda.blockIdx.x) * EDGE3_THREADS + _i32(cuda.threadIdx.x)
        if x >= w:
            return
        s0, s1, s2 = weights[0], weights[1], weights[2]
        d0, d2 = weights[3], weights[4]
        hs0, hs1, hs2 = weights[5], weights[6], weights[7]
        hd0, hd2 = weights[8], weights[9]
        ql = _index32(x - 1, w, mode_x)
        qr = _index32(x + 1, w, mode_x)
        pad_l = const_x and ql < 0
        pad_r = const_x and qr < 0
        if ql < 0:
            ql = x
        if qr < 0:
            qr = x
        plane = _i64(h) * _i64(w)
        p = _i32(cuda.blockIdx.z)
        while p < n_planes:
            base = _i64(p) * plane
            strip = _i32(cuda.blockIdx.y)
            while strip < n_strips:
                y0 = strip * EDGE3_ROWS
                q = _index32(y0 - 1, h, mode_y)
                if const_y and q < 0:
                    a_l = cval
                    a_c = cval
                    a_r = cval
                else:
                    row = base + _i64(q * w)
                    a_l = nbt(src[_u(row + ql)])
                    a_c = nbt(src[_u(row + x)])
                    a_r = nbt(src[_u(row + qr)])
                row = base + _i64(y0 * w)
                b_l = nbt(src[_u(row + ql)])
                b_c = nbt(src[_u(row + x)])
                b_r = nbt(src[_u(row + qr)])
                y_end = min(h, y0 + EDGE3_ROWS)
                y = y0
                while y < y_end:
                    if y + 1 < h:
                        row = base + _i64((y + 1) * w)
                        c_l = nbt(src[_u(row + ql)])
                        c_c = nbt(src[_u(row + x)])
                        c_r = nbt(src[_u(row + qr)])
                    else:
                        q = _index32(y + 1, h, mode_y)
                        if const_y and q < 0:
                            c_l = cval
                            c_c = cval
                            c_r = cval
                        else:
                            row = base + _i64(q * w)
                            c_l = nbt(src[_u(row + ql)])
                            c_c = nbt(src[_u(row + x)])
                            c_r = nbt(src[_u(row + qr)])
                    sm_l = pad_smooth if pad_l else s0 * a_l + s1 * b_l + s2 * c_l
                    sm_r = pad_smooth if pad_r else s0 * a_r + s1 * b_r + s2 * c_r
                    df_l = pad_derivative if pad_l else d0 * a_l + d2 * c_l
                    df_c = d0 * a_c + d2 * c_c
                    df_r = pad_derivative if pad_r else d0 * a_r + d2 * c_r
                    gx = hd0 * sm_l + hd2 * sm_r
                    gy = hs0 * df_l + hs1 * df_c + hs2 * df_r
                    out[_u(base + _i64(y * w + x))] = math.sqrt(gx * gx + gy * gy) * inv_divisor
                    a_l, a_c, a_r = b_l, b_c, b_r
                    b_l, b_c, b_r = c_l, c_c, c_r
                    y += 1
                strip += _i32(cuda.gridDim.y)
            p += _i32(cuda.gridDim.z)

    del zero
    return edge3


# Limits of the generated fused kernel: terms, and taps of all passes together.
FUSED_MAX_TERMS = 4
FUSED_MAX_TAPS = 64


def fused_geometry(col_offsets, row_offsets):
    """``(y_lo, y_span, x_lo, x_span)`` of a fused kernel's offsets (tuples of int tuples)."""
    y_lo = min(min(o) for o in col_offsets)
    x_lo = min(min(o) for o in row_offsets)
    y_span = max(max(o) for o in col_offsets) - y_lo
    x_span = max(max(o) for o in row_offsets) - x_lo
    return y_lo, y_span, x_lo, x_span


def fused_reach_fits(col_offsets, row_offsets, h, w):
    """Whether every tap of a fused kernel on an ``h`` x ``w`` image reads within one line
    length of the line (``_index_near32``: exact from ``-(n - 1)`` to ``2n - 2``): each
    offset, before or after the output, shorter than the line. One-sided kernels count
    (a shifted or causal ``filter2d`` term has no offset 0)."""
    y_lo, y_span, x_lo, x_span = fused_geometry(col_offsets, row_offsets)
    return h > max(y_lo + y_span, -y_lo) and w > max(x_lo + x_span, -x_lo)


def fused_totals_shared(dtype, n_terms):
    """Whether ``build_fused`` keeps its running totals in shared memory: float64 sums of
    several terms, whose totals (two registers each) live through every later term's
    vertical pass and would spill at the launch bounds' 64 registers."""
    return np.dtype(dtype).itemsize == 8 and n_terms > 1


def fused_shared_elements(col_offsets, row_offsets, dtype=np.float32):
    """Shared-memory elements of ``build_fused``: the input tile, one term's vertical pass
    and, where ``fused_totals_shared``, the block's totals."""
    _, y_span, _, x_span = fused_geometry(col_offsets, row_offsets)
    totals = TY * TX if fused_totals_shared(dtype, len(col_offsets)) else 0
    return (TY + y_span + TY) * (TX + x_span) + totals


@lru_cache(maxsize=None)
def build_fused(dtype, mode_y, mode_x, col_offsets, row_offsets, combine, accumulate):
    """``build_separable_2d`` generated for one plan: taps, modes and combine as constants.

    ``col_offsets[t]`` and ``row_offsets[t]`` are term ``t``'s tap offsets.
    Sums run in the order of ``build_separable_2d`` (and ``_cpu``), tap by
    tap. The arguments: ``src, h, w, n_planes, n_ytiles, cval, divisor``, the
    weights as scalars (every term's column taps, then every term's row taps,
    then each term's ``pad_x``: the vertical pass outside the image along x in
    constant mode), ``out``; images flat. As kernel parameters the weights
    need no device memory, no upload and no table lookup per tap. Every offset
    must be shorter than the image along its axis (``fused_reach_fits``).
    """
    y_lo, y_span, x_lo, x_span = fused_geometry(col_offsets, row_offsets)
    tw, th = TX + x_span, TY + y_span
    weights = [f"c{t}_{a}" for t, offs in enumerate(col_offsets) for a in range(len(offs))]
    weights += [f"r{t}_{b}" for t, offs in enumerate(row_offsets) for b in range(len(offs))]
    weights += [f"pad{t}" for t in range(len(col_offsets))]
    lines = [
        f"def fused(src, h, w, n_planes, n_ytiles, cval, divisor, {', '.join(weights)}, out):",
        f"    tile = cuda.shared.array({th * tw}, nbt)",
        f"    mid = cuda.shared.array({TY * tw}, nbt)",
        "    tx = i32(cuda.threadIdx.x)",
        "    ty = i32(cuda.threadIdx.y)",
    ]
    emit = lines.append
    shared_totals = fused_totals_shared(dtype, len(col_offsets))
    if shared_totals:  # each thread its own ROWS slots: no synchronisation needed
        emit(f"    tots = cuda.shared.array({TY * TX}, nbt)")

    def tot(rr):
        return f"tots[u64((ty + {rr * BY}) * {TX} + tx)]" if shared_totals else f"tot{rr}"

    emit(f"    x0 = i32(cuda.blockIdx.x) * {TX}")
    emit("    x = x0 + tx")
    emit(f"    gx0 = x0 + {x_lo}")
    emit("    plane = i64(h) * i64(w)")
    emit("    p = i32(cuda.blockIdx.z)")
    emit("    while p < n_planes:")
    emit("        base = i64(p) * plane")
    emit("        by = i32(cuda.blockIdx.y)")
    emit("        while by < n_ytiles:")
    emit(f"            y0 = by * {TY}")
    emit(f"            gy0 = y0 + {y_lo}")
    # the tile: plain loads inside the image, border maths only at the edges
    emit(f"            if gy0 >= 0 and gy0 + {th} <= h and gx0 >= 0 and gx0 + {tw} <= w:")
    emit("                r = ty")
    emit(f"                while r < {th}:")
    emit("                    row = base + i64((gy0 + r) * w + gx0)")
    emit("                    c = tx")
    emit(f"                    while c < {tw}:")
    emit(f"                        tile[u64(r * {tw} + c)] = nbt(src[u64(row + c)])")
    emit(f"                        c += {BX}")
    emit(f"                    r += {BY}")
    emit("            else:")
    emit("                r = ty")
    emit(f"                while r < {th}:")
    emit(f"                    qy = index_near32(gy0 + r, h, {mode_y})")
    emit("                    c = tx")
    emit(f"                    while c < {tw}:")
    emit(f"                        qx = index_near32(gx0 + c, w, {mode_x})")
    emit("                        if qy < 0:")
    emit(f"                            tile[u64(r * {tw} + c)] = cval")
    emit("                        elif qx < 0:")
    emit(f"                            tile[u64(r * {tw} + c)] = zero")
    emit("                        else:")
    emit(f"                            tile[u64(r * {tw} + c)] = nbt(src[u64(base + i64(qy * w + qx))])")
    emit(f"                        c += {BX}")
    emit(f"                    r += {BY}")
    for rr in range(ROWS):
        if accumulate:
            emit(f"            y = y0 + ty + {rr * BY}")
            emit("            if y < h and x < w:")
            emit(f"                {tot(rr)} = out[u64(base + i64(y * w + x))]")
            emit("            else:")
            emit(f"                {tot(rr)} = zero")
        else:
            emit(f"            {tot(rr)} = zero")
    for t, (cols, rows) in enumerate(zip(col_offsets, row_offsets)):
        emit("            cuda.syncthreads()")
        emit("            r = ty")
        emit(f"            while r < {TY}:")
        emit("                c = tx")
        emit(f"                while c < {tw}:")
        emit(f"                    at = r * {tw} + c")
        indent = "                    "
        if mode_x == CONSTANT:
            emit("                    gx = gx0 + c")
            emit("                    if gx < 0 or gx >= w:")
            emit(f"                        v = pad{t}")
            emit("                    else:")
            indent += "    "
        emit(f"{indent}v = zero")
        for a, off in enumerate(cols):
            emit(f"{indent}v += c{t}_{a} * tile[u64(at + {(off - y_lo) * tw})]")
        emit("                    mid[u64(at)] = v")
        emit(f"                    c += {BX}")
        emit(f"                r += {BY}")
        emit("            cuda.syncthreads()")
        for rr in range(ROWS):
            emit(f"            at = (ty + {rr * BY}) * {tw} + tx")
            emit("            hs = zero")
            for b, off in enumerate(rows):
                emit(f"            hs += r{t}_{b} * mid[u64(at + {off - x_lo})]")
            emit(f"            {tot(rr)} += hs" if combine == SUM else f"            {tot(rr)} += hs * hs")
    for rr in range(ROWS):
        emit(f"            y = y0 + ty + {rr * BY}")
        emit("            if y < h and x < w:")
        value = f"math.sqrt({tot(rr)}) / divisor" if combine == MAGNITUDE else tot(rr)
        emit(f"                out[u64(base + i64(y * w + x))] = {value}")
    emit("            cuda.syncthreads()")
    emit("            by += i32(cuda.gridDim.y)")
    emit("        p += i32(cuda.gridDim.z)")
    return _generated("fused", "\n".join(lines) + "\n", _kernel_env(dtype))


# Channel kernels generated for one plan: tap offsets, zero-weight taps, channel counts,
# multiplier, border modes and tile size are constants, so the tap loop unrolls with its
# shared-memory offsets as immediates and every index divides by a constant (a multiply).
# The weights stay a small device array, read per tap (threads of a warp read neighbouring
# channels' weights: one coalesced load). Arrays come flat; planes of fewer than 2**31
# elements (``_cuda`` checks).


def _emit_channel_tile(emit, taps, tile, n_in, mode_y, mode_x, first_row):
    """Lines loading the input of a ``tile`` of outputs (its first row ``first_row``, its
    first column ``x0``) with the halo of ``taps``, all channels of the plane at
    ``base_in``, into ``smem``, as ``_load_channel_tile``: one contiguous run a row where
    the tile lies inside the image, border maths only otherwise. Returns the loaded rows
    and columns."""
    tap_y, tap_x = taps
    th, tw = tile[0] + max(tap_y) - min(tap_y), tile[1] + max(tap_x) - min(tap_x)
    emit(f"            y_first = {first_row} + {min(tap_y)}")
    emit(f"            x_first = x0 + {min(tap_x)}")
    run, total = tw * n_in, th * tw * n_in
    emit(f"            if y_first >= 0 and y_first + {th} <= h and x_first >= 0 and x_first + {tw} <= w:")
    emit("                idx = tid")
    emit(f"                while idx < {total}:")
    emit(f"                    r, rest = divmod32(idx, {run})")
    emit(f"                    at = base_in + i64((y_first + r) * w + x_first) * {n_in} + rest")
    emit("                    smem[u64(idx)] = nbt(src[u64(at)])")
    emit(f"                    idx += {THREADS}")
    emit("            else:")
    emit("                idx = tid")
    emit(f"                while idx < {total}:")
    emit(f"                    pix, ch = divmod32(idx, {n_in})")
    emit(f"                    r, c = divmod32(pix, {tw})")
    emit(f"                    qy = index32(y_first + r, h, {mode_y})")
    emit(f"                    qx = index32(x_first + c, w, {mode_x})")
    emit("                    if qy < 0 or qx < 0:")
    emit("                        smem[u64(idx)] = cval")
    emit("                    else:")
    emit(f"                        smem[u64(idx)] = nbt(src[u64(base_in + i64(qy * w + qx) * {n_in} + ch)])")
    emit(f"                    idx += {THREADS}")
    emit("            cuda.syncthreads()")
    return th, tw


def _emit_depthwise_sum(emit, indent, taps, has_zero, tw, n_in, n_out):
    """Lines summing depthwise channel ``k`` at tile index ``at`` (its tap at the offsets'
    minimum) into ``acc``, taps in order, a zero weight left out (``_depthwise_from_tile``)."""
    tap_y, tap_x = taps
    y_lo, x_lo = min(tap_y), min(tap_x)
    emit(f"{indent}acc = zero")
    for t, (dy, dx, zero_here) in enumerate(zip(tap_y, tap_x, has_zero)):
        tap = (f"acc += wt * smem[u64(at + {((dy - y_lo) * tw + dx - x_lo) * n_in})]",)
        _emit_weighted(emit, indent, "wt", f"tap_w[u64({t * n_out} + k)]", zero_here, tap)


def _emit_weighted(emit, indent, weight, load, zero_here, tap):
    """Lines reading ``weight = load``, then the ``tap`` lines that use it, left out where
    the weight is zero if ``zero_here`` (some channel has a zero weight at this tap:
    ``_cpu`` skips those, which keeps a NaN or inf under a zero weight local)."""
    emit(f"{indent}{weight} = {load}")
    if zero_here:
        emit(f"{indent}if {weight} != 0:")
        indent += "    "
    for line in tap:
        emit(indent + line)


def _channel_head(signature, tile, n_in, n_out, rows):
    """Opening lines of a generated channel kernel ``signature``: loops over planes and over
    bands of ``tile[0]`` of its ``rows`` output rows (``r0`` the band's first), ``x0`` the
    tile's first column, ``base_in`` and ``base_out`` the plane's first elements."""
    tile_h, tile_w = tile
    return [
        f"def {signature}:",
        "    smem = cuda.shared.array(0, nbt)",
        "    tid = i32(cuda.threadIdx.x)",
        f"    x0 = i32(cuda.blockIdx.x) * {tile_w}",
        f"    plane_in = i64(h) * i64(w) * {n_in}",
        f"    plane_out = i64({rows}) * i64(w) * {n_out}",
        "    p = i32(cuda.blockIdx.z)",
        "    while p < n_planes:",
        "        base_in = i64(p) * plane_in",
        "        base_out = i64(p) * plane_out",
        f"        r0 = i32(cuda.blockIdx.y) * {tile_h}",
        f"        while r0 < {rows}:",
    ]


def _channel_tail(emit, tile_h):
    """Closing lines of ``_channel_head``'s loops."""
    emit("            cuda.syncthreads()")
    emit(f"            r0 += i32(cuda.gridDim.y) * {tile_h}")
    emit("        p += i32(cuda.gridDim.z)")


@lru_cache(maxsize=None)
def build_depthwise_plan(dtype, mode_y, mode_x, taps, has_zero, n_in, multiplier, tile):
    """``build_depthwise`` (tiled) generated for one plan.

    ``taps``: ``(tap_y, tap_x)``, tuples of offsets; ``has_zero``: per tap,
    whether some channel's weight is zero there; ``tile``: ``(tile_h,
    tile_w)``. Arguments: ``src`` (P*H*W*C), ``tap_w`` (taps*C*M), ``h, w,
    n_planes, n_rows, row_start, cval``, ``out`` (P*R*W*C*M).
    """
    tile_h, tile_w = tile
    n_out = n_in * multiplier
    signature = "depthwise(src, tap_w, h, w, n_planes, n_rows, row_start, cval, out)"
    lines = _channel_head(signature, tile, n_in, n_out, "n_rows")
    emit = lines.append
    _, tw = _emit_channel_tile(emit, taps, tile, n_in, mode_y, mode_x, "row_start + r0")
    emit("            idx = tid")
    emit(f"            while idx < {tile_h * tile_w * n_out}:")
    emit(f"                pix, k = divmod32(idx, {n_out})")
    emit(f"                lr, lc = divmod32(pix, {tile_w})")
    emit("                if r0 + lr < n_rows and x0 + lc < w:")
    emit(f"                    at = (lr * {tw} + lc) * {n_in} + div32(k, {multiplier})")
    _emit_depthwise_sum(emit, "                    ", taps, has_zero, tw, n_in, n_out)
    emit(f"                    out[u64(base_out + i64((r0 + lr) * w + x0 + lc) * {n_out} + k)] = acc")
    emit(f"                idx += {THREADS}")
    _channel_tail(emit, tile_h)
    return _generated("depthwise", "\n".join(lines) + "\n", _kernel_env(dtype))


@lru_cache(maxsize=None)
def build_depthwise_passes_plan(dtype, mode_y, mode_x, cols, rows, n_in, multiplier, tile):
    """``build_depthwise_passes`` (tiled) generated for one plan.

    ``cols`` and ``rows``: ``(offsets, zero flags)`` of the shared vertical and
    horizontal tap lists (``_lowering.shared_taps``). Arguments: ``src``
    (P*H*W*C), ``col_w`` (taps*C*M), ``row_w`` (taps*C*M), ``pad_x`` (C*M),
    ``h, w, n_planes, n_rows, row_start, cval``, ``out`` (P*R*W*C*M). Zero
    weights are left out per channel, as ``_cpu.depthwise_passes_2d``.
    """
    tile_h, tile_w = tile
    (col_off, col_zero), (row_off, row_zero) = cols, rows
    x_lo = min(row_off)
    tw = tile_w + max(row_off) - x_lo
    n_out = n_in * multiplier
    signature = "depthwise_passes(src, col_w, row_w, pad_x, h, w, n_planes, n_rows, row_start, cval, out)"
    lines = _channel_head(signature, tile, n_in, n_out, "n_rows")
    emit = lines.append
    # the vertical pass of the tile's rows and x halo, every channel, into shared memory
    emit("            idx = tid")
    emit(f"            while idx < {tile_h * tw * n_out}:")
    emit(f"                pix, k = divmod32(idx, {n_out})")
    emit(f"                lr, c = divmod32(pix, {tw})")
    emit("                y = row_start + r0 + lr")
    emit(f"                qx = index32(x0 + {x_lo} + c, w, {mode_x})")
    body = "                "
    if mode_x == CONSTANT:
        emit(f"{body}if qx < 0:")
        emit(f"{body}    acc = pad_x[u64(k)]")
        emit(f"{body}else:")
        body += "    "
    emit(f"{body}at = base_in + i64(qx) * {n_in} + div32(k, {multiplier})")
    emit(f"{body}acc = zero")
    for a, (off, zero_here) in enumerate(zip(col_off, col_zero)):
        tap = (
            f"qy = index32(y + {off}, h, {mode_y})",
            "if qy < 0:",
            "    acc += wa * cval",
            "else:",
            f"    acc += wa * nbt(src[u64(at + i64(qy) * w * {n_in})])",
        )
        _emit_weighted(emit, body, "wa", f"col_w[u64({a * n_out} + k)]", zero_here, tap)
    emit("                smem[u64(idx)] = acc")
    emit(f"                idx += {THREADS}")
    emit("            cuda.syncthreads()")
    # the horizontal pass from shared memory
    emit("            idx = tid")
    emit(f"            while idx < {tile_h * tile_w * n_out}:")
    emit(f"                pix, k = divmod32(idx, {n_out})")
    emit(f"                lr, lc = divmod32(pix, {tile_w})")
    emit("                if r0 + lr < n_rows and x0 + lc < w:")
    emit(f"                    at = (lr * {tw} + lc) * {n_out} + k")
    emit("                    acc = zero")
    for b, (off, zero_here) in enumerate(zip(row_off, row_zero)):
        tap = (f"acc += wb * smem[u64(at + {(off - x_lo) * n_out})]",)
        _emit_weighted(emit, "                    ", "wb", f"row_w[u64({b * n_out} + k)]", zero_here, tap)
    emit(f"                    out[u64(base_out + i64((r0 + lr) * w + x0 + lc) * {n_out} + k)] = acc")
    emit(f"                idx += {THREADS}")
    _channel_tail(emit, tile_h)
    return _generated("depthwise_passes", "\n".join(lines) + "\n", _kernel_env(dtype))


@lru_cache(maxsize=None)
def build_depthwise_separable_plan(dtype, mode_y, mode_x, taps, has_zero, n_in, multiplier, n_out, tile):
    """``build_depthwise_separable`` generated for one plan (as ``build_depthwise_plan``).

    Arguments: ``src`` (P*H*W*C), ``tap_w`` (taps*C*M), ``pw`` (C_out*C*M),
    ``bias`` (C_out), ``has_bias, h, w, n_planes, cval``, ``out`` (P*H*W*C_out).
    """
    tile_h, tile_w = tile
    n_mid = n_in * multiplier
    signature = "depthwise_separable(src, tap_w, pw, bias, has_bias, h, w, n_planes, cval, out)"
    lines = _channel_head(signature, tile, n_in, n_out, "h")
    emit = lines.append
    th, tw = _emit_channel_tile(emit, taps, tile, n_in, mode_y, mode_x, "r0")
    mid = th * tw * n_in  # where the depthwise result starts in shared memory
    emit("            idx = tid")
    emit(f"            while idx < {tile_h * tile_w * n_mid}:")
    emit(f"                pix, k = divmod32(idx, {n_mid})")
    emit(f"                lr, lc = divmod32(pix, {tile_w})")
    emit(f"                at = (lr * {tw} + lc) * {n_in} + div32(k, {multiplier})")
    _emit_depthwise_sum(emit, "                ", taps, has_zero, tw, n_in, n_mid)
    emit(f"                smem[u64({mid} + idx)] = acc")
    emit(f"                idx += {THREADS}")
    emit("            cuda.syncthreads()")
    emit("            idx = tid")
    emit(f"            while idx < {tile_h * tile_w * n_out}:")
    emit(f"                pix, o = divmod32(idx, {n_out})")
    emit(f"                lr, lc = divmod32(pix, {tile_w})")
    emit("                if r0 + lr < h and x0 + lc < w:")
    emit("                    acc = zero")
    emit(f"                    at = {mid} + pix * {n_mid}")
    emit(f"                    row = o * {n_mid}")
    emit(f"                    for k in range({n_mid}):")
    emit("                        acc += pw[u64(row + k)] * smem[u64(at + k)]")
    emit("                    if has_bias != 0:")
    emit("                        acc += bias[u64(o)]")
    emit(f"                    out[u64(base_out + i64((r0 + lr) * w + x0 + lc) * {n_out} + o)] = acc")
    emit(f"                idx += {THREADS}")
    _channel_tail(emit, tile_h)
    return _generated("depthwise_separable", "\n".join(lines) + "\n", _kernel_env(dtype))


@lru_cache(maxsize=None)
def build_pointwise_plan(dtype, n_in, n_out, tile_n, has_bias):
    """``build_pointwise`` (tiled) generated for one plan: channel counts, pixel tile and
    bias as constants, the channel loop unrolled. Arguments: ``src`` (N*C), ``weights``
    (C_out*C), ``bias`` (C_out), ``n_px``, ``out`` (N*C_out)."""
    px_tile = n_out * n_in  # the pixels' place in shared memory, after the weights
    lines = [
        "def pointwise(src, weights, bias, n_px, out):",
        "    smem = cuda.shared.array(0, nbt)",
        "    tid = i32(cuda.threadIdx.x)",
        "    idx = tid",
        f"    while idx < {n_out * n_in}:",
        "        smem[u64(idx)] = weights[u64(idx)]",
        f"        idx += {THREADS}",
        f"    px0 = i64(cuda.blockIdx.x) * {tile_n}",
        "    while px0 < n_px:",
        "        idx = tid",
        f"        while idx < {tile_n * n_in}:",
        f"            if px0 * {n_in} + idx < n_px * {n_in}:",
        f"                smem[u64({px_tile} + idx)] = nbt(src[u64(px0 * {n_in} + idx)])",
        f"            idx += {THREADS}",
        "        cuda.syncthreads()",
        "        idx = tid",
        f"        while idx < {tile_n * n_out}:",
        f"            lp, o = divmod32(idx, {n_out})",
        "            if px0 + lp < n_px:",
        "                acc = zero",
        f"                row = o * {n_in}",
        f"                at = {px_tile} + lp * {n_in}",
    ]
    emit = lines.append
    for c in range(n_in):
        emit(f"                acc += smem[u64(row + {c})] * smem[u64(at + {c})]")
    if has_bias:
        emit("                acc += bias[u64(o)]")
    emit(f"                out[u64((px0 + lp) * {n_out} + o)] = acc")
    emit(f"            idx += {THREADS}")
    emit("        cuda.syncthreads()")
    emit(f"        px0 += i64(cuda.gridDim.x) * {tile_n}")
    return _generated("pointwise", "\n".join(lines) + "\n", _kernel_env(dtype))


def fused_weight_count(col_offsets, row_offsets):
    """Scalar weight parameters of ``build_fused``."""
    return sum(map(len, col_offsets)) + sum(map(len, row_offsets)) + len(col_offsets)


# Launch bounds of ``build_fused``: 4 blocks of 256 threads per SM (64 registers, half
# occupancy). Every kernel tried fits them without spilling (``ptxas`` for sm_80 and sm_90,
# float32 and float64, 1-4 terms, up to ``FUSED_MAX_TAPS``, every border mode); should one
# spill on another architecture, ``_cuda`` compiles it again with the roomier bounds (128
# registers, a quarter occupancy).
FUSED_BOUNDS = (THREADS, 4)
FUSED_ROOMIER_BOUNDS = (THREADS, 2)


EDGE3_BOUNDS = (EDGE3_THREADS, 8)

# Launch bounds of the channel kernels (blocks of ``THREADS``): four blocks per SM, so at
# most 64 registers a thread and half occupancy; they fit without spilling.
CHANNEL_BOUNDS = (THREADS, 4)
BOUNDS = {
    "depthwise": CHANNEL_BOUNDS,
    "depthwise_passes": CHANNEL_BOUNDS,
    "depthwise_separable": CHANNEL_BOUNDS,
    "pointwise": CHANNEL_BOUNDS,
}
