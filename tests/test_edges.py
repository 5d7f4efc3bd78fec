"""Edge filters against scikit-image, every mode, dtype, layout and shape."""

import numpy as np
import pytest

import napari_sepconv as sc
from reference import EDGE_FILTERS, MODES, as_float, assert_close, edge


@pytest.mark.parametrize("name", EDGE_FILTERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_2d_matches_skimage(rng, name, mode, axis):
    image = rng.random((37, 53))
    ours = getattr(sc, name)(image, axis=axis, mode=mode, cval=0.7)
    ref = edge(name, image, axis=axis, mode=mode, cval=0.7)
    assert ours.dtype == ref.dtype == np.float64
    assert_close(ours, ref)


@pytest.mark.parametrize("name", EDGE_FILTERS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [None, 0, 2, (0, 2)])
def test_3d_matches_skimage(rng, name, mode, axis):
    image = rng.random((7, 11, 13)).astype(np.float32)
    ours = getattr(sc, name)(image, axis=axis, mode=mode, cval=-0.3)
    ref = edge(name, image, axis=axis, mode=mode, cval=-0.3)
    assert ours.dtype == ref.dtype == np.float32
    assert_close(ours, ref)


@pytest.mark.parametrize(
    "shape", [(1,), (5,), (1, 1), (1, 9), (9, 1), (2, 3), (1, 1, 1), (2, 1, 4), (3, 4, 5, 6)]
)
@pytest.mark.parametrize("mode", MODES)
def test_tiny_and_odd_shapes(rng, shape, mode):
    image = rng.random(shape)
    for name in EDGE_FILTERS:
        assert_close(getattr(sc, name)(image, mode=mode), edge(name, image, mode=mode))


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.float16, np.float32, np.float64, bool]
)
def test_dtypes_follow_skimage(rng, dtype):
    if dtype is bool:
        image = rng.random((20, 30)) > 0.5
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, (20, 30), endpoint=True).astype(dtype)
    else:
        image = (rng.random((20, 30)) * 4 - 2).astype(dtype)
    for name in EDGE_FILTERS:
        ours = getattr(sc, name)(image)
        ref = edge(name, image)
        assert ours.dtype == ref.dtype
        assert_close(ours, ref)


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
def test_dtype_argument_forces_output(rng, out_dtype):
    image = (rng.random((16, 16)) * 255).astype(np.uint8)
    ours = sc.sobel(image, dtype=out_dtype)
    assert ours.dtype == out_dtype
    assert_close(ours, edge("sobel", as_float(image)).astype(out_dtype), out_dtype)


def test_preserve_range_keeps_integer_values(rng):
    image = rng.integers(0, 1000, (16, 20)).astype(np.uint16)
    ours = sc.prewitt(image, preserve_range=True)
    assert_close(ours, edge("prewitt", image.astype(np.float64)))


@pytest.mark.parametrize("layout", ["transposed", "reversed", "strided", "big-endian", "fortran"])
def test_memory_layouts(rng, layout):
    base = rng.random((40, 30))
    image = {
        "transposed": base.T,
        "reversed": base[::-1, ::-2],
        "strided": base[::3, 1::2],
        "big-endian": base.astype(">f8"),
        "fortran": np.asfortranarray(base),
    }[layout]
    before = image.copy()
    for name in EDGE_FILTERS:
        assert_close(
            getattr(sc, name)(image, mode="wrap"),
            edge(name, np.ascontiguousarray(image, dtype=np.float64), mode="wrap"),
        )
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("name", EDGE_FILTERS)
def test_directional_forms(rng, name):
    import skimage.filters as skf

    image = rng.random((25, 19))
    for suffix in ("h", "v"):
        ours = getattr(sc, f"{name}_{suffix}")(image)
        if name == "farid":
            ref = getattr(skf, f"{name}_{suffix}")(image)
        else:
            ref = getattr(skf, f"{name}_{suffix}")(image)
        assert_close(ours, ref)
    assert_close(
        getattr(sc, f"{name}_h")(image, mode="constant", cval=2.0),
        edge(name, image, axis=0, mode="constant", cval=2.0),
    )


def test_directional_needs_two_spatial_axes(rng):
    with pytest.raises(ValueError, match="image"):
        sc.sobel_h(rng.random((4, 5, 6)))
    # with a channel axis, a 3-D image has 2 spatial axes
    rgb = rng.random((8, 9, 3))
    out = sc.sobel_h(rgb, channel_axis=-1)
    for c in range(3):
        assert_close(out[..., c], edge("sobel", rgb[..., c], axis=0))


@pytest.mark.parametrize("name", EDGE_FILTERS)
def test_mask_is_eroded_as_skimage(rng, name):
    image = rng.random((30, 30))
    mask = np.zeros((30, 30), bool)
    mask[5:20, 3:25] = True
    assert_close(getattr(sc, name)(image, mask), edge(name, image, mask=mask))


@pytest.mark.parametrize("channel_axis", [0, -1, 1])
def test_channel_axis_filters_each_channel(rng, channel_axis):
    image = rng.random((6, 7, 8)).astype(np.float32)
    out = sc.scharr(image, channel_axis=channel_axis, mode="constant", cval=1.0)
    assert out.shape == image.shape
    for c in range(image.shape[channel_axis]):
        plane = np.take(image, c, axis=channel_axis)
        assert_close(np.take(out, c, axis=channel_axis), edge("scharr", plane, mode="constant", cval=1.0))


def test_channel_axis_with_spatial_mask(rng):
    image = rng.random((12, 10, 3))
    mask = rng.random((12, 10)) > 0.2
    out = sc.sobel(image, mask, channel_axis=2)
    for c in range(3):
        assert_close(out[..., c], edge("sobel", image[..., c], mask=mask))


def test_per_axis_modes(rng):
    from scipy import ndimage as ndi

    image = rng.random((15, 17))
    ours = sc.sobel(image, axis=1, mode=("wrap", "reflect"))
    # rows wrap, columns reflect: build the full-kernel reference by padding
    padded = np.pad(image, ((1, 1), (0, 0)), mode="wrap")
    ref = ndi.correlate(padded, np.outer([1, 2, 1], [-1, 0, 1]) / 4, mode="reflect")[1:-1]
    assert_close(ours, ref)


def test_constant_mode_uses_full_kernel_convention(rng):
    # a later pass must see cval times the earlier kernels' sums, as the full kernel would
    image = rng.random((9, 12))
    for name in EDGE_FILTERS:
        assert_close(
            getattr(sc, name)(image, axis=0, mode="constant", cval=5.0),
            edge(name, image, axis=0, mode="constant", cval=5.0),
        )


def test_nan_and_inf_propagate_as_in_scipy(rng):
    image = rng.random((20, 20))
    image[5, 5] = np.nan
    image[12, 14] = np.inf
    for name in EDGE_FILTERS:
        for axis in (None, 0, 1):
            ours = getattr(sc, name)(image, axis=axis)
            ref = edge(name, image, axis=axis)
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
            np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
            finite = np.isfinite(ref)
            assert_close(ours[finite], ref[finite])


def test_input_is_not_modified(rng):
    image = rng.random((10, 10)).astype(np.float32)
    before = image.copy()
    sc.sobel(image)
    sc.farid(image, axis=0, mode="constant", cval=3)
    np.testing.assert_array_equal(image, before)


def test_accepts_lists():
    out = sc.prewitt([[0, 0, 1, 1]] * 4)
    assert out.dtype == np.float64 and out.shape == (4, 4)


def test_full_shape_mask_is_not_eroded_across_channels(rng):
    image = rng.random((8, 8, 3))
    mask = np.ones(image.shape, bool)
    mask[2, 5, 1] = False
    ours = sc.sobel(image, mask=mask, channel_axis=-1)
    for c in range(3):
        assert_close(ours[..., c], edge("sobel", image[..., c], mask=mask[..., c]))


def test_empty_images_give_empty_results():
    for shape in [(0, 4), (3, 0), (0, 0, 2)]:
        for name in EDGE_FILTERS:
            assert getattr(sc, name)(np.zeros(shape)).shape == shape
