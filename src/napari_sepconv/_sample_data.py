"""Sample images, made or bundled: nothing is downloaded."""

from __future__ import annotations

import numpy as np


def astronaut() -> list[tuple]:
    """scikit-image's astronaut photograph (512x512 RGB, bundled with it)."""
    from skimage import data

    return [(data.astronaut(), {"name": "astronaut", "rgb": True}, "image")]


def cells(shape: tuple[int, int, int] = (24, 192, 192), seed: int = 0) -> list[tuple]:
    """A synthetic 3-channel fluorescence stack of cells: nuclei, membranes and
    vesicles, with 1 um z-steps and 0.25 um pixels. Returns one layer per channel
    (take them together with the Channel filter's "selected layers")."""
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    # coordinates in pixel widths (voxels are 4x deeper than wide), broadcast
    z = (np.arange(depth, dtype=np.float32) * 4.0)[:, None, None]
    y = np.arange(height, dtype=np.float32)[None, :, None]
    x = np.arange(width, dtype=np.float32)[None, None, :]
    count = max(4, height * width // 2500)
    centres = np.column_stack(
        [
            rng.uniform(0.3, 0.7, count) * depth * 4.0,
            rng.uniform(0.08, 0.92, count) * height,
            rng.uniform(0.08, 0.92, count) * width,
        ]
    )
    # distance to the nearest and second-nearest cell centre (a Voronoi tiling)
    nearest = np.full(shape, np.inf, np.float32)
    second = nearest.copy()
    for cz, cy, cx in centres:
        distance = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
        second = np.minimum(second, np.maximum(nearest, distance))
        nearest = np.minimum(nearest, distance)
    radius = rng.uniform(9.0, 13.0)
    nuclei = 1.0 / (1.0 + np.exp((nearest - radius) / 1.5))
    membranes = np.exp(-(((second - nearest) / 2.5) ** 2)) * (nearest < 4 * radius)
    vesicles = np.zeros(shape, np.float32)
    spots = rng.integers(0, [depth, height, width], size=(count * 25, 3))
    vesicles[tuple(spots.T)] = rng.uniform(0.5, 1.0, len(spots))
    vesicles *= (nearest > radius) & (nearest < 3.5 * radius)
    vesicles = _blur(vesicles, 1.2)
    vesicles /= vesicles.max() or 1.0

    stack = np.stack([nuclei, membranes, vesicles]).astype(np.float32)
    stack = _blur(stack, 0.8, axes=(2, 3))
    stack += rng.normal(0.0, 0.04, stack.shape).astype(np.float32)
    stack = np.clip(stack * 50000 + 2000, 0, 65535).astype(np.uint16)
    meta = {
        "name": ["nuclei", "membranes", "vesicles"],
        "channel_axis": 0,
        "colormap": ["cyan", "magenta", "yellow"],
        "blending": "additive",
        "scale": (1.0, 0.25, 0.25),
        "units": ("um", "um", "um"),
        "axis_labels": ("z", "y", "x"),
    }
    return [(stack, meta, "image")]


def _blur(array: np.ndarray, sigma: float, axes: tuple[int, ...] | None = None) -> np.ndarray:
    from scipy import ndimage

    sigmas = [0.0] * array.ndim
    for axis in range(array.ndim) if axes is None else axes:
        sigmas[axis] = sigma
    return ndimage.gaussian_filter(array, sigmas)
