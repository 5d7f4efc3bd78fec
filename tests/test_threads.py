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
