"""Separable convolution for scientific images, on the CPU and on CUDA GPUs.

scikit-image-style edge filters, scipy.ndimage-style 1-D filtering, separable
and SVD-split user kernels, and depthwise/pointwise channel filters, all
computed as 1-D passes by Numba kernels. Importing the package compiles
nothing: kernels are built (or loaded from Numba's on-disk cache) on first use.

>>> import numpy as np
>>> import napari_sepconv as sc
>>> edges = sc.sobel(np.random.default_rng(0).random((64, 64)))
>>> edges.shape, edges.dtype
((64, 64), dtype('float64'))
"""

from ._backend import (
    BackendUnavailableError,
    available_backends,
    get_backend,
    set_backend,
)
from .channels import depthwise_filter, depthwise_separable_filter, pointwise_filter
from .edges import (
    farid,
    farid_h,
    farid_v,
    prewitt,
    prewitt_h,
    prewitt_v,
    scharr,
    scharr_h,
    scharr_v,
    sobel,
    sobel_h,
    sobel_v,
)
from .kernels import SeparableKernel, separate_kernel
from .separable import convolve1d, correlate1d, filter2d, separable_filter
from .smoothing import (
    difference_of_gaussians,
    gaussian,
    gaussian_filter,
    gaussian_filter1d,
    gaussian_gradient_magnitude,
    gaussian_laplace,
    laplace,
    ndimage_laplace,
    uniform_filter,
    uniform_filter1d,
    unsharp_mask,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "SeparableKernel",
    "available_backends",
    "convolve1d",
    "correlate1d",
    "depthwise_filter",
    "depthwise_separable_filter",
    "difference_of_gaussians",
    "farid",
    "farid_h",
    "farid_v",
    "filter2d",
    "gaussian",
    "gaussian_filter",
    "gaussian_filter1d",
    "gaussian_gradient_magnitude",
    "gaussian_laplace",
    "get_backend",
    "laplace",
    "ndimage_laplace",
    "pointwise_filter",
    "prewitt",
    "prewitt_h",
    "prewitt_v",
    "scharr",
    "scharr_h",
    "scharr_v",
    "separable_filter",
    "separate_kernel",
    "set_backend",
    "sobel",
    "sobel_h",
    "sobel_v",
    "uniform_filter",
    "uniform_filter1d",
    "unsharp_mask",
]
