"""Named 1-D kernels and the SVD split of 2-D kernels into separable terms.

The edge kernels are given in *correlation* form: ``derivative`` weights a
sample's neighbours so that the result is positive where values grow along the
axis. scikit-image's filters convolve with ``[1, 0, -1]``, which is the same.
"""

import numbers
from dataclasses import dataclass, field

import numpy as np

from ._validation import check_kernel

# Smoothing and derivative weights of the edge operators (correlation form).
EDGE_KERNELS = {
    "sobel": (np.array([1.0, 2.0, 1.0]) / 4, np.array([-1.0, 0.0, 1.0])),
    "scharr": (np.array([3.0, 10.0, 3.0]) / 16, np.array([-1.0, 0.0, 1.0])),
    "prewitt": (np.full(3, 1 / 3), np.array([-1.0, 0.0, 1.0])),
    # Farid & Simoncelli (2004), 5-tap weights, as scikit-image gives them.
    "farid": (
        np.array(
            [0.0376593171958126, 0.249153396177344, 0.426374573253687, 0.249153396177344, 0.0376593171958126]
        ),
        np.array([-0.109603762960254, -0.276690988455557, 0.0, 0.276690988455557, 0.109603762960254]),
    ),
}


def edge_kernel_2d(name, axis):
    """The full 2-D kernel (correlation form) of an edge operator along ``axis``.

    Examples
    --------
    >>> from napari_sepconv.kernels import edge_kernel_2d
    >>> edge_kernel_2d('sobel', 0) * 4
    array([[-1., -2., -1.],
           [ 0.,  0.,  0.],
           [ 1.,  2.,  1.]])
    """
    smooth, derivative = EDGE_KERNELS[name]
    return np.outer(derivative, smooth) if axis == 0 else np.outer(smooth, derivative)


def gaussian_kernel_1d(sigma, truncate=4.0):
    """Normalised 1-D Gaussian weights, as ``scipy.ndimage.gaussian_filter`` uses.

    Examples
    --------
    >>> from napari_sepconv.kernels import gaussian_kernel_1d
    >>> w = gaussian_kernel_1d(1.0)
    >>> w.size, round(float(w.sum()), 12)
    (9, 1.0)
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def footprint(kernel):
    """The kernel with weights within one float64 epsilon of zero set to zero.

    ``scipy.ndimage.correlate`` leaves such weights out of its footprint, so
    NaN and inf do not spread through them.
    """
    return np.where(np.abs(kernel) > np.finfo(np.float64).eps, kernel, 0.0)


@dataclass(frozen=True)
class SeparableKernel:
    """A 2-D kernel written as a sum of rank-1 (separable) terms.

    Attributes
    ----------
    terms : list of (ndarray, ndarray)
        ``(column, row)`` 1-D float64 arrays; the kernel is the sum of
        ``np.outer(column, row)``.
    rank : int
        Number of terms.
    error : float
        Relative Frobenius norm of the kernel minus the reconstruction.
    is_exact : bool
        Whether ``error`` is within rounding.
    shape : tuple of int
        Shape of the kernel.
    """

    terms: list
    error: float
    is_exact: bool
    shape: tuple
    kernel: np.ndarray = field(repr=False)

    @property
    def rank(self):
        return len(self.terms)

    @property
    def cost(self):
        """Multiplications per output pixel: ``(direct, separated)``."""
        kh, kw = self.shape
        return kh * kw, self.rank * (kh + kw)

    def reconstruct(self):
        """The 2-D kernel the terms add up to."""
        out = np.zeros(self.shape)
        for column, row in self.terms:
            out += np.outer(column, row)
        return out


def _pivot_factors(kernel):
    """Rank-1 factors through the largest entry: ``column = K[:, j] / K[i, j]``, ``row = K[i, :]``.

    For a rank-1 kernel they reproduce it to rounding (bit for bit for
    kernels such as Sobel's), and they are exactly zero where the kernel's
    rows or columns are, which SVD factors are only to rounding.
    """
    i, j = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    pivot = kernel[i, j]
    if pivot == 0:
        return None
    return kernel[:, j] / pivot, kernel[i, :].copy()


def _svd_factors(kernel, u, s, vt, keep):
    """The first ``keep`` SVD terms, exactly zero on the kernel's zero rows and columns."""
    zero_rows = ~np.any(kernel, axis=1)
    zero_cols = ~np.any(kernel, axis=0)
    terms = []
    for i in range(keep):
        column = u[:, i] * np.sqrt(s[i])
        row = vt[i] * np.sqrt(s[i])
        column[zero_rows] = 0.0
        row[zero_cols] = 0.0
        terms.append((column, row))
    return terms


def _relative_error(kernel, terms, norm):
    recon = np.zeros_like(kernel)
    for c, r in terms:
        recon += np.outer(c, r)
    return float(np.linalg.norm(kernel - recon) / norm) if norm > 0 else 0.0


#: kernels longer than this on a side are split by the reduced SVD (see separate_kernel)
_FULL_SVD_SIDE = 512


def separate_kernel(kernel, *, rank=None, tol=None):
    """Split a 2-D kernel into a sum of rank-1 terms by singular value decomposition.

    Correlating with each term is a column pass and a row pass: ``kh + kw``
    multiplications a pixel instead of ``kh * kw``.

    Parameters
    ----------
    kernel : array_like, shape (kh, kw)
        Finite real weights.
    rank : int, optional
        Number of terms to keep. ``None`` keeps the fewest that reproduce the
        kernel within ``tol``; a smaller integer truncates (the best
        approximation of that rank, by Eckart-Young; see ``.error``).
    tol : float, optional
        Singular values at or below ``tol`` count as zero. Default: a few
        float64 epsilons times the largest singular value and kernel size.

    Returns
    -------
    SeparableKernel

    Raises
    ------
    ValueError
        If the kernel is not 2-D, is empty or not finite, or ``rank`` is not
        between 1 and ``min(kh, kw)``.

    Examples
    --------
    >>> import numpy as np
    >>> import napari_sepconv as sc
    >>> sobel = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    >>> sk = sc.separate_kernel(sobel)
    >>> sk.rank, sk.cost, sk.is_exact
    (1, (9, 6), True)
    >>> laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    >>> sc.separate_kernel(laplacian).rank
    2
    """
    k = check_kernel(kernel, 2)
    max_rank = min(k.shape)
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise TypeError(f"rank must be an integer or None, got {type(rank).__name__}")
        if not 1 <= rank <= max_rank:
            raise ValueError(
                f"rank={rank} is out of range for a {k.shape[0]}x{k.shape[1]} kernel; "
                f"it must lie in [1, {max_rank}]"
            )
    if tol is not None and (
        isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (numbers.Real, np.number))
    ):
        raise TypeError(f"tol must be a real number or None, got {type(tol).__name__}")
    if tol is not None:
        try:
            finite, shown = bool(np.isfinite(float(tol))), repr(tol)
        except OverflowError:
            finite, shown = False, "an integer beyond float64's range"
        if not (finite and tol >= 0):
            raise ValueError(f"tol must be a non-negative finite number, got {shown}")

    # Only the first min(kh, kw) columns of u and rows of vt are used: a long kernel's full
    # square factors would not fit in memory (1 x 100000: 75 GiB). Up to _FULL_SVD_SIDE a
    # side the full decomposition stays, whose last bits (and the results') differ.
    u, s, vt = np.linalg.svd(k, full_matrices=max(k.shape) <= _FULL_SVD_SIDE)
    # Errors are relative: a kernel of weights far from 1 (1e-200, 1e200) is measured in
    # units of its largest singular value, whose squares neither underflow nor overflow.
    unit = float(s[0]) if s.size and s[0] > 0 and not 1e-150 < s[0] < 1e150 else 1.0
    norm = float(np.sqrt(np.sum((s / unit) ** 2)))

    def relative_error(terms):
        return _relative_error(k / unit, [(c / unit, r) for c, r in terms], norm)

    if tol is None:
        tol = 8 * np.finfo(np.float64).eps * max(k.shape) * (s[0] if s.size else 0.0)
    exact_rank = max(1, int(np.sum(s > tol)))
    keep = exact_rank if rank is None else int(rank)

    exact_error = 16 * np.finfo(np.float64).eps * max(k.shape)
    terms = _svd_factors(k, u, s, vt, keep)
    error = relative_error(terms)
    pivot = _pivot_factors(k) if keep == 1 and exact_rank == 1 else None
    if pivot is not None and relative_error([pivot]) <= max(error, exact_error):
        terms, error = [pivot], relative_error([pivot])
    terms = [
        (np.ascontiguousarray(c, dtype=np.float64), np.ascontiguousarray(r, dtype=np.float64))
        for c, r in terms
    ]
    return SeparableKernel(
        terms=terms, error=error, is_exact=bool(error <= exact_error), shape=k.shape, kernel=k
    )
