"""The napari plugin used interactively: regressions of the bugs of issue 14,
Cancel, preview, reproducible results (snippets and exported scripts),
result naming, output types, first-use status and event-loop gaps.

Needs napari, pytest-qt and a display (pytest-xvfb starts Xvfb).
"""

import os
import runpy
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("no display: install Xvfb (pytest-xvfb starts it)", allow_module_level=True)

import napari_sepconv as sc  # noqa: E402
from napari_sepconv import _widget_script, _widgets  # noqa: E402

pytestmark = pytest.mark.gui

PLUGIN = "napari-sepconv"
TIMEOUT = 60_000  # ms: the first run in a fresh environment compiles Numba code


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def errors():
    """Error notifications shown during the test."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    start = len(notification_manager.records)

    def shown():
        return [
            n.message
            for n in notification_manager.records[start:]
            if n.severity >= NotificationSeverity.ERROR
        ]

    return shown


def dock(viewer, qtbot, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)  # background warm-up
    return widget


def run(widget, qtbot, viewer, result_name):
    """Run a docked widget and wait for its result layer."""
    before = {id(layer.data) for layer in viewer.layers}
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    qtbot.waitUntil(
        lambda: result_name in viewer.layers and id(viewer.layers[result_name].data) not in before,
        timeout=TIMEOUT,
    )
    return viewer.layers[result_name]


def shown(control):
    """Whether a control is shown in its widget (the window itself may be hidden)."""
    return not control.native.isHidden()


def range_calls_on_gui_thread(monkeypatch):
    """For each contrast-limit computation napari makes from now on, whether it ran on the
    GUI thread (napari's ``calc_data_range``, recorded)."""
    import threading

    from napari.layers.image import image as napari_image

    calls = []

    def spy(*args, _calc=napari_image.calc_data_range, **kwargs):
        calls.append(threading.current_thread() is threading.main_thread())
        return _calc(*args, **kwargs)

    monkeypatch.setattr(napari_image, "calc_data_range", spy)
    return calls


def snippet_result(layer, viewer):
    namespace = {"viewer": viewer}
    exec(layer.metadata["sepconv"]["python"], namespace)
    return namespace["result"]


class GapMeter:
    """The longest gap between ticks of a 10 ms timer: how long the event loop
    stalled; and the most CPU time the GUI thread spent between two ticks (one
    turn of the event loop), which a loaded machine does not inflate."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.times = []
        self.cpu = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)

    def _tick(self):
        self.times.append(time.perf_counter())
        self.cpu.append(time.thread_time())  # the GUI thread's own CPU time

    def __enter__(self):
        self._tick()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()

    @property
    def max_gap(self):
        return max(np.diff(self.times)) if len(self.times) > 1 else 0.0

    @property
    def max_busy(self):
        return max(np.diff(self.cpu)) if len(self.cpu) > 1 else 0.0


# -----------------------------------------------------------------------------
# the bugs of issue 14


@pytest.mark.parametrize("name", ["Edge filter", "Kernel filter"])
def test_channel_axis_rederived_for_a_new_layer(viewer, qtbot, name):
    rgb = np.random.default_rng(1).integers(0, 256, (20, 22, 3), dtype=np.uint8)
    stack = np.random.default_rng(2).random((4, 20, 22)).astype(np.float32)
    viewer.add_image(stack, name="membranes")
    viewer.add_image(rgb, name="astronaut", rgb=True)
    widget = dock(viewer, qtbot, name)
    widget.image.value = viewer.layers["astronaut"]
    assert widget.channel_axis.value == 2
    widget.image.value = viewer.layers["membranes"]
    assert widget.channel_axis.value is None  # not the old layer's axis 2 (x here)
    before = set(viewer.layers)
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy and len(viewer.layers) == len(before) + 1, timeout=TIMEOUT)
    (result,) = set(viewer.layers) - before
    func = sc.sobel if name == "Edge filter" else None
    if func is None:
        kernel = widget.current_kernel()
        expected = np.stack([sc.filter2d(plane, kernel) for plane in stack])
    else:
        expected = np.stack([sc.sobel(plane) for plane in stack])
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["Channel filter", "Edge filter", "Kernel filter"])
def test_progress_counts_planes_with_channel_axis_first(viewer, qtbot, errors, name):
    data = np.random.default_rng(3).random((2, 8, 16, 16)).astype(np.float32)
    viewer.add_image(data, name="four")
    widget = dock(viewer, qtbot, name)
    widget.channel_axis.value = 0
    if name == "Channel filter":
        widget.operation.value = "pointwise"
        widget.weights.value = "mean of channels"
    values = []
    widget._progress.changed.connect(values.append)
    worker = widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert worker is not None
    assert widget._progress.max == 8  # the 8 z-planes, each with its 2 channels
    assert values and max(values) <= 8
    assert errors() == []


def test_info_line_wraps_and_never_widens_the_dock(viewer, qtbot, tmp_path):
    viewer.add_image(np.zeros((3, 40, 40), np.float32), name="three")
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Channel filter")
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    qtbot.wait(100)
    assert widget.native.minimumSizeHint().width() < 420
    bad = tmp_path / ("x" * 60 + ".npy")
    bad.write_text("not an array, " * 40)
    widget.operation.value = "depthwise"
    widget.kernel.value = "file"
    widget.kernel_file.value = bad
    assert widget._info.value.startswith("⚠")
    qtbot.wait(100)
    assert widget.native.minimumSizeHint().width() < 420
    assert dock_widget.minimumSizeHint().width() < 450


def test_channel_filter_guesses_the_channel_axis_only_where_there_is_one(viewer, qtbot, errors):
    viewer.add_image(np.zeros((32, 32), np.float32), name="grey")
    viewer.add_image(np.zeros((5, 6, 16, 16), np.float32), name="tzyx")
    viewer.add_image(np.zeros((6, 3, 16, 16), np.float32), name="zcyx", axis_labels="zcyx")
    viewer.add_image(np.zeros((3, 16, 16), np.float32), name="three")
    widget = dock(viewer, qtbot, "Channel filter")
    for name, expected in [("grey", None), ("tzyx", None), ("zcyx", 1), ("three", 0)]:
        widget.image.value = viewer.layers[name]
        assert widget.channel_axis.value == expected, name
    widget.image.value = viewer.layers["tzyx"]
    assert widget() is None  # asks instead of averaging over x
    assert any("choose the channel axis" in m for m in errors())
    assert "choose the channel axis" in widget._info.value


def test_quitting_during_the_warm_up_exits_at_once(tmp_path):
    """A first compile takes up to a minute: quitting must not wait for it."""
    code = textwrap.dedent(
        """
        import time
        import napari
        from napari_sepconv import _widgets

        def slow_compile(jobs):
            time.sleep(30)

        _widgets.run_warm_up = slow_compile
        viewer = napari.Viewer(show=False)
        viewer.add_image(__import__("numpy").zeros((16, 16)), name="a")
        viewer.window.add_plugin_dock_widget("napari-sepconv", "Edge filter")
        _, widget = viewer.window.add_plugin_dock_widget("napari-sepconv", "Kernel filter")
        assert widget.busy
        viewer.close()
        print("closed", flush=True)
        """
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "closed" in done.stdout
    assert "RuntimeError" not in done.stderr
    assert elapsed < 20  # napari itself takes a few seconds to start here


def test_widget_opens_on_the_selected_layer(viewer, qtbot):
    viewer.add_image(np.zeros((8, 8)), name="first")
    second = viewer.add_image(np.zeros((8, 8)), name="second")
    viewer.layers.selection.active = second
    for name in ("Edge filter", "Kernel filter"):
        assert dock(viewer, qtbot, name).image.value is second


def test_commands_need_an_image_layer_and_read_well():
    import npe2

    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    widgets = {w.command for w in manifest.contributions.widgets}
    samples = {s.command for s in manifest.contributions.sample_data}
    for command in manifest.contributions.commands:
        if command.id in widgets | samples:
            continue
        # napari shows "<title> (Separable convolution)": no second bracket
        assert "(" not in command.title, command.title
        if not command.id.endswith("export_script"):
            assert command.enablement and "image" in command.enablement, command.id


def test_rank_choices_stop_below_the_exact_rank(viewer, qtbot):
    viewer.add_image(np.zeros((16, 16)), name="a")
    widget = dock(viewer, qtbot, "Kernel filter")
    widget.kernel.value = "text"
    kernel = np.random.default_rng(4).random((5, 5)) + np.eye(5)
    widget.values.value = "\n".join(" ".join(str(float(v)) for v in row) for row in kernel)
    assert widget.rank.choices == (None, 1, 2, 3, 4)
    widget.values.value = "1 2 1; 2 4 2; 1 2 1"
    assert widget.rank.choices == (None,)


def test_split_outputs_are_named_by_channel(viewer, qtbot):
    rgb = np.random.default_rng(5).random((12, 14, 3)).astype(np.float32)
    viewer.add_image(rgb, name="photo", rgb=True)
    widget = dock(viewer, qtbot, "Channel filter")
    widget.operation.value = "depthwise"
    widget.kernel.value = "box (mean)"
    widget.output.value = "split"
    run(widget, qtbot, viewer, "photo [depthwise box 3 blue]")
    assert {"photo [depthwise box 3 red]", "photo [depthwise box 3 green]"} <= {
        layer.name for layer in viewer.layers
    }


def test_large_results_get_their_contrast_limits_off_the_gui_thread(viewer, qtbot, monkeypatch):
    stack = np.random.default_rng(6).random((6, 1024, 1024)).astype(np.float32)
    viewer.add_image(stack, name="big")
    widget = dock(viewer, qtbot, "Edge filter")
    on_gui_thread = range_calls_on_gui_thread(monkeypatch)
    layer = run(widget, qtbot, viewer, "big [sobel]")  # a new layer
    run(widget, qtbot, viewer, "big [sobel]")  # the same layer updated
    assert not any(on_gui_thread)
    expected = sc.sobel(stack[0])
    assert layer.contrast_limits[0] <= expected.min() and layer.contrast_limits[1] >= expected.max()


# -----------------------------------------------------------------------------
# Cancel


def test_cancel_stops_mid_stack_without_a_layer(viewer, qtbot, monkeypatch):
    stack = np.random.default_rng(7).random((30, 24, 24)).astype(np.float32)
    viewer.add_image(stack, name="stack")
    widget = dock(viewer, qtbot, "Edge filter")
    planes = []

    def slow_sobel(*args, _sobel=sc.sobel, **kwargs):
        planes.append(1)
        time.sleep(0.05)
        return _sobel(*args, **kwargs)

    monkeypatch.setattr(sc, "sobel", slow_sobel)
    assert not shown(widget._cancel)
    widget.run()
    qtbot.waitUntil(lambda: len(planes) >= 3, timeout=TIMEOUT)
    assert shown(widget._cancel) and widget._cancel.text == "Cancel"
    assert not widget.filter.enabled and not widget.image.enabled
    assert not widget._call_button.enabled
    viewer.add_image(np.zeros((4, 4)), name="other")  # the layer list changes meanwhile
    assert not widget.channel_axis.enabled and not widget.image.enabled
    viewer.layers.remove("other")
    widget._cancel.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    done = len(planes)
    qtbot.wait(200)
    assert len(planes) == done < 30  # stopped within a plane
    assert [layer.name for layer in viewer.layers] == ["stack"]
    assert widget.filter.enabled and widget._call_button.enabled
    assert widget.channel_axis.enabled
    assert not shown(widget._cancel)


def test_cancel_from_napari_activity_panel(viewer, qtbot, monkeypatch):
    from napari.utils.progress import cancelable_progress, progress

    stack = np.random.default_rng(22).random((30, 16, 16)).astype(np.float32)
    viewer.add_image(stack, name="stack")
    widget = dock(viewer, qtbot, "Kernel filter")
    planes = []

    def slow_filter2d(*args, _filter2d=sc.filter2d, **kwargs):
        planes.append(1)
        time.sleep(0.05)
        return _filter2d(*args, **kwargs)

    monkeypatch.setattr(sc, "filter2d", slow_filter2d)
    widget.run()
    qtbot.waitUntil(lambda: len(planes) >= 2, timeout=TIMEOUT)
    bars = [bar for bar in progress._all_instances if isinstance(bar, cancelable_progress)]
    assert len(bars) == 1 and bars[0].total == 30
    bars[0].cancel()  # what the activity panel's Cancel button calls
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert len(planes) < 30
    assert [layer.name for layer in viewer.layers] == ["stack"]


# -----------------------------------------------------------------------------
# preview


def test_preview_follows_settings_and_plane_and_run_replaces_it(viewer, qtbot):
    stack = np.random.default_rng(8).random((3, 40, 48)).astype(np.float32)
    viewer.add_image(stack, name="stack", scale=(2.0, 1.0, 1.0))
    widget = dock(viewer, qtbot, "Edge filter")
    viewer.dims.set_current_step(0, 1)
    widget._preview.value = True
    qtbot.waitUntil(lambda: "stack [sobel] (preview)" in viewer.layers, timeout=TIMEOUT)
    preview = viewer.layers["stack [sobel] (preview)"]
    assert preview.data.shape == (1, 40, 48)
    np.testing.assert_allclose(preview.translate, (2.0, 0.0, 0.0))
    np.testing.assert_allclose(preview.data[0], sc.sobel(stack[1]), rtol=1e-6)

    widget.axis.value = -1
    name = "stack [sobel x] (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and not widget.previewing, timeout=TIMEOUT)
    assert "stack [sobel] (preview)" not in viewer.layers
    np.testing.assert_allclose(viewer.layers[name].data[0], sc.sobel(stack[1], axis=1), rtol=1e-6)

    viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: viewer.layers[name].translate[0] == 4.0, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not widget.previewing, timeout=TIMEOUT)
    # the preview of the same name is updated and kept (it was removed once updated: napari
    # hands the widget proxies of the layers, which were taken for other layers)
    assert [layer.name for layer in viewer.layers] == ["stack", name]
    np.testing.assert_allclose(viewer.layers[name].data[0], sc.sobel(stack[2], axis=1), rtol=1e-6)

    result = run(widget, qtbot, viewer, "stack [sobel x]")
    assert name not in viewer.layers
    assert result.data.shape == stack.shape


def test_preview_follows_the_input_layers_data(viewer, qtbot):
    """Replacing an input layer's data left the preview of the old data on screen (the
    same settings, so the preview was not redone)."""
    rng = np.random.default_rng(18)
    first, second = (rng.random((30, 32)).astype(np.float32) for _ in range(2))
    layer = viewer.add_image(first, name="img")
    widget = dock(viewer, qtbot, "Edge filter")
    widget._preview.value = True
    name = "img [sobel] (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and not widget.previewing, timeout=TIMEOUT)
    np.testing.assert_allclose(viewer.layers[name].data, sc.sobel(first), rtol=1e-6)
    layer.data = second
    expected = sc.sobel(second)
    qtbot.waitUntil(
        lambda: name in viewer.layers and np.allclose(viewer.layers[name].data, expected, rtol=1e-6),
        timeout=TIMEOUT,
    )
    qtbot.waitUntil(lambda: not widget.previewing, timeout=TIMEOUT)
    assert [layer.name for layer in viewer.layers] == ["img", name]
    np.testing.assert_allclose(viewer.layers[name].data, expected, rtol=1e-6)


def test_deleting_the_input_stops_the_preview_instead_of_previewing_the_preview(viewer, qtbot):
    """Once its input layer was deleted, the image list fell back to the preview layer: the
    widget previewed its own preview, which changed its input, without end (the layer's
    name grew by "[gaussian σ=2] (preview)" each time)."""
    viewer.add_image(np.random.default_rng(19).random((20, 22)).astype(np.float32), name="a")
    widget = dock(viewer, qtbot, "Smooth")
    widget._preview.value = True
    qtbot.waitUntil(lambda: len(viewer.layers) == 2 and not widget.previewing, timeout=TIMEOUT)
    assert "(preview)" in viewer.layers[1].name
    viewer.layers.remove("a")
    qtbot.waitUntil(lambda: len(viewer.layers) == 0 and not widget.previewing, timeout=TIMEOUT)
    qtbot.wait(500)  # nothing more happens
    assert len(viewer.layers) == 0 and not widget.previewing
    viewer.add_image(np.ones((8, 9), np.float32), name="b")  # previews again
    qtbot.waitUntil(lambda: len(viewer.layers) == 2 and not widget.previewing, timeout=TIMEOUT)
    assert viewer.layers[1].name.startswith("b [")


def test_closing_the_dock_stops_the_preview_and_removes_it(viewer, qtbot):
    """napari closes a dock by taking its widget out and deleting the dock: the widget
    lived on, and moving the slider brought its preview back."""
    viewer.add_image(np.random.default_rng(23).random((6, 20, 22)).astype(np.float32), name="a")
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Edge filter")
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    widget._preview.value = True
    qtbot.waitUntil(lambda: len(viewer.layers) == 2 and not widget.previewing, timeout=TIMEOUT)
    dock_widget.destroyOnClose()  # the dock's close button
    qtbot.waitUntil(lambda: widget._closed, timeout=TIMEOUT)
    assert [layer.name for layer in viewer.layers] == ["a"]
    viewer.dims.set_current_step(0, 4)
    qtbot.wait(500)
    assert [layer.name for layer in viewer.layers] == ["a"] and not widget.previewing
    viewer.window.add_dock_widget(widget)  # the same widget in a new dock works again
    qtbot.waitUntil(lambda: not widget._closed and len(viewer.layers) == 2, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not widget.previewing, timeout=TIMEOUT)
    np.testing.assert_allclose(viewer.layers[1].data[0], sc.sobel(viewer.layers[0].data[4]), rtol=1e-6)


def test_preview_of_a_layer_with_axes_in_other_units_is_of_the_plane_shown(viewer, qtbot):
    """napari slices a layer whose axes are in other units with their units, where its
    world_to_data does not: the preview was of plane 8 (of 9) while plane 3 was shown."""
    stack = np.random.default_rng(26).random((9, 20, 22)).astype(np.float32)
    viewer.add_image(stack, name="vol", scale=(0.002, 0.5, 0.5), units=("mm", "um", "um"))
    viewer.dims.set_current_step(0, 3)
    widget = dock(viewer, qtbot, "Edge filter")
    widget._preview.value = True
    name = "vol [sobel] (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and not widget.previewing, timeout=TIMEOUT)
    np.testing.assert_allclose(viewer.layers[name].data[0], sc.sobel(stack[3]), rtol=1e-6)


def test_a_hidden_list_of_layers_is_not_taken_for_the_input(viewer, qtbot):
    """The Channel filter refused to preview an axis of one layer because its list of
    layers, not in use, held another widget's preview."""
    rgb = np.random.default_rng(24).random((12, 14, 3)).astype(np.float32)
    viewer.add_image(rgb, name="photo", rgb=True)
    preview = viewer.add_image(rgb[..., 0], name="x (preview)", metadata={"sepconv_preview": "Smooth"})
    widget = dock(viewer, qtbot, "Channel filter")
    params = {**widget._params(), "image": viewer.layers["photo"], "channels": "axis", "layers": [preview]}
    assert not widget._input_is_a_preview(params)
    assert widget._input_is_a_preview({**params, "channels": "layers"})


@pytest.mark.parametrize("error", [RuntimeError, IndexError])
def test_any_error_in_a_run_is_shown_and_unlocks_the_widget(viewer, qtbot, errors, monkeypatch, error):
    """Only ValueError, TypeError and MemoryError were shown. Any other error was lost, and
    after a RuntimeError napari's worker never said it finished: the widget stayed locked."""

    def broken(*args, **kwargs):
        raise error("broken inside the filter")

    viewer.add_image(np.random.default_rng(20).random((10, 12)).astype(np.float32), name="a")
    widget = dock(viewer, qtbot, "Edge filter")
    monkeypatch.setattr(sc, "scharr", broken)
    widget.filter.value = "scharr"
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: any("broken inside the filter" in m for m in errors()), timeout=TIMEOUT)
    assert any(error.__name__ in m for m in errors())
    assert widget._call_button.enabled and [layer.name for layer in viewer.layers] == ["a"]


def test_rgba_results_leave_the_filtered_alpha_out(viewer, qtbot):
    """The alpha of an opaque RGBA layer, edge-filtered, was 0 everywhere: the result was
    invisible. Results of RGBA layers are RGB (the Python recorded with them too)."""
    rgba = np.random.default_rng(21).integers(0, 256, (16, 18, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    viewer.add_image(rgba, name="photo", rgb=True)
    widget = dock(viewer, qtbot, "Edge filter")
    result = run(widget, qtbot, viewer, "photo [sobel]")
    assert result.rgb and result.data.shape == (16, 18, 3)
    expected = sc.sobel(rgba, channel_axis=-1, dtype=np.float32)[..., :3]
    np.testing.assert_allclose(result.data, expected, rtol=1e-6)
    np.testing.assert_array_equal(snippet_result(result, viewer), result.data)


def test_only_the_alpha_of_rgba_is_left_out():
    """A fourth output channel was dropped as alpha also where it mixes channels (an RGB
    layer with four pointwise outputs, or an RGBA layer's mixed by 4 x 4 weights)."""
    from napari_sepconv._widget_base import Source, channel_job

    rng = np.random.default_rng(25)
    rgb = napari.layers.Image(rng.random((8, 9, 3)).astype(np.float32), rgb=True, name="rgb")
    rgba = napari.layers.Image(rng.random((8, 9, 4)).astype(np.float32), rgb=True, name="rgba")
    for layer, weights in ((rgb, rng.random((4, 3))), (rgba, rng.random((4, 4)))):
        job = channel_job(Source.from_layer(layer), weights=weights)
        ((data, meta, _),) = job.finish(job.run())
        assert data.shape == (4, 8, 9) and not meta.get("rgb", False)  # four channels, in front
    job = channel_job(Source.from_layer(rgba), kernels=rng.random((4, 3, 3)))  # per channel
    ((data, meta, _),) = job.finish(job.run())
    assert data.shape == (8, 9, 3) and meta["rgb"]


def test_rgb_to_grey_and_the_weights_presets_leave_the_alpha_of_rgba_out(viewer, qtbot, errors):
    """The command asked for weights of 4 channels and failed; the Channel filter's
    presets refused RGBA (luminance) or mixed its alpha in (mean of channels)."""
    from napari_sepconv import _commands

    rgba = np.random.default_rng(22).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    layer = viewer.add_image(rgba, name="photo", rgb=True)
    _commands.luminance(layer, viewer)
    qtbot.waitUntil(lambda: "photo [pointwise]" in viewer.layers, timeout=TIMEOUT)
    luminance = [[0.2125, 0.7154, 0.0721]]
    expected = sc.pointwise_filter(rgba[..., :3], luminance, dtype=np.float32)[..., 0]
    np.testing.assert_allclose(viewer.layers["photo [pointwise]"].data, expected, rtol=1e-6)
    widget = dock(viewer, qtbot, "Channel filter")
    widget.image.value = layer
    widget.operation.value = "pointwise"
    for preset, weights in (("luminance (RGB to grey)", luminance), ("mean of channels", [[1 / 3] * 3])):
        widget.weights.value = preset
        params = widget._params()
        result = run(widget, qtbot, viewer, widget._make_job(widget._source(params), params).name)
        expected = sc.pointwise_filter(rgba[..., :3], weights, dtype=np.float32)[..., 0]
        np.testing.assert_allclose(result.data, expected, rtol=1e-6)
        np.testing.assert_array_equal(snippet_result(result, viewer), result.data)
    assert errors() == []


def test_one_layer_per_channel_of_rgba_leaves_the_filtered_alpha_out(viewer, qtbot):
    """The Channel filter's "one layer per channel" gave an RGBA layer an "alpha" layer (its
    alpha filtered), which its one-layer result and every other RGBA result leave out."""
    rgba = np.random.default_rng(26).integers(0, 256, (12, 14, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    viewer.add_image(rgba, name="photo", rgb=True)
    widget = dock(viewer, qtbot, "Channel filter")
    widget.operation.value = "depthwise"
    widget.kernel.value = "box (mean)"
    widget.output.value = "split"
    widget._preview.value = True
    names = [f"photo [depthwise box 3 {colour}]" for colour in ("red", "green", "blue")]
    qtbot.waitUntil(
        lambda: not widget.previewing and names[2] + " (preview)" in viewer.layers, timeout=TIMEOUT
    )
    assert [layer.name for layer in viewer.layers] == ["photo", *(name + " (preview)" for name in names)]
    run(widget, qtbot, viewer, names[2])
    assert [layer.name for layer in viewer.layers] == ["photo", *names]
    expected = sc.depthwise_filter(rgba, np.ones((4, 3, 3)) / 9, channel_axis=-1, dtype=np.float32)
    for c, name in enumerate(names):
        layer = viewer.layers[name]
        np.testing.assert_allclose(layer.data, expected[..., c], rtol=1e-6)
        np.testing.assert_array_equal(snippet_result(layer, viewer), layer.data)


def test_several_kernels_per_channel_of_rgba_leave_the_alphas_outputs_out():
    """Depthwise kernels with a multiplier on an RGBA layer kept "alpha k0", "alpha k1"
    (its alpha filtered), in one layer per channel and in the stack alike."""
    from napari_sepconv._widget_base import Source, channel_job

    rng = np.random.default_rng(27)
    image = rng.random((8, 9, 4)).astype(np.float32)
    rgba = napari.layers.Image(image, rgb=True, name="photo")
    kernels = rng.random((4, 2, 3, 3))
    expected = sc.depthwise_filter(image, kernels, channel_axis=-1)  # (8, 9, 8): 4 channels x 2
    split = channel_job(Source.from_layer(rgba), kernels=kernels, split=True)
    layers = split.finish(split.run())
    names = [meta["name"] for _, meta, _ in layers]
    assert names == [f"{split.name[:-1]} {c} k{m}]" for c in ("red", "green", "blue") for m in (0, 1)]
    for c, (data, _, _) in enumerate(layers):
        np.testing.assert_array_equal(data, expected[..., c])
    stack = channel_job(Source.from_layer(rgba), kernels=kernels)
    ((data, meta, _),) = stack.finish(stack.run())
    assert not meta.get("rgb", False)
    np.testing.assert_array_equal(data, np.moveaxis(expected[..., :6], -1, 0))
    viewer = SimpleNamespace(layers={"photo": rgba})
    for values, kwargs, _ in [*layers, (data, meta, None)]:
        np.testing.assert_array_equal(snippet_result(SimpleNamespace(**kwargs), viewer), values)


def test_preview_of_a_3d_filter_is_exact_on_its_plane(viewer, qtbot):
    stack = np.random.default_rng(9).random((9, 20, 22)).astype(np.float32)
    viewer.add_image(stack, name="vol")
    widget = dock(viewer, qtbot, "Edge filter")
    widget.filter.value = "farid"
    widget.ndim.value = 3
    viewer.dims.set_current_step(0, 3)
    widget._preview.value = True
    name = "vol [farid 3-D] (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and not widget.previewing, timeout=TIMEOUT)
    np.testing.assert_allclose(viewer.layers[name].data[0], sc.farid(stack)[3], rtol=1e-5, atol=1e-7)


def test_preview_debounces_and_drops_stale_runs(viewer, qtbot):
    image = np.random.default_rng(10).random((64, 64)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = dock(viewer, qtbot, "Kernel filter")
    widget._preview.value = True
    qtbot.waitUntil(lambda: not widget.previewing, timeout=TIMEOUT)
    for sigma in (1.0, 1.5, 2.5, 3.0):  # faster than the debounce: one preview
        widget.sigma.value = sigma
    name = "img [gaussian kernel σ=3] (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and not widget.previewing, timeout=TIMEOUT)
    previews = [layer.name for layer in viewer.layers if layer.name.endswith("(preview)")]
    assert previews == [name]
    np.testing.assert_allclose(
        viewer.layers[name].data, sc.filter2d(image, widget.current_kernel()), rtol=1e-5, atol=1e-7
    )
    widget._preview.value = False
    assert not any(layer.name.endswith("(preview)") for layer in viewer.layers)


def test_split_preview_is_named_by_channel_and_run_takes_it_over(viewer, qtbot):
    photo = np.random.default_rng(23).integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)
    viewer.add_image(photo, name="photo", rgb=True)
    widget = dock(viewer, qtbot, "Channel filter")
    widget.operation.value = "depthwise"
    widget.kernel.value = "box (mean)"
    widget.output.value = "split"
    viewer.dims.set_current_step(0, 1)
    widget._preview.value = True
    names = [f"photo [depthwise box 3 {colour}]" for colour in ("red", "green", "blue")]
    qtbot.waitUntil(
        lambda: not widget.previewing and names[2] + " (preview)" in viewer.layers, timeout=TIMEOUT
    )
    previews = [viewer.layers[name + " (preview)"] for name in names]
    assert all(layer.data.shape == (1, 30, 40) for layer in previews)
    run(widget, qtbot, viewer, names[2])
    assert [layer.name for layer in viewer.layers] == ["photo", *names]
    assert [viewer.layers[name] for name in names] == previews  # the same layers, renamed and updated
    expected = sc.depthwise_filter(photo / 255.0, np.ones((3, 3, 3)) / 9, channel_axis=-1)
    for c, name in enumerate(names):
        layer = viewer.layers[name]
        assert layer.visible and layer.data.shape == photo.shape[:3]
        np.testing.assert_allclose(layer.data, expected[..., c], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.translate, 0.0)


def test_settings_that_give_no_preview_remove_the_preview_of_earlier_ones(viewer, qtbot, monkeypatch):
    """Settings that gave no preview (a kernel file not chosen yet, say) left the preview
    of the earlier settings on screen, one layer per channel, as if it were theirs; so did
    a preview of earlier settings still being computed or shown when they changed."""
    photo = np.random.default_rng(32).random((3, 20, 24, 3)).astype(np.float32)
    viewer.add_image(photo, name="photo", rgb=True)
    widget = dock(viewer, qtbot, "Channel filter")
    widget.operation.value = "depthwise"
    widget.kernel.value = "box (mean)"
    widget.output.value = "split"
    names = [f"photo [depthwise box 3 {colour}] (preview)" for colour in ("red", "green", "blue")]

    def previews():
        return [layer.name for layer in viewer.layers if layer.name.endswith("(preview)")]

    for while_shown in (False, True):  # the settings change once the preview is shown, then while
        if while_shown:
            monkeypatch.setattr(_widgets, "STEP_MS", 300)  # showing it takes seconds now
        widget._preview.value = True
        if while_shown:
            qtbot.waitUntil(lambda: widget._preview_showing, timeout=TIMEOUT)
        else:
            qtbot.waitUntil(lambda: not widget.previewing and previews() == names, timeout=TIMEOUT)
        widget.kernel.value = "file"  # no file chosen: no preview
        qtbot.waitUntil(lambda: not widget.previewing, timeout=TIMEOUT)
        qtbot.wait(200)
        assert previews() == [] and "choose a .npy file" in widget._status.value
        widget.kernel.value = "box (mean)"  # back: the preview again
        qtbot.waitUntil(lambda: not widget.previewing and previews() == names, timeout=TIMEOUT)
        expected = sc.depthwise_filter(photo[1], np.ones((3, 3, 3)) / 9, channel_axis=-1)
        for c, name in enumerate(names):
            np.testing.assert_allclose(viewer.layers[name].data[0], expected[..., c], rtol=1e-5, atol=1e-6)
        widget._preview.value = False


def test_preview_latency_on_a_2048_plane(viewer, qtbot, record_property):
    image = np.random.default_rng(11).random((2048, 2048)).astype(np.float32)
    viewer.add_image(image, name="big")
    widget = dock(viewer, qtbot, "Edge filter")
    widget._preview.value = True
    qtbot.waitUntil(lambda: "big [sobel] (preview)" in viewer.layers, timeout=TIMEOUT)
    timings = []
    for filter in ("scharr", "prewitt", "sobel", "scharr"):
        name = f"big [{filter}] (preview)"
        start = time.perf_counter()
        widget.filter.value = filter
        qtbot.waitUntil(lambda name=name: name in viewer.layers, timeout=TIMEOUT)
        timings.append(time.perf_counter() - start)
    record_property("preview_latency_s", timings)
    print("preview latency (s):", ", ".join(f"{t:.3f}" for t in timings))
    # ~100 ms is the aim on a quiet machine; shared CI cores get slack
    assert min(timings[1:]) < 0.5


# -----------------------------------------------------------------------------
# reproducible results


def _make_results(viewer, qtbot, tmp_path):
    """A few results of each widget, some chained; returns the result layers."""
    rng = np.random.default_rng(12)
    stack = rng.random((2, 3, 20, 22)).astype(np.float32)
    rgb = rng.integers(0, 256, (18, 20, 3), dtype=np.uint8)
    np.save(tmp_path / "kernel.npy", rng.random((3, 5)))
    viewer.add_image(stack, name="cells", axis_labels="czyx", scale=(1, 2, 0.5, 0.5))
    viewer.add_image(rgb, name="photo", rgb=True)
    edge = dock(viewer, qtbot, "Edge filter")
    edge.image.value = viewer.layers["cells"]
    assert edge.channel_axis.value == 0
    edge.axis.value = -1
    results = [run(edge, qtbot, viewer, "cells [sobel x]")]
    kernel = dock(viewer, qtbot, "Kernel filter")
    kernel.image.value = viewer.layers["photo"]
    kernel.preset.value = "Sobel y"
    kernel.output_type.value = "float64"
    results.append(run(kernel, qtbot, viewer, "photo [sobel y f64]"))
    kernel.kernel.value = "file"
    kernel.file.value = tmp_path / "kernel.npy"
    kernel.output_type.value = "auto"
    kernel.image.value = results[0]  # a step on an earlier step's result
    results.append(run(kernel, qtbot, viewer, "cells [sobel x] [kernel]"))
    channel = dock(viewer, qtbot, "Channel filter")
    channel.image.value = viewer.layers["photo"]
    channel.kernel.value = "Sobel y and x (2 per channel)"
    channel.weights.value = "file"
    np.save(tmp_path / "weights.npy", rng.random((2, 6)))
    channel.weights_file.value = tmp_path / "weights.npy"
    channel.output.value = "split"
    results.append(run(channel, qtbot, viewer, "photo [depthwise-separable sobel y+x weights out 1]"))
    return results


def test_snippets_and_exported_script_recompute_the_results(viewer, qtbot, tmp_path, monkeypatch):
    results = _make_results(viewer, qtbot, tmp_path)
    for layer in viewer.layers:
        record = layer.metadata.get("sepconv")
        if not record:
            continue
        assert record["version"] == sc.__version__
        assert record["function"].startswith("napari_sepconv.")
        np.testing.assert_array_equal(snippet_result(layer, viewer), layer.data)
    assert "kernel_values" in results[2].metadata["sepconv"]
    assert results[2].metadata["sepconv"]["file"].endswith("kernel.npy")

    path = tmp_path / "steps.py"
    monkeypatch.setattr(_widgets, "_ask_save_path", lambda: str(path))
    _, edge = viewer.window.add_plugin_dock_widget(PLUGIN, "Edge filter")
    edge._export.native.click()  # the "Export script" button
    assert path.is_file()
    from napari._app_model import get_app_model

    from_menu = tmp_path / "from_menu.py"
    monkeypatch.setattr(_widgets, "_ask_save_path", lambda: str(from_menu))
    get_app_model().commands.execute_command("napari-sepconv.export_script").result()
    assert from_menu.read_text() == path.read_text().replace("steps", "from_menu")
    assert edge.export_script(tmp_path / "direct.py") == tmp_path / "direct.py"
    out = tmp_path / "out"
    # run it without napari
    monkeypatch.setattr(sys, "argv", [str(path), str(out)])
    monkeypatch.setitem(sys.modules, "napari", None)
    runpy.run_path(str(path), run_name="__main__")
    for layer in viewer.layers:
        if layer.metadata.get("sepconv"):
            saved = np.load(out / _widget_script.output_filename(layer.name))
            np.testing.assert_array_equal(saved, layer.data)


def test_a_layer_name_cannot_write_code_into_the_snippet(viewer, qtbot):
    """The result's name stands in a comment of the snippet: a line break in the input
    layer's name ended the comment, and what followed ran as code."""
    image = np.random.default_rng(14).random((12, 13)).astype(np.float32)
    name = "x\nINJECTED = 1  #"
    viewer.add_image(image, name=name)
    widget = dock(viewer, qtbot, "Edge filter")
    layer = run(widget, qtbot, viewer, f"{name} [sobel]")
    namespace = {"viewer": viewer}
    exec(layer.metadata["sepconv"]["python"], namespace)
    assert "INJECTED" not in namespace
    np.testing.assert_array_equal(namespace["result"], layer.data)


def test_copy_as_python(viewer, qtbot):
    from qtpy.QtWidgets import QApplication

    image = np.random.default_rng(13).random((16, 18)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = dock(viewer, qtbot, "Edge filter")
    layer = run(widget, qtbot, viewer, "img [sobel]")
    widget._copy.native.click()
    text = QApplication.clipboard().text()
    assert text == layer.metadata["sepconv"]["python"]
    namespace = {"viewer": viewer}
    exec(text, namespace)
    np.testing.assert_array_equal(namespace["result"], layer.data)


def test_script_of_a_viewer_without_results_is_an_error(viewer, tmp_path):
    with pytest.raises(ValueError, match="no sepconv results"):
        _widget_script.script(viewer.layers, tmp_path / "x.py")


# -----------------------------------------------------------------------------
# naming, output type


def test_same_settings_update_other_settings_add(viewer, qtbot):
    image = np.random.default_rng(14).random((16, 18)).astype(np.float32)
    viewer.add_image(image, name="x")
    widget = dock(viewer, qtbot, "Kernel filter")
    first = run(widget, qtbot, viewer, "x [gaussian kernel σ=2]")
    again = run(widget, qtbot, viewer, "x [gaussian kernel σ=2]")
    assert again is first and len(viewer.layers) == 2
    widget.sigma.value = 1.0
    run(widget, qtbot, viewer, "x [gaussian kernel σ=1]")
    widget.mode.value = "wrap"
    run(widget, qtbot, viewer, "x [gaussian kernel σ=1 wrap]")
    assert len(viewer.layers) == 4
    widget.kernel.value = "text"  # two typed kernels of one shape: two layers
    widget.values.value = "1 2 1"
    a = run(widget, qtbot, viewer, "x [kernel 1×3 wrap]")
    widget.values.value = "1 0 -1"
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy and len(viewer.layers) == 6, timeout=TIMEOUT)
    assert a in viewer.layers
    np.testing.assert_allclose(viewer.layers[-1].data, sc.filter2d(image, [[1, 0, -1]], mode="wrap"))


def test_the_kernel_filters_and_smooths_gaussians_are_named_apart(viewer, qtbot):
    """The Kernel filter's Gaussian preset and the Smooth widget's Gaussian blur both named
    their result "x [gaussian σ=2]": the second run's layer got napari's "x [gaussian σ=2] [1]",
    and each preview, updated by its name, took the other's place."""
    from napari_sepconv import _commands
    from napari_sepconv._widget_presets import preset_kernel

    image = np.random.default_rng(27).random((16, 18)).astype(np.float32)
    layer = viewer.add_image(image, name="x")
    kernel = dock(viewer, qtbot, "Kernel filter")
    smooth = dock(viewer, qtbot, "Smooth")
    assert kernel.preset.value == "Gaussian" and kernel.sigma.value == smooth.sigma.value == 2.0
    kernel._preview.value = True
    smooth._preview.value = True
    qtbot.waitUntil(lambda: not (kernel.previewing or smooth.previewing), timeout=TIMEOUT)
    previews = ["x [gaussian kernel σ=2] (preview)", "x [gaussian σ=2] (preview)"]
    assert sorted(layer.name for layer in viewer.layers[1:]) == previews
    kernel._preview.value = smooth._preview.value = False
    for widget in (kernel, smooth):
        assert widget.run() is not None
        qtbot.waitUntil(lambda widget=widget: not widget.busy, timeout=TIMEOUT)
    assert [layer.name for layer in viewer.layers] == ["x", "x [gaussian kernel σ=2]", "x [gaussian σ=2]"]
    expected = sc.filter2d(image, preset_kernel("Gaussian", 2.0))
    np.testing.assert_allclose(viewer.layers[1].data, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(viewer.layers[2].data, sc.gaussian(image, 2.0, mode="nearest"), rtol=1e-5)
    ((_, meta, _),) = _commands.gaussian(layer)  # the same call as the Kernel filter's
    assert meta["name"] == "x [gaussian kernel σ=2]"


def test_output_type(viewer, qtbot):
    image = np.random.default_rng(15).integers(0, 256, (16, 18), dtype=np.uint8)
    viewer.add_image(image, name="u8")
    widget = dock(viewer, qtbot, "Edge filter")
    assert widget.output_type.value == "auto"
    layer = run(widget, qtbot, viewer, "u8 [sobel]")
    assert layer.data.dtype == np.float32
    np.testing.assert_allclose(layer.data, sc.sobel(image), rtol=1e-5, atol=1e-6)
    widget.output_type.value = "float64"
    assert run(widget, qtbot, viewer, "u8 [sobel f64]").data.dtype == np.float64
    widget.output_type.value = "range"
    layer = run(widget, qtbot, viewer, "u8 [sobel range]")
    np.testing.assert_allclose(layer.data, sc.sobel(image, preserve_range=True), rtol=1e-6)


# -----------------------------------------------------------------------------
# first use, responsiveness, help


def test_first_use_says_it_is_preparing(viewer, qtbot, monkeypatch):
    image = np.random.default_rng(16).random((3, 16, 18)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = dock(viewer, qtbot, "Edge filter")
    widget._warm.clear()  # as if nothing had been loaded yet
    widget._ran.clear()
    monkeypatch.setattr(_widgets.WARMER, "submit", lambda jobs: __import__("threading").Event())
    widget.run()
    assert shown(widget._status) and widget._status.value == _widgets.PREPARING
    assert not shown(widget._progress)
    qtbot.waitUntil(lambda: not widget._runs, timeout=TIMEOUT)
    assert not shown(widget._status)
    widget.run()  # the second time: a progress bar at once
    assert not shown(widget._status) and shown(widget._progress)
    qtbot.waitUntil(lambda: not widget._runs, timeout=TIMEOUT)


def test_event_loop_keeps_running_during_a_run(viewer, qtbot, record_property):
    stack = np.random.default_rng(17).random((12, 512, 512)).astype(np.float32)
    viewer.add_image(stack, name="s")
    widget = dock(viewer, qtbot, "Kernel filter")
    with GapMeter() as first:
        run(widget, qtbot, viewer, "s [gaussian kernel σ=2]")  # warm cache; a new layer
        qtbot.wait(50)
    with GapMeter() as again:
        run(widget, qtbot, viewer, "s [gaussian kernel σ=2]")  # the layer updated
        qtbot.wait(50)
    record_property("max_event_loop_gap_s", (first.max_gap, again.max_gap))
    print(
        f"max event-loop gap during a run: {first.max_gap * 1000:.0f} ms (adding the layer), "
        f"{again.max_gap * 1000:.0f} ms (updating it)"
    )
    assert again.max_gap < 0.25
    assert first.max_gap < 1.0  # wall time, on shared cores: see the test below for the GUI thread's


#: the most the GUI thread may spend in one turn of its event loop (issue 14: 250 ms)
LONGEST_TURN = 0.25


def busiest_turn(widget, qtbot, action, fresh=None, attempts=3):
    """A :class:`GapMeter` of ``action`` (a run or a change) until the widget
    is idle and its result drawn. Tried up to ``attempts`` times (``fresh()``
    first undoes the last try) while a turn takes ``LONGEST_TURN`` or more:
    the try with the shortest busiest turn (a stall napari or the plugin
    causes is there every time; one another process causes, not)."""
    best = None
    for attempt in range(attempts):
        if attempt and fresh is not None:
            fresh()
        with GapMeter() as meter:
            action()
            qtbot.waitUntil(lambda: not widget.busy and not widget.previewing, timeout=TIMEOUT)
            qtbot.wait(150)  # the result drawn
        if best is None or meter.max_busy < best.max_busy:
            best = meter
        if best.max_busy < LONGEST_TURN:
            break
    return best


def test_large_results_never_stall_the_gui_thread(viewer, qtbot, record_property):
    """Adding a large result, updating it, adding several (split channels)
    and replacing a preview: no turn of the event loop takes 250 ms of the
    GUI thread (napari's add_image did it all in one turn: 0.25-0.5 s)."""
    rng = np.random.default_rng(21)
    turns = {}

    def remover(*names):
        def fresh():
            for name in names:
                viewer.layers.remove(name)

        return fresh

    def check(label, widget, action, fresh=None):
        meter = busiest_turn(widget, qtbot, action, fresh)
        turns[label] = (round(meter.max_busy, 3), round(meter.max_gap, 3))

    plane = rng.random((2048, 2048), dtype=np.float32)
    viewer.add_image(plane, name="plane")
    kernel = dock(viewer, qtbot, "Kernel filter")
    check("2048² new layer", kernel, kernel.run, remover("plane [gaussian kernel σ=2]"))
    check("2048² update", kernel, kernel.run)
    layer = viewer.layers["plane [gaussian kernel σ=2]"]
    assert layer.visible and viewer.layers.selection.active is layer
    np.testing.assert_allclose(layer.data, sc.filter2d(plane, kernel.current_kernel()), rtol=1e-4, atol=1e-6)
    assert layer.contrast_limits == pytest.approx([float(layer.data.min()), float(layer.data.max())])

    kernel._preview.value = True
    kernel.sigma.value = 3.0
    name = "plane [gaussian kernel σ=3]"
    qtbot.waitUntil(lambda: f"{name} (preview)" in viewer.layers and not kernel.previewing, timeout=TIMEOUT)

    def preview_again():
        viewer.layers.remove(name)
        kernel._preview.value = False
        kernel._preview.value = True
        qtbot.waitUntil(
            lambda: f"{name} (preview)" in viewer.layers and not kernel.previewing, timeout=TIMEOUT
        )

    check("2048² Run replaces the preview", kernel, kernel.run, preview_again)
    assert name in viewer.layers and f"{name} (preview)" not in viewer.layers
    assert viewer.layers[name].visible
    kernel._preview.value = False
    for layer_name in ("plane", name, "plane [gaussian kernel σ=2]"):
        viewer.layers.remove(layer_name)

    photo = rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    viewer.add_image(photo, name="photo", rgb=True)
    channel = dock(viewer, qtbot, "Channel filter")
    channel.image.value = viewer.layers["photo"]
    channel.operation.value = "depthwise"
    channel.kernel.value = "box (mean)"
    channel.output.value = "split"
    names = [f"photo [depthwise box 3 {colour}]" for colour in ("red", "green", "blue")]
    check("2048² RGB split: 3 new layers", channel, channel.run, remover(*names))
    assert all(viewer.layers[n].visible for n in names)
    viewer.layers.remove("photo")
    for n in names:
        viewer.layers.remove(n)

    stack = rng.random((16, 2048, 2048), dtype=np.float32)
    viewer.add_image(stack, name="stack")
    kernel.image.value = viewer.layers["stack"]
    check("16×2048² new layer", kernel, kernel.run, remover("stack [gaussian kernel σ=3]"))
    check("16×2048² update", kernel, kernel.run)
    assert viewer.layers["stack [gaussian kernel σ=3]"].data.shape == stack.shape

    record_property("busiest_turn_and_gap_s", turns)
    for label, (busy, gap) in turns.items():
        print(f"{label}: GUI thread busiest turn {busy * 1000:.0f} ms, longest gap {gap * 1000:.0f} ms")
    slow = {label: busy for label, (busy, _) in turns.items() if busy >= LONGEST_TURN}
    assert not slow, f"turns of the event loop over {LONGEST_TURN * 1000:.0f} ms: {slow}"


def test_lazy_results_get_their_contrast_limits_in_the_worker(viewer, qtbot, monkeypatch):
    """napari would compute a lazy layer's range on its GUI thread (filtering
    three planes there): the worker computes it, from the plane shown."""
    import dask.array as da

    stack = np.random.default_rng(22).random((5, 64, 80)).astype(np.float32)
    stack[3] *= 10  # the plane shown has the widest range
    viewer.add_image(da.from_array(stack, chunks=(1, 64, 80)), name="lazy")
    viewer.dims.set_current_step(0, 3)
    widget = dock(viewer, qtbot, "Kernel filter")
    on_gui_thread = range_calls_on_gui_thread(monkeypatch)
    layer = run(widget, qtbot, viewer, "lazy [gaussian kernel σ=2]")
    assert type(layer.data).__module__.startswith("dask")
    run(widget, qtbot, viewer, "lazy [gaussian kernel σ=2]")  # updated
    qtbot.wait(100)
    assert not any(on_gui_thread)
    shown = sc.filter2d(stack[3], widget.current_kernel())
    assert layer.contrast_limits == pytest.approx([shown.min(), shown.max()], rel=1e-4)


def test_help_links(viewer, qtbot):
    widget = dock(viewer, qtbot, "Edge filter")
    assert 'href="sobel"' in widget._docs.value
    assert "napari_sepconv.sobel(image" in widget.show_docs("sobel")
    kernel_widget = dock(viewer, qtbot, "Kernel filter")
    assert "2-D correlation" in kernel_widget.show_docs("filter2d")
    assert "napari" in widget.show_docs("readme").lower()


# -----------------------------------------------------------------------------
# Smooth


def test_smooth_gaussian_in_layer_units_honours_anisotropy(viewer, qtbot):
    stack = np.random.default_rng(18).random((6, 20, 22)).astype(np.float32)
    viewer.add_image(stack, name="vol", scale=(2.0, 0.5, 0.5), units="um")
    widget = dock(viewer, qtbot, "Smooth")
    widget.sigma.value = 1.0
    widget.physical.value = True
    widget.ndim.value = 3
    assert "0.5, 2, 2" in widget._info.value  # sigma in pixels per axis
    result = run(widget, qtbot, viewer, "vol [gaussian σ=1 micrometer 3-D]")
    expected = sc.gaussian(stack, sigma=(0.5, 2.0, 2.0))
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.scale, (2.0, 0.5, 0.5))
    np.testing.assert_array_equal(snippet_result(result, viewer), result.data)


def test_smooth_derivative_dog_and_unsharp(viewer, qtbot):
    rng = np.random.default_rng(19)
    stack = rng.random((2, 18, 20)).astype(np.float32)
    rgb = rng.integers(0, 256, (18, 20, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="photo", rgb=True)
    viewer.add_image(stack, name="s")
    widget = dock(viewer, qtbot, "Smooth")
    widget.image.value = viewer.layers["s"]
    widget.operation.value = "derivative"
    widget.derivative.value = "d/dx"
    result = run(widget, qtbot, viewer, "s [gaussian d/dx σ=2]")
    expected = np.stack([sc.gaussian_filter(p, 2.0, order=(0, 1), mode="nearest") for p in stack])
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-6)

    widget.operation.value = "dog"
    widget.sigma.value = 1.0
    widget.high_sigma.value = 3.0
    result = run(widget, qtbot, viewer, "s [dog σ=1–3]")
    expected = np.stack([sc.difference_of_gaussians(p, 1.0, 3.0) for p in stack])
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-6)

    widget.image.value = viewer.layers["photo"]
    widget.operation.value = "unsharp"
    widget.amount.value = 2.0
    result = run(widget, qtbot, viewer, "photo [unsharp r=1 ×2]")
    assert result.rgb
    expected = sc.unsharp_mask(rgb, radius=1.0, amount=2.0, channel_axis=-1)
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-6)
    for layer in viewer.layers:
        if layer.metadata.get("sepconv"):
            np.testing.assert_array_equal(snippet_result(layer, viewer), layer.data)


def test_smooth_preview(viewer, qtbot):
    image = np.random.default_rng(20).random((40, 44)).astype(np.float32)
    viewer.add_image(image, name="img")
    widget = dock(viewer, qtbot, "Smooth")
    widget._preview.value = True
    widget.sigma.value = 3.0
    name = "img [gaussian σ=3] (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and not widget.previewing, timeout=TIMEOUT)
    np.testing.assert_allclose(viewer.layers[name].data, sc.gaussian(image, 3.0), rtol=1e-5, atol=1e-6)


def test_gaussian_physical_units_command():
    from napari_sepconv import _commands

    stack = np.random.default_rng(21).random((5, 16, 18)).astype(np.float32)
    layer = napari.layers.Image(stack, name="vol", scale=(1.0, 0.25, 0.25))
    ((data, meta, _),) = _commands.gaussian_physical(layer)
    # sigma 2 finest pixels = 0.5 layer units: 0.5 planes along z, 2 pixels along y and x
    np.testing.assert_allclose(data, sc.gaussian(stack, sigma=(0.5, 2.0, 2.0)), rtol=1e-5, atol=1e-6)
    assert meta["name"].startswith("vol [gaussian σ=0.5")


def test_sigma_in_layer_units_converts_units_and_refuses_other_kinds():
    """Pixel sizes in other units of one kind were taken as the same number in the last
    axis's unit (2 um z-steps written as 0.002 mm gave 500 pixels, not 0.5), and a time
    axis in seconds was blurred across as z."""
    from napari_sepconv import _commands
    from napari_sepconv._widget_base import Source, smooth_job

    stack = np.random.default_rng(24).random((5, 16, 18)).astype(np.float32)
    mixed = napari.layers.Image(stack, name="vol", scale=(0.002, 0.5, 0.5), units=("mm", "um", "um"))
    job = smooth_job(Source.from_layer(mixed), sigma=1.0, ndim=3, physical=True)
    np.testing.assert_allclose(job.func.keywords["sigma"], (0.5, 2.0, 2.0))
    assert job.name == "vol [gaussian σ=1 micrometer 3-D]"
    assert job.preview_halo == 3  # planes a preview reads on each side: 4 sigmas, 2 planes, +1
    timed = napari.layers.Image(stack, name="t", scale=(2.0, 0.25, 0.25), units=("s", "um", "um"))
    with pytest.raises(ValueError, match="not in units of one kind.*second"):
        smooth_job(Source.from_layer(timed), sigma=1.0, ndim=3, physical=True)
    ((data, meta, _),) = _commands.gaussian_physical(timed)  # per plane, not across time
    expected = np.stack([sc.gaussian(plane, sigma=2.0) for plane in stack])
    np.testing.assert_allclose(data, expected, rtol=1e-5, atol=1e-6)
    assert meta["name"] == "t [gaussian σ=0.5 micrometer]"


def test_exported_script_reads_files_as_napari_did(viewer, qtbot, tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(23)
    tif, npy = rng.random((3, 20, 22)).astype(np.float32), rng.random((18, 20))
    tifffile.imwrite(tmp_path / "stack.tif", tif)
    np.save(tmp_path / "plane.npy", npy)
    viewer.open(tmp_path / "stack.tif", plugin="napari")
    viewer.open(tmp_path / "plane.npy", plugin="napari")
    widget = dock(viewer, qtbot, "Edge filter")
    widget.image.value = viewer.layers["stack"]
    run(widget, qtbot, viewer, "stack [sobel]")
    widget.image.value = viewer.layers["plane"]
    run(widget, qtbot, viewer, "plane [sobel]")
    path = tmp_path / "steps.py"
    assert _widgets.export_script(viewer, path) == path
    text = path.read_text()
    assert "tifffile" in text and "np.load(" in text
    assert not (tmp_path / "steps_inputs").exists()  # nothing had to be saved aside
    monkeypatch.setattr(sys, "argv", [str(path), str(tmp_path / "out")])
    monkeypatch.setitem(sys.modules, "napari", None)
    runpy.run_path(str(path), run_name="__main__")
    for name in ("stack [sobel]", "plane [sobel]"):
        saved = np.load(tmp_path / "out" / _widget_script.output_filename(name))
        np.testing.assert_array_equal(saved, viewer.layers[name].data)


def test_exported_script_keeps_layers_whose_file_names_would_be_one(viewer, qtbot, tmp_path, monkeypatch):
    """ "a b" and "a_b" both became "a_b" in a file name: the second layer's data, saved
    beside the script, replaced the first's, and its result file the first's result."""
    rng = np.random.default_rng(31)
    widget = dock(viewer, qtbot, "Edge filter")
    for name in ("a b", "a_b"):
        viewer.add_image(rng.random((14, 15)).astype(np.float32), name=name)
        widget.image.value = viewer.layers[name]
        run(widget, qtbot, viewer, f"{name} [sobel]")
    path = tmp_path / "steps.py"
    _widgets.export_script(viewer, path)
    assert len(list((tmp_path / "steps_inputs").glob("*.npy"))) == 2
    monkeypatch.setattr(sys, "argv", [str(path), str(tmp_path / "out")])
    monkeypatch.setitem(sys.modules, "napari", None)
    runpy.run_path(str(path), run_name="__main__")
    saved = sorted((tmp_path / "out").glob("*.npy"))
    assert [p.name for p in saved] == ["a_b_[sobel]-2.npy", "a_b_[sobel].npy"]
    np.testing.assert_array_equal(np.load(saved[1]), viewer.layers["a b [sobel]"].data)
    np.testing.assert_array_equal(np.load(saved[0]), viewer.layers["a_b [sobel]"].data)


def _export_and_run(viewer, tmp_path, monkeypatch):
    """Export the steps, run the script without napari; returns its text and output folder."""
    path = tmp_path / "steps.py"
    assert _widgets.export_script(viewer, path) == path
    out = tmp_path / "out"
    with monkeypatch.context() as patch:  # napari is back for what the test does next
        patch.setattr(sys, "argv", [str(path), str(out)])
        patch.setitem(sys.modules, "napari", None)
        runpy.run_path(str(path), run_name="__main__")
    return path.read_text(), out


def test_exported_script_says_which_step_read_a_preview_since_gone(viewer, qtbot, tmp_path, monkeypatch):
    """A step run on another widget's preview could not be exported once Run had turned that
    preview into its result: the export failed as a whole ("no longer in the viewer")."""
    image = np.random.default_rng(28).random((20, 22)).astype(np.float32)
    viewer.add_image(image, name="img")
    edge = dock(viewer, qtbot, "Edge filter")
    edge._preview.value = True
    qtbot.waitUntil(lambda: "img [sobel] (preview)" in viewer.layers and not edge.previewing, timeout=TIMEOUT)
    smooth = dock(viewer, qtbot, "Smooth")
    smooth.image.value = viewer.layers["img [sobel] (preview)"]
    run(smooth, qtbot, viewer, "img [sobel] (preview) [gaussian σ=2]")
    edge.image.value = viewer.layers["img"]
    run(edge, qtbot, viewer, "img [sobel]")  # takes the preview over
    assert "img [sobel] (preview)" not in viewer.layers
    text, out = _export_and_run(viewer, tmp_path, monkeypatch)
    skipped = "img [sobel] (preview) [gaussian σ=2]"
    assert [name for name, _ in _widget_script.irreproducible(viewer.layers)] == [skipped]
    assert f"{skipped!r} cannot be reproduced" in text
    assert not (out / _widget_script.output_filename(skipped)).exists()
    saved = np.load(out / _widget_script.output_filename("img [sobel]"))
    np.testing.assert_array_equal(saved, viewer.layers["img [sobel]"].data)


def test_exported_script_reproduces_a_step_on_an_unchanged_preview(viewer, qtbot, tmp_path, monkeypatch):
    """A step on a preview is reproduced while the preview holds what the step read."""
    image = np.random.default_rng(29).random((20, 22)).astype(np.float32)
    viewer.add_image(image, name="img")
    edge = dock(viewer, qtbot, "Edge filter")
    edge._preview.value = True
    preview = "img [sobel] (preview)"
    qtbot.waitUntil(lambda: preview in viewer.layers and not edge.previewing, timeout=TIMEOUT)
    smooth = dock(viewer, qtbot, "Smooth")
    smooth.image.value = viewer.layers[preview]
    result = run(smooth, qtbot, viewer, f"{preview} [gaussian σ=2]")
    seen = viewer.layers[preview].data.copy()
    assert _widget_script.irreproducible(viewer.layers) == []
    _, out = _export_and_run(viewer, tmp_path, monkeypatch)
    np.testing.assert_array_equal(np.load(out / _widget_script.output_filename(result.name)), result.data)
    viewer.layers["img"].data = image[::-1].copy()  # the preview follows: the step read another
    qtbot.waitUntil(lambda: not edge.previewing, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not np.array_equal(viewer.layers[preview].data, seen), timeout=TIMEOUT)
    ((name, reason),) = _widget_script.irreproducible(viewer.layers)
    assert name == result.name and "changed" in reason


def test_exported_script_says_which_step_read_a_result_since_recomputed(viewer, qtbot, tmp_path, monkeypatch):
    """A step on a result that a rerun then recomputed (its input had changed) read, in the
    script, the new result: the script saved another result than the step's, and said nothing."""
    rng = np.random.default_rng(30)
    first, second = rng.random((20, 22)).astype(np.float32), rng.random((20, 22)).astype(np.float32)
    layer = viewer.add_image(first, name="img")
    edge = dock(viewer, qtbot, "Edge filter")
    run(edge, qtbot, viewer, "img [sobel]")
    smooth = dock(viewer, qtbot, "Smooth")
    smooth.image.value = viewer.layers["img [sobel]"]
    stale = run(smooth, qtbot, viewer, "img [sobel] [gaussian σ=2]")
    layer.data = second
    run(edge, qtbot, viewer, "img [sobel]")  # the same settings: that layer, recomputed
    text, out = _export_and_run(viewer, tmp_path, monkeypatch)
    ((name, reason),) = _widget_script.irreproducible(viewer.layers)
    assert name == stale.name and "'img [sobel]'" in reason
    assert f"{stale.name!r} cannot be reproduced" in text
    assert not (out / _widget_script.output_filename(stale.name)).exists()
    saved = np.load(out / _widget_script.output_filename("img [sobel]"))
    np.testing.assert_array_equal(saved, viewer.layers["img [sobel]"].data)
    run(smooth, qtbot, viewer, "img [sobel] [gaussian σ=2]")  # rerun on the new result
    assert _widget_script.irreproducible(viewer.layers) == []


def test_exported_script_keeps_a_step_on_a_result_run_again_unchanged(viewer, qtbot, tmp_path, monkeypatch):
    """Running a step again with the same settings on the same data recomputes the same
    result: a later step on it is still reproduced (an input given new data is not)."""
    rng = np.random.default_rng(31)
    layer = viewer.add_image(rng.random((20, 22)).astype(np.float32), name="img")
    edge = dock(viewer, qtbot, "Edge filter")
    run(edge, qtbot, viewer, "img [sobel]")
    smooth = dock(viewer, qtbot, "Smooth")
    smooth.image.value = viewer.layers["img [sobel]"]
    smoothed = run(smooth, qtbot, viewer, "img [sobel] [gaussian σ=2]")
    run(edge, qtbot, viewer, "img [sobel]")  # Run again: the same settings, the same data
    assert _widget_script.irreproducible(viewer.layers) == []
    text, out = _export_and_run(viewer, tmp_path, monkeypatch)
    np.testing.assert_array_equal(np.load(out / _widget_script.output_filename(smoothed.name)), smoothed.data)
    layer.data = layer.data[::-1].copy()  # new data, same shape: the Sobel result is stale
    run(edge, qtbot, viewer, "img [sobel]")
    ((name, _),) = _widget_script.irreproducible(viewer.layers)
    assert name == smoothed.name


def test_channel_filter_preview_of_selected_layers(viewer, qtbot):
    rng = np.random.default_rng(24)
    a, b = rng.random((2, 16, 18)), rng.random((2, 16, 18))
    viewer.add_image(a, name="a")
    viewer.add_image(b, name="b")
    widget = dock(viewer, qtbot, "Channel filter")
    widget.channels.value = "layers"
    widget.layers.value = [viewer.layers["a"], viewer.layers["b"]]
    widget.operation.value = "pointwise"
    viewer.dims.set_current_step(0, 1)
    widget._preview.value = True
    name = "a+b [pointwise mean of channels] (preview)"
    qtbot.waitUntil(lambda: name in viewer.layers and not widget.previewing, timeout=TIMEOUT)
    np.testing.assert_allclose(viewer.layers[name].data[0], (a[1] + b[1]) / 2, rtol=1e-12)
