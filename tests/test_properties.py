"""Property tests: random shapes, kernels, modes and layouts against scipy.ndimage."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi

import napari_sepconv as sc
from reference import MODES, assert_close, edge

finite = st.floats(-100, 100, allow_nan=False, width=64)
modes = st.sampled_from(MODES)
images_2d = hnp.arrays(
    np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24), elements=finite
)
kernels_1d = hnp.arrays(np.float64, st.integers(1, 9), elements=st.floats(-2, 2, width=64))


@given(images_2d, kernels_1d, modes, st.integers(0, 1), st.data())
def test_correlate1d_is_scipy_bit_for_bit(image, weights, mode, axis, data):
    origin = data.draw(st.integers(-(weights.size // 2), (weights.size - 1) // 2))
    view = image[::-1] if data.draw(st.booleans()) else image
    np.testing.assert_array_equal(
        sc.correlate1d(view, weights, axis, mode=mode, cval=1.25, origin=origin),
        ndi.correlate1d(view, weights, axis, mode=mode, cval=1.25, origin=origin),
    )


@given(images_2d, kernels_1d, kernels_1d, modes, modes)
def test_separable_filter_equals_two_correlate1d(image, k0, k1, mode0, mode1):
    ref = ndi.correlate1d(ndi.correlate1d(image, k0, 0, mode=mode0, cval=-3.0), k1, 1, mode=mode1, cval=-3.0)
    assert_close(sc.separable_filter(image, [k0, k1], mode=(mode0, mode1), cval=-3.0), ref)


@given(
    images_2d,
    hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=7), elements=st.floats(-2, 2, width=64)
    ),
    modes,
)
def test_filter2d_equals_scipy_correlate(image, kernel, mode):
    assert_close(
        sc.filter2d(image, kernel, mode=mode, cval=0.5), ndi.correlate(image, kernel, mode=mode, cval=0.5)
    )


@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
        elements=st.floats(-10, 10, width=32),
    ),
    st.sampled_from(["sobel", "scharr", "prewitt", "farid"]),
    modes,
)
def test_edge_filters_equal_skimage(image, name, mode):
    assert_close(getattr(sc, name)(image, mode=mode), edge(name, image, mode=mode), np.float32)


@given(images_2d, st.sampled_from(["sobel", "farid"]))
def test_linearity(image, name):
    # the derivative along one axis is linear: f(2a + b) == 2 f(a) + f(b)
    other = image[::-1, ::-1].copy()
    f = getattr(sc, name)
    assert_close(f(2 * image + other, axis=0), 2 * f(image, axis=0) + f(other, axis=0))
