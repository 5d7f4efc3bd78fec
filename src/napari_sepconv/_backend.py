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

import numpy as np

BACKENDS = ("auto", "cpu", "cuda")

_default = None


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (no GPU, no driver, no ``numba-cuda``)."""


def _check_name(backend, name="backend"):
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"{name} must be one of {BACKENDS}, got {backend!r}")
    return backend


def set_backend(backend):
    """Set the backend that ``backend='auto'`` uses for host (NumPy) arrays.

    Parameters
    ----------
    backend : {'auto', 'cpu', 'cuda'}
        ``'auto'`` restores the default (the ``SEPCONV_BACKEND`` environment
        variable, else the CPU).

    Raises
    ------
    BackendUnavailableError
        For ``'cuda'`` where no GPU is usable.

    Examples
    --------
    >>> import napari_sepconv as sc
    >>> sc.set_backend('cpu')
    >>> sc.get_backend()
    'cpu'
    >>> sc.set_backend('auto')
    """
    global _default
    _check_name(backend)
    if backend == "cuda":
        cuda_unavailable_reason(raise_error=True)
    _default = None if backend == "auto" else backend


def get_backend():
    """The backend ``'auto'`` uses for host arrays: ``'cpu'`` or ``'cuda'``."""
    if _default is not None:
        return _default
    env = os.environ.get("SEPCONV_BACKEND", "").strip().lower()
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
            "`pip install \"napari-sepconv[cuda]\"` (numba-cuda with the CUDA 12 runtime)"
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
    _check_name(backend)
    if backend == "cpu":
        if is_device_array(image):
            raise ValueError(
                "backend='cpu' was given a GPU array; copy it to the host first "
                "or use backend='auto'"
            )
        return "cpu"
    if backend == "cuda":
        cuda_unavailable_reason(raise_error=True)
        return "cuda"
    if is_device_array(image):
        return "cuda"
    if get_backend() == "cuda" and cuda_unavailable_reason() is None and not _simulated():
        return "cuda"
    return "cpu"


def _simulated():
    return engine("cuda").simulated()


def engine(name):
    """The kernel module of a resolved backend."""
    return importlib.import_module(f"napari_sepconv._{name}")


def like_input(func):
    """Make ``func`` return results of the kind of array its image (``image`` or ``input``) is.

    GPU input (CuPy, PyTorch, anything with ``__cuda_array_interface__``) is
    handed to ``func`` as a Numba device array over the same memory, and the
    result goes back as the input's kind; host input gets NumPy results, also
    from the CUDA engine. Results that are already host arrays (an ``output``
    array filled in place, dask arrays) pass through.
    """
    params = list(inspect.signature(func).parameters)
    name = next(p for p in params if p in ("image", "input"))
    position = params.index(name)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        positional = len(args) > position
        image = args[position] if positional else kwargs.get(name)
        if is_device_array(image):
            cuda_unavailable_reason(raise_error=True)
            device = engine("cuda").as_device(image)
            if positional:
                args = args[:position] + (device,) + args[position + 1:]
            else:
                kwargs[name] = device
        result = func(*args, **kwargs)
        if not getattr(result, "__cuda_ndarray__", False):
            return result
        return engine("cuda").like_input(result, image)

    return wrapper


def apply_mask(out, mask):
    """``out *= mask`` on whichever side ``out`` lives (``mask`` is a host array)."""
    if isinstance(out, np.ndarray):
        out *= mask
        return out
    return engine("cuda").apply_mask(out, mask)
