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
import glob
import logging
import os
import re
import shutil
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
    "remove_stale_partials",
    "release_handles",
]

SUFFIXES = {".tif": "tif", ".tiff": "tif", ".npy": "npy", ".png": "png", ".zarr": "zarr"}
OUTPUT_SUFFIX = {"tif": ".tif", "npy": ".npy", "zarr": ".zarr"}
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
    sorted, duplicates dropped), and ``(argument, reason)`` for arguments that named nothing usable.
    """
    paths, problems, seen = [], [], set()

    def add(path):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            paths.append(Path(path))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir() and not _is_zarr(path):
            found = sorted(p for p in path.iterdir() if _is_image(p))
            if not found:
                problems.append((argument, "folder holds no .tif, .tiff, .npy, .png or .zarr images"))
            for p in found:
                add(p)
        elif path.exists():
            add(path)
        elif glob.has_magic(argument):
            found = sorted(glob.glob(argument))
            if not found:
                problems.append((argument, "no file matches this pattern"))
            for p in found:
                add(p)
        else:
            problems.append((argument, "no such file or folder"))
    return paths, problems


def _is_image(path):
    try:
        kind_of(path)
    except InputError:
        return False
    return True


def _is_zarr(path):
    return path.suffix.lower() == ".zarr" or (path / "zarr.json").is_file()


def kind_of(path):
    """The input format of ``path``; raises InputError for a file type not read here."""
    path = Path(path)
    kind = ("zarr" if _is_zarr(path) else None) if path.is_dir() else SUFFIXES.get(path.suffix.lower())
    if kind is None or (kind == "zarr") != path.is_dir():
        raise InputError(
            f"unsupported file type {path.suffix or '(none)'!r}; expected .tif, .tiff, .npy, .png or .zarr"
        )
    return kind


def output_path(source_path, outdir, fmt):
    """``OUTDIR/<input name without extension>.<format>``."""
    source_path = Path(source_path)
    return Path(outdir) / (source_path.stem + OUTPUT_SUFFIX[fmt])


# -- reading --------------------------------------------------------------------------------------


class Source:
    """A readable image: ``shape``, ``dtype`` (native byte order) and ``source[region]``.

    ``samples_axis`` is the axis that the file itself marks as colour samples (an RGB PNG or
    TIFF), else None. Reading a region opens the file, copies the region out and closes it.
    ``path`` is absolute, for workers that run elsewhere; ``label`` is the path as given.
    """

    def __init__(self, path, kind, shape, dtype, *, offset=None, samples_axis=None):
        self.path = os.path.abspath(path)
        self.label = str(path)
        self.kind = kind  # 'raw' (memory-mappable at offset), 'npy', 'tiffpages', 'zarr', 'png'
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)  # as stored, possibly non-native byte order
        self.offset = offset
        self.samples_axis = samples_axis

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
            import imageio.v3 as iio

            return np.asarray(iio.imread(self.path))[region]
        raise AssertionError(self.kind)


def open_source(path):
    """Open an input's metadata (not its data) and check it; raises InputError saying why not."""
    path = Path(path)
    kind = kind_of(path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied")
    try:
        source = _OPENERS[kind](path)
    except InputError:
        raise
    except Exception as error:
        raise InputError(f"cannot read {kind} file: {error_reason(error)}") from None
    if source.dtype.kind not in "biuf":
        raise InputError(f"unsupported data type {source.dtype}; expected bool, integer or float")
    if 0 in source.shape:
        raise InputError(f"empty image, shape {source.shape}")
    return source


def _open_tiff(path):
    import tifffile

    with _logged_warnings("tifffile") as warnings, tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError("not a readable TIFF image" + (f" ({warnings[0]})" if warnings else ""))
        series = tif.series[0]
        shape = series.shape
        dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
        samples_axis = len(shape) - 1 if series.axes.endswith("S") else None
        offset = series.dataoffset
        if offset is not None and tif.filehandle.size < offset + int(np.prod(shape)) * dtype.itemsize:
            raise InputError("truncated TIFF: the file is shorter than its image data")
    if offset is not None:
        return Source(path, "raw", shape, dtype, offset=offset, samples_axis=samples_axis)
    return Source(path, "tiffpages", shape, dtype, samples_axis=samples_axis)


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


def _open_zarr(path):
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Group):
        arrays = sorted(name for name, _ in node.arrays())
        if len(arrays) != 1:
            raise InputError(
                f"a Zarr group with {len(arrays)} arrays; name the array itself, "
                f"e.g. {path}/{arrays[0] if arrays else '0'}"
            )
        return _open_zarr(path / arrays[0])
    return Source(path, "zarr", node.shape, node.dtype)


def _open_png(path):
    import imageio.v3 as iio

    props = iio.improps(path)
    shape = tuple(props.shape)
    return Source(path, "png", shape, props.dtype, samples_axis=2 if len(shape) == 3 else None)


_OPENERS = {"tif": _open_tiff, "npy": _open_npy, "zarr": _open_zarr, "png": _open_png}

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
    """Close the TIFF files kept open for ``path`` (all when None) in this process."""
    with _handles_lock:
        keys = [key for key in _handles if path is None or key[0] == str(path)]
        entries = [_handles.pop(key) for key in keys]
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


def create_target(final, fmt, shape, dtype, *, chunks, channel_last=False):
    """Create an empty output under its temporary name; returns a Target to fill."""
    path = partial_path(final)
    _remove(path)
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    if fmt == "npy":
        mapped = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        offset = mapped.offset
        del mapped
        return Target(path, "raw", shape, dtype, offset=offset)
    if fmt == "tif":
        import tifffile

        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        extra = {"planarconfig": "contig"} if channel_last else {}
        mapped = tifffile.memmap(
            path, shape=shape, dtype=dtype, photometric="minisblack",
            bigtiff=nbytes > BIGTIFF_BYTES, **extra,
        )
        offset = mapped.offset
        del mapped
        return Target(path, "raw", shape, dtype, offset=offset)
    if fmt == "zarr":
        import zarr

        zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=3, fill_value=0)
        return Target(path, "zarr", shape, dtype)
    raise ValueError(f"unknown output format {fmt!r}")


def commit_target(target, final):
    """Give a complete output its final name (replacing an older one)."""
    path, final = Path(target.path), Path(final)
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


def remove_stale_partials(final):
    """Remove what killed runs left for this output (temporary names of processes gone)."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    leftover_name = re.compile(rf"\.{re.escape(final.name)}\.(partial|old)-(\d+)")
    for leftover in final.parent.iterdir():
        match = leftover_name.fullmatch(leftover.name)
        if match and not _process_alive(int(match[2])):
            _remove(leftover)


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
