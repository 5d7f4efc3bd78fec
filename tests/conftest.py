import os
import secrets
import sys
import zlib

import numpy as np
import pytest

# The suite runs the fast kernels, as the warm-up cached them: a process with an empty cache
# (several tests start one) compiles them itself instead of running quick twins while a
# background process compiles them. tests/test_tiers.py checks the quick kernels and the
# hand-over, turning them on where it needs them.
os.environ.setdefault("SEPCONV_QUICK_KERNELS", "0")

# Fresh random data on every run; set SEPCONV_TEST_SEED to replay a failing run.
RUN_SEED = int(os.environ.get("SEPCONV_TEST_SEED", secrets.randbelow(2**31)))

try:
    from hypothesis import settings

    settings.register_profile("ci", max_examples=40, deadline=None)
    settings.register_profile("dev", max_examples=25, deadline=None)
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:  # pragma: no cover
    pass


def pytest_report_header(config):
    return f"napari-sepconv test seed: SEPCONV_TEST_SEED={RUN_SEED}"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: every worker draws its data from the seed the header reports."""
    node.workerinput["sepconv_test_seed"] = RUN_SEED


def _run_seed(config):
    return getattr(config, "workerinput", {}).get("sepconv_test_seed", RUN_SEED)


@pytest.fixture
def rng(request):
    """Random data fresh per run, reproducible with the seed in the report header."""
    return np.random.default_rng([_run_seed(request.config), zlib.crc32(request.node.nodeid.encode())])


def _dask_scheduler():
    dask = sys.modules.get("dask")
    return None if dask is None else dask.config.get("scheduler", None)


@pytest.fixture(autouse=True)
def _dask_scheduler_left_alone():
    """A command run in-process must not change the Dask scheduler of its caller.

    A leaked ``scheduler='dask.distributed'`` (a default ``Client`` that never closed, such
    as one whose address was refused) makes every later ``.compute()`` in the process fail;
    the test that leaked it fails here, and the setting is put back for the tests after it.
    """
    before = _dask_scheduler()
    yield
    after = _dask_scheduler()
    if after != before:
        sys.modules["dask"].config.set(scheduler=before)
        pytest.fail(f"the test left dask's scheduler set to {after!r} (was {before!r})")
