"""Image files for the batch command: finding inputs, reading pieces, writing outputs aside.

Readers and writers are small picklable objects that hold a path, a shape and a dtype and open the
file for each piece they read or write, so any thread or Dask worker process can use them and
memory holds only the pieces in flight (a memory map is opened for one piece and closed again,
so the pages it touched do not stay in the process).

Formats: TIFF through ``tifffile`` (contiguous uncompressed data memory-mapped, anything else
page by page through its Zarr view), NumPy ``.npy`` (memory-mapped), Zarr v3 arrays (``zarr``),
PNG through ``imageio`` (read whole: a PNG is one plane). Outputs are uncompressed TIFF (BigTIFF
when large), ``.npy`` or Zarr, created under a temporary name in the output folder, filled piece
by piece, and renamed when complete.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import shutil
import stat
import threading
from pathlib import Path

import numpy as np

__all__ = [
    "InputError",
    "PieceError",
    "Source",
    "Target",
    "error_reason",
    "find_inputs",
    "kind_of",
    "open_source",
    "output_path",
    "create_target",
    "commit_target",
    "discard_partial",
    "clear_leftovers",
    "release_handles",
]

SUFFIXES = {".tif": "tif", ".tiff": "tif", ".npy": "npy", ".png": "png", ".zarr": "zarr"}
OUTPUT_SUFFIX = {"tif": ".tif", "npy": ".npy", "zarr": ".zarr", "ome-zarr": ".ome.zarr"}
# tifffile switches to BigTIFF a little below 4 GiB; do the same, explicitly.
BIGTIFF_BYTES = 2**32 - 2**25


class InputError(Exception):
    """An input that cannot be processed; the message says why."""


class PieceError(Exception):
    """A piece of an input that could not be read or written; the message says which and why."""


# -- finding inputs -------------------------------------------------------------------------------


def find_inputs(arguments):
    """Expand INPUT arguments (files, folders, glob patterns) into paths.

    Returns ``(paths, problems)``: the image paths in the order given (folders and patterns
    sorted, duplicates dropped), and ``(path or argument, reason)`` for what named nothing
    usable: a missing file, a folder that cannot be listed, a symbolic link loop or a link to
    nothing. Hidden entries of a folder (such as the unfinished outputs of an interrupted run)
    are never inputs; a folder or pattern is never followed into its subfolders.
    """
    paths, problems, seen = [], [], set()

    def add(path, named):
        reason = entry_problem(path)
        if reason is not None:
            problems.append((str(path), reason))
        elif named and is_leftover(path):
            problems.append((str(path), "an unfinished output of an interrupted run, not an input"))
        elif named or _is_image(path):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                paths.append(Path(path))

    for argument in arguments:
        try:
            _expand(argument, add, problems)
        except OSError as error:  # e.g. inside a folder that cannot be searched
            problems.append((argument, _os_reason(error)))
    return paths, problems


def _expand(argument, add, problems):
    """Add the images that one INPUT argument names; append what it names that is not usable."""
    path = Path(argument)
    if path.is_dir() and not _is_zarr(path):
        try:
            entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        except OSError as error:
            problems.append((argument, f"cannot list the folder: {_os_reason(error)}"))
            return
        found = [
            p
            for p in entries
            if _is_image(p) or (p.suffix.lower() in SUFFIXES and entry_problem(p) is not None)
        ]
        if not found:
            problems.append((argument, "folder holds no .tif, .tiff, .npy, .png or .zarr images"))
        for p in found:
            add(p, named=False)
    elif path.exists() or path.is_symlink():
        add(path, named=True)
    elif glob.has_magic(argument):
        found = sorted(p for p in glob.glob(argument) if not is_leftover(Path(p)))
        if not found:
            problems.append((argument, "no file matches this pattern"))
        for p in found:
            add(Path(p), named=True)
    else:
        problems.append((argument, "no such file or folder"))


def entry_problem(path):
    """Why ``path`` cannot be opened (a link loop, a dangling link, permission, not a file
    or folder), or None."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if error.errno == errno.ENOENT and os.path.islink(path):
            return f"dangling symbolic link (its target {os.readlink(path)} does not exist)"
        return _os_reason(error)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        # a named pipe would block the run on its first read, a device never end
        return f"not a regular file (a {_special_kind(mode)})"
    return None


def _special_kind(mode):
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def _os_reason(error):
    return (error.strerror or str(error)).lower() if isinstance(error, OSError) else str(error)


LEFTOVER_NAME = re.compile(r"\.(?P<name>.+)\.(?P<what>partial|old)-(?P<pid>\d+)")


def is_leftover(path):
    """Whether ``path`` is named as this command's unfinished or replaced outputs are."""
    return LEFTOVER_NAME.fullmatch(Path(path).name) is not None


def _is_image(path):
    try:
        kind_of(path)
    except (InputError, OSError):
        return False
    return True


def _is_zarr(path):
    path = Path(path)
    return path.suffix.lower() == ".zarr" or any(
        (path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup")
    )


def zarr_store_root(path):
    """The outermost Zarr node holding ``path`` (itself when it is not inside another)."""
    path = Path(os.path.abspath(path))
    root = path
    while root.parent != root and _is_zarr(root.parent):
        root = root.parent
    return root


def kind_of(path):
    """The input format of ``path``; raises InputError for a file type not read here."""
    path = Path(path)
    kind = ("zarr" if _is_zarr(path) else None) if path.is_dir() else SUFFIXES.get(path.suffix.lower())
    if kind is None or (kind == "zarr") != path.is_dir():
        raise InputError(
            f"unsupported file type {path.suffix or '(none)'!r}; expected .tif, .tiff, .npy, .png or .zarr"
        )
    if kind == "zarr":
        from . import _ome_zarr

        if _ome_zarr.is_ome_zarr(path):
            return "ome-zarr"
    return kind


def output_name(source_path):
    """The output's path relative to OUTDIR, without extension.

    The input's name without extension; for an array inside a Zarr group, the store's name and
    the array's path inside it, so that arrays of the same name in different groups
    (``one.zarr/0``, ``two.zarr/0``) get different outputs (``one/0``, ``two/0``).
    """
    source_path = Path(os.path.abspath(source_path))
    root = zarr_store_root(source_path) if source_path.is_dir() else source_path
    stem = _strip_suffixes(root.name)
    if root == source_path:
        return Path(stem)
    return Path(stem) / source_path.relative_to(root)


def _strip_suffixes(name):
    lower = name.lower()
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def output_path(source_path, outdir, fmt):
    """``OUTDIR/<input name without extension>.<format>`` (see :func:`output_name`)."""
    name = output_name(source_path)
    return Path(outdir) / name.with_name(name.name + OUTPUT_SUFFIX[fmt])


# -- reading --------------------------------------------------------------------------------------


class Source:
    """A readable image: ``shape``, ``dtype`` (native byte order) and ``source[region]``.

    ``samples_axis`` is the axis that the file itself marks as channels (an RGB PNG or TIFF, the
    channel axis of an OME-Zarr image), else None; ``time_axes`` the axes it marks as time (never
    filtered across). ``spacing``, ``units`` and ``translation`` give each axis's physical pixel
    size, unit and offset where the file says (else None). Reading a region opens the file,
    copies the region out and closes it. ``path`` is what is read, absolute, for workers that
    run elsewhere; ``origin`` the input as named (an OME-Zarr group rather than its level 0);
    ``label`` the path as given.
    """

    def __init__(
        self,
        path,
        kind,
        shape,
        dtype,
        *,
        offset=None,
        samples_axis=None,
        origin=None,
        label=None,
        time_axes=(),
        axes=None,
        spacing=None,
        units=None,
        translation=None,
    ):
        self.path = os.path.abspath(path)
        self.origin = os.path.abspath(origin or path)
        self.label = str(label or path)
        self.kind = kind  # 'raw' (memory-mappable at offset), 'npy', 'tiffpages', 'zarr', 'png'
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)  # as stored, possibly non-native byte order
        self.offset = offset
        self.samples_axis = samples_axis
        self.time_axes = tuple(time_axes)
        self.axes = axes  # NGFF axis dicts of an OME-Zarr input
        self.spacing = spacing or [None] * len(self.shape)
        self.units = units or [None] * len(self.shape)
        self.translation = translation

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __repr__(self):
        return f"Source({self.path!r}, {self.kind}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, region):
        try:
            piece = self._read(region)
        except Exception as error:
            raise PieceError(f"cannot read {_describe(region, self.shape)}: {error_reason(error)}") from None
        return np.ascontiguousarray(piece, dtype=self.dtype.newbyteorder("="))

    def _read(self, region):
        if self.kind == "raw":
            mapped = np.memmap(self.path, self.dtype, "r", self.offset, self.shape)
            try:
                return np.array(mapped[region])
            finally:
                del mapped
        if self.kind == "npy":
            mapped = np.load(self.path, mmap_mode="r")
            try:
                return np.array(mapped[region])
            finally:
                del mapped
        if self.kind == "zarr":
            import zarr

            return zarr.open_array(self.path, mode="r")[region]
        if self.kind == "tiffpages":
            return _tiff_zarr(self.path)[region]
        if self.kind == "png":
            return _png_pixels(self.path)[region]
        raise AssertionError(self.kind)


def open_source(path):
    """Open an input's metadata (not its data) and check it; raises InputError saying why not."""
    path = Path(path)
    reason = entry_problem(path)
    if reason is not None:
        raise InputError(reason)
    kind = kind_of(path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied")
    try:
        source = _OPENERS[kind](path)
    except InputError:
        raise
    except PermissionError as error:
        raise InputError(_os_reason(error)) from None
    except Exception as error:
        raise InputError(f"cannot read {kind} file: {error_reason(error)}") from None
    if source.dtype.kind not in "biuf":
        raise InputError(f"unsupported data type {source.dtype}; expected bool, integer or float")
    if 0 in source.shape:
        raise InputError(f"empty image, shape {source.shape}")
    return source


# TIFF resolution units as NGFF names them, and ImageJ's unit names.
_TIFF_UNITS = {3: "centimeter", 4: "millimeter", 5: "micrometer", 2: "inch"}
_IMAGEJ_UNITS = {
    "um": "micrometer",
    "micron": "micrometer",
    "\u00b5m": "micrometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "nm": "nanometer",
    "m": "meter",
    "inch": "inch",
}


#: TIFF series beside a slide's image that are pictures of it, not images to filter
_AUXILIARY_SERIES = frozenset({"Thumbnail", "Label", "Macro", "Overview"})


def _open_tiff(path):
    import tifffile

    with _logged_warnings("tifffile") as warnings, tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError("not a readable TIFF image" + (f" ({warnings[0]})" if warnings else ""))
        series = tif.series[0]
        images = [s for s in tif.series if s.name not in _AUXILIARY_SERIES]
        if len(images) > 1:  # several images (positions, tiles): which one to filter is not ours to pick
            raise InputError(
                f"holds {len(images)} images (TIFF series); sepconv filters files of one image: "
                "save each on its own (tifffile.TiffFile(path).series[i].asarray())"
            )
        shape = series.shape
        _check_pages_whole(tif, shape, warnings)
        dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
        samples_axis = len(shape) - 1 if series.axes.endswith("S") else None
        offset = series.dataoffset
        if offset is not None and tif.filehandle.size < offset + int(np.prod(shape)) * dtype.itemsize:
            raise InputError("truncated TIFF: the file is shorter than its image data")
        spacing, units = _tiff_spacing(tif, len(shape), samples_axis, series.axes)
        if tif.is_ome:
            _ome_tiff_spacing(tif, series.axes, spacing, units)
    options = {"samples_axis": samples_axis, "spacing": spacing, "units": units}
    if offset is not None:
        return Source(path, "raw", shape, dtype, offset=offset, **options)
    return Source(path, "tiffpages", shape, dtype, **options)


def _check_pages_whole(tif, shape, warnings):
    """Raise InputError where a TIFF lost pages (cut short, or a page's link broken): tifffile
    then reads the pages it reaches, fewer than its description gives, and says so only in a
    logged message."""
    broken = [w for w in warnings if "invalid page offset" in w or "failed to reshape" in w]
    if broken:
        raise InputError(f"damaged or truncated TIFF: {broken[0].split('> ', 1)[-1]}")
    described = (tif.shaped_metadata or [{}])[0].get("shape")
    if described is not None and int(np.prod(described)) != int(np.prod(shape)):
        raise InputError(
            f"damaged or truncated TIFF: its description gives shape {tuple(described)}, "
            f"its pages {tuple(shape)}"
        )


def _tiff_spacing(tif, ndim, samples_axis, letters=""):
    """Physical pixel size of the last two non-sample axes (and ImageJ's z spacing, on the
    axis ``letters``, tifffile's axes of the series, name Z), and units."""
    spacing, units = [None] * ndim, [None] * ndim
    page = tif.pages.first
    imagej = tif.imagej_metadata or {}
    unit = _TIFF_UNITS.get(int(page.resolutionunit)) or _IMAGEJ_UNITS.get(str(imagej.get("unit", "")))
    try:
        x_resolution, y_resolution = page.get_resolution()
    except Exception:
        return spacing, units
    if "XResolution" not in page.tags or not x_resolution or not y_resolution:
        return spacing, units
    axes = [a for a in range(ndim) if a != samples_axis]
    if len(axes) < 2:
        return spacing, units
    spacing[axes[-1]], spacing[axes[-2]] = 1.0 / x_resolution, 1.0 / y_resolution
    units[axes[-1]] = units[axes[-2]] = unit
    z = _z_axis(letters, ndim, axes)
    if z is not None and imagej.get("spacing"):
        spacing[z] = float(imagej["spacing"])
        units[z] = unit
    return spacing, units


def _z_axis(letters, ndim, axes):
    """The axis of an ImageJ file's z spacing: the one tifffile names Z; without names
    (or names of another length), the third last of ``axes``."""
    if len(letters) == ndim and all(letter != "Q" for letter in letters):
        return _named_axis(letters, "Z")
    return axes[-3] if len(axes) >= 3 else None


def _named_axis(letters, letter):
    """The axis tifffile's ``letters`` name ``letter``, or None (absent, or named twice)."""
    return letters.index(letter) if letters.count(letter) == 1 else None


_OME_UNITS = {
    "\u00b5m": "micrometer",
    "um": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
}


def _ome_tiff_spacing(tif, axes, spacing, units):
    """Physical sizes of an OME-TIFF's X, Y and Z axes (OME's default unit: micrometre)."""
    import tifffile

    try:
        image = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
        pixels = (image[0] if isinstance(image, list) else image)["Pixels"]
    except Exception:
        return
    for letter in "XYZ":
        size = pixels.get(f"PhysicalSize{letter}")
        axis = _named_axis(axes, letter)
        if size and axis is not None:
            spacing[axis] = float(size)
            units[axis] = _OME_UNITS.get(str(pixels.get(f"PhysicalSize{letter}Unit", "\u00b5m")))


@contextlib.contextmanager
def _logged_warnings(name):
    """Collect what a library logs while a file is opened, instead of printing it."""
    logger = logging.getLogger(name)
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage().splitlines()[0])

    handler = Collect(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _open_npy(path):
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    try:
        return Source(path, "npy", mapped.shape, mapped.dtype)
    finally:
        del mapped


def _open_zarr(path, label=None):
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Group):
        arrays = sorted(name for name, _ in node.arrays())
        if len(arrays) != 1:
            raise InputError(
                f"a Zarr group with {len(arrays)} arrays; name the array itself, "
                f"e.g. {path}/{arrays[0] if arrays else '0'}"
            )
        return _open_zarr(path / arrays[0], label=label or path)
    return Source(path, "zarr", node.shape, node.dtype, label=label)


def _open_ome_zarr(path):
    import zarr

    from . import _ome_zarr

    try:
        image = _ome_zarr.read_image(path)
    except ValueError as error:
        raise InputError(f"not a readable OME-Zarr image ({error})") from None
    array = zarr.open_array(str(image.array_path), mode="r")
    ndim = array.ndim
    axes = image.axes if len(image.axes) == ndim else None
    channels = image.axes_of_type("channel") if axes else []
    return Source(
        image.array_path,
        "zarr",
        array.shape,
        array.dtype,
        origin=path,
        label=path,
        samples_axis=channels[0] if channels else None,
        time_axes=image.axes_of_type("time") if axes else (),
        axes=axes,
        spacing=image.scale if axes else None,
        units=[axis.get("unit") for axis in axes] if axes else None,
        translation=image.translation if axes else None,
    )


def _open_png(path):
    import imageio.v3 as iio

    try:
        props = iio.improps(path)
    except Exception as error:
        raise InputError(f"not a readable PNG image ({_png_reason(error)})") from None
    shape = tuple(props.shape)
    return Source(path, "png", shape, props.dtype, samples_axis=2 if len(shape) == 3 else None)


def _png_reason(error):
    text = error_reason(error)
    return "no PNG decoder could read it" if "Could not find a backend" in text else text


# A PNG is compressed as a whole: each process decodes it once and keeps the pixels until
# release_handles(path), whatever the pieces its filter reads.
_png_cache = {}
_png_lock = threading.Lock()


def _png_pixels(path):
    with _png_lock:  # one decode, whichever thread asks first
        pixels = _png_cache.get(path)
        if pixels is None:
            import imageio.v3 as iio

            try:
                pixels = np.asarray(iio.imread(path))
            except Exception as error:
                raise ValueError(f"not a readable PNG image ({_png_reason(error)})") from None
            pixels.flags.writeable = False
            _png_cache[path] = pixels
    return pixels


_OPENERS = {
    "tif": _open_tiff,
    "npy": _open_npy,
    "zarr": _open_zarr,
    "ome-zarr": _open_ome_zarr,
    "png": _open_png,
}

# Compressed or scattered TIFF data is read page by page through tifffile's Zarr view. Parsing a
# TIFF's pages costs time, so each thread keeps its open files until release_handles(path).
_handles = {}
_handles_lock = threading.Lock()


def _tiff_zarr(path):
    key = (path, threading.get_ident())
    with _handles_lock:
        entry = _handles.get(key)
    if entry is None:
        import tifffile
        import zarr

        tif = tifffile.TiffFile(path)
        entry = (tif, zarr.open_array(tif.series[0].aszarr(), mode="r"))
        with _handles_lock:
            _handles[key] = entry
    return entry[1]


def release_handles(path=None):
    """Close the TIFF files and drop the PNG pixels kept for ``path`` (all when None) here."""
    with _handles_lock:
        keys = [key for key in _handles if path is None or key[0] == str(path)]
        entries = [_handles.pop(key) for key in keys]
        for key in [key for key in _png_cache if path is None or key == str(path)]:
            del _png_cache[key]
    for tif, _ in entries:
        tif.close()


# -- writing --------------------------------------------------------------------------------------


class Target:
    """A writable output being filled under its temporary name: ``target[region] = piece``."""

    def __init__(self, path, kind, shape, dtype, *, offset=None):
        self.path = os.path.abspath(path)
        self.kind = kind  # 'raw' (memory-mappable at offset) or 'zarr'
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.offset = offset

    def __setitem__(self, region, piece):
        try:
            if self.kind == "raw":
                _write_region(self.path, self.offset, self.shape, self.dtype, region, piece)
            else:
                import zarr

                zarr.open_array(self.path, mode="r+")[region] = piece
        except Exception as error:
            raise PieceError(f"cannot write {_describe(region, self.shape)}: {error_reason(error)}") from None


def _write_region(path, offset, shape, dtype, region, piece):
    """Write ``piece`` into ``region`` of a C-ordered array stored at ``offset`` in a file.

    Plain positioned writes, one per contiguous run of the region: faster than a memory map
    into a new (sparse) file, and nothing stays mapped.
    """
    region = tuple(item.indices(n)[:2] for item, n in zip(region, shape))
    piece = np.ascontiguousarray(piece, dtype=dtype)
    # Axes from `split` on are whole in the region; axis split - 1 is the last one cut.
    split = len(shape)
    while split > 0 and region[split - 1] == (0, shape[split - 1]):
        split -= 1
    strides = np.cumprod((1,) + tuple(shape[::-1]))[::-1][1:] * dtype.itemsize
    fd = os.open(path, os.O_WRONLY)
    try:
        for index in np.ndindex(piece.shape[: max(split - 1, 0)]):
            position = offset + sum(
                (start + i) * stride for (start, _), i, stride in zip(region, index, strides)
            )
            if split > 0:
                position += region[split - 1][0] * strides[split - 1]
            run = memoryview(piece[index]).cast("B")
            while run:
                written = os.pwrite(fd, run, position)
                run, position = run[written:], position + written
    finally:
        os.close(fd)


def partial_path(final):
    """The temporary name an output is written under: hidden, in the same folder."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


def create_target(final, fmt, shape, dtype, *, chunks, channel_last=False, record=None, physical=None):
    """Create an empty output under its temporary name; returns a Target to fill.

    ``record`` (how the output is made, see ``_resume``) goes into the output's metadata;
    ``physical`` (a TIFF's ``resolution``, ``resolutionunit`` and ImageJ ``unit``/``spacing``)
    into a TIFF output. An OME-Zarr output is a group: the Target fills its level 0, array ``0``.
    """
    from . import _resume

    path = partial_path(final)
    _remove(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    attributes = {_resume.RECORD_KEY: record} if record is not None else {}
    if fmt == "npy":
        mapped = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        offset = mapped.offset
        del mapped
        if record is not None:
            with open(path, "ab") as handle:
                handle.write(_resume.npy_trailer(record))
        return Target(path, "raw", shape, dtype, offset=offset)
    if fmt == "tif":
        import tifffile

        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        extra = {"planarconfig": "contig"} if channel_last else {}
        physical = dict(physical or {})
        metadata = {**attributes, **{k: physical.pop(k) for k in ("unit", "spacing") if k in physical}}
        mapped = tifffile.memmap(
            path,
            shape=shape,
            dtype=dtype,
            photometric="minisblack",
            bigtiff=nbytes > BIGTIFF_BYTES,
            metadata=metadata,
            **physical,
            **extra,
        )
        offset = mapped.offset
        del mapped
        return Target(path, "raw", shape, dtype, offset=offset)
    if fmt == "zarr":
        import zarr

        zarr.create_array(
            str(path),
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            zarr_format=3,
            fill_value=0,
            attributes=attributes,
        )
        return Target(path, "zarr", shape, dtype)
    if fmt == "ome-zarr":
        import zarr

        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
        group.attrs.update(attributes)
        return Target(path / "0", "zarr", shape, dtype)
    raise ValueError(f"unknown output format {fmt!r}")


def create_level(final, name, shape, dtype, chunks):
    """Add a pyramid level array to an OME-Zarr output being written; returns its Target."""
    import zarr

    group = zarr.open_group(str(partial_path(final)), mode="r+")
    group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    return Target(partial_path(final) / name, "zarr", shape, dtype)


def commit_target(target, final):
    """Give a complete output its final name (replacing an older one)."""
    path, final = partial_path(final), Path(final)
    if path.is_file():
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(path, final)
        return
    # A folder (Zarr) cannot replace another in one step: move the old one aside first, so the
    # final name never holds a half-written output.
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove(old)
        os.rename(final, old)
    os.rename(path, final)
    if old is not None:
        _remove(old)


def discard_partial(final):
    """Remove this process's unfinished output for ``final``, if it made one."""
    _remove(partial_path(final))


def clear_leftovers(folder):
    """Remove what killed runs left in ``folder``: outputs of ours, unfinished or replaced,
    whose process is gone (whatever the input or format they were for). Returns their names."""
    folder = Path(folder)
    cleared = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return cleared
    for leftover in entries:
        match = LEFTOVER_NAME.fullmatch(leftover.name)
        if match and not _process_alive(int(match["pid"])):
            _remove(leftover)
            cleared.append(leftover.name)
    return cleared


def _process_alive(pid):
    if pid == os.getpid():
        return False  # a leftover of an earlier process that had our number
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path):
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


# -- messages -------------------------------------------------------------------------------------


def error_reason(error):
    """The first line of an exception's message, for a one-line report."""
    line = (str(error).strip() or type(error).__name__).splitlines()[0]
    return line if len(line) <= 300 else line[:300] + "..."


def _describe(region, shape):
    """Where a piece lies, e.g. 'axis 0 [4:8] of 16': its first axis not taken whole."""
    for axis, item in enumerate(region if isinstance(region, tuple) else (region,)):
        if isinstance(item, slice):
            start, stop, _ = item.indices(shape[axis])
            if (start, stop) != (0, shape[axis]):
                return f"axis {axis} [{start}:{stop}] of {shape[axis]}"
        elif isinstance(item, (int, np.integer)):
            return f"axis {axis} index {int(item)}"
    return "the whole image"
