"""The cached plan: what it knows before the pixels are read, when it is reused, and its keys."""

import threading
import time

import numpy as np
import pytest

import napari_sepconv as sc
from napari_sepconv import _cpu, _plan


@pytest.fixture(autouse=True)
def fresh_plans():
    _plan.clear_cache()
    yield
    _plan.clear_cache()


def _count_calls(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_a_repeated_call_skips_planning_and_the_svd(rng, monkeypatch):
    from napari_sepconv import separable

    splits = _count_calls(monkeypatch, separable, "separate_kernel")
    image = rng.random((20, 24))
    kernel = rng.standard_normal((5, 5))
    first = sc.filter2d(image, kernel)
    second = sc.filter2d(image, kernel.copy())  # equal bytes: the same plan
    assert len(splits) == 1
    assert np.array_equal(first, second)
    sc.filter2d(image, kernel + 1)  # other weights: a new plan
    sc.filter2d(image[:10], kernel)  # another shape: a new plan
    assert len(splits) == 3


@pytest.mark.parametrize(
    "changed",
    [
        {"mode": "wrap"},
        {"cval": 2.0},
        {"dtype": np.float32},
        {"preserve_range": True},
        {"axis": 0},
        {"channel_axis": 2},
    ],
)
def test_every_argument_that_shapes_a_plan_is_in_its_key(rng, changed):
    image = (rng.random((9, 11, 3)) * 255).astype(np.uint8)
    base = sc.sobel.plan(image)
    other = sc.sobel.plan(image, **changed)
    assert other is not base
    assert sc.sobel.plan(image, **changed) is other
    assert sc.sobel.plan(image) is base


def test_the_key_keeps_argument_types(rng):
    """``cval=True`` is an error even after ``cval=1`` made a plan (True == 1 in Python)."""
    image = rng.random((8, 8))
    sc.sobel(image, cval=1)
    with pytest.raises(TypeError, match="cval"):
        sc.sobel(image, cval=True)
    sc.filter2d(image, np.ones((3, 3)), rank=1)
    with pytest.raises(TypeError, match="rank"):
        sc.filter2d(image, np.ones((3, 3)), rank=True)


def test_a_negative_zero_is_not_the_zero_in_a_key(rng):
    """``-0.0 == 0.0`` in Python, yet a ``cval`` of -0.0 makes a constant border's zeros
    negative (SciPy's bits): a plan made for 0.0 must not serve -0.0, nor the reverse."""
    ndi = pytest.importorskip("scipy.ndimage")
    image = np.full((5, 6), -0.0)
    for cval in (0.0, -0.0, 0.0):
        got = sc.gaussian_filter(image, 1.0, mode="constant", cval=cval)
        want = ndi.gaussian_filter(image, 1.0, mode="constant", cval=cval)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
        got = sc.correlate1d(image, [0.5, 0.5], mode="constant", cval=cval)
        want = ndi.correlate1d(image, [0.5, 0.5], mode="constant", cval=cval)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_an_object_array_is_keyed_by_its_values(rng):
    """An object array's bytes are the addresses of its items, which Python reuses once
    they are freed: keyed by them, a sigma of (0.7, 4.0) found the plan of (1.0, 2.0)."""
    ndi = pytest.importorskip("scipy.ndimage")
    image = rng.random((20, 30))
    for pair in [(1.0, 2.0), (3.0, 0.5), (0.7, 4.0), (2.5, 1.5)] * 3:
        sigma = np.array([float(str(pair[0])), float(str(pair[1]))], dtype=object)
        got = sc.gaussian_filter(image, sigma)
        np.testing.assert_array_equal(got, ndi.gaussian_filter(image, list(pair)))
        del sigma


def test_the_cache_is_bounded(rng, monkeypatch):
    monkeypatch.setattr(_plan, "PLAN_CACHE_SIZE", 4)
    image = rng.random((6, 6))
    for k in range(10):
        sc.correlate1d(image, [1.0, float(k)])
    assert len(_plan._cache) == 4


def test_a_plan_tells_layout_cost_and_rank_without_computing(rng):
    image = np.zeros((2, 30, 40, 3), np.uint16)
    plan = sc.depthwise_separable_filter.plan(image, np.ones((3, 2, 3, 3)), np.ones((5, 6)))
    assert plan.out_shape == (2, 30, 40, 5) and plan.out_dtype == np.float64
    assert plan.channels_out == 5 and plan.channel_axis == 3
    assert plan.halo == {1: (1, 1), 2: (1, 1)}
    assert plan.rank == 1 and plan.multiplications == 6 * (3 + 3) + 5 * 6

    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    plan = sc.filter2d.plan(np.zeros((16, 16), np.float32), laplacian)
    assert plan.rank == 2 and plan.exact and plan.out_dtype == np.float32
    assert plan.multiplications == sc.separate_kernel(laplacian).cost[0] - 4  # zeros left out
    plan = sc.filter2d.plan(np.zeros((16, 16)), np.outer([1, 2, 3, 2, 1], [1, 0, -1, 2, 1]))
    assert plan.rank == 1 and plan.multiplications == 5 + 4  # the zero tap is left out

    plan = sc.correlate1d.plan(np.zeros((4, 9), np.int16), [1, 2, 3], axis=1, output=np.uint8)
    assert plan.out_dtype == np.uint8 and plan.halo == {1: (1, 1)}
    plan = sc.separable_filter.plan(
        np.zeros((5, 6, 7)), [[1, 2, 1], [1, 1, 1, 1, 1]], axes=[2, 0], mode=["wrap", "mirror"]
    )
    assert plan.halo == {2: (1, 1), 0: (2, 2)} and plan.modes == {2: "wrap", 0: "mirror"}
    assert plan.multiplications == 8


def test_plans_hold_no_array_of_the_caller(rng):
    kernel = rng.standard_normal((4, 4))
    plan = sc.filter2d.plan(np.zeros((8, 8)), kernel)
    before = plan.program.kernel.copy()
    kernel[:] = 0  # the caller reuses its array
    assert np.array_equal(plan.program.kernel, before)
    assert not np.shares_memory(plan.program.kernel, kernel)


def test_a_reused_weights_or_bias_array_does_not_reach_a_cached_plan():
    """The caller changes its bias (or weights) array after a call, then calls with the
    old values in a new array: the cached plan must hold its own copy, not the caller's."""
    image = np.ones((4, 4, 2))
    bias = np.array([0.0])
    assert sc.pointwise_filter(image, np.ones((1, 2)), bias)[0, 0, 0] == 2.0
    bias[0] = 100.0
    assert sc.pointwise_filter(image, np.ones((1, 2)), np.array([0.0]))[0, 0, 0] == 2.0
    weights = np.ones((1, 2))
    assert sc.depthwise_separable_filter(image, np.ones((2, 1, 1)), weights)[0, 0, 0] == 2.0
    weights[:] = 7.0
    assert sc.depthwise_separable_filter(image, np.ones((2, 1, 1)), np.ones((1, 2)))[0, 0, 0] == 2.0
    bias = np.array([0.0])
    sc.depthwise_separable_filter(image, np.ones((2, 1, 1)), np.ones((1, 2)), bias)
    bias[0] = 5.0
    got = sc.depthwise_separable_filter(image, np.ones((2, 1, 1)), np.ones((1, 2)), np.array([0.0]))
    assert got[0, 0, 0] == 2.0


def test_a_plan_refuses_what_the_call_refuses():
    """``.plan`` takes the call's arguments and checks them as the call does."""
    image = np.zeros((5, 6))
    with pytest.raises(TypeError, match="axis"):
        sc.sobel_h(image, axis=1)
    with pytest.raises(TypeError, match=r"sobel_h.plan\(\) got an unexpected keyword argument 'axis'"):
        sc.sobel_h.plan(image, axis=1)
    assert sc.sobel_v.plan(image).out_shape == (5, 6)
    with pytest.raises(ValueError, match="output has shape"):
        sc.correlate1d.plan(image, [1, 2], output=np.zeros((6, 6)))
    read_only = np.zeros((5, 6))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        sc.correlate1d.plan(image, [1, 2], output=read_only)
    for call in (
        lambda: sc.correlate1d.plan(image + 1j, [1, 2]),
        lambda: sc.convolve1d.plan(image, [1j, 2]),
    ):
        with pytest.raises(TypeError, match="real and imaginary parts"):
            call()


def test_plan_for_another_shape_keeps_everything_else():
    plan = sc.depthwise_filter.plan(np.zeros((10, 12, 3)), np.ones((3, 3, 3)))
    block = plan.for_shape((4, 5, 3))
    assert block.out_shape == (4, 5, 3) and block.program is plan.program
    assert plan.for_shape((4, 5, 3)) is block and plan.for_shape(plan.shape) is plan


def test_small_calls_run_on_one_thread_with_the_same_values(rng, monkeypatch):
    image = rng.random((64, 70)).astype(np.float32)
    small = sc.sobel(image)
    monkeypatch.setattr(_cpu, "SERIAL_WORK", 0)  # everything parallel
    assert np.array_equal(sc.sobel(image), small)
    seen = []
    original = _cpu._call

    def recording(kernel, args, taps, takes_threads=False):
        seen.append(_cpu.numba.get_num_threads())
        return original(kernel, args, taps, takes_threads)

    monkeypatch.setattr(_cpu, "SERIAL_WORK", 1 << 60)  # everything serial
    monkeypatch.setattr(_cpu, "_call", recording)
    threads_before = _cpu.numba.get_num_threads()
    assert np.array_equal(sc.sobel(image), small)
    assert seen and _cpu.numba.get_num_threads() == threads_before  # restored after the call


@pytest.mark.parametrize(
    "call",
    [
        lambda image: sc.sobel(image),
        lambda image: sc.scharr(image, mode="constant", cval=0.5),
        lambda image: sc.separable_filter(image, [np.arange(1.0, 6.0), np.array([1.0, -2.0, 1.0])]),
        lambda image: sc.gaussian(image, 1.5, mode="wrap"),
        lambda image: sc.filter2d(  # rank 2: a sum of two separable terms
            image, np.outer(np.arange(1.0, 8.0), np.ones(7)) - np.outer(np.ones(7), np.arange(7.0) % 3)
        ),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_a_bound_call_gives_the_general_paths_values(rng, call, dtype):
    """A plan's program keeps a shortcut for its next host calls (``TermsProgram._bind``); it
    must give what the general path gives, bit for bit, NaN and odd layouts included."""
    image = (rng.random((23, 31)) * 200).astype(dtype)
    if dtype in (np.float32, np.float64):
        image[4, 5] = np.nan  # a sum of terms falls back to the direct kernel
    first = call(image)  # binds
    assert np.array_equal(call(image), first, equal_nan=True)
    plans = [p for p in _plan._cache.values() if p.program.__class__.__name__ == "TermsProgram"]
    assert any(b is not None for p in plans for b in p.program._bound.values())  # taken
    general = np.empty_like(first)
    _plan.execute(plans[-1], image, general)  # ``out=``: the general path
    assert np.array_equal(general, first, equal_nan=True)
    strided = np.asfortranarray(image)  # converted by the kernel's input step
    assert np.array_equal(call(strided), first, equal_nan=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda image, output: sc.gaussian_filter1d(image, 1.5, output=output),
        lambda image, output: sc.gaussian_filter1d(image, 2.0, 0, 1, output, mode="constant", cval=3.5),
        lambda image, output: sc.correlate1d(image, [0.2, 0.7, 0.1], 0, output, mode="constant", cval=1.5),
        lambda image, output: sc.correlate1d(image, [0.2, 0.7, 0.1], -1, output, mode="wrap"),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("out_dtype", [None, np.float32, np.float64, np.uint8])
def test_a_bound_call_that_converts_or_casts_gives_the_general_paths_values(rng, call, dtype, out_dtype):
    """The shortcut also serves calls whose kernels read a converted copy of the image, or
    whose pass scipy casts to the output type (a float32 image in scipy's float64 Gaussian,
    an integer output): the same bits as the general path (``output=`` an array)."""
    image = (rng.random((37, 45)) * 200 - (50 if dtype == np.int16 else 0)).astype(dtype)
    kept = image.copy()
    first = call(image, out_dtype)
    assert np.array_equal(call(image, out_dtype), first)  # bound by the first call
    general = np.empty_like(first)
    assert call(image, general) is general
    assert np.array_equal(general, first)
    assert np.array_equal(image, kept)


def test_scipys_float64_gaussian_of_a_float32_image_takes_the_shortcut(rng):
    image = rng.random((40, 50), dtype=np.float32)
    first = sc.gaussian_filter1d(image, 1.25)
    again = sc.gaussian_filter1d(image, 1.25)
    assert again.dtype == np.float32 and np.array_equal(again, first)
    bound = [b for p in _plan._cache.values() for b in getattr(p.program, "_bound", {}).values()]
    assert any(getattr(b, "__name__", "") == "bound_through_scratch" for b in bound)


def test_a_call_after_a_pause_runs_on_one_thread_unless_it_is_large(monkeypatch):
    """Workers asleep after a pause cost more to wake than a mid-sized call takes; the calls
    of a loop (one ended less than IDLE_SECONDS ago) take the threads."""
    monkeypatch.setattr(_cpu, "SERIAL_WORK", 1000)
    mid, large = 1000 * 10, 1000 * _cpu.IDLE_SERIAL_FACTOR
    monkeypatch.setattr(_cpu, "_last_call", time.perf_counter() - 10 * _cpu.IDLE_SECONDS)
    assert _cpu._runs_serially(999) and _cpu._runs_serially(mid) and not _cpu._runs_serially(large)
    monkeypatch.setattr(_cpu, "_last_call", time.perf_counter())
    assert _cpu._runs_serially(999) and not _cpu._runs_serially(mid)


def test_calls_run_on_one_thread_up_to_more_work_where_the_workers_sleep(monkeypatch):
    """Under OMP_WAIT_POLICY=PASSIVE every parallel call wakes its workers: mid-sized calls
    run on the calling thread even back to back; elsewhere they take the threads."""
    assert _cpu.workers_sleep("omp", {"OMP_WAIT_POLICY": "passive "})
    assert not _cpu.workers_sleep("omp", {"OMP_WAIT_POLICY": "ACTIVE"})
    assert not _cpu.workers_sleep("omp", {}) and not _cpu.workers_sleep("tbb", {"OMP_WAIT_POLICY": "PASSIVE"})
    monkeypatch.setattr(_cpu, "SERIAL_WORK", 1000)
    monkeypatch.setattr(_cpu, "_last_call", time.perf_counter())  # a loop's next call
    mid, large = 1000 * (_cpu.SLEEPING_SERIAL_FACTOR - 1), 1000 * _cpu.SLEEPING_SERIAL_FACTOR
    monkeypatch.setattr(_cpu, "_serial_factor", _cpu.SLEEPING_SERIAL_FACTOR)
    assert _cpu._runs_serially(mid) and not _cpu._runs_serially(large)
    monkeypatch.setattr(_cpu, "_serial_factor", 1)
    assert _cpu._runs_serially(999) and not _cpu._runs_serially(mid)


def test_the_sleeping_workers_are_looked_up_once_the_threading_layer_runs(monkeypatch):
    monkeypatch.setattr(_cpu, "_serial_factor", None)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    _cpu.numba.get_num_threads()  # the threading layer started, as by a first call
    expected = _cpu.SLEEPING_SERIAL_FACTOR if _cpu.numba.threading_layer() == "omp" else 1
    assert _cpu._always_serial(_cpu.SERIAL_WORK * 2) == (expected > 2)
    assert _cpu._serial_factor == expected


def test_a_call_records_when_it_ended(rng, monkeypatch):
    monkeypatch.setattr(_cpu, "_last_call", 0.0)
    before = time.perf_counter()
    sc.sobel(rng.random((40, 50)).astype(np.float32))
    assert _cpu._last_call >= before


def test_the_serial_choice_weighs_the_taps_of_the_call(rng, monkeypatch):
    image = rng.random((64, 70)).astype(np.float32)
    # between a 3x3 edge magnitude's work (10 taps an output) and a 15x15 separable filter's (30)
    monkeypatch.setattr(_cpu, "SERIAL_WORK", image.size * 20)
    sc.sobel(image)  # first calls of a process also load the kernels' helpers (more calls)
    sc.separable_filter(image, [np.ones(15, np.float32)] * 2)
    parallel = []
    original = _cpu._call

    def recording(kernel, args, taps, takes_threads=False):
        parallel.append(args[0].size * taps >= _cpu.SERIAL_WORK)
        return original(kernel, args, taps, takes_threads)

    monkeypatch.setattr(_cpu, "_call", recording)
    sc.sobel(image)
    sc.separable_filter(image, [np.ones(15, np.float32)] * 2)
    assert parallel == [False, True]


def test_backend_choice_is_per_thread_and_a_context_manager(monkeypatch):
    from napari_sepconv import _backend

    monkeypatch.setattr(_backend, "cuda_unavailable_reason", lambda raise_error=False: None)

    def backend_in_another_thread(action=None):
        seen = []

        def work():
            if action:
                action()
            seen.append(sc.get_backend())

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        return seen[0]

    assert sc.get_backend() == "cpu"
    with sc.set_backend("cuda"):
        assert sc.get_backend() == "cuda"
        assert backend_in_another_thread() == "cpu"  # a worker keeps its own choice
    assert sc.get_backend() == "cpu"  # restored when the block ends

    assert backend_in_another_thread(lambda: sc.set_backend("cuda")) == "cuda"
    assert sc.get_backend() == "cpu"  # the worker's choice stays in the worker
    _ = sc.set_backend("cuda")  # a plain call takes effect at once, without ``with``
    try:
        assert sc.get_backend() == "cuda"
    finally:
        sc.set_backend("auto")
    assert sc.get_backend() == "cpu"
    with pytest.raises(ValueError, match="backend"):
        sc.set_backend("gpu")


def test_plan_of_a_partial_takes_the_functions_own_dtype():
    import functools

    plan = _plan.plan_of(functools.partial(sc.sobel, mode="wrap"), (6, 7), np.uint8, dtype=np.float32)
    assert plan.out_dtype == np.float32 and plan.modes == {0: "wrap", 1: "wrap"}
    with pytest.raises(ValueError, match="kernels"):
        _plan.plan_of(sc.depthwise_filter, (6, 7, 3), np.float32, kernels=np.ones((2, 3, 3)))


def test_every_public_function_keeps_its_docstring_and_filters_have_a_plan():
    planned = {
        "sobel",
        "sobel_h",
        "sobel_v",
        "scharr",
        "scharr_h",
        "scharr_v",
        "prewitt",
        "prewitt_h",
        "prewitt_v",
        "farid",
        "farid_h",
        "farid_v",
        "correlate1d",
        "convolve1d",
        "separable_filter",
        "filter2d",
        "depthwise_filter",
        "pointwise_filter",
        "depthwise_separable_filter",
    }
    for name in sc.__all__:
        obj = getattr(sc, name)
        if callable(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
        if name in planned:
            assert ">>>" in obj.__doc__, name
            assert callable(obj.plan), name


def test_one_pass_plans_call_their_kernel_straight(monkeypatch):
    """A plan of one 1-D pass (``correlate1d``) keeps its kernel's arguments ready: its
    later calls skip the general path (``engine.correlate_axis``), with the same bits as
    the general path (taken with an ``output`` array); inputs the kernel cannot read as
    they are (strided, read-only, another type) and short last axes moved in front
    (``_narrow_tail``) still take it."""
    general = []
    original = _cpu.correlate_axis
    monkeypatch.setattr(_cpu, "correlate_axis", lambda *a: general.append(a[0].shape) or original(*a))
    rng = np.random.default_rng(3)
    w = rng.standard_normal(5)
    for shape, axis in [((9, 7), 0), ((9, 7), -1), ((4, 5, 6), 1), ((300,), 0), ((40, 50), 1)]:
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal(shape).astype(dtype)
            for mode in ("reflect", "constant", "wrap"):
                first = sc.correlate1d(x, w, axis=axis, mode=mode, cval=0.5)
                general.clear()
                again = sc.correlate1d(x, w, axis=axis, mode=mode, cval=0.5)
                assert general == [] and again.dtype == x.dtype
                out = np.empty_like(x)
                sc.correlate1d(x, w, axis=axis, mode=mode, cval=0.5, output=out)
                assert general  # the general path
                assert first.tobytes() == again.tobytes() == out.tobytes()
    x = rng.standard_normal((60, 50)).astype(np.float32)
    expected = sc.correlate1d(x, w, axis=0)
    read_only = x.copy()
    read_only.flags.writeable = False
    for other in (np.asfortranarray(x), read_only, x[:, ::-1][:, ::-1]):
        general.clear()
        assert sc.correlate1d(other, w, axis=0).tobytes() == expected.tobytes()
        assert general or other.flags.c_contiguous and other.flags.writeable
    narrow = rng.standard_normal((3000, 3)).astype(np.float32)
    sc.correlate1d(narrow, w, axis=0)
    general.clear()
    sc.correlate1d(narrow, w, axis=0)  # the colours go in front first (``narrow_tail``)
    assert general == [(3, 3000)]
