"""Argument checks and normalisation, done once at the edge of each public function.

Kernels downstream trust what these helpers hand them: native-endian arrays of
a dtype Numba reads, modes as integer codes, kernels as finite float64 arrays.
"""

import numbers
import operator

import numpy as np

from ._boundary import CANONICAL_NAMES, MODE_CODES

# Input dtypes an engine takes as they are (the CPU kernels then read uint8 and the
# computation's float type, ``_cpu_kernels.kernel_input``); anything else is converted first.
KERNEL_INPUT_TYPES = frozenset(
    np.dtype(t)
    for t in (
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.float32,
        np.float64,
    )
)


class ScipyTypeError(TypeError, RuntimeError):
    """A ``TypeError`` where scipy.ndimage raises ``RuntimeError`` (an output of the wrong
    kind, a mode that is no name): code written for either catches it."""


class ScipyValueError(ValueError, RuntimeError):
    """A ``ValueError`` where scipy.ndimage raises ``RuntimeError`` (an unknown border mode,
    a sequence of modes of the wrong length): code written for either catches it."""


# An axis out of range: a ValueError, and the IndexError NumPy and scikit-image raise.
AxisError = getattr(np, "exceptions", np).AxisError


def normalize_mode(mode, name="mode"):
    """Return the integer code of one border mode name."""
    if not isinstance(mode, str):
        raise ScipyTypeError(f"{name} must be a mode name such as 'reflect', got {type(mode).__name__}")
    try:
        return MODE_CODES[mode]
    except KeyError:
        known = ", ".join(repr(m) for m in MODE_CODES)
        raise ScipyValueError(f"{name}={mode!r} is not a border mode; expected one of {known}") from None


def normalize_modes(mode, n_axes, name="mode"):
    """One mode code per filtered axis, from a name or a sequence of names."""
    if isinstance(mode, str):
        return [normalize_mode(mode, name)] * n_axes
    try:
        modes = list(mode)
    except TypeError:
        raise ScipyTypeError(f"{name} must be a mode name or a sequence of them") from None
    if len(modes) != n_axes:
        raise ScipyValueError(
            f"{name} has {len(modes)} entries but {n_axes} axes are filtered; "
            "give one mode or one per filtered axis"
        )
    return [normalize_mode(m, f"{name}[{i}]") for i, m in enumerate(modes)]


def mode_names(modes):
    """``{axis: code}`` back to scipy's mode names, e.g. for dask's block function."""
    return {axis: CANONICAL_NAMES[code] for axis, code in modes.items()}


def real_number(value, name):
    """``value`` as a Python float: a real number, also a NumPy scalar or 0-d array (a value
    computed with NumPy), not a bool or a complex number."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if isinstance(value, (complex, np.complexfloating)):
        raise TypeError(f"{name} must be a real number, not complex")
    return float(value)


def check_cval(cval):
    """The constant for ``'constant'`` mode as a Python float."""
    return real_number(cval, "cval")


def as_array(value, name="input"):
    """Arrays with ``shape`` and ``dtype`` (NumPy, dask, GPU) as they are; else NumPy."""
    if all(hasattr(value, a) for a in ("shape", "dtype", "ndim")):
        return value
    return as_rectangular_array(value, name)


def check_image(image, name="image", min_ndim=1):
    """``image`` after type checks, without copying or computing it.

    Arrays that carry ``shape`` and ``dtype`` (NumPy, dask, GPU arrays) are
    returned as they are; anything else becomes a NumPy array.
    """
    if type(image) is np.ndarray:  # the common case, first
        kind = image.dtype.kind
        if kind in "biuf" and image.ndim >= min_ndim:
            return image
    if hasattr(image, "shape") and hasattr(image, "dtype") and hasattr(image, "ndim"):
        arr = image
    else:
        arr = as_rectangular_array(image, name)
    kind = np.dtype(arr.dtype).kind
    if kind == "c":
        raise TypeError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    if kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got {arr.ndim}")
    return arr


def normalize_axis(axis, ndim, name="axis"):
    """A non-negative axis index, checked against ``ndim``."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise AxisError(f"{name}={axis} is out of range for an array with {ndim} dimension(s)")
    return axis % ndim


def normalize_channel_axis(channel_axis, ndim):
    """``None`` or a non-negative channel axis."""
    if channel_axis is None:
        return None
    if ndim < 2:
        raise ValueError("channel_axis needs an image with at least 2 dimensions")
    return normalize_axis(channel_axis, ndim, "channel_axis")


def spatial_axes(ndim, channel_axis):
    """The axes a filter may cross: every axis but the channel axis."""
    return [a for a in range(ndim) if a != channel_axis]


def as_rectangular_array(value, name):
    """``np.asarray(value)``, with an error naming ``name`` for ragged nested sequences."""
    try:
        return np.asarray(value)
    except ValueError as error:
        raise ValueError(
            f"{name} must be a rectangular array (nested sequences of equal lengths): {error}"
        ) from None


def check_kernel(kernel, ndim, name="kernel"):
    """A finite, non-empty float64 kernel of exactly ``ndim`` dimensions, in a new array."""
    arr = as_rectangular_array(kernel, name)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    # scipy.ndimage raises RuntimeError ("no filter weights given") for these: both are caught
    if arr.dtype.kind not in "biuf":
        raise ScipyTypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ScipyValueError(f"{name} must have {ndim} dimension(s), got {arr.ndim} (shape {arr.shape})")
    if arr.size == 0:
        raise ScipyValueError(f"{name} must not be empty (shape {arr.shape})")
    # always a copy: a plan made from it is cached, and the caller may reuse its array
    arr = np.array(arr, dtype=np.float64, order="C")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (found NaN or inf)")
    return arr


def check_origin(origin, length, name="origin"):
    """The origin of a 1-D kernel, within the range scipy.ndimage allows."""
    try:
        origin = operator.index(origin)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(origin).__name__}") from None
    if not -(length // 2) <= origin <= (length - 1) // 2:
        raise ValueError(
            f"{name}={origin} is out of range for a kernel of length {length}; "
            f"it must lie in [{-(length // 2)}, {(length - 1) // 2}]"
        )
    return origin


def output_float_dtype(input_dtype, dtype=None):
    """The float type of a scikit-image-style result.

    Float input keeps its type (float16 becomes float32); integer and bool
    input gives float64; ``dtype`` forces float32 or float64.
    """
    if dtype is not None:
        try:
            forced = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be a NumPy float type, got {dtype!r}") from None
        if forced not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {forced}")
        return forced
    if input_dtype.kind == "f" and input_dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def input_scale(dtype, preserve_range=False):
    """The factor from kernel-input units to result units for input of ``dtype``.

    Unsigned integers are read as they are and scaled by ``1 / max`` after
    filtering (filtering is linear), unless ``preserve_range``; every other
    input is read in its result units (see :func:`to_kernel_input`).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "u" and not preserve_range:
        return 1.0 / np.iinfo(dtype).max
    return 1.0


def to_kernel_input(image, float_dtype, preserve_range=False):
    """Prepare an image for the kernels, as ``skimage.util.img_as_float`` would scale it.

    Returns ``(array, scale)``: the kernels read ``array`` (native byte order,
    a dtype in ``KERNEL_INPUT_TYPES``) and the filtered values are ``scale``
    times what they compute. Unsigned integers are taken as they are and
    scaled by ``1 / max`` afterwards (filtering is linear), so no scaled copy
    of the image is made (uint8 is read by the kernels themselves). The caller
    must multiply outside values (``cval``) by ``1 / scale`` to keep them in
    the image's units.
    """
    dt = image.dtype
    if not dt.isnative:
        image = image.astype(dt.newbyteorder("="))
        dt = image.dtype
    if dt.kind == "b":
        return image.view(np.uint8), 1.0
    if dt.kind == "f":
        if dt not in KERNEL_INPUT_TYPES:  # float16, longdouble
            return image.astype(float_dtype), 1.0
        return image, 1.0
    if preserve_range:
        return image, 1.0
    if dt.kind == "u":
        return image, input_scale(dt)
    from skimage.util import img_as_float

    return img_as_float(image).astype(float_dtype, copy=False), 1.0
