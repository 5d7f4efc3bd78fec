"""The ``sepconv`` command under attack: inputs untouchable, resume keyed by settings, bad entries."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import napari_sepconv as sc
from napari_sepconv import _io
from test_cli import COMMAND, per_plane, read, sepconv, visible, write


@pytest.fixture
def stack(rng):
    return rng.random((2, 21, 17), dtype=np.float32)


def fingerprints(folder):
    """Every file under ``folder`` with the hash of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


# -- inputs are untouchable -----------------------------------------------------------------------


def test_output_that_is_another_input_is_refused(tmp_path, capsys, stack, monkeypatch):
    """The data-loss case: a.tif's output would be a.tif, made from a.npy."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.tif", stack)
    write(tmp_path / "a.npy", stack[::-1].copy())
    before = fingerprints(tmp_path)
    for args in (["a.tif", "a.npy", "-o", "."], [".", "-o", "."], ["a.npy", "a.tif", "-o", "."]):
        code, _, err = sepconv(capsys, "sobel", *args, "--format", "tif", "--overwrite")
        assert code == 2, (args, err)
        assert "error" in err
    assert fingerprints(tmp_path) == before


@pytest.mark.parametrize("inside", ["", "sub", "sub/deeper"])
def test_output_folder_in_an_input_folder_is_a_usage_error(tmp_path, capsys, stack, inside):
    folder = tmp_path / "stacks"
    folder.mkdir()
    write(folder / "a.tif", stack)
    (folder / "astronaut.png").write_bytes(b"")  # would be written as astronaut.tif beside them
    before = fingerprints(tmp_path)
    out = folder / inside if inside else folder
    code, _, err = sepconv(capsys, "sobel", folder, "-o", out)
    assert code == 2 and "input folder" in err
    assert fingerprints(tmp_path) == before
    assert not (folder / "sub").exists()


def test_output_inside_an_input_zarr_group_is_refused(tmp_path, capsys, stack):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("0", data=stack)
    before = fingerprints(tmp_path)
    for target in ("g.zarr", "g.zarr/0", "g.zarr/new"):
        for source in ("g.zarr", "g.zarr/0"):
            code, _, err = sepconv(capsys, "sobel", tmp_path / source, "-o", tmp_path / target, "--overwrite")
            assert code == 2, (source, target, err)
    assert fingerprints(tmp_path) == before


@pytest.mark.parametrize("fmt", [None, "npy", "ome-zarr"])
def test_output_inside_an_input_zarr_store_without_the_suffix_is_refused(
    tmp_path, capsys, stack, monkeypatch, fmt
):
    """An array of a store named without '.zarr', filtered into the folder holding the store,
    had its output written inside the store, which then held one member more."""
    group = zarr.open_group(str(tmp_path / "store"), mode="w")
    group.create_array("img", data=stack)
    group.create_array("b", data=stack)
    before = fingerprints(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = sepconv(capsys, "sobel", "store/img", "-o", ".", *(["--format", fmt] if fmt else []))
    assert code == 2 and "inside the input Zarr store" in err
    assert fingerprints(tmp_path) == before
    assert sorted(zarr.open_group(str(tmp_path / "store"), mode="r").keys()) == ["b", "img"]


def test_output_folder_made_only_when_there_is_something_to_write(tmp_path, capsys):
    code, _, _ = sepconv(capsys, "sobel", tmp_path / "missing.tif", "-o", tmp_path / "out")
    assert code == 1 and not (tmp_path / "out").exists()
    code, _, _ = sepconv(
        capsys, "sobel", tmp_path / "missing.tif", "-o", tmp_path / "out", "--scheduler", "tcp://127.0.0.1:9"
    )
    assert not (tmp_path / "out").exists()


# -- resume keyed by settings ----------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".tif", ".npy", ".zarr"])
def test_rerun_with_other_settings_is_a_conflict(tmp_path, capsys, stack, suffix):
    source = write(tmp_path / f"a{suffix}", stack)
    out = tmp_path / "out"
    output = out / f"a{suffix}"
    assert sepconv(capsys, "sobel", source, "-o", out)[0] == 0
    made = fingerprints(out)
    code, summary, _ = sepconv(capsys, "sobel", source, "-o", out)
    assert code == 0 and "0 done, 1 skipped" in summary
    for other in (["sobel", "--mode", "wrap"], ["prewitt"], ["sobel", "--dtype", "float64"]):
        code, summary, err = sepconv(capsys, other[0], source, "-o", out, *other[1:])
        assert code == 1 and "made otherwise" in err and "1 failed" in summary, (other, err)
        assert fingerprints(out) == made
    code, _, err = sepconv(capsys, "sobel", source, "-o", out, "--mode", "wrap", "--overwrite")
    assert code == 0, err
    np.testing.assert_array_equal(read(output), per_plane(sc.sobel, stack, mode="wrap"))
    # The input changed: its old output is stale.
    time.sleep(0.01)
    if suffix == ".zarr":
        zarr.open_array(str(source), mode="r+")[...] = stack * 2
    else:
        write(source, stack * 2)
    code, _, err = sepconv(capsys, "sobel", source, "-o", out, "--mode", "wrap")
    assert code == 1 and "input" in err
    assert sepconv(capsys, "sobel", source, "-o", out, "--mode", "wrap", "--overwrite")[0] == 0
    np.testing.assert_array_equal(read(output), per_plane(sc.sobel, stack * 2, mode="wrap"))


def test_an_option_given_its_default_value_is_the_same_settings(tmp_path, capsys, stack):
    """The record holds the library function's defaults for the options left out: a rerun
    spelling a default out resumes, where it was reported as a conflict."""
    source = write(tmp_path / "a.npy", stack)
    out = tmp_path / "out"
    assert sepconv(capsys, "gaussian", source, "-o", out, "--sigma", "2")[0] == 0
    made = fingerprints(out)
    code, summary, err = sepconv(capsys, "gaussian", source, "-o", out, "--sigma", "2", "--truncate", "4")
    assert code == 0 and "0 done, 1 skipped" in summary, err
    code, summary, err = sepconv(capsys, "gaussian", source, "-o", out, "--sigma", "2", "--truncate", "3")
    assert code == 1 and "made otherwise" in err and "truncate" in err
    assert fingerprints(out) == made
    # one sigma per filtered axis, all the same, is the one sigma spelled out
    code, summary, err = sepconv(capsys, "gaussian", source, "-o", out, "--sigma", "2,2")
    assert code == 0 and "0 done, 1 skipped" in summary, err
    code, summary, err = sepconv(capsys, "gaussian", source, "-o", out, "--sigma", "2,1")
    assert code == 1 and "made otherwise" in err and "sigma" in err
    code, summary, err = sepconv(capsys, "gaussian", source, "-o", out, "--sigma", "2,2,2")
    assert code == 1, (summary, err)  # three sigmas for the two axes filtered: not the same
    assert fingerprints(out) == made


def test_output_from_elsewhere_is_never_overwritten(tmp_path, capsys, stack):
    source = write(tmp_path / "a.npy", stack)
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "a.npy", np.zeros(3))
    code, _, err = sepconv(capsys, "sobel", source, "-o", out)
    assert code == 1 and "not made by sepconv" in err
    np.testing.assert_array_equal(np.load(out / "a.npy"), np.zeros(3))
    assert sepconv(capsys, "sobel", source, "-o", out, "--overwrite")[0] == 0
    np.testing.assert_array_equal(np.load(out / "a.npy"), per_plane(sc.sobel, stack))


def test_kernel_bytes_are_part_of_the_record(tmp_path, capsys, stack):
    source = write(tmp_path / "a.npy", stack)
    np.save(tmp_path / "k.npy", np.array([1.0, 2.0, 1.0]))
    args = ["separable", source, "-o", tmp_path / "out", "--kernel", tmp_path / "k.npy"]
    assert sepconv(capsys, *args)[0] == 0
    assert "1 skipped" in sepconv(capsys, *args)[1]
    np.save(tmp_path / "k.npy", np.array([1.0, 2.0, 1.5]))
    code, _, err = sepconv(capsys, *args)
    assert code == 1 and "sha256" in err


# -- partial outputs and leftovers ----------------------------------------------------------------


def test_partials_are_never_inputs_and_leftovers_are_cleared(tmp_path, capsys, stack):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.tif", stack)
    dead = 2**22 + 4321  # above the kernel's default pid_max: no such process
    write(folder / f".X.zarr.partial-{dead}", stack)
    out = tmp_path / "out"
    out.mkdir()
    leftovers = [
        out / f".gone.zarr.partial-{dead}",
        out / f".old.npy.partial-{dead}",
        out / f".b.tif.old-{dead}",
    ]
    leftovers[0].mkdir()
    for path in leftovers[1:]:
        path.write_bytes(b"half")
    code, summary, err = sepconv(capsys, "sobel", folder, "-o", out)
    assert code == 0 and "1 done, 0 skipped, 0 failed" in summary, err
    assert sorted(p.name for p in out.iterdir()) == ["a.tif"]
    code, _, err = sepconv(capsys, "sobel", folder / f".X.zarr.partial-{dead}", "-o", out)
    assert code == 1 and "unfinished output" in err


# -- one bad entry never stops a run ----------------------------------------------------------------


def test_link_loops_dangling_links_and_unreadable_folders(tmp_path, capsys, stack, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "good.tif", stack)
    (folder / "loop.tif").symlink_to("loop.tif")
    (folder / "gone.npy").symlink_to(tmp_path / "nowhere.npy")
    locked = tmp_path / "locked"
    locked.mkdir()
    iterdir = Path.iterdir

    def refuse(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    code, summary, err = sepconv(
        capsys, "sobel", folder, locked, tmp_path / "in" / "loop.tif", "-o", tmp_path / "out"
    )
    assert code == 1 and "1 done" in summary
    assert visible(tmp_path / "out") == ["good.tif"]
    lines = err.splitlines()
    assert any("loop.tif" in line and "symbolic link loop" in line for line in lines), err
    assert any("gone.npy" in line and "dangling symbolic link" in line for line in lines), err
    assert any("locked" in line and "permission denied" in line for line in lines), err


def test_unreadable_folder_as_another_user(tmp_path):
    """Real permissions: as root they are not enforced, so run the command as nobody."""
    if os.geteuid() != 0 or not Path("/usr/sbin/runuser").exists():
        pytest.skip("needs root and runuser to act as another user")
    base = Path(os.environ.get("SEPCONV_SHARED_TMP", "/tmp")) / f"sepconv-perm-{os.getpid()}"
    base.mkdir(mode=0o777)
    try:
        good, locked = base / "good", base / "locked"
        good.mkdir(mode=0o755)
        locked.mkdir(mode=0o000)
        np.save(good / "a.npy", np.ones((8, 8)))
        os.chmod(good / "a.npy", 0o644)
        result = subprocess.run(
            ["/usr/sbin/runuser", "-u", "nobody", "--"]
            + COMMAND
            + ["sobel", str(good), str(locked), "-o", str(base / "out")],
            capture_output=True,
            text=True,
            env={**os.environ, "NUMBA_CACHE_DIR": str(base / "cache")},
        )
        if "failed to execute" in result.stderr or "python" in result.stderr.lower():
            pytest.skip("nobody cannot run this environment's Python")
        assert result.returncode == 1, result.stderr
        assert "locked: cannot list the folder: permission denied" in result.stderr
        assert (base / "out" / "a.npy").exists()
    finally:
        os.chmod(base / "locked", 0o755)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_corrupt_png_is_reported_like_a_corrupt_tiff(tmp_path, capsys, stack):
    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    (tmp_path / "other.tif").write_bytes(b"II*\x00" + bytes(40))
    code, _, err = sepconv(
        capsys, "sobel", tmp_path / "fake.png", tmp_path / "other.tif", "-o", tmp_path / "out"
    )
    assert code == 1
    assert "fake.png: not a readable PNG image" in err
    assert "other.tif: not a readable TIFF image" in err
    assert "backend" not in err


def test_a_corrupt_input_claims_no_output_name(tmp_path, capsys, stack):
    """A corrupt x.png and a good x.tif share the output x.tif: the corrupt one claimed it
    first, and the good one was refused; nothing was written."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    write(tmp_path / "in" / "x.tif", stack)
    code, _, err = sepconv(capsys, "sobel", tmp_path / "in", "-o", tmp_path / "out")
    assert code == 1
    assert "x.png: not a readable PNG image" in err and "also that of" not in err
    assert visible(tmp_path / "out") == ["x.tif"]


def test_a_tiff_that_lost_pages_is_reported_not_cut_short(tmp_path, capsys, rng):
    """A compressed stack cut short (or with a broken page link): tifffile reads the pages it
    reaches and only logs that the rest are missing. The file is an error, not a shorter
    image written as a success."""
    stack = (rng.random((6, 32, 32)) * 255).astype(np.uint8)
    for name, options in (("shaped.tif", {}), ("imagej.tif", {"imagej": True})):
        tifffile.imwrite(tmp_path / name, stack, compression="zlib", **options)
        os.truncate(tmp_path / name, os.path.getsize(tmp_path / name) // 2)
    tifffile.imwrite(tmp_path / "whole.tif", stack, compression="zlib")
    code, summary, err = sepconv(
        capsys,
        "sobel",
        tmp_path / "shaped.tif",
        tmp_path / "imagej.tif",
        tmp_path / "whole.tif",
        "-o",
        tmp_path / "out",
    )
    assert code == 1 and "1 done" in summary and "2 failed" in summary
    assert "shaped.tif: damaged or truncated TIFF" in err
    assert "imagej.tif: damaged or truncated TIFF" in err
    assert visible(tmp_path / "out") == ["whole.tif"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_among_the_inputs_is_reported_and_the_rest_done(tmp_path, stack):
    """Opening a named pipe blocks until something writes to it: the run hung, the good
    input undone. In a child process, so that a hang fails the test instead of the suite."""
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "good.tif", stack)
    os.mkfifo(folder / "pipe.tif")
    os.mkfifo(tmp_path / "named.npy")
    result = subprocess.run(
        COMMAND + ["sobel", str(folder), str(tmp_path / "named.npy"), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "pipe.tif: not a regular file (a named pipe)" in result.stderr
    assert "named.npy: not a regular file (a named pipe)" in result.stderr
    assert visible(tmp_path / "out") == ["good.tif"]


# -- bad option values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--chunk-mb", "inf"], "--chunk-mb"),
        (["--chunk-mb", "nan"], "--chunk-mb"),
        (["--cval", "nan"], "--cval"),
        (["--pyramid", "2", "--format", "tif"], "--pyramid"),
        (["--pyramid", "-1", "--format", "ome-zarr"], "--pyramid"),
    ],
)
def test_bad_option_values_are_usage_errors(tmp_path, capsys, stack, args, message):
    source = write(tmp_path / "a.npy", stack)
    code, _, err = sepconv(capsys, "sobel", source, "-o", tmp_path / "out", *args)
    assert code == 2 and message in err
    assert not (tmp_path / "out").exists()


def test_empty_kernel_file_is_a_usage_error(tmp_path, capsys, stack):
    source = write(tmp_path / "a.npy", stack)
    (tmp_path / "k.npy").write_bytes(b"")
    code, _, err = sepconv(capsys, "filter2d", source, "-o", tmp_path / "out", "--kernel", tmp_path / "k.npy")
    assert code == 2 and "--kernel" in err and "Traceback" not in err


@pytest.mark.parametrize("address", ["localhost", "tcp://[::1"])
def test_malformed_scheduler_address_is_a_usage_error(tmp_path, capsys, stack, address):
    pytest.importorskip("distributed")
    source = write(tmp_path / "a.npy", stack)
    code, _, err = sepconv(capsys, "sobel", source, "-o", tmp_path / "out", "--scheduler", address)
    assert code == 2 and f"--scheduler {address}: not a scheduler address" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_kernel_is_a_usage_error(tmp_path, capsys, stack, bad):
    source = write(tmp_path / "a.npy", stack)
    kernel = np.ones((3, 3))
    kernel[1, 1] = bad
    np.save(tmp_path / "k.npy", kernel)
    code, _, err = sepconv(capsys, "filter2d", source, "-o", tmp_path / "out", "--kernel", tmp_path / "k.npy")
    assert code == 2 and "--kernel" in err and "NaN or infinite" in err


def test_huge_kernel_is_refused_at_once(tmp_path, capsys, rng):
    source = write(tmp_path / "tiny.npy", rng.random((1, 16, 16)))
    np.save(tmp_path / "huge.npy", np.ones((500, 500)))
    start = time.perf_counter()
    code, _, err = sepconv(
        capsys, "filter2d", source, "-o", tmp_path / "out", "--kernel", tmp_path / "huge.npy"
    )
    assert time.perf_counter() - start < 30
    assert code == 1 and "crop the kernel" in err and "33x33" in err


# -- base install, help ----------------------------------------------------------------------------


def test_without_the_batch_extra_exits_2_naming_it(tmp_path):
    """A base install lacks tqdm, dask, ...: hide them from a fresh interpreter."""
    np.save(tmp_path / "cam.npy", np.zeros((8, 8)))
    code = (
        "import sys\n"
        "for name in ('tqdm', 'dask', 'distributed', 'tifffile', 'zarr', 'imageio', 'ome_zarr'):\n"
        "    sys.modules[name] = None\n"
        "from napari_sepconv.cli import main\n"
        f"sys.exit(main(['sobel', {str(tmp_path / 'cam.npy')!r}, '-o', {str(tmp_path / 'out')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "napari-sepconv[batch]" in lines[0]
    assert not (tmp_path / "out").exists()


def test_help_states_the_dtype_rule():
    result = subprocess.run(COMMAND + ["--help"], capture_output=True, text=True)
    text = " ".join(result.stdout.split())
    assert "integer and bool input give float64" in text
    assert "float16 becomes float32" in text


# -- naming, reading once, dry run ------------------------------------------------------------------


def test_arrays_of_the_same_name_in_different_groups(tmp_path, capsys, stack):
    for name, scale in (("one", 1), ("two", 2)):
        group = zarr.open_group(str(tmp_path / "zg" / f"{name}.zarr"), mode="w")
        group.create_array("0", data=stack * scale)
    code, _, err = sepconv(capsys, "sobel", str(tmp_path / "zg" / "*.zarr" / "0"), "-o", tmp_path / "coll")
    assert code == 0, err
    assert visible(tmp_path / "coll") == ["one", "two"]
    for name, scale in (("one", 1), ("two", 2)):
        np.testing.assert_array_equal(
            read(tmp_path / "coll" / name / "0.zarr"), per_plane(sc.sobel, stack * scale)
        )


def test_png_is_decoded_once(tmp_path, capsys, rng, monkeypatch):
    import imageio.v3 as iio

    image = (rng.random((120, 90)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "p.png", image)
    calls = []
    imread = iio.imread
    monkeypatch.setattr(iio, "imread", lambda *a, **k: calls.append(a) or imread(*a, **k))
    code, _, err = sepconv(capsys, "sobel", tmp_path / "p.png", "-o", tmp_path / "out", "--chunk-mb", "0.01")
    assert code == 0, err
    assert len(calls) == 1
    np.testing.assert_array_equal(read(tmp_path / "out" / "p.tif"), sc.sobel(image))


def test_dry_run_writes_nothing(tmp_path, capsys, stack):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "a.tif", stack)
    write(folder / "b.npy", stack)
    out = tmp_path / "out"
    code, out_text, err = sepconv(capsys, "sobel", folder, "-o", out, "--dry-run")
    assert code == 0, err
    assert not out.exists()
    assert "a.tif -> " in out_text and "to write" in out_text and "pieces" in out_text
    assert "MB" in out_text and "nothing written" in out_text
    assert sepconv(capsys, "sobel", folder / "a.tif", "-o", out)[0] == 0
    before = fingerprints(out)
    code, out_text, err = sepconv(capsys, "prewitt", folder, "-o", out, "--dry-run")
    assert code == 1 and "a.tif" in err and "made otherwise" in err
    assert "a.tif: exists, made otherwise: a conflict" in out_text
    assert "b.npy -> " in out_text and fingerprints(out) == before
    code, out_text, err = sepconv(capsys, "sobel", folder, "-o", out, "--dry-run")
    assert code == 0 and "made with the same settings: skipped" in out_text


def test_tiff_output_keeps_the_physical_pixel_size(tmp_path, capsys, stack):
    source = tmp_path / "ij.tif"
    tifffile.imwrite(
        source,
        stack,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.5),
        metadata={"unit": "um", "spacing": 2.0, "axes": "ZYX"},
    )
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, stack, resolution=(400.0, 200.0), resolutionunit="CENTIMETER")
    code, _, err = sepconv(capsys, "sobel", source, plain, "-o", tmp_path / "out")
    assert code == 0, err
    with tifffile.TiffFile(tmp_path / "out" / "ij.tif") as tif:
        page = tif.pages.first
        np.testing.assert_allclose(page.get_resolution(), (4.0, 2.0))
        assert page.resolutionunit == tifffile.RESUNIT.MICROMETER
        assert tif.shaped_metadata[0]["spacing"] == 2.0
    with tifffile.TiffFile(tmp_path / "out" / "plain.tif") as tif:
        page = tif.pages.first
        np.testing.assert_allclose(page.get_resolution(), (400.0, 200.0))
        assert page.resolutionunit == tifffile.RESUNIT.CENTIMETER


def test_tiff_output_converts_each_axis_from_its_own_unit(tmp_path, capsys, stack):
    """x and y in nanometres, z in micrometres: every spacing was converted as if in x's unit
    (z came out 0.0007 µm)."""
    source = tmp_path / "mixed.ome.tif"
    metadata = {"axes": "ZYX", "PhysicalSizeZ": 0.7, "PhysicalSizeZUnit": "µm"}
    metadata.update(PhysicalSizeX=110.0, PhysicalSizeXUnit="nm", PhysicalSizeY=120.0, PhysicalSizeYUnit="nm")
    tifffile.imwrite(source, stack, ome=True, metadata=metadata)
    code, _, err = sepconv(capsys, "sobel", source, "-o", tmp_path / "out")
    assert code == 0, err
    (output,) = (tmp_path / "out").iterdir()
    with tifffile.TiffFile(output) as tif:
        page = tif.pages.first
        np.testing.assert_allclose(page.get_resolution(), (1 / 0.11, 1 / 0.12))
        assert page.resolutionunit == tifffile.RESUNIT.MICROMETER
        np.testing.assert_allclose(tif.shaped_metadata[0]["spacing"], 0.7)


def test_imagej_z_spacing_goes_on_the_z_axis(tmp_path, rng):
    """An ImageJ hyperstack ZCYX had its z spacing put on the channel axis (the third last)."""
    data = rng.integers(0, 1000, (4, 3, 20, 22)).astype(np.uint16)
    options = {"imagej": True, "resolution": (5.0, 4.0)}
    for axes, index in (("ZCYX", 0), ("TZYX", 1), ("ZYX", 0), ("CYX", None)):
        path = tmp_path / f"{axes}.tif"
        image = data if len(axes) == 4 else data[:, 0]
        tifffile.imwrite(path, image, metadata={"spacing": 1.5, "unit": "um", "axes": axes}, **options)
        source = _io.open_source(path)
        z = [a for a, s in enumerate(source.spacing[:-2]) if s is not None]
        assert z == ([] if index is None else [index]), axes
        assert source.spacing[-2:] == [0.25, 0.2] and source.units[-1] == "micrometer"


def test_a_tiff_of_several_images_is_reported_not_cut_to_the_first(tmp_path, capsys, stack):
    """Only the first image (series) of a multi-image TIFF was filtered, without a word."""
    with tifffile.TiffWriter(tmp_path / "two.ome.tif", ome=True) as writer:
        writer.write(stack, metadata={"axes": "ZYX"})
        writer.write(stack + 1, metadata={"axes": "ZYX"})
    with tifffile.TiffWriter(tmp_path / "shapes.tif") as writer:
        writer.write(stack[0])
        writer.write(stack[0, :5, :6])
    write(tmp_path / "one.tif", stack)
    code, _, err = sepconv(
        capsys,
        "sobel",
        tmp_path / "two.ome.tif",
        tmp_path / "shapes.tif",
        tmp_path / "one.tif",
        "-o",
        tmp_path / "out",
    )
    assert code == 1
    assert "two.ome.tif: holds 2 images (TIFF series)" in err and "shapes.tif: holds 2 images" in err
    assert visible(tmp_path / "out") == ["one.tif"]


def test_leftover_names():
    assert _io.is_leftover(Path(".a.tif.partial-12"))
    assert _io.is_leftover(Path(".a.ome.zarr.old-3"))
    assert not _io.is_leftover(Path("a.tif"))


# -- the Gaussian family ----------------------------------------------------------------------------


def test_gaussian_family_filters(tmp_path, capsys, rng):
    stack = rng.random((2, 19, 23), dtype=np.float32)
    source = write(tmp_path / "s.npy", stack)
    eight = write(tmp_path / "u.npy", (rng.random((19, 23)) * 255).astype(np.uint8))
    runs = {
        "g": (["gaussian", "--sigma", "1.5"], per_plane(sc.gaussian, stack, sigma=1.5)),
        "g3": (
            ["gaussian", "--sigma", "1,2,0.5", "--ndim", "3", "--mode", "wrap"],
            sc.gaussian(stack, sigma=[1, 2, 0.5], mode="wrap"),
        ),
        "dog": (
            ["dog", "--low-sigma", "1", "--high-sigma", "2"],
            per_plane(sc.difference_of_gaussians, stack, low_sigma=1.0, high_sigma=2.0),
        ),
        "un": (
            ["unsharp", "--radius", "2", "--amount", "0.5"],
            per_plane(sc.unsharp_mask, stack, radius=2.0, amount=0.5),
        ),
        "uni": (
            ["uniform", "--size", "5", "--mode", "constant", "--cval", "1"],
            per_plane(sc.uniform_filter, stack, size=5, mode="constant", cval=1.0),
        ),
        "lap": (["laplace"], per_plane(sc.ndimage_laplace, stack)),
    }
    for name, (args, expected) in runs.items():
        code, _, err = sepconv(capsys, args[0], source, "-o", tmp_path / name, *args[1:])
        assert code == 0, (name, err)
        result = read(tmp_path / name / "s.npy")
        assert result.dtype == expected.dtype, name
        np.testing.assert_array_equal(result, expected, err_msg=name)
    code, _, err = sepconv(capsys, "uniform", eight, "-o", tmp_path / "u8", "--dtype", "float32")
    assert code == 0, err
    np.testing.assert_array_equal(
        read(tmp_path / "u8" / "u.npy"), sc.uniform_filter(np.load(eight), output=np.float32)
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["gaussian"], "needs --sigma"),
        (["gaussian", "--sigma", "0"], "--sigma"),
        (["gaussian", "--sigma", "-1,2"], "--sigma"),
        (["dog"], "needs --low-sigma"),
        (["sobel", "--sigma", "2"], "--sigma applies to gaussian"),
        (["uniform", "--size", "0"], "--size"),
        (["unsharp", "--mode", "wrap"], "--mode"),
        (["dog", "--low-sigma", "1", "--dtype", "float32"], "dog gives float output"),
        (["uniform", "--preserve-range"], "--preserve-range does not apply"),
        (["laplace", "--preserve-range"], "--preserve-range does not apply"),
    ],
)
def test_gaussian_family_usage_errors(tmp_path, capsys, stack, args, message):
    source = write(tmp_path / "a.npy", stack)
    code, _, err = sepconv(capsys, args[0], source, "-o", tmp_path / "out", *args[1:])
    assert code == 2 and message in err, err


def test_warmup_subcommand_is_routed(capsys):
    import importlib.util

    from napari_sepconv import cli

    if importlib.util.find_spec("napari_sepconv.warmup") is None:
        assert cli.main(["warmup"]) == 2
        assert "warmup" in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as exit:
        cli.main(["warmup", "--help"])
    assert exit.value.code == 0 and "warmup" in capsys.readouterr().out


def test_kernel_is_split_once_per_run_not_per_plane(tmp_path, capsys, rng, monkeypatch):
    source = write(tmp_path / "s.npy", rng.random((8, 30, 30)))
    np.save(tmp_path / "k.npy", rng.random((7, 7)))  # fresh bytes: nothing cached yet
    calls = []
    svd = np.linalg.svd
    monkeypatch.setattr(np.linalg, "svd", lambda a, *args, **kw: calls.append(a.shape) or svd(a, *args, **kw))
    code, _, err = sepconv(capsys, "filter2d", source, "-o", tmp_path / "out", "--kernel", tmp_path / "k.npy")
    assert code == 0, err
    assert len(calls) <= 2  # the check of the layout on a tiny image, then the planes


def test_ome_tiff_physical_size_carried_to_tiff_and_ome_zarr(tmp_path, capsys, stack):
    source = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        source,
        stack,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0},
    )
    code, _, err = sepconv(capsys, "sobel", source, "-o", tmp_path / "tif")
    assert code == 0, err
    with tifffile.TiffFile(tmp_path / "tif" / "cells.tif") as tif:
        np.testing.assert_allclose(tif.pages.first.get_resolution(), (4.0, 2.0))
        assert tif.pages.first.resolutionunit == tifffile.RESUNIT.MICROMETER
        assert tif.shaped_metadata[0]["spacing"] == 2.0
    code, _, err = sepconv(capsys, "sobel", source, "-o", tmp_path / "ome", "--format", "ome-zarr")
    assert code == 0, err
    attributes = zarr.open_group(str(tmp_path / "ome" / "cells.ome.zarr"), mode="r").attrs["ome"]
    multiscale = attributes["multiscales"][0]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.25]
    assert [axis.get("unit") for axis in multiscale["axes"]] == ["micrometer"] * 3


def test_batch_demo_removes_its_temporary_folder(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "batch_demo.py"
    spec = importlib.util.spec_from_file_location("batch_demo", path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    workdir = demo.run_demo()
    assert not workdir.exists()
    assert "Removed the temporary folder" in capsys.readouterr().out
