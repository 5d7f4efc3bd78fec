"""Host side of the running-sum (uniform) filter, for both backends.

:func:`uniform_pass` filters one axis: it lays out the line extension (which
sample each position of the extended line reads, as ``_boundary`` defines the
modes) and hands the lines to the CPU kernels (``_uniform_kernels``) or the CUDA
kernel (``_uniform_cuda``), which perform the same arithmetic.
"""

import numpy as np

from ._boundary import CONSTANT, MIRROR, NEAREST, REFLECT, WRAP


def extension(n, size, before, mode):
    """Index of the sample read at each of the ``n + size - 1`` positions of an extended line.

    Position ``k`` stands for line position ``k - before``; -1 marks ``cval``.
    """
    i = np.arange(n + size - 1, dtype=np.int64) - before
    if mode == CONSTANT:
        return np.where((i >= 0) & (i < n), i, -1)
    if mode == NEAREST:
        return np.clip(i, 0, n - 1)
    if mode == WRAP:
        return i % n
    if mode == REFLECT:
        m = i % (2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if mode == MIRROR:
        if n == 1:
            return np.zeros_like(i)
        period = 2 * n - 2
        m = i % period
        return np.where(m < n, m, period - m)
    raise ValueError(f"unknown mode code {mode}")


def uniform_pass(engine_name, src, axis, size, origin, mode, cval, dtype):
    """Mean over ``size`` samples along ``axis`` of the contiguous kernel input ``src``.

    Window of output ``i``: inputs ``i - (size // 2 + origin)`` to ``i + size - 1 -
    (size // 2 + origin)``. Returns a new ``dtype`` (float32 or float64) array on the
    side ``src`` lives on.
    """
    shape = src.shape
    n = shape[axis]
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    source = extension(n, size, size // 2 + origin, mode) if n else np.zeros(0, np.int64)
    if engine_name == "cuda":
        from . import _uniform_cuda

        return _uniform_cuda.uniform_pass(src, outer, n, inner, source, size, cval, dtype)
    from . import _cpu
    from ._uniform_kernels import (
        COLUMNS_PER_TASK,
        fix_nonfinite,
        uniform_last_axis,
        uniform_middle_axis,
    )

    out = np.empty(shape, dtype)
    if out.size == 0:
        return out
    src = np.ascontiguousarray(src)
    cval = np.float64(cval)
    if inner == 1:
        lines = src.reshape(outer, n)
        flags = np.zeros(outer, np.bool_)
        _cpu.run(uniform_last_axis, lines, source, size, cval, out.reshape(outer, n), flags)
        outer_ids = np.flatnonzero(flags)
        columns = np.zeros((outer_ids.size, 2), np.int64)
        columns[:, 1] = 1
    else:
        per_outer = -(-inner // COLUMNS_PER_TASK)
        flags = np.zeros((outer, per_outer), np.bool_)
        _cpu.run(
            uniform_middle_axis,
            src.reshape(outer, n, inner),
            source,
            size,
            cval,
            out.reshape(outer, n, inner),
            flags,
        )
        outer_ids, blocks = np.nonzero(flags)
        columns = np.stack(
            [blocks * COLUMNS_PER_TASK, np.minimum((blocks + 1) * COLUMNS_PER_TASK, inner)], axis=1
        )
    if outer_ids.size:
        fix_nonfinite(
            src.reshape(outer, n, inner),
            source,
            size,
            cval,
            out.reshape(outer, n, inner),
            outer_ids.astype(np.int64),
            columns.astype(np.int64),
        )
    return out
