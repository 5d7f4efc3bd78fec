"""GPU engine: the CUDA twin of ``_cpu``, on Numba's CUDA target (``numba-cuda``).

The engine functions at the bottom have ``_cpu``'s names and arguments and
work on Numba device arrays; the kernels are in ``_cuda_kernels``. Host
arrays are copied in by :func:`to_kernel_input`; other GPU arrays (CuPy,
PyTorch, anything with ``__cuda_array_interface__``) are used in place
through :func:`as_device`, and :func:`like_input` gives results back as the
caller's kind of array. Kernels are compiled on first use, one per kernel,
variant and argument types.

Tile sizes: a kernel's shared-memory tile grows with the filter's reach. Where
it would not fit in :data:`SHARED_BYTES`, a variant reading global memory
runs instead (or, for the fused separable filter, one pass per axis), so any
kernel length works, as on the CPU.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same code runs
on the CPU, slowly; it is for tests only, and ``backend='auto'`` never uses it
for host arrays (see ``_backend``).

This module imports ``numba.cuda``; ``_backend`` imports it on first use only.
"""

import contextlib
import ctypes
import functools
import math
import operator
import threading
from collections import OrderedDict

import numba
import numpy as np
from numba import cuda
from numba.cuda import config as _cuda_config

from . import _casting, _cuda_kernels
from ._cuda_kernels import BX, BY, MAGNITUDE, SUM, THREADS, TX, TY
from ._lowering import PreparedArrays, depthwise_taps, edge_operator_3x3, shared_taps, symmetry
from ._validation import KERNEL_INPUT_TYPES

# Dynamic shared memory a block may use without opting in to more (all GPUs
# Numba supports); larger tiles take the global-memory variants.
SHARED_BYTES = 48 * 1024
# Largest grid y and z dimensions; kernels loop over the tiles beyond.
MAX_GRID_YZ = 65535
# Blocks of the 1-D (flat) kernels; grid-stride loops cover the rest.
MAX_FLAT_BLOCKS = 1 << 16

name = "cuda"
# Unfiltered last axes stay where they are on the GPU (``_engine.Engine.narrow_inner``).
narrow_inner = 0

INSTALL_HINT = 'pip install "napari-sepconv[cuda]"'

_int = np.int64
_i32 = np.int32

# Tests set this to a list to record ``(kernel, variant, argument types)`` per launch
# (variant ``"specialised"`` for the kernels generated for a plan).
launch_log = None


def simulated():
    """True under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return bool(_cuda_config.ENABLE_CUDASIM)


@functools.lru_cache(maxsize=None)
def unavailable_reason():
    """Why no GPU is usable here, with the fix; ``None`` when one is.

    The simulator counts as usable (it runs kernels), but ``_backend`` never
    picks it by itself for host arrays.
    """
    if simulated():
        return None
    from numba.cuda.cudadrv import driver as drv
    from numba.cuda.cudadrv import nvvm

    try:
        driver_ok = drv.driver.is_available
    except Exception:  # noqa: BLE001 - the driver reports every failure its own way
        driver_ok = False
    if not driver_ok:
        error = (drv.driver.initialization_error or "unknown error").strip()
        if "DISABLE_CUDA" in error:
            return "CUDA is disabled by NUMBA_DISABLE_CUDA=1 in the environment; unset it to use the GPU"
        if "cannot be found" in error or "libcuda" in error.lower():
            return (
                "no NVIDIA driver: the CUDA driver library (libcuda) could not be found; "
                "install the NVIDIA driver on a machine with an NVIDIA GPU, or use "
                "backend='cpu'"
            )
        if "NO_DEVICE" in error:
            return (
                "no CUDA GPU: the NVIDIA driver found no device (check "
                "CUDA_VISIBLE_DEVICES and nvidia-smi), or use backend='cpu'"
            )
        return f"the CUDA driver failed to initialise ({error}); or use backend='cpu'"
    try:
        n_devices = len(cuda.gpus)
    except Exception as exc:  # noqa: BLE001
        return f"no CUDA GPU could be listed ({exc}); or use backend='cpu'"
    if n_devices == 0:
        return (
            "no CUDA GPU: the NVIDIA driver found no device (check "
            "CUDA_VISIBLE_DEVICES and nvidia-smi), or use backend='cpu'"
        )
    if not nvvm.is_available():
        return (
            "numba-cuda cannot find the CUDA compiler libraries (NVVM); install them "
            f"with {INSTALL_HINT} (numba-cuda[cu12])"
        )
    return None


# --------------------------------------------------------------------------
# Device arrays: recognising, viewing, converting
# --------------------------------------------------------------------------


_tls = threading.local()  # the stream and allocator of the current call, per thread


class DeviceArray:
    """A strided view of device memory: address, shape, byte strides, dtype, and its owner.

    What the engine computes on for GPU input that is not a Numba array
    (CuPy, PyTorch, anything with ``__cuda_array_interface__``): the owner is
    the caller's array, or an output the caller's library allocated. Made and
    consumed inside one call; :func:`like_input` turns results back into the
    caller's kind of array.
    """

    __slots__ = ("ptr", "shape", "strides", "dtype", "owner")

    def __init__(self, ptr, shape, strides, dtype, owner):
        self.ptr = ptr
        self.shape = shape
        self.strides = strides
        self.dtype = dtype
        self.owner = owner

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def ndim(self):
        return len(self.shape)

    def is_c_contiguous(self):
        return self.strides == _c_strides(self.shape, self.dtype.itemsize)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], tuple):
            shape = shape[0]
        shape = tuple(map(int, shape))
        if -1 in shape:
            missing = shape.index(-1)
            known = -math.prod(shape)  # the product of the others
            shape = (*shape[:missing], self.size // known, *shape[missing + 1 :])
        return DeviceArray(self.ptr, shape, _c_strides(shape, self.dtype.itemsize), self.dtype, self.owner)

    def view(self, dtype):
        return DeviceArray(self.ptr, self.shape, self.strides, np.dtype(dtype), self.owner)

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self.shape,
            "strides": self.strides,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "version": 3,
            "stream": None,
        }

    def numba(self):
        """A Numba device array over the same memory (no copy, no synchronisation)."""
        return cuda.as_cuda_array(self, sync=False)

    def copy_to_host(self):
        return self.numba().copy_to_host()

    def __getitem__(self, index):
        return self.numba()[index]


class DeviceInput:
    """GPU input (CuPy, PyTorch, ...) as the plans see it: shape, dtype, address, stream.

    Read from ``__cuda_array_interface__`` alone, so taking the input costs no
    synchronisation and no Numba array.
    """

    __slots__ = ("source", "ptr", "shape", "strides", "dtype", "stream", "kind", "__cuda_array_interface__")

    def __init__(self, source, interface):
        self.source = source
        self.__cuda_array_interface__ = interface
        self.shape = tuple(interface["shape"])
        self.dtype = np.dtype(interface["typestr"])
        self.strides = interface.get("strides") or _c_strides(self.shape, self.dtype.itemsize)
        self.ptr = interface["data"][0]
        self.stream = interface.get("stream") or 0
        self.kind = _kind(source)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)


@functools.lru_cache(maxsize=256)
def _c_strides(shape, item):
    strides = []
    step = item
    for n in reversed(shape):
        strides.append(step)
        step *= max(int(n), 1)
    return tuple(reversed(strides))


def _ptr(arr):
    """Device address of an array's first element."""
    if type(arr) is DeviceArray:
        return arr.ptr
    return arr.device_ctypes_pointer.value or 0


def _strides(arr):
    return arr.strides if type(arr) is DeviceArray else tuple(arr.strides)


def _is_c(arr):
    return arr.is_c_contiguous()


def as_input(x):
    """GPU input for a planned filter: a :class:`DeviceInput` unless ``x`` is a Numba array."""
    if is_numba_array(x) or type(x) is DeviceInput:
        return x
    interface = x.__cuda_array_interface__
    return DeviceInput(x, interface)


class _CallScope:
    """The stream and the allocator of one call on GPU input; restores the previous ones."""

    __slots__ = ("previous",)

    def __init__(self, image):
        self.previous = (getattr(_tls, "stream", 0), getattr(_tls, "alloc", None))
        if type(image) is DeviceInput:
            _tls.stream = image.stream
            _tls.alloc = image
        else:
            _tls.stream = 0
            _tls.alloc = None

    def close(self):
        _tls.stream, _tls.alloc = self.previous


def call_scope(image):
    """Launches and allocations of the coming call follow GPU input ``image``; ``.close()`` ends it."""
    return _CallScope(image)


_torch_dtypes = {}


def _allocate(template, shape, dtype):
    """An array of the caller's library (CuPy's or PyTorch's pool) as a :class:`DeviceArray`."""
    if template.kind == "cupy":
        import cupy

        owner = cupy.empty(shape, dtype)
        ptr = owner.data.ptr
    elif template.kind == "torch":
        import torch

        tdtype = _torch_dtypes.get(dtype)
        if tdtype is None:
            tdtype = _torch_dtypes[dtype] = torch.from_numpy(np.empty(0, dtype)).dtype
        owner = torch.empty(shape, dtype=tdtype, device=template.source.device)
        ptr = owner.data_ptr()
    else:
        owner = cuda.device_array(shape, dtype)
        ptr = _ptr(owner)
    return DeviceArray(ptr, shape, _c_strides(shape, dtype.itemsize), dtype, owner)


def is_numba_array(x):
    """A Numba device array, real or simulated."""
    return bool(getattr(x, "__cuda_ndarray__", False))


def is_device(x):
    return is_numba_array(x) or hasattr(x, "__cuda_array_interface__")


def _kind(x):
    """``'cupy'``, ``'torch'`` or ``None``: the library of a foreign GPU array."""
    root = type(x).__module__.partition(".")[0]
    return root if root in ("cupy", "torch") else None


def fill_target(x, name):
    """A Numba device array over the memory of the GPU array ``x``, which a result is then
    written into: never a copy (``as_device`` reads a reversed CuPy view through one), so
    a view that is not C-contiguous (strided, reversed) is refused, naming ``name``."""
    reversed_view = _kind(x) == "cupy" and any(s < 0 for s in x.strides)
    target = None if reversed_view else as_device(x)
    if target is None or not target.is_c_contiguous():
        raise ValueError(
            f"{name}: a GPU array to fill must be C-contiguous (a strided or reversed view cannot be)"
        )
    return target


def as_device(x):
    """A Numba device array over the memory of GPU array ``x`` (no copy, but of a CuPy
    view with a negative stride, read through a contiguous copy)."""
    if is_numba_array(x):
        return x
    if _kind(x) == "cupy" and any(s < 0 for s in x.strides):
        import cupy

        x = cupy.ascontiguousarray(x)
    array = cuda.as_cuda_array(x)
    if any(s < 0 for s in array.strides):
        raise ValueError("GPU arrays with negative strides are not supported; pass a copy")
    return array


def like_input(result, image):
    """``result`` as the kind of array ``image`` is.

    Host input gives a NumPy array; CuPy and PyTorch input give a CuPy array
    or tensor over the same memory (an output their own library allocated,
    given back as it is, or a view of it); other GPU input gives a Numba array.
    Results that are not device arrays (a filled host ``output``, dask) pass.
    """
    if type(result) is DeviceArray:
        return _as_kind(result, image)
    if type(result) is np.ndarray or not is_numba_array(result):
        return result
    if not is_device(image):
        return result.copy_to_host()
    kind = _kind(image)
    if kind == "cupy":
        import cupy

        return cupy.asarray(result)
    if kind == "torch":
        import torch

        return torch.as_tensor(result, device=image.device)
    return result


def _as_kind(result, image):
    """A :class:`DeviceArray` result as the caller's array, without a copy where it can."""
    owner = result.owner
    kind = _kind(owner)
    if kind == "cupy":
        if result.ptr == owner.data.ptr and result.shape == owner.shape and result.strides == owner.strides:
            return owner
        import cupy

        return cupy.ndarray(
            result.shape,
            result.dtype,
            memptr=owner.data + (result.ptr - owner.data.ptr),
            strides=result.strides,
        )
    if kind == "torch":
        item = result.dtype.itemsize
        if result.ptr == owner.data_ptr() and result.shape == tuple(owner.shape):
            if result.strides == tuple(s * item for s in owner.stride()):
                return owner
        return owner.as_strided(
            result.shape, [s // item for s in result.strides], (result.ptr - owner.data_ptr()) // item
        )
    numba_result = result.numba()
    return numba_result if is_device(image) else numba_result.copy_to_host()


def _view(arr, shape, strides):
    """A view of ``arr``'s memory from its first element (positive byte strides)."""
    shape, strides = tuple(map(int, shape)), tuple(map(int, strides))
    if type(arr) is DeviceArray:
        return DeviceArray(arr.ptr, shape, strides, arr.dtype, arr.owner)
    if simulated():
        return type(arr)(np.lib.stride_tricks.as_strided(arr._ary, shape, strides))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(shape, strides, arr.dtype, gpu_data=arr.gpu_data)


def _moveaxis(arr, source, destination):
    """``np.moveaxis`` as a view."""
    ndim = len(arr.shape)
    source %= ndim
    order = list(range(ndim))
    del order[source]
    order.insert(destination % ndim, source)
    pick = operator.itemgetter(*order)
    shape, strides = pick(arr.shape), pick(arr.strides)
    if ndim == 1:
        shape, strides = (shape,), (strides,)
    return _view(arr, shape, strides)


def contiguous(arr):
    """``arr``, or a C-contiguous copy of it made on the device."""
    if arr.is_c_contiguous():
        return arr
    item = arr.dtype.itemsize
    span = 1 + sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) // item
    flat = _view(arr, (span,), (item,))
    out = empty(arr.shape, arr.dtype)
    _flat_launch(
        "gather",
        arr.dtype,
        flat,
        _const(arr.shape, _int),
        _const([s // item for s in arr.strides], _int),
        out.reshape(-1),
    )
    return out


# --------------------------------------------------------------------------
# Launching
# --------------------------------------------------------------------------


# Launching. Kernels are compiled for explicit signatures, on first use (a
# variant is compiled when a call needs it, never at import), and launched
# through the driver with their parameters marshalled here: no argument typing
# per launch, no Numba dispatcher, no allocation. Under the simulator they run
# through Numba's dispatcher, which is the simulator.

_kernels = {}
_kernels_lock = threading.Lock()


class _Compiled:
    """A compiled kernel: the Numba dispatcher and, on a GPU, the driver's kernel and the
    local memory a thread of it uses (registers spilled, for these kernels)."""

    __slots__ = ("dispatcher", "cukernel", "local_bytes")

    def __init__(self, dispatcher, cukernel, local_bytes=0):
        self.dispatcher = dispatcher
        self.cukernel = cukernel
        self.local_bytes = local_bytes


def _compile(pyfunc, argtypes, bounds=None):
    """``pyfunc`` compiled for ``argtypes`` (Numba types), with optional launch bounds."""
    if simulated():
        return _Compiled(cuda.jit(pyfunc), None)
    from numba.core import types

    dispatcher = cuda.jit(types.void(*argtypes), launch_bounds=bounds)(pyfunc)
    overload = next(iter(dispatcher.overloads.values()))
    cufunc = overload._codelibrary.get_cufunc()
    return _Compiled(dispatcher, cufunc.kernel, cufunc.attrs.local)


def _kernel(key, make, argtypes, bounds=None, roomier=None):
    """The compiled kernel of ``key``; ``make()`` gives its Python function on the first call.

    Where ``bounds`` make the kernel spill registers and ``roomier`` bounds are given
    (fewer blocks per SM, so more registers a thread), it is compiled again with those, so
    that no kernel runs with registers spilled to local memory.
    """
    kernel = _kernels.get(key)
    if kernel is None:
        with _kernels_lock:
            kernel = _kernels.get(key)
            if kernel is None:
                pyfunc = make()
                kernel = _compile(pyfunc, argtypes, bounds)
                if roomier is not None and kernel.local_bytes:
                    kernel = _compile(pyfunc, argtypes, roomier)
                _kernels[key] = kernel
    return kernel


@functools.lru_cache(maxsize=None)
def _nb(dtype):
    return numba.from_dtype(np.dtype(dtype))


@functools.lru_cache(maxsize=None)
def _array_type(dtype, ndim, contiguous=True):
    from numba.core import types

    return types.Array(_nb(dtype), ndim, "C" if contiguous else "A")


_CTYPES = {
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint8): ctypes.c_uint8,
}


def _scalar_type(value):
    if isinstance(value, (bool, np.bool_)):
        return numba.boolean
    if isinstance(value, np.generic):
        return _nb(value.dtype)
    return numba.int64 if isinstance(value, int) else numba.float64


def _argtype(value):
    """The Numba type a kernel is compiled for to take ``value``, without ``numba.typeof``."""
    if isinstance(value, np.generic) or isinstance(value, (int, float)):
        return _scalar_type(value)
    return _array_type(value.dtype, len(value.shape), _is_c(value))


def _marshal(value, params):
    """Append ``value`` as Numba's kernel ABI lays it out (arrays: 5 + 2 * ndim parameters)."""
    if isinstance(value, np.generic):
        params.append(_CTYPES[value.dtype](value))
    elif isinstance(value, float):
        params.append(ctypes.c_double(value))
    elif isinstance(value, int):
        params.append(value)
    else:
        shape = tuple(value.shape)
        item = value.dtype.itemsize
        params += (0, 0, math.prod(shape), item, _ptr(value))
        params += shape
        params += _strides(value)


def _flat(arr, params):
    """Append a C-contiguous array as a flat 1-D kernel argument (7 parameters)."""
    size = arr.size
    item = arr.dtype.itemsize
    params += (0, 0, size, item, _ptr(arr), size, item)


_configs = {}
_streams = {}


def _config(grid, block, shared):
    key = (grid, block, shared)
    config = _configs.get(key)
    if config is None:
        from cuda.core import LaunchConfig

        config = _configs[key] = LaunchConfig(grid=grid, block=block, shmem_size=shared)
    return config


def _stream(handle):
    """The driver stream of a ``__cuda_array_interface__`` stream handle (0: the default)."""
    stream = _streams.get(handle)
    if stream is None:
        from numba.cuda.cudadrv import driver

        stream = _streams[handle] = (
            driver._to_core_stream(0) if not handle else driver.ExperimentalStream.from_handle(handle)
        )
    return stream


def _driver_launch(stream, config, cukernel, *params):
    """``cuda.core.launch``, the call Numba's own kernels are launched with."""
    from numba.cuda import dispatcher

    dispatcher.launch(stream, config, cukernel, *params)


def _run(kernel, grid, block, shared, params, sim_args):
    """Launch a compiled kernel on the stream of the current call."""
    if kernel.cukernel is None:  # the simulator
        kernel.dispatcher[grid, block, 0, int(shared)](*sim_args)
        return
    _driver_launch(
        _stream(getattr(_tls, "stream", 0)), _config(grid, block, int(shared)), kernel.cukernel, *params
    )


def _launch(name, dtype, variant, grid, block, shared, *args):
    """Launch kernel ``name`` (compiled for output ``dtype`` and ``variant``) on ``args``."""
    if 0 in grid:
        return
    argtypes = tuple(map(_argtype, args))
    if launch_log is not None:
        launch_log.append((name, variant, argtypes))
    dtype = np.dtype(dtype)
    kernel = _kernel(
        (name, dtype, variant, argtypes),
        lambda: _cuda_kernels.python_kernel(name, dtype, variant),
        argtypes,
        _cuda_kernels.BOUNDS.get(name),
    )
    params = []
    if kernel.cukernel is not None:
        for a in args:
            _marshal(a, params)
    _run(kernel, grid, block, shared, params, args)


def _flat_launch(name, dtype, *args):
    """Launch an element-wise kernel over ``args[-1]``'s elements."""
    blocks = min(MAX_FLAT_BLOCKS, -(-args[-1].size // THREADS))
    _launch(name, dtype, None, (blocks,), (THREADS,), 0, *args)


def _tiles(n, size, cap=MAX_GRID_YZ):
    return min(cap, -(-n // size))


_constants = OrderedDict()
_constants_lock = threading.Lock()  # napari filters from worker threads


def _const(values, dtype):
    """A small device array of ``values``, uploaded once and reused.

    Filters upload a few small arrays (taps, weights) per call; repeated calls
    with the same kernel reuse them instead of paying a transfer each.
    """
    host = np.ascontiguousarray(values, dtype=dtype)
    if host.ndim == 0:
        host = host.reshape(1)
    context = None if simulated() else cuda.current_context()
    key = (host.dtype.str, host.shape, host.tobytes())
    with _constants_lock:
        hit = _constants.get(key)
        if hit is not None and hit[0] is context:
            _constants.move_to_end(key)
            return hit[1]
    device = cuda.to_device(host)
    with _constants_lock:
        _constants[key] = (context, device)
        if len(_constants) > 128:
            _constants.popitem(last=False)
    return device


def _pack_taps(taps_list, dtype, width):
    """Ragged ``[(offsets, weights), ...]`` as 2-D arrays padded to ``width``, plus counts."""
    offsets = np.zeros((len(taps_list), width), _int)
    weights = np.zeros((len(taps_list), width), dtype)
    counts = np.zeros(len(taps_list), _int)
    for t, (o, w) in enumerate(taps_list):
        offsets[t, : o.size] = o
        weights[t, : o.size] = w
        counts[t] = o.size
    return offsets, weights, counts


def _reach(offsets):
    offsets = np.asarray(offsets)
    return int(offsets.min()), int(offsets.max() - offsets.min())


# --------------------------------------------------------------------------
# The engine interface used by ``_passes`` and the public functions
# --------------------------------------------------------------------------


def empty(shape, dtype):
    """An uninitialised device array: the caller's library allocates it for CuPy or PyTorch
    input (its memory pool, on its stream), Numba otherwise."""
    shape = tuple(map(int, shape))
    dtype = np.dtype(dtype)
    template = getattr(_tls, "alloc", None)
    if template is not None:
        return _allocate(template, shape, dtype)
    return cuda.device_array(shape, dtype)


def zeros(shape, dtype):
    """A device array of zeros, allocated as :func:`empty` allocates it and cleared by a
    memset on the call's stream (no kernel, no copy; all bits zero is 0 of every type)."""
    array = empty(shape, dtype)
    if array.size == 0:
        return array
    if simulated():
        array.reshape(array.size)[:] = 0
        return array
    _memset_zero(_ptr(array), array.size * np.dtype(dtype).itemsize, _stream(getattr(_tls, "stream", 0)))
    return array


def _memset_zero(ptr, nbytes, stream):
    """Clear ``nbytes`` bytes from device address ``ptr``, queued on the driver ``stream``."""
    from numba.cuda.cudadrv import driver

    driver.driver.cuMemsetD8Async(ptr, 0, nbytes, driver._stream_handle(stream))


@contextlib.contextmanager
def scratch_arrays():
    """A call's intermediate arrays: new device arrays, as :func:`empty` makes them."""
    yield empty


def for_kernels(src, dtype, new=None):
    """``src`` itself: the CUDA kernels read every input type ``to_kernel_input`` gives."""
    return src


def to_kernel_input(image, dtype, preserve_range):
    """``(device array, scale)`` as ``_validation.to_kernel_input`` prepares it.

    Host images are prepared on the host and copied in. GPU images stay on
    the GPU: bool is read as uint8, unsigned integers are scaled afterwards
    (``scale``), float16 and signed integers are converted on the device.
    """
    dtype = np.dtype(dtype)
    if not is_device(image):
        from ._validation import to_kernel_input as prepare

        host, scale = prepare(np.asarray(image), dtype, preserve_range)
        return cuda.to_device(np.ascontiguousarray(host)), scale
    if type(image) is DeviceInput:
        arr = _input_array(image)
    else:
        arr = contiguous(as_device(image))
    dt = np.dtype(arr.dtype)
    if dt.kind == "b":
        return arr.view(np.uint8), 1.0
    if dt.kind == "f":
        return (arr, 1.0) if dt in KERNEL_INPUT_TYPES else (_convert(arr, dtype, 1.0, False), 1.0)
    if preserve_range:
        return arr, 1.0
    if dt.kind == "u":
        return arr, 1.0 / np.iinfo(dt).max
    # signed integers to [-1, 1] as img_as_float maps them
    return _convert(arr, dtype, 1.0 / np.iinfo(dt).max, True), 1.0


def _input_array(image):
    """A :class:`DeviceInput` as a C-contiguous :class:`DeviceArray` (gathered if it is not)."""
    if image.strides and min(image.strides) < 0:
        if image.kind != "cupy":
            raise ValueError("GPU arrays with negative strides are not supported; pass a copy")
        import cupy

        image = as_input(cupy.ascontiguousarray(image.source))
    arr = DeviceArray(image.ptr, image.shape, tuple(image.strides), image.dtype, image.source)
    return arr if arr.is_c_contiguous() else contiguous(arr)


def _convert(arr, dtype, scale, clamp):
    out = empty(arr.shape, dtype)
    _flat_launch("convert", dtype, arr.reshape(-1), np.float64(scale), _int(clamp), out.reshape(-1))
    return out


def correlate_axis(src, axis, offsets, weights, mode, cval, out):
    """1-D correlation of ``src`` along ``axis`` into ``out`` (same shape)."""
    if src.size == 0:
        return
    shape = src.shape
    n = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    outer = math.prod(shape[:axis])
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    off = _const(offsets, _int)
    w = _const(weights, dtype)
    sym = _int(symmetry(np.asarray(offsets), np.asarray(weights)))
    lo, span = _reach(offsets)
    c = dtype.type(cval)
    if inner == 1 and TY * (TX + span) * item <= SHARED_BYTES:
        _launch(
            "correlate_x",
            dtype,
            None,
            (_tiles(n, TX, 1 << 30), _tiles(outer, TY)),
            (BX, BY),
            TY * (TX + span) * item,
            src.reshape(outer, n),
            off,
            w,
            sym,
            _int(lo),
            _int(span),
            _int(mode),
            c,
            out.reshape(outer, n),
        )
    elif inner > 1 and (TY + span) * TX * item <= SHARED_BYTES:
        _launch(
            "correlate_y",
            dtype,
            None,
            (_tiles(inner, TX, 1 << 30), _tiles(n, TY), min(outer, MAX_GRID_YZ)),
            (BX, BY),
            (TY + span) * TX * item,
            src.reshape(outer, n, inner),
            off,
            w,
            sym,
            _int(lo),
            _int(span),
            _int(mode),
            c,
            out.reshape(outer, n, inner),
        )
    else:
        _flat_launch(
            "correlate_any",
            dtype,
            src.reshape(outer, n, inner),
            off,
            w,
            sym,
            _int(mode),
            c,
            out.reshape(outer, n, inner),
        )


# Per plan: what a call needs besides the two arrays, worked out on its first call.
_prepared = PreparedArrays()

# Planes of fewer elements than this take the specialised kernels (32-bit offsets inside a plane).
PLANE_LIMIT = 1 << 31


class _Recipe:
    """A prepared launch: kernel, geometry, and the parameters between input and output.

    ``flat``: the kernel takes its input and output as flat 1-D arrays (the
    kernels specialised for a plan); else as the arrays they are.
    """

    __slots__ = (
        "name",
        "variant",
        "argtypes",
        "kernel",
        "grid",
        "block",
        "shared",
        "params",
        "sim_args",
        "flat",
    )

    def __init__(self, name, argtypes, kernel, grid, block, shared, args, flat=True, variant="specialised"):
        self.name = name
        self.variant = variant
        self.argtypes = argtypes
        self.kernel = kernel
        self.grid = grid
        self.block = block
        self.shared = shared
        self.sim_args = args
        self.flat = flat
        self.params = []
        if kernel.cukernel is not None:
            for a in args:
                _marshal(a, self.params)


def _go(recipe, src, out):
    """Launch ``recipe`` on ``src`` and ``out``: the whole per-call cost."""
    kernel = recipe.kernel
    if launch_log is not None:
        launch_log.append((recipe.name, recipe.variant, recipe.argtypes))
    if 0 in recipe.grid:
        return
    if kernel.cukernel is None:
        if recipe.flat:
            src, out = src.reshape(src.size), out.reshape(out.size)
        _run(kernel, recipe.grid, recipe.block, recipe.shared, None, (src, *recipe.sim_args, out))
        return
    params = []
    if recipe.flat:
        _flat(src, params)
        params += recipe.params
        _flat(out, params)
    else:
        _marshal(src, params)
        params += recipe.params
        _marshal(out, params)
    _run(kernel, recipe.grid, recipe.block, recipe.shared, params, None)


def _generic_recipe(name, dtype, variant, grid, block, shared, src, args, out):
    """The :class:`_Recipe` of ``_launch(name, dtype, variant, grid, block, shared, src,
    *args, out)``: compiled for the types of ``src`` and ``out`` (C-contiguous arrays, as
    the engine passes them), ``args`` typed and marshalled once; neither array is kept."""
    dtype = np.dtype(dtype)
    argtypes = (_argtype(src), *map(_argtype, args), _argtype(out))
    kernel = _kernel(
        (name, dtype, variant, argtypes),
        lambda: _cuda_kernels.python_kernel(name, dtype, variant),
        argtypes,
        _cuda_kernels.BOUNDS.get(name),
    )
    return _Recipe(name, argtypes, kernel, grid, block, shared, args, flat=False, variant=variant)


def _prepared_launch(build, src, out, arrays, *values):
    """``build(src, out, *arrays, *values)``, the :class:`_Recipe` of a call, made once per plan
    (``arrays``: the plan's own kernels and weights, kept by identity), shapes, types and
    ``values``, then launched on ``src`` and ``out``."""
    recipe = _prepared.get(
        arrays,
        (build, src.shape, out.shape, np.dtype(src.dtype), np.dtype(out.dtype), *values),
        build,
        src,
        out,
        *arrays,
        *values,
    )
    if recipe is None:
        return False
    _go(recipe, src, out)
    return True


def _flat_type(dtype):
    return _array_type(np.dtype(dtype), 1)


def _plan_recipe(key, build, src_dtype, dtype, args, grid, block, shared, bounds, roomier=None):
    """The :class:`_Recipe` of a kernel generated for one plan: ``key`` names the plan's
    constants, ``build()`` gives its Python function; input and output are flat arrays of
    ``src_dtype`` and ``dtype``, ``args`` what lies between. Compiled once per key and
    argument types (``_kernel``, with ``bounds`` and ``roomier``)."""
    argtypes = (_flat_type(src_dtype), *map(_argtype, args), _flat_type(dtype))
    kernel = _kernel((*key, argtypes), build, argtypes, bounds, roomier)
    return _Recipe(key[0], argtypes, kernel, grid, block, shared, args)


def _edge_recipe(shape, src_dtype, dtype, cols, rows, edge, mode_y, mode_x, cval, pad_x, divisor):
    n_planes, h, w = shape
    gx, gy = edge
    weights = np.concatenate([cols[gx][1], cols[gy][1], rows[gy][1], rows[gx][1]])
    strips = -(-h // _cuda_kernels.EDGE3_ROWS)
    f, i32 = dtype.type, np.int32
    args = (
        _const(weights, dtype),
        i32(h),
        i32(w),
        i32(n_planes),
        i32(strips),
        f(cval),
        f(pad_x[gx]),
        f(pad_x[gy]),
        f(1.0 / divisor),
    )
    grid = (
        _tiles(w, _cuda_kernels.EDGE3_THREADS, 1 << 30),
        min(strips, MAX_GRID_YZ),
        min(n_planes, MAX_GRID_YZ),
    )
    build = lambda: _cuda_kernels.build_edge3(dtype, mode_y, mode_x)  # noqa: E731
    block = (_cuda_kernels.EDGE3_THREADS,)
    return _plan_recipe(
        ("edge3", dtype, mode_y, mode_x),
        build,
        src_dtype,
        dtype,
        args,
        grid,
        block,
        0,
        _cuda_kernels.EDGE3_BOUNDS,
    )


def _fused_recipe(
    shape, src_dtype, dtype, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate
):
    n_planes, h, w = shape
    col_offsets = tuple(tuple(int(v) for v in o) for o, _ in cols)
    row_offsets = tuple(tuple(int(v) for v in o) for o, _ in rows)
    f, i32 = dtype.type, np.int32
    weights = [f(v) for _, ws in cols for v in ws] + [f(v) for _, ws in rows for v in ws]
    weights += [f(v) for v in pad_x]
    args = (i32(h), i32(w), i32(n_planes), i32(-(-h // TY)), f(cval), f(divisor), *weights)
    grid = (_tiles(w, TX, 1 << 30), _tiles(h, TY), min(n_planes, MAX_GRID_YZ))
    key = ("fused", dtype, mode_y, mode_x, col_offsets, row_offsets, combine, bool(accumulate))
    build = lambda: _cuda_kernels.build_fused(dtype, *key[2:])  # noqa: E731
    bounds = (_cuda_kernels.FUSED_BOUNDS, _cuda_kernels.FUSED_ROOMIER_BOUNDS)
    return _plan_recipe(key, build, src_dtype, dtype, args, grid, (BX, BY), 0, *bounds)


def _separable_recipe(
    shape, src_dtype, dtype, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate
):
    """The specialised launch of a fused pass, or None where only the generic kernels fit."""
    n_planes, h, w = shape
    if h * w >= PLANE_LIMIT or n_planes >= PLANE_LIMIT:
        return None
    # float64 takes the fused kernel: the 3x3 kernel's window of float64 values spills at
    # its launch bounds' 64 registers (``ptxas``, 40 bytes), the fused one does not
    single = dtype.itemsize == 4
    edge = edge_operator_3x3(cols, rows) if combine == MAGNITUDE and not accumulate and single else None
    if edge is not None:
        return _edge_recipe(shape, src_dtype, dtype, cols, rows, edge, mode_y, mode_x, cval, pad_x, divisor)
    col_offsets = tuple(tuple(o) for o, _ in cols)
    row_offsets = tuple(tuple(o) for o, _ in rows)
    taps = sum(map(len, col_offsets)) + sum(map(len, row_offsets))
    if len(cols) > _cuda_kernels.FUSED_MAX_TERMS or taps > _cuda_kernels.FUSED_MAX_TAPS:
        return None
    if _cuda_kernels.fused_shared_elements(col_offsets, row_offsets, dtype) * dtype.itemsize > SHARED_BYTES:
        return None
    if not _cuda_kernels.fused_reach_fits(col_offsets, row_offsets, h, w):
        return None  # a tap reaches more than a line length outside: the generic kernels
    return _fused_recipe(
        shape, src_dtype, dtype, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate
    )


def separable_2d(src, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, out):
    """Fused separable terms over the last two axes of ``src`` (any leading axes)."""
    if src.size == 0:
        return
    shape = src.shape
    h, w = shape[-2:]
    planes_shape = (src.size // (h * w), h, w)
    dtype = out.dtype
    recipe = _prepared.get(
        (cols, rows, pad_x),
        (planes_shape, src.dtype, dtype, mode_y, mode_x, cval, combine, divisor, accumulate),
        _separable_recipe,
        planes_shape,
        np.dtype(src.dtype),
        np.dtype(dtype),
        cols,
        rows,
        mode_y,
        mode_x,
        cval,
        pad_x,
        combine,
        divisor,
        accumulate,
    )
    if recipe is not None:
        _go(recipe, src, out)
        return
    _separable_2d_generic(src, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, out)


def bind_separable_2d(fused, dtype, src_dtype):
    """None: device calls take the general path (their cost is the launch, not Python)."""
    return None


def bind_correlate_axis(axis_pass, dtype, src_dtype):
    """None: device calls take the general path (their cost is the launch, not Python)."""
    return None


def _separable_2d_generic(src, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, out):
    h, w = src.shape[-2:]
    dtype = np.dtype(out.dtype)
    planes = src.reshape(-1, h, w)
    result = out.reshape(-1, h, w)
    edge = edge_operator_3x3(cols, rows) if combine == MAGNITUDE and not accumulate else None
    if edge is not None:
        gx, gy = edge
        weights = np.concatenate([cols[gx][1], cols[gy][1], rows[gy][1], rows[gx][1]])
        strips = -(-h // _cuda_kernels.EDGE_ROWS)
        _launch(
            "edge_magnitude_3x3",
            dtype,
            None,
            (
                _tiles(w, _cuda_kernels.EDGE_THREADS, 1 << 30),
                min(strips, MAX_GRID_YZ),
                min(planes.shape[0], MAX_GRID_YZ),
            ),
            (_cuda_kernels.EDGE_THREADS,),
            0,
            planes,
            _const(weights, dtype),
            _int(mode_y),
            _int(mode_x),
            dtype.type(cval),
            dtype.type(pad_x[gx]),
            dtype.type(pad_x[gy]),
            dtype.type(1.0 / divisor),
            result,
        )
        return
    item = dtype.itemsize
    y_lo, y_span = _reach(np.concatenate([o for o, _ in cols]))
    x_lo, x_span = _reach(np.concatenate([o for o, _ in rows]))
    tile = (TY + y_span) * (TX + x_span) + TY * (TX + x_span)
    if tile * item > SHARED_BYTES:
        _separable_by_passes(
            planes, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, result
        )
        return
    longest = max(o.size for o, _ in cols + rows)
    max_taps = next((n for n in _cuda_kernels.UNROLLED_TAPS if n >= longest), None)
    width = max_taps or longest
    col_off, col_w, col_n = _pack_taps(cols, dtype, width)
    row_off, row_w, row_n = _pack_taps(rows, dtype, width)
    col_at = (col_off - y_lo) * (TX + x_span)  # positions in the shared tile
    row_at = row_off - x_lo
    _launch(
        "separable_2d",
        dtype,
        max_taps,
        (_tiles(w, TX, 1 << 30), _tiles(h, TY), min(planes.shape[0], MAX_GRID_YZ)),
        (BX, BY),
        tile * item,
        planes,
        _const(col_at, _int),
        _const(col_w, dtype),
        _const(col_n, _int),
        _const(row_at, _int),
        _const(row_w, dtype),
        _const(row_n, _int),
        *_geometry_args(y_lo, y_span, x_lo, x_span, mode_y, mode_x, cval, dtype),
        _const(pad_x, dtype),
        _int(combine),
        dtype.type(divisor),
        _int(bool(accumulate)),
        result,
    )


def _separable_by_passes(planes, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, out):
    """``separable_2d`` as a vertical and a horizontal pass per term (very long kernels)."""
    dtype = out.dtype
    vertical = empty(planes.shape, dtype)
    both = empty(planes.shape, dtype)
    for t, ((col_off, col_w), (row_off, row_w)) in enumerate(zip(cols, rows)):
        correlate_axis(planes, 1, col_off, col_w, mode_y, cval, vertical)
        correlate_axis(vertical, 2, row_off, row_w, mode_x, pad_x[t], both)
        combine_into(out, both, squares=combine != SUM, first=t == 0 and not accumulate)
    if combine == MAGNITUDE:
        finish_magnitude(out, divisor)


def combine_into(out, values, squares, first):
    """``out (+)= values`` or ``values ** 2``."""
    _flat_launch("combine", out.dtype, out.reshape(-1), values.reshape(-1), _int(squares), _int(first))


@functools.cache
def _sum_reduce():
    return cuda.reduce(lambda a, b: a + b)


def all_finite(values):
    """Whether every value is finite: one reduction on the device."""
    if type(values) is DeviceArray:
        values = values.numba()
    dense = values if values.is_c_contiguous() else values.copy_to_host()
    if isinstance(dense, np.ndarray):
        return bool(np.isfinite(np.sum(dense)))
    return bool(np.isfinite(_sum_reduce()(dense.reshape(dense.size))))


def finish_magnitude(out, divisor):
    _flat_launch("finish_magnitude", out.dtype, out.reshape(-1), out.dtype.type(divisor))


def apply_mask(out, mask):
    """``out *= mask`` for a host mask broadcastable to ``out`` (any memory order)."""
    order = sorted(range(out.ndim), key=lambda a: -out.strides[a])
    dense = _view(out, [out.shape[a] for a in order], [out.strides[a] for a in order])
    if not dense.is_c_contiguous():
        raise ValueError("apply_mask needs a densely stored result")
    host = np.transpose(np.broadcast_to(np.asarray(mask, bool), out.shape), order)
    _flat_launch(
        "apply_mask",
        out.dtype,
        dense.reshape(-1),
        cuda.to_device(np.ascontiguousarray(host).reshape(-1).view(np.uint8)),
    )
    return out


def copy_into(out, result):
    """Fill the caller's array ``out`` (host or device, same shape) with ``result``."""
    if type(result) is DeviceArray:
        result = result.numba()
    if isinstance(out, np.ndarray):
        np.copyto(out, result.copy_to_host(), casting="unsafe")
        return
    fill_target(out, "out").copy_to_device(contiguous(result))


def writable_target(out, src, dtype):
    """None: results are copied into the caller's ``out`` (host or device)."""
    return None


def correlate_planes(src, kernel, top, left, mode_y, mode_x, cval, out):
    """Direct 2-D correlation over the last two axes, zero weights left out."""
    if src.size == 0:
        return
    h, w = src.shape[-2:]
    planes, target = src.reshape(-1, h, w), out.reshape(-1, h, w)
    _prepared_launch(_correlate_planes_recipe, planes, target, (kernel,), top, left, mode_y, mode_x, cval)


def _correlate_planes_recipe(planes, out, kernel, top, left, mode_y, mode_x, cval):
    n_planes, h, w = planes.shape
    dtype = np.dtype(out.dtype)
    ys, xs = np.nonzero(kernel)  # at least one (an all-zero kernel gives zeros: DirectProgram)
    tap_y, tap_x = ys - top, xs - left
    y_lo, y_span = _reach(tap_y)
    x_lo, x_span = _reach(tap_x)
    tile = (TY + y_span) * (TX + x_span) * dtype.itemsize
    tiled = tile <= SHARED_BYTES
    args = (
        _const(tap_y, _int),
        _const(tap_x, _int),
        _const(kernel[ys, xs], dtype),
        *_geometry_args(y_lo, y_span, x_lo, x_span, mode_y, mode_x, cval, dtype),
    )
    grid = (_tiles(w, TX, 1 << 30), _tiles(h, TY), min(n_planes, MAX_GRID_YZ))
    return _generic_recipe(
        "correlate_2d", dtype, tiled, grid, (BX, BY), tile if tiled else 0, planes, args, out
    )


# Channel tiles (rows, pixels), largest first: the first whose shared memory fits is used.
_CHANNEL_TILES = ((4, 32), (2, 32), (1, 32), (1, 16), (1, 8), (1, 4), (1, 2), (1, 1))


def _channel_tile(elements):
    """The largest channel tile whose shared-memory elements (a function of it) fit."""
    for tile_h, tile_w in _CHANNEL_TILES:
        if elements(tile_h, tile_w) <= SHARED_BYTES:
            return tile_h, tile_w
    return None


def _channel_grid(width, n_rows, n_planes, tile_h, tile_w):
    return (_tiles(width, tile_w, 1 << 30), _tiles(n_rows, tile_h), min(n_planes, MAX_GRID_YZ))


def _geometry_args(y_lo, y_span, x_lo, x_span, mode_y, mode_x, cval, dtype):
    """The taps' reach, the border modes and ``cval`` as the generic kernels take them."""
    return (
        _int(y_lo),
        _int(y_span),
        _int(x_lo),
        _int(x_span),
        _int(mode_y),
        _int(mode_x),
        dtype.type(cval),
    )


def _generic_tap_args(tap_y, tap_x, tap_w, has_zero, multiplier, mode_y, mode_x, cval, dtype):
    """The taps, multiplier, reach, border modes and ``cval`` as the generic depthwise and
    depthwise-separable kernels take them, first of their arguments."""
    y_lo, y_span = _reach(tap_y)
    x_lo, x_span = _reach(tap_x)
    return (
        _const(tap_y, _int),
        _const(tap_x, _int),
        _const(tap_w, dtype),
        _const(has_zero, np.uint8),
        _int(multiplier),
        *_geometry_args(y_lo, y_span, x_lo, x_span, mode_y, mode_x, cval, dtype),
    )


def depthwise(src, kernels, multiplier, mode_y, mode_x, cval, out, row_start=0):
    """Per-channel correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M)."""
    if out.size == 0:
        return
    values = (multiplier, mode_y, mode_x, cval, row_start)
    _prepared_launch(_depthwise_recipe, src, out, (kernels,), *values)


def _depthwise_recipe(src, out, kernels, multiplier, mode_y, mode_x, cval, row_start):
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    tap_y, tap_x, tap_w, has_zero = depthwise_taps(kernels, dtype)
    _, y_span = _reach(tap_y)
    _, x_span = _reach(tap_x)
    n_in = src.shape[3]
    tile = _channel_tile(lambda th, tw: (th + y_span) * (tw + x_span) * n_in * item)
    tiled = tile is not None
    tile_h, tile_w = tile if tiled else (1, 32)
    shared = (tile_h + y_span) * (tile_w + x_span) * n_in * item if tiled else 0
    grid = _channel_grid(src.shape[2], out.shape[1], src.shape[0], tile_h, tile_w)
    if tiled and _channel_plan_fits(src, out, *tap_w.shape, tile):
        taps = (_ints(tap_y), _ints(tap_x))
        args = (_const(tap_w.reshape(-1), dtype), *_band_sizes(src, out, row_start, cval))
        key = ("depthwise", dtype, mode_y, mode_x, taps, _bools(has_zero), n_in, int(multiplier), tile)
        build = lambda: _cuda_kernels.build_depthwise_plan(dtype, *key[2:])  # noqa: E731
        return _channel_plan_recipe(key, build, src, out, args, grid, shared)
    args = (
        *_generic_tap_args(tap_y, tap_x, tap_w, has_zero, multiplier, mode_y, mode_x, cval, dtype),
        _int(row_start),
        _int(tile_h),
        _int(tile_w),
    )
    return _generic_recipe("depthwise", dtype, tiled, grid, (THREADS,), shared, src, args, out)


def depthwise_passes(src, columns, rows, multiplier, mode_y, mode_x, cval, pad_x, out, row_start=0):
    """Per-channel rank-1 kernels ``outer(columns[k], rows[k])`` as two 1-D passes."""
    if out.size == 0:
        return
    values = (multiplier, mode_y, mode_x, cval, row_start)
    _prepared_launch(_depthwise_passes_recipe, src, out, (columns, rows, pad_x), *values)


def _depthwise_passes_recipe(src, out, columns, rows, pad_x, multiplier, mode_y, mode_x, cval, row_start):
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    col_off, col_w, col_zero = shared_taps(columns, dtype)
    row_off, row_w, row_zero = shared_taps(rows, dtype)
    x_lo, x_span = _reach(row_off)
    n_out = out.shape[3]
    tile = _channel_tile(lambda th, tw: th * (tw + x_span) * n_out * item)
    tiled = tile is not None
    tile_h, tile_w = tile if tiled else (1, 32)
    shared = tile_h * (tile_w + x_span) * n_out * item if tiled else 0
    grid = _channel_grid(src.shape[2], out.shape[1], src.shape[0], tile_h, tile_w)
    if tiled and _channel_plan_fits(src, out, col_off.size + row_off.size, n_out, tile):
        weights = (_const(col_w.reshape(-1), dtype), _const(row_w.reshape(-1), dtype), _const(pad_x, dtype))
        args = (*weights, *_band_sizes(src, out, row_start, cval))
        cols, rows = (_ints(col_off), _bools(col_zero)), (_ints(row_off), _bools(row_zero))
        key = ("depthwise_passes", dtype, mode_y, mode_x, cols, rows, src.shape[3], int(multiplier), tile)
        build = lambda: _cuda_kernels.build_depthwise_passes_plan(dtype, *key[2:])  # noqa: E731
        return _channel_plan_recipe(key, build, src, out, args, grid, shared)
    args = (
        _const(col_off, _int),
        _const(col_w, dtype),
        _const(row_off, _int),
        _const(row_w, dtype),
        _int(multiplier),
        _int(x_lo),
        _int(x_span),
        _int(mode_y),
        _int(mode_x),
        dtype.type(cval),
        _const(pad_x, dtype),
        _int(row_start),
        _int(tile_h),
        _int(tile_w),
    )
    return _generic_recipe("depthwise_passes", dtype, tiled, grid, (THREADS,), shared, src, args, out)


def depthwise_separable(src, op, weights, bias, out):
    """Depthwise op then pointwise mixing of ``src`` (P, H, W, C) into ``out`` (P, H, W, C_out).

    One kernel: the depthwise result of a tile stays in shared memory. Where
    even the smallest tile does not fit (huge kernels or channel counts), it
    runs in row bands through a bounded buffer instead, as the CPU does.
    ``op`` is a ``_programs.DepthwiseOp``; its direct kernels are used.
    """
    if out.size == 0:
        return
    if not _prepared_launch(_depthwise_separable_recipe, src, out, (op, weights, bias)):
        kernels, multiplier, mode_y, mode_x, cval = (op.flat, op.multiplier, op.mode_y, op.mode_x, op.cval)
        _depthwise_separable_bands(src, kernels, multiplier, mode_y, mode_x, cval, weights, bias, out)


def _depthwise_separable_recipe(src, out, op, weights, bias):
    """The fused launch, or None where even the smallest tile does not fit."""
    kernels, multiplier, mode_y, mode_x, cval = (op.flat, op.multiplier, op.mode_y, op.mode_x, op.cval)
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    tap_y, tap_x, tap_w, has_zero = depthwise_taps(kernels, dtype)
    _, y_span = _reach(tap_y)
    _, x_span = _reach(tap_x)
    n_planes, h, width, n_in = src.shape
    n_mid = tap_w.shape[1]
    tile = _channel_tile(lambda th, tw: ((th + y_span) * (tw + x_span) * n_in + th * tw * n_mid) * item)
    if tile is None:
        return None
    tile_h, tile_w = tile
    shared = ((tile_h + y_span) * (tile_w + x_span) * n_in + tile_h * tile_w * n_mid) * item
    grid = _channel_grid(width, h, n_planes, tile_h, tile_w)
    if _channel_plan_fits(src, out, *tap_w.shape, tile):
        taps = (_ints(tap_y), _ints(tap_x))
        args = (
            _const(tap_w.reshape(-1), dtype),
            _const(weights.reshape(-1), dtype),
            _const(np.zeros(1) if bias is None else bias, dtype),
            _i32(bias is not None),
            _i32(h),
            _i32(width),
            _i32(n_planes),
            dtype.type(cval),
        )
        n_out = out.shape[3]
        key = (
            "depthwise_separable",
            dtype,
            mode_y,
            mode_x,
            taps,
            _bools(has_zero),
            n_in,
            int(multiplier),
            n_out,
            tile,
        )
        build = lambda: _cuda_kernels.build_depthwise_separable_plan(dtype, *key[2:])  # noqa: E731
        return _channel_plan_recipe(key, build, src, out, args, grid, shared)
    args = (
        *_generic_tap_args(tap_y, tap_x, tap_w, has_zero, multiplier, mode_y, mode_x, cval, dtype),
        _const(weights, dtype),
        _const(np.zeros(1) if bias is None else bias, dtype),
        _int(bias is not None),
        _int(tile_h),
        _int(tile_w),
    )
    return _generic_recipe("depthwise_separable", dtype, None, grid, (THREADS,), shared, src, args, out)


# Channel kernels are generated per plan up to these sizes (the generic kernels beyond).
CHANNEL_PLAN_TAPS = 64
CHANNEL_PLAN_CHANNELS = 256


def _channel_plan_fits(src, out, n_taps, n_mid, tile):
    """Whether the per-plan channel kernel serves a call of ``n_taps`` taps (all passes) on
    ``n_mid`` depthwise channels: its taps unroll, its tile is 32 pixels wide at least
    (narrower ones, for halos that nearly fill shared memory, spend their time loading), and
    every plane's offsets fit 32 bits (the plane index is 64-bit)."""
    plane = src.shape[1] * src.shape[2]
    return (
        n_taps <= CHANNEL_PLAN_TAPS
        and tile[1] >= 32
        and max(n_mid, src.shape[3], out.shape[3]) <= CHANNEL_PLAN_CHANNELS
        and plane * max(src.shape[3], out.shape[3]) < PLANE_LIMIT
        and out.shape[1] * src.shape[2] * out.shape[3] < PLANE_LIMIT
    )


def _band_sizes(src, out, row_start, cval):
    """Arguments of the generated channel kernels that compute output rows ``row_start ..``:
    ``h, w, n_planes, n_rows, row_start, cval``."""
    n_planes, h, w = src.shape[:3]
    return (_i32(h), _i32(w), _i32(n_planes), _i32(out.shape[1]), _i32(row_start), out.dtype.type(cval))


def _ints(values):
    return tuple(int(v) for v in values)


def _bools(values):
    return tuple(bool(v) for v in values)


def _channel_plan_recipe(key, build, src, out, args, grid, shared):
    """:func:`_plan_recipe` of a channel kernel: blocks of ``THREADS``, the channel bounds."""
    block, bounds = (THREADS,), _cuda_kernels.CHANNEL_BOUNDS
    return _plan_recipe(key, build, src.dtype, out.dtype, args, grid, block, shared, bounds)


BAND_ELEMENTS = 1 << 22


def _depthwise_separable_bands(src, kernels, multiplier, mode_y, mode_x, cval, weights, bias, out):
    n_planes, h, width, _ = src.shape
    n_mid = kernels.shape[0]
    n_out = out.shape[3]
    band = max(1, min(h, BAND_ELEMENTS // max(1, width * n_mid)))
    mid = empty((band * width * n_mid,), out.dtype)
    for p in range(n_planes):
        for row in range(0, h, band):
            rows = min(band, h - row)
            part = mid[: rows * width * n_mid]
            depthwise(
                src[p : p + 1],
                kernels,
                multiplier,
                mode_y,
                mode_x,
                cval,
                part.reshape(1, rows, width, n_mid),
                row_start=row,
            )
            pointwise(part.reshape(-1, n_mid), weights, bias, out[p, row : row + rows].reshape(-1, n_out))


@functools.cache
def _cublas():
    """CuPy (for its cuBLAS matrix product), or ``None`` where it is missing or unusable."""
    if simulated():
        return None
    try:
        import cupy

        probe = cupy.ones((2, 2), cupy.float32)
        cupy.matmul(probe, probe)  # loads cuBLAS: a CuPy without a usable one fails here
        cupy.cuda.runtime.deviceSynchronize()
    except Exception:  # noqa: BLE001 - any failure means: use our own kernel
        return None
    return cupy


def pointwise(src, weights, bias, out):
    """``out = src @ weights.T + bias`` over the last axis.

    Through cuBLAS (CuPy's ``matmul``, over the same memory) where CuPy is
    installed, as the CPU engine goes through BLAS; otherwise our kernel.
    Both libraries launch on the default stream, so the product is ordered
    with the kernels before and after it.
    """
    if out.size == 0:
        return
    dtype = np.dtype(out.dtype)
    cupy = _cublas()
    if cupy is not None and src.dtype == dtype and dtype in (np.float32, np.float64):
        result = cupy.asarray(out)
        # the weights' device copies are uploaded once and reused, as for our kernels
        cupy.matmul(cupy.asarray(src), cupy.asarray(_const(weights.T, dtype)), out=result)
        if bias is not None:
            result += cupy.asarray(_const(bias, dtype))
        return
    _prepared_launch(_pointwise_recipe, src, out, (weights, bias))


def _pointwise_recipe(src, out, weights, bias):
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    n_px, n_in = src.shape
    n_out = out.shape[1]
    tile_n = max(1, min(n_px, 2048 // n_out))
    shared = (n_out + tile_n) * n_in * item
    tiled = shared <= SHARED_BYTES
    biases = _const(np.zeros(1) if bias is None else bias, dtype)
    grid = (_tiles(n_px, tile_n, MAX_FLAT_BLOCKS),)
    if tiled and n_in <= CHANNEL_PLAN_CHANNELS:
        args = (_const(weights.reshape(-1), dtype), biases, _int(n_px))
        key = ("pointwise", dtype, n_in, n_out, tile_n, bias is not None)
        build = lambda: _cuda_kernels.build_pointwise_plan(dtype, *key[2:])  # noqa: E731
        return _channel_plan_recipe(key, build, src, out, args, grid, shared)
    args = (_const(weights, dtype), biases, _int(bias is not None), _int(tile_n))
    return _generic_recipe(
        "pointwise", dtype, tiled, grid, (THREADS,), shared if tiled else 0, src, args, out
    )


def cast_output(result, dtype, output):
    """scipy.ndimage's output handling: fill ``output`` if it is an array, else cast.

    Both take scipy's casts (``_casting``), overflow included: a host ``output`` is
    filled on the host, a new device array by the ``cast`` kernel.
    """
    if isinstance(output, np.ndarray):
        return _casting.cast_output(result.copy_to_host(), dtype, output)
    dtype = np.dtype(dtype)
    if result.dtype == dtype:
        return result
    out = empty(result.shape, dtype)
    _flat_launch("cast", dtype, result.reshape(-1), out.reshape(-1))
    return out


def channels_first(arr, channel_axis, out=None):
    moved = contiguous(_moveaxis(arr, channel_axis, 0))
    if out is None:
        return moved
    out.copy_to_device(moved)
    return out


def channels_back(arr, channel_axis, out=None):
    moved = _moveaxis(arr, 0, channel_axis)
    if out is None:
        return moved
    copy_into(out, moved)
    return out


def channels_last(arr, channel_axis):
    """A C-contiguous (planes, H, W, C) array with the channel axis moved last."""
    moved = contiguous(_moveaxis(arr, channel_axis, -1))
    return moved.reshape((-1,) + tuple(moved.shape[-3:]))


def restore_channels(out, shape, channel_axis):
    """Undo ``channels_last`` for an output of ``shape`` (channel axis last)."""
    return _moveaxis(out.reshape(tuple(shape)), len(shape) - 1, channel_axis)
