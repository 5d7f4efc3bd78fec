"""SciPy's own ``scipy.ndimage`` filter tests, run on napari_sepconv's functions."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("hypothesis")  # SciPy's test module uses it


def test_scipys_own_filter_tests_pass_with_our_functions_in_place():
    """Every test of ``scipy/ndimage/tests/test_filters.py`` (SciPy's correlate1d, convolve1d,
    Gaussian, uniform and Laplace tests among SciPy's other filters) passes with this
    package's functions swapped in under SciPy's names (``tests/scipy_swap.py``), but the one
    on the README's departure (float16 input)."""
    here = os.path.dirname(__file__)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pytest", "-p", "scipy_swap", "-p", "no:cacheprovider", "-q"]
    # The departure (README): float16 input is filtered here, as every filter of this
    # package filters it (the public contract), where SciPy's test asks for its RuntimeError.
    command += ["-k", "not test_gaussian_filter_float16"]
    command += ["-W", "ignore", "--pyargs", "scipy.ndimage.tests.test_filters"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=here, timeout=1200)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
    assert proc.returncode == 0, f"{summary}\n{proc.stdout[-6000:]}"
    assert " passed" in summary and "failed" not in summary and "1 deselected" in summary, summary
