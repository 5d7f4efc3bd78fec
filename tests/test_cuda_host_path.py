"""What one call on GPU input costs on the host, counted with the driver stubbed (no GPU needed).

A fake CuPy (a module named ``cupy`` whose arrays carry ``__cuda_array_interface__``
with a ``stream``) stands for the caller's library. Compilation and the driver's
launch are replaced by recorders; everything between the public function and the
launch is the real code. Per call on a warm plan, the tests count kernel launches,
allocations through Numba, host synchronisations, host-device copies and Python
function calls.
"""

import os
import sys
import types

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="stubs the real CUDA target, not the simulator"
)

PYTHON_CALLS_BUDGET = 150
STREAM = 0x5E9C0


class _Memory:
    def __init__(self, ptr):
        self.ptr = ptr

    def __add__(self, offset):
        return _Memory(self.ptr + offset)


class FakeCupyArray:
    """A device array of the fake library: an address, a shape, a dtype, a stream."""

    _next = 0x7F0000000000

    def __init__(self, shape, dtype, stream=STREAM, memptr=None, strides=None):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        if strides is None:  # C order (a loop: cheap, as CuPy's own constructor is to Python)
            strides, step = [], self.dtype.itemsize
            for n in reversed(self.shape):
                strides.insert(0, step)
                step *= n
        self.strides = tuple(strides)
        if memptr is None:  # new memory; else a view (``cupy.ndarray(..., memptr=...)``)
            memptr = _Memory(FakeCupyArray._next)
            FakeCupyArray._next += 1 << 30
        self.data = memptr
        self.ndim = len(self.shape)
        self.stream = stream

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self.shape,
            "strides": self.strides,
            "typestr": self.dtype.str,
            "data": (self.data.ptr, False),
            "version": 3,
            "stream": self.stream,
        }


FakeCupyArray.__module__ = "cupy._core.core"


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, kind):
        def record(*args, **kwargs):
            self.events.append(kind)
            return self.results.get(kind)

        return record

    results = {}

    def count(self, kind):
        return self.events.count(kind)


@pytest.fixture
def stubbed(monkeypatch):
    """The CUDA engine with its compiler, launches and the Numba driver paths recorded."""
    from numba import cuda
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import devicearray

    from napari_sepconv import _backend, _cuda, _plan

    rec = Recorder()
    cupy = types.ModuleType("cupy")
    cupy.ndarray = FakeCupyArray

    def cupy_empty(shape, dtype):
        rec.events.append("cupy alloc")
        return FakeCupyArray(shape, dtype)

    cupy.empty = cupy_empty
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(_cuda, "unavailable_reason", lambda: None)
    monkeypatch.setattr(_cuda, "_cublas", lambda: None)

    def compile_(pyfunc, argtypes, bounds=None):
        rec.events.append("compile")
        return _cuda._Compiled(None, object())

    monkeypatch.setattr(_cuda, "_compile", compile_)
    monkeypatch.setattr(_cuda, "_kernels", {})
    monkeypatch.setattr(_cuda, "_prepared", _cuda.PreparedArrays())

    launches = []

    def launch(stream, config, kernel, *params):
        launches.append((stream, config, params))
        rec.events.append("launch")

    monkeypatch.setattr(dispatcher, "launch", launch)
    monkeypatch.setattr(_cuda, "_stream", lambda handle: ("stream", handle))
    monkeypatch.setattr(_cuda, "_config", lambda grid, block, shared: (grid, block, shared))

    class Weights:
        """What ``_const`` uploads (once per set of weights)."""

        def __init__(self, values):
            self.host = np.ascontiguousarray(values)
            self.dtype, self.shape, self.size = self.host.dtype, self.host.shape, self.host.size
            self.strides = self.host.strides
            self.device_ctypes_pointer = types.SimpleNamespace(value=0xC0)

        def is_c_contiguous(self):
            return True

    def const(values, dtype):
        rec.events.append("upload")
        return Weights(np.asarray(values, dtype=dtype).reshape(-1) if np.ndim(values) == 0 else values)

    monkeypatch.setattr(_cuda, "_const", functools_cache(const))
    for name, kind in [
        ("device_array", "numba alloc"),
        ("to_device", "copy"),
        ("synchronize", "sync"),
        ("as_cuda_array", "sync"),
    ]:
        monkeypatch.setattr(cuda, name, rec(kind))
    monkeypatch.setattr(devicearray.DeviceNDArray, "copy_to_host", rec("copy"))
    from numba.cuda.cudadrv import driver

    monkeypatch.setattr(driver.Stream, "synchronize", rec("sync"))
    _plan.clear_cache()
    monkeypatch.setattr(_backend, "_engines", {})
    rec.launches = launches
    yield rec
    _plan.clear_cache()


def functools_cache(func):
    import functools

    cached = functools.lru_cache(maxsize=None)(
        lambda key, dtype, shape: func(np.frombuffer(key, dtype), dtype)
    )

    def wrapper(values, dtype):
        host = np.ascontiguousarray(values, dtype=dtype)
        return cached(host.tobytes(), host.dtype, host.shape)

    return wrapper


_CHANNEL_WORKLOADS = ("depthwise 3x3", "pointwise", "dw-separable")


def _workloads():
    import napari_sepconv as sc

    rng = np.random.default_rng(0)
    gauss = np.exp(-0.5 * (np.arange(-7, 8) / 2.5) ** 2).astype(np.float32)
    full5 = rng.standard_normal((5, 5)).astype(np.float32)
    return {
        "sobel": lambda x: sc.sobel(x),
        "sobel uint8->float32": lambda x: sc.sobel(x, dtype=np.float32),
        "separable 15-tap": lambda x: sc.separable_filter(x, [gauss, gauss]),
        "separable 15-tap, constant": lambda x: sc.separable_filter(x, [gauss, gauss], mode="constant"),
        "gaussian": lambda x: sc.gaussian(x, 2.0),
        "filter2d direct": lambda x: sc.filter2d(x, full5),
        "depthwise 3x3": lambda x, **kw: sc.depthwise_filter(
            x, np.ones((16, 3, 3), np.float32) / 9, channel_axis=-1, **kw
        ),
        "pointwise": lambda x, **kw: sc.pointwise_filter(
            x, np.ones((8, 16), np.float32), channel_axis=-1, **kw
        ),
        "dw-separable": lambda x, **kw: sc.depthwise_separable_filter(
            x, np.ones((16, 3, 3), np.float32), np.ones((8, 16), np.float32), channel_axis=-1, **kw
        ),
        "_rng": rng,
    }


@pytest.mark.parametrize(
    "name",
    [
        "sobel",
        "sobel uint8->float32",
        "separable 15-tap",
        "separable 15-tap, constant",
        "gaussian",
        "filter2d direct",
        # (a kernel of several terms is not here: its sum is checked for NaN and inf, one
        # reduction and a sync, to run the kernel itself where they met the split)
        "depthwise 3x3",
        "pointwise",
        "dw-separable",
    ],
)
def test_one_launch_no_sync_no_copy_no_numba_allocation(name, stubbed):
    call = _workloads()[name]
    dtype = np.uint8 if "uint8" in name else np.float32
    image = FakeCupyArray((64, 80, 16) if name in _CHANNEL_WORKLOADS else (256, 320), dtype)
    first = call(image)
    assert stubbed.count("compile") == 1
    stubbed.events.clear()
    stubbed.launches.clear()

    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        out = call(image)
    finally:
        sys.setprofile(None)

    assert isinstance(out, FakeCupyArray) and out.shape[:2] == image.shape[:2] and out is not first
    assert stubbed.count("launch") == 1, stubbed.events
    assert stubbed.count("cupy alloc") == 1, stubbed.events  # the output, from the caller's pool
    assert stubbed.count("numba alloc") == 0, stubbed.events
    assert stubbed.count("sync") == 0, stubbed.events
    assert stubbed.count("copy") == 0 and stubbed.count("upload") == 0, stubbed.events
    assert stubbed.count("compile") == 0, stubbed.events
    ((stream, (grid, block, shared), params),) = stubbed.launches
    assert stream == ("stream", STREAM)  # the stream the input exports
    assert image.data.ptr in params and out.data.ptr in params
    assert len(params) <= 100, len(params)  # two flat arrays, sizes, and the weights as scalars
    print(f"{name}: {calls} Python calls")
    assert calls <= PYTHON_CALLS_BUDGET, calls


def test_torch_like_and_numba_inputs_keep_their_allocator(stubbed):
    """A GPU array of an unknown library: outputs from Numba, no synchronisation."""
    import napari_sepconv as sc

    image = FakeCupyArray((64, 64), np.float32)
    sc.sobel(image)
    stubbed.events.clear()
    sc.sobel(image)
    assert stubbed.count("launch") == 1 and stubbed.count("sync") == 0


def test_specialised_kernel_parameters_match_the_compiled_signature(stubbed):
    """The marshalled parameters are laid out as Numba's kernel ABI for the signature."""
    from numba.core import types

    from napari_sepconv import _cuda

    compiled = []

    def compile_(pyfunc, argtypes, bounds=None):
        compiled.append(argtypes)
        return _cuda._Compiled(None, object())

    _cuda._compile = compile_  # restored with the fixture's monkeypatch of _compile
    import napari_sepconv as sc

    sc.sobel(FakeCupyArray((40, 50), np.float32))
    (params,) = [p for _, _, p in stubbed.launches]
    (argtypes,) = compiled
    expected = sum(5 + 2 * t.ndim if isinstance(t, types.Array) else 1 for t in argtypes)
    assert len(params) == expected


def test_a_kernel_that_spills_is_compiled_again_with_roomier_bounds(stubbed):
    """Fused kernels launch four blocks per SM unless that makes them spill registers."""
    from napari_sepconv import _cuda, _cuda_kernels

    compiled = []

    def compile_(pyfunc, argtypes, bounds=None):
        compiled.append((argtypes[0].dtype.name, bounds))
        spills = argtypes[0].dtype.name == "float64" and bounds == _cuda_kernels.FUSED_BOUNDS
        return _cuda._Compiled(None, object(), 16 if spills else 0)

    _cuda._compile = compile_  # restored with the fixture's monkeypatch of _compile
    import napari_sepconv as sc

    taps = np.arange(1.0, 16.0)
    for dtype in (np.float32, np.float64, np.float64):
        sc.separable_filter(FakeCupyArray((40, 50), dtype), [taps, taps])
    assert compiled == [
        ("float32", _cuda_kernels.FUSED_BOUNDS),
        ("float64", _cuda_kernels.FUSED_BOUNDS),
        ("float64", _cuda_kernels.FUSED_ROOMIER_BOUNDS),
    ]
    assert stubbed.count("launch") == 3


@pytest.mark.parametrize("name", _CHANNEL_WORKLOADS)
def test_kernels_run_compiled_for_the_types_they_are_launched_with(name, stubbed, monkeypatch):
    """A plan seen with another input type compiles its kernel again (the generated kernels
    are keyed by their argument types, not only by the plan's constants)."""
    from napari_sepconv import _cuda

    compiled, launched = [], []

    def compile_(pyfunc, argtypes, bounds=None):
        compiled.append(argtypes)
        return _cuda._Compiled(None, object())

    _cuda._compile = compile_  # restored with the fixture's monkeypatch of _compile
    monkeypatch.setattr(_cuda, "launch_log", launched)
    call = _workloads()[name]
    for dtype in (np.float32, np.uint8, np.float32):  # float32 out from both
        call(FakeCupyArray((64, 80, 16), dtype), dtype=np.float32)
    assert {str(types[0].dtype) for _, _, types in launched} >= {"uint8", "float32"}
    assert all(types in compiled for _, _, types in launched)


def test_a_kernel_without_weights_clears_the_output_on_the_callers_stream(stubbed, monkeypatch):
    """filter2d of a kernel whose weights are all within an epsilon of zero gives zeros: one
    output from the caller's pool, cleared by a memset queued on its stream; no kernel."""
    import napari_sepconv as sc
    from napari_sepconv import _cuda

    cleared = []
    monkeypatch.setattr(_cuda, "_memset_zero", lambda ptr, nbytes, stream: cleared.append((nbytes, stream)))
    image = FakeCupyArray((64, 80), np.float32)
    out = sc.filter2d(image, np.full((3, 3), 1e-17))
    assert isinstance(out, FakeCupyArray) and out.shape == (64, 80)
    assert cleared == [(64 * 80 * 4, ("stream", STREAM))]
    assert stubbed.count("launch") == 0 and stubbed.count("cupy alloc") == 1, stubbed.events
    assert stubbed.count("numba alloc") == 0 and stubbed.count("sync") == 0, stubbed.events
