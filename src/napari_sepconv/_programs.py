"""The lowered work of a plan, one class per kind of filter, each run on an engine.

A program holds only what the engine calls need, prepared when the plan is
made (scaled weights, tap tables, constants); ``run(engine, image, out)`` does
the per-call rest: prepare the kernel input, allocate, call the engine, put
the channel axis back. Engines implement ``_engine.Engine``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ._boundary import CONSTANT
from ._narrow_tail import last_axis_first, last_axis_first_lowering, narrow_last, narrow_tail, tail_first
from ._passes import SUM, LoweredTerms, axes_shifted, last_filtered_axis, lower_terms, run_lowered
from ._validation import input_scale

_UNBOUND = object()


def _copy_into(engine, out, result):
    """Fill a caller's ``out`` (scikit-image's ``out=``) with ``result``."""
    if out is None:
        return result
    if out is not result:  # not already written there (``engine.writable_target``)
        engine.copy_into(out, result)
    return out


@dataclass(frozen=True, eq=False)
class TermsProgram:
    """Separable terms (edge filters, ``separable_filter``, ``correlate1d``, split ``filter2d``).

    ``channel_axis`` is moved to the front while filtering, so the lowered
    terms use the axis numbers of that layout. ``cast``: scipy's output
    handling (``correlate1d``), else None. ``fallback``: the direct program a
    sum of several terms falls back to where NaN or inf met the kernel.
    """

    lowered: LoweredTerms
    compute_dtype: np.dtype
    preserve_range: bool
    channel_axis: int | None = None
    cast: np.dtype | None = None
    fallback: DirectProgram | None = None
    # Per (engine, input dtype): the call without the general path's steps, or None.
    _bound: dict = field(default_factory=dict, repr=False, compare=False)
    # Per kernel input shape (a few): the lowering with the last axis in front.
    _last_first: dict = field(default_factory=dict, repr=False, compare=False)

    def run(self, engine, image, out=None):
        if out is None and type(image) is np.ndarray:
            key = (engine.name, image.dtype)
            bound = self._bound.get(key, _UNBOUND)
            if bound is _UNBOUND:
                bound = self._bind(engine, image)
                if len(self._bound) < 8:
                    self._bound[key] = bound
            if bound is not None and not self._moves_last_axes(engine, image.shape):
                return bound(image)
        with engine.scratch_arrays() as scratch:
            return self._run(engine, image, out, scratch)

    def _run(self, engine, image, out, scratch):
        """:meth:`run`'s general path. What the caller never sees goes to ``scratch`` arrays
        (``engine.scratch_arrays``), whose memory later calls reuse instead of faulting in
        new pages: the converted kernel input, and the result that scipy's cast copies."""
        src, _ = engine.to_kernel_input(image, self.compute_dtype, self.preserve_range)
        src = engine.for_kernels(src, self.lowered.dtype, scratch)  # once, not in each pass
        if self.channel_axis is not None:
            src = engine.channels_first(src, self.channel_axis)
        lowered, tail = self._lowered_for(engine, src.shape)
        check = self.fallback is not None
        if tail is not None:

            def run(moved, new):
                target = new(moved.shape, lowered.dtype)
                if check:
                    return run_lowered(engine, moved, lowered, check_finite=True, target=target)
                return run_lowered(engine, moved, lowered, target=target), True

            result, finite = tail_first(engine, src, tail, run)
        elif narrow_last(engine, src.shape, lowered):
            result, finite = last_axis_first(engine, src, self._last_axis_first(src.shape), check)
        else:
            target = None
            as_is = self.cast is None or self.cast == self.lowered.dtype  # no scipy cast to make
            if out is not None and self.channel_axis is None and as_is:
                target = engine.writable_target(out, src, self.lowered.dtype)
            elif self.channel_axis is None and not as_is:  # cast below into a new array (or out)
                target = scratch(src.shape, self.lowered.dtype)
            if check:
                result, finite = run_lowered(engine, src, lowered, check_finite=True, target=target)
            else:
                result, finite = run_lowered(engine, src, lowered, target=target), True
        if not finite:
            # NaN or inf met the kernel: several terms would add +inf and -inf, and each
            # term's footprint is the whole kernel's box. Run the kernel itself instead,
            # so non-finite values spread only through its non-zero weights, as in scipy.
            return self.fallback.run(engine, image, out)
        if self.channel_axis is not None:
            result = engine.channels_back(result, self.channel_axis)
        if self.cast is not None and result is not out:  # scipy's casts (none if written there)
            return engine.cast_output(result, self.cast, out)
        return _copy_into(engine, out, result)

    def _lowered_for(self, engine, shape):
        """``(lowered, tail)`` for a kernel input of ``shape``: ``tail`` is None, or the
        first of a few unfiltered last axes that go to the front (``_narrow_tail``), and
        ``lowered`` is then renumbered for that layout."""
        tail = narrow_tail(engine, shape, last_filtered_axis(self.lowered))
        if tail is None:
            return self.lowered, None
        return self._lowered_behind_one_axis, tail

    def _moves_last_axes(self, engine, shape):
        """Whether the general path runs a kernel input of ``shape`` with its short last axes
        in front (``_narrow_tail``), which the bound call does not."""
        return shape[-1] <= engine.narrow_inner and (
            narrow_last(engine, shape, self.lowered) or self._lowered_for(engine, shape)[1] is not None
        )

    def _last_axis_first(self, shape):
        """``lowered`` run with the last axis in front (``_narrow_tail.last_axis_first``), for
        kernel inputs of ``shape`` (made once per shape)."""
        last_first = self._last_first.get(shape)
        if last_first is None:
            last_first = last_axis_first_lowering(self.lowered, shape)
            if len(self._last_first) < 8:  # a plan's dask blocks share its program
                self._last_first[shape] = last_first
        return last_first

    @functools.cached_property
    def _lowered_behind_one_axis(self):
        """``lowered`` with an axis put in front of the filtered ones (``_lowered_for``)."""
        return axes_shifted(self.lowered, 1)

    def _bind(self, engine, image):
        """The call for host ``image``s of this dtype without the general path's steps, or
        None: one fused pass (as most 2-D calls run), or one 1-D pass (``correlate1d``, a
        Gaussian along one axis), into a new array (small calls spend most of their time
        around the kernel). Where the kernels read a converted copy of the image (float32
        in a float64 computation, as scipy's Gaussians run), the call makes it in a scratch
        array; where scipy's cast follows one pass, the pass goes to a scratch array too."""
        lowered = self.lowered
        if self.channel_axis is not None or len(lowered.groups) != 1:
            return None
        prefix, fused = lowered.groups[0]
        one_pass = lowered.single and len(prefix) == 1
        if not one_pass and (lowered.single or prefix or fused is None or fused.accumulate):
            return None
        if self.cast is not None and not one_pass:
            return None
        src, _ = engine.to_kernel_input(image, self.compute_dtype, self.preserve_range)
        if src.dtype != image.dtype:  # scaled or made float first: the general path
            return None
        dtype, fallback = lowered.dtype, self.fallback
        cast = None if self.cast is None or self.cast == dtype else self.cast
        if cast is not None and fallback is not None:  # (one pass has no fallback to cast)
            return None
        call = _bound_pass(engine, prefix, fused, dtype, image.dtype)
        converts = False
        if call is None:
            # the type the kernels read the image as (``engine.for_kernels``, by dtype alone)
            read = engine.for_kernels(np.zeros(1, image.dtype), dtype).dtype
            if read != image.dtype:
                converts = True
                call = _bound_pass(engine, prefix, fused, dtype, read)
            if call is None:
                return None
        if converts or cast is not None:

            def bound_through_scratch(image):
                with engine.scratch_arrays() as new:
                    src = engine.for_kernels(image, dtype, new) if converts else image
                    if cast is None:
                        return _checked(engine, call, src, engine.empty(image.shape, dtype), fallback, image)
                    out = new(image.shape, dtype)
                    call(src, out)  # (no fallback, above)
                    return engine.cast_output(out, cast, None)

            return bound_through_scratch

        def bound(image):
            return _checked(engine, call, image, engine.empty(image.shape, dtype), fallback, image)

        return bound


def _checked(engine, call, src, out, fallback, image):
    """``out`` once ``call(src, out)`` has filled it, or, where the call met NaN or inf and the
    program has a ``fallback`` (``TermsProgram.fallback``), that program's result for ``image``."""
    finite = call(src, out)
    if fallback is not None:
        if finite is None:
            finite = engine.all_finite(out)
        if not finite:
            return fallback.run(engine, image, None)
    return out


def _bound_pass(engine, prefix, fused, dtype, src_dtype):
    """The engine's bound call of a program's one pass (``prefix``'s one 1-D pass, else the
    ``fused`` pass) on host arrays of ``src_dtype``, or None."""
    if prefix:
        return engine.bind_correlate_axis(prefix[0], dtype, src_dtype)
    return engine.bind_separable_2d(fused, dtype, src_dtype)


@dataclass(frozen=True, eq=False)
class DirectProgram:
    """Direct 2-D correlation over the last two non-channel axes (``filter2d``).

    ``kernel`` is scaled to the kernel input's units and ``cval`` given in them.
    """

    kernel: np.ndarray
    mode_y: int
    mode_x: int
    cval: float
    dtype: np.dtype
    preserve_range: bool
    channel_axis: int | None = None

    def run(self, engine, image, out=None):
        src, _ = engine.to_kernel_input(image, self.dtype, self.preserve_range)
        src = engine.for_kernels(src, self.dtype)
        if self.channel_axis is not None:
            src = engine.channels_first(src, self.channel_axis)
        if not self.kernel.any():  # no weight in scipy's footprint: zeros, whatever the input
            result = engine.zeros(src.shape, self.dtype)
        else:
            result = engine.empty(src.shape, self.dtype)
            kh, kw = self.kernel.shape
            engine.correlate_planes(
                src, self.kernel, kh // 2, kw // 2, self.mode_y, self.mode_x, self.cval, result
            )
        if self.channel_axis is not None:
            result = engine.channels_back(result, self.channel_axis)
        return _copy_into(engine, out, result)


@dataclass(frozen=True, eq=False)
class DepthwiseOp:
    """Per-channel 2-D kernels, as rank-1 pass pairs when every kernel is rank 1.

    ``flat`` (C*M, kh, kw) is scaled to the kernel input's units; so are
    ``columns`` (rank-1 case), while ``cval`` is in the kernel input's units
    and ``pad_x`` (what the row pass sees outside in constant mode) in the
    result's.
    """

    flat: np.ndarray
    multiplier: int
    mode_y: int
    mode_x: int
    cval: float
    columns: np.ndarray | None = None
    rows: np.ndarray | None = None
    pad_x: np.ndarray | None = None

    @property
    def separable(self):
        return self.columns is not None

    def run(self, engine, planes, out, row_start=0):
        """Filter ``planes`` (P, H, W, C) into ``out`` (P, R, W, C*M) from row ``row_start``."""
        if self.separable:
            engine.depthwise_passes(
                planes,
                self.columns,
                self.rows,
                self.multiplier,
                self.mode_y,
                self.mode_x,
                self.cval,
                self.pad_x,
                out,
                row_start,
            )
        else:
            engine.depthwise(
                planes, self.flat, self.multiplier, self.mode_y, self.mode_x, self.cval, out, row_start
            )


def depthwise_op(flat, multiplier, mode_y, mode_x, cval, scale, factors):
    """The :class:`DepthwiseOp` of kernels ``flat`` for input scaled by ``scale``.

    ``factors``: ``(columns, rows)`` when every kernel is exactly rank 1, else None.
    """
    if factors is None:
        return DepthwiseOp(flat * scale, multiplier, mode_y, mode_x, cval / scale)
    columns, rows = factors
    pad_x = cval * columns.sum(axis=1) if mode_x == CONSTANT else np.zeros(len(columns))
    return DepthwiseOp(flat * scale, multiplier, mode_y, mode_x, cval / scale, columns * scale, rows, pad_x)


class _ChannelProgram:
    """Channel filters: the channel axis moved last, ``filter_planes``, moved back.

    ``filter_planes(engine, planes)`` returns the result and its number of channels.
    """

    # Whether the input is converted once for the kernels (the depthwise ones); pointwise
    # mixing multiplies the image as it is.
    converts_input = True

    def run(self, engine, image, out=None):
        src, _ = engine.to_kernel_input(image, self.dtype, self.preserve_range)
        if self.converts_input:
            src = engine.for_kernels(src, self.dtype)  # once, not in each band
        result, n_out = self.filter_planes(engine, engine.channels_last(src, self.channel_axis))
        moved = list(image.shape)
        del moved[self.channel_axis]  # a non-negative axis
        result = engine.restore_channels(result, (*moved, n_out), self.channel_axis)
        return _copy_into(engine, out, result)


@dataclass(frozen=True, eq=False)
class DepthwiseProgram(_ChannelProgram):
    """``depthwise_filter`` of planes (P, H, W, C) into (P, H, W, C*M)."""

    op: DepthwiseOp
    n_out: int
    dtype: np.dtype
    preserve_range: bool
    channel_axis: int

    def filter_planes(self, engine, planes):
        result = engine.empty(planes.shape[:3] + (self.n_out,), self.dtype)
        self.op.run(engine, planes, result)
        return result, self.n_out


@dataclass(frozen=True, eq=False)
class PointwiseProgram(_ChannelProgram):
    """``pointwise_filter``: every pixel's channels times ``weights`` (scaled), plus ``bias``."""

    converts_input = False

    weights: np.ndarray
    bias: np.ndarray | None
    dtype: np.dtype
    preserve_range: bool
    channel_axis: int

    def filter_planes(self, engine, planes):
        n_out, n_in = self.weights.shape
        pixels = planes.reshape(-1, n_in)
        result = engine.empty((pixels.shape[0], n_out), self.dtype)
        engine.pointwise(pixels, self.weights, self.bias, result)
        return result, n_out


@dataclass(frozen=True, eq=False)
class DepthwiseSeparableProgram(_ChannelProgram):
    """``depthwise_separable_filter``: the depthwise op, then channel mixing, fused by the engine."""

    op: DepthwiseOp
    weights: np.ndarray
    bias: np.ndarray | None
    dtype: np.dtype
    preserve_range: bool
    channel_axis: int

    def filter_planes(self, engine, planes):
        n_out = self.weights.shape[0]
        result = engine.empty(planes.shape[:3] + (n_out,), self.dtype)
        engine.depthwise_separable(planes, self.op, self.weights, self.bias, result)
        return result, n_out


def terms_program(
    terms,
    modes,
    cval,
    ndim,
    *,
    rule,
    combine=SUM,
    divisor=1.0,
    dtype,
    input_dtype,
    preserve_range,
    channel_axis=None,
    order=None,
    cast=None,
    fallback=None,
    fuse=True,
):
    """A :class:`TermsProgram` for ``terms`` given in the image's own axis numbers.

    The channel axis, if any, is moved to the front while filtering so that
    the filtered axes are the trailing, contiguous ones; the terms, modes and
    pass order are renumbered for that layout here, once.
    """
    if channel_axis is not None:

        def moved(a):
            return a + 1 if a < channel_axis else a

        terms = [{moved(a): t for a, t in term.items()} for term in terms]
        modes = {moved(a): m for a, m in modes.items()}
        order = None if order is None else [moved(a) for a in order]
    scale = input_scale(input_dtype, preserve_range)
    lowered = lower_terms(
        terms,
        modes,
        cval,
        ndim,
        rule=rule,
        combine=combine,
        divisor=divisor,
        dtype=dtype,
        scale=scale,
        order=order,
        fuse=fuse,
    )
    return TermsProgram(
        lowered,
        np.dtype(dtype),
        preserve_range,
        channel_axis,
        None if cast is None else np.dtype(cast),
        fallback,
    )
