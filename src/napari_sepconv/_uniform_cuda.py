"""CUDA kernel of the running-sum (uniform) filter, and two element-wise helpers.

One thread sweeps one line with the update the CPU kernels use
(``_uniform_kernels.accumulate``), so both backends give the same values.
Imported on first use only (it imports ``numba.cuda``).
"""

import functools

import numpy as np
from numba import cuda

from ._uniform_kernels import accumulate, nonfinite_result

THREADS = 128


def _uniform_lines(src, source, size, cval, out):
    t = cuda.grid(1)
    n_outer, n, n_inner = src.shape
    if t >= n_outer * n_inner:
        return
    o = t // n_inner
    c = t - o * n_inner
    inv = np.float64(size)
    hi = 0.0
    lo = 0.0
    n_nan = 0
    n_pos = 0
    n_neg = 0
    for k in range(n + size - 1):
        j = source[k]
        v = cval if j < 0 else np.float64(src[o, j, c])
        if v - v == 0.0:
            hi, lo = accumulate(hi, lo, v)
        elif v != v:
            n_nan += 1
        elif v > 0:
            n_pos += 1
        else:
            n_neg += 1
        if k >= size:
            j = source[k - size]
            v = cval if j < 0 else np.float64(src[o, j, c])
            if v - v == 0.0:
                hi, lo = accumulate(hi, lo, -v)
            elif v != v:
                n_nan -= 1
            elif v > 0:
                n_pos -= 1
            else:
                n_neg -= 1
        if k >= size - 1:
            if n_nan + n_pos + n_neg > 0:
                out[o, k - size + 1, c] = nonfinite_result(n_nan, n_pos, n_neg)
            else:
                out[o, k - size + 1, c] = (hi + lo) / inv


def _clip(values, low, high):
    i = cuda.grid(1)
    if i < values.size:
        values[i] = min(max(values[i], low), high)


@functools.lru_cache(maxsize=None)
def _kernel(name):
    return cuda.jit({"uniform": _uniform_lines, "clip": _clip}[name])


def uniform_pass(src, outer, n, inner, source, size, cval, dtype):
    from . import _cuda

    out = cuda.device_array(src.shape, np.dtype(dtype))
    lines = outer * inner
    if out.size == 0:
        return out
    src3 = _cuda.contiguous(src).reshape(outer, n, inner)
    out3 = out.reshape(outer, n, inner)
    blocks = -(-lines // THREADS)
    _kernel("uniform")[blocks, THREADS](src3, cuda.to_device(source), np.int64(size), np.float64(cval), out3)
    return out


def clip(values, low, high):
    """Clip a contiguous device array to ``[low, high]`` in place."""
    flat = values.reshape(values.size)
    if flat.size:
        blocks = -(-flat.size // THREADS)
        _kernel("clip")[blocks, THREADS](flat, flat.dtype.type(low), flat.dtype.type(high))
    return values


def has_negative(values):
    """Whether a device array holds a value below zero."""
    from . import _cuda

    dense = _cuda.contiguous(values)
    flat = dense.reshape(dense.size)
    if flat.size == 0:
        return False
    smallest = cuda.reduce(lambda a, b: min(a, b))(flat)
    return bool(smallest < 0)
