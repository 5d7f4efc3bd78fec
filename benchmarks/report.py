"""Console lines, the Markdown report, JSON and the plots."""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import latency as lat  # (benchmarks/, beside this module)
import numpy as np

BEGIN = "<!-- bench:begin (written by benchmarks/bench.py --update-docs) -->"
END = "<!-- bench:end -->"


def _ms(s):
    return f"{s * 1e3:.3g}" if s < 1 else f"{s * 1e3:.0f}"


def _x(r):
    if r is None or not math.isfinite(r):
        return "n/a"
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def _floor(res):
    return res.floor_fraction()


def console_line(res) -> str:
    name = res.workload.name
    if res.has_ours:
        peers = "  ".join(f"{p} {_x(res.ratio(p))}" for p in res.peer_names)
        line = f"  {name:44s} ours {_ms(res.median('ours')):>6s} ms  floor {_floor(res):4.0%}  | {peers}"
    else:
        peers = "  ".join(f"{p} {_ms(res.median(p))} ms" for p in res.peer_names)
        line = f"  {name:44s} floor {_ms(res.floor_s)} ms | {peers}"
    bad = [f for f in res.failures]
    if bad:
        line += "\n" + "\n".join(f"    ! {f}" for f in bad)
    return line


def machine_text(meta) -> str:
    v = meta["versions"]
    libs = ", ".join(
        f"{k} {v[k]}"
        for k in (
            "napari_sepconv",
            "numba",
            "numpy",
            "opencv",
            "scipy",
            "scikit-image",
            "torch",
        )
        if v.get(k)
    )
    blas = "; ".join(
        f"{b['lib']} {b.get('internal_api')} {b.get('version') or ''} {b.get('architecture') or ''}".strip()
        for b in meta.get("blas", [])
    )
    bw = ", ".join(f"{k}: {g} GB/s" for k, g in meta["bandwidth_gbps"].items())
    return (
        f"CPU: {meta['cpu']}\nPython {v['python']}; {libs}"
        + (f" (commit {meta['source']})" if meta.get("source") else "")
        + "\n"
        f"Thread pools: {blas}\nNumba threading layer: {meta.get('numba_threading_layer')}"
        f"; OMP_WAIT_POLICY={meta.get('omp_wait_policy')}\n"
        f"Copy bandwidth (read + write, 64 MiB): {bw}\n{load_text(meta)}"
    )


def load_text(meta) -> str:
    """Other work on the machine: the load average, and the share of CPU time other processes
    took during the run (what contaminates the timings)."""
    parts = []
    for key, label in (("load_before", "before"), ("load_after", "after")):
        ld = meta.get(key)
        if ld:
            parts.append(f"{label} {ld['loadavg_1min']}")
    if not parts:
        return ""
    text = f"Load average (1 min) {', '.join(parts)} on {os.cpu_count()} cores"
    share = meta.get("other_cpu_share")
    if share is not None:
        text += f"; other processes used {share:.0%} of the CPU time during the run"
        busy = share > 0.1
    else:
        busy = any(
            meta.get(k) and meta[k]["loadavg_1min"] > 0.75 * (os.cpu_count() or 1)
            for k in ("load_before", "load_after")
        )
    return text + (" - the machine was busy: ratios are less reliable" if busy else "")


# ------------------------------------------------------------------------------------ verdicts


def verdicts(sections, latency) -> dict:
    lines, failed = [], False
    for res in sections["targets"]:
        t = res.workload.target
        if t is None:
            continue
        if not res.has_ours or not res.peer_names:
            lines.append(f"SKIP  {t.label}: {'no peer' if res.has_ours else 'ours not run'}")
            continue
        peer = res.fastest_peer(t.vs)
        if peer is None:
            lines.append(f"SKIP  {t.label}: none of {', '.join(t.vs)} is installed")
            continue
        r = res.ratio(peer)
        ok = r >= t.min_ratio
        failed |= not ok
        lines.append(
            f"{'PASS' if ok else 'FAIL'}  {t.label}: {r:.2f}x vs {peer} "
            f"({(r / t.min_ratio - 1):+.0%} against the minimum {t.min_ratio}x)"
        )
    every = list(_all_results(sections))
    for line, ok in _size_independence(every):
        failed |= not ok
        lines.append(line)
    for res in every:
        for f in res.failures:
            failed = True
            lines.append(f"FAIL  {f}")
    if latency and "import_s" in latency:
        lim = latency["limits"]
        ok_i, ok_f = latency["pass_import"], latency["pass_first_sobel"]
        failed |= not (ok_i and ok_f)
        lines.append(
            f"{'PASS' if ok_i else 'FAIL'}  import napari_sepconv: "
            f"{latency['import_s'] * 1e3:.0f} ms (limit {lim['import'] * 1e3:.0f} ms)"
        )
        lines.append(
            f"{'PASS' if ok_f else 'FAIL'}  first sc.sobel call, warm cache: "
            f"{latency['first_sobel_s'] * 1e3:.0f} ms (limit "
            f"{lim['first_sobel'] * 1e3:.0f} ms)"
        )
        families = latency.get("families") or {}
        if families:
            line, ok = _family_aims(families)
            failed |= not ok
            lines.append(line)
    elif latency:
        failed = True
        lines.append(f"FAIL  latency: {latency.get('error')}")
    n_checked = sum(len(r.errors) for r in every)
    if n_checked:
        worst = max((e for r in every for e in r.errors.values()), default=0.0)
        lines.append(
            f"{'PASS' if not any(r.failures for r in every) else 'FAIL'}  values agree "
            f"with the peers in {n_checked} comparisons (largest relative "
            f"difference {worst:.1e})"
        )
    return {"lines": lines, "failed": failed}


def _family_aims(families):
    """One verdict line for the cold-compile and warm-first-call aims of every family
    (``latency.verdict_lines``): the misses, or the smallest margins when none missed."""
    missed = [line.removeprefix("FAIL  ") for line in lat.verdict_lines(families) if line.startswith("FAIL")]
    if missed:
        return f"FAIL  per-family compile and first-call aims: {'; '.join(missed)}", False
    cold_margin = min(r["cold_limit_s"] - r["cold_compile_s"] for r in families.values())
    warm = sorted({round(r["warm_first_call_s"] * 1e3) for r in families.values()})
    span = f"{warm[0]}" if len(warm) == 1 else f"{warm[0]}-{warm[-1]}"
    limit = max(r["warm_limit_s"] for r in families.values()) * 1e3
    count = f"{len(families)} famil{'y' if len(families) == 1 else 'ies'}"
    return (
        f"PASS  per-family compile and first-call aims ({count}): every cold compile within its "
        f"aim by {cold_margin:.2f} s or more, first calls from a warm cache "
        f"{span} ms (aim {limit:.0f} ms)",
        True,
    )


# A running sum costs the same whatever the window: the largest box filter's time within this
# factor of the smallest's, on the same image (issue 13).
UNIFORM_SIZE_LIMIT = 1.3


def _size_independence(results):
    """A verdict line (and whether it passed) per image that has box-filter rows of two sizes."""
    rows = {}
    threads = max((r.threads for r in results), default=0)  # the ratio tables' thread count
    for res in results:
        p = res.workload.params
        if res.workload.name.startswith("uniform_filter") and res.has_ours and res.threads == threads:
            rows.setdefault((str(p["shape"]), p["dtype"]), {})[p["k"]] = res
    out = []
    for (shape, dtype), by_size in rows.items():
        if len(by_size) < 2:
            continue
        small, large = min(by_size), max(by_size)
        r = by_size[large].median("ours") / by_size[small].median("ours")
        ok = r <= UNIFORM_SIZE_LIMIT
        out.append(
            (
                f"{'PASS' if ok else 'FAIL'}  uniform_filter size {large} within {UNIFORM_SIZE_LIMIT}x "
                f"of size {small} ({dtype} {shape}): {r:.2f}x",
                ok,
            )
        )
    return out


def _all_results(sections):
    for key in ("targets", "extra", "pixels", "ksize"):
        yield from sections.get(key, [])
    for results in sections.get("threads", {}).values():
        yield from results


# ------------------------------------------------------------------------------------ Markdown


def _table(header, rows):
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _peer_cell(res):
    if res.has_ours:
        return ", ".join(f"{p} {_x(res.ratio(p))}" for p in res.peer_names)
    return ", ".join(f"{p} {_ms(res.median(p))} ms" for p in res.peer_names)


def markdown(meta, sections, latency, verdicts) -> str:
    threads = meta["threads"]
    md = []
    md.append(
        f"Machine: {meta['cpu']}. {machine_line(meta)} Threads: {threads} for every library "
        f"unless stated. Ratios are peer time / our time (above 1: we are faster), the median "
        f"over interleaved rounds; *floor* is the fraction of the memory-bandwidth floor (input "
        f"read once, output written once at the measured copy bandwidth) that our call reaches. "
        f"Absolute times are given for scale only: the machine is shared and noisy."
        + (" Quick run (fewer rounds and workloads)." if meta["quick"] else "")
    )

    rows = []
    for res in sections["targets"]:
        t = res.workload.target
        peer = res.fastest_peer(t.vs) if res.has_ours else None
        if peer is not None:
            r = res.ratio(peer)
            verdict = "**PASS**" if r >= t.min_ratio else "**FAIL**"
            rows.append(
                [
                    res.workload.name,
                    _ms(res.median("ours")),
                    peer,
                    _x(r),
                    f"{t.min_ratio}x",
                    verdict,
                    f"{_floor(res):.0%}",
                    _peer_cell(res),
                ]
            )
        else:
            rows.append(
                [
                    res.workload.name,
                    "n/a",
                    "",
                    "",
                    f"{t.min_ratio}x",
                    "SKIP",
                    "",
                    _peer_cell(res),
                ]
            )
    md.append(
        f"### Targets ({threads} threads)\n\n"
        + _table(
            [
                "Workload",
                "ours (ms)",
                "against",
                "ratio",
                "minimum",
                "result",
                "floor",
                "all peers (ratio)",
            ],
            rows,
        )
    )

    md.append(
        "Each minimum holds against the fastest of the peers it names, in the same run: "
        "OpenCV for Sobel, the separable filter and `filter2d`; PyTorch and OpenCV for "
        "depthwise; NumPy's matmul for pointwise; PyTorch for depthwise-separable. The last "
        "column lists every peer."
    )

    if sections["extra"]:
        rows = [
            [
                r.workload.name,
                _ms(r.median("ours")) if r.has_ours else "n/a",
                _peer_cell(r),
                f"{_floor(r):.0%}" if r.has_ours else "",
            ]
            for r in sections["extra"]
        ]
        md.append(
            f"### More workloads ({threads} threads)\n\n"
            + _table(["Workload", "ours (ms)", "peers (ratio)", "floor"], rows)
        )

    if sections["pixels"]:
        rows = []
        for r in sections["pixels"]:
            npx = int(np.prod(r.workload.params["shape"]))
            ours = f"{r.median('ours') / npx * 1e9:.2f}" if r.has_ours else "n/a"
            peer = r.peer_names[0] if r.peer_names else None
            rows.append(
                [
                    r.workload.name,
                    ours,
                    f"{r.median(peer) / npx * 1e9:.2f}" if peer else "",
                    _x(r.ratio(peer)) if (peer and r.has_ours) else "",
                    f"{_floor(r):.0%}" if r.has_ours else "",
                    f"{r.floor_s / npx * 1e9:.2f}",
                ]
            )
        md.append(
            "### Scaling with pixels\n\nTime per pixel should stay flat as the image "
            "grows (linear in pixels); it rises where the image leaves the caches.\n\n"
            + _table(
                [
                    "Workload",
                    "ours (ns/px)",
                    "opencv (ns/px)",
                    "ratio",
                    "floor",
                    "floor (ns/px)",
                ],
                rows,
            )
        )

    tsec = sections["threads"]
    if len(tsec) >= 2:
        lo, hi = min(tsec), max(tsec)
        rows = []
        for r_lo, r_hi in zip(tsec[lo], tsec[hi]):
            names = ["ours"] * r_lo.has_ours + r_lo.peer_names
            speed = ", ".join(f"{n} {r_lo.median(n) / r_hi.median(n):.2f}x" for n in names)
            ratios = []
            for r in (r_lo, r_hi):
                p = r.fastest_peer()
                ratios.append(f"{_x(r.ratio(p))} vs {p}" if r.has_ours and p else "")
            rows.append(
                [
                    r_hi.workload.name,
                    speed,
                    ratios[0],
                    ratios[1],
                    f"{_floor(r_hi):.0%}" if r_hi.has_ours else "",
                ]
            )
        md.append(
            f"### Scaling with threads\n\nSpeed-up from {lo} to {hi} threads (Numba's "
            f"`set_num_threads` for ours, `cv2.setNumThreads`, `torch.set_num_threads`, "
            f"threadpoolctl for BLAS); ratio against the fastest peer at each count.\n\n"
            + _table(
                [
                    "Workload",
                    f"speed-up {lo}->{hi} threads",
                    f"ratio @{lo}",
                    f"ratio @{hi}",
                    f"floor @{hi}",
                ],
                rows,
            )
        )

    if sections["ksize"]:
        md.append(
            "### Time against kernel size (1024² float32)\n\n"
            + _ksize_table(sections["ksize"])
            + "\n\n*Separable*: one k-tap kernel per axis (O(k) per pixel). *Direct*: a "
            "full-rank k x k kernel (O(k²) per pixel; `cv2.filter2D` switches to a DFT "
            "from 11x11 on). SciPy's direct correlation is skipped above 15x15."
        )

    if latency and "import_s" in latency:
        rows = [
            [
                "`import napari_sepconv`",
                f"{latency['import_s'] * 1e3:.0f} ms",
                f"{latency['limits']['import'] * 1e3:.0f} ms",
            ],
            [
                "first `sc.sobel` call, warm cache",
                f"{latency['first_sobel_s'] * 1e3:.0f} ms",
                f"{latency['limits']['first_sobel'] * 1e3:.0f} ms",
            ],
            [
                "import + first `sc.sobel` call",
                f"{latency['import_plus_first_sobel_s'] * 1e3:.0f} ms",
                "",
            ],
        ]
        md.append(
            "### Start-up latency (fresh processes, median)\n\n" + _table(["What", "time", "limit"], rows)
        )
        fam = latency.get("families", {})
        if fam:
            repeats = max(v.get("repeats", 1) for v in fam.values())
            md.append(
                "Compile time per filter family: first call minus second call (wall and CPU) in "
                "a fresh process with an empty, throwaway `NUMBA_CACHE_DIR` (cold); the time from "
                "that first call until the fast kernel runs (a quick twin gives the first "
                "results); the first call and the import in a new process once that cache is "
                "warm; "
                + ("one process each" if repeats == 1 else f"medians of {repeats} processes each")
                + ".\n\n"
                + lat.markdown_table(fam)
            )

    md.append("### Verdicts\n\n```\n" + "\n".join(verdicts["lines"]) + "\n```")
    return "\n\n".join(md) + "\n"


def machine_line(meta) -> str:
    v = meta["versions"]
    libs = ", ".join(
        f"{label} {v[k]}"
        for k, label in (
            ("napari_sepconv", "napari-sepconv"),
            ("numba", "Numba"),
            ("numpy", "NumPy"),
            ("opencv", "OpenCV"),
            ("scipy", "SciPy"),
            ("scikit-image", "scikit-image"),
            ("torch", "PyTorch"),
        )
        if v.get(k)
    )
    blas = [
        b
        for b in meta.get("blas", [])
        if b.get("internal_api") == "openblas"
        and "numpy" in b.get("lib", "").lower()
        or "scipy_openblas" in b.get("lib", "")
    ]
    blas_txt = (
        (f" NumPy's BLAS: OpenBLAS {blas[0].get('version')} ({blas[0].get('architecture')} kernels).")
        if blas
        else ""
    )
    bw = ", ".join(f"{g} GB/s on {k}" for k, g in meta["bandwidth_gbps"].items())
    load = load_text(meta)
    src = f"Code: commit {meta['source']}. " if meta.get("source") else ""
    return src + (
        f"Python {v['python']}, {libs}.{blas_txt} Measured copy bandwidth (read + write): "
        f"{bw}." + (f" {load}." if load else "")
    )


def _ksize_table(results):
    by_k = {}
    for r in results:
        kind = r.workload.params["kind"]
        row = by_k.setdefault(r.workload.params["k"], {})
        if r.has_ours:
            row[f"ours {kind}"] = r.median("ours")
        for p in r.peer_names:
            row[p] = r.median(p)
    cols = []
    for row in by_k.values():
        for c in row:
            if c not in cols:
                cols.append(c)
    rows = [[k] + [_ms(row[c]) if c in row else "" for c in cols] for k, row in sorted(by_k.items())]
    return _table(["k"] + [f"{c} (ms)" for c in cols], rows)


# ---------------------------------------------------------------------------------------- JSON


def _res_json(r):
    d = {
        "name": r.workload.name,
        "group": r.workload.group,
        "threads": r.threads,
        "median_s": {n: r.median(n) for n in r.times},
        "rounds": len(next(iter(r.times.values()), [])),
        "floor_s": r.floor_s,
        "floor_fraction": r.floor_fraction() if r.has_ours else None,
        "max_rel_diff": r.errors,
        "failures": r.failures,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.workload.params.items()},
    }
    if r.has_ours:
        d["ratio"] = {p: r.ratio(p) for p in r.peer_names}
        d["ratio_of_best"] = {p: r.ratio_of_best(p) for p in r.peer_names}
        d["fastest_peer"] = r.fastest_peer()
    if r.workload.target is not None:
        t = r.workload.target
        d["target"] = {"min_ratio": t.min_ratio, "label": t.label, "vs": list(t.vs)}
        if r.has_ours:
            d["target"]["peer"] = r.fastest_peer(t.vs)
    return d


def to_json(meta, sections, latency, verdicts):
    return {
        "meta": meta,
        "targets": [_res_json(r) for r in sections["targets"]],
        "extra": [_res_json(r) for r in sections["extra"]],
        "pixels": [_res_json(r) for r in sections["pixels"]],
        "threads": {str(t): [_res_json(r) for r in rs] for t, rs in sections["threads"].items()},
        "ksize": [_res_json(r) for r in sections["ksize"]],
        "latency": latency,
        "verdicts": verdicts,
    }


def raw_times(sections):
    return [
        {"name": r.workload.name, "threads": r.threads, "times_s": r.times} for r in _all_results(sections)
    ]


# --------------------------------------------------------------------------------------- plots


def plots(sections, out: Path, include_ours: bool) -> list:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots")
        return []
    written = []
    if include_ours:
        p = _plot_ratios(plt, sections, out)
        if p:
            written.append(p)
    p = _plot_ksize(plt, sections["ksize"], out)
    if p:
        written.append(p)
    p = _plot_scaling(plt, sections, out, include_ours)
    if p:
        written.append(p)
    return written


def _plot_ratios(plt, sections, out):
    results = [r for r in sections["targets"] + sections["extra"] if r.has_ours and r.peer_names]
    if not results:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(results) + 1.4))
    names, ratios, colors = [], [], []
    for r in results:
        t = r.workload.target
        peer = r.fastest_peer(t.vs if t is not None else ())
        if peer is None:
            peer = r.fastest_peer()
        ratio = r.ratio(peer)
        names.append(f"{r.workload.name}  (vs {peer})")
        ratios.append(ratio)
        colors.append("#9e9e9e" if t is None else ("#2e7d32" if ratio >= t.min_ratio else "#c62828"))
    y = np.arange(len(results))[::-1]
    ax.barh(y, ratios, color=colors)
    for yi, r in zip(y, results):
        if r.workload.target is not None:
            ax.plot(
                [r.workload.target.min_ratio] * 2,
                [yi - 0.45, yi + 0.45],
                color="black",
                lw=2,
            )
    ax.axvline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xscale("log")
    lo = min(min(ratios), 1.0) / 1.2
    hi = (
        max(
            max(ratios),
            max(
                (r.workload.target.min_ratio for r in results if r.workload.target),
                default=1.0,
            ),
        )
        * 1.2
    )
    ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500) if lo <= t <= hi]
    ax.set_xlim(lo, hi)
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("fastest peer time / our time (log scale; black tick = minimum)")
    ax.set_title(
        "Green: minimum met, red: missed, grey: no minimum",
        fontsize=9,
    )
    fig.tight_layout()
    path = out / "bench-ratios.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_ksize(plt, results, out):
    if not results:
        return None
    series = {}
    for r in results:
        k = r.workload.params["k"]
        kind = r.workload.params["kind"]
        npx = float(np.prod(r.workload.params["shape"]))
        for n in r.times:
            label = f"ours {kind}" if n == "ours" else n
            style = "-" if kind == "separable" else "--"
            series.setdefault((label, style), []).append((k, r.median(n) / npx * 1e9))
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for (label, style), pts in series.items():
        pts.sort()
        ks, ts = zip(*pts)
        ax.plot(
            ks,
            ts,
            style,
            marker="o",
            ms=3,
            label=label,
            lw=2.2 if label.startswith("ours") else 1.2,
        )
    ks = np.array(sorted({r.workload.params["k"] for r in results}), float)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("kernel size k (k x k)")
    ax.set_ylabel("ns per pixel (1024² float32)")
    ax.set_title("Separable (solid, O(k)) against direct (dashed, O(k²))", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    path = out / "bench-kernel-size.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_scaling(plt, sections, out, include_ours):
    pix = [r for r in sections["pixels"] if r.workload.name.startswith("sobel")]
    tsec = sections["threads"]
    if not pix and len(tsec) < 2:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    if pix:
        npx = np.array([np.prod(r.workload.params["shape"]) for r in pix], float)
        names = (["ours"] if include_ours else []) + pix[0].peer_names
        for n in names:
            if all(n in r.times for r in pix):
                ax.plot(
                    npx,
                    [r.median(n) / p * 1e9 for r, p in zip(pix, npx)],
                    marker="o",
                    label=n,
                )
        ax.plot(
            npx,
            [r.floor_s / p * 1e9 for r, p in zip(pix, npx)],
            "k:",
            label="bandwidth floor",
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks(npx, [f"{int(math.sqrt(p))}²" for p in npx])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_xlabel("image size (float32)")
        ax.set_ylabel("ns per pixel")
        ax.set_title("Sobel magnitude: time per pixel against image size", fontsize=10)
        ax.legend(fontsize=8)
    ax = axes[1]
    if len(tsec) >= 2:
        lo, hi = min(tsec), max(tsec)
        labels, groups = [], {}
        for r_lo, r_hi in zip(tsec[lo], tsec[hi]):
            labels.append(re.sub(r" f32 .*", "", r_hi.workload.name))
            for n in r_lo.times:
                key = "peer: " + n if n != "ours" else "ours"
                groups.setdefault(key, {})[len(labels) - 1] = r_lo.median(n) / r_hi.median(n)
        width = 0.8 / max(len(groups), 1)
        for i, (name, vals) in enumerate(groups.items()):
            xs = [j + i * width for j in vals]
            ax.bar(xs, list(vals.values()), width, label=name)
        ax.axhline(hi / lo, color="black", ls=":", lw=0.8)
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(labels))],
            labels,
            fontsize=8,
            rotation=15,
        )
        ax.set_ylabel(f"speed-up {lo} -> {hi} threads")
        ax.set_title("Scaling with threads (dotted: linear)", fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4)
    fig.tight_layout()
    path = out / "bench-scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------- docs


def update_docs(docs: Path, md: str, plot_paths) -> None:
    docs.mkdir(exist_ok=True)
    for p in plot_paths:
        shutil.copyfile(p, docs / Path(p).name)
    page = docs / "performance.md"
    text = page.read_text() if page.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    page.write_text(f"{head}{BEGIN}\n\n{md}\n{END}{tail}")
    print(f"updated {page}")
