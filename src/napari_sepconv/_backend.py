"""The one place that picks where a filter runs: the CPU (Numba) or a CUDA GPU.

``'auto'`` runs on the GPU when the input is a device array (it has
``__cuda_array_interface__``) and otherwise on the default backend: the CPU,
unless :func:`set_backend` or the ``SEPCONV_BACKEND`` environment variable says
``'cuda'``. ``'auto'`` never fails because no GPU is usable; an explicit
``'cuda'`` raises :class:`BackendUnavailableError` saying why. Numba's CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``, for tests) runs an explicit ``'cuda'``
and device arrays, but ``'auto'`` never picks it for host arrays.

Public functions wrapped by :func:`like_input` return what they were given:
NumPy for host input (whichever backend ran), and the input's kind of GPU
array for GPU input (CuPy, PyTorch or Numba), never through the host.

Engines are imported on first use, so ``import napari_sepconv`` compiles
nothing and imports neither Numba's CUDA target nor the kernels.
"""

import functools
import importlib
import inspect
import os
import threading

import numpy as np

BACKENDS = ("auto", "cpu", "cuda")


class _Choice(threading.local):
    """Each thread's own backend choice (napari workers cannot change the GUI's); ``None``
    until the thread sets one (a class default: no failed attribute lookup per call)."""

    default = None


_chosen = _Choice()


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (no GPU, no driver, no ``numba-cuda``)."""


def _check_name(backend, name="backend"):
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"{name} must be one of {BACKENDS}, got {backend!r}")
    return backend


class _BackendChoice:
    """What :func:`set_backend` returns: usable as a context manager that restores the
    previous choice (of this thread) on exit."""

    def __init__(self, previous):
        self._previous = previous

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        _chosen.default = self._previous
        return False


def set_backend(backend):
    """Set the backend that ``backend='auto'`` uses for host (NumPy) arrays, in this thread.

    The choice is per thread (as ``numba.set_num_threads`` is), so a napari
    worker thread and the main thread cannot change each other's backend. It
    takes effect at once; used in a ``with`` statement it lasts until the
    block ends, as with ``scipy.fft.set_backend``.

    Parameters
    ----------
    backend : {'auto', 'cpu', 'cuda'}
        ``'auto'`` restores the default (the ``SEPCONV_BACKEND`` environment
        variable, else the CPU).

    Returns
    -------
    context manager
        Restores this thread's previous choice when its ``with`` block ends.

    Raises
    ------
    BackendUnavailableError
        For ``'cuda'`` where no GPU is usable.

    Examples
    --------
    >>> import napari_sepconv as sc
    >>> with sc.set_backend('cpu'):
    ...     sc.get_backend()
    'cpu'
    >>> _ = sc.set_backend('cpu')
    >>> sc.get_backend()
    'cpu'
    >>> _ = sc.set_backend('auto')
    """
    _check_name(backend)
    if backend == "cuda":
        cuda_unavailable_reason(raise_error=True)
    previous = _chosen.default
    _chosen.default = None if backend == "auto" else backend
    return _BackendChoice(previous)


def _environment_backend():
    """``SEPCONV_BACKEND`` as set now, read without ``os.environ``'s per-call key encoding
    (several times the cost of the rest of a small call's backend choice)."""
    data = getattr(os.environ, "_data", None)
    if data is None or _ENV_KEY is None:
        return os.environ.get("SEPCONV_BACKEND")
    value = data.get(_ENV_KEY)
    return None if value is None else os.environ.decodevalue(value)


try:
    _ENV_KEY = os.environ.encodekey("SEPCONV_BACKEND")
except AttributeError:  # an os.environ without its CPython internals
    _ENV_KEY = None


def get_backend():
    """The backend set for ``'auto'`` on host arrays in this thread: ``'cpu'`` or ``'cuda'``.

    This is the setting (``set_backend``, else ``SEPCONV_BACKEND``). Where it is ``'cuda'``
    and no GPU can run (:func:`cuda_unavailable_reason`), ``'auto'`` computes on the CPU.
    """
    chosen = _chosen.default
    if chosen is not None:
        return chosen
    env = _environment_backend()
    if env is None:
        return "cpu"
    env = env.strip().lower()
    if env in ("cpu", "cuda"):
        return env
    return "cpu"


def cuda_unavailable_reason(raise_error=False):
    """Why the CUDA backend cannot run here, or ``None`` when it can."""
    reason = None
    try:
        cuda_engine = importlib.import_module("napari_sepconv._cuda")
    except ImportError as exc:
        reason = (
            f"the CUDA backend could not be imported ({exc}); install it with "
            '`pip install "napari-sepconv[cuda]"` (numba-cuda with the CUDA 12 runtime)'
        )
    else:
        reason = cuda_engine.unavailable_reason()
    if reason and raise_error:
        raise BackendUnavailableError(reason)
    return reason


def available_backends():
    """The backends usable here, e.g. ``('cpu',)`` or ``('cpu', 'cuda')``.

    Examples
    --------
    >>> import napari_sepconv as sc
    >>> 'cpu' in sc.available_backends()
    True
    """
    return ("cpu", "cuda") if cuda_unavailable_reason() is None else ("cpu",)


def is_device_array(x):
    """True for GPU arrays: CuPy, Numba device arrays (real or simulated), torch CUDA tensors."""
    if type(x) is np.ndarray:
        return False
    return hasattr(x, "__cuda_array_interface__") or bool(getattr(x, "__cuda_ndarray__", False))


def resolve(backend, image):
    """``'cpu'`` or ``'cuda'``: where a call with this ``backend`` and input runs."""
    if type(backend) is not str or backend not in BACKENDS:
        _check_name(backend)
    if backend == "auto":
        if type(image) is np.ndarray and get_backend() == "cpu":  # the common case, first
            return "cpu"
        if is_device_array(image):
            return "cuda"
        if get_backend() == "cuda" and cuda_unavailable_reason() is None and not _simulated():
            return "cuda"
        return "cpu"
    if backend == "cpu":
        if is_device_array(image):
            raise ValueError(
                "backend='cpu' was given a GPU array; copy it to the host first or use backend='auto'"
            )
        return "cpu"
    cuda_unavailable_reason(raise_error=True)
    return "cuda"


def _simulated():
    return engine("cuda").simulated()


_engines = {}


def engine(name):
    """The engine module (``_engine.Engine``) of a resolved backend, imported on first use."""
    module = _engines.get(name)
    if module is None:
        module = _engines[name] = importlib.import_module(f"napari_sepconv._{name}")
    return module


_PLANNED_MODULES = frozenset({"napari_sepconv.edges", "napari_sepconv.separable", "napari_sepconv.channels"})


def like_input(func, planned=None):
    """Make ``func`` return results of the kind of array its image (``image`` or ``input``) is.

    GPU input (CuPy, PyTorch, anything with ``__cuda_array_interface__``) is
    handed to ``func`` as a Numba device array over the same memory, and the
    result goes back as the input's kind; host input gets NumPy results, also
    from the CUDA engine. Results that are already host arrays (an ``output``
    array filled in place, dask arrays) pass through. ``planned``: ``func`` only
    plans and executes (default: the functions of the planned modules), so it
    takes GPU input as the CUDA engine's light ``DeviceInput``.
    """
    params = list(inspect.signature(func).parameters)
    name = next(p for p in params if p in ("image", "input"))
    position = params.index(name)
    # scipy.ndimage's ``output``: a GPU array given there is filled (``_device_output``)
    output_at = params.index("output") if "output" in params else None
    # Functions that only plan and execute take GPU input as the CUDA engine's light
    # ``DeviceInput`` (no synchronisation, outputs from the caller's library); the others
    # get a Numba device array.
    light = func.__module__ in _PLANNED_MODULES if planned is None else planned

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        positional = len(args) > position
        image = args[position] if positional else kwargs.get(name)
        output = None
        if output_at is not None:
            output = args[output_at] if len(args) > output_at else kwargs.get("output")
            if not is_device_array(output):
                output = None
            elif not is_device_array(image):
                raise TypeError(
                    "output: a GPU array is filled from GPU input only; pass the input as a GPU "
                    "array, or a NumPy array or a dtype as output"
                )
        if is_device_array(image):
            cuda_unavailable_reason(raise_error=True)
            cuda_engine = engine("cuda")
            device = cuda_engine.as_input(image) if light else cuda_engine.as_device(image)
            if positional:
                args = args[:position] + (device,) + args[position + 1 :]
            else:
                kwargs[name] = device
            if output is not None:  # computed as its dtype, then copied into it
                args, kwargs = _device_output(cuda_engine, output, image, output_at, args, kwargs)
            scope = cuda_engine.call_scope(device)
            try:
                result = func(*args, **kwargs)
                if output is not None:
                    cuda_engine.copy_into(output, result)
                    return output
            finally:
                scope.close()
            return cuda_engine.like_input(result, image)
        result = func(*args, **kwargs)
        if type(result) is np.ndarray or not getattr(result, "__cuda_ndarray__", False):
            return result
        return engine("cuda").like_input(result, image)

    return wrapper


def _device_output(cuda_engine, output, image, output_at, args, kwargs):
    """``(args, kwargs)`` with the GPU array ``output`` replaced by its dtype, once checked:
    of ``image``'s shape, and C-contiguous (``fill_target``; the CUDA engine's ``copy_into``
    fills it)."""
    from ._validation import ScipyValueError

    shape, expected = tuple(output.shape), tuple(image.shape)
    if shape != expected:
        raise ScipyValueError(f"output has shape {shape}, expected {expected}")
    dtype = np.dtype(cuda_engine.fill_target(output, "output").dtype)
    if len(args) > output_at:
        return args[:output_at] + (dtype,) + args[output_at + 1 :], kwargs
    return args, {**kwargs, "output": dtype}


def apply_mask(out, mask):
    """``out *= mask`` on whichever side ``out`` lives (``mask`` is a host array)."""
    return engine("cpu" if isinstance(out, np.ndarray) else "cuda").apply_mask(out, mask)
