"""The Gaussian family and the uniform filter against scipy.ndimage and scikit-image.

Values are compared with the peers on random data for every border mode, odd
and tiny shapes, several dtypes, non-contiguous inputs, per-axis arguments,
``axes``, ``radius`` and derivative orders; dask results must equal the
in-memory ones exactly at any chunking. CUDA runs of these functions (on the
simulator) are at the bottom: ``NUMBA_ENABLE_CUDASIM=1 pytest
tests/test_smoothing.py -m cudasim``.
"""

import os
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sepconv as sc

skf = pytest.importorskip("skimage.filters")

MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _image(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * 3).astype(dtype)


def assert_matches(ours, peer, *, exact_ints=True):
    """Same dtype and shape; integers equal, floats to the rounding of their type."""
    ours, peer = np.asarray(ours), np.asarray(peer)
    assert ours.dtype == peer.dtype, (ours.dtype, peer.dtype)
    assert ours.shape == peer.shape
    if ours.dtype.kind in "biu":
        if exact_ints:
            np.testing.assert_array_equal(ours, peer)
        else:  # a pass ending within rounding of an integer may truncate either way
            assert np.mean(ours != peer) < 0.01
            np.testing.assert_allclose(ours.astype(float), peer.astype(float), atol=1)
        return
    tol = 2e-5 if np.finfo(ours.dtype).dtype.itemsize <= 4 else 1e-10
    scale = max(1.0, float(np.nanmax(np.abs(peer), initial=0.0)))
    np.testing.assert_allclose(ours, peer, rtol=tol, atol=tol * scale, equal_nan=True)


# --------------------------------------------------------------------------
# scipy.ndimage style
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1,), (5,), (7, 1), (3, 11), (6, 5, 4)])
def test_gaussian_filter_every_mode_and_shape(rng, mode, shape):
    x = _image(rng, shape, np.float64)
    for sigma in (0.6, 2.5):
        assert_matches(
            sc.gaussian_filter(x, sigma, mode=mode, cval=1.5),
            ndi.gaussian_filter(x, sigma, mode=mode, cval=1.5),
        )


@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.uint8, np.int16, np.uint16, np.bool_, np.float16]
)
def test_gaussian_filter_dtypes_and_intermediate_casts(rng, dtype):
    x = _image(rng, (9, 12), dtype)
    ours = sc.gaussian_filter(x, [1.2, 0.7])
    if dtype == np.float16:  # scipy has no float16 output; it equals the float32 result cast
        peer = ndi.gaussian_filter(x.astype(np.float32), [1.2, 0.7]).astype(np.float16)
        # float16 resolution relative to the data: a sum that cancels to near zero holds
        # float32 rounding of the larger terms, many float16 steps of its small value
        scale = float(np.abs(peer).max())
        np.testing.assert_allclose(ours.astype(float), peer.astype(float), rtol=2e-3, atol=1e-3 * scale)
        return
    assert_matches(ours, ndi.gaussian_filter(x, [1.2, 0.7]), exact_ints=False)
    for out in (np.float32, np.float64, np.int32):
        assert_matches(
            sc.gaussian_filter(x, 1.0, output=out), ndi.gaussian_filter(x, 1.0, output=out), exact_ints=False
        )


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_gaussian_derivatives(rng, order):
    x = _image(rng, (10, 13), np.float64)
    for axis in (0, 1):
        assert_matches(
            sc.gaussian_filter1d(x, 1.7, axis=axis, order=order),
            ndi.gaussian_filter1d(x, 1.7, axis=axis, order=order),
        )
    assert_matches(
        sc.gaussian_filter(x, [1.0, 2.0], order=[order, 3 - order], mode=["wrap", "mirror"]),
        ndi.gaussian_filter(x, [1.0, 2.0], order=[order, 3 - order], mode=["wrap", "mirror"]),
    )


@pytest.mark.parametrize("shape", [(1,), (9,), (3, 3), (17, 1), (31, 40), (5, 6, 7), (2, 3, 4, 5)])
def test_float64_gaussian_filter_has_scipys_bits(rng, shape):
    """float64 passes go one by one with scipy's weights and its order of operations: the
    result is scipy's bit for bit, hence also ``gaussian_filter1d`` along each axis in turn
    (scipy's own ``test_multiple_modes_sequentially``)."""
    x = rng.standard_normal(shape)
    ndim = len(shape)
    modes = [MODES[(i + len(shape)) % len(MODES)] for i in range(ndim)]
    for kwargs in (
        {"sigma": 1.0},
        {"sigma": [0.7 + 0.4 * i for i in range(ndim)], "mode": modes, "cval": 0.25},
        {"sigma": 2.0, "order": [i % 3 for i in range(ndim)], "radius": 3},
        {"sigma": [1.5] + [0.0] * (ndim - 1), "truncate": 2.0},
    ):
        ours = sc.gaussian_filter(x, **kwargs)
        np.testing.assert_array_equal(ours, ndi.gaussian_filter(x, **kwargs), err_msg=str(kwargs))
        one_by_one = x
        for axis in range(ndim):
            per_axis = {k: v[axis] if isinstance(v, list) else v for k, v in kwargs.items()}
            if per_axis["sigma"] > 1e-15:
                one_by_one = sc.gaussian_filter1d(one_by_one, axis=axis, **per_axis)
        np.testing.assert_array_equal(ours, one_by_one, err_msg=str(kwargs))
    axes = tuple(range(ndim))[-2:]
    np.testing.assert_array_equal(
        sc.gaussian_filter(x, 1.3, axes=axes), ndi.gaussian_filter(x, 1.3, axes=axes)
    )
    out = np.full(shape, np.nan)
    assert sc.gaussian_filter(x, 1.3, output=out) is out
    np.testing.assert_array_equal(out, ndi.gaussian_filter(x, 1.3))
    np.testing.assert_array_equal(
        sc.gaussian_filter(x.astype(np.float32), 1.3, output=np.float64),
        ndi.gaussian_filter(x.astype(np.float32), 1.3, output=np.float64),
    )
    for kind in (np.uint8, np.int16, np.bool_):  # other inputs with a float64 output
        y = _image(rng, shape, kind)
        np.testing.assert_array_equal(
            sc.gaussian_filter(y, 1.1, output=np.float64), ndi.gaussian_filter(y, 1.1, output=np.float64)
        )
    flat = np.full(shape, 100, np.uint8)  # scipy's weights: a flat image can come back 99, as in scipy
    for sigma in (1.1, 2.3):
        np.testing.assert_array_equal(sc.gaussian_filter1d(flat, sigma), ndi.gaussian_filter1d(flat, sigma))
        np.testing.assert_array_equal(sc.gaussian_filter(flat, sigma), ndi.gaussian_filter(flat, sigma))
    for axis in range(ndim):
        np.testing.assert_array_equal(
            sc.gaussian_filter1d(x, 1.7, axis=axis, order=1),
            ndi.gaussian_filter1d(x, 1.7, axis=axis, order=1),
        )
        y = _image(rng, shape, np.int16)
        np.testing.assert_array_equal(
            sc.gaussian_filter1d(y, 1.7, axis=axis), ndi.gaussian_filter1d(y, 1.7, axis=axis)
        )
        f32 = x.astype(np.float32)  # computed in float64 and rounded, as scipy does
        np.testing.assert_array_equal(
            sc.gaussian_filter1d(f32, 1.7, axis=axis), ndi.gaussian_filter1d(f32, 1.7, axis=axis)
        )


def test_gaussian_filter_plans_once_per_set_of_arguments(rng):
    """A float-output call's plan (and a ``gaussian_filter1d`` call's) comes from the plan
    cache the next time (previews, loops over planes); per-axis sequences and arrays of
    sigma are keyed by value."""
    from napari_sepconv import _plan, smoothing

    x = rng.random((9, 13)).astype(np.float32)

    def entries():
        return [k for k in _plan._cache if k[0] is smoothing._plan_gaussian_filter and k[2] == x.shape]

    before = len(entries())
    first = sc.gaussian_filter(x, 1.3, mode="wrap")
    np.testing.assert_array_equal(sc.gaussian_filter(x, 1.3, mode="wrap"), first)
    assert len(entries()) == before + 1
    per_axis = sc.gaussian_filter(x, [1.3, 0.6])
    np.testing.assert_array_equal(sc.gaussian_filter(x, np.array([1.3, 0.6])), per_axis)
    np.testing.assert_array_equal(sc.gaussian_filter(x, (1.3, 0.6)), per_axis)
    with pytest.raises(ValueError, match="sigma"):
        sc.gaussian_filter(x, -1.0)
    ones = [k for k in _plan._cache if k[0] is smoothing._plan_gaussian_filter1d and k[2] == x.shape]
    line = sc.gaussian_filter1d(x, 1.3, axis=0, output=np.float64)
    np.testing.assert_array_equal(sc.gaussian_filter1d(x, 1.3, axis=0, output=np.float64), line)
    np.testing.assert_array_equal(line, ndi.gaussian_filter1d(x, 1.3, axis=0, output=np.float64))
    now = [k for k in _plan._cache if k[0] is smoothing._plan_gaussian_filter1d and k[2] == x.shape]
    assert len(now) == len(ones) + 1
    with pytest.raises(ValueError, match="sigma"):
        sc.gaussian_filter1d(x, 0.0)


def test_gaussian_filter_axes_radius_truncate_and_zero_sigma(rng):
    x = _image(rng, (4, 9, 10), np.float32)
    cases = [
        dict(sigma=1.5, axes=(1, 2)),
        dict(sigma=(1.0, 3.0), axes=(-1, 0), mode=("constant", "nearest"), cval=-2.0),
        dict(sigma=2.0, radius=3),
        dict(sigma=2.0, radius=(1, 0, 5)),
        dict(sigma=1.0, truncate=1.2),
        dict(sigma=(0.0, 1.0, 0.0)),
        dict(sigma=0.0),
        dict(sigma=1.0, axes=()),
    ]
    for kw in cases:
        assert_matches(sc.gaussian_filter(x, **kw), ndi.gaussian_filter(x, **kw))


@pytest.mark.parametrize("value", [np.array(-2.7), np.array(200, np.uint8), np.array(2.5, np.float32)])
def test_nd_filters_copy_a_0d_input_as_scipy_does(value):
    """A 0-d array has no axis to filter: scipy returns it cast to the output (its own
    output array when one is given), for the Laplacians and gradient magnitude too."""
    calls = [
        ("gaussian_filter", (1.0,), {}),
        ("gaussian_filter", (1.0,), {"order": 1, "output": np.int16}),
        ("uniform_filter", (3,), {"output": np.float32}),
        ("gaussian_laplace", (1.0,), {}),
        ("gaussian_gradient_magnitude", (1.0,), {"output": np.uint8}),
        ("ndimage_laplace", (), {}),
    ]
    for name, args, kw in calls:
        peer = getattr(ndi, "laplace" if name == "ndimage_laplace" else name)
        ours = getattr(sc, name)(value, *args, **kw)
        expected = peer(value, *args, **kw)
        assert ours.shape == () and ours.dtype == expected.dtype, name
        np.testing.assert_array_equal(ours, expected)
        out, out_peer = np.full((), 7.0, np.float32), np.full((), 7.0, np.float32)
        assert getattr(sc, name)(value, *args, output=out) is out
        peer(value, *args, output=out_peer)
        np.testing.assert_array_equal(out, out_peer)
    with pytest.raises(RuntimeError):  # scipy's error for a sigma per axis of a 0-d array
        sc.gaussian_filter(value, [1.0])
    with pytest.raises(ValueError, match="output"):  # an output of another shape
        sc.uniform_filter(value, 3, output=np.zeros(1))


def test_nothing_to_filter_is_numpys_cast_as_in_scipy():
    """sigma 0, size 1 or no axes: scipy's ``output[...] = input`` (exact for 64-bit
    integers, a fraction cast to bool True), not a pass through float64."""
    big = np.array([2**63 - 1, 2**53 + 1, -(2**63)], np.int64)
    fractions = np.array([0.5, np.nan, 300.7, -0.2, 0.0])
    for x, output in [(big, None), (big, np.uint64), (fractions, bool), (fractions, np.float32)]:
        for ours, peer in [
            (sc.gaussian_filter(x, 0.0, output=output), ndi.gaussian_filter(x, 0.0, output=output)),
            (sc.uniform_filter(x, 1, output=output), ndi.uniform_filter(x, 1, output=output)),
            (
                sc.gaussian_laplace(x, 1.0, output=output, axes=()),
                ndi.gaussian_laplace(x, 1.0, output=output, axes=()),
            ),
        ]:
            assert ours.dtype == peer.dtype
            np.testing.assert_array_equal(ours, peer)
    out = np.zeros(3, np.int64)
    assert sc.uniform_filter(big, 1, output=out) is out
    np.testing.assert_array_equal(out, big)


def test_nothing_to_filter_with_complex_input_or_output_is_scipys_copy():
    """A real input into a complex output, or a complex one into a real output (its real
    part), when no axis is filtered: scipy copies (``uniform_filter`` makes a real output
    type complex, as it does when it filters)."""
    real, cplx = np.arange(4.0) - 1.5, np.arange(4.0) + 2j
    cases = [
        ("gaussian_filter", real, (0.0,), {"output": np.complex128}),
        ("gaussian_filter", cplx, (0.0,), {"output": np.float32}),
        ("gaussian_filter", real, (1.0,), {"output": np.complex64, "axes": ()}),
        ("gaussian_filter", np.array(2.0), (1.0,), {"output": np.complex64}),
        ("uniform_filter", real, (1,), {"output": np.complex128}),
        ("uniform_filter", cplx, (0.5,), {"output": np.float32}),
        ("gaussian_laplace", real, (1.0,), {"output": np.complex128, "axes": ()}),
        ("gaussian_gradient_magnitude", cplx, (1.0,), {"output": np.float64, "axes": ()}),
        ("ndimage_laplace", cplx, (), {"output": np.float64, "axes": ()}),
    ]
    for name, x, args, kw in cases:
        peer_call = getattr(ndi, "laplace" if name == "ndimage_laplace" else name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NumPy's ComplexWarning, scipy's promotion warning
            expected = peer_call(x, *args, **kw)
            ours = getattr(sc, name)(x, *args, **kw)
        assert ours.dtype == expected.dtype, name
        np.testing.assert_array_equal(ours, expected)
    with pytest.raises(RuntimeError):  # filtering a real input into a complex output: refused
        sc.gaussian_filter(real, 1.0, output=np.complex128)


def test_bool_output_passes_read_the_byte_scipy_stores(rng):
    """A bool output's passes are stored as scipy stores them (the value's byte: 300 as 44,
    -1 as 255) before the next reads them; the result is a proper bool, true where scipy's
    byte is not zero."""
    for _ in range(6):
        x = rng.normal(0, 200, (7, 9))
        for name, args, kw in [
            ("gaussian_filter", (1.2,), {}),
            ("gaussian_filter", (1.0,), {"order": (1, 0)}),
            ("uniform_filter", (3,), {}),
            ("gaussian_laplace", (1.0,), {}),
            ("gaussian_gradient_magnitude", (1.0,), {}),
        ]:
            peer = getattr(ndi, name)(x, *args, output=bool, **kw)
            ours = getattr(sc, name)(x, *args, output=bool, **kw)
            np.testing.assert_array_equal(ours, peer.view(np.uint8) != 0, err_msg=name)
            assert set(np.unique(ours.view(np.uint8))) <= {0, 1}
    mask = rng.random((8, 8)) > 0.5  # a bool image's Laplacian is bool too
    np.testing.assert_array_equal(
        sc.gaussian_laplace(mask, 1.0), ndi.gaussian_laplace(mask, 1.0).view(np.uint8) != 0
    )


def test_a_float32_sigma_gives_scipys_float32_kernel_arithmetic(rng):
    """NumPy keeps a float32 sigma's type (``-0.5 / sigma**2`` in float32 in scipy's kernel);
    a float32 ``truncate`` too (``truncate * sigma``)."""
    x = rng.standard_normal((20, 30))
    for sigma in (np.float32(1.5), np.float16(1.3), np.array(np.float32(0.7))):
        for order in (0, 1, 2):
            for truncate in (4.0, np.float32(3.3)):
                kw = dict(order=order, truncate=truncate)
                np.testing.assert_array_equal(
                    sc.gaussian_filter1d(x, sigma, **kw), ndi.gaussian_filter1d(x, sigma, **kw)
                )
                np.testing.assert_array_equal(
                    sc.gaussian_filter1d(x, sigma, axis=0, output=np.float32, **kw),
                    ndi.gaussian_filter1d(x, sigma, axis=0, output=np.float32, **kw),
                )
    # the float64 sigma equal to it gives scipy's float64 kernel, whichever came first
    np.testing.assert_array_equal(sc.gaussian_filter1d(x, 1.5), ndi.gaussian_filter1d(x, 1.5))
    impulse = np.zeros(11)
    impulse[5] = 1  # radius int(2.5 * 0.999999999 + 0.5): 3 in float32, 2 in float64
    for truncate in (np.float32(2.5), 2.5):
        ours = sc.gaussian_filter1d(impulse, 0.999999999, truncate=truncate)
        np.testing.assert_array_equal(ours, ndi.gaussian_filter1d(impulse, 0.999999999, truncate=truncate))
        assert np.count_nonzero(ours) == (7 if isinstance(truncate, np.float32) else 5)


def test_arguments_refused_whatever_was_called_before(rng):
    """The kernel cache tells ``1`` from ``1.0`` and ``2`` from ``2.0``: what scipy refuses is
    refused after the accepted value was used too."""
    z = rng.standard_normal(9)
    for _ in range(2):
        sc.gaussian_filter1d(z, 1.2, order=1)
        with pytest.raises(TypeError, match="order"):
            sc.gaussian_filter1d(z, 1.2, order=1.0)
        sc.gaussian_filter(z, 1.2, radius=2)
        with pytest.raises(ValueError, match="radius"):
            sc.gaussian_filter(z, 1.2, radius=2.0)
    # bools as scipy takes them: a radius True is 1, an order False 0, an order True refused
    np.testing.assert_array_equal(
        sc.gaussian_filter1d(z, 1.2, radius=True), ndi.gaussian_filter1d(z, 1.2, radius=1)
    )
    np.testing.assert_array_equal(
        sc.gaussian_filter1d(z, 1.2, order=np.False_), ndi.gaussian_filter1d(z, 1.2)
    )
    for order in (True, np.True_, [True]):
        with pytest.raises(TypeError, match="order"):
            sc.gaussian_filter(z, 1.2, order=order)


def test_uniform_sizes_and_errors_as_scipy_takes_them(rng):
    z = rng.standard_normal(12)
    sizes = [(2.5, 2), (3.0, 3), (np.float64(4.7), 4), (0.5, 1), (-1.5, 1), (np.nan, 1), ([2.5], 2)]
    for size, taken in sizes:
        ours = sc.uniform_filter(z, size)  # int(size) where size > 1, as scipy takes it
        np.testing.assert_array_equal(ours, sc.uniform_filter(z, taken))
        assert_matches(ours, ndi.uniform_filter(z, size))
    with pytest.raises(TypeError, match="size"):  # scipy's uniform_filter1d takes integers only
        sc.uniform_filter1d(z, 3.0)
    with pytest.raises(RuntimeError, match="size"):
        sc.uniform_filter1d(z, 0.5)
    with pytest.raises(TypeError, match="size"):
        sc.uniform_filter(z, "3")
    for call in (sc.uniform_filter1d, sc.gaussian_filter1d, sc.correlate1d, sc.convolve1d):
        args = ([1.0, 2.0],) if call in (sc.correlate1d, sc.convolve1d) else (3,)
        with pytest.raises(np.exceptions.AxisError):  # no axis to filter along, as in scipy
            call(np.array(2.5), *args)
    for output in (object, 3, "U3"):  # scipy's RuntimeError, and the TypeError it is
        with pytest.raises(RuntimeError):
            sc.gaussian_filter(z, 1.0, output=output)
        with pytest.raises(TypeError):
            sc.correlate1d(z, [1.0, 2.0], output=output)


def test_gaussian_filter_output_array_noncontiguous_and_inputs_untouched(rng):
    base = _image(rng, (14, 12), np.float64)
    for x in (base[::2, ::-1], base.T, base.astype(">f8")):
        before = x.copy()
        out = np.empty(x.shape, np.float32)
        got = sc.gaussian_filter(x, 1.3, output=out)
        assert got is out
        assert_matches(out, ndi.gaussian_filter(np.asarray(x, float), 1.3, output=np.float32))
        np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_magnitude_and_laplace(rng, mode):
    x = _image(rng, (9, 11), np.float64)
    for fn_ours, fn_peer in (
        (sc.gaussian_gradient_magnitude, ndi.gaussian_gradient_magnitude),
        (sc.gaussian_laplace, ndi.gaussian_laplace),
    ):
        assert_matches(fn_ours(x, 1.1, mode=mode, cval=0.5), fn_peer(x, 1.1, mode=mode, cval=0.5))
        assert_matches(
            fn_ours(x, [1.0, 2.0], mode=[mode, "reflect"]), fn_peer(x, [1.0, 2.0], mode=[mode, "reflect"])
        )
    assert_matches(sc.ndimage_laplace(x, mode=mode, cval=0.5), ndi.laplace(x, mode=mode, cval=0.5))


def test_gradient_magnitude_and_laplace_axes_ints_and_options(rng):
    x = _image(rng, (5, 9, 8), np.float32)
    i = _image(rng, (9, 8), np.int16)
    assert_matches(
        sc.gaussian_laplace(x, (1.0, 2.0), axes=(2, 1)), ndi.gaussian_laplace(x, (1.0, 2.0), axes=(2, 1))
    )
    for axes in [(2, 0, 1), (1, 0, 2), (-1, -2, -3)]:  # every axis: scipy takes a sigma per array axis
        sigma = (1.0, 2.0, 0.5)
        assert_matches(sc.gaussian_laplace(x, sigma, axes=axes), ndi.gaussian_laplace(x, sigma, axes=axes))
        assert_matches(
            sc.gaussian_gradient_magnitude(x, sigma, axes=axes),
            ndi.gaussian_gradient_magnitude(x, sigma, axes=axes),
        )
    assert_matches(
        sc.gaussian_gradient_magnitude(x, 1.5, axes=(0, 2), mode=("wrap", "nearest")),
        ndi.gaussian_gradient_magnitude(x, 1.5, axes=(0, 2), mode=("wrap", "nearest")),
    )
    assert_matches(sc.gaussian_laplace(x, 1.5, truncate=2.0), ndi.gaussian_laplace(x, 1.5, truncate=2.0))
    assert_matches(
        sc.gaussian_gradient_magnitude(x, 1.5, radius=2), ndi.gaussian_gradient_magnitude(x, 1.5, radius=2)
    )
    # (uint8 derivatives wrap around, so a pass that truncates the other way there
    # changes a value by 255: only the signed type is compared to within 1)
    assert_matches(sc.gaussian_laplace(i, 1.0), ndi.gaussian_laplace(i, 1.0), exact_ints=False)
    assert_matches(
        sc.gaussian_gradient_magnitude(i, 1.0),
        ndi.gaussian_gradient_magnitude(i, 1.0),
        exact_ints=False,
    )
    for dt in (np.int16, np.uint8):
        assert_matches(sc.ndimage_laplace(i.astype(dt)), ndi.laplace(i.astype(dt)))
    assert_matches(
        sc.ndimage_laplace(x, axes=(0, 2), mode=("wrap", "constant")),
        ndi.laplace(x, axes=(0, 2), mode=("wrap", "constant")),
    )
    assert_matches(sc.gaussian_laplace(x, 0.0), ndi.gaussian_laplace(x, 0.0))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 16, 31])
def test_uniform_filter1d_every_mode_size_and_origin(rng, mode, size):
    x = _image(rng, (6, 13), np.float64)
    for origin in {-(size // 2), 0, (size - 1) // 2}:
        for axis in (0, 1):
            assert_matches(
                sc.uniform_filter1d(x, size, axis=axis, mode=mode, cval=2.0, origin=origin),
                ndi.uniform_filter1d(x, size, axis=axis, mode=mode, cval=2.0, origin=origin),
            )


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.uint16, np.bool_, np.float32, np.float64])
def test_uniform_filter_dtypes_exact_for_integers(rng, dtype):
    x = _image(rng, (7, 9, 5), dtype)
    # integer sums are exact in float64: integer outputs equal scipy's exactly
    assert_matches(sc.uniform_filter(x, 3), ndi.uniform_filter(x, 3))
    assert_matches(
        sc.uniform_filter(x, (4, 1, 6), mode=("wrap", "reflect", "mirror")),
        ndi.uniform_filter(x, (4, 1, 6), mode=("wrap", "reflect", "mirror")),
    )
    assert_matches(
        sc.uniform_filter(x, 5, output=np.float32, axes=(2, 0), origin=(1, -2)),
        ndi.uniform_filter(x, 5, output=np.float32, axes=(2, 0), origin=(1, -2)),
    )


def test_uniform_filter_long_windows_and_noncontiguous(rng):
    base = _image(rng, (12, 10), np.float64)
    for x in (base[::3, ::-1], base.T, base[:1]):
        for mode in MODES:
            assert_matches(sc.uniform_filter(x, 25, mode=mode), ndi.uniform_filter(x, 25, mode=mode))


SCIPY_COMPLEX_CASES = [
    ("gaussian_filter", (1.2,)),
    ("gaussian_filter1d", (0.8,)),
    ("uniform_filter", (3,)),
    ("uniform_filter1d", (4,)),
    ("gaussian_laplace", (1.0,)),
    ("gaussian_gradient_magnitude", (1.0,)),
    ("laplace", ()),
]


def test_complex_parts_filtered_apart_as_in_scipy(rng):
    x = _image(rng, (7, 9), np.float64) + 1j * _image(rng, (7, 9), np.float64)
    for name, args in SCIPY_COMPLEX_CASES:
        ours = getattr(sc, "ndimage_laplace" if name == "laplace" else name)
        for dtype in (None, np.complex64):
            assert_matches(ours(x, *args, output=dtype), getattr(ndi, name)(x, *args, output=dtype))
    assert_matches(
        sc.ndimage_laplace(x, mode="constant", cval=1 + 2j), ndi.laplace(x, mode="constant", cval=1 + 2j)
    )


@pytest.mark.parametrize("name, args", SCIPY_COMPLEX_CASES)
def test_complex_input_and_a_real_output_type_as_in_scipy(rng, name, args):
    """SciPy promotes a real output type (warning) where its filter is built on correlate1d,
    and refuses it (RuntimeError) where it is not: each function here does as its peer does."""
    x = _image(rng, (7, 9), np.float64) + 1j * _image(rng, (7, 9), np.float64)
    ours = getattr(sc, "ndimage_laplace" if name == "laplace" else name)
    peer = getattr(ndi, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            expected = peer(x, *args, output=np.float32)
        except RuntimeError:
            expected = None
    if expected is None:
        with pytest.raises(RuntimeError, match="output"):
            ours(x, *args, output=np.float32)
    else:
        assert any("promoting" in str(w.message) for w in caught)
        with pytest.warns(UserWarning, match="promoting specified output dtype to complex"):
            result = ours(x, *args, output=np.float32)
        assert result.dtype == expected.dtype
        assert_matches(result, expected)
    big_endian = x.astype(">c16")
    assert ours(big_endian, *args).dtype == peer(big_endian, *args).dtype == np.complex128


def test_complex_gaussian_laplace_on_some_axes_as_in_scipy(rng):
    x = _image(rng, (6, 7, 5), np.float64) + 1j * _image(rng, (6, 7, 5), np.float64)
    for axes, sigma in (((1,), 1.0), ((2, 0), (0.8, 1.3)), ((), 1.0), (None, (1.0, 0.5, 0.7))):
        assert_matches(sc.gaussian_laplace(x, sigma, axes=axes), ndi.gaussian_laplace(x, sigma, axes=axes))


def test_real_input_into_a_complex_output_is_refused_as_in_scipy(rng):
    x = _image(rng, (5, 6), np.float64)
    for name, args in SCIPY_COMPLEX_CASES:
        ours = getattr(sc, "ndimage_laplace" if name == "laplace" else name)
        for output in (np.complex128, "D", np.zeros(x.shape, np.complex64)):
            with pytest.raises(RuntimeError):
                getattr(ndi, name)(x, *args, output=output)
            with pytest.raises(TypeError, match="output"):  # ours: also a TypeError naming it
                ours(x, *args, output=output)


def test_uniform_filter_nan_stays_in_its_windows(rng):
    x = _image(rng, (9, 40), np.float64)
    x[3, 20] = np.nan
    x[6, 5] = np.inf
    x[6, 7] = -np.inf
    for axis in (0, 1):
        ours = sc.uniform_filter1d(x, 5, axis=axis)
        ref = ndi.correlate1d(x, np.full(5, 1 / 5), axis=axis)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
        # a mean near zero keeps the absolute rounding of its window's sum (a few ulps of the
        # samples), not a relative one: compare in the samples' units
        scale = np.abs(x[np.isfinite(x)]).max()
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-14 * scale, equal_nan=True)


def test_uniform_filter_values_do_not_depend_on_where_a_line_starts(rng):
    """A running sum restarts at every multiple of the anchor spacing, from the window
    itself: a crop starting at such a multiple gives the same bits from its second
    segment on (the first one's sums started from the border's extension)."""
    from napari_sepconv._uniform import spacing

    x = (rng.standard_normal((3, 1100)) * 1e3).astype(np.float64)
    for size in (17, 130):
        k = spacing(size)
        full = sc.uniform_filter1d(x, size)
        part = sc.uniform_filter1d(x[:, 2 * k :], size)
        np.testing.assert_array_equal(full[:, 3 * k : -size], part[:, k:-size])
        np.testing.assert_array_equal(
            sc.uniform_filter1d(x.T, size, axis=0)[3 * k : -size],
            sc.uniform_filter1d(x.T[2 * k :], size, axis=0)[k:-size],
        )


_PAD = {
    "reflect": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "constant": "constant",
}


def _window_means(x, size, mode, cval=0.0, origin=0):
    """Float64 direct windowed means along the last axis (np.convolve of each line)."""
    before = size // 2 + origin
    pad = [(0, 0)] * (x.ndim - 1) + [(before, size - 1 - before)]
    kw = {"constant_values": cval} if mode == "constant" else {}
    ext = np.pad(x.astype(np.float64), pad, mode=_PAD[mode], **kw)
    lines = ext.reshape(-1, ext.shape[-1])
    sums = np.stack([np.convolve(line, np.ones(size), "valid") for line in lines])
    return (sums / size).reshape(x.shape)


@pytest.mark.parametrize("mode", MODES)
def test_uniform_long_lines_are_window_means(rng, mode):
    """Lines many anchor spacings long, every mode and origin, along both axes."""
    x = rng.standard_normal((5, 1500)) * 100
    for size in (2, 3, 31, 64, 65, 300):
        for origin in {-(size // 2), 0, (size - 1) // 2}:
            ref = _window_means(x, size, mode, 1.5, origin)
            for axis in (0, 1):
                data = x if axis == 1 else x.T.copy()
                ours = sc.uniform_filter1d(data, size, axis=axis, mode=mode, cval=1.5, origin=origin)
                ours = ours if axis == 1 else ours.T
                # (the reference's own rounding: about size * 2**-53 of the values)
                np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13 * np.abs(x).max())
            peer = ndi.uniform_filter1d(x, size, mode=mode, cval=1.5, origin=origin)
            assert_matches(sc.uniform_filter1d(x, size, mode=mode, cval=1.5, origin=origin), peer)


def test_uniform_values_are_means_of_the_window():
    """Summed in float64 from an anchor at most ``spacing(size)`` samples back: closer
    to the exact mean than scipy's running mean, which drifts along the whole line.

    Both bounds compare largest errors, which vary from one draw to the next (on fresh
    draws of 5000 samples scipy's drift is sometimes still below ours), so the data is
    one fixed draw, long enough for the drift to show."""
    x = np.random.default_rng(20261130).random(20000) * 1e6
    ours = sc.uniform_filter1d(x, 101, mode="nearest")
    ext = np.pad(x, 50, mode="edge")
    exact = np.array([np.sum(ext[i : i + 101], dtype=np.longdouble) / 101 for i in range(x.size)])
    error = np.abs(ours - exact) / exact
    peer = np.abs(ndi.uniform_filter1d(x, 101, mode="nearest") - exact) / exact
    assert error.max() < 4e-15
    assert error.max() <= peer.max()


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint16])
def test_uniform_integer_long_lines_exact(rng, dtype):
    """Integer sums are exact: the truncated exact mean, as scipy gives it."""
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -30000), min(info.max, 30000), (4, 3000), endpoint=True).astype(dtype)
    for size in (3, 7, 31, 200):
        before = size // 2
        ext = np.pad(x.astype(np.int64), ((0, 0), (before, size - 1 - before)), mode="symmetric")
        sums = np.stack([np.convolve(line, np.ones(size, np.int64), "valid") for line in ext])
        exact = np.trunc(sums / size).astype(dtype)
        np.testing.assert_array_equal(sc.uniform_filter1d(x, size), exact)
        np.testing.assert_array_equal(sc.uniform_filter1d(x.T, size, axis=0), exact.T)
        assert_matches(sc.uniform_filter(x, size), ndi.uniform_filter(x, size))


def test_uniform_nonfinite_in_long_lines(rng):
    """NaN and inf next to anchors and far from them: only their windows change."""
    from napari_sepconv._uniform import spacing

    k = spacing(31)
    x = rng.standard_normal((6, 1200))
    x[0, k] = np.nan
    x[1, k - 1] = np.inf
    x[2, 3 * k + 5] = -np.inf
    x[3, 10] = np.inf
    x[3, 20] = -np.inf
    x[4, -1] = np.nan
    x[5, 600:700] = np.inf
    for size in (5, 31):
        ref = ndi.correlate1d(x, np.full(size, 1 / size))
        for data, axis in ((x, 1), (x.T.copy(), 0), (x.astype(np.float32), 1)):
            ours = sc.uniform_filter1d(data, size, axis=axis)
            ours = ours if axis == 1 else ours.T
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
            np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
            rtol = 1e-12 if ours.dtype == np.float64 else 1e-5
            np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol, equal_nan=True)
        # (scipy's own running mean keeps a NaN to the end of its line; a sum does not)
        both = sc.uniform_filter(x, size)
        twice = ndi.correlate1d(ndi.correlate1d(x, np.full(size, 1 / size), axis=0), np.full(size, 1 / size))
        np.testing.assert_array_equal(np.isnan(both), np.isnan(twice))
        np.testing.assert_allclose(both, twice, rtol=1e-12, atol=1e-12, equal_nan=True)
    constant = sc.uniform_filter1d(x[:, :300], 5, mode="constant", cval=np.nan)
    np.testing.assert_array_equal(
        np.isnan(constant),
        np.isnan(ndi.correlate1d(x[:, :300], np.full(5, 0.2), mode="constant", cval=np.nan)),
    )


@pytest.mark.parametrize("width", [1, 3, 16, 130, 300])
def test_uniform_short_lines_many_to_a_task(rng, width):
    """Lines shorter than a task go several to a task along the last axis: each line's
    values are those of the line alone (bit for bit), NaN and inf kept to their windows in
    whichever line of a task they are."""
    x = rng.standard_normal((701, width))
    x[5, width // 2] = np.nan
    x[300, 0] = np.inf
    x[-1, -1] = -np.inf
    for data in (x, x.astype(np.float32), (x * 50).astype(np.int16)):
        if data.dtype.kind == "i":
            data[[5, 300, -1]] = 7
        ours = sc.uniform_filter1d(data, 5)
        alone = np.stack([sc.uniform_filter1d(data[i : i + 1], 5)[0] for i in range(0, len(data), 50)])
        np.testing.assert_array_equal(ours[::50], alone)
        ref = ndi.correlate1d(data.astype(np.float64), np.full(5, 0.2))
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
        if data.dtype.kind == "i":
            np.testing.assert_array_equal(ours, ndi.uniform_filter1d(data, 5))
        else:
            rtol = 1e-12 if data.dtype == np.float64 else 1e-5
            np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol, equal_nan=True)


def test_uniform_filter_fused_and_separate_passes_agree(rng):
    """The last two passes, fused for a float output, give the bits of one pass at a
    time with a float64 intermediate; a first pass along axis 0 is stored as float32."""
    x = rng.standard_normal((3, 150, 260)).astype(np.float32)
    for size, mode in (((3, 31), ("reflect", "constant")), ((130, 7), ("wrap", "mirror"))):
        fused = sc.uniform_filter(x, (1, *size), mode=("nearest", *mode), cval=0.5)
        step = sc.uniform_filter1d(x, size[0], axis=1, mode=mode[0], cval=0.5, output=np.float64)
        step = sc.uniform_filter1d(step, size[1], axis=2, mode=mode[1], cval=0.5, output=np.float32)
        np.testing.assert_array_equal(fused, step)
        first = sc.uniform_filter1d(x, 3, axis=0, mode="wrap")
        np.testing.assert_array_equal(
            sc.uniform_filter(x, (3, *size), mode=("wrap", *mode)),
            sc.uniform_filter(first, size, mode=mode, axes=(1, 2)),
        )
        assert_matches(
            sc.uniform_filter(x, (3, *size), mode=("wrap", *mode)),
            ndi.uniform_filter(x, (3, *size), mode=("wrap", *mode)),
        )
        y = x.astype(np.float64)
        np.testing.assert_array_equal(
            sc.uniform_filter(y, size, axes=(1, 2), mode=mode),
            sc.uniform_filter1d(
                sc.uniform_filter1d(y, size[0], axis=1, mode=mode[0]), size[1], axis=2, mode=mode[1]
            ),
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_uniform_filter_streamed_output_has_the_same_bits(rng, dtype, monkeypatch):
    """Outputs larger than the caches are written past them (``_streaming``; float input,
    whose means are products, not uint8's quotients): the same values, whatever the
    output's alignment (rows of odd widths start anywhere within a cache line; an ``out``
    offset by one byte is not even aligned to its samples)."""
    from napari_sepconv import _streaming

    x = (rng.random((5, 40, 517)) * 200).astype(dtype)
    calls = {
        "fused": lambda a, **kw: sc.uniform_filter(a, (7, 31), axes=(1, 2), **kw),
        # rows of 64-byte multiples lie alike against cache lines: four at a time in the bulk
        "fused, aligned rows": lambda a, **kw: sc.uniform_filter(a[..., :64], (5, 3), axes=(1, 2), **kw),
        "last axis": lambda a, **kw: sc.uniform_filter1d(a, 130, axis=-1, mode="wrap", **kw),
        "one row": lambda a, **kw: sc.uniform_filter1d(a[0, :1], 5, axis=-1, **kw),
        # several tasks along each row: neighbouring tasks write parts of one cache line
        "long rows": lambda a, **kw: sc.uniform_filter1d(a.reshape(-1)[: 3 * 9001].reshape(3, 9001), 5, **kw),
    }
    for name, call in calls.items():
        expected = call(x)
        raw = np.empty(expected.nbytes + 1, np.uint8)
        unaligned = raw[1:].view(expected.dtype).reshape(expected.shape)
        monkeypatch.setattr(_streaming, "STREAM_BYTES", 0)
        np.testing.assert_array_equal(call(x), expected, err_msg=name)
        call(x, output=unaligned)
        np.testing.assert_array_equal(unaligned, expected, err_msg=name)
        raw = np.empty(expected.nbytes + 64 + expected.itemsize, np.uint8)
        skip = (-raw.ctypes.data) % 64 + expected.itemsize  # a sample past a cache line
        shifted = raw[skip : skip + expected.nbytes].view(expected.dtype).reshape(expected.shape)
        call(x, output=shifted)
        np.testing.assert_array_equal(shifted, expected, err_msg=name)
        monkeypatch.setattr(_streaming, "STREAM_BYTES", 8 << 20)


_OUTPUT_CALLS = {
    "uniform_filter": lambda a, **kw: sc.uniform_filter(a, 31, **kw),
    "uniform_filter constant": lambda a, **kw: sc.uniform_filter(a, (4, 9), mode="constant", cval=2.0, **kw),
    "uniform_filter1d axis 0": lambda a, **kw: sc.uniform_filter1d(a, 7, axis=0, **kw),
    "uniform_filter1d axis 1": lambda a, **kw: sc.uniform_filter1d(a, 7, axis=1, mode="wrap", **kw),
    "gaussian_filter": lambda a, **kw: sc.gaussian_filter(a, 1.5, **kw),
    "gaussian_filter1d": lambda a, **kw: sc.gaussian_filter1d(a, 2.0, axis=0, order=1, **kw),
    "correlate1d axis 0": lambda a, **kw: sc.correlate1d(a, [1.0, -2.0, 0.5], axis=0, **kw),
    "correlate1d axis 1": lambda a, **kw: sc.correlate1d(a, [1.0, 3.0], axis=1, mode="mirror", **kw),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(_OUTPUT_CALLS))
def test_output_array_gets_the_bits_of_a_new_result(rng, dtype, name):
    """An ``output`` array of the result's type (which the kernels fill directly when it
    is C-contiguous and apart from the input) holds the bits of a new result and is
    what comes back; so do a strided ``output``, the input itself as ``output``, and
    images whose running sums meet NaN (the fused uniform pass then falls back)."""
    call = _OUTPUT_CALLS[name]
    x = rng.standard_normal((70, 300)).astype(dtype)
    x[5, 17] = np.nan
    for image in (x, x[::-1].copy(), x[:, 1:], x[:40, :90]):
        expected = call(image)
        out = np.full(image.shape, -1.0, dtype)
        assert call(image, output=out) is out
        np.testing.assert_array_equal(out, expected)
        strided = np.full((image.shape[0], 2 * image.shape[1]), -1.0, dtype)[:, ::2]
        np.testing.assert_array_equal(call(image, output=strided), expected)
        same = image.copy()  # filtered in place
        np.testing.assert_array_equal(call(same, output=same), expected)


# --------------------------------------------------------------------------
# scikit-image style
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int16, np.float16, np.float32, np.float64, np.bool_]
)
def test_gaussian_like_skimage(rng, dtype):
    x = _image(rng, (11, 9), dtype)
    for kw in (
        dict(),
        dict(sigma=2.5, mode="reflect"),
        dict(sigma=(1, 3), mode="constant", cval=0.2),
        dict(preserve_range=True),
        dict(truncate=2.0),
    ):
        assert_matches(sc.gaussian(x, **kw), skf.gaussian(x, **kw))


@pytest.mark.parametrize("channel_axis", [None, 0, 1, -1])
def test_gaussian_with_nothing_to_smooth_converts_like_skimage(rng, channel_axis):
    for dtype in (np.uint8, np.float32, np.float64):
        x = _image(rng, (5, 6, 3), dtype)
        for sigma in (0, 1e-16):
            expected = skf.gaussian(x, sigma=sigma, channel_axis=channel_axis)
            ours = sc.gaussian(x, sigma=sigma, channel_axis=channel_axis)
            assert ours.dtype == expected.dtype
            np.testing.assert_array_equal(ours, expected)


def test_gaussian_channels_and_out(rng):
    x = _image(rng, (8, 3, 9), np.float32)
    assert_matches(sc.gaussian(x, 1.5, channel_axis=1), skf.gaussian(x, 1.5, channel_axis=1))
    assert_matches(sc.gaussian(x, (1.0, 2.0), channel_axis=1), skf.gaussian(x, (1.0, 2.0), channel_axis=1))
    out = np.empty(x.shape, np.float64)
    assert sc.gaussian(x, 1.0, out=out) is out
    assert_matches(out, skf.gaussian(x, 1.0, out=np.empty(x.shape, np.float64)))
    with pytest.raises(ValueError, match="out"):
        sc.gaussian(x, 1.0, out=np.empty(x.shape, np.int32))
    with pytest.raises(ValueError, match="less than zero"):
        sc.gaussian(x, -1.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_gaussian_out_written_in_place_of_a_copy_gives_the_same_bits(rng, dtype, monkeypatch):
    """``out=`` of the result's type is written by the kernels themselves where its layout
    allows; every layout, and ``out`` that is the image itself, give the plain call's bits."""
    from napari_sepconv import _cpu

    x = _image(rng, (31, 40), dtype)
    copies = []
    monkeypatch.setattr(_cpu, "copy_into", lambda out, result: copies.append(1) or np.copyto(out, result))
    expected = sc.gaussian(x, 2.0, preserve_range=True, out=np.empty(x.shape, np.float32))
    assert not copies  # written by the kernel, no copy
    if dtype == np.float32:
        np.testing.assert_array_equal(expected, sc.gaussian(x, 2.0))
    for out in (
        np.full(x.shape, np.nan, np.float32),
        np.full(x.shape[::-1], np.nan, np.float32).T,  # not C-contiguous: copied into
        np.full((31, 80), np.nan, np.float32)[:, ::2],
    ):
        assert sc.gaussian(x, 2.0, preserve_range=True, out=out) is out
        np.testing.assert_array_equal(out, expected)
    if dtype == np.float32:
        y = x.copy()
        assert sc.gaussian(y, 2.0, out=y) is y  # the input itself as out
        np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_difference_of_gaussians_like_skimage(rng, dtype):
    x = _image(rng, (12, 10), dtype)
    for args, kw in (
        ((1,), {}),
        ((1, 3), dict(mode="reflect")),
        (((1, 2), (2, 4)), {}),
        ((0.5,), dict(mode="constant", cval=0.3, truncate=2.0)),
    ):
        assert_matches(
            sc.difference_of_gaussians(x, *args, **kw), skf.difference_of_gaussians(x, *args, **kw)
        )
    c = _image(rng, (6, 7, 3), dtype)
    assert_matches(
        sc.difference_of_gaussians(c, 1, channel_axis=-1), skf.difference_of_gaussians(c, 1, channel_axis=-1)
    )
    with pytest.raises(ValueError, match="high_sigma"):
        sc.difference_of_gaussians(x, 2, 1)
    with pytest.raises(ValueError, match="low_sigma"):
        sc.difference_of_gaussians(x, (1, 2, 3))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_unsharp_mask_like_skimage(rng, dtype):
    x = _image(rng, (10, 11), dtype)
    if dtype == np.float64:
        x = x / np.abs(x).max()
    for kw in (
        dict(),
        dict(radius=2.0, amount=3.0),
        dict(radius=(1, 0), amount=-0.5),
        dict(radius=1.5, preserve_range=True),
    ):
        assert_matches(sc.unsharp_mask(x, **kw), skf.unsharp_mask(x, **kw))
    # scikit-image 0.26 mishandles a negative channel_axis here, so its reference uses 2
    c = _image(rng, (7, 8, 3), dtype)
    assert_matches(sc.unsharp_mask(c, 2.0, channel_axis=-1), skf.unsharp_mask(c, 2.0, channel_axis=2))


def test_laplace_like_skimage(rng):
    for shape in ((9, 10), (5, 6, 7), (12,)):
        x = _image(rng, shape, np.float32)
        assert_matches(sc.laplace(x), skf.laplace(x))
    u = _image(rng, (9, 10), np.uint8)
    assert_matches(sc.laplace(u), skf.laplace(u))
    mask = rng.random((9, 10)) > 0.2
    assert_matches(sc.laplace(u, mask=mask), skf.laplace(u, mask=mask))


# --------------------------------------------------------------------------
# errors, dask, backends
# --------------------------------------------------------------------------


def test_bad_arguments_name_the_argument(rng):
    x = _image(rng, (5, 6), np.float64)
    with pytest.raises(ValueError, match="sigma"):
        sc.gaussian_filter(x, (1, 2, 3))
    with pytest.raises(RuntimeError):  # scipy's exception type for this, too
        sc.gaussian_filter(x, (1, 2, 3))
    with pytest.raises(ValueError, match="mode"):
        sc.gaussian_filter(x, 1, mode="bogus")
    with pytest.raises(ValueError, match="radius"):
        sc.gaussian_filter1d(x, 1, radius=-1)
    with pytest.raises(ValueError, match="order"):
        sc.gaussian_filter1d(x, 1, order=-1)
    with pytest.raises(ValueError, match="size"):
        sc.uniform_filter1d(x, 0)
    with pytest.raises(ValueError, match="origin"):
        sc.uniform_filter1d(x, 3, origin=2)
    with pytest.raises(ValueError, match="axes"):
        sc.uniform_filter(x, axes=(0, 0))
    with pytest.raises(TypeError, match="image"):
        sc.gaussian(x + 1j)
    with pytest.raises(TypeError, match="output"):
        sc.uniform_filter(x + 1j, output=np.empty(x.shape))
    with pytest.raises(ValueError, match="output"):
        sc.gaussian_filter(x, 1, output=np.empty((2, 2)))


CHUNKS = [(2, 3), (5, 4), (1, 7), (9, 11)]


@pytest.mark.parametrize("mode", MODES)
def test_dask_is_lazy_and_exact_at_any_chunking(rng, mode):
    da = pytest.importorskip("dask.array")
    x = _image(rng, (9, 11), np.float32)
    calls = [
        lambda a: sc.gaussian_filter(a, (1.0, 2.0), mode=mode, order=(0, 1)),
        lambda a: sc.gaussian_filter(a, 1.0, mode=mode, output=np.int32),
        lambda a: sc.uniform_filter(a, (3, 8), mode=mode),
        lambda a: sc.uniform_filter1d(a, 4, axis=0, mode=mode, origin=1),
        lambda a: sc.gaussian_gradient_magnitude(a, 1.0, mode=mode),
        lambda a: sc.gaussian_laplace(a, 1.0, mode=[mode, "reflect"]),
        lambda a: sc.ndimage_laplace(a, mode=mode),
        lambda a: sc.gaussian(a, 1.5, mode=mode),
        lambda a: sc.difference_of_gaussians(a, 1.0, mode=mode),
        lambda a: sc.unsharp_mask(a, 1.0),
        lambda a: sc.laplace(a),
    ]
    for call in calls:
        expected = call(x)
        for chunks in CHUNKS:
            lazy = call(da.from_array(x, chunks=chunks))
            assert isinstance(lazy, da.Array)
            got = lazy.compute()
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", MODES)
def test_dask_uniform_bit_identical_at_any_chunking(rng, mode):
    """Odd chunks, chunks smaller than the window, boundaries at and next to anchors."""
    da = pytest.importorskip("dask.array")
    from napari_sepconv._uniform import spacing

    k = spacing(31)
    x = (rng.standard_normal((2 * k + 45, 3 * k + 7)) * 50).astype(np.float32)
    x[7, k + 3] = np.nan
    chunkings = [(k, k), (k - 1, k + 1), (k + 1, 2 * k - 1), (37, 53), (5, 300), (x.shape[0], 11)]
    calls = [
        lambda a: sc.uniform_filter(a, 31, mode=mode, cval=0.5),
        lambda a: sc.uniform_filter(a, (3, 130), mode=mode),
        lambda a: sc.uniform_filter1d(a, 64, axis=0, mode=mode, origin=-5),
        lambda a: sc.uniform_filter1d(a, 5, axis=1, mode=mode, origin=2),
        lambda a: sc.uniform_filter(a, 4, mode=mode, output=np.float64),
        lambda a: sc.uniform_filter(a, 9, mode=mode, output=np.int16),
    ]
    for call in calls:
        expected = call(x)
        for chunks in chunkings:
            lazy = call(da.from_array(x, chunks=chunks))
            assert lazy.chunks == da.from_array(x, chunks=chunks).chunks  # the caller's chunks kept
            got = lazy.compute()
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected, err_msg=f"chunks {chunks}")
    ints = (rng.integers(0, 255, (3 * k + 1, 40))).astype(np.uint8)
    for chunks in [(k - 1, 13), (50, 40)]:
        np.testing.assert_array_equal(
            sc.uniform_filter(da.from_array(ints, chunks=chunks), 7, mode=mode).compute(),
            sc.uniform_filter(ints, 7, mode=mode),
        )


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, napari_sepconv; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _on_cuda(test):
    from numba import cuda

    usable = SIMULATOR or (not SIMULATOR and cuda.is_available())
    return pytest.mark.cudasim(
        pytest.mark.skipif(not usable, reason="runs CUDA kernels: NUMBA_ENABLE_CUDASIM=1 pytest -m cudasim")(
            test
        )
    )


@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
@_on_cuda
def test_cuda_uniform_bit_identical_over_several_segments(rng, mode):
    """One CUDA thread per segment: the CPU's bits, NaN and inf included."""
    from napari_sepconv._uniform import spacing

    k = spacing(9)
    x = (rng.standard_normal((2 * k + 5, 23)) * 10).astype(np.float32)
    x[k + 1, 4] = np.nan
    x[3, 7] = np.inf
    u = rng.integers(0, 255, x.shape).astype(np.uint8)
    for call in (
        lambda a, b: sc.uniform_filter(a, 9, mode=mode, cval=0.5, backend=b),
        lambda a, b: sc.uniform_filter1d(a, 9, axis=0, mode=mode, backend=b),
        lambda a, b: sc.uniform_filter(a, (9, 4), mode=mode, output=np.float64, backend=b),
    ):
        for image in (x, u):
            np.testing.assert_array_equal(call(image, "cuda"), call(image, "cpu"))


@_on_cuda
def test_cuda_nothing_to_filter_is_numpys_cast(rng):
    """sigma 0, size 1, no axes or a 0-d array on the GPU: NumPy's cast, as on the CPU
    (exact 64-bit integers, a fraction True as a bool), a device array out."""
    from numba import cuda

    big = np.array([2**63 - 1, 2**53 + 1, -(2**63)], np.int64)
    fractions = np.array([0.5, np.nan, 256.0, -0.2, 0.0])
    for x, output in [(big, None), (fractions, bool), (np.array(2.5), np.int16)]:
        for name, args, kw in [
            ("gaussian_filter", (0.0,), {}),
            ("uniform_filter", (1,), {}),
            ("gaussian_laplace", (1.0,), {"axes": ()}),
        ]:
            got = getattr(sc, name)(cuda.to_device(x), *args, output=output, **kw)
            assert hasattr(got, "copy_to_host")
            expected = getattr(ndi, name)(x, *args, output=output, **kw)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got.copy_to_host(), expected)


@_on_cuda
def test_cuda_matches_cpu(rng):
    from numba import cuda

    x = _image(rng, (6, 7), np.float32)
    u = _image(rng, (6, 7), np.uint8)
    calls = [
        lambda a, b: sc.gaussian_filter(a, (1.0, 0.8), mode="wrap", backend=b),
        lambda a, b: sc.uniform_filter(a, (3, 4), mode="mirror", backend=b),
        lambda a, b: sc.uniform_filter1d(a, 5, axis=0, mode="constant", cval=1.0, backend=b),
        lambda a, b: sc.gaussian_gradient_magnitude(a, 0.8, backend=b),
        lambda a, b: sc.gaussian(a, 1.0, backend=b),
        lambda a, b: sc.unsharp_mask(a, 1.0, backend=b),
        lambda a, b: sc.difference_of_gaussians(a, 0.7, backend=b),
    ]
    for image in (x, u):
        for call in calls:
            cpu = call(image, "cpu")
            gpu = call(image, "cuda")
            assert isinstance(gpu, np.ndarray) and gpu.dtype == cpu.dtype
            if cpu.dtype.kind == "f":
                np.testing.assert_allclose(gpu, cpu, rtol=2e-5, atol=2e-5)
            else:
                np.testing.assert_array_equal(gpu, cpu)
    # a device array in gives a device array out, the uniform filter bit for bit
    device = cuda.to_device(x)
    out = sc.uniform_filter(device, 3)
    assert hasattr(out, "copy_to_host")
    np.testing.assert_array_equal(out.copy_to_host(), sc.uniform_filter(x, 3))
    # unsharp masking clips on the device, with the range found there
    signed = x - 0.5
    for image in (x, signed):
        got = sc.unsharp_mask(cuda.to_device(image), 1.0).copy_to_host()
        np.testing.assert_allclose(got, sc.unsharp_mask(image, 1.0), rtol=2e-5, atol=2e-5)
    got = sc.gaussian_laplace(cuda.to_device(x), 1.0).copy_to_host()
    np.testing.assert_allclose(got, sc.gaussian_laplace(x, 1.0), rtol=2e-5, atol=2e-5)
