"""The batch runner: every plane (or volume) of every input filtered, piece by piece.

Each input becomes a dask array read in pieces of about ``chunk_bytes``; the filter runs on each
piece and each result is written into the output, under its temporary name, by the same task
that computed it, so neither the whole image nor the whole result is ever in one place. The tasks
run on a local thread pool (reading, computing and writing of different pieces overlap) or on the
workers of a Dask distributed cluster, each of which reads and writes its own pieces.

A unit is what the filter sees at once: a 2-D plane (the last two non-channel axes) or, with
``ndim=3``, a 3-D volume, together with the channel axis. The other axes are a stack of units.
A piece holds whole units when one fits; otherwise a unit is cut into slabs and filtered by the
library's own lazy dask path, whose overlap between slabs gives the values of the whole unit.
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _io

AUTO = "auto"
TILE_GROWTH = 8


@dataclass
class Filter:
    """What runs on each unit: ``function(unit, **arguments, channel_axis=...)``."""

    name: str
    function: object
    arguments: dict
    channel_axis: object = None  # int, None, or AUTO (the file's colour samples, if any)
    ndim: int = 2


@dataclass
class Job:
    """One input planned: where its output goes and how it is cut into pieces."""

    source: _io.Source
    function: object
    final: Path
    fmt: str
    stack_axes: tuple
    arguments: dict
    out_shape: tuple
    out_dtype: np.dtype
    chunks: tuple
    tiled: bool
    channel_axis: int | None
    planes: int


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    planes: int = 0
    bytes_read: int = 0
    seconds: float = 0.0

    def line(self):
        mb = self.bytes_read / 1e6
        rate = f" ({mb / self.seconds:.1f} MB/s)" if self.seconds > 0 and mb else ""
        return (
            f"sepconv: {self.done} done, {self.skipped} skipped, {self.failed} failed; "
            f"{self.planes} planes, {mb:.1f} MB in {self.seconds:.1f} s{rate}"
        )


# -- planning -------------------------------------------------------------------------------------


def plan_job(source, filt, final, fmt, chunk_bytes):
    """Work out the unit layout, output shape and dtype, and pieces of one input.

    Calls the filter once on a tiny zero image of the unit's layout, which checks the kernel
    against the input's channels and dtype before anything is written. Raises InputError.
    """
    ndim = source.ndim
    channel_axis = source.samples_axis if filt.channel_axis == AUTO else filt.channel_axis
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise _io.InputError(f"--channel-axis {channel_axis} is out of range for a {ndim}-D image")
        channel_axis %= ndim
    spatial = [a for a in range(ndim) if a != channel_axis]
    if len(spatial) < filt.ndim:
        raise _io.InputError(
            f"image of shape {source.shape} has {len(spatial)} spatial axes; "
            f"{filt.name} with --ndim {filt.ndim} needs at least {filt.ndim}"
        )
    unit_spatial = spatial[-filt.ndim:]
    stack_axes = tuple(spatial[: -filt.ndim])
    unit_axes = sorted(unit_spatial + ([channel_axis] if channel_axis is not None else []))
    unit_channel = unit_axes.index(channel_axis) if channel_axis is not None else None
    arguments = dict(filt.arguments, channel_axis=unit_channel)

    probe_shape = tuple(source.shape[a] if a == channel_axis else min(source.shape[a], 4) for a in unit_axes)
    try:
        probe = np.asarray(
            filt.function(np.zeros(probe_shape, source.dtype.newbyteorder("=")), **arguments)
        )
    except Exception as error:  # the library's own check: a kernel that does not fit, ...
        raise _io.InputError(_io.error_reason(error)) from None
    out_shape = list(source.shape)
    if channel_axis is not None:
        out_shape[channel_axis] = probe.shape[unit_channel]

    per_pixel = max(
        source.dtype.itemsize * (source.shape[channel_axis] if channel_axis is not None else 1),
        probe.dtype.itemsize * (out_shape[channel_axis] if channel_axis is not None else 1),
    )
    capacity = max(1, int(chunk_bytes) // per_pixel)
    tiled = math.prod(source.shape[a] for a in unit_spatial) > capacity
    if tiled:
        # Slabs of a unit grow by the filter's reach on each side (and to at least its window)
        # before the filter runs on them: cut them smaller to keep pieces near chunk_bytes.
        capacity = max(1, capacity // TILE_GROWTH)
    if tiled and source.kind in ("raw", "npy"):
        chunks = _tile_chunks(source.shape, unit_spatial, channel_axis, capacity)
    else:  # whole units, or whole planes of a file stored page by page
        chunks = _piece_chunks(source.shape, stack_axes + tuple(unit_spatial), channel_axis, capacity)
    planes = math.prod(source.shape[a] for a in spatial[:-2])
    return Job(source, filt.function, Path(final), fmt, stack_axes, arguments, tuple(out_shape), probe.dtype,
               chunks, tiled, channel_axis, planes)


def _piece_chunks(shape, axes, channel_axis, capacity):
    """Chunk sizes holding up to ``capacity`` pixels, filled from the innermost axis outwards."""
    chunks = [1] * len(shape)
    if channel_axis is not None:
        chunks[channel_axis] = shape[channel_axis]
    inner = 1
    for axis in reversed(axes):
        size = min(shape[axis], max(1, capacity // inner))
        chunks[axis] = size
        inner = inner * size if size == shape[axis] else capacity + 1
    return tuple(chunks)


def _tile_chunks(shape, unit_spatial, channel_axis, capacity):
    """Tiles of one unit holding up to ``capacity`` pixels, as near square as the rows allow.

    The innermost axis stays whole where it fits (contiguous reads); the outer axes of the unit
    share the rest evenly, which keeps the overlap that each tile adds small.
    """
    chunks = [1] * len(shape)
    if channel_axis is not None:
        chunks[channel_axis] = shape[channel_axis]
    *outer, innermost = unit_spatial
    chunks[innermost] = min(shape[innermost], capacity)
    room = max(1, capacity // chunks[innermost])
    outer = sorted(outer, key=lambda axis: shape[axis])
    for left, axis in zip(range(len(outer), 0, -1), outer):
        chunks[axis] = min(shape[axis], max(1, int(room ** (1 / left))))
        room = max(1, room // chunks[axis])
    return tuple(chunks)


# -- the lazy result ------------------------------------------------------------------------------


def lazy_result(job):
    """The filtered input as a lazy dask array, in the input's axis order."""
    import dask.array as da

    source = job.source
    image = da.from_array(
        source, chunks=job.chunks, name=f"sepconv-read-{uuid.uuid4().hex}",
        meta=np.empty((0,) * source.ndim, source.dtype.newbyteorder("=")),
    )
    nstack = len(job.stack_axes)
    front = tuple(range(nstack))
    units = da.moveaxis(image, job.stack_axes, front)
    function = job.function
    if not job.tiled:
        out_chunks = list(units.chunks)
        if job.channel_axis is not None:
            moved_channel = nstack + job.arguments["channel_axis"]
            out_chunks[moved_channel] = (job.out_shape[job.channel_axis],)
        result = units.map_blocks(
            _filter_units, function, job.arguments, nstack, job.out_dtype,
            chunks=tuple(out_chunks), dtype=job.out_dtype,
            meta=np.empty((0,) * source.ndim, job.out_dtype),
        )
    elif nstack == 0:
        result = function(units, **job.arguments)
    else:
        stack_shape = units.shape[:nstack]
        parts = [function(units[index], **job.arguments) for index in np.ndindex(stack_shape)]
        result = da.stack(parts).reshape(stack_shape + parts[0].shape)
    return da.moveaxis(result, front, job.stack_axes)


def _filter_units(block, function, arguments, nstack, dtype):
    """Filter each unit of a block whose first ``nstack`` axes are the stack."""
    out = None
    for index in np.ndindex(block.shape[:nstack]):
        result = function(block[index], **arguments)
        if out is None:
            out = np.empty(block.shape[:nstack] + result.shape, dtype)
        out[index] = result
    return out


def _regular(result):
    """Rechunk to regular chunks (all equal but the last) where they are not, as Zarr needs."""
    wanted = {}
    for axis, sizes in enumerate(result.chunks):
        if any(size != sizes[0] for size in sizes[:-1]) or sizes[-1] > sizes[0]:
            wanted[axis] = max(sizes)
    return result.rechunk(wanted) if wanted else result


def _store_piece(target, region, piece, nbytes):
    target[region] = piece
    return nbytes


def store_tasks(result, target, job):
    """One task per block: compute it and write it into its region.

    Each task returns the bytes of input its block stands for (for progress).
    """
    import dask

    blocks = result.to_delayed(optimize_graph=True)
    offsets = [np.cumsum((0,) + sizes) for sizes in result.chunks]
    name = f"sepconv-store-{uuid.uuid4().hex}"
    pixel_bytes = job.source.nbytes // math.prod(
        n for axis, n in enumerate(job.source.shape) if axis != job.channel_axis
    )
    tasks = []
    for index in np.ndindex(blocks.shape):
        region = tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, index))
        pixels = math.prod(s.stop - s.start for a, s in enumerate(region) if a != job.channel_axis)
        tasks.append(
            dask.delayed(_store_piece, pure=False)(
                target, region, blocks[index], pixels * pixel_bytes,
                dask_key_name=f"{name}-{len(tasks)}",
            )
        )
    return name, tasks


# -- running --------------------------------------------------------------------------------------


class LocalRunner:
    """Runs store tasks on a local thread pool."""

    def __init__(self, threads):
        self.threads = threads

    def run(self, name, tasks, advance):
        import dask
        from dask.callbacks import Callback

        class Progress(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if isinstance(key, str) and key.startswith(name):
                    advance(result)

        # Dask runs cheap reads ahead of the filters that need them; in batches of a few pieces
        # per thread, only a batch's pieces (and the edges it borrows) are ever held.
        batch = 4 * self.threads
        with Progress():
            for start in range(0, len(tasks), batch):
                dask.compute(*tasks[start:start + batch], scheduler="threads", num_workers=self.threads)

    def release(self, path):
        _io.release_handles(path)

    def close(self):
        _io.release_handles()


class ClusterRunner:
    """Runs store tasks on a Dask distributed cluster; workers read and write their pieces."""

    def __init__(self, client, cluster=None):
        self.client = client
        self.cluster = cluster

    def run(self, name, tasks, advance):
        from distributed import as_completed

        futures = self.client.compute(tasks)
        try:
            for future in as_completed(futures):
                advance(future.result())
        except BaseException:
            self.client.cancel(futures)
            raise

    def release(self, path):
        self.client.run(_io.release_handles, path)

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def local_cluster(workers):
    """A local Dask cluster of ``workers`` processes, one thread each, sharing out the cores."""
    import logging

    from distributed import Client, LocalCluster

    numba_threads = max(1, (os.cpu_count() or 1) // workers)
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR, env={"NUMBA_NUM_THREADS": str(numba_threads)},
    )
    return ClusterRunner(Client(cluster), cluster)


def run_jobs(jobs, runner, *, report, progress=None):
    """Process planned jobs one after another; a failing input is reported and skipped.

    ``report(path, reason)`` is called for each failure; ``progress(nbytes)`` as pieces finish.
    Returns the number of inputs done, and planes and bytes processed.
    """
    done, planes, nbytes = 0, 0, 0
    advance = progress or (lambda n: None)
    for job in jobs:
        committed = False
        try:
            result = lazy_result(job)
            if job.fmt == "zarr":
                result = _regular(result)
            _io.remove_stale_partials(job.final)
            target = _io.create_target(
                job.final, job.fmt, job.out_shape, job.out_dtype,
                chunks=tuple(sizes[0] for sizes in result.chunks),
                channel_last=job.channel_axis == job.source.ndim - 1,
            )
            name, tasks = store_tasks(result, target, job)
            runner.run(name, tasks, advance)
            _io.commit_target(target, job.final)
            committed = True
        except Exception as error:
            report(job.source.label, _io.error_reason(error))
            continue
        finally:
            if not committed:  # also when interrupted while the output was being created
                _io.discard_partial(job.final)
            runner.release(job.source.path)
        done += 1
        planes += job.planes
        nbytes += job.source.nbytes
    return done, planes, nbytes


def make_progress_bar(total, enabled=None):
    """A tqdm bar on stderr counting input bytes, shown when stderr is a terminal."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1000, file=sys.stderr,
                disable=not enabled, dynamic_ncols=True, desc="sepconv")
