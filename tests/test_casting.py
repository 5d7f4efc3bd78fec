"""Output casts of correlate1d/convolve1d: the same values as scipy.ndimage, overflow included."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import napari_sepconv as sc
from napari_sepconv._cast_kernels import CHUNK, to_float, to_integer
from napari_sepconv._casting import cast_output

INPUT_TYPES = [
    "bool",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float16",
    "float32",
    "float64",
]
# scipy.ndimage has no float16 output.
OUTPUT_TYPES = [
    "bool",
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float32",
    "float64",
    None,
]
MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]
MANTISSA = 2**20


def _scipy_view(result):
    """SciPy stores a bool output as the low byte of the integer; compare truth values."""
    return result.view(np.uint8) != 0 if result.dtype == np.bool_ else result


@st.composite
def filter_cases(draw, in_type):
    """An input, weights and cval whose sums are exact in float64 (the casts are under test).

    Every value is a small integer times one power of two, so products with weights up to
    +-3000 (in halves) and their sums need fewer than 53 bits, whatever the order of the sum,
    while reaching far beyond every integer type's range.
    """
    dtype = np.dtype(in_type)
    size = draw(st.integers(1, 12))
    if dtype.kind == "b":
        values = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size)), dtype)
        scale = 1.0
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        shift = draw(st.integers(0, max(0, info.bits - 21)))
        low = max(-MANTISSA, -((-int(info.min)) >> shift))
        high = min(MANTISSA, int(info.max) >> shift)
        mantissas = draw(st.lists(st.integers(low, high), min_size=size, max_size=size))
        values = (np.array(mantissas, np.int64).astype(dtype)) << dtype.type(shift)
        scale = 2.0**shift
    else:
        bits, exponents = (10, (-14, 5)) if dtype.itemsize == 2 else (20, (-20, 40))
        exponent = draw(st.integers(*exponents))
        scale = 2.0**exponent
        elements = st.one_of(
            st.integers(-(2**bits), 2**bits).map(lambda m: m * scale),
            st.sampled_from([np.nan, np.inf, -np.inf]),
        )
        values = np.array(draw(st.lists(elements, min_size=size, max_size=size)), dtype)
    halves = st.integers(-6000, 6000).map(lambda n: n / 2)
    weights = np.array(draw(st.lists(halves, min_size=1, max_size=7)))
    cval = draw(st.integers(-1000, 1000)) * scale
    mode = draw(st.sampled_from(MODES))
    origin = draw(st.integers(-(len(weights) // 2), (len(weights) - 1) // 2))
    return values, weights, mode, cval, origin


def _compare(ours, expected, out_type):
    if np.dtype(expected.dtype).kind == "f":
        # Float outputs of float32 input are computed in float32, not scipy's float64.
        scale = np.nanmax(np.abs(np.where(np.isfinite(expected), expected, 0)), initial=1.0)
        tolerance = 64 * np.finfo(expected.dtype).eps * scale
        np.testing.assert_allclose(ours, expected, rtol=0, atol=tolerance, equal_nan=True)
    else:
        np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("out_type", OUTPUT_TYPES, ids=str)
@pytest.mark.parametrize("in_type", INPUT_TYPES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_correlate1d_and_convolve1d_cast_like_scipy(in_type, out_type, data):
    if out_type is None and in_type == "float16":
        pytest.skip("scipy.ndimage has no float16 output")
    values, weights, mode, cval, origin = data.draw(filter_cases(in_type))
    convolve = data.draw(st.booleans())
    # SciPy has no float16 input; float16 converts exactly to float32.
    scipy_input = values.astype(np.float32) if values.dtype == np.float16 else values
    ours_function, scipy_function = (
        (sc.convolve1d, ndi.convolve1d) if convolve else (sc.correlate1d, ndi.correlate1d)
    )
    options = {"mode": mode, "cval": cval, "origin": origin}
    out_type = None if out_type is None else np.dtype(out_type).type  # scipy takes no 'bool' string
    with np.errstate(all="ignore"):
        expected = _scipy_view(scipy_function(scipy_input, weights, output=out_type, **options))
        ours = ours_function(values, weights, output=out_type, **options)
        assert ours.dtype == (values.dtype if out_type is None else np.dtype(out_type))
        _compare(ours, expected, out_type)
        if out_type is not None:  # an array to fill, of the other byte order and reversed
            filled = np.zeros(values.shape, np.dtype(out_type).newbyteorder("S"))[::-1]
            assert ours_function(values, weights, output=filled, **options) is filled
            _compare(filled, expected, out_type)


VALUES = [
    0.7,
    -0.7,
    1.5,
    -1.5,
    255.9,
    256,
    257,
    -1,
    -129,
    300.2,
    2**31 - 1,
    2**31,
    -(2**31) - 5,
    2**32 + 7,
    -(2**32) - 7,
    2**40 + 3,
    2**53,
    2**63,
    2**63 + 2**11,
    -(2**63),
    -(2**63) - 2**11,
    2**64,
    2**64 + 2**12,
    1e30,
    -1e30,
    np.inf,
    -np.inf,
    np.nan,
]


@pytest.mark.parametrize("out_type", [t for t in OUTPUT_TYPES if t])
def test_cast_output_of_out_of_range_values(out_type):
    """Every range edge of the conversions, as scipy's own identity filter casts them."""
    values = np.array([float(v) for v in VALUES] * 3)  # long enough for vectorised loops
    expected = _scipy_view(ndi.correlate1d(values, [1.0], output=np.dtype(out_type).type))
    with np.errstate(all="ignore"):
        ours = cast_output(values, np.dtype(out_type), None)
        by_kernel = cast_output(values, np.dtype(out_type), None, integer_kernel=to_integer)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(by_kernel, expected)
    assert by_kernel.dtype == np.dtype(out_type)


@pytest.mark.parametrize("result_type", ["float32", "float64"])
@pytest.mark.parametrize("out_type", [t for t in OUTPUT_TYPES if t])
def test_cast_kernel_gives_the_numpy_conversions(out_type, result_type):
    """The parallel kernel against the NumPy steps, over several of its tasks, into new
    arrays, into a contiguous output and into a reversed one of the other byte order."""
    rng = np.random.default_rng()
    n = 2 * CHUNK + 78
    magnitudes = 10.0 ** rng.integers(0, 22, n)
    values = rng.standard_normal(n) * magnitudes
    values[rng.integers(0, n, 64)] = rng.choice([float(v) for v in VALUES], 64)
    with np.errstate(all="ignore"):
        values = values.astype(result_type).reshape(2, -1)
        expected = cast_output(values, np.dtype(out_type), None)
        assert expected.shape == values.shape
        new = cast_output(values, np.dtype(out_type), None, integer_kernel=to_integer)
        filled = np.full(values.shape, 1, out_type)
        same = cast_output(values, np.dtype(out_type), filled, integer_kernel=to_integer)
        swapped = np.zeros(values.shape, np.dtype(out_type).newbyteorder("S"))[:, ::-1]
        other = cast_output(values, np.dtype(out_type), swapped, integer_kernel=to_integer)
    assert new.dtype == np.dtype(out_type) and same is filled and other is swapped
    for ours in (new, filled, swapped):
        np.testing.assert_array_equal(ours, expected)


def test_wrapping_outputs_of_four_or_more_elements():
    image = np.full(6, 2**31 + 3, np.uint32)
    np.testing.assert_array_equal(sc.correlate1d(image, [1, 1]), ndi.correlate1d(image, [1, 1]))
    sums_of_256 = np.array([128, 128, 0, 3, 200, 56], np.uint8)
    expected = _scipy_view(ndi.correlate1d(sums_of_256, [1, 1], output=bool))
    np.testing.assert_array_equal(sc.correlate1d(sums_of_256, [1, 1], output=bool), expected)


def test_read_only_output_is_refused():
    output = np.zeros(5, np.uint8)
    output.flags.writeable = False
    with pytest.raises(ValueError, match="output"):
        sc.correlate1d(np.arange(5), [1, 2], output=output)
    with pytest.raises(ValueError, match="output"):
        cast_output(np.zeros(5), np.dtype(np.uint8), output)


@pytest.mark.parametrize(
    "src_type, out_type",
    [(np.uint16, np.float32), (np.int16, np.float64), (np.float32, np.float64), (np.float64, np.float32)],
)
def test_float_conversion_kernel_rounds_as_numpy(src_type, out_type):
    """``to_float`` (a kernel's input converted in parallel) gives ``astype``'s values, bit for
    bit: over several tasks, integers, and floats that round, overflow or are not finite."""
    rng = np.random.default_rng(4)
    n = 2 * CHUNK + 77
    if np.dtype(src_type).kind in "iu":
        values = (np.arange(n) - n // 2).astype(src_type)  # every int16, many uint16
    else:
        values = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 40, n)).astype(src_type)
        special = [np.nan, np.inf, -np.inf, -0.0, 1e-310, 3.4028236e38, -1e39, 1 + 2**-30]
        values[: len(special)] = np.array(special).astype(src_type)
    out = np.empty(n, out_type)
    with np.errstate(over="ignore"):
        to_float(values, out)
        expected = values.astype(out_type)
    assert np.array_equal(out.view(np.uint8), expected.view(np.uint8))


def test_large_images_are_converted_for_the_kernels_in_parallel(monkeypatch):
    """Above ``PARALLEL_CONVERSION`` samples the kernels' input is converted by ``to_float``;
    the values are those of the image converted by NumPy."""
    from napari_sepconv import _cast_kernels, _cpu

    calls = []
    original = _cast_kernels.to_float
    monkeypatch.setattr(_cast_kernels, "to_float", lambda *a: calls.append(a) or original(*a))
    monkeypatch.setattr(_cpu, "PARALLEL_CONVERSION", 100)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 30, 41))
    chan = rng.standard_normal((30, 41, 3)).astype(np.float32)
    for got, expected in (
        (sc.sobel(x, dtype=np.float32), sc.sobel(x.astype(np.float32))),
        (
            sc.farid(x[0].astype(np.float32), dtype=np.float64),
            sc.farid(x[0].astype(np.float32).astype(np.float64)),
        ),
        (
            sc.depthwise_filter(chan, np.ones((3, 3, 3)), dtype=np.float64),
            sc.depthwise_filter(chan.astype(np.float64), np.ones((3, 3, 3))),
        ),
    ):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    assert len(calls) == 3  # each call converted its image once (a 3-D magnitude too)
