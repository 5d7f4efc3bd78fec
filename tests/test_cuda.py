"""The CUDA backend: same values as the CPU, device arrays in and out, errors, real PTX.

This file runs in two processes, because Numba's CUDA simulator must be switched
on before ``numba.cuda`` is first imported:

* ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda.py -m cudasim`` runs every
  kernel on the simulator (no GPU needed) and compares ``backend='cuda'`` with
  ``backend='cpu'``: every filter, border mode and input dtype, Numba device
  arrays in and out, and the global-memory variants for long kernels.
* plain ``pytest tests/test_cuda.py`` compiles every kernel to PTX for a real GPU
  (compute capability 8.0, with the NVVM that ``numba-cuda[cu12]`` installs), so
  a kernel that only works in the simulator fails here; it also checks the
  errors and fallbacks where no GPU is usable. Where a GPU is usable, the same
  comparisons as on the simulator run on it, plus image sizes and CuPy/PyTorch
  arrays that only a real device can take in reasonable time.

Simulator inputs stay small (it runs about a millisecond per thread); a few are
larger than one 32 x 32 tile so that tile seams are covered.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi

import napari_sepconv as sc

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
EDGES = ("sobel", "scharr", "prewitt", "farid")
ROOT = Path(__file__).resolve().parents[1]


def _gpu_usable():
    """A real CUDA GPU (not the simulator) can run kernels in this process."""
    if SIMULATOR:
        return False
    try:
        from numba import cuda
    except ImportError:
        return False
    return cuda.is_available()


GPU = _gpu_usable()


def on_cuda(test):
    """Mark a test to run on the simulator (``-m cudasim`` with the variable set) or a GPU."""
    skip = pytest.mark.skipif(
        not (SIMULATOR or GPU),
        reason="runs CUDA kernels, on a GPU or on Numba's simulator: "
        "NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda.py -m cudasim",
    )
    return pytest.mark.cudasim(skip(test))


def simulated(test):
    """Mark a test that checks how the simulator itself is treated."""
    skip = pytest.mark.skipif(not SIMULATOR, reason="about the simulator itself")
    return pytest.mark.cudasim(skip(test))


on_gpu = pytest.mark.skipif(not GPU, reason="needs a usable CUDA GPU")


def without_simulator(test):
    return pytest.mark.skipif(SIMULATOR, reason="needs the real CUDA target, not the simulator")(test)


def assert_same(gpu, cpu):
    """GPU and CPU results agree to float rounding (float32: 2e-5, float64: 1e-10)."""
    assert isinstance(gpu, np.ndarray), type(gpu)
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    if cpu.dtype.kind != "f":
        np.testing.assert_array_equal(gpu, cpu)
        return
    rtol, atol = (2e-5, 2e-6) if cpu.dtype == np.float32 else (1e-10, 1e-12)
    finite = np.isfinite(cpu)
    scale = max(1.0, float(np.abs(cpu[finite]).max())) if finite.any() else 1.0
    np.testing.assert_allclose(gpu, cpu, rtol=rtol, atol=atol * scale, equal_nan=True)


def both(func, *args, **kwargs):
    """``func`` on the GPU and on the CPU; the inputs must come back unchanged."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    gpu = func(*args, backend="cuda", **kwargs)
    cpu = func(*args, backend="cpu", **kwargs)
    for a, c in zip(args, copies):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, c)
    assert_same(gpu, cpu)
    return gpu


@pytest.fixture
def image(rng):
    return rng.random((19, 22)).astype(np.float32)


@pytest.fixture
def rgb(rng):
    return rng.random((11, 13, 3)).astype(np.float32)


# --------------------------------------------------------------------------
# Edge filters
# --------------------------------------------------------------------------


@on_cuda
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", EDGES)
def test_edge_filters_every_mode(name, mode, image):
    both(getattr(sc, name), image, mode=mode, cval=0.75)


@on_cuda
@pytest.mark.parametrize("name", ["sobel_h", "scharr_v", "prewitt_h", "farid_v"])
def test_directional_edge_filters(name, rng):
    both(getattr(sc, name), rng.random((14, 17)), mode=("constant", "mirror"), cval=-1.5)


@on_cuda
@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.float64, np.uint8, np.uint16, np.int8, np.int16, np.int32, np.uint32, np.int64, bool],
)
def test_edge_filter_input_dtypes(dtype, rng):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        data = rng.integers(info.min, info.max, (13, 15), endpoint=True, dtype=dtype)
    else:
        data = (rng.random((13, 15)) > 0.5) if dtype is bool else rng.random((13, 15))
    data = data.astype(dtype)
    both(sc.sobel, data, mode="constant", cval=0.25)


@on_cuda
def test_edge_filter_dtype_and_preserve_range(rng):
    data = rng.integers(0, 4000, (12, 14)).astype(np.uint16)
    both(sc.scharr, data, preserve_range=True, dtype=np.float32)
    both(sc.prewitt, data.astype(np.float64), dtype=np.float32, mode="wrap")


@on_cuda
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
def test_edge_filter_volume(axis, rng):
    both(sc.sobel, rng.random((4, 7, 9)), axis=axis, mode=("reflect", "constant", "wrap"), cval=0.5)


@on_cuda
def test_edge_filter_channels_and_mask(rng):
    stack = rng.random((10, 12, 3))
    both(sc.farid, stack, channel_axis=-1, mode="nearest")
    both(sc.sobel, np.moveaxis(stack, -1, 0), channel_axis=0, mode="mirror")
    mask = rng.random((10, 12)) > 0.2
    both(sc.sobel, stack, mask=mask, channel_axis=2)
    both(sc.scharr, stack[..., 0], mask=mask)


@on_cuda
def test_edge_filter_across_tile_seams(rng):
    """Larger than one 32 x 32 tile in both directions, with NaN inside."""
    data = rng.random((37, 70)).astype(np.float32)
    data[33, 31] = np.nan
    both(sc.sobel, data, mode="reflect")


# --------------------------------------------------------------------------
# 1-D, separable and user kernels
# --------------------------------------------------------------------------

KERNELS_1D = {
    "symmetric": [1.0, 4.0, 6.0, 4.0, 1.0],
    "antisymmetric": [-1.0, -2.0, 0.0, 2.0, 1.0],
    "plain": [0.5, -1.0, 3.0, 2.0],
}


@on_cuda
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(KERNELS_1D))
def test_correlate1d_every_mode(kind, mode, rng):
    weights = KERNELS_1D[kind]
    volume = rng.random((3, 7, 9))
    both(sc.correlate1d, volume, weights, axis=-1, mode=mode, cval=2.0)
    both(sc.correlate1d, volume, weights, axis=1, mode=mode, cval=2.0)
    both(sc.correlate1d, volume[0].astype(np.float32), weights, axis=0, mode=mode, cval=2.0)


@on_cuda
def test_correlate1d_outputs_origin_and_convolve(rng):
    data = rng.integers(0, 200, (9, 11)).astype(np.uint8)
    both(sc.correlate1d, data, [1, -3, 1], mode="constant", cval=7)  # uint8 out, wraps
    both(sc.correlate1d, data, [1, 2, 2], output=np.int16, origin=1)
    both(sc.correlate1d, data, [0.5, 0.5], output=bool)
    both(sc.convolve1d, data.astype(np.float32), [1, 2, 3, 4], axis=0, origin=-1, mode="wrap")
    filled = np.zeros(data.shape, np.float64)
    result = sc.correlate1d(data, [1, 2], output=filled, backend="cuda")
    assert result is filled
    assert_same(filled, sc.correlate1d(data, [1, 2], output=np.float64, backend="cpu"))


# Values where SciPy's C casts differ from NumPy's: halves, wraparounds, the edges of
# int32 and int64, the uint64 range above 2**63, infinities and NaN.
CAST_EDGES = [0.0, 0.5, -0.5, 0.99, -1.0, 1.5, 255.0, 256.0, 256.5, 511.0, -256.0, 65536.0,
              2.0**31 - 0.5, 2.0**31, -(2.0**31) - 0.5, -(2.0**31) - 1.0, 2.0**32 + 3.0,
              2.0**63 - 1024.0, 2.0**63, 2.0**63 + 4096.0, 2.0**64, -(2.0**63), -(2.0**63) - 2048.0,
              1e300, -1e300, np.inf, -np.inf, np.nan]  # fmt: skip


@on_cuda
@pytest.mark.parametrize(
    "dtype", [bool, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
)
def test_integer_and_bool_outputs_cast_as_scipy_does(dtype):
    """A result of 0.5 is False as bool (SciPy stores the truncated byte), 256 wraps to 0, and
    out-of-range values take the same indefinite value on the GPU as on the CPU."""
    values = np.array([CAST_EDGES, CAST_EDGES[::-1]], np.float64)
    with np.errstate(over="ignore"):
        kept = values.astype(np.float32)  # float32 results too
    for data in (values, kept):
        gpu = sc.correlate1d(data, [1.0], output=dtype, backend="cuda")
        np.testing.assert_array_equal(gpu, sc.correlate1d(data, [1.0], output=dtype, backend="cpu"))
        with np.errstate(invalid="ignore", over="ignore"):
            np.testing.assert_array_equal(gpu, ndi.correlate1d(data, [1.0], output=dtype))
    assert not sc.correlate1d(np.array([[0.0, 1.0]]), [0.5, 0.5], output=bool, backend="cuda").any()


@on_cuda
@pytest.mark.parametrize("mode", MODES)
def test_correlate1d_longer_than_shared_memory(mode, rng):
    """Kernels whose tile would not fit in shared memory run from global memory."""
    weights = rng.random(401)
    both(sc.correlate1d, rng.random((2, 9)), weights, mode=mode, cval=1.0)
    both(sc.correlate1d, rng.random((9, 2)), weights[:201], axis=0, mode=mode, cval=1.0)


@on_cuda
@pytest.mark.parametrize("mode", MODES)
def test_separable_filter_every_mode(mode, rng):
    data = rng.random((13, 16)).astype(np.float32)
    both(sc.separable_filter, data, [[1, 2, 1], [1, -1, 0, 2]], mode=mode, cval=1.5)


@on_cuda
def test_separable_filter_axes_order_and_channels(rng):
    volume = rng.random((5, 8, 7))
    both(sc.separable_filter, volume, [[1, 2, 3], [1, 1], [2, -1, 2]], mode="constant", cval=-2.0)
    both(sc.separable_filter, volume, [[1, 2, 3], [1, -1]], axes=(2, 0), mode=("wrap", "nearest"))
    both(sc.separable_filter, volume, [[1, 4, 1]], channel_axis=0)


@on_cuda
@pytest.mark.parametrize("length", [2, 7, 13, 21])
def test_separable_filter_kernel_lengths(length, rng):
    """Each unrolled variant of the fused kernel (up to 4, 8, 16 taps) and the generic one."""
    taps = rng.random(length) - 0.25
    both(sc.separable_filter, rng.random((12, 35)).astype(np.float32), [taps[::-1], taps], mode="mirror")


@on_cuda
def test_separable_filter_too_long_to_fuse(rng):
    """Kernels too long for the fused tile run as one pass per axis."""
    taps = rng.random(101)
    both(
        sc.separable_filter,
        rng.random((10, 12)).astype(np.float32),
        [taps, taps[:61]],
        mode="constant",
        cval=3.0,
    )


@on_cuda
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["rank-2", "direct"])
def test_filter2d_every_mode(how, mode, rng):
    if how == "rank-2":
        kernel = np.outer([1, 2, 1, 0, -1], [1, 0, -1, 2, 3]) + np.outer([0, 1, 3, 1, 0], [1, 1, 1, 1, 1])
    else:
        kernel = rng.random((3, 4)) - 0.5
    both(sc.filter2d, rng.random((14, 17)).astype(np.float32), kernel, mode=mode, cval=0.5)


@on_cuda
@pytest.mark.parametrize("mode", MODES)
def test_one_sided_kernels_on_images_shorter_than_their_reach(mode, rng):
    """Separable terms without offset 0 (shifted, causal) whose taps reach one to three image
    lengths past the border: the fused kernel's border index is exact within one length
    only, so these take the generic kernels (or fit), never a clamped index."""
    kernels = [
        np.outer([0, 0, 0, 0, 0, 1, 2, 3, 0], [1, 2, 3, 0, 0, 0, 0, 0, 0]),
        np.outer([0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 2, 1]),
        np.outer([1, 2, 1, 0, 0], [0, 0, 1, 2, 1]),
    ]
    for kernel in kernels:
        for shape in ((3, 3), (4, 5), (6, 6)):
            both(sc.filter2d, rng.random(shape), kernel.astype(float), mode=mode, cval=0.5)


@on_cuda
def test_filter2d_rank_channels_and_stacks(rng):
    kernel = rng.random((5, 5))
    both(sc.filter2d, rng.random((2, 9, 10)), kernel, rank=1, mode="mirror")
    both(sc.filter2d, rng.random((9, 3, 10)), kernel, channel_axis=1, mode="constant", cval=1)
    data = rng.integers(0, 255, (9, 10)).astype(np.uint8)
    both(sc.filter2d, data, np.ones((2, 2)), mode="nearest")


@on_cuda
@pytest.mark.parametrize("mode", ["constant", "wrap"])
def test_filter2d_kernel_larger_than_shared_memory(mode, rng):
    """A 61 x 61 kernel (few non-zero taps) runs from global memory; larger than the image."""
    kernel = np.zeros((61, 61))
    kernel[0, 0], kernel[60, 60], kernel[30, 30], kernel[5, 40] = 1.0, 2.0, 3.0, -1.0
    both(sc.filter2d, rng.random((12, 14)), kernel, mode=mode, cval=0.25)


# --------------------------------------------------------------------------
# Channel filters
# --------------------------------------------------------------------------


@on_cuda
@pytest.mark.parametrize("mode", MODES)
def test_depthwise_every_mode(mode, rgb, rng):
    both(sc.depthwise_filter, rgb, rng.random((3, 3, 4)) - 0.3, mode=mode, cval=0.5)
    rank1 = np.stack(
        [
            np.outer([1, 2, 1], [1, 0, -1]),
            np.outer([0, 1, 1], [2, 1, 0]),
            np.outer([1, 1, 1], [1, 1, 1]) / 9.0,
        ]
    )
    both(sc.depthwise_filter, rgb, rank1, mode=mode, cval=0.5)  # as two 1-D passes


@on_cuda
def test_depthwise_multiplier_channel_axis_and_dtypes(rgb, rng):
    both(sc.depthwise_filter, rgb, rng.random((3, 2, 3, 3)), mode=("constant", "wrap"), cval=2)
    chw = np.ascontiguousarray(np.moveaxis(rgb, -1, 0)).astype(np.float64)
    both(sc.depthwise_filter, chw, rng.random((3, 2, 2, 3)), channel_axis=0)
    both(sc.depthwise_filter, (rgb * 255).astype(np.uint8), rng.random((3, 3, 3)))
    stack = rng.random((2, 7, 9, 2))
    both(sc.depthwise_filter, stack, np.stack([np.outer([1, 2], [3, 1, 1])] * 2), mode="mirror")


@on_cuda
def test_channel_kernels_beyond_the_plan_limits(rgb, rng, monkeypatch):
    """Kernels of more than ``CHANNEL_PLAN_TAPS`` taps run the generic channel kernels."""
    from napari_sepconv import _cuda

    log = []
    monkeypatch.setattr(_cuda, "launch_log", log)
    dense = rng.random((3, 9, 9)) - 0.3  # 81 taps
    both(sc.depthwise_filter, rgb, dense, mode="reflect")
    both(sc.depthwise_separable_filter, rgb, dense, rng.random((4, 3)) - 0.5, mode="constant", cval=0.5)
    both(sc.depthwise_filter, rgb, rng.random((3, 3, 3)), mode="wrap")  # generated for its plan
    assert [(name, variant) for name, variant, _ in log if name.startswith("depthwise")] == [
        ("depthwise", True),
        ("depthwise_separable", None),
        ("depthwise", "specialised"),
    ]


@on_cuda
def test_depthwise_zero_weights_keep_nan_local(rgb):
    data = rgb.copy()
    data[5, 6, 1] = np.nan
    kernels = np.zeros((3, 3, 3))
    kernels[:, 1, 1] = 1.0
    kernels[0, 0, 0] = 2.0
    out = both(sc.depthwise_filter, data, kernels)
    assert np.isnan(out).sum() == 1


@on_cuda
def test_depthwise_kernels_larger_than_shared_memory(rng):
    data = rng.random((6, 7, 3))
    kernels = np.zeros((3, 61, 61))
    kernels[:, 0, 0], kernels[:, 30, 30], kernels[1, 60, 2] = 1.0, 2.0, -1.0
    both(sc.depthwise_filter, data, kernels, mode="reflect")
    rows = np.zeros((3, 2049))
    rows[:, [0, 1024, 2048]] = [1.0, 2.0, 3.0]
    rank1 = np.stack([np.outer([1.0, 2.0, 1.0], r) for r in rows])
    both(sc.depthwise_filter, data, rank1, mode="constant", cval=1.0)  # passes, no tile


@on_cuda
def test_pointwise(rgb, rng):
    both(sc.pointwise_filter, rgb, rng.random((5, 3)) - 0.5, rng.random(5))
    both(sc.pointwise_filter, (rgb * 255).astype(np.uint8), rng.random((2, 3)))
    both(sc.pointwise_filter, np.moveaxis(rgb, -1, 0), rng.random((4, 3)), channel_axis=0)
    many = rng.random((3, 4, 64))  # weights too large for shared memory
    both(sc.pointwise_filter, many, rng.random((100, 64)), rng.random(100))


@on_cuda
@pytest.mark.parametrize("mode", MODES)
def test_depthwise_separable_every_mode(mode, rgb, rng):
    both(
        sc.depthwise_separable_filter,
        rgb,
        rng.random((3, 2, 3, 3)),
        rng.random((4, 6)) - 0.5,
        rng.random(4),
        mode=mode,
        cval=1.25,
    )


@on_cuda
def test_depthwise_separable_layouts_and_bands(rgb, rng):
    both(
        sc.depthwise_separable_filter,
        np.moveaxis(rgb, -1, 0),
        rng.random((3, 3, 3)),
        rng.random((2, 3)),
        channel_axis=0,
        mode="wrap",
    )
    rank1 = np.stack([np.outer([1, 2, 1], [1, 0, -1])] * 3).astype(float)
    both(
        sc.depthwise_separable_filter,
        (rgb * 65535).astype(np.uint16),
        rank1,
        rng.random((5, 3)),
        mode="constant",
        cval=0.5,
    )
    # too large a tile for shared memory: row bands through global memory
    kernels = np.zeros((3, 61, 61))
    kernels[:, 0, 0], kernels[:, 30, 30], kernels[2, 60, 59] = 1.0, 2.0, -1.0
    both(
        sc.depthwise_separable_filter,
        rgb[:6, :7].astype(np.float64),
        kernels,
        rng.random((2, 3)),
        mode="mirror",
    )


# --------------------------------------------------------------------------
# Device arrays in and out
# --------------------------------------------------------------------------


def _device_calls(rng):
    image = rng.random((10, 12)).astype(np.float32)
    rgb = rng.random((9, 10, 3)).astype(np.float32)
    return [
        (sc.sobel, image, {}),
        (sc.scharr_v, image, {"mode": "wrap"}),
        (sc.farid, image, {"mask": image > 0.2}),
        (sc.correlate1d, image, {"weights": [1, 2, 3], "axis": 0}),
        (sc.convolve1d, image, {"weights": [1, 2, 3, 4], "mode": "constant", "cval": 1}),
        (sc.separable_filter, image, {"kernels": [[1, 2, 1], [1, 0, -1]]}),
        (sc.filter2d, image, {"kernel": np.arange(9.0).reshape(3, 3)}),
        (sc.depthwise_filter, rgb, {"kernels": np.ones((3, 3, 3)) / 9}),
        (sc.pointwise_filter, rgb, {"weights": np.ones((2, 3))}),
        (
            sc.depthwise_separable_filter,
            rgb,
            {"depthwise_kernels": np.ones((3, 3, 3)) / 9, "pointwise_weights": np.ones((2, 3))},
        ),
    ]


@on_cuda
def test_device_arrays_in_give_device_arrays_out(rng):
    from numba import cuda

    for func, data, kwargs in _device_calls(rng):
        device = cuda.to_device(data)
        out = func(device, **kwargs)  # backend='auto' runs where the data is
        assert cuda.devicearray.is_cuda_ndarray(out), func.__name__
        np.testing.assert_array_equal(device.copy_to_host(), data)
        assert_same(out.copy_to_host(), np.ascontiguousarray(func(data, backend="cpu", **kwargs)))


@on_cuda
def test_device_arrays_as_outputs(rng):
    """A GPU array given as scipy's ``output=`` (it has a dtype, and was once taken for one)
    is filled with the values of a new array of its dtype, and returned, as SciPy returns
    its ``output``; one of another shape, a strided one, or one given with host input is
    refused before anything runs, naming the argument. scikit-image's ``out=`` is filled
    also from a result with its channel axis moved back (a strided view on the device), and
    a strided ``out`` is refused."""
    from numba import cuda

    image = rng.random((6, 7))
    device = cuda.to_device(image)
    calls = {
        "correlate1d": lambda x, **kw: sc.correlate1d(x, [1.0, 2.0, 1.0], **kw),
        "gaussian_filter": lambda x, **kw: sc.gaussian_filter(x, 1.0, **kw),
        "gaussian_laplace": lambda x, **kw: sc.gaussian_laplace(x, 1.0, **kw),
        "uniform_filter": lambda x, **kw: sc.uniform_filter(x, 3, **kw),
        "ndimage_laplace": lambda x, **kw: sc.ndimage_laplace(x, **kw),
    }
    for name, call in calls.items():
        for dtype in (np.float64, np.float32, np.int16):
            output = cuda.to_device(np.full(image.shape, 7, dtype))
            assert call(device, output=output) is output, name
            filled = output.copy_to_host()
            np.testing.assert_array_equal(filled, call(device, output=dtype).copy_to_host())
            if dtype != np.int16:  # a value a rounding away from an integer may truncate apart
                assert_same(filled, call(image, output=dtype, backend="cpu"))
        for bad, error in (
            (cuda.to_device(np.zeros((6, 8))), RuntimeError),
            (cuda.to_device(np.zeros((6, 14)))[:, ::2], ValueError),
        ):
            with pytest.raises(error, match="output"):
                call(device, output=bad)
        with pytest.raises(TypeError, match="output"):
            call(image, output=cuda.to_device(np.zeros(image.shape)), backend="cuda")
    positional = cuda.to_device(np.zeros(image.shape))
    assert sc.correlate1d(device, [1.0, 2.0], -1, positional) is positional
    np.testing.assert_array_equal(positional.copy_to_host(), sc.correlate1d(image, [1.0, 2.0], backend="cpu"))
    np.testing.assert_array_equal(device.copy_to_host(), image)
    rgb = rng.random((4, 5, 3))
    out = cuda.to_device(np.zeros((4, 5, 3)))
    assert sc.gaussian(cuda.to_device(rgb), 1.0, channel_axis=-1, out=out) is out
    assert_same(out.copy_to_host(), sc.gaussian(rgb, 1.0, channel_axis=-1, backend="cpu"))
    strided = cuda.to_device(np.zeros((4, 10, 3)))[:, ::2]
    with pytest.raises(ValueError, match="out"):
        sc.gaussian(cuda.to_device(rgb), 1.0, channel_axis=-1, out=strided)


class _ReversedCupyView:
    """What the engine sees of a CuPy view with a negative stride (``x[::-1]``)."""

    __module__ = "cupy._core.core"
    shape, strides, dtype = (5, 6), (-48, 8), np.dtype(np.float64)
    __cuda_array_interface__ = {"shape": (5, 6), "strides": (-48, 8), "typestr": "<f8", "version": 3}


@on_cuda
def test_reversed_cupy_views_are_refused_as_outputs(rng):
    """A CuPy view with a negative stride is read through a contiguous copy (``as_device``):
    given as ``output=`` or ``out=``, that copy was filled and the caller's array returned
    unfilled. Such a view is refused, naming the argument."""
    from numba import cuda

    device = cuda.to_device(rng.random((5, 6)))
    with pytest.raises(ValueError, match="output: .*reversed"):
        sc.correlate1d(device, [1.0, 2.0, 1.0], output=_ReversedCupyView())
    with pytest.raises(ValueError, match="out: .*reversed"):
        sc.gaussian(device, 1.0, out=_ReversedCupyView())


@on_cuda
def test_unsharp_mask_of_a_device_array_is_clipped_whatever_its_channel_axis(rng):
    """The device result with its channel axis moved back is a strided view: the clip of
    its values reshaped (a copy of them) was lost."""
    from numba import cuda

    signed = rng.random((4, 5, 3)) * 2 - 1
    for image, axis in ((signed, -1), (np.moveaxis(signed, -1, 1), 1), ((signed + 1) * 100, -1)):
        image = image.astype(np.uint8) if image.max() > 2 else image
        result = sc.unsharp_mask(cuda.to_device(np.ascontiguousarray(image)), 1.0, 3.0, channel_axis=axis)
        expected = sc.unsharp_mask(image, 1.0, 3.0, channel_axis=axis, backend="cpu")
        assert_same(result.copy_to_host(), expected)


@on_cuda
def test_device_input_views_and_dtypes(rng):
    """Strided device views are gathered on the device; dtypes follow the host rules."""
    from numba import cuda

    data = rng.random((12, 26))
    view = cuda.to_device(data)[1:, ::2]
    assert_same(sc.sobel(view).copy_to_host(), sc.sobel(data[1:, ::2]))
    transposed = cuda.to_device(data).T
    assert_same(sc.prewitt(transposed, mode="wrap").copy_to_host(), sc.prewitt(data.T, mode="wrap"))
    for values in (
        rng.integers(-128, 127, (9, 8)).astype(np.int8),
        rng.integers(0, 60000, (9, 8)).astype(np.uint16),
        rng.random((9, 8)).astype(np.float16),
        rng.random((9, 8)) > 0.5,
    ):
        assert_same(sc.sobel(cuda.to_device(values)).copy_to_host(), sc.sobel(values))
        assert_same(
            sc.sobel(cuda.to_device(values), preserve_range=True).copy_to_host(),
            sc.sobel(values, preserve_range=True),
        )


@on_cuda
def test_device_channel_layouts_come_back_as_views(rng):
    from numba import cuda

    stack = rng.random((3, 9, 10))
    out = sc.sobel(cuda.to_device(stack), channel_axis=0)
    assert_same(out.copy_to_host(), sc.sobel(stack, channel_axis=0))
    out = sc.depthwise_filter(cuda.to_device(stack), np.ones((3, 2, 3, 3)), channel_axis=0)
    assert out.shape == (6, 9, 10)
    assert_same(
        np.ascontiguousarray(out.copy_to_host()),
        sc.depthwise_filter(stack, np.ones((3, 2, 3, 3)), channel_axis=0),
    )


@simulated
def test_auto_never_runs_host_arrays_on_the_simulator(image, monkeypatch):
    from napari_sepconv import _cuda

    log = []
    monkeypatch.setattr(_cuda, "launch_log", log)
    monkeypatch.setenv("SEPCONV_BACKEND", "cuda")
    assert sc.available_backends() == ("cpu", "cuda")
    sc.sobel(image)
    sc.set_backend("cuda")
    try:
        sc.sobel(image)
    finally:
        sc.set_backend("auto")
    assert log == []
    sc.sobel(image, backend="cuda")
    assert log


@on_cuda
def test_cpu_backend_refuses_device_arrays(image):
    from numba import cuda

    with pytest.raises(ValueError, match="GPU array"):
        sc.sobel(cuda.to_device(image), backend="cpu")


# --------------------------------------------------------------------------
# Every kernel to real PTX (no simulator in this process)
# --------------------------------------------------------------------------


def _signature(name, src, dtype):
    """The argument types ``_cuda`` launches kernel ``name`` with (``src``: image dtype)."""
    import numba
    from numba import types

    def arr(dt, ndim):
        return types.Array(numba.from_dtype(np.dtype(dt)), ndim, "C")

    f = numba.from_dtype(np.dtype(dtype))
    i = types.int64
    ints, floats, floats2 = arr(np.int64, 1), arr(dtype, 1), arr(dtype, 2)
    flags = arr(np.uint8, 1)
    return {
        "correlate_x": (arr(src, 2), ints, floats, i, i, i, i, f, arr(dtype, 2)),
        "correlate_y": (arr(src, 3), ints, floats, i, i, i, i, f, arr(dtype, 3)),
        "correlate_any": (arr(src, 3), ints, floats, i, i, f, arr(dtype, 3)),
        "separable_2d": (
            arr(src, 3),
            arr(np.int64, 2),
            floats2,
            ints,
            arr(np.int64, 2),
            floats2,
            ints,
            i,
            i,
            i,
            i,
            i,
            i,
            f,
            floats,
            i,
            f,
            i,
            arr(dtype, 3),
        ),
        "edge_magnitude_3x3": (arr(src, 3), floats, i, i, f, f, f, f, arr(dtype, 3)),
        "correlate_2d": (arr(src, 3), ints, ints, floats, i, i, i, i, i, i, f, arr(dtype, 3)),
        "depthwise": (
            arr(src, 4),
            ints,
            ints,
            floats2,
            flags,
            i,
            i,
            i,
            i,
            i,
            i,
            i,
            f,
            i,
            i,
            i,
            arr(dtype, 4),
        ),
        "depthwise_passes": (
            arr(src, 4),
            ints,
            floats2,
            ints,
            floats2,
            i,
            i,
            i,
            i,
            i,
            f,
            floats,
            i,
            i,
            i,
            arr(dtype, 4),
        ),
        "depthwise_separable": (
            arr(src, 4),
            ints,
            ints,
            floats2,
            flags,
            i,
            i,
            i,
            i,
            i,
            i,
            i,
            f,
            floats2,
            floats,
            i,
            i,
            i,
            arr(dtype, 4),
        ),
        "pointwise": (arr(src, 2), floats2, floats, i, i, arr(dtype, 2)),
        "combine": (floats, floats, i, i),
        "finish_magnitude": (floats, f),
        "apply_mask": (floats, flags),
        "convert": (arr(src, 1), types.float64, i, floats),
        "cast": (arr(src, 1), floats),
        "gather": (arr(dtype, 1), ints, ints, arr(dtype, 1)),
    }[name]


FLOAT_ARITHMETIC = {"add", "sub", "mul", "fma", "div", "sqrt", "rsqrt", "neg", "abs", "min", "max", "setp"}

# Kernels that read the image itself, in its own dtype.
_IMAGE_READERS = {
    "correlate_x",
    "correlate_y",
    "correlate_any",
    "separable_2d",
    "edge_magnitude_3x3",
    "correlate_2d",
    "depthwise",
    "depthwise_passes",
    "depthwise_separable",
    "pointwise",
}


def _ptx_cases():
    from napari_sepconv._cuda_kernels import BUILDERS

    cases = []
    for name, (_, variants) in BUILDERS.items():
        for variant in variants:
            pairs = [(np.float32, np.float32), (np.float64, np.float64)]
            if name in _IMAGE_READERS and variant in (None, True):
                pairs.append((np.uint8, np.float64))  # integer images, skimage's float64
            if name == "convert":
                pairs = [(np.int16, np.float32), (np.float16, np.float32)]
            if name == "cast":
                pairs = [(np.float64, np.uint8), (np.float32, np.bool_), (np.float64, np.float32)]
                pairs += [(np.float32, np.uint64), (np.float64, np.int64), (np.float64, np.int32)]
                pairs += [(np.float32, np.int8), (np.float64, np.uint16), (np.float32, np.int16)]
                pairs += [(np.float64, np.uint32), (np.float64, np.bool_)]
            for src, dtype in pairs:
                label = f"{name}-{variant}-{np.dtype(src).name}-{np.dtype(dtype).name}"
                cases.append(pytest.param(name, variant, src, dtype, id=label))
    return cases


@without_simulator
@pytest.mark.parametrize("name, variant, src, dtype", _ptx_cases())
def test_every_kernel_compiles_to_ptx(name, variant, src, dtype):
    from numba import cuda

    from napari_sepconv._cuda_kernels import python_kernel

    ptx, _ = cuda.compile_ptx(python_kernel(name, dtype, variant), _signature(name, src, dtype), cc=(8, 0))
    assert ".entry" in ptx and "sm_80" in ptx
    if np.dtype(dtype) == np.float32 and name != "convert":
        # float32 data is computed in float32 (convert works in float64 on purpose)
        arithmetic = [
            line
            for line in ptx.splitlines()
            if line.split(".")[0].strip() in FLOAT_ARITHMETIC and ".f64" in line
        ]
        assert not arithmetic, arithmetic[:5]


@on_cuda
def test_launches_use_the_signatures_compiled_to_ptx(rng, monkeypatch):
    """What the engine launches is what ``test_every_kernel_compiles_to_ptx`` compiles."""
    from numba import cuda

    from napari_sepconv import _cuda

    log = []
    monkeypatch.setattr(_cuda, "launch_log", log)
    monkeypatch.setattr(_cuda, "_cublas", lambda: None)  # pointwise through our kernel
    image = rng.random((9, 10)).astype(np.float32)
    rgb = rng.random((6, 7, 3))
    kernel = np.zeros((61, 61))
    kernel[0, 0] = kernel[60, 60] = 1.0
    sc.sobel(image, backend="cuda", mask=image > 0.5)
    sc.sobel(rng.random((3, 5, 6)), backend="cuda")
    sc.sobel((image * 255).astype(np.uint8), backend="cuda")
    sc.correlate1d(image, [1, 2, 3], axis=0, backend="cuda")
    sc.correlate1d(image, np.ones(401), output=np.uint8, backend="cuda")
    sc.correlate1d(image, [1, 2], backend="cuda")
    sc.separable_filter(image, [np.ones(21), np.ones(9)], backend="cuda")
    sc.separable_filter(image, [np.ones(15), np.ones(3)], backend="cuda")
    sc.separable_filter(image, [np.ones(101), np.ones(101)], backend="cuda")
    sc.filter2d(image, np.arange(9.0).reshape(3, 3), backend="cuda")
    sc.filter2d(image, kernel, backend="cuda")
    sc.depthwise_filter(rgb, np.ones((3, 3, 3)), backend="cuda")
    rank1 = np.ones((3, 2, 3, 3)) * np.arange(1, 4)[:, None, None, None]
    sc.depthwise_filter(rgb, rank1, backend="cuda")
    sc.depthwise_filter(rgb, np.stack([kernel] * 3), backend="cuda")
    sc.pointwise_filter(rgb, np.ones((2, 3)), np.ones(2), backend="cuda")
    sc.depthwise_separable_filter(rgb, np.ones((3, 3, 3)), np.ones((2, 3)), backend="cuda")
    sc.sobel(cuda.to_device(rng.random((8, 9)).astype(np.float16)))
    sc.sobel(cuda.to_device(rng.random((8, 9)))[:, ::2])
    sc.farid(image, backend="cuda")
    launched = {name for name, _, _ in log}
    assert {
        "edge3",
        "fused",
        "correlate_y",
        "correlate_x",
        "correlate_any",
        "correlate_2d",
        "depthwise",
        "depthwise_passes",
        "depthwise_separable",
        "pointwise",
        "apply_mask",
        "combine",
        "cast",
        "convert",
        "gather",
    } <= launched
    from napari_sepconv._cuda_kernels import BUILDERS

    for name, variant, types in log:
        if variant == "specialised":  # generated per plan; test_cuda_budget compiles them
            assert name in (
                "edge3",
                "fused",
                "depthwise",
                "depthwise_passes",
                "depthwise_separable",
                "pointwise",
            ), name
            continue
        assert variant in BUILDERS[name][1], (name, variant)
        src = types[0].dtype if name in _IMAGE_READERS | {"convert", "cast"} else None
        dtype = (types[0] if name in {"combine", "finish_magnitude", "apply_mask"} else types[-1]).dtype
        expected = _signature(name, np.dtype(str(src)) if src else np.dtype(str(dtype)), np.dtype(str(dtype)))
        assert types == expected, (name, variant, types)


# --------------------------------------------------------------------------
# Where no GPU is usable (this machine, without the simulator)
# --------------------------------------------------------------------------


def _no_gpu_here():
    return not GPU


@without_simulator
@pytest.mark.skipif(not _no_gpu_here(), reason="a GPU is usable here")
def test_no_gpu_explicit_cuda_raises_saying_why(image, monkeypatch):
    monkeypatch.delenv("SEPCONV_BACKEND", raising=False)
    with pytest.raises(sc.BackendUnavailableError) as info:
        sc.sobel(image, backend="cuda")
    message = str(info.value)
    assert "driver" in message or "GPU" in message, message
    assert sc.available_backends() == ("cpu",)
    with pytest.raises(sc.BackendUnavailableError):
        sc.set_backend("cuda")
    monkeypatch.setenv("SEPCONV_BACKEND", "cuda")
    assert_same(sc.sobel(image), sc.sobel(image, backend="cpu"))  # 'auto' falls back quietly


@without_simulator
def test_reasons_name_the_cause_and_the_fix(monkeypatch):
    from numba.cuda.cudadrv import driver

    from napari_sepconv import _backend, _cuda

    class Driver:
        is_available = False
        initialization_error = None

    reasons = {}
    for case, error in [
        ("no driver", "CUDA driver library cannot be found."),
        ("no device", "Call to cuInit results in CUDA_ERROR_NO_DEVICE (100)"),
        ("disabled", "CUDA is disabled due to setting NUMBA_DISABLE_CUDA=1"),
    ]:
        fake = Driver()
        fake.initialization_error = error
        monkeypatch.setattr(driver, "driver", fake)
        reasons[case] = _cuda.unavailable_reason.__wrapped__()
    assert "NVIDIA driver" in reasons["no driver"]
    assert "no CUDA GPU" in reasons["no device"] and "CUDA_VISIBLE_DEVICES" in reasons["no device"]
    assert "NUMBA_DISABLE_CUDA" in reasons["disabled"]

    monkeypatch.setitem(sys.modules, "napari_sepconv._cuda", None)  # numba-cuda missing
    reason = _backend.cuda_unavailable_reason()
    assert "napari-sepconv[cuda]" in reason


def _run(code):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


def test_host_arrays_on_auto_never_import_the_cuda_target():
    proc = _run("""
        import sys
        import numpy as np
        import napari_sepconv as sc
        sc.sobel(np.ones((5, 6)))
        sc.depthwise_filter(np.ones((5, 6, 2)), np.ones((2, 3, 3)))
        print("numba.cuda" in sys.modules, "napari_sepconv._cuda" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_result_kind_follows_the_input(monkeypatch):
    """CuPy and PyTorch inputs get their own kind back, over the same memory."""
    import types

    from napari_sepconv import _cuda

    made = []
    cupy = types.ModuleType("cupy")
    cupy.asarray = lambda x: made.append(("cupy", x)) or "cupy array"
    torch = types.ModuleType("torch")
    torch.as_tensor = lambda x, device: made.append(("torch", x, device)) or "tensor"
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "torch", torch)

    def foreign(module, **attrs):
        cls = type("GPUArray", (), {"__module__": module, "__cuda_array_interface__": {}, **attrs})
        return cls()

    result = types.SimpleNamespace(__cuda_ndarray__=True)  # a Numba device array
    assert _cuda.like_input(result, foreign("cupy._core.core")) == "cupy array"
    assert _cuda.like_input(result, foreign("torch", device="cuda:1")) == "tensor"
    assert made == [("cupy", result), ("torch", result, "cuda:1")]
    assert _cuda.like_input(result, foreign("jax")) is result


def test_gpu_benchmark_exits_cleanly_without_a_gpu():
    if not _no_gpu_here():
        pytest.skip("a GPU is usable here; run benchmarks/bench_gpu.py itself")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py")],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "no GPU" in proc.stdout + proc.stderr


@on_cuda
def test_filter2d_multi_term_spreads_nan_as_scipy_on_the_gpu():
    from scipy import ndimage as ndi

    image = np.random.default_rng(3).random((12, 12))
    image[6, 6] = np.nan
    kernel = np.zeros((5, 5))
    kernel[2, :] = kernel[:, 2] = 1.0
    ours = sc.filter2d(image, kernel, backend="cuda")
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ndi.correlate(image, kernel)))


@on_cuda
def test_filter2d_of_a_kernel_without_weights_is_zero_on_the_gpu():
    """No weight in scipy's footprint (all within an epsilon of zero): zeros, as scipy,
    where one zero tap spread NaN and inf."""
    from scipy import ndimage as ndi

    image = np.random.default_rng(4).random((2, 9, 10))
    image[0, 4, 4], image[1, 2, 7] = np.nan, np.inf
    for kernel in (np.zeros((3, 3)), np.full((2, 4), 1e-17)):
        ours = sc.filter2d(image, kernel, backend="cuda")
        for plane in range(2):
            np.testing.assert_array_equal(ours[plane], ndi.correlate(image[plane], kernel))


# --------------------------------------------------------------------------
# On a real GPU only: realistic sizes, many tiles and blocks, CuPy and PyTorch
# --------------------------------------------------------------------------


@on_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("mode", MODES)
def test_large_images_match_the_cpu(mode, dtype, rng):
    image = rng.random((517, 1031)) * (255 if dtype == np.uint8 else 1)
    image = image.astype(dtype)
    for name in EDGES:
        both(getattr(sc, name), image, mode=mode, cval=0.5)
    both(sc.sobel_v, image, mode=mode)
    both(sc.correlate1d, image, rng.random(9), axis=0, mode=mode)
    both(sc.separable_filter, image, [rng.random(15), rng.random(7)], mode=mode)
    u, v = rng.random((2, 11)), rng.random((2, 11))
    both(sc.filter2d, image, np.outer(u[0], v[0]) + np.outer(u[1], v[1]), mode=mode)
    both(sc.filter2d, image, rng.random((5, 5)), mode=mode)


@on_gpu
@pytest.mark.parametrize("mode", MODES)
def test_large_volumes_and_channel_images_match_the_cpu(mode, rng):
    volume = rng.random((37, 129, 211)).astype(np.float32)
    both(sc.sobel, volume, mode=mode)
    both(sc.scharr, volume, axis=1, mode=mode)
    channels = rng.random((300, 419, 16)).astype(np.float32)
    for size in (3, 5, 7):
        both(sc.depthwise_filter, channels, rng.random((16, size, size)), mode=mode)
    rank1 = np.einsum("ci,cj->cij", rng.random((16, 7)), rng.random((16, 7)))
    both(sc.depthwise_filter, channels, rank1, mode=mode)
    weights, bias = rng.random((32, 16)), rng.random(32)
    both(sc.pointwise_filter, channels, weights, bias)
    both(sc.depthwise_separable_filter, channels, rng.random((16, 3, 3)), weights, bias, mode=mode)
    planar = np.ascontiguousarray(np.moveaxis(channels, -1, 0))
    both(sc.depthwise_filter, planar, rng.random((16, 3, 3)), channel_axis=0, mode=mode)


@on_gpu
def test_cupy_and_torch_arrays_come_back_as_their_own_kind(rng):
    image = rng.random((300, 401)).astype(np.float32)
    expected = sc.sobel(image, backend="cpu")
    cupy = pytest.importorskip("cupy")
    out = sc.sobel(cupy.asarray(image))
    assert isinstance(out, cupy.ndarray)
    assert_same(cupy.asnumpy(out), expected)
    torch = pytest.importorskip("torch")
    tensor = torch.from_numpy(image).cuda()
    out = sc.sobel(tensor)
    assert isinstance(out, torch.Tensor) and out.is_cuda
    assert_same(out.cpu().numpy(), expected)
    np.testing.assert_array_equal(tensor.cpu().numpy(), image)  # input untouched


@simulated
def test_border_index_of_the_kernels_is_the_cpu_ones():
    """``_index32`` (with its division-free single reflection) and the fused kernels'
    ``_index_near32`` against ``_boundary``'s ``_source_index`` for every mode, lines of 1
    to 8 samples and positions up to five lengths outside them."""
    from napari_sepconv import _cuda_kernels
    from napari_sepconv._boundary import _source_index

    index32 = getattr(_cuda_kernels._index32, "py_func", _cuda_kernels._index32)
    near = getattr(_cuda_kernels._index_near32, "py_func", _cuda_kernels._index_near32)
    for n in range(1, 9):
        for i in range(-5 * n - 3, 6 * n + 3):
            for mode in range(5):
                expected = _source_index(i, n, mode)
                assert int(index32(i, n, mode)) == expected, (i, n, mode)
                # the fused kernels' variant: exact within a line length, in bounds beyond
                q = int(near(np.int32(i), np.int32(n), mode))
                if -(n - 1) <= i <= 2 * n - 2:
                    assert q == expected, (i, n, mode)
                else:
                    assert (0 <= q < n) or (mode == 1 and q == -1), (i, n, mode)
