"""The batch command on a built-in sample: a folder of stacks in, edges out, nothing lost.

Writes a small lab folder to a temporary directory: a 24-plane float32 TIFF time-lapse made
from scikit-image's bundled camera image (no download), the same stack as ``.npy`` and as a
Zarr v3 array, and the RGB astronaut as a PNG. Then runs, as a user would:

1. ``sepconv sobel INPUT_FOLDER -o OUTPUT_FOLDER`` - every plane filtered, in pieces;
2. the same again - every output already there is skipped (a rerun resumes);
3. with a corrupt TIFF added - reported with its path and reason, the rest untouched,
   exit status 1;

checks one output against ``napari_sepconv.sobel`` called plane by plane, and prints where
everything went. Without ``--workdir`` everything is written to a temporary folder that is
removed at the end.

Run: ``python examples/batch_demo.py [--workdir DIR]``
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import skimage.data
import tifffile
import zarr

import napari_sepconv as sc


def sepconv_command():
    """The installed ``sepconv`` script next to this Python, else the module."""
    script = Path(sys.executable).with_name("sepconv")
    return [str(script)] if script.exists() else [sys.executable, "-m", "napari_sepconv.cli"]


def write_sample(folder):
    """A folder of inputs in every format the command reads."""
    folder.mkdir(parents=True, exist_ok=True)
    camera = skimage.data.camera().astype(np.float32) / 255
    rng = np.random.default_rng(0)
    # A drifting, noisy time-lapse: 24 planes of 512 x 512.
    stack = np.stack(
        [np.roll(camera, (3 * t, -2 * t), axis=(0, 1)) + rng.normal(0, 0.02, camera.shape) for t in range(24)]
    ).astype(np.float32)
    tifffile.imwrite(folder / "timelapse.tif", stack, photometric="minisblack")
    np.save(folder / "timelapse_copy.npy", stack[:8])
    array = zarr.create_array(
        str(folder / "timelapse.zarr"), shape=stack.shape, chunks=(4, 256, 512), dtype=stack.dtype
    )
    array[...] = stack
    iio.imwrite(folder / "astronaut.png", skimage.data.astronaut())
    return stack


def run(command, title, env=None):
    print(f"\n$ {' '.join(Path(command[0]).name if i == 0 else a for i, a in enumerate(command))}")
    print(f"  ({title})")
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in (result.stderr + result.stdout).splitlines():
        print(f"  {line}")
    print(f"  exit status {result.returncode}")
    return result.returncode


def run_demo(workdir=None):
    """Run the demonstration in ``workdir``, kept; without one, in a temporary folder removed
    at the end. Returns the folder used."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="sepconv-demo-") as temporary:
            run_demo(temporary)
        print(f"Removed the temporary folder {temporary}.")
        return Path(temporary)
    workdir = Path(workdir)
    inputs, outputs = workdir / "inputs", workdir / "edges"
    shutil.rmtree(outputs, ignore_errors=True)
    stack = write_sample(inputs)
    print(f"napari-sepconv {sc.__version__}: sample inputs in {inputs}")
    for path in sorted(inputs.iterdir()):
        print(f"  {path.name}")

    sepconv = sepconv_command()
    # Tiny inputs of the same kinds first: Numba compiles the kernels a run uses on their first
    # use, and the first run's time must not include that. This run compiles the fast kernels
    # themselves (SEPCONV_QUICK_KERNELS=0), not quick twins that would run while they compile.
    tiny = workdir / "tiny"
    shutil.rmtree(tiny, ignore_errors=True)
    tiny.mkdir()
    tifffile.imwrite(tiny / "planes.tif", stack[:2, :32, :32], photometric="minisblack")
    iio.imwrite(tiny / "colour.png", skimage.data.astronaut()[:32, :32])
    run(
        sepconv + ["sobel", str(tiny), "-o", str(workdir / "tiny-edges")],
        "on tiny inputs of the same kinds: compiling the kernels it uses, if needed (first time only)",
        env={**os.environ, "SEPCONV_QUICK_KERNELS": "0"},
    )
    shutil.rmtree(tiny)
    shutil.rmtree(workdir / "tiny-edges", ignore_errors=True)
    status = run(sepconv + ["sobel", str(inputs), "-o", str(outputs)], "first run")
    assert status == 0, "the first run should succeed"
    status = run(
        sepconv + ["sobel", str(inputs), "-o", str(outputs)], "again: outputs already there are skipped"
    )
    assert status == 0

    (inputs / "damaged.tif").write_bytes(b"II*\x00" + bytes(60))
    status = run(
        sepconv + ["sobel", str(inputs), "-o", str(outputs)],
        "a damaged file among the good ones: reported, the others are fine",
    )
    assert status == 1, "a bad input should give exit status 1"
    (inputs / "damaged.tif").unlink()

    result = tifffile.imread(outputs / "timelapse.tif")
    expected = np.stack([sc.sobel(plane) for plane in stack])
    assert np.array_equal(result, expected)
    print("\nChecked: edges/timelapse.tif equals sc.sobel on each plane.")
    print(f"Outputs in {outputs}:")
    for path in sorted(outputs.iterdir()):
        print(f"  {path.name}")
    return workdir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        help="folder for the sample and outputs, kept so you can "
        "look at the results (default: a temporary folder, removed at the end)",
    )
    args = parser.parse_args(argv)
    run_demo(args.workdir)


if __name__ == "__main__":
    main()
