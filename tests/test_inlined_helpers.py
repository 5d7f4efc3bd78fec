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


def test_integer_min_and_max_are_pythons():
    """``_imin`` and ``_imax`` (compiled once, not Numba's ``min`` and ``max`` once per set of
    compiler options) give Python's results, in compiled code and called from Python."""

    @numba.njit(cache=False)
    def both(a, b):
        return _cpu_kernels._imin(a, b), _cpu_kernels._imax(a, b), _cpu_kernels._imin(4, b)

    for a, b in [(0, 0), (-3, 2), (2, -3), (7, 7), (2**62, -(2**62)), (5, 4)]:
        assert both(a, b) == (min(a, b), max(a, b), min(4, b))
        assert (_cpu_kernels._imin(a, b), _cpu_kernels._imax(a, b)) == (min(a, b), max(a, b))
    signatures = _cpu_kernels._imin.overloads
    literal = [t for sig in signatures for t in sig if isinstance(t, numba.core.types.Literal)]
    assert literal == []  # a literal argument is no signature of its own


def test_a_helper_called_from_python_runs_its_python_function():
    """A helper has no Python entry point: called from Python it runs its Python source
    (calling the missing entry point crashed the process)."""
    assert _cpu_kernels._lowest(np.array([4, -2, 9])) == -2
    assert _cpu_kernels._highest(np.array([4, -2, 9])) == 9
    buf = np.zeros(7)  # a ``_helper``: the row 1, 2, 3 padded by two samples each side
    source = np.array([1, 0, -9, -9, -9, 2, -1])  # reflect on the left, constant at the end
    _cpu_kernels._fill_padded_row(buf, np.array([1.0, 2.0, 3.0]), -2, source, 5.0)
    assert list(buf) == [2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 5.0]


@numba.njit(cache=False)
def _pad_table_of(size, lo, n, mode):
    source = np.full(size, -9, np.int64)
    _cpu_kernels._pad_table(source, lo, n, mode)
    return source


def test_the_pad_table_is_the_border_index_of_every_padded_position():
    """``_pad_table``'s loops, kept scalar (``_opaque``), give ``_source_index`` itself
    outside the line and leave the line's own positions alone, in every mode, for pads
    longer than the line too."""
    from napari_sepconv._boundary import _source_index

    for mode in range(5):
        for n in (1, 2, 3, 7):
            for lo in (0, -1, -3, -9):
                for size in (n, n + 2, n - lo, n - 2 * lo + 5):
                    table = _pad_table_of(size, lo, n, mode)
                    for p in range(size):
                        expected = -9 if 0 <= p + lo < n else _source_index(p + lo, n, mode)
                        assert table[p] == expected, (mode, n, lo, p)


KERNEL_MODULES = (
    "_cpu_kernels",
    "_line_kernels",
    "_separable_kernels",
    "_direct_kernels",
    "_edge_kernels",
    "_depthwise_kernels",
    "_uniform_kernels",
    "_narrow_kernels",
    "_separable_quick",
    "_line_quick",
    "_direct_quick",
    "_edge_quick",
    "_depthwise_quick",
    "_uniform_quick",
    "_sweeps",
    "_vector_sweeps",
    "_streaming",
)


def _kernel_helpers():
    """Every helper of the CPU kernels' modules: a dispatcher with no Python entry point."""
    import importlib

    for module_name in KERNEL_MODULES:
        module = importlib.import_module(f"napari_sepconv.{module_name}")
        for name, value in vars(module).items():
            options = getattr(value, "targetoptions", None)
            if isinstance(value, numba.core.dispatcher.Dispatcher) and options.get("no_cpython_wrapper"):
                yield f"{module_name}.{name}", options


def test_helpers_take_no_reference_counts_but_the_workers():
    """A helper runs once per row or segment: a reference count taken there is an atomic
    operation on a count that every thread shares (and, after rows written past the caches,
    a wait for them to reach memory). The running sums' helpers took one for each array
    they were given, 9 % of a 2048² ``uniform_filter``. Only the workers, which allocate
    their tasks' buffers, count references."""
    helpers = dict(_kernel_helpers())
    assert "_uniform_kernels.sums_of" in helpers and "_separable_kernels._row_pass" in helpers
    counting = sorted(name for name, options in helpers.items() if options.get("_nrt", True))
    assert counting and all(name.endswith("_worker") for name in counting), counting
