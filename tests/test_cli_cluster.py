"""Cluster runs never hang: workers that keep dying, or a cluster left without workers."""

import os
import time

import pytest

from napari_sepconv import _batch

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


def _die():
    os._exit(1)


def _sleep(seconds):
    time.sleep(seconds)
    return 0


def test_piece_whose_workers_keep_dying_fails_with_a_message():
    runner = _batch.local_cluster(1, dashboard=False)
    try:
        tasks = [dask.delayed(_die, pure=False)(dask_key_name="sepconv-store-die-0")]
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="each of them died"):
            runner.run("sepconv-store-die", tasks, lambda n: None)
        assert time.monotonic() - start < 120
    finally:
        runner.close()


def test_cluster_without_workers_is_given_up():
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    runner = _batch.ClusterRunner(client, cluster, no_workers_seconds=3)
    try:
        tasks = [dask.delayed(_sleep, pure=False)(60, dask_key_name="sepconv-store-slow-0")]
        futures_started = time.monotonic()

        def stop_workers():
            time.sleep(1)
            cluster.scale(0)

        import threading

        threading.Thread(target=stop_workers, daemon=True).start()
        with pytest.raises(RuntimeError, match="no worker"):
            runner.run("sepconv-store-slow", tasks, lambda n: None)
        assert time.monotonic() - futures_started < 40
    finally:
        runner.close()
