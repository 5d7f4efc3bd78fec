"""Lazy filtering of dask arrays, block by block, with the in-memory values.

Every public filter hands a dask input to :func:`filter_lazily` together with the same filter
bound to its other arguments. The result is a lazy dask array whose ``.compute()`` equals the
in-memory call on ``image.compute()`` exactly, for every border mode and any chunking.

How the values stay exact
-------------------------
Each block is extended by the filter's reach (the *halo*) with the neighbouring blocks' data, the
filter runs on the extended block, and only the block's own part is kept. Two rules make the kept
part equal to the whole-image result:

* Along an axis in ``'wrap'`` mode the image is extended periodically (dask's ``'periodic'``),
  which is exactly what the filter reads there.
* Along every other axis the image is *not* extended at its border: blocks touching the image
  border keep that border as their own edge, so the filter applies the border mode itself, just
  as it does on the whole image. This holds for ``'reflect'``, ``'mirror'``, ``'nearest'`` and
  ``'constant'`` alike, including the separable constant convention where each 1-D pass pads with
  ``cval`` and the full-kernel convention where later passes see ``cval`` times the kernel sums:
  nothing here ever pads with a constant, so neither needs special handling.

For the second rule a border block must reach as far into the image as the mode reflects, so
chunks shorter than the filter window are merged with their neighbours; an axis shorter than two
windows (or a kernel longer than the image) becomes a single chunk, where the filter sees the
whole axis and extends it itself. Chunks along a channel axis are merged into one.

The filter's arithmetic must not depend on the block's shape (true of the 1-D passes here), so
the values are bit-for-bit those of the in-memory call.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["is_dask_array", "filter_lazily"]

_MODES = ("reflect", "constant", "nearest", "mirror", "wrap")


def is_dask_array(obj) -> bool:
    """Whether ``obj`` is a ``dask.array.Array``, without importing dask."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(obj, dask_array.Array)


def check_known_chunks(array, name="image"):
    """ValueError, naming the argument, for a dask array whose chunk sizes are not known."""
    if any(np.isnan(size) for sizes in array.chunks for size in sizes):
        raise ValueError(
            f"{name}: a dask array with unknown chunk sizes cannot be filtered lazily; "
            f"call {name}.compute_chunk_sizes() first"
        )


def filter_lazily(
    func,
    image,
    *,
    halo,
    modes,
    channel_axis=None,
    channels_out=None,
    dtype,
):
    """Apply an in-memory filter to a dask array block by block, lazily.

    Parameters
    ----------
    func : callable
        ``func(block) -> numpy.ndarray``: the filter with every other argument bound. It is called
        on NumPy blocks that carry the image border where they touch it, and must give, for each
        output pixel, the value it gives on the whole image (the shape of the block must not change
        the arithmetic).
    image : dask.array.Array
        The input.
    halo : dict of int to (int, int)
        For each filtered axis (non-negative), how far the filter reaches before and after an
        output pixel. Axes not named are not filtered along (a stack, or channels).
    modes : dict of int to str
        The border mode of each filtered axis, a normalised ``scipy.ndimage`` name.
    channel_axis : int or None
        Non-negative channel axis, whose chunks are merged into one.
    channels_out : int or None
        Length of the channel axis in the output, when the filter changes it.
    dtype : numpy dtype
        Output dtype.

    Returns
    -------
    dask.array.Array
        Lazy result with the chunks of the (possibly regrouped) input; ``channels_out`` along the
        channel axis.
    """
    import dask.array as da

    ndim = image.ndim
    dtype = np.dtype(dtype)
    check_known_chunks(image)
    for axis, mode in modes.items():
        if mode not in _MODES:
            raise ValueError(f"modes: unknown mode {mode!r} for axis {axis}; expected one of {_MODES}")

    if 0 in image.shape:
        # Nothing to read: the filter's answer on an empty array is the answer.
        empty = np.asarray(func(np.empty(image.shape, image.dtype)))
        return da.from_array(empty.astype(dtype, copy=False), chunks=empty.shape or ())

    chunks = list(image.chunks)
    if channel_axis is not None:
        chunks[channel_axis] = (image.shape[channel_axis],)
    depth = {axis: 0 for axis in range(ndim)}
    boundary = {axis: "none" for axis in range(ndim)}
    for axis, (before, after) in halo.items():
        before, after = int(before), int(after)
        if before < 0 or after < 0:
            raise ValueError(f"halo: axis {axis} has a negative reach ({before}, {after})")
        if before == after == 0:
            continue
        chunks[axis] = _regroup(chunks[axis], before + after + 1)
        if len(chunks[axis]) == 1:
            continue  # the filter sees the whole axis and extends it itself
        if modes[axis] == "wrap":
            depth[axis] = max(before, after)
            boundary[axis] = "periodic"
        else:
            depth[axis] = (before, after)
    chunks = tuple(chunks)
    if chunks != image.chunks:
        image = image.rechunk(chunks)

    out_chunks = list(chunks)
    if channels_out is not None:
        out_chunks[channel_axis] = (int(channels_out),)
    meta = np.empty((0,) * ndim, dtype)

    if not any(depth.values()):
        return image.map_blocks(_call_and_cast, func, dtype, chunks=tuple(out_chunks), meta=meta)

    extended = da.overlap.overlap(image, depth=depth, boundary=boundary, allow_rechunk=False)
    crops = [_crops(len(chunks[axis]), depth[axis], boundary[axis]) for axis in range(ndim)]
    return extended.map_blocks(_filter_block, func, dtype, crops, chunks=tuple(out_chunks), meta=meta)


def _call_and_cast(block, func, dtype):
    return np.asarray(func(block)).astype(dtype, copy=False)


def _filter_block(block, func, dtype, crops, block_id=None):
    """Filter one extended block and keep its own part."""
    result = _call_and_cast(block, func, dtype)
    keep = []
    for axis, index in enumerate(block_id):
        before, after = crops[axis][index]
        keep.append(slice(before, result.shape[axis] - after))
    return result[tuple(keep)]


def _crops(nblocks, depth, boundary):
    """(before, after) extension of each block along one axis, as dask's overlap adds it."""
    before, after = depth if isinstance(depth, tuple) else (depth, depth)
    padded_border = boundary != "none"
    return [
        (
            before if index > 0 or padded_border else 0,
            after if index < nblocks - 1 or padded_border else 0,
        )
        for index in range(nblocks)
    ]


def _regroup(sizes, minimum):
    """Merge neighbouring chunk sizes until each is at least ``minimum`` (one chunk if too short)."""
    if min(sizes) >= minimum:
        return tuple(sizes)
    groups = []
    current = 0
    for size in sizes:
        current += size
        if current >= minimum:
            groups.append(current)
            current = 0
    if current:
        if groups:
            groups[-1] += current
        else:
            groups.append(current)
    return tuple(groups)
