"""Every result of the napari plugin as a line of Python.

A result layer's ``metadata["sepconv"]`` records the library call that made it
(function, every argument, the library version) and ``"python"``: a snippet
that, run with ``viewer`` (a napari viewer holding the input layer under its
name) in scope, recomputes the layer's data into ``result``. :func:`script`
turns the steps taken in a viewer into one ``.py`` file that reads the inputs,
runs every step in order and saves the results, without napari.

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import napari_sepconv as sc

_HEADER = ["import numpy as np", "", "import napari_sepconv as sc", ""]


def literal(value: Any) -> str:
    """Python source for ``value`` (numbers exactly, arrays with their dtype)."""
    if isinstance(value, type) and issubclass(value, np.generic):
        return f"np.{value.__name__}"
    if isinstance(value, np.dtype):
        return f"np.{value.type.__name__}"
    if isinstance(value, np.ndarray):
        return f"np.array({value.tolist()!r}, dtype=np.{value.dtype.name})"
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + "".join(literal(v) + ", " for v in value).rstrip(" ") + ")"
    return repr(value)


def _plain(value: Any) -> Any:
    """``value`` in JSON-like form, for the metadata record."""
    if isinstance(value, type) and issubclass(value, np.generic):
        return value.__name__
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _call(func: partial) -> tuple[str, dict]:
    """The public name of a partial of a library function, and its arguments."""
    name = func.func.__name__
    if getattr(sc, name, None) is not func.func:  # wrapped: find it by identity
        name = next((n for n in sc.__all__ if getattr(sc, n, None) is func.func), name)
    return name, dict(func.keywords)


def body(job: Any, layout: tuple) -> list[str]:
    """Lines that compute the layer's data from ``image`` (the input array)."""
    name, arguments = _call(job.func)
    lines = []
    source = job.source
    if source.channel_axis is not None and source.channel_axis != source.data.ndim - 1:
        lines.append(f"image = np.moveaxis(image, {source.channel_axis}, -1)  # channels last")
    call_args = []
    for key, value in arguments.items():
        if isinstance(value, np.ndarray) and value.size > 1:  # kernels, weights: a line each
            lines.append(f"{key} = {literal(value)}")
            call_args.append(f"{key}={key}")
        else:
            call_args.append(f"{key}={literal(value)}")
    call_args = ", ".join(call_args)
    lines.append(f"lead = image.shape[: image.ndim - {job.core_ndim}]  # a stack of blocks")
    lines.append(f"blocks = [sc.{name}(image[i], {call_args}) for i in np.ndindex(lead)]")
    lines.append("result = np.stack(blocks).reshape(lead + blocks[0].shape)")
    kind = layout[0]
    if kind == "take":
        lines.append(f"result = result[..., {layout[1]}]")
    elif kind == "move":
        lines.append(f"result = np.moveaxis(result, -1, {layout[1]})")
    elif kind == "colours" and len(layout) == 3:
        lines.append(f"result = np.moveaxis(result[..., :{layout[1]}], -1, {layout[2]})  # alpha left out")
    elif kind == "colours":
        lines.append(f"result = result[..., :{layout[1]}]  # the colours, alpha left out")
    return lines


def data_version(layer: Any) -> list | None:
    """What tells the data a layer holds now from what it held before.

    ``["preview", n]`` for a preview (each update gives it a new ``n``); for a result,
    ``["result", h]``, ``h`` a hash of its Python and of what its inputs held (a rerun that
    recomputes the same data keeps it, one on changed inputs changes it); for any other
    layer, ``["data", ...]`` of its data array's identity and a sample of its values (so
    a layer given new data changes it); None without data.
    """
    metadata = getattr(layer, "metadata", None)
    if isinstance(metadata, dict):
        if "sepconv_preview" in metadata:
            return ["preview", metadata.get("sepconv_shown")]
        record = metadata.get("sepconv")
        if isinstance(record, dict) and "python" in record:
            text = json.dumps([record["python"], record.get("input_versions")], default=str)
            return ["result", hashlib.sha1(text.encode()).hexdigest()[:16]]
    return _data_fingerprint(getattr(layer, "data", None))


def _data_fingerprint(data: Any) -> list | None:
    if data is None:
        return None
    if hasattr(data, "dask") and isinstance(getattr(data, "name", None), str):
        return ["data", data.name]  # a dask array's name is a token of its graph
    if isinstance(data, np.ndarray) and data.ndim > 0:
        sample = data[tuple(slice(None, None, max(1, n // 8)) for n in data.shape)]
        digest = hashlib.sha1(np.ascontiguousarray(sample).tobytes()).hexdigest()[:16]
        return ["data", id(data), list(data.shape), data.dtype.str, digest]
    return ["data", id(data)]


def _read_from_viewer(inputs: tuple) -> list[str]:
    if len(inputs) == 1:
        return [f"image = np.asarray(viewer.layers[{inputs[0]!r}].data)"]
    names = ", ".join(repr(n) for n in inputs)
    return [f"image = np.stack([np.asarray(viewer.layers[n].data) for n in ({names})], axis=-1)"]


def call_record(job: Any, layout: tuple) -> dict:
    """The metadata that makes a result reproducible."""
    name, arguments = _call(job.func)
    lines = body(job, layout)
    snippet = "\n".join(
        [
            *_HEADER,
            f"# napari-sepconv {sc.__version__}: {job.name!r}",
            *_read_from_viewer(job.source.inputs),
            *lines,
        ]
    )
    return {
        "function": f"napari_sepconv.{name}",
        "arguments": {k: _plain(v) for k, v in arguments.items()},
        "inputs": list(job.source.inputs),
        # what each input held when it was read (see data_version)
        "input_versions": (
            list(job.source.versions) if len(job.source.versions) == len(job.source.inputs) else None
        ),
        "input_channel_axis": None if job.source.rgb else job.source.channel_axis,
        "block_ndim": job.core_ndim,
        "version": sc.__version__,
        "body": lines,
        "python": snippet + "\n",
    }


# -----------------------------------------------------------------------------
# export of every step taken in a viewer


def steps(layers: Any) -> list[Any]:
    """The sepconv results among ``layers``, in the order they were made."""
    found = [
        layer
        for layer in layers
        if isinstance(getattr(layer, "metadata", None), dict)
        and "python" in layer.metadata.get("sepconv", {})
    ]
    return sorted(found, key=lambda layer: layer.metadata["sepconv"].get("step", 0))


def _why_not_reproducible(record: dict, by_name: dict) -> str | None:
    """Why the step ``record`` describes cannot be run again on the layers ``by_name``
    (name -> layer), or None where it can: a layer it read is gone, or holds other data
    than it read (a preview updated since, a result recomputed by a rerun or replaced)."""
    versions = record.get("input_versions")  # None in records made before they were kept
    for index, name in enumerate(record["inputs"]):
        if name not in by_name:
            return f"it read layer {name!r}, which is no longer in the viewer"
        then = None if versions is None else versions[index]
        if versions is None or then == data_version(by_name[name]):
            continue
        if then is not None and then[0] == "preview":
            return f"it read the preview {name!r}, which has changed since"
        return f"it read layer {name!r}, which has been recomputed or replaced since"
    return None


def irreproducible(viewer_layers: Any) -> list[tuple[str, str]]:
    """(name, reason) of each sepconv result among ``viewer_layers`` that :func:`script`
    cannot compute again as it is (see :func:`_why_not_reproducible`), in step order."""
    by_name = {layer.name: layer for layer in viewer_layers}
    found = []
    for layer in steps(viewer_layers):
        reason = _why_not_reproducible(layer.metadata["sepconv"], by_name)
        if reason is not None:
            found.append((layer.name, reason))
    return found


def _identifier(name: str, taken: set) -> str:
    base = re.sub(r"\W+", "_", name).strip("_").lower() or "layer"
    if base[0].isdigit():
        base = "layer_" + base
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _reader(layer: Any, data_dir: Path, script_dir: Path, files: set) -> tuple[list[str], str]:
    """Lines that read a layer's data as napari did, and a note on where from.

    Layers opened from a file are read with the library napari's reader
    uses for that format; samples of this plugin are made again; anything
    else is saved next to the script as a ``.npy`` file.
    """
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    sample = getattr(source, "sample", None)
    if path:
        suffix = Path(path).suffix.lower()
        if suffix == ".npy":
            return [f"np.load({str(path)!r})"], path
        if suffix in (".tif", ".tiff"):
            return ["__import__('tifffile').imread(" + repr(str(path)) + ")"], path
        if suffix == ".zarr" or Path(path).is_dir():
            return [f"np.asarray(__import__('dask.array').array.from_zarr({str(path)!r}))"], path
        return [f"np.asarray(__import__('imageio.v3').v3.imread({str(path)!r}))"], path
    if sample and sample[0] == "napari-sepconv":
        name = sample[1]
        expr = f"_sample({name!r}, {layer.name!r})"
        return [expr], f"sample {name!r} of napari-sepconv"
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / _unique(re.sub(r"[^\w.-]+", "_", layer.name), files)
    np.save(target, np.asarray(layer.data))
    relative = target.relative_to(script_dir).as_posix()
    return [f"np.load(HERE / {relative!r})"], f"saved from the viewer as {relative}"


_SAMPLE_READER = '''
def _sample(name, layer_name):
    """A napari-sepconv sample layer, made again as napari made it."""
    from napari_sepconv import _sample_data

    for data, meta, _ in getattr(_sample_data, name)():
        names = meta.get("name", layer_name)
        if isinstance(names, str):
            return np.asarray(data)
        axis = meta.get("channel_axis", 0)
        return np.take(np.asarray(data), names.index(layer_name), axis=axis)
'''


def output_filename(name: str, files: set | None = None) -> str:
    """The file an exported script saves a result layer in; another than those in ``files``
    (the names that differ only where they are not kept, ``a b`` and ``a_b``, would share
    one), which it is added to."""
    stem = re.sub(r"[^\w.\[\]=-]+", "_", name)
    return stem + ".npy" if files is None else _unique(stem, files)


def _unique(stem: str, files: set) -> str:
    """``stem.npy``, or ``stem-2.npy``, ``stem-3.npy``, ... : the first not in ``files``,
    which it is added to."""
    name, number = f"{stem}.npy", 1
    while name.lower() in files:  # case-insensitive file systems too
        number += 1
        name = f"{stem}-{number}.npy"
    files.add(name.lower())
    return name


def script(viewer_layers: Any, path: str | Path) -> str:
    """Write every sepconv step among ``viewer_layers`` as one ``.py`` file.

    The script reads the inputs, runs each step in the order it was taken
    (a step on an earlier step's result uses that result) and saves each
    result as ``<output dir>/<layer name>.npy`` (the output dir is the first
    command-line argument, by default ``<script name>_results`` next to the
    script; characters a file name may not hold become ``_``, and ``-2``, ``-3``
    ... keep two names that would then be one apart). A step that cannot be computed
    again (it read a layer that is gone, or whose data has changed since: see
    :func:`irreproducible`) is left out, with a comment that says why; a step on its result
    reads that result as the viewer holds it. Returns the script's text.
    """
    path = Path(path)
    results = steps(viewer_layers)
    if not results:
        raise ValueError("no sepconv results in the viewer: run a filter first")
    data_dir = path.with_name(path.stem + "_inputs")
    by_name = {layer.name: layer for layer in viewer_layers}
    made: dict[str, str] = {}  # layer name -> variable
    taken: set = set()
    input_files: set = set()  # names taken in the folder of inputs saved beside the script
    output_files: set = set()  # names taken in the results' folder
    lines = [
        f'"""Every napari-sepconv step taken in a napari viewer, in order (napari-sepconv {sc.__version__}).',
        "",
        "Run: python " + path.name + " [OUTPUT_DIR]",
        '"""',
        "",
        "import sys",
        "from pathlib import Path",
        "",
        *_HEADER,
        "HERE = Path(__file__).resolve().parent",
        f"OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / {path.stem + '_results'!r}",
        "OUT.mkdir(parents=True, exist_ok=True)",
    ]
    uses_sample = False
    for number, layer in enumerate(results, start=1):
        record = layer.metadata["sepconv"]
        reason = _why_not_reproducible(record, by_name)
        if reason is not None:
            lines += ["", f"# step {number}: {layer.name!r} cannot be reproduced: {reason}; not saved"]
            continue
        inputs = []
        for name in record["inputs"]:
            if name in made:
                inputs.append(made[name])
                continue
            variable = _identifier(name, taken)
            (expr,), note = _reader(by_name[name], data_dir, path.parent, input_files)
            uses_sample |= expr.startswith("_sample(")
            lines += ["", f"# input {name!r}: {note}", f"{variable} = {expr}"]
            made[name] = variable
            inputs.append(variable)
        lines += ["", f"# step {number}: {layer.name!r}, {record['function']}"]
        if len(inputs) == 1:
            lines.append(f"image = {inputs[0]}")
        else:
            lines.append(f"image = np.stack([{', '.join(inputs)}], axis=-1)")
        lines += record["body"]
        variable = _identifier(layer.name, taken)
        made[layer.name] = variable
        filename = output_filename(layer.name, output_files)
        lines += [f"{variable} = result", f"np.save(OUT / {filename!r}, result)"]
    if uses_sample:
        lines[lines.index("HERE = Path(__file__).resolve().parent") : 0] = _SAMPLE_READER.split("\n")[1:]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text
