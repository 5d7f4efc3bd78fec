"""Timing machinery: thread control, interleaved rounds, bandwidth floor, value checks.

Every number the suite reports is a median over *interleaved* rounds: in each round every
contender of a workload runs once, in an order that rotates from round to round, so that a
noisy neighbour or a frequency change slows all contenders alike instead of one of them.
Ratios are medians of the per-round ratios peer/ours.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------
# Libraries: each optional, each with its own thread control.


def _try_import(name):
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # noqa: BLE001 - a broken optional peer is simply absent
        return None


class Libraries:
    """The installed peers and our package, imported once."""

    def __init__(self):
        # torch first: its OpenMP runtime then serves both it and Numba's omp layer.
        self.torch = _try_import("torch")
        self.cv2 = _try_import("cv2")
        self.scipy_ndimage = _try_import("scipy.ndimage")
        self.skimage_filters = _try_import("skimage.filters")
        self.numba = _try_import("numba")
        self.threadpoolctl = _try_import("threadpoolctl")
        self.ours = _try_import("napari_sepconv")
        self.ours_error = None
        if self.ours is None:
            try:
                import napari_sepconv  # noqa: F401
            except Exception as exc:  # noqa: BLE001
                self.ours_error = f"{type(exc).__name__}: {exc}"
        self._limits = None

    def versions(self) -> dict:
        import platform
        import sys

        out = {"python": sys.version.split()[0], "numpy": np.__version__}
        mods = {
            "napari_sepconv": self.ours,
            "numba": self.numba,
            "opencv": self.cv2,
            "scipy": _try_import("scipy"),
            "scikit-image": _try_import("skimage"),
            "torch": self.torch,
        }
        for name, mod in mods.items():
            out[name] = getattr(mod, "__version__", None) if mod is not None else None
        out["platform"] = platform.platform()
        return out

    def set_threads(self, n: int) -> None:
        """Give every library ``n`` threads (ours via Numba)."""
        if self.numba is not None:
            self.numba.set_num_threads(min(n, self.numba.config.NUMBA_NUM_THREADS))
        if self.cv2 is not None:
            self.cv2.setNumThreads(n)
        if self.torch is not None:
            self.torch.set_num_threads(n)
        if self.threadpoolctl is not None:
            # BLAS (NumPy matmul) and any OpenMP pool not covered above.
            self._limits = self.threadpoolctl.threadpool_limits(n)
        self.threads = n

    def blas_info(self) -> list:
        if self.threadpoolctl is None:
            return []
        keep = (
            "internal_api",
            "version",
            "architecture",
            "num_threads",
            "threading_layer",
        )
        return [
            {k: info.get(k) for k in keep} | {"lib": os.path.basename(info["filepath"])}
            for info in self.threadpoolctl.threadpool_info()
        ]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        import platform

        return platform.processor() or "unknown"
    info = {}
    for line in lines:
        if ":" in line:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    flags = info.get("flags", "").split()
    simd = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    return (
        f"{info.get('model name', 'unknown')} (family {info.get('cpu family', '?')}, "
        f"model {info.get('model', '?')}, {simd}), {os.cpu_count()} logical cores"
    )


# --------------------------------------------------------------------------------------------
# Memory bandwidth floor.

_pool: ThreadPoolExecutor | None = None


def _parallel_copy(dst: np.ndarray, src: np.ndarray, threads: int) -> None:
    global _pool
    if threads <= 1:
        np.copyto(dst, src)
        return
    if _pool is None or _pool._max_workers < threads:
        _pool = ThreadPoolExecutor(threads)
    pairs = zip(np.array_split(dst, threads), np.array_split(src, threads))
    list(_pool.map(lambda ds: np.copyto(ds[0], ds[1]), pairs))  # copyto releases the GIL


class Bandwidth:
    """Read+write bandwidth of a plain multi-threaded copy, for the machine summary.

    Destination pages are touched beforehand, so page faults are not part of it.
    """

    def __init__(self, repeats: int = 9):
        self.repeats = repeats

    def gbps(self, nbytes: int, threads: int) -> float:
        src = np.ones(max(nbytes // 16, 1024), np.float64)
        dst = np.zeros_like(src)
        _parallel_copy(dst, src, threads)
        times = []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            _parallel_copy(dst, src, threads)
            times.append(time.perf_counter() - t0)
        return 2 * src.nbytes / float(np.median(times)) / 1e9


SMALL_COPY = 8 << 20


class FloorCopy:
    """The bandwidth floor of a workload, timed in the same rounds as the contenders.

    A copy that reads and writes as many bytes as the workload (input read once, output
    written once) on as many threads: no filter can beat it. Timing it inside the rounds makes
    the floor fraction as robust to a noisy machine as the ratios.
    """

    def __init__(self, nbytes: int, threads: int):
        half = max(int(nbytes) // 2 // 8, 1024)
        self.src = np.ones(half, np.float64)
        self.dst = np.zeros_like(self.src)  # touched: no page faults in the floor
        # Below a few MiB, handing work to a second thread costs more than it saves.
        self.threads = threads if nbytes >= SMALL_COPY else 1

    def __call__(self, _data=None):
        _parallel_copy(self.dst, self.src, self.threads)


# --------------------------------------------------------------------------------------------
# Workloads.


@dataclass
class Contender:
    """One implementation of a workload.

    ``fn(data)`` is what is timed. ``as_ours(result)`` (untimed) maps its result onto our
    convention for the value check; ``crop`` trims that many pixels from each border of the
    spatial axes for peers whose border handling differs from ours (e.g. zero padding).
    """

    name: str
    fn: Callable
    as_ours: Callable | None = None
    crop: int = 0
    spatial_axes: tuple = (0, 1)


@dataclass
class Target:
    """A minimum ratio against the fastest of the named peers (name prefixes) in the run."""

    min_ratio: float
    label: str
    vs: tuple = ()


@dataclass
class Workload:
    name: str
    group: str
    setup: Callable[[], dict]
    ours: Contender | None
    peers: list
    bytes_moved: Callable[[dict], int]
    rtol: float = 1e-4
    target: Target | None = None
    params: dict = field(default_factory=dict)


def max_rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-30)
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0


def _crop(arr: np.ndarray, n: int, axes: tuple) -> np.ndarray:
    if n <= 0:
        return arr
    index = [slice(None)] * arr.ndim
    for ax in axes:
        index[ax] = slice(n, arr.shape[ax] - n)
    return arr[tuple(index)]


@dataclass
class Result:
    workload: Workload
    threads: int
    times: dict  # contender name -> list of seconds, one per round
    errors: dict  # peer name -> max relative difference from ours
    floor_times: list  # the bandwidth-floor copy, one per round
    failures: list

    @property
    def floor_s(self) -> float:
        return float(np.median(self.floor_times))

    def floor_fraction(self) -> float:
        """Median over rounds of floor time / our time (1 = at the bandwidth floor)."""
        if not self.has_ours:
            return float("nan")
        return float(np.median(np.asarray(self.floor_times) / np.asarray(self.times["ours"])))

    def median(self, name: str) -> float:
        return float(np.median(self.times[name]))

    def ratio(self, peer: str) -> float:
        """Median over rounds of peer time / our time in the same round."""
        ours = np.asarray(self.times["ours"])
        return float(np.median(np.asarray(self.times[peer]) / ours))

    def ratio_of_best(self, peer: str) -> float:
        """Best peer time / best our time: what other load on the machine cannot add to."""
        return float(np.min(self.times[peer]) / np.min(self.times["ours"]))

    @property
    def peer_names(self) -> list:
        return [n for n in self.times if n != "ours"]

    @property
    def has_ours(self) -> bool:
        return "ours" in self.times

    def fastest_peer(self, among: tuple = ()) -> str | None:
        """The fastest peer, or the fastest of those whose names start with ``among``."""
        peers = [p for p in self.peer_names if not among or p.startswith(among)]
        if not peers:
            return None
        if self.has_ours:
            return min(peers, key=self.ratio)
        return min(peers, key=self.median)


def run_workload(
    wl: Workload,
    *,
    threads: int,
    budget_s: float,
    min_rounds: int,
    max_rounds: int,
    include_ours: bool = True,
    log: Callable = print,
) -> Result:
    """Warm up, check values, then time all contenders in interleaved rounds."""
    gc.collect()
    data = wl.setup()
    contenders = ([wl.ours] if (include_ours and wl.ours is not None) else []) + list(wl.peers)
    failures = []
    errors = {}
    reference = None
    per_call = {}
    for c in contenders:
        try:
            t0 = time.perf_counter()
            out = c.fn(data)  # warm-up: JIT compilation, caches, thread pools
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            out = c.fn(data)
            per_call[c.name] = min(first, time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other contenders
            failures.append(f"{wl.name}: {c.name} raised {type(exc).__name__}: {exc}")
            log(f"  ! {c.name}: {type(exc).__name__}: {exc}")
            continue
        value = np.asarray(c.as_ours(out) if c.as_ours is not None else out)
        if c is wl.ours:
            reference = value
        elif reference is not None:
            err = max_rel_err(
                _crop(value, c.crop, c.spatial_axes),
                _crop(reference, c.crop, c.spatial_axes),
            )
            errors[c.name] = err
            if not err <= wl.rtol:
                failures.append(
                    f"{wl.name}: values differ from {c.name} (max rel. diff {err:.2e} > {wl.rtol:.0e})"
                )
        del out, value
    contenders = [c for c in contenders if c.name in per_call]
    floor = Contender("floor", FloorCopy(wl.bytes_moved(data), threads))
    floor.fn()
    per_round = sum(per_call.values())
    rounds = int(np.clip(budget_s / max(per_round, 1e-9), min_rounds, max_rounds))
    times = {c.name: [] for c in contenders + [floor]}
    everyone = contenders + [floor]
    for r in range(rounds):
        k = r % len(everyone)
        for c in everyone[k:] + everyone[:k]:  # rotate who goes first
            t0 = time.perf_counter()
            c.fn(data)
            times[c.name].append(time.perf_counter() - t0)
    floor_times = times.pop("floor")
    del data, floor
    return Result(wl, threads, times, errors, floor_times, failures)
