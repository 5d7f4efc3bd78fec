"""Filter plans: everything about a call that does not depend on the pixel values, worked out once.

A public function checks its arguments and asks for a :class:`Plan`; :func:`get_plan` returns it
from an LRU cache keyed by everything that shapes it (the function, the image's shape and dtype,
the kernels' bytes, modes, ``cval``, axes, channel axis, output dtype, the resolved backend), so a
repeated call skips all of planning, the SVD of a user kernel included. :func:`execute` then runs
the plan on the pixels.

A plan is backend-neutral data: the 1-D passes and terms lowered to engine calls (``_passes``),
per-axis modes and constants, the output's shape and dtype, the halo each axis needs, the
multiplications per output pixel, and the kernel's rank and exactness. It holds no array of the
caller. The napari widgets and the ``sepconv`` command read the output layout and cost from it
instead of running the filter.

>>> import numpy as np
>>> import napari_sepconv as sc
>>> plan = sc.sobel.plan(np.zeros((64, 64), np.uint8))
>>> plan.out_dtype, plan.halo, plan.multiplications
(dtype('float64'), {0: (1, 1), 1: (1, 1)}, 10)
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _backend, _dask
from ._validation import check_image

PLAN_CACHE_SIZE = 512

_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()  # napari filters from worker threads


@dataclass(frozen=True, eq=False)
class Plan:
    """How one call runs: the lowered passes and everything known before the pixels are read.

    Attributes
    ----------
    function : str
        Name of the public function that made the plan.
    backend : {'cpu', 'cuda'}
        The engine that runs it.
    shape, dtype
        Shape and dtype of the input the plan was made for.
    out_shape : tuple of int
        Shape of the result.
    out_dtype : numpy.dtype
        Dtype of the result.
    channel_axis : int or None
        Non-negative channel axis, never filtered across.
    halo : dict of int to (int, int)
        For each filtered axis, how far the filter reaches before and after an output sample.
    modes : dict of int to str
        Border mode of each filtered axis (scipy's canonical names).
    multiplications : int
        Multiplications per output pixel (per output value of a plane for channel filters,
        summed over the output channels).
    rank : int or None
        Separable rank of a 2-D kernel (``filter2d``; 1 for rank-1 channel kernels), else None.
    exact : bool
        Whether the passes reproduce the kernel within rounding.
    program : object
        The lowered work, run by :func:`execute` (``program.run(engine, image, out)``).
    """

    function: str
    backend: str
    shape: tuple
    dtype: np.dtype
    out_shape: tuple
    out_dtype: np.dtype
    channel_axis: int | None
    halo: dict
    modes: dict
    multiplications: int
    program: Any = field(repr=False)
    rank: int | None = None
    exact: bool = True
    _siblings: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def channels_out(self):
        """Length of the output's channel axis, or None without one."""
        return None if self.channel_axis is None else self.out_shape[self.channel_axis]

    def for_shape(self, shape):
        """The same plan for an input of another ``shape`` (a dask block, say)."""
        shape = tuple(int(n) for n in shape)
        if shape == self.shape:
            return self
        sibling = self._siblings.get(shape)
        if sibling is None:
            out_shape = list(shape)
            if self.channel_axis is not None:
                out_shape[self.channel_axis] = self.out_shape[self.channel_axis]
            sibling = dataclasses.replace(self, shape=shape, out_shape=tuple(out_shape), _siblings={})
            if len(self._siblings) < 64:
                self._siblings[shape] = sibling
        return sibling


def _key(value):
    """A hashable stand-in for one argument; the type is kept, so ``True`` is not ``1``."""
    kind = type(value)
    if kind is np.ndarray:  # kernels: the most frequent of the non-plain arguments
        if value.dtype.hasobject:  # its bytes are the objects' addresses, which are reused
            return value.dtype, value.shape, _key(value.tolist())
        return value.dtype, value.shape, value.tobytes()
    if value is None or kind is str:
        return value
    if kind is float or isinstance(value, np.floating):
        return kind, value, math.copysign(1.0, value)  # -0.0 == 0.0, yet gives other bits
    if kind in (int, bool) or isinstance(value, np.generic):
        return kind, value
    if kind in (list, tuple):
        return kind, tuple(map(_key, value))
    if kind is dict:
        return kind, tuple((_key(k), _key(v)) for k, v in value.items())
    if isinstance(value, (type, np.dtype)):
        return kind, value
    raise TypeError("not a plan key")


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _plain_or_key(value, kind):
    return value if kind in _PLAIN else _key(value)


def _zero_signs(args):
    """The signs of the float arguments that are zero (``-0.0`` as a ``cval`` makes a
    constant border's zeros negative, as in SciPy)."""
    return tuple(math.copysign(1.0, a) for a in args if type(a) is float and a == 0.0)


def get_plan(build, image, backend, *args):
    """The plan of ``build(shape, dtype, backend, *args)``, from the cache when it was made before.

    ``backend`` is resolved against ``image`` first. Arguments that cannot be keyed (an
    unusual type, probably an error that ``build`` reports) bypass the cache.
    """
    resolved = _backend.resolve(backend, image)
    shape, dtype = image.shape, image.dtype
    types = tuple(map(type, args))
    try:
        if _PLAIN.issuperset(types):  # the common case: the arguments and their types
            key = (build, resolved, shape, dtype, args, types)
            if 0.0 in args:  # a zero, maybe -0.0: it equals 0.0, yet gives other bits
                key += (_zero_signs(args),)
        else:  # plain arguments as they are (with their types), the others by value
            key = (build, resolved, shape, dtype, tuple(map(_plain_or_key, args, types)), types)
            key += (_zero_signs(args),)
        plan = _cache.get(key)
    except TypeError:
        return build(tuple(shape), np.dtype(dtype), resolved, *args)
    if plan is not None:
        if len(_cache) > PLAN_CACHE_SIZE // 2:  # keep the recently used ones
            with _cache_lock:
                if key in _cache:
                    _cache.move_to_end(key)
        return plan
    plan = build(tuple(shape), np.dtype(dtype), resolved, *args)
    with _cache_lock:
        _cache[key] = plan
        while len(_cache) > PLAN_CACHE_SIZE:
            _cache.popitem(last=False)
    return plan


def clear_cache():
    """Forget every cached plan."""
    with _cache_lock:
        _cache.clear()


_PLAN_DOC = (
    "The :class:`~napari_sepconv._plan.Plan` that ``{name}`` would run on these arguments: output "
    "shape and dtype, halo, multiplications per pixel, rank. Nothing is computed; ``image`` may be "
    "any object with ``shape``, ``dtype`` and ``ndim``."
)


def attach_plan(public, make_plan):
    """Give a public function a ``.plan(image, ...)`` attribute: ``make_plan``, which takes the
    public function's arguments and returns the plan the call would run, reading no pixel."""
    make_plan.__doc__ = _PLAN_DOC.format(name=public.__name__)
    make_plan.__name__, make_plan.__qualname__ = "plan", f"{public.__name__}.plan"  # as errors name it
    public.plan = make_plan
    return public


def planned(make_plan):
    """The public filter whose arguments and docstring are those of ``make_plan``.

    ``make_plan(image, ...)`` returns the call's plan (``get_plan``); the filter
    checks ``image``, asks for the plan and executes it, and ``filter.plan``
    returns the plan alone. One signature serves both.
    """

    @functools.wraps(make_plan)
    def public(image, *args, **kwargs):
        image = check_image(image)
        return execute(make_plan(image, *args, **kwargs), image)

    @functools.wraps(make_plan)
    def plan(image, *args, **kwargs):
        return make_plan(check_image(image), *args, **kwargs)

    plan.__doc__ = _PLAN_DOC.format(name=make_plan.__name__)
    public.plan = plan
    return public


@dataclass(frozen=True)
class ImageSpec:
    """What a plan needs of an image, without its pixels: ``shape`` and ``dtype``."""

    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self):
        return len(self.shape)


def plan_of(function, shape, dtype, /, **kwargs):
    """The plan ``function(image, **kwargs)`` would run on an image of ``shape`` and ``dtype``.

    ``kwargs`` are the function's own arguments (its ``dtype`` among them).

    ``function`` is a public filter or a ``functools.partial`` of one (as the
    napari widgets and the ``sepconv`` command hold them). Raises the errors
    the call would raise for bad arguments; computes nothing.

    >>> import functools
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> plan = plan_of(functools.partial(sc.pointwise_filter, weights=np.ones((2, 3))),
    ...                (5, 6, 3), np.uint8)
    >>> plan.out_shape, plan.out_dtype
    ((5, 6, 2), dtype('float64'))
    """
    args = ()
    while isinstance(function, functools.partial):
        args = function.args + args
        kwargs = {**function.keywords, **kwargs}
        function = function.func
    image = ImageSpec(tuple(int(n) for n in shape), np.dtype(dtype))
    return function.plan(image, *args, **kwargs)


def execute(plan, image, out=None):
    """Run ``plan`` on ``image``: the only place that tells NumPy, GPU and dask arrays apart.

    A dask array gives a lazy dask array, filtered block by block with the
    halo of the plan (``_dask.filter_lazily``); anything else runs on the
    plan's engine, which takes host (NumPy) and device (Numba) arrays.
    ``out`` is filled where the function accepts one.
    """
    if type(image) is not np.ndarray and _dask.is_dask_array(image):
        return _dask.filter_lazily(
            functools.partial(_execute_block, plan),
            image,
            halo=plan.halo,
            modes=plan.modes,
            channel_axis=plan.channel_axis,
            channels_out=plan.channels_out if plan.out_shape != plan.shape else None,
            dtype=plan.out_dtype,
        )
    return plan.program.run(_backend.engine(plan.backend), image, out)


def _execute_block(plan, block):
    result = execute(plan.for_shape(block.shape), block)
    if getattr(result, "__cuda_ndarray__", False):  # a CUDA plan on a host block
        return result.copy_to_host()
    return result
