"""Reference results the library must reproduce: scipy.ndimage and scikit-image."""

import numpy as np
import skimage.filters as skf
from scipy import ndimage as ndi
from skimage.util import img_as_float

MODES = ("reflect", "constant", "nearest", "mirror", "wrap")
ALIASES = {"grid-mirror": "reflect", "grid-constant": "constant", "grid-wrap": "wrap"}
EDGE_FILTERS = ("sobel", "scharr", "prewitt", "farid")


def as_float(image, dtype=None, preserve_range=False):
    """The float image scikit-image filters see (float16 -> float32, ints scaled)."""
    if image.dtype.kind == "f":
        out = image.astype(np.float32 if image.dtype.itemsize <= 4 else np.float64)
    elif preserve_range:
        out = image.astype(np.float64)
    else:
        out = img_as_float(image)
    return out if dtype is None else out.astype(dtype)


def edge(name, image, axis=None, mode="reflect", cval=0.0, mask=None):
    return getattr(skf, name)(image, mask=mask, axis=axis, mode=mode, cval=cval)


def separable(image, kernels, axes, modes, cval):
    out = image
    for k, axis, mode in zip(kernels, axes, modes):
        out = ndi.correlate1d(out, k, axis=axis, mode=mode, cval=cval)
    return out


def correlate_planes(image, kernel, mode="reflect", cval=0.0):
    """scipy.ndimage.correlate on each 2-D plane over the last two axes."""
    planes = image.reshape((-1,) + image.shape[-2:])
    out = np.stack([ndi.correlate(p, kernel, mode=mode, cval=cval) for p in planes])
    return out.reshape(image.shape)


def depthwise(image, kernels, mode="reflect", cval=0.0):
    """Channel-last reference: output channel c*M + m = correlate(channel c, kernels[c, m])."""
    kernels = np.asarray(kernels, dtype=np.float64)
    if kernels.ndim == 3:
        kernels = kernels[:, None]
    c_in, m = kernels.shape[:2]
    outs = []
    for c in range(c_in):
        for j in range(m):
            outs.append(correlate_planes(np.moveaxis(image[..., c], -1, -1), kernels[c, j], mode, cval))
    return np.stack(outs, axis=-1)


def tolerance(dtype):
    """(rtol, atol relative to the result's scale) per float type."""
    return (2e-5, 2e-6) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


def assert_close(ours, ref, dtype=None):
    dtype = ours.dtype if dtype is None else dtype
    rtol, atol = tolerance(dtype)
    finite = np.isfinite(ref)
    scale = float(np.max(np.abs(ref[finite]))) if finite.any() else 1.0
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol * max(scale, 1.0))
