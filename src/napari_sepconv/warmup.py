"""Compile every CPU kernel family once, into the on-disk cache, before it is needed.

Numba compiles each kernel the first time it is called with new argument types
(seconds per filter family) and keeps the machine code in an on-disk cache,
from which later processes load it in a fraction of a second. This module fills
that cache on purpose::

    python -m napari_sepconv.warmup            # every family, in parallel processes
    python -m napari_sepconv.warmup --list     # the families
    python -m napari_sepconv.warmup --where    # print the cache folder and exit

The cache lives in ``<base>/napari-sepconv/<version>-<source hash>``, where
``<base>`` is ``NUMBA_CACHE_DIR`` when it is set, else the user's cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows). The folder name changes with the package
version and with the kernel sources, so a cache written by one version is never
read by another. A warm folder that cannot be written (shared read-only) is
read; where no folder can be written or read, kernels are compiled in each
process and not cached.

Programs that want the cache warm without waiting (the napari plugin, a batch
job) call :func:`start_background`, which returns at once. Importing this
module imports neither Numba nor the kernels.
"""

import functools
import hashlib
import os
import sys
import time
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent

# Sources compiled into the CPU kernels: a change to any of them is a new cache.
_KERNEL_SOURCES = (
    "_cpu_kernels.py",
    "_boundary.py",
    "_sweeps.py",
    "_vector_sweeps.py",
    "_streaming.py",
    "_lane_sums.py",
    "_views.py",
    "_line_kernels.py",
    "_separable_kernels.py",
    "_edge_kernels.py",
    "_direct_kernels.py",
    "_depthwise_kernels.py",
    "_uniform_kernels.py",
    "_cast_kernels.py",
    "_narrow_kernels.py",
    "_separable_quick.py",
    "_line_quick.py",
    "_direct_quick.py",
    "_edge_quick.py",
    "_depthwise_quick.py",
    "_uniform_quick.py",
    "_helper_calls.py",
    "_workers.py",
)


def _user_cache_base():
    if sys.platform == "win32":
        return os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Caches")
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


@functools.cache
def _source_key():
    digest = hashlib.sha256()
    for name in _KERNEL_SOURCES:
        try:
            digest.update((_PACKAGE / name).read_bytes())
        except OSError:  # a frozen or zipped install: the version alone keys the cache
            pass
    return digest.hexdigest()[:12]


def cache_dir():
    """The folder of this version's compiled kernels (it may not exist yet).

    Returns
    -------
    str
        ``<base>/napari-sepconv/<version>-<source hash>``; see the module docstring.
    """
    from . import __version__

    base = os.environ.get("NUMBA_CACHE_DIR") or _user_cache_base()
    return os.path.join(base, "napari-sepconv", f"{__version__}-{_source_key()}")


def is_warm():
    """Whether a complete warm-up of this version has filled :func:`cache_dir`."""
    return os.path.exists(os.path.join(cache_dir(), _MARKER))


_MARKER = "warmup-complete"


# --------------------------------------------------------------------------
# The families: public calls on small images that compile what users (and the
# tests) call. Kernels are compiled for float32 and float64 outputs, each reading
# its output's type and, for some, uint8 (other types are converted first).
# --------------------------------------------------------------------------


def _images(np, ndim=2):
    rng = np.random.default_rng(0)
    shape = (3, 24, 20)[-ndim:]
    x = rng.random(shape)
    return {
        "float32": x.astype(np.float32),
        "float64": x,
        "uint8": (x * 255).astype(np.uint8),
    }


def _edge_calls(sc, np, names, ndim=2):
    for name in names:
        func = getattr(sc, name)
        for x in _images(np, ndim).values():
            func(x)
            func(x, dtype=np.float32 if x.dtype == np.float64 else np.float64)
        func(_images(np, ndim)["uint8"], dtype=np.float32)


def _edges_3x3(sc, np):
    _edge_calls(sc, np, ["sobel"])


def _edges_farid(sc, np):
    _edge_calls(sc, np, ["farid"])


def _edges_directional(sc, np):
    _edge_calls(sc, np, ["sobel_h", "farid_v"])


def _edges_3d(sc, np):
    _edge_calls(sc, np, ["sobel"], ndim=3)
    # an RGB image as a volume: filtered with its colours in front (``_narrow_tail``)
    for dtype in (np.float32, np.float64):
        sc.sobel(np.zeros((40, 40, 3), dtype))


def _correlate1d(sc, np):
    w = np.array([0.25, 0.5, 1.0, 0.5, 0.25])
    for ndim in (2, 3):
        for x in _images(np, ndim).values():
            for axis in range(ndim):
                sc.correlate1d(x, w, axis=axis)
                sc.correlate1d(x, w, axis=axis, mode="constant")
            sc.correlate1d(x, w[:4], axis=-1, output=np.float32)


def _separable(sc, np):
    w = np.array([0.25, 0.5, 1.0, 0.5, 0.25])
    for ndim in (2, 3):
        for x in _images(np, ndim).values():
            sc.separable_filter(x, [w] * ndim)
            sc.separable_filter(x, [w] * ndim, dtype=np.float32)
    for x in _images(np).values():  # columns: filtered with their short axis in front
        column = np.zeros((2048, 2), x.dtype)
        sc.separable_filter(column, [w, w])
        sc.separable_filter(column, [w, w], dtype=np.float32)
    # the parallel conversion of large images to the kernels' type (small ones take NumPy's)
    from napari_sepconv import _cast_kernels, _cpu

    for src, dtype in _cpu.PARALLEL_CONVERSIONS:
        _cast_kernels.to_float(np.zeros(4, src), np.empty(4, dtype))


def _filter2d(sc, np):
    rng = np.random.default_rng(1)
    rank2 = np.outer([1.0, 2.0, 3.0], [1.0, 0.0, -1.0]) + np.outer([1.0, -1.0, 1.0], [2.0, 1.0, 2.0])
    full = rng.standard_normal((5, 5))
    for x in _images(np).values():
        sc.filter2d(x, rank2)
        sc.filter2d(x, full)
        sc.filter2d(x, full, dtype=np.float32)


def _channels(sc, np):
    rng = np.random.default_rng(2)
    for x in _images(np, 3).values():
        chan = np.moveaxis(x, 0, -1)  # (24, 20, 3)
        sc.depthwise_filter(chan, rng.standard_normal((3, 3, 3)))
        sc.depthwise_filter(chan, rng.standard_normal((3, 7, 7)))
        sc.depthwise_filter(chan, rng.standard_normal((3, 2, 3, 3)))
        rank1 = np.einsum("ci,cj->cij", rng.standard_normal((3, 5)), rng.standard_normal((3, 5)))
        sc.depthwise_filter(chan, rank1)
        sc.depthwise_separable_filter(chan, rng.standard_normal((3, 3, 3)), rng.standard_normal((4, 3)))
        sc.depthwise_filter(chan, rng.standard_normal((3, 3, 3)), dtype=np.float32)


def _smoothing(sc, np):
    if not hasattr(sc, "gaussian"):
        return
    for ndim in (2, 3):
        for x in _images(np, ndim).values():
            sc.gaussian(x, sigma=1.0)
            sc.gaussian_filter(x, sigma=1.0)
            sc.uniform_filter(x, size=3)
            sc.gaussian_gradient_magnitude(x, sigma=1.0)
            sc.gaussian_laplace(x, sigma=1.0)
    # RGB images as volumes: filtered with their colours in front (``_narrow_tail``)
    for x in _images(np, 3).values():
        rgb = np.zeros((40, 40, 3), x.dtype)
        sc.gaussian_filter(rgb, sigma=1.0)
        sc.uniform_filter(rgb, size=3)
        sc.uniform_filter(rgb, size=3, output=np.float64)
        sc.gaussian_gradient_magnitude(rgb, sigma=1.0)
        sc.gaussian_laplace(rgb, sigma=1.0)


FAMILIES = {
    "edges 3x3 (sobel, scharr, prewitt)": _edges_3x3,
    "edges 5x5 (farid)": _edges_farid,
    "directional edges (*_h, *_v)": _edges_directional,
    "3-D edge magnitudes": _edges_3d,
    "correlate1d, convolve1d": _correlate1d,
    "separable_filter": _separable,
    "filter2d": _filter2d,
    "channel filters": _channels,
    "smoothing": _smoothing,
}

# The families that compile longest, handed to the parallel processes first (the others
# follow in the order of ``FAMILIES``): started last, the channel filters alone would
# keep one process busy well after the other had finished.
_LONGEST_FIRST = ("channel filters", "edges 5x5 (farid)", "directional edges (*_h, *_v)")


def compile_family(name):
    """Compile one family into the cache in this process; return the seconds it took."""
    import numpy as np

    import napari_sepconv as sc

    start = time.perf_counter()
    FAMILIES[name](sc, np)
    return time.perf_counter() - start


def _init_worker():
    # Compiling is single-threaded; the tiny calls need no thread pool of their own.
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    # The fast kernels themselves, compiled here, not their quick twins (``_tiers``).
    os.environ["SEPCONV_QUICK_KERNELS"] = "0"
    # Ctrl-C reaches the whole process group: the parent stops the workers, which
    # would otherwise each print a traceback.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Progress:
    """tqdm's bar where it is installed, else one line per finished family."""

    def __init__(self, total, quiet, stream, desc="compiling"):
        self._bar = None
        self._done = 0
        self._total = total
        self._quiet = quiet
        self._stream = stream
        if not quiet:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=desc, unit="family", file=stream)

    def update(self, name, seconds, error=None):
        self._done += 1
        what = f"{name}: failed ({error})" if error else f"{name} ({seconds:.1f} s)"
        if self._quiet and not error:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(what, refresh=False)
            self._bar.update(1)
        else:
            print(f"[{self._done}/{self._total}] {what}", file=self._stream, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()


def warm(families=None, jobs=None, quiet=False, stream=None):
    """Compile ``families`` (default: all) into the cache, in ``jobs`` parallel processes.

    Parameters
    ----------
    families : sequence of str, optional
        Names from :data:`FAMILIES`; default every family.
    jobs : int, optional
        Parallel processes; default the number of CPUs (at most the number of families).
    quiet : bool, optional
        Print errors only.
    stream : file, optional
        Where progress goes (default ``sys.stderr``).

    Returns
    -------
    dict
        Seconds per family; a family that failed maps to its error message.
    """
    import concurrent.futures
    import multiprocessing

    stream = sys.stderr if stream is None else stream
    names = list(FAMILIES) if families is None else list(families)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown families {unknown}; known: {list(FAMILIES)}")
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(names)))
    names.sort(key=lambda name: _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST))
    progress = _Progress(len(names), quiet, stream, "checking" if is_warm() else "compiling")
    results = {}
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker)
    try:
        futures = {pool.submit(compile_family, name): name for name in names}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                results[name] = future.result()
            except Exception as exc:  # noqa: BLE001 - reported, and the others go on
                results[name] = f"{type(exc).__name__}: {exc}"
                progress.update(name, 0.0, results[name])
            else:
                progress.update(name, results[name])
    except BaseException:  # Ctrl-C: stop the compiles under way, start no other
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        progress.close()
    pool.shutdown()
    if families is None and all(isinstance(v, float) for v in results.values()):
        try:
            Path(cache_dir(), _MARKER).write_text(
                "".join(f"{name}\t{seconds:.1f}\n" for name, seconds in results.items())
            )
        except OSError:
            pass
    return results


def start_background(families=None, jobs=None, force=False):
    """Start :func:`warm` in a separate, quiet process and return at once.

    For programs that want the kernels ready before the user asks for them
    (the napari plugin on its first load, a long batch job). The process
    writes into the same cache as this one reads; a kernel a foreground call
    needs meanwhile is compiled there as usual.

    Parameters
    ----------
    families : sequence of str, optional
        Names from :data:`FAMILIES`; default every family.
    jobs : int, optional
        Parallel processes (default: the number of CPUs).
    force : bool, optional
        Start even when :func:`is_warm` says the cache is complete.

    Returns
    -------
    subprocess.Popen or None
        The warm-up process (``poll()`` is not ``None`` once it has finished;
        its return code is 0 when every family compiled), or ``None`` when the
        cache was already warm.

    Examples
    --------
    >>> from napari_sepconv import warmup
    >>> proc = warmup.start_background()  # doctest: +SKIP
    >>> proc is None or proc.wait() == 0  # doctest: +SKIP
    True
    """
    import subprocess

    if not force and families is None and is_warm():
        return None
    argv = [sys.executable, "-m", "napari_sepconv.warmup", "--quiet"]
    if jobs:
        argv += ["--jobs", str(jobs)]
    for name in families or ():
        argv += ["--family", name]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main(argv=None, prog="python -m napari_sepconv.warmup"):
    """``python -m napari_sepconv.warmup``: compile every family into the on-disk cache.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``); see ``--help``.
    prog : str, optional
        The command's name in its usage and errors (``sepconv warmup`` from the CLI).

    Returns
    -------
    int
        0 when every family compiled, 1 otherwise.
    """
    import argparse  # here: every first call imports this module (``cache_dir``)

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compile napari-sepconv's CPU kernels into the on-disk cache, once per "
        "version, so that no later call waits for a compile.",
    )
    parser.add_argument(
        "-j", "--jobs", type=int, default=None, help="parallel processes (default: the number of CPUs)"
    )
    parser.add_argument(
        "--family", action="append", metavar="NAME", help="compile only this family (repeatable; see --list)"
    )
    parser.add_argument("--list", action="store_true", help="list the families and exit")
    parser.add_argument("--where", action="store_true", help="print the cache folder and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    args = parser.parse_args(argv)
    unknown = [name for name in args.family or () if name not in FAMILIES]
    if unknown:
        parser.error(f"unknown --family {', '.join(unknown)} (--list shows the families)")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.list:
        print("\n".join(FAMILIES))
        return 0
    where = cache_dir()
    if args.where:
        print(where)
        return 0
    if not _writable(where):
        if is_warm():
            print(
                f"napari-sepconv's kernels in {where} are warm (read-only); nothing to compile.",
                file=sys.stderr,
            )
            return 0
        print(
            f"napari-sepconv: the kernel cache folder {where} cannot be written; kernels "
            "will be compiled in every process. Set NUMBA_CACHE_DIR to a writable folder.",
            file=sys.stderr,
        )
        return 1
    was_warm = is_warm()
    if not args.quiet:
        print(
            f"Checking napari-sepconv's compiled kernels in {where} (already warm) ..."
            if was_warm
            else f"Compiling napari-sepconv's kernels into {where} (first time only) ...",
            file=sys.stderr,
            flush=True,
        )
    start = time.perf_counter()
    try:
        results = warm(args.family, args.jobs, args.quiet)
    except KeyboardInterrupt:
        print(
            f"\n{prog}: interrupted; the families that finished are cached, run it again for the rest",
            file=sys.stderr,
        )
        return 130
    failed = [name for name, value in results.items() if not isinstance(value, float)]
    if not args.quiet:
        print(
            f"{len(results) - len(failed)} of {len(results)} families "
            f"{'ready (loaded from the cache)' if was_warm else 'compiled'} in "
            f"{time.perf_counter() - start:.0f} s; cache: {where}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def finish_background_compiles(timeout=None):
    """Wait until the fast kernels this process is compiling in the background are ready.

    A first call whose kernel is not in the cache runs a quick twin of it where it has one
    (most kernels do), with the same values, while a background process compiles the fast one
    (see the README, *First run and the compile cache*); the call after that process has
    ended loads it.
    Call this before timing a function, as the examples do.

    Parameters
    ----------
    timeout : float, optional
        Seconds to wait for each compile at most; default until it ends.

    Returns
    -------
    bool
        Whether a compile was under way (the next call of that function loads the fast kernel).

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> from napari_sepconv import warmup
    >>> _ = sc.gaussian(np.ones((32, 32), np.float32), 2.0)  # compiles, if needed
    >>> if warmup.finish_background_compiles():
    ...     _ = sc.gaussian(np.ones((32, 32), np.float32), 2.0)  # loads the fast kernel
    """
    tiers = sys.modules.get("napari_sepconv._tiers")
    return tiers is not None and tiers.wait(timeout)


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
