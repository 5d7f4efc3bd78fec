"""Host scratch arrays for the intermediate results of multi-pass filters, reused across calls.

A filter of several passes (one 1-D pass per axis, or passes before a fused one) stores
each pass's result in a full-size array that the next pass reads and the caller never
sees. Allocated afresh on every call, such an array costs the operating system a page
fault per page on first touch, and the C library hands its memory back after each call
once two or more large blocks are free: two 1-D passes over a 256 x 256 float64 image took
0.5-0.8 ms with a new intermediate against 0.14 ms with one kept. So the intermediates
come from here: a block that a call releases goes to a small pool (at most
:data:`POOL_BYTES` and :data:`POOL_BLOCKS` in all, shared by every thread, the most recently
released kept), and the next call of about the same size takes it from there. Intermediates
under :data:`MIN_BYTES` are plain new arrays.
"""

import math
import os
import threading
from contextlib import contextmanager

import numpy as np

POOL_BYTES = 64 << 20
"""Most bytes the pool keeps between calls; a larger intermediate is allocated each time."""
POOL_BLOCKS = 8
"""Most blocks the pool keeps."""
MIN_BYTES = 256 << 10
"""Smaller intermediates are plain new arrays: the C library reuses such small blocks itself."""

_lock = threading.Lock()
_free = []  # released blocks (1-D uint8 arrays), the most recently released last
_free_bytes = 0


def _take(nbytes):
    """A free block of at least ``nbytes`` and at most twice that (the smallest), or a new one."""
    global _free_bytes
    with _lock:
        best = None
        for i, block in enumerate(_free):
            if nbytes <= block.size <= 2 * nbytes and (best is None or block.size < _free[best].size):
                best = i
        if best is not None:
            _free_bytes -= _free[best].size
            return _free.pop(best)
    return np.empty(nbytes, np.uint8)


def _give(block):
    """Return ``block`` to the pool, dropping the least recently released beyond the limits."""
    global _free_bytes
    if block.size > POOL_BYTES:
        return
    with _lock:
        _free.append(block)
        _free_bytes += block.size
        while _free_bytes > POOL_BYTES or len(_free) > POOL_BLOCKS:
            _free_bytes -= _free.pop(0).size


@contextmanager
def scratch_arrays():
    """``new(shape, dtype)``: uninitialised C-contiguous arrays for a call's intermediate
    results, all returned to the pool when the ``with`` block ends, so that none of them
    may outlive it (nor be returned to the caller).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_sepconv._scratch import scratch_arrays
    >>> with scratch_arrays() as new:
    ...     middle = new((4, 5), np.float64)
    ...     middle[...] = 2.0
    ...     float(middle.sum())
    40.0
    """
    taken = []

    def new(shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(shape, dtype)
        block = _take(nbytes)
        taken.append(block)
        return block[:nbytes].view(dtype).reshape(shape)

    try:
        yield new
    finally:
        for block in taken:
            _give(block)


class Alternating:
    """Intermediates of one shape and type from ``new`` (``scratch_arrays``), at most two,
    handed out so that a pass never writes the array it reads.

    Examples
    --------
    >>> import numpy as np
    >>> middles = Alternating(np.empty, (3,), np.float64)
    >>> a = middles.other_than(None)
    >>> b = middles.other_than(a)
    >>> middles.other_than(b) is a, b is a
    (True, False)
    """

    def __init__(self, new, shape, dtype):
        self._new, self._shape, self._dtype = new, shape, dtype
        self._arrays = []

    def other_than(self, current):
        """An intermediate that is not ``current`` (made on first need)."""
        for array in self._arrays:
            if array is not current:
                return array
        array = self._new(self._shape, self._dtype)
        self._arrays.append(array)
        return array


def release():
    """Free the pool's blocks (their memory goes back once no array uses it)."""
    global _free_bytes
    with _lock:
        _free.clear()
        _free_bytes = 0


def _after_fork_in_child():
    """A child process starts with an empty pool and a lock of its own (another thread of
    the parent may have held the lock when it forked)."""
    global _lock, _free_bytes
    _lock = threading.Lock()
    _free.clear()
    _free_bytes = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
