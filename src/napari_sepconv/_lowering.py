"""Host-side tap tables that both engines build their kernel arguments from.

Backend-neutral: NumPy only, no Numba. Each helper turns ``(offsets, weights)``
taps (see ``_passes.taps``) into the arrays a kernel reads.
"""

import operator
import threading
from collections import OrderedDict

import numpy as np


class PreparedArrays:
    """What an engine derives from a plan's taps (typed weights, packed tables), kept.

    Plans are cached, and their tap tuples and arrays live as long as they do,
    so an engine keys what it derives from them by the object itself: a call
    with a cached plan finds its kernel arguments ready. The owner is held in
    the entry, so a recycled ``id`` can never return another owner's arrays.
    """

    def __init__(self, size=1024):
        self._entries = OrderedDict()
        self._lock = threading.Lock()  # napari filters from worker threads
        self._size = size

    def get(self, owners, tag, build, *args):
        """``build(*args)`` for the objects ``owners`` and ``tag``, built on the first call."""
        key = (tuple(map(id, owners)), tag)
        entry = self._entries.get(key)
        if entry is not None and all(map(operator.is_, entry[0], owners)):
            return entry[1]
        value = build(*args)
        with self._lock:
            self._entries[key] = (owners, value)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value


def as_type(values, dtype):
    return np.ascontiguousarray(values, dtype=dtype)


def symmetry(offsets, weights):
    """1 for a symmetric kernel of consecutive odd-length taps, -1 antisymmetric, else 0.

    The same test as scipy.ndimage's ``correlate1d`` (weights within one
    float64 epsilon count as equal), which then sums in mirrored pairs with
    the left-hand weights.
    """
    k = offsets.size
    if k % 2 == 0 or k < 3 or np.any(np.diff(offsets) != 1):
        return 0
    half = k // 2
    left, right = weights[:half], weights[:half:-1]
    eps = np.finfo(np.float64).eps
    if np.all(np.abs(left - right) <= eps):
        return 1
    if np.all(np.abs(left + right) <= eps):
        return -1
    return 0


def pack_taps(taps_list, dtype):
    """Ragged ``[(offsets, weights), ...]`` as padded 2-D arrays and counts."""
    width = max(o.size for o, _ in taps_list)
    offsets = np.zeros((len(taps_list), width), np.int64)
    weights = np.zeros((len(taps_list), width), dtype)
    counts = np.zeros(len(taps_list), np.int64)
    for t, (o, w) in enumerate(taps_list):
        offsets[t, : o.size] = o
        weights[t, : o.size] = w
        counts[t] = o.size
    return offsets, weights, counts


def edge_operator_3x3(cols, rows):
    """The two terms of a 3x3 edge operator's magnitude, ordered ``(gx, gy)``, or ``None``.

    ``gx`` smooths down (offsets -1, 0, 1) and differentiates across (offsets
    -1 and 1, the zero centre left out); ``gy`` the other way round.
    """
    if len(cols) != 2:
        return None
    smooth, derivative = [-1, 0, 1], [-1, 1]
    for gx in (0, 1):
        gy = 1 - gx
        if (
            list(cols[gx][0]) == smooth
            and list(rows[gx][0]) == derivative
            and list(cols[gy][0]) == derivative
            and list(rows[gy][0]) == smooth
        ):
            return gx, gy
    return None


def depthwise_taps(kernels, dtype):
    """Shared tap list of per-channel kernels (C*M, kh, kw), anchored scipy's way."""
    n_out, kh, kw = kernels.shape
    used = np.any(kernels != 0, axis=0)
    if not used.any():
        used[kh // 2, kw // 2] = True
    ys, xs = np.nonzero(used)  # row-major, so sorted by y
    weights = as_type(kernels[:, ys, xs].T, dtype)  # (taps, C*M)
    has_zero = np.any(weights == 0, axis=1)
    return ((ys - kh // 2).astype(np.int64), (xs - kw // 2).astype(np.int64), weights, has_zero)


def shared_taps(vectors, dtype):
    """Per-channel 1-D kernels (C*M, k) as one tap list: offsets, weights (taps, C*M), zero flags."""
    n_out, k = vectors.shape
    used = np.any(vectors != 0, axis=0)
    if not used.any():
        used[k // 2] = True
    idx = np.nonzero(used)[0]
    weights = as_type(vectors[:, idx].T, dtype)
    return (idx - k // 2).astype(np.int64), weights, np.any(weights == 0, axis=1)
