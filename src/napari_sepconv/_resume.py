"""How an output was made, recorded in the output itself, so that a rerun resumes safely.

Each output carries a record: the filter, every parameter that shapes its values (arrays as a
SHA-256 of their bytes with their shape and dtype), the output format, the library's version and
the input's identity (its path, size and modification time). It lives in the output's own
metadata, written before the output gets its final name, so an output never exists without it:

- TIFF: the JSON image description that tifffile writes (``sepconv`` key);
- Zarr and OME-Zarr: the array's or group's attributes (``sepconv`` key);
- ``.npy``: a trailer after the array data, which NumPy's readers ignore (the format has no room
  for anything else, and a file beside it could be lost or left stale on its own).

A rerun skips an output only when its record equals the one it would write.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["make_record", "read_record", "differences", "NPY_TRAILER", "input_identity"]

NPY_TRAILER = b"\n#sepconv-record:"
RECORD_KEY = "sepconv"


def _jsonable(value):
    """Parameters as JSON: arrays as their hash, shape and dtype."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
            "shape": list(array.shape),
            "dtype": array.dtype.str,
        }
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, np.generic):
        return value.item()
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, float) and not np.isfinite(value):
        return repr(value)
    return value


def input_identity(source):
    """The input's path, size and modification time (a folder's: over all its files)."""
    path = Path(source.origin)
    if path.is_dir():
        size, mtime = 0, path.stat().st_mtime_ns
        for folder, _, files in os.walk(path):
            for name in files:
                info = os.stat(os.path.join(folder, name))
                size += info.st_size
                mtime = max(mtime, info.st_mtime_ns)
    else:
        info = path.stat()
        size, mtime = info.st_size, info.st_mtime_ns
    return {"path": os.path.realpath(path), "size": size, "mtime_ns": mtime}


def make_record(settings, source, version):
    """The record of an output made from ``source`` with ``settings`` (a dict of parameters)."""
    record = {"settings": _jsonable(settings), "version": version, "input": input_identity(source)}
    return json.loads(json.dumps(record))  # as it reads back


def read_record(final, fmt):
    """The record stored in an existing output, or None when it has none (or is unreadable)."""
    final = Path(final)
    try:
        if fmt == "tif":
            import tifffile

            with tifffile.TiffFile(final) as tif:
                metadata = tif.shaped_metadata or ({},)
                return metadata[0].get(RECORD_KEY)
        if fmt in ("zarr", "ome-zarr"):
            import zarr

            return zarr.open(str(final), mode="r").attrs.get(RECORD_KEY)
        if fmt == "npy":
            return _read_npy_trailer(final)
    except Exception:
        return None
    return None


def npy_trailer(record):
    """The bytes appended after a ``.npy`` output's data."""
    return NPY_TRAILER + json.dumps(record, sort_keys=True).encode() + b"\n"


def _read_npy_trailer(path):
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(handle)
        end = handle.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        handle.seek(end)
        tail = handle.read(1 << 20)
    if not tail.startswith(NPY_TRAILER):
        return None
    return json.loads(tail[len(NPY_TRAILER) :])


def differences(found, wanted):
    """What differs between two records, briefly (e.g. 'filter: sobel, not prewitt')."""
    if found is None:
        return ["it has no record of how it was made (not made by sepconv)"]
    lines = []

    def walk(a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{where}.{key}" if where else key)
        elif a != b:
            lines.append(f"{where}: {_short(a)}, now {_short(b)}")

    walk(found, wanted, "")
    return lines


def _short(value):
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
