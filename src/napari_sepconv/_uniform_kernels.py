"""CPU kernels of the running-sum (uniform) filter: O(1) work per sample, any size.

Each line is extended by its border mode (the caller passes ``source``: for every
position of the extended line, the index of the sample read there, -1 for ``cval``).
Output ``i`` is the mean of extended positions ``i`` to ``i + size - 1``.

Anchored running sums
---------------------
A line is cut into segments of ``_uniform.spacing`` outputs (``K``), at positions that
are multiples of ``K`` in the line's own coordinates. At the first output of a
segment (its *anchor*) the window is summed directly, left to right, in float64;
each following output adds the difference of the sample entering and the one
leaving, ``s = s + (entering - leaving)``; a mean is ``s / size`` for integer input
(exact sums, so the correctly rounded mean) and ``s * (1 / size)`` for float input.
A value therefore depends only on the data and on its segment, never on where the
computation of the line started: a dask block whose start is a multiple of ``K``
(``smoothing`` aligns the chunks so) or a CUDA thread computing one segment gives
the same bits as the whole-array call. Over a segment the plain float64 sum drifts
by at most a few roundings per step, far less than scipy.ndimage's running mean,
which drifts along the whole line.

Non-finite samples: the fast kernels sum what they read, so a NaN or inf makes the
sum non-finite until the segment ends; a segment whose final sum is not finite is
flagged and recomputed by :func:`segment` (the one the CUDA kernel runs), which
sums non-finite samples as zero, counts them, and gives the windows holding them
the value a sum gives (NaN, or inf of their sign). Without non-finite samples both
perform the same operations in the same order.

Kernels: :func:`middle_axis` (a line along a non-last axis: lanes of contiguous
columns, vectorised), :func:`last_axis` (a line extended into a float64 buffer and
swept by :func:`sweep`: the running sums of four segments interleaved, each step
adding the difference of its entering and leaving samples, then the means in one
vectorised loop) and :func:`last_two_axes` (the last two passes of a
filter fused band by band, so the intermediate image never goes through memory; four
rows at a time advance into four interleaved lines, swept together in the lanes of a
vector by :func:`sweep_lanes`, ``_lane_sums``).
Each kernel calls its task's work (:func:`band`, :func:`line_segments`,
:func:`last_two_rows`) by address (``_helper_calls``), compiled once, and starts its
workers on the threading layer without a parallel loop (``_workers``). Until a kernel is
compiled, its quick twin (``_uniform_quick``, ``_tiers``) gives the same values.

This module imports Numba and is imported on first use only.
"""

import numba
import numpy as np

from ._cpu_kernels import _buffer, _imax, _imin, _inlined, _Kernel, _next_task, _task_queue
from ._cpu_kernels import _helper as _cpu_helper
from ._cpu_kernels import _jit as _cpu_jit
from ._helper_calls import helper_call, looked_up_call
from ._lane_sums import LANES, lane_sums
from ._streaming import prefetch, scale_row, scale_rows
from ._views import row_view
from ._workers import worker_helper, worker_launch

# Columns swept together by the other-axes kernel (one contiguous run of a row).
COLUMNS = 512


def _jit(func, quick=False):
    """A kernel, or a helper that Python calls (:func:`fix_segments`), in the kernels'
    versioned on-disk cache (``warmup.cache_dir``), with NumPy's error model; a kernel's
    workers run on the threading layer (``_workers``). A ``quick`` twin's is compiled at
    the twins' level (``_cpu_kernels.QUICK_OPT_LEVEL``)."""
    return _cpu_jit(func, quick, error_model="numpy")


def _helper(func):
    """A kernel's helper (``_cpu_kernels._helper``: compiled once per signature, cached,
    without reference counting), with NumPy's error model, as the kernels have it."""
    return _cpu_helper(func, error_model="numpy")


def _inline(func):
    return numba.njit(inline="always", cache=False, error_model="numpy")(func)


# --------------------------------------------------------------------------
# The reference arithmetic: one segment of one line, non-finite samples counted
# --------------------------------------------------------------------------


def _nonfinite_result(n_nan, n_pos, n_neg):
    """The mean of a window holding non-finite samples, as a sum of them gives it."""
    if n_nan > 0 or (n_pos > 0 and n_neg > 0):
        return np.nan
    return np.inf if n_pos > 0 else -np.inf


nonfinite_result = _inline(_nonfinite_result)


def _segment(src, source, size, cval, divide, out, o, c, a, m):
    """Outputs ``a`` to ``a + m - 1`` of the line ``src[o, :, c]`` into ``out[o, :, c]``.

    The arithmetic of the fast kernels, with non-finite samples summed as zero and
    counted; a window that holds one gets :func:`nonfinite_result`.
    """
    size_f = np.float64(size)
    inv = 1.0 / size_f
    n_nan = 0
    n_pos = 0
    n_neg = 0
    s = 0.0
    for k in range(size):
        j = source[a + k]
        v = cval if j < 0 else np.float64(src[o, j, c])
        if v - v == 0.0:
            s = s + v
        elif v != v:
            n_nan += 1
        elif v > 0:
            n_pos += 1
        else:
            n_neg += 1
    for i in range(a, a + m):
        if i > a:
            j = source[i + size - 1]
            v_in = cval if j < 0 else np.float64(src[o, j, c])
            j = source[i - 1]
            v_out = cval if j < 0 else np.float64(src[o, j, c])
            if v_in - v_in != 0.0:
                if v_in != v_in:
                    n_nan += 1
                elif v_in > 0:
                    n_pos += 1
                else:
                    n_neg += 1
                v_in = 0.0
            if v_out - v_out != 0.0:
                if v_out != v_out:
                    n_nan -= 1
                elif v_out > 0:
                    n_pos -= 1
                else:
                    n_neg -= 1
                v_out = 0.0
            s = s + (v_in - v_out)
        if n_nan + n_pos + n_neg > 0:
            out[o, i, c] = nonfinite_result(n_nan, n_pos, n_neg)
        elif divide:
            out[o, i, c] = s / size_f
        else:
            out[o, i, c] = s * inv


segment = _inline(_segment)


@_jit
def fix_segments(src, source, size, K, cval, divide, out, outer, starts, columns):
    """:func:`segment` over the flagged pieces ``(outer[t], segment starting at starts[t],
    columns[t, 0] to columns[t, 1])`` of the 3-D (outer, n, inner) arrays."""
    n = src.shape[1]
    for t in range(outer.size):
        a = starts[t]
        m = _imin(K, n - a)
        for c in range(columns[t, 0], columns[t, 1]):
            segment(src, source, size, cval, divide, out, outer[t], c, a, m)


# --------------------------------------------------------------------------
# Along a non-last axis: lanes of contiguous columns
# --------------------------------------------------------------------------


@_helper
def add_row(row, acc):
    for c in range(acc.size):
        acc[c] = acc[c] + np.float64(row[c])


@_helper
def add_value(v, acc):
    for c in range(acc.size):
        acc[c] = acc[c] + v


@_helper
def means_of(acc, size, divide, dst):
    """``dst = acc / size`` (``divide``) or ``acc * (1 / size)``."""
    size_f = np.float64(size)
    inv = 1.0 / size_f
    for c in range(acc.size):
        dst[c] = acc[c] / size_f if divide else acc[c] * inv


@_helper
def step_rows(entering, leaving, acc, size, divide, dst):
    """``acc += entering - leaving``, then the means into ``dst`` (as :func:`means_of`)."""
    size_f = np.float64(size)
    if divide:
        for c in range(acc.size):
            s = acc[c] + (np.float64(entering[c]) - np.float64(leaving[c]))
            acc[c] = s
            dst[c] = s / size_f
    else:
        inv = 1.0 / size_f
        for c in range(acc.size):
            s = acc[c] + (np.float64(entering[c]) - np.float64(leaving[c]))
            acc[c] = s
            dst[c] = s * inv


@_helper
def step_border(src_row_in, v_in, src_row_out, v_out, acc, size, divide, dst):
    """:func:`step_rows` where the entering or the leaving row may be ``cval``: a row
    argument of size 0 stands for the constant ``v_in`` / ``v_out``."""
    size_f = np.float64(size)
    inv = 1.0 / size_f
    for c in range(acc.size):
        a_in = v_in if src_row_in.size == 0 else np.float64(src_row_in[c])
        a_out = v_out if src_row_out.size == 0 else np.float64(src_row_out[c])
        s = acc[c] + (a_in - a_out)
        acc[c] = s
        dst[c] = s / size_f if divide else s * inv


@_helper
def any_nonfinite(acc):
    bad = 0.0
    for c in range(acc.size):
        bad += acc[c] - acc[c]
    return bad != 0.0 or bad != bad


def _start_sums(src, o, source, a, size, cval, acc, c0, c1):
    """``acc`` = the sums of the window of output ``a`` along axis 1 of plane ``o``, columns
    ``c0`` to ``c1``: the rows ``source[a .. a + size - 1]`` (``cval`` where -1) added in order."""
    acc[:] = 0.0
    for k in range(size):
        j = source[a + k]
        if j < 0:
            add_value(cval, acc)
        else:
            add_row(row_view(src, (o, j), c0, c1), acc)


def _step_sums(src, o, source, i, size, cval, divide, acc, c0, c1, dst):
    """Advance ``acc`` (:func:`start_sums`) from output ``i - 1`` to output ``i``: add the
    row entering the window, subtract the one leaving it (either may be ``cval``), and write
    the means into ``dst``."""
    j_in = source[i + size - 1]
    j_out = source[i - 1]
    if j_in >= 0 and j_out >= 0:
        step_rows(row_view(src, (o, j_in), c0, c1), row_view(src, (o, j_out), c0, c1), acc, size, divide, dst)
    else:
        empty = row_view(src, (o, 0), 0, 0)
        row_in = empty if j_in < 0 else row_view(src, (o, j_in), c0, c1)
        row_out = empty if j_out < 0 else row_view(src, (o, j_out), c0, c1)
        step_border(row_in, cval, row_out, cval, acc, size, divide, dst)


# Inlined where they are used (:func:`band`, :func:`last_two_rows`): compiled apart, they
# added 0.3 s to a cold compile.
start_sums = _inline(_start_sums)
step_sums = _inline(_step_sums)


@_helper
def band(src, source, size, cval, divide, acc, out, o, a, m, c0, w):
    """Outputs ``a`` to ``a + m - 1`` of the columns ``c0`` to ``c0 + w`` of plane ``o``
    along axis 1, the sums in ``acc``; returns whether a sum ended non-finite."""
    start_sums(src, o, source, a, size, cval, acc, c0, c0 + w)
    means_of(acc, size, divide, row_view(out, (o, a), c0, c0 + w))
    for i in range(a + 1, a + m):
        step_sums(src, o, source, i, size, cval, divide, acc, c0, c0 + w, row_view(out, (o, i), c0, c0 + w))
    return any_nonfinite(acc)


_call_band = helper_call(band)


def _middle_axis_worker(worker, state):
    """Worker ``worker``'s tasks of :func:`middle_axis` (``_workers``)."""
    (
        src,
        source,
        size,
        K,
        cval,
        divide,
        out,
        flags,
        helpers,
        missing,
        queue,
        n_blocks,
        n_tasks,
    ) = state
    n, n_inner = src.shape[1], src.shape[2]
    per_outer = ((n + K - 1) // K) * n_blocks
    sums = _buffer(_imin(COLUMNS, n_inner), np.float64)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        o = task // per_outer
        rest = task - o * per_outer
        s = rest // n_blocks
        b = rest - s * n_blocks
        c0 = b * COLUMNS
        w = _imin(COLUMNS, n_inner - c0)
        a = s * K
        flags[o, s, b] = _call_band(
            helpers, missing, (src, source, size, cval, divide, sums[:w], out, o, a, _imin(K, n - a), c0, w)
        )
        task = _next_task(queue, worker, n_tasks)


_middle_axis_worker = worker_helper(_middle_axis_worker)
_run_middle_axis = worker_launch(_middle_axis_worker)


def _middle_axis(src, source, size, K, cval, divide, out, flags, helpers, missing):
    """Running means along axis 1 of the 3-D ``src`` (outer, n, inner) into ``out``.

    A task is one segment of :data:`COLUMNS` columns of one plane; ``flags``
    (outer, segments, column blocks) marks the tasks whose sums ended non-finite.
    A task's work is :func:`band`, called by address (``helpers``, ``missing``:
    ``_helper_calls``), and the workers are :func:`_middle_axis_worker`.
    """
    n_outer, n, n_inner = src.shape
    n_blocks = (n_inner + COLUMNS - 1) // COLUMNS
    n_tasks = n_outer * ((n + K - 1) // K) * n_blocks
    queue = _task_queue(n_tasks)
    state = (
        src,
        source,
        size,
        K,
        cval,
        divide,
        out,
        flags,
        helpers,
        missing,
        queue,
        n_blocks,
        n_tasks,
    )
    _run_middle_axis(helpers, missing, queue, state)


middle_axis = _Kernel(_middle_axis, 6, calls_helper=True, reads_any=True, jit=_jit)


# --------------------------------------------------------------------------
# Along the last axis: a line extended into a float64 buffer, segments interleaved
# --------------------------------------------------------------------------


@_helper
def extend(row, source, before, lo, count, cval, ext):
    """``ext[k]`` = extended position ``lo + k`` of ``row`` as float64, ``k < count``.

    Extended position ``k`` reads ``row[k - before]`` inside the line (a contiguous,
    vectorised copy) and ``row[source[k]]`` (or ``cval``) outside it.
    """
    n = row.size
    start = _imin(_imax(before - lo, 0), count)
    stop = _imax(_imin(before + n - lo, count), start)
    for k in range(start):
        j = source[lo + k]
        ext[k] = cval if j < 0 else np.float64(row[j])
    seg = row[lo + start - before : lo + stop - before]
    dst = ext[start:stop]
    for k in range(stop - start):
        dst[k] = np.float64(seg[k])
    for k in range(stop, count):
        j = source[lo + k]
        ext[k] = cval if j < 0 else np.float64(row[j])


@_helper
def sums_of(ext, m, K, size, sums, flags):
    """``sums[i]`` = sum of ``ext[i : i + size]`` for ``i < m``, as the anchored running
    sum gives it; ``flags[q]`` = whether the sum of segment ``q`` ended non-finite.

    Four segments are swept together (independent additions), each step adding the
    difference of the entering and the leaving sample; every array is read through
    row views (``_views.row_view``: non-negative indices, nothing checked).
    """
    n_seg = (m + K - 1) // K
    q = 0
    while q + 4 <= m // K:
        e0 = row_view(ext, (), q * K, q * K + K + size - 1)
        e1 = row_view(ext, (), q * K + K, q * K + 2 * K + size - 1)
        e2 = row_view(ext, (), q * K + 2 * K, q * K + 3 * K + size - 1)
        e3 = row_view(ext, (), q * K + 3 * K, q * K + 4 * K + size - 1)
        t0 = row_view(sums, (), q * K, q * K + K)
        t1 = row_view(sums, (), q * K + K, q * K + 2 * K)
        t2 = row_view(sums, (), q * K + 2 * K, q * K + 3 * K)
        t3 = row_view(sums, (), q * K + 3 * K, q * K + 4 * K)
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for k in range(size):
            s0 = s0 + e0[k]
            s1 = s1 + e1[k]
            s2 = s2 + e2[k]
            s3 = s3 + e3[k]
        t0[0] = s0
        t1[0] = s1
        t2[0] = s2
        t3[0] = s3
        # Output t + 1 of a segment: sample t + size enters, sample t leaves.
        a0, a1 = row_view(e0, (), size, None), row_view(e1, (), size, None)
        a2, a3 = row_view(e2, (), size, None), row_view(e3, (), size, None)
        u0, u1 = row_view(t0, (), 1, None), row_view(t1, (), 1, None)
        u2, u3 = row_view(t2, (), 1, None), row_view(t3, (), 1, None)
        for t in range(K - 1):
            s0 = s0 + (a0[t] - e0[t])
            s1 = s1 + (a1[t] - e1[t])
            s2 = s2 + (a2[t] - e2[t])
            s3 = s3 + (a3[t] - e3[t])
            u0[t] = s0
            u1[t] = s1
            u2[t] = s2
            u3[t] = s3
        flags[q] = s0 - s0 != 0.0
        flags[q + 1] = s1 - s1 != 0.0
        flags[q + 2] = s2 - s2 != 0.0
        flags[q + 3] = s3 - s3 != 0.0
        q += 4
    while q < n_seg:
        mq = _imin(K, m - q * K)
        e = row_view(ext, (), q * K, q * K + mq + size - 1)
        t_q = row_view(sums, (), q * K, q * K + mq)
        s = 0.0
        for k in range(size):
            s = s + e[k]
        t_q[0] = s
        a_q = row_view(e, (), size, None)
        u_q = row_view(t_q, (), 1, None)
        for t in range(mq - 1):
            s = s + (a_q[t] - e[t])
            u_q[t] = s
        flags[q] = s - s != 0.0
        q += 1


@_helper
def sweep(ext, m, K, size, divide, dst, flags, sums, stream):
    """``dst[i]`` = mean of ``ext[i : i + size]`` for ``i < m``, anchored at the
    multiples of ``K``: the sums by :func:`sums_of` into the float64 buffer ``sums``
    (at least ``m`` long), then ``sum / size`` (``divide``) or ``sum * (1 / size)``
    in one vectorised loop, past the caches where ``stream`` (``_streaming``; float input).
    ``flags[q]`` = whether segment ``q``'s sum ended non-finite.
    """
    sums_of(ext, m, K, size, sums, flags)
    size_f = np.float64(size)
    line = sums[:m]
    if stream and not divide:
        scale_row(line, dst[:m], 1.0 / size_f)
    elif divide:
        for i in range(m):
            dst[i] = line[i] / size_f
    else:
        inv = 1.0 / size_f
        for i in range(m):
            dst[i] = line[i] * inv


# Segments per task of the last-axis kernel (and the samples of a task of short lines).
SEGMENTS_PER_TASK = 32


@_helper
def line_segments(
    src, l0, l1, source, before, lo, m, size, K, cval, divide, out, flags, q0, stream, ext, sums, ahead
):
    """Outputs ``lo .. lo + m - 1`` of lines ``l0 .. l1 - 1`` of ``src`` into ``out`` for
    :func:`last_axis`: each line extended into ``ext`` and swept by :func:`sweep` (``sums``:
    the task's buffers, long enough); ``flags`` (lines, segments), from segment ``q0`` on,
    marks the sums that ended non-finite.

    ``ahead``, the samples the worker's next task reads (or none), is asked for once the
    first line is extended (``_streaming.prefetch``): it arrives from memory during the sweeps.
    """
    n_q = (m + K - 1) // K
    for line in range(l0, l1):
        extend(row_view(src, line, 0, None), source, before, lo, m + size - 1, cval, ext)
        if line == l0:
            prefetch(ahead)
        dst = row_view(out, line, lo, lo + m)
        sweep(ext, m, K, size, divide, dst, row_view(flags, line, q0, q0 + n_q), sums, stream)


_call_line_segments = helper_call(line_segments)


def _line_task(task, per_line, lines, n_seg, K, n, n_lines):
    """Task ``task`` of :func:`last_axis`: its first and last-plus-one lines, its first
    segment, and its first output and number of outputs on each line. A line of more than
    :data:`SEGMENTS_PER_TASK` segments is cut into ``per_line`` tasks; shorter ones go
    ``lines`` to a task (a task of a few samples cost more to hand out than to compute)."""
    if lines > 1:
        l0 = task * lines
        return l0, _imin(l0 + lines, n_lines), 0, 0, n
    line = task // per_line
    q0 = (task - line * per_line) * SEGMENTS_PER_TASK
    q1 = _imin(q0 + SEGMENTS_PER_TASK, n_seg)
    lo = q0 * K
    return line, line + 1, q0, lo, _imin(q1 * K, n) - lo


_line_task = _inlined(_line_task, error_model="numpy")  # as its worker (``_workers``)


def _last_axis_worker(worker, state):
    """Worker ``worker``'s tasks of :func:`last_axis` (``_workers``)."""
    (
        src,
        source,
        before,
        size,
        K,
        cval,
        divide,
        out,
        flags,
        stream,
        helpers,
        missing,
        queue,
        n_seg,
        per_line,
        lines,
        n_tasks,
    ) = state
    n_lines, n = src.shape
    longest = _imin(SEGMENTS_PER_TASK * K, n)  # a task's outputs on a line, at most
    ext = _buffer(longest + size - 1, np.float64)
    sums = _buffer(longest, np.float64)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        l0, l1, q0, lo, m = _line_task(task, per_line, lines, n_seg, K, n, n_lines)
        # The worker's next task is most often the next one of its share.
        ahead = src[l0, 0:0]
        if task + 1 < n_tasks:
            l_a, _, _, lo_a, m_a = _line_task(task + 1, per_line, lines, n_seg, K, n, n_lines)
            ahead = src[l_a, lo_a : lo_a + m_a]
        _call_line_segments(
            helpers,
            missing,
            (
                src,
                l0,
                l1,
                source,
                before,
                lo,
                m,
                size,
                K,
                cval,
                divide,
                out,
                flags,
                q0,
                stream,
                ext,
                sums,
                ahead,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_last_axis_worker = worker_helper(_last_axis_worker)
_run_last_axis = worker_launch(_last_axis_worker)


def _last_axis(src, source, before, size, K, cval, divide, out, flags, stream, helpers, missing):
    """Running means along the last axis of the 2-D ``src`` (lines, n) into ``out``.

    A task is up to :data:`SEGMENTS_PER_TASK` segments of one line, or as many whole lines
    as hold about that many samples, each line extended into a float64 buffer and swept
    by :func:`sweep`; ``flags`` (lines, segments) marks the
    segments whose sums ended non-finite. Where ``stream``, output rows are written past
    the caches (``_streaming``). A task's work is :func:`line_segments`, called by
    address (``helpers``, ``missing``: ``_helper_calls``), and the workers are
    :func:`_last_axis_worker`.
    """
    n_lines, n = src.shape
    n_seg = (n + K - 1) // K
    per_line = (n_seg + SEGMENTS_PER_TASK - 1) // SEGMENTS_PER_TASK
    lines = _imax(1, (SEGMENTS_PER_TASK * K) // _imax(n, 1)) if per_line == 1 else 1
    n_tasks = n_lines * per_line if lines == 1 else (n_lines + lines - 1) // lines
    queue = _task_queue(n_tasks)
    state = (
        src,
        source,
        before,
        size,
        K,
        cval,
        divide,
        out,
        flags,
        stream,
        helpers,
        missing,
        queue,
        n_seg,
        per_line,
        lines,
        n_tasks,
    )
    _run_last_axis(helpers, missing, queue, state)


last_axis = _Kernel(_last_axis, 7, calls_helper=True, reads_any=True, jit=_jit)


# --------------------------------------------------------------------------
# The last two axes fused: a band of rows along axis 1, each row then along axis 2
# --------------------------------------------------------------------------


@_helper
def fill_border(ext, source, before, n, cval, lanes):
    """The positions of the extended line ``ext`` outside ``[before, before + n)``,
    from its inside (``ext[before + source[k]]``) or ``cval``; ``lanes`` such lines
    interleaved (position ``k`` of line ``r`` at ``lanes * k + r``, ``_lane_sums``)."""
    for k in range(before):
        j = source[k]
        for r in range(lanes):
            ext[lanes * k + r] = cval if j < 0 else ext[lanes * (before + j) + r]
    for k in range(before + n, ext.size // lanes):
        j = source[k]
        for r in range(lanes):
            ext[lanes * k + r] = cval if j < 0 else ext[lanes * (before + j) + r]


@_helper
def step_lanes(src, o, source, i, size, divide, acc, lanes):
    """:func:`step_sums` for outputs ``i .. i + 3`` of plane ``o``, where every row entering
    or leaving their windows is a row of ``src`` (none is ``cval``, :func:`rows_inside`):
    the means of output ``i + r`` into lane ``r`` of ``lanes`` (sample ``c`` at ``4 * c +
    r``, ``_lane_sums``)."""
    n = acc.size
    e0 = row_view(src, (o, source[i + size - 1]), 0, n)
    e1 = row_view(src, (o, source[i + size]), 0, n)
    e2 = row_view(src, (o, source[i + size + 1]), 0, n)
    e3 = row_view(src, (o, source[i + size + 2]), 0, n)
    l0 = row_view(src, (o, source[i - 1]), 0, n)
    l1 = row_view(src, (o, source[i]), 0, n)
    l2 = row_view(src, (o, source[i + 1]), 0, n)
    l3 = row_view(src, (o, source[i + 2]), 0, n)
    size_f = np.float64(size)
    inv = 1.0 / size_f
    for c in range(n):
        s = acc[c] + (np.float64(e0[c]) - np.float64(l0[c]))
        lanes[4 * c] = s / size_f if divide else s * inv
        s = s + (np.float64(e1[c]) - np.float64(l1[c]))
        lanes[4 * c + 1] = s / size_f if divide else s * inv
        s = s + (np.float64(e2[c]) - np.float64(l2[c]))
        lanes[4 * c + 2] = s / size_f if divide else s * inv
        s = s + (np.float64(e3[c]) - np.float64(l3[c]))
        lanes[4 * c + 3] = s / size_f if divide else s * inv
        acc[c] = s


@_helper
def sweep_lanes(ext, m, K, size, out, o, i, sums, stream):
    """:func:`sweep` of four interleaved extended lines (``_lane_sums``) into rows ``i ..
    i + 3`` of plane ``o`` of ``out``, the sums in ``sums`` (at least ``4 * m`` long), the
    means ``sum * (1 / size)`` (:func:`sweep`'s for float input); whether a segment's sum
    ended non-finite."""
    n_seg = (m + K - 1) // K
    q = 0
    while q + LANES <= m // K:
        lane_sums(ext, sums, q * K, K, size, K - 1, 4)
        q += LANES
    while q < n_seg:
        lane_sums(ext, sums, q * K, K, size, _imin(K, m - q * K) - 1, 1)
        q += 1
    bad = 0.0
    for q in range(n_seg):
        last = LANES * (_imin(q * K + K, m) - 1)
        for r in range(LANES):
            bad += sums[last + r] - sums[last + r]
    d0 = row_view(out, (o, i), 0, m)
    d1 = row_view(out, (o, i + 1), 0, m)
    d2 = row_view(out, (o, i + 2), 0, m)
    d3 = row_view(out, (o, i + 3), 0, m)
    inv = 1.0 / np.float64(size)
    if stream:
        scale_rows(sums, d0, d1, d2, d3, inv)
    else:
        for c in range(m):
            d0[c] = sums[4 * c] * inv
            d1[c] = sums[4 * c + 1] * inv
            d2[c] = sums[4 * c + 2] * inv
            d3[c] = sums[4 * c + 3] * inv
    return bad != 0.0 or bad != bad


def _rows_inside(source, i, size):
    """Whether the rows entering and leaving the windows of outputs ``i .. i + 3`` are all
    rows of the input (none is ``cval``)."""
    inside = True
    for r in range(LANES):
        inside = inside and source[i + r - 1] >= 0 and source[i + r + size - 1] >= 0
    return inside


rows_inside = _inline(_rows_inside)

# :func:`last_two_rows` calls its passes by address: linked into it, their code was
# optimised again with its own (``_helper_calls``).
_call_sweep, _sweep_found = looked_up_call(sweep)
_call_step_lanes, _step_lanes_found = looked_up_call(step_lanes)
_call_sweep_lanes, _sweep_lanes_found = looked_up_call(sweep_lanes)


@_helper
def last_two_rows(
    src,
    o,
    a,
    m,
    source0,
    size0,
    source1,
    before1,
    size1,
    K1,
    cval,
    divide0,
    divide1,
    out,
    stream,
    buffers,
    lanes,
    row_flags,
    helpers,
    missing,
):
    """Rows ``a .. a + m - 1`` (one segment along axis 1) of plane ``o`` for
    :func:`last_two_axes`, in the task's ``buffers`` (``acc``, then the extended line,
    then the sums, rows of ``n1 + size1 - 1`` float64 values), ``lanes`` (four extended
    lines interleaved, then their sums) and ``row_flags`` (one per segment along axis 2);
    whether a sum ended non-finite.

    Four rows at a time, where none of their steps reads ``cval`` rows, advance the sums
    along axis 1 into four interleaved lines, swept together along axis 2
    (:func:`sweep_lanes`, whose means are products: ``divide1`` is false where the second
    pass sums the first one's float64 means, as ``_uniform.uniform_last_two`` runs them);
    the segment's first row, rows near a ``constant`` border and its last rows go one at a
    time (:func:`sweep`). Each row's values are the same.

    The input rows that the next rows' sums add are asked for before rows are swept
    (``_streaming.prefetch``): they arrive from memory while the sweep runs in the caches.
    The sweeps and the four rows' steps are called by address (``helpers``, ``missing``:
    ``_helper_calls``), all looked up first: where one is missing, nothing is done.
    """
    n1 = src.shape[2]
    acc = buffers[0, :n1]
    ext = buffers[1]
    sums = buffers[2, :n1]
    row = ext[before1 : before1 + n1]
    ext4 = lanes[0]
    sums4 = lanes[1]
    in_lanes = row_view(ext4, (), LANES * before1, LANES * (before1 + n1))
    n_seg1 = row_flags.size
    one = (ext, n1, K1, size1, divide1, row_view(out, (o, a), 0, n1), row_flags, sums, stream)
    four = (ext4, n1, K1, size1, out, o, a, sums4, stream)
    steps = (src, o, source0, a, size0, divide0, acc, in_lanes)
    ready = _sweep_found(helpers, missing, one) and _sweep_lanes_found(helpers, missing, four)
    if not (ready and _step_lanes_found(helpers, missing, steps)):
        return False
    row_flags[:] = False
    bad = False
    start_sums(src, o, source0, a, size0, cval, acc, 0, n1)
    i = a
    while i < a + m:
        if not divide1 and i > a and i + LANES <= a + m and rows_inside(source0, i, size0):
            _call_step_lanes(helpers, missing, (src, o, source0, i, size0, divide0, acc, in_lanes))
            fill_border(ext4, source1, before1, n1, cval, LANES)
            for r in range(LANES):
                if i + LANES + r < a + m:
                    j_next = source0[i + size0 + LANES - 1 + r]
                    if j_next >= 0:
                        prefetch(src[o, j_next])
            if _call_sweep_lanes(helpers, missing, (ext4, n1, K1, size1, out, o, i, sums4, stream)):
                bad = True
            i += LANES
            continue
        if i == a:
            means_of(acc, size0, divide0, row)
        else:
            step_sums(src, o, source0, i, size0, cval, divide0, acc, 0, n1, row)
        fill_border(ext, source1, before1, n1, cval, 1)
        if i + 1 < a + m:
            j_next = source0[i + size0]
            if j_next >= 0:
                prefetch(src[o, j_next])
        dst = row_view(out, (o, i), 0, n1)
        _call_sweep(helpers, missing, (ext, n1, K1, size1, divide1, dst, row_flags, sums, stream))
        for q in range(n_seg1):
            bad = bad or row_flags[q]
        i += 1
    return bad or any_nonfinite(acc)


_call_last_two_rows = helper_call(last_two_rows)


def _last_two_axes_worker(worker, state):
    """Worker ``worker``'s tasks of :func:`last_two_axes` (``_workers``)."""
    (
        src,
        source0,
        size0,
        K0,
        source1,
        before1,
        size1,
        K1,
        cval,
        divide0,
        divide1,
        out,
        flags,
        stream,
        helpers,
        missing,
        queue,
        n_seg,
        n_tasks,
    ) = state
    n0, n1 = src.shape[1], src.shape[2]
    buffers = _buffer((3, n1 + size1 - 1), np.float64)
    lanes = _buffer((2, LANES * (n1 + size1 - 1)), np.float64)
    row_flags = _buffer((n1 + K1 - 1) // K1, np.bool_)
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        o = task // n_seg
        s = task - o * n_seg
        a = s * K0
        flags[o, s] = _call_last_two_rows(
            helpers,
            missing,
            (
                src,
                o,
                a,
                _imin(K0, n0 - a),
                source0,
                size0,
                source1,
                before1,
                size1,
                K1,
                cval,
                divide0,
                divide1,
                out,
                stream,
                buffers,
                lanes,
                row_flags,
                helpers,
                missing,
            ),
        )
        task = _next_task(queue, worker, n_tasks)


_last_two_axes_worker = worker_helper(_last_two_axes_worker)
_run_last_two_axes = worker_launch(_last_two_axes_worker)


def _last_two_axes(
    src,
    source0,
    size0,
    K0,
    source1,
    before1,
    size1,
    K1,
    cval,
    divide0,
    divide1,
    out,
    flags,
    stream,
    helpers,
    missing,
):
    """Axis 1, then axis 2 of the 3-D ``src`` (outer, n0, n1) into ``out``, as
    :func:`middle_axis` (into float64) then :func:`last_axis` compute them.

    A task is one segment of rows along axis 1 of one plane: its running sums
    advance over the whole width, four rows at a time into four interleaved extended
    lines that :func:`sweep_lanes` then runs along axis 2 together (a row at a time into
    the extended line of :func:`sweep` where :func:`last_two_rows` says), so the
    intermediate image never goes through memory. ``flags`` (outer, segments)
    marks tasks where a sum ended non-finite. Where ``stream``, output rows are written
    past the caches (``_streaming``). A task's work is :func:`last_two_rows`, called by
    address (``helpers``, ``missing``: ``_helper_calls``), and the workers are
    :func:`_last_two_axes_worker`.
    """
    n_outer, n0, _ = src.shape
    n_seg = (n0 + K0 - 1) // K0
    n_tasks = n_outer * n_seg
    queue = _task_queue(n_tasks)
    state = (
        src,
        source0,
        size0,
        K0,
        source1,
        before1,
        size1,
        K1,
        cval,
        divide0,
        divide1,
        out,
        flags,
        stream,
        helpers,
        missing,
        queue,
        n_seg,
        n_tasks,
    )
    _run_last_two_axes(helpers, missing, queue, state)


last_two_axes = _Kernel(_last_two_axes, 11, calls_helper=True, reads_any=True, jit=_jit)
