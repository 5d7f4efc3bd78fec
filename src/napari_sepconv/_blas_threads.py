"""BLAS on the calling thread while a call alternates it with the kernels' threads.

``depthwise_separable_filter`` runs, band by band, a kernel on Numba's threads (the
depthwise step) and a NumPy matmul on the BLAS library's threads (the channel mixing).
Each pool's threads keep spinning for a while after their work, waiting for more, and
take the cores from the other pool: on two cores the demo's call took 16 ms, and 6.2 ms
with the BLAS on one thread. :func:`one_blas_thread` limits the BLAS libraries to one
thread (``threadpoolctl``) for the length of such a call, then restores their limits.

OpenBLAS's limit is process-wide, and ``threadpoolctl`` lets one Python thread at a time
change it. So one call at a time sets it, the first that finds it unset, and restores
it when it ends; a call that runs beside that one in another thread changes nothing
(it may multiply on several threads once the first has ended). No call leaves the limit
changed, and none records another call's limit as the one to restore. The values do
not change either: a matrix product computes each output from the whole of its row on
one thread, whatever the thread count. Without ``threadpoolctl`` nothing is limited.
"""

import contextlib
import threading

_controller = None  # the BLAS libraries of the process, found once
_lock = threading.Lock()
_limited = False  # whether a call has set the limit and not yet restored it


def _blas_controller():
    """``threadpoolctl``'s controller of the loaded libraries (found once), or None."""
    global _controller
    if _controller is None:
        try:
            import threadpoolctl
        except ImportError:
            return None
        _controller = threadpoolctl.ThreadpoolController()
    return _controller


@contextlib.contextmanager
def one_blas_thread():
    """Run the body with the BLAS libraries on one thread (see the module's text).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_sepconv._blas_threads import one_blas_thread
    >>> a = np.arange(12.0).reshape(4, 3)
    >>> with one_blas_thread():
    ...     product = a @ a.T
    >>> bool((product == a @ a.T).all())
    True
    """
    global _limited
    limiter = None
    with _lock:
        controller = _blas_controller()
        if controller is not None and not _limited:
            limiter = controller.limit(limits=1, user_api="blas")
            _limited = True
    try:
        yield
    finally:
        if limiter is not None:
            with _lock:
                limiter.restore_original_limits()
                _limited = False
