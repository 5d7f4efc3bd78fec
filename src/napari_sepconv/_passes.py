"""Plans separable filtering as 1-D passes and runs them on a backend engine.

A *term* is a separable n-D kernel given as ``{axis: (offsets, weights)}``:
correlating with it means one 1-D pass per axis. A filter is one term (a
separable kernel), a sum of terms (an SVD-split kernel) or the magnitude of
several (an edge filter). When the last two axes of the array are the last two
passes, they run fused in one sweep over memory (``engine.separable_2d``);
earlier axes run as ``engine.correlate_axis`` passes, shared between terms that
begin with the same passes.

Constant mode comes in two conventions:

``'full'``
    The result equals correlating with the full n-D kernel (``scipy.ndimage
    .correlate``), so a later pass sees, outside the image, ``cval`` times the
    sums of the earlier 1-D kernels.
``'pass'``
    Each pass pads with ``cval`` (scipy's convention for ``gaussian_filter``
    and friends).
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ._scratch import Alternating

SUM = 0
SUM_SQUARES = 1
MAGNITUDE = 2


def taps(weights, origin=0, skip_zero=False):
    """Offsets and weights of a 1-D kernel anchored as scipy.ndimage anchors it.

    Output sample ``i`` collects ``weights[k]`` times input ``i + k - (len // 2
    + origin)``. With ``skip_zero`` the zero weights are left out, as
    ``scipy.ndimage.correlate`` leaves them out of its footprint.
    """
    weights = np.asarray(weights, dtype=np.float64)
    offsets = np.arange(weights.size, dtype=np.int64) - (weights.size // 2 + origin)
    if skip_zero:
        keep = weights != 0
        if not keep.any():  # an all-zero kernel still produces zeros (and NaN*0)
            keep[weights.size // 2 + origin] = True
        offsets, weights = offsets[keep], weights[keep]
    return offsets, weights


def reach(offsets):
    """How far a pass reaches before and after each sample: ``(before, after)``."""
    return max(0, -int(offsets.min())), max(0, int(offsets.max()))


@dataclass(frozen=True, eq=False)
class AxisPass:
    """One unfused 1-D pass: ``engine.correlate_axis`` along ``axis``."""

    axis: int
    offsets: np.ndarray
    weights: np.ndarray
    mode: int
    cval: float


@dataclass(frozen=True, eq=False)
class FusedPass:
    """The vertical and horizontal passes of a group of terms: ``engine.separable_2d``."""

    cols: tuple
    rows: tuple
    mode_y: int
    mode_x: int
    cval: float
    pad_x: tuple
    combine: int
    divisor: float
    accumulate: bool

    def arguments(self):
        """What ``engine.separable_2d`` takes between its input and its output, in order."""
        return (
            self.cols,
            self.rows,
            self.mode_y,
            self.mode_x,
            self.cval,
            self.pad_x,
            self.combine,
            self.divisor,
            self.accumulate,
        )


@dataclass(frozen=True, eq=False)
class LoweredTerms:
    """Terms lowered to engine calls: what :func:`run_lowered` does, every argument ready.

    ``groups`` holds, per group of terms that share their first passes, those
    passes and the fused pass over the last two axes (``None`` when the last
    two axes are not the last passes; the group's result is then combined
    with ``engine.combine_into``).
    """

    groups: tuple
    single: bool
    combine: int
    divisor: float
    dtype: np.dtype

    @property
    def multiplications(self):
        """Multiplications per output pixel, each group's shared passes counted once."""
        total = 0
        for prefix, fused in self.groups:
            total += sum(p.offsets.size for p in prefix)
            if fused is not None:
                total += sum(o.size for o, _ in fused.cols) + sum(o.size for o, _ in fused.rows)
        return total


def last_filtered_axis(lowered):
    """The last axis that a pass of ``lowered`` filters (-1 for none), or None where a group
    has a fused pass (the last two axes of the kernel input, whatever its dimensions)."""
    last = -1
    for prefix, fused in lowered.groups:
        if fused is not None:
            return None  # the last two axes, whatever the number of dimensions
        for p in prefix:
            last = max(last, p.axis)
    return last


def axes_shifted(lowered, shift):
    """``lowered`` (without a fused pass) for the kernel input with ``shift`` axes put in
    front of the filtered ones."""
    return axes_renumbered(lowered, lambda axis: axis + shift)


def axes_renumbered(lowered, moved):
    """``lowered`` with the axis of each unfused pass renumbered by ``moved(axis)``; fused
    passes are kept as they are."""
    groups = tuple(
        (tuple(dataclasses.replace(p, axis=moved(p.axis)) for p in prefix), fused)
        for prefix, fused in lowered.groups
    )
    return dataclasses.replace(lowered, groups=groups)


def lower_terms(
    terms, modes, cval, ndim, *, rule, combine=SUM, divisor=1.0, dtype, scale=1.0, order=None, fuse=True
):
    """Lower terms to engine calls: a :class:`LoweredTerms` for :func:`run_lowered`.

    Everything that does not depend on the pixel values is worked out here,
    once per plan: which passes fuse, which terms share their first passes,
    the scaled weights and the outside value each pass sees in constant mode.

    Parameters
    ----------
    terms : list of dict
        ``{axis: (offsets, weights)}``, the same axes in every term.
    modes : dict
        Border mode code per filtered axis.
    cval : float
        Value outside the image in constant mode, in the units of the result.
    ndim : int
        Dimensions of the kernel input.
    rule : {'full', 'pass'}
        Constant-mode convention (module docstring).
    combine : {SUM, MAGNITUDE}
        Sum of the terms, or ``sqrt(sum of squares) / divisor``.
    dtype : dtype
        Float type of the result and of every pass.
    scale : float
        Factor from kernel input units to result units.
    order : sequence of int, optional
        Pass order (matters only for ``rule='pass'``); default ascending axes.
    fuse : bool
        Whether the passes over the last two axes may run fused; without, every
        axis is a pass of its own, stored in ``dtype`` before the next reads it.
    """
    axes = list(order) if order is not None else sorted(terms[0])
    fused = fuse and ndim >= 2 and len(axes) >= 2 and axes[-2:] == [ndim - 2, ndim - 1]
    prefix_axes = axes[:-2] if fused else axes

    # Fused terms that start with the same passes share them; unfused terms stand alone.
    grouped = {}
    for i, term in enumerate(terms):
        key = tuple((a, term[a][0].tobytes(), term[a][1].tobytes()) for a in prefix_axes) if fused else i
        grouped.setdefault(key, []).append(term)

    single = not fused and len(terms) == 1 and combine == SUM  # its last pass is the result
    groups = []
    for g, group in enumerate(grouped.values()):
        last_group = g == len(grouped) - 1
        prefix, sums = [], []
        for axis in prefix_axes:
            offsets, weights = group[0][axis]
            prefix.append(
                AxisPass(
                    axis,
                    offsets,
                    weights * (1.0 if sums else scale),
                    modes[axis],
                    _pass_cval(cval, rule, sums, scale),
                )
            )
            sums.append(float(weights.sum()))
        fused_pass = None
        if fused:
            step = SUM_SQUARES if combine == MAGNITUDE and not last_group else combine
            fused_pass = _lower_fused(group, axes[-2:], modes, cval, sums, rule, step, divisor, g > 0, scale)
        groups.append((tuple(prefix), fused_pass))
    return LoweredTerms(tuple(groups), single, combine, float(divisor), np.dtype(dtype))


def run_lowered(engine, src, lowered, check_finite=False, target=None):
    """Run lowered terms on ``src``: the result, or ``(out, finite)`` with ``check_finite``.

    ``finite`` tells whether every value of the result is finite (the fused
    kernel tells as it writes, saving a pass over the result). ``target``: an
    engine array of the result's shape and type to write the result into
    (it shares no memory with ``src``).
    """
    dtype = lowered.dtype
    if lowered.single:
        out = None
    else:
        out = target if target is not None else engine.empty(src.shape, dtype)
    finite = None  # unknown until a kernel tells
    last = len(lowered.groups) - 1
    with engine.scratch_arrays() as scratch:  # the passes' intermediate results
        middles = Alternating(scratch, src.shape, dtype)
        for g, (prefix, fused) in enumerate(lowered.groups):
            cur = src
            if lowered.single and fused is None:
                # One term, pass after pass: the passes alternate between the result and one
                # intermediate, the last pass into the result.
                out = target if target is not None else engine.empty(src.shape, dtype)
                for i, p in enumerate(prefix):
                    nxt = out if (len(prefix) - 1 - i) % 2 == 0 else middles.other_than(cur)
                    engine.correlate_axis(cur, p.axis, p.offsets, p.weights, p.mode, p.cval, nxt)
                    cur = nxt
                break
            for p in prefix:
                nxt = middles.other_than(cur)
                engine.correlate_axis(cur, p.axis, p.offsets, p.weights, p.mode, p.cval, nxt)
                cur = nxt
            if fused is not None:
                finite = engine.separable_2d(cur, *fused.arguments(), out)
            else:
                engine.combine_into(out, cur, squares=lowered.combine == MAGNITUDE, first=g == 0)
                if lowered.combine == MAGNITUDE and g == last:
                    engine.finish_magnitude(out, lowered.divisor)
    if not check_finite:
        return out
    if finite is None:  # the last fused call checks the whole sum; otherwise look
        finite = engine.all_finite(out)
    return out, finite


def _pass_cval(cval, rule, sums, scale):
    """The outside value a pass sees in constant mode.

    ``sums`` are the sums of the earlier passes' kernels; the first pass reads
    the kernel input, in which ``cval`` is ``cval / scale``.
    """
    if not sums:
        return cval / scale
    return cval * math.prod(sums) if rule == "full" else cval


def _lower_fused(group, last_two, modes, cval, sums, rule, combine, divisor, accumulate, scale):
    """The fused vertical + horizontal passes of a group of terms over the last two axes."""
    ay, ax = last_two
    first_scale = 1.0 if sums else scale
    cols, rows, pad_x = [], [], []
    for term in group:
        col_off, col_w = term[ay]
        cols.append((col_off, col_w * first_scale))
        rows.append(term[ax])
        if rule == "full":
            pad_x.append(cval * math.prod(sums) * float(col_w.sum()))
        else:
            pad_x.append(cval)
    return FusedPass(
        tuple(cols),
        tuple(rows),
        modes[ay],
        modes[ax],
        _pass_cval(cval, rule, sums, scale),
        tuple(pad_x),
        combine,
        divisor,
        accumulate,
    )


def filter_terms(
    image,
    terms,
    modes,
    cval,
    *,
    rule,
    combine=SUM,
    divisor=1.0,
    dtype,
    preserve_range,
    channel_axis,
    backend,
    order=None,
):
    """Run ``terms`` on ``image`` (a host or device array) through a cached plan.

    ``terms``, ``modes`` and ``order`` use the image's own axis numbers; the
    channel axis, if any, is not crossed. For filters built from terms of
    their own (the Gaussian family): the plan is made once per set of
    arguments and reused, like those of the public functions.
    """
    from ._plan import execute, get_plan

    plan = get_plan(
        _plan_terms,
        image,
        backend,
        terms,
        modes,
        cval,
        rule,
        combine,
        divisor,
        dtype,
        preserve_range,
        channel_axis,
        order,
    )
    return execute(plan, image)


def _plan_terms(
    shape,
    dtype,
    backend,
    terms,
    modes,
    cval,
    rule,
    combine,
    divisor,
    out_dtype,
    preserve_range,
    channel_axis,
    order,
):
    from ._boundary import CANONICAL_NAMES
    from ._plan import Plan
    from ._programs import terms_program

    program = terms_program(
        terms,
        modes,
        cval,
        len(shape),
        rule=rule,
        combine=combine,
        divisor=divisor,
        dtype=out_dtype,
        input_dtype=dtype,
        preserve_range=preserve_range,
        channel_axis=channel_axis,
        order=order,
    )
    halo = {a: reach(terms[0][a][0]) for a in terms[0]}
    for term in terms[1:]:
        for a, (offsets, _) in term.items():
            before, after = reach(offsets)
            halo[a] = (max(halo[a][0], before), max(halo[a][1], after))
    return Plan(
        "terms",
        backend,
        shape,
        dtype,
        shape,
        np.dtype(out_dtype),
        channel_axis,
        halo=halo,
        modes={a: CANONICAL_NAMES[m] for a, m in modes.items()},
        multiplications=program.lowered.multiplications,
        program=program,
    )
