"""Host side of the running-sum (uniform) filter, for both backends.

:func:`uniform_pass` filters one axis: it lays out the line extension (which
sample each position of the extended line reads, as ``_boundary`` defines the
modes) and hands the lines to the CPU kernels (``_uniform_kernels``) or the CUDA
kernel (``_uniform_cuda``), which perform the same arithmetic.
"""

import functools
import math

import numpy as np

from ._boundary import CONSTANT, MIRROR, NEAREST, REFLECT, WRAP


def spacing(size):
    """Anchor spacing ``K`` of a window of ``size``: a multiple of 128, at least ``2 * size``.

    Recomputing a window at each anchor costs ``size / K <= 1/2`` additions per sample.
    """
    return 128 * ((int(size) + 63) // 64)


def extension(n, size, before, mode):
    """Index of the sample read at each of the ``n + size - 1`` positions of an extended line.

    Position ``k`` stands for line position ``k - before``; -1 marks ``cval``.
    """
    i = np.arange(n + size - 1, dtype=np.int64) - before
    if mode == CONSTANT:
        return np.where((i >= 0) & (i < n), i, -1)
    if mode == NEAREST:
        return np.clip(i, 0, n - 1)
    if mode == WRAP:
        return i % n
    if mode == REFLECT:
        m = i % (2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if mode == MIRROR:
        if n == 1:
            return np.zeros_like(i)
        period = 2 * n - 2
        m = i % period
        return np.where(m < n, m, period - m)
    raise ValueError(f"unknown mode code {mode}")


def divides(dtype):
    """Whether means are ``sum / size`` (integer input: exact sums, correctly rounded
    means) rather than ``sum * (1 / size)`` (float input)."""
    return np.dtype(dtype).kind in "biu"


def _flagged_pieces(flags, K, blocks):
    """(outer, segment start, (first column, end column)) of each flagged task of
    :func:`_uniform_kernels.middle_axis` or ``last_axis`` (``flags`` (outer, segments, blocks
    of columns), one block of one column along the last axis)."""
    from ._uniform_kernels import COLUMNS

    outer_ids, segs, cols = np.nonzero(flags)
    columns = np.stack([cols * COLUMNS, np.minimum((cols + 1) * COLUMNS, blocks)], axis=1)
    return outer_ids.astype(np.int64), (segs * K).astype(np.int64), columns.astype(np.int64)


def uniform_pass(engine_name, src, axis, size, origin, mode, cval, dtype, out=None):
    """Mean over ``size`` samples along ``axis`` of the contiguous kernel input ``src``.

    Window of output ``i``: inputs ``i - (size // 2 + origin)`` to ``i + size - 1 -
    (size // 2 + origin)``; the running sums are anchored every
    :func:`spacing` outputs from index 0 of ``axis``. Returns a
    new ``dtype`` (float32 or float64) array on the side ``src`` lives on, or, on
    the CPU, ``out`` filled (a C-contiguous ``dtype`` array of ``src``'s shape that
    shares no memory with it).
    """
    shape = src.shape
    n = shape[axis]
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1 :])
    K = spacing(size)
    source = _source(n, size, origin, mode, K)
    divide = divides(src.dtype)
    if engine_name == "cuda":
        from . import _uniform_cuda

        return _uniform_cuda.uniform_pass(src, outer, n, inner, source, size, K, cval, divide, dtype)
    from . import _cpu
    from ._streaming import STREAM_BYTES
    from ._uniform_kernels import COLUMNS, fix_segments

    out = np.empty(shape, dtype) if out is None else out
    if out.size == 0:
        return out
    src = np.ascontiguousarray(src)
    cval = np.float64(cval)
    n_seg = -(-n // K)
    src3 = src.reshape(outer, n, inner)
    out3 = out.reshape(outer, n, inner)
    # per task, whether a sum met a non-finite value (its segment is then done again); one
    # block of columns along the last axis
    flags = np.zeros((outer, n_seg, -(-inner // COLUMNS)), np.bool_)
    if inner == 1:
        _cpu.run(
            _cpu._tiered("uniform_last_axis"),
            src.reshape(outer, n),
            source,
            size // 2 + origin,
            size,
            K,
            cval,
            divide,
            out.reshape(outer, n),
            flags.reshape(outer, n_seg),
            out.nbytes >= STREAM_BYTES,
        )
    else:
        _cpu.run(_cpu._tiered("uniform_middle_axis"), src3, source, size, K, cval, divide, out3, flags)
    if np.count_nonzero(flags):
        fix_segments(src3, source, size, K, cval, divide, out3, *_flagged_pieces(flags, K, inner))
    return out


def uniform_last_two(src, first, second, cval, dtype, out=None):
    """The passes ``first`` then ``second`` (``(axis, size, origin, mode)``, along the
    last two axes of the contiguous CPU input ``src``) fused into a new ``dtype``
    array (or into ``out``, as :func:`uniform_pass` takes it): the values of
    :func:`uniform_pass` for ``first`` into float64, then for ``second`` into
    ``dtype`` (float input, so ``sum * (1 / size)``).

    Returns None where a sum met a non-finite value: the caller then runs the two
    passes, which handle those.
    """
    from . import _cpu
    from ._streaming import STREAM_BYTES

    shape = src.shape
    out = np.empty(shape, dtype) if out is None else out
    if out.size == 0:
        return out
    n0, n1 = shape[-2:]
    outer = math.prod(shape[:-2])
    (_, size0, origin0, mode0), (_, size1, origin1, mode1) = first, second
    K0, K1 = spacing(size0), spacing(size1)
    flags = np.zeros((outer, -(-n0 // K0)), np.bool_)
    _cpu.run(
        _cpu._tiered("uniform_last_two_axes"),
        np.ascontiguousarray(src).reshape(outer, n0, n1),
        _source(n0, size0, origin0, mode0, K0),
        size0,
        K0,
        _source(n1, size1, origin1, mode1, K1),
        size1 // 2 + origin1,
        size1,
        K1,
        np.float64(cval),
        divides(src.dtype),
        False,
        out.reshape(outer, n0, n1),
        flags,
        out.nbytes >= STREAM_BYTES,
    )
    return None if np.count_nonzero(flags) else out


@functools.lru_cache(maxsize=64)
def _source(n, size, origin, mode, K):
    """:func:`extension` of a line, padded so that a last segment can read ``K`` more; made
    once per line layout (calls on planes or previews repeat it), never written."""
    if not n:
        return np.zeros(0, np.int64)
    source = extension(n, size, size // 2 + origin, mode)
    return np.concatenate([source, np.zeros(K, np.int64)])


def uniform_last_axis_first(engine, src, plan, cval, dtype, pair):
    """:func:`uniform_pass` after :func:`uniform_pass` for the ``plan`` (``(axis, size,
    origin, mode)`` in turn, the last along the last axis) on the CPU input ``src``, run on a
    copy with its last axis in front (``_narrow_tail``): a new ``dtype`` array of ``src``'s
    shape. Where ``pair``, the pass before the last is kept in float64, as
    :func:`uniform_last_two` keeps it.

    Along a last axis of a few samples the running sums have a line of three samples each to
    sweep; in front, each pass runs over wide rows. The sums are anchored along each axis
    whatever the layout, so the values are the same.
    """
    from ._narrow_tail import last_in_front, tail_first
    from ._scratch import Alternating

    def run(moved, new):
        middles = Alternating(new, moved.shape, dtype)
        cur = moved
        for i, (axis, size, origin, mode) in enumerate(plan):
            if pair and i == len(plan) - 2:
                target = new(moved.shape, np.float64)
            else:
                target = middles.other_than(cur)
            along = last_in_front(axis, src.ndim)
            cur = uniform_pass("cpu", cur, along, size, origin, mode, cval, target.dtype, target)
        return cur, None

    result, _ = tail_first(engine, src, src.ndim - 1, run)
    return result
