"""One-click filters for napari's menus and command palette.

Each filters the active image layer with default settings (edge magnitude per
2-D plane, RGB colours kept apart) in a worker thread, like the widgets do.
Called without a viewer (from a script), each returns the result as napari
layer data tuples instead. Importing this module does not import napari.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._widget_base import (
    USER_ERRORS,
    Job,
    Source,
    channel_job,
    edge_job,
    kernel_job,
    pixel_sizes,
    smooth_job,
)
from ._widget_presets import kernel_filter_tag, preset_kernel, preset_weights

if TYPE_CHECKING:  # napari resolves these names when it injects the arguments
    from napari.layers import Layer
    from napari.viewer import Viewer


def _run(title: str, make_job: Any, image: Layer | None, viewer: Viewer | None) -> Any:
    from napari.layers import Image
    from napari.utils.notifications import show_error

    from ._widgets import start_job

    try:
        if not isinstance(image, Image):
            raise ValueError("select an image layer first")
        job: Job = make_job(Source.from_layer(image))
    except USER_ERRORS as error:
        if viewer is None:
            raise
        show_error(f"{title}: {error}")
        return None
    if viewer is None:
        return job.finish(job.run())
    return start_job(viewer, job, title)


def _edge_command(filter: str) -> Any:
    title = f"{filter.capitalize()} edge magnitude"

    def command(image: Layer | None = None, viewer: Viewer | None = None) -> Any:
        return _run(title, lambda source: edge_job(source, filter), image, viewer)

    command.__name__ = command.__qualname__ = filter
    command.__doc__ = f"""{title} of each 2-D plane of the active image layer."""
    return command


sobel = _edge_command("sobel")
scharr = _edge_command("scharr")
prewitt = _edge_command("prewitt")
farid = _edge_command("farid")


def gaussian(image: Layer | None = None, viewer: Viewer | None = None) -> Any:
    """Gaussian blur (sigma 2 pixels) of each 2-D plane, run as two 1-D passes."""
    kernel = preset_kernel("Gaussian", sigma=2.0)
    tag = kernel_filter_tag("Gaussian", sigma=2.0)  # as the Kernel filter names it
    return _run("Gaussian blur", lambda s: kernel_job(s, kernel, tag), image, viewer)


def gaussian_physical(image: Layer | None = None, viewer: Viewer | None = None) -> Any:
    """Gaussian blur with sigma in the layer's units: twice its finest pixel
    size, so each axis of an anisotropic layer gets its own sigma in pixels;
    in 3-D where the layer has 3 spatial axes."""

    def make(source: Source) -> Job:
        ndim = 3 if source.spatial_ndim >= 3 and _one_kind_of_unit(source, 3) else 2
        finest = min(pixel_sizes(source, ndim)[0])
        return smooth_job(source, "gaussian", sigma=2.0 * finest, ndim=ndim, physical=True)

    return _run("Gaussian blur in layer units", make, image, viewer)


def _one_kind_of_unit(source: Source, ndim: int) -> bool:
    """Whether the last ``ndim`` spatial axes are in units of one kind (not z in micrometres
    and a time axis in seconds)."""
    try:
        pixel_sizes(source, ndim)
    except ValueError:
        return False
    return True


def luminance(image: Layer | None = None, viewer: Viewer | None = None) -> Any:
    """Grey level of an RGB layer: a pointwise filter over its colours."""

    def make(source: Source) -> Job:
        if not source.rgb:
            raise ValueError("the layer is not RGB")
        weights = preset_weights("luminance (RGB to grey)", source.channels, alpha=source.channels == 4)
        return channel_job(source, weights=weights)

    return _run("RGB to grey", make, image, viewer)


def export_script(viewer: Viewer | None = None, path: str | None = None) -> Any:
    """Write every sepconv step taken in the viewer as one Python script (a
    dialog asks where, unless ``path`` is given); the script reproduces the
    results without napari. Returns the path written."""
    from ._widgets import export_script as export

    if viewer is None:
        raise ValueError("export_script needs a napari viewer")
    return export(viewer, path)
