"""Kernels and channel weights the napari widgets offer by name, and the
parsers for kernels typed in or loaded from ``.npy`` files."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .kernels import EDGE_KERNELS, edge_kernel_2d, gaussian_kernel_1d


def _gaussian_second_derivative(sigma: float) -> np.ndarray:
    """The second derivative of the sampled Gaussian, on its support (4 sigma)."""
    g = gaussian_kernel_1d(sigma)
    radius = g.size // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    return g * (x**2 - sigma**2) / sigma**4


def _gaussian(sigma: float) -> np.ndarray:
    g = gaussian_kernel_1d(sigma)
    return np.outer(g, g)


#: The discrete Laplacian (4-neighbour), which kernels.py does not define.
LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _disk(size: int) -> np.ndarray:
    r = (size - 1) / 2
    y, x = np.mgrid[:size, :size] - r
    disk = (x**2 + y**2 <= (r + 0.5) ** 2).astype(np.float64)
    return disk / disk.sum()


def _box(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / size**2)


def _log(sigma: float) -> np.ndarray:
    g, d2 = gaussian_kernel_1d(sigma), _gaussian_second_derivative(sigma)
    return np.outer(d2, g) + np.outer(g, d2)


def _sharpen(size: int) -> np.ndarray:
    kernel = -_box(size)
    kernel[size // 2, size // 2] += 2.0
    return kernel


def _edge_presets() -> dict:
    """'Sobel y', 'Sobel x', ... for every edge operator of the library: the
    correlation kernels of ``sc.<name>_h`` (y) and ``sc.<name>_v`` (x)."""
    presets = {}
    for name in EDGE_KERNELS:
        for axis, direction in ((0, "y"), (1, "x")):
            presets[f"{name.capitalize()} {direction}"] = (
                lambda sigma, size, name=name, axis=axis: edge_kernel_2d(name, axis),
                None,
            )
    return presets


#: name -> (function of (sigma, size), which of sigma/size it uses)
KERNEL_PRESETS: dict[str, tuple[Callable[[float, int], np.ndarray], str | None]] = {
    "Gaussian": (lambda sigma, size: _gaussian(sigma), "sigma"),
    "box (mean)": (lambda sigma, size: _box(size), "size"),
    "disk (mean)": (lambda sigma, size: _disk(size), "size"),
    "Laplacian": (lambda sigma, size: LAPLACIAN.copy(), None),
    "Laplacian of Gaussian": (lambda sigma, size: _log(sigma), "sigma"),
    "sharpen": (lambda sigma, size: _sharpen(size), "size"),
    **_edge_presets(),
}

#: presets of the Channel filter that give each channel several kernels
#: (a depth multiplier): name -> kernels of shape (M, kh, kw)
MULTI_KERNEL_PRESETS: dict[str, Callable[[float, int], np.ndarray]] = {
    "Sobel y and x (2 per channel)": lambda sigma, size: np.stack(
        [edge_kernel_2d("sobel", 0), edge_kernel_2d("sobel", 1)]
    ),
    "Gaussian at sigma and 2 sigma (2 per channel)": lambda sigma, size: _padded_stack(
        [_gaussian(s) for s in (sigma, 2 * sigma)]
    ),
}


def preset_tag(name: str, sigma: float = 1.0, size: int = 3) -> str:
    """A preset and the parameter it uses, briefly, for a result's name:
    ``gaussian σ=2``, ``box 5``, ``sobel x``."""
    uses = preset_parameter(name)
    short = {
        "Laplacian of Gaussian": "LoG",
        "Sobel y and x (2 per channel)": "sobel y+x",
        "Gaussian at sigma and 2 sigma (2 per channel)": "gaussian ×2",
    }.get(name, name.split(" (")[0])
    short = short if short == "LoG" else short.lower()
    if uses == "sigma":
        return f"{short} σ={sigma:g}"
    if uses == "size":
        return f"{short} {size}"
    return short


def kernel_filter_tag(name: str, sigma: float = 1.0, size: int = 3) -> str:
    """A Kernel filter preset, briefly, for a result's name: :func:`preset_tag`, but
    ``gaussian kernel σ=2`` for the Gaussian, whose result the Smooth widget's Gaussian
    blur (``gaussian σ=2``, another call) would otherwise share a name with."""
    if name == "Gaussian":
        return f"gaussian kernel σ={sigma:g}"
    return preset_tag(name, sigma, size)


def _padded_stack(kernels: list[np.ndarray]) -> np.ndarray:
    """Stack square odd kernels, zero-padding the small ones to the largest."""
    n = max(k.shape[0] for k in kernels)
    return np.stack([np.pad(k, (n - k.shape[0]) // 2) for k in kernels])


def preset_kernel(name: str, sigma: float = 1.0, size: int = 3) -> np.ndarray:
    """The 2-D kernel of a preset (or an (M, kh, kw) stack for a multi-kernel one)."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    if name in MULTI_KERNEL_PRESETS:
        return MULTI_KERNEL_PRESETS[name](sigma, size)
    try:
        make, _ = KERNEL_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown kernel preset {name!r}") from None
    return make(sigma, size)


def preset_parameter(name: str) -> str | None:
    """'sigma', 'size' or None: which parameter a preset uses."""
    if name in KERNEL_PRESETS:
        return KERNEL_PRESETS[name][1]
    return "sigma" if "Gaussian" in name else None


def parse_kernel(text: str) -> np.ndarray:
    """A 2-D kernel from text: rows separated by newlines or ';', numbers by
    spaces or commas; brackets are ignored, so ``[[1, 2], [3, 4]]`` works too.
    Fractions such as ``1/16`` are accepted."""
    text = text.strip()
    if not text:
        raise ValueError("kernel: type at least one number")
    rows = [r for r in re.split(r"\]\s*,\s*\[|[;\n]", text) if r.strip(" \t[],")]
    values = [[_number(v) for v in re.split(r"[\s,]+", r.strip(" \t[],")) if v] for r in rows]
    if len({len(r) for r in values}) != 1:
        raise ValueError("kernel: every row must have the same number of values")
    return np.array(values, dtype=np.float64)


def _number(text: str) -> float:
    try:
        if "/" in text:
            numerator, denominator = text.split("/")
            return float(numerator) / float(denominator)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"kernel: {text!r} is not a number") from None


def load_array(path: str | Path | None, what: str) -> np.ndarray:
    """A numeric array from a ``.npy`` file; ``what`` names it in errors."""
    if path is None or str(path) in ("", "."):
        raise ValueError(f"{what}: choose a .npy file")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what}: file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{what}: cannot read {path.name} as a .npy array ({error})") from None
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what}: {path.name} holds {array.dtype} values, expected numbers")
    return array.astype(np.float64)


#: name -> weights for C input channels, shape (C_out, C)
WEIGHT_PRESETS: dict[str, Callable[[int], np.ndarray]] = {
    "mean of channels": lambda c: np.full((1, c), 1.0 / c),
    "sum of channels": lambda c: np.ones((1, c)),
    "luminance (RGB to grey)": lambda c: _need_channels(c, 3, np.array([[0.2125, 0.7154, 0.0721]])),
    "last minus first": lambda c: _difference(c),
    "identity (keep channels)": lambda c: np.eye(c),
}


def _need_channels(channels: int, expected: int, weights: np.ndarray) -> np.ndarray:
    if channels != expected:
        raise ValueError(f"weights: this preset needs {expected} channels, the image has {channels}")
    return weights


def _difference(channels: int) -> np.ndarray:
    if channels < 2:
        raise ValueError("weights: 'last minus first' needs at least 2 channels")
    weights = np.zeros((1, channels))
    weights[0, 0], weights[0, -1] = -1.0, 1.0
    return weights


def preset_weights(name: str, channels: int, alpha: bool = False) -> np.ndarray:
    """The preset's weights for ``channels`` input channels; ``alpha``: the last one is an
    RGBA layer's alpha, which every preset but the identity leaves out (weight 0)."""
    try:
        preset = WEIGHT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown weights preset {name!r}") from None
    if alpha and name != "identity (keep channels)":
        weights = preset(channels - 1)
        return np.append(weights, np.zeros((weights.shape[0], 1)), axis=1)
    return preset(channels)
