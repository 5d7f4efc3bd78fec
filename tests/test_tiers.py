"""Kernels in two tiers (``_tiers``): the quick twins (of the fused separable kernel, the 1-D
passes, the direct 2-D, edge and depthwise kernels, the integer cast and the running sums)
give the fast kernels' bits, a call runs a twin only while the fast kernel compiles in the
background, and the hand-over to the fast kernel happens once that compile has ended."""

import io
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import napari_sepconv as sc
from napari_sepconv import _cpu, _tiers
from napari_sepconv._cpu_kernels import MAGNITUDE, SUM, SUM_SQUARES, _Kernel
from napari_sepconv._passes import taps


def _same_bits(a, b):
    """The same dtype, shape and bytes, NaN payloads aside."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return np.array_equal(nan_a, nan_b) and np.where(nan_a, 0, a).tobytes() == np.where(nan_b, 0, b).tobytes()


@pytest.fixture
def quick_only(monkeypatch):
    """Every call of a kernel with a twin runs the twin; the calls are counted."""
    calls = []

    def quick(self, args):
        calls.append(args[0].shape)
        return self.quick.dispatcher

    monkeypatch.setattr(_tiers.TieredKernel, "dispatcher_for", quick)
    return calls


def _random_term_taps(rng):
    """Offsets and weights of 1 to 20 taps: consecutive, or with zeros left out, or shifted."""
    k = int(rng.integers(1, 21))
    weights = rng.standard_normal(k)
    if k > 2 and rng.random() < 0.3:
        weights[rng.integers(0, k, 2)] = 0.0
    origin = int(rng.integers(-(k // 2), k - k // 2)) if rng.random() < 0.3 else 0
    return taps(weights, origin=origin, skip_zero=bool(rng.random() < 0.5))


def _images(rng, shapes):
    """``(out_dtype, src)`` for each shape and float type: a float image of that type with a NaN
    and two infinities, then a uint8 image."""
    for shape in shapes:
        for out_dtype in (np.float32, np.float64):
            x = rng.standard_normal(shape).astype(out_dtype)
            if x.size > 3:
                x.flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]
            yield out_dtype, x
            yield out_dtype, rng.integers(0, 256, shape).astype(np.uint8)


def _fused(rng, src, out_dtype, n_terms, combine, accumulate, monkeypatch):
    """``_cpu.separable_2d`` of random terms, run by the fast kernel or its quick twin."""
    dtype = np.dtype(out_dtype)
    cols = [tuple(a.copy() for a in _random_term_taps(rng)) for _ in range(n_terms)]
    rows = [tuple(a.copy() for a in _random_term_taps(rng)) for _ in range(n_terms)]
    mode_y, mode_x = (int(m) for m in rng.integers(0, 5, 2))
    cval = [0.7, np.nan, np.inf, -0.0, 3e38, 1e-45, -2.5][int(rng.integers(0, 7))]
    pad_x = rng.standard_normal(n_terms)
    start = rng.standard_normal(src.shape).astype(dtype)

    def run(kernel_quick):
        out = start.copy()
        with monkeypatch.context() as m:
            if kernel_quick:
                m.setattr(_tiers.TieredKernel, "dispatcher_for", lambda self, args: self.quick.dispatcher)
            finite = _cpu.separable_2d(
                src, cols, rows, mode_y, mode_x, cval, pad_x, combine, 1.5, accumulate, out
            )
        return out, finite

    return run


@pytest.mark.parametrize("seed", range(3))
def test_the_quick_kernel_gives_the_fast_kernels_bits(seed, monkeypatch):
    """Random sums, sums of squares and magnitudes of 1 to 3 terms of 1 to 20 taps, added to
    the output or not, every border mode along each axis, NaN and infinities in the image and
    as ``cval``, float and uint8 input, tiny to tall and wide planes: the same bytes and the
    same report of non-finite sums from both kernels."""
    rng = np.random.default_rng([seed, 7])
    shapes = [(1, 1, 1), (1, 3, 2), (2, 9, 17), (1, 40, 37), (3, 23, 64), (1, 1100, 9), (1, 12, 1024)]
    checked = 0
    for out_dtype, src in _images(rng, shapes):
        shape = src.shape
        for combine, n_terms, accumulate in [
            (SUM, 1, False),
            (SUM, 1, True),
            (SUM, 3, False),
            (SUM_SQUARES, 2, True),
            (MAGNITUDE, 2, False),
        ]:
            run = _fused(rng, src, out_dtype, n_terms, combine, accumulate, monkeypatch)
            fast, fast_finite = run(False)
            quick, quick_finite = run(True)
            assert _same_bits(quick, fast), (shape, out_dtype, src.dtype, combine, n_terms)
            assert quick_finite == fast_finite
            checked += 1
    assert checked == len(shapes) * 2 * 2 * 5


def _line_taps(rng):
    """Offsets and weights of 1 to 25 taps: symmetric, antisymmetric (so summed in mirrored
    pairs) or neither, consecutive or not, centred or shifted."""
    k = int(rng.integers(1, 26))
    half = rng.standard_normal(k // 2)
    kind = int(rng.integers(0, 3))
    if kind == 0 and k % 2:
        weights = np.concatenate([half, [rng.standard_normal()], half[::-1]])
    elif kind == 1 and k % 2:
        weights = np.concatenate([half, [0.0], -half[::-1]])
    else:
        weights = rng.standard_normal(k)
    origin = int(rng.integers(-(k // 2), k - k // 2)) if rng.random() < 0.3 else 0
    return taps(weights, origin=origin, skip_zero=bool(rng.random() < 0.3))


def _tier_of(tier):
    """A ``TieredKernel.dispatcher_for`` that always picks ``tier``: ``"fast"`` or ``"quick"``."""
    return lambda self, args: getattr(self, tier).dispatcher


@pytest.mark.parametrize("seed", range(3))
def test_the_quick_1d_passes_give_the_fast_kernels_bits(seed, monkeypatch):
    """Passes along the last axis (``correlate_lines``) and along another one
    (``correlate_rows``, in bands of columns for long rows): random symmetric, antisymmetric
    and other taps, every border mode, NaN and infinities in the image and as ``cval``,
    float and uint8 input, tiny to long lines, and images whose lines the last-axis twin
    transposes in strips: the same bytes from both kernels."""
    rng = np.random.default_rng([seed, 11])
    shapes = [(1,), (2, 1), (3, 5, 2), (7, 9, 1), (1, 40, 3000), (5, 33), (2, 6, 4100), (270, 300)]
    checked = 0
    for out_dtype, src in _images(rng, shapes):
        shape = src.shape
        for axis in {0, len(shape) - 1, len(shape) // 2}:
            offsets, weights = _line_taps(rng)
            mode = int(rng.integers(0, 5))
            cval = [0.7, np.nan, np.inf, -0.0, 3e38, -2.5][int(rng.integers(0, 6))]
            start = rng.standard_normal(shape).astype(out_dtype)
            results = []
            for tier in ("fast", "quick"):
                out = start.copy()
                with monkeypatch.context() as m:
                    m.setattr(_tiers.TieredKernel, "dispatcher_for", _tier_of(tier))
                    _cpu.correlate_axis(src, axis, offsets, weights, mode, cval, out)
                results.append(out)
            assert _same_bits(*results), (shape, axis, out_dtype, src.dtype, mode, offsets)
            checked += 1
    assert checked > 50


@pytest.mark.parametrize("seed", range(2))
def test_the_quick_direct_2d_kernel_gives_the_fast_kernels_bits(seed, monkeypatch):
    """Direct 2-D correlation (``correlate_2d``): random kernels of 1x1 to 9x9 with zeros
    left out, anchored anywhere, every pair of border modes, NaN and infinities in the image
    and as ``cval``, float and uint8 input, planes from 1x1 to wider than tall."""
    rng = np.random.default_rng([seed, 13])
    checked = 0
    shapes = [(1, 1, 1), (2, 3, 2), (1, 17, 9), (3, 8, 40), (1, 30, 513)]
    for out_dtype, src in _images(rng, shapes):
        shape = src.shape
        ky, kx = (int(n) for n in rng.integers(1, 10, 2))
        kernel = rng.standard_normal((ky, kx)) * (rng.random((ky, kx)) < 0.8)
        kernel.flat[0] = 1.5  # at least one tap
        top, left = int(rng.integers(0, ky)), int(rng.integers(0, kx))
        mode_y, mode_x = (int(m) for m in rng.integers(0, 5, 2))
        cval = [0.7, np.nan, np.inf, -0.0, -2.5][int(rng.integers(0, 5))]
        results = []
        for tier in ("fast", "quick"):
            out = np.full(shape, 7.0, out_dtype)
            with monkeypatch.context() as m:
                m.setattr(_tiers.TieredKernel, "dispatcher_for", _tier_of(tier))
                _cpu.correlate_planes(src, kernel, top, left, mode_y, mode_x, cval, out)
            results.append(out)
        assert _same_bits(*results), (shape, out_dtype, src.dtype, kernel.shape, mode_y, mode_x)
        checked += 1
    assert checked == 5 * 2 * 2


def _depthwise_kernels(rng, n_out):
    """Per-channel kernels (C*M, kh, kw) of 1x1 to 7x7, dense or with zero weights in some
    channels or in all (a tap left out), the first one a zero where ``rng`` says (so the
    first tap is taken alone), of both the small-kernel and the planar (20 taps or more) kind;
    some with NaN, infinite, -0 or subnormal weights, or weights that are zero in float32."""
    kh, kw = (int(n) for n in rng.integers(1, 8, 2))
    kernels = rng.standard_normal((n_out, kh, kw))
    kind = int(rng.integers(0, 4))
    if kind == 1:
        kernels *= rng.random((n_out, kh, kw)) < 0.7  # zeros in some channels
    elif kind == 2:
        kernels *= rng.random((1, kh, kw)) < 0.7  # taps left out of every channel
    elif kind == 3:
        kernels[int(rng.integers(0, n_out)), 0, 0] = 0.0  # the first tap, alone
    if rng.random() < 0.3:  # weights that are not finite, signed zeros, zeros only in float32
        special = [np.nan, np.inf, -np.inf, -0.0, 1e-310, 1e-50]
        kernels.flat[rng.integers(0, kernels.size, 2)] = rng.choice(special, 2)
    return kernels


@pytest.mark.parametrize("seed", range(3))
def test_the_quick_depthwise_kernels_give_the_fast_kernels_bits(seed, monkeypatch):
    """Depthwise correlation (``depthwise_2d`` below 20 taps, ``depthwise_planar`` from 20,
    ``depthwise_passes_2d`` of rank-1 kernels): random kernels of 1x1 to 7x7 with zero weights
    in some channels or in all, dense 3x3 ones (read in one sweep by the fast kernel), channel
    multipliers 1 and 2, every pair of border modes, NaN, infinities and negative zeros in the
    image and as ``cval`` (a sum starting from a first product of -0 can end -0, one starting
    from zero cannot), float and uint8 input, bands of output rows starting anywhere, planes
    from 1x1 to wide and many channels."""
    rng = np.random.default_rng([seed, 19])
    shapes = [(1, 1, 1, 1), (2, 3, 2, 2), (1, 17, 9, 3), (1, 8, 40, 16), (1, 12, 300, 1), (2, 40, 37, 4)]
    checked = set()
    for out_dtype, src in _images(rng, shapes):
        if src.dtype != np.uint8:  # negative zeros: scattered, and filling the top half
            src[rng.random(src.shape) < 0.2] = -0.0
            src[:, : src.shape[1] // 2] = -0.0
            if out_dtype == np.float64 and rng.random() < 0.5:  # float32 in, float64 out
                src = src.astype(np.float32)
        for _ in range(3):
            multiplier = int(rng.integers(1, 3))
            kernels = _depthwise_kernels(rng, src.shape[3] * multiplier)
            if rng.random() < 0.3:  # a dense 3x3 kernel
                kernels = rng.standard_normal((src.shape[3] * multiplier, 3, 3))
            if rng.random() < 0.4:  # all products of a -0 have its sign
                kernels = np.abs(kernels)
            mode_y, mode_x = (int(m) for m in rng.integers(0, 5, 2))
            cval = [0.7, np.nan, np.inf, -0.0, -2.5][int(rng.integers(0, 5))]
            row_start = int(rng.integers(0, src.shape[1]))
            n_rows = int(rng.integers(1, src.shape[1] - row_start + 1))
            shape = (src.shape[0], n_rows, src.shape[2], kernels.shape[0])
            # rank-1 kernels as two passes: the column and row vectors of the kernels' first
            # row and column, and the row pass's pad in constant mode
            columns, rows = kernels[:, :, 0].copy(), kernels[:, 0, :].copy()
            pad_x = rng.standard_normal(kernels.shape[0])
            for kind in ("taps", "passes"):
                results = []
                for tier in ("fast", "quick"):
                    out = np.full(shape, 7.0, out_dtype)
                    with monkeypatch.context() as m:
                        m.setattr(_tiers.TieredKernel, "dispatcher_for", _tier_of(tier))
                        if kind == "taps":
                            _cpu.depthwise(src, kernels, multiplier, mode_y, mode_x, cval, out, row_start)
                        else:
                            _cpu.depthwise_passes(
                                src, columns, rows, multiplier, mode_y, mode_x, cval, pad_x, out, row_start
                            )
                    results.append(out)
                report = (kind, src.shape, out_dtype, src.dtype, kernels.shape, multiplier, mode_y, mode_x)
                assert _same_bits(*results), report + (row_start,)
            checked.add(kernels.shape[1] * kernels.shape[2] >= _cpu.PLANAR_TAPS)
    assert checked == {False, True}  # both kernels of taps


@pytest.mark.parametrize("seed", range(2))
def test_the_quick_running_sums_give_the_fast_kernels_bits(seed, monkeypatch):
    """The running sums (``_uniform``) along the last axis, along another one and along the
    last two fused: windows of 1 to 40 samples (anchored segments of 128 or more outputs, so
    lines of several), any origin, every border mode, NaN and infinities in the image and as
    ``cval``, float, uint8 and int16 input, lines longer than a fast kernel's task and rows
    wider than its block of columns: the same bytes from both kernels, and the same
    segments found non-finite (``uniform_last_two`` gives None for both)."""
    from napari_sepconv._uniform import uniform_last_two, uniform_pass

    rng = np.random.default_rng([seed, 17])
    shapes = [(1,), (2, 1), (3, 5, 2), (5, 300), (2, 4200), (2, 140, 600), (1, 260, 3)]
    checked = 0
    for out_dtype, src in _images(rng, shapes):
        if rng.random() < 0.3:
            src = np.nan_to_num(src * 100.0, posinf=3e4, neginf=-3e4).astype(np.int16)
        plans = []
        for axis in range(src.ndim):
            size = int(rng.integers(1, 41))
            origin = int(rng.integers(-(size // 2), size - size // 2))
            plans.append((axis, size, origin, int(rng.integers(0, 5))))
        cval = [0.7, np.nan, np.inf, -0.0, -2.5][int(rng.integers(0, 5))]
        results = []
        for tier in ("fast", "quick"):
            with monkeypatch.context() as m:
                m.setattr(_tiers.TieredKernel, "dispatcher_for", _tier_of(tier))
                values = [uniform_pass("cpu", src, *plan, cval, out_dtype) for plan in plans]
                if src.ndim >= 2:
                    values.append(uniform_last_two(src, plans[-2], plans[-1], cval, out_dtype))
            results.append(values)
        for fast, quick in zip(*results):
            assert (fast is None) == (quick is None), (src.shape, src.dtype, plans)
            assert fast is None or _same_bits(fast, quick), (src.shape, src.dtype, out_dtype, plans, cval)
            checked += 1
    assert checked > 60


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, bool]
)
def test_the_quick_integer_cast_gives_the_fast_kernels_bits(dtype, rng, monkeypatch):
    """scipy.ndimage's casts of float results to integer and bool outputs (``to_integer``):
    fractions either side of zero, values just inside and outside each type's range, the
    bounds of int32 and int64, NaN and infinities, float32 and float64 results."""
    from napari_sepconv import _casting
    from napari_sepconv._cast_kernels import to_integer

    edges = [
        0.0,
        -0.0,
        0.5,
        -0.5,
        0.999,
        -1.5,
        255.5,
        256.0,
        -129.0,
        65535.9,
        2.0**31,
        -(2.0**31),
        2.0**31 - 1,
    ]
    edges += [2.0**63, -(2.0**63), 1e30, -1e30, np.nan, np.inf, -np.inf]
    for result_dtype in (np.float32, np.float64):
        values = np.concatenate([edges, rng.standard_normal(3000) * 10.0 ** rng.integers(0, 20, 3000)])
        values = values.astype(result_dtype)
        results = []
        for tier in ("fast", "quick"):
            with monkeypatch.context() as m:
                m.setattr(_tiers.TieredKernel, "dispatcher_for", _tier_of(tier))
                results.append(_casting.cast_output(values, np.dtype(dtype), None, integer_kernel=to_integer))
        assert results[0].tobytes() == results[1].tobytes(), (result_dtype, dtype)
        assert (
            results[0].tobytes() == _casting.cast_output(values, np.dtype(dtype), None).tobytes()
        )  # NumPy's steps


PUBLIC = [
    ("sobel", lambda x, mode: sc.sobel(x, mode=mode)),
    (
        "depthwise_filter 3x3 and 2x4",
        lambda x, mode: np.concatenate(
            [
                sc.depthwise_filter(
                    np.stack([x, x[::-1], x[:, ::-1]], -1),
                    np.stack([np.arange(9.0).reshape(3, 3) - 4, np.eye(3)[::-1], np.ones((3, 3)) / 9]),
                    mode=mode,
                ),
                sc.depthwise_filter(
                    np.stack([x, x[::-1]], -1), np.stack([np.eye(2, 4), np.ones((2, 4))]), mode=mode
                ),
            ],
            -1,
        ),
    ),
    (
        "depthwise_filter rank 1",
        lambda x, mode: sc.depthwise_filter(
            np.stack([x, x[::-1]], -1),
            np.stack(
                [np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0]), np.outer([0.5, 0.0, 1.5], [2.0, 1.0, 3.0])]
            ),
            mode=mode,
        ),
    ),
    ("prewitt of channels", lambda x, mode: sc.prewitt(np.stack([x, x[::-1]]), channel_axis=0, mode=mode)),
    ("sobel_h", lambda x, mode: sc.sobel_h(x, mode=mode)),
    ("farid", lambda x, mode: sc.farid(x, mode=mode)),
    ("gaussian", lambda x, mode: sc.gaussian(x, 3.0, mode=mode, cval=0.5, preserve_range=True)),
    ("gaussian_filter order", lambda x, mode: sc.gaussian_filter(x, (2.0, 1.0), order=(1, 0), mode=mode)),
    ("gaussian_gradient_magnitude", lambda x, mode: sc.gaussian_gradient_magnitude(x, 1.5, mode=mode)),
    (
        "separable_filter",
        lambda x, mode: sc.separable_filter(x, [np.arange(1.0, 16.0), np.linspace(-1, 1, 9)], mode=mode),
    ),
    (
        "gaussian_filter 3-D",
        lambda x, mode: sc.gaussian_filter(np.stack([x, x[::-1], x[:, ::-1]]), 1.5, mode=mode),
    ),
    ("filter2d direct", lambda x, mode: sc.filter2d(x, np.arange(25.0).reshape(5, 5) % 7 - 3, mode=mode)),
    ("correlate1d", lambda x, mode: sc.correlate1d(x, np.linspace(-1, 2, 6), axis=0, mode=mode)),
    ("gaussian_filter1d", lambda x, mode: sc.gaussian_filter1d(x, 2.0, axis=-1, order=1, mode=mode)),
    ("uniform_filter", lambda x, mode: sc.uniform_filter(x, (5, 8), mode=mode, cval=0.5)),
    ("uniform_filter1d", lambda x, mode: sc.uniform_filter1d(x, 6, axis=0, mode=mode, origin=-2)),
    (
        "uniform_filter 3-D",
        lambda x, mode: sc.uniform_filter(np.stack([x, x[::-1], x[:, ::-1]]), 3, mode=mode),
    ),
    (
        "uniform-free gaussian_filter",
        lambda x, mode: sc.gaussian_filter(x, 1.5, mode=mode, output=np.float64),
    ),
    (
        "filter2d rank 2",
        lambda x, mode: sc.filter2d(
            x,
            np.outer(np.hanning(11), np.arange(-5.0, 6.0)) + np.outer(np.arange(11.0), np.ones(11)),
            mode=mode,
        ),
    ),
]


@pytest.mark.parametrize("name, apply", PUBLIC, ids=[p[0] for p in PUBLIC])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_public_filters_give_the_same_bits_on_the_quick_kernel(
    name, apply, dtype, rng, monkeypatch, quick_only
):
    x = (rng.random((70, 45)) * 200).astype(dtype)
    kept = x.copy()
    fast_calls = []

    def fast_only(self, args):
        fast_calls.append(args[0].shape)
        return self.fast.dispatcher

    for mode in ("reflect", "constant", "nearest", "mirror", "wrap"):
        with monkeypatch.context() as m:
            m.setattr(_tiers.TieredKernel, "dispatcher_for", fast_only)
            fast = apply(x, mode)
        assert _same_bits(apply(x, mode), fast), mode
    np.testing.assert_array_equal(x, kept)
    assert quick_only == fast_calls  # the same calls of the kernels, each on its twin
    assert quick_only, "no call of a kernel with a twin"


# --------------------------------------------------------------------------
# Which kernel a call runs
# --------------------------------------------------------------------------


def test_the_twins_and_only_they_compile_at_the_quick_level():
    """Every quick twin (and the helpers only the separable ones call) is optimised at
    ``QUICK_OPT_LEVEL``, every fast kernel at Numba's own level."""
    from napari_sepconv import _separable_quick
    from napari_sepconv._cpu_kernels import QUICK_OPT_LEVEL

    twins = 0
    for fast_name, quick_name in _cpu._TWINS.values():
        fast = _cpu._kernel_named(f"napari_sepconv.{fast_name}")
        assert fast.dispatcher.opt_level is None, fast_name
        quick = _cpu._kernel_named(f"napari_sepconv.{quick_name}")
        if isinstance(quick, _Kernel):
            assert quick.dispatcher.opt_level == QUICK_OPT_LEVEL, quick_name
            twins += 1
    assert twins >= 8
    for quick in (_separable_quick._sums_quick, _separable_quick._squares_quick):
        assert quick.dispatcher.opt_level == QUICK_OPT_LEVEL
    for helper in (_separable_quick._row_pass_by_one, _separable_quick._column_pass_by_one):
        assert helper.opt_level == QUICK_OPT_LEVEL


def _times_two(x):
    return x * 2.0


def _plus_three(x):
    return x + 3.0


def test_each_compile_runs_at_its_dispatchers_level():
    """A quick kernel compiles at ``QUICK_OPT_LEVEL``; a helper it calls compiles at its own
    level (Numba's for one the fast kernels share, the quick level for one only twins call);
    Numba's level is back after each compile, one that fails included."""
    from numba.core import config, event
    from numba.core.caching import NullCache

    from napari_sepconv import _cpu_kernels

    def uncached(dispatcher):
        dispatcher._cache = NullCache()  # compiled in this test, whatever the on-disk cache holds
        return dispatcher

    shared = uncached(_cpu_kernels._helper(_times_two))
    only_twins = uncached(_cpu_kernels._helper(_plus_three, quick=True))

    def _twice_plus_three(out, x):
        out[0] = shared(x) + only_twins(x)

    kernel = uncached(_cpu_kernels._jit(_twice_plus_three, quick=True))
    levels = {}

    class Levels(event.Listener):
        def on_start(self, ev):
            levels[ev.data["dispatcher"].py_func.__name__] = int(config.OPT)

        def on_end(self, ev):
            pass

    numba_level = int(config.OPT)
    with event.install_listener("numba:compile", Levels()):
        out = np.zeros(1)
        kernel(out, 2.0)
    assert out[0] == 9.0
    quick_level = min(_cpu_kernels.QUICK_OPT_LEVEL, numba_level)
    assert levels == {"_twice_plus_three": quick_level, "_times_two": numba_level, "_plus_three": quick_level}
    assert int(config.OPT) == numba_level
    with pytest.raises(Exception):  # noqa: B017, PT011 - Numba's typing error, whatever its class
        kernel(out, "not a number")
    assert int(config.OPT) == numba_level
    assert config.OPT is _cpu_kernels._NUMBA_OPT


def test_the_quick_level_never_exceeds_numbas(monkeypatch):
    """``NUMBA_OPT=0`` (debugging) holds for the twins too; ``max`` stays ``max`` for the rest."""
    from numba.core import config

    from napari_sepconv import _cpu_kernels

    monkeypatch.setattr(_cpu_kernels, "_NUMBA_OPT", config._OptLevel(0))
    assert int(_cpu_kernels._level(_cpu_kernels.QUICK_OPT_LEVEL)) == 0
    assert int(_cpu_kernels._level(None)) == 0
    top = config._OptLevel("max")
    monkeypatch.setattr(_cpu_kernels, "_NUMBA_OPT", top)
    assert _cpu_kernels._level(None) is top
    assert int(_cpu_kernels._level(_cpu_kernels.QUICK_OPT_LEVEL)) == _cpu_kernels.QUICK_OPT_LEVEL


def _plus_one(src, out, helpers, missing, threads):
    for i in range(src.size):
        out.flat[i] = src.flat[i] + 1


def _plus_one_slowly(src, out, helpers, missing, threads):
    for i in range(src.size):
        out.flat[i] = (src.flat[i] * 2 + 2) / 2


class _Process:
    """A stand-in for the background process: running until ``finish``."""

    def __init__(self):
        self.code = None
        self.waited = False

    def poll(self):
        return self.code

    def wait(self, timeout=None):
        self.waited = True


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """A tiered pair of tiny kernels in an empty cache, and the background processes it
    starts (stand-ins: nothing is compiled elsewhere)."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(_tiers.ENV, "1")
    started = []

    def start(name, signature):
        started.append(_Process())
        return started[-1]

    monkeypatch.setattr(_tiers, "_start", start)
    fast = _Kernel(_plus_one, 1, takes_threads=True, calls_helper=True)
    quick = _Kernel(_plus_one_slowly, 1, takes_threads=True, calls_helper=True)
    kernel = _tiers.TieredKernel(fast, quick, "tests.test_tiers:unused")
    args = (np.arange(6.0), np.zeros(6))
    return kernel, args, started


def test_a_cold_kernel_runs_the_quick_one_until_the_background_compile_ends(toy):
    kernel, args, started = toy
    assert kernel.dispatcher_for(args) is kernel.quick.dispatcher
    assert kernel.dispatcher_for(args) is kernel.quick.dispatcher
    assert len(started) == 1  # one background compile per kernel and types
    _tiers.wait()
    assert started[0].waited
    kernel.fast.dispatcher.compile(_tiers._signature(kernel, args))  # as the process would have
    started[0].code = 0
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    assert kernel._settled and not kernel._pending
    started[0].code = None  # settled: the process is not asked again
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    kernel.dispatcher_for(args)(*args, np.zeros((0, 2), np.int64), np.zeros(1, np.int64), 1)
    np.testing.assert_array_equal(args[1], np.arange(1.0, 7.0))


def test_a_compiled_or_cached_kernel_runs_at_once(toy):
    kernel, args, started = toy
    kernel.fast.dispatcher.compile(_tiers._signature(kernel, args))
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    assert started == []


def test_no_quick_kernel_when_turned_off_or_when_no_process_starts(toy, monkeypatch):
    kernel, args, started = toy
    monkeypatch.setenv(_tiers.ENV, "0")
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    kernel._settled.clear()
    monkeypatch.setenv(_tiers.ENV, "1")
    monkeypatch.setattr(_tiers, "_start", lambda name, signature: None)
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    assert started == []


def test_turned_off_it_compiles_after_any_other_process_compiling_it(toy, monkeypatch):
    """With the twins off (a warm-up worker), the fast kernel compiles under the lock the
    background compiles take, so that two processes never compile it at once."""
    kernel, args, started = toy
    monkeypatch.setenv(_tiers.ENV, "0")
    locked = []
    real = _tiers._compile

    def compile_locked(dispatcher, name, signature):
        locked.append(name)
        real(dispatcher, name, signature)

    monkeypatch.setattr(_tiers, "_compile", compile_locked)
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    assert locked == ["tests.test_tiers:unused"] and started == []
    assert _tiers._signature(kernel, args) in kernel.fast.dispatcher.overloads


def test_a_failed_background_compile_compiles_the_fast_kernel_here_and_says_so(toy):
    kernel, args, started = toy
    assert kernel.dispatcher_for(args) is kernel.quick.dispatcher
    assert _tiers.wait() is True  # still under way
    started[0].code = 1
    assert _tiers.wait() is False  # ended: nothing to wait for
    with pytest.warns(RuntimeWarning, match="background compile of plus_one left no kernel"):
        assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    assert _tiers._signature(kernel, args) in kernel.fast.dispatcher.overloads
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher  # settled, no second warning


def test_a_background_compile_stopped_by_its_folders_removal_is_started_again(toy):
    """The cache folder went while the background process compiled (it ends, saying so): a
    process that still calls the kernel starts another and runs the quick one meanwhile,
    without a warning or a compile of its own."""
    kernel, args, started = toy
    assert kernel.dispatcher_for(args) is kernel.quick.dispatcher
    started[0].code = _tiers.FOLDER_REMOVED
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kernel.dispatcher_for(args) is kernel.quick.dispatcher
    assert len(started) == 2 and not kernel.fast.dispatcher.overloads
    started[1].code = 0  # this one compiled the kernel into the cache (here: compiled below)
    kernel.fast.dispatcher.compile(_tiers._signature(kernel, args))
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher


def test_a_read_only_input_has_its_own_choice(toy):
    kernel, args, started = toy
    kernel.fast.dispatcher.compile(_tiers._signature(kernel, args))
    assert kernel.dispatcher_for(args) is kernel.fast.dispatcher
    read_only = args[0].copy()
    read_only.flags.writeable = False
    assert kernel.dispatcher_for((read_only, args[1])) is kernel.quick.dispatcher  # another type
    assert len(started) == 1


def test_read_only_images_run_the_kernel_compiled_for_writable_ones(rng):
    """A read-only image (a memory map) reaches the fused kernel typed as writable: no second
    compile of either kernel."""
    from napari_sepconv._separable_quick import _squares_quick, _sums_quick

    x = rng.random((40, 30), dtype=np.float32)
    expected = sc.sobel_h(x)
    kernel = _cpu._fused_kernel()

    def signatures():
        return [len(k.dispatcher.overloads) for k in (kernel.fast, _sums_quick, _squares_quick)]

    before = signatures()
    x.flags.writeable = False
    np.testing.assert_array_equal(sc.sobel_h(x), expected)
    assert signatures() == before


def test_one_tiered_kernel_for_every_thread(monkeypatch):
    """Threads that ask for the fused kernel at once get the same one (so one background
    compile per types, not one per thread)."""
    import threading

    monkeypatch.setattr(_cpu, "_twins", {})
    barrier = threading.Barrier(4)
    got = []

    def ask():
        barrier.wait()
        got.append(_cpu._fused_kernel())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and all(k is got[0] for k in got)


def test_the_background_process_gets_this_processs_import_path(monkeypatch):
    """The package may be importable only through ``sys.path`` (a source checkout added to
    it): the background process gets the same path."""
    seen = {}

    class Popen:
        def __init__(self, argv, **options):
            seen.update(options, argv=argv)
            self.stdin = open(os.devnull, "wb")  # noqa: SIM115 - closed by _start

    monkeypatch.setattr(_tiers.subprocess, "Popen", Popen)
    monkeypatch.setattr(sys, "path", ["/somewhere/src", *sys.path])
    assert _tiers._start("module:kernel", ()) is not None
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[0] == "/somewhere/src"
    assert seen["env"][_tiers.ENV] == "0"
    assert seen["argv"][1:] == ["-m", "napari_sepconv._tiers"]


class _Pipe(io.BytesIO):
    """A background process's standard input: what was sent, once closed."""

    sent = None

    def close(self):
        self.sent = self.getvalue()
        super().close()


def _held_order(monkeypatch):
    """A stand-in background process whose order is held by a fresh ``_tiers._Orders``."""
    from numba.core import event

    orders = _tiers._Orders()
    monkeypatch.setattr(_tiers, "_orders", orders)
    monkeypatch.setattr(_tiers, "QUIET_S", 0.1)
    process = _Process()
    process.stdin = _Pipe()
    return orders, process, event


def test_a_background_process_gets_its_order_once_no_compile_runs(monkeypatch):
    """The order waits while this process compiles (a call's other twins), then goes out
    once nothing has compiled for ``QUIET_S``."""
    orders, process, event = _held_order(monkeypatch)
    event.start_event("numba:compile", data={})
    try:
        orders.hold(process, b"order")
        time.sleep(0.4)
        assert process.stdin.sent is None
    finally:
        event.end_event("numba:compile", data={})
    deadline = time.monotonic() + 10
    while process.stdin.sent is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.stdin.sent == b"order"


def test_waiting_for_the_background_compiles_sends_their_orders_at_once(monkeypatch):
    orders, process, event = _held_order(monkeypatch)
    monkeypatch.setattr(_tiers, "_kernels", [])
    event.start_event("numba:compile", data={})
    try:
        orders.hold(process, b"order")
        _tiers.wait()
        assert process.stdin.sent == b"order"
    finally:
        event.end_event("numba:compile", data={})


def test_a_forked_child_closes_its_copies_of_the_orders_pipes(monkeypatch):
    import threading

    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    orders, process, event = _held_order(monkeypatch)
    event.start_event("numba:compile", data={})
    try:
        orders.hold(process, b"order")
        thread = orders._thread
        orders.forget()
    finally:
        event.end_event("numba:compile", data={})
    assert process.stdin.closed and process.stdin.sent == b""
    assert not orders._held
    thread.join(5)
    assert not thread.is_alive() and not errors  # the forgotten orders' thread ends, quietly


_SLOW_KERNEL = """
import time, types
KERNEL = types.SimpleNamespace(dispatcher=types.SimpleNamespace(compile=lambda signature: time.sleep(120)))
"""


@pytest.mark.parametrize("when", ["before it starts", "while it compiles"])
def test_the_background_process_ends_when_its_cache_folder_is_removed(when, tmp_path, monkeypatch):
    """A throwaway cache deleted by its owner: the background process stops at once (a real
    one, compiling a stand-in kernel that takes minutes) and writes nothing there again."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "slow_kernel.py").write_text(_SLOW_KERNEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    from napari_sepconv.warmup import cache_dir

    folder = cache_dir()
    os.makedirs(folder)
    if when == "before it starts":
        shutil.rmtree(tmp_path / "cache")
    process = _tiers._start("slow_kernel:KERNEL", ())
    try:
        if when == "while it compiles":
            background = os.path.join(folder, "background")
            deadline = time.monotonic() + 120
            while not os.path.isdir(background) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert os.path.isdir(background), "the background process never took its lock"
            shutil.rmtree(tmp_path / "cache")
        assert process.wait(timeout=30) == _tiers.FOLDER_REMOVED
    finally:
        process.kill()
        process.wait()
    assert not (tmp_path / "cache").exists()


def test_a_cache_removed_during_the_background_compile_in_a_new_process(tmp_path):
    """End to end: the cache folder removed while the fast kernel compiles in the background,
    and the process still calling. It runs the quick kernel, a new background compile takes
    over, and the fast kernel follows, with the same bits and no warning."""
    script = textwrap.dedent(
        """
        import shutil, warnings
        import numpy as np
        import napari_sepconv as sc
        from napari_sepconv import _cpu, _tiers, warmup

        warnings.simplefilter("error")
        x = np.random.default_rng(2).random((40, 30), dtype=np.float32)
        kernel = _cpu._fused_kernel()
        first = sc.sobel_h(x)
        shutil.rmtree(warmup.cache_dir())
        _tiers.wait(300)
        again = sc.sobel_h(x)
        print("after", "quick" if kernel._pending else "fast")
        _tiers.wait(300)
        last = sc.sobel_h(x)
        print("then", "fast" if kernel._settled and not kernel._pending else "quick")
        print("same", first.tobytes() == again.tobytes() == last.tobytes())
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), _tiers.ENV: "1"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["after", "quick", "then", "fast", "same", "True"]


@pytest.mark.parametrize(
    "value, on", [("1", True), ("", True), ("0", False), ("off", False), (" No ", False)]
)
def test_the_switch(value, on, monkeypatch):
    monkeypatch.setenv(_tiers.ENV, value)
    assert _tiers.enabled() is on


def test_the_hand_over_in_a_new_process(tmp_path):
    """End to end, with an empty cache: the first calls run the quick kernel while a real
    background process compiles the fast one; after it, the fast one runs, with the same
    bits, and a new process loads it from the cache at once."""
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import napari_sepconv as sc
        from napari_sepconv import _cpu, _separable_quick, _tiers

        x = np.random.default_rng(1).random((60, 50), dtype=np.float32)
        kernel = _cpu._fused_kernel()
        first = sc.sobel_h(x)  # a sum of terms: the sums' twin
        print("first", "quick" if _separable_quick._sums_quick.dispatcher.overloads else "fast")
        _tiers.wait(300)
        again = sc.sobel_h(x)
        print("after", "fast" if kernel._settled and not kernel._pending else "quick")
        print("same", first.tobytes() == again.tobytes())
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), _tiers.ENV: "1"}
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout.split() == ["first", "quick", "after", "fast", "same", "True"]
    assert runs[1].stdout.split() == ["first", "fast", "after", "fast", "same", "True"]
