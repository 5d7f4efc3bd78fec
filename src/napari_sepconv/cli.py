"""The ``sepconv`` command: filter every plane of image stacks, folders of them, or Zarr arrays.

    sepconv FILTER INPUT... -o OUTDIR [options]

See ``sepconv --help`` for the options and examples. Exit status: 0 when every input was written
or already there, 1 when an input failed (each failure is reported on stderr with its path and
reason; the other inputs are still processed), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

EDGE_FILTERS = ("sobel", "scharr", "prewitt", "farid")
FILTERS = EDGE_FILTERS + (
    "separable", "filter2d", "depthwise", "pointwise", "depthwise-separable",
)
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

inputs and outputs:
  INPUT is a file, a folder (its .tif/.tiff/.npy/.png files and .zarr arrays) or a quoted glob
  pattern. Each input becomes OUTDIR/<name>.<format>; the format is the input's unless --format
  says otherwise (.png becomes .tif). Every 2-D plane (the last two non-channel axes) is filtered
  on its own; --ndim 3 filters each 3-D volume instead. Stacks are read, filtered and written in
  pieces, never whole. Outputs are written aside and renamed when complete; existing outputs are
  skipped (a rerun resumes) unless --overwrite.

examples:
  sepconv sobel stacks/ -o edges/
  sepconv scharr 'data/*.tif' -o edges/ --mode nearest --format zarr
  sepconv sobel volume.tif -o edges/ --ndim 3 --workers 2
  sepconv separable cells.zarr -o smooth/ --kernel gauss1d.npy
  sepconv filter2d plate.npy -o out/ --kernel log5x5.npy --mode constant --cval 0
  sepconv depthwise rgb.png -o out/ --kernel per_channel.npy --channel-axis -1
  sepconv pointwise multi.tif -o out/ --weights mix.npy --bias offset.npy --channel-axis 1
  sepconv sobel big/ -o out/ --scheduler tcp://10.0.0.5:8786

exit status: 0 all inputs written or already there, 1 an input failed, 2 usage error.
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
    parser.add_argument("filter", metavar="FILTER", choices=FILTERS,
                        help="one of: " + ", ".join(FILTERS))
    parser.add_argument("inputs", metavar="INPUT", nargs="+",
                        help="image files (.tif, .tiff, .npy, .png), .zarr arrays, folders of them, "
                        "or glob patterns")
    parser.add_argument("-o", "--output", metavar="OUTDIR", required=True,
                        help="output folder (created if missing)")

    f = parser.add_argument_group("filter options")
    f.add_argument("--axis", type=_int_list, metavar="AXIS",
                   help="edge filters: derivative along this axis of the plane (or volume), or "
                   "a comma-separated list; default: the edge magnitude over all axes")
    f.add_argument("--mode", type=_mode_list, default="reflect", metavar="MODE",
                   help="border mode: " + ", ".join(MODES[:5]) + " (scipy.ndimage meanings), "
                   "or one per axis, comma-separated (default: reflect)")
    f.add_argument("--cval", type=float, default=0.0, help="value outside the image for --mode constant")
    f.add_argument("--channel-axis", type=_channel_axis, default=None, metavar="AXIS",
                   help="axis of the input holding channels (never filtered across), or 'none'. "
                   "Default: -1 for the channel filters; for the others, the colour samples of "
                   "RGB PNG/TIFF files, else none")
    f.add_argument("--ndim", type=int, choices=(2, 3), default=2,
                   help="2: filter each plane on its own (default); 3: filter each 3-D volume")
    f.add_argument("--kernel", action="append", metavar="FILE.npy",
                   help="separable: 1-D kernels, one file per axis or one 2-D array with a row "
                   "per axis (one 1-D kernel is used along every axis); filter2d: the 2-D kernel; "
                   "depthwise and depthwise-separable: the per-channel kernels")
    f.add_argument("--weights", metavar="FILE.npy", help="pointwise weights, shape (C_out, C_in)")
    f.add_argument("--bias", metavar="FILE.npy", help="pointwise bias, shape (C_out,)")
    f.add_argument("--rank", type=_positive_int, help="filter2d: separable terms to keep (approximation)")
    f.add_argument("--tol", type=float, help="filter2d: tolerance of the exact rank")
    f.add_argument("--dtype", choices=("float32", "float64"),
                   help="output type (default: float32 for float32 and small integer input, as the library)")
    f.add_argument("--preserve-range", action="store_true",
                   help="do not scale integer input to [0, 1] first")
    f.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the kernels run (default: auto)")

    o = parser.add_argument_group("output and running")
    o.add_argument("--format", choices=("tif", "zarr", "npy"),
                   help="output format (default: the input's; .png gives .tif)")
    o.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs instead of skipping them")
    where = o.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="start a local Dask cluster of N worker processes")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="use an existing Dask distributed scheduler, e.g. tcp://host:8786")
    o.add_argument("--chunk-mb", type=_positive_float, default=16.0, metavar="MB",
                   help="size of the pieces read, filtered and written at once (default: 16)")
    o.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    return parser


def main(argv=None):
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    filt = _filter_from_args(parser, args)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        parser.error(f"-o {outdir}: exists and is not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"-o {outdir}: {error.strerror or error}")

    from . import _batch, _io

    failures = []

    def report(path, reason):
        failures.append((path, reason))
        _print_error(f"{path}: {reason}")

    summary = _batch.Summary()
    start = time.perf_counter()
    paths, problems = _io.find_inputs(args.inputs)
    for argument, reason in problems:
        report(argument, reason)

    jobs, claimed = [], {}
    for path in paths:
        try:
            kind = _io.kind_of(path)
            fmt = args.format or ("tif" if kind == "png" else kind)
            final = _io.output_path(path, outdir, fmt)
            if final.resolve() == path.resolve():
                raise _io.InputError(f"the output {final} would replace the input; choose another -o")
            if final in claimed:
                raise _io.InputError(f"its output {final} is also that of {claimed[final]}")
            claimed[final] = path
            if final.exists() and not args.overwrite:
                summary.skipped += 1
                continue
            source = _io.open_source(path)
            jobs.append(_batch.plan_job(source, filt, final, fmt, args.chunk_mb * 2**20))
        except _io.InputError as error:
            report(path, str(error))

    runner = None
    previous = _install_sigterm()
    try:
        if jobs:
            runner = _make_runner(args)
            bar = _batch.make_progress_bar(sum(job.source.nbytes for job in jobs), args.progress)
            with bar:
                done, planes, nbytes = _batch.run_jobs(
                    jobs, runner, report=report, progress=bar.update
                )
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


# -- options --------------------------------------------------------------------------------------


def _filter_from_args(parser, args):
    """Check the options against the filter and build what runs on each unit."""
    import napari_sepconv as sc

    from ._batch import AUTO, Filter

    name = args.filter
    edge = name in EDGE_FILTERS
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
    if args.ndim == 3 and not (edge or name == "separable"):
        parser.error(f"{name} filters 2-D planes; --ndim 3 applies to the edge filters and separable")
    if name in CHANNEL_FILTERS and args.channel_axis == "none":
        parser.error(f"{name} filters channels: --channel-axis must name an axis")
    if name == "pointwise" and (args.mode != "reflect" or args.cval != 0.0):
        parser.error("pointwise has no neighbourhood: --mode and --cval do not apply")
    if args.backend == "cuda" and "cuda" not in sc.available_backends():
        parser.error("--backend cuda: no usable CUDA GPU here (sc.available_backends() gives "
                     f"{sc.available_backends()})")

    common = {"dtype": args.dtype, "preserve_range": args.preserve_range, "backend": args.backend}
    spatial = {"mode": args.mode, "cval": args.cval}
    if edge:
        function = getattr(sc, name)
        arguments = {**common, **spatial, "axis": args.axis}
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
                parser.error(f"--bias has {bias.shape[0]} values but --weights gives "
                             f"{weights.shape[0]} output channels")
        if name == "pointwise":
            function = sc.pointwise_filter
            arguments = {**common, "weights": weights, "bias": bias}
        else:
            function = sc.depthwise_separable_filter
            kernels = _load_array(parser, "--kernel", args.kernel[0], ndims=(3, 4))
            arguments = {**common, **spatial, "depthwise_kernels": kernels,
                         "pointwise_weights": weights, "bias": bias}

    if args.channel_axis is None:
        channel_axis = -1 if name in CHANNEL_FILTERS else AUTO
    else:
        channel_axis = None if args.channel_axis == "none" else args.channel_axis
    return Filter(name, function, arguments, channel_axis, args.ndim)


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
    except (OSError, ValueError) as error:
        parser.error(f"{option} {file}: cannot read a .npy array ({error})")
    if not isinstance(array, np.ndarray):
        parser.error(f"{option} {file}: expected a .npy array, not an archive")
    if array.ndim not in ndims or array.size == 0 or array.dtype.kind not in "biuf":
        dims = " or ".join(f"{n}-D" for n in ndims)
        parser.error(f"{option} {file}: expected a non-empty {dims} numeric array, got shape "
                     f"{array.shape} of {array.dtype}")
    return array


def _make_runner(args):
    from . import _batch

    if args.workers:
        return _batch.local_cluster(args.workers)
    if args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout="5s")
        except OSError as error:
            _print_error(f"--scheduler {args.scheduler}: cannot connect ({error})")
            sys.exit(2)
        return _batch.ClusterRunner(client)
    # The kernels use every core themselves; a few threads are enough to overlap reading,
    # filtering and writing, and each holds its own pieces in memory.
    threads = 2 if (os.cpu_count() or 1) <= 2 else 3
    return _batch.LocalRunner(threads)


def _int_list(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer or a comma-separated list, got {text!r}") from None
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
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _version():
    try:
        from importlib.metadata import version

        return version("napari-sepconv")
    except Exception:
        from . import __version__

        return __version__


def _print_error(message):
    from tqdm.auto import tqdm

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
