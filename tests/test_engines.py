"""The engine interface: both engines implement all of it, and neither imports the other."""

import ast
import inspect
from pathlib import Path

import pytest

from napari_sepconv import _cpu, warmup
from napari_sepconv._engine import ENGINE_METHODS, Engine

PACKAGE = Path(_cpu.__file__).parent


def _engines():
    engines = [_cpu]
    cuda = pytest.importorskip("numba.cuda")  # noqa: F841 - numba-cuda present
    from napari_sepconv import _cuda

    engines.append(_cuda)
    return engines


def test_every_engine_implements_the_whole_interface():
    assert {"separable_2d", "depthwise_separable", "cast_output"} <= set(ENGINE_METHODS)
    for engine in _engines():
        assert isinstance(engine, Engine), engine.__name__
        for name in ENGINE_METHODS:
            expected = [p for p in inspect.signature(getattr(Engine, name)).parameters if p != "self"]
            actual = list(inspect.signature(getattr(engine, name)).parameters)
            assert actual == expected, f"{engine.__name__}.{name}{actual} != {expected}"


def _imports(path):
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n.rsplit(".", 1)[-1] for n in names}


@pytest.mark.parametrize(
    "module, other",
    [("_cuda.py", "_cpu"), ("_cuda_kernels.py", "_cpu"), ("_cpu.py", "_cuda")]
    + [(name, "_cuda") for name in warmup._KERNEL_SOURCES],  # every CPU kernel module
)
def test_engines_import_nothing_of_each_other(module, other):
    imported = _imports(PACKAGE / module)
    assert not {other, f"{other}_kernels"} & imported, f"{module} imports {other}"
