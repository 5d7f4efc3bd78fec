"""``sepconv`` and OME-Zarr: NGFF 0.4 and 0.5 inputs at level 0, outputs with axes, units, scale."""

import numpy as np
import pytest
import zarr

import napari_sepconv as sc

ome_zarr = pytest.importorskip("ome_zarr")
from ome_zarr.format import FormatV04, FormatV05  # noqa: E402
from ome_zarr.io import parse_url  # noqa: E402
from ome_zarr.reader import Reader  # noqa: E402
from ome_zarr.writer import write_multiscales_metadata  # noqa: E402

from test_cli import read, sepconv, write  # noqa: E402

AXES = [
    {"name": "t", "type": "time", "unit": "second"},
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]
SCALE = [2.0, 1.0, 0.5, 0.25]
TRANSLATION = [0.0, 0.0, 10.0, 20.0]


def write_ome_zarr(path, data, version):
    """An OME-Zarr image of two levels, metadata written by the ome-zarr library."""
    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    group.create_array("s0", data=data, chunks=(1, 1, 10, data.shape[-1]))
    group.create_array("s1", data=data[..., ::2, ::2])
    transforms = [
        [{"type": "scale", "scale": SCALE}, {"type": "translation", "translation": TRANSLATION}],
        [
            {"type": "scale", "scale": [2.0, 1.0, 1.0, 0.5]},
            {"type": "translation", "translation": TRANSLATION},
        ],
    ]
    datasets = [{"path": p, "coordinateTransformations": t} for p, t in zip(["s0", "s1"], transforms)]
    write_multiscales_metadata(group, datasets, fmt=fmt, axes=AXES)
    return path


def read_ome_zarr(path):
    """What napari-ome-zarr sees: the reader's first image node."""
    node = next(iter(Reader(parse_url(str(path)))()))
    return node


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_round_trip_with_pyramid(tmp_path, capsys, rng, version):
    data = rng.random((2, 3, 20, 24), dtype=np.float32)
    source = write_ome_zarr(tmp_path / f"cells{version}.ome.zarr", data, version)
    out = tmp_path / "out"
    code, summary, err = sepconv(capsys, "sobel", source, "-o", out, "--format", "ome-zarr", "--pyramid", "2")
    assert code == 0, err
    assert "2 planes" in summary  # one per time point, the channels filtered apart
    result_path = out / f"cells{version}.ome.zarr"
    node = read_ome_zarr(result_path)
    assert [axis["name"] for axis in node.metadata["axes"]] == ["t", "c", "y", "x"]
    assert [axis.get("unit") for axis in node.metadata["axes"]] == [
        "second",
        None,
        "micrometer",
        "micrometer",
    ]
    transforms = node.metadata["coordinateTransformations"]
    assert transforms[0] == [
        {"type": "scale", "scale": SCALE},
        {"type": "translation", "translation": TRANSLATION},
    ]
    assert transforms[1][0]["scale"] == [2.0, 1.0, 1.0, 0.5]
    assert [level.shape for level in node.data] == [(2, 3, 20, 24), (2, 3, 10, 12), (2, 3, 5, 6)]
    expected = np.stack([sc.sobel(frame, channel_axis=0) for frame in data])
    np.testing.assert_array_equal(np.asarray(node.data[0]), expected)
    np.testing.assert_allclose(
        np.asarray(node.data[1]), expected.reshape(2, 3, 10, 2, 12, 2).mean(axis=(3, 5)), rtol=1e-6
    )
    # A rerun resumes; another pyramid depth is made otherwise.
    assert (
        "1 skipped"
        in sepconv(capsys, "sobel", source, "-o", out, "--format", "ome-zarr", "--pyramid", "2")[1]
    )
    code, _, err = sepconv(capsys, "sobel", source, "-o", out, "--format", "ome-zarr")
    assert code == 1 and "pyramid" in err


def test_ome_zarr_input_to_other_formats_and_time_axis(tmp_path, capsys, rng):
    data = rng.random((3, 2, 16, 18), dtype=np.float32)
    source = write_ome_zarr(tmp_path / "img.ome.zarr", data, "0.5")
    # --ndim 3 would need three space axes: time and channel are not space.
    code, _, err = sepconv(capsys, "sobel", source, "-o", tmp_path / "vol", "--ndim", "3")
    assert code == 1 and "spatial axes" in err
    code, _, err = sepconv(
        capsys, "gaussian", source, "-o", tmp_path / "out", "--sigma", "1.5", "--format", "tif"
    )
    assert code == 0, err
    expected = np.stack([sc.gaussian(frame, sigma=1.5, channel_axis=0) for frame in data])
    np.testing.assert_allclose(read(tmp_path / "out" / "img.tif"), expected, rtol=1e-6, atol=1e-7)


def test_plain_inputs_to_ome_zarr_get_axes_and_tiff_pixel_size(tmp_path, capsys, rng):
    import tifffile

    rgb = rng.random((14, 12, 3), dtype=np.float32)
    stack = rng.random((2, 3, 14, 12), dtype=np.float32)
    tifffile.imwrite(
        tmp_path / "rgb.tif", rgb, photometric="rgb", resolution=(2.0, 4.0), resolutionunit="MICROMETER"
    )
    write(tmp_path / "stack.npy", stack)
    code, _, err = sepconv(
        capsys,
        "sobel",
        tmp_path / "rgb.tif",
        tmp_path / "stack.npy",
        "-o",
        tmp_path / "out",
        "--format",
        "ome-zarr",
        "--pyramid",
        "1",
    )
    assert code == 0, err
    node = read_ome_zarr(tmp_path / "out" / "rgb.ome.zarr")
    assert [(a["name"], a["type"]) for a in node.metadata["axes"]] == [
        ("c", "channel"),
        ("y", "space"),
        ("x", "space"),
    ]
    assert node.metadata["axes"][1]["unit"] == "micrometer"
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [1.0, 0.25, 0.5]
    # Channels last in the file, first in OME-Zarr.
    np.testing.assert_array_equal(
        np.asarray(node.data[0]), np.moveaxis(sc.sobel(rgb, channel_axis=-1), -1, 0)
    )
    node = read_ome_zarr(tmp_path / "out" / "stack.ome.zarr")
    assert [a["name"] for a in node.metadata["axes"]] == ["t", "z", "y", "x"]
    np.testing.assert_array_equal(
        np.asarray(node.data[0]), np.stack([[sc.sobel(plane) for plane in volume] for volume in stack])
    )


def test_napari_reader_opens_the_output_with_its_scale(tmp_path, capsys, rng):
    """napari opens OME-Zarr through the napari-ome-zarr plugin, a thin layer over ome-zarr's
    reader: its layer data and scale come from the reader's node, checked here."""
    reader = pytest.importorskip("napari_ome_zarr._reader", reason="napari-ome-zarr not installed")
    data = rng.random((1, 2, 16, 16), dtype=np.float32)
    source = write_ome_zarr(tmp_path / "n.ome.zarr", data, "0.5")
    assert sepconv(capsys, "sobel", source, "-o", tmp_path / "out", "--format", "ome-zarr")[0] == 0
    path = str(tmp_path / "out" / "n.ome.zarr")
    layers = reader.napari_get_reader(path)(path)
    assert layers and list(layers[0][1]["scale"])[-2:] == SCALE[-2:]


def test_ome_zarr_input_gives_ome_zarr_by_default_and_pyramid_needs_it(tmp_path, capsys, rng):
    data = rng.random((1, 2, 12, 10), dtype=np.float32)
    source = write_ome_zarr(tmp_path / "d.ome.zarr", data, "0.5")
    plain = write(tmp_path / "p.npy", data[0, 0])
    code, _, err = sepconv(capsys, "sobel", source, plain, "-o", tmp_path / "out", "--pyramid", "1")
    assert code == 1 and "p.npy: --pyramid applies to OME-Zarr outputs" in err
    assert len(read_ome_zarr(tmp_path / "out" / "d.ome.zarr").data) == 2
    code, _, err = sepconv(
        capsys, "sobel", source, "-o", tmp_path / "o2", "--pyramid", "1", "--format", "zarr"
    )
    assert code == 2 and "--pyramid" in err


def test_interrupted_pyramid_leaves_no_output(tmp_path, capsys, rng, monkeypatch):
    """An OME-Zarr output appears only whole: an interruption between levels removes it."""
    import signal

    from napari_sepconv import _io

    source = write(tmp_path / "a.npy", rng.random((2, 32, 32), dtype=np.float32))
    create_level = _io.create_level

    def interrupted(final, name, *args, **kwargs):
        if name == "2":
            raise KeyboardInterrupt
        return create_level(final, name, *args, **kwargs)

    monkeypatch.setattr(_io, "create_level", interrupted)
    out = tmp_path / "out"
    code, _, err = sepconv(capsys, "sobel", source, "-o", out, "--format", "ome-zarr", "--pyramid", "3")
    assert code == 128 + signal.SIGINT and "interrupted" in err
    assert list(out.iterdir()) == []
    monkeypatch.setattr(_io, "create_level", create_level)
    assert sepconv(capsys, "sobel", source, "-o", out, "--format", "ome-zarr", "--pyramid", "3")[0] == 0
    assert len(read_ome_zarr(out / "a.ome.zarr").data) == 4


def test_hand_written_ngff_04_with_untyped_axes(tmp_path, capsys, rng):
    """Metadata as other writers leave it: axes named only, a scale and no translation."""
    data = rng.random((3, 14, 16), dtype=np.float32)
    group = zarr.open_group(str(tmp_path / "z.zarr"), mode="w", zarr_format=2)
    group.create_array("0", data=data)
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": "z"}, {"name": "y"}, {"name": "x"}],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [3.0, 1.5, 0.5]}]}
            ],
        }
    ]
    code, _, err = sepconv(capsys, "sobel", tmp_path / "z.zarr", "-o", tmp_path / "out", "--ndim", "3")
    assert code == 0, err
    node = read_ome_zarr(tmp_path / "out" / "z.ome.zarr")
    assert [(a["name"], a["type"]) for a in node.metadata["axes"]] == [
        ("z", "space"),
        ("y", "space"),
        ("x", "space"),
    ]
    assert node.metadata["coordinateTransformations"][0][0]["scale"] == [3.0, 1.5, 0.5]
    np.testing.assert_array_equal(np.asarray(node.data[0]), sc.sobel(data))


def test_a_pyramid_stops_at_one_pixel(tmp_path, capsys, rng):
    """--pyramid 9 on a 5 x 6 image wrote levels 3 to 9 as the same 1 x 1 array."""
    source = write(tmp_path / "small.npy", rng.random((5, 6), dtype=np.float32))
    code, _, err = sepconv(
        capsys, "sobel", source, "-o", tmp_path / "out", "--format", "ome-zarr", "--pyramid", "9"
    )
    assert code == 0, err
    node = read_ome_zarr(tmp_path / "out" / "small.ome.zarr")
    assert [level.shape for level in node.data] == [(5, 6), (2, 3), (1, 1)]
    assert len(node.metadata["coordinateTransformations"]) == 3


def test_empty_output_name_is_a_usage_error(tmp_path, capsys, rng, monkeypatch):
    source = write(tmp_path / "a.npy", rng.random((5, 6), dtype=np.float32))
    monkeypatch.chdir(tmp_path)
    code, _, err = sepconv(capsys, "sobel", source, "-o", "")
    assert code == 2 and "-o: give an output folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]
