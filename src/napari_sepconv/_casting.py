"""Casting filter results to their output type exactly as ``scipy.ndimage`` does.

scipy.ndimage computes its 1-D filters in double precision and stores each value with a plain C
cast, ``(type)value``. Where the value does not fit the type, what that cast gives is what the
x86-64 conversion instructions give, and SciPy's results on that platform are (found by
experiment against ``scipy.ndimage.correlate1d``):

- to ``int32`` and to the narrower types (``int16``, ``uint16``, ``int8``, ``uint8`` and
  ``bool``): the value truncated toward zero to a 32-bit integer, or ``-2**31`` when it does not
  fit (NaN included); the narrower types keep its low bits, so integers wrap around modulo
  ``2**bits`` (``uint8``: 256 gives 0, -1 gives 255);
- to ``uint32`` and ``int64``: the same through a 64-bit integer (``-2**63`` when it does not
  fit); ``uint32`` keeps its low 32 bits;
- to ``uint64``: values below ``2**63`` as ``int64`` (negative ones wrap around); from ``2**63``
  on, ``value - 2**63`` converted to ``int64`` with the top bit flipped (so ``2**64`` and more,
  and ``inf``, give 0);
- to ``bool``: the ``uint8`` byte, true when it is not zero (so a sum of 256 is ``False``). SciPy
  stores the byte itself; here the result is a proper NumPy bool with the same truth value.
- to floating types: rounded to nearest (overflow gives ``inf``).
"""

from __future__ import annotations

import numpy as np

from ._validation import ScipyValueError

__all__ = ["cast_output"]

_INT32_MIN = np.iinfo(np.int32).min
_INT64_MIN = np.iinfo(np.int64).min
_TWO_63 = 2.0**63


def cast_output(result, dtype, output, integer_kernel=None):
    """Convert a float result to ``dtype`` as scipy.ndimage's C code does, filling ``output``.

    Parameters
    ----------
    result : numpy.ndarray
        Filtered values, float32 or float64.
    dtype : numpy.dtype
        The output type.
    output : numpy.ndarray or None or dtype
        When an array, it is filled with the converted values (its byte order and strides
        whatever they are) and returned.
    integer_kernel : callable, optional
        ``_cast_kernels.to_integer``'s signature: the conversions to integer types but
        ``uint64`` (and to bool) in one pass instead of NumPy's steps, same values.

    Returns
    -------
    numpy.ndarray
        ``output`` when it is an array, else a new array of ``dtype``.

    Raises
    ------
    ValueError
        When ``output`` is a read-only array or does not have the result's shape.
    """
    dtype = np.dtype(dtype)
    if type(result) is np.ndarray and result.dtype == dtype and not isinstance(output, np.ndarray):
        return result  # already of the output type (a new array the engine made)
    if isinstance(output, np.ndarray):
        if not output.flags.writeable:
            raise ValueError("output is a read-only array; pass a writable array or a dtype")
        if output.shape != result.shape:
            raise ScipyValueError(f"output has shape {output.shape}, expected {result.shape}")
    result = np.asarray(result)
    kernel_input = result.dtype.isnative and result.dtype.type in (np.float32, np.float64)
    route = integer_route(dtype) if integer_kernel is not None and kernel_input else None
    native = dtype.newbyteorder("=")
    if route is not None:
        target = output if _fills_directly(output, native, result) else np.empty(result.shape, native)
        _run_integer_kernel(integer_kernel, result, route, target)
        converted = target
    else:
        converted = _convert(result, native)
    if converted is output:
        return output
    if isinstance(output, np.ndarray):
        np.copyto(output, converted, casting="unsafe")
        return output
    return converted if converted.dtype == dtype else converted.astype(dtype)


def integer_route(dtype):
    """``(bound, indefinite, wide32)`` of the conversion to the integer or bool ``dtype``:
    through int32 (``bound`` 2**31) or int64 (2**63); None for ``uint64`` and the others."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biu" or (dtype.kind == "u" and dtype.itemsize == 8):
        return None
    if dtype.itemsize < 4 or (dtype.kind == "i" and dtype.itemsize == 4):
        return 2.0**31, _INT32_MIN, True
    return _TWO_63, _INT64_MIN, False


def _fills_directly(output, dtype, result):
    """Whether the conversion can write into ``output`` itself."""
    return (
        type(output) is np.ndarray
        and output.dtype == dtype
        and output.flags.c_contiguous
        and output.flags.writeable
        and not np.may_share_memory(output, result)
    )


def _run_integer_kernel(kernel, result, route, target):
    bound, indefinite, wide32 = route
    values = np.ascontiguousarray(result).reshape(-1)
    flat = target.reshape(-1)
    truth = target.dtype.kind == "b"
    kernel(values, bound, indefinite, wide32, truth, flat.view(np.uint8) if truth else flat)


def _convert(result, dtype):
    """``result`` as a native array of ``dtype`` with SciPy's C conversions (``result``
    itself, not a copy, when it already is one: the engines hand over new arrays)."""
    if dtype.kind in "fc":
        with np.errstate(over="ignore", invalid="ignore"):
            return result.astype(dtype, copy=False)
    values = np.trunc(result.astype(np.float64, copy=False))
    if dtype.itemsize < 4 or (dtype.kind == "i" and dtype.itemsize == 4):
        wide = _to_integer(values, np.int32, _INT32_MIN)
    elif dtype.kind == "u" and dtype.itemsize == 8:
        wide = _to_uint64(values)
    else:
        wide = _to_integer(values, np.int64, _INT64_MIN)
    if dtype.kind == "b":
        return wide.astype(np.uint8) != 0
    return wide.astype(dtype)  # integer to integer keeps the low bits


def _to_integer(values, itype, indefinite):
    """Truncated float64 ``values`` to ``itype``, ``indefinite`` where they do not fit (or NaN)."""
    bound = float(2 ** (8 * np.dtype(itype).itemsize - 1))
    fits = (values >= -bound) & (values < bound)
    return np.where(fits, np.where(fits, values, 0).astype(itype), itype(indefinite))


def _to_uint64(values):
    """The x86-64 conversion of truncated float64 ``values`` to uint64."""
    high = values >= _TWO_63  # False for NaN, which takes the low path as in the C code
    low_part = _to_integer(np.where(high, 0.0, values), np.int64, _INT64_MIN).view(np.uint64)
    high_part = _to_integer(np.where(high, values - _TWO_63, 0.0), np.int64, _INT64_MIN).view(np.uint64)
    return np.where(high, high_part ^ np.uint64(1 << 63), low_part)
