"""Kernels call their task's helper by address (``_helper_calls``): a kernel that finds no
address for its helper runs no task, and the engine loads the helper and calls it again."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import napari_sepconv as sc

pytest.importorskip("numba")


def _calls(rng):
    image = rng.random((37, 45)).astype(np.float32)
    volume = rng.random((5, 19, 23))
    channels = rng.random((21, 18, 3)).astype(np.float32)
    rank_two = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0]) + np.outer([0.5, 1.0, 0.5], [1.0, 1.0, 1.0])
    full = rng.standard_normal((5, 5))
    depthwise = rng.standard_normal((3, 3, 3))
    return {
        "sobel": lambda: sc.sobel(image),
        "correlate1d last axis": lambda: sc.correlate1d(image, [1.0, 2.0, 3.0], axis=-1),
        "correlate1d axis 0": lambda: sc.correlate1d(volume, [1.0, 2.0, 3.0, 4.0], axis=0),
        "gaussian": lambda: sc.gaussian(image, 2.0),
        "gaussian uint8": lambda: sc.gaussian((image * 255).astype(np.uint8), 1.5, preserve_range=True),
        "filter2d rank two": lambda: sc.filter2d(image, rank_two, mode="constant", cval=0.5),
        "filter2d direct": lambda: sc.filter2d(image, full),
        "depthwise 3x3": lambda: sc.depthwise_filter(channels, depthwise),
        "depthwise 7x7": lambda: sc.depthwise_filter(channels, np.ones((3, 7, 7))),
        "depthwise separable": lambda: sc.depthwise_separable_filter(
            channels, np.ones((3, 3, 3)), np.eye(3)[:2]
        ),
        "uniform last two axes": lambda: sc.uniform_filter(image, 5, mode="constant", cval=0.5),
        "uniform last axis": lambda: sc.uniform_filter1d(volume, 4, axis=-1),
        "uniform middle axis": lambda: sc.uniform_filter1d(volume, 3, axis=1, mode="wrap"),
    }


@pytest.mark.parametrize("name", list(_calls(np.random.default_rng(0))))
def test_a_kernel_without_its_helpers_address_loads_it_and_gives_the_same_bits(name, monkeypatch):
    from napari_sepconv import _helper_calls

    call = _calls(np.random.default_rng(1))[name]
    expected = call()
    assert _helper_calls.table().shape[0] > 0  # the helpers of that call are loaded
    monkeypatch.setattr(_helper_calls, "_table", np.zeros((0, 2), np.int64))
    again = call()  # runs no task, loads the helper, runs again
    np.testing.assert_array_equal(again, expected)
    assert _helper_calls.table().shape[0] > 0


def test_a_key_nothing_records_is_a_clear_error(monkeypatch, tmp_path):
    from napari_sepconv import _helper_calls

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="delete the cache folder"):
        _helper_calls.resolve(12345)


def test_keys_are_the_same_in_every_process_and_differ_by_types():
    from numba.core import types

    from napari_sepconv import _helper_calls
    from napari_sepconv._line_kernels import _correlate_lines_block

    f32 = (types.Array(types.float32, 2, "C"), types.int64)
    f64 = (types.Array(types.float64, 2, "C"), types.int64)
    key = _helper_calls._key(_correlate_lines_block, f32)
    assert key > 0 and key != _helper_calls._key(_correlate_lines_block, f64)
    code = textwrap.dedent("""
        from numba.core import types
        from napari_sepconv import _helper_calls
        from napari_sepconv._line_kernels import _correlate_lines_block
        f32 = (types.Array(types.float32, 2, "C"), types.int64)
        print(_helper_calls._key(_correlate_lines_block, f32))
    """)
    env = dict(os.environ, PYTHONHASHSEED="123")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == key


def test_a_new_process_finds_the_helpers_of_cached_kernels(tmp_path):
    """The first process compiles the kernel and its helper (recording the helper's types
    beside the cache); the second loads both from the cache and gets the same bits."""
    code = textwrap.dedent("""
        import numpy as np, napari_sepconv as sc
        from napari_sepconv import _helper_calls
        x = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
        y = sc.correlate1d(x, [1.0, -2.0, 0.5], axis=-1)
        z = sc.uniform_filter(x, 3)
        g = sc.gaussian_filter(x, 1.0)  # its task helper calls the passes by address
        d = sc.depthwise_filter(np.stack([x, x], -1), np.ones((2, 3, 3)))  # likewise
        print(*(a.tobytes().hex()[:64] for a in (y, z, g, d)), _helper_calls.table().shape[0])
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    command = [sys.executable, "-c", code]
    runs = [subprocess.run(command, capture_output=True, text=True, env=env) for _ in "ab"]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    assert runs[0].stdout == runs[1].stdout
    assert list(tmp_path.glob("napari-sepconv/*/helpers/*.pickle"))


def test_a_helper_still_missing_after_loading_is_an_error_not_a_loop(monkeypatch):
    from napari_sepconv import _helper_calls

    image = np.ones((20, 30), np.float32)
    sc.correlate1d(image, [1.0, 2.0], axis=-1)
    monkeypatch.setattr(_helper_calls, "_table", np.zeros((0, 2), np.int64))
    monkeypatch.setattr(_helper_calls, "resolve", lambda key: None)  # loads nothing
    with pytest.raises(RuntimeError, match="did not find its helper"):
        sc.correlate1d(image, [1.0, 2.0], axis=-1)


@pytest.mark.parametrize("shape", [(30, 41), (3, 23, 17)])
def test_a_kernel_adding_to_its_output_adds_once_while_its_helpers_load(shape, monkeypatch):
    """The fused kernel's workers and its task helper are called by address, and the task
    helper calls the passes by address, all looked up before it writes: a run that finds
    one missing leaves an output it adds to as it was."""
    from napari_sepconv import _cpu, _helper_calls
    from napari_sepconv._boundary import CONSTANT, REFLECT
    from napari_sepconv._cpu_kernels import SUM

    rng = np.random.default_rng(3)
    src = rng.random(shape).astype(np.float32)
    before = rng.random(shape).astype(np.float32)
    cols = ((np.arange(-4, 5), rng.random(9)), (np.array([-1, 2]), rng.random(2)))
    rows = ((np.arange(-3, 4), rng.random(7)), (np.array([0, 3]), rng.random(2)))
    args = (src, cols, rows, REFLECT, CONSTANT, 0.5, (0.25, 0.75), SUM, 1.0, True)
    expected = before.copy()
    _cpu.separable_2d(*args, expected)  # the helpers compiled and loaded
    monkeypatch.setattr(_helper_calls, "_table", np.zeros((0, 2), np.int64))
    resolved = []
    resolve = _helper_calls.resolve
    monkeypatch.setattr(_helper_calls, "resolve", lambda key: (resolved.append(key), resolve(key)))
    again = before.copy()
    _cpu.separable_2d(*args, again)
    assert len(resolved) == 5  # the workers, the task helper, then each of the passes it calls
    np.testing.assert_array_equal(again, expected)


def test_a_helper_calling_one_it_did_not_look_up_is_an_error():
    from napari_sepconv import _cpu

    def call(kernel, args, taps, takes_threads):
        args[-1][0] = -1  # what a call site marked ``looked_up`` writes when its key is missing

    with pytest.raises(RuntimeError, match="not looked up first"):
        _cpu._call_loading_helpers(call, "kernel", (), 1, False)
