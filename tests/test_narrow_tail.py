"""Filters of images whose last axes are narrow (``_narrow_tail``): RGB images filtered in x
and y, or as volumes, run with the colours in front, with the same values as before."""

import functools

import numpy as np
import pytest
import skimage.filters
from scipy import ndimage as ndi

import napari_sepconv as sc
from napari_sepconv import _cpu, _narrow_tail, _programs
from napari_sepconv._backend import engine
from napari_sepconv._passes import MAGNITUDE, SUM, lower_terms, run_lowered, taps

MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]

# (name, ours, scipy's): each filters every axis but the last
FILTERS = [
    (
        "correlate1d",
        lambda m, x, mode: m.correlate1d(
            x, [1.0, -2.5, 3.0, 0.5], axis=x.ndim - 2, mode=mode, cval=1.5, origin=1
        ),
    ),
    (
        "gaussian_filter",
        lambda m, x, mode: m.gaussian_filter(x, [1.5] * (x.ndim - 1) + [0], mode=mode, cval=0.5),
    ),
    (
        "gaussian_filter order",
        lambda m, x, mode: m.gaussian_filter(x, 1.2, order=1, axes=tuple(range(x.ndim - 1)), mode=mode),
    ),
    (
        "gaussian_gradient_magnitude",
        lambda m, x, mode: m.gaussian_gradient_magnitude(x, [1.5] * (x.ndim - 1) + [0], mode=mode),
    ),
    ("gaussian_laplace", lambda m, x, mode: m.gaussian_laplace(x, [1.0] * (x.ndim - 1) + [0], mode=mode)),
]

SHAPES = [(50, 41, 3), (30, 40, 2, 2), (2100, 2), (64, 70, 1), (3, 40, 50, 4)]


@pytest.fixture
def tail_calls(monkeypatch):
    """How many calls took the narrow-tail path."""
    calls = []

    def counted(*args):
        calls.append(args[2])
        return _narrow_tail.tail_first(*args)

    monkeypatch.setattr(_programs, "tail_first", counted)
    return calls


def _in_place_layout(monkeypatch, apply, x, mode, module=sc):
    """``apply(module, x, mode)`` with the narrow paths turned off."""
    with monkeypatch.context() as m:
        m.setattr(_cpu, "narrow_inner", 0)
        return apply(module, x, mode)


@pytest.mark.parametrize("name, apply", FILTERS, ids=[f[0] for f in FILTERS])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_same_bits_as_in_place_and_scipys_values(name, apply, shape, dtype, monkeypatch, tail_calls):
    rng = np.random.default_rng(sum(shape))
    x = (rng.random(shape) * 100).astype(dtype)
    kept = x.copy()
    for mode in MODES:
        ours = apply(sc, x, mode)
        in_place = _in_place_layout(monkeypatch, apply, x, mode)
        assert ours.dtype == in_place.dtype and ours.shape == x.shape
        assert ours.flags.c_contiguous and not np.shares_memory(ours, x)
        np.testing.assert_array_equal(ours, in_place)
        expected = apply(ndi, x, mode)
        tol = 1e-4 if dtype == np.float32 else 1e-9
        if dtype == np.uint8:  # scipy rounds toward zero; one unit either way
            np.testing.assert_allclose(ours, expected, atol=1)
        else:
            np.testing.assert_allclose(ours, expected, rtol=tol, atol=tol * 10)
    np.testing.assert_array_equal(x, kept)
    assert len(tail_calls) >= len(MODES)  # the path was taken, every time


def test_small_and_wide_images_stay_in_their_layout(tail_calls):
    sc.gaussian_filter(np.ones((30, 30, 3), np.float32), (1, 1, 0))  # under MIN_SAMPLES
    sc.gaussian_filter(np.ones((60, 60, 5), np.float32), (1, 1, 0))  # five samples a pixel
    sc.gaussian_filter(np.ones((60, 60, 3), np.float32), 1)  # the last axis filtered too
    sc.correlate1d(np.ones((60, 60, 3), np.float32), [1, 2, 1], axis=-1)
    sc.correlate1d(np.ones((60, 60, 3), np.float32), [1, 2, 1], axis=0)  # 180 samples after it
    assert tail_calls == []
    sc.gaussian_filter(np.ones((40, 40, 3), np.float32), (1, 1, 0))
    assert len(tail_calls) == 1


@pytest.mark.parametrize("output", [np.float64, np.int16, "array float64", "array int32"])
def test_output_types_and_arrays(output, tail_calls):
    x = np.random.default_rng(0).random((60, 50, 3)).astype(np.float32) * 1000
    expected = ndi.gaussian_filter(x, (2, 1, 0), output=np.float64)
    if isinstance(output, str):
        target = np.zeros(x.shape, output.split()[1])
        result = sc.gaussian_filter(x, (2, 1, 0), output=target)
        assert result is target
    else:
        result = sc.gaussian_filter(x, (2, 1, 0), output=output)
        assert result.dtype == output
    np.testing.assert_allclose(result, expected.astype(result.dtype), atol=1)
    assert len(tail_calls) == 1


def test_strided_and_fortran_inputs():
    x = np.random.default_rng(1).random((90, 120, 3))
    for view in (x[::2, ::2], np.asfortranarray(x), x[:, :, ::-1]):
        ours = sc.correlate1d(view, [1.0, 3.0, 1.0], axis=1)
        np.testing.assert_allclose(ours, ndi.correlate1d(view, [1.0, 3.0, 1.0], axis=1), rtol=1e-12)


def test_non_finite_values_spread_as_in_scipy(tail_calls):
    x = np.random.default_rng(2).random((70, 60, 3))
    x[10, 20, 1], x[40, 5, 2] = np.nan, np.inf
    ours = sc.gaussian_filter(x, (1.5, 2, 0))
    np.testing.assert_allclose(ours, ndi.gaussian_filter(x, (1.5, 2, 0)), rtol=1e-12, atol=1e-12)
    assert len(tail_calls) == 1


def test_dask_blocks_take_it_too(tail_calls):
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(3).random((120, 100, 3)).astype(np.float32)
    lazy = sc.gaussian_filter(da.from_array(x, chunks=(60, 100, 3)), (2, 2, 0))
    np.testing.assert_array_equal(lazy.compute(scheduler="synchronous"), sc.gaussian_filter(x, (2, 2, 0)))
    assert len(tail_calls) >= 2


# --------------------------------------------------------------------------
# A filtered narrow last axis (``last_axis_first``): an RGB image filtered as a
# volume runs with the colours in front, with the same bits as in its own layout.
# --------------------------------------------------------------------------


def _same_bits(a, b):
    """The same dtype, shape and bytes, NaN payloads aside (which NaN an addition of two
    passes on depends on the order of its operands in the machine code)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return np.array_equal(nan_a, nan_b) and np.where(nan_a, 0, a).tobytes() == np.where(nan_b, 0, b).tobytes()


# Filters of every axis: (name, ours, the reference's module)
VOLUME_FILTERS = [
    ("sobel", lambda m, x, mode: m.sobel(x, mode=mode, cval=0.5), skimage.filters),
    ("scharr", lambda m, x, mode: m.scharr(x, mode=mode), skimage.filters),
    ("farid", lambda m, x, mode: m.farid(x, mode=mode), skimage.filters),
    (
        "gaussian",
        lambda m, x, mode: m.gaussian(x, 1.5, mode=mode, cval=0.25, preserve_range=True),
        skimage.filters,
    ),
    ("laplace", lambda m, x, mode: m.laplace(x), skimage.filters),
    (
        "gaussian_filter",
        lambda m, x, mode: m.gaussian_filter(x, [1.0, 2.0, 0.8, 1.2][-x.ndim :], mode=mode, cval=2.0),
        ndi,
    ),
    (
        "gaussian_filter order",
        lambda m, x, mode: m.gaussian_filter(x, 1.2, order=[0] * (x.ndim - 2) + [1, 1], mode=mode),
        ndi,
    ),
    ("gaussian_gradient_magnitude", lambda m, x, mode: m.gaussian_gradient_magnitude(x, 1.0, mode=mode), ndi),
    ("gaussian_laplace", lambda m, x, mode: m.gaussian_laplace(x, 1.0, mode=mode), ndi),
    ("correlate1d last axis", lambda m, x, mode: m.correlate1d(x, [1.0, -2.5, 3.0], axis=-1, mode=mode), ndi),
]

VOLUME_SHAPES = [(50, 41, 3), (20, 70, 4), (64, 70, 1), (70, 40, 2), (3, 20, 30, 3)]


@pytest.fixture
def moved_calls(monkeypatch):
    """How many calls took the path with the last axis in front."""
    calls = []

    def counted(*args):
        calls.append(args[1].shape)
        return _narrow_tail.last_axis_first(*args)

    monkeypatch.setattr(_programs, "last_axis_first", counted)
    return calls


@pytest.mark.parametrize("name, apply, reference", VOLUME_FILTERS, ids=[f[0] for f in VOLUME_FILTERS])
@pytest.mark.parametrize("shape", VOLUME_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_volumes_same_bits_as_in_place_and_the_references_values(
    name, apply, reference, shape, dtype, monkeypatch, moved_calls
):
    rng = np.random.default_rng(sum(shape))
    x = (rng.random(shape) * 100).astype(dtype)
    kept = x.copy()
    for mode in MODES:
        if name in ("laplace", "correlate1d last axis") and mode != "reflect" and reference is not ndi:
            continue
        ours = apply(sc, x, mode)
        in_place = _in_place_layout(monkeypatch, apply, x, mode)
        assert ours.dtype == in_place.dtype and ours.shape == x.shape
        assert ours.flags.c_contiguous and not np.shares_memory(ours, x)
        assert _same_bits(ours, in_place), mode
        expected = apply(reference, x, mode)
        if dtype == np.uint8 and reference is ndi:  # scipy rounds toward zero; one unit either way
            np.testing.assert_allclose(ours, expected, atol=1)
        else:
            tol = 1e-4 if np.float32 in (dtype, ours.dtype) else 1e-9
            np.testing.assert_allclose(ours, expected, rtol=tol, atol=tol * np.abs(x).max())
    np.testing.assert_array_equal(x, kept)
    assert moved_calls  # the path was taken


def _random_taps(rng):
    k = int(rng.integers(1, 8))
    weights = rng.standard_normal(k)
    if k > 2 and rng.random() < 0.3:
        weights[k // 2] = 0.0
    origin = int(rng.integers(-(k // 2), k - k // 2)) if rng.random() < 0.3 else 0
    return taps(weights, origin=origin, skip_zero=bool(rng.random() < 0.5))


@pytest.mark.parametrize("seed", range(4))
def test_random_terms_give_the_bits_of_their_own_layout(seed):
    """Sums and magnitudes of random separable terms (some sharing their first passes, as
    edge filters' do), fused and not, every rule, mode and input type, NaN and infinities
    included, in the image and as ``cval``: the same bytes with the last axis in front as in
    the input's own layout."""
    cpu = engine("cpu")
    rng = np.random.default_rng(seed)
    checked = 0
    for shape in [(40, 37, 3), (17, 64, 4), (50, 90, 1), (30, 50, 2), (5, 7, 9, 3), (2100, 2), (1500, 3)]:
        ndim = len(shape)
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal(shape).astype(dtype)
            x.flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
            for src in (x, rng.integers(0, 256, shape).astype(np.uint8)):
                for combine, n_terms, shared in [(SUM, 1, False), (SUM, 3, True), (MAGNITUDE, 3, True)]:
                    base = {a: _random_taps(rng) for a in range(ndim)}
                    terms = []
                    for t in range(n_terms):
                        term = dict(base) if shared else {a: _random_taps(rng) for a in range(ndim)}
                        term[t % ndim] = _random_taps(rng)
                        terms.append(term)
                    modes = {a: int(rng.integers(0, 5)) for a in range(ndim)}
                    cval = [0.7, np.nan, np.inf, -np.inf, -0.0, 3e38, 1e-45][int(rng.integers(0, 7))]
                    lowered = lower_terms(
                        terms,
                        modes,
                        cval,
                        ndim,
                        rule=["pass", "full"][int(rng.integers(0, 2))],
                        combine=combine,
                        divisor=1.5,
                        dtype=dtype,
                        scale=1 / 255 if src.dtype == np.uint8 else 1.0,
                        fuse=bool(rng.random() < 0.85),
                    )
                    if not _narrow_tail.narrow_last(cpu, shape, lowered):
                        continue
                    expected = run_lowered(cpu, src, lowered)
                    moved = _narrow_tail.last_axis_first_lowering(lowered, shape)
                    got, _ = _narrow_tail.last_axis_first(cpu, src, moved, False)
                    assert _same_bits(got, expected), (shape, dtype, combine, modes, cval)
                    checked += 1
    assert checked > 20


def test_which_calls_take_it(moved_calls):
    rgb = np.ones((60, 60, 3), np.float32)
    sc.gaussian_filter(np.ones((30, 30, 3), np.float32), 1)  # under MIN_SAMPLES
    sc.gaussian_filter(np.ones((60, 60, 5), np.float32), 1)  # five samples a pixel
    sc.gaussian_filter(rgb, (1, 1, 0))  # the last axis not filtered (``narrow_tail``)
    sc.sobel(rgb, axis=(1, 2))  # a lone magnitude (the 3x3 edge kernel)
    assert moved_calls == []
    sc.gaussian_filter(rgb, 1, mode="constant")  # the outside taps' sum added after
    sc.gaussian_filter(rgb, 1, mode=["reflect", "constant", "reflect"])
    sc.sobel(rgb)
    sc.correlate1d(rgb, [1, 2, 1], axis=-1)
    assert len(moved_calls) == 4


def test_non_finite_values_fall_back_as_in_their_own_layout(moved_calls):
    """A sum of terms that meets NaN or inf is computed again by the direct kernel."""
    x = np.random.default_rng(2).random((70, 60, 3))
    x[10, 20, 1], x[40, 5, 2] = np.nan, np.inf
    ours = sc.laplace(x)
    np.testing.assert_allclose(ours, skimage.filters.laplace(x), rtol=1e-12, atol=1e-12)
    assert moved_calls


def test_output_arrays(moved_calls):
    x = np.random.default_rng(0).random((60, 50, 3)).astype(np.float32) * 1000
    target = np.zeros(x.shape, np.int32)
    result = sc.gaussian_filter(x, 2, output=target)
    assert result is target
    np.testing.assert_allclose(result, ndi.gaussian_filter(x, 2, output=np.int32), atol=1)
    out = np.empty(x.shape, np.float32)
    assert sc.gaussian(x, 2, out=out) is out
    np.testing.assert_allclose(out, skimage.filters.gaussian(x, 2), rtol=1e-5)
    assert len(moved_calls) == 2


def test_dask_blocks_give_the_whole_arrays_bits(moved_calls):
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(3).random((120, 100, 3)).astype(np.float32)
    lazy = sc.sobel(da.from_array(x, chunks=(70, 30, 3)))  # blocks both sides of MIN_SAMPLES
    np.testing.assert_array_equal(lazy.compute(scheduler="synchronous"), sc.sobel(x))
    assert len(moved_calls) >= 2


def _uniform_of(module, x, mode, size, output):
    return module.uniform_filter(x, size, output=output, mode=mode, cval=1.5)


@pytest.mark.parametrize("shape", VOLUME_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_uniform_volumes_same_bits_as_in_place(shape, dtype, monkeypatch):
    """``uniform_filter`` of every axis runs its passes with the last axis in front too (the
    running sums are anchored along each axis whatever the layout)."""
    from napari_sepconv import _uniform

    calls = []
    original = _uniform.uniform_last_axis_first
    monkeypatch.setattr(_uniform, "uniform_last_axis_first", lambda *a: calls.append(1) or original(*a))
    rng = np.random.default_rng(sum(shape))
    x = (rng.random(shape) * 100).astype(dtype)
    if dtype != np.uint8:
        x.flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
    kept = x.copy()
    for mode in MODES:
        for size, output in [(3, None), ([2, 7, 3, 5][-x.ndim :], np.float64), (4, np.float32)]:
            apply = functools.partial(_uniform_of, size=size, output=output)
            ours = apply(sc, x, mode)
            in_place = _in_place_layout(monkeypatch, apply, x, mode)
            assert _same_bits(ours, in_place), (mode, size)
            if dtype == np.uint8 and output is None:
                np.testing.assert_allclose(ours, apply(ndi, x, mode), atol=1)
            else:
                tol = 1e-4 if np.float32 in (ours.dtype, dtype) else 1e-9
                expected = apply(ndi, x, mode)
                finite = np.isfinite(expected) & np.isfinite(ours)
                np.testing.assert_allclose(ours[finite], expected[finite], rtol=tol, atol=tol * 100)
    np.testing.assert_array_equal(x, kept)
    assert calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_columns_same_bits_as_in_place(dtype, monkeypatch, moved_calls):
    """A column vector (N, 1) or pairs (N, 2) filtered along both axes: the same path, and
    ``sobel``'s lone magnitude (the 3x3 edge kernel's arithmetic) in place."""
    rng = np.random.default_rng(7)
    for shape in [(5000, 1), (3000, 2), (1400, 3)]:
        x = (rng.random(shape) * 100).astype(dtype)
        for mode in MODES:
            for apply in (
                lambda m, x, mode: m.gaussian_filter(x, 2.0, mode=mode),
                lambda m, x, mode: m.correlate1d(x, [1.0, -2.0, 4.0], axis=-1, mode=mode),
                lambda m, x, mode: m.uniform_filter(x, 5, mode=mode, output=np.float64),
            ):
                ours = apply(sc, x, mode)
                assert _same_bits(ours, _in_place_layout(monkeypatch, apply, x, mode))
                np.testing.assert_allclose(ours, apply(ndi, x, mode), rtol=1e-4, atol=1e-3 * 100)
    assert len(moved_calls) == 3 * 2 * len(MODES)  # (the uniform filter's counted apart)
    moved_calls.clear()
    x = rng.random((5000, 1)).astype(dtype)
    np.testing.assert_array_equal(
        sc.sobel(x), _in_place_layout(monkeypatch, lambda m, x, _: m.sobel(x), x, None)
    )
    assert moved_calls == []


def test_zeros_from_underflows_keep_their_sign(monkeypatch, moved_calls):
    """A -0.0 that comes from an underflow stays -0.0 (a first version ran the vertical pass
    as a fused call with an identity vertical pass, whose ``fma(x, 1, 0)`` made it +0.0)."""
    tiny64, tiny32 = -5e-324, np.float32(-1e-45)
    x = np.zeros((1024, 2, 2))
    x[10, 0, 0] = x[10, 1, 1] = tiny64
    y = np.zeros((1024, 2, 2), np.float32)
    y[5] = [[tiny32, 0], [-0.0, tiny32]]
    calls = [
        lambda m, x, mode: m.separable_filter(
            x, [[1.0], [-0.3, 0.0, 0.6, 0.3, 0.3], [0.3, 0.0, 0.6]], mode=["reflect", mode, "reflect"]
        ),
        lambda m, x, mode: m.gaussian_filter(x, [0, 0.5, 2.5], mode=mode, truncate=1.0),
    ]
    negative_zeros = 0
    for image in (x, y):
        for mode in ("constant", "reflect"):
            for apply in calls:
                ours = apply(sc, image, mode)
                negative_zeros += np.count_nonzero(np.signbit(ours) & (ours == 0))
                assert _same_bits(ours, _in_place_layout(monkeypatch, apply, image, mode))
    assert negative_zeros and moved_calls
