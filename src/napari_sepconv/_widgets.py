"""The napari widgets: Edge filter, Kernel filter and Channel filter.

Each is a magicgui ``FunctionGui`` (call it, or its ``run()``, to filter the
chosen layer) over the library's public functions. Filtering runs in a napari
``thread_worker`` with a progress bar; the result becomes an Image layer named
``"<input> [<filter>]"`` that keeps the input's scale, translate, axis labels,
units and RGB flag, and a rerun on the same input updates that layer.
"""

import contextlib
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, FunctionGui, Label, ProgressBar, TextEdit
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

import napari_sepconv as sc

from ._widget_base import (
    USER_ERRORS,
    Geometry,
    Job,
    Source,
    channel_job,
    edge_job,
    kernel_job,
)
from ._widget_presets import (
    KERNEL_PRESETS,
    MULTI_KERNEL_PRESETS,
    WEIGHT_PRESETS,
    load_array,
    parse_kernel,
    preset_kernel,
    preset_parameter,
    preset_weights,
)

MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]
_EDGE_FILTERS = [
    ("Sobel", "sobel"),
    ("Scharr", "scharr"),
    ("Prewitt", "prewitt"),
    ("Farid", "farid"),
]
_DIRECTIONS = [
    ("magnitude", None),
    ("y (axis -2)", -2),
    ("x (axis -1)", -1),
    ("z (axis -3, 3-D only)", -3),
]


def _named(names: Any) -> list[tuple[str, str]]:
    return [(name, name) for name in names]


def _combo(choices: Any, label: str | None = None, **options: Any) -> dict:
    options = {"widget_type": "ComboBox", "choices": choices, "nullable": False, **options}
    if label:
        options["label"] = label
    return options


class _FilterWidget(FunctionGui):
    """A FunctionGui that filters a layer in a worker thread and shows the result.

    Subclasses define ``_filter`` (its parameters are the widget's controls and
    its body calls ``self._launch(locals())``), ``_source`` (the input) and
    ``_make_job`` (the library call).
    """

    title = ""
    #: controls whose choices follow the other settings (the layer's axes...)
    _dependent_choices: tuple[str, ...] = ("channel_axis",)

    def __init__(self, napari_viewer: Any, param_options: dict) -> None:
        super().__init__(
            self._filter,
            call_button="Run",
            param_options={"image": {"label": "image"}, **param_options},
            name=self.title.lower().replace(" ", "_"),
        )
        self._viewer = napari_viewer
        self._info = Label(gui_only=True, label="")
        self._progress = ProgressBar(gui_only=True, visible=False, label="progress")
        self.insert(len(self) - 1, self._info)  # above the Run button
        self.append(self._progress)
        self._worker: Any = None
        self._running: set = set()  # workers started and not yet finished
        self._closed = False
        self.native.destroyed.connect(self._on_destroyed)
        self._warm_worker: Any = None
        self._warm_pending = False
        self._warmed: set = set()
        self._updating = False
        for widget in self._parameters():
            widget.changed.connect(self._on_change_settings)
            if isinstance(widget, TextEdit):  # magicgui's TextEdit does not emit `changed`
                widget.native.textChanged.connect(self._on_change_settings)
        self._on_change_settings()

    # -- public ---------------------------------------------------------------

    def run(self) -> Any:
        """Filter the chosen layer with the current settings.

        Returns the worker doing it (None when the settings are invalid: the
        reason is shown as a notification).
        """
        return self()

    @property
    def busy(self) -> bool:
        """True while a filter run or the background warm-up is in progress."""
        return bool(self._running) or self._warm_worker is not None

    def reset_choices(self, *args: Any) -> None:
        super().reset_choices(*args)
        if hasattr(self, "_updating"):  # not during construction
            self._on_change_settings()

    # -- subclass interface ---------------------------------------------------

    def _filter(self, image: Image) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _source(self, params: dict) -> Source:
        return Source.from_layer(params["image"], params.get("channel_axis"))

    def _make_job(self, source: Source, params: dict) -> Job:  # pragma: no cover
        raise NotImplementedError

    def _describe(self, params: dict) -> str:
        """Text for the info line under the controls (kernel rank, cost...)."""
        return ""

    def _update_controls(self, params: dict) -> None:
        """Show the controls that matter for the current settings."""

    # -- running --------------------------------------------------------------

    def _params(self) -> dict:
        return {w.name: w.value for w in self._parameters()}

    def _parameters(self) -> list:
        return [w for w in self if not w.gui_only and w.name]

    def _launch(self, params: dict) -> Any:
        params = {k: v for k, v in params.items() if k != "self"}
        try:
            job = self._make_job(self._source(params), params)
        except USER_ERRORS as error:
            _report(self.title, error)
            return None
        return self._start(job)

    def _start(self, job: Job) -> Any:
        for worker in self._running:
            worker.quit()  # a newer run replaces it
        worker = start_job(self._viewer, job, self.title, start=False)
        self._progress.max = job.steps
        self._progress.value = 0
        self._progress.visible = True
        worker.yielded.connect(self._on_progress)
        worker.finished.connect(partial(self._on_finished, worker))
        self._worker = worker
        self._running.add(worker)
        worker.start()
        return worker

    def _on_progress(self, done: int) -> None:
        if not self._closed:
            self._progress.value = done

    def _on_finished(self, worker: Any) -> None:
        self._running.discard(worker)
        if worker is self._worker and not self._closed:
            self._progress.visible = False

    def _on_destroyed(self, *args: Any) -> None:
        self._closed = True

    # -- settings, info and warm-up -------------------------------------------

    def _on_change_settings(self, *args: Any) -> None:
        if self._updating:  # a control changed by the update below
            return
        self._updating = True
        try:
            for name in self._dependent_choices:
                combo = getattr(self, name)
                before = combo.value
                combo.reset_choices()  # magicgui matches choices by label: keep the value
                if before in combo.choices:
                    combo.value = before
            params = self._params()
            self._update_controls(params)
            try:
                self._info.value = self._describe(params)
            except USER_ERRORS as error:
                self._info.value = f"⚠ {error}"
            self._info.visible = bool(self._info.value)
        finally:
            self._updating = False
        self._warm_up(params)

    def _chosen_layer(self) -> Any:
        """The image layer chosen (None while the widget is being built)."""
        image = self.get_widget("image") if hasattr(self, "_updating") else None
        return None if image is None else image.value

    def _warm_up(self, params: dict) -> None:
        """Run the chosen filter on a tiny array in the background.

        The first call of a Numba function in a session loads (or, the very
        first time, compiles) its machine code; doing that now keeps the first
        real run from stalling.
        """
        key = self._settings_key(params)
        if key in self._warmed:
            return
        if self._warm_worker is not None:
            self._warm_pending = True
            return
        try:
            jobs = [self._make_job(source, params) for source in self._warm_sources(params)]
        except USER_ERRORS:
            return  # invalid settings: the real run will say why
        self._warmed.add(key)
        worker = create_worker(_warm, jobs, _ignore_errors=True)
        worker.finished.connect(self._on_warm_finished)
        self._warm_worker = worker
        worker.start()

    def _settings_key(self, params: dict) -> tuple:
        """What decides which compiled code a run needs: the layer's kind and
        the choices made in drop-down lists (not numbers or kernel values)."""
        layer = params.get("image")
        kind = None if layer is None else (layer.data.ndim, str(layer.data.dtype), layer.rgb)
        choices = [
            (w.name, repr(w.value))
            for w in self._parameters()
            if isinstance(w, ComboBox) and w.name != "image"
        ]
        return (kind, *choices)

    def _on_warm_finished(self) -> None:
        self._warm_worker = None
        if self._warm_pending and not self._closed:
            self._warm_pending = False
            self._warm_up(self._params())

    def _warm_sources(self, params: dict) -> list[Source]:
        """Tiny inputs shaped like the chosen layer (8 pixels a side)."""
        layer = params.get("image")
        if layer is None:
            # integer images run in float64, float32 images in float32
            return [_tiny(np.uint8, 2, None), _tiny(np.float32, 2, None)]
        channel_axis = params.get("channel_axis")
        channels = None
        if layer.rgb:
            channels = layer.data.shape[-1]
        elif channel_axis is not None and -layer.data.ndim <= channel_axis < layer.data.ndim:
            channels = layer.data.shape[channel_axis]
        spatial = min(3, layer.data.ndim - (channels is not None))
        return [_tiny(layer.data.dtype, spatial, channels, rgb=layer.rgb)]


class _Failure:
    """What a worker returns when the input or settings were wrong."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _guarded(compute: Any) -> Any:
    def run() -> Any:
        try:
            return (yield from compute())
        except USER_ERRORS as error:
            return _Failure(error)

    return run


def _warm(jobs: list[Job]) -> None:
    for job in jobs:
        # best effort: a failure here will be reported by the real run
        with contextlib.suppress(Exception):
            job.run()


def _tiny(dtype: Any, spatial: int, channels: int | None, rgb: bool = False) -> Source:
    shape = (8,) * spatial + ((channels,) if channels else ())
    data = np.zeros(shape, dtype)
    ndim = len(shape)
    geometry = Geometry([1.0] * ndim, [0.0] * ndim, ["pixel"] * ndim, None)
    channel_axis = ndim - 1 if channels else None
    return Source(data, "warm-up", geometry, channel_axis, rgb)


def _report(title: str, error: BaseException) -> None:
    show_error(f"{title}: {error}")


def start_job(viewer: Any, job: Job, title: str, start: bool = True) -> Any:
    """Run ``job`` in a napari worker thread (with a progress bar in napari's
    activity panel); its result goes into ``viewer``, and a wrong input or
    setting is shown as an error notification. Returns the worker."""
    worker = create_worker(
        _guarded(job.compute),
        _progress={"total": job.steps, "desc": f"{title}: {job.source.name}"},
        _ignore_errors=True,
    )
    worker.returned.connect(partial(_show_result, viewer, job, title))
    if start:
        worker.start()
    return worker


def _show_result(viewer: Any, job: Job, title: str, result: Any) -> None:
    if isinstance(result, _Failure):
        _report(title, result.error)
        return
    try:
        for data, kwargs, _ in job.layers(result):
            show_image(viewer, data, **kwargs)
    except USER_ERRORS as error:
        _report(title, error)


def show_image(viewer: Any, data: Any, *, name: str, **kwargs: Any) -> Image:
    """Add an Image layer, or update the one of that name (a rerun's result)."""
    layer = viewer.layers[name] if name in viewer.layers else None
    rgb = kwargs.get("rgb", False)
    if isinstance(layer, Image) and layer.rgb == rgb and layer.data.ndim == np.ndim(data):
        layer.data = data
        for key in ("scale", "translate", "units", "axis_labels", "rotate", "shear", "affine"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
        layer.metadata = kwargs.get("metadata", {})
        layer.reset_contrast_limits_range()
        layer.reset_contrast_limits()
        return layer
    index = None
    if layer is not None:  # a different kind of result: replace it in place
        index = viewer.layers.index(layer)
        viewer.layers.remove(layer)
    new = viewer.add_image(data, name=name, **kwargs)
    if index is not None:
        viewer.layers.move(viewer.layers.index(new), index)
    return new


# -----------------------------------------------------------------------------
# Edge filter


class EdgeFilterWidget(_FilterWidget):
    """Sobel, Scharr, Prewitt or Farid edges of an image layer."""

    title = "Edge filter"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            napari_viewer,
            {
                "filter": _combo(_EDGE_FILTERS),
                "axis": _combo(_DIRECTIONS, "direction"),
                "ndim": _combo([("per 2-D plane", 2), ("in 3-D", 3)], "dimensions"),
                "mode": _combo(MODES),
                "cval": {"label": "constant", "step": 0.1},
                "channel_axis": _combo(self._channel_choices, "channel axis"),
            },
        )

    def _filter(
        self,
        image: Image,
        filter: str = "sobel",
        axis=None,
        ndim=2,
        mode: str = "reflect",
        cval: float = 0.0,
        channel_axis=None,
    ) -> Any:
        """Edge filter.

        Parameters
        ----------
        image : Image
            The layer to filter.
        filter : str
            The edge operator: Sobel, Scharr, Prewitt or Farid.
        axis : int or None
            'magnitude' (the square root of the mean of the squared
            derivatives), or the derivative along one axis.
        ndim : int
            Filter each 2-D plane of a stack on its own, or whole 3-D volumes.
        mode : str
            How the image is extended beyond its border (as in scipy.ndimage).
        cval : float
            The value outside the image in 'constant' mode.
        channel_axis : int or None
            The axis holding channels, filtered one by one (RGB: the colours).
        """
        return self._launch(locals())

    def _make_job(self, source: Source, params: dict) -> Job:
        return edge_job(
            source,
            params["filter"],
            params["axis"],
            params["ndim"],
            params["mode"],
            params["cval"],
            metadata=_public(params),
        )

    def _update_controls(self, params: dict) -> None:
        self.cval.visible = params["mode"] == "constant"
        layer = params["image"]
        self.channel_axis.enabled = not (layer is not None and layer.rgb)

    def _channel_choices(self, widget: Any = None) -> list:
        return _channel_axis_choices(self._chosen_layer(), optional=True)


def _channel_axis_choices(layer: Any, optional: bool) -> list:
    """Choices for a channel-axis control: the layer's axes by label."""
    if layer is None:
        return [("none", None)] if optional else [("last", -1)]
    if layer.rgb:
        return [("RGB(A) colours", layer.data.ndim - 1)]
    labels = layer.axis_labels
    choices = [(f"{i}: {labels[i]} ({n})", i) for i, n in enumerate(layer.data.shape)]
    return [("none", None), *choices] if optional else choices


def _public(params: dict) -> dict:
    """The settings to record in the result's metadata."""
    skip = ("image", "layers", "self")
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items() if k not in skip}


# -----------------------------------------------------------------------------
# Kernel filter


class KernelFilterWidget(_FilterWidget):
    """Correlate an image layer with any 2-D kernel, run as separable passes."""

    title = "Kernel filter"
    _dependent_choices = ("channel_axis", "rank")

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            napari_viewer,
            {
                "kernel": _combo(
                    [("preset", "preset"), ("typed in", "text"), ("from .npy file", "file")]
                ),
                "preset": _combo(list(KERNEL_PRESETS)),
                "sigma": {"min": 0.1, "max": 50.0, "step": 0.5},
                "size": {"min": 1, "max": 101},
                "values": {"widget_type": "TextEdit"},
                "file": {"label": ".npy file", "filter": "*.npy", "mode": "r"},
                "rank": _combo(self._rank_choices, "separable rank"),
                "mode": _combo(MODES),
                "cval": {"label": "constant", "step": 0.1},
                "channel_axis": _combo(self._channel_choices, "channel axis"),
            },
        )

    def _filter(
        self,
        image: Image,
        kernel: str = "preset",
        preset: str = "Gaussian",
        sigma: float = 2.0,
        size: int = 5,
        values: str = "1 2 1\n2 4 2\n1 2 1",
        file: Path = Path(),
        rank=None,
        mode: str = "reflect",
        cval: float = 0.0,
        channel_axis=None,
    ) -> Any:
        """Kernel filter.

        Parameters
        ----------
        image : Image
            The layer to filter; each 2-D plane of a stack is filtered on its own.
        kernel : str
            Where the kernel comes from: a preset, typed in, or a .npy file.
        preset : str
            A named kernel.
        sigma : float
            Standard deviation of the Gaussian presets, in pixels.
        size : int
            Width of the box, disk and sharpen presets, in pixels.
        values : str
            The kernel's rows, one per line (or separated by ';'); fractions
            such as 1/16 are allowed.
        file : Path
            A .npy file holding a 2-D kernel.
        rank : int or None
            'exact' runs the kernel as it is; a number keeps that many
            separable terms (an approximation if the kernel needs more).
        mode : str
            How the image is extended beyond its border (as in scipy.ndimage).
        cval : float
            The value outside the image in 'constant' mode.
        channel_axis : int or None
            The axis holding channels, filtered one by one (RGB: the colours).
        """
        return self._launch(locals())

    def current_kernel(self, params: dict | None = None) -> np.ndarray:
        """The 2-D kernel the current settings describe."""
        params = self._params() if params is None else params
        if params["kernel"] == "text":
            kernel = parse_kernel(params["values"])
        elif params["kernel"] == "file":
            kernel = load_array(params["file"], "kernel")
        else:
            kernel = preset_kernel(params["preset"], params["sigma"], params["size"])
        if kernel.ndim != 2 or kernel.size == 0:
            raise ValueError(f"kernel: expected a 2-D kernel, got shape {kernel.shape}")
        return kernel

    def _make_job(self, source: Source, params: dict) -> Job:
        return kernel_job(
            source,
            self.current_kernel(params),
            self._tag(params),
            params["rank"],
            params["mode"],
            params["cval"],
            metadata=_public(params),
        )

    def _tag(self, params: dict) -> str:
        if params["kernel"] == "text":
            return "kernel"
        if params["kernel"] == "file":
            return Path(params["file"]).stem or "kernel"
        return params["preset"].split(" (")[0].lower()

    def _describe(self, params: dict) -> str:
        kernel = self.current_kernel(params)
        exact = sc.separate_kernel(kernel)
        kh, kw = kernel.shape
        lines = [f"{kh}×{kw} kernel, separable rank {exact.rank}"]
        rank = params["rank"]
        chosen = exact if rank is None else sc.separate_kernel(kernel, rank=rank)
        if rank is not None:
            lines.append(f"rank-{rank} approximation error: {100 * chosen.error:.2g} %")
        direct, separated = chosen.cost
        if separated < direct:
            lines.append(
                f"multiplications per pixel: {direct} → {separated} ({direct - separated} saved)"
            )
        else:
            lines.append(f"multiplications per pixel: {direct} (direct is cheaper here)")
        return "\n".join(lines)

    def _update_controls(self, params: dict) -> None:
        source = params["kernel"]
        uses = preset_parameter(params["preset"])
        self.preset.visible = source == "preset"
        self.sigma.visible = source == "preset" and uses == "sigma"
        self.size.visible = source == "preset" and uses == "size"
        self.values.visible = source == "text"
        self.file.visible = source == "file"
        self.cval.visible = params["mode"] == "constant"
        layer = params["image"]
        self.channel_axis.enabled = not (layer is not None and layer.rgb)

    def _rank_choices(self, widget: Any = None) -> list:
        if not hasattr(self, "_updating"):  # being built
            return [("exact", None)]
        try:
            kernel = self.current_kernel()
        except USER_ERRORS:
            return [("exact", None)]
        return [("exact", None)] + [(str(r), r) for r in range(1, min(kernel.shape) + 1)]

    def _channel_choices(self, widget: Any = None) -> list:
        return _channel_axis_choices(self._chosen_layer(), optional=True)


# -----------------------------------------------------------------------------
# Channel filter

_OPERATIONS = ["depthwise", "pointwise", "depthwise-separable"]


class ChannelFilterWidget(_FilterWidget):
    """Depthwise, pointwise and depthwise-separable filtering of channels."""

    title = "Channel filter"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            napari_viewer,
            {
                "channels": _combo(
                    [("an axis of one layer", "axis"), ("selected layers", "layers")],
                    "channels from",
                ),
                "channel_axis": _combo(self._channel_choices, "channel axis"),
                "layers": {
                    "widget_type": "Select",
                    "choices": self._layer_choices,
                    "label": "layers",
                },
                "operation": _combo(_OPERATIONS),
                "kernel": _combo(
                    _named([*KERNEL_PRESETS, *MULTI_KERNEL_PRESETS]) + [("from .npy file", "file")],
                    "depthwise kernel",
                ),
                "sigma": {"min": 0.1, "max": 50.0, "step": 0.5},
                "size": {"min": 1, "max": 101},
                "kernel_file": {"label": "kernel .npy", "filter": "*.npy", "mode": "r"},
                "weights": _combo(
                    _named(WEIGHT_PRESETS) + [("from .npy file", "file")], "pointwise weights"
                ),
                "weights_file": {"label": "weights .npy", "filter": "*.npy", "mode": "r"},
                "mode": _combo(MODES),
                "cval": {"label": "constant", "step": 0.1},
                "output": _combo(
                    [("one layer (channel axis)", "stack"), ("one layer per channel", "split")]
                ),
            },
        )

    def _filter(
        self,
        image: Image,
        channels: str = "axis",
        channel_axis=-1,
        layers: list[Image] = (),  # noqa: B006 - magicgui reads the default
        operation: str = "depthwise-separable",
        kernel: str = "Gaussian",
        sigma: float = 1.0,
        size: int = 3,
        kernel_file: Path = Path(),
        weights: str = "mean of channels",
        weights_file: Path = Path(),
        mode: str = "reflect",
        cval: float = 0.0,
        output: str = "stack",
    ) -> Any:
        """Channel filter.

        Parameters
        ----------
        image : Image
            A layer with a channel axis (RGB layers: the colours).
        channels : str
            Take the channels from an axis of one layer, or take several
            selected layers (of one shape) as the channels.
        channel_axis : int
            The axis of ``image`` holding the channels (default: the last).
        layers : list of Image
            The layers taken as channels, in order.
        operation : str
            depthwise: each channel filtered with its own 2-D kernel(s);
            pointwise: each output channel a weighted sum of the input channels;
            depthwise-separable: depthwise, then pointwise.
        kernel : str
            The depthwise kernel, the same for every channel, or a .npy file
            of shape (C, kh, kw), (C, M, kh, kw) or (kh, kw).
        sigma : float
            Standard deviation of the Gaussian kernels, in pixels.
        size : int
            Width of the box, disk and sharpen kernels, in pixels.
        kernel_file : Path
            The .npy file of depthwise kernels.
        weights : str
            The pointwise weights, or a .npy file of shape (C_out, C_in).
        weights_file : Path
            The .npy file of pointwise weights.
        mode : str
            How the image is extended beyond its border (as in scipy.ndimage).
        cval : float
            The value outside the image in 'constant' mode.
        output : str
            The output channels as one layer with a channel axis, or as one
            layer per channel.
        """
        return self._launch(locals())

    def _source(self, params: dict) -> Source:
        if params["channels"] == "layers":
            return Source.from_layers(params["layers"])
        if params["image"] is None:
            raise ValueError("no image layer chosen: open or choose an image layer first")
        return Source.from_layer(params["image"], params["channel_axis"])

    def _kernels(self, params: dict, channels: int) -> np.ndarray:
        """Depthwise kernels, shape (C, M, kh, kw)."""
        if params["kernel"] == "file":
            kernels = load_array(params["kernel_file"], "depthwise kernel")
            if kernels.ndim == 2:
                kernels = np.broadcast_to(kernels, (channels, *kernels.shape))
        else:
            kernels = preset_kernel(params["kernel"], params["sigma"], params["size"])
            kernels = np.broadcast_to(kernels, (channels, *kernels.shape))
        if kernels.ndim == 3:
            kernels = kernels[:, np.newaxis]
        if kernels.ndim != 4:
            raise ValueError(
                "depthwise kernel: expected shape (C, kh, kw) or (C, M, kh, kw), "
                f"got {kernels.shape}"
            )
        if kernels.shape[0] != channels:
            raise ValueError(
                f"depthwise kernel: {kernels.shape[0]} kernels for {channels} channels"
            )
        return np.ascontiguousarray(kernels)

    def _weights(self, params: dict, channels: int) -> np.ndarray:
        """Pointwise weights, shape (C_out, channels)."""
        if params["weights"] == "file":
            weights = load_array(params["weights_file"], "pointwise weights")
            if weights.ndim == 1:
                weights = weights[np.newaxis]
        else:
            weights = preset_weights(params["weights"], channels)
        if weights.ndim != 2 or weights.shape[1] != channels:
            raise ValueError(
                f"pointwise weights: expected shape (C_out, {channels}) for {channels} "
                f"channels, got {weights.shape}"
            )
        return weights

    def _plan(self, params: dict, channels: int) -> tuple:
        """(depthwise kernels or None, pointwise weights or None)."""
        operation = params["operation"]
        kernels = weights = None
        if operation != "pointwise":
            kernels = self._kernels(params, channels)
        if operation != "depthwise":
            depth = 1 if kernels is None else kernels.shape[1]
            weights = self._weights(params, channels * depth)
        return kernels, weights

    def _make_job(self, source: Source, params: dict) -> Job:
        if source.channel_axis is None:
            raise ValueError("the Channel filter needs a channel axis")
        kernels, weights = self._plan(params, source.channels)
        return channel_job(
            source,
            None if kernels is None else _squeeze_depth(kernels),
            weights,
            params["mode"],
            params["cval"],
            split=params["output"] == "split",
            metadata=_public(params),
        )

    def _describe(self, params: dict) -> str:
        if params["channels"] == "layers":
            channels = len(params["layers"])
            if channels < 2:
                return "select two or more layers of one shape"
        else:
            layer = params["image"]
            if layer is None:
                return ""
            axis = layer.data.ndim - 1 if layer.rgb else params["channel_axis"]
            channels = layer.data.shape[axis]
        kernels, weights = self._plan(params, channels)
        ours, normal, outputs = _channel_costs(kernels, weights, channels)
        text = f"{channels} → {outputs} channels; multiplications per pixel: {ours}"
        if params["operation"] == "pointwise":
            return text + " (the same as a 1×1 convolution)"
        return text + f" (a normal convolution with the same output: {normal})"

    def _update_controls(self, params: dict) -> None:
        from_layers = params["channels"] == "layers"
        self.image.visible = self.channel_axis.visible = not from_layers
        self.layers.visible = from_layers
        operation = params["operation"]
        depthwise = operation != "pointwise"
        uses = preset_parameter(params["kernel"])
        self.kernel.visible = depthwise
        self.sigma.visible = depthwise and uses == "sigma"
        self.size.visible = depthwise and uses == "size"
        self.kernel_file.visible = depthwise and params["kernel"] == "file"
        self.weights.visible = operation != "depthwise"
        self.weights_file.visible = operation != "depthwise" and params["weights"] == "file"
        self.mode.visible = depthwise
        self.cval.visible = depthwise and params["mode"] == "constant"
        layer = params["image"]
        self.channel_axis.enabled = not (layer is not None and layer.rgb)

    def _channel_choices(self, widget: Any = None) -> list:
        layer = self._chosen_layer()
        choices = _channel_axis_choices(layer, optional=False)
        if layer is not None and not layer.rgb:  # offer "last" as -1, the default
            choices[-1] = (choices[-1][0], -1)
        return choices

    def _layer_choices(self, widget: Any = None) -> list:
        viewer = getattr(self, "_viewer", None)
        if viewer is None:
            return []
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]

    def _warm_sources(self, params: dict) -> list[Source]:
        if params["channels"] == "layers" or params["image"] is None:
            return [_tiny(np.float32, 2, 3)]
        return super()._warm_sources(params)


def _squeeze_depth(kernels: np.ndarray) -> np.ndarray:
    """(C, 1, kh, kw) -> (C, kh, kw): the library's form without a depth multiplier."""
    return kernels[:, 0] if kernels.shape[1] == 1 else kernels


def _channel_costs(kernels: Any, weights: Any, channels: int) -> tuple[int, int, int]:
    """Multiplications per output pixel: (this filter, a normal convolution with
    the same output, output channel count)."""
    ours = 0
    outputs, kernel_size = channels, 1
    if kernels is not None:
        cache: dict = {}
        for kernel in kernels.reshape(-1, *kernels.shape[2:]):
            key = kernel.tobytes()
            if key not in cache:
                separated = sc.separate_kernel(kernel)
                direct, split = separated.cost
                cache[key] = split if separated.rank == 1 and split < direct else direct
            ours += cache[key]
        outputs = kernels.shape[0] * kernels.shape[1]
        kernel_size = kernels.shape[2] * kernels.shape[3]
    if weights is not None:
        ours += weights.size
        outputs = weights.shape[0]
    return ours, outputs * channels * kernel_size, outputs
