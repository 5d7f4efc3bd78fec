"""Small CPU helpers are compiled once and inlined by LLVM (``_cpu_kernels._inlined``)."""

import numba
import numpy as np
import pytest

from napari_sepconv import _cpu_kernels
from napari_sepconv._sweeps import _sweep


def _calls_to(function_name, llvm_ir):
    return [line for line in llvm_ir.splitlines() if " call " in line and function_name in line]


def test_an_inlined_helper_leaves_no_call_in_its_caller():
    """The sweep's four loops would stay a call by LLVM's own measure of cost: the
    ``alwaysinline`` mark is what puts them inside the caller's loops."""

    @numba.njit(cache=False)
    def caller(acc, row):
        _sweep(acc, 4, row, 1.0, row, 2.0, row, 3.0, row, 4.0)

    acc = np.zeros(8)
    caller(acc, np.arange(8.0))
    np.testing.assert_array_equal(acc, 10.0 * np.arange(8.0))
    (compiled,) = caller.overloads.values()
    assert _calls_to("_sweeps6_sweep", compiled.library.get_llvm_str()) == []


def test_the_mark_is_on_the_helper_itself():
    def twice(x):
        return 2.0 * x

    helper = _cpu_kernels._inlined(twice)

    @numba.njit(cache=False)
    def caller(x):
        return helper(x)

    assert caller(3.0) == 6.0
    (compiled,) = helper.overloads.values()
    (function,) = (
        f for f in compiled.library._final_module.functions if f.name == compiled.fndesc.llvm_func_name
    )
    assert any(b"alwaysinline" in bytes(a) for a in function.attributes)
    assert isinstance(_cpu_kernels._source_index, _cpu_kernels._InlinedDispatcher)


def test_a_helper_returning_an_array_is_refused():
    """Compiled without reference counting, a helper returning even its own argument would
    leave its caller releasing a reference never taken."""

    def itself(a):
        return a

    helper = _cpu_kernels._inlined(itself)

    @numba.njit(cache=False)
    def caller(a):
        return helper(a)[0]

    with pytest.raises(Exception, match="may return no array"):
        caller(np.zeros(3))


def test_an_inlined_sweep_checks_no_overlap_at_run_time():
    """The helper's arrays are declared not to overlap (``noalias``): LLVM vectorises its
    loop with no run-time check of the rows against the accumulator, and no scalar copy
    of the loop for when they would overlap (``vector.memcheck`` is that check's block)."""

    @numba.njit(cache=False)
    def caller(acc, r0, r1):
        _sweep(acc, 4, r0, 1.0, r1, 2.0, r0, 3.0, r1, 4.0)

    acc = np.zeros(64)
    caller(acc, np.arange(64.0), np.ones(64))
    np.testing.assert_array_equal(acc, 4.0 * np.arange(64.0) + 6.0)
    (compiled,) = caller.overloads.values()
    llvm_ir = compiled.library.get_llvm_str()
    assert "vector.body" in llvm_ir
    assert "vector.memcheck" not in llvm_ir
