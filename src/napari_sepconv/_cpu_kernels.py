"""CPU kernels: Numba ``@njit(parallel=True)`` loops over rows and planes.

Every kernel reads an input of any dtype in ``_validation.KERNEL_INPUT_TYPES``
and accumulates in the dtype of its output (float32 or float64). Taps are given
as ``(offsets, weights)``: output sample ``i`` collects ``weights[t]`` times the
input at ``i + offsets[t]``, the border mode choosing the sample where that
falls outside. Filters that promise a full n-D kernel leave zero taps out, as
``scipy.ndimage.correlate`` leaves zero weights out of its footprint, so NaN
spreads exactly as it does there.

Inner loops run over contiguous slices (``seg = buf[k:k + n]``, then
``seg[j]``), which Numba vectorises; an index such as ``buf[j + k]`` would not.
Parallel work is split into row blocks whose size never changes the
arithmetic, so a result does not depend on how the image is tiled: rows that
the kernels compute in pairs get exactly the operations of a row computed
alone. Multiply-adds are fused one by one (``_fmuladd``, never by letting LLVM
contract whole functions, whose choices differ between code paths), so they
round alike in every path. Tests crop and shift images and compare bit for bit.

Depthwise kernels of many taps run planar (``depthwise_planar``): each
channel is gathered into rows of its own, so that every tap multiplies by a
scalar weight, and gathered back to channel-last at the end.

Compile time: a kernel is compiled for input of its output's float type and
uint8 input, four input and output pairs (``kernel_input`` converts other
types first, with the values the kernel's own conversion gives), helpers once per
argument type (``_HelperDispatcher``), and the 3x3 edge, direct 2-D and
depthwise kernels as a thin parallel loop over one serial helper holding a
task's work, which the parallel lowering then does not compile a second time.
(The 1-D and fused separable kernels compile faster as one parallel loop: Numba
optimises a callee's code again inside each caller.) Machine code is cached in
``warmup.cache_dir()``, a folder per version.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import contextlib
import os

import llvmlite.ir
import numba
import numba.extending
import numpy as np
from numba import prange
from numba.core import cgutils, types
from numba.core.caching import (
    CompileResultCacheImpl,
    FunctionCache,
    _CacheLocator,
    _SourceFileBackedLocatorMixin,
)
from numba.core.imputils import impl_ret_borrowed
from numba.core.registry import CPUDispatcher
from numba.core.runtime import rtsys

from ._boundary import CONSTANT, source_index
from .warmup import cache_dir

_source_index = source_index()


# Combine codes of ``separable_2d``.
SUM = 0
SUM_SQUARES = 1
MAGNITUDE = 2

ROWS_PER_TASK = 8


# --------------------------------------------------------------------------
# Compilation: one versioned on-disk cache, helpers compiled once per type
# --------------------------------------------------------------------------


class _VersionedLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
    """Numba's cache files of these kernels go to ``warmup.cache_dir()``.

    That folder is named after the package version and a hash of the kernel
    sources, so a cache written by one version is never read by another.
    ``from_function`` returns ``None`` where the folder cannot be written.
    """

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = cache_dir()

    def get_cache_path(self):
        return self._cache_path


class _VersionedCacheImpl(CompileResultCacheImpl):
    _locator_classes = [_VersionedLocator]


class _VersionedCache(FunctionCache):
    """Numba's function cache in the versioned folder, saved under a file lock.

    Numba saves an entry by reading the index, adding to it and writing it
    back: two processes compiling other types of one kernel at once (the
    warm-up's workers, parallel test workers) could otherwise lose an entry or
    write two entries to one data file.
    """

    _impl_class = _VersionedCacheImpl

    def load_overload(self, sig, target_context):
        """A cached kernel, rebuilt without refreshing ``target_context`` first.

        Numba's own ``load_overload`` refreshes the context: it imports and
        registers every implementation Numba has (0.3-0.4 s, most of a first
        call from a warm cache), which compiling needs and rebuilding compiled
        code does not. Only the runtime the kernels allocate with must be up; a
        compile refreshes the context itself.
        """
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    def save_overload(self, sig, data):
        with _locked(os.path.join(self._cache_path, ".lock")):
            super().save_overload(sig, data)


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` between processes (none where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: Numba's own write-then-rename only
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _enable_cache(dispatcher):
    """Cache ``dispatcher`` in the versioned folder; without a writable one, compile per process."""
    try:
        dispatcher._cache = _VersionedCache(dispatcher.py_func)
    except RuntimeError:  # no writable cache location (read-only home, no NUMBA_CACHE_DIR)
        pass
    return dispatcher


class _HelperDispatcher(CPUDispatcher):
    """A dispatcher that compiles one version per argument *type*, never per literal value.

    Numba types a constant argument (``0``, ``False``) as a literal, and the
    parallel lowering types a kernel's body again with other literals: each
    would compile the helper once more. Unliteral types keep it to one
    compile per signature.
    """

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)


def _helper(func, **options):
    """A helper the kernels call: compiled once per signature (not inlined, which would
    multiply the kernels' compile time) and cached like them.

    Helpers are compiled without reference counting: the many row views they
    make would each take an atomic count, which both threads contend for. So a
    helper allocates nothing; the kernel allocates its task's buffers and
    holds every array a helper sees.
    """
    return _enable_cache(
        _HelperDispatcher(
            func,
            targetoptions={
                "nopython": True,
                "nogil": True,
                # called from kernels only: no Python or C entry point to build
                "no_cpython_wrapper": True,
                "no_cfunc_wrapper": True,
                "_nrt": False,
                **options,
            },
        )
    )


def _jit(func):
    """``@njit(parallel=True)`` with the versioned on-disk cache where one can be written."""
    return _enable_cache(numba.njit(parallel=True, nogil=True)(func))


def reads_as_is(dtype, out_dtype):
    """Whether a kernel with output ``out_dtype`` reads ``dtype`` as it is (``kernel_input``)."""
    return dtype == out_dtype or dtype == np.uint8


def kernel_input(src, out_dtype, convert=None):
    """``src`` as a C-contiguous array of a type the kernels are compiled for.

    The kernels read the output's own float type and uint8 (the uint8 speed
    rows, and the uint8 images most scripts filter): a kernel is compiled for
    four input and output pairs, not six or more. Every other integer or float
    input becomes the output's type first, in one cast that rounds each sample
    once, as the kernel's own conversion would (64-bit integers to float32
    too: no detour through float64, whose double rounding could change a
    value). A non-contiguous view is copied, sparing a strided compile of every
    kernel. ``convert(src, dtype)``, where given, makes the converted copy of a
    contiguous image (the CPU engine's converts large ones in parallel).
    """
    dt = src.dtype
    out_dtype = np.dtype(out_dtype)
    if reads_as_is(dt, out_dtype):
        target = dt
    elif dt.kind in "iuf":
        target = out_dtype
    else:
        target = dt
    if target == dt and src.flags.c_contiguous:
        return src
    if convert is not None and target != dt and src.flags.c_contiguous:
        return convert(src, target)
    return np.ascontiguousarray(src, dtype=target)


class _Kernel:
    """A parallel kernel whose input ``inputs`` converts by ``kernel_input`` before a call.

    ``out_arg`` is the position of the output array, whose float type the
    input is converted for. The compiled dispatcher is ``dispatcher``.
    """

    def __init__(self, func, out_arg):
        self.dispatcher = _jit(func)
        self.out_arg = out_arg
        self.__name__ = func.__name__.lstrip("_")
        self.__doc__ = func.__doc__

    def inputs(self, args, convert=None):
        """The call's arguments with its input (``args[0]``) converted by ``kernel_input``
        (with ``convert``) where its type or layout asks for it (``_cpu.run`` calls
        ``dispatcher`` with them)."""
        src = args[0]
        out_dtype = args[self.out_arg].dtype
        if reads_as_is(src.dtype, out_dtype) and src.flags.c_contiguous:
            return args
        return (kernel_input(src, out_dtype, convert), *args[1:])


@numba.extending.intrinsic
def _fmuladd(typingctx, a, b, c):
    """``a * b + c`` of one float type, fused into one rounding where the CPU has FMA.

    LLVM's ``fmuladd``: unlike contracting a whole function's arithmetic, each
    call names exactly which product joins which sum, so every code path (paired
    or lone rows, vector body or remainder, any input type) rounds alike.
    """
    if not (isinstance(a, numba.types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        fn = builder.module.declare_intrinsic(
            "llvm.fmuladd", [ty], llvmlite.ir.FunctionType(ty, [ty, ty, ty])
        )
        return builder.call(fn, args)

    return a(a, b, c), codegen


@numba.extending.intrinsic
def _like(typingctx, value, like):
    """``value`` converted to the type of ``like`` (a sample to its accumulator's float type)."""

    def codegen(context, builder, signature, args):
        return context.cast(builder, args[0], signature.args[0], signature.return_type)

    return like(value, like), codegen


@numba.extending.intrinsic
def _buffer(typingctx, shape, like):
    """An uninitialised C-ordered array of ``shape`` (an integer or a tuple of them): a
    task's buffer, of the dtype of the array ``like`` or of the NumPy scalar type ``like``.

    The allocation is emitted in place, as ``np.empty`` allocates: a kernel calling
    ``np.empty`` instead is saved with references to Numba's array module (and, given a
    dtype object, its ufunc module), which loading it from the cache must then import
    (about 35 and 50 ms of a first call). Unlike ``np.empty`` it does not check the sizes:
    the kernels pass sizes they computed, never negative, and far from overflowing.
    """
    if isinstance(shape, types.Integer):
        ndim = 1
    elif isinstance(shape, types.BaseTuple) and all(isinstance(t, types.Integer) for t in shape):
        ndim = len(shape)
    else:
        return None
    if isinstance(like, types.Array):
        dtype = like.dtype
    elif isinstance(like, types.NumberClass):
        dtype = like.instance_type
    else:
        return None
    array_type = types.Array(dtype, ndim, "C")

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array, populate_array

        if ndim == 1:
            sizes = [context.cast(builder, args[0], signature.args[0], types.intp)]
        else:
            values = cgutils.unpack_tuple(builder, args[0], ndim)
            sizes = [context.cast(builder, v, t, types.intp) for v, t in zip(values, signature.args[0])]
        itemsize = context.get_abi_sizeof(context.get_data_type(dtype))
        nbytes = context.get_constant(types.intp, itemsize)
        strides = []
        for size in reversed(sizes):
            strides.append(nbytes)
            nbytes = builder.mul(nbytes, size)
        align = context.get_preferred_array_alignment(dtype)
        meminfo = context.nrt.meminfo_alloc_aligned(builder, nbytes, align)
        data = context.nrt.meminfo_data(builder, meminfo)
        data = builder.bitcast(data, context.get_data_type(dtype).as_pointer())
        array = make_array(array_type)(context, builder)
        populate_array(
            array,
            data=data,
            shape=cgutils.pack_array(builder, sizes),
            strides=cgutils.pack_array(builder, strides[::-1]),
            itemsize=context.get_constant(types.intp, itemsize),
            meminfo=meminfo,
        )
        return array._getvalue()

    return array_type(shape, like), codegen


@numba.extending.intrinsic
def _flat(typingctx, array):
    """The C-contiguous ``array`` as a 1-D view of its samples: ``array.reshape(array.size)``
    without Numba's reshape, whose code a cached kernel would import Numba's array module for."""
    if not (isinstance(array, types.Array) and array.layout == "C"):
        return None
    flat_type = types.Array(array.dtype, 1, "C", readonly=not array.mutable)

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array, populate_array

        source = make_array(signature.args[0])(context, builder, value=args[0])
        size = context.get_constant(types.intp, 1)
        for extent in cgutils.unpack_tuple(builder, source.shape, array.ndim):
            size = builder.mul(size, extent)
        view = make_array(flat_type)(context, builder)
        populate_array(
            view,
            data=source.data,
            shape=cgutils.pack_array(builder, [size]),
            strides=cgutils.pack_array(builder, [source.itemsize]),
            itemsize=source.itemsize,
            meminfo=source.meminfo,
            parent=source.parent,
        )
        return impl_ret_borrowed(context, builder, flat_type, view._getvalue())

    return flat_type(array), codegen


def _lowest(values):
    """The smallest of ``values`` (not empty).

    A loop, not ``values.min()``: Numba's array reductions keep a reference to
    the module that implements them, which a kernel loaded from the cache
    imports again, and that one imports SciPy's linear algebra (about 0.4 s of a
    first call).
    """
    found = values[0]
    for v in values:
        found = min(found, v)
    return found


def _highest(values):
    """The largest of ``values`` (not empty); a loop, as ``_lowest`` says why."""
    found = values[0]
    for v in values:
        found = max(found, v)
    return found


def _any_set(flags):
    """Whether any of ``flags`` is set; a loop, as ``_lowest`` says why."""
    for f in flags:
        if f:
            return True
    return False


_lowest = numba.njit(inline="always", cache=False)(_lowest)
_highest = numba.njit(inline="always", cache=False)(_highest)
_any_set = numba.njit(inline="always", cache=False)(_any_set)


# --------------------------------------------------------------------------
# 1-D passes along one axis
# --------------------------------------------------------------------------


def _accumulate_taps(acc, seg_a, seg_b, w, sign):
    """``acc += (seg_a + sign * seg_b) * w``, or ``acc += seg_a * w`` when ``sign`` is 0.

    Samples are converted to the accumulator's type first (so integer input
    cannot wrap, and the arithmetic is the accumulator's).
    """
    to_acc = acc.dtype.type
    if sign > 0:
        for j in range(acc.size):
            acc[j] += (to_acc(seg_a[j]) + to_acc(seg_b[j])) * w
    elif sign < 0:
        for j in range(acc.size):
            acc[j] += (to_acc(seg_a[j]) - to_acc(seg_b[j])) * w
    else:
        for j in range(acc.size):
            acc[j] += to_acc(seg_a[j]) * w


_accumulate_taps = numba.njit(inline="always", cache=False)(_accumulate_taps)


def _accumulate_taps4(acc, a0, b0, a1, b1, a2, b2, a3, b3, w0, w1, w2, w3, sign):
    """Four ``_accumulate_taps`` in one pass over ``acc``: the same operations in the same order.

    Each product is rounded, then added, as four separate calls would; the
    running sum stays in a register between them.
    """
    to_acc = acc.dtype.type
    if sign > 0:
        for j in range(acc.size):
            s = acc[j] + (to_acc(a0[j]) + to_acc(b0[j])) * w0
            s = s + (to_acc(a1[j]) + to_acc(b1[j])) * w1
            s = s + (to_acc(a2[j]) + to_acc(b2[j])) * w2
            acc[j] = s + (to_acc(a3[j]) + to_acc(b3[j])) * w3
    elif sign < 0:
        for j in range(acc.size):
            s = acc[j] + (to_acc(a0[j]) - to_acc(b0[j])) * w0
            s = s + (to_acc(a1[j]) - to_acc(b1[j])) * w1
            s = s + (to_acc(a2[j]) - to_acc(b2[j])) * w2
            acc[j] = s + (to_acc(a3[j]) - to_acc(b3[j])) * w3
    else:
        for j in range(acc.size):
            s = acc[j] + to_acc(a0[j]) * w0
            s = s + to_acc(a1[j]) * w1
            s = s + to_acc(a2[j]) * w2
            acc[j] = s + to_acc(a3[j]) * w3


_accumulate_taps4 = numba.njit(inline="always", cache=False)(_accumulate_taps4)


def _pad_table(source, lo, n, mode):
    """``source[p]`` = ``_source_index(p + lo, n, mode)`` for the positions ``p`` of a padded
    line that lie beyond the line (-1: the constant); the others are left unset. Made once
    per task for all its rows, whose pads would otherwise each look it up again, an integer
    division per padded sample."""
    inside_first = min(max(-lo, 0), source.size)
    inside_last = max(min(n - lo, source.size), inside_first)
    for p in range(inside_first):
        source[p] = _source_index(p + lo, n, mode)
    for p in range(inside_last, source.size):
        source[p] = _source_index(p + lo, n, mode)


_pad_table = _helper(_pad_table)


def _fill_padded_row(buf, row, lo, source, cval):
    """``buf[p]`` = the row extended by the border mode at position ``p + lo``, the samples
    beyond the row read from ``source`` (``_pad_table``)."""
    n = row.size
    inside_first = min(max(-lo, 0), buf.size)
    inside_last = max(min(n - lo, buf.size), inside_first)
    dst = buf[inside_first:inside_last]  # slices, so that the copy is vectorised
    seg = row[inside_first + lo : inside_last + lo]
    for j in range(dst.size):
        dst[j] = seg[j]
    for p in range(inside_first):
        q = source[p]
        buf[p] = cval if q < 0 else row[q]
    for p in range(inside_last, buf.size):
        q = source[p]
        buf[p] = cval if q < 0 else row[q]


_fill_padded_row = _helper(_fill_padded_row)


def _correlate_lines_block(
    src, first_line, last_line, offsets, weights, symmetry, source, cval, lo, buf, acc, out
):
    """Lines ``first_line .. last_line - 1`` of ``_correlate_lines``, in the task's ``buf``
    (the padded line, its pad from ``source``: ``_pad_table``) and ``acc``."""
    n = src.shape[1]
    k = offsets.size
    for line in range(first_line, last_line):
        _fill_padded_row(buf, src[line], lo, source, cval)
        first = k // 2 if symmetry != 0 else k - 1
        start = offsets[first] - lo
        seg = buf[start : start + n]
        for j in range(n):
            acc[j] = seg[j] * weights[first]
        # tap pair t reads buf from a_t (and, when symmetric, from b_t); four pairs a sweep
        pairs = k // 2 if symmetry != 0 else k - 1
        t = 0
        while t < pairs:
            if pairs - t >= 4:
                a0, a1, a2, a3 = (
                    offsets[t] - lo,
                    offsets[t + 1] - lo,
                    offsets[t + 2] - lo,
                    offsets[t + 3] - lo,
                )
                if symmetry != 0:
                    b0, b1 = offsets[k - 1 - t] - lo, offsets[k - 2 - t] - lo
                    b2, b3 = offsets[k - 3 - t] - lo, offsets[k - 4 - t] - lo
                else:
                    b0, b1, b2, b3 = a0, a1, a2, a3
                _accumulate_taps4(
                    acc,
                    buf[a0 : a0 + n],
                    buf[b0 : b0 + n],
                    buf[a1 : a1 + n],
                    buf[b1 : b1 + n],
                    buf[a2 : a2 + n],
                    buf[b2 : b2 + n],
                    buf[a3 : a3 + n],
                    buf[b3 : b3 + n],
                    weights[t],
                    weights[t + 1],
                    weights[t + 2],
                    weights[t + 3],
                    symmetry,
                )
                t += 4
            else:
                sa = offsets[t] - lo
                sb = offsets[k - 1 - t] - lo if symmetry != 0 else sa
                _accumulate_taps(acc, buf[sa : sa + n], buf[sb : sb + n], weights[t], symmetry)
                t += 1
        out_row = out[line]
        for j in range(n):
            out_row[j] = acc[j]


_correlate_lines_block = _helper(_correlate_lines_block)


def _correlate_lines(src, offsets, weights, symmetry, mode, cval, out, block):
    """1-D correlation of each row of ``src`` (lines, n) into ``out``.

    Sums in scipy.ndimage's order, so the values match ``correlate1d`` bit
    for bit: for a (anti)symmetric kernel the centre tap, then pairs
    ``(x[-j] +/- x[j]) * w[-j]`` (half the multiplications); otherwise the
    last tap, then the others in order.
    """
    n_lines, n = src.shape
    lo = _lowest(offsets)
    hi = _highest(offsets)
    padded = n + hi - lo
    n_tasks = (n_lines + block - 1) // block
    for task in prange(n_tasks):
        buf = _buffer(padded, out)
        acc = _buffer(n, out)
        source = _buffer(padded, np.int64)
        _pad_table(source, lo, n, mode)
        _correlate_lines_block(
            src,
            task * block,
            min(n_lines, (task + 1) * block),
            offsets,
            weights,
            symmetry,
            source,
            cval,
            lo,
            buf,
            acc,
            out,
        )


def _tap_row(src, o, q, outside, c0, c1):
    """Columns ``c0 .. c1 - 1`` of row ``q`` of ``src[o]``, or ``outside`` (those columns of a
    row of ``cval``) where the border mode reads no row (``q < 0``)."""
    return src[o, q, c0:c1] if q >= 0 else outside


_tap_row = numba.njit(inline="always", cache=False)(_tap_row)


def _correlate_rows_block(
    src, o, first_row, last_row, c0, c1, offsets, weights, symmetry, mode, acc, rows, outside, out
):
    """Rows ``first_row .. last_row - 1``, columns ``c0 .. c1 - 1``, of ``src[o]`` for
    ``_correlate_rows``, in the task's ``acc``, ``rows`` (each tap's source row) and
    ``outside`` (``cval`` in those columns)."""
    n = src.shape[1]
    k = offsets.size
    first = k // 2 if symmetry != 0 else k - 1
    pairs = k // 2 if symmetry != 0 else k - 1
    for i in range(first_row, last_row):
        for t in range(k):
            rows[t] = _source_index(i + offsets[t], n, mode)
        row = _tap_row(src, o, rows[first], outside, c0, c1)
        for j in range(acc.size):
            acc[j] = row[j] * weights[first]
        t = 0
        while t < pairs:
            # tap pair t reads rows[t] and, when symmetric, rows[k - 1 - t]
            if pairs - t >= 4:  # four pairs in one sweep
                b0 = k - 1 - t if symmetry != 0 else t
                step = -1 if symmetry != 0 else 1
                _accumulate_taps4(
                    acc,
                    _tap_row(src, o, rows[t], outside, c0, c1),
                    _tap_row(src, o, rows[b0], outside, c0, c1),
                    _tap_row(src, o, rows[t + 1], outside, c0, c1),
                    _tap_row(src, o, rows[b0 + step], outside, c0, c1),
                    _tap_row(src, o, rows[t + 2], outside, c0, c1),
                    _tap_row(src, o, rows[b0 + 2 * step], outside, c0, c1),
                    _tap_row(src, o, rows[t + 3], outside, c0, c1),
                    _tap_row(src, o, rows[b0 + 3 * step], outside, c0, c1),
                    weights[t],
                    weights[t + 1],
                    weights[t + 2],
                    weights[t + 3],
                    symmetry,
                )
                t += 4
            else:
                row_a = _tap_row(src, o, rows[t], outside, c0, c1)
                row_b = _tap_row(src, o, rows[k - 1 - t if symmetry != 0 else t], outside, c0, c1)
                _accumulate_taps(acc, row_a, row_b, weights[t], symmetry)
                t += 1
        out_row = out[o, i, c0:c1]
        for j in range(acc.size):
            out_row[j] = acc[j]


_correlate_rows_block = _helper(_correlate_rows_block)

# Columns of a band of ``_correlate_rows``: its sums (8 KiB) stay in L1, and the source rows
# of one output row in L2 for the next rows of the band.
BAND_BYTES = 8192
# Rows of a task when a row holds several bands: the source rows of one band are read
# again by the next rows of the task from L2, not from memory.
BAND_ROWS = 64


def _correlate_rows(src, offsets, weights, symmetry, mode, cval, out, block):
    """1-D correlation along axis 1 of ``src`` (outer, n, inner), vectorised over ``inner``.

    Same summation order as ``_correlate_lines``. The source row of each tap
    is found once per output row (one border-mode lookup in the code, which
    keeps the compiled kernel small). Long rows (planes of a volume, filtered
    along z) go in bands of columns, each band ``BAND_ROWS`` rows at a time: a
    sweep over whole planes would stream its sums and every tap's plane from
    memory once per output plane.
    """
    n_outer, n, inner = src.shape
    k = offsets.size
    band = max(1, BAND_BYTES // out.itemsize)
    n_bands = (inner + band - 1) // band
    if n_bands > 1:
        block = max(block, BAND_ROWS)
    else:
        band = inner
    n_blocks = (n + block - 1) // block
    for task in prange(n_outer * n_blocks * n_bands):
        o = task // (n_blocks * n_bands)
        rest = task - o * (n_blocks * n_bands)
        first_row = (rest // n_bands) * block
        c0 = (rest % n_bands) * band
        c1 = min(inner, c0 + band)
        acc = _buffer(c1 - c0, out)
        rows = _buffer(k, np.int64)  # the source row of each tap, -1 outside the image
        # rows outside the image (constant mode, where the caller made src float)
        outside = _buffer(c1 - c0, src)
        outside[:] = cval
        _correlate_rows_block(
            src,
            o,
            first_row,
            min(n, first_row + block),
            c0,
            c1,
            offsets,
            weights,
            symmetry,
            mode,
            acc,
            rows,
            outside,
            out,
        )


correlate_lines = _Kernel(_correlate_lines, 6)
correlate_rows = _Kernel(_correlate_rows, 6)


@numba.extending.intrinsic
def _thread_count(typingctx):
    """This thread's parallel thread count, as ``numba.get_num_threads`` (its C function).

    Called by symbol, which the threading layer registers, where Numba's own
    overload embeds a ctypes address that keeps a kernel out of the on-disk cache.
    """
    _start_threading_layer()

    def codegen(context, builder, signature, args):
        # declared as Numba's parallel lowering declares it, which shares the module
        fn = cgutils.get_or_insert_function(
            builder.module, llvmlite.ir.FunctionType(cgutils.intp_t, []), "get_num_threads"
        )
        return builder.call(fn, [])

    return types.intp(), codegen


@numba.extending.intrinsic
def _set_thread_count(typingctx, count):
    """``numba.set_num_threads(count)`` for this thread, by symbol (see ``_thread_count``);
    ``count`` must lie between 1 and the threads started."""
    _start_threading_layer()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module,
            llvmlite.ir.FunctionType(llvmlite.ir.VoidType(), [llvmlite.ir.IntType(32)]),
            "set_num_threads",
        )
        builder.call(fn, [builder.trunc(args[0], llvmlite.ir.IntType(32))])
        return context.get_dummy_value()

    return types.none(types.intp), codegen


def _start_threading_layer():
    """Start Numba's threading layer, which registers the symbols the kernels call."""
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()


def _limit_threads(threads):
    """Run this thread's next parallel regions on at most ``threads`` threads (0: as set);
    the count to restore afterwards (``_set_thread_count``).

    A kernel that takes its thread count does this itself: a small call then runs on
    the calling thread alone without two C calls from Python around it.
    """
    previous = _thread_count()
    if 0 < threads < previous:
        _set_thread_count(threads)
    return previous


_limit_threads = numba.njit(inline="always", cache=False)(_limit_threads)


# --------------------------------------------------------------------------
# Fused 2-D separable filtering: a vertical and a horizontal pass per row
# --------------------------------------------------------------------------


def _sweep(acc, n, r0, w0, r1, w1, r2, w2, r3, w3):
    """``acc += r0 * w0``, then ``+= r1 * w1`` and so on over the first ``n`` (1 to 4) rows.

    One pass over ``acc``, each product fused with its sum (``_fmuladd``).
    Samples are converted to the accumulator's type first (integer input
    cannot wrap). Callers start from a zeroed ``acc``: one loop per ``n``
    keeps the compiled code (and its compile time) small.
    """
    t = acc.dtype.type
    if n == 1:
        for j in range(acc.size):
            acc[j] = _fmuladd(t(r0[j]), w0, acc[j])
    elif n == 2:
        for j in range(acc.size):
            acc[j] = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
    elif n == 3:
        for j in range(acc.size):
            s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
            acc[j] = _fmuladd(t(r2[j]), w2, s)
    else:
        for j in range(acc.size):
            s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
            acc[j] = _fmuladd(t(r3[j]), w3, _fmuladd(t(r2[j]), w2, s))


_sweep = numba.njit(inline="always", cache=False)(_sweep)


def _chain4(s, j, r0, r1, r2, r3, w0, w1, w2, w3):
    """``s`` plus sample ``j`` of rows ``r0 .. r3`` times ``w0 .. w3``, one fused multiply-add
    after another (samples converted to the type of ``s`` first)."""
    s = _fmuladd(_like(r0[j], s), w0, s)
    s = _fmuladd(_like(r1[j], s), w1, s)
    s = _fmuladd(_like(r2[j], s), w2, s)
    return _fmuladd(_like(r3[j], s), w3, s)


def _chain9(s, j, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8):
    """``_chain4`` of nine rows."""
    s = _chain4(_chain4(s, j, r0, r1, r2, r3, w0, w1, w2, w3), j, r4, r5, r6, r7, w4, w5, w6, w7)
    return _fmuladd(_like(r8[j], s), w8, s)


_chain4 = numba.njit(inline="always", cache=False)(_chain4)
_chain9 = numba.njit(inline="always", cache=False)(_chain9)


def _sweep8(acc, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6, w7):
    """``_sweep`` of eight rows: the same chain of fused multiply-adds, in the same order.

    Eight taps per pass over ``acc`` load and store it half as often as two
    sweeps of four, and each call's loop set-up is paid once for eight taps.
    """
    t = acc.dtype.type
    for j in range(acc.size):
        s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
        s = _fmuladd(t(r3[j]), w3, _fmuladd(t(r2[j]), w2, s))
        s = _fmuladd(t(r5[j]), w5, _fmuladd(t(r4[j]), w4, s))
        acc[j] = _fmuladd(t(r7[j]), w7, _fmuladd(t(r6[j]), w6, s))


_sweep8 = numba.njit(inline="always", cache=False)(_sweep8)


def _sweep7(acc, r0, r1, r2, r3, r4, r5, r6, w0, w1, w2, w3, w4, w5, w6):
    """``_sweep`` of seven rows (the rest of a 15-tap kernel after eight, a 7-tap one)."""
    t = acc.dtype.type
    for j in range(acc.size):
        s = _fmuladd(t(r1[j]), w1, _fmuladd(t(r0[j]), w0, acc[j]))
        s = _fmuladd(t(r3[j]), w3, _fmuladd(t(r2[j]), w2, s))
        s = _fmuladd(t(r5[j]), w5, _fmuladd(t(r4[j]), w4, s))
        acc[j] = _fmuladd(t(r6[j]), w6, s)


_sweep7 = numba.njit(inline="always", cache=False)(_sweep7)


def _start9(acc, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8):
    """The first sweep of a row, nine taps: ``acc`` written without being read (the chain
    of ``_sweep`` from zero, as a zeroed ``acc`` would start it)."""
    zero = acc.dtype.type(0)
    for j in range(acc.size):
        acc[j] = _chain9(zero, j, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8)


_start9 = numba.njit(inline="always", cache=False)(_start9)


def _row_run(acc, run, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8):
    """The sweep of ``run`` taps (``_run_length``): ``_start9``, ``_sweep8`` or ``_sweep7``;
    rows and weights past the run are not read."""
    if run == 9:
        _start9(acc, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8)
    elif run == 8:
        _sweep8(acc, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6, w7)
    else:
        _sweep7(acc, r0, r1, r2, r3, r4, r5, r6, w0, w1, w2, w3, w4, w5, w6)


_row_run = numba.njit(inline="always", cache=False)(_row_run)


def _run_length(left, first):
    """Taps of the next sweep of a row when ``left`` remain: nine for its first sweep
    (``_start9``, which writes the row without reading it) where eights and a seven
    then take the rest; after it eight or the last seven (``_sweep8``, ``_sweep7``);
    else 0: groups of up to four, or, for a first sweep, a zeroed row to add to."""
    if first:
        rest = left - 9
        return 9 if rest >= 0 and (rest % 8 == 0 or rest % 8 == 7) else 0
    if left >= 8 or left == 7:
        return min(left, 8)
    return 0


_run_length = numba.njit(inline="always", cache=False)(_run_length)


def _place(n, a, t0, t1, t2, t3):
    """Taps ``(t0, t1, t2, t3)`` of a group with tap ``a`` in slot ``n`` and every later slot.

    Slots past the group's last tap repeat it, which is what ``_sweep`` takes.
    """
    if n == 0:
        return a, a, a, a
    if n == 1:
        return t0, a, a, a
    if n == 2:
        return t0, t1, a, a
    return t0, t1, t2, a


_place = numba.njit(inline="always", cache=False)(_place)


def _column_pass(acc, plane, offsets, weights, n_taps, i, mode_y, cval):
    """``acc`` = correlation of ``plane`` along y, for output row ``i``.

    Up to four source rows share one pass over ``acc``. Mirrored taps are not
    paired here: reading each source row once for two output rows
    (``_column_pass_two``) saves more than pairing would, and both passes must
    sum alike. Rows outside the image (constant mode) add ``weight * cval``.
    """
    h = plane.shape[0]
    acc[:] = 0
    outside = acc.dtype.type(0)  # what the taps reading rows outside the image add
    a = 0
    while a < n_taps:
        n = 0
        t0 = t1 = t2 = t3 = a
        while n < 4 and a < n_taps:
            if _source_index(i + offsets[a], h, mode_y) < 0:
                outside += weights[a] * cval
            else:
                t0, t1, t2, t3 = _place(n, a, t0, t1, t2, t3)
                n += 1
            a += 1
        if n == 0:
            break
        _sweep(
            acc,
            n,
            plane[_source_index(i + offsets[t0], h, mode_y)],
            weights[t0],
            plane[_source_index(i + offsets[t1], h, mode_y)],
            weights[t1],
            plane[_source_index(i + offsets[t2], h, mode_y)],
            weights[t2],
            plane[_source_index(i + offsets[t3], h, mode_y)],
            weights[t3],
        )
    if outside != 0:
        for j in range(acc.size):
            acc[j] += outside


def _sweep_two(acc0, acc1, n, r0, r1, r2, r3, r4, w0, w1, w2, w3):
    """``_sweep`` of rows ``r0 .. r[n-1]`` into ``acc0`` and of ``r1 .. r[n]`` into ``acc1``.

    The same weights and the same operations in the same order as ``_sweep``
    (so a row comes out bit for bit the same either way), each source row
    read once for both.
    """
    t = acc0.dtype.type
    for j in range(acc0.size):
        a, b = t(r0[j]), t(r1[j])
        s0 = _fmuladd(a, w0, acc0[j])
        s1 = _fmuladd(b, w0, acc1[j])
        if n > 1:
            c = t(r2[j])
            s0 = _fmuladd(b, w1, s0)
            s1 = _fmuladd(c, w1, s1)
            if n > 2:
                d = t(r3[j])
                s0 = _fmuladd(c, w2, s0)
                s1 = _fmuladd(d, w2, s1)
                if n > 3:
                    e = t(r4[j])
                    s0 = _fmuladd(d, w3, s0)
                    s1 = _fmuladd(e, w3, s1)
        acc0[j] = s0
        acc1[j] = s1


_sweep_two = numba.njit(inline="always", cache=False)(_sweep_two)


def _sweep_two8(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7):
    """``_sweep_two`` of eight taps (rows ``r0 .. r7`` into ``acc0``, ``r1 .. r8`` into ``acc1``)."""
    t = acc0.dtype.type
    for j in range(acc0.size):
        a, b = t(r0[j]), t(r1[j])
        s0 = _fmuladd(a, w0, acc0[j])
        s1 = _fmuladd(b, w0, acc1[j])
        a = t(r2[j])
        s0 = _fmuladd(b, w1, s0)
        s1 = _fmuladd(a, w1, s1)
        b = t(r3[j])
        s0 = _fmuladd(a, w2, s0)
        s1 = _fmuladd(b, w2, s1)
        a = t(r4[j])
        s0 = _fmuladd(b, w3, s0)
        s1 = _fmuladd(a, w3, s1)
        b = t(r5[j])
        s0 = _fmuladd(a, w4, s0)
        s1 = _fmuladd(b, w4, s1)
        a = t(r6[j])
        s0 = _fmuladd(b, w5, s0)
        s1 = _fmuladd(a, w5, s1)
        b = t(r7[j])
        s0 = _fmuladd(a, w6, s0)
        s1 = _fmuladd(b, w6, s1)
        a = t(r8[j])
        acc0[j] = _fmuladd(b, w7, s0)
        acc1[j] = _fmuladd(a, w7, s1)


_sweep_two8 = numba.njit(inline="always", cache=False)(_sweep_two8)


def _sweep_two7(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6):
    """``_sweep_two`` of seven taps (rows ``r0 .. r6`` into ``acc0``, ``r1 .. r7`` into ``acc1``)."""
    t = acc0.dtype.type
    for j in range(acc0.size):
        a, b = t(r0[j]), t(r1[j])
        s0 = _fmuladd(a, w0, acc0[j])
        s1 = _fmuladd(b, w0, acc1[j])
        a = t(r2[j])
        s0 = _fmuladd(b, w1, s0)
        s1 = _fmuladd(a, w1, s1)
        b = t(r3[j])
        s0 = _fmuladd(a, w2, s0)
        s1 = _fmuladd(b, w2, s1)
        a = t(r4[j])
        s0 = _fmuladd(b, w3, s0)
        s1 = _fmuladd(a, w3, s1)
        b = t(r5[j])
        s0 = _fmuladd(a, w4, s0)
        s1 = _fmuladd(b, w4, s1)
        a = t(r6[j])
        s0 = _fmuladd(b, w5, s0)
        s1 = _fmuladd(a, w5, s1)
        b = t(r7[j])
        acc0[j] = _fmuladd(a, w6, s0)
        acc1[j] = _fmuladd(b, w6, s1)


_sweep_two7 = numba.njit(inline="always", cache=False)(_sweep_two7)


def _pair_start9(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, w0, w1, w2, w3, w4, w5, w6, w7, w8):
    """The first sweep of ``_sweep_two``, nine taps: rows ``r0 .. r8`` into ``acc0`` and
    ``r1 .. r9`` into ``acc1``, both written without being read (``_start9``). Both sums
    are formed before either is stored, so each source row is loaded once for the two."""
    zero = acc0.dtype.type(0)
    for j in range(acc0.size):
        s0 = _chain9(zero, j, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7, w8)
        s1 = _chain9(zero, j, r1, r2, r3, r4, r5, r6, r7, r8, r9, w0, w1, w2, w3, w4, w5, w6, w7, w8)
        acc0[j], acc1[j] = s0, s1


_pair_start9 = numba.njit(inline="always", cache=False)(_pair_start9)


def _pair_run(acc0, acc1, run, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, w0, w1, w2, w3, w4, w5, w6, w7, w8):
    """The two-row sweep of ``run`` taps (``_run_length``): ``_pair_start9``, ``_sweep_two8``
    or ``_sweep_two7``; rows and weights past the run are not read."""
    if run == 9:
        _pair_start9(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, w0, w1, w2, w3, w4, w5, w6, w7, w8)
    elif run == 8:
        _sweep_two8(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, r8, w0, w1, w2, w3, w4, w5, w6, w7)
    else:
        _sweep_two7(acc0, acc1, r0, r1, r2, r3, r4, r5, r6, r7, w0, w1, w2, w3, w4, w5, w6)


_pair_run = numba.njit(inline="always", cache=False)(_pair_run)


def _ring_row(plane, q, period):
    """Source row ``q`` of a ring of ``period`` rows (``_fill_ring``), or of ``plane``
    itself (``period`` its height: one expression for both, compiled once)."""
    return plane[q % period]


_ring_row = numba.njit(inline="always", cache=False)(_ring_row)


def _fill_ring(ring, plane, start, stop):
    """Rows ``start .. stop - 1`` of ``plane``, converted to the ring's type, into ``ring``
    (row ``q`` at ``q % ring.shape[0]``): each source row converted once, not once a tap."""
    for q in range(start, stop):
        row = ring[q % ring.shape[0]]
        src = plane[q]
        for j in range(row.size):
            row[j] = _like(src[j], row[0])


def _ring_rows(src, out, rows):
    """Rows of the ring of converted source rows: ``rows`` where a kernel reads ``src`` as
    another type than ``out``'s (uint8), else 0 (it reads ``src`` itself)."""


def _pass_rows(plane, ring):
    """What the column pass reads: the ring where ``plane`` is converted, else ``plane``."""


@numba.extending.overload(_ring_rows)
def _ring_rows_typed(src, out, rows):
    if src.dtype != out.dtype:
        return lambda src, out, rows: rows
    return lambda src, out, rows: 0


@numba.extending.overload(_pass_rows)
def _pass_rows_typed(plane, ring):
    if plane.dtype != ring.dtype:
        return lambda plane, ring: ring
    return lambda plane, ring: plane


def _convert_rows(ring, plane, start, stop):
    """``_fill_ring`` where ``plane`` is converted (no code for the other types)."""


@numba.extending.overload(_convert_rows)
def _convert_rows_typed(ring, plane, start, stop):
    if plane.dtype != ring.dtype:
        return lambda ring, plane, start, stop: _fill_ring(ring, plane, start, stop)
    return lambda ring, plane, start, stop: None


def _column_pass_two(acc0, acc1, plane, offsets, weights, n_taps, i, period):
    """``_column_pass`` for output rows ``i`` and ``i + 1`` at once, for dense taps.

    The taps' offsets are consecutive and every row they read lies inside the
    image. The two rows share ``n_taps - 1`` source rows: each is read once
    and feeds both accumulators, halving the source reads of the vertical
    pass. However the taps are grouped into sweeps, each row's chain of fused
    multiply-adds runs in tap order from zero, as in ``_column_pass``, so both
    give the same values bit for bit. Source row ``q`` is ``plane[q % period]``:
    ``plane`` is the image plane (``period`` its height) or a ring of converted rows.
    """
    top = i + offsets[0]  # the source row of tap 0 for output row i
    first = True  # the first sweep writes the rows without reading them
    a = 0
    while a < n_taps:
        run = _run_length(n_taps - a, first)
        if run == 0 and first:  # the sweeps add to zeroed rows
            acc0[:] = 0
            acc1[:] = 0
            first = False
            continue
        if run > 0:  # seven to nine taps in one sweep
            e = a + run - 1  # rows and weights past the run's last tap repeat it (unused)
            _pair_run(
                acc0,
                acc1,
                run,
                _ring_row(plane, top + a, period),
                _ring_row(plane, top + a + 1, period),
                _ring_row(plane, top + a + 2, period),
                _ring_row(plane, top + a + 3, period),
                _ring_row(plane, top + a + 4, period),
                _ring_row(plane, top + a + 5, period),
                _ring_row(plane, top + a + 6, period),
                _ring_row(plane, top + a + 7, period),
                _ring_row(plane, top + min(a + 8, e + 1), period),
                _ring_row(plane, top + min(a + 9, e + 1), period),
                weights[a],
                weights[a + 1],
                weights[a + 2],
                weights[a + 3],
                weights[a + 4],
                weights[a + 5],
                weights[a + 6],
                weights[min(a + 7, e)],
                weights[min(a + 8, e)],
            )
            first = False
            a += run
            continue
        n = min(4, n_taps - a)
        k1, k2, k3 = a + min(1, n - 1), a + min(2, n - 1), a + min(3, n - 1)
        _sweep_two(
            acc0,
            acc1,
            n,
            _ring_row(plane, top + a, period),
            _ring_row(plane, top + a + 1, period),
            _ring_row(plane, top + min(a + 2, n_taps), period),
            _ring_row(plane, top + min(a + 3, n_taps), period),
            _ring_row(plane, top + min(a + 4, n_taps), period),
            weights[a],
            weights[k1],
            weights[k2],
            weights[k3],
        )
        a += n


_column_pass = _helper(_column_pass)
_column_pass_two = _helper(_column_pass_two)
_fill_ring = _helper(_fill_ring)


def _pad_row(buf, lo, w, source, pad):
    """Extend the row ``buf[-lo:-lo + w]`` over the rest of ``buf`` by the border mode.

    ``source`` (``_pad_table``) names the sample each position holds; ``pad`` is
    the value outside the image in constant mode.
    """
    inner = buf[-lo : -lo + w]
    for pp in range(-lo):
        q = source[pp]
        buf[pp] = pad if q < 0 else inner[q]
    for pp in range(w - lo, buf.size):
        q = source[pp]
        buf[pp] = pad if q < 0 else inner[q]


def _tap_view(buf, start, w):
    """``w`` samples of ``buf`` from ``start``: the row a tap reads."""
    return buf[start : start + w]


_tap_view = numba.njit(inline="always", cache=False)(_tap_view)


def _row_pass(acc, bufs, offsets, weights, counts, lo, t, n_terms, add):
    """``acc`` (+)= the sum over terms ``t .. n_terms - 1`` of the row pass of ``bufs[t]``.

    ``bufs[t]`` is term ``t``'s padded row (``bufs[t, p]`` is x = p + lo).
    The taps of all the terms go through a few sweeps over ``acc`` (seven to
    nine of one term, or up to four), so a sum of separable terms writes its
    output row once, with no row per term.
    """
    w = acc.size
    first = not add  # the first sweep writes acc without reading it
    b = 0
    while t < n_terms:
        run = _run_length(counts[t] - b, first)
        if run == 0 and first:  # the sweeps add to a zeroed row
            acc[:] = 0
            first = False
            continue
        if run > 0:  # seven to nine taps of one term in one sweep
            o = offsets[t]
            e = b + run - 1  # taps past the run's last repeat it (unused)
            _row_run(
                acc,
                run,
                _tap_view(bufs[t], o[b] - lo, w),
                _tap_view(bufs[t], o[b + 1] - lo, w),
                _tap_view(bufs[t], o[b + 2] - lo, w),
                _tap_view(bufs[t], o[b + 3] - lo, w),
                _tap_view(bufs[t], o[b + 4] - lo, w),
                _tap_view(bufs[t], o[b + 5] - lo, w),
                _tap_view(bufs[t], o[b + 6] - lo, w),
                _tap_view(bufs[t], o[min(b + 7, e)] - lo, w),
                _tap_view(bufs[t], o[min(b + 8, e)] - lo, w),
                weights[t, b],
                weights[t, b + 1],
                weights[t, b + 2],
                weights[t, b + 3],
                weights[t, b + 4],
                weights[t, b + 5],
                weights[t, b + 6],
                weights[t, min(b + 7, e)],
                weights[t, min(b + 8, e)],
            )
            first = False
            b += run
            if b == counts[t]:
                t += 1
                b = 0
            continue
        n = 0
        t0 = t1 = t2 = t3 = 0
        b0 = b1 = b2 = b3 = 0
        while n < 4 and t < n_terms:
            if n == 0:
                t0, b0 = t, b
            elif n == 1:
                t1, b1 = t, b
            elif n == 2:
                t2, b2 = t, b
            else:
                t3, b3 = t, b
            n += 1
            b += 1
            if b == counts[t]:
                t += 1
                b = 0
        if n < 2:
            t1, b1 = t0, b0
        if n < 3:
            t2, b2 = t1, b1
        if n < 4:
            t3, b3 = t2, b2
        s0, s1 = offsets[t0, b0] - lo, offsets[t1, b1] - lo
        s2, s3 = offsets[t2, b2] - lo, offsets[t3, b3] - lo
        _sweep(
            acc,
            n,
            bufs[t0, s0 : s0 + w],
            weights[t0, b0],
            bufs[t1, s1 : s1 + w],
            weights[t1, b1],
            bufs[t2, s2 : s2 + w],
            weights[t2, b2],
            bufs[t3, s3 : s3 + w],
            weights[t3, b3],
        )
    if first:  # no taps
        acc[:] = 0


def _nonfinite(row):
    """Whether ``row`` holds NaN or an infinity."""
    count = 0
    for j in range(row.size):
        v = row[j]
        count += 1 if v - v != 0 else 0
    return count > 0


def _add_square(total, values):
    """``total += values ** 2``."""
    for j in range(total.size):
        total[j] += values[j] * values[j]


def _start_row(total, row_out, accumulate):
    """The terms' ``total`` before the first: the output row itself, or zeros."""
    for j in range(total.size):
        total[j] = row_out[j] if accumulate else 0


def _finish_row(total, combine, inv_divisor, row_out):
    """The output row from the terms' ``total``: its square root for a magnitude."""
    for j in range(total.size):
        row_out[j] = np.sqrt(total[j]) * inv_divisor if combine == MAGNITUDE else total[j]


_pad_row = _helper(_pad_row)
_row_pass = _helper(_row_pass)
_nonfinite = _helper(_nonfinite)
_add_square = _helper(_add_square)
_start_row = _helper(_start_row)
_finish_row = _helper(_finish_row)


def _column_reach(col_off, col_n):
    """The first and last source row an output row's column taps read, relative to it, over
    all terms; and whether a term's taps are dense (rows the two-row pass reads)."""
    top = col_off[0, 0]
    bottom = col_off[0, col_n[0] - 1]
    dense = False
    for t in range(col_n.size):
        n = col_n[t]
        top = min(top, col_off[t, 0])
        bottom = max(bottom, col_off[t, n - 1])
        dense = dense or (n > 1 and col_off[t, n - 1] - col_off[t, 0] == n - 1)
    return top, bottom, dense


_column_reach = numba.njit(inline="always", cache=False)(_column_reach)


def _separable_rows(
    plane,
    first,
    last,
    col_off,
    col_w,
    col_n,
    row_off,
    row_w,
    row_n,
    mode_y,
    source,
    cval,
    pad_x,
    combine,
    inv_divisor,
    accumulate,
    lo,
    bufs,
    hacc,
    totals,
    ring,
    out,
):
    """Rows ``first .. last - 1`` of one plane of ``_separable_2d``, in the task's buffers
    (``source``: the rows' pad, ``_pad_table``; ``ring``: rows of ``plane`` converted to
    the output's type, or none); whether a row of a sum came out NaN or infinite."""
    h, w = plane.shape
    n_terms = col_n.size
    direct = n_terms == 1 and combine == SUM and not accumulate
    summed = combine == SUM and not direct  # added up in the output row
    nonfinite = False
    rows = _pass_rows(plane, ring)  # what the two-row vertical pass reads
    top, bottom, dense_terms = _column_reach(col_off, col_n)
    period = ring.shape[0] if dense_terms else 0  # no two-row pass, no ring to fill
    converted = 0  # source rows below this one are in the ring
    i = first
    while i < last:
        n_rows = min(2, last - i)
        if not (direct or summed):
            for r in range(n_rows):
                _start_row(totals[r], out[i + r], accumulate)
        if period > 0 and n_rows == 2:  # the rows the two output rows read, converted once
            start = max(converted, i + top, 0)
            stop = min(i + 2 + bottom, h)
            if start < stop:
                _convert_rows(ring, plane, start, stop)
                converted = stop
        for t in range(n_terms):
            n_col = col_n[t]
            dense = col_off[t, n_col - 1] - col_off[t, 0] == n_col - 1
            inside = i + col_off[t, 0] >= 0 and i + 1 + col_off[t, n_col - 1] < h
            if n_rows == 2 and dense and n_col > 1 and inside:
                _column_pass_two(
                    bufs[0, t, -lo : -lo + w],
                    bufs[1, t, -lo : -lo + w],
                    rows,
                    col_off[t],
                    col_w[t],
                    n_col,
                    i,
                    rows.shape[0],
                )
            else:
                for r in range(n_rows):
                    row = bufs[r, t, -lo : -lo + w]
                    _column_pass(row, plane, col_off[t], col_w[t], n_col, i + r, mode_y, cval)
            for r in range(n_rows):
                _pad_row(bufs[r, t], lo, w, source, pad_x[t])
                if not (direct or summed):  # one term's square into the total
                    _row_pass(hacc, bufs[r], row_off, row_w, row_n, lo, t, t + 1, False)
                    _add_square(totals[r], hacc)
        for r in range(n_rows):
            if direct or summed:
                _row_pass(out[i + r], bufs[r], row_off, row_w, row_n, lo, 0, n_terms, accumulate)
                if summed and _nonfinite(out[i + r]):
                    nonfinite = True
            else:
                _finish_row(totals[r], combine, inv_divisor, out[i + r])
        i += n_rows
    return nonfinite


_separable_rows = _helper(_separable_rows)


def _separable_2d(
    src,
    col_off,
    col_w,
    col_n,
    row_off,
    row_w,
    row_n,
    mode_y,
    mode_x,
    cval,
    pad_x,
    combine,
    inv_divisor,
    accumulate,
    out,
    block,
    nonfinite,
    threads,
):
    """Sum (or magnitude) of separable terms over the last two axes of ``src`` (P, H, W).

    Term ``t`` correlates columns with ``col_w[t, :col_n[t]]`` and rows with
    ``row_w[t, :row_n[t]]``. Output rows go two at a time: the vertical pass
    fills a padded row buffer per row and term that stays in cache (for dense
    taps away from the top and bottom both rows come from one read of their
    shared source rows); the horizontal pass reads them, all terms' taps in
    one sweep for a sum, and each output row is written once. ``pad_x[t]`` is the value
    outside the image along x in constant mode (what the vertical pass would
    give there). Sums (several terms, or one added to ``out``) set
    ``nonfinite[task]`` when a row of that task came out NaN or infinite.
    """
    n_planes, h, w = src.shape
    n_terms = col_n.size
    lo = 0
    hi = 0
    for t in range(n_terms):
        for b in range(row_n[t]):
            lo = min(lo, row_off[t, b])
            hi = max(hi, row_off[t, b])
    padded = w + hi - lo
    top, bottom, _ = _column_reach(col_off, col_n)
    ring_rows = bottom - top + 2  # the source rows of two output rows
    n_blocks = (h + block - 1) // block
    previous = _limit_threads(threads)
    for task in prange(n_planes * n_blocks):
        first = (task % n_blocks) * block
        bufs = _buffer((2, n_terms, padded), out)
        hacc = _buffer(w, out)
        totals = _buffer((2, w), out)
        ring = _buffer((_ring_rows(src, out, ring_rows), w), out)
        source = _buffer(padded, np.int64)
        _pad_table(source, lo, w, mode_x)
        if _separable_rows(
            src[task // n_blocks],
            first,
            min(h, first + block),
            col_off,
            col_w,
            col_n,
            row_off,
            row_w,
            row_n,
            mode_y,
            source,
            cval,
            pad_x,
            combine,
            inv_divisor,
            accumulate,
            lo,
            bufs,
            hacc,
            totals,
            ring,
            out[task // n_blocks],
        ):
            nonfinite[task] = 1
    _set_thread_count(previous)


separable_2d_kernel = _Kernel(_separable_2d, 14)


def _edge_magnitude_rows(
    src,
    p,
    first,
    last,
    smooth_y,
    derivative_y,
    smooth_x,
    derivative_x,
    mode_y,
    mode_x,
    pad_smooth,
    pad_derivative,
    inv_divisor,
    rows_s,
    rows_d,
    outside,
    out,
):
    """Rows ``first .. last - 1`` of plane ``p`` of ``_edge_magnitude_3x3``.

    ``rows_s`` and ``rows_d`` (``w + 2`` values) are the task's row buffers,
    ``outside`` a row of ``cval``.
    """
    h, w = src.shape[1], src.shape[2]
    s0, s1, s2 = smooth_y[0], smooth_y[1], smooth_y[2]
    d0, d2 = derivative_y[0], derivative_y[1]
    hs0, hs1, hs2 = smooth_x[0], smooth_x[1], smooth_x[2]
    hd0, hd2 = derivative_x[0], derivative_x[1]
    to_acc = out.dtype.type
    s_in = rows_s[1 : w + 1]
    d_in = rows_d[1 : w + 1]
    left = _source_index(-1, w, mode_x)  # the same for every row
    right = _source_index(w, w, mode_x)
    for i in range(first, last):
        q0 = _source_index(i - 1, h, mode_y)
        q2 = _source_index(i + 1, h, mode_y)
        r0 = src[p, q0] if q0 >= 0 else outside
        r1 = src[p, i]
        r2 = src[p, q2] if q2 >= 0 else outside
        for j in range(w):
            a = to_acc(r0[j])
            b = to_acc(r1[j])
            c = to_acc(r2[j])
            s_in[j] = s0 * a + s1 * b + s2 * c
            d_in[j] = d0 * a + d2 * c
        if mode_x == CONSTANT:
            rows_s[0] = rows_s[w + 1] = pad_smooth
            rows_d[0] = rows_d[w + 1] = pad_derivative
        else:
            rows_s[0], rows_s[w + 1] = s_in[left], s_in[right]
            rows_d[0], rows_d[w + 1] = d_in[left], d_in[right]
        s_a, s_c = rows_s[0:w], rows_s[2 : w + 2]
        d_a, d_b, d_c = rows_d[0:w], rows_d[1 : w + 1], rows_d[2 : w + 2]
        row_out = out[p, i]
        for j in range(w):
            gx = hd0 * s_a[j] + hd2 * s_c[j]
            gy = hs0 * d_a[j] + hs1 * d_b[j] + hs2 * d_c[j]
            row_out[j] = np.sqrt(gx * gx + gy * gy) * inv_divisor


_edge_magnitude_rows = _helper(_edge_magnitude_rows)


def _edge_magnitude_3x3(
    src,
    smooth_y,
    derivative_y,
    smooth_x,
    derivative_x,
    mode_y,
    mode_x,
    cval,
    pad_smooth,
    pad_derivative,
    inv_divisor,
    out,
    block,
    threads,
):
    """``sqrt(gx**2 + gy**2) * inv_divisor`` of a 3x3 edge operator, in one sweep per row.

    Smoothing weights offsets -1, 0, +1 and derivative weights offsets -1 and
    +1 (the zero centre is left out, as scipy leaves it out of the footprint).
    Each output row reads its three source rows once, filling the vertically
    smoothed row ``S`` and differentiated row ``D``; then ``gx =
    derivative_x(S)`` and ``gy = smooth_x(D)``. ``pad_*`` are the values
    beyond the image along x in constant mode; rows beyond it hold ``cval``.
    """
    n_planes, h, w = src.shape
    n_blocks = (h + block - 1) // block
    previous = _limit_threads(threads)
    for task in prange(n_planes * n_blocks):
        first = (task % n_blocks) * block
        rows_s = _buffer(w + 2, out)
        rows_d = _buffer(w + 2, out)
        outside = _buffer(w, src)
        outside[:] = cval
        _edge_magnitude_rows(
            src,
            task // n_blocks,
            first,
            min(h, first + block),
            smooth_y,
            derivative_y,
            smooth_x,
            derivative_x,
            mode_y,
            mode_x,
            pad_smooth,
            pad_derivative,
            inv_divisor,
            rows_s,
            rows_d,
            outside,
            out,
        )
    _set_thread_count(previous)


edge_magnitude_3x3 = _Kernel(_edge_magnitude_3x3, 11)


# --------------------------------------------------------------------------
# Direct 2-D correlation
# --------------------------------------------------------------------------


def _taps_pass(acc, ring, tap_slot, tap_x, tap_w, lo):
    """``acc`` = the taps of ``_correlate_2d`` over the padded rows of ``ring``, four per sweep.

    Tap ``t`` reads ring row ``tap_slot[t]`` from x offset ``tap_x[t]``
    (``ring[s, p]`` is x = p + lo).
    """
    w = acc.size
    acc[:] = 0
    n_taps = tap_w.size
    t = 0
    while t < n_taps:
        n = min(4, n_taps - t)
        k1, k2, k3 = t + min(1, n - 1), t + min(2, n - 1), t + min(3, n - 1)
        s0, s1 = tap_x[t] - lo, tap_x[k1] - lo
        s2, s3 = tap_x[k2] - lo, tap_x[k3] - lo
        _sweep(
            acc,
            n,
            ring[tap_slot[t], s0 : s0 + w],
            tap_w[t],
            ring[tap_slot[k1], s1 : s1 + w],
            tap_w[k1],
            ring[tap_slot[k2], s2 : s2 + w],
            tap_w[k2],
            ring[tap_slot[k3], s3 : s3 + w],
            tap_w[k3],
        )
        t += n


_taps_pass = _helper(_taps_pass)


def _correlate_2d_rows(src, p, first, last, tap_y, tap_x, tap_w, mode_y, source, cval, ring, slots, out):
    """Rows ``first .. last - 1`` of plane ``p`` of ``_correlate_2d``.

    ``ring`` (the kernel's height, the padded row) and ``slots`` (one per
    tap) are the task's buffers, ``source`` the rows' pad (``_pad_table``).
    """
    h = src.shape[1]
    lo = _lowest(tap_x)
    top = _lowest(tap_y)
    span = ring.shape[0]
    for i in range(first, last):
        # rows i + top .. i + top + span - 1; all are new in the task's first row
        new_first = i + top if i == first else i + top + span - 1
        for y in range(new_first, i + top + span):
            q = _source_index(y, h, mode_y)
            row = ring[y % span]
            if q < 0:
                row[:] = cval
            else:
                _fill_padded_row(row, src[p, q], lo, source, cval)
        for t in range(tap_y.size):
            slots[t] = (i + tap_y[t]) % span
        _taps_pass(out[p, i], ring, slots, tap_x, tap_w, lo)


_correlate_2d_rows = _helper(_correlate_2d_rows)


def _correlate_2d(src, tap_y, tap_x, tap_w, mode_y, mode_x, cval, out, block):
    """Direct 2-D correlation of each plane of ``src`` (P, H, W) with the given taps.

    Each task keeps the source rows its output rows read in a ring of
    border-extended rows, each padded once (``ring[(i + dy) % span]`` holds
    row ``i + dy``); the taps then go four at a time through one sweep over
    the output row, in the order given.
    """
    n_planes, h, w = src.shape
    span = _highest(tap_y) - _lowest(tap_y) + 1
    padded = w + _highest(tap_x) - _lowest(tap_x)
    n_blocks = (h + block - 1) // block
    for task in prange(n_planes * n_blocks):
        first = (task % n_blocks) * block
        ring = _buffer((span, padded), out)
        slots = _buffer(tap_y.size, np.int64)
        source = _buffer(padded, np.int64)
        _pad_table(source, _lowest(tap_x), w, mode_x)
        _correlate_2d_rows(
            src,
            task // n_blocks,
            first,
            min(h, first + block),
            tap_y,
            tap_x,
            tap_w,
            mode_y,
            source,
            cval,
            ring,
            slots,
            out,
        )


correlate_2d = _Kernel(_correlate_2d, 7)


# --------------------------------------------------------------------------
# Depthwise (per-channel) filtering, channel-last
# --------------------------------------------------------------------------


def _fma_flat(acc, weights, values, skip_zero):
    """``acc += weights * values`` elementwise; zero weights add nothing (not even NaN).

    Values are converted to the accumulator's type first, as a padded copy of
    them would be, so in-place and copied samples give the same results.
    """
    to = acc.dtype.type
    if skip_zero:
        for e in range(acc.size):
            a = acc[e]
            acc[e] = _fmuladd(to(values[e]), weights[e], a) if weights[e] != 0 else a
    else:
        for e in range(acc.size):
            acc[e] = _fmuladd(to(values[e]), weights[e], acc[e])


_fma_flat = numba.njit(inline="always", cache=False)(_fma_flat)


def _fill_pixels(buf, src_row, x_first, count, w, n_in, multiplier, mode_x, outside, cval):
    """``buf`` = ``count`` pixels of a channel-last row from x = ``x_first``, border-extended.

    Each input channel is repeated ``multiplier`` times (the output channel
    layout ``c*M + m``); ``outside`` marks a row beyond the image in constant
    mode. Pixels inside the image are copied as one flat run when M is 1.
    """
    n_out = n_in * multiplier
    if outside:
        buf[: count * n_out] = cval
        return
    inside_first = min(max(x_first, 0), w)
    inside_last = max(min(x_first + count, w), inside_first)
    if multiplier == 1 and inside_last > inside_first:
        flat = _flat(src_row)
        dst = buf[(inside_first - x_first) * n_in : (inside_last - x_first) * n_in]
        run = flat[inside_first * n_in : inside_last * n_in]
        for e in range(dst.size):
            dst[e] = run[e]
    for pp in range(count):
        x = x_first + pp
        if multiplier == 1 and inside_first <= x < inside_last:
            continue
        qx = x if 0 <= x < w else _source_index(x, w, mode_x)
        base = pp * n_out
        if qx < 0:
            buf[base : base + n_out] = cval
        else:
            pix = src_row[qx]
            for c in range(n_in):
                for m in range(multiplier):
                    buf[base + c * multiplier + m] = pix[c]


_fill_pixels = _helper(_fill_pixels)


def _depthwise_taps_row(part, tiles, tap_x, has_zero, t, end, lo, n_out, window, first):
    """Taps ``t .. end`` (one kernel row) of ``_depthwise_2d`` on ``part``, up to four per sweep.

    ``window`` holds the source pixels from x offset ``lo`` on, channel-last;
    tap ``u`` reads it from ``(tap_x[u] - lo) * n_out``. ``tiles[u]`` holds
    tap ``u``'s channel weights repeated over a few pixels (a length that is a
    multiple of ``n_out``, small enough to stay in the L1 cache); ``part`` is
    swept in pieces of that length. ``first`` writes ``part`` instead of adding
    to it. Several taps share one sweep, so ``part`` is loaded and stored once
    per four (or three, two) products; taps with a zero weight go one at a
    time, leaving that channel's product out.
    """
    length = part.size
    period = tiles.shape[1]
    to = part.dtype.type  # samples read in place are converted as a padded copy is
    zero = to(0)
    while t < end:
        group = min(4, end - t)
        if group == 4 and (end - t == 5 or end - t == 6):
            group = 3  # 5 and 6 taps as 3 + 2 and 3 + 3, not 4 + 1 and 4 + 2
        for u in range(t, t + group):
            if has_zero[u]:
                group = 1
        a = (tap_x[t] - lo) * n_out
        b = (tap_x[t + 1] - lo) * n_out if group > 1 else a
        c = (tap_x[t + 2] - lo) * n_out if group > 2 else a
        d = (tap_x[t + 3] - lo) * n_out if group > 3 else a
        for s0 in range(0, length, period):
            n = min(period, length - s0)
            acc = part[s0 : s0 + n]
            va, wa = window[a + s0 : a + s0 + n], tiles[t, :n]
            if group == 1:
                if first:
                    acc[:] = zero
                _fma_flat(acc, wa, va, has_zero[t])
                continue
            vb, wb = window[b + s0 : b + s0 + n], tiles[t + 1, :n]
            if group == 2:
                if first:
                    for e in range(n):
                        acc[e] = _fmuladd(to(vb[e]), wb[e], to(va[e]) * wa[e])
                else:
                    for e in range(n):
                        acc[e] = _fmuladd(to(vb[e]), wb[e], _fmuladd(to(va[e]), wa[e], acc[e]))
                continue
            vc, wc = window[c + s0 : c + s0 + n], tiles[t + 2, :n]
            if group == 3:
                if first:
                    for e in range(n):
                        s = _fmuladd(to(vb[e]), wb[e], to(va[e]) * wa[e])
                        acc[e] = _fmuladd(to(vc[e]), wc[e], s)
                else:
                    for e in range(n):
                        s = _fmuladd(to(vb[e]), wb[e], _fmuladd(to(va[e]), wa[e], acc[e]))
                        acc[e] = _fmuladd(to(vc[e]), wc[e], s)
                continue
            vd, wd = window[d + s0 : d + s0 + n], tiles[t + 3, :n]
            if first:
                for e in range(n):
                    s = _fmuladd(to(vb[e]), wb[e], to(va[e]) * wa[e])
                    acc[e] = _fmuladd(to(vd[e]), wd[e], _fmuladd(to(vc[e]), wc[e], s))
            else:
                for e in range(n):
                    s = _fmuladd(to(vb[e]), wb[e], _fmuladd(to(va[e]), wa[e], acc[e]))
                    acc[e] = _fmuladd(to(vd[e]), wd[e], _fmuladd(to(vc[e]), wc[e], s))
        t += group
        first = False


_depthwise_taps_row = _helper(_depthwise_taps_row)


def _depthwise_taps_3x3(part, tiles, tap_x, lo, n_out, top, middle, bottom):
    """All nine taps of a dense 3x3 kernel on ``part``, in one sweep.

    ``top``, ``middle`` and ``bottom`` are the source rows of kernel rows 0,
    1 and 2, read in place as in ``_depthwise_taps_row``. The products join
    one chain of multiply-adds in tap order, the same operations as three
    ``_depthwise_taps_row`` sweeps, so results do not depend on which ran.
    """
    length = part.size
    period = tiles.shape[1]
    to = part.dtype.type
    a, b, c = (tap_x[0] - lo) * n_out, (tap_x[1] - lo) * n_out, (tap_x[2] - lo) * n_out
    d, e, f = (tap_x[3] - lo) * n_out, (tap_x[4] - lo) * n_out, (tap_x[5] - lo) * n_out
    g, k, m = (tap_x[6] - lo) * n_out, (tap_x[7] - lo) * n_out, (tap_x[8] - lo) * n_out
    for s0 in range(0, length, period):
        n = min(period, length - s0)
        acc = part[s0 : s0 + n]
        v0, v1, v2 = top[a + s0 : a + s0 + n], top[b + s0 : b + s0 + n], top[c + s0 : c + s0 + n]
        v3, v4 = middle[d + s0 : d + s0 + n], middle[e + s0 : e + s0 + n]
        v5 = middle[f + s0 : f + s0 + n]
        v6, v7 = bottom[g + s0 : g + s0 + n], bottom[k + s0 : k + s0 + n]
        v8 = bottom[m + s0 : m + s0 + n]
        t0, t1, t2, t3, t4 = tiles[0, :n], tiles[1, :n], tiles[2, :n], tiles[3, :n], tiles[4, :n]
        t5, t6, t7, t8 = tiles[5, :n], tiles[6, :n], tiles[7, :n], tiles[8, :n]
        for j in range(n):
            x = _fmuladd(to(v2[j]), t2[j], _fmuladd(to(v1[j]), t1[j], to(v0[j]) * t0[j]))
            x = _fmuladd(to(v5[j]), t5[j], _fmuladd(to(v4[j]), t4[j], _fmuladd(to(v3[j]), t3[j], x)))
            acc[j] = _fmuladd(to(v8[j]), t8[j], _fmuladd(to(v7[j]), t7[j], _fmuladd(to(v6[j]), t6[j], x)))


_depthwise_taps_3x3 = _helper(_depthwise_taps_3x3)


def _depthwise_2d_rows(
    src,
    p,
    first,
    last,
    tap_y,
    tap_x,
    tap_tiles,
    tap_has_zero,
    multiplier,
    mode_y,
    mode_x,
    cval,
    row_start,
    out,
    chunk,
    lo,
    hi,
    inner_first,
    inner_last,
    nine,
    buf,
):
    """Output rows ``first .. last - 1`` of plane ``p`` of ``_depthwise_2d``.

    ``buf`` (``(chunk + hi - lo) * C * M`` values) is the task's buffer for
    border-extended pixels.
    """
    h, w, n_in = src.shape[1], src.shape[2], src.shape[3]
    n_out = n_in * multiplier
    n_taps = tap_y.size
    for r in range(first, last):
        i = row_start + r
        row_out = _flat(out[p, r])
        x0 = 0
        while x0 < w:
            # pixels [inner_first, inner_last) read only pixels inside the image
            if x0 < inner_first:
                n_px = min(chunk, inner_first - x0)
            elif x0 < inner_last:
                n_px = min(chunk, inner_last - x0)
            else:
                n_px = min(chunk, w - x0)
            part = row_out[x0 * n_out : (x0 + n_px) * n_out]
            in_place = inner_first <= x0 < inner_last
            span = (n_px + hi - lo) * n_out
            t = 0
            if nine and in_place:
                q0 = _source_index(i + tap_y[0], h, mode_y)
                q1 = _source_index(i + tap_y[3], h, mode_y)
                q2 = _source_index(i + tap_y[6], h, mode_y)
                if q0 >= 0 and q1 >= 0 and q2 >= 0:
                    at = (x0 + lo) * n_in
                    _depthwise_taps_3x3(
                        part,
                        tap_tiles,
                        tap_x,
                        lo,
                        n_out,
                        _flat(src[p, q0])[at : at + span],
                        _flat(src[p, q1])[at : at + span],
                        _flat(src[p, q2])[at : at + span],
                    )
                    t = n_taps
            while t < n_taps:
                dy = tap_y[t]
                end = t
                while end < n_taps and tap_y[end] == dy:
                    end += 1
                q = _source_index(i + dy, h, mode_y)
                if in_place and q >= 0:
                    at = (x0 + lo) * n_in
                    window = _flat(src[p, q])[at : at + span]
                    _depthwise_taps_row(
                        part, tap_tiles, tap_x, tap_has_zero, t, end, lo, n_out, window, t == 0
                    )
                else:
                    _fill_pixels(
                        buf,
                        src[p, max(q, 0)],
                        x0 + lo,
                        n_px + hi - lo,
                        w,
                        n_in,
                        multiplier,
                        mode_x,
                        q < 0,
                        cval,
                    )
                    _depthwise_taps_row(
                        part, tap_tiles, tap_x, tap_has_zero, t, end, lo, n_out, buf[:span], t == 0
                    )
                t = end
            x0 += n_px


_depthwise_2d_rows = _helper(_depthwise_2d_rows)


def _depthwise_2d(
    src, tap_y, tap_x, tap_tiles, tap_has_zero, multiplier, mode_y, mode_x, cval, row_start, out, chunk, block
):
    """Per-channel 2-D correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M).

    Output channel ``c*M + m`` correlates input channel ``c`` with its own
    kernel, given as one tap list shared by all channels (offsets ``tap_y``,
    ``tap_x``, sorted by ``tap_y``) and per tap the channels' weights tiled
    over a few pixels (``tap_tiles[t]``, a multiple of ``C * M`` long), so the
    inner loop is one flat vector loop over (x, channel), written straight
    into the output row, ``chunk`` pixels at a time. Away from the left and right borders (and with M = 1)
    the taps read the source row in place; elsewhere a border-extended copy.
    A zero weight is left out for its channel (``tap_has_zero`` marks taps
    that have one). Output rows are image rows ``row_start .. row_start + R``,
    for callers working in row bands.
    """
    n_planes, h, w, n_in = src.shape
    n_rows = out.shape[1]
    lo = _lowest(tap_x)
    hi = _highest(tap_x)
    n_taps = tap_y.size
    inner_first = min(w, max(0, -lo)) if multiplier == 1 else w
    inner_last = max(inner_first, min(w, w - hi))
    # a dense 3x3 kernel (rows of three taps, no zero weight) runs in one sweep where
    # all its rows are read in place
    nine = n_taps == 9 and not _any_set(tap_has_zero)
    for t in range(0, n_taps if nine else 0, 3):
        nine = nine and tap_y[t] == tap_y[t + 2]
    n_blocks = (n_rows + block - 1) // block
    for task in prange(n_planes * n_blocks):
        first = (task % n_blocks) * block
        buf = _buffer((chunk + hi - lo) * n_in * multiplier, out)
        _depthwise_2d_rows(
            src,
            task // n_blocks,
            first,
            min(n_rows, first + block),
            tap_y,
            tap_x,
            tap_tiles,
            tap_has_zero,
            multiplier,
            mode_y,
            mode_x,
            cval,
            row_start,
            out,
            chunk,
            lo,
            hi,
            inner_first,
            inner_last,
            nine,
            buf,
        )


depthwise_2d = _Kernel(_depthwise_2d, 10)


def _gather_planar(planar, width, src_plane, q_first, x_first, h, w, multiplier, mode_y, mode_x, cval):
    """``planar[k, j, xx]`` = input channel ``k // multiplier`` at row ``q_first + j``, x ``x_first + xx``.

    Channel-last source rows become one border-extended row per output
    channel (its first ``width`` values), converted to the accumulator's type.
    """
    n_out, n_rows = planar.shape[0], planar.shape[1]
    n_in = src_plane.shape[2]
    to = planar.dtype.type
    inside_first = min(max(-x_first, 0), width)
    inside_last = max(min(w - x_first, width), inside_first)
    for j in range(n_rows):
        q = _source_index(q_first + j, h, mode_y)
        if q < 0:
            for k in range(n_out):
                planar[k, j, :width] = cval
            continue
        flat = _flat(src_plane[q])
        # pixels inside the image: 16 at a time for many channels (each pixel's channels
        # are read together), else one channel at a time
        blocks = (inside_last - inside_first) // 16 if n_in >= 8 else 0
        for b in range(blocks):
            xx = inside_first + 16 * b
            pixels = src_plane[q, x_first + xx : x_first + xx + 16]
            for k in range(n_out):
                dst = planar[k, j, xx : xx + 16]
                c = k // multiplier
                for x in range(16):
                    dst[x] = to(pixels[x, c])
        for k in range(n_out):
            c = k // multiplier
            row = planar[k, j, :width]
            inside = row[inside_first + 16 * blocks : inside_last]
            run = flat[(x_first + inside_first + 16 * blocks) * n_in + c :]
            for xx in range(inside.size):
                inside[xx] = to(run[xx * n_in])
            for xx in range(inside_first):
                qx = _source_index(x_first + xx, w, mode_x)
                row[xx] = cval if qx < 0 else to(flat[qx * n_in + c])
            for xx in range(inside_last, width):
                qx = _source_index(x_first + xx, w, mode_x)
                row[xx] = cval if qx < 0 else to(flat[qx * n_in + c])


def _planar_channel(acc0, acc1, two, rows, top, columns, dense):
    """One output channel of ``_depthwise_planar`` for output row ``top`` (and ``top + 1``).

    ``rows[j]`` is the channel's padded source row ``j``; ``columns[dx, dy]``
    its kernel (``dense[dx]`` when column ``dx`` has no zero weight). Column by
    column, up to eight taps share a sweep. A pair of output rows reads each
    source row of a dense column once for both; every other column goes row by
    row, leaving zero weights out. Either way a row gets the same operations
    in the same order.
    """
    n = acc0.size
    kw, kh = columns.shape
    acc0[:] = 0
    if two:
        acc1[:] = 0
    for dx in range(kw):
        col = columns[dx]
        if two and dense[dx] and kh > 1:
            a = 0
            while a < kh:
                r = top + a
                if kh - a >= 7:  # seven or eight taps of the column in one sweep
                    w_ = col[a : a + 8] if kh - a >= 8 else col[a : a + 7]
                    if kh - a >= 8:
                        _sweep_two8(
                            acc0,
                            acc1,
                            rows[r, dx : dx + n],
                            rows[r + 1, dx : dx + n],
                            rows[r + 2, dx : dx + n],
                            rows[r + 3, dx : dx + n],
                            rows[r + 4, dx : dx + n],
                            rows[r + 5, dx : dx + n],
                            rows[r + 6, dx : dx + n],
                            rows[r + 7, dx : dx + n],
                            rows[r + 8, dx : dx + n],
                            w_[0],
                            w_[1],
                            w_[2],
                            w_[3],
                            w_[4],
                            w_[5],
                            w_[6],
                            w_[7],
                        )
                        a += 8
                    else:
                        _sweep_two7(
                            acc0,
                            acc1,
                            rows[r, dx : dx + n],
                            rows[r + 1, dx : dx + n],
                            rows[r + 2, dx : dx + n],
                            rows[r + 3, dx : dx + n],
                            rows[r + 4, dx : dx + n],
                            rows[r + 5, dx : dx + n],
                            rows[r + 6, dx : dx + n],
                            rows[r + 7, dx : dx + n],
                            w_[0],
                            w_[1],
                            w_[2],
                            w_[3],
                            w_[4],
                            w_[5],
                            w_[6],
                        )
                        a += 7
                    continue
                g = min(4, kh - a)
                _sweep_two(
                    acc0,
                    acc1,
                    g,
                    rows[r, dx : dx + n],
                    rows[r + 1, dx : dx + n],
                    rows[r + min(2, g), dx : dx + n],
                    rows[r + min(3, g), dx : dx + n],
                    rows[r + min(4, g), dx : dx + n],
                    col[a],
                    col[a + min(1, g - 1)],
                    col[a + min(2, g - 1)],
                    col[a + min(3, g - 1)],
                )
                a += g
            continue
        for r in range(2 if two else 1):
            acc = acc0 if r == 0 else acc1
            a = 0
            while a < kh:
                g = 0
                t0 = t1 = t2 = t3 = a
                while g < 4 and a < kh:
                    if col[a] != 0:
                        t0, t1, t2, t3 = _place(g, a, t0, t1, t2, t3)
                        g += 1
                    a += 1
                if g == 0:
                    break
                b = top + r
                _sweep(
                    acc,
                    g,
                    rows[b + t0, dx : dx + n],
                    col[t0],
                    rows[b + t1, dx : dx + n],
                    col[t1],
                    rows[b + t2, dx : dx + n],
                    col[t2],
                    rows[b + t3, dx : dx + n],
                    col[t3],
                )


def _scatter_planar(planar_rows, n_rows, n, out_rows, x_first):
    """``out_rows[r, x_first + x, k]`` = ``planar_rows[r, k, x]`` for ``x < n``: back to channel-last."""
    n_out = planar_rows.shape[1]
    for r in range(n_rows):
        src = planar_rows[r]
        if n_out >= 8:  # each pixel's channels written together
            dst = out_rows[r]
            for x in range(n):
                pix = dst[x_first + x]
                for k in range(n_out):
                    pix[k] = src[k, x]
        else:
            flat = _flat(out_rows[r])
            for k in range(n_out):
                run = flat[x_first * n_out + k :]
                values = src[k, :n]
                for x in range(n):
                    run[x * n_out] = values[x]


_gather_planar = _helper(_gather_planar)
_planar_channel = _helper(_planar_channel)
_scatter_planar = _helper(_scatter_planar)


def _depthwise_planar_rows(
    src,
    p,
    first,
    last,
    columns,
    dense,
    top,
    left,
    multiplier,
    mode_y,
    mode_x,
    cval,
    row_start,
    out,
    chunk,
    planar,
    result,
):
    """Output rows ``first .. last - 1`` of plane ``p`` of ``_depthwise_planar``.

    ``planar`` (C*M, ``last - first + kh - 1``, ``chunk + kw - 1``) and
    ``result`` (2, C*M, ``chunk``) are the task's buffers.
    """
    h, w = src.shape[1], src.shape[2]
    n_out = result.shape[1]
    kw = columns.shape[1]
    for x0 in range(0, w, chunk):
        n_px = min(chunk, w - x0)
        _gather_planar(
            planar,
            n_px + kw - 1,
            src[p],
            row_start + first - top,
            x0 - left,
            h,
            w,
            multiplier,
            mode_y,
            mode_x,
            cval,
        )
        r = first
        while r < last:
            two = last - r > 1
            for k in range(n_out):
                _planar_channel(
                    result[0, k, :n_px], result[1, k, :n_px], two, planar[k], r - first, columns[k], dense[k]
                )
            count = 2 if two else 1
            _scatter_planar(result, count, n_px, out[p, r : r + count], x0)
            r += count


_depthwise_planar_rows = _helper(_depthwise_planar_rows)


def _depthwise_planar(
    src, columns, dense, top, left, multiplier, mode_y, mode_x, cval, row_start, out, chunk, block
):
    """Per-channel 2-D correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M), planar.

    For larger kernels. Each task takes a block of output rows and, a chunk of
    ``chunk`` pixels at a time, gathers the source rows they read into one
    padded row per output channel (``_gather_planar``). Each channel's weights
    are then scalars, and each tap is one vector multiply-add along x, as in
    the separable passes; rows come back to channel-last at the end. Output
    channel ``k`` correlates with ``columns[k]`` (kw, kh), the kernel
    transposed, anchored at row ``top`` and column ``left``. Output rows are
    image rows ``row_start .. row_start + R``.
    """
    n_planes = src.shape[0]
    n_rows = out.shape[1]
    n_out = out.shape[3]
    kw, kh = columns.shape[1], columns.shape[2]
    n_blocks = (n_rows + block - 1) // block
    for task in prange(n_planes * n_blocks):
        first = (task % n_blocks) * block
        planar = _buffer((n_out, min(block, n_rows - first) + kh - 1, chunk + kw - 1), out)
        result = _buffer((2, n_out, chunk), out)
        _depthwise_planar_rows(
            src,
            task // n_blocks,
            first,
            min(n_rows, first + block),
            columns,
            dense,
            top,
            left,
            multiplier,
            mode_y,
            mode_x,
            cval,
            row_start,
            out,
            chunk,
            planar,
            result,
        )


depthwise_planar = _Kernel(_depthwise_planar, 10)


def _depthwise_passes_rows(
    src,
    p,
    first,
    last,
    col_off,
    col_tiles,
    col_zero,
    row_off,
    row_tiles,
    row_zero,
    multiplier,
    mode_y,
    mode_x,
    cval,
    pad_x,
    row_start,
    out,
    chunk,
    buf,
    pixels,
):
    """Output rows ``first .. last - 1`` of plane ``p`` of ``_depthwise_passes_2d``.

    ``buf`` (the padded row, ``(w + hi - lo) * C * M`` values) and ``pixels``
    (``chunk * C * M``) are the task's buffers.
    """
    h, w, n_in = src.shape[1], src.shape[2], src.shape[3]
    n_out = n_in * multiplier
    lo = min(0, _lowest(row_off))  # the buffer holds the row itself and both reaches
    padded = buf.size // n_out
    inner = buf[-lo * n_out : (w - lo) * n_out]
    for r in range(first, last):
        i = row_start + r
        inner[:] = 0
        for a in range(col_off.size):
            q = _source_index(i + col_off[a], h, mode_y)
            for x0 in range(0, w, chunk):
                length = min(chunk, w - x0) * n_out
                target = inner[x0 * n_out : x0 * n_out + length]
                if q >= 0 and multiplier == 1:  # the source row itself, any dtype
                    _fma_flat(
                        target,
                        col_tiles[a, :length],
                        _flat(src[p, q])[x0 * n_in : x0 * n_in + length],
                        col_zero[a],
                    )
                else:
                    _fill_pixels(
                        pixels,
                        src[p, max(q, 0)],
                        x0,
                        length // n_out,
                        w,
                        n_in,
                        multiplier,
                        mode_x,
                        q < 0,
                        cval,
                    )
                    _fma_flat(target, col_tiles[a, :length], pixels[:length], col_zero[a])
        for pp in range(padded):
            if 0 <= pp + lo < w:
                continue
            base = pp * n_out
            if mode_x == CONSTANT:
                for c in range(n_out):
                    buf[base + c] = pad_x[c]
            else:
                s = (_source_index(pp + lo, w, mode_x) - lo) * n_out
                for c in range(n_out):
                    buf[base + c] = buf[s + c]
        row_out = _flat(out[p, r])
        row_out[:] = 0
        for b in range(row_off.size):
            for x0 in range(0, w, chunk):
                length = min(chunk, w - x0) * n_out
                start = (x0 + row_off[b] - lo) * n_out
                _fma_flat(
                    row_out[x0 * n_out : x0 * n_out + length],
                    row_tiles[b, :length],
                    buf[start : start + length],
                    row_zero[b],
                )


_depthwise_passes_rows = _helper(_depthwise_passes_rows)


def _depthwise_passes_2d(
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
    cval,
    pad_x,
    row_start,
    out,
    chunk,
    block,
):
    """Per-channel rank-1 kernels as a column pass and a row pass, channel-last.

    Like ``_depthwise_2d``, but output channel ``k`` correlates with
    ``outer(column_k, row_k)``: the column pass fills a padded row buffer for
    the whole width, the row pass reads it. Weights come tiled over ``chunk``
    pixels; ``pad_x[k]`` is the value outside the image along x in constant
    mode. Zero weights are left out per channel.
    """
    n_planes, w = src.shape[0], src.shape[2]
    n_rows = out.shape[1]
    n_out = out.shape[3]
    padded = w + max(0, _highest(row_off)) - min(0, _lowest(row_off))
    n_blocks = (n_rows + block - 1) // block
    for task in prange(n_planes * n_blocks):
        first = (task % n_blocks) * block
        buf = _buffer(padded * n_out, out)
        pixels = _buffer(chunk * n_out, out)
        _depthwise_passes_rows(
            src,
            task // n_blocks,
            first,
            min(n_rows, first + block),
            col_off,
            col_tiles,
            col_zero,
            row_off,
            row_tiles,
            row_zero,
            multiplier,
            mode_y,
            mode_x,
            cval,
            pad_x,
            row_start,
            out,
            chunk,
            buf,
            pixels,
        )


depthwise_passes_2d = _Kernel(_depthwise_passes_2d, 13)
