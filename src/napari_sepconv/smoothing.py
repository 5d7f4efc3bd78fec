"""The Gaussian family and the uniform (box) filter, as drop-ins for the peers.

scikit-image 0.26 style (the dtype rule of the README, ``channel_axis``):
:func:`gaussian`, :func:`difference_of_gaussians`, :func:`unsharp_mask`,
:func:`laplace`. scipy.ndimage 1.17 style (``input``, ``output``, a mode per
axis, ``truncate``, ``radius``, ``axes``; the output has the input's dtype
unless ``output`` says otherwise): :func:`gaussian_filter`,
:func:`gaussian_filter1d`, :func:`gaussian_gradient_magnitude`,
:func:`gaussian_laplace`, :func:`uniform_filter`, :func:`uniform_filter1d`
and :func:`ndimage_laplace` (scipy's ``laplace``).

The Gaussian filters are separable kernels run by :func:`separable_filter`
and :func:`correlate1d` (sums of kernels, such as a difference of Gaussians,
by the same pass engine); the uniform filter is a running sum, O(1) work per
sample whatever its size. Every function takes ``backend=``, GPU arrays and
dask arrays as the other filters do.

As in scipy.ndimage, a multi-axis Gaussian with an integer output stores each
pass's result in the output type before the next pass reads it, and one with a
float64 output stores each pass in float64: it is :func:`gaussian_filter1d`
along each axis in turn, bit for bit. A float32 output runs its passes fused, in
float32.
"""

import contextlib
import numbers
import operator
from functools import lru_cache, partial

import numpy as np

from . import _backend, _dask
from ._boundary import CANONICAL_NAMES
from ._complex import complex_output, complex_result, filter_parts, is_complex
from ._passes import MAGNITUDE, SUM, filter_terms, reach, taps
from ._plan import execute, get_plan
from ._scratch import Alternating
from ._validation import (
    ScipyTypeError,
    ScipyValueError,
    as_array,
    check_cval,
    check_image,
    normalize_axis,
    normalize_channel_axis,
    normalize_mode,
    output_float_dtype,
    real_number,
    spatial_axes,
)
from .separable import _checked_output, _plan_correlate1d, _plan_separable, correlate1d

__all__ = [
    "difference_of_gaussians",
    "gaussian",
    "gaussian_filter",
    "gaussian_filter1d",
    "gaussian_gradient_magnitude",
    "gaussian_kernel",
    "gaussian_laplace",
    "laplace",
    "ndimage_laplace",
    "uniform_filter",
    "uniform_filter1d",
    "unsharp_mask",
]

# scipy.ndimage leaves out axes whose sigma is at most this.
_SIGMA_EPS = 1e-15


class SequenceLengthError(ValueError, RuntimeError):
    """A per-axis argument of the wrong length, or a bad filter size.

    A ``ValueError`` as every argument error here is, and also the
    ``RuntimeError`` that scipy.ndimage raises in these cases, so code written
    for scipy keeps catching it.
    """


# --------------------------------------------------------------------------
# Argument normalisation (scipy.ndimage's rules)
# --------------------------------------------------------------------------


def _per_axis(value, n, name):
    """A scalar repeated ``n`` times, or a sequence of exactly ``n`` values."""
    if not isinstance(value, str) and np.iterable(value):
        values = list(value)
        if len(values) != n:
            raise SequenceLengthError(
                f"{name} has {len(values)} entries but {n} axes are filtered; "
                "sequence argument must have length equal to the number of axes"
            )
        return values
    return [value] * n


def _check_axes(axes, ndim):
    """scipy.ndimage's ``axes``: None (all), an integer or a sequence of distinct ones."""
    if axes is None:
        return list(range(ndim))
    if np.ndim(axes) == 0:
        axes = [axes]
    try:
        axes = [normalize_axis(a, ndim, "axes") for a in axes]
    except TypeError:
        raise TypeError("axes must be an integer, a sequence of integers or None") from None
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes must be unique, got {axes}")
    return axes


def _check_sigma(sigma, name="sigma"):
    value = real_number(sigma, name)
    if not value >= 0 or value == np.inf:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return _as_scipy_sees(sigma, value)


def _as_scipy_sees(original, value):
    """``value`` (``original`` checked, as a Python float) in the type scipy's arithmetic
    keeps: a NumPy float scalar (or 0-d array) of less or more precision than float64 keeps
    its type, as NumPy keeps it in ``original * 2.0`` (a float32 sigma's ``-0.5 / sigma**2``
    is rounded to float32 in scipy's kernel)."""
    if isinstance(original, np.ndarray):
        original = original[()]
    if isinstance(original, np.floating) and not isinstance(original, np.float64):
        return original
    return value


def _check_order(order, name="order"):
    """A derivative order: an integer >= 0, as scipy's kernel takes it (``False`` is 0;
    ``True``, which it refuses, is not 1)."""
    try:
        if isinstance(order, (bool, np.bool_)):
            if order:
                raise TypeError
            order = 0
        order = operator.index(order)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(order).__name__}") from None
    if order < 0:
        raise ValueError(f"{name} must be non-negative, got {order}")
    return order


def _kernel_radius(sigma, truncate, radius, name="radius"):
    """scipy's radius: ``radius`` itself, else ``int(truncate * sigma + 0.5)``."""
    if radius is None:
        value = real_number(truncate, "truncate")
        if not np.isfinite(value):
            raise ValueError(f"truncate must be a finite number, got {value}")
        radius = int(_as_scipy_sees(truncate, value) * float(sigma) + 0.5)  # scipy's arithmetic
        if radius < 0:
            raise ValueError(f"truncate must not be negative, got {truncate}")
        return radius
    if not isinstance(radius, numbers.Integral):  # a bool too, as in scipy (True is 1)
        raise ValueError(f"{name} must be a non-negative integer, got {radius!r}")
    if radius < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {radius}")
    return int(radius)


def gaussian_kernel(sigma, order=0, radius=None, truncate=4.0):
    """The 1-D Gaussian (derivative) kernel of scipy.ndimage, in convolution order.

    ``phi(x) = exp(-x**2 / (2 sigma**2))`` on ``x = -radius .. radius``,
    normalised to sum 1, times the polynomial that makes it the ``order``-th
    derivative of the normalised Gaussian. ``radius`` defaults to
    ``int(truncate * sigma + 0.5)``.

    Parameters
    ----------
    sigma : float
        Standard deviation, > 0.
    order : int, optional
        Derivative order (0: the Gaussian itself).
    radius : int, optional
        Half-width; overrides ``truncate``.
    truncate : float, optional
        Half-width in standard deviations.

    Returns
    -------
    kernel : ndarray, shape (2 * radius + 1,)
        float64 (longdouble for a ``np.longdouble`` sigma; a float32 sigma's arithmetic is
        partly in float32, as NumPy's rules make it in scipy).

    Examples
    --------
    >>> from napari_sepconv.smoothing import gaussian_kernel
    >>> gaussian_kernel(1.0, radius=2).round(4)
    array([0.0545, 0.2442, 0.4026, 0.2442, 0.0545])
    >>> gaussian_kernel(1.0, order=1, radius=1).round(4) + 0.0
    array([ 0.2741,  0.    , -0.2741])
    """
    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("sigma must be positive for a kernel")
    order = _check_order(order)
    radius = _kernel_radius(sigma, truncate, radius)
    sigma2 = sigma * sigma
    x = np.arange(-radius, radius + 1)
    phi_x = np.exp(-0.5 / sigma2 * x**2)
    phi_x = phi_x / phi_x.sum()
    if order == 0:
        return phi_x
    # f(x) = q(x) phi(x); f'(x) = (q'(x) - q(x) x / sigma**2) phi(x): apply that
    # operator ``order`` times to the coefficients of q (scipy's construction).
    exponent_range = np.arange(order + 1)
    q = np.zeros(order + 1)
    q[0] = 1
    derivative = np.diag(exponent_range[1:], 1)
    times_p = np.diag(np.ones(order) / -sigma2, -1)
    step = derivative + times_p
    for _ in range(order):
        q = step.dot(q)
    q = (x[:, None] ** exponent_range).dot(q)
    return q * phi_x


def _gaussian_weights(sigma, order, truncate, radius, dtype=np.float64):
    """``_new_gaussian_weights``, read-only, made once per set of arguments: repeated calls
    (plane loops, previews) then also meet their plan with the same kernel arrays."""
    try:
        return _cached_gaussian_weights(sigma, order, truncate, radius, dtype)
    except TypeError:  # an unhashable argument: checked (and reported) as it is
        return _new_gaussian_weights(sigma, order, truncate, radius, dtype)


def _new_gaussian_weights(sigma, order, truncate, radius, dtype=np.float64):
    """Correlation weights of scipy's ``gaussian_filter1d`` (the kernel reversed).

    For fused passes (``dtype`` float32 or float64) a smoothing kernel is rounded to
    multiples of one unit in the last place of 1 (2**-53 for float64 passes, 2**-24 for
    float32) with the centre set so that the weights sum to exactly 1: every partial
    sum is then exact, so a constant image comes back exactly, whatever order the
    kernels add the taps in. The change is below the rounding of the passes
    themselves. ``dtype=None`` gives scipy's weights as they are, for passes that add
    their taps in scipy's order (``correlate1d``) and so give its bits.
    """
    weights = gaussian_kernel(sigma, order, radius, truncate)[::-1].copy()
    if order == 0 and dtype is not None:
        bits = 53 if np.dtype(dtype).itemsize == 8 else 24
        units = np.round(weights * 2.0**bits).astype(np.int64)
        units[units.size // 2] += 2**bits - int(units.sum())
        weights = units / 2.0**bits
    weights.flags.writeable = False
    return weights


# typed: ``order=1.0`` or ``radius=2.0`` must not find the entry of ``1`` or ``2`` (scipy
# refuses them), and a float32 sigma gives other weights than the float64 one equal to it
_cached_gaussian_weights = lru_cache(maxsize=256, typed=True)(_new_gaussian_weights)


def _check_output(input, output):
    """The output dtype of a scipy-style call, after checking ``output`` (as ``correlate1d``
    does, and that the type is real and numeric)."""
    out_dtype = _checked_output(input, output)
    if out_dtype.kind == "c":
        raise TypeError(f"output dtype must be real, got {out_dtype}")
    if out_dtype.kind not in "biuf":
        raise ScipyTypeError(f"output dtype must be numeric, got {out_dtype}")
    return out_dtype


def _compute_dtype(out_dtype):
    """Float type the passes run in for a float output: float32 for float32 (and float16)."""
    return np.dtype(np.float32) if out_dtype.kind == "f" and out_dtype.itemsize <= 4 else np.dtype(np.float64)


def _runs_fused(out_dtype):
    """Whether ``gaussian_filter``'s passes for an ``out_dtype`` output run fused (float32
    and float16 outputs, in float32) rather than one by one as scipy runs them."""
    return out_dtype.kind == "f" and _compute_dtype(out_dtype) == np.float32


def _deliver(result, out_dtype, output):
    """``result`` as ``out_dtype``, or copied into the ``output`` array (scipy's casts)."""
    if _dask.is_dask_array(result):
        return result if result.dtype == out_dtype else result.astype(out_dtype)
    engine = _backend.engine("cuda" if _backend.is_device_array(result) else "cpu")
    return engine.cast_output(result, out_dtype, output)


def _copy(input, out_dtype, output, backend):
    """No axis to filter (a 0-d input, ``axes=()``, every sigma 0, size 1): scipy's
    ``output[...] = input``, NumPy's cast (exact for 64-bit integers, ``0.5`` True as a
    bool), on every kind of array: a dask array lazily, a GPU array on the host (a copy
    there and back, for calls that filter nothing)."""
    if _dask.is_dask_array(input):
        if isinstance(output, np.ndarray):
            raise TypeError("output cannot be an array when input is a dask array")
        return input.astype(out_dtype)
    if _backend.is_device_array(input):
        from numba import cuda

        host = _copy(input.copy_to_host(), out_dtype, output, backend)
        return host if isinstance(output, np.ndarray) else cuda.to_device(host)
    out = output if isinstance(output, np.ndarray) else np.empty(input.shape, out_dtype)
    out[...] = input
    return out


def _complex_copy(input, output, promote, backend):
    """:func:`_copy` for a call with complex input or a complex output that filters no axis,
    its output type as scipy gives it (a real input into a complex output, a complex one
    into its real part): ``promote``, a complex input's real output dtype made complex, as
    ``uniform_filter`` does."""
    if promote and np.dtype(input.dtype).kind == "c":
        out_dtype = complex_output(input, output, promote=True)
    else:
        out_dtype = _checked_output(input, output)
    return _copy(input, out_dtype, output, backend)


def _filters_nothing(filtered):
    """Whether a call filters no axis, ``filtered()`` giving what it filters (its passes, or
    its axes) as its real path finds them; False where an argument is bad, which the call
    itself then reports."""
    try:
        return not filtered()
    except (TypeError, ValueError, RuntimeError):
        return False


# --------------------------------------------------------------------------
# Sums of separable terms on every kind of array
# --------------------------------------------------------------------------


def _term_reach(terms):
    """Per axis, the furthest any term reaches before and after a sample."""
    halo = {}
    for term in terms:
        for axis, (offsets, _) in term.items():
            before, after = reach(offsets)
            old = halo.get(axis, (0, 0))
            halo[axis] = (max(old[0], before), max(old[1], after))
    return halo


@_backend.like_input
def _filter_sum(image, terms, modes, cval, *, combine, dtype, preserve_range, channel_axis, backend):
    """``sum`` (or the magnitude) of separable ``terms``; ``modes`` is one dict per term.

    Terms with the same border modes run together (their passes fused); terms
    whose modes differ run one by one and are combined afterwards. Dask input
    is filtered block by block with this same function.
    """
    if _dask.is_dask_array(image):
        halo = _term_reach(terms)
        names = {}
        rechunk = {}
        for axis in halo:
            wraps = {m[axis] == 4 for m in modes}  # 4: wrap
            names[axis] = "wrap" if wraps == {True} else "reflect"
            if len(wraps) > 1:
                rechunk[axis] = -1  # wrap and non-wrap terms: keep the axis whole
        if rechunk:
            image = image.rechunk(rechunk)
        return _dask.filter_lazily(
            partial(
                _filter_sum,
                terms=terms,
                modes=modes,
                cval=cval,
                combine=combine,
                dtype=dtype,
                preserve_range=preserve_range,
                channel_axis=channel_axis,
                backend=backend,
            ),
            image,
            halo=halo,
            modes=names,
            channel_axis=channel_axis,
            dtype=dtype,
        )
    common = {}
    for m in modes:
        for axis, code in m.items():
            common.setdefault(axis, set()).add(code)
    if all(len(codes) == 1 for codes in common.values()):
        return filter_terms(
            image,
            terms,
            modes[0],
            cval,
            rule="pass",
            combine=combine,
            dtype=dtype,
            preserve_range=preserve_range,
            channel_axis=channel_axis,
            backend=backend,
        )
    engine = _backend.engine(_backend.resolve(backend, image))
    out = None
    for i, (term, term_modes) in enumerate(zip(terms, modes)):
        values = filter_terms(
            image,
            [term],
            term_modes,
            cval,
            rule="pass",
            dtype=dtype,
            preserve_range=preserve_range,
            channel_axis=channel_axis,
            backend=backend,
        )
        if out is None:
            out = engine.empty(values.shape, dtype)
        engine.combine_into(out, values, squares=combine == MAGNITUDE, first=i == 0)
    if combine == MAGNITUDE:
        engine.finish_magnitude(out, 1.0)
    return out


def _identity():
    return np.zeros(1, np.int64), np.ones(1)


# --------------------------------------------------------------------------
# scipy.ndimage style
# --------------------------------------------------------------------------


@_backend.like_input
def gaussian_filter1d(
    input,
    sigma,
    axis=-1,
    order=0,
    output=None,
    mode="reflect",
    cval=0.0,
    truncate=4.0,
    *,
    radius=None,
    backend="auto",
):
    """1-D Gaussian filter (or Gaussian derivative) along one axis.

    Same values, ``output`` handling and default output dtype (the input's) as
    ``scipy.ndimage.gaussian_filter1d``: correlation with
    :func:`gaussian_kernel` ``(sigma, order, radius)`` reversed, i.e.
    convolution with the Gaussian or its ``order``-th derivative.

    Parameters
    ----------
    input : array_like
        Bool, integer or float array.
    sigma : float
        Standard deviation of the Gaussian, > 0.
    axis : int, optional
        Axis to filter along (default: the last).
    order : int, optional
        0 for the Gaussian, 1, 2, 3, ... for its derivatives.
    output : array or dtype, optional
        Array to fill, or the dtype of the result (default: the input's).
    mode : {'reflect', 'constant', 'nearest', 'mirror', 'wrap'}, optional
        Border mode; scipy's ``grid-*`` aliases are accepted.
    cval : float, optional
        Value outside the array in ``'constant'`` mode.
    truncate : float, optional
        Kernel half-width in standard deviations (``radius = int(truncate *
        sigma + 0.5)``).
    radius : int, optional
        Kernel half-width; overrides ``truncate``.
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
    >>> sc.gaussian_filter1d([1.0, 2.0, 3.0, 4.0, 5.0], 1).round(6)
    array([1.427041, 2.067822, 3.      , 3.932178, 4.572959])
    >>> sc.gaussian_filter1d(np.arange(20.0) ** 2, 1.0, order=2)[8:12].round(3)  # about 2
    array([1.994, 1.992, 1.991, 1.99 ])
    """
    if is_complex(input := as_array(input), output):
        return filter_parts(
            gaussian_filter1d,
            input,
            output,
            cval,
            promote=True,
            sigma=sigma,
            axis=axis,
            order=order,
            mode=mode,
            truncate=truncate,
            radius=radius,
            backend=backend,
        )
    input = check_image(input, "input", min_ndim=0)
    out_dtype = _check_output(input, output)
    arguments = (sigma, axis, order, out_dtype.str, mode, cval, truncate, radius)
    plan = get_plan(_plan_gaussian_filter1d, input, backend, *arguments)
    return execute(plan, input, output if isinstance(output, np.ndarray) else None)


def _plan_gaussian_filter1d(
    shape, dtype, backend, sigma, axis, order, out_type, mode, cval, truncate, radius
):
    """The plan of a :func:`gaussian_filter1d` call: ``correlate1d``'s with scipy's weights
    (so its bits), computed in float64 whatever the output (``out_type``, its type string),
    as scipy computes it. Made once per set of arguments (``get_plan``)."""
    sigma = _check_sigma(sigma)
    if sigma == 0 and radius is None:
        raise ValueError("sigma must be positive (or give radius)")
    weights = _gaussian_weights(sigma, order, truncate, radius, dtype=None)
    out_dtype = np.dtype(out_type)
    return _plan_correlate1d(shape, dtype, backend, weights, axis, out_dtype, mode, cval, 0, np.float64)


def _gaussian_axes(ndim, axes, sigma, order, mode, radius, truncate, fused=False):
    """scipy's ``gaussian_filter`` plan: ``[(axis, weights, mode code)]`` for each
    axis of ``axes`` whose sigma exceeds 1e-15, in the order of ``axes``.

    Passes run one by one (``_runs_fused`` false, ``_plan_gaussian_filter``) keep scipy's weights
    and so give its bits; fused float32 passes get weights summing to 1."""
    axes = _check_axes(axes, ndim)
    n = len(axes)
    orders = [_check_order(o, "order") for o in _per_axis(order, n, "order")]
    sigmas = [_check_sigma(s) for s in _per_axis(sigma, n, "sigma")]
    modes = _per_axis(mode, n, "mode")
    radii = _per_axis(radius, n, "radius")
    plan = []
    for axis, s, o, m, r in zip(axes, sigmas, orders, modes, radii):
        code = normalize_mode(m, "mode")
        if s > _SIGMA_EPS:
            weights = _gaussian_weights(s, o, truncate, r, np.float32 if fused else None)
            plan.append((axis, weights, code))
    return plan


def _plan_gaussian_filter(shape, dtype, backend, sigma, order, out_type, mode, cval, truncate, radius, axes):
    """The plan of a ``gaussian_filter`` call with a float output (``out_type``, its type string):
    ``_gaussian_axes``'s passes as one separable plan, fused in float32 for a float32 (or
    float16) output, else one pass per axis stored in float64, as scipy runs them
    (``_runs_fused``); None where no axis is filtered. Made once per set of arguments
    (``get_plan``): a loop over planes or a preview finds it ready."""
    out_dtype = np.dtype(out_type)
    fused = _runs_fused(out_dtype)
    passes = _gaussian_axes(len(shape), axes, sigma, order, mode, radius, truncate, fused=fused)
    if not passes:
        return None
    return _plan_separable(
        shape,
        dtype,
        backend,
        [w for _, w, _ in passes],
        [a for a, _, _ in passes],
        [CANONICAL_NAMES[m] for _, _, m in passes],
        cval,
        None,
        _compute_dtype(out_dtype),
        True,
        fused,
    )


def _run_integer_passes(input, passes, cval, out_dtype, output, backend):
    """Passes ``[(axis, weights, mode)]`` in turn for an integer or bool output, each stored
    in the output type before the next reads it, as scipy does (a bool output's passes as
    the byte scipy stores, ``_stored_between_passes``)."""
    if not passes:
        return _copy(input, out_dtype, output, backend)
    cur = input
    for i, (axis, weights, mode) in enumerate(passes):
        last = i == len(passes) - 1
        target = (output if output is not None else out_dtype) if last else _stored_between_passes(out_dtype)
        cur = correlate1d(cur, weights, axis, target, CANONICAL_NAMES[mode], cval, 0, backend=backend)
    return cur


def _stored_between_passes(out_dtype):
    """The type a pass is stored as before the next reads it, for an integer or bool output:
    the output type, but uint8 for bool. SciPy writes a pass into a bool array as the byte
    of the value cast to ``unsigned char`` (300 as 44, -1 as 255), and the next pass reads
    that byte; only the last is made a proper bool here (true where the byte is not zero)."""
    return np.dtype(np.uint8) if out_dtype == np.bool_ else out_dtype


@_backend.like_input
def gaussian_filter(
    input,
    sigma,
    order=0,
    output=None,
    mode="reflect",
    cval=0.0,
    truncate=4.0,
    *,
    radius=None,
    axes=None,
    backend="auto",
):
    """Multidimensional Gaussian filter, one 1-D pass per axis.

    Same values, ``output`` handling and default output dtype (the input's) as
    ``scipy.ndimage.gaussian_filter``: :func:`gaussian_filter1d` along each
    axis of ``axes`` whose sigma exceeds 1e-15, in turn.

    Parameters
    ----------
    input : array_like
        Bool, integer or float array.
    sigma : float or sequence of float
        Standard deviation, one for all axes or one per axis of ``axes``.
    order : int or sequence of int, optional
        Derivative order per axis (0: smoothing only).
    output : array or dtype, optional
        Array to fill, or the dtype of the result (default: the input's).
        Integer outputs store each pass's result as integers, as scipy does.
    mode : str or sequence of str, optional
        Border mode, or one per axis of ``axes``.
    cval : float, optional
        Value outside the array in ``'constant'`` mode (each pass pads with it).
    truncate : float, optional
        Kernel half-width in standard deviations.
    radius : int or sequence of int, optional
        Kernel half-width per axis; overrides ``truncate``.
    axes : int or sequence of int, optional
        Axes to filter (default: all), e.g. ``axes=(-2, -1)`` filters each plane
        of a stack.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The filtered array.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> a = np.arange(50, step=2).reshape((5, 5))
    >>> sc.gaussian_filter(a, sigma=1)
    array([[ 4,  6,  8,  9, 11],
           [10, 12, 14, 15, 17],
           [20, 22, 24, 25, 27],
           [29, 31, 33, 34, 36],
           [35, 37, 39, 40, 42]])
    >>> stack = np.zeros((2, 5, 5), np.float32); stack[0, 2, 2] = 1
    >>> planes = sc.gaussian_filter(stack, 1.0, axes=(1, 2))
    >>> float(planes[0].sum().round(5)), float(planes[1].sum())
    (1.0, 0.0)
    """
    if is_complex(input := as_array(input), output):
        if _filters_nothing(lambda: _gaussian_axes(input.ndim, axes, sigma, order, mode, radius, truncate)):
            return _complex_copy(input, output, False, backend)
        return filter_parts(
            gaussian_filter,
            input,
            output,
            cval,
            promote=False,
            sigma=sigma,
            order=order,
            mode=mode,
            truncate=truncate,
            radius=radius,
            axes=axes,
            backend=backend,
        )
    input = check_image(input, "input", min_ndim=0)
    out_dtype = _check_output(input, output)
    cval = check_cval(cval)
    if out_dtype.kind != "f":
        passes = _gaussian_axes(input.ndim, axes, sigma, order, mode, radius, truncate)
        return _run_integer_passes(input, passes, cval, out_dtype, output, backend)
    arguments = (sigma, order, out_dtype.str, mode, cval, truncate, radius, axes)
    plan = get_plan(_plan_gaussian_filter, input, backend, *arguments)
    if plan is None:
        return _copy(input, out_dtype, output, backend)
    # An output array of the passes' own type is filled by the plan (written straight
    # into where the kernels can), with no copy through a new array.
    into = output if isinstance(output, np.ndarray) and output.dtype == plan.out_dtype else None
    result = execute(plan, input, into)
    return result if into is not None else _deliver(result, out_dtype, output)


def _derivative_terms(ndim, sigma, truncate, radius, derivative_axes, order, per_term_axes):
    """Terms of ``gaussian_filter(input, sigma, order=order on one axis)`` for each
    axis of ``derivative_axes``: smoothing along every axis of ``per_term_axes``
    (sigma > 1e-15), the derivative along its own axis."""
    sigmas = [_check_sigma(s) for s in _per_axis(sigma, ndim, "sigma")]
    radii = _per_axis(radius, ndim, "radius")
    smoothed = [a for a in per_term_axes if sigmas[a] > _SIGMA_EPS]
    terms = []
    for d in derivative_axes:
        terms.append(
            {
                a: taps(_gaussian_weights(sigmas[a], order if a == d else 0, truncate, radii[a]))
                for a in smoothed
            }
        )
    return terms, sigmas, smoothed


def _combine_pieces(pieces, out_dtype, output, squares):
    """scipy's combination of per-axis results: a sum (or the root of a sum of
    squares) computed in the output type, integers wrapping as NumPy's do."""
    on_device = _backend.is_device_array(pieces[0])
    if on_device:
        pieces = [p.copy_to_host() for p in pieces]
    if _dask.is_dask_array(pieces[0]):
        acc = pieces[0] * pieces[0] if squares else pieces[0]
        for p in pieces[1:]:
            acc = acc + (p * p if squares else p)
        if squares:
            acc = acc.map_blocks(_unsafe_sqrt, dtype=acc.dtype)
        return acc
    acc = output if isinstance(output, np.ndarray) else np.empty(pieces[0].shape, out_dtype)
    acc[...] = pieces[0]
    if squares:
        np.multiply(acc, acc, acc)
    for p in pieces[1:]:
        if squares:
            np.multiply(p, p, p)
        acc += p
    if squares:
        np.sqrt(acc, acc, casting="unsafe")
    if on_device:
        from numba import cuda

        return cuda.to_device(acc)
    return acc


def _unsafe_sqrt(block):
    out = block.copy()
    np.sqrt(out, out, casting="unsafe")
    return out


def _piecewise(out_dtype, input):
    """Whether a sum of per-axis results is formed as scipy forms it (in the output
    type), rather than by one fused float64 sum: for every output but float64, and
    on the GPU only where no float type can hold the result."""
    if out_dtype == np.float64:
        return False
    if out_dtype.kind == "f" and _backend.is_device_array(input):
        return False
    return True


def _derivative_sum(input, sigma, output, mode, cval, axes, truncate, radius, backend, order):
    """Shared body of :func:`gaussian_laplace` (order 2, a sum) and
    :func:`gaussian_gradient_magnitude` (order 1, a magnitude)."""
    input = as_array(input)
    if is_complex(input, output):  # the magnitude of complex derivatives (a sum: gaussian_laplace)
        if _filters_nothing(lambda: _check_axes(axes, input.ndim)):
            return _complex_copy(input, output, False, backend)
        out_dtype = complex_result(input, output, promote=False)
    else:
        input = check_image(input, "input", min_ndim=0)
        out_dtype = _check_output(input, output)
        cval = check_cval(cval)
    axes = _check_axes(axes, input.ndim)
    if not axes:
        return _copy(input, out_dtype, output, backend)
    modes = [normalize_mode(m, "mode") for m in _per_axis(mode, len(axes), "mode")]
    squares = order == 1
    if _piecewise(out_dtype, input):
        sigmas = _per_axis(sigma, input.ndim, "sigma")
        pieces = []
        for d, m in zip(axes, modes):
            orders = [order if a == d else 0 for a in range(input.ndim)]
            pieces.append(
                gaussian_filter(
                    input,
                    sigmas,
                    orders,
                    out_dtype,
                    CANONICAL_NAMES[m],
                    cval,
                    truncate,
                    radius=radius,
                    backend=backend,
                )
            )
        return _combine_pieces(pieces, out_dtype, output, squares)
    terms, _, smoothed = _derivative_terms(
        input.ndim, sigma, truncate, radius, axes, order, range(input.ndim)
    )
    if not smoothed:
        # Nothing is smoothed (all sigmas 0): scipy adds (or squares) the input per axis.
        terms = [{0: _identity()} for _ in axes]
    modes = [{a: m for a in terms[0]} for m in modes]
    result = _filter_sum(
        input,
        terms,
        modes,
        cval,
        combine=MAGNITUDE if squares else SUM,
        dtype=_compute_dtype(out_dtype),
        preserve_range=True,
        channel_axis=None,
        backend=backend,
    )
    return _deliver(result, out_dtype, output)


@_backend.like_input
def gaussian_gradient_magnitude(
    input,
    sigma,
    output=None,
    mode="reflect",
    cval=0.0,
    *,
    axes=None,
    truncate=4.0,
    radius=None,
    backend="auto",
):
    """Gradient magnitude with Gaussian derivatives.

    Same values, ``output`` handling and default output dtype as
    ``scipy.ndimage.gaussian_gradient_magnitude``: ``sqrt(sum over axes of
    gaussian_filter(input, sigma, order=1 along that axis) ** 2)``.

    Parameters
    ----------
    input : array_like
        Bool, integer or float array.
    sigma : float or sequence of float
        Standard deviation, one for all axes or one per axis of the array
        (every axis is smoothed, as in scipy, also those outside ``axes``).
    output : array or dtype, optional
        Array to fill, or the dtype of the result (default: the input's).
    mode : str or sequence of str, optional
        Border mode, or one per axis of ``axes``; as in scipy, the derivative
        along an axis uses that axis's mode on every axis it smooths.
    cval : float, optional
        Value outside the array in ``'constant'`` mode.
    axes : int or sequence of int, optional
        Axes whose derivatives enter the magnitude (default: all).
    truncate : float, optional
        Kernel half-width in standard deviations.
    radius : int or sequence of int, optional
        Kernel half-width per axis; overrides ``truncate``.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The gradient magnitude.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> ramp = np.tile(np.arange(16.0), (16, 1))  # slope 1 along the last axis
    >>> sc.gaussian_gradient_magnitude(ramp, 1.0)[8, 6:9].round(3)
    array([1., 1., 1.])
    """
    return _derivative_sum(input, sigma, output, mode, cval, axes, truncate, radius, backend, order=1)


@_backend.like_input
def gaussian_laplace(
    input,
    sigma,
    output=None,
    mode="reflect",
    cval=0.0,
    *,
    axes=None,
    truncate=4.0,
    radius=None,
    backend="auto",
):
    """Laplacian of Gaussian: the sum of second Gaussian derivatives.

    Same values, ``output`` handling and default output dtype as
    ``scipy.ndimage.gaussian_laplace``: ``sum over axes of
    gaussian_filter(input, sigma, order=2 along that axis)``, smoothing only
    along ``axes``.

    Parameters
    ----------
    input : array_like
        Bool, integer or float array.
    sigma : float or sequence of float
        Standard deviation, one for all axes or one per axis of ``axes``
        (as in scipy, one per axis of the array, in order, when ``axes``
        names every axis).
    output : array or dtype, optional
        Array to fill, or the dtype of the result (default: the input's).
    mode : str or sequence of str, optional
        Border mode, or one per axis of ``axes``; as in scipy, the derivative
        along an axis uses that axis's mode on every axis it smooths.
    cval : float, optional
        Value outside the array in ``'constant'`` mode.
    axes : int or sequence of int, optional
        Axes to filter (default: all).
    truncate : float, optional
        Kernel half-width in standard deviations.
    radius : int or sequence of int, optional
        Kernel half-width per axis of the array; overrides ``truncate``.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The Laplacian of Gaussian.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> bowl = np.add.outer(np.arange(16.0) ** 2, np.arange(16.0) ** 2)  # Laplacian 4
    >>> sc.gaussian_laplace(bowl, 1.0)[8, 6:9].round(3)
    array([3.982, 3.98 , 3.978])
    """
    input = as_array(input)
    if is_complex(input, output):  # a sum: real and imaginary parts apart
        if _filters_nothing(lambda: _check_axes(axes, input.ndim)):
            return _complex_copy(input, output, False, backend)
        return filter_parts(
            gaussian_laplace,
            input,
            output,
            cval,
            promote=False,
            sigma=sigma,
            mode=mode,
            axes=axes,
            truncate=truncate,
            radius=radius,
            backend=backend,
        )
    ndim = input.ndim
    checked = _check_axes(axes, ndim)
    sigmas = _per_axis(sigma, len(checked), "sigma")
    if len(checked) == ndim:  # as scipy: then a sigma per axis of the array, whatever the order of axes
        full = list(sigmas)
    else:
        full = [0.0] * ndim
        for a, s in zip(checked, sigmas):
            full[a] = s
    return _derivative_sum(input, full, output, mode, cval, checked, truncate, radius, backend, order=2)


@_backend.like_input
def ndimage_laplace(input, output=None, mode="reflect", cval=0.0, *, axes=None, backend="auto"):
    """scipy.ndimage's ``laplace``: the sum of second differences ``[1, -2, 1]``.

    Same values, ``output`` handling and default output dtype as
    ``scipy.ndimage.laplace`` (named so beside scikit-image's :func:`laplace`).

    Parameters
    ----------
    input : array_like
        Bool, integer or float array.
    output : array or dtype, optional
        Array to fill, or the dtype of the result (default: the input's).
    mode : str or sequence of str, optional
        Border mode, or one per axis of ``axes``.
    cval : float, optional
        Value outside the array in ``'constant'`` mode.
    axes : int or sequence of int, optional
        Axes to differentiate along (default: all).
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The discrete Laplacian.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.zeros((5, 5), int); image[2, 2] = 1
    >>> sc.ndimage_laplace(image)[1:4, 1:4]
    array([[ 0,  1,  0],
           [ 1, -4,  1],
           [ 0,  1,  0]])
    """
    if is_complex(input := as_array(input), output):
        if _filters_nothing(lambda: _check_axes(axes, input.ndim)):
            return _complex_copy(input, output, False, backend)
        return filter_parts(
            ndimage_laplace, input, output, cval, promote=False, mode=mode, axes=axes, backend=backend
        )
    input = check_image(input, "input", min_ndim=0)
    out_dtype = _check_output(input, output)
    axes = _check_axes(axes, input.ndim)
    cval = check_cval(cval)
    if not axes:
        return _copy(input, out_dtype, output, backend)
    modes = [normalize_mode(m, "mode") for m in _per_axis(mode, len(axes), "mode")]
    second = np.array([1.0, -2.0, 1.0])
    if out_dtype.kind != "f":
        pieces = [
            correlate1d(input, second, a, out_dtype, CANONICAL_NAMES[m], cval, backend=backend)
            for a, m in zip(axes, modes)
        ]
        return _combine_pieces(pieces, out_dtype, output, squares=False)
    terms = [{a: (taps(second) if a == d else _identity()) for a in axes} for d in axes]
    mode_map = {a: m for a, m in zip(axes, modes)}
    result = _filter_sum(
        input,
        terms,
        [mode_map] * len(terms),
        cval,
        combine=SUM,
        dtype=_compute_dtype(out_dtype),
        preserve_range=True,
        channel_axis=None,
        backend=backend,
    )
    return _deliver(result, out_dtype, output)


# --------------------------------------------------------------------------
# Uniform (box) filter: a running sum
# --------------------------------------------------------------------------


def _check_size(size, name="size"):
    """``uniform_filter1d``'s size: an integer of at least 1 (scipy refuses ``3.0``)."""
    try:
        size = operator.index(size)
    except TypeError:
        if isinstance(size, (numbers.Real, np.floating)) and size < 1:  # scipy checks this first
            raise SequenceLengthError(f"{name} must be at least 1 (incorrect filter size {size})") from None
        raise TypeError(f"{name} must be an integer, got {size!r}") from None
    if size < 1:
        raise SequenceLengthError(f"{name} must be at least 1 (incorrect filter size {size})")
    return size


def _uniform_filter_size(size, name="size"):
    """One axis's size in ``uniform_filter``, as scipy takes it: any real number, the axis
    filtered over ``int(size)`` samples where ``size > 1`` (2.5 filters over 2; 1, 0.5 or
    NaN leave it as it is)."""
    try:
        return int(size) if size > 1 else 1
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {size!r}") from None


def _check_uniform_origin(origin, size, name="origin"):
    try:
        origin = operator.index(origin)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(origin).__name__}") from None
    if not 0 <= size // 2 + origin < size:
        raise ValueError(
            f"invalid origin: {name}={origin} for size {size}; size // 2 + origin must lie in [0, {size - 1}]"
        )
    return origin


def _uniform_plan(input, size, mode, origin, axes):
    axes = _check_axes(axes, input.ndim)
    n = len(axes)
    sizes = [_uniform_filter_size(s) for s in _per_axis(size, n, "size")]
    origins = _per_axis(origin, n, "origin")
    modes = [normalize_mode(m, "mode") for m in _per_axis(mode, n, "mode")]
    # as in scipy, axes of size 1 or less are not filtered (their origin is not checked)
    return [
        (a, s, _check_uniform_origin(o, s), m) for a, s, o, m in zip(axes, sizes, origins, modes) if s > 1
    ]


@_backend.like_input
def _uniform_passes(input, plan, cval, out_dtype, output, backend):
    """Run ``[(axis, size, origin, mode)]`` in turn, each pass stored as ``out_dtype``
    (but for a float output the last two in float64, see below)."""
    if _dask.is_dask_array(input):
        return _uniform_lazily(input, plan, cval, out_dtype, backend)
    from ._narrow_tail import short_last_axis
    from ._uniform import uniform_last_axis_first, uniform_last_two, uniform_pass

    name = _backend.resolve(backend, input)
    engine = _backend.engine(name)
    pass_dtype = _compute_dtype(out_dtype) if out_dtype.kind == "f" else np.dtype(np.float64)
    cur, _ = engine.to_kernel_input(input, np.dtype(np.float32), True)
    # The last pass writes straight into an ``output`` array where the kernels can.
    into = engine.writable_target(output, cur, pass_dtype)
    # With a float output, a pass along the second-to-last axis followed by one
    # along the last is kept in float64 between the two (on every backend, so
    # that all give the same bits): the CPU fuses them band by band, and the
    # intermediate image then never goes through memory.
    pair = (
        len(plan) >= 2
        and (plan[-2][0], plan[-1][0]) == (cur.ndim - 2, cur.ndim - 1)
        and out_dtype == pass_dtype
    )
    # A float pass that another reads goes to a scratch array (reused from call to call)
    # on the CPU; an integer one is cast to the output type first, as scipy stores it, from
    # a scratch array (each pass's float64 sums, cast at once: not a new array per pass).
    kept = name == "cpu" and out_dtype == pass_dtype
    cast_each = name == "cpu" and not kept
    if kept and plan[-1][0] == cur.ndim - 1 and short_last_axis(engine, cur.shape):
        # an RGB image as a volume: the passes over wide rows, the colours in front
        values = uniform_last_axis_first(engine, cur, plan, cval, pass_dtype, pair)
        return _uniform_store(engine, values, out_dtype, output)
    # intermediates only between passes (a call of one pass skips the scratch arrays' set-up)
    with engine.scratch_arrays() if len(plan) > 1 or cast_each else contextlib.nullcontext() as scratch:
        middles = Alternating(scratch, cur.shape, pass_dtype)
        sums = scratch(cur.shape, pass_dtype) if cast_each else None
        target = None  # where the pass writes: the output, an intermediate, or a new array
        for i, (axis, size, origin, mode) in enumerate(plan[: len(plan) - 2] if pair else plan):
            last = i == len(plan) - 1
            if cast_each:
                target = sums  # cast to the output type below, before the next pass
            elif last:
                target = into
            elif kept:
                target = middles.other_than(target)  # not the one this pass reads
            else:
                target = None
            values = uniform_pass(name, cur, axis, size, origin, mode, cval, pass_dtype, target)
            stored = out_dtype if last else _stored_between_passes(out_dtype)
            cur = _uniform_store(engine, values, stored, output if last else None)
            if not last:
                cur, _ = engine.to_kernel_input(cur, np.dtype(np.float32), True)
        if pair:
            values = None
            if name == "cpu":
                values = uniform_last_two(cur, plan[-2], plan[-1], cval, pass_dtype, into)
            if values is None:  # another backend, or a non-finite sum: one pass at a time
                (a0, s0, o0, m0), (a1, s1, o1, m1) = plan[-2:]
                middle = uniform_pass(name, cur, a0, s0, o0, m0, cval, np.float64)
                values = uniform_pass(name, middle, a1, s1, o1, m1, cval, pass_dtype, into)
            cur = _uniform_store(engine, values, out_dtype, output)
    return cur


def _uniform_store(engine, values, out_dtype, output):
    """A pass's new array ``values`` as ``out_dtype`` (into ``output`` if an array);
    kept as it is, not copied, when it already is one (or is ``output`` itself)."""
    if values is output:
        return output
    if isinstance(values, np.ndarray) and not isinstance(output, np.ndarray) and values.dtype == out_dtype:
        return values
    return engine.cast_output(values, out_dtype, output)


def _uniform_lazily(input, plan, cval, out_dtype, backend):
    """:func:`_uniform_passes` on a dask array, block by block.

    A running sum is anchored at every ``spacing(size)``-th position of its axis
    (``_uniform_kernels``), so each block must start at an anchor: the chunk
    boundaries along a filtered axis are moved to multiples of the spacing, and
    the halo before a block is rounded up to one (both sides in ``'wrap'`` mode,
    where dask pads the first block by the larger of the two). The result comes
    back in the input's chunks.
    """
    from ._uniform import spacing

    _dask.check_known_chunks(input)
    halo, names, chunks = {}, {}, list(input.chunks)
    user_chunks = input.chunks
    for axis, size, origin, mode in plan:
        step = spacing(size)
        before = size // 2 + origin
        after = size - 1 - before
        before = -(-before // step) * step
        names[axis] = CANONICAL_NAMES[mode]
        if names[axis] == "wrap":
            after = -(-after // step) * step
        halo[axis] = (before, after)
        chunks[axis] = _aligned_chunks(chunks[axis], step)
    if tuple(chunks) != input.chunks:
        input = input.rechunk(tuple(chunks))
    result = _dask.filter_lazily(
        partial(_uniform_passes, plan=plan, cval=cval, out_dtype=out_dtype, output=None, backend=backend),
        input,
        halo=halo,
        modes=names,
        dtype=out_dtype,
    )
    # the caller's chunks back, as every other lazy filter keeps them
    return result if result.chunks == user_chunks else result.rechunk(user_chunks)


def _aligned_chunks(sizes, step):
    """Chunk sizes whose inner boundaries are the nearest multiples of ``step``."""
    total = sum(sizes)
    bounds = np.cumsum(sizes)[:-1]
    inner = sorted({int(round(b / step)) * step for b in bounds} - {0})
    edges = [0] + [b for b in inner if b < total] + [total]
    return tuple(int(e) for e in np.diff(edges))


@_backend.like_input
def uniform_filter1d(
    input, size, axis=-1, output=None, mode="reflect", cval=0.0, origin=0, *, backend="auto"
):
    """1-D uniform (moving average) filter along one axis, a running sum.

    Same values, ``output`` handling and default output dtype as
    ``scipy.ndimage.uniform_filter1d``: ``out[i]`` is the mean of the ``size``
    inputs from ``i - (size // 2 + origin)`` on. The work per sample does not
    depend on ``size``. The float64 sum restarts from the window itself every
    few hundred samples, at fixed positions of the line, so dask blocks and
    CUDA threads give the values of the whole-array call bit for bit; integer
    input gives the exact mean (truncated to an integer output as scipy
    does), float input a mean within a few float64 roundings of the exact one
    (scipy's running mean drifts further). NaN or inf spread only over the
    windows they fall in.

    Parameters
    ----------
    input : array_like
        Bool, integer or float array.
    size : int
        Window length, >= 1.
    axis : int, optional
        Axis to filter along (default: the last).
    output : array or dtype, optional
        Array to fill, or the dtype of the result (default: the input's).
    mode : {'reflect', 'constant', 'nearest', 'mirror', 'wrap'}, optional
        Border mode.
    cval : float, optional
        Value outside the array in ``'constant'`` mode.
    origin : int, optional
        Shift of the window, as in scipy.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The filtered array.

    Examples
    --------
    >>> import napari_sepconv as sc
    >>> sc.uniform_filter1d([2, 8, 0, 4, 1, 9, 9, 0], size=3)
    array([4, 3, 4, 1, 4, 6, 6, 3])
    """
    if is_complex(input := as_array(input), output):
        return filter_parts(
            uniform_filter1d,
            input,
            output,
            cval,
            promote=True,
            size=size,
            axis=axis,
            mode=mode,
            origin=origin,
            backend=backend,
        )
    input = check_image(input, "input", min_ndim=0)
    out_dtype = _check_output(input, output)
    axis = normalize_axis(axis, input.ndim)
    size = _check_size(size)
    origin = _check_uniform_origin(origin, size)
    plan = [(axis, size, origin, normalize_mode(mode))]
    return _uniform_passes(input, plan, check_cval(cval), out_dtype, output, backend)


@_backend.like_input
def uniform_filter(
    input, size=3, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None, backend="auto"
):
    """Multidimensional uniform (box) filter: :func:`uniform_filter1d` per axis.

    Same values, ``output`` handling and default output dtype as
    ``scipy.ndimage.uniform_filter``: each axis of ``axes`` whose size exceeds
    1 is filtered in turn, each result stored in the output type; with a float
    output, a pass along the second-to-last axis that the last axis follows is
    kept in float64 (scipy rounds it to a float32 output too), which lets the
    two run fused.

    Parameters
    ----------
    input : array_like
        Bool, integer or float array.
    size : int or sequence of int, optional
        Window length, one for all axes or one per axis of ``axes``.
    output : array or dtype, optional
        Array to fill, or the dtype of the result (default: the input's).
    mode : str or sequence of str, optional
        Border mode, or one per axis of ``axes``.
    cval : float, optional
        Value outside the array in ``'constant'`` mode.
    origin : int or sequence of int, optional
        Shift of the window per axis.
    axes : int or sequence of int, optional
        Axes to filter (default: all).
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The filtered array.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> sc.uniform_filter(np.arange(16.0).reshape(4, 4), size=3)[1:3, 1:3]
    array([[ 5.,  6.],
           [ 9., 10.]])
    """
    if is_complex(input := as_array(input), output):
        if _filters_nothing(lambda: _uniform_plan(input, size, mode, origin, axes)):
            return _complex_copy(input, output, True, backend)
        return filter_parts(
            uniform_filter,
            input,
            output,
            cval,
            promote=True,
            size=size,
            mode=mode,
            origin=origin,
            axes=axes,
            backend=backend,
        )
    input = check_image(input, "input", min_ndim=0)
    out_dtype = _check_output(input, output)
    plan = _uniform_plan(input, size, mode, origin, axes)
    cval = check_cval(cval)
    if not plan:
        return _copy(input, out_dtype, output, backend)
    return _uniform_passes(input, plan, cval, out_dtype, output, backend)


# --------------------------------------------------------------------------
# scikit-image style
# --------------------------------------------------------------------------


def _spatial_sigma(value, name):
    """One of scikit-image's sigmas, checked (a negative one with scikit-image's message)."""
    if real_number(value, name) < 0:
        raise ValueError(f"{'Sigma' if name == 'sigma' else name} values less than zero are not valid")
    return _check_sigma(value, name)


def _spatial_sigmas(sigma, ndim, channel_axis, name="sigma"):
    """scikit-image's per-axis sigma: a scalar, one per spatial axis, or one per axis."""
    if np.iterable(sigma) and not isinstance(sigma, str):
        values = [_spatial_sigma(s, name) for s in sigma]
        if channel_axis is not None and len(values) == ndim - 1:
            values.insert(channel_axis, 0.0)
        if len(values) != ndim:
            raise SequenceLengthError(
                f"{name} has {len(values)} entries; expected one, one per spatial axis or "
                f"one per axis ({ndim})"
            )
        return values
    value = _spatial_sigma(sigma, name)
    return [0.0 if a == channel_axis else value for a in range(ndim)]


def _spatial_modes(mode, ndim, channel_axis):
    if isinstance(mode, str):
        return [mode] * ndim
    modes = list(mode)
    if channel_axis is not None and len(modes) == ndim - 1:
        modes.insert(channel_axis, "reflect")
    if len(modes) != ndim:
        raise SequenceLengthError(f"mode has {len(modes)} entries; expected one per axis ({ndim})")
    return modes


def _gaussian_terms(sigmas, axes, truncate, scale=1.0, dtype=np.float64):
    """A Gaussian as a term over ``axes`` (identity where sigma is 0), times ``scale``.

    The scale goes on the last pass, so that in ``'constant'`` mode every
    earlier pass pads the unscaled image with ``cval``.
    """
    last = max(axes)
    term = {}
    for a in axes:
        w = _gaussian_weights(sigmas[a], 0, truncate, None, dtype) if sigmas[a] > _SIGMA_EPS else np.ones(1)
        term[a] = taps(w * (scale if a == last else 1.0))
    return term


def _plan_gaussian(
    shape, dtype, backend, sigma, mode, cval, preserve_range, truncate, channel_axis, out_type
):
    """The plan of a :func:`gaussian` call whose result is of the float type ``out_type``
    (its type string): its separable passes, fused. Made once per set of arguments
    (``get_plan``)."""
    ndim = len(shape)
    channel_axis = normalize_channel_axis(channel_axis, ndim)
    sigmas = _spatial_sigmas(sigma, ndim, channel_axis)
    modes = _spatial_modes(mode, ndim, channel_axis)
    result_dtype = np.dtype(out_type)
    axes = [a for a in range(ndim) if sigmas[a] > _SIGMA_EPS]
    smooth_channels = channel_axis is not None and channel_axis in axes
    kernels = [_gaussian_weights(sigmas[a], 0, truncate, None, result_dtype) for a in axes]
    if not axes:  # nothing to smooth: the converted image (an identity pass off the channels)
        axes, kernels = spatial_axes(ndim, channel_axis)[-1:], [np.ones(1)]
    return _plan_separable(
        shape,
        dtype,
        backend,
        kernels,
        axes,
        [modes[a] for a in axes],
        cval,
        None if smooth_channels else channel_axis,
        result_dtype,
        preserve_range,
    )


@partial(_backend.like_input, planned=True)  # through its separable plan
def gaussian(
    image,
    sigma=1,
    *,
    mode="nearest",
    cval=0,
    preserve_range=False,
    truncate=4.0,
    channel_axis=None,
    out=None,
    backend="auto",
):
    """Multi-dimensional Gaussian filter, as ``skimage.filters.gaussian``.

    Same signature, defaults, dtype rule and values as scikit-image 0.26:
    the image is converted as ``img_as_float`` does (unless
    ``preserve_range``), float32 stays float32, and
    ``scipy.ndimage.gaussian_filter`` is applied with ``sigma`` per axis (0
    along ``channel_axis``).

    Parameters
    ----------
    image : array_like
        Bool, integer or float image.
    sigma : float or sequence of float, optional
        Standard deviation, one for all spatial axes, one per spatial axis or
        one per axis.
    mode : {'nearest', 'reflect', 'constant', 'mirror', 'wrap'}, optional
        Border mode (or one per axis).
    cval : float, optional
        Value outside the image in ``'constant'`` mode, in output units.
    preserve_range : bool, optional
        Do not scale integer input to [0, 1] / [-1, 1].
    truncate : float, optional
        Kernel half-width in standard deviations.
    channel_axis : int, optional
        Axis of channels, never smoothed across.
    out : ndarray, optional
        Float array to write the result to.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    filtered_image : ndarray
        Float image (``out`` when given).

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.zeros((3, 3)); image[1, 1] = 1
    >>> sc.gaussian(image, sigma=0.4).round(4)
    array([[0.0016, 0.0371, 0.0016],
           [0.0371, 0.845 , 0.0371],
           [0.0016, 0.0371, 0.0016]])
    >>> blurred = sc.gaussian(np.full((4, 4), 255, np.uint8), 1)  # uint8 is scaled to [0, 1]
    >>> blurred.dtype, float(blurred.max().round(6))
    (dtype('float64'), 1.0)
    """
    image = check_image(image)
    dtype = output_float_dtype(np.dtype(image.dtype))
    if out is not None:
        if not isinstance(out, np.ndarray) and not _backend.is_device_array(out):
            raise TypeError(f"out must be an array, got {type(out).__name__}")
        if np.dtype(out.dtype).kind != "f":
            raise ValueError(f"dtype of `out` must be float; got {out.dtype!r}.")
        if tuple(out.shape) != tuple(image.shape):
            raise ScipyValueError(f"out has shape {tuple(out.shape)}, expected {tuple(image.shape)}")
        if isinstance(out, np.ndarray) and not out.flags.writeable:
            raise ValueError("out is a read-only array; pass a writable array or None")
        if _dask.is_dask_array(image):
            raise TypeError("out cannot be given when image is a dask array")
        dtype = _compute_dtype(np.dtype(out.dtype))
    arguments = (sigma, mode, cval, preserve_range, truncate, channel_axis, dtype.str)
    plan = get_plan(_plan_gaussian, image, backend, *arguments)
    if type(image) is np.ndarray and isinstance(out, np.ndarray) and out.dtype == dtype:
        # written straight into ``out`` where its layout allows (else copied there)
        return execute(plan, image, out)
    result = execute(plan, image)
    if out is None:
        return result
    if isinstance(out, np.ndarray):
        return _deliver(result, np.dtype(out.dtype), out)
    _backend.engine("cuda").copy_into(out, _deliver(result, np.dtype(out.dtype), None))
    return out


@_backend.like_input
def difference_of_gaussians(
    image,
    low_sigma,
    high_sigma=None,
    *,
    mode="nearest",
    cval=0,
    channel_axis=None,
    truncate=4.0,
    backend="auto",
):
    """Band-pass filter: the image blurred by ``low_sigma`` minus it blurred by ``high_sigma``.

    Same signature, defaults and values as
    ``skimage.filters.difference_of_gaussians`` (scikit-image 0.26): the
    image converted as ``img_as_float`` does, ``high_sigma`` 1.6 times
    ``low_sigma`` by default. Both Gaussians run as one sum of separable
    kernels.

    Parameters
    ----------
    image : array_like
        Bool, integer or float image.
    low_sigma : float or sequence of float
        Standard deviation(s) of the smaller Gaussian, one for all spatial
        axes or one per spatial axis.
    high_sigma : float or sequence of float, optional
        Standard deviation(s) of the larger Gaussian (>= ``low_sigma``).
    mode : {'nearest', 'reflect', 'constant', 'mirror', 'wrap'}, optional
        Border mode.
    cval : float, optional
        Value outside the image in ``'constant'`` mode.
    channel_axis : int, optional
        Axis of channels, never smoothed across.
    truncate : float, optional
        Kernel half-width in standard deviations.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    filtered_image : ndarray
        Float image.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> flat = np.full((8, 8), 0.5)
    >>> bool(np.abs(sc.difference_of_gaussians(flat, 1)).max() < 1e-12)  # no band-pass content
    True
    """
    image = check_image(image)
    channel_axis = normalize_channel_axis(channel_axis, image.ndim)
    spatial = spatial_axes(image.ndim, channel_axis)
    low = np.array(low_sigma, dtype=float, ndmin=1)
    high = low * 1.6 if high_sigma is None else np.array(high_sigma, dtype=float, ndmin=1)
    for name, values in (("low_sigma", low), ("high_sigma", high)):
        if values.ndim != 1 or len(values) not in (1, len(spatial)):
            raise ValueError(
                f"{name} must have length equal to number of spatial dimensions of input ({len(spatial)})"
            )
        if np.any(values < 0) or not np.all(np.isfinite(values)):
            raise ValueError(f"{name} values must be finite and >= 0")
    low = low * np.ones(len(spatial))
    high = high * np.ones(len(spatial))
    if np.any(high < low):
        raise ValueError("high_sigma must be equal to or larger than low_sigma for all axes")
    sig_low = dict.fromkeys(range(image.ndim), 0.0)
    sig_high = dict(sig_low)
    sig_low.update(zip(spatial, low.tolist()))
    sig_high.update(zip(spatial, high.tolist()))
    modes = _spatial_modes(mode, image.ndim, channel_axis)
    axes = [a for a in spatial if sig_high[a] > _SIGMA_EPS]
    dtype = output_float_dtype(np.dtype(image.dtype))
    if not axes:  # no smoothing at all: the difference is zero
        axes = spatial[-1:]
    terms = [
        _gaussian_terms(sig_low, axes, truncate, 1.0, dtype),
        _gaussian_terms(sig_high, axes, truncate, -1.0, dtype),
    ]
    mode_map = {a: normalize_mode(modes[a]) for a in axes}
    return _filter_sum(
        image,
        terms,
        [mode_map, mode_map],
        check_cval(cval),
        combine=SUM,
        dtype=dtype,
        preserve_range=False,
        channel_axis=channel_axis,
        backend=backend,
    )


def _clip(result, low, high):
    """Clip in place where the result lives (NumPy, dask or a device array)."""
    if _dask.is_dask_array(result):
        return _dask_clip(result, low, high)
    if isinstance(result, np.ndarray):
        return np.clip(result, low, high, out=result)
    from . import _uniform_cuda

    return _uniform_cuda.clip(result, low, high)


def _dask_clip(result, low, high):
    import dask.array as da

    return da.maximum(da.minimum(result, high), low).astype(result.dtype)


@_backend.like_input
def unsharp_mask(image, radius=1.0, amount=1.0, preserve_range=False, *, channel_axis=None, backend="auto"):
    """Unsharp masking: ``image + amount * (image - gaussian(image, radius))``.

    Same signature, defaults and values as ``skimage.filters.unsharp_mask``
    (scikit-image 0.26): the Gaussian of standard deviation ``radius`` in
    ``'reflect'`` mode; without ``preserve_range`` the image is converted as
    ``img_as_float`` does and the result clipped to [0, 1] (or [-1, 1] when
    the image has negative values). Computed as one sum of two separable
    kernels, ``(1 + amount) * image - amount * blurred``.

    Parameters
    ----------
    image : array_like
        Bool, integer or float image.
    radius : float or sequence of float, optional
        Standard deviation of the blur, one for all spatial axes or one per
        spatial axis; 0 means no blur.
    amount : float, optional
        Gain of the detail (may be 0 or negative).
    preserve_range : bool, optional
        Keep the input's range: no scaling, no clipping.
    channel_axis : int, optional
        Axis of channels, filtered independently.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        Float image.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.full((5, 5), 100, np.uint8); image[2, 2] = 120
    >>> sc.unsharp_mask(image, radius=0.5, amount=2, preserve_range=True)[1:4, 1:4].round(2)
    array([[ 99.55,  96.65,  99.55],
           [ 96.65, 135.25,  96.65],
           [ 99.55,  96.65,  99.55]])
    >>> sc.unsharp_mask(image, radius=0.5, amount=2)[1:4, 1:4].round(2)
    array([[0.39, 0.38, 0.39],
           [0.38, 0.53, 0.38],
           [0.39, 0.38, 0.39]])
    """
    return unsharp_clipped_as(
        image, None, radius, amount, preserve_range, channel_axis=channel_axis, backend=backend
    )


def unsharp_clipped_as(
    image, negative, radius=1.0, amount=1.0, preserve_range=False, *, channel_axis=None, backend="auto"
):
    """:func:`unsharp_mask`, clipped to [-1, 1] where ``negative`` (else [0, 1]) instead of
    by whether ``image`` itself has negative values (``negative=None``): a part of a larger
    image filtered alone (a preview's slab) then gives that part of the whole's result."""
    image = check_image(image)
    channel_axis = normalize_channel_axis(channel_axis, image.ndim)
    amount = real_number(amount, "amount")
    sig = dict(enumerate(_spatial_sigmas(radius, image.ndim, channel_axis, "radius")))
    spatial = spatial_axes(image.ndim, channel_axis)
    axes = [a for a in spatial if sig[a] > _SIGMA_EPS] or spatial[-1:]
    dtype = output_float_dtype(np.dtype(image.dtype))
    identity = {a: (np.zeros(1, np.int64), np.full(1, 1.0 + amount if a == max(axes) else 1.0)) for a in axes}
    terms = [identity, _gaussian_terms(sig, axes, 4.0, -amount, dtype)]
    mode_map = dict.fromkeys(axes, normalize_mode("reflect"))
    result = _filter_sum(
        image,
        terms,
        [mode_map, mode_map],
        0.0,
        combine=SUM,
        dtype=dtype,
        preserve_range=preserve_range,
        channel_axis=channel_axis,
        backend=backend,
    )
    if preserve_range:
        return result
    kind = np.dtype(image.dtype).kind
    if negative is not None:
        negative = bool(negative)
    elif kind in "ub":
        negative = False
    elif _dask.is_dask_array(image):
        negative = (image < 0).any()
    elif _backend.is_device_array(image):
        from . import _uniform_cuda

        negative = _uniform_cuda.has_negative(image)
    else:
        negative = bool(np.any(np.asarray(image) < 0))
    if _dask.is_dask_array(negative):
        import dask.array as da

        return _dask_clip(result, da.where(negative, -1.0, 0.0), 1.0)
    return _clip(result, -1.0 if negative else 0.0, 1.0)


@_backend.like_input
def laplace(image, ksize=3, mask=None, *, backend="auto"):
    """Edges by the discrete Laplace operator, as ``skimage.filters.laplace``.

    Same signature and values as scikit-image 0.26: the image (float kept,
    float16 as float32, integers converted as ``img_as_float`` does)
    convolved in ``'reflect'`` mode with the ``3**ndim`` operator that has
    ``2 * ndim`` at its centre and -1 at its direct neighbours, i.e.
    ``-ndimage_laplace(image)``; run as one pass pair per axis.

    Parameters
    ----------
    image : array_like
        Bool, integer or float image of any number of dimensions.
    ksize : int, optional
        Kept for compatibility; as in scikit-image, the operator is always
        the 3-point one, and a ``ksize`` under 3 is an error.
    mask : array_like of bool, optional
        Only keep the result where the mask, eroded by one pixel, is True.
    backend : {'auto', 'cpu', 'cuda'}, optional
        Where to compute.

    Returns
    -------
    output : ndarray
        The Laplace edge map.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> image = np.zeros((5, 5)); image[2, 2] = 1
    >>> sc.laplace(image)[1:4, 1:4]
    array([[ 0., -1.,  0.],
           [-1.,  4., -1.],
           [ 0., -1.,  0.]])
    """
    image = check_image(image)
    try:
        operator.index(ksize)
    except TypeError:
        raise TypeError(f"ksize must be an integer, got {type(ksize).__name__}") from None
    if ksize < 3:  # scikit-image cannot place its 3-point operator in less
        raise ValueError(f"ksize must be at least 3, got {ksize}")
    from .edges import _check_mask, masked

    eroded = _check_mask(mask, image.shape, None, lazy=_dask.is_dask_array(image))
    dtype = output_float_dtype(np.dtype(image.dtype))
    axes = list(range(image.ndim))
    minus_second = np.array([-1.0, 2.0, -1.0])
    terms = [{a: (taps(minus_second) if a == d else _identity()) for a in axes} for d in axes]
    mode_map = dict.fromkeys(axes, normalize_mode("reflect"))
    result = _filter_sum(
        image,
        terms,
        [mode_map] * len(terms),
        0.0,
        combine=SUM,
        dtype=dtype,
        preserve_range=False,
        channel_axis=None,
        backend=backend,
    )
    return masked(result, eroded)
