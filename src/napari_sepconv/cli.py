"""The ``sepconv`` command: filter every plane of image stacks, folders of them, or Zarr arrays.

    sepconv FILTER INPUT... -o OUTDIR [options]

See ``sepconv --help`` for the options and examples. Exit status: 0 when every input was written
or already there, 1 when an input failed (each failure is reported on stderr with its path and
reason; the other inputs are still processed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

EDGE_FILTERS = ("sobel", "scharr", "prewitt", "farid")
SMOOTHING_FILTERS = ("gaussian", "dog", "unsharp", "uniform", "laplace")
FILTERS = (
    EDGE_FILTERS
    + (
        "separable",
        "filter2d",
        "depthwise",
        "pointwise",
        "depthwise-separable",
    )
    + SMOOTHING_FILTERS
)
# Filters that take --ndim 3 (the others filter 2-D planes).
VOLUME_FILTERS = EDGE_FILTERS + ("separable",) + SMOOTHING_FILTERS
FORMATS = ("tif", "zarr", "npy", "ome-zarr")
BATCH_MODULES = ("dask", "distributed", "tifffile", "zarr", "tqdm", "imageio", "ome_zarr")
CHANNEL_FILTERS = ("depthwise", "pointwise", "depthwise-separable")
MODES = ("reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant", "grid-wrap")

EXAMPLES = """\
filters:
  sobel, scharr, prewitt, farid   edge magnitude (or one derivative with --axis)
  separable                       1-D kernels, one per axis (--kernel, repeatable)
  filter2d                        a 2-D kernel (--kernel K.npy), split by SVD when cheaper
  depthwise                       one 2-D kernel per channel (--kernel, shape (C,kh,kw) or (C,M,kh,kw))
  pointwise                       mix channels (--weights W.npy of shape (C_out,C_in), --bias)
  depthwise-separable             depthwise then pointwise (--kernel, --weights, --bias)
  gaussian                        Gaussian smoothing (--sigma 2, or one per axis: --sigma 1,2,2)
  dog                             difference of Gaussians (--low-sigma, --high-sigma)
  unsharp                         unsharp mask (--radius, --amount)
  uniform                         box mean (--size)
  laplace                         scipy.ndimage's discrete Laplacian

inputs and outputs:
  INPUT is a file, a folder (its .tif/.tiff/.npy/.png files and .zarr arrays or OME-Zarr images;
  hidden entries are skipped) or a quoted glob pattern. Each input becomes OUTDIR/<name>.<format>
  (an array inside a Zarr group: OUTDIR/<group>/<array>.<format>); the format is the input's
  unless --format says otherwise (.png becomes .tif). OME-Zarr images are read at level 0 with
  their axes (time and channel axes are never filtered across), units and scale, and written
  with them (--format ome-zarr, --pyramid N for N halved levels); TIFF outputs keep the input's
  pixel size. Every 2-D plane (the last two non-channel axes) is filtered on its own; --ndim 3
  filters each 3-D volume instead. Stacks are read, filtered and written in pieces, never whole.

resume and safety:
  Inputs are never written: an output folder that is an input folder (or inside one, or inside
  an input Zarr store) or an output that would replace an input is a usage error. Outputs are
  written under a hidden temporary name and renamed when complete; what killed runs left is
  cleared. Each output records how it was made (filter, parameters, kernel hashes, version,
  input size and time): a rerun skips an output whose record matches, and reports one made
  otherwise as a conflict (exit 1, left as it is) unless --overwrite. --dry-run shows all this.

examples:
  sepconv sobel stacks/ -o edges/
  sepconv scharr 'data/*.tif' -o edges/ --mode nearest --format zarr
  sepconv sobel volume.tif -o edges/ --ndim 3 --workers 2
  sepconv separable cells.zarr -o smooth/ --kernel gauss1d.npy
  sepconv filter2d plate.npy -o out/ --kernel log5x5.npy --mode constant --cval 0
  sepconv depthwise rgb.png -o out/ --kernel per_channel.npy --channel-axis -1
  sepconv pointwise multi.tif -o out/ --weights mix.npy --bias offset.npy --channel-axis 1
  sepconv sobel big/ -o out/ --scheduler tcp://10.0.0.5:8786
  sepconv gaussian cells.ome.zarr -o smooth/ --sigma 1,2,2 --ndim 3 --format ome-zarr --pyramid 3
  sepconv sobel stacks/ -o edges/ --dry-run
  sepconv warmup            compile the kernels ahead of use (sepconv warmup --help)

exit status: 0 all inputs written or already there, 1 an input failed or its output
exists made otherwise (a conflict), 2 usage error.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(
        prog="sepconv",
        description="Filter image stacks, folders of them and Zarr arrays with separable "
        "convolution, plane by plane (or volume by volume), in bounded memory.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "filter",
        metavar="FILTER",
        choices=FILTERS,
        help="one of: " + ", ".join(FILTERS) + " (or: sepconv warmup)",
    )
    parser.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="+",
        help="image files (.tif, .tiff, .npy, .png), .zarr arrays, folders of them, or glob patterns",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUTDIR",
        required=True,
        help="output folder (created when there is something to write)",
    )

    f = parser.add_argument_group("filter options")
    f.add_argument(
        "--axis",
        type=_int_list,
        metavar="AXIS",
        help="edge filters: derivative along this axis of the plane (or volume), or "
        "a comma-separated list; default: the edge magnitude over all axes",
    )
    f.add_argument(
        "--mode",
        type=_mode_list,
        default=None,
        metavar="MODE",
        help="border mode: " + ", ".join(MODES[:5]) + " (scipy.ndimage meanings), "
        "or one per axis, comma-separated (default: reflect; nearest for gaussian "
        "and dog, as scikit-image)",
    )
    f.add_argument(
        "--cval", type=_finite_float, default=0.0, help="value outside the image for --mode constant"
    )
    f.add_argument(
        "--channel-axis",
        type=_channel_axis,
        default=None,
        metavar="AXIS",
        help="axis of the input holding channels (never filtered across), or 'none'. "
        "Default: -1 for the channel filters; for the others, the colour samples of "
        "RGB PNG/TIFF files, else none",
    )
    f.add_argument(
        "--ndim",
        type=int,
        choices=(2, 3),
        default=2,
        help="2: filter each plane on its own (default); 3: filter each 3-D volume",
    )
    f.add_argument(
        "--kernel",
        action="append",
        metavar="FILE.npy",
        help="separable: 1-D kernels, one file per axis or one 2-D array with a row "
        "per axis (one 1-D kernel is used along every axis); filter2d: the 2-D kernel; "
        "depthwise and depthwise-separable: the per-channel kernels",
    )
    f.add_argument("--weights", metavar="FILE.npy", help="pointwise weights, shape (C_out, C_in)")
    f.add_argument("--bias", metavar="FILE.npy", help="pointwise bias, shape (C_out,)")
    f.add_argument("--rank", type=_positive_int, help="filter2d: separable terms to keep (approximation)")
    f.add_argument("--tol", type=_non_negative_float, help="filter2d: tolerance of the exact rank")
    f.add_argument(
        "--sigma",
        type=_positive_list,
        metavar="S",
        help="gaussian: standard deviation in pixels, or one per axis (1,2,2)",
    )
    f.add_argument("--low-sigma", type=_positive_list, metavar="S", help="dog: the smaller sigma")
    f.add_argument(
        "--high-sigma",
        type=_positive_list,
        metavar="S",
        help="dog: the larger sigma (default: 1.6 times --low-sigma)",
    )
    f.add_argument("--radius", type=_positive_float, help="unsharp: Gaussian sigma (default 1)")
    f.add_argument("--amount", type=_finite_float, help="unsharp: strength (default 1)")
    f.add_argument(
        "--size",
        type=_positive_int_list,
        metavar="N",
        help="uniform: box width in pixels, or one per axis (default 3)",
    )
    f.add_argument(
        "--truncate", type=_positive_float, help="gaussian, dog: kernel radius in sigmas (default 4)"
    )
    f.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="output type. Default, as the library: float input keeps its type "
        "(float16 becomes float32); integer and bool input give float64, scaled to "
        "[0, 1] as skimage.util.img_as_float does unless --preserve-range (uniform and "
        "laplace keep the input's type, as scipy.ndimage)",
    )
    f.add_argument("--preserve-range", action="store_true", help="do not scale integer input to [0, 1] first")
    f.add_argument(
        "--backend",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the kernels run (default: auto)",
    )

    o = parser.add_argument_group("output and running")
    o.add_argument("--format", choices=FORMATS, help="output format (default: the input's; .png gives .tif)")
    o.add_argument(
        "--pyramid",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="ome-zarr: add N levels, each halved in y and x from the one before",
    )
    o.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be done (inputs, outputs, which exist and match, "
        "pieces, memory) and write nothing",
    )
    o.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs made otherwise (or not by sepconv) instead of reporting "
        "them as conflicts; outputs made with the same settings are skipped either way",
    )
    where = o.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=_positive_int, metavar="N", help="start a local Dask cluster of N worker processes"
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="use an existing Dask distributed scheduler, e.g. tcp://host:8786",
    )
    o.add_argument(
        "--chunk-mb",
        type=_chunk_mb,
        default=16.0,
        metavar="MB",
        help="size of the pieces read, filtered and written at once (default: 16)",
    )
    o.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def main(argv=None):
    """Run the command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == ["warmup"]:
        return _warmup(argv[1:])
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    missing = _missing_batch_modules()
    if missing:
        sys.stderr.write(
            "sepconv: error: the batch command needs the 'batch' extra: "
            f"pip install 'napari-sepconv[batch]' (missing: {', '.join(missing)})\n"
        )
        return 2
    filt = _filter_from_args(parser, args)
    if not args.output.strip():
        parser.error("-o: give an output folder (an empty name is none)")
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        parser.error(f"-o {outdir}: exists and is not a folder")
    if args.pyramid and args.format not in (None, "ome-zarr"):
        parser.error("--pyramid applies to --format ome-zarr")

    from . import _batch, _io

    failures = []

    def report(path, reason):
        failures.append((path, reason))
        _print_error(f"{path}: {reason}")

    summary = _batch.Summary()
    start = time.perf_counter()
    paths, problems = _io.find_inputs(args.inputs)
    _refuse_writing_into_inputs(parser, args.inputs, paths, outdir, args.format)
    for argument, reason in problems:
        report(argument, reason)

    plans = _plan_inputs(paths, args, filt, outdir, report)
    summary.skipped = sum(state == SKIPPED for _, _, state, _ in plans)
    jobs = [job for *_, job in plans if job is not None]

    if args.dry_run:
        _print_plan(plans, args, _batch)
        summary.failed = len(failures)
        print(
            f"sepconv: dry run: {len(jobs)} to write, {summary.skipped} skipped, "
            f"{len(failures)} failed; nothing written",
            flush=True,
        )
        return 1 if failures else 0

    for folder in {outdir} | {job.final.parent for job in jobs}:
        _io.clear_leftovers(folder)
    runner = None
    previous = _install_sigterm()
    try:
        if jobs:
            runner = _make_runner(args)
            bar = _batch.make_progress_bar(sum(job.source.nbytes for job in jobs), args.progress)
            with bar:
                done, planes, nbytes = _batch.run_jobs(jobs, runner, report=report, progress=bar.update)
            summary.done, summary.planes, summary.bytes_read = done, planes, nbytes
    except KeyboardInterrupt as interrupt:
        _print_error("interrupted; outputs not finished were removed")
        return 128 + (signal.SIGTERM if isinstance(interrupt, _Terminated) else signal.SIGINT)
    finally:
        if runner is not None:
            runner.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    summary.failed = len(failures)
    summary.seconds = time.perf_counter() - start
    print(summary.line(), flush=True)
    return 1 if failures else 0


def _plan_inputs(paths, args, filt, outdir, report):
    """For each input: ``(source, output path, state, job)``; job None when it is skipped.

    An existing output made with the same settings is skipped; one made otherwise is a
    conflict unless --overwrite. Inputs that cannot be used are reported and left out.
    """
    from . import _batch, _io, _resume

    settings = _settings(args, filt)
    version = _version()
    plans, claimed = [], {}
    for path in paths:
        try:
            kind = _io.kind_of(path)
            fmt = args.format or ("tif" if kind == "png" else kind)
            if args.pyramid and fmt != "ome-zarr":
                raise _io.InputError(f"--pyramid applies to OME-Zarr outputs, and this one is {fmt}")
            final = _io.output_path(path, outdir, fmt)
            source = _io.open_source(path)  # an input that cannot be read claims no output
            if final in claimed:
                raise _io.InputError(f"its output {final} is also that of {claimed[final]}")
            claimed[final] = path
            record_settings = {**settings, "format": fmt}
            if fmt == "ome-zarr":
                record_settings["pyramid"] = args.pyramid
            record = _resume.make_record(record_settings, source, version)
            try:
                state = _existing_output(final, fmt, record, args.overwrite)
            except _Conflict:
                plans.append((source, final, CONFLICT, None))
                raise
            if state == "same":
                plans.append((source, final, SKIPPED, None))
                continue
            job = _batch.plan_job(source, filt, final, fmt, args.chunk_mb * 2**20, pyramid=args.pyramid)
            job.record = record
            plans.append((source, final, state, job))
        except (_io.InputError, _Conflict) as error:
            report(path, str(error))
        except OSError as error:  # a file that vanished or cannot be reached
            report(path, (error.strerror or str(error)).lower())
    return plans


SKIPPED = "exists, made with the same settings: skipped"
CONFLICT = "exists, made otherwise: a conflict, left as it is (--overwrite replaces it)"


class _Conflict(Exception):
    """An existing output made otherwise, kept as it is."""


def _existing_output(final, fmt, record, overwrite):
    """What to do about ``final``: 'same' (skip), 'new', 'replace'; raises _Conflict."""
    from . import _resume

    if not (final.exists() or final.is_symlink()):
        return "new"
    found = _resume.read_record(final, fmt) if final.exists() else None
    if found == record:
        return "same"
    if overwrite:
        return "replace"
    differences = _resume.differences(found, record)
    raise _Conflict(
        f"the output {final} exists but was made otherwise ({'; '.join(differences[:3])}); "
        "left as it is: pass --overwrite to replace it"
    )


def _settings(args, filt):
    """Everything in the command line that shapes an output's values, for its record.

    A value per filtered axis, all the same (``--sigma 2,2`` with ``--ndim 2``), is recorded
    as the one value (``--sigma 2``): the same settings, spelled another way.
    """
    arguments = _with_defaults(filt.function, filt.arguments)
    arguments.pop("backend", None)
    for name in ("sigma", "low_sigma", "high_sigma", "size"):
        value = arguments.get(name)
        if isinstance(value, list) and len(value) == filt.ndim and len(set(value)) == 1:
            arguments[name] = value[0]
    return {"filter": filt.name, "arguments": arguments, "channel_axis": filt.channel_axis, "ndim": filt.ndim}


def _with_defaults(function, arguments):
    """``arguments`` with the library function's defaults for the parameters not given, so
    that an option left out and one given its default value (``--truncate 4``) record the
    same settings."""
    import inspect

    library_function = arguments.get("function", function)  # behind a wrapper of this module
    try:
        parameters = inspect.signature(library_function).parameters.values()
    except (TypeError, ValueError):
        return dict(arguments)
    defaults = {
        p.name: p.default
        for p in parameters
        if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    return {**defaults, **arguments}


def _refuse_writing_into_inputs(parser, arguments, paths, outdir, fmt):
    """Usage error, before anything is written, when an output could land on an input.

    The output folder may not be an input folder or lie inside one (a folder named as INPUT,
    the Zarr store of an input array or group), nor be a folder a glob pattern matched files
    in; and no output path may be, hold or lie inside an input.
    """
    from . import _io

    out = Path(os.path.realpath(outdir))
    folders = []
    for argument in arguments:
        path = Path(argument)
        with contextlib.suppress(OSError):
            if path.is_dir() and not _io._is_zarr(path):
                folders.append(Path(os.path.realpath(path)))
    stores = set()  # the Zarr stores holding inputs: no output may go inside one either
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_dir():
                stores.add(Path(os.path.realpath(_io.zarr_store_root(path))))
    folders += sorted(stores)
    # A pattern's folder may hold the output folder, but may not be it: the outputs would
    # match the pattern next time.
    matched_in = set()
    for argument in arguments:
        if glob.has_magic(argument) and not Path(argument).exists():
            matched_in |= {Path(os.path.realpath(p)).parent for p in glob.glob(argument)}
    for folder, strict in [(f, True) for f in folders] + [(f, False) for f in sorted(matched_in)]:
        if out == folder or (strict and folder in out.parents):
            where = "is" if out == folder else "lies inside"
            parser.error(
                f"-o {outdir} {where} the input folder {folder}: outputs must go "
                "elsewhere, so that no input can be replaced"
            )
    inputs = [Path(os.path.realpath(p)) for p in paths]
    for path in paths:
        try:
            kind = _io.kind_of(path)
        except (_io.InputError, OSError):
            continue
        default = "tif" if kind == "png" else kind
        final = Path(os.path.realpath(_io.output_path(path, outdir, fmt or default)))
        for source in inputs:
            if final == source or final in source.parents or source in final.parents:
                parser.error(
                    f"-o {outdir}: the output {final.name} of {path} would replace the "
                    f"input {source}; choose another output folder"
                )
        for store in stores:
            if store in final.parents:
                parser.error(
                    f"-o {outdir}: the output {final.name} of {path} would be written inside "
                    f"the input Zarr store {store}; choose another output folder"
                )


def _print_plan(plans, args, batch):
    """--dry-run: what each input would become, and the pieces and memory it takes."""
    workers = args.workers or 1
    for source, final, state, job in plans:
        print(f"{source.label} -> {final}: {state if job is None else _state_words(state)}")
        if job is not None:
            read, written = job.piece_bytes
            threads = 1 if (args.workers or args.scheduler) else _local_threads()
            peak = threads * (read + written) * (batch.TILE_GROWTH if job.tiled else 2)
            print(
                f"  shape {source.shape} {source.dtype} -> {job.out_shape} {job.out_dtype}; "
                f"{job.pieces} piece{'' if job.pieces == 1 else 's'} of {read / 1e6:.1f} MB in, "
                f"{written / 1e6:.1f} MB out; "
                f"about {peak / 1e6:.0f} MB of pieces per worker at once"
                + (f" ({workers} workers)" if args.workers else "")
            )


def _state_words(state):
    return {"new": "to write", "replace": "exists, made otherwise: to replace (--overwrite)"}[state]


def _missing_batch_modules():
    import importlib.util

    return [name for name in BATCH_MODULES if importlib.util.find_spec(name) is None]


def _warmup(argv):
    try:
        from . import warmup
    except ImportError as error:
        sys.stderr.write(f"sepconv: error: warmup is not available here ({error})\n")
        return 2
    return warmup.main(argv, prog="sepconv warmup")


# -- options --------------------------------------------------------------------------------------


def _filter_from_args(parser, args):
    """Check the options against the filter and build what runs on each unit."""
    import napari_sepconv as sc

    from ._batch import AUTO, Filter

    name = args.filter
    edge = name in EDGE_FILTERS
    smoothing = name in SMOOTHING_FILTERS
    needs_kernel = name in ("separable", "filter2d", "depthwise", "depthwise-separable")
    needs_weights = name in ("pointwise", "depthwise-separable")
    if args.axis is not None and not edge:
        parser.error(f"--axis applies to the edge filters ({', '.join(EDGE_FILTERS)}), not {name}")
    if needs_kernel and not args.kernel:
        parser.error(f"{name} needs --kernel FILE.npy")
    if args.kernel and not needs_kernel:
        parser.error(f"--kernel does not apply to {name}")
    if args.kernel and len(args.kernel) > 1 and name != "separable":
        parser.error(f"{name} takes one --kernel")
    if needs_weights and not args.weights:
        parser.error(f"{name} needs --weights FILE.npy")
    if args.weights and not needs_weights:
        parser.error(f"--weights does not apply to {name}")
    if args.bias and not needs_weights:
        parser.error(f"--bias does not apply to {name}")
    if (args.rank is not None or args.tol is not None) and name != "filter2d":
        parser.error("--rank and --tol apply to filter2d only")
    for option, owners in _SMOOTHING_OPTIONS.items():
        if getattr(args, option) is not None and name not in owners:
            parser.error(f"--{option.replace('_', '-')} applies to {' and '.join(owners)}, not {name}")
    if name == "gaussian" and args.sigma is None:
        parser.error("gaussian needs --sigma (e.g. --sigma 2 or --sigma 1,2,2)")
    if name == "dog" and args.low_sigma is None:
        parser.error("dog needs --low-sigma")
    if args.ndim == 3 and name not in VOLUME_FILTERS:
        parser.error(
            f"{name} filters 2-D planes; --ndim 3 applies to "
            f"{', '.join(VOLUME_FILTERS[:-1])} and {VOLUME_FILTERS[-1]}"
        )
    if name in CHANNEL_FILTERS and args.channel_axis == "none":
        parser.error(f"{name} filters channels: --channel-axis must name an axis")
    if name in ("pointwise", "unsharp") and (args.mode is not None or args.cval != 0.0):
        parser.error(f"{name} has no border option: --mode and --cval do not apply")
    if name == "dog" and (args.dtype is not None or args.preserve_range):
        parser.error("dog gives float output as scikit-image does: --dtype and --preserve-range do not apply")
    if name in ("uniform", "laplace") and args.preserve_range:
        parser.error(f"{name} keeps the input's values, as scipy.ndimage: --preserve-range does not apply")
    if args.backend == "cuda" and "cuda" not in sc.available_backends():
        parser.error(
            "--backend cuda: no usable CUDA GPU here (sc.available_backends() gives "
            f"{sc.available_backends()})"
        )

    mode = args.mode if args.mode is not None else ("nearest" if name in ("gaussian", "dog") else "reflect")
    common = {"dtype": args.dtype, "preserve_range": args.preserve_range, "backend": args.backend}
    spatial = {"mode": mode, "cval": args.cval}
    if edge:
        function = getattr(sc, name)
        arguments = {**common, **spatial, "axis": args.axis}
    elif smoothing:
        function, arguments = _smoothing_filter(args, name, spatial)
    elif name == "separable":
        function = sc.separable_filter
        kernels = _separable_kernels(parser, args.kernel, args.ndim)
        arguments = {**common, **spatial, "kernels": kernels}
    elif name == "filter2d":
        function = sc.filter2d
        kernel = _load_array(parser, "--kernel", args.kernel[0], ndims=(2,))
        arguments = {**common, **spatial, "kernel": kernel, "rank": args.rank, "tol": args.tol}
    elif name == "depthwise":
        function = sc.depthwise_filter
        kernels = _load_array(parser, "--kernel", args.kernel[0], ndims=(3, 4))
        arguments = {**common, **spatial, "kernels": kernels}
    else:
        weights = _load_array(parser, "--weights", args.weights, ndims=(2,))
        bias = None
        if args.bias:
            bias = _load_array(parser, "--bias", args.bias, ndims=(1,))
            if bias.shape[0] != weights.shape[0]:
                parser.error(
                    f"--bias has {bias.shape[0]} values but --weights gives "
                    f"{weights.shape[0]} output channels"
                )
        if name == "pointwise":
            function = sc.pointwise_filter
            arguments = {**common, "weights": weights, "bias": bias}
        else:
            function = sc.depthwise_separable_filter
            kernels = _load_array(parser, "--kernel", args.kernel[0], ndims=(3, 4))
            arguments = {
                **common,
                **spatial,
                "depthwise_kernels": kernels,
                "pointwise_weights": weights,
                "bias": bias,
            }

    if args.channel_axis is None:
        channel_axis = -1 if name in CHANNEL_FILTERS else AUTO
    else:
        channel_axis = None if args.channel_axis == "none" else args.channel_axis
    return Filter(name, function, arguments, channel_axis, args.ndim)


# Options of the Gaussian family, and the filters they apply to.
_SMOOTHING_OPTIONS = {
    "sigma": ("gaussian",),
    "low_sigma": ("dog",),
    "high_sigma": ("dog",),
    "radius": ("unsharp",),
    "amount": ("unsharp",),
    "size": ("uniform",),
    "truncate": ("gaussian", "dog"),
}


def _smoothing_filter(args, name, spatial):
    """The function and arguments of a Gaussian-family filter (API section 7)."""
    import napari_sepconv as sc

    truncate = {"truncate": args.truncate} if args.truncate is not None else {}
    scale = {"preserve_range": args.preserve_range, "backend": args.backend}
    if name == "gaussian":
        return _with_dtype, {
            "function": sc.gaussian,
            "dtype": args.dtype,
            "sigma": args.sigma,
            **spatial,
            **scale,
            **truncate,
        }
    if name == "dog":
        return sc.difference_of_gaussians, {
            "low_sigma": args.low_sigma,
            "high_sigma": args.high_sigma,
            **spatial,
            **truncate,
            "backend": args.backend,
        }
    if name == "unsharp":
        return _with_dtype, {
            "function": sc.unsharp_mask,
            "dtype": args.dtype,
            "radius": 1.0 if args.radius is None else args.radius,
            "amount": 1.0 if args.amount is None else args.amount,
            **scale,
        }
    # scipy.ndimage style: no channel axis, but the axes to filter; output type as the input's
    size = {"size": args.size if args.size is not None else 3} if name == "uniform" else {}
    function = sc.uniform_filter if name == "uniform" else sc.ndimage_laplace
    return _spatial_axes_only, {
        "function": function,
        "output": args.dtype,
        **size,
        **spatial,
        "backend": args.backend,
    }


def _with_dtype(image, function, dtype=None, channel_axis=None, **arguments):
    """A scikit-image-style filter whose result is converted to ``dtype`` when given."""
    result = function(image, channel_axis=channel_axis, **arguments)
    return result if dtype is None else result.astype(dtype)


def _spatial_axes_only(image, function, channel_axis=None, output=None, **arguments):
    """A scipy.ndimage-style filter over every axis but the channel axis."""
    axes = None
    if channel_axis is not None:
        axes = [axis for axis in range(image.ndim) if axis != channel_axis % image.ndim]
    return function(image, output=output, axes=axes, **arguments)


def _separable_kernels(parser, files, ndim):
    kernels = []
    for file in files:
        array = _load_array(parser, "--kernel", file, ndims=(1, 2))
        kernels.extend(array if array.ndim == 2 else [array])
    if len(kernels) == 1:
        kernels = kernels * ndim
    if len(kernels) != ndim:
        parser.error(f"separable with --ndim {ndim} needs 1 or {ndim} 1-D kernels, got {len(kernels)}")
    return [np.asarray(k) for k in kernels]


def _load_array(parser, option, file, ndims):
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # EOFError: an empty file
        parser.error(f"{option} {file}: cannot read a .npy array ({error})")
    if not isinstance(array, np.ndarray):
        parser.error(f"{option} {file}: expected a .npy array, not an archive")
    if array.ndim not in ndims or array.size == 0 or array.dtype.kind not in "biuf":
        dims = " or ".join(f"{n}-D" for n in ndims)
        parser.error(
            f"{option} {file}: expected a non-empty {dims} numeric array, got shape "
            f"{array.shape} of {array.dtype}"
        )
    if not np.isfinite(array).all():
        parser.error(f"{option} {file}: holds NaN or infinite values; expected finite numbers")
    return array


def _make_runner(args):
    from . import _batch

    if args.workers:
        try:
            runner = _batch.local_cluster(args.workers)
        except Exception as error:  # workers that die while the cluster starts, no ports, ...
            _print_error(
                f"--workers {args.workers}: the local Dask cluster did not start "
                f"({type(error).__name__}: {error})"
            )
            sys.exit(1)
    elif args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout="5s", set_as_default=False)
        except ValueError as error:  # not an address ("localhost": no port)
            _print_error(f"--scheduler {args.scheduler}: not a scheduler address ({error})")
            sys.exit(2)
        except OSError as error:
            _print_error(f"--scheduler {args.scheduler}: cannot connect ({error})")
            sys.exit(2)
        runner = _batch.ClusterRunner(client)
    else:
        return _batch.LocalRunner(_local_threads())
    link = runner.dashboard_link
    if link:
        sys.stderr.write(f"sepconv: Dask dashboard: {link}\n")
    return runner


def _local_threads():
    """The kernels use every core themselves; a few threads are enough to overlap reading,
    filtering and writing, and each holds its own pieces in memory."""
    return 2 if (os.cpu_count() or 1) <= 2 else 3


def _int_list(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or a comma-separated list, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _mode_list(text):
    modes = text.split(",")
    for mode in modes:
        if mode not in MODES:
            raise argparse.ArgumentTypeError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    return modes[0] if len(modes) == 1 else modes


def _channel_axis(text):
    if text.lower() == "none":
        return "none"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _non_negative_float(text):
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _chunk_mb(text):
    value = _positive_float(text)
    if value > 2**20:
        raise argparse.ArgumentTypeError(f"expected at most {2**20} MB, got {text!r}")
    return value


def _non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_list(text):
    """A positive number or a comma-separated list of them (one per axis)."""
    values = [_positive_float(part) for part in text.split(",")]
    return values[0] if len(values) == 1 else values


def _positive_int_list(text):
    values = [_positive_int(part) for part in text.split(",")]
    return values[0] if len(values) == 1 else values


def _version():
    try:
        from importlib.metadata import version

        return version("napari-sepconv")
    except Exception:
        from . import __version__

        return __version__


def _print_error(message):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        sys.stderr.write(f"sepconv: error: {message}\n")
        return
    tqdm.write(f"sepconv: error: {message}", file=sys.stderr)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as an interruption."""


def _install_sigterm():
    """Turn SIGTERM into an interruption so unfinished outputs are removed; returns the old handler."""

    def interrupt(signum, frame):
        raise _Terminated

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        return None


if __name__ == "__main__":
    sys.exit(main())
