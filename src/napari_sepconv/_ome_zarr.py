"""OME-Zarr (NGFF 0.4 and 0.5) images for the batch command, through the ``ome-zarr`` library.

Inputs: a multiscale group is read at level 0; its axes (names, types, units) and level 0's scale
and translation come with it, so the channel axis and time axis are known and carried to the
output. Outputs: the metadata of a multiscale group written by ``ome_zarr.writer`` (NGFF 0.5 on
Zarr v3), over arrays that the batch runner fills piece by piece.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Image", "is_ome_zarr", "read_image", "ngff_axes", "write_metadata", "level_transforms"]

# The order NGFF asks for: time, then channel, then space.
_TYPE_ORDER = {"time": 0, "channel": 1, "space": 2}
_SPACE_NAMES = ("x", "y", "z")


@dataclass
class Image:
    """Level 0 of an OME-Zarr multiscale image: where its array is and what its axes mean."""

    array_path: Path
    axes: list = field(default_factory=list)  # NGFF axis dicts: name, type, unit
    scale: list | None = None
    translation: list | None = None

    def axes_of_type(self, kind):
        return [i for i, axis in enumerate(self.axes) if axis.get("type") == kind]


def _multiscales(attributes):
    ome = attributes.get("ome")
    if isinstance(ome, dict) and "multiscales" in ome:
        return ome["multiscales"]
    return attributes.get("multiscales")


def is_ome_zarr(path):
    """Whether ``path`` is a Zarr group with NGFF multiscales metadata."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception:
        return False
    return isinstance(node, zarr.Group) and bool(_multiscales(dict(node.attrs)))


def read_image(path):
    """The first image of an OME-Zarr group at ``path``, level 0; raises ValueError if none.

    The ``ome-zarr`` reader finds the image and checks its metadata. Where it refuses metadata
    that still says what is needed (older or looser writers: axes named but not typed, ...),
    the group's own multiscales entry is used, its axis types taken from their names.
    """
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    try:
        with _quiet():
            location = parse_url(str(path), mode="r")
            if location is None:
                raise ValueError("not an OME-Zarr image")
            nodes = [
                node for node in Reader(location)() if any(isinstance(s, Multiscales) for s in node.specs)
            ]
        if not nodes:
            raise ValueError("no multiscale image in this OME-Zarr group")
        attributes = dict(nodes[0].zarr.root_attrs)
    except Exception as error:
        attributes = dict(zarr.open_group(str(path), mode="r").attrs)
        if not _multiscales(attributes):
            raise ValueError(str(error)) from None
    multiscale = _multiscales(attributes)[0]
    try:
        level0 = multiscale["datasets"][0]
        axes = [_typed(axis) for axis in multiscale.get("axes", [])]
        scale, translation = _transforms(
            multiscale.get("coordinateTransformations"), level0.get("coordinateTransformations"), len(axes)
        )
        return Image(Path(path) / level0["path"], axes, scale, translation)
    except (KeyError, IndexError, TypeError) as error:
        raise ValueError(f"malformed multiscales metadata ({error!r})") from None


def _typed(axis):
    """An NGFF axis as a dict with its type (older versions name axes only: t, c, z, y, x)."""
    axis = dict(axis) if isinstance(axis, dict) else {"name": str(axis)}
    if not axis.get("type"):
        name = str(axis.get("name", "")).lower()
        kind = {"t": "time", "c": "channel"}.get(name, "space" if name in ("x", "y", "z") else None)
        if kind:
            axis["type"] = kind
    return axis


def _transforms(group_level, dataset_level, ndim):
    """Level 0's effective scale and translation (dataset transform, then the multiscale's)."""
    scale, translation = [1.0] * ndim, [0.0] * ndim
    for transforms in (dataset_level or [], group_level or []):
        for transform in transforms:
            if transform.get("type") == "scale" and "scale" in transform:
                translation = [t * s for t, s in zip(translation, transform["scale"])]
                scale = [a * b for a, b in zip(scale, transform["scale"])]
            elif transform.get("type") == "translation" and "translation" in transform:
                translation = [a + b for a, b in zip(translation, transform["translation"])]
    return scale, translation


def ngff_axes(ndim, channel_axis, time_axes=(), known=None):
    """NGFF axis dicts for an array of ``ndim`` axes, and the order NGFF wants them in.

    ``known`` (axis dicts of an OME-Zarr input) is used as it is. Otherwise the channel axis is
    ``c``, time axes ``t``, and the other axes are space, named ``x``, ``y``, ``z`` from the
    last. Returns ``(axes, order)``: ``order`` lists the input axes as the output stores them.
    Raises ValueError when the axes cannot be an NGFF image (more than 3 space axes, ...).
    """
    if known:
        axes = [dict(axis) for axis in known]
    else:
        axes = [None] * ndim
        if channel_axis is not None:
            axes[channel_axis] = {"name": "c", "type": "channel"}
        for axis in time_axes:
            axes[axis] = {"name": "t", "type": "time"}
        rest = [a for a in range(ndim) if axes[a] is None]
        if len(rest) > 4:
            raise ValueError(
                "an OME-Zarr image has at most 4 axes besides its channels (t, z, y, x); "
                f"this one has {len(rest)}"
            )
        names = list(_SPACE_NAMES[: min(3, len(rest))])
        for axis, name in zip(reversed(rest), names):
            axes[axis] = {"name": name, "type": "space"}
        for axis in rest[: len(rest) - len(names)]:
            axes[axis] = {"name": "t", "type": "time"}
    order = sorted(range(ndim), key=lambda a: (_TYPE_ORDER.get(axes[a].get("type"), 1), a))
    kinds = [axes[a].get("type") for a in order]
    if kinds.count("space") not in (2, 3) or kinds.count("time") > 1 or kinds.count("channel") > 1:
        raise ValueError(
            "cannot write these axes as OME-Zarr (it needs 2 or 3 space axes, at most "
            "one time and one channel axis): " + ", ".join(a["name"] for a in axes)
        )
    return [axes[a] for a in order], order


def level_transforms(scale, translation, factors, *, block_means=True):
    """Scale and translation of a level downsampled by ``factors``.

    A block mean lies at the centre of its block (shifted by half a block less half a pixel);
    a subsampled pixel lies where it was.
    """
    shift = 0.5 if block_means else 0.0
    return [
        {"type": "scale", "scale": [float(s * f) for s, f in zip(scale, factors)]},
        {
            "type": "translation",
            "translation": [float(t + s * (f - 1) * shift) for t, s, f in zip(translation, scale, factors)],
        },
    ]


def write_metadata(group_path, axes, level_paths, transforms, attributes=None):
    """Write the NGFF 0.5 multiscales metadata of a group whose level arrays exist already."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(str(group_path), mode="r+")
    datasets = [
        {"path": path, "coordinateTransformations": transform}
        for path, transform in zip(level_paths, transforms)
    ]
    with _quiet():
        write_multiscales_metadata(group, datasets, fmt=FormatV05(), axes=axes)
    if attributes:
        group.attrs.update(attributes)


class _quiet:
    """Keep the library's informational logging off the command's stderr."""

    def __enter__(self):
        self.logger = logging.getLogger("ome_zarr")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
