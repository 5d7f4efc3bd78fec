"""CPU kernels of the type conversions: scipy.ndimage's integer output casts, and the
conversion of an image to the float type a filter kernel reads, in parallel.

:mod:`._casting` defines the values (a float result truncated toward zero to a 32- or 64-bit
integer, an "indefinite" value where it does not fit, then the integer's low bits) with NumPy,
one full-size temporary per step. :func:`to_integer` gives the same values in one parallel
pass; the CPU engine uses it for every output type but ``uint64`` (see ``_casting``).
:func:`to_float` converts a large image for a kernel compiled for another input type
(``_cpu_kernels.kernel_input``); NumPy's conversion runs on one thread. Both are called
from Python and run their kernel through ``_cpu.run``; the kernels start their workers on
the threading layer (``_workers``).

This module imports Numba and is imported on first use only.
"""

import numpy as np

from ._cpu_kernels import _imin, _jit, _Kernel, _next_task, _task_queue
from ._tiers import PythonTwin
from ._workers import worker_helper, worker_launch

# Elements per task.
CHUNK = 1 << 16


def _to_integer_worker(worker, state):
    """Worker ``worker``'s tasks of :func:`to_integer` (``_workers``)."""
    values, bound, indefinite, wide32, truth, out, queue, n_tasks = state
    n = values.size
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        for i in range(task * CHUNK, _imin(n, (task + 1) * CHUNK)):
            v = np.trunc(np.float64(values[i]))
            fits = v >= -bound and v < bound
            safe = v if fits else 0.0
            if wide32:
                wide = np.int64(np.int32(safe)) if fits else indefinite
            else:
                wide = np.int64(safe) if fits else indefinite
            if truth:
                out[i] = 1 if (wide & 255) != 0 else 0
            else:
                out[i] = wide
        task = _next_task(queue, worker, n_tasks)


_to_integer_worker = worker_helper(_to_integer_worker)
_run_to_integer = worker_launch(_to_integer_worker)


def _to_integer(values, bound, indefinite, wide32, truth, out, helpers, missing):
    n_tasks = (values.size + CHUNK - 1) // CHUNK
    queue = _task_queue(n_tasks)
    _run_to_integer(helpers, missing, queue, (values, bound, indefinite, wide32, truth, out, queue, n_tasks))


# the input (``values``) is read as it is: ``_Kernel``'s output argument is the input itself
to_integer_kernel = _Kernel(_to_integer, 0, calls_helper=True)


def _to_integer_numpy(values, bound, indefinite, wide32, truth, out, helpers=None, missing=None):
    """:func:`to_integer`'s values by NumPy's steps (``_casting._convert``, which defines them),
    for the seconds until its kernel is compiled (``_tiers``): nothing to compile."""
    from ._casting import _convert

    np.copyto(out, _convert(values, np.dtype(np.bool_) if truth else out.dtype), casting="unsafe")


to_integer_quick = PythonTwin(_to_integer_numpy, 0)


def to_integer(values, bound, indefinite, wide32, truth, out):
    """``out[i]`` = ``trunc(values[i])`` as an integer of ``-bound <= v < bound`` (else
    ``indefinite``), stored by its low bits; with ``truth``, 1 where its low byte is not 0.

    ``values`` and ``out`` are 1-D and contiguous; ``wide32`` says ``bound`` is ``2**31``
    (the conversion then goes through int32, which vectorises). Tasks of :data:`CHUNK`
    elements run on every thread set (``_cpu.run``); until the kernel is compiled, a first
    call takes NumPy's steps (``to_integer_quick``) while it compiles in the background.
    """
    from ._cpu import _tiered, run

    run(_tiered("to_integer"), values, bound, indefinite, wide32, truth, out, taps=1)


def _to_float_worker(worker, state):
    """Worker ``worker``'s tasks of :func:`to_float` (``_workers``)."""
    values, out, queue, n_tasks = state
    n = values.size
    t = out.dtype.type
    task = _next_task(queue, worker, n_tasks)
    while task < n_tasks:
        first = task * CHUNK
        src = values[first : _imin(n, first + CHUNK)]
        dst = out[first : _imin(n, first + CHUNK)]
        for i in range(src.size):
            dst[i] = t(src[i])
        task = _next_task(queue, worker, n_tasks)


_to_float_worker = worker_helper(_to_float_worker)
_run_to_float = worker_launch(_to_float_worker)


@_jit
def _to_float(values, out, helpers, missing):
    n_tasks = (values.size + CHUNK - 1) // CHUNK
    queue = _task_queue(n_tasks)
    _run_to_float(helpers, missing, queue, (values, out, queue, n_tasks))


def to_float(values, out):
    """``out[i]`` = ``values[i]`` converted to ``out``'s float type (rounded once, as NumPy's
    ``astype`` rounds it); both 1-D and contiguous. Tasks of :data:`CHUNK` elements run on
    every thread set (``_cpu.run``)."""
    from ._cpu import run

    run(_to_float, values, out, taps=1, calls_helper=True)
