"""Views of one row of an array, made in place, for the kernels' helpers.

Numba compiles ``a[i, j:k]`` through its general indexing code: each index wrapped
when negative, the slice clamped to the array, a view of any layout worked out.
The helpers take rows at many places, and each place was typed, lowered and
optimised again: that code was about 40 % of the compile of ``_correlate_rows_block``.
A helper only ever takes rows it knows lie inside the array, so :func:`row_view` builds
the view directly (a pointer, one extent, the item size as its stride). As with
Numba's own indexing (``boundscheck`` off), nothing is checked: the caller passes
indices inside the array and ``0 <= start <= stop <=`` the extent of the last axis.

This module imports Numba and is imported on first use only (by the kernels' modules).
"""

import numba.extending
from numba.core import cgutils, types
from numba.core.imputils import impl_ret_borrowed


def _indexes_a_row(index, ndim):
    """Whether ``index`` (one integer, or a tuple of them) indexes every axis of an
    ``ndim``-dimensional array but the last."""
    if isinstance(index, types.Integer):
        found = (index,)
    elif isinstance(index, types.BaseTuple):
        found = tuple(index)
    else:
        return False
    return len(found) == ndim - 1 and all(isinstance(t, types.Integer) for t in found)


def _bounds(start, stop):
    """Whether ``start`` and ``stop`` type a slice of a row: an integer, and an integer or ``None``."""
    return isinstance(start, types.Integer) and isinstance(stop, (types.Integer, types.NoneType))


def row_type(array):
    """The type of a row of ``array`` (a C-contiguous Numba array type), or ``None``."""
    if not (isinstance(array, types.Array) and array.layout == "C"):
        return None
    return types.Array(array.dtype, 1, "C", readonly=not array.mutable)


def row_code(context, builder, types_, values):
    """The code of ``array[*index, start:stop]`` (``types_`` and ``values`` of ``array``,
    ``index``, ``start`` and ``stop``): the view's data pointer, meminfo, parent, extent and
    item size (``_assemble`` puts them together)."""
    from numba.np.arrayobj import make_array

    array_type, index_type, start_type, stop_type = types_
    array, index, start, stop = values
    source = make_array(array_type)(context, builder, value=array)
    if isinstance(index_type, types.Integer):
        at = [context.cast(builder, index, index_type, types.intp)]
    else:
        items = cgutils.unpack_tuple(builder, index, len(index_type)) if len(index_type) else []
        at = [context.cast(builder, v, t, types.intp) for v, t in zip(items, index_type)]
    first = context.cast(builder, start, start_type, types.intp)
    shape = cgutils.unpack_tuple(builder, source.shape, array_type.ndim)
    if isinstance(stop_type, types.NoneType):
        last = shape[-1]
    else:
        last = context.cast(builder, stop, stop_type, types.intp)
    strides = cgutils.unpack_tuple(builder, source.strides, array_type.ndim)
    data = cgutils.get_item_pointer2(
        context, builder, source.data, shape, strides, "C", at + [first], wraparound=False
    )
    return data, source.meminfo, source.parent, builder.sub(last, first), source.itemsize


def _assemble(context, builder, view_type, data, meminfo, parent, extent, itemsize):
    """A 1-D C-contiguous array of ``view_type`` over ``extent`` samples from ``data``."""
    from numba.np.arrayobj import make_array, populate_array

    view = make_array(view_type)(context, builder)
    populate_array(
        view,
        data=data,
        shape=cgutils.pack_array(builder, [extent]),
        strides=cgutils.pack_array(builder, [itemsize]),
        itemsize=itemsize,
        meminfo=meminfo,
        parent=parent,
    )
    return impl_ret_borrowed(context, builder, view_type, view._getvalue())


@numba.extending.intrinsic
def row_view(typingctx, array, index, start, stop):
    """``array[*index, start:stop]``: samples ``start .. stop - 1`` of the row ``index``
    (an integer for a 2-D array, a tuple of ``ndim - 1`` integers, ``()`` for a 1-D one)
    of the C-contiguous ``array``, to its end where ``stop`` is ``None``, as a 1-D
    C-contiguous view, with nothing checked."""
    view_type = row_type(array)
    if view_type is None or not _indexes_a_row(index, array.ndim) or not _bounds(start, stop):
        return None

    def codegen(context, builder, signature, args):
        parts = row_code(context, builder, signature.args, args)
        return _assemble(context, builder, view_type, *parts)

    return view_type(array, index, start, stop), codegen


@numba.extending.intrinsic
def row_view_or(typingctx, inside, array, index, start, stop, other):
    """``row_view(array, index, start, stop)`` where ``inside``, else the first
    ``stop - start`` samples of ``other`` (a 1-D C-contiguous array of the same dtype, at
    least that long), without a branch: a row of a border mode that reads a row of ``cval``
    outside the image."""
    if (
        row_type(array) is None
        or not _indexes_a_row(index, array.ndim)
        or not isinstance(inside, types.Boolean)
        or not _bounds(start, stop)
        or row_type(other) is None
        or other.ndim != 1
        or other.dtype != array.dtype
    ):
        return None
    view_type = types.Array(array.dtype, 1, "C", readonly=not (array.mutable and other.mutable))

    def codegen(context, builder, signature, args):
        from numba.np.arrayobj import make_array

        data, meminfo, parent, extent, itemsize = row_code(context, builder, signature.args[1:5], args[1:5])
        fallback = make_array(other)(context, builder, value=args[5])
        flag = context.cast(builder, args[0], inside, types.boolean)
        data = builder.select(flag, data, fallback.data)
        meminfo = builder.select(flag, meminfo, fallback.meminfo)
        parent = builder.select(flag, parent, fallback.parent)
        return _assemble(context, builder, view_type, data, meminfo, parent, extent, itemsize)

    return view_type(inside, array, index, start, stop, other), codegen
