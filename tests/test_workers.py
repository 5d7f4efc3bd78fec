"""Kernels start their workers on Numba's threading layer without a parallel loop
(``_workers``): each worker runs once, on threads of its own, one on the calling thread,
and a kernel loaded from the cache by a new process runs on several threads."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from napari_sepconv import _helper_calls  # noqa: E402
from napari_sepconv._workers import worker_helper, worker_launch  # noqa: E402

# ``_mark`` calls ``numba.get_thread_id``, whose symbol exists once the threading layer has
# started: Numba starts it when the call is typed, not when a process loads ``_mark`` from
# the cache. Started here, as the CPU engine starts it before its first call
# (``_cpu._thread_count_controls``), so that this file also runs alone with a warm cache.
numba.get_num_threads()


def _mark(worker, state):
    """Count the run of ``worker`` and note the thread it ran on."""
    runs, threads = state
    runs[worker] += 1
    threads[worker] = numba.get_thread_id()


_mark = worker_helper(_mark)
_launch_marks = worker_launch(_mark)


@numba.njit(nogil=True)
def _kernel(n_workers, runs, threads, helpers, missing):
    _launch_marks(helpers, missing, np.zeros(n_workers, np.int64), (runs, threads))


def _run(n_workers):
    """``_kernel`` as the engine calls it: again once its worker is loaded."""
    runs = np.zeros(max(n_workers, 1), np.int64)
    threads = np.full(max(n_workers, 1), -1, np.int64)
    missing = np.zeros(1, np.int64)
    _kernel(n_workers, runs, threads, _helper_calls.table(), missing)
    if missing[0]:
        assert not runs.any()  # no worker ran without its address
        _helper_calls.resolve(int(missing[0]))
        missing[0] = 0
        _kernel(n_workers, runs, threads, _helper_calls.table(), missing)
    assert missing[0] == 0
    return runs[:n_workers], threads[:n_workers]


@pytest.mark.parametrize("n_workers", [0, 1, 2, 3, 8])
def test_every_worker_runs_once(n_workers):
    runs, threads = _run(n_workers)
    np.testing.assert_array_equal(runs, np.ones(n_workers))
    assert (threads >= 0).all()


def test_one_worker_runs_on_the_calling_thread_and_two_on_two_threads():
    _, threads = _run(1)
    assert threads[0] == numba.get_thread_id()
    if numba.get_num_threads() < 2 or numba.threading_layer() != "omp":
        pytest.skip("two threads of the OpenMP layer (which hands out its indices in order) needed")
    _, threads = _run(2)
    assert sorted(threads) == [0, 1]


def test_workers_keep_to_the_threads_set_for_the_calling_thread():
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        runs, threads = _run(4)  # more workers than threads: one thread runs them all
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(runs, np.ones(4))
    assert set(threads) == {numba.get_thread_id()}


def _divide(worker, state):
    """Count the run of ``worker``, through an integer division by ``zero``."""
    runs, zero = state
    runs[worker] += 1 + 10 // zero


_divide = worker_helper(_divide)
_launch_divisions = worker_launch(_divide)


@numba.njit(nogil=True)
def _dividing_kernel(n_workers, runs, zero, helpers, missing):
    _launch_divisions(helpers, missing, np.zeros(n_workers, np.int64), (runs, zero))


@pytest.mark.parametrize("n_workers", [1, 2])
def test_a_worker_divides_as_a_parallel_loop_did(n_workers):
    """Workers follow NumPy's error model, as the body of a ``prange`` loop: an integer
    division by zero gives 0. (An exception would stop the worker unreported.)"""
    runs = np.zeros(n_workers, np.int64)
    missing = np.zeros(1, np.int64)
    _dividing_kernel(n_workers, runs, 0, _helper_calls.table(), missing)
    if missing[0]:
        _helper_calls.resolve(int(missing[0]))
        missing[0] = 0
        _dividing_kernel(n_workers, runs, 0, _helper_calls.table(), missing)
    np.testing.assert_array_equal(runs, np.ones(n_workers))


def _add(worker, state):
    runs, step, scale = state
    runs[worker] += int(step * scale)


_add = worker_helper(_add)
_launch_additions = worker_launch(_add)


@numba.njit(nogil=True)
def _constant_state_kernel(n_workers, runs, helpers, missing):
    _launch_additions(helpers, missing, np.zeros(n_workers, np.int64), (runs, 3, 2.0))


@pytest.mark.parametrize("n_workers", [1, 2])
def test_a_state_of_constants_reaches_every_worker(n_workers):
    """Constants in the state (typed as literals where the kernel builds it) reach the
    workers as the values they were compiled for."""
    runs = np.zeros(n_workers, np.int64)
    missing = np.zeros(1, np.int64)
    _constant_state_kernel(n_workers, runs, _helper_calls.table(), missing)
    if missing[0]:
        _helper_calls.resolve(int(missing[0]))
        missing[0] = 0
        _constant_state_kernel(n_workers, runs, _helper_calls.table(), missing)
    np.testing.assert_array_equal(runs, np.full(n_workers, 6))


def test_a_new_process_runs_cached_kernels_on_several_threads(tmp_path):
    """A kernel loaded from the cache starts the threading layer before its code is linked
    (``_cpu_kernels._start_threading_layer``): a large call in a second process, on two
    threads, gives the bits of the first, which compiled it."""
    code = textwrap.dedent("""
        import numpy as np, napari_sepconv as sc
        x = np.random.default_rng(5).random((1024, 1024), dtype=np.float32)
        calls = (
            sc.gaussian_filter(x, 2.0),
            sc.correlate1d(x, np.linspace(1, 2, 9), axis=0),
            sc.correlate1d(x, np.linspace(1, 2, 9), axis=-1),
            sc.sobel(x),
            sc.filter2d(x, np.arange(25.0).reshape(5, 5)),
            sc.uniform_filter(x, 7),
            sc.depthwise_filter(x.reshape(512, 512, 4), np.ones((4, 3, 3))),
        )
        print(*(a.tobytes().hex()[::4096] for a in calls))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_NUM_THREADS="2")
    command = [sys.executable, "-c", code]
    runs = [subprocess.run(command, capture_output=True, text=True, env=env) for _ in "ab"]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    assert runs[0].stdout == runs[1].stdout
