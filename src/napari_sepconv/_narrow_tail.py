"""Filters whose unfiltered last axes hold only a few samples, run with those axes in front.

A pass along an axis is vectorised over the samples that follow it in memory (``_passes``):
along the rows of an RGB image, three. Such passes ran 5 to 20 times slower
than the same passes over the colour planes (``gaussian_filter(rgb, (2, 2, 0))`` on a
2048 x 2048 x 3 image: 250 ms, against 13 ms for the planes). Where the unfiltered last
axes hold at most ``engine.narrow_inner`` samples, the filter runs instead on a copy with
those axes moved to the front, as one axis, and the result is copied back into the
input's layout. Every line is filtered with the same operations in the same order, so the
values are the same. The two copies cost less than the slow passes took, except on small
images (under :data:`MIN_SAMPLES`), which are filtered in their own layout.

A filtered narrow last axis (an RGB image filtered as a volume: ``sobel(rgb)`` or
``gaussian(rgb, 2)`` without ``channel_axis``) goes to the front too
(:func:`last_axis_first`). Its last two axes ran through the fused kernel as planes of rows
three samples wide: ``sobel`` of a 512 x 512 x 3 image took 43 ms, against 1.5 ms for
3 x 512 x 512. With the last axis in front, each step runs the operations of the input's own
layout on wide rows: the first passes as they are; the fused kernel's vertical pass along
the rows (``engine.vertical_along_rows``: per output, the chain of fused multiply-adds from
zero over the taps inside the image, then in constant mode the outside taps' weights times
``cval``, added last); and its horizontal pass and combination (sum or magnitude) along the
moved axis, a plane per tap (``engine.combine_planes``). So the bytes are the same (which
NaN a NaN is aside), and a dask block is filtered alike whichever path it takes. A
magnitude that the 3x3 edge kernel runs keeps the input's layout (that kernel's own
arithmetic).
"""

import math
from dataclasses import dataclass

import numpy as np

from ._boundary import _source_index
from ._lowering import edge_operator_3x3
from ._passes import (
    MAGNITUDE,
    SUM,
    SUM_SQUARES,
    LoweredTerms,
    axes_renumbered,
    last_filtered_axis,
    run_lowered,
)
from ._scratch import Alternating

MIN_SAMPLES = 4096
"""Images of fewer samples are filtered in their own layout: up to 32 x 32 x 3 the copies
took about what they saved, from 48 x 48 x 3 on they halved the time."""


def narrow_tail(engine, shape, last):
    """The first of the axes after ``last`` (the last filtered axis) of a kernel input of
    ``shape`` where they hold from one to ``engine.narrow_inner`` samples (and the input at
    least :data:`MIN_SAMPLES`), else None."""
    if last is None or last < 0 or last >= len(shape) - 1 or math.prod(shape) < MIN_SAMPLES:
        return None
    return last + 1 if 0 < math.prod(shape[last + 1 :]) <= engine.narrow_inner else None


def tail_first(engine, src, tail, run):
    """``(result, extra)`` of ``run(moved, new)`` on a copy of ``src`` with its axes from
    ``tail`` on moved to the front as one axis.

    ``run`` returns ``(moved_result, extra)``, ``moved_result`` an engine array of the
    moved shape; ``new`` makes scratch arrays (``engine.scratch_arrays``) that live as long
    as the call. ``result`` is ``moved_result`` copied back into a new C-contiguous array
    of ``src``'s shape.
    """
    merged = src.reshape(src.shape[:tail] + (math.prod(src.shape[tail:]),))
    moved_shape = merged.shape[tail:] + merged.shape[:tail]
    with engine.scratch_arrays() as new:
        moved = engine.channels_first(merged, tail, new(moved_shape, merged.dtype))
        moved_result, extra = run(moved, new)
        result = engine.empty(merged.shape, moved_result.dtype)
        engine.channels_back(moved_result, tail, result)
    return result.reshape(src.shape), extra


@dataclass(frozen=True, eq=False)
class VerticalPass:
    """A term's vertical pass of the fused kernel, run along the rows of the moved layout:
    ``engine.vertical_along_rows``' arguments but the arrays."""

    offsets: np.ndarray
    weights: np.ndarray
    mode: int
    cval: np.floating


@dataclass(frozen=True, eq=False)
class PlanesPass:
    """A term's share of the fused kernel's horizontal pass and combination, run along the
    first axis (the input's last, moved in front): ``engine.combine_planes``' arguments but
    the planes, for one term."""

    sources: np.ndarray
    weights: np.ndarray
    pad: np.floating
    combine: int
    inv_divisor: np.floating
    accumulate: bool


@dataclass(frozen=True, eq=False)
class LastAxisFirst:
    """``lowered`` for its kernel input with the last axis moved to the front.

    Unfused terms: ``unfused``, the same passes renumbered. Fused groups: per group, its
    first passes renumbered, then per term a pair: its :class:`VerticalPass` along the rows
    of the moved layout, and its :class:`PlanesPass`. A term continues the sum (or the total of
    squares) the one before it left in the result, as the fused kernel's chain continues
    from term to term, so one term's values are held at a time.
    """

    unfused: LoweredTerms | None
    groups: tuple
    dtype: np.dtype


def last_in_front(axis, ndim):
    """The number of ``axis`` of an ``ndim``-dimensional kernel input once its last axis is
    moved to the front."""
    return 0 if axis == ndim - 1 else axis + 1


def short_last_axis(engine, shape):
    """Whether the last axis of a kernel input of ``shape`` holds from one to
    ``engine.narrow_inner`` samples, in an input of at least two axes and
    :data:`MIN_SAMPLES` samples: the inputs that a filter of that axis runs with it in front."""
    if engine.narrow_inner <= 0 or len(shape) < 2:  # never on the GPU
        return False
    shape = tuple(shape)  # a device array's shape may not take negative indices
    return 0 < shape[-1] <= engine.narrow_inner and math.prod(shape) >= MIN_SAMPLES


def narrow_last(engine, shape, lowered):
    """Whether a kernel input of ``shape`` runs ``lowered`` with its last axis in front: that
    axis is filtered and short (:func:`short_last_axis`). Not for a fused group that the 3x3
    edge kernel runs (a lone magnitude of 3x3 edge operators), whose arithmetic is its own."""
    if not short_last_axis(engine, shape):
        return False
    last = last_filtered_axis(lowered)
    if last is not None:
        return last == len(shape) - 1
    return not any(
        f.combine == MAGNITUDE and not f.accumulate and edge_operator_3x3(f.cols, f.rows) is not None
        for _, f in lowered.groups
    )


def last_axis_first_lowering(lowered, shape):
    """The :class:`LastAxisFirst` of ``lowered`` for a kernel input of ``shape``."""
    renumbered = axes_renumbered(lowered, lambda axis: last_in_front(axis, len(shape)))
    if last_filtered_axis(lowered) is not None:
        return LastAxisFirst(renumbered, (), lowered.dtype)
    dtype = lowered.dtype
    n = shape[-1]
    groups = []
    # values beyond the float type round to infinities, as in the kernels (no warning)
    with np.errstate(over="ignore", invalid="ignore"):
        for (prefix, _), (_, fused) in zip(renumbered.groups, lowered.groups):
            terms = []
            last = len(fused.cols) - 1
            for t, (col, row) in enumerate(zip(fused.cols, fused.rows)):
                along_rows = VerticalPass(
                    np.array(col[0], np.int64),
                    np.array(col[1], dtype),  # writable copies: the kernels are compiled for those
                    fused.mode_y,
                    dtype.type(fused.cval),
                )
                offsets, weights = row
                sources = [[_source_index(c + int(o), n, fused.mode_x) for o in offsets] for c in range(n)]
                if fused.combine == SUM:
                    combine = SUM
                else:  # squares added up, the group's own step (root or not) with its last term
                    combine = fused.combine if t == last else SUM_SQUARES
                planes = PlanesPass(
                    np.array(sources, np.int64).reshape(n, offsets.size),
                    np.array(weights, dtype),  # a writable copy: the kernel is compiled for those
                    dtype.type(fused.pad_x[t]),
                    combine,
                    dtype.type(1.0 / fused.divisor),
                    bool(fused.accumulate) or t > 0,
                )
                terms.append((along_rows, planes))
            groups.append((prefix, tuple(terms)))
    return LastAxisFirst(None, tuple(groups), dtype)


def last_axis_first(engine, src, last_first, check_finite):
    """``(result, finite)`` of the lowered terms of ``last_first`` (:class:`LastAxisFirst`) on
    ``src``, run on a copy with the last axis in front; ``result`` is a new C-contiguous array
    of ``src``'s shape, ``finite`` whether every value is (always True unless
    ``check_finite``)."""

    def run(moved, new):
        dtype = last_first.dtype
        target = new(moved.shape, dtype)
        if last_first.unfused is not None:
            result = run_lowered(engine, moved, last_first.unfused, check_finite, target)
            return result if check_finite else (result, True)
        middles = Alternating(new, moved.shape, dtype)
        planes_of = (moved.shape[0], -1)
        for prefix, terms in last_first.groups:
            cur = moved
            for p in prefix:
                nxt = middles.other_than(cur)
                engine.correlate_axis(cur, p.axis, p.offsets, p.weights, p.mode, p.cval, nxt)
                cur = nxt
            values = middles.other_than(cur)  # a term's vertical pass
            rows_of = (-1, moved.shape[-1])
            for along_rows, planes in terms:
                engine.vertical_along_rows(
                    cur.reshape(rows_of),
                    along_rows.offsets,
                    along_rows.weights,
                    along_rows.mode,
                    along_rows.cval,
                    values.reshape(rows_of),
                )
                engine.combine_planes(
                    values.reshape(planes_of),
                    planes.sources,
                    planes.weights,
                    planes.pad,
                    planes.combine,
                    planes.inv_divisor,
                    planes.accumulate,
                    target.reshape(planes_of),
                )
        return target, engine.all_finite(target) if check_finite else True

    return tail_first(engine, src, src.ndim - 1, run)
