"""Kernels that run their workers on Numba's threading layer without a parallel loop.

A kernel's parallel loop only hands each thread (a *worker*) its share of the task queue
(``_cpu_kernels._task_queue``), yet a ``prange`` loop cost each kernel's cold compile 0.6
to 1.6 s: Numba's parallel lowering types the loop's body again, lowers it as a gufunc,
wraps it twice and compiles the four modules. Here a kernel is compiled as plain serial
code; its loop body is a function of its own, the *worker* (``worker(w, state)``: worker
``w``'s tasks, ``state`` the tuple of everything the body reads), a helper called by
address (``_helper_calls``), and :func:`worker_launch` starts the workers as Numba's
parallel lowering does: it calls the threading layer's ``parallel_for`` with a small
entry point of the gufunc kind, written here in LLVM IR, that calls the worker for each
index it is handed. One worker runs on the calling thread, with no parallel region.

This module imports Numba and is imported on first use only (by the kernels' modules).
"""

import llvmlite.ir
import numba
from numba.core import cgutils, types

from ._cpu_kernels import _helper, _start_threading_layer, _thread_count_value
from ._helper_calls import _address_of, _compiled, _typed

_byte_ptr = llvmlite.ir.IntType(8).as_pointer()
# ``void entry(char **args, intp *dims, intp *steps, void *data)``: what ``parallel_for`` calls
_ENTRY_TYPE = llvmlite.ir.FunctionType(
    llvmlite.ir.VoidType(),
    [_byte_ptr.as_pointer(), cgutils.intp_t.as_pointer(), cgutils.intp_t.as_pointer(), _byte_ptr],
)
# ``parallel_for(fn, args, dims, steps, data, inner_ndim, array_count, num_threads)``, declared
# as Numba's parallel lowering declares it
_PARALLEL_FOR_TYPE = llvmlite.ir.FunctionType(llvmlite.ir.VoidType(), [_byte_ptr] * 5 + [cgutils.intp_t] * 3)
# what the entry point's ``data`` holds: the worker's address, the queue's first counter and
# the state
_DATA_TYPE = llvmlite.ir.LiteralStructType([_byte_ptr, _byte_ptr, _byte_ptr])


def worker_helper(func, **options):
    """``func`` as a kernel's worker: a helper called by address (``_cpu_kernels._helper``,
    with Numba's ``options``) that, unlike the others, allocates its tasks' buffers itself.

    Its arithmetic follows NumPy's error model, as the body of a ``prange`` loop did (an
    integer division by zero gives 0 instead of raising): a worker reports nothing to its
    kernel, so an exception would only stop it.
    """
    return _helper(func, _nrt=True, **{"error_model": "numpy", **options})


def worker_launch(worker):
    """``launch(helpers, missing, queue, state)``: ``worker(w, state)`` for every worker
    ``w`` of ``queue`` (``_cpu_kernels._task_queue``: one counter per worker), on as many
    threads (at most the number set for this thread); one worker runs on the calling
    thread, with no parallel region, and an empty queue runs none.

    ``worker`` is a helper called by address (``_helper_calls``: ``helpers`` is the table,
    ``missing`` a one-element int64 array), compiled for ``(int64, type of state)`` when
    the kernel is typed. Where the table has no address for it, no worker runs and
    ``missing[0]`` holds its key (the engine loads it and calls the kernel again).
    ``state`` is a tuple, passed to every worker as it is: its arrays are shared.
    """

    @numba.extending.intrinsic
    def launch(typingctx, helpers, missing, queue, state):
        if not (isinstance(queue, types.Array) and queue.dtype == types.int64 and queue.ndim == 1):
            return None
        worker_types = (types.int64, types.unliteral(state))
        argtypes, key = _typed(worker, types.Tuple(worker_types))
        _compiled(worker, argtypes)

        def codegen(context, builder, signature, llargs):
            _start_threading_layer(context)
            helpers_value, missing_value, queue_value, state_value = llargs
            # as the worker was compiled for it (a literal member made an ordinary value)
            state_value = context.cast(builder, state_value, signature.args[3], argtypes[1])
            address = _address_of(context, builder, signature, (helpers_value, missing_value, None), key, key)
            function_type = context.call_conv.get_function_type(types.none, argtypes)
            with builder.if_then(builder.icmp_signed("!=", address, address.type(0)), likely=True):
                function = builder.inttoptr(address, function_type.as_pointer())
                counters = context.make_array(signature.args[2])(context, builder, queue_value)
                n_workers = builder.extract_value(counters.shape, 0)
                with builder.if_else(builder.icmp_signed(">", n_workers, n_workers.type(1))) as (many, few):
                    with many:
                        _parallel_for(
                            context, builder, function, argtypes, key, counters, n_workers, state_value
                        )
                    with few, builder.if_then(builder.icmp_signed("==", n_workers, n_workers.type(1))):
                        zero = context.get_constant(types.int64, 0)
                        context.call_conv.call_function(
                            builder, function, types.none, argtypes, [zero, state_value]
                        )
            return context.get_dummy_value()

        return types.none(helpers, missing, queue, state), codegen

    return launch


def _parallel_for(context, builder, function, argtypes, key, counters, n_workers, state_value):
    """Call ``parallel_for`` with the entry point of ``argtypes``'s worker (``_entry_point``):
    one index per counter of the queue, each a pointer to its counter, whose place in the
    queue is the worker's number (the layers pass a thread one or several)."""
    state = cgutils.alloca_once_value(builder, state_value)
    data = cgutils.alloca_once(builder, _DATA_TYPE)
    queue_start = builder.bitcast(counters.data, _byte_ptr)
    for i, value in enumerate(
        (builder.bitcast(function, _byte_ptr), queue_start, builder.bitcast(state, _byte_ptr))
    ):
        builder.store(value, cgutils.gep_inbounds(builder, data, 0, i))
    args = cgutils.alloca_once_value(builder, queue_start)
    dims = cgutils.alloca_once_value(builder, n_workers)  # intp, as an array's shape
    steps = cgutils.alloca_once_value(builder, cgutils.intp_t(8))  # one int64 counter per worker
    # as many threads as workers, and no more than this thread's parallel regions may use
    set_threads = _thread_count_value(builder)
    threads = builder.select(builder.icmp_signed("<", n_workers, set_threads), n_workers, set_threads)
    parallel_for = cgutils.get_or_insert_function(builder.module, _PARALLEL_FOR_TYPE, "numba_parallel_for")
    entry = _entry_point(context, builder.module, argtypes, key)
    builder.call(
        parallel_for,
        [
            builder.bitcast(entry, _byte_ptr),
            builder.bitcast(args, _byte_ptr),
            builder.bitcast(dims, _byte_ptr),
            builder.bitcast(steps, _byte_ptr),
            builder.bitcast(data, _byte_ptr),
            cgutils.intp_t(0),  # no inner dimensions
            cgutils.intp_t(1),  # one "array": the queue's counters
            threads,
        ],
    )


def _entry_point(context, module, argtypes, key):
    """The gufunc-style function ``parallel_for`` calls: ``worker(w, state)`` for each of the
    ``dims[0]`` counters from ``args[0]`` on (``steps[0]`` bytes apart), ``w`` their place in
    the queue (``_parallel_for``'s ``data``). One per worker (``key``) and module."""
    name = f"sepconv_worker_entry_{key:016x}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    entry = llvmlite.ir.Function(module, _ENTRY_TYPE, name)
    entry.linkage = "internal"
    builder = llvmlite.ir.IRBuilder(entry.append_basic_block())
    args, dims, steps, data = entry.args
    fields = [
        builder.load(cgutils.gep_inbounds(builder, builder.bitcast(data, _DATA_TYPE.as_pointer()), 0, i))
        for i in range(3)
    ]
    function_type = context.call_conv.get_function_type(types.none, argtypes)
    function = builder.bitcast(fields[0], function_type.as_pointer())
    queue_start = builder.ptrtoint(fields[1], cgutils.intp_t)
    state_type = context.get_value_type(argtypes[1])
    state = builder.load(builder.bitcast(fields[2], state_type.as_pointer()))
    first = builder.load(args)
    step = builder.load(steps)
    with cgutils.for_range(builder, builder.load(dims)) as loop:
        counter = builder.gep(first, [builder.mul(loop.index, step)])
        offset = builder.sub(builder.ptrtoint(counter, cgutils.intp_t), queue_start)
        number = builder.sdiv(offset, cgutils.intp_t(8))
        context.call_conv.call_function(builder, function, types.none, argtypes, [number, state])
    builder.ret_void()
    return entry
