"""Start-up latency, measured in fresh interpreter processes.

- ``import napari_sepconv``;
- the first ``sc.sobel`` call in a new process once the on-disk Numba cache is warm;
- per filter family: the cold compile (a fresh process with an empty, throwaway
  ``NUMBA_CACHE_DIR``; first call minus second call, wall and CPU time), the first call in a
  new process once that cache is warm, and the import time in that process.

The processes run as a user's do: a family whose fast kernel has a quick twin (``_tiers``)
gets its first result from the twin while a background process compiles the fast kernel, so
its cold compile is the twin's. The cold process then waits for the fast kernel and loads it:
"until full speed" is the wall time from its first call to the fast kernel's first run.
``--fast-kernels`` measures with the twins turned off (``SEPCONV_QUICK_KERNELS=0``).

Each family's aims (issue 16) are checked as minimums and printed PASS or FAIL: cold compile
at most 2 s of wall time (4 s for 3-D magnitudes and the channel filters) and a first call from
a warm cache of at most 0.3 s, on a quiet 2-core machine. Timings on a loaded machine are longer;
the load average is printed with them.

Run alone: ``python benchmarks/latency.py [--quick] [--repeats N] [--only REGEX] [--markdown]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

IMPORT_LIMIT_S = 0.3
FIRST_SOBEL_LIMIT_S = 0.5
COLD_LIMIT_S = 2.0
COLD_LIMIT_HEAVY_S = 4.0  # 3-D magnitudes and the channel filters
WARM_LIMIT_S = 0.3

_IMPORT = """
import time
t0 = time.perf_counter()
import napari_sepconv
print(time.perf_counter() - t0)
"""

# One call per family on a small image: the call itself costs milliseconds, so the first call
# minus the second is compilation (cold cache) or cache loading (warm cache). The flag marks the
# families with the larger compile aim.
_FAMILIES = {
    "sobel": ("sc.sobel(img)", False),
    "sobel uint8": ("sc.sobel(img8)", False),
    "sobel_h": ("sc.sobel_h(img)", False),
    "farid": ("sc.farid(img)", False),
    "sobel 3-D": ("sc.sobel(vol)", True),
    "correlate1d": ("sc.correlate1d(img, w7, axis=0)", False),
    "correlate1d last axis": ("sc.correlate1d(img, w7, axis=-1)", False),
    "separable_filter": ("sc.separable_filter(img, [w7, w7])", False),
    "filter2d separable": ("sc.filter2d(img, np.outer(w7, w7) - np.outer(w7[::-1], w7))", False),
    "filter2d direct": ("sc.filter2d(img, full5)", False),
    "depthwise_filter": ("sc.depthwise_filter(chan, dw3)", True),
    "depthwise_filter 7x7": ("sc.depthwise_filter(chan, dw7)", True),
    "depthwise_filter rank 1": ("sc.depthwise_filter(chan, dw_rank1)", True),
    "pointwise_filter": ("sc.pointwise_filter(chan, pw)", True),
    "depthwise_separable_filter": ("sc.depthwise_separable_filter(chan, dw3, pw)", True),
    "gaussian": ("sc.gaussian(img, 2.0)", False),
    "gaussian_filter uint8": ("sc.gaussian_filter(img8, 2.0)", False),
    "gaussian_filter 3-D": ("sc.gaussian_filter(vol, 1.0)", True),
    "uniform_filter": ("sc.uniform_filter(img, 5)", False),
}

_CALL = """
import time, json
import numpy as np
t0 = time.perf_counter()
import napari_sepconv as sc
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
img = rng.random((256, 256), dtype=np.float32)
img8 = (img * 255).astype(np.uint8)
vol = rng.random((16, 64, 64), dtype=np.float32)
chan = rng.random((128, 128, 16), dtype=np.float32)
w7 = np.linspace(1.0, 2.0, 7); w7 /= w7.sum()
full5 = rng.standard_normal((5, 5))
dw3 = rng.standard_normal((16, 3, 3))
dw7 = rng.standard_normal((16, 7, 7))
dw_rank1 = np.stack([np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0])] * 16)
pw = rng.standard_normal((32, 16))
t0, c0 = time.perf_counter(), time.process_time()
{call}
t_first, c_first = time.perf_counter() - t0, time.process_time() - c0
t0, c0 = time.perf_counter(), time.process_time()
{call}
t_second, c_second = time.perf_counter() - t0, time.process_time() - c0
from napari_sepconv import warmup
t0 = time.perf_counter()
if warmup.finish_background_compiles():
    {call}
t_full = t_first + t_second + time.perf_counter() - t0
print(json.dumps({{"import": t_import, "first": t_first, "second": t_second,
                  "first_cpu": c_first, "second_cpu": c_second, "full": t_full}}))
"""


def _run(code: str, env: dict) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    return proc.stdout.strip().splitlines()[-1]


# What a user's processes run: the quick twins while the fast kernels compile (``--fast-kernels``:
# "0", the fast kernels compiled in the process itself).
QUICK_KERNELS = "1"


def _env(cache_dir=None) -> dict:
    env = dict(os.environ, SEPCONV_QUICK_KERNELS=QUICK_KERNELS)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    return env


def _load() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def aims(family: str) -> tuple[float, float]:
    """The cold-compile and warm-first-call aims of a family, in seconds."""
    heavy = _FAMILIES[family][1]
    return (COLD_LIMIT_HEAVY_S if heavy else COLD_LIMIT_S), WARM_LIMIT_S


def measure_family(family: str, repeats: int = 1) -> dict:
    """Medians over ``repeats`` of a family's cold compile, warm first call and import time.

    Each repeat compiles into its own empty cache folder (removed after), then runs a second
    process on that warm cache.
    """
    call = _FAMILIES[family][0]
    colds, warms = [], []
    for _ in range(repeats):
        cache = tempfile.mkdtemp(prefix="sepconv-cold-")
        try:
            colds.append(json.loads(_run(_CALL.format(call=call), _env(cache))))
            warms.append(json.loads(_run(_CALL.format(call=call), _env(cache))))
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def median(values):
        return float(np.median(values))

    cold_limit, warm_limit = aims(family)
    row = {
        "cold_compile_s": median([c["first"] - c["second"] for c in colds]),
        "cold_compile_cpu_s": median([c["first_cpu"] - c["second_cpu"] for c in colds]),
        "full_speed_s": median([c["full"] for c in colds]),
        "warm_first_call_s": median([w["first"] for w in warms]),
        "warm_first_call_cpu_s": median([w["first_cpu"] for w in warms]),
        "import_s": median([w["import"] for w in warms]),
        "call_s": median([w["second"] for w in warms]),
        "cold_limit_s": cold_limit,
        "warm_limit_s": warm_limit,
        "repeats": repeats,
    }
    row["pass_cold"] = row["cold_compile_s"] <= cold_limit
    row["pass_warm"] = row["warm_first_call_s"] <= warm_limit
    return row


def _family_line(fam: str, row: dict) -> str:
    return (
        f"  {fam:28s} cold compile {row['cold_compile_s']:6.2f} s (CPU {row['cold_compile_cpu_s']:5.2f} s)"
        f"   until full speed {row['full_speed_s']:5.1f} s"
        f"   first call from cache {row['warm_first_call_s'] * 1e3:5.0f} ms"
        f"   import {row['import_s'] * 1e3:4.0f} ms"
    )


def verdict_lines(families: dict) -> list:
    """PASS/FAIL lines of the per-family aims."""
    lines = []
    for fam, row in families.items():
        if "error" in row:
            lines.append(f"FAIL  {fam}: {row['error']}")
            continue
        lines.append(
            f"{'PASS' if row['pass_cold'] else 'FAIL'}  {fam} cold compile "
            f"{row['cold_compile_s']:.2f} s (aim <= {row['cold_limit_s']:.0f} s)"
        )
        lines.append(
            f"{'PASS' if row['pass_warm'] else 'FAIL'}  {fam} first call from a warm cache "
            f"{row['warm_first_call_s'] * 1e3:.0f} ms (aim <= {row['warm_limit_s'] * 1e3:.0f} ms)"
        )
    return lines


def markdown_table(families: dict) -> str:
    """The per-family table of docs/performance.md."""
    rows = [
        "| Family | cold compile, wall | cold compile, CPU | until full speed | first call, warm cache "
        "| import | aims |",
        "|---|---|---|---|---|---|---|",
    ]
    for fam, row in families.items():
        if "error" in row:
            rows.append(f"| `{fam}` | failed | | | | | |")
            continue
        rows.append(
            f"| `{fam}` | {row['cold_compile_s']:.1f} s | {row['cold_compile_cpu_s']:.1f} s | "
            f"{row['full_speed_s']:.1f} s | "
            f"{row['warm_first_call_s'] * 1e3:.0f} ms | {row['import_s'] * 1e3:.0f} ms | "
            f"<= {row['cold_limit_s']:.0f} s, <= {row['warm_limit_s'] * 1e3:.0f} ms |"
        )
    return "\n".join(rows)


def measure(quick: bool = False, log=print, repeats=None, only=None) -> dict:
    """Import time, the first warm ``sc.sobel`` call, and every family's compile and first call.

    Also logs the PASS/FAIL lines of the per-family aims (what ``make bench`` prints).
    """
    repeats = repeats or (3 if quick else 7)
    family_repeats = 1 if quick else max(1, min(3, repeats))
    out: dict = {"limits": {"import": IMPORT_LIMIT_S, "first_sobel": FIRST_SOBEL_LIMIT_S}}
    log(f"  ({_load()})")

    # Warm the default cache once (the user's), as a user's second run.
    first_env = _env()
    _run(_CALL.format(call=_FAMILIES["sobel"][0]), first_env)

    imports = [float(_run(_IMPORT, first_env)) for _ in range(repeats)]
    out["import_s"] = float(np.median(imports))
    log(
        f"  import napari_sepconv: median {out['import_s'] * 1e3:.0f} ms over {repeats} processes"
        f" (limit {IMPORT_LIMIT_S * 1e3:.0f} ms)"
    )

    runs = [json.loads(_run(_CALL.format(call=_FAMILIES["sobel"][0]), first_env)) for _ in range(repeats)]
    out["first_sobel_s"] = float(np.median([r["first"] for r in runs]))
    out["import_plus_first_sobel_s"] = float(np.median([r["import"] + r["first"] for r in runs]))
    log(
        f"  first sc.sobel call, warm cache: median {out['first_sobel_s'] * 1e3:.0f} ms"
        f" (limit {FIRST_SOBEL_LIMIT_S * 1e3:.0f} ms); import + first call "
        f"{out['import_plus_first_sobel_s'] * 1e3:.0f} ms"
    )

    families = ["sobel"] if quick else list(_FAMILIES)
    if only:
        families = [f for f in families if re.search(only, f)]
    out["families"] = {}
    for fam in families:
        try:
            row = measure_family(fam, family_repeats)
        except Exception as exc:  # noqa: BLE001
            log(f"  {fam}: failed: {exc}")
            out["families"][fam] = {"error": str(exc)}
            continue
        out["families"][fam] = row
        log(_family_line(fam, row))
    log(f"  ({_load()}; medians of {family_repeats} cold and warm processes per family)")
    for line in verdict_lines(out["families"]):
        log(line)
    out["pass_import"] = out["import_s"] < IMPORT_LIMIT_S
    out["pass_first_sobel"] = out["first_sobel_s"] < FIRST_SOBEL_LIMIT_S
    out["pass_families"] = all(
        r.get("pass_cold", False) and r.get("pass_warm", False) for r in out["families"].values()
    )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer processes, the sobel family only")
    parser.add_argument("--repeats", type=int, default=None, help="processes per measurement")
    parser.add_argument("--only", metavar="REGEX", help="families whose name matches")
    parser.add_argument(
        "--families-only", action="store_true", help="skip the import and first sc.sobel measurements"
    )
    parser.add_argument("--markdown", action="store_true", help="also print the docs table")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument(
        "--fast-kernels",
        action="store_true",
        help="no quick twins: each process compiles the fast kernels itself (SEPCONV_QUICK_KERNELS=0)",
    )
    args = parser.parse_args(argv)
    if args.fast_kernels:
        global QUICK_KERNELS
        QUICK_KERNELS = "0"
    if args.families_only:
        families = [f for f in _FAMILIES if not args.only or re.search(args.only, f)]
        print(f"  ({_load()})")
        res = {"families": {}}
        for fam in families:
            try:
                res["families"][fam] = measure_family(fam, args.repeats or 1)
            except Exception as exc:  # noqa: BLE001
                res["families"][fam] = {"error": str(exc)}
                print(f"  {fam}: failed: {exc}", flush=True)
                continue
            print(_family_line(fam, res["families"][fam]), flush=True)
        print(f"  ({_load()})")
        for line in verdict_lines(res["families"]):
            print(line)
        ok = True
    else:
        res = measure(args.quick, repeats=args.repeats, only=args.only)
        ok = res["pass_import"] and res["pass_first_sobel"]
        print(f"{'PASS' if res['pass_import'] else 'FAIL'}  import napari_sepconv < {IMPORT_LIMIT_S} s")
        print(
            f"{'PASS' if res['pass_first_sobel'] else 'FAIL'}  first sc.sobel call (warm cache) < "
            f"{FIRST_SOBEL_LIMIT_S} s"
        )
    if args.markdown:
        print()
        print(markdown_table(res["families"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
