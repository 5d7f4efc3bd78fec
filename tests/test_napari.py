"""The napari plugin: manifest, widgets, sample data and commands.

Needs napari, pytest-qt and a display: run under Xvfb (pytest-xvfb starts one
when it is installed). The module is skipped where napari is not installed.
The filter maths is tested elsewhere; here each widget's result is compared
with the library call it stands for.
"""

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
npe2 = pytest.importorskip("npe2")
if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("no display: install Xvfb (pytest-xvfb starts it)", allow_module_level=True)

import napari_sepconv as sc  # noqa: E402
from napari_sepconv import _commands  # noqa: E402
from napari_sepconv._widget_presets import preset_kernel  # noqa: E402

pytestmark = pytest.mark.gui

PLUGIN = "napari-sepconv"
WIDGETS = ("Edge filter", "Kernel filter", "Channel filter", "Smooth")
TIMEOUT = 60_000  # ms: the first run in a fresh environment compiles Numba code

# A layer with non-unit scale and a translation: results must keep both.
SCALE = (2.0, 0.5)
TRANSLATE = (10.0, -3.0)


@pytest.fixture
def image():
    return np.random.default_rng(1).random((24, 32)).astype(np.float32)


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
            if n.severity == NotificationSeverity.ERROR
        ]

    return shown


def dock(viewer, qtbot, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)  # background warm-up
    return widget


def run(widget, qtbot, viewer, result_name):
    """Run a docked widget and wait for its result layer."""
    before = {id(layer.data) for layer in viewer.layers}
    worker = widget() if callable(widget) else widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    qtbot.waitUntil(
        lambda: result_name in viewer.layers and id(viewer.layers[result_name].data) not in before,
        timeout=TIMEOUT,
    )
    return viewer.layers[result_name]


# -----------------------------------------------------------------------------
# manifest, menus, sample data, commands


def test_manifest():
    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    assert manifest.name == PLUGIN
    contributions = manifest.contributions
    assert {w.display_name for w in contributions.widgets} == set(WIDGETS)
    assert {s.key for s in contributions.sample_data} >= {"astronaut", "cells"}
    assert len(contributions.commands) >= 4
    for command in contributions.commands:  # every python_name resolves
        module, _, attribute = command.python_name.partition(":")
        assert callable(getattr(__import__(module, fromlist=[attribute]), attribute))
    # one manifest: the top-level napari.yaml is a link to the package's
    top_level = Path(__file__).resolve().parents[1] / "napari.yaml"
    if top_level.exists():
        packaged = Path(sc.__file__).with_name("napari.yaml")
        assert top_level.is_symlink()
        assert top_level.resolve() == packaged.resolve()


def test_manifest_validates():
    from npe2.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["validate", "--imports", PLUGIN])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_widgets_in_layer_filter_menu():
    pm = npe2.PluginManager.instance()
    pm.discover()
    submenus = [
        item.submenu
        for item in pm.iter_menu("napari/layers/filter")
        if getattr(item, "submenu", "").startswith(PLUGIN)
    ]
    assert submenus
    assert pm.get_submenu(submenus[0]).label == "Separable convolution"
    commands = {item.command for item in pm.iter_menu(submenus[0])}
    widget_commands = {w.command for w in pm.get_manifest(PLUGIN).contributions.widgets}
    assert widget_commands <= commands


@pytest.mark.parametrize("name", WIDGETS)
def test_widget_docks(viewer, qtbot, name):
    widget = dock(viewer, qtbot, name)
    assert callable(widget) and callable(widget.run)
    assert widget._warm  # the Numba cache was warmed when the widget opened


def test_sample_data_opens(viewer):
    viewer.open_sample(PLUGIN, "astronaut")
    assert viewer.layers["astronaut"].rgb
    viewer.open_sample(PLUGIN, "cells")
    for name in ("nuclei", "membranes", "vesicles"):
        layer = viewer.layers[name]
        assert layer.data.ndim == 3
        np.testing.assert_allclose(layer.scale, (1.0, 0.25, 0.25))


def test_command_filters_active_layer(viewer, qtbot, image):
    from napari._app_model import get_app_model

    layer = viewer.add_image(image, name="cells", scale=SCALE, translate=TRANSLATE)
    viewer.layers.selection.active = layer
    get_app_model().commands.execute_command("napari-sepconv.scharr").result()
    qtbot.waitUntil(lambda: "cells [scharr]" in viewer.layers, timeout=TIMEOUT)
    result = viewer.layers["cells [scharr]"]
    np.testing.assert_allclose(result.data, sc.scharr(image), rtol=1e-6)
    np.testing.assert_allclose(result.scale, SCALE)
    np.testing.assert_allclose(result.translate, TRANSLATE)


def test_commands_without_viewer(image):
    layer = napari.layers.Image(image, name="cells", scale=SCALE)
    ((data, meta, kind),) = _commands.sobel(layer)
    assert kind == "image" and meta["name"] == "cells [sobel]"
    np.testing.assert_allclose(data, sc.sobel(image), rtol=1e-6)
    np.testing.assert_allclose(meta["scale"], SCALE)
    ((data, meta, _),) = _commands.gaussian(layer)
    np.testing.assert_allclose(data, sc.filter2d(image, preset_kernel("Gaussian", 2.0)), rtol=1e-6)
    rgb = np.random.default_rng(11).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    ((data, meta, _),) = _commands.luminance(napari.layers.Image(rgb, rgb=True, name="photo"))
    assert meta["name"] == "photo [pointwise]" and not meta["rgb"]
    expected = sc.pointwise_filter(rgb, [[0.2125, 0.7154, 0.0721]], dtype=np.float32)[..., 0]
    np.testing.assert_allclose(data, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="not RGB"):
        _commands.luminance(layer)


# -----------------------------------------------------------------------------
# Edge filter


def test_edge_filter_defaults_and_rerun(viewer, qtbot, image):
    layer = viewer.add_image(image, name="cells", scale=SCALE, translate=TRANSLATE, axis_labels=("y", "x"))
    widget = dock(viewer, qtbot, "Edge filter")
    assert widget.image.value is layer
    assert (widget.filter.value, widget.axis.value, widget.mode.value, widget.ndim.value) == (
        "sobel",
        None,
        "reflect",
        2,
    )
    result = run(widget, qtbot, viewer, "cells [sobel]")
    np.testing.assert_allclose(result.data, sc.sobel(image), rtol=1e-6)
    np.testing.assert_allclose(result.scale, SCALE)
    np.testing.assert_allclose(result.translate, TRANSLATE)
    assert result.axis_labels == ("y", "x")
    assert not result.rgb

    # a rerun with the same settings updates that layer; other settings add one
    assert run(widget, qtbot, viewer, "cells [sobel]") is result
    widget.mode.value = "wrap"
    wrapped = run(widget, qtbot, viewer, "cells [sobel wrap]")
    np.testing.assert_allclose(wrapped.data, sc.sobel(image, mode="wrap"), rtol=1e-6)
    assert [lyr.name for lyr in viewer.layers] == ["cells", "cells [sobel]", "cells [sobel wrap]"]


def test_filtering_runs_off_the_gui_thread(viewer, qtbot, image, monkeypatch):
    viewer.add_image(image, name="cells")
    widget = dock(viewer, qtbot, "Edge filter")
    threads = []

    def spy(*args, _sobel=sc.sobel, **kwargs):
        threads.append(threading.current_thread())
        return _sobel(*args, **kwargs)

    monkeypatch.setattr(sc, "sobel", spy)
    run(widget, qtbot, viewer, "cells [sobel]")
    assert threads and threading.main_thread() not in threads


def test_edge_filter_stack_per_plane_and_in_3d(viewer, qtbot):
    stack = np.random.default_rng(2).random((3, 12, 14))
    viewer.add_image(stack, name="stack", scale=(3.0, *SCALE), translate=(1.0, *TRANSLATE))
    widget = dock(viewer, qtbot, "Edge filter")

    widget.axis.value = -1
    result = run(widget, qtbot, viewer, "stack [sobel x]")
    expected = np.stack([sc.sobel(plane, axis=1) for plane in stack])
    np.testing.assert_allclose(result.data, expected, rtol=1e-6)
    assert widget._progress.max == 3  # one step per plane

    widget.axis.value = None
    widget.filter.value = "farid"
    widget.ndim.value = 3
    result = run(widget, qtbot, viewer, "stack [farid 3-D]")
    np.testing.assert_allclose(result.data, sc.farid(stack), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(result.scale, (3.0, *SCALE))
    np.testing.assert_allclose(result.translate, (1.0, *TRANSLATE))


def test_edge_filter_rgb_keeps_three_channels(viewer, qtbot):
    rgb = np.random.default_rng(3).integers(0, 256, (16, 18, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="photo", rgb=True, scale=SCALE, translate=TRANSLATE)
    widget = dock(viewer, qtbot, "Edge filter")
    result = run(widget, qtbot, viewer, "photo [sobel]")
    assert result.rgb and result.data.shape == rgb.shape
    assert result.data.dtype == np.float32  # the default output type for integer input
    expected = sc.sobel(rgb, channel_axis=-1, dtype=np.float32)
    np.testing.assert_allclose(result.data, expected, rtol=1e-6)
    np.testing.assert_allclose(result.scale, SCALE)
    np.testing.assert_allclose(result.translate, TRANSLATE)


def test_edge_filter_channel_axis(viewer, qtbot):
    data = np.random.default_rng(4).random((2, 12, 14))
    viewer.add_image(data, name="two", scale=(1.0, *SCALE))
    widget = dock(viewer, qtbot, "Edge filter")
    widget.channel_axis.value = 0
    result = run(widget, qtbot, viewer, "two [sobel]")
    np.testing.assert_allclose(result.data, sc.sobel(data, channel_axis=0), rtol=1e-6)


def test_edge_filter_keeps_dask_lazy(viewer, qtbot):
    da = pytest.importorskip("dask.array")
    stack = np.random.default_rng(5).random((4, 16, 16)).astype(np.float32)
    viewer.add_image(da.from_array(stack, chunks=(1, 8, 8)), name="lazy")
    widget = dock(viewer, qtbot, "Edge filter")
    result = run(widget, qtbot, viewer, "lazy [sobel]")
    assert isinstance(result.data, da.Array)
    expected = np.stack([sc.sobel(plane) for plane in stack])
    np.testing.assert_allclose(result.data.compute(), expected, rtol=1e-6)

    kernel_widget = dock(viewer, qtbot, "Kernel filter")  # the library's own lazy path
    kernel_widget.image.value = viewer.layers["lazy"]
    result = run(kernel_widget, qtbot, viewer, "lazy [gaussian kernel σ=2]")
    assert isinstance(result.data, da.Array)
    expected = sc.filter2d(stack, preset_kernel("Gaussian", 2.0))
    np.testing.assert_allclose(result.data.compute(), expected, rtol=1e-5, atol=1e-7)


# -----------------------------------------------------------------------------
# Kernel filter


def test_kernel_filter_typed_kernel(viewer, qtbot, image):
    viewer.add_image(image, name="cells", scale=SCALE, translate=TRANSLATE)
    widget = dock(viewer, qtbot, "Kernel filter")
    widget.kernel.value = "text"
    widget.values.value = "1 2 3 2 1; 0 0 0 0 0\n-1 -2 -3 -2 -1"
    assert "3×5 kernel, separable rank 1" in widget._info.value
    assert "15 → 8" in widget._info.value
    result = run(widget, qtbot, viewer, "cells [kernel 3×5]")
    kernel = np.outer([1, 0, -1], [1, 2, 3, 2, 1]).astype(float)
    np.testing.assert_allclose(result.data, sc.filter2d(image, kernel), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result.scale, SCALE)
    np.testing.assert_allclose(result.translate, TRANSLATE)


def test_kernel_filter_preset_with_approximate_rank(viewer, qtbot, image):
    viewer.add_image(image, name="cells", scale=SCALE)
    widget = dock(viewer, qtbot, "Kernel filter")
    widget.preset.value = "disk (mean)"
    widget.size.value = 5
    kernel = preset_kernel("disk (mean)", size=5)
    exact = sc.separate_kernel(kernel)
    assert f"separable rank {exact.rank}" in widget._info.value
    assert 1 in widget.rank.choices and None in widget.rank.choices
    widget.rank.value = 1
    assert "rank-1 approximation error" in widget._info.value
    result = run(widget, qtbot, viewer, "cells [disk 5 rank 1]")
    np.testing.assert_allclose(result.data, sc.filter2d(image, kernel, rank=1), rtol=1e-6, atol=1e-7)


def test_kernel_filter_npy_file(viewer, qtbot, image, tmp_path):
    kernel = np.random.default_rng(6).random((3, 5))
    np.save(tmp_path / "blur.npy", kernel)
    viewer.add_image(image, name="cells")
    widget = dock(viewer, qtbot, "Kernel filter")
    widget.kernel.value = "file"
    widget.file.value = tmp_path / "blur.npy"
    widget.mode.value = "constant"
    widget.cval.value = 0.5
    result = run(widget, qtbot, viewer, "cells [blur constant 0.5]")
    expected = sc.filter2d(image, kernel, mode="constant", cval=0.5)
    np.testing.assert_allclose(result.data, expected, rtol=1e-6, atol=1e-7)


# -----------------------------------------------------------------------------
# Channel filter


def test_channel_filter_rgb_depthwise_separable(viewer, qtbot):
    rgb = np.random.default_rng(7).random((16, 18, 3)).astype(np.float32)
    viewer.add_image(rgb, name="photo", rgb=True, scale=SCALE, translate=TRANSLATE)
    widget = dock(viewer, qtbot, "Channel filter")
    assert widget.operation.value == "depthwise-separable"
    widget.weights.value = "luminance (RGB to grey)"
    assert "multiplications per pixel" in widget._info.value
    result = run(widget, qtbot, viewer, "photo [depthwise-separable gaussian σ=1 luminance]")
    kernels = np.broadcast_to(preset_kernel("Gaussian", 1.0), (3, 9, 9))
    weights = np.array([[0.2125, 0.7154, 0.0721]])
    expected = sc.depthwise_separable_filter(rgb, kernels, weights)
    assert not result.rgb and result.data.shape == rgb.shape[:2]  # one channel out
    np.testing.assert_allclose(result.data, expected[..., 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.scale, SCALE)
    np.testing.assert_allclose(result.translate, TRANSLATE)


def test_channel_filter_depthwise_keeps_rgb_and_splits(viewer, qtbot):
    rgb = np.random.default_rng(8).random((16, 18, 3)).astype(np.float32)
    viewer.add_image(rgb, name="photo", rgb=True, scale=SCALE)
    widget = dock(viewer, qtbot, "Channel filter")
    widget.operation.value = "depthwise"
    widget.kernel.value = "box (mean)"
    kernels = np.broadcast_to(preset_kernel("box (mean)", size=3), (3, 3, 3))
    expected = sc.depthwise_filter(rgb, kernels)
    result = run(widget, qtbot, viewer, "photo [depthwise box 3]")
    assert result.rgb
    np.testing.assert_allclose(result.data, expected, rtol=1e-5, atol=1e-6)

    widget.output.value = "split"
    run(widget, qtbot, viewer, "photo [depthwise box 3 blue]")
    for c, colour in enumerate(("red", "green", "blue")):
        layer = viewer.layers[f"photo [depthwise box 3 {colour}]"]
        np.testing.assert_allclose(layer.data, expected[..., c], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.scale, SCALE)


def test_channel_filter_channel_axis_first_and_pointwise(viewer, qtbot):
    data = np.random.default_rng(9).random((4, 12, 14))
    viewer.add_image(data, name="multi", scale=(1.0, *SCALE), translate=(0.0, *TRANSLATE))
    widget = dock(viewer, qtbot, "Channel filter")
    assert widget.channel_axis.value == 0  # guessed: the one short axis
    widget.operation.value = "pointwise"
    widget.weights.value = "identity (keep channels)"
    result = run(widget, qtbot, viewer, "multi [pointwise identity]")
    np.testing.assert_allclose(result.data, data, rtol=1e-12)
    np.testing.assert_allclose(result.scale, (1.0, *SCALE))
    np.testing.assert_allclose(result.translate, (0.0, *TRANSLATE))


def test_channel_filter_selected_layers_as_channels(viewer, qtbot):
    rng = np.random.default_rng(10)
    a, b = rng.random((12, 14)), rng.random((12, 14))
    viewer.add_image(a, name="a", scale=SCALE)
    viewer.add_image(b, name="b", scale=SCALE)
    widget = dock(viewer, qtbot, "Channel filter")
    widget.channels.value = "layers"
    widget.layers.value = [viewer.layers["a"], viewer.layers["b"]]
    widget.operation.value = "depthwise"
    widget.kernel.value = "Sobel y and x (2 per channel)"
    result = run(widget, qtbot, viewer, "a+b [depthwise sobel y+x]")
    kernels = np.stack([preset_kernel("Sobel y and x (2 per channel)")] * 2)
    expected = sc.depthwise_filter(np.stack([a, b], axis=-1), kernels)
    # 4 output channels, put first (napari's channel slider)
    np.testing.assert_allclose(result.data, np.moveaxis(expected, -1, 0), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(result.scale, (1.0, *SCALE))


# -----------------------------------------------------------------------------
# errors become notifications


def test_no_layer_is_a_notification(viewer, qtbot, errors):
    for name in WIDGETS:
        widget = dock(viewer, qtbot, name)
        assert widget() is None
    messages = errors()
    assert len(messages) == len(WIDGETS)
    assert all("image layer" in m for m in messages)
    assert len(viewer.layers) == 0


def test_impossible_settings_are_notifications(viewer, qtbot, errors, image):
    viewer.add_image(image, name="flat")
    widget = dock(viewer, qtbot, "Edge filter")
    widget.ndim.value = 3
    assert widget() is None
    widget.ndim.value = 2
    widget.axis.value = -3
    assert widget() is None
    kernel_widget = dock(viewer, qtbot, "Kernel filter")
    kernel_widget.kernel.value = "text"
    kernel_widget.values.value = "1 2\n3"
    assert kernel_widget._info.value.startswith("⚠")  # shown as soon as it is typed
    assert kernel_widget() is None
    messages = errors()
    assert len(messages) == 3
    assert "needs 3 spatial axes" in messages[0]
    assert "'in 3-D'" in messages[1]
    assert "same number of values" in messages[2]
    assert len(viewer.layers) == 1


def test_wrong_channel_count_is_a_notification(viewer, qtbot, errors, tmp_path):
    viewer.add_image(np.zeros((4, 10, 10)), name="four")  # 4 channels first
    widget = dock(viewer, qtbot, "Channel filter")
    widget.channel_axis.value = 0
    widget.operation.value = "pointwise"
    widget.weights.value = "luminance (RGB to grey)"
    assert widget() is None
    assert any("needs 3 channels" in m and "has 4" in m for m in errors())

    np.save(tmp_path / "three.npy", np.ones((3, 3, 3)))
    widget.operation.value = "depthwise"
    widget.kernel.value = "file"
    widget.kernel_file.value = tmp_path / "three.npy"
    assert widget() is None
    assert any("3 kernels for 4 channels" in m for m in errors())
    assert len(viewer.layers) == 1


def test_error_inside_the_worker_is_a_notification(viewer, qtbot, errors, image, monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("image: complex values are not supported")

    viewer.add_image(image, name="cells")
    widget = dock(viewer, qtbot, "Edge filter")
    monkeypatch.setattr(sc, "prewitt", refuse)
    widget.filter.value = "prewitt"
    assert widget() is not None  # the run starts, then fails in its thread
    qtbot.waitUntil(lambda: bool(errors()), timeout=TIMEOUT)
    assert errors() == ["Edge filter: image: complex values are not supported"]
    assert "cells [prewitt]" not in viewer.layers


# -----------------------------------------------------------------------------
# kernel presets


@pytest.mark.parametrize("name", ["sobel", "scharr", "prewitt", "farid"])
def test_edge_presets_equal_the_library_edge_filters(name):
    from napari_sepconv._widget_presets import KERNEL_PRESETS

    # rising steps along y and along x, and a diagonal ramp
    y, x = np.mgrid[:16, :18]
    for image in ((y >= 8).astype(float), (x >= 9).astype(float), np.hypot(y, x)):
        for direction, func in (("y", f"{name}_h"), ("x", f"{name}_v")):
            preset = f"{name.capitalize()} {direction}"
            assert preset in KERNEL_PRESETS
            kernel = preset_kernel(preset)
            expected = getattr(sc, func)(image)
            np.testing.assert_allclose(sc.filter2d(image, kernel), expected, atol=1e-12)
    step = (x >= 9).astype(float)
    assert sc.filter2d(step, preset_kernel(f"{name.capitalize()} x"))[8, 9] > 0  # rising: positive


def test_channel_widget_cost_is_what_the_library_runs():
    """A mixed kernel set runs directly for every channel; the widget says what runs."""
    from napari_sepconv._widgets import _channel_costs

    kernels = np.stack(
        [np.outer([1, 2, 1], [1, 0, -1]), np.ones((3, 3)), np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])]
    )[:, None].astype(float)
    ours, normal, outputs = _channel_costs(kernels, None, 3)
    plan = sc.depthwise_filter.plan(np.zeros((8, 8, 3)), kernels)
    assert ours == plan.multiplications == 3 * 9 and outputs == 3 and normal == 3 * 3 * 9
    weights = np.ones((2, 3))
    ours, _, outputs = _channel_costs(kernels, weights, 3)
    assert ours == 3 * 9 + 6 and outputs == 2
    separable = np.stack([np.outer([1, 2, 1], [1, 0, -1])] * 3)[:, None].astype(float)
    assert _channel_costs(separable, None, 3)[0] == 3 * (3 + 3)


@pytest.mark.parametrize("mode", ["wrap", "reflect"])
@pytest.mark.parametrize("make", ["gaussian", "farid"])
def test_a_3d_preview_is_its_plane_of_the_result_at_every_border(mode, make):
    """A 3-D preview filters a slab of planes around the one shown. With ``wrap`` the
    planes past the volume's first and last come from its other end, not from the slab's:
    the preview of plane 0 differed from the result's plane 0 by 0.08."""
    from napari_sepconv._widget_base import Source, edge_job, smooth_job

    volume = np.random.default_rng(1).random((2, 7, 16, 18)).astype(np.float32)
    source = Source.from_layer(napari.layers.Image(volume, name="vol", scale=(1, 2, 1, 1)))
    if make == "gaussian":
        job = smooth_job(source, "gaussian", sigma=1.0, ndim=3, mode=mode)
    else:
        job = edge_job(source, "farid", ndim=3, mode=mode)
    whole = job.run()
    for t, z in [(0, 0), (1, 1), (0, 3), (1, 6)]:
        preview = job.preview((t, z, 0, 0))
        ((data, kwargs, _),) = preview.finish(preview.run())
        np.testing.assert_array_equal(np.asarray(data)[0, 0], whole[t, z])
        assert tuple(kwargs["translate"])[:2] == (t, 2 * z)


def test_an_unsharp_3d_preview_clips_as_the_whole_volume():
    """unsharp_mask clips to [-1, 1] when its image has a negative value, else to [0, 1]: a
    preview's slab without the volume's negative plane clipped otherwise, 1.0 off."""
    from napari_sepconv._widget_base import Source, smooth_job

    volume = np.random.default_rng(1).random((12, 16, 18)).astype(np.float32)
    volume[-1] -= 0.5  # negative values in the last plane only
    source = Source.from_layer(napari.layers.Image(volume, name="vol"))
    job = smooth_job(source, "unsharp", sigma=1.0, amount=3.0, ndim=3)
    whole = job.run()
    assert whole.min() < 0
    for z in (0, 5, 11):
        preview = job.preview((z, 0, 0))
        ((data, _, _),) = preview.finish(preview.run())
        np.testing.assert_array_equal(np.asarray(data)[0], whole[z])
