"""Depthwise, pointwise and depthwise-separable filters against scipy.ndimage and NumPy."""

from functools import partial

import numpy as np
import pytest

import napari_sepconv as sc
from reference import MODES, as_float, assert_close, depthwise


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("multiplier", [None, 1, 3])
@pytest.mark.parametrize("ksize", [(3, 3), (5, 2), (1, 1), (7, 7)])
def test_depthwise_matches_scipy(rng, mode, multiplier, ksize):
    image = rng.random((2, 19, 23, 4))
    shape = (4,) + ((multiplier,) if multiplier else ()) + ksize
    kernels = rng.standard_normal(shape)
    ours = sc.depthwise_filter(image, kernels, mode=mode, cval=0.6)
    ref = np.stack([depthwise(p, kernels, mode, 0.6) for p in image])
    assert ours.shape == image.shape[:-1] + (4 * (multiplier or 1),)
    assert_close(ours, ref)


@pytest.mark.parametrize("mode", MODES)
def test_depthwise_rank_one_kernels_run_as_passes(rng, mode):
    image = rng.random((17, 21, 3)).astype(np.float32)
    kernels = np.einsum("ca,cb->cab", rng.standard_normal((3, 5)), rng.standard_normal((3, 3)))
    kernels[1, 2, :] = 0  # a zero row keeps the kernel rank 1
    plan = sc.depthwise_filter.plan(image, kernels, mode=mode, cval=2.0)
    assert plan.rank == 1 and plan.program.op.separable
    assert plan.multiplications == 3 * (5 + 3)
    ours = sc.depthwise_filter(image, kernels, mode=mode, cval=2.0)
    assert ours.dtype == np.float32
    assert_close(ours, depthwise(image.astype(np.float64), kernels, mode, 2.0), np.float32)


@pytest.mark.parametrize("channel_axis", [0, 1, -1, 2])
def test_depthwise_channel_axis_stays_in_place(rng, channel_axis):
    base = rng.random((11, 12, 3))
    image = np.moveaxis(base, -1, channel_axis)
    kernels = rng.standard_normal((3, 2, 3, 3))
    ours = sc.depthwise_filter(image, kernels, channel_axis=channel_axis)
    assert ours.shape[channel_axis] == 6
    assert_close(np.moveaxis(ours, channel_axis, -1), depthwise(base, kernels))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float16, bool])
@pytest.mark.parametrize("kind", ["rank one", "3x3", "5x5 planar"])
@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_depthwise_dtypes(rng, dtype, kind, mode):
    image = (rng.random((10, 9, 2)) * 200).astype(dtype)
    kernels = {
        "rank one": lambda: np.einsum("ca,cb->cab", rng.standard_normal((2, 3)), rng.standard_normal((2, 3))),
        "3x3": lambda: rng.standard_normal((2, 3, 3)),
        "5x5 planar": lambda: rng.standard_normal((2, 5, 5)),
    }[kind]()
    for multiplier_kernels in (kernels, np.stack([kernels, kernels[::-1]], axis=1)):
        ours = sc.depthwise_filter(image, multiplier_kernels, mode=mode, cval=0.25)
        ref = depthwise(as_float(image).astype(np.float64), multiplier_kernels, mode, 0.25)
        assert ours.dtype == (np.float32 if dtype == np.float16 else np.float64)
        assert_close(ours, ref, ours.dtype)


def test_depthwise_nan_follows_each_kernels_footprint(rng):
    image = rng.random((12, 12, 2))
    image[6, 6, :] = np.nan
    kernels = np.stack([np.outer([1, 0, 1], [1, 1, 1]), np.ones((3, 3))]).astype(float)
    ours = sc.depthwise_filter(image, kernels)
    ref = depthwise(image, kernels)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))


def test_depthwise_rank_one_factors_keep_the_footprint(rng):
    """Factors whose products fall within an epsilon of zero where the kernel is out of its
    footprint: the kernel runs directly, so that NaN spreads as in scipy."""
    factor = np.array([1.0, 1e-9, 1.0])
    image = rng.random((9, 10, 1))
    image[4, 4] = np.nan
    kernels = np.outer(factor, factor)[None]
    ours = sc.depthwise_filter(image, kernels)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(depthwise(image, kernels)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("channel_axis", [-1, 0, 1])
def test_pointwise_matches_matmul(rng, dtype, channel_axis):
    base = (rng.random((9, 10, 5)) * 100).astype(dtype)
    image = np.moveaxis(base, -1, channel_axis)
    weights = rng.standard_normal((7, 5))
    bias = rng.standard_normal(7)
    ours = sc.pointwise_filter(image, weights, bias, channel_axis=channel_axis)
    ref = as_float(base).astype(np.float64) @ weights.T + bias
    assert ours.shape[channel_axis] == 7
    assert_close(np.moveaxis(ours, channel_axis, -1), ref, ours.dtype)
    assert_close(sc.pointwise_filter(base, weights), as_float(base).astype(float) @ weights.T, ours.dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_separable_equals_composition(rng, mode, multiplier):
    image = rng.random((2, 20, 18, 3)).astype(np.float32)
    dw = rng.standard_normal((3, multiplier, 3, 3))
    pw = rng.standard_normal((5, 3 * multiplier))
    bias = rng.standard_normal(5)
    ours = sc.depthwise_separable_filter(image, dw, pw, bias, mode=mode, cval=1.0)
    ref = sc.pointwise_filter(sc.depthwise_filter(image, dw, mode=mode, cval=1.0), pw, bias)
    assert ours.dtype == np.float32
    assert_close(ours, ref, np.float32)
    ref64 = depthwise(image.astype(np.float64), dw, mode, 1.0) @ pw.T + bias
    assert_close(ours, ref64, np.float32)


def test_depthwise_separable_works_in_bands(rng, monkeypatch):
    from napari_sepconv import _cpu

    monkeypatch.setattr(_cpu, "BAND_ELEMENTS", 64)  # a few rows per band
    image = rng.random((33, 10, 2))
    dw = rng.standard_normal((2, 5, 5))
    pw = rng.standard_normal((3, 2))
    ours = sc.depthwise_separable_filter(image, dw, pw, channel_axis=2, mode="wrap")
    assert_close(ours, depthwise(image, dw, "wrap") @ pw.T)


def test_channel_filters_need_a_channel_axis(rng):
    with pytest.raises(ValueError, match="channel_axis"):
        sc.depthwise_filter(rng.random((5, 5, 2)), np.ones((2, 3, 3)), channel_axis=None)
    with pytest.raises(ValueError, match="image"):
        sc.depthwise_filter(rng.random((5, 2)), np.ones((2, 3, 3)))


@pytest.mark.parametrize("mode", MODES)
def test_depthwise_rank_one_kernels_with_one_sided_rows(rng, mode):
    # every channel's row factor is zero on one side of the centre
    image = rng.standard_normal((6, 7, 2))
    kernels = np.stack([np.outer([1.0, 2, 1], [0.0, 0, 0, 1, 2]), np.outer([1.0, 0, -1], [2.0, 1, 0, 0, 0])])
    assert_close(sc.depthwise_filter(image, kernels, mode=mode), depthwise(image, kernels, mode))
    assert_close(
        sc.depthwise_separable_filter(image, kernels, np.eye(2), mode=mode), depthwise(image, kernels, mode)
    )


def test_depthwise_float_rank_one_kernel_keeps_its_zero_rows(rng):
    a = np.array([-0.0, -0.188, 1.3, -0.189, -2.138])
    b = np.array([0.145, -0.126, -0.7, 0.0, -0.462])
    image = rng.random((12, 13, 1))
    image[6, 6] = np.nan
    ours = sc.depthwise_filter(image, np.outer(a, b)[None])
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(depthwise(image, [np.outer(a, b)])))


def test_empty_images_give_empty_results():
    empty = np.zeros((0, 5, 3))
    assert sc.depthwise_filter(empty, np.ones((3, 3, 3))).shape == (0, 5, 3)
    assert sc.pointwise_filter(empty, np.ones((2, 3))).shape == (0, 5, 2)
    assert sc.depthwise_separable_filter(empty, np.ones((3, 3, 3)), np.ones((2, 3))).shape == (0, 5, 2)


@pytest.mark.parametrize(
    "size, source, dtype",
    [
        (3, np.float32, None),
        (7, np.float32, None),
        (3, np.float64, np.float32),
        (3, np.int32, np.float32),
        (5, np.uint8, None),
    ],
)
def test_depthwise_values_do_not_depend_on_where_the_image_starts(rng, size, source, dtype):
    """Border pixels go through a padded copy, the rest are read in place, in chunks; a
    pixel's value must not depend on which (dask chunks and crops rely on it): bit for bit."""
    image = (rng.random((30, 301, 16)) * 200).astype(source)
    kernels = rng.random((16, size, size)).astype(np.float32)
    filt = partial(sc.depthwise_filter, kernels=kernels, dtype=dtype, preserve_range=True)
    full = filt(image)
    r = size // 2
    for top, left in [(0, 1), (2, 5), (1, 37)]:
        crop = filt(image[top:, left : left + 200])
        np.testing.assert_array_equal(crop[r:-r, r:-r], full[top + r : -r, left + r : left + 200 - r])
    # in wrap mode a shifted image gives shifted values: border pixels become inner ones
    periodic = partial(filt, mode="wrap")
    wrapped = periodic(image[:, :40])
    for shift in (1, 7, 33):
        moved = np.roll(periodic(np.roll(image[:, :40], shift, axis=1)), -shift, axis=1)
        np.testing.assert_array_equal(moved, wrapped)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_in, multiplier", [(9, 1), (3, 2), (1, 1)])
def test_depthwise_large_kernels_run_planar(rng, monkeypatch, mode, n_in, multiplier):
    """Kernels of many taps gather each channel into its own rows; small task blocks and
    chunks make the gather meet the borders, chunk edges and block edges everywhere."""
    from napari_sepconv import _cpu

    monkeypatch.setattr(_cpu, "PLANAR_VALUES", 4096)
    monkeypatch.setattr(_cpu, "PLANAR_ROWS", 5)
    image = (rng.random((2, 23, 45, n_in)) * 200).astype(np.uint8)
    image[1, 11, 20] = 0
    kernels = rng.standard_normal((n_in, multiplier, 4, 6))
    kernels[0, 0, :, 2] = 0  # a zero column
    kernels[-1, -1, 1, 3] = 0  # a zero weight in a column
    assert 4 * 6 >= _cpu.PLANAR_TAPS
    ours = sc.depthwise_filter(image, kernels, mode=mode, cval=0.6, preserve_range=True)
    ref = np.stack([depthwise(p.astype(np.float64), kernels, mode, 0.6) for p in image])
    assert_close(ours, ref)


def test_depthwise_planar_nan_follows_each_kernels_footprint(rng):
    image = rng.random((14, 40, 8))
    image[6, 6, :] = np.nan
    image[9, 30, 3] = np.inf
    kernels = rng.standard_normal((8, 5, 5))
    kernels[0, :, 1] = 0
    kernels[1, 2, 2] = 0
    kernels[2] = 0  # an all-zero kernel gives zeros, NaN or not (as scipy's does)
    ours = sc.depthwise_filter(image, kernels, mode="nearest")
    ref = depthwise(image, kernels, "nearest")
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    assert_close(ours, ref)


def test_depthwise_planar_values_do_not_depend_on_where_the_image_starts(rng, monkeypatch):
    """Planar rows go in pairs (one read of a source row for both) or alone, and columns
    with a zero weight row by row; a pixel's value must not depend on which."""
    from napari_sepconv import _cpu

    monkeypatch.setattr(_cpu, "PLANAR_ROWS", 3)
    image = rng.random((31, 50, 8)).astype(np.float32)
    kernels = rng.random((8, 5, 7)).astype(np.float32)
    kernels[:, 1, 2] = 0
    kernels[3, :, 4] = 0
    full = sc.depthwise_filter(image, kernels)
    for top, left in [(1, 0), (2, 3), (3, 11)]:
        crop = sc.depthwise_filter(image[top:, left : left + 33], kernels)
        np.testing.assert_array_equal(crop[2:-2, 3:-3], full[top + 2 : -2, left + 3 : left + 30])
