"""The napari widgets: Edge filter, Kernel filter and Channel filter.

Each is a magicgui ``FunctionGui`` (call it, or its ``run()``, to filter the
chosen layer) over the library's public functions. Filtering runs in a napari
``thread_worker`` with a progress bar and a Cancel button; the result becomes an
Image layer named after the input, the filter and its settings
(``"cells [sobel x]"``) that keeps the input's scale, translate, axis labels,
units and RGB flag. A rerun with the same settings updates that layer; other
settings give a new one. With "preview" ticked, each change of a setting (or
of the plane shown) filters the plane shown into a preview layer, which Run
replaces with the whole result. Every result records the call that made it as
Python (``layer.metadata["sepconv"]["python"]``): "Copy as Python" copies it,
"Export script" writes every step taken in the viewer as one script.
"""

import collections
import contextlib
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FunctionGui,
    Label,
    ProgressBar,
    PushButton,
    TextEdit,
)
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from napari.utils.progress import cancelable_progress
from qtpy.QtCore import QEvent, QObject, Qt, QTimer

import napari_sepconv as sc

from ._boundary import CANONICAL_NAMES
from ._plan import ImageSpec
from ._widget_base import (
    OUTPUT_TYPES,
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
    kernel_filter_tag,
    load_array,
    parse_kernel,
    preset_kernel,
    preset_parameter,
    preset_tag,
    preset_weights,
)
from ._widget_script import irreproducible, script

_log = logging.getLogger(__name__)

MODES = list(CANONICAL_NAMES.values())
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
#: axis labels that name a channel axis
_CHANNEL_LABELS = ("c", "ch", "channel", "channels", "colour", "color")
#: the widest the info line may ask the dock to be, in characters per line
_MAX_MESSAGE = 400
PREVIEW_DELAY_MS = 30  # debounce: settings changed within this time give one preview
PREPARING = "preparing filters, first time only…"


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
    ``_make_job`` (the library call); ``functions`` names the library
    functions it calls (its help link shows their documentation).
    """

    title = ""
    functions: tuple[str, ...] = ()
    #: controls whose choices follow the other settings (the layer's axes...)
    _dependent_choices: tuple[str, ...] = ("channel_axis",)

    def __init__(self, napari_viewer: Any, param_options: dict) -> None:
        super().__init__(
            self._filter,
            call_button="Run",
            param_options={
                "image": {"label": "image"},
                "output_type": _combo(list(OUTPUT_TYPES), "output type"),
                **param_options,
            },
            name=self.title.lower().replace(" ", "_"),
        )
        self._viewer = napari_viewer
        self._closed = False
        self._runs: dict = {}  # worker -> its cancel event: runs not yet finished
        self._showing: set = set()  # workers whose result is being shown
        self._started = 0  # runs started
        self._worker: Any = None
        self._warm: dict = {}  # settings key -> warm-up done (threading.Event)
        self._ran: set = set()  # settings keys that have run once
        self._axis_layer: Any = None  # the layer the channel-axis choices were made for
        self._last_result: list = []  # layers of the latest run
        self._preview_layers: list = []
        self._preview_cancel: threading.Event | None = None
        self._preview_generation = 0
        self._preview_done: tuple | None = None
        self._preview_showing = False  # a preview's layers are being shown
        self._preview_pending: tuple | None = None  # a newer preview, shown after that
        self._watched: list = []  # weak references to the input layers whose data changes redo the preview
        self._build_extras()
        self._updating = False
        self._select_active_layer()
        for widget in self._parameters():
            widget.changed.connect(self._on_change_settings)
            if isinstance(widget, TextEdit):  # magicgui's TextEdit does not emit `changed`
                widget.native.textChanged.connect(self._on_change_settings)
        napari_viewer.dims.events.current_step.connect(self._on_dims_changed)
        self.native.destroyed.connect(self._on_destroyed)
        self._dock_watcher = _DockWatcher(self.native, self._on_destroyed, self._on_reopened)
        self._on_change_settings()

    def _build_extras(self) -> None:
        """The controls that are not parameters: info, preview, progress..."""
        self._info = Label(gui_only=True, label="")
        self._preview = CheckBox(text="preview", gui_only=True, value=False)
        self._preview.tooltip = "filter the plane shown as settings change"
        self._status = Label(gui_only=True, label="", visible=False)
        self._progress = ProgressBar(gui_only=True, visible=False, label="progress")
        self._cancel = PushButton(text="Cancel", gui_only=True, visible=False)
        self._copy = PushButton(text="Copy as Python", gui_only=True)
        self._export = PushButton(text="Export script", gui_only=True)
        tools = Container(widgets=[self._copy, self._export], layout="horizontal", labels=False)
        tools.margins = (0, 0, 0, 0)
        self._docs = Label(gui_only=True, label="")
        run_index = len(self) - 1
        self.insert(run_index, self._info)  # above the Run button
        self.insert(run_index + 1, self._preview)
        for widget in (self._status, self._progress, self._cancel, tools, self._docs):
            self.append(widget)
        _wrap_label(self._info)
        _wrap_label(self._status)
        _wrap_label(self._docs)
        self._set_docs_link()
        for widget in self:
            if isinstance(widget, ComboBox):
                _narrow_combo(widget)
        self._cancel.changed.connect(self.cancel)
        self._copy.changed.connect(self.copy_as_python)
        self._export.changed.connect(self._export_clicked)
        self._preview.changed.connect(self._on_preview_toggled)
        self._preview_timer = QTimer(self.native)  # deleted with the widget
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self._run_preview)

    # -- public ---------------------------------------------------------------

    def run(self) -> Any:
        """Filter the chosen layer with the current settings.

        Returns the worker doing it (None when the settings are invalid: the
        reason is shown as a notification).
        """
        return self()

    def cancel(self, *args: Any) -> None:
        """Stop the running filter: it stops before its next plane and adds no layer."""
        for worker, cancel in list(self._runs.items()):
            cancel.set()
            worker.quit()

    @property
    def busy(self) -> bool:
        """True while a filter run or the background warm-up is in progress."""
        return bool(self._runs) or not all(done.is_set() for done in self._warm.values())

    @property
    def previewing(self) -> bool:
        """True while a preview is pending or being computed."""
        return self._preview_timer.isActive() or self._preview_cancel is not None or self._preview_showing

    def python(self) -> str:
        """The Python of the selected sepconv result, else of this widget's latest."""
        layer = self._viewer.layers.selection.active
        for candidate in [layer, *self._last_result]:
            record = getattr(candidate, "metadata", {}).get("sepconv", {})
            if "python" in record and candidate in self._viewer.layers:
                return record["python"]
        raise ValueError("no result to copy: run the filter first (or select a result layer)")

    def copy_as_python(self, *args: Any) -> str | None:
        """Put :meth:`python` on the clipboard (and return it)."""
        from qtpy.QtWidgets import QApplication

        try:
            text = self.python()
        except ValueError as error:
            show_info(f"{self.title}: {error}")
            return None
        QApplication.clipboard().setText(text)
        show_info(f"{self.title}: copied the Python that recomputes the result")
        return text

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

    def _default_channel_axis(self, layer: Any) -> int | None:
        """The channel axis a newly chosen layer starts with."""
        return guess_channel_axis(layer, short_axes=False)

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
        return self._start(job, self._settings_key(params))

    def _start(self, job: Job, key: tuple) -> Any:
        self.cancel()  # a newer run replaces a running one
        self._stop_preview()
        cancel = threading.Event()
        worker = start_job(self._viewer, job, self.title, cancel=cancel, start=False, show=False)
        worker.returned.connect(partial(self._on_result, worker, key))
        worker.yielded.connect(self._on_progress)
        worker.finished.connect(partial(self._on_finished, worker, key))
        self._worker = worker
        self._runs[worker] = cancel
        self._started += 1
        self._progress.max = job.steps
        self._progress.value = 0
        first = not self._is_ready(key)
        self._status.value = PREPARING if first else ""
        self._status.visible = first
        self._progress.visible = not first
        self._set_running(True)
        worker.start()
        return worker

    def _is_ready(self, key: tuple) -> bool:
        """Whether the code for these settings has run (or warmed up) already."""
        return key in self._ran or (key in self._warm and self._warm[key].is_set())

    def _set_running(self, running: bool) -> None:
        for widget in (*self._parameters(), self._call_button, self._preview):
            widget.enabled = not running
        self._cancel.visible = running
        if not running and not self._closed:
            self._on_change_settings()  # re-applies what depends on the settings

    def _on_progress(self, done: int) -> None:
        if self._closed:
            return
        self._status.visible = False
        self._progress.visible = True
        self._progress.value = min(done, self._progress.max)

    def _on_result(self, worker: Any, key: tuple, result: Any) -> None:
        """Show the result; the run ends once it is shown (a step per turn of
        the event loop, so that napari stays responsive), replacing the previews."""
        self._showing.add(worker)
        if not self._closed:
            self._cancel.visible = False  # computed: too late to cancel
        previews = []
        if isinstance(result, list):  # layers (not a failure, nor None: cancelled)
            previews, self._preview_layers = self._preview_layers, []
        on_shown = partial(self._on_shown, worker, key)
        _show_result(self._viewer, self.title, result, reuse=previews, on_shown=on_shown)

    def _on_shown(self, worker: Any, key: tuple, layers: list) -> None:
        self._showing.discard(worker)
        if layers:
            self._last_result = layers
        self._end_run(worker, key)

    def _on_finished(self, worker: Any, key: tuple) -> None:
        if worker not in self._showing:  # else the run ends once its result is shown
            self._end_run(worker, key)

    def _end_run(self, worker: Any, key: tuple) -> None:
        if worker not in self._runs:
            return
        cancelled = self._runs.pop(worker).is_set()
        if not cancelled:
            self._ran.add(key)
        if worker is self._worker and not self._closed:
            self._progress.visible = self._status.visible = False
            self._set_running(False)

    def _on_destroyed(self, *args: Any) -> None:
        """The widget, or the dock holding it, is gone: runs and previews stop, and the
        previews leave the viewer."""
        if self._closed:
            return
        self._closed = True
        self.cancel()
        if self._preview_cancel is not None:
            self._preview_cancel.set()
        with contextlib.suppress(Exception):  # the viewer may be closing too
            self._preview_timer.stop()
            self._clear_preview_layers(keep=[])
        with contextlib.suppress(Exception):
            self._viewer.dims.events.current_step.disconnect(self._on_dims_changed)
        for ref in self._watched:
            with contextlib.suppress(Exception):
                ref().events.data.disconnect(self._on_input_data)
        self._watched = []

    def _on_reopened(self) -> None:
        """Put in another dock after its dock was closed: as when it was made."""
        self._closed = False
        self._preview_done = None
        self._viewer.dims.events.current_step.connect(self._on_dims_changed)
        self._on_change_settings()

    # -- preview --------------------------------------------------------------

    def _on_preview_toggled(self, on: bool) -> None:
        if on:
            self._preview_done = None
            self._schedule_preview()
        else:
            self._stop_preview()
            self._clear_preview_layers(keep=[])

    def _on_dims_changed(self, *args: Any) -> None:
        if not self._closed:
            self._schedule_preview()

    def _on_input_data(self, *args: Any) -> None:
        """An input layer's data was replaced: the preview shown is of the old data."""
        if not self._closed:
            self._preview_done = None
            self._schedule_preview()

    def _watch_inputs(self, params: dict) -> None:
        """Redo the preview when the data of an input layer of ``params`` changes."""
        self._watched = [ref for ref in self._watched if ref() is not None]  # not the removed
        for layer in [params.get("image"), *(params.get("layers") or ())]:
            if layer is None or not hasattr(layer, "events"):
                continue
            layer = _unwrapped(layer)
            if all(ref() is not layer for ref in self._watched):
                layer.events.data.connect(self._on_input_data)
                self._watched.append(weakref.ref(layer))

    def _preview_on(self) -> bool:
        """Whether "preview" is ticked (False once the widget is being deleted)."""
        if self._closed:
            return False
        try:
            return bool(self._preview.value)
        except RuntimeError:  # Qt deletes the controls before the widget says so
            self._closed = True
            return False

    def _schedule_preview(self) -> None:
        if self._preview_on() and not self._runs:
            self._preview_timer.start()  # restarted by each change: debounced

    def _input_is_a_preview(self, params: dict) -> bool:
        """Whether an input chosen is a preview layer (once its input layer is deleted, the
        image list falls back to its preview, say), in which case the preview stops. A
        preview of a preview would change its input, which would redo the preview, without
        end; this widget's previews, whose input is gone, are removed."""
        inputs = [params.get("image")]
        if params.get("channels") == "layers":  # the Channel filter's list of layers, in use
            inputs += params.get("layers") or []
        if not any("sepconv_preview" in getattr(layer, "metadata", {}) for layer in inputs):
            return False
        self._stop_preview()
        self._preview_done = None
        self._clear_preview_layers(keep=[])
        self._show_status("⚠ preview: the image chosen is a preview; choose another layer")
        return True

    def _stop_preview(self) -> None:
        self._preview_timer.stop()
        if self._preview_cancel is not None:
            self._preview_cancel.set()
            self._preview_cancel = None
        self._preview_generation += 1  # a preview still computing is stale

    def _preview_key(self, params: dict, position: tuple) -> tuple:
        def plain(value: Any) -> Any:
            if isinstance(value, (list, tuple)):
                return tuple(plain(v) for v in value)
            return ("layer", id(_unwrapped(value))) if hasattr(value, "data") else repr(value)

        return (position, *((k, plain(v)) for k, v in params.items()))

    def _preview_position(self, params: dict) -> tuple:
        layer = params.get("image")
        if params.get("channels") == "layers" and params.get("layers"):
            layer = params["layers"][0]
        if layer is None or layer not in self._viewer.layers:
            return ()
        position = list(layer.world_to_data(self._viewer.dims.point))
        # The plane napari shows is the one its slice of the layer holds: for a layer with
        # axes in other units (z in mm, y and x in um), it converts units where
        # world_to_data (napari 0.9) does not. NaN there: an axis on screen.
        shown = getattr(getattr(layer, "_data_slice", None), "point", None)
        if shown is not None and len(shown) == len(position):
            position = [p if s != s else s for p, s in zip(position, shown)]
        return tuple(int(round(float(p))) for p in position)

    def _run_preview(self) -> None:
        if not self._preview_on() or self._runs:
            return
        params = self._params()
        if self._input_is_a_preview(params):
            return
        self._watch_inputs(params)
        position = self._preview_position(params)
        key = self._preview_key(params, position)
        if key == self._preview_done:
            return
        try:
            job = self._make_job(self._source(params), params).preview(position)
        except USER_ERRORS as error:
            self._no_preview(error)
            return
        self._stop_preview()
        self._preview_done = key
        cancel = threading.Event()
        self._preview_cancel = cancel
        generation = self._preview_generation
        worker = create_worker(_preview_layers, job, cancel, _ignore_errors=True)
        worker.returned.connect(partial(self._show_preview, generation))
        worker.errored.connect(partial(self._preview_failed, generation))
        worker.start()

    def _show_preview(self, generation: int, result: Any) -> None:
        if generation != self._preview_generation or self._closed:
            return  # stale: the settings changed while it ran
        self._preview_cancel = None
        if isinstance(result, _Failure):
            self._no_preview(result.error)
            return
        if result is None:
            return
        if self._preview_showing:  # shown once the preview being shown is
            self._preview_pending = (generation, result)
            return
        self._status.visible = False
        layers = []
        for data, kwargs, kind in result:
            kwargs = {**kwargs, "name": kwargs["name"] + " (preview)"}
            # a new number for each preview shown: a step run on a preview says which it read
            shown = kwargs["metadata"]["sepconv"]["step"]
            kwargs["metadata"] = {"sepconv_preview": self.title, "sepconv_shown": shown}
            layers.append((data, kwargs, kind))
        self._preview_showing = True
        show_layers(
            self._viewer,
            layers,
            title=self.title,
            reuse=self._preview_layers,  # renamed and updated: much cheaper than new layers
            replace_same_name=True,
            on_shown=partial(self._preview_shown, self._started, generation),
        )

    def _preview_shown(self, started: int, generation: int, layers: list) -> None:
        self._preview_showing = False
        self._preview_layers = layers
        pending, self._preview_pending = self._preview_pending, None
        if self._closed or self._runs:
            return  # a run is going: its result replaces the preview
        if started != self._started or not self._preview_on():
            self._clear_preview_layers(keep=[])  # a run's result replaced it, or preview is off
        elif pending is not None and pending[0] == self._preview_generation:
            self._show_preview(*pending)
        elif generation != self._preview_generation and self._preview_cancel is None:
            # of settings changed while it was shown, and no preview of theirs is coming
            self._clear_preview_layers(keep=[])

    def _preview_failed(self, generation: int, error: BaseException) -> None:
        if generation == self._preview_generation and not self._closed:
            self._preview_cancel = None
            self._no_preview(error)

    def _no_preview(self, error: BaseException) -> None:
        """The settings give no preview: say why, and take the preview of earlier settings
        (shown, or still being computed) out of the viewer, so that none is taken for theirs."""
        self._stop_preview()
        self._preview_done = None  # settings that preview again are previewed anew
        if not self._preview_showing:  # else once it is shown (_preview_shown)
            self._clear_preview_layers(keep=[])
        self._show_status(f"⚠ preview: {error}")

    def _clear_preview_layers(self, keep: list) -> None:
        for layer in self._preview_layers:
            if layer not in keep and layer in self._viewer.layers:
                self._viewer.layers.remove(layer)
        self._preview_layers = [layer for layer in self._preview_layers if layer in keep]

    def _show_status(self, text: str) -> None:
        self._status.value = _elided(text)
        self._status.visible = bool(text)

    # -- settings, info and warm-up -------------------------------------------

    def _select_active_layer(self) -> None:
        """Open on the selected image layer (magicgui would take the first)."""
        active = self._viewer.layers.selection.active
        image = self.get_widget("image")
        if isinstance(active, Image) and image is not None and active in image.choices:
            image.value = active

    def _on_change_settings(self, *args: Any) -> None:
        if self._updating:  # a control changed by the update below
            return
        self._updating = True
        try:
            layer = self._chosen_layer()
            for name in self._dependent_choices:
                combo = getattr(self, name)
                before = combo.value
                combo.reset_choices()  # magicgui matches choices by label: keep the value
                if name == "channel_axis" and layer is not self._axis_layer:
                    # a new layer: what was chosen for the old one means nothing here
                    self._axis_layer = layer
                    combo.value = self._default_channel_axis(layer)
                elif before in combo.choices:
                    combo.value = before
            params = self._params()
            self._update_controls(params)
            try:
                text = self._describe(params)
            except USER_ERRORS as error:
                text = f"⚠ {error}"
            self._info.value = _elided(text)
            self._info.visible = bool(text)
            if self._runs:  # layers added or removed meanwhile: keep the controls locked
                for widget in (*self._parameters(), self._call_button, self._preview):
                    widget.enabled = False
        finally:
            self._updating = False
        self._warm_up(params)
        self._schedule_preview()

    def _chosen_layer(self) -> Any:
        """The image layer chosen (None while the widget is being built)."""
        image = self.get_widget("image") if hasattr(self, "_updating") else None
        return None if image is None else image.value

    def _warm_up(self, params: dict) -> None:
        """Run the chosen filter on a tiny array in the background.

        The first call of a Numba function in a session loads (or, the very
        first time, compiles) its machine code; doing that now keeps the first
        real run from stalling. It runs in a daemon thread, so quitting napari
        meanwhile does not wait for it.
        """
        key = self._settings_key(params)
        if key in self._warm:
            return
        try:
            jobs = [self._make_job(source, params) for source in self._warm_sources(params)]
        except USER_ERRORS:
            return  # invalid settings: the real run will say why
        self._warm[key] = WARMER.submit(jobs)

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

    # -- help and export ------------------------------------------------------

    def _set_docs_link(self) -> None:
        style = 'style="color: #8ab4f8"'  # readable on napari's dark and light themes
        names = " · ".join(f'<a {style} href="{name}">sc.{name}</a>' for name in self.functions)
        self._docs.value = f'help: {names} · <a {style} href="readme">README</a>'
        label = self._docs.native
        label.setTextFormat(Qt.TextFormat.RichText)
        label.setOpenExternalLinks(False)
        label.linkActivated.connect(self.show_docs)
        label.setToolTip("the documentation of the library functions this widget calls")

    def show_docs(self, which: str = "") -> str:
        """Show (and return) the documentation of a library function the
        widget calls, or the README's napari section (``which="readme"``)."""
        text = docs_text(which or (self.functions[0] if self.functions else "readme"))
        if not self._closed:
            _show_text_dialog(self.native, f"{self.title}: help", text)
        return text

    def export_script(self, path: str | Path | None = None) -> Path | None:
        """Write every sepconv step taken in the viewer as one script (without
        ``path``, a dialog asks where); returns the path written."""
        return export_script(self._viewer, path)

    def _export_clicked(self, *args: Any) -> None:
        self.export_script()


def guess_channel_axis(layer: Any, short_axes: bool = True) -> int | None:
    """The layer's channel axis where it has one: the colours of an RGB layer,
    an axis labelled as channels, or (``short_axes``) the one short axis (at most
    4) that is not among the last two. None where none is clear."""
    if layer is None:
        return None
    if layer.rgb:
        return layer.data.ndim - 1
    labels = [str(label).lower() for label in getattr(layer, "axis_labels", ())]
    for axis, label in enumerate(labels):
        if label in _CHANNEL_LABELS:
            return axis
    if short_axes:
        shape = layer.data.shape
        short = [
            a
            for a in range(len(shape) - 2)
            if shape[a] <= 4 and (a >= len(labels) or labels[a] not in ("t", "time", "z"))
        ]
        if len(short) == 1:
            return short[0]
    return None


class _Failure:
    """What a worker returns when it failed: the input or settings were wrong, or, for
    any other error, a bug (logged with its traceback, and shown with its type)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        if not isinstance(error, USER_ERRORS):
            _log.error("a filter run failed", exc_info=error)
            self.error = RuntimeError(f"{type(error).__name__}: {error} (please report this error)")


def _compute_layers(job: Job, cancel: threading.Event | None = None) -> Any:
    """Generator: the job's progress, then its layers (None when cancelled, a
    :class:`_Failure` when it failed).

    Every error is returned, none raised: napari's generator worker shows none of
    them, and after a RuntimeError it never says it finished, which left the widget
    locked."""
    try:
        result = yield from job.compute(cancel)
        if result is None or (cancel is not None and cancel.is_set()):
            return None
        return job.finish(result)
    except Exception as error:  # noqa: BLE001 - reported to the user (_Failure)
        return _Failure(error)


def _preview_layers(job: Job, cancel: threading.Event) -> Any:
    steps = _compute_layers(job, cancel)
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


class _Warmer:
    """One daemon thread that runs warm-up jobs in turn.

    Not a Qt worker: Qt waits for its thread pool when napari quits, and a
    first compile takes up to a minute.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, jobs: list[Job]) -> threading.Event:
        done = threading.Event()
        with self._lock:
            self._queue.put((jobs, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="sepconv-warm-up", daemon=True)
                self._thread.start()
        return done

    def _work(self) -> None:
        while True:
            with self._lock:
                try:
                    jobs, done = self._queue.get_nowait()
                except queue.Empty:
                    self._thread = None
                    return
            try:
                run_warm_up(jobs)
            finally:
                done.set()


WARMER = _Warmer()


def run_warm_up(jobs: list[Job]) -> None:
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
    return Source(data, "warm-up", geometry, channel_axis, rgb, inputs=("warm-up",))


def _report(title: str, error: BaseException) -> None:
    show_error(f"{title}: {_elided(str(error))}")


def _elided(text: str) -> str:
    """At most a few lines, and long words (paths) breakable anywhere."""
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 1] + "…"
    words = text.split(" ")
    return " ".join(
        "\u200b".join(w[i : i + 24] for i in range(0, len(w), 24)) if len(w) > 24 else w for w in words
    )


def _wrap_label(label: Label) -> None:
    """A label that wraps its text and never widens its dock."""
    from qtpy.QtWidgets import QSizePolicy

    native = label.native
    native.setWordWrap(True)
    policy = native.sizePolicy()
    policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
    native.setSizePolicy(policy)
    native.setMinimumWidth(40)


def _narrow_combo(combo: ComboBox) -> None:
    """A drop-down as wide as its shortest sensible label, not its longest."""
    from qtpy.QtWidgets import QComboBox

    native = combo.native
    native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    native.setMinimumContentsLength(12)


class _DockWatcher(QObject):
    """Calls ``closed()`` once the dock that holds ``widget`` is deleted, and
    ``reopened()`` if the widget is put in another dock after that.

    napari closes a dock by taking its widget out and deleting the dock: the widget
    lives on (its Python object holds it), so its own ``destroyed`` never comes.
    """

    def __init__(self, widget: Any, closed: Callable[[], None], reopened: Callable[[], None]) -> None:
        super().__init__(widget)
        self._callbacks = closed, reopened
        self._dock: Any = None
        self._docked_before = False
        widget.installEventFilter(self)

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if self._dock is None and event.type() in (QEvent.Type.Show, QEvent.Type.ParentChange):
            from qtpy.QtWidgets import QDockWidget

            parent = watched.parent()
            while parent is not None and not isinstance(parent, QDockWidget):
                parent = parent.parent()
            if parent is not None:
                self._dock = parent
                parent.destroyed.connect(self._dock_deleted)
                if self._docked_before:
                    self._callbacks[1]()
                self._docked_before = True
        return False

    def _dock_deleted(self, *args: Any) -> None:
        self._dock = None
        self._callbacks[0]()


class _CancelableProgress(cancelable_progress):
    """napari's cancellable progress bar for a run that is not a loop here:
    its Cancel button calls ``cancel_callback`` at once."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


def start_job(
    viewer: Any,
    job: Job,
    title: str,
    start: bool = True,
    cancel: threading.Event | None = None,
    show: bool = True,
) -> Any:
    """Run ``job`` in a napari worker thread, with a cancellable progress bar
    in napari's activity panel; its result goes into ``viewer`` (unless
    ``show`` is False: then the caller shows what the worker returns), and a
    wrong input or setting is shown as an error notification. Returns the worker."""
    cancel = threading.Event() if cancel is None else cancel
    # a lazy result's contrast limits come from the plane shown now
    job = replace(job, view_point=tuple(float(p) for p in viewer.dims.point))
    worker = create_worker(_compute_layers, job, cancel, _ignore_errors=True)
    bar = _CancelableProgress(
        total=job.steps, desc=f"{title}: {job.source.name}", cancel_callback=worker.quit
    )
    bar.cancel_callback = partial(_cancel_worker, worker, cancel)

    def advance(done: int) -> None:
        bar.update(max(0, min(done, job.steps) - bar.n))

    worker.yielded.connect(advance)
    worker.finished.connect(bar.close)
    if show:
        worker.returned.connect(partial(_show_result, viewer, title))
    worker.cancel_event = cancel
    if start:
        worker.start()
    return worker


def _cancel_worker(worker: Any, cancel: threading.Event) -> None:
    cancel.set()
    worker.quit()


def _show_result(
    viewer: Any,
    title: str,
    result: Any,
    reuse: Sequence[Any] = (),
    on_shown: Callable[[list], None] | None = None,
) -> None:
    """Show what a worker returned: its layers (see :func:`show_layers`), or
    the reason it failed. ``on_shown(layers)`` is called once they are shown
    (at once with ``[]`` when the run failed or was cancelled)."""
    if isinstance(result, _Failure) or result is None:  # None: cancelled
        if isinstance(result, _Failure):
            _report(title, result.error)
        if on_shown is not None:
            on_shown([])
        return
    show_layers(viewer, result, title=title, reuse=reuse, on_shown=on_shown)


#: ms between the steps of showing a result (each step is one turn of napari's event loop)
STEP_MS = 1


class _Steps:
    """Callables run one per turn of the Qt event loop, the first at once, so
    that showing a result stalls napari for its slowest step, not for the sum
    of them all. A step that fails on the input or settings is reported and
    the others still run; ``done()`` is called after the last."""

    def __init__(self, title: str, done: Callable[[], None]) -> None:
        self._steps: collections.deque = collections.deque()
        self._title = title
        self._done = done

    def add(self, step: Callable[[], Any]) -> None:
        self._steps.append(step)

    def start(self) -> None:
        _SHOWING.add(self)  # Qt holds its timer's callback weakly
        self._next()

    def _next(self) -> None:
        if not self._steps:
            _SHOWING.discard(self)
            self._done()
            return
        step = self._steps.popleft()
        try:
            step()
        except USER_ERRORS as error:
            _report(self._title, error)
        except Exception:
            self._steps.clear()  # end the display (so a widget does not stay busy), then raise
            _SHOWING.discard(self)
            self._done()
            raise
        QTimer.singleShot(STEP_MS, self._next)


#: the results being shown
_SHOWING: set = set()


def show_layers(
    viewer: Any,
    layers: Sequence[tuple],
    *,
    title: str = "",
    reuse: Sequence[Any] = (),
    replace_same_name: bool = False,
    on_shown: Callable[[list], None] | None = None,
) -> None:
    """Show layer data tuples in ``viewer``, one step per turn of its event loop.

    Each updates the layer made by the same call (:func:`show_image`'s rule),
    else takes over a layer of ``reuse`` (the previews it replaces: renamed
    and updated, far cheaper than a new layer), else is added as a new layer
    in two steps: inserted hidden (napari builds its controls and visual),
    then shown (sliced and drawn), where napari's ``add_image`` does both at
    once: the slowest part of showing a result, one layer per turn. Layers
    of ``reuse`` not taken over are removed. ``on_shown(layers)`` gets the
    layers shown, in order, after the last step.
    """
    reuse = [layer for layer in reuse if layer in viewer.layers]
    shown: list = []  # the layers shown, in order
    added: list = []  # the new layers (None until inserted)
    taken: set = set()  # ids of the layers of ``reuse`` taken over

    def done() -> None:
        if on_shown is not None:
            on_shown([layer for layer in shown if layer in viewer.layers])

    steps = _Steps(title, done)
    for i, (data, kwargs, _) in enumerate(layers):
        kwargs = dict(kwargs)
        name = kwargs.pop("name")
        layer = _layer_to_update(viewer, name, kwargs.get("metadata", {}), replace_same_name)
        replaced = None
        if layer is not None and not _updatable(layer, data, kwargs):
            replaced, layer = layer, None  # of another kind: the new layer takes its place
        if layer is None:
            layer = _layer_to_take_over(reuse, taken, name, i, data, kwargs)
            if layer is not None and replaced is not None:
                steps.add(partial(_remove_layer, viewer, replaced))
                replaced = None
        if layer is not None:
            taken.add(id(layer))
            steps.add(partial(_step_update, viewer, layer, data, name, kwargs, shown))
        else:
            slot = len(added)
            added.append(None)
            steps.add(partial(_step_insert, viewer, data, name, kwargs, replaced, shown, added, slot))
            steps.add(partial(_step_make_visible, viewer, added, slot))
    for layer in reuse:
        if id(layer) not in taken:
            steps.add(partial(_remove_layer, viewer, layer))
    steps.start()


def _layer_to_take_over(reuse: list, taken: set, name: str, index: int, data: Any, kwargs: dict) -> Any:
    """The layer of ``reuse`` that a result layer takes over: the preview of
    that name, else the one at the same place in the list; None if unfit."""
    free = [layer for layer in reuse if id(layer) not in taken]
    named = [layer for layer in free if layer.name == f"{name} (preview)"]
    if named:
        candidate = named[0]
    elif index < len(reuse) and id(reuse[index]) not in taken:
        candidate = reuse[index]
    else:
        return None
    return candidate if _updatable(candidate, data, kwargs) else None


def _layer_to_update(viewer: Any, name: str, metadata: dict, replace_same_name: bool) -> Any:
    """The layer a result named ``name`` updates: the one of that name made
    by the same call (or, with ``replace_same_name``, any of that name)."""
    layer = _unwrapped(viewer.layers[name]) if name in viewer.layers else None
    if layer is not None and not replace_same_name and not _same_call(layer, metadata):
        layer = None  # keep it: a result of other settings
        for candidate in viewer.layers:
            if candidate.name.startswith(name) and _same_call(candidate, metadata):
                return _unwrapped(candidate)
    return layer


def _unwrapped(layer: Any) -> Any:
    """The layer itself, where napari hands a plugin's viewer a proxy of it: each
    lookup makes a new proxy, so only the layer itself keeps its identity."""
    return getattr(layer, "__wrapped__", layer)


def _updatable(layer: Any, data: Any, kwargs: dict) -> bool:
    return (
        isinstance(layer, Image)
        and not layer.multiscale
        and layer.rgb == kwargs.get("rgb", False)
        and layer.data.ndim == np.ndim(data)
    )


def _step_update(viewer: Any, layer: Any, data: Any, name: str, kwargs: dict, shown: list) -> None:
    if layer in viewer.layers:
        update_image(layer, data, name, kwargs)
        shown.append(layer)


def _step_insert(
    viewer: Any, data: Any, name: str, kwargs: dict, replaced: Any, shown: list, added: list, slot: int
) -> None:
    index = len(viewer.layers)
    if replaced is not None and replaced in viewer.layers:
        index = viewer.layers.index(replaced)
        viewer.layers.remove(replaced)
    layer = Image(data, name=name, multiscale=False, visible=False, **kwargs)
    viewer.layers.insert(index, layer)  # napari selects it
    added[slot] = layer
    shown.append(layer)


def _step_make_visible(viewer: Any, added: list, slot: int) -> None:
    layer = added[slot]
    if layer is not None and layer in viewer.layers:
        layer.visible = True  # sliced and drawn now, a turn after it was inserted


def _remove_layer(viewer: Any, layer: Any) -> None:
    if layer in viewer.layers:
        viewer.layers.remove(layer)


def _same_call(layer: Any, metadata: dict) -> bool:
    old, new = layer.metadata.get("sepconv", {}), metadata.get("sepconv", {})
    keys = ("function", "arguments", "inputs", "input_channel_axis", "body")
    return bool(old) and all(old.get(k) == new.get(k) for k in keys)


def update_image(layer: Image, data: Any, name: str, kwargs: dict) -> Image:
    """Give an existing Image layer new data and the settings in ``kwargs``.

    Contrast limits given in ``kwargs`` are used as they are (working them
    out here would stall napari on a large result); each other setting is set
    only where it differs, as each change redraws the layer.
    """
    if layer.name != name:
        layer.name = name
    limits = kwargs.get("contrast_limits")
    if limits is not None:
        # the new range first, so that napari does not clip the old limits to it
        # nor work out a range from the data
        if not _same_value(layer.contrast_limits_range, limits):
            layer.contrast_limits_range = limits
        if not _same_value(layer.contrast_limits, limits):
            layer.contrast_limits = limits
    layer.data = data
    for key in ("scale", "translate", "units", "axis_labels", "rotate", "shear", "affine"):
        if key in kwargs and not _same_value(getattr(layer, key), kwargs[key]):
            setattr(layer, key, kwargs[key])
    layer.metadata = kwargs.get("metadata", {})
    if limits is None:
        layer.reset_contrast_limits_range()
        layer.reset_contrast_limits()
    return layer


def show_image(viewer: Any, data: Any, *, name: str, replace_same_name: bool = False, **kwargs: Any) -> Image:
    """Add an Image layer, or update the one made by the same call, at once
    (:func:`show_layers` does it in steps).

    A layer of that name made by another call (other settings) is kept and
    the new one gets a name napari makes unique; ``replace_same_name``
    updates any layer of that name. Contrast limits given in ``kwargs`` are
    used as they are (working them out here would stall napari on a large
    result).
    """
    layer = _layer_to_update(viewer, name, kwargs.get("metadata", {}), replace_same_name)
    if layer is not None and _updatable(layer, data, kwargs):
        return update_image(layer, data, name, kwargs)
    index = None
    if layer is not None:  # a layer of another kind: replace it in place
        index = viewer.layers.index(layer)
        viewer.layers.remove(layer)
    new = viewer.add_image(data, name=name, multiscale=False, **kwargs)
    if index is not None:
        viewer.layers.move(viewer.layers.index(new), index)
    return new


def _same_value(current: Any, new: Any) -> bool:
    if hasattr(current, "affine_matrix"):
        current = current.affine_matrix
    if hasattr(new, "affine_matrix"):
        new = new.affine_matrix
    try:
        if isinstance(new, (tuple, list)) and any(isinstance(v, str) for v in new):
            return tuple(str(v) for v in current) == tuple(str(v) for v in new)
        return np.shape(current) == np.shape(new) and bool(np.allclose(current, new))
    except (TypeError, ValueError):
        return False


def export_script(viewer: Any, path: str | Path | None = None) -> Path | None:
    """Write every sepconv step taken in ``viewer`` as one Python script.

    Without ``path``, asks where (a save dialog). Returns the path written,
    or None when nothing was written (the reason is shown).
    """
    if path is None:
        path = _ask_save_path()
        if not path:
            return None
    path = Path(path)
    layers = list(viewer.layers)
    try:
        script(layers, path)
    except (ValueError, OSError) as error:
        show_error(f"Export script: {error}")
        return None
    left_out = irreproducible(layers)
    if left_out:
        why = "; ".join(f"{name!r}: {reason}" for name, reason in left_out)
        show_warning(_elided(f"Export script: wrote {path.name}, without the steps it cannot redo: {why}"))
    else:
        show_info(f"Export script: wrote {path.name}")
    return path


def _ask_save_path() -> str:
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(
        None, "Export the sepconv steps as a script", "sepconv_steps.py", "Python (*.py)"
    )
    return path


def docs_text(which: str) -> str:
    """A library function's docstring, or the README's napari section."""
    if which == "readme":
        return readme_section("napari plugin")
    import inspect

    func = getattr(sc, which, None)
    if func is None:
        return f"no documentation for {which!r}"
    doc = inspect.getdoc(func) or "See the README, section 'A tour of the API'."
    return f"napari_sepconv.{which}{inspect.signature(func)}\n\n{doc}"


def readme_section(title: str) -> str:
    """The README section ``title`` (from the installed package's description)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        text = metadata("napari-sepconv").get_payload() or ""
    except PackageNotFoundError:
        text = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## ") and line[3:].strip().lower() == title.lower():
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
            return "\n".join(lines[i:end]).strip()
    return "See the README, section 'napari plugin'."


def _show_text_dialog(parent: Any, title: str, text: str) -> None:
    from qtpy.QtWidgets import QDialog, QTextBrowser, QVBoxLayout

    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    browser = QTextBrowser(dialog)
    browser.setPlainText(text)
    layout = QVBoxLayout(dialog)
    layout.addWidget(browser)
    dialog.resize(560, 480)
    dialog.show()


# -----------------------------------------------------------------------------
# Edge filter


class EdgeFilterWidget(_FilterWidget):
    """Sobel, Scharr, Prewitt or Farid edges of an image layer."""

    title = "Edge filter"
    functions = ("sobel", "scharr", "prewitt", "farid")

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
        output_type: str = "auto",
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
        output_type : str
            The result's type: float32 for integer input (else the input's
            float type), float32, float64, or the input's range (integers
            not scaled to [0, 1]).
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
            output_type=params["output_type"],
        )

    def _update_controls(self, params: dict) -> None:
        self.cval.visible = params["mode"] == "constant"
        layer = params["image"]
        self.channel_axis.enabled = not (layer is not None and layer.rgb)

    def _channel_choices(self, widget: Any = None) -> list:
        return _channel_axis_choices(self._chosen_layer(), optional=True)


def _channel_axis_choices(layer: Any, optional: bool) -> list:
    """Choices for a channel-axis control: the layer's axes by label.

    ``optional``: "none" (every axis spatial) is a choice; otherwise None
    stands for "not chosen yet" and a run asks for a choice.
    """
    empty = ("none", None) if optional else ("choose the channel axis", None)
    if layer is None:
        return [empty]
    if layer.rgb:
        return [("RGB(A) colours", layer.data.ndim - 1)]
    labels = layer.axis_labels
    choices = [(f"{i}: {labels[i]} ({n})", i) for i, n in enumerate(layer.data.shape)]
    return [empty, *choices]


def _public(params: dict) -> dict:
    """The settings to record in the result's metadata."""
    skip = ("image", "layers", "self")
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in params.items() if k not in skip}


# -----------------------------------------------------------------------------
# Kernel filter


class KernelFilterWidget(_FilterWidget):
    """Correlate an image layer with any 2-D kernel, run as separable passes."""

    title = "Kernel filter"
    functions = ("filter2d", "separate_kernel")
    _dependent_choices = ("channel_axis", "rank")

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(
            napari_viewer,
            {
                "kernel": _combo([("preset", "preset"), ("typed in", "text"), ("from .npy file", "file")]),
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
        output_type: str = "auto",
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
        output_type : str
            The result's type: float32 for integer input (else the input's
            float type), float32, float64, or the input's range (integers
            not scaled to [0, 1]).
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
            output_type=params["output_type"],
        )

    def _tag(self, params: dict) -> str:
        if params["kernel"] == "text":
            kh, kw = parse_kernel(params["values"]).shape
            return f"kernel {kh}×{kw}"
        if params["kernel"] == "file":
            return Path(params["file"]).stem or "kernel"
        return kernel_filter_tag(params["preset"], params["sigma"], params["size"])

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
            lines.append(f"multiplications per pixel: {direct} → {separated} ({direct - separated} saved)")
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
            exact = sc.separate_kernel(self.current_kernel()).rank
        except USER_ERRORS:
            return [("exact", None)]
        # ranks below the kernel's own: approximations (its own rank is "exact")
        return [(f"exact (rank {exact})", None)] + [(str(r), r) for r in range(1, exact)]

    def _channel_choices(self, widget: Any = None) -> list:
        return _channel_axis_choices(self._chosen_layer(), optional=True)


# -----------------------------------------------------------------------------
# Channel filter

_OPERATIONS = ["depthwise", "pointwise", "depthwise-separable"]


class ChannelFilterWidget(_FilterWidget):
    """Depthwise, pointwise and depthwise-separable filtering of channels."""

    title = "Channel filter"
    functions = ("depthwise_filter", "pointwise_filter", "depthwise_separable_filter")

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
                "weights": _combo(_named(WEIGHT_PRESETS) + [("from .npy file", "file")], "pointwise weights"),
                "weights_file": {"label": "weights .npy", "filter": "*.npy", "mode": "r"},
                "mode": _combo(MODES),
                "cval": {"label": "constant", "step": 0.1},
                "output": _combo([("one layer (channel axis)", "stack"), ("one layer per channel", "split")]),
            },
        )

    def _filter(
        self,
        image: Image,
        channels: str = "axis",
        channel_axis=None,
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
        output_type: str = "auto",
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
            The axis of ``image`` holding the channels: the colours of an RGB
            layer, an axis labelled as channels, or a short axis (at most 4)
            when it is the only one; otherwise chosen by hand.
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
        output_type : str
            The result's type: float32 for integer input (else the input's
            float type), float32, float64, or the input's range (integers
            not scaled to [0, 1]).
        """
        return self._launch(locals())

    def _source(self, params: dict) -> Source:
        if params["channels"] == "layers":
            return Source.from_layers(params["layers"])
        if params["image"] is None:
            raise ValueError("no image layer chosen: open or choose an image layer first")
        if params["channel_axis"] is None and not params["image"].rgb:
            raise ValueError(
                f"choose the channel axis of '{params['image'].name}' (no axis is labelled "
                "as channels and none is short enough to guess)"
            )
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
                f"depthwise kernel: expected shape (C, kh, kw) or (C, M, kh, kw), got {kernels.shape}"
            )
        if kernels.shape[0] != channels:
            raise ValueError(f"depthwise kernel: {kernels.shape[0]} kernels for {channels} channels")
        return np.ascontiguousarray(kernels)

    def _weights(self, params: dict, channels: int, alpha: bool = False) -> np.ndarray:
        """Pointwise weights, shape (C_out, channels); ``alpha``: the last channel is an
        RGBA layer's alpha, which the presets leave out (``preset_weights``)."""
        if params["weights"] == "file":
            weights = load_array(params["weights_file"], "pointwise weights")
            if weights.ndim == 1:
                weights = weights[np.newaxis]
        else:
            weights = preset_weights(params["weights"], channels, alpha)
        if weights.ndim != 2 or weights.shape[1] != channels:
            raise ValueError(
                f"pointwise weights: expected shape (C_out, {channels}) for {channels} "
                f"channels, got {weights.shape}"
            )
        return weights

    def _plan(self, params: dict, channels: int, rgba: bool = False) -> tuple:
        """(depthwise kernels or None, pointwise weights or None); ``rgba``: the channels
        are an RGBA layer's."""
        operation = params["operation"]
        kernels = weights = None
        if operation != "pointwise":
            kernels = self._kernels(params, channels)
        if operation != "depthwise":
            depth = 1 if kernels is None else kernels.shape[1]
            weights = self._weights(params, channels * depth, alpha=rgba and depth == 1)
        return kernels, weights

    def _make_job(self, source: Source, params: dict) -> Job:
        if source.channel_axis is None:
            raise ValueError("the Channel filter needs a channel axis")
        kernels, weights = self._plan(params, source.channels, rgba=source.rgb and source.channels == 4)
        return channel_job(
            source,
            None if kernels is None else _squeeze_depth(kernels),
            weights,
            params["mode"],
            params["cval"],
            split=params["output"] == "split",
            metadata=_public(params),
            output_type=params["output_type"],
            tag=self._tag(params),
        )

    def _tag(self, params: dict) -> str:
        """The kernels and weights, briefly, for the result's name."""
        parts = []
        if params["operation"] != "pointwise":
            if params["kernel"] == "file":
                parts.append(Path(params["kernel_file"]).stem)
            else:
                parts.append(preset_tag(params["kernel"], params["sigma"], params["size"]))
        if params["operation"] != "depthwise":
            if params["weights"] == "file":
                parts.append(Path(params["weights_file"]).stem)
            else:
                parts.append(params["weights"].split(" (")[0])
        return " ".join(parts)

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
            if axis is None:
                return "choose the channel axis"
            channels = layer.data.shape[axis]
        rgba = params["channels"] != "layers" and params["image"].rgb and channels == 4
        kernels, weights = self._plan(params, channels, rgba=rgba)
        try:
            ours, normal, outputs = _channel_costs(kernels, weights, channels)
        except (TypeError, ValueError) as error:  # the library's own check, as Run would say
            return str(error)
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
        return _channel_axis_choices(self._chosen_layer(), optional=False)

    def _default_channel_axis(self, layer: Any) -> int | None:
        return guess_channel_axis(layer, short_axes=True)

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
    """Multiplications per output pixel: (what the library runs, read from the filter's plan;
    a normal convolution with the same output; output channel count)."""
    plane = ImageSpec((8, 8, channels), np.dtype(np.float32))  # the cost per pixel of any plane
    if kernels is not None and weights is not None:
        plan = sc.depthwise_separable_filter.plan(plane, kernels, weights)
    elif kernels is not None:
        plan = sc.depthwise_filter.plan(plane, kernels)
    else:
        plan = sc.pointwise_filter.plan(plane, weights)
    kernel_size = 1 if kernels is None else kernels.shape[2] * kernels.shape[3]
    outputs = plan.channels_out
    return plan.multiplications, outputs * channels * kernel_size, outputs
