"""Concurrent calls from Python threads, as napari's worker threads make them."""

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import napari_sepconv as sc
from reference import assert_close, edge


def test_concurrent_calls_give_correct_results(rng):
    images = [rng.random((96, 80)).astype(np.float32) for _ in range(8)]
    expected = [edge("sobel", im) for im in images]
    sc.sobel(images[0])  # compile once up front; the threads then race on the kernels

    def work(i):
        return sc.sobel(images[i % 8]), sc.filter2d(images[i % 8], np.ones((5, 5)) / 25)

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(24)))
    for i, (edges, _) in enumerate(results):
        assert_close(edges, expected[i % 8], np.float32)


@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_every_threading_layer_survives_concurrent_calls(layer):
    """The workqueue layer aborts on concurrent parallel calls unless they are serialised."""
    code = textwrap.dedent(f"""
        import os, numba
        numba.config.THREADING_LAYER = {layer!r}
        from concurrent.futures import ThreadPoolExecutor
        import numpy as np
        import napari_sepconv as sc
        image = np.random.default_rng(0).random((256, 256)).astype(np.float32)
        ref = sc.sobel(image)
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda _: sc.sobel(image), range(32)))
        assert all(np.array_equal(o, ref) for o in outs)
        # an integer output large enough for the parallel cast kernel
        counts = np.random.default_rng(1).integers(0, 256, (640, 640), dtype=np.uint8)
        ref = sc.correlate1d(counts, [1.0, 2.0, 1.0])
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda _: sc.correlate1d(counts, [1.0, 2.0, 1.0]), range(32)))
        assert all(np.array_equal(o, ref) for o in outs)
        print("layer", numba.threading_layer())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if layer == "omp" and "No threading layer could be loaded" in proc.stderr:
        pytest.skip("OpenMP threading layer not available here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"layer {layer}" in proc.stdout


def test_a_kernels_threads_take_every_task_once_from_one_queue():
    """However the threads interleave, each task runs once, and each worker first takes its
    own contiguous share in order (``_task_queue``, ``_next_task``)."""
    import numba
    from numba import prange

    from napari_sepconv._cpu_kernels import _next_task, _task_queue

    @numba.njit(parallel=True, cache=False)
    def run_queue(n_tasks, runs, order):
        queue = _task_queue(n_tasks)
        for worker in prange(queue.size):
            task = _next_task(queue, worker, n_tasks)
            taken = 0
            while task < n_tasks:
                total = 0.0  # a little work, so that the threads overlap
                for k in range(2000):
                    total += np.sqrt(k + task)
                runs[task] += 1 if total > 0 else 2
                order[worker, taken] = task
                taken += 1
                task = _next_task(queue, worker, n_tasks)
        return queue.size

    for n_tasks in (0, 1, 2, 3, 257):
        runs = np.zeros(n_tasks, np.int64)
        order = np.full((numba.get_num_threads(), n_tasks), -1, np.int64)
        workers = run_queue(n_tasks, runs, order)
        assert workers == min(numba.get_num_threads(), n_tasks)
        assert (runs == 1).all()
        for worker in range(workers):
            start, end = worker * n_tasks // workers, (worker + 1) * n_tasks // workers
            taken = order[worker][order[worker] >= 0]
            if taken.size:  # its own share first, in order (another may have begun it)
                own = taken[(taken >= start) & (taken < end)]
                assert (np.diff(own) > 0).all()
                assert (taken[: own.size] == own).all()


def test_a_worker_held_up_leaves_its_share_to_the_others():
    """Worker 0 takes one task and stops, as a thread that another process holds up
    would: the other workers run the rest of its share."""
    import numba
    from numba import prange

    from napari_sepconv._cpu_kernels import _next_task, _task_queue

    @numba.njit(parallel=True, cache=False)
    def run_queue(n_tasks, runs):
        queue = _task_queue(n_tasks)
        for worker in prange(queue.size):
            task = _next_task(queue, worker, n_tasks)
            while task < n_tasks:
                runs[task] += 1
                if worker == 0:
                    break
                task = _next_task(queue, worker, n_tasks)
        return queue.size

    runs = np.zeros(64, np.int64)
    if run_queue(64, runs) < 2:
        pytest.skip("one thread")
    assert (runs == 1).all()


def test_a_task_queue_is_a_writable_int64_array():
    import numba

    from napari_sepconv._cpu_kernels import _claim

    @numba.njit(cache=False)
    def claim(queue, index):
        return _claim(queue, index)

    queue = np.array([5, 9], np.int64)
    assert claim(queue, 0) == 5 and claim(queue, 0) == 6 and claim(queue, 1) == 9
    assert list(queue) == [7, 10]
    (compiled,) = claim.overloads.values()
    assert "atomicrmw add" in compiled.library.get_llvm_str()  # one step, not a load and a store
    read_only = np.zeros(2, np.int64)
    read_only.flags.writeable = False
    for wrong in (np.zeros(1, np.int32), read_only, np.zeros(4, np.int64)[::2]):
        with pytest.raises(numba.TypingError):
            claim(wrong, 0)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_process_forked_during_a_call_can_filter():
    """A thread of the parent may hold the call lock (serialised layers, a first call) or
    the helper lock when another forks, as a multiprocessing pool does: the child gets
    locks of its own and its calls run instead of waiting forever."""
    import os
    import signal

    from napari_sepconv import _cpu, _helper_calls

    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    expected = sc.sobel(image)  # compiled or loaded here: the child compiles nothing
    with _cpu._layer_lock, _helper_calls._lock:  # held while the process forks
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a child that hangs is killed: the test fails, it does not hang
            ok = False
            try:
                _cpu._serialise = True  # every call takes the lock, as on the workqueue layer
                ok = np.array_equal(sc.sobel(image), expected) and _helper_calls._lock.acquire(timeout=5)
            finally:
                os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
