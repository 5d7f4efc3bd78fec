"""Edge filters: drop-in replacements for ``skimage.filters.sobel`` and friends.

Each operator is a smoothing kernel and a derivative kernel (``kernels.EDGE_KERNELS``);
the derivative along one axis is the derivative pass on that axis and the
smoothing pass on every other, so an n-D edge filter is n 1-D passes, never a
full n-D kernel. One engine, many named kernels: adding an operator means
adding its weights.
"""

import inspect
import math

import numpy as np

from . import _backend, _dask
from ._passes import MAGNITUDE, SUM, reach, taps
from ._plan import Plan, attach_plan, execute, get_plan
from ._programs import terms_program
from ._validation import (
    check_cval,
    check_image,
    mode_names,
    normalize_axis,
    normalize_channel_axis,
    normalize_modes,
    output_float_dtype,
    spatial_axes,
)
from .kernels import EDGE_KERNELS

_COMMON_DOC = """
    Parameters
    ----------
    image : array_like
        Input image, of any number of dimensions (``_h``/``_v``: 2 spatial
        dimensions); bool, integer or float.
    mask : array_like of bool, optional
        Where to compute the result; it is eroded by one pixel (full
        connectivity, as scikit-image does) and the result is zero elsewhere.
        Shape of the image, or of its spatial axes when ``channel_axis`` is given.{axis_doc}
    mode : str or sequence of str, optional
        Border mode, ``'reflect'`` (default), ``'constant'``, ``'nearest'``,
        ``'mirror'`` or ``'wrap'``, as in ``scipy.ndimage``; or one per spatial axis.
    cval : float, optional
        Value outside the image in ``'constant'`` mode.
    channel_axis : int, optional
        Axis of channels, filtered independently; ``None`` (default) treats
        every axis as spatial.
    dtype : {{None, numpy.float32, numpy.float64}}, optional
        Output type. Default: float input keeps its type (float16 gives
        float32), integer and bool input gives float64.
    preserve_range : bool, optional
        Keep integer values as they are instead of scaling them to [0, 1] or
        [-1, 1] as ``skimage.util.img_as_float`` does.
    backend : {{'auto', 'cpu', 'cuda'}}, optional
        Where to compute (see :func:`napari_sepconv.set_backend`).

    Returns
    -------
    output : ndarray
        {returns} Same shape as ``image``; a dask array gives a lazy dask
        array, a GPU array a GPU array.
"""

_AXIS_DOC = """
    axis : int or sequence of int, optional
        Axis along which to take the derivative. ``None`` (default) or several
        axes give the magnitude ``sqrt(sum of squared derivatives / ndim)``,
        ``ndim`` counting the spatial axes. As in scikit-image, an axis given
        as a negative number (without ``channel_axis``) is also smoothed, so
        its derivative weights are multiplied by the smoothing weights."""


def _edge_doc(title, name, returns, example_call, directional=False):
    def decorate(func):
        func.__doc__ = f"""{title}

    Equals ``skimage.filters.{func.__name__}`` on the same arguments, computed
    as separable 1-D passes of the {name} smoothing and derivative kernels.
{_COMMON_DOC.format(axis_doc="" if directional else _AXIS_DOC, returns=returns)}
    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.zeros((5, 5)); image[:, 2:] = 1.0  # a vertical step edge
    >>> {example_call}
"""
        return func

    return decorate


def _edge_axes(axis, ndim, channel_axis):
    """Derivative axes, and which of them were given as negative numbers."""
    spatial = spatial_axes(ndim, channel_axis)
    if axis is None:
        return spatial, set()
    given = [axis] if np.ndim(axis) == 0 else list(axis)
    if not given:
        raise ValueError("axis must name at least one axis")
    axes = [normalize_axis(a, ndim) for a in given]
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis contains a repeated axis: {axis!r}")
    if channel_axis in axes:
        raise ValueError(f"axis {axis!r} includes the channel axis {channel_axis}")
    negative = {a for a, g in zip(axes, given) if g < 0}
    return axes, negative


def _check_mask(mask, shape, channel_axis, lazy=False):
    """The eroded mask, broadcastable against the output; ``None`` for no mask.

    With ``lazy`` (a dask image), a dask mask stays lazy: it is eroded block by block, each
    with a one-pixel halo, as the image is filtered.
    """
    if mask is None:
        return None
    lazy = lazy and _dask.is_dask_array(mask)
    if not lazy:
        mask = np.asarray(mask)
    spatial_shape = tuple(n for a, n in enumerate(shape) if a != channel_axis)
    if tuple(mask.shape) == tuple(shape):
        full = True
    elif channel_axis is not None and tuple(mask.shape) == spatial_shape:
        full = False
    else:
        raise ValueError(
            f"mask must have the image's shape {tuple(shape)}"
            + (f" or its spatial shape {spatial_shape}" if channel_axis is not None else "")
            + f", got {tuple(mask.shape)}"
        )
    from scipy import ndimage as ndi

    mask = mask.astype(bool)
    n_spatial = len(spatial_shape)
    structure = ndi.generate_binary_structure(n_spatial, n_spatial)
    if channel_axis is not None and full:
        structure = np.expand_dims(structure, channel_axis)  # never erode across channels
    if lazy:
        import dask.array as da

        _dask.check_known_chunks(mask, "mask")
        depth = {a: int(structure.shape[a] > 1) for a in range(mask.ndim)}
        eroded = mask.map_overlap(
            ndi.binary_erosion, depth=depth, boundary=False, structure=structure, border_value=0, dtype=bool
        )
        return eroded if full else da.expand_dims(eroded, channel_axis)
    eroded = ndi.binary_erosion(mask, structure, border_value=0)
    if not full:
        eroded = np.expand_dims(eroded, channel_axis)
    return eroded


def masked(out, eroded):
    """``out`` zeroed outside ``eroded`` (see :func:`_check_mask`), lazily for dask."""
    if eroded is None:
        return out
    if _dask.is_dask_array(out):
        return out * eroded
    return _backend.apply_mask(out, eroded)


def _plan_edges(
    shape, dtype, backend, name, axis, mode, cval, channel_axis, out_dtype, preserve_range, direction
):
    """The plan of an edge filter (arguments as :func:`sobel`'s, ``name`` the operator).

    ``direction`` 0 or 1 asks for the derivative along that spatial axis of a 2-D
    image (the ``_h``/``_v`` filters), in place of ``axis``.
    """
    ndim = len(shape)
    channel_axis = normalize_channel_axis(channel_axis, ndim)
    spatial = spatial_axes(ndim, channel_axis)
    if not spatial:
        raise ValueError("image has no spatial axis to filter")
    if direction is not None:
        if len(spatial) != 2:
            raise ValueError(
                f"image must have 2 spatial dimensions for {name}_{'hv'[direction]}, got {len(spatial)}"
            )
        axis = spatial[direction]
    axes, negative = _edge_axes(axis, ndim, channel_axis)
    modes = dict(zip(spatial, normalize_modes(mode, len(spatial))))
    cval = check_cval(cval)
    result_dtype = output_float_dtype(dtype, out_dtype)

    smooth, derivative = EDGE_KERNELS[name]
    smooth_taps = taps(smooth, skip_zero=True)
    derivative_taps = taps(derivative, skip_zero=True)
    if channel_axis is None:
        # scikit-image smooths along every axis but ``axis`` *as given*, so a
        # negative axis is also smoothed: its weights are derivative * smooth.
        negative_taps = taps(derivative * smooth, skip_zero=True)
    terms = [
        {
            a: (negative_taps if d in negative and channel_axis is None else derivative_taps)
            if a == d
            else smooth_taps
            for a in spatial
        }
        for d in axes
    ]
    magnitude = len(axes) > 1
    program = terms_program(
        terms,
        modes,
        cval,
        ndim,
        rule="full",
        combine=MAGNITUDE if magnitude else SUM,
        divisor=math.sqrt(len(spatial)),
        dtype=result_dtype,
        input_dtype=dtype,
        preserve_range=preserve_range,
        channel_axis=channel_axis,
    )
    radius = reach(smooth_taps[0])
    function = name if direction is None else f"{name}_{'hv'[direction]}"
    return Plan(
        function,
        backend,
        shape,
        dtype,
        shape,
        result_dtype,
        channel_axis,
        halo={a: radius for a in spatial},
        modes=mode_names(modes),
        multiplications=program.lowered.multiplications,
        program=program,
    )


@_backend.like_input
def _edge_filter(
    name, image, mask, axis, mode, cval, channel_axis, dtype, preserve_range, backend, direction=None
):
    image = check_image(image)
    plan = get_plan(
        _plan_edges, image, backend, name, axis, mode, cval, channel_axis, dtype, preserve_range, direction
    )
    eroded = _check_mask(mask, image.shape, plan.channel_axis, lazy=_dask.is_dask_array(image))
    return masked(execute(plan, image), eroded)


def _attach_edge_plan(public, name, direction=None):
    def plan(
        image,
        mask=None,
        *,
        axis=None,
        mode="reflect",
        cval=0.0,
        channel_axis=None,
        dtype=None,
        preserve_range=False,
        backend="auto",
    ):
        return get_plan(
            _plan_edges,
            check_image(image),
            backend,
            name,
            axis,
            mode,
            cval,
            channel_axis,
            dtype,
            preserve_range,
            direction,
        )

    if direction is None:
        return attach_plan(public, plan)

    signature = inspect.signature(public)  # the _h/_v call's own: no ``axis``

    def directional_plan(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:  # where the call raises one
            raise TypeError(f"{public.__name__}.plan() {error}") from None
        return plan(**bound.arguments)

    directional_plan.__signature__ = signature
    return attach_plan(public, directional_plan)


# --------------------------------------------------------------------------
# Magnitude or one axis, any number of dimensions
# --------------------------------------------------------------------------


@_edge_doc(
    "Find edges with the Sobel operator.",
    "Sobel",
    "Edge magnitude, or the derivative along ``axis``.",
    "sc.sobel(image).round(3)[2]\n    array([0.   , 0.707, 0.707, 0.   , 0.   ])",
)
def sobel(
    image,
    mask=None,
    *,
    axis=None,
    mode="reflect",
    cval=0.0,
    channel_axis=None,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
    return _edge_filter("sobel", image, mask, axis, mode, cval, channel_axis, dtype, preserve_range, backend)


@_edge_doc(
    "Find edges with the Scharr operator.",
    "Scharr",
    "Edge magnitude, or the derivative along ``axis``.",
    "sc.scharr(image, axis=1)[2]\n    array([0., 1., 1., 0., 0.])",
)
def scharr(
    image,
    mask=None,
    *,
    axis=None,
    mode="reflect",
    cval=0.0,
    channel_axis=None,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
    return _edge_filter("scharr", image, mask, axis, mode, cval, channel_axis, dtype, preserve_range, backend)


@_edge_doc(
    "Find edges with the Prewitt operator.",
    "Prewitt",
    "Edge magnitude, or the derivative along ``axis``.",
    "float(abs(sc.prewitt(image, axis=0)).max())\n    0.0",
)
def prewitt(
    image,
    mask=None,
    *,
    axis=None,
    mode="reflect",
    cval=0.0,
    channel_axis=None,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
    return _edge_filter(
        "prewitt", image, mask, axis, mode, cval, channel_axis, dtype, preserve_range, backend
    )


@_edge_doc(
    "Find edges with the Farid & Simoncelli operator.",
    "Farid (5-tap)",
    "Edge magnitude, or the derivative along ``axis``.",
    "sc.farid(image).round(3)[2]\n    array([0.078, 0.273, 0.273, 0.078, 0.   ])",
)
def farid(
    image,
    mask=None,
    *,
    axis=None,
    mode="reflect",
    cval=0.0,
    channel_axis=None,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
    return _edge_filter("farid", image, mask, axis, mode, cval, channel_axis, dtype, preserve_range, backend)


# --------------------------------------------------------------------------
# Horizontal (_h: derivative along axis 0) and vertical (_v: along axis 1) edges
# --------------------------------------------------------------------------


def _make_directional(name, axis):
    which = "horizontal" if axis == 0 else "vertical"
    if axis == 0:  # a horizontal edge: the step image turned on its side
        example = f"sc.{name}_h(image.T).round(3)[:4, 2]"
    else:
        example = f"sc.{name}_v(image).round(3)[2, :4]"
    example += (
        "\n    array([0.11 , 0.386, 0.386, 0.11 ])" if name == "farid" else "\n    array([0., 1., 1., 0.])"
    )

    def directional(
        image,
        mask=None,
        *,
        mode="reflect",
        cval=0.0,
        channel_axis=None,
        dtype=None,
        preserve_range=False,
        backend="auto",
    ):
        return _edge_filter(
            name, image, mask, None, mode, cval, channel_axis, dtype, preserve_range, backend, axis
        )

    directional.__name__ = directional.__qualname__ = f"{name}_{'hv'[axis]}"
    directional.__module__ = __name__
    _attach_edge_plan(directional, name, axis)
    return _edge_doc(
        f"Find {which} edges (the derivative along axis {axis}) with the {name.title()} operator.",
        name.title(),
        f"The derivative along spatial axis {axis}.",
        example,
        directional=True,
    )(directional)


sobel_h = _make_directional("sobel", 0)
sobel_v = _make_directional("sobel", 1)
scharr_h = _make_directional("scharr", 0)
scharr_v = _make_directional("scharr", 1)
prewitt_h = _make_directional("prewitt", 0)
prewitt_v = _make_directional("prewitt", 1)
farid_h = _make_directional("farid", 0)
farid_v = _make_directional("farid", 1)


for _name, _function in (("sobel", sobel), ("scharr", scharr), ("prewitt", prewitt), ("farid", farid)):
    _attach_edge_plan(_function, _name)
del _name, _function
