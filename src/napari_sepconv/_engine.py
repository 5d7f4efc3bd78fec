"""The engine interface: what the CPU (``_cpu``) and CUDA (``_cuda``) engines implement.

A plan's program (``_programs``) makes every call through this interface, so
an engine is a module with these functions; ``_backend.engine(name)`` returns
it. Engines take their own kind of array (NumPy for the CPU, Numba device
arrays for CUDA; host arrays given to the CUDA engine are copied in by
``to_kernel_input``) and trust their arguments: checks are done when the plan
is made. Taps are ``(offsets, weights)`` pairs (``_passes.taps``); mode codes
are those of ``_boundary``. Neither engine imports the other: host-side tables
both need live in ``_lowering``.

``tests/test_engines.py`` checks that both engines define every method here
with the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

Array = Any  # numpy.ndarray on the CPU, a Numba device array on CUDA


@runtime_checkable
class Engine(Protocol):
    """The functions a backend engine module provides."""

    name: str
    # The most samples across the unfiltered last axes of a filter's input that the
    # programs move in front of the filtered axes (``_programs.TermsProgram``), and in a
    # filtered last axis that they move in front of the others (``_narrow_tail``), 0 for
    # never. An engine that moves a filtered last axis also provides ``vertical_along_rows``
    # and ``combine_planes`` (``_narrow_kernels``), which the other programs never call; only
    # the CPU engine does.
    narrow_inner: int

    def to_kernel_input(self, image: Array, dtype: Any, preserve_range: bool) -> tuple[Array, float]:
        """``(array, scale)``: ``image`` as the kernels read it (``_validation.to_kernel_input``).

        The filtered values are ``scale`` times what the kernels compute.
        """

    def for_kernels(self, src: Array, dtype: Any, new: Any = None) -> Array:
        """``src`` (from :meth:`to_kernel_input`) as the kernels of a ``dtype`` computation
        read it, converted once for all of a call's kernels where they would each convert it;
        a converted copy in ``new(shape, dtype)`` where given (:meth:`scratch_arrays`)."""

    def empty(self, shape: tuple, dtype: Any) -> Array:
        """An uninitialised array of the engine's kind."""

    def zeros(self, shape: tuple, dtype: Any) -> Array:
        """An array of zeros of the engine's kind."""

    def scratch_arrays(self) -> Any:
        """A context manager giving ``new(shape, dtype)``: uninitialised arrays of the
        engine's kind for a call's intermediate results, which must not outlive the
        ``with`` block (the CPU engine reuses their memory in later calls)."""

    def correlate_axis(
        self, src: Array, axis: int, offsets, weights, mode: int, cval: float, out: Array
    ) -> None:
        """1-D correlation of ``src`` along ``axis`` into ``out`` (same shape)."""

    def separable_2d(
        self,
        src: Array,
        cols,
        rows,
        mode_y: int,
        mode_x: int,
        cval: float,
        pad_x,
        combine: int,
        divisor: float,
        accumulate: bool,
        out: Array,
    ) -> bool | None:
        """Fused column and row passes of several terms over the last two axes.

        ``combine`` is ``SUM``, ``SUM_SQUARES`` or ``MAGNITUDE`` (``_passes``);
        ``accumulate`` adds to ``out`` instead of overwriting it. Returns
        whether every value of ``out`` is finite, or None when it does not tell.
        """

    def bind_separable_2d(
        self, fused, dtype: Any, src_dtype: Any
    ) -> Callable[[Array, Array], bool | None] | None:
        """``call(src, out)``: ``separable_2d`` of the ``_passes.FusedPass`` ``fused`` with
        every argument prepared once, for host arrays of ``src_dtype`` (any shape); None
        where the engine has no such path. The call returns what ``separable_2d`` does.

        A plan's program keeps it for its next calls: a small call then spends its time
        in the kernel, not in the steps before it.
        """

    def bind_correlate_axis(
        self, axis_pass, dtype: Any, src_dtype: Any
    ) -> Callable[[Array, Array], None] | None:
        """``call(src, out)``: ``correlate_axis`` of the ``_passes.AxisPass`` ``axis_pass``
        with its taps prepared once, for host arrays of ``src_dtype`` (any shape); None where
        the engine has no such path. As :meth:`bind_separable_2d`, for programs of one pass.
        """

    def combine_into(self, out: Array, values: Array, squares: bool, first: bool) -> None:
        """``out (+)= values`` (or ``values ** 2``)."""

    def finish_magnitude(self, out: Array, divisor: float) -> None:
        """``out = sqrt(out) / divisor`` in place."""

    def all_finite(self, values: Array) -> bool:
        """Whether every value is finite."""

    def correlate_planes(
        self, src: Array, kernel, top: int, left: int, mode_y: int, mode_x: int, cval: float, out: Array
    ) -> None:
        """Direct 2-D correlation over the last two axes, zero weights left out."""

    def depthwise(
        self,
        src: Array,
        kernels,
        multiplier: int,
        mode_y: int,
        mode_x: int,
        cval: float,
        out: Array,
        row_start: int = 0,
    ) -> None:
        """Per-channel correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M)."""

    def depthwise_passes(
        self,
        src: Array,
        columns,
        rows,
        multiplier: int,
        mode_y: int,
        mode_x: int,
        cval: float,
        pad_x,
        out: Array,
        row_start: int = 0,
    ) -> None:
        """Per-channel rank-1 kernels ``outer(columns[k], rows[k])`` as two 1-D passes."""

    def depthwise_separable(self, src: Array, op, weights, bias, out: Array) -> None:
        """A ``_programs.DepthwiseOp`` then channel mixing, without the whole intermediate."""

    def pointwise(self, src: Array, weights, bias, out: Array) -> None:
        """``out = src @ weights.T + bias`` over the last axis."""

    def cast_output(self, result: Array, dtype: Any, output: Any) -> Array:
        """scipy.ndimage's output handling: fill ``output`` if it is an array, else cast."""

    def copy_into(self, out: Any, result: Array) -> None:
        """Fill the caller's array ``out`` with ``result``."""

    def writable_target(self, out: Any, src: Array, dtype: Any) -> Array | None:
        """``out`` where the kernels can write a result of ``src``'s shape and ``dtype``
        straight into the caller's array (sparing ``copy_into``), else None."""

    def channels_first(self, arr: Array, channel_axis: int, out: Array | None = None) -> Array:
        """A C-contiguous copy with the channel axis moved to the front, into ``out`` (an
        engine array of that shape and type) when given."""

    def channels_back(self, arr: Array, channel_axis: int, out: Array | None = None) -> Array:
        """Undo ``channels_first``: a view, or a copy into ``out`` (a C-contiguous engine
        array of that shape and type) when given."""

    def channels_last(self, arr: Array, channel_axis: int) -> Array:
        """A C-contiguous (planes, H, W, C) array with the channel axis moved last."""

    def restore_channels(self, out: Array, shape: tuple, channel_axis: int) -> Array:
        """Undo ``channels_last`` for an output of ``shape`` (channel axis last)."""

    def apply_mask(self, out: Array, mask) -> Array:
        """``out *= mask`` for a host mask broadcastable to ``out``."""


ENGINE_METHODS = tuple(
    name for name in Engine.__dict__ if not name.startswith("_") and callable(Engine.__dict__[name])
)
