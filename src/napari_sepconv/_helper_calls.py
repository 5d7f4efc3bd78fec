"""Kernels that call their task's helper by its address instead of linking its code in.

Numba links the code of every function a function calls into the caller's own, then
optimises and generates machine code for all of it again. The parallel lowering of a
``prange`` loop wrapped a kernel in four such layers (the loop body, its gufunc wrapper,
the parallel wrapper and the kernel itself), so the helper holding a task's work, often
most of the code, was compiled five times: a cold compile of the fused separable kernel
spent about 1.3 s in each layer. Kernels now run no such loop (``_workers``), but their
workers, task helpers and passes still call one another by address: a helper's code is
compiled once. A kernel calls its task helper through :func:`helper_call`: the helper
is compiled (or loaded from the cache) once, on its own, and the kernel finds its address
at run time in a table the CPU engine passes it (:func:`table`).

Keys: when a kernel is typed, :func:`helper_call` compiles the helper for the types the
kernel passes it and compiles a key of them into the kernel (:func:`_key`). The table maps
keys to addresses. A kernel whose key is not in the table (loaded from the cache by a new
process) runs none of its tasks and writes the key to ``missing``; the engine then finds
the helper and its types (:func:`resolve`: recorded when the kernel was typed, in this
process or in a file beside the cached kernels), compiles or loads the helper, adds its
address and calls the kernel again. A kernel never calls an address of other types.

Helpers that call helpers: a task helper may call its own passes by address too, so that
their code is not linked into it and optimised once more. It looks every one of them up
first (:func:`helper_found`) and does nothing unless all are there, so that a kernel called
again never finds part of its output already written (or added to); its calls are
``helper_call(helper, looked_up=True)``, for which a missing address is an error.

This module imports Numba and is imported on first use only (by the CPU engine and the
kernels' modules).
"""

import hashlib
import importlib
import os
import pickle
import threading

import numba
import numpy as np
from numba.core import cgutils, types

_lock = threading.Lock()
_table = np.zeros((0, 2), np.int64)  # rows of (key, address)
_signatures = {}  # key -> (helper, its argument types)


def _after_fork_in_child():
    """A forked child gets a lock of its own (a thread of the parent may have held this one,
    loading a helper, when it forked); the table is replaced whole, never changed in place."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def table():
    """The keys and addresses of the helpers loaded in this process: a kernel's ``helpers``
    argument (a new array whenever one is added, so a running kernel's never changes)."""
    return _table


def _key(helper, argtypes):
    """A non-zero 63-bit key of ``helper`` and its argument types, the same in every process."""
    func = helper.py_func
    text = f"{func.__module__}.{func.__qualname__}{tuple(argtypes)}"
    key = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
    return key or 1


def _signature_file(key):
    """Where the types of key ``key`` are kept beside the cached kernels."""
    from .warmup import cache_dir

    return os.path.join(cache_dir(), "helpers", f"{key:016x}.pickle")


def _record(key, helper, argtypes):
    """Remember ``key``'s helper and types in this process and, where kernels are cached,
    beside them."""
    if key in _signatures:
        return
    _signatures[key] = (helper, argtypes)
    _write_record(key, helper, argtypes)


def write_records():
    """Write the types of every helper recorded in this process beside the cached kernels
    again (a background compile does, once done: a folder removed under it meanwhile would
    otherwise hold kernels whose helpers nothing records)."""
    for key, (helper, argtypes) in list(_signatures.items()):
        _write_record(key, helper, argtypes)


def _write_record(key, helper, argtypes):
    path = _signature_file(key)
    func = helper.py_func
    temporary = f"{path}.{os.getpid()}.{threading.get_ident()}"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "wb") as f:
            pickle.dump((func.__module__, func.__name__, argtypes), f)
        os.replace(temporary, path)  # whole or absent, whoever writes it too
    except OSError:  # no writable cache: kernels are compiled in this process, typed here
        pass


def _compiled(helper, argtypes):
    """``helper``'s compiled code for ``argtypes`` (compiled now, or loaded from the cache)."""
    helper.compile(argtypes)
    return helper.overloads[argtypes]


def _address(helper, argtypes):
    """The address of ``helper``'s machine code for ``argtypes``."""
    compiled = _compiled(helper, argtypes)
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)


def resolve(key):
    """Add the address of the helper of ``key`` to the table.

    Raises
    ------
    RuntimeError
        Where nothing records ``key``'s helper: a cache of kernels from which the
        ``helpers`` folder was removed.
    """
    global _table
    with _lock:
        if key in _table[:, 0]:
            return
        if key not in _signatures:
            path = _signature_file(key)
            try:
                with open(path, "rb") as f:
                    module, name, argtypes = pickle.load(f)
            except (OSError, EOFError, pickle.UnpicklingError) as error:
                raise RuntimeError(
                    f"a cached kernel calls a helper ({key:016x}) that the cache does not "
                    f"record; delete the cache folder to compile the kernels again"
                ) from error
            helper = getattr(importlib.import_module(module), name)
            _signatures[key] = (helper, argtypes)
        helper, argtypes = _signatures[key]
        address = _address(helper, argtypes)
        if not address:
            raise RuntimeError(f"no machine code for {helper.py_func.__name__}{argtypes}")
        _table = np.concatenate([_table, np.array([[key, address]], np.int64)])


def _lookup(helpers, missing, key, mark):
    """The address of ``key`` in the table ``helpers``; 0 (with ``missing[0] = mark``) if absent."""
    for i in range(helpers.shape[0]):
        if helpers[i, 0] == key:
            return helpers[i, 1]
    missing[0] = mark
    return 0


def _address_of(context, builder, signature, llargs, key, mark):
    """Code looking ``key`` up in a kernel's table (``_lookup``): the address, or 0."""
    helpers_value, missing_value, _ = llargs
    return context.compile_internal(
        builder,
        _lookup,
        types.int64(signature.args[0], signature.args[1], types.int64, types.int64),
        [
            helpers_value,
            missing_value,
            context.get_constant(types.int64, key),
            context.get_constant(types.int64, mark),
        ],
    )


def _typed(helper, args):
    """The types of ``args`` for ``helper`` and their key, recorded (``_record``)."""
    argtypes = tuple(types.unliteral(t) for t in args.types)
    key = _key(helper, argtypes)
    _record(key, helper, argtypes)
    return argtypes, key


def helper_call(helper, *, looked_up=False):
    """``call(helpers, missing, args)``: ``helper(*args)`` for a kernel, through its address.

    ``helpers`` is :func:`table`, ``missing`` a one-element int64 array. Where the table
    has no address for the call's key, the call does nothing and returns the zero of the
    helper's result type (``False`` for a flag), and ``missing[0]`` holds the key.

    ``looked_up``: the caller, itself a helper called by address, looked the key up first
    (:func:`helper_found`), so a missing key is an error: ``missing[0]`` then holds -1.
    """

    @numba.extending.intrinsic
    def call(typingctx, helpers, missing, args):
        argtypes, key = _typed(helper, args)
        restype = _compiled(helper, argtypes).signature.return_type

        def codegen(context, builder, signature, llargs):
            address = _address_of(context, builder, signature, llargs, key, -1 if looked_up else key)
            result = cgutils.alloca_once_value(builder, context.get_constant_null(restype))
            found = builder.icmp_signed("!=", address, address.type(0))
            with builder.if_then(found, likely=True):
                function_type = context.call_conv.get_function_type(restype, argtypes)
                function = builder.inttoptr(address, function_type.as_pointer())
                values = llargs[2]
                arguments = [
                    context.cast(builder, builder.extract_value(values, i), t, argtypes[i])
                    for i, t in enumerate(args.types)
                ]
                _, value = context.call_conv.call_function(builder, function, restype, argtypes, arguments)
                builder.store(value, result)
            return builder.load(result)

        return restype(helpers, missing, args), codegen

    return call


def helper_found(helper):
    """``found(helpers, missing, args)``: whether the table ``helpers`` has an address for
    ``helper`` and the types of ``args``, whose values are not read; where it has none,
    ``missing[0]`` holds the key, as after a call.

    A helper called by address that calls helpers by address itself looks them all up
    first and writes nothing unless all are found: its kernel, called again once the
    engine has loaded the missing one, may add to its output (``accumulate``), which a
    first, partial run must have left as it was. Its calls are then
    ``helper_call(helper, looked_up=True)``.
    """

    @numba.extending.intrinsic
    def found(typingctx, helpers, missing, args):
        _, key = _typed(helper, args)

        def codegen(context, builder, signature, llargs):
            address = _address_of(context, builder, signature, llargs, key, key)
            return builder.icmp_signed("!=", address, address.type(0))

        return types.boolean(helpers, missing, args), codegen

    return found


def looked_up_call(helper):
    """``(call, found)`` for a helper that another helper called by address calls: its
    calls (``helper_call(helper, looked_up=True)``) and the look-up it makes first
    (:func:`helper_found`)."""
    return helper_call(helper, looked_up=True), helper_found(helper)
