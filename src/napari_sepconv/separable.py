"""1-D, separable and user-kernel filtering.

``correlate1d``/``convolve1d`` follow ``scipy.ndimage`` (values, output
handling, default output dtype); ``separable_filter`` and ``filter2d`` follow
the scikit-image dtype rule. ``filter2d`` splits a kernel by SVD
(:func:`~napari_sepconv.separate_kernel`) and runs rank-1 pass pairs whenever
that needs fewer multiplications than the direct kernel.
"""

import operator
from functools import partial

import numpy as np

from . import _backend, _dask
from ._boundary import CANONICAL_NAMES
from ._passes import filter_terms, reach, run_terms, taps
from ._validation import (
    check_cval,
    check_image,
    check_kernel,
    check_origin,
    mode_names,
    normalize_axis,
    normalize_channel_axis,
    normalize_mode,
    normalize_modes,
    output_float_dtype,
    spatial_axes,
)
from .kernels import footprint, separate_kernel

# --------------------------------------------------------------------------
# scipy.ndimage-style 1-D filtering
# --------------------------------------------------------------------------

def _output_dtype(input_dtype, output):
    """scipy.ndimage's rule: ``output`` as a dtype, or the input's dtype."""
    if output is None:
        return np.dtype(input_dtype).newbyteorder("=")
    if isinstance(output, np.ndarray):
        return output.dtype
    try:
        dt = np.dtype(output)
    except TypeError:
        raise TypeError(f"output must be None, a dtype or an array, got {output!r}") from None
    return dt


@_backend.like_input
def correlate1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0,
                *, backend="auto"):
    """Correlate an array with a 1-D kernel along one axis.

    Same values, ``output`` handling and default output dtype as
    ``scipy.ndimage.correlate1d``: ``out[i] = sum_k weights[k] *
    input[i + k - (len(weights) // 2 + origin)]``, positions outside the array
    supplied by ``mode``.

    Parameters
    ----------
    input : array_like
        Bool, integer or float array of any number of dimensions.
    weights : array_like
        1-D kernel.
    axis : int, optional
        Axis to filter along (default: the last).
    output : array or dtype, optional
        Array to fill, or the dtype of the result; default: the input's dtype.
        Values are computed in float64 (float32 for float32 input) and cast.
    mode : {'reflect', 'constant', 'nearest', 'mirror', 'wrap'}, optional
        Border mode; scipy's ``grid-*`` aliases are accepted.
    cval : float, optional
        Value outside the array in ``'constant'`` mode.
    origin : int, optional
        Shift of the kernel's centre, as in scipy.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The filtered array (``output`` itself when an array was given).

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> sc.correlate1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), [1, 3])
    array([ 8, 26,  8, 12,  7, 28, 36,  9])
    """
    input = check_image(input, "input")
    w = check_kernel(weights, 1, "weights")
    axis = normalize_axis(axis, input.ndim)
    mode_code = normalize_mode(mode)
    cval = check_cval(cval)
    origin = check_origin(origin, w.size)
    out_dtype = _output_dtype(input.dtype, output)
    if out_dtype.kind == "c":
        raise TypeError(f"output dtype must be real, got {out_dtype}")
    if out_dtype.kind not in "biuf":
        raise TypeError(f"output dtype must be numeric, got {out_dtype}")
    if isinstance(output, np.ndarray) and output.shape != input.shape:
        raise ValueError(f"output has shape {output.shape}, expected {input.shape}")

    if _dask.is_dask_array(input):
        if isinstance(output, np.ndarray):
            raise TypeError("output cannot be an array when input is a dask array")
        offsets, _ = taps(w, origin)
        return _dask.filter_lazily(
            partial(correlate1d, weights=w, axis=axis, output=out_dtype, mode=mode,
                    cval=cval, origin=origin, backend=backend),
            input, halo={axis: reach(offsets)}, modes={axis: CANONICAL_NAMES[mode_code]},
            dtype=out_dtype,
        )

    in_kind = np.dtype(input.dtype)
    compute = (np.dtype(np.float32)
               if in_kind.kind == "f" and in_kind.itemsize <= 4 and out_dtype.itemsize <= 4
               and out_dtype.kind == "f" else np.dtype(np.float64))
    engine = _backend.engine(_backend.resolve(backend, input))
    src, _ = engine.to_kernel_input(input, compute, True)
    result = run_terms(engine, src, [{axis: taps(w, origin)}], {axis: mode_code}, cval,
                       rule="pass", dtype=compute)
    return engine.cast_output(result, out_dtype, output)


def convolve1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0,
               *, backend="auto"):
    """Convolve an array with a 1-D kernel along one axis.

    Same as ``scipy.ndimage.convolve1d``: correlation with the reversed
    kernel, the origin mirrored (``-origin``, one less for even lengths).
    Parameters as :func:`correlate1d`.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> sc.convolve1d(np.array([2, 8, 0, 4, 1, 9, 9, 0]), [1, 3])
    array([14, 24,  4, 13, 12, 36, 27,  0])
    """
    w = check_kernel(weights, 1, "weights")[::-1]
    try:
        origin = -operator.index(origin)
    except TypeError:
        raise TypeError(f"origin must be an integer, got {type(origin).__name__}") from None
    if w.size % 2 == 0:
        origin -= 1
    return correlate1d(input, w, axis, output, mode, cval, origin, backend=backend)


# --------------------------------------------------------------------------
# Separable n-D kernels
# --------------------------------------------------------------------------

def _check_kernels_1d(kernels):
    if isinstance(kernels, np.ndarray) and kernels.ndim == 2:
        kernels = list(kernels)
    elif isinstance(kernels, np.ndarray) and kernels.ndim == 1 and kernels.dtype != object:
        raise ValueError(
            "kernels must be a sequence of 1-D kernels (one per axis), got a single 1-D "
            "array; wrap it in a list for one axis"
        )
    try:
        kernels = list(kernels)
    except TypeError:
        raise TypeError("kernels must be a sequence of 1-D kernels") from None
    if not kernels:
        raise ValueError("kernels must hold at least one 1-D kernel")
    return [check_kernel(k, 1, f"kernels[{i}]") for i, k in enumerate(kernels)]


@_backend.like_input
def separable_filter(image, kernels, *, axes=None, mode="reflect", cval=0.0,
                     channel_axis=None, dtype=None, preserve_range=False, backend="auto"):
    """Correlate with the outer product of 1-D kernels, one pass per axis.

    Equals ``scipy.ndimage.correlate1d`` along each axis of ``axes`` in turn;
    in ``'constant'`` mode each pass pads with ``cval`` (scipy's convention
    for its separable filters such as ``gaussian_filter``).

    Parameters
    ----------
    image : array_like
        Bool, integer or float image.
    kernels : sequence of array_like
        1-D kernels, one per axis of ``axes`` (a 2-D array is read as rows).
    axes : sequence of int, optional
        Axes to filter, in pass order. Default: the last ``len(kernels)``
        non-channel axes.
    mode : str or sequence of str, optional
        Border mode, or one per axis of ``axes``.
    cval : float, optional
        Value outside the image in ``'constant'`` mode.
    channel_axis : int, optional
        Axis of channels, never filtered across.
    dtype : {None, numpy.float32, numpy.float64}, optional
        Output type (default: the scikit-image rule, see the README).
    preserve_range : bool, optional
        Do not scale integer input to [0, 1] / [-1, 1].
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        Filtered image, same shape as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> box = np.ones(3) / 3
    >>> sc.separable_filter(image, [box, box])[1:3, 1:3]
    array([[ 5.,  6.],
           [ 9., 10.]])
    """
    image = check_image(image)
    ks = _check_kernels_1d(kernels)
    channel_axis = normalize_channel_axis(channel_axis, image.ndim)
    spatial = spatial_axes(image.ndim, channel_axis)
    if axes is None:
        if len(ks) > len(spatial):
            raise ValueError(
                f"kernels has {len(ks)} kernels but the image has only {len(spatial)} "
                "spatial axes"
            )
        axes = spatial[len(spatial) - len(ks):]
    else:
        if np.ndim(axes) == 0:
            axes = [axes]
        axes = [normalize_axis(a, image.ndim, "axes") for a in axes]
        if len(axes) != len(ks):
            raise ValueError(f"axes has {len(axes)} entries but kernels has {len(ks)}")
        if len(set(axes)) != len(axes):
            raise ValueError(f"axes contains a repeated axis: {axes}")
        if channel_axis in axes:
            raise ValueError(f"axes includes the channel axis {channel_axis}")
    modes = dict(zip(axes, normalize_modes(mode, len(axes))))
    cval = check_cval(cval)
    out_dtype = output_float_dtype(np.dtype(image.dtype), dtype)
    term = {a: taps(k) for a, k in zip(axes, ks)}

    if _dask.is_dask_array(image):
        return _dask.filter_lazily(
            partial(separable_filter, kernels=ks, axes=axes, mode=mode, cval=cval,
                    channel_axis=channel_axis, dtype=out_dtype, preserve_range=preserve_range,
                    backend=backend),
            image,
            halo={a: reach(term[a][0]) for a in axes}, modes=mode_names(modes),
            channel_axis=channel_axis, dtype=out_dtype,
        )

    return filter_terms(image, [term], modes, cval, rule="pass", dtype=out_dtype,
                        preserve_range=preserve_range, channel_axis=channel_axis,
                        backend=backend, order=axes)


# --------------------------------------------------------------------------
# 2-D user kernels
# --------------------------------------------------------------------------

def plan_kernel(kernel, rank=None, tol=None):
    """How ``filter2d`` runs a kernel.

    Returns ``(terms, direct)``: the separable ``(column, row)`` terms to run
    when ``rank * (kh + kw) < kh * kw`` (else ``None``), and the 2-D kernel
    the result must equal (the kernel itself, or the rank-``rank``
    reconstruction), for the direct path.
    """
    split = separate_kernel(kernel, rank=rank, tol=tol)
    direct = footprint(split.kernel if rank is None else split.reconstruct())
    n_direct, n_separated = split.cost
    return (split.terms if n_separated < n_direct else None), direct


@_backend.like_input
def filter2d(image, kernel, *, mode="reflect", cval=0.0, channel_axis=None, rank=None,
             tol=None, dtype=None, preserve_range=False, backend="auto"):
    """2-D correlation with a user kernel, as separable passes when that is cheaper.

    Equals ``scipy.ndimage.correlate`` (and ``cv2.filter2D``) on each 2-D plane
    (the last two non-channel axes; other axes are a stack), even-sized
    kernels anchored as scipy anchors them. The kernel is split by SVD into
    rank-1 terms and runs as ``rank`` pairs of 1-D passes when
    ``rank * (kh + kw) < kh * kw``, otherwise directly.

    Parameters
    ----------
    image : array_like
        Image with at least two spatial axes.
    kernel : array_like, shape (kh, kw)
        Finite real weights.
    mode : str or pair of str, optional
        Border mode, or one per filtered axis.
    cval : float, optional
        Value outside the image in ``'constant'`` mode.
    channel_axis : int, optional
        Axis of channels, filtered independently.
    rank : int, optional
        Keep only this many SVD terms: the result equals correlating with
        ``separate_kernel(kernel, rank=rank).reconstruct()``. Default: exact.
    tol : float, optional
        Singular-value threshold of the split (see :func:`separate_kernel`).
    dtype : {None, numpy.float32, numpy.float64}, optional
        Output type (default: the scikit-image rule).
    preserve_range : bool, optional
        Do not scale integer input.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        Filtered image, same shape as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.zeros((5, 5)); image[2, 2] = 1.0
    >>> kernel = np.outer([1, 2, 1], [1, 0, -1])
    >>> sc.filter2d(image, kernel)[1:4, 1:4]
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]])
    """
    image = check_image(image)
    k = check_kernel(kernel, 2)
    channel_axis = normalize_channel_axis(channel_axis, image.ndim)
    spatial = spatial_axes(image.ndim, channel_axis)
    if len(spatial) < 2:
        raise ValueError(f"image must have at least 2 spatial dimensions, got {len(spatial)}")
    ay, ax = spatial[-2:]
    mode_y, mode_x = normalize_modes(mode, 2)
    cval = check_cval(cval)
    out_dtype = output_float_dtype(np.dtype(image.dtype), dtype)
    terms_1d, direct = plan_kernel(k, rank, tol)

    if _dask.is_dask_array(image):
        kh, kw = k.shape
        return _dask.filter_lazily(
            partial(filter2d, kernel=k, mode=mode, cval=cval, channel_axis=channel_axis,
                    rank=rank, tol=tol, dtype=out_dtype, preserve_range=preserve_range,
                    backend=backend),
            image, halo={ay: (kh // 2, kh - 1 - kh // 2), ax: (kw // 2, kw - 1 - kw // 2)},
            modes={ay: CANONICAL_NAMES[mode_y], ax: CANONICAL_NAMES[mode_x]},
            channel_axis=channel_axis, dtype=out_dtype,
        )

    modes = {ay: mode_y, ax: mode_x}
    if terms_1d is not None:
        terms = [{ay: taps(c, skip_zero=True), ax: taps(r, skip_zero=True)} for c, r in terms_1d]
        several = len(terms) > 1  # only a sum of terms can meet NaN or inf differently
        result = filter_terms(image, terms, modes, cval, rule="full", dtype=out_dtype,
                              preserve_range=preserve_range, channel_axis=channel_axis,
                              backend=backend, check_finite=several)
        out, finite = result if several else (result, True)
        if finite:
            return out
        # NaN or inf met the kernel: several terms would add +inf and -inf, and each
        # term's footprint is the whole kernel's box. Run the kernel itself instead, so
        # non-finite values spread only through its non-zero weights, as in scipy.
    return _correlate_direct(image, direct, mode_y, mode_x, cval, out_dtype, preserve_range,
                             channel_axis, backend)


def _correlate_direct(image, kernel, mode_y, mode_x, cval, dtype, preserve_range,
                      channel_axis, backend):
    engine = _backend.engine(_backend.resolve(backend, image))
    src, scale = engine.to_kernel_input(image, dtype, preserve_range)
    if channel_axis is not None:
        src = engine.channels_first(src, channel_axis)
    out = engine.empty(src.shape, dtype)
    kh, kw = kernel.shape
    engine.correlate_planes(src, kernel * scale, kh // 2, kw // 2, mode_y, mode_x,
                            cval / scale, out)
    if channel_axis is not None:
        out = engine.channels_back(out, channel_axis)
    return out
