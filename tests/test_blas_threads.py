"""BLAS on one thread while a call alternates it with the kernels' threads
(``_blas_threads``): set for the length of the call, restored after it (after an error
too, and by calls in two threads at once), and the filter's values unchanged."""

import sys
import threading

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

import napari_sepconv as sc  # noqa: E402
from napari_sepconv import _blas_threads, _cpu  # noqa: E402


def _blas_threads_now():
    return sorted(
        {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}
    )


@pytest.fixture
def two_blas_threads():
    """Skip where the BLAS libraries do not run on several threads to begin with."""
    threads = _blas_threads_now()
    if not threads or min(threads) < 2:
        pytest.skip("the BLAS library runs on one thread here")
    return threads


@pytest.fixture
def record_blas_threads(monkeypatch):
    """``start()``: from then on, the BLAS thread counts each of the filter's matrix
    products runs under are appended, in order, to the list it returns."""

    def start():
        seen = []
        pointwise = _cpu.pointwise

        def recording(*args):
            seen.append(_blas_threads_now())
            pointwise(*args)

        monkeypatch.setattr(_cpu, "pointwise", recording)
        return seen

    return start


def test_the_filter_multiplies_on_one_thread_and_restores_the_limit(
    two_blas_threads, record_blas_threads, rng
):
    image = rng.random((300, 200, 3))
    dw = rng.standard_normal((3, 2, 3, 3))
    pw = rng.standard_normal((5, 6))
    expected = sc.depthwise_separable_filter(image, dw, pw)  # before the patch: the same bits
    seen = record_blas_threads()
    result = sc.depthwise_separable_filter(image, dw, pw)
    assert seen and all(threads == [1] for threads in seen)
    assert _blas_threads_now() == two_blas_threads
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_allclose(
        result, sc.pointwise_filter(sc.depthwise_filter(image, dw), pw), rtol=1e-12, atol=1e-12
    )


def test_a_small_call_leaves_the_limit_alone(two_blas_threads, record_blas_threads, rng):
    seen = record_blas_threads()
    sc.depthwise_separable_filter(rng.random((16, 16, 3)), rng.standard_normal((3, 3, 3)), np.ones((2, 3)))
    assert seen == [two_blas_threads]  # its kernel runs on the calling thread: no pools to part


def test_calls_in_two_threads_leave_the_limit_as_they_found_it(two_blas_threads, rng):
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    a = rng.random((200, 6))
    products = {}

    def first():
        with _blas_threads.one_blas_thread():
            first_in.set()
            second_in.wait(10)
            products["first"] = a @ a.T
        first_out.set()

    def second():
        first_in.wait(10)
        with _blas_threads.one_blas_thread():
            second_in.set()
            first_out.wait(10)  # the first call ends while this one runs
            products["second"] = a @ a.T

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert _blas_threads_now() == two_blas_threads
    np.testing.assert_array_equal(products["first"], a @ a.T)
    np.testing.assert_array_equal(products["second"], a @ a.T)


def test_an_error_in_the_body_restores_the_limit(two_blas_threads):
    with pytest.raises(RuntimeError, match="inside"):
        with _blas_threads.one_blas_thread():
            assert _blas_threads_now() == [1]
            raise RuntimeError("inside")
    assert _blas_threads_now() == two_blas_threads


def test_without_threadpoolctl_nothing_is_limited(two_blas_threads, monkeypatch):
    monkeypatch.setattr(_blas_threads, "_controller", None)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import fails
    with _blas_threads.one_blas_thread():
        monkeypatch.undo()
        assert _blas_threads_now() == two_blas_threads
    assert _blas_threads_now() == two_blas_threads
