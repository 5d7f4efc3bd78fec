"""The pool of intermediate arrays (``_scratch``) and the multi-pass filters that use it."""

import threading

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sepconv as sc
from napari_sepconv import _scratch


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    """An empty pool that takes blocks of any size (small ones are plain arrays otherwise)."""
    monkeypatch.setattr(_scratch, "MIN_BYTES", 0)
    _scratch.release()
    yield
    _scratch.release()


def test_small_intermediates_are_plain_arrays(monkeypatch):
    monkeypatch.setattr(_scratch, "MIN_BYTES", 1000)
    with _scratch.scratch_arrays() as new:
        small, large = new((10,), np.float64), new((200,), np.float64)
    assert small.base is None and large.base is not None
    assert [b.size for b in _scratch._free] == [1600]


def test_the_pool_keeps_at_most_pool_blocks(monkeypatch):
    monkeypatch.setattr(_scratch, "POOL_BLOCKS", 3)
    with _scratch.scratch_arrays() as new:
        for n in range(10, 16):
            new((n,), np.float64)
    assert [b.size for b in _scratch._free] == [104, 112, 120]
    assert _scratch._free_bytes == 336


def test_arrays_of_one_call_never_share_memory_and_come_back_for_the_next():
    with _scratch.scratch_arrays() as new:
        a = new((40, 50), np.float64)
        b = new((40, 50), np.float64)
        c = new((7,), np.float32)
        assert new((0, 5), np.float64).shape == (0, 5)  # nothing to hold
        assert a.shape == (40, 50) and a.dtype == np.float64 and a.flags.c_contiguous
        assert c.shape == (7,) and c.dtype == np.float32
        assert not np.shares_memory(a, b) and not np.shares_memory(a, c) and not np.shares_memory(b, c)
        first = {a.__array_interface__["data"][0], b.__array_interface__["data"][0]}
    with _scratch.scratch_arrays() as new:  # the same sizes: the same blocks again
        again = {new((40, 50), np.float64).__array_interface__["data"][0] for _ in range(2)}
    assert again == first


def test_a_block_is_taken_only_up_to_twice_the_size_asked_for():
    with _scratch.scratch_arrays() as new:
        big = new((1000,), np.float64)
    with _scratch.scratch_arrays() as new:
        small = new((10,), np.float64)  # 80 bytes: the 8000-byte block is not spent on it
        half = new((600,), np.float64)  # 4800 bytes: it is
    assert not np.shares_memory(small, big) and np.shares_memory(half, big)


def test_the_pool_keeps_at_most_pool_bytes(monkeypatch):
    monkeypatch.setattr(_scratch, "POOL_BYTES", 10_000)
    with _scratch.scratch_arrays() as new:
        new((2000,), np.float64)  # 16,000 bytes: never kept
        new((500,), np.float64)
        new((600,), np.float64)  # 4,000 + 4,800 bytes: both kept
    assert sorted(b.size for b in _scratch._free) == [4000, 4800]
    with _scratch.scratch_arrays() as new:
        new((700,), np.float64)
    assert sum(b.size for b in _scratch._free) <= 10_000


def test_arrays_go_back_when_the_call_fails():
    with pytest.raises(RuntimeError, match="kernel failed"):
        with _scratch.scratch_arrays() as new:
            new((30,), np.float64)
            raise RuntimeError("kernel failed")
    assert [b.size for b in _scratch._free] == [240]


@pytest.mark.parametrize("shape", [(33, 47), (6, 20, 30), (3, 4, 10, 12)])
def test_passes_through_reused_intermediates_give_the_same_values_call_after_call(rng, shape):
    """One 1-D pass per axis (float64 Gaussians), two and more intermediates, repeated
    calls of one shape and of others in between: always scipy's values."""
    x = rng.standard_normal(shape)
    expected = ndi.gaussian_filter(x, 1.5, mode="wrap")
    for _ in range(3):
        np.testing.assert_array_equal(sc.gaussian_filter(x, 1.5, mode="wrap"), expected)
        sc.gaussian_filter(rng.standard_normal((9, 11)), 1.0)  # another size in between
    result = sc.gaussian_filter(x, 1.5, mode="wrap")
    sc.gaussian_filter(x * 2, 1.5, mode="wrap")  # a later call does not touch an earlier result
    np.testing.assert_array_equal(result, expected)


def test_threads_filtering_at_once_each_get_their_own_values(rng):
    images = [rng.standard_normal((64, 80)) for _ in range(4)]
    expected = [ndi.gaussian_filter(im, 2.0) for im in images]
    failures = []

    def work(i):
        for _ in range(25):
            if not np.array_equal(sc.gaussian_filter(images[i], 2.0), expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_filter_passes_through_reused_intermediates(rng, dtype):
    """uniform_filter's passes before the last two (3-D, 4-D) go to the pool: scipy's values
    call after call, from several threads at once, and no result lies in a pooled block."""
    volume = rng.standard_normal((5, 6, 20, 24)).astype(dtype)
    expected = {axes: sc.uniform_filter(volume, 3, axes=axes) for axes in ((1, 2, 3), (0, 1, 2, 3))}
    for axes, values in expected.items():
        np.testing.assert_allclose(values, ndi.uniform_filter(volume, 3, axes=axes), rtol=1e-5, atol=1e-6)
    failures = []
    results = []

    def work():
        for _ in range(10):
            for axes, values in expected.items():
                result = sc.uniform_filter(volume, 3, axes=axes)
                results.append(result)
                if not np.array_equal(result, values):
                    failures.append(axes)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert _scratch._free  # the intermediates came from the pool and went back to it
    assert not any(np.shares_memory(r, b) for r in results for b in _scratch._free)


def test_no_result_lies_in_a_pooled_block(rng):
    x = rng.standard_normal((4, 30, 40))
    results = [sc.gaussian_filter(x, 1.0), sc.sobel(x)]
    results += [sc.separable_filter(x, [np.ones(3)] * 3, axes=(0, 1, 2))]
    results += [sc.gaussian_filter(x[0], 1.0), sc.gaussian_filter(x, 1.0, axes=(0, 2))]
    assert _scratch._free
    assert not any(np.shares_memory(r, b) for r in results for b in _scratch._free)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_an_empty_pool_and_a_free_lock():
    import os

    with _scratch.scratch_arrays() as new:
        new((100,), np.float64)
    assert _scratch._free
    with _scratch._lock:  # held while the process forks
        pid = os.fork()
        if pid == 0:  # the child: a lock of its own, no blocks
            ok = not _scratch._free and _scratch._lock.acquire(timeout=5)
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _scratch._free  # the parent's pool is left as it was
