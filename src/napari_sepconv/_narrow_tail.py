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
"""

import math

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
