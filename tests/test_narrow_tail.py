"""Filters of images whose unfiltered last axes are narrow (``_narrow_tail``): RGB images
filtered in x and y run with the colours in front, with the same values as before."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sepconv as sc
from napari_sepconv import _cpu, _narrow_tail, _programs

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


def _in_place_layout(monkeypatch, apply, x, mode):
    """``apply(sc, x, mode)`` with the narrow-tail path turned off."""
    with monkeypatch.context() as m:
        m.setattr(_cpu, "narrow_inner", 0)
        return apply(sc, x, mode)


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
