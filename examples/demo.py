"""The main job on a built-in sample: edge, user-kernel and channel filters.

Filters scikit-image's bundled astronaut photograph (no download) with:

* the four edge operators (magnitude), checked against scikit-image;
* user kernels: a Gaussian (rank 1), a Laplacian of Gaussian (rank 2) and a
  random 9x9 kernel, showing each kernel's separable rank and the
  multiplications per pixel the split saves;
* channel filters on the RGB stack: depthwise Sobel per channel, pointwise
  RGB-to-gray mixing, and the fused depthwise-separable filter;

prints what it did and writes a picture of the input and results side by side.

Run: ``python examples/demo.py [--out demo.png]``
"""

import argparse
import time
from pathlib import Path

import numpy as np
import skimage.data
import skimage.filters

import napari_sepconv as sc
from napari_sepconv import warmup
from napari_sepconv.kernels import edge_kernel_2d, gaussian_kernel_1d


def log_kernel(sigma=1.6, radius=6):
    """A Laplacian-of-Gaussian kernel: a sum of two separable terms."""
    g = gaussian_kernel_1d(sigma)[len(gaussian_kernel_1d(sigma)) // 2 - radius :][: 2 * radius + 1]
    x = np.arange(-radius, radius + 1)
    d2 = g * (x**2 / sigma**4 - 1 / sigma**2)
    return np.outer(d2, g) + np.outer(g, d2)


def warm(label, func, *args, **kwargs):
    """Call ``func`` once untimed: Numba compiles a kernel on its first use (cached on disk
    after that), and a timing must never include a compile."""
    print(f"  compiling {label} if needed (first time only) ...", end="", flush=True)
    start = time.perf_counter()
    func(*args, **kwargs)
    elapsed = time.perf_counter() - start
    print(f" done in {elapsed:.1f} s" if elapsed >= 0.5 else " already compiled", end="", flush=True)
    # The first call of a kernel not yet compiled may have run its quick twin (same values)
    # while the fast one compiled in the background: wait for it, and load it, before any timing.
    start = time.perf_counter()
    if warmup.finish_background_compiles():
        func(*args, **kwargs)
        print(f"; the fast kernel {time.perf_counter() - start:.1f} s more, in the background", end="")
    print(flush=True)


def timed(label, func, *args, **kwargs):
    """Warm ``func`` up, then time one call."""
    warm(label, func, *args, **kwargs)
    start = time.perf_counter()
    result = func(*args, **kwargs)
    elapsed = time.perf_counter() - start
    print(f"  {label:<46s} {elapsed * 1e3:8.1f} ms  -> {result.shape} {result.dtype}")
    return result


def to_display(image):
    """Scale a result to [0, 1] for the picture (robust to outliers)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3 and image.shape[-1] not in (3, 4):
        image = image[..., 0]
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / (hi - lo + 1e-12), 0, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo.png", help="picture to write (PNG)")
    args = parser.parse_args(argv)

    rgb = skimage.data.astronaut()  # (512, 512, 3) uint8, bundled with scikit-image
    gray = skimage.color.rgb2gray(rgb).astype(np.float32)
    print(f"napari-sepconv {sc.__version__}: backends {sc.available_backends()}")
    print(f"Sample: scikit-image astronaut, RGB {rgb.shape} {rgb.dtype}, gray {gray.shape} {gray.dtype}\n")

    print("Edge filters (magnitude, 1-D passes); each is warmed up before it is timed:")
    panels = [("input (gray)", gray)]
    for name in ("sobel", "scharr", "prewitt", "farid"):
        ours = timed(f"sc.{name}(gray)", getattr(sc, name), gray)
        ref = getattr(skimage.filters, name)(gray)
        err = float(np.max(np.abs(ours - ref)))
        print(f"  {'':<46s} max |ours - skimage| = {err:.1e}")
        panels.append((name, ours))

    print("\nUser kernels (split by SVD, run as rank x 2 passes when cheaper):")
    rng = np.random.default_rng(0)
    gauss = gaussian_kernel_1d(2.0, truncate=1.5)
    kernels = {
        "gaussian": np.outer(gauss, gauss),
        "laplacian of gaussian": log_kernel(),
        "random": rng.standard_normal((9, 9)),
    }
    kernels = {f"{name} {k.shape[0]}x{k.shape[1]}": k for name, k in kernels.items()}
    for name, kernel in kernels.items():
        split = sc.separate_kernel(kernel)
        direct, separated = split.cost
        how = "separable" if separated < direct else "direct"
        print(
            f"  {name:<28s} rank {split.rank}: {direct} -> {min(direct, separated)} "
            f"multiplications/pixel ({how}, error {split.error:.1e})"
        )
        result = timed(f"sc.filter2d(gray, {name})", sc.filter2d, gray, kernel)
        if name.startswith("laplacian"):
            panels.append(("LoG filter2d (rank 2)", result))
    approx = sc.separate_kernel(kernels["random 9x9"], rank=3)  # the best rank-3 approximation
    print(
        f"  random 9x9 truncated to rank 3: relative error {approx.error:.2f}, "
        f"{approx.cost[0]} -> {approx.cost[1]} multiplications/pixel"
    )

    print("\nThe Gaussian family (drop-ins for skimage.filters and scipy.ndimage):")
    from scipy import ndimage
    from skimage import filters

    blurred = timed("sc.gaussian(gray, sigma=2)", sc.gaussian, gray, sigma=2)
    print(f"{'':49s}max |ours - skimage| = {np.abs(blurred - filters.gaussian(gray, sigma=2)).max():.1e}")
    log = timed("sc.gaussian_laplace(gray, sigma=2)", sc.gaussian_laplace, gray, 2)
    print(f"{'':49s}max |ours - scipy| = {np.abs(log - ndimage.gaussian_laplace(gray, 2)).max():.1e}")
    panels.append(("gaussian sigma 2", blurred))

    print("\nChannel filters on the RGB stack (channel axis last):")
    sobel_x = edge_kernel_2d("sobel", 1)
    depthwise = timed(
        "sc.depthwise_filter(rgb, 3 Sobel kernels)", sc.depthwise_filter, rgb, np.stack([sobel_x] * 3)
    )
    luminance = np.array([[0.2125, 0.7154, 0.0721]])
    mixed = timed("sc.pointwise_filter(rgb, luminance weights)", sc.pointwise_filter, rgb, luminance)
    dw = np.stack([[edge_kernel_2d("sobel", 0), sobel_x]] * 3)  # (3, 2, 3, 3): M = 2
    pw = rng.standard_normal((8, 6))
    fused = timed("sc.depthwise_separable_filter(rgb, 3x2, 6->8)", sc.depthwise_separable_filter, rgb, dw, pw)
    c, m, kh, kw = dw.shape
    full = c * pw.shape[0] * kh * kw
    separable_cost = c * m * kh * kw + c * m * pw.shape[0]
    print(
        f"  depthwise-separable: {separable_cost} multiplications/pixel instead of {full} "
        f"for a full 3->8 convolution with 3x3 kernels"
    )
    panels += [
        ("depthwise sobel (RGB)", np.abs(depthwise)),
        ("pointwise: luminance", mixed[..., 0]),
        ("depthwise-separable ch 0", fused[..., 0]),
    ]

    out = Path(args.out)
    write_picture(rgb, panels, out)
    print(f"\nWrote {out.resolve()} (input and results side by side)")


def write_picture(rgb, panels, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # no matplotlib: a plain mosaic without titles
        import imageio.v3 as iio

        tiles = [to_display(p) for _, p in panels]
        tiles = [np.repeat(t[..., None], 3, -1) if t.ndim == 2 else t for t in tiles]
        row = np.concatenate([rgb / 255.0] + tiles, axis=1)
        iio.imwrite(path, (row * 255).astype(np.uint8))
        return
    n = len(panels) + 1
    cols = 5
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows))
    for ax in axes.ravel():
        ax.axis("off")
    axes.ravel()[0].imshow(rgb)
    axes.ravel()[0].set_title("input (RGB)")
    for ax, (title, image) in zip(axes.ravel()[1:], panels):
        shown = to_display(image)
        ax.imshow(shown, cmap=None if shown.ndim == 3 else "gray")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
