"""CPU engine: the host side of the Numba kernels in ``_cpu_kernels``.

Each function below turns backend-neutral taps into the arrays a kernel
reads and calls it (``run`` serialises calls where Numba's threading layer is
not thread-safe). ``_engine.Engine`` documents the interface; the CUDA engine
(``_cuda``) implements the same one.

This module imports Numba and is imported on first use only (``_backend``).
"""

import contextlib
import functools
import importlib
import math
import os
import sys
import threading
import time

import numba
import numpy as np
from numba.core.dispatcher import Dispatcher

from . import _helper_calls, _scratch, _validation
from ._boundary import CONSTANT
from ._cpu_kernels import MAGNITUDE, ROWS_PER_TASK, SUM, _Kernel, kernel_input, load_for, reads_as_is
from ._lowering import (
    PreparedArrays,
    as_type,
    depthwise_taps,
    edge_operator_3x3,
    pack_taps,
    shared_taps,
    symmetry,
)
from ._tiers import TieredKernel

name = "cpu"
# Passes along an axis with at most this many samples after it (an RGB image's colours) run
# faster on a copy with those samples in front, copies included: 2.5-5x with two to four
# samples (one pass over a 2048 x 1024 x 4 float32 image), about even with eight.
narrow_inner = 4

# Kernel arguments derived from a plan's taps, kept for the plan's next call.
_prepared = PreparedArrays()

# --------------------------------------------------------------------------
# Serialising parallel calls where the threading layer is not thread-safe
# --------------------------------------------------------------------------

_layer_lock = threading.Lock()
_layer_checked = False
_serialise = True


def _after_fork_in_child():
    """A forked child gets locks of its own: another thread of the parent may have held
    one (in a call) when it forked, and no thread of the child would release it."""
    global _layer_lock, _fused_lock
    _layer_lock = threading.Lock()
    _fused_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# Calls of less work than this (input elements times the taps each output reads, about
# the multiply-adds) run their kernel on the calling thread alone: waking sleeping worker
# threads (after a pause, or under OMP_WAIT_POLICY=PASSIVE: SLEEPING_SERIAL_FACTOR) costs
# tens of microseconds, more than a second thread saves there, and on a busy machine a
# parallel region can wait milliseconds for threads that have no work. Measured on 2 cores,
# back to back with the default wait policy: a 3x3 edge magnitude (10 taps an output) gains
# from a second thread from about 160-224² on (1.5x at 256²), a 15-tap separable filter
# (30 taps) from about 100².
SERIAL_WORK = 1 << 18
# Taps assumed for kernels whose caller does not say: serial below 32768 elements.
DEFAULT_TAPS = 8
# A call after a pause (no kernel call for IDLE_SECONDS) of up to IDLE_SERIAL_FACTOR times
# SERIAL_WORK (about 2 ms of work on one thread) runs on the calling thread too: the workers
# have gone to sleep, and waking them can cost more than the whole call. Measured on 2 cores
# with Numba's OpenMP layer and its default wait policy, calls 50 ms apart: a 256² Sobel took
# 5.8 ms in parallel against 0.18 ms on one thread, a 512² Gaussian 5.8 against 0.74 ms; at
# 10 ms apart the two were even. Back to back the parallel call wins (0.020 ms against
# 0.033 ms for the Sobel): the calls of a loop after its first take the threads.
IDLE_SECONDS = 0.005
IDLE_SERIAL_FACTOR = 128
# Where the worker threads sleep as soon as a parallel region ends (Numba's OpenMP layer
# under OMP_WAIT_POLICY=PASSIVE, as PyTorch users and benchmarks often set it), every
# parallel call pays their wake-up, 20-80 µs on 2 cores, back to back as after a pause:
# calls up to SLEEPING_SERIAL_FACTOR times SERIAL_WORK run on the calling thread. Measured
# back to back on 2 cores under PASSIVE, one thread against two: a 3x3 edge magnitude 37
# against 43 µs at 256², 68 against 73 µs at 384², 161 against 123 µs at 640²; a 15-tap
# separable filter 56 against 60 µs at 192², 82 against 72 µs at 256².
SLEEPING_SERIAL_FACTOR = 6
# SLEEPING_SERIAL_FACTOR where the workers sleep, else 1; known once the threading layer runs.
_serial_factor = None
# When the last kernel call of this process ended (time.perf_counter).
_last_call = 0.0


def _thread_count_controls():
    """Numba's per-thread ``(get, set)`` of the thread count, as cheap as they come.

    The C entry points skip ``numba.set_num_threads``'s checks (a few µs per
    call); they exist once the threading layer has started.
    """
    numba.get_num_threads()  # starts the threading layer
    from numba.np.ufunc import parallel

    get = getattr(parallel, "_get_num_threads", None)
    set_ = getattr(parallel, "_set_num_threads", None)
    if get is None or set_ is None:  # another Numba: the public, checked functions
        return numba.get_num_threads, numba.set_num_threads
    return get, set_


_thread_controls = None

# Kernels called in this process: the first call of each loads its code by signature
# (``_cpu_kernels.load_for``), which spares the scan of every installed package's
# Numba entry points that a dispatcher's own first call makes.
_loaded = set()


def _always_serial(work):
    """Whether a call of ``work`` (input elements times taps) runs on the calling thread
    whenever it comes (``SERIAL_WORK``; ``SLEEPING_SERIAL_FACTOR`` times more where the
    worker threads sleep between calls)."""
    if work < SERIAL_WORK:
        return True
    return work < SERIAL_WORK * _sleeping_factor()


def _sleeping_factor():
    global _serial_factor
    if _serial_factor is None:
        numba.get_num_threads()  # starts the threading layer
        sleeping = workers_sleep(numba.threading_layer(), os.environ)
        _serial_factor = SLEEPING_SERIAL_FACTOR if sleeping else 1
    return _serial_factor


def workers_sleep(layer, environ):
    """Whether Numba's threading ``layer`` puts its workers to sleep as soon as a parallel
    region ends, with the environment ``environ``: OpenMP told to (``OMP_WAIT_POLICY=PASSIVE``).
    Its default policy, and TBB's, spin a while first; the back-to-back calls of a loop find
    them awake."""
    return layer == "omp" and environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def _runs_serially(work):
    """Whether a call of ``work`` (input elements times taps) runs on the calling thread:
    small work always (:func:`_always_serial`), work up to ``IDLE_SERIAL_FACTOR`` times more
    when no kernel call ended in the last ``IDLE_SECONDS`` (a call on its own, not one of a
    loop)."""
    if _always_serial(work):
        return True
    return work < SERIAL_WORK * IDLE_SERIAL_FACTOR and time.perf_counter() - _last_call > IDLE_SECONDS


def _call(kernel, args, taps, takes_threads=False):
    """Call ``kernel``; on one thread when its work (``args[0]``'s size times ``taps``) is small
    (``_runs_serially``).

    A kernel that ``takes_threads`` (``_Kernel.takes_threads``) gets the number of threads
    to use as its last argument (0: as many as set) and limits itself
    (``_cpu_kernels._limit_threads``); the others are limited here.
    """
    global _last_call
    if kernel not in _loaded:
        if isinstance(kernel, Dispatcher):  # (tests may call a wrapper instead)
            load_for(kernel, (*args, 0) if takes_threads else args)
        _loaded.add(kernel)
    serial = _runs_serially(args[0].size * taps)
    try:
        return _run_on_threads(kernel, args, serial, takes_threads)
    finally:
        _last_call = time.perf_counter()


def _run_on_threads(kernel, args, serial, takes_threads):
    """``kernel(*args)`` on the calling thread alone (``serial``) or on every thread set."""
    global _thread_controls
    if takes_threads:
        return kernel(*args, 1 if serial else 0)
    if not serial:
        return kernel(*args)
    if _thread_controls is None:
        _thread_controls = _thread_count_controls()
    get, set_ = _thread_controls
    threads = get()
    if threads == 1:
        return kernel(*args)
    set_(1)
    try:
        return kernel(*args)
    finally:
        set_(threads)


# Images converted for a kernel by ``_cast_kernels.to_float`` (in parallel) from this many
# samples; NumPy converts smaller ones (no kernel to load or compile for a small call).
PARALLEL_CONVERSION = 1 << 18
# The pairs are compiled by the warm-up. uint8 is not among them: the kernels read it, and
# only constant-mode rows of mixed types convert it (``correlate_axis``, ``_run_separable_2d``).
PARALLEL_CONVERSIONS = tuple(
    (np.dtype(s), np.dtype(d))
    for s in (np.float32, np.float64, np.uint16, np.int16)
    for d in (np.float32, np.float64)
    if s != d
)
_PARALLEL_SOURCES = frozenset(s for s, _ in PARALLEL_CONVERSIONS)


def _convert(src, dtype, new=None):
    """A C-contiguous copy of the C-contiguous ``src`` as ``dtype``, in a new array or in
    ``new(shape, dtype)`` (a call's scratch array, ``_scratch``)."""
    small = src.size < PARALLEL_CONVERSION or src.dtype not in _PARALLEL_SOURCES
    if small and new is None:
        return np.ascontiguousarray(src, dtype=dtype)
    out = (new or np.empty)(src.shape, dtype)
    if small:
        np.copyto(out, src, casting="unsafe")  # NumPy's conversion, as np.ascontiguousarray's
    else:
        from ._cast_kernels import to_float

        to_float(src.reshape(-1), out.reshape(-1))
    return out


def run(kernel, *args, taps=DEFAULT_TAPS, calls_helper=False):
    """Call a parallel kernel, serialising calls if the threading layer needs it.

    Numba's ``workqueue`` layer (what loads where neither OpenMP nor TBB is
    available) aborts the process when two threads enter parallel code at
    once; ``omp`` and ``tbb`` are safe. The layer is known only after the
    first parallel call, which therefore always runs under the lock. A small
    call (``args[0]``'s size times ``taps``) runs on the calling thread alone
    (``SERIAL_WORK``). The input (``args[0]``) of a ``_cpu_kernels._Kernel`` is
    converted by ``kernel_input`` where its type or layout asks for it. A plain
    dispatcher that ``calls_helper`` by address (``_helper_calls``) gets the table of
    addresses and a one-element array for a missing key after ``args``, as a
    ``_Kernel`` does.
    """
    takes_threads = False
    if isinstance(args[0], np.ndarray) and not args[0].flags.writeable:
        args = (_as_writable(args[0]), *args[1:])
    if isinstance(kernel, (_Kernel, TieredKernel)):
        args = kernel.inputs(args, _convert)
        takes_threads, calls_helper = kernel.takes_threads, kernel.calls_helper
        kernel = kernel.dispatcher_for(args)
    if calls_helper:
        return _call_loading_helpers(_call_once, kernel, args, taps, takes_threads)
    return _call_once(kernel, args, taps, takes_threads)


class _Memory:
    """The memory of a read-only array, offered to NumPy as writable (see :func:`_as_writable`)."""

    def __init__(self, array):
        interface = dict(array.__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface
        self.array = array  # kept alive as long as the view


def _as_writable(array):
    """A kernel's read-only input (a memory-mapped file, a view NumPy marks read-only) as an
    array Numba types as writable, over the same memory: no copy.

    Numba compiles a kernel again for a read-only array: seconds after a warm-up that
    called with writable ones, and a second version of every kernel in the cache. The
    kernels never write their input (``args[0]``).
    """
    return np.asarray(_Memory(array))


def _call_loading_helpers(call, kernel, args, taps, takes_threads):
    """``call(kernel, args + (helpers, missing), ...)`` for a kernel that calls its task's
    helper by address (``_Kernel.calls_helper``): where it found no address for the helper
    (``missing``), it ran no task; the helper is then loaded and the kernel called again."""
    missing = np.zeros(1, np.int64)
    loaded = ()  # the keys loaded for this call (none, but on a process's first calls)
    while True:
        result = call(kernel, (*args, _helper_calls.table(), missing), taps, takes_threads)
        key = int(missing[0])
        if key == 0:
            return result
        if key < 0:  # a helper called by address called one it had not looked up first
            raise RuntimeError(f"{kernel}: a helper called a helper it had not looked up first")
        if key in loaded:  # loaded, yet not found: never call again
            raise RuntimeError(f"{kernel} did not find its helper ({key:016x}) in the table")
        _helper_calls.resolve(key)
        loaded += (key,)
        missing[0] = 0


def _call_once(kernel, args, taps, takes_threads):
    """``_call``, under the lock where the threading layer needs it (``run``)."""
    global _layer_checked, _serialise
    if _layer_checked and not _serialise:
        return _call(kernel, args, taps, takes_threads)
    with _layer_lock:
        result = _call(kernel, args, taps, takes_threads)
        if not _layer_checked and isinstance(kernel, Dispatcher):  # (not a twin in NumPy)
            _serialise = numba.threading_layer() == "workqueue" or bool(os.environ.get("SEPCONV_SERIALISE"))
            _layer_checked = True
    return result


# --------------------------------------------------------------------------
# The engine interface used by ``_passes`` and the public functions
# --------------------------------------------------------------------------


def empty(shape, dtype):
    return np.empty(shape, dtype)


def zeros(shape, dtype):
    return np.zeros(shape, dtype)


def scratch_arrays():
    """A call's intermediate arrays, reused from call to call (``_scratch``)."""
    return _scratch.scratch_arrays()


def _prepare_axis(offsets, weights, dtype):
    return as_type(offsets, np.int64), as_type(weights, dtype), symmetry(offsets, weights)


def correlate_axis(src, axis, offsets, weights, mode, cval, out):
    """1-D correlation of ``src`` along ``axis`` into ``out`` (same shape)."""
    if out.size == 0:
        return
    shape = src.shape
    n = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    outer = math.prod(shape[:axis])
    dtype = out.dtype
    off, w, sym = _prepared.get((offsets, weights), dtype, _prepare_axis, offsets, weights, dtype)
    c = dtype.type(cval)
    if inner == 1:
        lines = _tiered("correlate_lines")
        run(lines, src.reshape(outer, n), off, w, sym, mode, c, out.reshape(outer, n), ROWS_PER_TASK)
    else:
        if mode == CONSTANT and src.dtype != dtype:
            src = src.astype(dtype)  # the outside row holds cval, so rows share its type
        run(
            _tiered("correlate_rows"),
            src.reshape(outer, n, inner),
            off,
            w,
            sym,
            mode,
            c,
            out.reshape(outer, n, inner),
            ROWS_PER_TASK,
        )


def _prepare_separable_2d(cols, rows, pad_x, combine, accumulate, mode_y, mode_x, cval, divisor, dtype):
    """The kernel ``separable_2d`` runs for these taps, its arguments between the input and
    the output, whether it reports non-finite sums, and the taps an output reads: all a
    call with a cached plan needs, and whether the kernel is the 3x3 edge magnitude's."""
    taps = sum(o.size for o, _ in cols) + sum(o.size for o, _ in rows)
    edge = edge_operator_3x3(cols, rows) if combine == MAGNITUDE and not accumulate else None
    if edge is not None:
        gx, gy = edge
        arguments = (
            as_type(cols[gx][1], dtype),
            as_type(cols[gy][1], dtype),
            as_type(rows[gy][1], dtype),
            as_type(rows[gx][1], dtype),
            mode_y,
            mode_x,
            dtype.type(cval),
            dtype.type(pad_x[gx]),
            dtype.type(pad_x[gy]),
            dtype.type(1.0 / divisor),
        )
        return _tiered("edge_magnitude_3x3"), arguments, False, taps, True
    summed = combine == SUM and (len(cols) > 1 or bool(accumulate))
    arguments = (
        *pack_taps(cols, dtype),
        *pack_taps(rows, dtype),
        mode_y,
        mode_x,
        dtype.type(cval),
        as_type(pad_x, dtype),
        combine,
        dtype.type(1.0 / divisor),
        bool(accumulate),
    )
    return _fused_kernel(), arguments, summed, taps, False


# Kernels with a quick twin (``_tiers``): name -> ``module:name`` of the fast kernel and of its
# twin, in this package.
_TWINS = {
    "separable_2d": ("_separable_kernels:separable_2d_kernel", "_separable_quick:separable_2d_quick_kernel"),
    "correlate_lines": ("_line_kernels:correlate_lines", "_line_quick:correlate_lines_quick"),
    "correlate_rows": ("_line_kernels:correlate_rows", "_line_quick:correlate_rows_quick"),
    "correlate_2d": ("_direct_kernels:correlate_2d", "_direct_quick:correlate_2d_quick"),
    "edge_magnitude_3x3": ("_edge_kernels:edge_magnitude_3x3", "_edge_quick:edge_magnitude_3x3_quick"),
    "depthwise_2d": ("_depthwise_kernels:depthwise_2d", "_depthwise_quick:depthwise_2d_quick"),
    "depthwise_planar": ("_depthwise_kernels:depthwise_planar", "_depthwise_quick:depthwise_planar_quick"),
    "depthwise_passes": ("_depthwise_kernels:depthwise_passes_2d", "_depthwise_quick:depthwise_passes_quick"),
    "to_integer": ("_cast_kernels:to_integer_kernel", "_cast_kernels:to_integer_quick"),
    "uniform_middle_axis": ("_uniform_kernels:middle_axis", "_uniform_quick:middle_axis_quick"),
    "uniform_last_axis": ("_uniform_kernels:last_axis", "_uniform_quick:last_axis_quick"),
    "uniform_last_two_axes": ("_uniform_kernels:last_two_axes", "_uniform_quick:last_two_axes_quick"),
}
_twins = {}  # name -> its TieredKernel, once made
_twins_lock = threading.Lock()


def _tiered(name):
    """The kernel ``name`` of :data:`_TWINS` in two tiers (``_tiers``): its quick twin runs while
    the fast kernel compiles in the background. One for every thread."""
    kernel = _twins.get(name)
    if kernel is None:
        with _twins_lock:
            kernel = _twins.get(name)
            if kernel is None:
                fast, quick = (f"{__package__}.{twin}" for twin in _TWINS[name])
                kernel = TieredKernel(_kernel_named(fast), _kernel_named(quick), fast)
                _twins[name] = kernel
    return kernel


def _kernel_named(name):
    """The kernel ``module:attribute``."""
    module, attribute = name.split(":")
    return getattr(importlib.import_module(module), attribute)


def _fused_kernel():
    """The fused separable kernel, in two tiers (:func:`_tiered`)."""
    return _tiered("separable_2d")


# What ``separable_2d_kernel`` gets for its flags where it writes none (one term, or a magnitude).
_NO_FLAGS = np.zeros(1, np.uint8)

# Rows of a task of ``separable_2d_kernel`` in images of at least ``_TALL`` rows: a task
# reads the rows its taps reach above and below its own (and converts them into a ring, for
# uint8 input, or copies them, for rows 4 KiB apart) once per task, so a tall image takes
# fewer, longer tasks (32 or more a plane).
_TALL = 1024
_TALL_ROWS_PER_TASK = 32


def _fused_rows_per_task(h):
    return _TALL_ROWS_PER_TASK if h >= _TALL else ROWS_PER_TASK


def separable_2d(src, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, out):
    """Fused separable terms over the last two axes of ``src`` (any leading axes)."""
    prepared = _prepared_separable_2d(
        cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, out.dtype
    )
    return _run_separable_2d(prepared, mode_y, out.dtype, src, out)


def bind_correlate_axis(axis_pass, dtype, src_dtype):
    """``call(src, out)``: ``correlate_axis`` of the ``_passes.AxisPass`` ``axis_pass`` on host
    arrays of ``src_dtype``, its taps prepared once; None where the kernel reads the input
    converted (another type).

    As :func:`bind_separable_2d`: the call goes straight to the kernel, and inputs that are not
    C-contiguous, or read-only, take ``run``'s path.
    """
    dtype, src_dtype = np.dtype(dtype), np.dtype(src_dtype)
    if not reads_as_is(src_dtype, dtype) or (axis_pass.mode == CONSTANT and src_dtype != dtype):
        return None
    p = axis_pass
    off, w, sym = _prepared.get((p.offsets, p.weights), dtype, _prepare_axis, p.offsets, p.weights, dtype)
    c = dtype.type(p.cval)
    lines, rows = _tiered("correlate_lines"), _tiered("correlate_rows")

    def call(src, out):
        if not out.size or _serialise or not (src.flags.c_contiguous and src.flags.writeable):
            return correlate_axis(src, p.axis, p.offsets, p.weights, p.mode, p.cval, out)
        shape = src.shape
        n = shape[p.axis]
        inner = math.prod(shape[p.axis + 1 :])
        if inner == 1:
            lined = (src.reshape(-1, n), off, w, sym, p.mode, c, out.reshape(-1, n), ROWS_PER_TASK)
            return _call_loading_helpers(_call, lines.dispatcher_for(lined), lined, DEFAULT_TAPS, False)
        outer = math.prod(shape[: p.axis])
        args = (
            src.reshape(outer, n, inner),
            off,
            w,
            sym,
            p.mode,
            c,
            out.reshape(outer, n, inner),
            ROWS_PER_TASK,
        )
        return _call_loading_helpers(_call, rows.dispatcher_for(args), args, DEFAULT_TAPS, False)

    return call


def bind_separable_2d(fused, dtype, src_dtype):
    """``call(src, out)``: ``separable_2d`` of the fused pass ``fused`` on host arrays of
    ``src_dtype``, its arguments ready.

    The call goes straight to the kernel (``run``'s steps done once here): a small call
    spends its time in the kernel. Inputs that the kernel reads converted (another type,
    or not C-contiguous) take ``run``'s path.
    """
    dtype, src_dtype = np.dtype(dtype), np.dtype(src_dtype)
    prepared = _prepared_separable_2d(*fused.arguments(), dtype)
    kernel, arguments, summed, taps, edge = prepared
    general = functools.partial(_run_separable_2d, prepared, fused.mode_y, dtype)
    if not reads_as_is(src_dtype, dtype) or (edge and fused.mode_y == CONSTANT and src_dtype != dtype):
        return general

    def call(src, out):  # both kernels take their thread count (_Kernel.takes_threads)
        size = out.size
        if not size or _serialise or not (src.flags.c_contiguous and src.flags.writeable):
            return general(src, out)  # (a read-only input: typed as writable there, ``run``)
        h, w = src.shape[-2:]
        planes = (size // (h * w), h, w)
        if edge:
            args = (src.reshape(planes), *arguments, out.reshape(planes), ROWS_PER_TASK)
            _call_loading_helpers(_call, kernel.dispatcher_for(args), args, taps, True)
            return None
        block = _fused_rows_per_task(h)
        nonfinite = np.zeros(planes[0] * -(-h // block), np.uint8) if summed else _NO_FLAGS
        args = (src.reshape(planes), *arguments, out.reshape(planes), block, nonfinite)
        _call_loading_helpers(_call, kernel.dispatcher_for(args), args, taps, True)
        return not nonfinite.any() if summed else None

    return call


def _prepared_separable_2d(cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, dtype):
    return _prepared.get(
        (cols, rows, pad_x),
        (dtype, combine, accumulate, mode_y, mode_x, cval, divisor),
        _prepare_separable_2d,
        cols,
        rows,
        pad_x,
        combine,
        accumulate,
        mode_y,
        mode_x,
        cval,
        divisor,
        dtype,
    )


def _run_separable_2d(prepared, mode_y, dtype, src, out):
    """Run ``_prepare_separable_2d``'s kernel on ``src`` into ``out``: whether the sum came
    out finite, or None where the kernel does not tell."""
    if out.size == 0:
        return None
    kernel, arguments, summed, taps, edge = prepared
    h, w = src.shape[-2:]
    if edge:
        if mode_y == CONSTANT and src.dtype != dtype:
            src = src.astype(dtype)  # rows outside hold cval, so rows share its type
        run(kernel, src.reshape(-1, h, w), *arguments, out.reshape(-1, h, w), ROWS_PER_TASK, taps=taps)
        return None
    planes = src.reshape(-1, h, w)
    block = _fused_rows_per_task(h)
    nonfinite = np.zeros(planes.shape[0] * -(-h // block), np.uint8) if summed else _NO_FLAGS
    run(kernel, planes, *arguments, out.reshape(-1, h, w), block, nonfinite, taps=taps)
    return not nonfinite.any() if summed else None


def combine_into(out, values, squares, first):
    """``out (+)= values`` or ``values ** 2``."""
    if squares:
        np.multiply(values, values, out=values)
    if first:
        np.copyto(out, values)
    else:
        np.add(out, values, out=out)


def all_finite(values):
    """Whether every value is finite (one summing pass, no temporary)."""
    return bool(np.isfinite(np.sum(values)))


def finish_magnitude(out, divisor):
    np.sqrt(out, out=out)
    out /= out.dtype.type(divisor)


def _prepare_planes(kernel, top, left, dtype):
    """``correlate_planes``' taps: the offsets and weights of ``kernel``'s non-zero entries."""
    ys, xs = np.nonzero(kernel)  # at least one (an all-zero kernel gives zeros: DirectProgram)
    return (ys - top).astype(np.int64), (xs - left).astype(np.int64), as_type(kernel[ys, xs], dtype)


def correlate_planes(src, kernel, top, left, mode_y, mode_x, cval, out):
    """Direct 2-D correlation over the last two axes, zero weights left out."""
    if out.size == 0:
        return
    h, w = src.shape[-2:]
    dtype = out.dtype
    tap_y, tap_x, tap_w = _prepared.get(
        (kernel,), (dtype, top, left), _prepare_planes, kernel, top, left, dtype
    )
    run(
        _tiered("correlate_2d"),
        src.reshape(-1, h, w),
        tap_y,
        tap_x,
        tap_w,
        mode_y,
        mode_x,
        dtype.type(cval),
        out.reshape(-1, h, w),
        ROWS_PER_TASK,
    )


# Values per chunk of a channel-last row: the taps' tiled weights and the source
# windows of one chunk stay in the L2 cache (measured best between 1024 and 4096).
CHUNK_VALUES = 2048


def _chunk_and_tiles(weights, n_out):
    """Chunk width in pixels and the (taps, C*M) weights tiled over it."""
    chunk = max(1, CHUNK_VALUES // n_out)
    return chunk, np.ascontiguousarray(np.tile(weights, (1, chunk)))


# Values of each tap's weights tiled for ``depthwise_2d`` (rounded up to whole pixels):
# 9 taps of a 3x3 kernel then take 18 KiB (float32), in the L1 cache.
TILE_VALUES = 512


# Kernels of at least this many taps run planar (``depthwise_planar``): their taps then
# multiply by scalar weights, which pays for gathering the channels apart and back.
PLANAR_TAPS = 20
# Values of each task's planar source rows (``depthwise_planar``): within the L2 cache.
PLANAR_VALUES = 1 << 19
PLANAR_ROWS = 16


def _prepare_depthwise(kernels, dtype):
    """``depthwise``'s tables for ``kernels``: planar columns and their density, or the taps
    with their weights tiled over a chunk of pixels (see ``TILE_VALUES``)."""
    if kernels.shape[1] * kernels.shape[2] >= PLANAR_TAPS:
        columns = as_type(np.swapaxes(kernels, 1, 2), dtype)  # (C*M, kw, kh)
        return columns, np.all(columns != 0, axis=2)
    tap_y, tap_x, tap_w, has_zero = depthwise_taps(kernels, dtype)
    n_out = tap_w.shape[1]
    tiles = np.ascontiguousarray(np.tile(tap_w, (1, -(-TILE_VALUES // n_out))))
    return tap_y, tap_x, tiles, has_zero


def depthwise(src, kernels, multiplier, mode_y, mode_x, cval, out, row_start=0):
    """Per-channel correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M)."""
    if out.size == 0:
        return
    n_out, kh, kw = kernels.shape
    tables = _prepared.get((kernels,), out.dtype, _prepare_depthwise, kernels, out.dtype)
    if kh * kw >= PLANAR_TAPS:
        columns, dense = tables
        rows = min(PLANAR_ROWS, out.shape[1]) + kh - 1
        chunk = max(64, PLANAR_VALUES // (n_out * rows) - (kw - 1))
        run(
            _tiered("depthwise_planar"),
            src,
            columns,
            dense,
            kh // 2,
            kw // 2,
            multiplier,
            mode_y,
            mode_x,
            out.dtype.type(cval),
            row_start,
            out,
            min(chunk, src.shape[2]),
            PLANAR_ROWS,
        )
        return
    run(
        _tiered("depthwise_2d"),
        src,
        *tables,
        multiplier,
        mode_y,
        mode_x,
        out.dtype.type(cval),
        row_start,
        out,
        max(1, CHUNK_VALUES // n_out),
        ROWS_PER_TASK,
    )


#: fewer pixels than this go to BLAS padded to this many (see :func:`pointwise`)
_FEWEST_BLAS_ROWS = 64


def pointwise(src, weights, bias, out):
    """``out = src @ weights.T + bias`` over the last axis, through BLAS.

    BLAS rounds a pixel's sum by the shape of the product it is in. NumPy gives a product of
    one row to the matrix-vector routine, which rounds otherwise than the matrix product of
    the same pixel among others: fewer than ``_FEWEST_BLAS_ROWS`` pixels (a dask block of
    one pixel, say) are padded to that many. Not covered: a single output channel (always the
    matrix-vector routine, whose rounding depends on where a pixel falls in the call) and 16
    or more input channels (small products take paths of their own), where a dask block's
    pixels may differ from the NumPy call's in the last bit.
    """
    weights = weights.T.astype(out.dtype, copy=False)
    rows, columns = src.shape[0], weights.shape[1]
    if rows < _FEWEST_BLAS_ROWS and columns > 1:
        padded = np.concatenate([src, np.zeros((_FEWEST_BLAS_ROWS - rows, src.shape[1]), src.dtype)])
        out[:] = np.matmul(padded, weights)[:rows]
    else:
        np.matmul(src, weights, out=out)
    if bias is not None:
        out += bias.astype(out.dtype, copy=False)


def to_kernel_input(image, dtype, preserve_range):
    return _validation.to_kernel_input(np.asarray(image), dtype, preserve_range)


def for_kernels(src, dtype, new=None):
    """``src`` of a type the kernels of a ``dtype`` computation read (``kernel_input``); a
    converted copy goes to ``new(shape, dtype)`` where given (a call's scratch arrays, whose
    memory later calls reuse instead of faulting in new pages)."""
    if new is None:
        return kernel_input(src, dtype, _convert)
    return kernel_input(src, dtype, lambda s, d: _convert(s, d, new))


def channels_first(arr, channel_axis, out=None):
    if out is None:
        return np.ascontiguousarray(np.moveaxis(arr, channel_axis, 0))
    np.copyto(out, np.moveaxis(arr, channel_axis, 0))
    return out


def channels_back(arr, channel_axis, out=None):
    if out is None:
        return np.moveaxis(arr, 0, channel_axis)
    # a channel at a time: NumPy would copy the whole in out's order, reading across channels
    before = (slice(None),) * channel_axis
    for c in range(arr.shape[0]):
        np.copyto(out[before + (c,)], arr[c])
    return out


def apply_mask(out, mask):
    """``out *= mask`` for a mask broadcastable to ``out``."""
    out *= mask
    return out


def copy_into(out, result):
    """Fill the caller's array ``out`` with ``result`` (same shape)."""
    np.copyto(out, result, casting="unsafe")


def writable_target(out, src, dtype):
    """``out`` when the kernels can write into it: a writable C-contiguous NumPy array of
    the result's shape and ``dtype`` that shares no memory with the kernel input."""
    if (
        type(out) is np.ndarray
        and out.dtype == dtype
        and out.shape == src.shape
        and out.flags.c_contiguous
        and out.flags.writeable
        and not np.may_share_memory(out, src)
    ):
        return out
    return None


def depthwise_separable(src, op, weights, bias, out):
    """Depthwise op then pointwise mixing of ``src`` (P, H, W, C) into ``out`` (P, H, W, C_out).

    Computed in bands of rows through a bounded buffer, so the depthwise
    result is never held whole. Where the depthwise kernel may run on several
    threads (not ``_always_serial``), the bands' matrix products run on the calling
    thread (``_blas_threads``): the BLAS library's threads would otherwise take the
    cores from the kernels' threads, and these from them, band after band. A small
    call, whose kernel runs on the calling thread, skips the limit and its cost.
    """
    from ._blas_threads import one_blas_thread

    n_planes, h, width, _ = src.shape
    n_mid = op.flat.shape[0]
    n_out = out.shape[3]
    band = max(1, min(h, BAND_ELEMENTS // max(1, width * n_mid)))
    mid = empty((1, band, width, n_mid), out.dtype)
    serial = _always_serial(src[0].size * DEFAULT_TAPS)  # a plane is the kernel's input
    with contextlib.nullcontext() if serial else one_blas_thread():
        for p in range(n_planes):
            for row in range(0, h, band):
                rows = min(band, h - row)
                part = mid[:, :rows]
                op.run(_this_engine, src[p : p + 1], part, row_start=row)
                pointwise(part.reshape(-1, n_mid), weights, bias, out[p, row : row + rows].reshape(-1, n_out))


# Depthwise results per band of ``depthwise_separable``, in elements (~4 MB of float32).
BAND_ELEMENTS = 1 << 20


def cast_output(result, dtype, output):
    """scipy.ndimage's output handling: fill ``output`` if it is an array, else cast (to
    integer types in one parallel pass, ``_cast_kernels``)."""
    from ._cast_kernels import to_integer
    from ._casting import cast_output as cast

    return cast(result, dtype, output, integer_kernel=to_integer)


def depthwise_passes(src, columns, rows, multiplier, mode_y, mode_x, cval, pad_x, out, row_start=0):
    """Per-channel rank-1 kernels ``outer(columns[k], rows[k])`` as two 1-D passes."""
    if out.size == 0:
        return
    dtype = out.dtype
    chunk, col_off, col_tiles, col_zero, row_off, row_tiles, row_zero, pads = _prepared.get(
        (columns, rows, pad_x), dtype, _prepare_depthwise_passes, columns, rows, pad_x, dtype
    )
    run(
        _tiered("depthwise_passes"),
        src,
        col_off,
        col_tiles,
        col_zero,
        row_off,
        row_tiles,
        row_zero,
        multiplier,
        mode_y,
        mode_x,
        dtype.type(cval),
        pads,
        row_start,
        out,
        chunk,
        ROWS_PER_TASK,
    )


def _prepare_depthwise_passes(columns, rows, pad_x, dtype):
    """``depthwise_passes``' tables: both passes' taps, weights tiled over a chunk, pads."""
    col_off, col_w, col_zero = shared_taps(columns, dtype)
    row_off, row_w, row_zero = shared_taps(rows, dtype)
    chunk, col_tiles = _chunk_and_tiles(col_w, col_w.shape[1])
    _, row_tiles = _chunk_and_tiles(row_w, row_w.shape[1])
    return chunk, col_off, col_tiles, col_zero, row_off, row_tiles, row_zero, as_type(pad_x, dtype)


def channels_last(arr, channel_axis):
    """A C-contiguous (planes, H, W, C) array with the channel axis moved last."""
    moved = np.moveaxis(arr, channel_axis, -1)
    planes = math.prod(moved.shape[:-3])
    return np.ascontiguousarray(moved.reshape((planes,) + moved.shape[-3:]))


def restore_channels(out, shape, channel_axis):
    """Undo ``channels_last`` for an output of ``shape`` (channel axis last) ."""
    return np.moveaxis(out.reshape(shape), -1, channel_axis)


_this_engine = sys.modules[__name__]  # what ``DepthwiseOp.run`` calls back


def combine_planes(values, sources, weights, pad, combine, inv_divisor, accumulate, out):
    """A fused term's horizontal pass and combination along the first axis
    (``_narrow_kernels``)."""
    from ._narrow_kernels import combine_planes as kernel

    kernel(values, sources, weights, pad, combine, inv_divisor, accumulate, out)


def vertical_along_rows(src, offsets, weights, mode, cval, out):
    """A fused term's vertical pass along the rows of ``src`` (``_narrow_kernels``)."""
    from ._narrow_kernels import vertical_along_rows as kernel

    kernel(src, offsets, weights, mode, cval, out)
