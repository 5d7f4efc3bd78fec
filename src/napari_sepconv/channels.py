"""Channel filtering of multichannel images: depthwise, pointwise and both fused.

Depthwise filtering correlates each channel with its own 2-D kernel(s);
pointwise filtering mixes channels at each pixel (a 1x1 convolution);
the depthwise-separable filter is one after the other, computed in row bands
so that the depthwise result is never held whole.
"""

import threading
from collections import OrderedDict

import numpy as np

from . import _backend
from ._boundary import CANONICAL_NAMES
from ._plan import Plan, get_plan, planned
from ._programs import (
    DepthwiseProgram,
    DepthwiseSeparableProgram,
    PointwiseProgram,
    depthwise_op,
)
from ._validation import (
    as_rectangular_array,
    check_cval,
    check_kernel,
    input_scale,
    normalize_channel_axis,
    normalize_modes,
    output_float_dtype,
    spatial_axes,
)
from .kernels import footprint, separate_kernel


def _channel_layout(shape, channel_axis, min_spatial):
    """``(channel_axis, spatial axes, channels)`` of an image of ``shape``, checked."""
    if channel_axis is None:
        raise ValueError("channel_axis must be an integer axis for channel filters, not None")
    ca = normalize_channel_axis(channel_axis, len(shape))
    spatial = spatial_axes(len(shape), ca)
    if len(spatial) < min_spatial:
        raise ValueError(
            f"image must have at least {min_spatial} spatial dimension(s) besides the "
            f"channel axis, got shape {tuple(shape)} with channel_axis={channel_axis}"
        )
    return ca, spatial, shape[ca]


def _check_depthwise_kernels(kernels, n_channels):
    """Kernels as (C, M, kh, kw) float64, and the depth multiplier M."""
    arr = as_rectangular_array(kernels, "kernels")
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"kernels must have shape (C, kh, kw) or (C, M, kh, kw), got {arr.ndim} "
            f"dimension(s) (shape {arr.shape})"
        )
    arr = check_kernel(arr, arr.ndim, "kernels")
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.shape[0] != n_channels:
        raise ValueError(
            f"kernels has {arr.shape[0]} kernel set(s) for an image with {n_channels} "
            "channel(s); give one per channel"
        )
    return arr, arr.shape[1]


def _check_pointwise(weights, bias, n_in):
    w = check_kernel(weights, 2, "weights")
    if w.shape[1] != n_in:
        raise ValueError(f"weights has shape {w.shape} (C_out, C_in) but the input has {n_in} channel(s)")
    if bias is not None:
        bias = check_kernel(bias, 1, "bias")
        if bias.shape[0] != w.shape[0]:
            raise ValueError(f"bias has {bias.shape[0]} values for {w.shape[0]} output channels")
    return w, bias


def _out_shape(shape, channel_axis, n_out):
    out = list(shape)
    out[channel_axis] = n_out
    return tuple(out)


_FACTOR_CACHE = OrderedDict()
_FACTOR_LOCK = threading.Lock()  # napari filters from worker threads


def _rank_one_factors(flat):
    """``(columns, rows)`` when every kernel of ``flat`` (N, kh, kw) is exactly rank 1.

    ``None`` when one is not, or when two passes would cost as much as the
    direct kernel. One batched singular-value check rejects most kernel sets
    at once; the factors of a set are kept for the next call with it.
    """
    kh, kw = flat.shape[1:]
    if kh + kw >= kh * kw:
        return None
    key = (flat.shape, flat.tobytes())
    with _FACTOR_LOCK:
        if key in _FACTOR_CACHE:
            _FACTOR_CACHE.move_to_end(key)
            return _FACTOR_CACHE[key]
    factors = None
    singular = np.linalg.svd(flat, compute_uv=False)
    tol = 8 * np.finfo(np.float64).eps * max(kh, kw) * singular[:, :1]
    if np.all(np.sum(singular > tol, axis=1) <= 1):
        splits = [separate_kernel(k) for k in flat]
        if all(s.rank == 1 and s.is_exact for s in splits):
            columns = np.array([s.terms[0][0] for s in splits])
            rows = np.array([s.terms[0][1] for s in splits])
            # the factors' products must keep the kernels' footprint: weights within an
            # epsilon of zero are out of it, and NaN or inf would spread through them
            if np.array_equal(columns[:, :, None] * rows[:, None, :] != 0, flat != 0):
                factors = (columns, rows)
                for array in factors:  # shared by every call with these kernels
                    array.flags.writeable = False
    with _FACTOR_LOCK:
        _FACTOR_CACHE[key] = factors
        if len(_FACTOR_CACHE) > 32:
            _FACTOR_CACHE.popitem(last=False)
    return factors


def _depthwise_op(kernels, mode_y, mode_x, cval, scale):
    """The :class:`~napari_sepconv._programs.DepthwiseOp` of kernels (C, M, kh, kw)."""
    flat = footprint(kernels.reshape((-1,) + kernels.shape[2:]))
    return depthwise_op(flat, kernels.shape[1], mode_y, mode_x, cval, scale, _rank_one_factors(flat))


def _depthwise_cost(op):
    """Multiplications per pixel (over all output channels) of a depthwise op."""
    n_out, kh, kw = op.flat.shape
    if op.separable:
        return n_out * (kh + kw)
    used = np.count_nonzero(np.any(op.flat != 0, axis=0)) or 1
    return n_out * int(used)


def _halo_2d(kernel_shape, ay, ax):
    kh, kw = kernel_shape
    return {ay: (kh // 2, kh - 1 - kh // 2), ax: (kw // 2, kw - 1 - kw // 2)}


@_backend.like_input
@planned
def depthwise_filter(
    image,
    kernels,
    *,
    channel_axis=-1,
    mode="reflect",
    cval=0.0,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
    """Correlate each channel with its own 2-D kernel(s).

    Output channel ``c*M + m`` is the 2-D correlation (``scipy.ndimage.correlate``)
    of input channel ``c`` with ``kernels[c, m]`` over the last two non-channel
    axes; other axes are a stack of planes. When every kernel is rank 1 they
    run as two 1-D passes.

    Parameters
    ----------
    image : array_like
        Multichannel image with at least two spatial axes.
    kernels : array_like, shape (C, kh, kw) or (C, M, kh, kw)
        One 2-D kernel per channel, or M per channel (a depth multiplier).
    channel_axis : int, optional
        Axis of channels (default: the last); the output keeps it in place,
        with ``C * M`` channels.
    mode : str or pair of str, optional
        Border mode, or one per filtered axis.
    cval : float, optional
        Value outside the image in ``'constant'`` mode.
    dtype : {None, numpy.float32, numpy.float64}, optional
        Output type (default: the scikit-image rule).
    preserve_range : bool, optional
        Do not scale integer input.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        Filtered image with ``C * M`` channels.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> rgb = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    >>> box, cross = np.ones((3, 3)) / 9, np.eye(3)
    >>> sobel_x = np.outer([1, 2, 1], [-1, 0, 1])
    >>> kernels = np.stack([box, cross, sobel_x])
    >>> sc.depthwise_filter(rgb, kernels).shape
    (32, 32, 3)
    """
    return get_plan(_plan_depthwise, image, backend, kernels, channel_axis, mode, cval, dtype, preserve_range)


def _plan_depthwise(shape, dtype, backend, kernels, channel_axis, mode, cval, out_dtype, preserve_range):
    ca, spatial, n_channels = _channel_layout(shape, channel_axis, 2)
    kernels, multiplier = _check_depthwise_kernels(kernels, n_channels)
    mode_y, mode_x = normalize_modes(mode, 2)
    cval = check_cval(cval)
    result_dtype = output_float_dtype(dtype, out_dtype)
    n_out = n_channels * multiplier
    op = _depthwise_op(kernels, mode_y, mode_x, cval, input_scale(dtype, preserve_range))
    program = DepthwiseProgram(op, n_out, result_dtype, preserve_range, ca)
    ay, ax = spatial[-2:]
    return Plan(
        "depthwise_filter",
        backend,
        shape,
        dtype,
        _out_shape(shape, ca, n_out),
        result_dtype,
        ca,
        halo=_halo_2d(kernels.shape[2:], ay, ax),
        modes={ay: CANONICAL_NAMES[mode_y], ax: CANONICAL_NAMES[mode_x]},
        multiplications=_depthwise_cost(op),
        program=program,
        rank=1 if op.separable else None,
    )


@_backend.like_input
@planned
def pointwise_filter(
    image, weights, bias=None, *, channel_axis=-1, dtype=None, preserve_range=False, backend="auto"
):
    """Mix channels at each pixel: ``out[..., o] = sum_i weights[o, i] * image[..., i] + bias[o]``.

    A 1x1 convolution (shown for ``channel_axis=-1``), computed with BLAS.

    Parameters
    ----------
    image : array_like
        Multichannel image.
    weights : array_like, shape (C_out, C_in)
        Mixing matrix.
    bias : array_like, shape (C_out,), optional
        Added to each output channel.
    channel_axis : int, optional
        Axis of channels (default: the last); kept in place, with ``C_out`` channels.
    dtype : {None, numpy.float32, numpy.float64}, optional
        Output type (default: the scikit-image rule).
    preserve_range : bool, optional
        Do not scale integer input.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        Image with ``C_out`` channels.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> rgb = np.ones((2, 2, 3))
    >>> gray = sc.pointwise_filter(rgb, [[0.2125, 0.7154, 0.0721]])
    >>> gray[..., 0]
    array([[1., 1.],
           [1., 1.]])
    """
    return get_plan(_plan_pointwise, image, backend, weights, bias, channel_axis, dtype, preserve_range)


def _plan_pointwise(shape, dtype, backend, weights, bias, channel_axis, out_dtype, preserve_range):
    ca, _, n_channels = _channel_layout(shape, channel_axis, 0)
    w, bias = _check_pointwise(weights, bias, n_channels)
    result_dtype = output_float_dtype(dtype, out_dtype)
    n_out = w.shape[0]
    program = PointwiseProgram(w * input_scale(dtype, preserve_range), bias, result_dtype, preserve_range, ca)
    return Plan(
        "pointwise_filter",
        backend,
        shape,
        dtype,
        _out_shape(shape, ca, n_out),
        result_dtype,
        ca,
        halo={},
        modes={},
        multiplications=int(w.size),
        program=program,
    )


@_backend.like_input
@planned
def depthwise_separable_filter(
    image,
    depthwise_kernels,
    pointwise_weights,
    bias=None,
    *,
    channel_axis=-1,
    mode="reflect",
    cval=0.0,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
    """Depthwise filtering followed by pointwise channel mixing, fused.

    Equals ``pointwise_filter(depthwise_filter(image, depthwise_kernels, ...),
    pointwise_weights, bias, ...)``, computed in bands of rows so the
    depthwise result is never held whole: ``C*M*kh*kw + C*M*C_out``
    multiplications a pixel instead of ``C*C_out*kh*kw`` for a full
    convolution with the same output.

    Parameters
    ----------
    image : array_like
        Multichannel image with at least two spatial axes.
    depthwise_kernels : array_like, shape (C, kh, kw) or (C, M, kh, kw)
        Per-channel kernels (see :func:`depthwise_filter`).
    pointwise_weights : array_like, shape (C_out, C*M)
        Channel mixing matrix.
    bias : array_like, shape (C_out,), optional
        Added to each output channel.
    channel_axis, mode, cval, dtype, preserve_range, backend
        As in :func:`depthwise_filter`.

    Returns
    -------
    output : ndarray
        Image with ``C_out`` channels.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.random.default_rng(0).random((64, 64, 4), dtype=np.float32)
    >>> dw = np.tile(np.ones((3, 3)) / 9, (4, 1, 1))
    >>> pw = np.ones((8, 4)) / 4
    >>> sc.depthwise_separable_filter(image, dw, pw).shape
    (64, 64, 8)
    """
    return get_plan(
        _plan_depthwise_separable,
        image,
        backend,
        depthwise_kernels,
        pointwise_weights,
        bias,
        channel_axis,
        mode,
        cval,
        dtype,
        preserve_range,
    )


def _plan_depthwise_separable(
    shape,
    dtype,
    backend,
    depthwise_kernels,
    pointwise_weights,
    bias,
    channel_axis,
    mode,
    cval,
    out_dtype,
    preserve_range,
):
    ca, spatial, n_channels = _channel_layout(shape, channel_axis, 2)
    kernels, multiplier = _check_depthwise_kernels(depthwise_kernels, n_channels)
    n_mid = n_channels * multiplier
    w, bias = _check_pointwise(pointwise_weights, bias, n_mid)
    mode_y, mode_x = normalize_modes(mode, 2)
    cval = check_cval(cval)
    result_dtype = output_float_dtype(dtype, out_dtype)
    n_out = w.shape[0]
    op = _depthwise_op(kernels, mode_y, mode_x, cval, input_scale(dtype, preserve_range))
    program = DepthwiseSeparableProgram(op, w, bias, result_dtype, preserve_range, ca)
    ay, ax = spatial[-2:]
    return Plan(
        "depthwise_separable_filter",
        backend,
        shape,
        dtype,
        _out_shape(shape, ca, n_out),
        result_dtype,
        ca,
        halo=_halo_2d(kernels.shape[2:], ay, ax),
        modes={ay: CANONICAL_NAMES[mode_y], ax: CANONICAL_NAMES[mode_x]},
        multiplications=_depthwise_cost(op) + int(w.size),
        program=program,
        rank=1 if op.separable else None,
    )
