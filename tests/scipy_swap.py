"""A pytest plugin that runs scipy.ndimage's own tests on napari_sepconv's functions.

Each test finds, under SciPy's names in ``scipy.ndimage``, the functions this package
offers in their place (``tests/test_scipy_suite.py`` runs SciPy's filter tests so).
The swap is made when each test runs, after collection: SciPy's test module reads its
capability tables at import, keyed by SciPy's own functions.
"""

import pytest
import scipy.ndimage

import napari_sepconv as sc

SWAPPED = {
    "correlate1d": sc.correlate1d,
    "convolve1d": sc.convolve1d,
    "gaussian_filter": sc.gaussian_filter,
    "gaussian_filter1d": sc.gaussian_filter1d,
    "gaussian_gradient_magnitude": sc.gaussian_gradient_magnitude,
    "gaussian_laplace": sc.gaussian_laplace,
    "laplace": sc.ndimage_laplace,
    "uniform_filter": sc.uniform_filter,
    "uniform_filter1d": sc.uniform_filter1d,
}


@pytest.fixture(autouse=True)
def _napari_sepconv_in_scipys_place(monkeypatch):
    for name, function in SWAPPED.items():
        monkeypatch.setattr(scipy.ndimage, name, function)
