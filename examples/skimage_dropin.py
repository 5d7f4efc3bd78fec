"""napari-sepconv as a drop-in for scikit-image and scipy.ndimage filters.

A typical scikit-image script: find edges in a 3-D fluorescence-like volume,
smooth it with a separable kernel, and mask the result. Swapping the import is
the only change: the functions take the same arguments and give the same
values (checked below).

Run: ``python examples/skimage_dropin.py``
"""

import time

import numpy as np
import skimage.filters
from scipy import ndimage as ndi

import napari_sepconv as sc
from napari_sepconv import warmup


def blobs_volume(shape=(32, 256, 256), n=60, seed=0):
    """Gaussian blobs in noise: a stand-in for a nuclei stack (no download)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    volume = rng.normal(0.05, 0.02, shape).astype(np.float32)
    for cz, cy, cx in zip(*(rng.integers(0, s, n) for s in shape)):
        volume += np.exp(-((z - cz) ** 2 / 8 + (y - cy) ** 2 / 40 + (x - cx) ** 2 / 40))
    return volume


def warm(label, call):
    """Call once untimed: Numba compiles a kernel on its first use (cached on disk after that),
    and a timing must never include a compile."""
    print(f"compiling {label} if needed (first time only) ...", end="", flush=True)
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    print(f" done in {elapsed:.1f} s" if elapsed >= 0.5 else " already compiled", end="", flush=True)
    # A kernel's first call may have run its quick twin (same values) while the fast one
    # compiled in the background: wait for it, and load it, before any timing.
    start = time.perf_counter()
    if warmup.finish_background_compiles():
        call()
        print(f"; the fast kernel {time.perf_counter() - start:.1f} s more, in the background", end="")
    print(flush=True)


def compare(label, ours_call, ref_call):
    """Time the reference and our call (warmed up first) and compare their values."""
    warm(label, ours_call)
    t0 = time.perf_counter()
    ref = ref_call()
    t1 = time.perf_counter()
    ours = ours_call()
    t2 = time.perf_counter()
    err = float(np.max(np.abs(ours - ref)) / (np.max(np.abs(ref)) or 1.0))
    print(
        f"{label:<40s} reference {1e3 * (t1 - t0):7.1f} ms   napari-sepconv "
        f"{1e3 * (t2 - t1):7.1f} ms   max rel. difference {err:.1e}"
    )


def main():
    volume = blobs_volume()
    mask = volume > 0.3

    # skimage.filters.sobel -> sc.sobel, same arguments
    compare("sobel 3-D magnitude", lambda: sc.sobel(volume), lambda: skimage.filters.sobel(volume))
    compare(
        "scharr along z, constant border",
        lambda: sc.scharr(volume, axis=0, mode="constant", cval=0.1),
        lambda: skimage.filters.scharr(volume, axis=0, mode="constant", cval=0.1),
    )
    compare(
        "farid per plane (2-D, masked)",
        lambda: sc.farid(volume[10], mask=mask[10]),
        lambda: skimage.filters.farid(volume[10], mask=mask[10]),
    )

    # scipy.ndimage.correlate1d / gaussian-style separable smoothing
    w = np.exp(-0.5 * (np.arange(-7, 8) / 2.5) ** 2)
    w /= w.sum()
    compare(
        "correlate1d, 15 taps along x",
        lambda: sc.correlate1d(volume, w, axis=-1),
        lambda: ndi.correlate1d(volume, w, axis=-1),
    )
    compare(
        "separable 15-tap smoothing in y and x",
        lambda: sc.separable_filter(volume, [w, w]),
        lambda: ndi.correlate1d(ndi.correlate1d(volume, w, 1), w, 2),
    )

    # scipy.ndimage.correlate on each plane with a user kernel (rank 2: 2 x 2 passes)
    log = np.outer(w, np.gradient(np.gradient(w))) + np.outer(np.gradient(np.gradient(w)), w)
    compare(
        "filter2d, 15x15 rank-2 kernel per plane",
        lambda: sc.filter2d(volume, log),
        lambda: np.stack([ndi.correlate(p, log) for p in volume]),
    )


if __name__ == "__main__":
    main()
