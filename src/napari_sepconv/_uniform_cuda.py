"""CUDA kernel of the running-sum (uniform) filter, and two element-wise helpers.

One thread computes one segment (``_uniform.spacing`` outputs from an
anchor) of one line with ``_uniform_kernels._segment``, the arithmetic the CPU
kernels perform, so both backends give the same values. Neighbouring threads
take neighbouring columns, so their reads coalesce along a non-last axis.
Imported on first use only (it imports ``numba.cuda``).
"""

import functools

import numpy as np
from numba import cuda

from ._uniform_kernels import _segment

THREADS = 128

segment = cuda.jit(device=True)(_segment)


def _uniform_segments(src, source, size, K, cval, divide, out):
    t = cuda.grid(1)
    n_outer, n, n_inner = src.shape
    n_seg = (n + K - 1) // K
    if t >= n_outer * n_seg * n_inner:
        return
    c = t % n_inner
    rest = t // n_inner
    s = rest % n_seg
    o = rest // n_seg
    a = s * K
    segment(src, source, size, cval, divide, out, o, c, a, min(K, n - a))


def _clip(values, low, high):
    i = cuda.grid(1)
    if i < values.size:
        values[i] = min(max(values[i], low), high)


@functools.lru_cache(maxsize=None)
def _kernel(name):
    return cuda.jit({"uniform": _uniform_segments, "clip": _clip}[name])


def uniform_pass(src, outer, n, inner, source, size, K, cval, divide, dtype):
    from . import _cuda

    out = cuda.device_array(src.shape, np.dtype(dtype))
    if out.size == 0:
        return out
    threads = outer * -(-n // K) * inner
    src3 = _cuda.contiguous(src).reshape(outer, n, inner)
    out3 = out.reshape(outer, n, inner)
    blocks = -(-threads // THREADS)
    _kernel("uniform")[blocks, THREADS](
        src3, cuda.to_device(source), np.int64(size), np.int64(K), np.float64(cval), bool(divide), out3
    )
    return out


def clip(values, low, high):
    """Clip a device array to ``[low, high]``: in place where it is C-contiguous, else a
    contiguous copy of it (a view with its channel axis moved back, say), returned."""
    from . import _cuda

    values = _cuda.contiguous(values)
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
