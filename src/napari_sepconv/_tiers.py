"""Kernels in two tiers: a quick one for a first call, the fast one once it is compiled.

A cold compile of the fused separable kernel (``_separable_kernels``) takes 6 to 9 s on a
2-core machine: its unrolled sweeps are most of the code Numba types and LLVM optimises. Its
quick twin (``_separable_quick``) gives the same values bit for bit from a fraction of the
code: it compiles in about a quarter of the time and runs on the calling thread, up to 4 times
slower. The 1-D passes (``_line_quick``), the direct 2-D kernel (``_direct_quick``), the
depthwise kernels (``_depthwise_quick``) and the running sums (``_uniform_quick``) have twins
of the same kind, which compile in a quarter to half their fast kernels' time; the CPU engine
names every pair (``_cpu._TWINS``). A
:class:`TieredKernel` pairs them. For a call whose argument types the fast kernel has neither
compiled in this process nor in the on-disk cache, the call runs the quick kernel, and a
background process compiles the fast one into the cache (``python -m napari_sepconv._tiers``,
at a lower priority, one at a time per kernel and types on a machine). The first call after
that process has ended loads the fast kernel, and later calls run it. The background process
gets its order (what to compile) once this process has compiled nothing for a moment
(:class:`_Orders`): a call that compiles several twins compiles them all before a background
compile runs beside them.

Where the hand-over cannot work, a call compiles the fast kernel itself, as before: the
environment variable ``SEPCONV_QUICK_KERNELS=0`` (the warm-up and the benchmarks set it),
no writable cache folder, a frozen application (no Python to start), or a background process
that could not start. With ``SEPCONV_QUICK_KERNELS=0`` it takes the background compiles'
lock first, so that a warm-up worker and a background process (the napari plugin starts
both) do not compile the same kernel at once: the second loads it from the cache. A
background compile that leaves no kernel in the cache makes the process compile the fast one
itself, with a warning. A background process ends as soon as its cache folder is removed (a
throwaway ``NUMBA_CACHE_DIR`` deleted by its owner, after its process has ended), so that it
does not write the folder again; a process that still needs the kernel then starts another.

This module imports Numba and is imported on first use only (by ``_cpu``).
"""

import atexit
import hashlib
import importlib
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings

ENV = "SEPCONV_QUICK_KERNELS"


def enabled():
    """Whether a call may run a quick kernel while the fast one compiles elsewhere
    (``SEPCONV_QUICK_KERNELS``: anything but ``0``, ``false``, ``no`` or ``off``; default on)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class TieredKernel:
    """A fast ``_cpu_kernels._Kernel`` and its quick twin (the same arguments and values),
    taken wherever a ``_Kernel`` is: :meth:`dispatcher_for` picks the one a call runs.

    ``fast_name`` is ``"module:attribute"`` of the fast kernel, which the background
    process imports.
    """

    def __init__(self, fast, quick, fast_name):
        self.fast = fast
        self.quick = quick
        self.fast_name = fast_name
        self.out_arg = fast.out_arg
        self.takes_threads = fast.takes_threads
        self.calls_helper = fast.calls_helper
        self.__name__ = fast.__name__
        self.__doc__ = fast.__doc__
        # keys: (input dtype, output dtype, whether the input is writable), what decides the
        # kernels' signature
        self._settled = {}  # key -> the dispatcher calls run
        self._pending = {}  # key -> (signature, background process)
        self._lock = threading.Lock()
        _kernels.append(self)

    def inputs(self, args, convert=None):
        return self.fast.inputs(args, convert)

    def dispatcher_for(self, args):
        """The dispatcher to call with ``args`` (without the arguments ``_cpu.run`` adds after
        them: the table of helpers, the missing key, the thread count)."""
        key = (args[0].dtype, args[self.out_arg].dtype, args[0].flags.writeable)
        chosen = self._settled.get(key)
        if chosen is not None:
            return chosen
        with self._lock:
            return self._choose(key, args)

    def _choose(self, key, args):
        fast = self.fast.dispatcher
        pending = self._pending.get(key)
        if pending is None:
            signature = _signature(self, args)
            if _compiled_or_cached(fast, signature) or not _can_hand_over(fast):
                return self._settle(key, fast)
            if not enabled():  # compiled here, after any other process compiling it (_compile)
                _compile(fast, self.fast_name, signature)
                return self._settle(key, fast)
            # the quick kernel first, alone: two compiles at once on the two threads of one
            # core took the quick one 10-20 % longer
            self.quick.prepare(signature)
            process = _start(self.fast_name, signature)
            if process is None:
                return self._settle(key, fast)
            self._pending[key] = pending = (signature, process)
        signature, process = pending
        code = process.poll()
        if code is None:
            return self.quick.dispatcher
        del self._pending[key]
        if _compiled_or_cached(fast, signature):
            return self._settle(key, fast)
        if code == FOLDER_REMOVED:  # the cache folder went while it compiled: start again
            return self._choose(key, args)
        warnings.warn(
            f"napari-sepconv: the background compile of {self.__name__} left no kernel in the cache "
            f"(exit code {code}); compiling it in this process instead",
            RuntimeWarning,
            stacklevel=4,
        )
        _compile(fast, self.fast_name, signature)
        return self._settle(key, fast)

    def _settle(self, key, dispatcher):
        self._settled[key] = dispatcher
        return dispatcher

    def wait(self, timeout=None):
        """Wait for this kernel's background compiles to end (``timeout`` seconds each at most);
        whether one was still under way."""
        running = [process for _, process in list(self._pending.values()) if process.poll() is None]
        for process in running:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return bool(running)


_kernels = []  # every TieredKernel made


class PythonTwin:
    """A quick twin in Python, ``func`` with the fast kernel's arguments (``out_arg``: the
    position of its output), which compiles nothing of its own: NumPy's steps, or another
    twin called on a reshaped copy."""

    def __init__(self, func, out_arg):
        self.dispatcher = func
        self.out_arg = out_arg

    def prepare(self, signature):
        """Nothing to compile before a call."""


def wait(timeout=None):
    """Wait for the background compiles started by this process (``timeout`` seconds each
    at most): the next call of each kernel then loads the fast one. Whether one was under way."""
    _orders.send_all()
    return any([kernel.wait(timeout) for kernel in _kernels])


QUIET_S = 0.2
"""Seconds without a compile in this process before a background process gets its order."""


class _Orders:
    """The orders of the background processes (what each compiles), held back while this
    process compiles.

    One call may compile several twins (a Gaussian of an integer image: a pass along each
    axis). A background compile that started after the first twin ran beside the others, and
    on a 2-core machine made the call 0.3-1 s longer (its wall time over its CPU time). So a
    background process starts at once but waits for its order on its standard input (idle),
    and the order is sent once this process has compiled nothing for :data:`QUIET_S` (Numba's
    ``numba:compile`` events, by a thread of its own), when :func:`wait` is called, and at
    exit, so that the compile goes on after a script that ends at once.
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._held = []  # (background process, its order)
        self._compiling = 0  # compiles under way in this process, helpers' included
        self._quiet_since = time.monotonic()
        self._thread = None

    def hold(self, process, order):
        """Send ``order`` (bytes) to ``process`` once this process is quiet."""
        with self._changed:
            if self._thread is None:
                _listen_to_compiles()
                self._thread = threading.Thread(
                    target=self._send_when_quiet, name="sepconv-orders", daemon=True
                )
                self._thread.start()
            self._held.append((process, order))
            self._quiet_since = time.monotonic()  # (a twin was compiled just now)
            self._changed.notify_all()

    def compile_started(self):
        with self._changed:
            self._compiling += 1

    def compile_ended(self):
        with self._changed:
            self._compiling = max(self._compiling - 1, 0)
            self._quiet_since = time.monotonic()
            self._changed.notify_all()

    def send_all(self):
        """Send every order held, now."""
        with self._changed:
            held, self._held = self._held, []
        _send(held)

    def _send_when_quiet(self):
        changed = self._changed  # ``forget`` makes another, and a thread of its own for it
        while True:
            with changed:
                while True:
                    if self._changed is not changed:
                        return
                    left = QUIET_S - (time.monotonic() - self._quiet_since)
                    if self._held and not self._compiling and left <= 0:
                        break
                    changed.wait(left if self._held and not self._compiling else None)
                held, self._held = self._held, []
            _send(held)

    def forget(self):
        """In a forked child: the parent's orders are the parent's to send; the child closes
        its copies of their pipes (a background process reads until every copy is closed)."""
        for process, _ in self._held:
            try:
                process.stdin.close()
            except OSError:
                pass
        changed, thread = self._changed, self._thread
        if thread is not None and thread.is_alive():  # this process's own thread: wake it to end
            with changed:
                self.__init__()
                changed.notify_all()
        else:  # a forked child: the parent's thread is not here, and its lock may be held
            self.__init__()


def _send(held):
    for process, order in held:
        try:
            with process.stdin:
                process.stdin.write(order)
        except (OSError, ValueError):  # it ended before reading: its exit code says so
            pass


_listening = []  # the listener, once registered (a forked child keeps its parent's)


def _listen_to_compiles():
    """Tell :data:`_orders` when Numba starts and ends a compile in this process, and send
    the orders still held at exit."""
    if _listening:
        return
    from numba.core import event

    class Listener(event.Listener):
        def on_start(self, _):
            _orders.compile_started()

        def on_end(self, _):
            _orders.compile_ended()

    _listening.append(Listener())
    event.register("numba:compile", _listening[0])
    atexit.register(lambda: _orders.send_all())


_orders = _Orders()


def _after_fork_in_child():
    """A forked child waits for none of its parent's background processes: it forgets them
    (its next call chooses again, and may start a background compile of its own, which waits
    for the parent's under the lock) and gets locks of its own."""
    for kernel in _kernels:
        kernel._pending = {}
        kernel._lock = threading.Lock()
    _orders.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _signature(kernel, args):
    """The fast kernel's argument types for ``args`` and what ``_cpu.run`` adds after them."""
    import numpy as np

    from . import _helper_calls
    from ._cpu_kernels import _argument_type

    extra = (_helper_calls.table(), np.zeros(1, np.int64))
    if kernel.takes_threads:
        extra += (0,)
    return tuple(_argument_type(a) for a in (*args, *extra))


def _compiled_or_cached(dispatcher, signature):
    """Whether ``dispatcher`` has code for ``signature``: compiled in this process, or loaded
    now from the on-disk cache (as ``Dispatcher.compile`` loads it), never compiled here."""
    from numba.core.compiler_lock import global_compiler_lock

    with global_compiler_lock:
        if signature in dispatcher.overloads:
            return True
        compiled = dispatcher._cache.load_overload(signature, dispatcher.targetctx)
        if compiled is None:
            return False
        dispatcher._cache_hits[signature] += 1
        dispatcher.targetctx.insert_user_function(compiled.entry_point, compiled.fndesc, [compiled.library])
        dispatcher.add_overload(compiled)
        return True


def _can_hand_over(dispatcher):
    """Whether a background process can compile ``dispatcher`` into a cache this one reads."""
    from ._cpu_kernels import _VersionedCache
    from .warmup import _writable, cache_dir

    return (
        isinstance(dispatcher._cache, _VersionedCache)
        and not getattr(sys, "frozen", False)
        and _writable(cache_dir())
    )


def _start(fast_name, signature):
    """The background process compiling ``fast_name`` for ``signature``, or None where it
    could not start."""
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "napari_sepconv._tiers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # this process's import path: the package may be importable only through it (a
            # source checkout added to sys.path, a plugin loader)
            env={**os.environ, ENV: "0", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            start_new_session=True,  # a Ctrl-C of this process does not cut a cache write short
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console on Windows
        )
    except (OSError, ValueError):  # no Python to start
        return None
    _orders.hold(process, pickle.dumps((fast_name, signature)))
    return process


def _compile(dispatcher, fast_name, signature):
    """Compile ``dispatcher`` (the kernel ``fast_name``) for ``signature`` into the cache, one
    process at a time per kernel and signature on a machine: a background compile, a warm-up
    worker or a process with the twins turned off waits for the one under way, then loads
    what it cached."""
    from ._cpu_kernels import _locked
    from .warmup import cache_dir

    digest = hashlib.blake2b(f"{fast_name}{signature}".encode(), digest_size=8).hexdigest()
    folder = os.path.join(cache_dir(), "background")
    os.makedirs(folder, exist_ok=True)
    with _locked(os.path.join(folder, f"{digest}.lock")):
        dispatcher.compile(signature)


FOLDER_REMOVED = 3
"""The background process's exit code when its cache folder was removed (:func:`main`)."""
NO_ORDER = 4
"""The background process's exit code when its caller ended without sending its order."""


def _stop_when_removed(folder, every=0.2):
    """End this process (:data:`FOLDER_REMOVED`) as soon as ``folder`` is gone (checked every
    ``every`` seconds, on a thread of its own): a throwaway cache deleted by its owner is not
    written again, and no CPU time goes on a kernel nobody may load. A folder made again under
    the same name is a cache like any other: the compile goes on into it."""

    def watch():
        while True:
            time.sleep(every)
            if _removed(folder):
                os._exit(FOLDER_REMOVED)  # what it wrote is gone with the folder; nothing to finish

    threading.Thread(target=watch, name="cache-folder-watch", daemon=True).start()


def _removed(folder):
    """Whether ``folder`` is known to be gone (not merely unreadable for a moment, as a
    network file system's can be)."""
    try:
        os.stat(folder)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def main():
    """The background process: compile the kernel and types read from standard input."""
    from .warmup import cache_dir

    if hasattr(os, "nice"):
        os.nice(10)
    order = sys.stdin.buffer.read()  # first, idle until the caller sends it (``_Orders``)
    if not order:  # the caller ended without sending it (killed)
        return NO_ORDER
    fast_name, signature = pickle.loads(order)
    folder = cache_dir()
    if _removed(folder):  # removed before this process started
        return FOLDER_REMOVED
    _stop_when_removed(folder)
    module, attribute = fast_name.split(":")
    kernel = getattr(importlib.import_module(module), attribute)
    _compile(kernel.dispatcher, fast_name, signature)
    from . import _helper_calls

    _helper_calls.write_records()
    return 0


if __name__ == "__main__":
    sys.exit(main())
