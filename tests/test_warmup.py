"""The warm-up command and the versioned kernel cache (``napari_sepconv.warmup``)."""

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import napari_sepconv as sc
from napari_sepconv import warmup

EDGES = "edges 3x3 (sobel, scharr, prewitt)"


def _python(code, env=None, user=None, python=None):
    argv = [python or sys.executable, "-c", textwrap.dedent(code)]
    if user is not None:
        argv = ["/usr/sbin/runuser", "-u", user, "--"] + argv
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )


def _python_for_nobody():
    """An interpreter and environment with which the user ``nobody`` imports this package.

    This environment's own Python where nobody may run it; else the system's Python of the
    same version reading this environment's packages (a virtual environment made from an
    interpreter in root's home cannot be run by other users).
    """
    if os.geteuid() != 0 or not Path("/usr/sbin/runuser").exists():
        return None
    import site

    path = os.pathsep.join(site.getsitepackages() + [str(Path(sc.__file__).parents[1])])
    system = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    for python, env in [(sys.executable, {}), (system, {"PYTHONPATH": path})]:
        if not os.path.exists(python):
            continue
        proc = _python("import numba, napari_sepconv", env=env, user="nobody", python=python)
        if proc.returncode == 0:
            return python, env
    return None


@pytest.fixture
def shared_tmp():
    """A temporary folder that other users can reach (pytest's own are private to their owner)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sepconv-shared-"))
    os.chmod(folder, 0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def nobody_python():
    found = _python_for_nobody()
    if found is None:
        pytest.skip("needs root, runuser and a Python that the user nobody can run")
    return found


def test_importing_warmup_imports_no_numba():
    proc = _python("""
        import sys
        from napari_sepconv import warmup
        warmup.cache_dir(), warmup.is_warm()
        print('numba' in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False"]


def test_cache_dir_is_keyed_by_version_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    here = Path(warmup.cache_dir())
    assert here.parent == tmp_path / "napari-sepconv"
    assert here.name.startswith(f"{sc.__version__}-")
    monkeypatch.setattr(sc, "__version__", "0.0.0.other")
    assert Path(warmup.cache_dir()) != here
    assert Path(warmup.cache_dir()).name.startswith("0.0.0.other-")


def test_cache_dir_without_numba_cache_dir_is_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert str(tmp_path) in warmup.cache_dir()
    assert "napari-sepconv" in warmup.cache_dir()


def test_list_and_where(capsys):
    assert warmup.main(["--list"]) == 0
    assert capsys.readouterr().out.splitlines() == list(warmup.FAMILIES)
    assert warmup.main(["--where"]) == 0
    assert capsys.readouterr().out.strip() == warmup.cache_dir()


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="unknown families"):
        warmup.warm(["no such family"])


@pytest.mark.parametrize(
    "argv, words", [(["--family", "bogus"], "unknown --family bogus"), (["-j", "0"], "--jobs")]
)
def test_bad_command_line_is_a_usage_error_before_anything_starts(capsys, argv, words):
    """Before: ``--family bogus`` announced a compile, then ended in a traceback; ``-j 0``
    was taken as the number of CPUs."""
    with pytest.raises(SystemExit) as exit:
        warmup.main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Compiling" not in err


def test_kernels_cache_into_the_versioned_folder():
    """A family warmed in one process is loaded, not compiled, by the next one."""
    sc.sobel(np.ones((16, 16), np.float32))
    folder = Path(warmup.cache_dir())
    assert any(folder.glob("_edge_kernels._edge_magnitude_3x3-*.nbi"))
    proc = _python("""
        import json, numpy as np, napari_sepconv as sc
        from napari_sepconv import _edge_kernels as k
        sc.sobel(np.ones((16, 16), np.float32))
        stats = k.edge_magnitude_3x3.dispatcher.stats
        print(json.dumps([sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
    """)
    assert proc.returncode == 0, proc.stderr
    hits, misses = json.loads(proc.stdout.splitlines()[-1])
    assert hits >= 1 and misses == 0


def test_a_cached_kernel_loads_without_refreshing_numba(tmp_path):
    """A kernel loaded from the cache in a fresh process is rebuilt without Numba first
    importing every implementation it has, its array reductions, its ufuncs or its array
    module, or reading every package's entry points (most of a first call's time); its
    values are those of a compiled one, and compiling afterwards still works."""
    rng = np.random.default_rng(3)
    image, kernel = rng.random((40, 50), dtype=np.float32), rng.standard_normal((5, 5))
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "kernel.npy", kernel)
    channels = rng.random((20, 30, 4), dtype=np.float32)
    np.save(tmp_path / "channels.npy", channels)
    depthwise = sc.depthwise_filter(channels, np.ones((4, 3, 3)))
    expected = [sc.sobel(image), sc.gaussian(image, 1.5), sc.filter2d(image, kernel)]
    proc = _python(f"""
        import json, sys, numpy as np, numba, napari_sepconv as sc
        image = np.load({str(tmp_path / "image.npy")!r})
        kernel = np.load({str(tmp_path / "kernel.npy")!r})
        # the 2-D Gaussian runs in parallel; the full-rank kernel directly, a kernel that once
        # made a loaded kernel import Numba's array reductions and, with them, SciPy's linalg
        results = [sc.sobel(image), sc.gaussian(image, 1.5), sc.filter2d(image, kernel)]
        channels = np.load({str(tmp_path / "channels.npy")!r})
        np.save({str(tmp_path / "depthwise.npy")!r}, sc.depthwise_filter(channels, np.ones((4, 3, 3))))
        # nor its ufunc and array modules, which task buffers allocated by np.empty (with a
        # dtype object), filled by .fill() or viewed by .reshape() once imported
        heavy = ("numba.np.linalg", "numba.np.arraymath", "numba.np.npyimpl", "numba.np.arrayobj")
        refreshed = [m for m in heavy if m in sys.modules]
        # nor read the Numba entry points of every installed package (_cpu_kernels.load_for)
        from numba.core import entrypoints
        scanned = entrypoints._already_initialized
        norm = numba.njit(lambda a: np.linalg.norm(a))(np.full(4, 0.5))
        results.append(sc.sobel(image))
        np.save({str(tmp_path / "results.npy")!r}, np.stack(results))
        print(json.dumps([refreshed, scanned, norm]))
    """)
    assert proc.returncode == 0, proc.stderr
    refreshed, scanned, norm = json.loads(proc.stdout.splitlines()[-1])
    assert not refreshed and not scanned and norm == 1.0
    sobel, gaussian, direct, sobel_again = np.load(tmp_path / "results.npy")
    for ours, compiled in zip((sobel, gaussian, direct, sobel_again), expected + expected[:1]):
        np.testing.assert_array_equal(ours, compiled)
    np.testing.assert_array_equal(np.load(tmp_path / "depthwise.npy"), depthwise)


def test_warm_one_family_in_a_fresh_cache(tmp_path):
    """The command compiles into an empty cache, says where it is, and marks nothing complete
    when only some families ran."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "napari_sepconv.warmup", "--family", EDGES, "--jobs", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "napari-sepconv"
    assert str(folder) in proc.stderr
    assert "first time only" in proc.stderr
    (versioned,) = folder.iterdir()
    assert any(versioned.glob("*.nbc"))
    assert not (versioned / "warmup-complete").exists()


def test_start_background_returns_a_process():
    proc = warmup.start_background([EDGES], jobs=1)
    assert proc is not None
    assert proc.wait(timeout=600) == 0


def test_kernel_input_converts_exactly():
    """Inputs become the output's float type (uint8 stays, where the kernel reads it), each
    sample rounded once, as the kernel's own conversion would round it."""
    from napari_sepconv._cpu_kernels import kernel_input

    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    for dtype, out, expect in [
        (np.uint8, f32, np.uint8),
        (np.uint8, f64, np.uint8),
        (np.float32, f64, np.float64),
        (np.float64, f32, np.float32),
        (np.float64, f64, np.float64),
        (np.uint16, f32, np.float32),
        (np.int8, f64, np.float64),
        (np.int16, f32, np.float32),
        (np.int32, f32, np.float32),
        (np.uint32, f64, np.float64),
        (np.int64, f64, np.float64),
        (np.int64, f32, np.float32),
        (np.uint64, f32, np.float32),
    ]:
        info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
        x = (
            np.array([info.min, info.max, 0, 1], dtype)
            if info is not None
            else np.array([0.5, -1.0, 3.0, 1e-3], dtype)
        )
        got = kernel_input(x, out)
        assert got.dtype == expect, (dtype, out)
        assert np.array_equal(got, x.astype(expect))
    # one rounding: through float64 this one would round twice, to another float32
    big = np.array([2**60 + 2**36 + 1], np.int64)
    assert kernel_input(big, f32)[0] == np.float32(2**60 + 2**37)
    view = np.arange(12.0).reshape(3, 4).T
    assert kernel_input(view, f64).flags.c_contiguous
    same = np.zeros((4, 4), np.float32)
    assert kernel_input(same, f32) is same


def test_kernels_are_compiled_for_one_float_type_at_a_time(rng):
    """A float32 image filtered in float64 (and the reverse, and integer images) is converted
    once and runs the kernel of the output's type: no kernel is compiled for another input
    type than its output's or uint8, and the values are those of the converted image."""
    from napari_sepconv import _cpu_kernels

    x = rng.standard_normal((2, 17, 19))
    w = np.array([0.25, 0.5, 1.0, -0.5])
    full = rng.standard_normal((4, 5))
    calls = (
        lambda a, out: sc.sobel(a, dtype=out, preserve_range=True),
        lambda a, out: sc.sobel(a[0], dtype=out, preserve_range=True),
        lambda a, out: sc.farid(a[0], dtype=out, preserve_range=True),
        lambda a, out: sc.separable_filter(a, [w], axes=[0], dtype=out, preserve_range=True),
        lambda a, out: sc.separable_filter(a, [w], axes=[2], dtype=out, preserve_range=True),
        lambda a, out: sc.filter2d(a[0], full, dtype=out, preserve_range=True),
        lambda a, out: sc.depthwise_filter(
            np.moveaxis(a, 0, -1), np.ones((2, 3, 3)), dtype=out, preserve_range=True
        ),
        lambda a, out: sc.depthwise_filter(
            np.moveaxis(a, 0, -1), np.ones((2, 1, 3)), dtype=out, preserve_range=True
        ),
    )
    u8 = (x * 40 + 128).clip(0, 255).astype(np.uint8)
    ints = (x * 2**28).astype(np.int32)
    cases = [(x, np.float32), (x.astype(np.float32), np.float64), (u8, np.float32), (u8, np.float64)]
    cases += [
        (ints, np.float32),
        (ints.astype(np.int64) << 20, np.float32),
        (ints.astype(np.int16), np.float64),
    ]
    for src, out in cases:
        for call in calls:
            got, expected = call(src, out), call(src.astype(out), out)
            assert got.dtype == expected.dtype == out
            np.testing.assert_array_equal(got, expected)
    kernels = [
        k
        for module in _kernel_modules()
        for k in vars(module).values()
        if isinstance(k, _cpu_kernels._Kernel) and not k.reads_any  # (the running sums read any type)
    ]
    assert len(kernels) >= 8
    for kernel in kernels:
        for signature in kernel.dispatcher.signatures:
            src_type, out_type = signature[0].dtype, signature[kernel.out_arg].dtype
            if src_type != numba.types.uint8:
                assert src_type == out_type, (kernel.__name__, signature)


def _kernel_modules():
    """The modules of the CPU kernels, imported."""
    return [
        importlib.import_module(f"napari_sepconv.{Path(name).stem}")
        for name in warmup._KERNEL_SOURCES
        if name.endswith("_kernels.py")
    ]


def test_every_kernel_source_keys_the_cache():
    """Each module with Numba code compiled into the cache is among the sources whose hash
    names the cache folder: a change to it must start a new cache."""
    package = Path(warmup.__file__).parent
    compiled = {
        path.name
        for path in package.glob("*.py")
        if path.name != "warmup.py"
        and not path.name.startswith("_cuda")
        and any(
            mark in path.read_text()
            for mark in ("njit", "_Kernel(", "_helper(", "_inlined(", "_enable_cache(", "extending.intrinsic")
        )
    }
    assert compiled == set(warmup._KERNEL_SOURCES)


def test_a_call_imports_the_kernels_of_its_own_family_only():
    """The CPU kernels live in a module per family, imported by the first call that needs
    it: a first ``sobel`` call loads the edge kernels, not the others' code."""
    proc = _python("""
        import json, sys, numpy as np, napari_sepconv as sc
        sc.sobel(np.ones((16, 16), np.float32))
        edges = set(sys.modules)
        sc.correlate1d(np.ones((16, 16), np.float32), [1.0, 2.0], axis=0)
        lines = set(sys.modules) - edges
        print(json.dumps([sorted(m for m in edges if m.endswith("_kernels")), sorted(lines)]))
    """)
    assert proc.returncode == 0, proc.stderr
    edges, lines = json.loads(proc.stdout.splitlines()[-1])
    assert edges == ["napari_sepconv._cpu_kernels", "napari_sepconv._edge_kernels"]
    assert "napari_sepconv._line_kernels" in lines
    assert not any(m.endswith(("_separable_kernels", "_depthwise_kernels", "_direct_kernels")) for m in lines)


def test_no_writable_cache_as_another_user(shared_tmp, nobody_python):
    """Where no cache folder can be written, filters still run and the warm-up says why."""
    locked = shared_tmp / "locked"
    locked.mkdir(mode=0o555)
    python, env = nobody_python
    env = {**env, "NUMBA_CACHE_DIR": str(locked), "HOME": "/nonexistent"}
    proc = _python(
        """
        import numpy as np, napari_sepconv as sc
        print(float(sc.sobel(np.eye(8, dtype=np.float32)).sum()))
    """,
        env=env,
        user="nobody",
        python=python,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.split()[-1]) > 0
    assert not any(locked.iterdir())
    proc = _python(
        "from napari_sepconv import warmup; raise SystemExit(warmup.main(['-q']))",
        env=env,
        user="nobody",
        python=python,
    )
    assert proc.returncode == 1
    assert "cannot be written" in proc.stderr


_SOBEL_STATS = """
    import json, numpy as np, napari_sepconv as sc
    from napari_sepconv import _edge_kernels as k
    total = float(sc.sobel(np.eye(20, dtype=np.float32)).sum())
    stats = k.edge_magnitude_3x3.dispatcher.stats
    print(json.dumps([total, sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]))
"""


@pytest.mark.parametrize("suffix", [".1.nbc", ".nbi"])
def test_a_damaged_cache_entry_is_compiled_again_and_replaced(tmp_path, suffix):
    """A cache file cut short (a full disk, a killed process) costs one compile and a warning,
    not an error in every later call."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    first = _python(_SOBEL_STATS, env=env)
    assert first.returncode == 0, first.stderr
    expected = json.loads(first.stdout.splitlines()[-1])[0]
    folder = tmp_path / "napari-sepconv" / Path(warmup.cache_dir()).name
    (damaged,) = folder.glob(f"_edge_kernels._edge_magnitude_3x3-*{suffix}")
    damaged.write_bytes(damaged.read_bytes()[:10])
    second = _python(_SOBEL_STATS, env=env)
    assert second.returncode == 0, second.stderr
    assert "could not be read" in second.stderr and "compiled again" in second.stderr
    assert json.loads(second.stdout.splitlines()[-1])[::2] == [expected, 1]
    third = _python(_SOBEL_STATS, env=env)
    assert third.returncode == 0, third.stderr
    assert "could not be read" not in third.stderr
    assert json.loads(third.stdout.splitlines()[-1]) == [expected, 1, 0]


def test_a_read_only_warm_cache_is_read(shared_tmp, nobody_python):
    """A cache warmed once and shared read-only is loaded from; kernels it lacks are compiled
    in the process and nothing is written."""
    shared = shared_tmp / "shared"
    python, env = nobody_python
    env = {**env, "NUMBA_CACHE_DIR": str(shared), "HOME": "/nonexistent"}
    proc = _python(_SOBEL_STATS, env=env, python=python)  # warmed by its owner, same interpreter
    assert proc.returncode == 0, proc.stderr
    expected = json.loads(proc.stdout.splitlines()[-1])[0]
    (folder,) = (shared / "napari-sepconv").iterdir()
    (folder / "warmup-complete").write_text("")  # as a complete warm-up leaves it
    before = sorted(p.relative_to(shared) for p in shared.rglob("*"))
    for path in [*shared.rglob("*"), shared]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    proc = _python(
        textwrap.dedent(_SOBEL_STATS) + "print(float(sc.farid(np.eye(20, dtype=np.float32)).sum()))",
        env=env,
        user="nobody",
        python=python,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert json.loads(lines[-2]) == [expected, 1, 0]
    assert float(lines[-1]) > 0
    proc = _python(
        "from napari_sepconv import warmup; raise SystemExit(warmup.main([]))",
        env=env,
        user="nobody",
        python=python,
    )
    assert proc.returncode == 0 and "read-only" in proc.stderr, proc.stderr
    assert sorted(p.relative_to(shared) for p in shared.rglob("*")) == before


def test_ctrl_c_stops_the_warm_up_at_once_and_quietly(tmp_path):
    """Ctrl-C (SIGINT to the process group) ends the command and its workers within seconds,
    with a line saying what is kept and no worker's traceback."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_sepconv.warmup", "-j", "2"]
        + ["--family", "smoothing", "--family", "channel filters"],
        env={**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Ctrl-C's default action, even where this run's own shell ignores it (a test run
        # started in the background, ``pytest &``, hands SIGINT down ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(4)  # the workers are compiling (each family takes longer than this)
    os.killpg(proc.pid, signal.SIGINT)
    stderr = proc.communicate(timeout=30)[1]
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 10  # no worker left behind (nor multiprocessing's tracker)
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)
            time.sleep(0.2)


def test_sepconv_warmup_names_itself():
    proc = subprocess.run(
        [sys.executable, "-m", "napari_sepconv.cli", "warmup", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: sepconv warmup")


@pytest.mark.parametrize(
    "call",
    [
        lambda x: sc.sobel(x),
        lambda x: sc.gaussian(x, 2.0),
        lambda x: sc.filter2d(x, np.arange(25.0).reshape(5, 5) % 7),
        lambda x: sc.uniform_filter(x, 5),
        lambda x: sc.gaussian_filter(x, 1.0, output=np.int16),
        lambda x: sc.depthwise_filter(np.stack([x, x, x], -1), np.ones((3, 3, 3))),
    ],
    ids=["sobel", "gaussian", "filter2d", "uniform_filter", "gaussian_filter int16", "depthwise_filter"],
)
def test_a_read_only_image_takes_the_kernels_a_writable_one_loaded(tmp_path, monkeypatch, call):
    """Numba compiled every kernel again for a read-only array (a memory-mapped file, as
    ``sepconv`` reads): seconds after a warm-up that had called with writable arrays."""
    from numba.core.registry import CPUDispatcher

    image = np.random.default_rng(5).random((40, 50), dtype=np.float32)
    expected = call(image)
    np.save(tmp_path / "image.npy", image)
    mapped = np.load(tmp_path / "image.npy", mmap_mode="r")
    compiled = []
    original = CPUDispatcher.compile
    monkeypatch.setattr(
        CPUDispatcher, "compile", lambda self, sig: compiled.append(sig) or original(self, sig)
    )
    np.testing.assert_array_equal(call(mapped), expected)
    np.testing.assert_array_equal(call(image), expected)
    assert compiled == []
    assert not mapped.flags.writeable and np.array_equal(mapped, image)


def test_the_warm_up_covers_rgb_volumes_and_columns(monkeypatch):
    """Images whose short last axis is filtered too run with it in front (``_narrow_tail``),
    through kernels and types of their own: after the warm-up's families, their calls
    compile nothing (a review found uniform_filter and gaussian_gradient_magnitude of RGB
    volumes compiling for seconds after a full warm-up)."""
    from numba.core.registry import CPUDispatcher

    for family in warmup.FAMILIES.values():
        family(sc, np)
    compiled = []
    original = CPUDispatcher.compile
    monkeypatch.setattr(
        CPUDispatcher,
        "compile",
        lambda self, sig: compiled.append((self.py_func.__name__, sig)) or original(self, sig),
    )
    rng = np.random.default_rng(11)
    w = np.array([1.0, 2.0, 1.0])
    calls = (
        lambda rgb, column: sc.sobel(rgb),
        lambda rgb, column: sc.sobel(rgb, mode="constant"),
        lambda rgb, column: sc.farid(rgb),
        lambda rgb, column: sc.gaussian(rgb, 2),
        lambda rgb, column: sc.laplace(rgb),
        lambda rgb, column: sc.gaussian_filter(rgb, 1.0),
        lambda rgb, column: sc.gaussian_gradient_magnitude(rgb, 1.0),
        lambda rgb, column: sc.gaussian_laplace(rgb, 1.0),
        lambda rgb, column: sc.uniform_filter(rgb, 3),
        lambda rgb, column: sc.uniform_filter(rgb, 3, output=np.float64),
        lambda rgb, column: sc.correlate1d(rgb, w, axis=-1),
        lambda rgb, column: sc.separable_filter(column, [w, w]),
        lambda rgb, column: sc.separable_filter(column, [w, w], dtype=np.float32),
        lambda rgb, column: sc.gaussian_filter(column, 2.0),
    )
    for dtype in (np.float32, np.float64, np.uint8):
        rgb = (rng.random((64, 64, 3)) * 200).astype(dtype)
        column = (rng.random((3000, 2)) * 200).astype(dtype)
        for call in calls:
            call(rgb, column)
    assert compiled == []
