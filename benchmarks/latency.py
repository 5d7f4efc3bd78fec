"""Start-up latency, measured in fresh interpreter processes.

- ``import napari_sepconv``;
- the first ``sc.sobel`` call in a new process once the on-disk Numba cache is warm;
- per filter family, the cold compile time (a throwaway ``NUMBA_CACHE_DIR``, first call minus
  the second call) and the first call once that cache is warm.

Run alone: ``python benchmarks/latency.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

IMPORT_LIMIT_S = 0.3
FIRST_SOBEL_LIMIT_S = 0.5

_IMPORT = """
import time
t0 = time.perf_counter()
import napari_sepconv
print(time.perf_counter() - t0)
"""

# One call per family on a small image: the call itself costs milliseconds, so the first call
# minus the second is compilation (cold cache) or cache loading (warm cache).
_FAMILIES = {
    "sobel": "sc.sobel(img)",
    "sobel uint8": "sc.sobel(img8)",
    "sobel 3-D": "sc.sobel(vol)",
    "correlate1d": "sc.correlate1d(img, w7, axis=0)",
    "separable_filter": "sc.separable_filter(img, [w7, w7])",
    "filter2d separable": "sc.filter2d(img, np.outer(w7, w7) - np.outer(w7[::-1], w7))",
    "filter2d direct": "sc.filter2d(img, full5)",
    "depthwise_filter": "sc.depthwise_filter(chan, dw3)",
    "pointwise_filter": "sc.pointwise_filter(chan, pw)",
    "depthwise_separable_filter": "sc.depthwise_separable_filter(chan, dw3, pw)",
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
pw = rng.standard_normal((32, 16))
t0 = time.perf_counter()
{call}
t_first = time.perf_counter() - t0
t0 = time.perf_counter()
{call}
t_second = time.perf_counter() - t0
print(json.dumps({{"import": t_import, "first": t_first, "second": t_second}}))
"""


def _run(code: str, env: dict) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    return proc.stdout.strip().splitlines()[-1]


def _env(cache_dir=None) -> dict:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    return env


def measure(quick: bool = False, log=print) -> dict:
    repeats = 3 if quick else 7
    out: dict = {"limits": {"import": IMPORT_LIMIT_S, "first_sobel": FIRST_SOBEL_LIMIT_S}}

    # Warm the default cache once (the package's own, or the user's), as a user's second run.
    first_env = _env()
    _run(_CALL.format(call=_FAMILIES["sobel"]), first_env)

    imports = [float(_run(_IMPORT, first_env)) for _ in range(repeats)]
    out["import_s"] = float(np.median(imports))
    log(
        f"  import napari_sepconv: median {out['import_s'] * 1e3:.0f} ms over {repeats} processes"
        f" (limit {IMPORT_LIMIT_S * 1e3:.0f} ms)"
    )

    runs = [json.loads(_run(_CALL.format(call=_FAMILIES["sobel"]), first_env)) for _ in range(repeats)]
    out["first_sobel_s"] = float(np.median([r["first"] for r in runs]))
    out["import_plus_first_sobel_s"] = float(np.median([r["import"] + r["first"] for r in runs]))
    log(
        f"  first sc.sobel call, warm cache: median {out['first_sobel_s'] * 1e3:.0f} ms"
        f" (limit {FIRST_SOBEL_LIMIT_S * 1e3:.0f} ms); import + first call "
        f"{out['import_plus_first_sobel_s'] * 1e3:.0f} ms"
    )

    families = ["sobel"] if quick else list(_FAMILIES)
    out["families"] = {}
    for fam in families:
        cache = tempfile.mkdtemp(prefix="sepconv-cold-")
        try:
            cold = json.loads(_run(_CALL.format(call=_FAMILIES[fam]), _env(cache)))
            warm = json.loads(_run(_CALL.format(call=_FAMILIES[fam]), _env(cache)))
        except Exception as exc:  # noqa: BLE001
            log(f"  {fam}: failed: {exc}")
            out["families"][fam] = {"error": str(exc)}
            continue
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        row = {
            "cold_compile_s": cold["first"] - cold["second"],
            "warm_first_call_s": warm["first"],
            "call_s": warm["second"],
        }
        out["families"][fam] = row
        log(
            f"  {fam:28s} cold compile {row['cold_compile_s']:6.2f} s   first call from cache "
            f"{row['warm_first_call_s'] * 1e3:6.0f} ms"
        )
    out["pass_import"] = out["import_s"] < IMPORT_LIMIT_S
    out["pass_first_sobel"] = out["first_sobel_s"] < FIRST_SOBEL_LIMIT_S
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer processes and families")
    args = parser.parse_args(argv)
    res = measure(args.quick)
    ok = res["pass_import"] and res["pass_first_sobel"]
    print(f"{'PASS' if res['pass_import'] else 'FAIL'}  import napari_sepconv < {IMPORT_LIMIT_S} s")
    print(
        f"{'PASS' if res['pass_first_sobel'] else 'FAIL'}  first sc.sobel call (warm cache) < "
        f"{FIRST_SOBEL_LIMIT_S} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
