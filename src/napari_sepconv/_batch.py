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

import functools
import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _io
from ._plan import plan_of

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
    record: dict | None = None
    physical: dict | None = None  # TIFF output: resolution, unit, spacing
    pyramid: int = 0  # OME-Zarr output: levels below level 0
    ome_axes: list | None = None  # OME-Zarr output: NGFF axes, in the stored order
    ome_order: tuple | None = None  # the input axes in the stored order
    ome_transform: tuple | None = None  # OME-Zarr output: level 0 (scale, translation)

    @property
    def pieces(self):
        return math.prod(math.ceil(n / c) for n, c in zip(self.source.shape, self.chunks))

    @property
    def piece_bytes(self):
        """Bytes of one piece as read and as written."""
        pixels = math.prod(c for axis, c in enumerate(self.chunks) if axis != self.channel_axis)
        channels_in = self.source.shape[self.channel_axis] if self.channel_axis is not None else 1
        channels_out = self.out_shape[self.channel_axis] if self.channel_axis is not None else 1
        return (
            pixels * channels_in * self.source.dtype.itemsize,
            pixels * channels_out * self.out_dtype.itemsize,
        )


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
            f"{self.planes} plane{'' if self.planes == 1 else 's'}, {mb:.1f} MB in {self.seconds:.1f} s{rate}"
        )


# -- planning -------------------------------------------------------------------------------------


def plan_job(source, filt, final, fmt, chunk_bytes, *, pyramid=0):
    """Work out the unit layout, output shape and dtype, and pieces of one input.

    Checks the kernel against the input's channels and dtype (see :func:`output_layout`)
    before anything is written. Axes that the file marks as time are never filtered across:
    they are stack axes, like the axes before the unit. Raises InputError.
    """
    ndim = source.ndim
    channel_axis = source.samples_axis if filt.channel_axis == AUTO else filt.channel_axis
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise _io.InputError(f"--channel-axis {channel_axis} is out of range for a {ndim}-D image")
        channel_axis %= ndim
    spatial = [a for a in range(ndim) if a != channel_axis and a not in source.time_axes]
    if len(spatial) < filt.ndim:
        raise _io.InputError(
            f"image of shape {source.shape} has {len(spatial)} spatial axes; "
            f"{filt.name} with --ndim {filt.ndim} needs at least {filt.ndim}"
        )
    unit_spatial = spatial[-filt.ndim :]
    stack_axes = tuple(a for a in range(ndim) if a != channel_axis and a not in unit_spatial)
    unit_axes = sorted(unit_spatial + ([channel_axis] if channel_axis is not None else []))
    unit_channel = unit_axes.index(channel_axis) if channel_axis is not None else None
    arguments = dict(filt.arguments, channel_axis=unit_channel)
    _check_kernel_reach(filt, [source.shape[a] for a in unit_spatial])

    unit_shape = tuple(source.shape[a] for a in unit_axes)
    out_dtype, channels_out = output_layout(filt, arguments, unit_shape, unit_channel, source.dtype)
    out_shape = list(source.shape)
    if channel_axis is not None:
        out_shape[channel_axis] = channels_out

    per_pixel = max(
        source.dtype.itemsize * (source.shape[channel_axis] if channel_axis is not None else 1),
        out_dtype.itemsize * (out_shape[channel_axis] if channel_axis is not None else 1),
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
    if tiled and filt.name == "uniform":
        chunks = _anchor_aligned(chunks, source.shape, unit_spatial, filt.arguments.get("size", 3))
    planes = math.prod(source.shape[a] for a in spatial[:-2]) * math.prod(
        source.shape[a] for a in source.time_axes if a != channel_axis
    )
    job = Job(
        source,
        filt.function,
        Path(final),
        fmt,
        stack_axes,
        arguments,
        tuple(out_shape),
        out_dtype,
        chunks,
        tiled,
        channel_axis,
        planes,
    )
    if fmt == "ome-zarr":
        _plan_ome_zarr(job, pyramid)
    elif fmt == "tif":
        job.physical = _tiff_physical(source, channel_axis)
    return job


def output_layout(filt, arguments, unit_shape, unit_channel, dtype):
    """The output dtype and channel count of the filter on units of ``unit_shape``.

    Read from the filter's plan (``function.plan``), which checks the arguments as the call
    would (a kernel that does not fit the channels, ...) and computes nothing; a filter without
    a plan runs once on a tiny zero image of the unit's layout instead. Raises InputError.
    """
    native = dtype.newbyteorder("=")
    try:
        if hasattr(filt.function, "plan"):
            # Through a partial: the filter's own ``dtype`` argument is not plan_of's ``dtype``.
            plan = plan_of(functools.partial(filt.function, **arguments), unit_shape, native)
            channels = plan.out_shape[unit_channel] if unit_channel is not None else None
            return plan.out_dtype, channels
        probe_shape = tuple(n if axis == unit_channel else min(n, 4) for axis, n in enumerate(unit_shape))
        probe = np.asarray(filt.function(np.zeros(probe_shape, native), **arguments))
    except Exception as error:  # the library's own check: a kernel that does not fit, ...
        raise _io.InputError(_io.error_reason(error)) from None
    return probe.dtype, (probe.shape[unit_channel] if unit_channel is not None else None)


# A kernel whose side passes twice the image's adds taps that only re-read reflected or
# repeated samples; from this many taps on, such a kernel is refused rather than run for ages.
HUGE_KERNEL_TAPS = 4096


def _check_kernel_reach(filt, unit_sizes):
    """Refuse a large kernel that reaches far beyond every side of the image (InputError)."""
    for name in ("kernel", "kernels", "depthwise_kernels"):
        kernel = filt.arguments.get(name)
        if kernel is None:
            continue
        kernels = kernel if isinstance(kernel, list) else [np.asarray(kernel)]
        for index, k in enumerate(kernels):
            k = np.asarray(k)
            if isinstance(kernel, list):  # separable: one 1-D kernel per axis of the unit
                sides, sizes = k.shape, unit_sizes[index - len(kernels) :][:1]
            else:
                sides = k.shape[-min(k.ndim, len(unit_sizes), 2) :]
                sizes = unit_sizes[-len(sides) :]
            if k.size >= HUGE_KERNEL_TAPS and any(side > 2 * n + 1 for side, n in zip(sides, sizes)):
                shown = "x".join(map(str, sides))
                raise _io.InputError(
                    f"the --kernel ({shown}) is more than twice as large as the image "
                    f"({'x'.join(map(str, sizes))}) it filters: crop the kernel to at most "
                    f"{'x'.join(str(2 * n + 1) for n in sizes)}, what the image can reach"
                )


_METRES = {
    "meter": 1.0,
    "centimeter": 1e-2,
    "millimeter": 1e-3,
    "micrometer": 1e-6,
    "nanometer": 1e-9,
    "inch": 0.0254,
}


def _in_unit(value, unit, target):
    """``value`` given in ``unit``, in ``target`` (as it is where either is not a length known here)."""
    if value is None or unit == target or unit not in _METRES or target not in _METRES:
        return value
    return value * (_METRES[unit] / _METRES[target])


def _tiff_physical(source, channel_axis):
    """Resolution tags (and ImageJ unit and z spacing) for a TIFF output, from the input."""
    import tifffile

    axes = [a for a in range(source.ndim) if a != channel_axis and a not in source.time_axes]
    if len(axes) < 2 or source.spacing[axes[-1]] is None or source.spacing[axes[-2]] is None:
        return None
    unit = source.units[axes[-1]]
    if unit in ("nanometer", "meter"):  # TIFF's resolution units stop at the micrometre
        unit = "micrometer"
    spacing = [_in_unit(source.spacing[a], source.units[a], unit) for a in axes]
    units = {
        "centimeter": tifffile.RESUNIT.CENTIMETER,
        "millimeter": tifffile.RESUNIT.MILLIMETER,
        "micrometer": tifffile.RESUNIT.MICROMETER,
        "inch": tifffile.RESUNIT.INCH,
    }
    physical = {
        "resolution": (1.0 / spacing[-1], 1.0 / spacing[-2]),
        "resolutionunit": units.get(unit, tifffile.RESUNIT.NONE),
    }
    if unit:
        physical["unit"] = unit
    if len(axes) >= 3 and spacing[-3] is not None:
        physical["spacing"] = float(spacing[-3])
    return physical


def _plan_ome_zarr(job, pyramid):
    """NGFF axes, stored axis order and level 0 transform of an OME-Zarr output."""
    from . import _ome_zarr

    source = job.source
    try:
        axes, order = _ome_zarr.ngff_axes(source.ndim, job.channel_axis, source.time_axes, known=source.axes)
    except ValueError as error:
        raise _io.InputError(str(error)) from None
    for axis, input_axis in zip(axes, order):
        unit = source.units[input_axis]
        if unit and axis.get("type") == "space" and "unit" not in axis:
            axis["unit"] = unit
    scale = [float(source.spacing[a]) if source.spacing[a] else 1.0 for a in order]
    translation = [float(source.translation[a]) if source.translation else 0.0 for a in order]
    job.pyramid, job.ome_axes, job.ome_order = pyramid, axes, tuple(order)
    job.ome_transform = (scale, translation)


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


def _anchor_aligned(chunks, shape, unit_spatial, size):
    """``chunks`` rounded up, along each axis the running sums of ``uniform`` filter (window
    ``size``, one per axis or one for all), to whole anchor spacings (``_uniform.spacing``).

    The lazy running sums move a block's start to an anchor and read a whole spacing before
    it (``smoothing._uniform_lazily``), so thinner pieces were each computed again from that
    many rows: a 1024 x 16384 float32 image in 1 MB pieces of 2 rows took 13 s, against
    1.4 s for the Gaussian. The filter needs that much of the image at once anyway.
    """
    from ._uniform import spacing

    sizes = list(size) if isinstance(size, (list, tuple)) else [size] * len(unit_spatial)
    chunks = list(chunks)
    for axis, width in zip(unit_spatial, sizes):
        if width > 1:  # an axis of window 1 is not filtered
            step = spacing(width)
            chunks[axis] = min(shape[axis], -(-chunks[axis] // step) * step)
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
        source,
        chunks=job.chunks,
        name=f"sepconv-read-{uuid.uuid4().hex}",
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
            _filter_units,
            function,
            job.arguments,
            nstack,
            job.out_dtype,
            chunks=tuple(out_chunks),
            dtype=job.out_dtype,
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


def store_tasks(result, target, pixel_bytes=0, channel_axis=None):
    """One task per block: compute it and write it into its region.

    Each task returns the bytes of input its block stands for (``pixel_bytes`` per pixel, the
    channel axis not counted), for progress.
    """
    import dask

    blocks = result.to_delayed(optimize_graph=True)
    offsets = [np.cumsum((0,) + sizes) for sizes in result.chunks]
    name = f"sepconv-store-{uuid.uuid4().hex}"
    tasks = []
    for index in np.ndindex(blocks.shape):
        region = tuple(slice(int(o[i]), int(o[i + 1])) for o, i in zip(offsets, index))
        pixels = math.prod(s.stop - s.start for a, s in enumerate(region) if a != channel_axis)
        tasks.append(
            dask.delayed(_store_piece, pure=False)(
                target,
                region,
                blocks[index],
                pixels * pixel_bytes,
                dask_key_name=f"{name}-{len(tasks)}",
            )
        )
    return name, tasks


def _input_pixel_bytes(job):
    return job.source.nbytes // math.prod(
        n for axis, n in enumerate(job.source.shape) if axis != job.channel_axis
    )


def _downsample(level, space_axes, dtype):
    """Level ``level`` halved along ``space_axes``: block means (nearest for integer types)."""
    import dask.array as da

    factors = {axis: 2 if level.shape[axis] >= 2 else 1 for axis in space_axes}
    if np.dtype(dtype).kind == "f":
        return da.coarsen(np.mean, level, factors, trim_excess=True).astype(dtype), factors
    index = tuple(slice(None, None, factors.get(axis, 1)) for axis in range(level.ndim))
    return level[index], factors


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
                dask.compute(*tasks[start : start + batch], scheduler="threads", num_workers=self.threads)

    def release(self, path):
        _io.release_handles(path)

    def close(self):
        _io.release_handles()


# A piece whose worker dies is retried on another worker this many times, then reported.
ALLOWED_FAILURES = 2
# A cluster left without any worker for this long is given up (its pieces are reported).
NO_WORKERS_SECONDS = 30.0
POLL_SECONDS = 1.0


class ClusterRunner:
    """Runs store tasks on a Dask distributed cluster; workers read and write their pieces.

    Never waits forever: a piece whose workers keep dying fails after the scheduler's allowed
    retries, and a cluster with no worker left for ``no_workers_seconds`` fails the input.
    """

    def __init__(self, client, cluster=None, *, no_workers_seconds=NO_WORKERS_SECONDS):
        self.client = client
        self.cluster = cluster
        self.no_workers_seconds = no_workers_seconds

    @property
    def dashboard_link(self):
        """The cluster's dashboard address, or None when it runs none."""
        try:
            services = self.client.scheduler_info(n_workers=0).get("services", {})
        except Exception:
            return None
        return self.client.dashboard_link if "dashboard" in services else None

    def run(self, name, tasks, advance):
        import time

        from distributed import wait
        from distributed.scheduler import KilledWorker

        futures = self.client.compute(tasks)
        pending = set(futures)
        alone_since = None
        try:
            while pending:
                try:
                    # The client is not the process's default (the command leaves its caller's
                    # Dask settings alone), so ``wait`` is told which client to use.
                    with self.client.as_current():
                        finished, pending = wait(pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    finished = set()
                for future in finished:
                    try:
                        advance(future.result())
                    except KilledWorker:
                        raise RuntimeError(
                            "a piece was given to several workers and each of them died while "
                            "filtering it (out of memory, or killed?)"
                        ) from None
                if not pending or finished:
                    alone_since = None
                    continue
                if self._workers():
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
                elif time.monotonic() - alone_since > self.no_workers_seconds:
                    raise RuntimeError(
                        f"the cluster has had no worker for {self.no_workers_seconds:.0f} s "
                        "(they died or were stopped); gave up"
                    )
        except BaseException:
            self.client.cancel(futures)
            raise

    def _workers(self):
        try:
            return len(self.client.scheduler_info(n_workers=-1)["workers"])
        except Exception:
            return 0

    def release(self, path):
        try:
            self.client.run(_io.release_handles, path)
        except Exception:  # a worker that died holds nothing
            pass

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def local_cluster(workers, dashboard=True):
    """A local Dask cluster of ``workers`` processes, one thread each, sharing out the cores.

    Its log messages below errors are silenced for as long as this process runs the
    command: ``silence_logs`` holds only while the cluster starts, and a worker that dies
    mid-send otherwise prints a traceback at the INFO level (the runner reports failures
    itself).
    """
    import importlib.util
    import logging

    import dask
    from distributed import Client, LocalCluster

    numba_threads = max(1, (os.cpu_count() or 1) // workers)
    dashboard = dashboard and importlib.util.find_spec("bokeh") is not None
    with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0" if dashboard else None,
            silence_logs=logging.ERROR,
            env={"NUMBA_NUM_THREADS": str(numba_threads)},
        )
    logging.getLogger("distributed").setLevel(logging.ERROR)
    return ClusterRunner(Client(cluster, set_as_default=False), cluster)


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
            _write_output(job, runner, advance)
            _io.commit_target(None, job.final)
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


def _write_output(job, runner, advance):
    """Fill the output of one job under its temporary name (all its pyramid levels too)."""
    result = lazy_result(job)
    channel_axis = job.channel_axis
    shape = job.out_shape
    if job.fmt == "ome-zarr":
        result = result.transpose(job.ome_order)
        channel_axis = job.ome_order.index(channel_axis) if channel_axis is not None else None
        shape = tuple(job.out_shape[a] for a in job.ome_order)
    if job.fmt in ("zarr", "ome-zarr"):
        result = _regular(result)
    chunks = tuple(sizes[0] for sizes in result.chunks)
    target = _io.create_target(
        job.final,
        job.fmt,
        shape,
        job.out_dtype,
        chunks=chunks,
        channel_last=job.channel_axis == job.source.ndim - 1,
        record=job.record,
        physical=job.physical,
    )
    name, tasks = store_tasks(result, target, _input_pixel_bytes(job), channel_axis)
    runner.run(name, tasks, advance)
    if job.fmt == "ome-zarr":
        _write_pyramid(job, runner, target, chunks)


def _write_pyramid(job, runner, level0, chunks):
    """Levels 1..N, each halved from the one before in its own streaming pass, then the
    NGFF metadata (written last: the group is an OME-Zarr image only once complete)."""
    import dask.array as da

    from . import _ome_zarr

    space_axes = [i for i, axis in enumerate(job.ome_axes) if axis.get("type") == "space"][-2:]
    scale, translation = job.ome_transform
    transforms = [_ome_zarr.level_transforms(scale, translation, [1] * len(scale))]
    factors_so_far = [1] * len(scale)
    previous = level0
    for level in range(1, job.pyramid + 1):
        source = da.from_zarr(previous.path, chunks=chunks)
        smaller, factors = _downsample(source, space_axes, job.out_dtype)
        if smaller.size == 0 or all(f == 1 for f in factors.values()):
            break  # a level of one pixel: no smaller one
        smaller = _regular(smaller.rechunk(tuple(min(c, n) for c, n in zip(chunks, smaller.shape))))
        target = _io.create_level(
            job.final, str(level), smaller.shape, job.out_dtype, tuple(sizes[0] for sizes in smaller.chunks)
        )
        name, tasks = store_tasks(smaller, target)
        runner.run(name, tasks, lambda n: None)
        factors_so_far = [f * factors.get(axis, 1) for axis, f in enumerate(factors_so_far)]
        transforms.append(
            _ome_zarr.level_transforms(
                scale, translation, factors_so_far, block_means=np.dtype(job.out_dtype).kind == "f"
            )
        )
        previous = target
    _ome_zarr.write_metadata(
        _io.partial_path(job.final),
        job.ome_axes,
        [str(level) for level in range(len(transforms))],
        transforms,
    )


def make_progress_bar(total, enabled=None):
    """A tqdm bar on stderr counting input bytes, shown when stderr is a terminal."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        desc="sepconv",
    )
