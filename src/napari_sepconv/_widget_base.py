"""What the napari widgets and commands share: reading a layer, running a filter
plane by plane, and turning the result into layers that keep the input's geometry.

Nothing here imports Qt, so the commands (which run without a widget) use it too.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

import napari_sepconv as sc
from napari_sepconv import smoothing
from napari_sepconv._plan import plan_of
from napari_sepconv._widget_script import data_version

# napari runs filters in worker threads, and the widgets warm the Numba cache in
# another one. Numba's fallback threading layer ('workqueue') aborts the process
# when two threads enter a parallel function at once, so the widgets take turns.
LIBRARY_LOCK = threading.Lock()

EDGE_FILTERS = ("sobel", "scharr", "prewitt", "farid")
AXIS_NAMES = {None: "magnitude", -1: "x", -2: "y", -3: "z"}

#: Errors that mean "the input or the settings are wrong": shown as a message,
#: not as a traceback.
USER_ERRORS = (ValueError, TypeError, MemoryError)

#: The "output type" choices: label -> value (see :func:`output_kwargs`).
OUTPUT_TYPES = (
    ("float32 for integer input", "auto"),
    ("float32", "float32"),
    ("float64", "float64"),
    ("input's range", "range"),
)

# Results are numbered in the order they were made, so an exported script
# replays them in that order.
_STEPS = itertools.count(1)


def output_kwargs(output_type: str, dtype: Any) -> dict:
    """The library's ``dtype``/``preserve_range`` arguments for an "output type".

    ``'auto'`` gives float32 for integer and bool input (the library's own
    default, float64, doubles the memory for no precision the input had) and
    keeps a float input's type; ``'range'`` keeps integer values unscaled.
    """
    if output_type == "auto":
        return {"dtype": np.float32} if np.dtype(dtype).kind in "biu" else {}
    if output_type in ("float32", "float64"):
        return {"dtype": getattr(np, output_type)}
    if output_type == "range":
        return {"preserve_range": True}
    raise ValueError(f"output type must be one of auto, float32, float64, range; got {output_type!r}")


def output_layout(func: Any, shape: tuple, dtype: Any) -> tuple[np.dtype, int]:
    """The output dtype and last-axis length of ``func`` on an array of ``shape``.

    Read from the plan of the library function ``func`` binds (nothing is
    computed); a function without a plan runs once on a tiny zero array.
    """
    base = func
    while isinstance(base, partial):
        base = base.func
    if hasattr(base, "plan"):
        plan = plan_of(func, shape, dtype)
        return plan.out_dtype, plan.out_shape[-1]
    probe_shape = tuple(min(n, 4) for n in shape)
    with LIBRARY_LOCK:
        probe = np.asarray(func(np.zeros(probe_shape, dtype)))
    return probe.dtype, probe.shape[-1]


def _output_tag(output_type: str) -> str:
    return {"auto": "", "float32": " f32", "float64": " f64", "range": " range"}[output_type]


def is_dask(array: Any) -> bool:
    return type(array).__module__.startswith("dask.")


def layer_array(layer: Any) -> Any:
    """The layer's data as a NumPy array or, for lazy data, a dask array."""
    if getattr(layer, "multiscale", False):
        raise ValueError(
            f"layer '{layer.name}' is multiscale; filter its full-resolution level "
            "instead (add it as its own layer)"
        )
    data = layer.data
    if isinstance(data, np.ndarray) or is_dask(data):
        return data
    if hasattr(data, "chunks") and hasattr(data, "dtype"):  # zarr, h5py: stay lazy
        import dask.array as da

        return da.from_array(data)
    return np.asarray(data)


@dataclass
class Geometry:
    """Per data axis: how each axis of an array maps into the world.

    ``labels`` is None when the layer uses napari's default axis labels (they
    are renumbered automatically when axes are added or removed).
    """

    scale: list
    translate: list
    units: list
    labels: list | None

    @classmethod
    def of_layer(cls, layer: Any) -> Geometry:
        ndim = layer.ndim
        labels = list(getattr(layer, "axis_labels", ()))
        if labels == [str(i) for i in range(-ndim, 0)]:
            labels = None
        geometry = cls(
            scale=list(layer.scale),
            translate=list(layer.translate),
            units=[str(u) for u in getattr(layer, "units", ("pixel",) * ndim)],
            labels=labels,
        )
        if getattr(layer, "rgb", False):  # napari gives the colour axis no scale
            geometry = geometry.with_channel_inserted(ndim)
        return geometry

    def with_channel_inserted(self, axis: int) -> Geometry:
        labels = None
        if self.labels is not None:
            labels = list(self.labels)
            labels.insert(axis, "channel" if "c" in labels else "c")
        return Geometry(
            _inserted(self.scale, axis, 1.0),
            _inserted(self.translate, axis, 0.0),
            _inserted(self.units, axis, "pixel"),
            labels,
        )

    def moved(self, source: int, destination: int) -> Geometry:
        if source == destination:
            return self
        return Geometry(
            *(
                None if values is None else _moved(values, source, destination)
                for values in (self.scale, self.translate, self.units, self.labels)
            )
        )

    def without(self, axis: int) -> Geometry:
        return Geometry(
            *(
                None if values is None else values[:axis] + values[axis + 1 :]
                for values in (self.scale, self.translate, self.units, self.labels)
            )
        )

    def layer_kwargs(self) -> dict:
        kwargs = {
            "scale": tuple(self.scale),
            "translate": tuple(self.translate),
            "units": tuple(self.units),
        }
        if self.labels is not None:
            kwargs["axis_labels"] = tuple(self.labels)
        return kwargs


def _inserted(values: list, axis: int, value: Any) -> list:
    values = list(values)
    values.insert(axis, value)
    return values


def _moved(values: list, source: int, destination: int) -> list:
    values = list(values)
    values.insert(destination, values.pop(source))
    return values


@dataclass
class Source:
    """The input of a filter run: one array, its name, geometry and colour layout.

    ``channel_axis`` is the data axis holding channels (None: every axis is
    spatial); ``rgb`` says the layer was shown as RGB(A). ``channel_home`` is
    where a one-layer multichannel result puts its channel axis: where it was,
    or first (napari's place for a channel slider) when the input's channels
    were RGB or separate layers. ``layer_extra`` (rotate, shear, affine,
    colormap) is copied to results laid out exactly as the input layer.
    """

    data: Any
    name: str
    geometry: Geometry
    channel_axis: int | None = None
    rgb: bool = False
    channel_home: int = 0
    layer_extra: dict = field(default_factory=dict)
    #: the layers read: one, or several stacked as channels (the last axis)
    inputs: tuple = ()
    #: what each input held when it was read (``_widget_script.data_version``)
    versions: tuple = ()

    @classmethod
    def from_layer(cls, layer: Any, channel_axis: int | None = None) -> Source:
        if layer is None:
            raise ValueError("no image layer chosen: open or choose an image layer first")
        data = layer_array(layer)
        rgb = bool(getattr(layer, "rgb", False))
        if rgb:
            channel_axis = data.ndim - 1
        elif channel_axis is not None:
            if not -data.ndim <= channel_axis < data.ndim:
                raise ValueError(
                    f"channel_axis {channel_axis} does not exist: layer '{layer.name}' has {data.ndim} axes"
                )
            channel_axis %= data.ndim
        extra = {
            "rotate": np.asarray(layer.rotate),
            "shear": np.asarray(layer.shear),
            "affine": np.asarray(layer.affine.affine_matrix),
        }
        if not rgb:
            extra.update(colormap=layer.colormap.name, blending=layer.blending)
        home = 0 if rgb or channel_axis is None else channel_axis
        return cls(
            data,
            layer.name,
            Geometry.of_layer(layer),
            channel_axis,
            rgb,
            home,
            extra,
            (layer.name,),
            (data_version(layer),),
        )

    @classmethod
    def from_layers(cls, layers: Sequence[Any]) -> Source:
        """Several single-channel layers of one shape, taken as the channels of one image."""
        layers = list(layers)
        if len(layers) < 2:
            raise ValueError("choose at least two image layers to take as channels")
        arrays = [layer_array(layer) for layer in layers]
        if any(layer.rgb for layer in layers):
            raise ValueError("RGB layers cannot be taken as single channels")
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            shown = (f"'{lyr.name}' {a.shape}" for lyr, a in zip(layers, arrays, strict=True))
            raise ValueError("layers taken as channels need one shape; got " + ", ".join(shown))
        if any(is_dask(a) for a in arrays):
            import dask.array as da

            data = da.stack(arrays, axis=-1)
        else:
            data = StackedChannels([np.asarray(a) for a in arrays])
        name = "+".join(layer.name for layer in layers)
        geometry = Geometry.of_layer(layers[0]).with_channel_inserted(data.ndim - 1)
        inputs = tuple(layer.name for layer in layers)
        versions = tuple(data_version(layer) for layer in layers)
        return cls(
            data, name, geometry, data.ndim - 1, rgb=False, channel_home=0, inputs=inputs, versions=versions
        )

    @property
    def spatial_ndim(self) -> int:
        return self.data.ndim - (self.channel_axis is not None)

    @property
    def channels(self) -> int | None:
        return None if self.channel_axis is None else self.data.shape[self.channel_axis]

    def channels_last(self) -> Any:
        if self.channel_axis in (None, self.data.ndim - 1):
            return self.data
        return _moveaxis(self.data, self.channel_axis, -1)

    def spatial_axes(self) -> list[int]:
        return [a for a in range(self.data.ndim) if a != self.channel_axis]

    def sliced(self, regions: dict[int, slice]) -> Source:
        """The part of the source in ``regions`` (data axis -> slice), in memory,
        placed where it lies in the whole (its translation shifted)."""
        index = tuple(regions.get(a, slice(None)) for a in range(self.data.ndim))
        data = np.asarray(self.data[index])
        translate = list(self.geometry.translate)
        for axis, region in regions.items():
            translate[axis] += region.start * self.geometry.scale[axis]
        return replace(self, data=data, geometry=replace(self.geometry, translate=translate))

    def gathered(self, regions: dict[int, slice], axis: int, first: int, planes: np.ndarray) -> Source:
        """:meth:`sliced` with the planes ``planes`` (indices along ``axis``) in place of a
        slice of that axis, placed as if they began at plane ``first`` of the whole (the
        halo of a periodic border). Each run of consecutive planes is read as one slice."""
        breaks = np.flatnonzero(np.diff(planes) != 1) + 1
        runs = np.split(planes, breaks)
        parts = [self.sliced({**regions, axis: slice(run[0], run[-1] + 1)}).data for run in runs]
        part = self.sliced({**regions, axis: slice(0, 0)})
        translate = list(part.geometry.translate)
        translate[axis] += first * self.geometry.scale[axis]
        data = np.concatenate(parts, axis=axis)
        return replace(part, data=data, geometry=replace(part.geometry, translate=translate))


def _clips_by_sign(func: Any) -> bool:
    """Whether ``func`` is ``unsharp_mask`` clipping by its image's sign (to [-1, 1] where
    the image has a negative value): a slab of a volume may decide otherwise than the
    whole."""
    return (
        isinstance(func, partial)
        and func.func is sc.unsharp_mask
        and not func.args
        and not func.keywords.get("preserve_range", False)
    )


class StackedChannels:
    """Arrays of one shape taken as the channels (a last axis) of one image,
    stacked only where a part is read, so choosing layers copies nothing."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.dtype = np.result_type(*arrays)
        self.shape = (*arrays[0].shape, len(arrays))
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        channels = slice(None)
        if len(key) == self.ndim:
            key, channels = key[:-1], key[-1]
        stacked = np.stack([np.asarray(a[key], self.dtype) for a in self.arrays], axis=-1)
        return stacked[..., channels]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        stacked = np.stack(self.arrays, axis=-1).astype(self.dtype, copy=False)
        return stacked if dtype is None else stacked.astype(dtype, copy=False)


def _moveaxis(array: Any, source: int, destination: int) -> Any:
    if is_dask(array):
        import dask.array as da

        return da.moveaxis(array, source, destination)
    return np.moveaxis(array, source, destination)


@dataclass
class Job:
    """One filter run over a :class:`Source`.

    ``func`` filters one block made of the last ``core_ndim`` axes of the
    channels-last data (the filtered spatial axes, then the channel axis if
    any); leading axes are a stack of such blocks. ``native_stack`` says that
    ``func`` itself treats leading axes as a stack, so lazy input can be passed
    to it whole.
    """

    source: Source
    func: Callable[[Any], Any]
    core_ndim: int
    tag: str
    native_stack: bool = False
    split: bool = False
    metadata: dict = field(default_factory=dict)
    #: planes on either side a preview of one plane needs (3-D filters)
    preview_halo: int = 0
    #: (axis of the channels-last result, offset): the plane a preview keeps
    crop: tuple | None = None
    #: the viewer's position (world coordinates) when the run started: the
    #: plane of a lazy result whose range gives its contrast limits
    view_point: tuple | None = None
    #: each input channel filtered on its own (not a mix of channels), into
    #: ``per_channel_depth`` consecutive output channels (a depthwise multiplier)
    per_channel: bool = True
    per_channel_depth: int = 1

    @property
    def steps(self) -> int:
        """How many progress steps :meth:`compute` yields: one per block of a
        NumPy input; one in all for a dask input, which stays lazy."""
        data = self.source.data
        if is_dask(data):
            return 1
        # the blocks are counted where compute() takes them: channels last
        lead = [n for a, n in enumerate(data.shape) if a != self.source.channel_axis]
        lead = lead[: data.ndim - self.core_ndim]
        return max(1, math.prod(lead))

    @property
    def name(self) -> str:
        """The result layer's name: the input's, with the filter and its settings."""
        return f"{self.source.name} [{self.tag}]"

    def compute(self, cancel: threading.Event | None = None) -> Iterator[int]:
        """Generator: yields the number of planes done, returns the result
        (None when ``cancel`` was set: it is looked at before each plane).

        A NumPy input is filtered block by block (so progress is real); a dask
        input gives a lazy result.
        """
        data = self.source.channels_last()
        lead_shape = data.shape[: data.ndim - self.core_ndim]
        if is_dask(data):
            if not lead_shape or self.native_stack:
                result = self.func(data)
            else:
                result = self._lazy_blocks(data)
            yield 1
            return result
        result = None
        for done, index in enumerate(np.ndindex(lead_shape), start=1):
            with LIBRARY_LOCK:
                if cancel is not None and cancel.is_set():
                    return None
                block = np.asarray(self.func(data[index]))
            if result is None:
                result = np.empty(lead_shape + block.shape, block.dtype)
            result[index] = block
            yield done
        return result

    def preview(self, position: Sequence[int]) -> Job:
        """The same filter on the plane at ``position`` (an index per data axis
        of the source, the colour axis of an RGB layer left out)."""
        source = self.source
        spatial = source.spatial_axes()
        core_spatial = self.core_ndim - (source.channel_axis is not None)
        lead = spatial[: len(spatial) - core_spatial]
        regions = {}
        for axis in lead:
            i = int(np.clip(position[axis], 0, source.data.shape[axis] - 1))
            regions[axis] = slice(i, i + 1)
        crop = None
        wrapped = None
        if self.preview_halo and len(spatial) >= core_spatial and core_spatial > 2:
            axis = spatial[len(spatial) - core_spatial]  # the first filtered axis (z)
            n = source.data.shape[axis]
            i = int(np.clip(position[axis], 0, n - 1))
            halo = self.preview_halo
            if getattr(self.func, "keywords", {}).get("mode") in ("wrap", "grid-wrap"):
                # the planes past a border are the far end's: the halo's planes, modulo n
                wrapped = (axis, i - halo, np.arange(i - halo, i + halo + 1) % n)
                start = i - halo
            else:  # the volume's own border, where the slab reaches it
                start, stop = max(0, i - halo), min(n, i + halo + 1)
                regions[axis] = slice(start, stop)
            crop = (axis - (source.channel_axis is not None and source.channel_axis < axis), i - start)
        func = self.func
        if crop is not None and np.dtype(source.data.dtype).kind not in "ub" and _clips_by_sign(func):
            # the whole volume's sign decides the clipping, not the slab's; the slab is then
            # cut from the volume read for it, not read again
            source = source.sliced({a: r for a, r in regions.items() if a != axis})
            negative = bool(np.any(source.data < 0))
            func = partial(smoothing.unsharp_clipped_as, negative=negative, **func.keywords)
            regions = {a: r for a, r in regions.items() if a == axis}
        source = source.sliced(regions) if wrapped is None else source.gathered(regions, *wrapped)
        # the preview's layers are named as the result's (split channels by their channel)
        names = {k: v for k, v in self.metadata.items() if k == "channel_names"}
        return replace(self, source=source, func=func, crop=crop, metadata=names)

    def finish(self, result: Any) -> list[tuple]:
        """The result as layer data tuples, with their contrast limits worked
        out here (in the worker thread: on a large result that takes a while,
        and napari would do it on its GUI thread). A lazy result's limits come
        from the plane shown at ``view_point`` (see :func:`lazy_contrast_limits`)."""
        if self.crop is not None:
            axis, offset = self.crop
            result = np.take(result, [offset], axis=axis)
            translate = list(self.source.geometry.translate)
            translate[axis] += offset * self.source.geometry.scale[axis]
            geometry = replace(self.source.geometry, translate=translate)
            self = replace(self, source=replace(self.source, geometry=geometry), crop=None)
        layers = self.layers(result)
        for data, kwargs, _ in layers:
            if is_dask(data):
                limits = lazy_contrast_limits(data, kwargs, self.view_point)
            else:
                limits = contrast_limits(data, kwargs.get("rgb", False))
            if limits is not None:
                kwargs["contrast_limits"] = limits
        return layers

    def run(self) -> Any:
        """Compute without reporting progress (for commands and scripts)."""
        steps = self.compute()
        while True:
            try:
                next(steps)
            except StopIteration as finished:
                return finished.value

    def _lazy_blocks(self, data: Any) -> Any:
        """Lazy ``func`` on each block, for functions that do not stack themselves."""
        lead = data.ndim - self.core_ndim
        data = data.rechunk({axis: -1 for axis in range(lead, data.ndim)})
        out_dtype, last = output_layout(self.func, data.shape[lead:], data.dtype)
        core_shape = data.shape[lead:]
        if self.source.channel_axis is not None:
            core_shape = core_shape[:-1] + (last,)
        func = self.func

        def filter_blocks(block: np.ndarray) -> np.ndarray:
            out = np.empty(block.shape[:lead] + core_shape, out_dtype)
            for index in np.ndindex(block.shape[:lead]):
                out[index] = func(block[index])
            return out

        return data.map_blocks(
            filter_blocks,
            chunks=data.chunks[:lead] + tuple((n,) for n in core_shape),
            dtype=out_dtype,
            meta=np.empty((0,) * data.ndim, out_dtype),
        )

    def layers(self, result: Any) -> list[tuple]:
        """The result (channels last) as napari layer data tuples.

        Each layer's ``metadata["sepconv"]`` records the call (see
        :mod:`._widget_script`), with ``"python"``, a snippet that recomputes
        the layer's data from the input layer into ``result``.
        """
        return [
            _image(data, name, self._metadata(name, layout), **kwargs)
            for data, name, layout, kwargs in self._layout(result)
        ]

    def _layout(self, result: Any) -> list[tuple]:
        """(data, name, layout, layer kwargs) of each result layer; ``layout``
        says how its data is taken from the channels-last result."""
        source = self.source
        name = self.name
        if source.channel_axis is None:
            kwargs = {**source.geometry.layer_kwargs(), **source.layer_extra}
            return [(result, name, ("all",), kwargs)]

        channels_last = source.geometry.moved(source.channel_axis, result.ndim - 1)
        spatial = channels_last.without(result.ndim - 1).layer_kwargs()
        channels = result.shape[-1]
        if channels == 1:
            return [(result[..., 0], name, ("take", 0), spatial)]
        rgba = source.rgb and source.channels == 4 and self.per_channel
        # RGBA: the outputs of the alpha channel are left out. Filtered, it means nothing
        # (an edge filter of an opaque layer gives alpha 0: an invisible result).
        kept = channels - (self.per_channel_depth if rgba else 0)
        if self.split:
            colormaps = _channel_colormaps(channels, source.rgb)
            names = self.metadata.get("channel_names") or [str(c) for c in range(channels)]
            return [
                (
                    result[..., c],
                    f"{source.name} [{self.tag} {names[c]}]",
                    ("take", c),
                    {"colormap": colormaps[c], "blending": "additive", **spatial},
                )
                for c in range(kept)
            ]
        if rgba and kept == 3:
            return [(result[..., :3], name, ("colours", 3), {"rgb": True, **spatial, **source.layer_extra})]
        if source.rgb and channels == 3:
            return [(result, name, ("all",), {"rgb": True, **spatial, **source.layer_extra})]
        home = source.channel_home
        kwargs = channels_last.moved(result.ndim - 1, home).layer_kwargs()
        if not source.rgb and home == source.channel_axis:
            kwargs.update(source.layer_extra)
        if kept < channels:
            return [(_moveaxis(result[..., :kept], -1, home), name, ("colours", kept, home), kwargs)]
        return [(_moveaxis(result, -1, home), name, ("move", home), kwargs)]

    def _metadata(self, name: str, layout: tuple) -> dict:
        from ._widget_script import call_record

        settings = {k: v for k, v in self.metadata.items() if k != "channel_names"}
        record = {"filter": self.tag, "source": self.source.name, **settings}
        record.update(call_record(self, layout))
        record["step"] = next(_STEPS)
        return {"sepconv": record}


def _image(data: Any, name: str, metadata: dict, **kwargs: Any) -> tuple:
    kwargs.setdefault("rgb", False)
    return (data, {"name": name, "metadata": metadata, **kwargs}, "image")


def contrast_limits(data: Any, rgb: bool = False) -> tuple[float, float] | None:
    """The finite range of an in-memory result (None for lazy data: see
    :func:`lazy_contrast_limits`)."""
    if not isinstance(data, np.ndarray) or data.size == 0:
        return None
    if rgb and data.dtype == np.uint8:
        return (0.0, 255.0)
    low, high = float(np.nanmin(data)), float(np.nanmax(data))
    if not (math.isfinite(low) and math.isfinite(high)):
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return (0.0, 1.0)
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        high = low + 1.0
    return (low, high)


#: a lazy plane larger than this (pixels) gives its limits from a central part
_LARGEST_LIMITS_PLANE = 4096 * 4096


def lazy_contrast_limits(
    data: Any, kwargs: dict, point: Sequence[float] | None
) -> tuple[float, float] | None:
    """Contrast limits of a lazy (dask) result layer, from the plane napari
    shows first: the one at ``point`` (world coordinates, as
    ``viewer.dims.point``), the middle plane along axes ``point`` does not
    reach. ``kwargs`` are the layer's (scale, translate, rgb).

    Computed in the calling thread, so napari need not compute a range of the
    lazy data on its GUI thread (it would filter three planes there).
    """
    rgb = bool(kwargs.get("rgb", False))
    layer_ndim = data.ndim - rgb
    lead = layer_ndim - 2
    if lead < 0 or data.size == 0:
        return None
    scale = list(kwargs.get("scale", (1.0,) * layer_ndim))
    translate = list(kwargs.get("translate", (0.0,) * layer_ndim))
    point = list(point or ())
    index = []
    for axis in range(lead):
        n = data.shape[axis]
        i = n // 2
        world_axis = len(point) - layer_ndim + axis  # napari aligns layers' last axes
        if world_axis >= 0 and scale[axis]:
            position = (float(point[world_axis]) - float(translate[axis])) / float(scale[axis])
            if math.isfinite(position):
                i = int(round(position))
        index.append(min(max(i, 0), n - 1))
    plane = data[tuple(index)]
    height, width = plane.shape[:2]
    if height * width > _LARGEST_LIMITS_PLANE:
        side = math.isqrt(_LARGEST_LIMITS_PLANE)
        top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
        plane = plane[top : top + side, left : left + side]
    with LIBRARY_LOCK:
        plane = np.asarray(plane.compute(scheduler="synchronous"))
    return contrast_limits(plane, rgb)


def _channel_colormaps(channels: int, rgb: bool) -> list[str]:
    if rgb and channels in (3, 4):
        return ["red", "green", "blue", "gray"][:channels]
    if channels == 2:
        return ["magenta", "green"]
    cycle = ["cyan", "magenta", "yellow", "red", "green", "blue"]
    return [cycle[c % len(cycle)] for c in range(channels)]


# -----------------------------------------------------------------------------
# The filter runs the widgets and commands offer


def _settings_tag(mode: str, cval: float, output_type: str, modes_used: bool = True) -> str:
    """The settings that differ from the defaults, for the result's name."""
    tag = ""
    if modes_used and mode != "reflect":
        tag += f" {mode}" + (f" {cval:g}" if mode == "constant" and cval else "")
    return tag + _output_tag(output_type)


def edge_job(
    source: Source,
    filter: str = "sobel",
    axis: int | None = None,
    ndim: int = 2,
    mode: str = "reflect",
    cval: float = 0.0,
    metadata: dict | None = None,
    output_type: str = "auto",
) -> Job:
    """An edge filter (``sc.sobel`` ...) per 2-D plane (``ndim=2``) or in 3-D.

    ``axis`` is None for the magnitude, or -1, -2, -3 for the derivative along
    x, y, z of each plane or volume.
    """
    if filter not in EDGE_FILTERS:
        raise ValueError(f"filter must be one of {', '.join(EDGE_FILTERS)}, got {filter!r}")
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    if source.spatial_ndim < ndim:
        raise ValueError(
            f"'in 3-D' needs 3 spatial axes; layer '{source.name}' has "
            f"{source.spatial_ndim}: filter per 2-D plane instead"
        )
    if axis is not None and not -ndim <= axis < 0:
        raise ValueError("direction 'z' needs 'in 3-D'" if axis == -3 else f"bad axis {axis}")
    channel = source.channel_axis is not None
    func = partial(
        getattr(sc, filter),
        axis=None if axis is None else ndim + axis,  # the block's spatial axes come first
        mode=mode,
        cval=cval,
        channel_axis=-1 if channel else None,
        **output_kwargs(output_type, source.data.dtype),
    )
    tag = filter if axis is None else f"{filter} {AXIS_NAMES[axis]}"
    tag += " 3-D" if ndim == 3 else ""
    tag += _settings_tag(mode, cval, output_type)
    halo = 2 if ndim == 3 else 0  # the widest edge kernel (Farid) reaches 2 planes
    return Job(source, func, ndim + channel, tag, metadata=metadata or {}, preview_halo=halo)


def kernel_job(
    source: Source,
    kernel: np.ndarray,
    tag: str = "kernel",
    rank: int | None = None,
    mode: str = "reflect",
    cval: float = 0.0,
    metadata: dict | None = None,
    output_type: str = "auto",
) -> Job:
    """``sc.filter2d`` on each 2-D plane."""
    if source.spatial_ndim < 2:
        raise ValueError(f"layer '{source.name}' has fewer than 2 spatial axes")
    channel = source.channel_axis is not None
    func = partial(
        sc.filter2d,
        kernel=kernel,
        mode=mode,
        cval=cval,
        rank=rank,
        channel_axis=-1 if channel else None,
        **output_kwargs(output_type, source.data.dtype),
    )
    tag += "" if rank is None else f" rank {rank}"
    tag += _settings_tag(mode, cval, output_type)
    metadata = {**(metadata or {}), "kernel_values": np.asarray(kernel).tolist()}
    return Job(source, func, 2 + channel, tag, native_stack=True, metadata=metadata)


def channel_job(
    source: Source,
    kernels: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    mode: str = "reflect",
    cval: float = 0.0,
    split: bool = False,
    metadata: dict | None = None,
    output_type: str = "auto",
    tag: str = "",
) -> Job:
    """Depthwise (``kernels`` only), pointwise (``weights`` only) or
    depthwise-separable (both) filtering over the source's channel axis.

    ``kernels`` has shape (C, kh, kw) or (C, M, kh, kw), ``weights`` (C_out, C*M).
    ``tag`` names the kernels and weights in the result's name.
    """
    if source.channel_axis is None:
        raise ValueError("the Channel filter needs a channel axis")
    if source.spatial_ndim < 2:
        raise ValueError(f"layer '{source.name}' has fewer than 2 spatial axes")
    dtype = output_kwargs(output_type, source.data.dtype)
    if kernels is not None and weights is not None:
        operation = "depthwise-separable"
        func = partial(
            sc.depthwise_separable_filter,
            depthwise_kernels=kernels,
            pointwise_weights=weights,
            channel_axis=-1,
            mode=mode,
            cval=cval,
            **dtype,
        )
    elif kernels is not None:
        operation = "depthwise"
        func = partial(sc.depthwise_filter, kernels=kernels, channel_axis=-1, mode=mode, cval=cval, **dtype)
    elif weights is not None:
        operation = "pointwise"
        func = partial(sc.pointwise_filter, weights=weights, channel_axis=-1, **dtype)
    else:
        raise ValueError("give depthwise kernels, pointwise weights or both")
    metadata = dict(metadata or {})
    if split and "channel_names" not in metadata:
        metadata["channel_names"] = output_channel_names(source, kernels, weights)
    tag = operation + (f" {tag}" if tag else "")
    tag += _settings_tag(mode, cval, output_type, modes_used=kernels is not None)
    return Job(
        source,
        func,
        3,
        tag,
        native_stack=True,
        split=split,
        metadata=metadata,
        per_channel=weights is None,  # depthwise
        per_channel_depth=1 if weights is not None or np.ndim(kernels) == 3 else np.shape(kernels)[1],
    )


def input_channel_names(source: Source) -> list[str]:
    """What to call each input channel: its colour, its layer, or its index."""
    channels = source.channels or 0
    if source.rgb and channels in (3, 4):
        return ["red", "green", "blue", "alpha"][:channels]
    if len(source.inputs) == channels and channels > 1:
        return list(source.inputs)
    return [f"c{c}" for c in range(channels)]


def output_channel_names(source: Source, kernels: Any, weights: Any) -> list[str]:
    """Names of the output channels: depthwise outputs after their input
    channel (and kernel, with a depth multiplier); pointwise outputs numbered."""
    if weights is not None:
        return [f"out {o}" for o in range(np.shape(weights)[0])]
    names = input_channel_names(source)
    depth = 1 if np.ndim(kernels) == 3 else np.shape(kernels)[1]
    if depth == 1:
        return names
    return [f"{name} k{m}" for name in names for m in range(depth)]


SMOOTH_OPERATIONS = ("gaussian", "derivative", "dog", "unsharp")
#: Gaussian derivative orders offered, per (y, x) axis of a plane
DERIVATIVES = {
    "d/dy": (1, 0),
    "d/dx": (0, 1),
    "d²/dy²": (2, 0),
    "d²/dx²": (0, 2),
    "d²/dydx": (1, 1),
}


def pixel_sizes(source: Source, ndim: int) -> tuple[list[float], str]:
    """The pixel size along each of the last ``ndim`` spatial axes, in one unit: the last
    axis's (a size in millimetres along z and micrometres in y and x is converted, say).

    Raises ValueError where the units are not of one kind (a time axis in seconds) or a
    size is zero.
    """
    axes = source.spatial_axes()[-ndim:]
    geometry = source.geometry
    units = [str(geometry.units[a]) for a in axes]
    sizes = [abs(float(geometry.scale[a])) for a in axes]
    if len(set(units)) > 1:
        import pint

        registry = pint.get_application_registry()
        try:
            target = registry.Unit(units[-1])
            sizes = [
                float((size * registry.Unit(unit)).to(target).magnitude) for size, unit in zip(sizes, units)
            ]
        except (pint.errors.DimensionalityError, pint.errors.UndefinedUnitError, ValueError):
            labels = geometry.labels or [str(a) for a in range(len(geometry.scale))]
            described = ", ".join(f"{labels[a]} in {unit}" for a, unit in zip(axes, units))
            raise ValueError(
                f"sigma in layer units: the axes filtered are not in units of one kind ({described})"
            ) from None
    if not all(size > 0 for size in sizes):
        raise ValueError(f"layer '{source.name}' has a zero scale: sigma in its units is undefined")
    return sizes, units[-1]


def physical_sigma(source: Source, sigma: float, ndim: int) -> tuple[float, ...]:
    """Per filtered axis (the last ``ndim`` spatial axes), ``sigma`` in the layer's units
    (the last axis's, :func:`pixel_sizes`) as a number of pixels along that axis."""
    sizes, _ = pixel_sizes(source, ndim)
    return tuple(sigma / size for size in sizes)


def smooth_job(
    source: Source,
    operation: str = "gaussian",
    sigma: float = 1.0,
    high_sigma: float = 2.0,
    amount: float = 1.0,
    derivative: str = "d/dx",
    ndim: int = 2,
    physical: bool = False,
    mode: str = "nearest",
    cval: float = 0.0,
    output_type: str = "auto",
    metadata: dict | None = None,
) -> Job:
    """The Gaussian family per 2-D plane (``ndim=2``) or in 3-D:

    ``'gaussian'`` (``sc.gaussian``), ``'derivative'`` (``sc.gaussian_filter``
    with a derivative ``order``), ``'dog'`` (``sc.difference_of_gaussians``,
    ``sigma`` to ``high_sigma``) and ``'unsharp'`` (``sc.unsharp_mask``, radius
    ``sigma``). ``physical``: sigmas are in the layer's units, so an
    anisotropic scale gives a sigma per axis. ``output_type`` ``'range'``
    keeps integer values unscaled where the function offers it.
    """
    if operation not in SMOOTH_OPERATIONS:
        raise ValueError(f"operation must be one of {', '.join(SMOOTH_OPERATIONS)}, got {operation!r}")
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    if source.spatial_ndim < ndim:
        raise ValueError(
            f"'in 3-D' needs 3 spatial axes; layer '{source.name}' has "
            f"{source.spatial_ndim}: filter per 2-D plane instead"
        )
    for name, value in (("sigma", sigma), ("high sigma", high_sigma)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    channel = source.channel_axis is not None
    channel_axis = -1 if channel else None
    integer = np.dtype(source.data.dtype).kind in "biu"

    def per_axis(value: float) -> Any:
        if not physical:
            return float(value)
        sigmas = physical_sigma(source, value, ndim)
        return sigmas[0] if len(set(sigmas)) == 1 else sigmas

    unit = ""
    if physical:
        _, common = pixel_sizes(source, ndim)
        unit = "" if common == "pixel" else f" {common}"
    range_kw = {"preserve_range": True} if output_type == "range" else {}
    if operation == "gaussian":
        func = partial(
            sc.gaussian,
            sigma=per_axis(sigma),
            mode=mode,
            cval=cval,
            channel_axis=channel_axis,
            **range_kw,
        )
        tag = f"gaussian σ={sigma:g}{unit}"
        reach = sigma
    elif operation == "derivative":
        if derivative not in DERIVATIVES:
            raise ValueError(f"derivative must be one of {', '.join(DERIVATIVES)}, got {derivative!r}")
        order = (0,) * (ndim - 2) + DERIVATIVES[derivative]
        kwargs = {"output": np.float32} if integer or output_type == "float32" else {}
        if output_type == "float64":
            kwargs = {"output": np.float64}
        func = partial(
            sc.gaussian_filter,
            sigma=per_axis(sigma),
            order=order,
            mode=mode,
            cval=cval,
            axes=tuple(range(ndim)),
            **kwargs,
        )
        tag = f"gaussian {derivative} σ={sigma:g}{unit}"
        reach = sigma
    elif operation == "dog":
        func = partial(
            sc.difference_of_gaussians,
            low_sigma=per_axis(sigma),
            high_sigma=per_axis(high_sigma),
            mode=mode,
            cval=cval,
            channel_axis=channel_axis,
        )
        tag = f"dog σ={sigma:g}–{high_sigma:g}{unit}"
        reach = max(sigma, high_sigma)
    else:
        func = partial(
            sc.unsharp_mask,
            radius=per_axis(sigma),
            amount=float(amount),
            channel_axis=channel_axis,
            **range_kw,
        )
        tag = f"unsharp r={sigma:g}{unit} ×{amount:g}"
        reach = sigma
        mode = "nearest"  # unsharp_mask has no mode: it extends the border as 'nearest'
    tag += " 3-D" if ndim == 3 else ""
    if mode != "nearest":
        tag += f" {mode}" + (f" {cval:g}" if mode == "constant" and cval else "")
    tag += " range" if output_type == "range" and operation in ("gaussian", "unsharp") else ""
    halo = 0
    if ndim == 3:  # the Gaussian's reach along z, in planes (truncate 4)
        z_scale = pixel_sizes(source, ndim)[0][0] if physical else 1.0  # in sigma's unit
        halo = int(4.0 * reach / z_scale + 0.5) + 1
    return Job(source, func, ndim + channel, tag, metadata=metadata or {}, preview_halo=halo)
