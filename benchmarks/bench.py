"""Benchmark napari-sepconv against the installed peers: OpenCV, SciPy, scikit-image,
PyTorch (CPU) and NumPy.

    python benchmarks/bench.py            # full run, about 10 minutes on 2 cores
    python benchmarks/bench.py --quick    # about 1-2 minutes
    python benchmarks/bench.py --update-docs   # also refresh docs/performance.md and its plots

Every workload is checked for equal values first, then timed in interleaved rounds; the
reported ratio is the median over rounds of peer time / our time (higher is better for us), and
"floor" is the fraction of the memory-bandwidth floor (one read of the input and one write of
the output at the measured copy bandwidth) that our call reaches. Target lines print PASS or
FAIL; the exit status is 1 if a target, a latency limit or a value check fails.
"""

import os

# Before NumPy, PyTorch or Numba load their runtimes:
# - torch's OpenMP threads spin after each call and slow whichever library runs next 3-10x;
# - OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, where a machine sets them, force a slower BLAS kernel.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)
# The fast kernels are what the rows time: a warm-up call compiles them here, not a quick twin
# that would run while they compile in the background. (The start-up rows, in processes of
# their own, measure the quick twins as a user meets them.)
os.environ["SEPCONV_QUICK_KERNELS"] = "0"

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import report  # noqa: E402
import workloads as W  # noqa: E402
from _harness import Bandwidth, Libraries, cpu_model, run_workload  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds and workloads (1-2 min)")
    p.add_argument(
        "--threads",
        default="1,2",
        help="thread counts for the thread-scaling section (default 1,2); the ratio tables use the largest",
    )
    p.add_argument("--only", metavar="REGEX", help="run only workloads whose name matches")
    p.add_argument(
        "--out",
        default=str(HERE / "results"),
        help="folder for results.md, results.json and the plots",
    )
    p.add_argument(
        "--update-docs",
        action="store_true",
        help="also write docs/performance.md's tables and docs/bench-*.png",
    )
    p.add_argument("--no-latency", action="store_true", help="skip the start-up measurements")
    p.add_argument("--peers-only", action="store_true", help="time the peers without ours")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    cpu_start = _cpu_seconds()
    libs = Libraries()
    thread_counts = sorted({int(t) for t in args.threads.split(",")})
    main_threads = max(thread_counts)
    include_ours = libs.ours is not None and not args.peers_only
    if libs.ours is None:
        print(f"napari_sepconv is not importable ({libs.ours_error}); timing the peers only.")

    budget, lo, hi = (0.6, 3, 9) if args.quick else (3.0, 5, 31)
    bw = Bandwidth(repeats=5 if args.quick else 11)
    b = W.Builder(libs)
    pattern = re.compile(args.only) if args.only else None

    def pick(wls):
        return [w for w in wls if pattern is None or pattern.search(w.name)]

    def run_all(wls, threads, section):
        libs.set_threads(threads)
        results = []
        if wls:
            print(f"\n== {section} ({threads} thread{'s' if threads > 1 else ''})")
        for wl in wls:
            res = run_workload(
                wl,
                threads=threads,
                budget_s=budget,
                min_rounds=lo,
                max_rounds=hi,
                include_ours=include_ours,
            )
            print(report.console_line(res), flush=True)
            results.append(res)
        return results

    meta = {
        "cpu": cpu_model(),
        "versions": libs.versions(),
        "threads": main_threads,
        "quick": args.quick,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_before": _load(),
        "source": _source(libs.ours),
    }
    libs.set_threads(main_threads)
    meta["blas"] = libs.blas_info()
    if libs.numba is not None:
        meta["numba_threading_layer"] = _numba_layer(libs.numba)
    meta["bandwidth_gbps"] = {
        f"{t} thread{'s' if t > 1 else ''}": round(bw.gbps(64 << 20, t), 1) for t in thread_counts
    }
    print(report.machine_text(meta))

    sections = {}
    sections["targets"] = run_all(
        pick(W.target_workloads(b) + W.smoothing_workloads(b)), main_threads, "targets"
    )
    sections["extra"] = run_all(
        pick(W.extra_workloads(b, args.quick) + W.smoothing_extra_workloads(b)),
        main_threads,
        "more workloads",
    )
    sections["pixels"] = run_all(
        pick(W.scaling_workloads(b, args.quick)), main_threads, "scaling with pixels"
    )
    sections["threads"] = {}
    for t in thread_counts:
        sections["threads"][t] = run_all(pick(W.thread_workloads(b, args.quick)), t, "scaling with threads")
    sections["ksize"] = run_all(
        pick(W.sweep_workloads(b, args.quick)),
        main_threads,
        "kernel size: separable O(k) against direct O(k^2)",
    )
    libs.set_threads(main_threads)

    latency = None
    if include_ours and not args.no_latency:
        print("\n== start-up latency (fresh processes)")
        import latency as lat

        try:
            latency = lat.measure(args.quick)
        except Exception as exc:  # noqa: BLE001
            print(f"  latency measurement failed: {exc}")
            latency = {"error": str(exc)}

    meta["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    meta["load_after"] = _load()
    meta["other_cpu_share"] = _other_share(cpu_start, meta["elapsed_s"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    verdicts = report.verdicts(sections, latency)
    md = report.markdown(meta, sections, latency, verdicts)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(report.to_json(meta, sections, latency, verdicts), indent=1))
    raw = out / "raw"
    raw.mkdir(exist_ok=True)
    (raw / "times.json").write_text(json.dumps(report.raw_times(sections)))
    plots = report.plots(sections, out, include_ours)
    if args.update_docs:
        report.update_docs(REPO / "docs", md, plots)

    if meta.get("load_after"):
        print("\n" + report.load_text(meta))
    print("\n== verdicts")
    for line in verdicts["lines"]:
        print(line)
    print(f"\nwrote {out / 'results.md'} and {len(plots)} plot(s); took {meta['elapsed_s']:.0f} s")
    return 1 if verdicts["failed"] else 0


def _source(ours):
    """Which code was timed: the package's git commit, marked when it had local changes."""
    if ours is None:
        return None
    import subprocess

    where = Path(ours.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+local changes" if dirty else "")


def _load():
    """1-minute load average and core count: other work on the machine skews the timings."""
    try:
        return {"loadavg_1min": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}
    except OSError:
        return None


def _cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    own = os.times()
    mine = own.user + own.system + own.children_user + own.children_system
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None, mine
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), mine


def _other_share(start, wall_s):
    """Fraction of the machine's CPU time that other processes used since ``start``."""
    busy0, mine0 = start
    busy1, mine1 = _cpu_seconds()
    if busy0 is None or busy1 is None or wall_s <= 0:
        return None
    others = (busy1 - busy0) - (mine1 - mine0)
    return round(max(0.0, others) / (wall_s * (os.cpu_count() or 1)), 3)


def _numba_layer(numba):
    @numba.njit(parallel=True)
    def _touch(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += a[i]
        return s

    try:
        _touch(np.ones(4))
        return numba.threading_layer()
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({exc})"


if __name__ == "__main__":
    sys.exit(main())
