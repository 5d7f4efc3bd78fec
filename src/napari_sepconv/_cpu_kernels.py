"""How the CPU kernels are compiled and cached, and what they share.

The kernels are Numba ``@njit`` functions over rows and planes, whose workers run on
Numba's threading layer (``_workers``), one module per family, each imported on first
use (by ``_cpu``), so that a call loads the code of its own family only:
``_line_kernels`` (1-D passes along one axis), ``_separable_kernels`` (fused 2-D
separable terms), ``_edge_kernels`` (3x3 edge magnitudes), ``_direct_kernels`` (direct
2-D correlation), ``_depthwise_kernels`` (per-channel filters), ``_uniform_kernels``
(running sums), ``_narrow_kernels`` (the fused pass's last step along a short first axis)
and ``_cast_kernels`` (conversions); ``_sweeps`` holds the multiply-add
sweeps over rows that several of them inline. This module holds their compilation
(``_jit``, ``_helper``, the versioned on-disk cache), the intrinsics they allocate and
view buffers with, the border tables (``_pad_table``) and the thread-count controls.

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
alone. The blocks are tasks in one queue per call (``_task_queue``): one worker
runs per thread, each taking its own share of the tasks in order, then what is left
of the others' (``_next_task``).
Multiply-adds are fused one by one (``_fmuladd``, never by letting LLVM
contract whole functions, whose choices differ between code paths), so they
round alike in every path. Tests crop and shift images and compare bit for bit.

Compile time: a kernel is compiled for input of its output's float type and
uint8 input, four input and output pairs (``kernel_input`` converts other
types first, with the values the kernel's own conversion gives), helpers once per
argument type (``_HelperDispatcher``), and each kernel as serial set-up that starts
its workers (``_workers``: a ``prange`` loop's parallel lowering cost each kernel
0.6-1.6 s), each a thin loop that takes tasks, allocates its buffers once and calls
one serial helper holding a task's work by its address (``_helper_calls``: Numba
would otherwise link the helper's code into its caller and optimise it again there);
a task's set-up (its border table, a row of ``cval``) is done at the start of the
helper. Small helpers and the sweeps are compiled once per signature and inlined by
LLVM (``_inlined``), not typed again at each call site; so are integer ``min`` and
``max`` (``_imin``, ``_imax``), which Numba would compile again for every set of compiler
options. Helpers take rows as views made in place (``_views``), not through Numba's
slicing code, typed anew at each place. Machine code is cached in
``warmup.cache_dir()``, a folder per version. The quick twins (``_tiers``) and the
helpers only they call are optimised at ``QUICK_OPT_LEVEL``, the other kernels at Numba's.

This module imports Numba and is imported on first use only.
"""

import contextlib
import os
import pickle

import llvmlite.ir
import numba
import numba.extending
import numpy as np
from numba.core import cgutils, types
from numba.core import config as numba_config
from numba.core.caching import (
    CompileResultCacheImpl,
    FunctionCache,
    _CacheLocator,
    _SourceFileBackedLocatorMixin,
)
from numba.core.compiler_lock import global_compiler_lock
from numba.core.imputils import impl_ret_borrowed
from numba.core.registry import CPUDispatcher
from numba.core.runtime import rtsys

from ._boundary import _source_index
from .warmup import cache_dir

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

    def ensure_cache_path(self):
        """A folder to write into or, failing that, a warm one to read from.

        A cache warmed once and then shared read-only (a lab's install, a container
        image) is read; kernels it lacks are compiled in each process, not saved.
        """
        try:
            super().ensure_cache_path()
        except OSError:
            if not (os.path.isdir(self._cache_path) and os.access(self._cache_path, os.R_OK | os.X_OK)):
                raise


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
        try:
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        except Exception as error:  # noqa: BLE001 - a damaged entry is compiled again, not fatal
            _warn_unreadable(self._cache_path, self._py_func.__name__, error)
            return None

    def save_overload(self, sig, data):
        """Save a compiled kernel; a folder that cannot be written keeps it in this process
        only, and an index that cannot be read (a write cut short) is started afresh."""
        try:
            with _locked(os.path.join(self._cache_path, ".lock")):
                try:
                    super().save_overload(sig, data)
                except (EOFError, pickle.UnpicklingError, ValueError, TypeError):
                    with contextlib.suppress(OSError):
                        os.remove(self._cache_file._index_path)
                    super().save_overload(sig, data)
        except OSError:  # read-only, full or vanished: the compiled code serves this process
            pass


def _warn_unreadable(folder, name, error):
    import warnings

    warnings.warn(
        f"napari-sepconv: a cached kernel of {name} in {folder} could not be read "
        f"({type(error).__name__}: {error}); it is compiled again and the entry replaced",
        RuntimeWarning,
        stacklevel=2,
    )


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` between processes (none where ``fcntl`` is missing)."""
    try:
        import fcntl

        handle = open(path, "a")  # noqa: SIM115 - closed below
    except (ImportError, OSError):  # Windows, or a read-only folder: Numba's write-then-rename only
        yield
        return
    with handle:
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


QUICK_OPT_LEVEL = 2
"""LLVM's optimisation level for the quick twins (``_tiers``) and the helpers only they call;
the other kernels are optimised at Numba's (3, or ``NUMBA_OPT``).

Level 3 also unswitches a loop on a condition that does not change in it (how a twin
combines its terms, whether it adds to its output): a copy of the loop for each way, more
code to optimise and to turn into machine code. At level 2 the depthwise twin compiles in
0.5 s less (1.3 s against 1.8-1.9 s) and the separable ones in 0.15-0.2 s less; a twin runs
for the seconds until its fast kernel is compiled, at 0.7-1.6 times its speed at level 3. The
values are the same bits: no level changes the arithmetic (whether ``fmuladd`` is fused is
decided by the code generator, whose level stays Numba's).
"""

_NUMBA_OPT = numba_config.OPT  # Numba's level, as read from NUMBA_OPT when it was imported


class _LevelledDispatcher(CPUDispatcher):
    """A dispatcher whose compiles run at LLVM optimisation level ``opt_level``: Numba's own
    (``None``) or a lower one (``QUICK_OPT_LEVEL``), whatever the level of a compile it
    happens in (a helper compiled because a twin calls it)."""

    sets_level = True  # False: compiled at the level of the compile it happens in

    def __init__(self, *args, opt_level=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.opt_level = opt_level

    def compile(self, sig):
        if not self.sets_level:
            return super().compile(sig)
        with global_compiler_lock:  # no other thread compiles while the level is changed
            saved = numba_config.OPT
            numba_config.OPT = _level(self.opt_level)
            try:
                return super().compile(sig)
            finally:
                numba_config.OPT = saved


def _quick_level(quick):
    """A dispatcher's ``opt_level``: the twins' for a ``quick`` one, else Numba's own."""
    return QUICK_OPT_LEVEL if quick else None


def _level(opt_level):
    """Numba's setting for ``opt_level`` (``None``: its own), never above its own
    (``NUMBA_OPT=0``, for debugging, holds for the twins too)."""
    if opt_level is None or opt_level >= int(_NUMBA_OPT):
        return _NUMBA_OPT
    return numba_config._OptLevel(opt_level)


class _HelperDispatcher(_LevelledDispatcher):
    """A dispatcher that compiles one version per argument *type*, never per literal value.

    Numba types a constant argument (``0``, ``False``) as a literal, and a
    ``prange`` loop's parallel lowering types its body again with other literals:
    each would compile the helper once more. Unliteral types keep it to one
    compile per signature.
    """

    def get_call_template(self, args, kws):
        args = tuple(types.unliteral(a) for a in args)
        kws = {k: types.unliteral(v) for k, v in kws.items()}
        return super().get_call_template(args, kws)

    def __call__(self, *args, **kwargs):
        """Called from Python (a test, host code): the Python function itself. The compiled
        helper has no Python entry point, and Numba's dispatcher would call one that is not
        there: the process would crash."""
        return self.py_func(*args, **kwargs)


def _helper(func, quick=False, **options):
    """A helper the kernels call: compiled once per signature (not inlined, which would
    multiply the kernels' compile time) and cached like them. A helper that only the
    ``quick`` twins call is compiled at their level (``QUICK_OPT_LEVEL``).

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
            opt_level=_quick_level(quick),
        )
    )


class _InlinedDispatcher(_HelperDispatcher):
    """A small helper's dispatcher: compiled once per signature, and inlined by LLVM into
    each caller (Numba's ``forceinline``: the function is marked ``alwaysinline``).

    Numba's own ``inline="always"`` copies a function's Python-level IR into each
    call site, where it is typed and lowered again: a sweep inlined into a sweep
    inlined into a pass was typed once for every path down to it. Compiled once per
    signature, a helper reaches its callers as LLVM IR, which LLVM inlines before it
    optimises the loops around it: the same operations in the same order (LLVM does
    not reorder floating-point arithmetic here), compiled in less time.

    Such a helper is compiled without reference counting, so it may return no array,
    not even one it was given (its caller would release a reference it never took):
    a helper that does is refused when it is compiled.

    Its arrays are declared not to overlap (LLVM's ``noalias``, which inlining keeps as
    scopes on the caller's loads and stores): the arrays a helper writes never share
    memory with the other arrays it is given, as every caller's are task buffers or
    output rows apart from the rows it reads (``_cpu.writable_target``). Arrays it only
    reads may be one and the same. The vectorised loops then check no overlap at run
    time and keep no scalar copy for it: a sweep over a 256-sample row takes less time,
    and a kernel less code to compile (``gaussian`` 1 s less).
    """

    # Optimised again in each caller, at the caller's level (``_LevelledDispatcher``).
    sets_level = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._compiler._customize_flags = _assume_no_overlap

    def add_overload(self, cres):
        if _holds_array(cres.signature.return_type):
            raise TypeError(
                f"{self.py_func.__name__} returns {cres.signature.return_type}: a helper compiled "
                "by _inlined may return no array (inline it with numba.njit(inline='always'))"
            )
        super().add_overload(cres)


def _assume_no_overlap(flags):
    """Compiler flags marking a function's pointer arguments ``noalias`` (``_InlinedDispatcher``)."""
    flags.noalias = True
    return flags


def _holds_array(numba_type):
    if isinstance(numba_type, types.Array):
        return True
    return isinstance(numba_type, types.BaseTuple) and any(_holds_array(t) for t in numba_type)


def _inlined(func, **options):
    """A small helper inlined into its callers by LLVM (``_InlinedDispatcher``), compiled
    once per signature when a caller compiles; as ``_helper``, without reference counting,
    and with Numba's ``options`` (``error_model="numpy"`` for a worker's helper, whose
    divisions then need no check, as in the worker itself)."""
    return _InlinedDispatcher(
        func,
        targetoptions={
            "nopython": True,
            "no_cpython_wrapper": True,
            "no_cfunc_wrapper": True,
            "_nrt": False,
            "forceinline": True,
            **options,
        },
    )


# The border index maths (``_boundary``), inlined into every kernel that reads past a border.
_source_index = _inlined(_source_index)


def _jit(func, quick=False, **options):
    """A kernel: ``@njit`` (with Numba's ``options``) with the versioned on-disk cache where
    one can be written, compiled at ``QUICK_OPT_LEVEL`` for a ``quick`` twin (``_tiers``). Its
    workers run on the threading layer without a parallel loop (``_workers``)."""
    return _enable_cache(
        _LevelledDispatcher(
            func,
            targetoptions={"nopython": True, "nogil": True, "boundscheck": None, **options},
            opt_level=_quick_level(quick),
        )
    )


def load_for(dispatcher, args):
    """Load ``dispatcher``'s code for the types of ``args`` (from the cache, or compile it).

    A first call through the dispatcher itself would first run the Numba entry
    points of every installed package (``importlib.metadata`` reads the metadata of
    all of them: about 20 ms of a first call that loads a cached kernel, more where
    many packages are installed), then type its arguments in Python. Given the
    signature, Numba goes straight to the cache; a compile still runs the entry
    points. Later calls take Numba's C dispatch, which types arrays as
    ``_argument_type`` does.
    """
    dispatcher.compile(tuple(_argument_type(a) for a in args))


def _argument_type(value):
    """Numba's type of a kernel argument, as its dispatcher would find it."""
    if type(value) is np.ndarray:
        layout = "C" if value.flags.c_contiguous else "F" if value.flags.f_contiguous else "A"
        return types.Array(
            numba.from_dtype(value.dtype), value.ndim, layout, readonly=not value.flags.writeable
        )
    return numba.typeof(value, numba.core.typing.typeof.Purpose.argument)


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
    """A kernel (``_jit``) whose input ``inputs`` converts by ``kernel_input`` before a call.

    ``out_arg`` is the position of the output array, whose float type the
    input is converted for. The compiled dispatcher is ``dispatcher``. A kernel
    that ``takes_threads`` takes the number of threads to run on as its last
    argument (``_limit_threads``). A kernel that ``calls_helper`` calls its task's
    helper by address (``_helper_calls``) and takes the table of addresses and a
    one-element array for a missing key after its other arguments (``_cpu.run``).
    A kernel that ``reads_any`` input type (the running sums, ``_uniform_kernels``) gets its
    input as it is; ``jit`` compiles ``func``, at the twins' level for a ``quick`` twin
    (``QUICK_OPT_LEVEL``).
    """

    def __init__(
        self, func, out_arg, takes_threads=False, calls_helper=False, reads_any=False, jit=_jit, quick=False
    ):
        self.dispatcher = jit(func, quick=quick)
        self.out_arg = out_arg
        self.takes_threads = takes_threads
        self.calls_helper = calls_helper
        self.reads_any = reads_any
        self.__name__ = func.__name__.lstrip("_")
        self.__doc__ = func.__doc__

    def inputs(self, args, convert=None):
        """The call's arguments with its input (``args[0]``) converted by ``kernel_input``
        (with ``convert``) where its type or layout asks for it (``_cpu.run`` calls
        ``dispatcher`` with them)."""
        src = args[0]
        out_dtype = args[self.out_arg].dtype
        if (self.reads_any or reads_as_is(src.dtype, out_dtype)) and src.flags.c_contiguous:
            return args
        if self.reads_any:
            return (np.ascontiguousarray(src), *args[1:])
        return (kernel_input(src, out_dtype, convert), *args[1:])

    def dispatcher_for(self, args):
        """The dispatcher a call with ``args`` runs (``_tiers.TieredKernel`` chooses)."""
        return self.dispatcher

    def prepare(self, signature):
        """Compile (or load) the kernel for ``signature``, argument types."""
        self.dispatcher.compile(signature)


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
        return fmuladd_call(builder, *args)

    return a(a, b, c), codegen


def fmuladd_call(builder, a, b, c):
    """A call of LLVM's ``fmuladd`` on ``a``, ``b`` and ``c``: floats of one type (``_fmuladd``)
    or vectors of them (``_vector_sweeps``), so that every path of a kernel rounds alike."""
    ty = a.type
    function_type = llvmlite.ir.FunctionType(ty, [ty, ty, ty])
    if isinstance(ty, llvmlite.ir.VectorType):  # llvmlite names no vector overload itself
        bits = 32 if isinstance(ty.element, llvmlite.ir.FloatType) else 64
        name = f"llvm.fmuladd.v{ty.count}f{bits}"
        return builder.call(cgutils.get_or_insert_function(builder.module, function_type, name), [a, b, c])
    return builder.call(builder.module.declare_intrinsic("llvm.fmuladd", [ty], function_type), [a, b, c])


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
        if ndim == 1:
            sizes = [context.cast(builder, args[0], signature.args[0], types.intp)]
        else:
            values = cgutils.unpack_tuple(builder, args[0], ndim)
            sizes = [context.cast(builder, v, t, types.intp) for v, t in zip(values, signature.args[0])]
        return _allocate(context, builder, dtype, sizes)._getvalue()

    return array_type(shape, like), codegen


def _allocate(context, builder, dtype, sizes):
    """The code of ``_buffer``: a new C-ordered array of ``dtype`` and ``sizes`` (LLVM values)."""
    from numba.np.arrayobj import make_array, populate_array

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
    array = make_array(types.Array(dtype, len(sizes), "C"))(context, builder)
    populate_array(
        array,
        data=data,
        shape=cgutils.pack_array(builder, sizes),
        strides=cgutils.pack_array(builder, strides[::-1]),
        itemsize=context.get_constant(types.intp, itemsize),
        meminfo=meminfo,
    )
    return array


@numba.extending.intrinsic
def _claim(typingctx, counters, index):
    """``counters[index]`` before adding 1 to it, in one atomic step (``_next_task``)."""
    if not (
        isinstance(counters, types.Array)
        and counters.dtype == types.int64
        and counters.layout == "C"
        and counters.mutable
        and isinstance(index, types.Integer)
    ):
        return None

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array

        data = make_array(signature.args[0])(context, builder, value=args[0]).data
        at = context.cast(builder, args[1], signature.args[1], types.intp)
        one = llvmlite.ir.Constant(llvmlite.ir.IntType(64), 1)
        return builder.atomic_rmw("add", builder.gep(data, [at]), one, "monotonic")

    return types.int64(counters, index), codegen


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


def _imin(a, b):
    """The smaller of the integers ``a`` and ``b``, as Python's ``min`` gives it.

    Numba compiles its own ``min`` and ``max`` again for each set of compiler options
    that calls them (the kernels, their workers, helpers and inlined helpers each have
    theirs): nine times in a cold compile of the fused separable family, about 0.3 s.
    These two are compiled once per signature and inlined by LLVM (``_inlined``).
    """
    return b if b < a else a


def _imax(a, b):
    """The larger of the integers ``a`` and ``b``, as Python's ``max`` gives it (``_imin``)."""
    return b if b > a else a


_imin = _inlined(_imin)
_imax = _inlined(_imax)


def _lowest(values):
    """The smallest of ``values`` (not empty).

    A loop, not ``values.min()``: Numba's array reductions keep a reference to
    the module that implements them, which a kernel loaded from the cache
    imports again, and that one imports SciPy's linear algebra (about 0.4 s of a
    first call).
    """
    found = values[0]
    for v in values:
        found = _imin(found, v)
    return found


def _highest(values):
    """The largest of ``values`` (not empty); a loop, as ``_lowest`` says why."""
    found = values[0]
    for v in values:
        found = _imax(found, v)
    return found


def _any_set(flags):
    """Whether any of ``flags`` is set; a loop, as ``_lowest`` says why."""
    for f in flags:
        if f:
            return True
    return False


_lowest = _inlined(_lowest)
_highest = _inlined(_highest)
_any_set = _inlined(_any_set)


# --------------------------------------------------------------------------
# Padded lines: the border tables the kernels share
# --------------------------------------------------------------------------


@numba.extending.intrinsic
def _opaque(typingctx, value):
    """The integer ``value`` itself, passed through an empty inline-assembly statement that
    LLVM cannot see through: a loop that uses it stays a plain loop (``_pad_table``)."""
    if not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value_type = context.get_value_type(signature.args[0])
        function_type = llvmlite.ir.FunctionType(value_type, [value_type])
        return builder.asm(function_type, "", "=r,0", [args[0]], side_effect=False)

    return value(value), codegen


def _pad_table(source, lo, n, mode):
    """``source[p]`` = ``_source_index(p + lo, n, mode)`` for the positions ``p`` of a padded
    line that lie beyond the line (-1: the constant); the others are left unset. Made once
    per task for all its rows, whose pads would otherwise each look it up again, an integer
    division per padded sample.

    The pads are a few samples long: LLVM vectorised these loops for every mode, 1,600
    instructions with 84 divisions, compiled again in each task helper that inlines
    them. Their positions go through ``_opaque``, which keeps each loop scalar.
    """
    inside_first = _imin(_imax(-lo, 0), source.size)
    inside_last = _imax(_imin(n - lo, source.size), inside_first)
    for p in range(inside_first):
        source[p] = _source_index(_opaque(p) + lo, n, mode)
    for p in range(inside_last, source.size):
        source[p] = _source_index(_opaque(p) + lo, n, mode)


_pad_table = _helper(_pad_table)


def _fill_padded_row(buf, row, lo, source, cval):
    """``buf[p]`` = the row extended by the border mode at position ``p + lo``, the samples
    beyond the row read from ``source`` (``_pad_table``)."""
    n = row.size
    inside_first = _imin(_imax(-lo, 0), buf.size)
    inside_last = _imax(_imin(n - lo, buf.size), inside_first)
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


# --------------------------------------------------------------------------
# Thread counts from inside a kernel
# --------------------------------------------------------------------------


@numba.extending.intrinsic
def _thread_count(typingctx):
    """This thread's parallel thread count, as ``numba.get_num_threads`` (its C function).

    Called by symbol, which the threading layer registers, where Numba's own
    overload embeds a ctypes address that keeps a kernel out of the on-disk cache.
    """

    def codegen(context, builder, signature, args):
        _start_threading_layer(context)
        return _thread_count_value(builder)

    return types.intp(), codegen


def _thread_count_value(builder):
    """The code of ``_thread_count``: a call of the threading layer's ``get_num_threads``
    (declared as Numba's parallel lowering declares it, which shares the module)."""
    fn = cgutils.get_or_insert_function(
        builder.module, llvmlite.ir.FunctionType(cgutils.intp_t, []), "get_num_threads"
    )
    return builder.call(fn, [])


@numba.extending.intrinsic
def _set_thread_count(typingctx, count):
    """``numba.set_num_threads(count)`` for this thread, by symbol (see ``_thread_count``);
    ``count`` must lie between 1 and the threads started."""

    def codegen(context, builder, signature, args):
        _start_threading_layer(context)
        fn = cgutils.get_or_insert_function(
            builder.module,
            llvmlite.ir.FunctionType(llvmlite.ir.VoidType(), [llvmlite.ir.IntType(32)]),
            "set_num_threads",
        )
        builder.call(fn, [builder.trunc(args[0], llvmlite.ir.IntType(32))])
        return context.get_dummy_value()

    return types.none(types.intp), codegen


def _start_threading_layer(context):
    """Start Numba's threading layer, which registers the symbols the kernels call, now (in
    the code generation of an intrinsic calling one, with its lowering ``context``) and
    whenever the code being lowered is loaded from the cache, before it is linked: a kernel
    without a parallel loop (``_workers``) does not get this from Numba's parallel lowering.
    """
    from numba.core.typed_passes import _reload_parfors
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()
    context.active_code_library._reload_init.add(_reload_parfors)


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


_limit_threads = _inlined(_limit_threads)


# --------------------------------------------------------------------------
# Tasks: one queue per call, a range of it per thread
# --------------------------------------------------------------------------


@numba.extending.intrinsic
def _task_queue(typingctx, n_tasks):
    """The queue of a kernel's ``n_tasks`` tasks: one counter per thread the call runs on
    (its size: the workers, ``_workers``), each at the start of an even,
    contiguous share of the tasks (``_next_task``)."""
    if not isinstance(n_tasks, types.Integer):
        return None
    queue_type = types.Array(types.int64, 1, "C")

    def codegen(context, builder, signature, args):
        _start_threading_layer(context)
        n = context.cast(builder, args[0], signature.args[0], types.int64)
        threads = context.cast(builder, _thread_count_value(builder), types.intp, types.int64)
        workers = builder.select(builder.icmp_signed("<", threads, n), threads, n)
        queue = _allocate(context, builder, types.int64, [workers])
        data = queue.data
        with cgutils.for_range(builder, workers) as loop:
            start = builder.sdiv(builder.mul(loop.index, n), workers)
            builder.store(start, builder.gep(data, [loop.index]))
        return queue._getvalue()

    return queue_type(n_tasks), codegen


def _next_task(queue, worker, n_tasks):
    """The next task for ``worker`` (``_task_queue``), or ``n_tasks`` when none is left.

    A worker takes the tasks of its own share in order, as the threading layers would
    hand them to it, then the rest of the other shares: a thread that another process
    holds up leaves its remaining tasks to the others instead of the whole call
    waiting for it (the threading layers split a loop evenly before it starts). Each
    task is taken once: the counters are advanced atomically (``_claim``).
    """
    workers = queue.size
    for k in range(workers):
        v = worker + k - (workers if worker + k >= workers else 0)
        task = _claim(queue, v)
        if task < (v + 1) * n_tasks // workers:
            return task
    return n_tasks


_next_task = _inlined(_next_task)
