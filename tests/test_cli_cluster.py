"""Cluster runs never hang: workers that keep dying, or a cluster left without workers."""

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import napari_sepconv as sc
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
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
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


def _worker_processes(pid):
    """The processes a command's local cluster spawned (its workers), found through /proc."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append((int(entry.name), command))
    found, todo = [], [pid]
    while todo:
        for child, command in children.get(todo.pop(), []):
            todo.append(child)
            if b"spawn_main" in command:
                found.append(child)
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_killing_workers_again_and_again_never_hangs(tmp_path):
    import numpy as np
    import tifffile

    from test_cli import COMMAND

    rng = np.random.default_rng(0)
    stack = rng.random((16, 256, 256), dtype=np.float32)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    out = tmp_path / "out"
    process = subprocess.Popen(
        COMMAND + ["sobel", str(tmp_path / "s.tif"), "-o", str(out), "--workers", "2", "--chunk-mb", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.iterdir())) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    kills = 0
    while process.poll() is None and kills < 6:
        for pid in _worker_processes(process.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                kills += 1
        time.sleep(1.5)
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("sepconv hung after its workers were killed")
    assert "Traceback" not in stderr, stderr
    if process.returncode == 0:
        np.testing.assert_array_equal(
            tifffile.imread(out / "s.tif"), np.stack([sc.sobel(plane) for plane in stack])
        )
    else:
        assert process.returncode == 1 and "sepconv: error:" in stderr, stderr
        assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
