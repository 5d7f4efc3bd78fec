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

import functools
import math
import threading
import warnings
from collections import OrderedDict

import numba
import numpy as np
from numba import cuda
from numba.cuda import config as _cuda_config

from . import _casting, _cuda_kernels
from ._cuda_kernels import BX, BY, MAGNITUDE, SUM, THREADS, TX, TY
from ._lowering import depthwise_taps, edge_operator_3x3, shared_taps, symmetry
from ._validation import KERNEL_INPUT_TYPES

# Dynamic shared memory a block may use without opting in to more (all GPUs
# Numba supports); larger tiles take the global-memory variants.
SHARED_BYTES = 48 * 1024
# Largest grid y and z dimensions; kernels loop over the tiles beyond.
MAX_GRID_YZ = 65535
# Blocks of the 1-D (flat) kernels; grid-stride loops cover the rest.
MAX_FLAT_BLOCKS = 1 << 16

name = "cuda"

INSTALL_HINT = 'pip install "napari-sepconv[cuda]"'

_int = np.int64

# Tests set this to a list to record ``(kernel, variant, argument types)`` per launch.
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


def is_numba_array(x):
    """A Numba device array, real or simulated."""
    return bool(getattr(x, "__cuda_ndarray__", False))


def is_device(x):
    return is_numba_array(x) or hasattr(x, "__cuda_array_interface__")


def _kind(x):
    """``'cupy'``, ``'torch'`` or ``None``: the library of a foreign GPU array."""
    root = type(x).__module__.partition(".")[0]
    return root if root in ("cupy", "torch") else None


def as_device(x):
    """A Numba device array over the memory of GPU array ``x`` (no copy)."""
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
    """``result`` (a Numba device array) as the kind of array ``image`` is.

    Host input gives a NumPy array; CuPy and PyTorch input give a CuPy array
    or tensor over the same memory; other GPU input gives the Numba array.
    """
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


def _view(arr, shape, strides):
    """A view of ``arr``'s memory from its first element (positive byte strides)."""
    shape, strides = tuple(int(n) for n in shape), tuple(int(s) for s in strides)
    if simulated():
        return type(arr)(np.lib.stride_tricks.as_strided(arr._ary, shape, strides))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(shape, strides, arr.dtype, gpu_data=arr.gpu_data)


def _moveaxis(arr, source, destination):
    """``np.moveaxis`` as a view."""
    source %= arr.ndim
    order = [a for a in range(arr.ndim) if a != source]
    order.insert(destination % arr.ndim, source)
    return _view(arr, [arr.shape[a] for a in order], [arr.strides[a] for a in order])


def contiguous(arr):
    """``arr``, or a C-contiguous copy of it made on the device."""
    if arr.is_c_contiguous():
        return arr
    item = arr.dtype.itemsize
    span = 1 + sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) // item
    flat = _view(arr, (span,), (item,))
    out = cuda.device_array(arr.shape, arr.dtype)
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


@functools.lru_cache(maxsize=None)
def _compiled(name, dtype, variant):
    return cuda.jit(_cuda_kernels.python_kernel(name, dtype, variant))


def _launch(name, dtype, variant, grid, block, shared_bytes, *args):
    """Launch kernel ``name`` (compiled for output ``dtype`` and ``variant``) on ``args``."""
    if 0 in grid:
        return
    if launch_log is not None:
        launch_log.append((name, variant, tuple(numba.typeof(a) for a in args)))
    kernel = _compiled(name, np.dtype(dtype), variant)
    with warnings.catch_warnings():
        # small images give small grids; that is not worth a warning per call
        warnings.simplefilter("ignore", numba.NumbaPerformanceWarning)
        kernel[grid, block, 0, int(shared_bytes)](*args)


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
    return cuda.device_array(tuple(int(n) for n in shape), np.dtype(dtype))


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


def separable_2d(src, cols, rows, mode_y, mode_x, cval, pad_x, combine, divisor, accumulate, out):
    """Fused separable terms over the last two axes of ``src`` (any leading axes)."""
    if src.size == 0:
        return
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
        _int(y_lo),
        _int(y_span),
        _int(x_lo),
        _int(x_span),
        _int(mode_y),
        _int(mode_x),
        dtype.type(cval),
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
    if isinstance(out, np.ndarray):
        np.copyto(out, result.copy_to_host(), casting="unsafe")
    else:
        as_device(out).copy_to_device(result)


def correlate_planes(src, kernel, top, left, mode_y, mode_x, cval, out):
    """Direct 2-D correlation over the last two axes, zero weights left out."""
    if src.size == 0:
        return
    h, w = src.shape[-2:]
    dtype = np.dtype(out.dtype)
    ys, xs = np.nonzero(kernel)
    if ys.size == 0:  # all-zero kernel: one zero tap keeps NaN handling as scipy's
        ys, xs = np.array([top]), np.array([left])
    tap_y, tap_x = ys - top, xs - left
    y_lo, y_span = _reach(tap_y)
    x_lo, x_span = _reach(tap_x)
    tile = (TY + y_span) * (TX + x_span) * dtype.itemsize
    tiled = tile <= SHARED_BYTES
    planes = src.reshape(-1, h, w)
    _launch(
        "correlate_2d",
        dtype,
        tiled,
        (_tiles(w, TX, 1 << 30), _tiles(h, TY), min(planes.shape[0], MAX_GRID_YZ)),
        (BX, BY),
        tile if tiled else 0,
        planes,
        _const(tap_y, _int),
        _const(tap_x, _int),
        _const(kernel[ys, xs], dtype),
        _int(y_lo),
        _int(y_span),
        _int(x_lo),
        _int(x_span),
        _int(mode_y),
        _int(mode_x),
        dtype.type(cval),
        out.reshape(-1, h, w),
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


def depthwise(src, kernels, multiplier, mode_y, mode_x, cval, out, row_start=0):
    """Per-channel correlation of ``src`` (P, H, W, C) into ``out`` (P, R, W, C*M)."""
    if out.size == 0:
        return
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    tap_y, tap_x, tap_w, has_zero = depthwise_taps(kernels, dtype)
    y_lo, y_span = _reach(tap_y)
    x_lo, x_span = _reach(tap_x)
    n_in = src.shape[3]
    tile = _channel_tile(lambda th, tw: (th + y_span) * (tw + x_span) * n_in * item)
    tiled = tile is not None
    tile_h, tile_w = tile if tiled else (1, 32)
    shared = (tile_h + y_span) * (tile_w + x_span) * n_in * item if tiled else 0
    _launch(
        "depthwise",
        dtype,
        tiled,
        _channel_grid(src.shape[2], out.shape[1], src.shape[0], tile_h, tile_w),
        (THREADS,),
        shared,
        src,
        _const(tap_y, _int),
        _const(tap_x, _int),
        _const(tap_w, dtype),
        _const(has_zero, np.uint8),
        _int(multiplier),
        _int(y_lo),
        _int(y_span),
        _int(x_lo),
        _int(x_span),
        _int(mode_y),
        _int(mode_x),
        dtype.type(cval),
        _int(row_start),
        _int(tile_h),
        _int(tile_w),
        out,
    )


def depthwise_passes(src, columns, rows, multiplier, mode_y, mode_x, cval, pad_x, out, row_start=0):
    """Per-channel rank-1 kernels ``outer(columns[k], rows[k])`` as two 1-D passes."""
    if out.size == 0:
        return
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    col_off, col_w, _ = shared_taps(columns, dtype)
    row_off, row_w, _ = shared_taps(rows, dtype)
    x_lo, x_span = _reach(row_off)
    n_out = out.shape[3]
    tile = _channel_tile(lambda th, tw: th * (tw + x_span) * n_out * item)
    tiled = tile is not None
    tile_h, tile_w = tile if tiled else (1, 32)
    shared = tile_h * (tile_w + x_span) * n_out * item if tiled else 0
    _launch(
        "depthwise_passes",
        dtype,
        tiled,
        _channel_grid(src.shape[2], out.shape[1], src.shape[0], tile_h, tile_w),
        (THREADS,),
        shared,
        src,
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
        out,
    )


def depthwise_separable(src, op, weights, bias, out):
    """Depthwise op then pointwise mixing of ``src`` (P, H, W, C) into ``out`` (P, H, W, C_out).

    One kernel: the depthwise result of a tile stays in shared memory. Where
    even the smallest tile does not fit (huge kernels or channel counts), it
    runs in row bands through a bounded buffer instead, as the CPU does.
    ``op`` is a ``_programs.DepthwiseOp``; its direct kernels are used.
    """
    if out.size == 0:
        return
    kernels, multiplier, mode_y, mode_x, cval = (op.flat, op.multiplier, op.mode_y, op.mode_x, op.cval)
    dtype = np.dtype(out.dtype)
    item = dtype.itemsize
    tap_y, tap_x, tap_w, has_zero = depthwise_taps(kernels, dtype)
    y_lo, y_span = _reach(tap_y)
    x_lo, x_span = _reach(tap_x)
    n_planes, h, width, n_in = src.shape
    n_mid = tap_w.shape[1]
    tile = _channel_tile(lambda th, tw: ((th + y_span) * (tw + x_span) * n_in + th * tw * n_mid) * item)
    if tile is None:
        _depthwise_separable_bands(src, kernels, multiplier, mode_y, mode_x, cval, weights, bias, out)
        return
    tile_h, tile_w = tile
    shared = ((tile_h + y_span) * (tile_w + x_span) * n_in + tile_h * tile_w * n_mid) * item
    _launch(
        "depthwise_separable",
        dtype,
        None,
        _channel_grid(width, h, n_planes, tile_h, tile_w),
        (THREADS,),
        shared,
        src,
        _const(tap_y, _int),
        _const(tap_x, _int),
        _const(tap_w, dtype),
        _const(has_zero, np.uint8),
        _int(multiplier),
        _int(y_lo),
        _int(y_span),
        _int(x_lo),
        _int(x_span),
        _int(mode_y),
        _int(mode_x),
        dtype.type(cval),
        _const(weights, dtype),
        _const(np.zeros(1) if bias is None else bias, dtype),
        _int(bias is not None),
        _int(tile_h),
        _int(tile_w),
        out,
    )


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
    item = dtype.itemsize
    n_px, n_in = src.shape
    n_out = out.shape[1]
    tile_n = max(1, min(n_px, 2048 // n_out))
    shared = (n_out + tile_n) * n_in * item
    tiled = shared <= SHARED_BYTES
    _launch(
        "pointwise",
        dtype,
        tiled,
        (_tiles(n_px, tile_n, MAX_FLAT_BLOCKS),),
        (THREADS,),
        shared if tiled else 0,
        src,
        _const(weights, dtype),
        _const(np.zeros(1) if bias is None else bias, dtype),
        _int(bias is not None),
        _int(tile_n),
        out,
    )


def cast_output(result, dtype, output):
    """scipy.ndimage's output handling: fill ``output`` if it is an array, else cast.

    A host ``output`` is filled with scipy's casts (``_casting``), overflow included.
    """
    if isinstance(output, np.ndarray):
        return _casting.cast_output(result.copy_to_host(), dtype, output)
    dtype = np.dtype(dtype)
    if result.dtype == dtype:
        return result
    out = empty(result.shape, dtype)
    _flat_launch("cast", dtype, result.reshape(-1), out.reshape(-1))
    return out


def channels_first(arr, channel_axis):
    return contiguous(_moveaxis(arr, channel_axis, 0))


def channels_back(arr, channel_axis):
    return _moveaxis(arr, 0, channel_axis)


def channels_last(arr, channel_axis):
    """A C-contiguous (planes, H, W, C) array with the channel axis moved last."""
    moved = contiguous(_moveaxis(arr, channel_axis, -1))
    return moved.reshape((-1,) + tuple(moved.shape[-3:]))


def restore_channels(out, shape, channel_axis):
    """Undo ``channels_last`` for an output of ``shape`` (channel axis last)."""
    return _moveaxis(out.reshape(tuple(shape)), len(shape) - 1, channel_axis)
