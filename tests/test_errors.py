"""Bad input gets a clear ValueError/TypeError naming the argument; nothing is modified."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import filters as skf

import napari_sepconv as sc

IMAGE = np.random.default_rng(0).random((8, 9))
READ_ONLY = np.zeros((8, 9))
READ_ONLY.flags.writeable = False
RGB = np.random.default_rng(1).random((8, 9, 3))

CASES = [
    # (call, exception, words the message must contain)
    (lambda: sc.sobel(IMAGE, mode="bogus"), ValueError, "mode"),
    (lambda: sc.sobel([[1.0, 2.0], [3.0]]), ValueError, "image"),
    (lambda: sc.filter2d(IMAGE, [[1.0, 2.0], [3.0]]), ValueError, "kernel"),
    (lambda: sc.filter2d(IMAGE, np.ones((3, 3)), tol="small"), TypeError, "tol"),
    (lambda: sc.separable_filter(IMAGE, [[1.0, 2.0], [[1.0], [2.0, 3.0]]]), ValueError, "kernels[1]"),
    (lambda: sc.depthwise_filter(RGB, [[[1.0, 2.0]], [[1.0]], [[1.0]]]), ValueError, "kernels"),
    (lambda: sc.correlate1d(IMAGE, [1, 2], output=np.zeros((8, 9))[:, :0]), ValueError, "output"),
    (lambda: sc.correlate1d(IMAGE, [1, 2], output=READ_ONLY), ValueError, "output"),
    (lambda: sc.convolve1d(IMAGE, [1, 2], output=READ_ONLY), ValueError, "output"),
    (lambda: sc.sobel(IMAGE, mode=3), TypeError, "mode"),
    (lambda: sc.sobel(IMAGE, mode=("reflect",)), ValueError, "mode"),
    (lambda: sc.sobel(IMAGE.astype(complex)), TypeError, "image"),
    (lambda: sc.sobel(np.array([["a", "b"]])), TypeError, "image"),
    (lambda: sc.sobel(np.array([None, 1], dtype=object)), TypeError, "image"),
    (lambda: sc.sobel(IMAGE, axis=2), ValueError, "axis"),
    (lambda: sc.sobel(IMAGE, axis=1.5), TypeError, "axis"),
    (lambda: sc.sobel(IMAGE, axis=(0, 0)), ValueError, "axis"),
    (lambda: sc.sobel(RGB, axis=2, channel_axis=2), ValueError, "channel axis"),
    (lambda: sc.sobel(IMAGE, mask=np.ones((3, 3))), ValueError, "mask"),
    (lambda: sc.sobel(IMAGE, cval="x"), TypeError, "cval"),
    (lambda: sc.sobel(IMAGE, cval=1j), TypeError, "cval"),
    (lambda: sc.sobel(IMAGE, dtype=np.int32), ValueError, "dtype"),
    (lambda: sc.sobel(IMAGE, dtype="nonsense"), TypeError, "dtype"),
    (lambda: sc.sobel(IMAGE, channel_axis=5), ValueError, "channel_axis"),
    (lambda: sc.sobel(IMAGE, backend="tpu"), ValueError, "backend"),
    (lambda: sc.sobel_h(np.ones((3, 4, 5))), ValueError, "image"),
    (lambda: sc.correlate1d(IMAGE, []), ValueError, "weights"),
    (lambda: sc.correlate1d(IMAGE, [[1, 2]]), ValueError, "weights"),
    (lambda: sc.correlate1d(IMAGE, []), RuntimeError, "weights"),  # scipy's class too
    (lambda: sc.correlate1d(IMAGE, None), RuntimeError, "weights"),
    (lambda: sc.correlate1d(IMAGE, [1, np.nan]), ValueError, "weights"),
    (lambda: sc.correlate1d(IMAGE, [1, 1j], mode="constant", cval=1j), ValueError, "cval"),
    (lambda: sc.laplace(IMAGE, ksize=2), ValueError, "ksize"),
    (lambda: sc.correlate1d(IMAGE + 0j, [1, np.nan]), ValueError, "weights"),
    (lambda: sc.correlate1d(IMAGE, [1, 2, 3], origin=2), ValueError, "origin"),
    (lambda: sc.correlate1d(IMAGE, [1, 2, 3], axis=2), ValueError, "axis"),
    (lambda: sc.correlate1d(IMAGE, [1, 2, 3], output=np.complex128), TypeError, "output"),
    (lambda: sc.convolve1d(IMAGE, [1, 2], origin="a"), TypeError, "origin"),
    (lambda: sc.convolve1d(IMAGE, [1, 2, 3, 4], origin=2), ValueError, r"origin=2 is out of range"),
    (lambda: sc.separable_filter(IMAGE, []), ValueError, "kernels"),
    (lambda: sc.separable_filter(IMAGE, [np.ones(3)] * 3), ValueError, "kernels"),
    (lambda: sc.separable_filter(IMAGE, np.ones(3)), ValueError, "kernels"),
    (lambda: sc.separable_filter(IMAGE, [np.ones((3, 3))]), ValueError, "kernels[0]"),
    (lambda: sc.separable_filter(IMAGE, [np.ones(3), []]), ValueError, "kernels[1]"),
    (lambda: sc.separable_filter(IMAGE, [np.ones(3)], axes=(0, 1)), ValueError, "axes"),
    (lambda: sc.separable_filter(IMAGE, [np.ones(3)] * 2, axes=(1, 1)), ValueError, "axes"),
    (lambda: sc.separable_filter(RGB, [np.ones(3)], axes=2, channel_axis=2), ValueError, "channel axis"),
    (lambda: sc.filter2d(IMAGE, np.ones((3, 3, 3))), ValueError, "kernel"),
    (lambda: sc.filter2d(IMAGE, np.ones(3)), ValueError, "kernel"),
    (lambda: sc.filter2d(IMAGE, np.ones((0, 3))), ValueError, "kernel"),
    (lambda: sc.filter2d(IMAGE, [[1, np.inf]]), ValueError, "kernel"),
    (lambda: sc.filter2d(IMAGE, np.ones((3, 3)), rank=4), ValueError, "rank"),
    (lambda: sc.filter2d(np.ones(5), np.ones((3, 3))), ValueError, "spatial"),
    (lambda: sc.filter2d(IMAGE, np.ones((3, 3)), mode=("reflect",) * 3), ValueError, "mode"),
    (lambda: sc.depthwise_filter(RGB, np.ones((4, 3, 3))), ValueError, "4 kernel"),
    (lambda: sc.depthwise_filter(RGB, np.ones((3, 3))), ValueError, "kernels"),
    (lambda: sc.depthwise_filter(RGB, np.ones((3, 1, 1, 3, 3))), ValueError, "kernels"),
    (lambda: sc.depthwise_filter(RGB, np.full((3, 3, 3), np.nan)), ValueError, "kernels"),
    (lambda: sc.pointwise_filter(RGB, np.ones((2, 4))), ValueError, "weights"),
    (lambda: sc.pointwise_filter(RGB, np.ones(3)), ValueError, "weights"),
    (lambda: sc.pointwise_filter(RGB, np.ones((2, 3)), bias=np.ones(3)), ValueError, "bias"),
    (
        lambda: sc.depthwise_separable_filter(RGB, np.ones((3, 2, 3, 3)), np.ones((4, 3))),
        ValueError,
        "weights",
    ),
    (lambda: sc.depthwise_separable_filter(RGB, np.ones((2, 3, 3)), np.ones((4, 3))), ValueError, "kernels"),
    (lambda: sc.gaussian(IMAGE, 1.0, out=READ_ONLY), ValueError, "out is a read-only"),
    (lambda: sc.gaussian_filter(IMAGE, 1.0, output=READ_ONLY), ValueError, "output is a read-only"),
    (lambda: sc.gaussian(IMAGE, np.array(True)), TypeError, "sigma"),
    (lambda: sc.gaussian(IMAGE, 1.0, mode="constant", cval=np.array(1j)), TypeError, "cval"),
    (lambda: sc.unsharp_mask(IMAGE, amount=np.array("2")), TypeError, "amount"),
    (lambda: sc.gaussian_filter(IMAGE, 1.0, truncate=np.inf), ValueError, "truncate"),
    (lambda: sc.gaussian(IMAGE, 1.0, truncate=np.nan), ValueError, "truncate"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_bad_input_raises_naming_the_argument(case):
    call, exc, words = CASES[case]
    with pytest.raises(exc) as info:
        call()
    assert words in str(info.value)


@pytest.mark.parametrize(
    "call, peer",
    [
        (lambda: sc.sobel(IMAGE, axis=2), lambda: skf.sobel(IMAGE, axis=2)),
        (lambda: sc.correlate1d(IMAGE, [1, 2], axis=3), lambda: np.sum(IMAGE, axis=3)),
        (
            lambda: sc.gaussian_filter(IMAGE, 1.0, mode="foo"),
            lambda: ndi.gaussian_filter(IMAGE, 1.0, mode="foo"),
        ),
        (lambda: sc.uniform_filter(IMAGE, mode=None), lambda: ndi.uniform_filter(IMAGE, mode=None)),
        (
            lambda: sc.gaussian_filter(IMAGE, 1.0, output=np.zeros((8, 8))),
            lambda: ndi.gaussian_filter(IMAGE, 1.0, output=np.zeros((8, 8))),
        ),
        (
            lambda: sc.correlate1d(IMAGE, [1.0, 2.0], output=np.zeros((8, 8))),
            lambda: ndi.correlate1d(IMAGE, [1.0, 2.0], output=np.zeros((8, 8))),
        ),
        (
            lambda: sc.uniform_filter(IMAGE, 3, output=np.zeros((8, 8))),
            lambda: ndi.uniform_filter(IMAGE, 3, output=np.zeros((8, 8))),
        ),
        (
            lambda: sc.gaussian(IMAGE, 1.0, out=np.zeros((8, 8))),
            lambda: skf.gaussian(IMAGE, sigma=1.0, out=np.zeros((8, 8))),
        ),
        (
            lambda: sc.gaussian_filter(IMAGE, 1.0, mode=["reflect"] * 3),
            lambda: ndi.gaussian_filter(IMAGE, 1.0, mode=["reflect"] * 3),
        ),
    ],
)
def test_errors_are_also_the_types_the_peers_raise(call, peer):
    """An axis out of range is also an IndexError (NumPy, scikit-image); a bad border mode
    also a RuntimeError (scipy.ndimage): code written for the peers catches ours."""
    with pytest.raises(Exception) as theirs:
        peer()
    with pytest.raises((ValueError, TypeError)) as ours:
        call()
    assert isinstance(ours.value, type(theirs.value)), (type(ours.value), type(theirs.value))


def test_cuda_backend_error_says_why(monkeypatch):
    from napari_sepconv import _backend

    monkeypatch.setattr(
        _backend,
        "cuda_unavailable_reason",
        lambda raise_error=False: _raise_or("no CUDA driver", raise_error),
    )
    with pytest.raises(sc.BackendUnavailableError, match="no CUDA driver") as info:
        sc.sobel(IMAGE, backend="cuda")
    assert isinstance(info.value, RuntimeError)
    assert sc.available_backends() == ("cpu",)
    # 'auto' never fails for that reason
    monkeypatch.setenv("SEPCONV_BACKEND", "cuda")
    assert sc.sobel(IMAGE).shape == IMAGE.shape
    with pytest.raises(sc.BackendUnavailableError):
        sc.set_backend("cuda")


def _raise_or(reason, raise_error):
    if raise_error:
        raise sc.BackendUnavailableError(reason)
    return reason


def test_set_backend_validates_and_restores(monkeypatch):
    monkeypatch.delenv("SEPCONV_BACKEND", raising=False)
    with pytest.raises(ValueError, match="backend"):
        sc.set_backend("gpu")
    sc.set_backend("cpu")
    assert sc.get_backend() == "cpu"
    sc.set_backend("auto")
    assert sc.get_backend() == "cpu"
    assert "cpu" in sc.available_backends()


def test_failed_call_leaves_input_and_output_untouched():
    image = IMAGE.copy()
    out = np.full(image.shape, 7.0)
    with pytest.raises(ValueError):
        sc.correlate1d(image, [1, 2, 3], output=out, mode="nope")
    np.testing.assert_array_equal(out, 7.0)
    np.testing.assert_array_equal(image, IMAGE)


def test_numbers_computed_with_numpy_are_numbers():
    """A 0-d array (what NumPy arithmetic on arrays gives) is taken as the number it holds,
    as scipy.ndimage and scikit-image take it: sigma, truncate, cval, radius and amount. A
    float32 one as the float32 scalar (whose type scipy's kernel arithmetic keeps)."""
    zero_d = np.array
    calls = [
        (lambda v: sc.gaussian(IMAGE, v), 1.5),
        (lambda v: sc.gaussian(IMAGE, 1.0, truncate=v), 2.0),
        (lambda v: sc.gaussian(IMAGE, 1.0, mode="constant", cval=v), 0.25),
        (lambda v: sc.gaussian_filter(IMAGE, [v, 2.0]), 1.5),
        (lambda v: sc.gaussian_filter1d(IMAGE, v, truncate=v), 2.0),
        (lambda v: sc.unsharp_mask(IMAGE, radius=v, amount=v), 2.0),
        (lambda v: sc.difference_of_gaussians(IMAGE, v), 1.0),
        (lambda v: sc.sobel(IMAGE, mode="constant", cval=v), 2.0),
        (lambda v: sc.correlate1d(IMAGE, [1.0, 2.0, 3.0], mode="constant", cval=v), -1.0),
    ]
    for call, value in calls:
        np.testing.assert_array_equal(call(zero_d(value)), call(value))
        np.testing.assert_array_equal(call(zero_d(value, np.float32)), call(np.float32(value)))
