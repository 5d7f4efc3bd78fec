"""1-D, separable and user-kernel filtering.

``correlate1d``/``convolve1d`` follow ``scipy.ndimage`` (values, output
handling, default output dtype, complex data through ``_complex``);
``separable_filter`` and ``filter2d`` follow
the scikit-image dtype rule. ``filter2d`` splits a kernel by SVD
(:func:`~napari_sepconv.separate_kernel`) and runs rank-1 pass pairs whenever
that needs fewer multiplications than the direct kernel.
"""

import operator

import numpy as np

from . import _backend, _dask
from ._boundary import CANONICAL_NAMES
from ._complex import correlate_parts, is_complex
from ._passes import reach, taps
from ._plan import Plan, attach_plan, execute, get_plan, planned
from ._programs import DirectProgram, terms_program
from ._validation import (
    ScipyTypeError,
    ScipyValueError,
    as_array,
    check_cval,
    check_image,
    check_kernel,
    check_origin,
    input_scale,
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
        raise ScipyTypeError(f"output must be None, a dtype or an array, got {output!r}") from None
    return dt


def _complex_weights(weights):
    """Whether ``weights`` is complex (scipy.ndimage then filters the real and imaginary parts);
    weights that are no array at all are reported by ``check_kernel``."""
    if isinstance(weights, np.ndarray):
        return weights.dtype.kind == "c"
    if isinstance(weights, (list, tuple)) and all(isinstance(v, (int, float)) for v in weights):
        return False  # the common list of numbers, with no array made to ask
    try:
        return np.iscomplexobj(weights)
    except (TypeError, ValueError):
        return False


@_backend.like_input
def correlate1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0, *, backend="auto"):
    """Correlate an array with a 1-D kernel along one axis.

    Same values, ``output`` handling and default output dtype as
    ``scipy.ndimage.correlate1d``: ``out[i] = sum_k weights[k] *
    input[i + k - (len(weights) // 2 + origin)]``, positions outside the array
    supplied by ``mode``.

    Parameters
    ----------
    input : array_like
        Bool, integer, float or complex array of any number of dimensions.
    weights : array_like
        1-D kernel, real or complex. As in scipy, complex input or weights are
        filtered as their real and imaginary parts, complex weights conjugated
        (host arrays only).
    axis : int, optional
        Axis to filter along (default: the last).
    output : array or dtype, optional
        Array to fill, or the dtype of the result; default: the input's dtype
        (complex results: scipy's complex type rule). Values are computed in
        float64 (float32 for float32 input) and cast.
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

    Complex weights are conjugated, as scipy.ndimage does:

    >>> sc.correlate1d(np.array([1.0, 2.0, 4.0]), [1j, 1])
    array([1.-1.j, 2.-1.j, 4.-2.j])
    """
    input = as_array(input)
    if _complex_weights(weights) or is_complex(input, output):
        kwargs = dict(axis=axis, mode=mode, origin=origin, backend=backend)
        return correlate_parts(correlate1d, input, weights, output, cval, **kwargs)
    input = check_image(input, "input", min_ndim=0)
    out_dtype = _checked_output(input, output)
    plan = get_plan(_plan_correlate1d, input, backend, weights, axis, out_dtype, mode, cval, origin)
    return execute(plan, input, output if isinstance(output, np.ndarray) else None)


def _checked_output(input, output):
    """The output type of ``correlate1d(input, ..., output)``; an ``output`` array checked."""
    out_dtype = _output_dtype(input.dtype, output)
    if isinstance(output, np.ndarray):
        if output.shape != input.shape:
            raise ScipyValueError(f"output has shape {output.shape}, expected {input.shape}")
        if not output.flags.writeable:
            raise ValueError("output is a read-only array; pass a writable array or a dtype")
        if _dask.is_dask_array(input):
            raise TypeError("output cannot be an array when input is a dask array")
    return out_dtype


def _plan_correlate1d(shape, dtype, backend, weights, axis, out_dtype, mode, cval, origin, compute=None):
    """``correlate1d``'s plan; ``compute`` forces the type the pass runs in (float32 for
    float32 input and output, else float64, by default)."""
    w = check_kernel(weights, 1, "weights")
    axis = normalize_axis(axis, len(shape))
    mode_code = normalize_mode(mode)
    cval = check_cval(cval)
    origin = check_origin(origin, w.size)
    if out_dtype.kind == "c":
        raise TypeError(f"output dtype must be real, got {out_dtype}")
    if out_dtype.kind not in "biuf":
        raise ScipyTypeError(f"output dtype must be numeric, got {out_dtype}")
    if compute is None:
        single = (
            dtype.kind == "f" and dtype.itemsize <= 4 and out_dtype.itemsize <= 4 and out_dtype.kind == "f"
        )
        compute = np.float32 if single else np.float64
    compute = np.dtype(compute)
    offsets, weights = taps(w, origin)
    program = terms_program(
        [{axis: (offsets, weights)}],
        {axis: mode_code},
        cval,
        len(shape),
        rule="pass",
        dtype=compute,
        input_dtype=dtype,
        preserve_range=True,
        cast=out_dtype,
    )
    return Plan(
        "correlate1d",
        backend,
        shape,
        dtype,
        shape,
        out_dtype,
        None,
        halo={axis: reach(offsets)},
        modes={axis: CANONICAL_NAMES[mode_code]},
        multiplications=w.size,
        program=program,
    )


def _plan_of_correlate1d(
    input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0, *, backend="auto"
):
    input = as_array(input)
    if _complex_weights(weights) or is_complex(input, output):
        raise TypeError(
            "a complex call runs as calls on its real and imaginary parts: .plan describes "
            "real input, weights and output only"
        )
    input = check_image(input, "input", min_ndim=0)
    out_dtype = _checked_output(input, output)
    return get_plan(_plan_correlate1d, input, backend, weights, axis, out_dtype, mode, cval, origin)


attach_plan(correlate1d, _plan_of_correlate1d)


def convolve1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0, *, backend="auto"):
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
    if _complex_weights(weights):  # conjugated here, as correlate1d conjugates them again
        weights = np.conj(np.asarray(weights))
    w, origin = _mirrored(weights, origin)
    return correlate1d(input, w, axis, output, mode, cval, origin, backend=backend)


def _mirrored(weights, origin):
    """The correlation weights and origin that convolve as ``weights`` at ``origin`` do."""
    w = (np.asarray(weights) if _complex_weights(weights) else check_kernel(weights, 1, "weights"))[::-1]
    try:
        origin = operator.index(origin)
    except TypeError:
        raise TypeError(f"origin must be an integer, got {type(origin).__name__}") from None
    if w.ndim == 1 and w.size:  # the range is the same mirrored: an error names the value given
        check_origin(origin, w.size)
    origin = -origin
    if w.size % 2 == 0:
        origin -= 1
    return w, origin


def _plan_convolve1d(
    input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0, *, backend="auto"
):
    w, origin = _mirrored(weights, origin)
    return correlate1d.plan(input, w, axis, output, mode, cval, origin, backend=backend)


attach_plan(convolve1d, _plan_convolve1d)


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
@planned
def separable_filter(
    image,
    kernels,
    *,
    axes=None,
    mode="reflect",
    cval=0.0,
    channel_axis=None,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
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
    return get_plan(
        _plan_separable, image, backend, kernels, axes, mode, cval, channel_axis, dtype, preserve_range
    )


def _plan_separable(
    shape, dtype, backend, kernels, axes, mode, cval, channel_axis, out_dtype, preserve_range, fuse=True
):
    ks = _check_kernels_1d(kernels)
    ndim = len(shape)
    channel_axis = normalize_channel_axis(channel_axis, ndim)
    spatial = spatial_axes(ndim, channel_axis)
    if axes is None:
        if len(ks) > len(spatial):
            raise ValueError(
                f"kernels has {len(ks)} kernels but the image has only {len(spatial)} spatial axes"
            )
        axes = spatial[len(spatial) - len(ks) :]
    else:
        if np.ndim(axes) == 0:
            axes = [axes]
        axes = [normalize_axis(a, ndim, "axes") for a in axes]
        if len(axes) != len(ks):
            raise ValueError(f"axes has {len(axes)} entries but kernels has {len(ks)}")
        if len(set(axes)) != len(axes):
            raise ValueError(f"axes contains a repeated axis: {axes}")
        if channel_axis in axes:
            raise ValueError(f"axes includes the channel axis {channel_axis}")
    modes = dict(zip(axes, normalize_modes(mode, len(axes))))
    cval = check_cval(cval)
    result_dtype = output_float_dtype(dtype, out_dtype)
    term = {a: taps(k) for a, k in zip(axes, ks)}
    program = terms_program(
        [term],
        modes,
        cval,
        ndim,
        rule="pass",
        dtype=result_dtype,
        input_dtype=dtype,
        preserve_range=preserve_range,
        channel_axis=channel_axis,
        order=axes,
        fuse=fuse,
    )
    return Plan(
        "separable_filter",
        backend,
        shape,
        dtype,
        shape,
        result_dtype,
        channel_axis,
        halo={a: reach(term[a][0]) for a in axes},
        modes=mode_names(modes),
        multiplications=program.lowered.multiplications,
        program=program,
        rank=1,
    )


# --------------------------------------------------------------------------
# 2-D user kernels
# --------------------------------------------------------------------------


@_backend.like_input
@planned
def filter2d(
    image,
    kernel,
    *,
    mode="reflect",
    cval=0.0,
    channel_axis=None,
    rank=None,
    tol=None,
    dtype=None,
    preserve_range=False,
    backend="auto",
):
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
        Where it drops terms (the split is not exact), the result equals
        correlating with ``separate_kernel(kernel, tol=tol).reconstruct()``,
        whichever way it runs.
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
    return get_plan(
        _plan_filter2d, image, backend, kernel, mode, cval, channel_axis, rank, tol, dtype, preserve_range
    )


def _plan_filter2d(
    shape, dtype, backend, kernel, mode, cval, channel_axis, rank, tol, out_dtype, preserve_range
):
    k = check_kernel(kernel, 2)
    ndim = len(shape)
    channel_axis = normalize_channel_axis(channel_axis, ndim)
    spatial = spatial_axes(ndim, channel_axis)
    if len(spatial) < 2:
        raise ValueError(f"image must have at least 2 spatial dimensions, got {len(spatial)}")
    ay, ax = spatial[-2:]
    mode_y, mode_x = normalize_modes(mode, 2)
    cval = check_cval(cval)
    result_dtype = output_float_dtype(dtype, out_dtype)
    split = separate_kernel(k, rank=rank, tol=tol)
    # the kernel itself (scipy's values) unless terms were dropped: by ``rank``, or by ``tol``
    exact_kernel = rank is None and (tol is None or split.is_exact)
    direct_kernel = footprint(split.kernel if exact_kernel else split.reconstruct())
    n_direct, n_separated = split.cost
    scale = input_scale(dtype, preserve_range)
    kh, kw = k.shape
    direct = DirectProgram(
        direct_kernel * scale, mode_y, mode_x, cval / scale, result_dtype, preserve_range, channel_axis
    )
    # Weights within an epsilon of zero are out of scipy's footprint, but the products of a
    # split's factors make them again: non-finite values would spread through them.
    tiny = bool(np.any((k != 0) & (footprint(k) == 0)))
    if n_separated < n_direct and np.any(direct_kernel):
        terms = [{ay: taps(c, skip_zero=True), ax: taps(r, skip_zero=True)} for c, r in split.terms]
        # where NaN or inf may meet the split otherwise than the kernel: a sum of terms, or
        # products of factors that bring back weights out of the footprint
        unlike_kernel = len(terms) > 1 or tiny
        program = terms_program(
            terms,
            {ay: mode_y, ax: mode_x},
            cval,
            ndim,
            rule="full",
            dtype=result_dtype,
            input_dtype=dtype,
            preserve_range=preserve_range,
            channel_axis=channel_axis,
            fallback=direct if unlike_kernel else None,
        )
        multiplications = program.lowered.multiplications
    else:
        program = direct
        multiplications = int(np.count_nonzero(direct_kernel)) or 1
    return Plan(
        "filter2d",
        backend,
        shape,
        dtype,
        shape,
        result_dtype,
        channel_axis,
        halo={ay: (kh // 2, kh - 1 - kh // 2), ax: (kw // 2, kw - 1 - kw // 2)},
        modes={ay: CANONICAL_NAMES[mode_y], ax: CANONICAL_NAMES[mode_x]},
        multiplications=multiplications,
        program=program,
        rank=split.rank,
        exact=split.is_exact,
    )
