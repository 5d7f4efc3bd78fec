"""SVD separation of 2-D kernels."""

import warnings

import numpy as np
import pytest

import napari_sepconv as sc
from napari_sepconv.kernels import EDGE_KERNELS, edge_kernel_2d, gaussian_kernel_1d


def test_sobel_is_rank_one_and_exact():
    sobel = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    sk = sc.separate_kernel(sobel)
    assert sk.rank == 1 and sk.is_exact and sk.error == 0.0
    assert sk.cost == (9, 6)
    np.testing.assert_array_equal(sk.reconstruct(), sobel)
    column, row = sk.terms[0]
    assert column.dtype == row.dtype == np.float64 and column.shape == row.shape == (3,)


def test_laplacian_is_rank_two():
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    sk = sc.separate_kernel(laplacian)
    assert sk.rank == 2 and sk.is_exact
    assert sk.cost == (9, 12)
    np.testing.assert_allclose(sk.reconstruct(), laplacian, atol=1e-14)


@pytest.mark.parametrize("k", [3, 5, 8, 11])
def test_random_kernel_is_full_rank(rng, k):
    kernel = rng.standard_normal((k, k))
    sk = sc.separate_kernel(kernel)
    assert sk.rank == k and sk.is_exact
    np.testing.assert_allclose(sk.reconstruct(), kernel, atol=1e-12)


@pytest.mark.parametrize("shape", [(7, 7), (9, 5), (4, 11)])
def test_truncation_error_is_eckart_young(rng, shape):
    kernel = rng.standard_normal(shape)
    s = np.linalg.svd(kernel, compute_uv=False)
    for rank in range(1, min(shape) + 1):
        sk = sc.separate_kernel(kernel, rank=rank)
        expected = np.sqrt(np.sum(s[rank:] ** 2)) / np.sqrt(np.sum(s**2))
        assert sk.rank == rank
        assert abs(sk.error - expected) < 1e-12
        assert abs(np.linalg.norm(kernel - sk.reconstruct()) / np.linalg.norm(kernel) - sk.error) < 1e-12
        assert sk.is_exact == (rank == min(shape))


def test_named_kernels_factor_exactly():
    for name in EDGE_KERNELS:
        for axis in (0, 1):
            kernel = edge_kernel_2d(name, axis)
            sk = sc.separate_kernel(kernel)
            assert sk.rank == 1 and sk.is_exact
    gauss = np.outer(gaussian_kernel_1d(2.0), gaussian_kernel_1d(2.0))
    assert sc.separate_kernel(gauss).rank == 1


def test_tol_controls_exact_rank(rng):
    kernel = np.outer(rng.random(5), rng.random(5)) + 1e-6 * rng.random((5, 5))
    assert sc.separate_kernel(kernel).rank > 1
    assert sc.separate_kernel(kernel, tol=1e-3).rank == 1


def test_zero_kernel():
    sk = sc.separate_kernel(np.zeros((3, 3)))
    assert sk.rank == 1 and sk.error == 0.0
    np.testing.assert_array_equal(sk.reconstruct(), 0)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.ones(3), ValueError, "kernel"),
        (np.ones((2, 2, 2)), ValueError, "kernel"),
        (np.ones((0, 3)), ValueError, "kernel"),
        (np.array([[1, np.nan], [0, 1]]), ValueError, "kernel"),
        (np.array([[1j, 0], [0, 1]]), TypeError, "kernel"),
        (np.array([["a"]]), TypeError, "kernel"),
    ],
)
def test_bad_kernels(bad, exc, match):
    with pytest.raises(exc, match=match):
        sc.separate_kernel(bad)


def test_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        sc.separate_kernel(np.ones((3, 4)), rank=4)
    with pytest.raises(ValueError, match="rank"):
        sc.separate_kernel(np.ones((3, 4)), rank=0)
    with pytest.raises(TypeError, match="rank"):
        sc.separate_kernel(np.ones((3, 4)), rank=1.5)
    with pytest.raises(ValueError, match="tol"):
        sc.separate_kernel(np.ones((3, 4)), tol=-1)
    with pytest.raises(ValueError, match="tol must be a non-negative finite number"):
        sc.separate_kernel(np.ones((3, 4)), tol=10**400)  # beyond float64: NumPy's error named nothing


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_error_of_kernels_far_from_one(rng, scale):
    """The norms of a kernel of weights near 1e-200 underflowed (an approximation reported
    exact, error 0) and near 1e200 overflowed (error NaN, with warnings)."""
    kernel = rng.standard_normal((4, 4))
    expected = sc.separate_kernel(kernel, rank=1).error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = sc.separate_kernel(kernel * scale, rank=1)
    assert not split.is_exact
    np.testing.assert_allclose(split.error, expected, rtol=1e-12)
