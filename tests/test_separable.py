"""1-D, separable and user-kernel filtering against scipy.ndimage."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sepconv as sc
from reference import ALIASES, MODES, as_float, assert_close, correlate_planes, separable

ALL_MODES = MODES + tuple(ALIASES)


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("length", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_correlate1d_matches_scipy(rng, mode, length, axis):
    image = rng.random((13, 9, 11))
    weights = rng.standard_normal(length)
    for origin in range(-(length // 2), (length - 1) // 2 + 1):
        ours = sc.correlate1d(image, weights, axis, mode=mode, cval=1.5, origin=origin)
        ref = ndi.correlate1d(image, weights, axis, mode=ALIASES.get(mode, mode), cval=1.5, origin=origin)
        np.testing.assert_array_equal(ours, ref)  # same summation order: bit for bit


@pytest.mark.parametrize("mode", ALL_MODES)
def test_correlate1d_along_long_rows_matches_scipy(rng, mode):
    """Rows longer than a band (planes of a volume filtered along z) go band by band, up to
    64 rows a task: bit for bit still, partial bands and row blocks included."""
    image = rng.random((70, 3, 1100))  # 3300 float64 a row: three bands and part of a fourth
    half = rng.standard_normal(4)
    for weights in (np.r_[half, 0.7, half[::-1]], np.r_[half, 0.7, -half[::-1]], rng.standard_normal(6)):
        for axis in (0, 1):
            ours = sc.correlate1d(image, weights, axis, mode=mode, cval=1.5)
            ref = ndi.correlate1d(image, weights, axis, mode=ALIASES.get(mode, mode), cval=1.5)
            np.testing.assert_array_equal(ours, ref)
    volume = rng.random((20, 30, 90), dtype=np.float32)  # float32 sums: banded against unbanded
    ours = sc.correlate1d(volume, half, 0, output=np.float32, mode=mode)
    rows = [sc.correlate1d(volume[:, y : y + 1], half, 0, output=np.float32, mode=mode) for y in range(30)]
    np.testing.assert_array_equal(ours, np.concatenate(rows, axis=1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("length", [1, 2, 3, 6, 9])
def test_convolve1d_matches_scipy(rng, mode, length):
    image = rng.random((8, 21))
    weights = rng.standard_normal(length)
    for origin in range(-(length // 2), (length - 1) // 2 + 1):
        for axis in (0, 1):
            ours = sc.convolve1d(image, weights, axis, mode=mode, cval=-2.0, origin=origin)
            ref = ndi.convolve1d(image, weights, axis, mode=mode, cval=-2.0, origin=origin)
            np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint16, np.float64, bool])
def test_correlate1d_output_dtype_and_rounding(rng, dtype):
    image = (rng.random((30, 40)) * 120).astype(dtype)
    weights = [0.5, 0.6, 0.7, -0.2]
    for axis in (0, 1):
        ours = sc.correlate1d(image, weights, axis)
        ref = ndi.correlate1d(image, weights, axis)
        assert ours.dtype == ref.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(ours, ref)


def test_correlate1d_float32_input_stays_float32(rng):
    image = rng.random((50, 50)).astype(np.float32)
    ours = sc.correlate1d(image, np.arange(5.0), 0, mode="mirror")
    assert ours.dtype == np.float32
    assert_close(ours, ndi.correlate1d(image, np.arange(5.0), 0, mode="mirror"))


def test_correlate1d_output_argument(rng):
    image = rng.random((10, 12))
    out = np.empty((10, 12), np.float32)
    result = sc.correlate1d(image, [1, 2, 1], output=out)
    assert result is out
    np.testing.assert_allclose(out, ndi.correlate1d(image, [1, 2, 1]), rtol=1e-6)
    as_int = sc.correlate1d(image * 100, [1, 2, 1], output=np.int32)
    np.testing.assert_array_equal(as_int, ndi.correlate1d(image * 100, [1, 2, 1], output=np.int32))
    with pytest.raises(ValueError, match="output"):
        sc.correlate1d(image, [1, 2, 1], output=np.empty((3, 3)))


def _complex_case(rng, in_kind, w_kind, shape=(6, 11)):
    """An input and weights of the kinds asked ('c' complex, 'f' float, 'i' integer)."""
    if in_kind == "c":
        image = rng.random(shape) + 1j * rng.random(shape)
    elif in_kind == "f":
        image = rng.random(shape)
    else:
        image = rng.integers(-50, 50, shape).astype(np.int16)
    weights = rng.standard_normal(4)
    if w_kind == "c":
        weights = weights + 1j * rng.standard_normal(4)
    return image, weights


@pytest.mark.parametrize("convolve", [False, True])
@pytest.mark.parametrize("kinds", ["cf", "fc", "cc", "ic"])
def test_complex_correlate1d_and_convolve1d_as_scipy(rng, convolve, kinds):
    """Complex input or weights: real and imaginary parts filtered apart, the weights
    conjugated (correlation), with SciPy's output types."""
    image, weights = _complex_case(rng, *kinds)
    ours_function, peer = (sc.convolve1d, ndi.convolve1d) if convolve else (sc.correlate1d, ndi.correlate1d)
    cval = 1.5 - 2j if kinds[0] == "c" else 1.5
    for mode in MODES:
        for axis in (0, 1):
            options = dict(axis=axis, mode=mode, cval=cval, origin=-1)
            expected = peer(image, weights, **options)
            ours = ours_function(image, weights, **options)
            assert ours.dtype == expected.dtype
            np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    for output in (np.complex64, "F", np.empty(image.shape, np.complex64)):
        expected = peer(image, weights, output=output if not isinstance(output, np.ndarray) else None)
        result = ours_function(image, weights, output=output)
        if isinstance(output, np.ndarray):
            assert result is output
        assert result.dtype == np.complex64
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_complex_correlate1d_output_rules_as_scipy(rng):
    image, weights = _complex_case(rng, "f", "c")
    for function in (sc.correlate1d, ndi.correlate1d):
        with pytest.warns(UserWarning, match="promoting specified output dtype to complex"):
            assert function(image, weights, output=np.float32).dtype == np.complex64
        with pytest.raises(RuntimeError):  # a real output array for a complex result
            function(image, weights, output=np.empty(image.shape))
        with pytest.raises(RuntimeError):  # a real type code is taken literally
            function(image, weights, output="f")
        with pytest.raises(ValueError, match="cval"):  # real input, complex constant
            function(image, weights, mode="constant", cval=1 + 1j)
    with pytest.raises(TypeError, match="output"):  # ours: also a TypeError naming it
        sc.correlate1d(image, weights, output=np.empty(image.shape))
    with pytest.raises(RuntimeError):  # real input and weights: no complex output
        sc.correlate1d(image, weights.real, output=np.complex128)
    before = image.copy()
    sc.correlate1d(image, weights)
    np.testing.assert_array_equal(image, before)  # the input is not touched


def test_complex_correlate1d_on_dask_is_lazy_and_equal(rng):
    da = pytest.importorskip("dask.array")
    image, weights = _complex_case(rng, "c", "c", shape=(20, 30))
    lazy = sc.correlate1d(da.from_array(image, chunks=(7, 9)), weights, axis=1, mode="wrap")
    assert isinstance(lazy, da.Array) and lazy.dtype == np.complex128
    expected = ndi.correlate1d(image, weights, axis=1, mode="wrap")
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-12)
    with pytest.raises(TypeError, match="output"):
        sc.correlate1d(da.from_array(image), weights, output=np.empty(image.shape, complex))


@pytest.mark.parametrize("mode", MODES)
def test_kernel_longer_than_image(rng, mode):
    image = rng.random((3, 2))
    weights = rng.random(11)
    for axis in (0, 1):
        np.testing.assert_array_equal(
            sc.correlate1d(image, weights, axis, mode=mode, cval=0.5),
            ndi.correlate1d(image, weights, axis, mode=mode, cval=0.5),
        )
    assert_close(
        sc.separable_filter(image, [weights, weights[:7]], mode=mode, cval=0.5),
        separable(image, [weights, weights[:7]], (0, 1), (mode, mode), 0.5),
    )
    kernel = rng.random((9, 7))
    assert_close(
        sc.filter2d(image, kernel, mode=mode, cval=0.5), ndi.correlate(image, kernel, mode=mode, cval=0.5)
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_separable_filter_matches_passes(rng, mode, dtype):
    image = rng.random((9, 14, 17)).astype(dtype)
    kernels = [rng.standard_normal(5), rng.standard_normal(4), rng.standard_normal(3)]
    ours = sc.separable_filter(image, kernels, mode=mode, cval=0.25)
    assert ours.dtype == dtype
    assert_close(ours, separable(image.astype(np.float64), kernels, (0, 1, 2), [mode] * 3, 0.25), dtype)


def test_separable_filter_axes_order_modes_and_defaults(rng):
    image = rng.random((6, 10, 12))
    k1, k2 = rng.random(3), rng.random(6)
    # default axes: the last len(kernels) axes
    assert_close(sc.separable_filter(image, [k1]), separable(image, [k1], [2], ["reflect"], 0))
    # explicit order, per-axis modes; constant passes each pad with cval
    ours = sc.separable_filter(image, [k2, k1], axes=(2, 0), mode=("constant", "wrap"), cval=3.0)
    assert_close(ours, separable(image, [k2, k1], (2, 0), ("constant", "wrap"), 3.0))
    ours = sc.separable_filter(image, np.stack([k1, k1]), mode=["mirror", "constant"], cval=-1.0)
    assert_close(ours, separable(image, [k1, k1], (1, 2), ("mirror", "constant"), -1.0))


def test_separable_filter_channel_axis_and_dtypes(rng):
    image = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
    kernels = [rng.random(3), rng.random(5)]
    ours = sc.separable_filter(image, kernels, channel_axis=-1, mode="constant", cval=0.5)
    assert ours.dtype == np.float64
    for c in range(3):
        assert_close(
            ours[..., c], separable(as_float(image[..., c]), kernels, (0, 1), ("constant",) * 2, 0.5)
        )
    ours = sc.separable_filter(image, kernels, channel_axis=-1, preserve_range=True, dtype=np.float32)
    assert ours.dtype == np.float32
    assert_close(
        ours[..., 1], separable(image[..., 1].astype(float), kernels, (0, 1), ("reflect",) * 2, 0), np.float32
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(5, 5), (3, 3), (4, 6), (1, 7), (11, 11), (2, 2), (1, 1)])
def test_filter2d_matches_scipy(rng, mode, shape):
    image = rng.random((23, 31))
    kernel = rng.standard_normal(shape)
    assert_close(
        sc.filter2d(image, kernel, mode=mode, cval=0.8), ndi.correlate(image, kernel, mode=mode, cval=0.8)
    )


@pytest.mark.parametrize("mode", MODES)
def test_filter2d_low_rank_kernels(rng, mode):
    image = rng.random((4, 25, 27)).astype(np.float32)
    rank2 = sum(np.outer(rng.standard_normal(11), rng.standard_normal(11)) for _ in range(2))
    rank1 = np.outer(rng.random(7), rng.random(5))
    for kernel in (rank2, rank1):
        ours = sc.filter2d(image, kernel, mode=mode, cval=-0.5)
        assert ours.dtype == np.float32
        assert_close(ours, correlate_planes(image.astype(np.float64), kernel, mode, -0.5), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("height", [2, 3, 4, 5, 6, 7, 9, 11, 14, 15])
def test_row_values_do_not_depend_on_where_the_image_starts(rng, dtype, height):
    """Rows go through the vertical passes in fours or alone; a row's value must not depend
    on which (dask chunks, bands and crops rely on it): bit for bit. Each kernel height
    leaves a different remainder of taps after the groups of four."""
    u, v = rng.random((2, height)), rng.random((2, 7))
    kernel = np.outer(u[0], v[0]) - np.outer(u[1], v[1])
    image = (rng.random((40, 53)) * 255).astype(dtype)
    full = sc.filter2d(image, kernel)
    top, bottom = height // 2, height - 1 - height // 2
    for start in (0, 1, 2, 3):
        for stop in (40, 39, 38):
            crop = sc.filter2d(image[start:stop], kernel)
            # rows whose window lies inside the crop
            np.testing.assert_array_equal(
                crop[top : stop - start - bottom], full[start + top : stop - bottom]
            )
    for left in (0, 1, 5):  # vectorised loops meet their remainder elsewhere along x
        crop = sc.filter2d(image[:, left : left + 41], kernel)
        np.testing.assert_array_equal(crop[:, 3:-3], full[:, left + 3 : left + 38])


@pytest.mark.parametrize("mode", MODES)
def test_filter2d_direct_with_one_sided_kernels_and_tiny_images(rng, mode):
    """Full-rank kernels run directly over a ring of padded source rows; kernels whose
    taps all lie on one side of the centre, and images shorter than the kernel."""
    right = rng.standard_normal((5, 5))
    right[:, :3] = 0  # every tap right of the centre
    below = rng.standard_normal((7, 4))
    below[:4] = 0  # every tap below it
    for kernel in (right, below, rng.standard_normal((11, 3))):
        for shape in ((4, 30), (1, 9), (17, 2)):
            image = rng.random(shape)
            assert_close(
                sc.filter2d(image, kernel, mode=mode, cval=0.3),
                ndi.correlate(image, kernel, mode=mode, cval=0.3),
            )


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_direct_values_do_not_depend_on_where_the_image_starts(rng, dtype):
    """Each task pads its rows afresh; a row's value must not depend on where the task,
    chunk or crop starts: bit for bit."""
    kernel = rng.standard_normal((5, 6))
    kernel[1, 2] = 0
    image = (rng.random((45, 50)) * 255).astype(dtype)
    full = sc.filter2d(image, kernel)
    for start, left in [(1, 0), (3, 2), (6, 7)]:
        crop = sc.filter2d(image[start:, left : left + 40], kernel)
        np.testing.assert_array_equal(crop[2:-2, 3:-3], full[start + 2 : -2, left + 3 : left + 37])


def test_filter2d_truncated_rank_equals_reconstruction(rng):
    image = rng.random((20, 24))
    kernel = rng.standard_normal((9, 9))
    for rank in (1, 2, 3, 5, 9):
        approx = sc.separate_kernel(kernel, rank=rank).reconstruct()
        assert_close(
            sc.filter2d(image, kernel, rank=rank, mode="nearest"),
            ndi.correlate(image, approx, mode="nearest"),
        )


def test_filter2d_stack_and_channel_axis(rng):
    image = rng.random((3, 14, 15, 2))
    kernel = rng.standard_normal((3, 4))
    ours = sc.filter2d(image, kernel, channel_axis=-1, mode="wrap")
    for c in range(2):
        assert_close(ours[..., c], correlate_planes(image[..., c], kernel, "wrap"))
    ours = sc.filter2d(image, kernel, mode=("reflect", "constant"), cval=0.0)
    # no channel axis: the last two axes are the planes, the rest a stack
    ref = np.stack(
        [
            [
                ndi.correlate(np.pad(p, ((1, 2), (0, 0)), mode="symmetric"), kernel, mode="constant")[1:-2]
                for p in v
            ]
            for v in image
        ]
    )
    assert_close(ours, ref)


def test_filter2d_nan_spreads_only_through_nonzero_weights(rng):
    image = rng.random((15, 15))
    image[7, 7] = np.nan
    kernel = np.outer([1, 2, 1], [1, 0, -1]).astype(float)
    ours = sc.filter2d(image, kernel)
    ref = ndi.correlate(image, kernel)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "kernel", [np.zeros((3, 3)), np.full((3, 3), 1e-17), np.zeros((1, 1)), np.zeros((2, 4))]
)
def test_filter2d_of_a_kernel_without_weights_is_zero_as_scipy(rng, mode, kernel):
    """All weights within an epsilon of zero leave scipy's footprint empty: zeros, even where
    the image is NaN or infinite (one zero tap spread them)."""
    image = rng.random((7, 8))
    image[3, 3], image[0, 7] = np.nan, -np.inf
    ours = sc.filter2d(image, kernel, mode=mode, cval=np.nan)
    np.testing.assert_array_equal(ours, ndi.correlate(image, kernel, mode=mode, cval=np.nan))
    assert ours.dtype == np.float64


def test_filter2d_of_a_kernel_far_longer_than_the_image():
    """A 1 x 100000 kernel asked the SVD for a 100000 x 100000 factor (75 GiB)."""
    image = np.arange(12.0).reshape(3, 4)
    weights = np.linspace(0.5, 1.5, 100_000)
    ours = sc.filter2d(image, weights[None])
    # scipy's 2-D correlate reads outside the image in this case: its 1-D pass is the reference
    np.testing.assert_allclose(ours, ndi.correlate1d(image, weights, axis=1), rtol=1e-12)
    assert sc.separate_kernel(np.ones((2, 3000))).rank == 1


def test_filter2d_tol_that_drops_terms_is_the_truncated_kernel_either_way(rng):
    """With ``rank=None``, a ``tol`` that drops terms approximated the kernel only where the
    split ran (cheaper); run directly, the whole kernel was used, and the plan said otherwise."""
    kernel = rng.standard_normal((5, 5))
    image = rng.standard_normal((32, 32))
    s = np.linalg.svd(kernel, compute_uv=False)
    for keep in (2, 4):  # the split is cheaper, then it is not
        tol = (s[keep - 1] + s[keep]) / 2
        split = sc.separate_kernel(kernel, tol=tol)
        assert split.rank == keep and not split.is_exact
        plan = sc.filter2d.plan(image, kernel, tol=tol)
        assert (plan.rank, plan.exact) == (keep, False)
        assert_close(sc.filter2d(image, kernel, tol=tol), ndi.correlate(image, split.reconstruct()))
    exact = sc.separate_kernel(kernel, tol=s[-1] / 2)
    assert exact.is_exact
    np.testing.assert_array_equal(sc.filter2d(image, kernel, tol=s[-1] / 2), sc.filter2d(image, kernel))


def test_filter2d_integer_input(rng):
    image = rng.integers(0, 255, (16, 16)).astype(np.uint8)
    kernel = rng.random((5, 5))
    ours = sc.filter2d(image, kernel)
    assert ours.dtype == np.float64
    assert_close(ours, ndi.correlate(as_float(image), kernel))


@pytest.mark.parametrize("kind", ["cross", "rank2"])
def test_filter2d_multi_term_kernels_spread_nan_and_inf_as_scipy(rng, kind):
    image = rng.random((15, 15))
    image[7, 7] = np.nan
    image[2, 2] = np.inf
    image[11, 4] = -np.inf
    if kind == "cross":
        kernel = np.zeros((7, 7))
        kernel[3, :] = kernel[:, 3] = 1.0
    else:
        kernel = np.outer(rng.random(7), rng.random(7)) + np.outer(rng.random(7), rng.random(7))
    assert sc.separate_kernel(kernel).rank == 2
    ours = sc.filter2d(image, kernel)
    ref = ndi.correlate(image, kernel)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref))
    finite = np.isfinite(ref)
    assert_close(ours[finite], ref[finite])


def test_filter2d_float_rank_one_kernel_keeps_its_zero_rows(rng):
    a = np.array([-0.0, -0.18880227497381663, 1.3, -0.18913378409281006, -2.13834060712102])
    b = np.array([0.14491679036588978, -0.12636392216675604, -0.7, 0.0, -0.46168954465474565])
    kernel = np.outer(a, b)
    image = rng.random((12, 13))
    image[5, 6] = np.nan
    np.testing.assert_array_equal(
        np.isnan(sc.filter2d(image, kernel)), np.isnan(ndi.correlate(image, kernel))
    )


def test_filter2d_tiny_weights_are_out_of_the_footprint(rng):
    image = np.zeros((6, 6))
    image[3, 3] = np.nan
    kernel = np.zeros((3, 3))
    kernel[1, 1], kernel[0, 0], kernel[2, 1] = 1.0, 1e-17, 0.5
    np.testing.assert_array_equal(
        np.isnan(sc.filter2d(image, kernel)), np.isnan(ndi.correlate(image, kernel))
    )


def test_filter2d_split_kernels_keep_scipys_footprint(rng):
    """A rank-1 kernel whose factors are above an epsilon while some of their products are
    not (outer([1, 1e-9, 1], ...)): scipy leaves those products out of its footprint, the
    split's passes made them again and spread NaN through them. A kernel all within an
    epsilon of zero is no footprint at all."""
    factor = np.array([1.0, 1e-9, 1.0])
    kernel = np.outer(factor, factor)
    image = rng.random((9, 10))
    image[4, 4] = np.nan
    assert sc.filter2d.plan(image, kernel).multiplications == 6  # still split
    np.testing.assert_array_equal(
        np.isnan(sc.filter2d(image, kernel)), np.isnan(ndi.correlate(image, kernel))
    )
    finite = rng.random((9, 10))
    np.testing.assert_allclose(sc.filter2d(finite, kernel), ndi.correlate(finite, kernel), rtol=1e-14)
    huge = rng.random((8, 9)) * 1e20
    tiny = np.full((3, 3), 1e-20)
    np.testing.assert_array_equal(sc.filter2d(huge, tiny), ndi.correlate(huge, tiny))


def test_correlate1d_bool_output_truncates_like_scipy():
    values = np.array([0.3, -0.7, 1.2, -1.5, 0.0])
    np.testing.assert_array_equal(
        sc.correlate1d(values, [1.0], output=bool), ndi.correlate1d(values, [1.0], output=bool)
    )
    flags = np.array([True, False, True, True, False])
    for weights in ([0.2], [0.5, 0.5], [1, 1, 1]):
        ours = sc.correlate1d(flags, weights)
        assert ours.dtype == bool
        np.testing.assert_array_equal(ours, ndi.correlate1d(flags, weights))


@pytest.mark.parametrize("dtype", [">f8", ">f4", ">i2", ">u2", ">i4"])
def test_correlate1d_big_endian_gives_native_output(rng, dtype):
    image = (rng.random((6, 7)) * 50).astype(dtype)
    ours = sc.correlate1d(image, [1, 2, 1], 0)
    ref = ndi.correlate1d(image, [1, 2, 1], 0)
    assert ours.dtype == ref.dtype and ours.dtype.isnative
    assert_close(ours, ref)  # float32 is computed in float32, scipy's in float64


def test_empty_images_give_empty_results():
    for shape in [(0,), (0, 5), (4, 0), (2, 0, 3)]:
        empty = np.zeros(shape)
        assert sc.correlate1d(empty, [1, 2, 1]).shape == shape
        assert sc.separable_filter(empty, [[1, 2, 1]]).shape == shape
        if len(shape) > 1:
            assert sc.filter2d(empty, np.ones((3, 3))).shape == shape
            assert sc.filter2d(empty, np.outer([1, 2, 1], [1, 0, 1])).shape == shape


def test_sweeps_cover_every_tap_once():
    """The fused passes split a row's taps into sweeps (``_run_length``): a first one of
    seven to nine taps that writes the row where the rest can go in eights and a last seven,
    else a zeroed row; then eights, a seven, and groups of up to four."""
    from napari_sepconv import _separable_kernels

    run_length = _separable_kernels._run_length.py_func
    assert [run_length(n, True) for n in (7, 8, 9, 14, 15, 16, 17, 13, 6)] == [7, 8, 9, 7, 8, 9, 9, 0, 0]
    for n in range(1, 80):
        left, first, runs = n, True, []
        while left > 0:
            run = run_length(left, first)
            if run == 0 and first:
                first = False
                continue
            run = run or min(4, left)
            runs.append(run)
            left -= run
            first = False
        assert sum(runs) == n and left == 0
        assert all(r in (7, 8, 9) for r in runs[:-2]), (n, runs)  # only the end in fours


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("height", [5, 13, 40, 70])
def test_rows_4_kib_apart_are_read_from_a_ring_with_the_same_bits(rng, mode, height):
    """float32 rows 1024 samples long (float64 rows 512 long) lie 4 KiB apart: with 13
    taps or more the vertical pass reads them from a ring of copies with longer rows
    (``_aliasing``), with fewer from the image itself. A column's values do not depend on
    the image's width, so the columns of such an image must be, bit for bit, those of the
    same image widened by a few columns and read in place. Short images check the rows
    near the borders, read one at a time from the image; from 19 rows (16 taps) the
    four-row pass reads the ring."""
    import numba

    from napari_sepconv import _separable_kernels

    ring_rows = numba.njit(lambda src, out, rows: _separable_kernels._ring_rows(src, out, rows))
    for dtype, w in ((np.float32, 1024), (np.float64, 512)):  # the kernel's choice, compiled
        assert ring_rows(np.zeros((1, 2, w), dtype), np.zeros((1, 2, w), dtype), 13 + 3) == 16
        assert ring_rows(np.zeros((1, 2, w), dtype), np.zeros((1, 2, w), dtype), 12 + 3) == 0
        assert ring_rows(np.zeros((1, 2, w + 6), dtype), np.zeros((1, 2, w + 6), dtype), 16) == 0
    for dtype, w in ((np.float32, 1024), (np.float64, 512)):
        wide = rng.random((height, w + 6)).astype(dtype)
        image = np.ascontiguousarray(wide[:, :w])
        for taps in (3, 7, 8, 9, 16, 17, 26):
            kernels = [rng.standard_normal(taps), rng.standard_normal(5)]
            ours = sc.separable_filter(image, kernels, mode=mode, cval=0.5)
            in_place = sc.separable_filter(wide, kernels, mode=mode, cval=0.5)
            np.testing.assert_array_equal(ours[:, 2:-2], in_place[:, 2 : w - 2])
            reference = separable(image.astype(np.float64), kernels, (-2, -1), (mode, mode), 0.5)
            assert_close(ours, reference)


@pytest.mark.parametrize("mode", MODES)
def test_fused_passes_read_uint8_as_its_float_values(rng, mode, monkeypatch):
    """uint8 rows are converted once into a ring of float rows for the vertical pass; every
    tap count (the sweeps take seven to nine taps, or up to four), several terms, short
    images and tall ones (longer tasks) give the bits of the same values as float32, and
    tall images the bits of short tasks. Rows 1024 wide lie 4 KiB apart as float32, so the
    ring's rows are longer (``_ring_width``) than the image's."""
    from napari_sepconv import _cpu, _separable_kernels

    assert _separable_kernels._ring_width.py_func(1024, 4) > 1024
    for shape in ((37, 29), (2, 9, 40), (1030, 23), (12, 1024)):
        image = rng.integers(0, 256, shape).astype(np.uint8)
        as_float32 = image.astype(np.float32)
        for kernels in (
            [np.float32([0.25, 0.5, 0.25]), rng.random(17)],
            [rng.random(9), rng.random(7)],
            [rng.random(8), rng.random(26)],
            [rng.random(1), rng.random(10)],
        ):
            ours = sc.separable_filter(
                image, kernels, mode=mode, cval=3.0, preserve_range=True, dtype=np.float32
            )
            same = sc.separable_filter(as_float32, kernels, mode=mode, cval=3.0, dtype=np.float32)
            np.testing.assert_array_equal(ours, same)
            axes = (-2, -1)
            assert_close(ours, separable(as_float32.astype(np.float64), kernels, axes, (mode, mode), 3.0))
        rank_two = rng.standard_normal((9, 9))
        ours = sc.filter2d(image, rank_two, mode=mode, cval=3.0, preserve_range=True, dtype=np.float32)
        np.testing.assert_array_equal(ours, sc.filter2d(as_float32, rank_two, mode=mode, cval=3.0))
        if shape[-2] >= _cpu._TALL:  # the same rows in the short tasks of a short image
            gaussian = sc.gaussian(
                image, 2.0, mode=mode, cval=3.0, preserve_range=True, out=np.empty(shape, np.float32)
            )
            monkeypatch.setattr(_cpu, "_TALL", shape[-2] + 1)
            short = sc.gaussian(
                image, 2.0, mode=mode, cval=3.0, preserve_range=True, out=np.empty(shape, np.float32)
            )
            monkeypatch.undo()
            np.testing.assert_array_equal(gaussian, short)
