"""Dask arrays in every public filter: lazy out, and exactly the in-memory values on compute.

The first part proves the block machinery of ``_dask.filter_lazily`` against scipy.ndimage
stand-ins (every pair of border modes, both constant conventions, asymmetric and long kernels);
the second runs every public function of sections 1-4 of the API on dask input in every mode and
several chunkings, channel axes split across chunks included, against the NumPy call.
"""

import subprocess
import sys
from functools import partial

import dask.array as da
import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sepconv as sc
from napari_sepconv import _dask

MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
CVAL = 0.75


def reach(weights, origin=0):
    """(before, after) of scipy's 1-D correlation anchoring."""
    centre = len(weights) // 2 + origin
    return centre, len(weights) - 1 - centre


# -- the machinery, with scipy stand-ins ---------------------------------------------------------


@pytest.mark.parametrize("mode0", MODES)
@pytest.mark.parametrize("mode1", MODES)
def test_separable_passes_any_mode_pair(rng, mode0, mode1):
    """Each 1-D pass pads with cval (the 'pass' convention), mixed modes, channels split."""
    image = rng.standard_normal((23, 17, 3)).astype(np.float32)
    k0, k1 = rng.standard_normal(5), rng.standard_normal(4)

    def func(block):
        out = ndi.correlate1d(block, k0, axis=0, mode=mode0, cval=CVAL)
        return ndi.correlate1d(out, k1, axis=1, mode=mode1, cval=CVAL)

    expected = func(image)
    for chunks in [(5, 4, 1), (1, 1, 3), (7, 17, 2), (23, 3, 1), (11, 2, 2)]:
        lazy = _dask.filter_lazily(
            func,
            da.from_array(image, chunks=chunks),
            halo={0: reach(k0), 1: reach(k1)},
            modes={0: mode0, 1: mode1},
            channel_axis=2,
            dtype=np.float32,
        )
        assert isinstance(lazy, da.Array)
        assert lazy.chunks[2] == (3,)
        np.testing.assert_array_equal(lazy.compute(), expected, err_msg=f"chunks {chunks}")


@pytest.mark.parametrize("mode", MODES)
def test_full_kernel_constant_and_every_mode(rng, mode):
    """A full n-D kernel (the 'full' convention) with a non-zero cval, 3-D, even sizes."""
    image = rng.standard_normal((11, 14, 9))
    kernel = rng.standard_normal((3, 4, 2))
    func = partial(ndi.correlate, weights=kernel, mode=mode, cval=CVAL)
    halo = {axis: reach(np.empty(n)) for axis, n in enumerate(kernel.shape)}
    expected = func(image)
    for chunks in [(3, 4, 2), (11, 5, 9), (2, 14, 3), (4, 4, 4)]:
        lazy = _dask.filter_lazily(
            func,
            da.from_array(image, chunks=chunks),
            halo=halo,
            modes=dict.fromkeys(range(3), mode),
            dtype=np.float64,
        )
        np.testing.assert_array_equal(lazy.compute(), expected, err_msg=f"chunks {chunks}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "length, origin", [(1, 0), (2, 0), (2, -1), (9, 0), (9, 4), (9, -4), (30, 3), (61, 0), (61, -7)]
)
def test_kernels_long_and_off_centre(rng, mode, length, origin):
    """Kernels up to longer than the image, shifted anchors: scipy's repeated extension."""
    image = rng.standard_normal(25)
    weights = rng.standard_normal(length)
    func = partial(ndi.correlate1d, weights=weights, mode=mode, cval=CVAL, origin=origin)
    expected = func(image)
    for chunks in [1, 3, 7, 12, 25]:
        lazy = _dask.filter_lazily(
            func,
            da.from_array(image, chunks=chunks),
            halo={0: reach(weights, origin)},
            modes={0: mode},
            dtype=np.float64,
        )
        np.testing.assert_array_equal(lazy.compute(), expected, err_msg=f"chunks {chunks}")


def test_channels_out_and_stack_axes(rng):
    """A filter that changes the channel count; an unfiltered leading stack axis."""
    image = rng.standard_normal((4, 3, 19, 16))  # stack, channels, y, x

    def func(block):
        # (uniform_filter would not do: its running sums round differently on a block)
        smoothed = ndi.correlate(block, np.full((1, 1, 3, 3), 1 / 9), mode="wrap")
        return np.concatenate([smoothed, 2 * smoothed], axis=1)

    lazy = _dask.filter_lazily(
        func,
        da.from_array(image, chunks=(1, 1, 5, 6)),
        halo={2: (1, 1), 3: (1, 1)},
        modes={2: "wrap", 3: "wrap"},
        channel_axis=1,
        channels_out=6,
        dtype=np.float64,
    )
    assert lazy.shape == (4, 6, 19, 16) and lazy.chunks[1] == (6,)
    np.testing.assert_array_equal(lazy.compute(), func(image))


def test_no_halo_and_empty(rng):
    image = rng.standard_normal((5, 4))
    lazy = _dask.filter_lazily(
        np.negative, da.from_array(image, chunks=2), halo={}, modes={}, dtype=np.float32
    )
    assert lazy.dtype == np.float32 and lazy.chunks == ((2, 2, 1), (2, 2))
    np.testing.assert_array_equal(lazy.compute(), -image.astype(np.float32))
    empty = _dask.filter_lazily(
        np.negative, da.zeros((0, 4), chunks=2), halo={0: (1, 1)}, modes={0: "reflect"}, dtype=np.float64
    )
    assert empty.shape == (0, 4)


def test_bad_arguments():
    image = da.zeros((4, 4), chunks=2)
    with pytest.raises(ValueError, match="modes"):
        _dask.filter_lazily(np.negative, image, halo={0: (1, 1)}, modes={0: "symmetric"}, dtype=float)
    with pytest.raises(ValueError, match="negative"):
        _dask.filter_lazily(np.negative, image, halo={0: (-1, 1)}, modes={0: "wrap"}, dtype=float)
    unknown = da.from_array(np.zeros(8), chunks=4)
    unknown = unknown[unknown > 1]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        _dask.filter_lazily(np.negative, unknown, halo={0: (1, 1)}, modes={0: "wrap"}, dtype=float)
    for call in (sc.uniform_filter, sc.gaussian_filter, sc.sobel):  # the running sums move chunks first
        with pytest.raises(ValueError, match="compute_chunk_sizes"):
            call(unknown, 3) if call is not sc.sobel else call(unknown)


def test_is_dask_array_imports_nothing():
    code = (
        "import sys, numpy as np, napari_sepconv as sc\n"
        "from napari_sepconv import _dask\n"
        "assert not _dask.is_dask_array(np.zeros(3))\n"
        "sc.sobel(np.zeros((4, 4)))\n"
        "assert 'dask' not in sys.modules, 'dask imported'\n"
        "import dask.array as da\n"
        "assert _dask.is_dask_array(da.zeros(3)) and not _dask.is_dask_array(np.zeros(3))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- every public function on dask input ---------------------------------------------------------

# name -> (call(image, mode), image shape, dtype, chunkings). `mode` is one name, applied to all
# axes; each call must give the same values on NumPy and on dask input.
SOBEL_X = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])


def _cases():
    rng = np.random.default_rng(7)
    k5, k4, k3 = rng.standard_normal(5), rng.standard_normal(4), rng.standard_normal(3)
    long_kernel = rng.standard_normal(31)
    kernel2d = rng.standard_normal((5, 4))
    rank2 = np.outer(k5, k3[:3]) + np.outer(rng.standard_normal(5), rng.standard_normal(3))
    depth3 = rng.standard_normal((3, 3, 5))
    depth3m = rng.standard_normal((3, 2, 4, 3))
    weights, bias = rng.standard_normal((4, 3)), rng.standard_normal(4)
    mask = rng.random((23, 19)) > 0.2
    plane, volume = (23, 19), (9, 13, 11)
    c2 = [(5, 4), (23, 3), (1, 19), (8, 8)]
    c3 = [(3, 5, 4), (9, 13, 11), (2, 13, 3)]
    rgb = (17, 15, 3)
    crgb = [(5, 4, 1), (17, 15, 2), (6, 15, 3)]
    cases = {}
    for name in ("sobel", "scharr", "prewitt", "farid"):
        fn = getattr(sc, name)
        cases[name] = (lambda x, m, fn=fn: fn(x, mode=m, cval=CVAL), plane, np.float64, c2)
        cases[f"{name}-3d"] = (lambda x, m, fn=fn: fn(x, mode=m, cval=CVAL), volume, np.float32, c3)
        cases[f"{name}-axis"] = (lambda x, m, fn=fn: fn(x, axis=1, mode=m, cval=CVAL), volume, np.float32, c3)
        cases[f"{name}-mask"] = (lambda x, m, fn=fn: fn(x, mask, mode=m, cval=CVAL), plane, np.float64, c2)
        cases[f"{name}-channels"] = (
            lambda x, m, fn=fn: fn(x, mode=m, cval=CVAL, channel_axis=-1),
            rgb,
            np.float32,
            crgb,
        )
        for suffix in ("h", "v"):
            fn_dir = getattr(sc, f"{name}_{suffix}")
            cases[f"{name}_{suffix}"] = (
                lambda x, m, fn=fn_dir: fn(x, mode=m, cval=CVAL),
                plane,
                np.float64,
                c2,
            )
    cases["sobel-uint8"] = (lambda x, m: sc.sobel(x, mode=m, cval=CVAL), plane, np.uint8, c2)
    cases["correlate1d"] = (
        lambda x, m: sc.correlate1d(x, k5, axis=0, mode=m, cval=CVAL, origin=1),
        plane,
        np.float64,
        c2,
    )
    cases["correlate1d-int"] = (
        lambda x, m: sc.correlate1d(x, k4, axis=-1, mode=m, cval=3),
        plane,
        np.int16,
        c2,
    )
    cases["convolve1d"] = (
        lambda x, m: sc.convolve1d(x, k4, axis=1, mode=m, cval=CVAL, output=np.float32),
        volume,
        np.float64,
        c3,
    )
    cases["separable"] = (
        lambda x, m: sc.separable_filter(x, [k5, k4], mode=m, cval=CVAL),
        plane,
        np.float64,
        c2,
    )
    cases["separable-3d"] = (
        lambda x, m: sc.separable_filter(x, [k3, k5, k4], mode=m, cval=CVAL),
        volume,
        np.float32,
        c3,
    )
    cases["separable-long"] = (
        lambda x, m: sc.separable_filter(x, [long_kernel, k3], mode=m, cval=CVAL),
        plane,
        np.float64,
        c2,
    )
    cases["separable-axes"] = (
        lambda x, m: sc.separable_filter(x, [k4, k5], axes=(2, 0), mode=m, cval=CVAL),
        volume,
        np.float64,
        c3,
    )
    cases["separable-channels"] = (
        lambda x, m: sc.separable_filter(x, [k5, k3], mode=m, cval=CVAL, channel_axis=-1),
        rgb,
        np.float32,
        crgb,
    )
    cases["filter2d"] = (lambda x, m: sc.filter2d(x, kernel2d, mode=m, cval=CVAL), plane, np.float64, c2)
    cases["filter2d-separable"] = (
        lambda x, m: sc.filter2d(x, SOBEL_X, mode=m, cval=CVAL),
        volume,
        np.float32,
        c3,
    )
    cases["filter2d-rank"] = (
        lambda x, m: sc.filter2d(x, rank2, rank=1, mode=m, cval=CVAL),
        plane,
        np.float64,
        c2,
    )
    cases["filter2d-channels"] = (
        lambda x, m: sc.filter2d(x, kernel2d, mode=m, cval=CVAL, channel_axis=-1),
        rgb,
        np.float32,
        crgb,
    )
    cases["depthwise"] = (
        lambda x, m: sc.depthwise_filter(x, depth3, mode=m, cval=CVAL),
        rgb,
        np.float32,
        crgb,
    )
    cases["depthwise-multiplier"] = (
        lambda x, m: sc.depthwise_filter(x, depth3m, mode=m, cval=CVAL),
        rgb,
        np.float64,
        crgb,
    )
    cases["depthwise-channel-first"] = (
        lambda x, m: sc.depthwise_filter(x, depth3, channel_axis=0, mode=m, cval=CVAL),
        (3, 17, 15),
        np.float32,
        [(1, 5, 4), (2, 17, 15)],
    )
    cases["pointwise"] = (lambda x, m: sc.pointwise_filter(x, weights, bias), rgb, np.float32, crgb)
    cases["depthwise-separable"] = (
        lambda x, m: sc.depthwise_separable_filter(x, depth3, weights, bias, mode=m, cval=CVAL),
        rgb,
        np.float64,
        crgb,
    )
    return cases


CASES = _cases()


def _image(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_public_function_on_dask(rng, name, mode):
    call, shape, dtype, chunkings = CASES[name]
    image = _image(rng, shape, dtype)
    expected = call(image, mode)
    for chunks in chunkings:
        lazy = call(da.from_array(image, chunks=chunks), mode)
        assert isinstance(lazy, da.Array), type(lazy)
        assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
        got = lazy.compute()
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected, err_msg=f"{name} {mode} chunks {chunks}")


def test_mode_per_axis_on_dask(rng):
    image = rng.standard_normal((21, 18))
    for fn in (sc.sobel, lambda x, **kw: sc.separable_filter(x, [[1, 2, 3], [1, -1]], **kw)):
        for modes in [("wrap", "mirror"), ("constant", "reflect"), ("nearest", "constant")]:
            expected = fn(image, mode=modes, cval=CVAL)
            lazy = fn(da.from_array(image, chunks=(4, 5)), mode=modes, cval=CVAL)
            np.testing.assert_array_equal(lazy.compute(), expected)


def test_lazy_until_computed(rng):
    """Calling a filter on dask input reads nothing."""
    calls = []

    def source(block_info=None):
        calls.append(block_info)
        return np.ones((8, 8))

    image = da.map_blocks(source, chunks=((8, 8), (8, 8)), meta=np.empty((0, 0)))
    lazy = sc.sobel(image)
    lazy = sc.separable_filter(lazy, [[1.0, 2.0, 1.0]] * 2, mode="wrap")
    assert calls == []
    assert lazy.compute().shape == (16, 16) and calls


@pytest.mark.parametrize("function", [sc.sobel, sc.farid_h, sc.laplace])
def test_a_lazy_mask_stays_lazy_and_exact(function):
    """A dask mask was read and eroded whole when the call was made; it is now eroded block
    by block with the image, with the same values as the NumPy call."""
    rng = np.random.default_rng(31)
    image, mask = rng.random((13, 14)), rng.random((13, 14)) > 0.2
    reads = []

    def counted(block):
        if block.size:  # not dask's look at an empty block for the result's type
            reads.append(block.shape)
        return block

    lazy_mask = da.from_array(mask, chunks=(3, 5)).map_blocks(counted, dtype=bool)
    result = function(da.from_array(image, chunks=4), mask=lazy_mask)
    assert reads == []
    np.testing.assert_array_equal(result.compute(scheduler="sync"), function(image, mask=mask))
    assert reads


def test_a_lazy_mask_of_the_spatial_shape_with_channels():
    rng = np.random.default_rng(32)
    image = rng.random((10, 11, 3))
    for mask in (rng.random((10, 11)) > 0.2, rng.random((10, 11, 3)) > 0.2):
        lazy = sc.sobel(
            da.from_array(image, chunks=(4, 4, 1)), mask=da.from_array(mask, chunks=3), channel_axis=-1
        )
        np.testing.assert_array_equal(lazy.compute(), sc.sobel(image, mask=mask, channel_axis=-1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pointwise_blocks_of_one_pixel_have_the_numpy_calls_bits(dtype):
    """A block of one pixel went to BLAS's matrix-vector product, rounded otherwise than
    the same pixel in the NumPy call's matrix product."""
    rng = np.random.default_rng(33)
    for channels_in, channels_out in [(3, 3), (3, 5), (7, 2), (12, 8)]:
        image = rng.random((9, 9, channels_in)).astype(dtype)
        weights = rng.random((channels_out, channels_in))
        expected = sc.pointwise_filter(image, weights)
        for chunks in [(4, 4, channels_in), (1, 1, channels_in), (5, 1, channels_in)]:
            lazy = sc.pointwise_filter(da.from_array(image, chunks=chunks), weights)
            np.testing.assert_array_equal(lazy.compute(), expected)
