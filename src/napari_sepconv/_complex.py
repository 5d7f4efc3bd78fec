"""scipy.ndimage's complex filtering: real filters run on the real and imaginary parts.

A linear filter of complex data is the same filter of its real and imaginary parts
(:func:`filter_parts`, for the Gaussian and uniform family, whose weights are real);
a complex kernel adds the cross terms (:func:`correlate_parts`, for ``correlate1d``:
``(a + ib) * (c + id) = (ac - bd) + i(ad + bc)``). Output types follow SciPy's rule for
complex results (:func:`complex_output`). Complex data is filtered on the host only.
"""

import numbers
import warnings

import numpy as np

from . import _backend, _dask
from ._validation import ScipyTypeError, ScipyValueError


def is_complex(input, output):
    """Whether a scipy-style call has complex input or asks for a complex output."""
    if np.dtype(input.dtype).kind == "c":
        return True
    if output is None:
        return False
    try:
        dtype = output.dtype if isinstance(output, np.ndarray) else np.dtype(output)
    except TypeError:
        return False
    return dtype.kind == "c"


_NOT_COMPLEX = "output must have a complex dtype for complex filtering, got {}"


def complex_output(input, output, promote=True):
    """The complex dtype of a call's result, by scipy.ndimage's rules for complex results.

    None: the input's type if it is complex (in native byte order), else the smallest
    complex type that holds it. A real dtype is promoted to complex with a ``UserWarning``
    where SciPy promotes it (``promote``: ``correlate1d`` and the filters built on it)
    and refused where SciPy refuses it; an output array must be complex and of the
    input's shape.
    """
    if isinstance(output, np.ndarray):
        if output.shape != tuple(input.shape):
            raise ScipyValueError(f"output has shape {output.shape}, expected {tuple(input.shape)}")
        if output.dtype.kind != "c":
            raise ScipyTypeError(_NOT_COMPLEX.format(output.dtype))
        if not output.flags.writeable:
            raise ValueError("output is a read-only array; pass a writable array or a dtype")
        return output.dtype
    if output is None:
        dtype = np.dtype(input.dtype).newbyteorder("=")
        return dtype if dtype.kind == "c" else np.promote_types(dtype, np.complex64)
    if isinstance(output, str) or not promote:  # taken literally: no promotion
        dtype = np.dtype(output)
        if dtype.kind != "c":
            raise ScipyTypeError(_NOT_COMPLEX.format(dtype))
        return dtype
    dtype = np.dtype(output)
    if dtype.kind != "c":
        warnings.warn("promoting specified output dtype to complex", UserWarning, stacklevel=4)
        dtype = np.promote_types(dtype, np.complex64)
    return dtype


def _check_input(input, output):
    if _backend.is_device_array(input):
        raise TypeError("input: complex arrays are filtered on the host only (NumPy or dask)")
    if isinstance(output, np.ndarray) and _dask.is_dask_array(input):
        raise TypeError("output cannot be an array when input is a dask array")


def complex_result(input, output, promote):
    """The complex dtype of a filter with real weights, after checking its call: complex
    input (scipy.ndimage filters no real array into a complex output) on the host, and an
    ``output`` as :func:`complex_output` takes it."""
    _check_input(input, output)
    if np.dtype(input.dtype).kind != "c":
        raise ScipyTypeError(
            f"output: a complex output needs complex input, got output={output!r} for {input.dtype} input"
        )
    return complex_output(input, output, promote)


def _complex_cval(cval):
    if isinstance(cval, (bool, np.bool_)) or not isinstance(cval, (numbers.Number, np.number)):
        raise TypeError(f"cval must be a number, got {type(cval).__name__}")
    return complex(cval)


def _assemble(input, real, imag, out_dtype, output):
    """The complex result from its parts, into ``output`` if given."""
    if _dask.is_dask_array(real):
        return (real + 1j * imag).astype(out_dtype)
    result = output if isinstance(output, np.ndarray) else np.empty(tuple(input.shape), out_dtype)
    result.real = real
    result.imag = imag
    return result


def filter_parts(func, input, output, cval, *, promote, **kwargs):
    """``func(part, output=..., cval=..., **kwargs)`` of a filter with real weights, on the
    real and imaginary parts of the complex ``input``;
    ``promote`` as :func:`complex_output` takes it."""
    out_dtype = complex_result(input, output, promote)
    cval = _complex_cval(cval)
    part = np.finfo(out_dtype).dtype
    real = func(input.real, output=part, cval=cval.real, **kwargs)
    imag = func(input.imag, output=part, cval=cval.imag, **kwargs)
    return _assemble(input, real, imag, out_dtype, output)


def correlate_parts(correlate, input, weights, output, cval, **kwargs):
    """scipy.ndimage's ``correlate1d`` where the input or the weights are complex.

    As SciPy computes it: complex weights are conjugated, and the result is a sum of
    real correlations (``correlate(image, kernel, output=..., cval=..., **kwargs)``),
    each part computed in the result's real type (the cross terms of complex input and
    weights in the input's real type, as SciPy's ``output=None`` gives them).
    """
    weights = np.asarray(weights)
    if weights.dtype.kind != "c":  # real weights: the filter of the parts, and its checks

        def real_filter(part, **options):
            return correlate(part, weights, **options, **kwargs)

        return filter_parts(real_filter, input, output, cval, promote=True)
    in_complex = np.dtype(input.dtype).kind == "c"
    _check_input(input, output)
    weights = weights.conj().astype(np.complex128, copy=False)
    out_dtype = complex_output(input, output, promote=True)
    part = np.finfo(out_dtype).dtype
    if not in_complex and isinstance(cval, (complex, np.complexfloating)):
        raise ValueError("cval: a complex cval needs a complex input")
    cval = _complex_cval(cval)

    def run(image, kernel, value, dtype):
        return correlate(image, kernel, output=dtype, cval=value, **kwargs)

    if in_complex:
        own = np.finfo(input.dtype).dtype  # the cross terms' type: SciPy's output=None
        real = run(input.real, weights.real, cval.real, part) - run(input.imag, weights.imag, cval.imag, own)
        imag = run(input.real, weights.imag, cval.real, part) + run(input.imag, weights.real, cval.imag, own)
    else:
        real = run(input, weights.real, cval.real, part)
        imag = run(input, weights.imag, cval.real, part)
    return _assemble(input, real, imag, out_dtype, output)
