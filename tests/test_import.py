"""Importing is light, and a read-only install still imports and runs."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import napari_sepconv as sc


def _run(code, **kwargs):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600, **kwargs
    )


def test_import_compiles_nothing_and_imports_no_gpu_or_gui():
    proc = _run("""
        import sys
        import napari_sepconv
        heavy = [m for m in ("numba", "numba.cuda", "napari", "qtpy", "PyQt6", "dask",
                             "skimage", "scipy", "napari_sepconv._cpu")
                 if m in sys.modules]
        print(heavy)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_public_names():
    for name in (
        "sobel",
        "scharr",
        "prewitt",
        "farid",
        "sobel_h",
        "sobel_v",
        "scharr_h",
        "scharr_v",
        "prewitt_h",
        "prewitt_v",
        "farid_h",
        "farid_v",
        "correlate1d",
        "convolve1d",
        "separable_filter",
        "separate_kernel",
        "SeparableKernel",
        "filter2d",
        "depthwise_filter",
        "pointwise_filter",
        "depthwise_separable_filter",
        "available_backends",
        "set_backend",
        "BackendUnavailableError",
    ):
        assert hasattr(sc, name), name
        assert name in sc.__all__
    assert issubclass(sc.BackendUnavailableError, RuntimeError)


def test_read_only_install_imports_and_filters(tmp_path):
    """With no writable cache location, Numba's cache=True must not break import or calls."""
    package = Path(sc.__file__).parent
    site = tmp_path / "site"
    shutil.copytree(package, site / "napari_sepconv", ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    for root, _dirs, files in os.walk(tmp_path):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(PYTHONPATH=str(site), HOME=str(home))
    prelude = ""
    if os.geteuid() == 0:
        # root writes through permission bits, so take every cache location away
        prelude = "import numba.core.caching as c; c.CacheImpl._locator_classes = []\n"
    code = prelude + textwrap.dedent("""
        import numpy as np, napari_sepconv as sc
        print(sc.__file__)
        print(float(sc.sobel(np.eye(8)).sum()))
    """)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env
        )
    finally:
        for root, _, _ in os.walk(tmp_path):
            os.chmod(root, 0o755)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(site) in proc.stdout
    assert not (site / "napari_sepconv" / "__pycache__").exists() or os.geteuid() == 0
