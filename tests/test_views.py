"""Row views made in place (``_views.row_view``, ``_views.row_view_or``): the samples and
the memory of NumPy's slice, for every rank, bound and dtype; the types refused."""

import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

from napari_sepconv._views import row_view, row_view_or


@numba.njit(cache=False)
def _row_1d(a, start, stop):
    return row_view(a, (), start, stop).copy()


@numba.njit(cache=False)
def _row_1d_to_end(a, start):
    return row_view(a, (), start, None).copy()


@numba.njit(cache=False)
def _row_2d(a, i, start, stop):
    return row_view(a, i, start, stop).copy()


@numba.njit(cache=False)
def _row_3d_to_end(a, i, j, start):
    return row_view(a, (i, j), start, None).copy()


@numba.njit(cache=False)
def _row_4d(a, i, j, k, start, stop):
    return row_view(a, (i, j, k), start, stop).copy()


@numba.njit(cache=False)
def _fill_row(a, i, start, stop, value):
    view = row_view(a, i, start, stop)
    view[:] = value
    return view.size


@numba.njit(cache=False)
def _row_or(inside, a, i, j, start, stop, other):
    return row_view_or(inside, a, (i, j), start, stop, other).copy()


@numba.njit(cache=False)
def _row_or_written(inside, a, i, start, stop, other):
    view = row_view_or(inside, a, i, start, stop, other)
    view[0] = -1
    return view.size


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.int64])
def test_row_view_is_numpys_slice_for_every_rank_and_bound(rng, dtype):
    data = (rng.random((3, 4, 5, 9)) * 100).astype(dtype)
    for start, stop in [(0, 9), (0, 0), (2, 7), (8, 9), (9, 9), (4, 4)]:
        np.testing.assert_array_equal(_row_1d(data[1, 2, 3].copy(), start, stop), data[1, 2, 3, start:stop])
        np.testing.assert_array_equal(_row_1d_to_end(data[0, 0, 0].copy(), start), data[0, 0, 0, start:])
        plane = data[2, 1].copy()
        for i in range(plane.shape[0]):
            np.testing.assert_array_equal(_row_2d(plane, i, start, stop), plane[i, start:stop])
        volume = data[1].copy()
        for i in range(volume.shape[0]):
            for j in range(volume.shape[1]):
                np.testing.assert_array_equal(_row_3d_to_end(volume, i, j, start), volume[i, j, start:])
        np.testing.assert_array_equal(_row_4d(data, 2, 3, 4, start, stop), data[2, 3, 4, start:stop])


def test_row_view_shares_memory_and_writes_through(rng):
    plane = rng.random((4, 10))
    expected = plane.copy()
    expected[2, 3:8] = 7.0
    assert _fill_row(plane, 2, 3, 8, 7.0) == 5
    np.testing.assert_array_equal(plane, expected)  # the row, nothing before or after it


def test_row_view_or_selects_the_row_or_the_other(rng):
    volume = rng.random((2, 5, 6)).astype(np.float32)
    other = np.full(4, 3.5, np.float32)
    np.testing.assert_array_equal(_row_or(True, volume, 1, 3, 1, 5, other), volume[1, 3, 1:5])
    np.testing.assert_array_equal(_row_or(False, volume, 1, -1, 1, 5, other), other)
    np.testing.assert_array_equal(_row_or(False, volume, 0, 4, 2, 6, other), other)


def test_row_view_or_writes_where_it_points(rng):
    plane = rng.random((3, 6))
    other = np.zeros(6)
    before = plane.copy()
    assert _row_or_written(False, plane, 1, 0, 6, other) == 6
    np.testing.assert_array_equal(plane, before)
    assert other[0] == -1
    assert _row_or_written(True, plane, 1, 2, 6, other) == 4
    assert plane[1, 2] == -1
    before[1, 2] = -1
    np.testing.assert_array_equal(plane, before)


def test_a_read_only_array_gives_read_only_rows(rng):
    plane = rng.random((3, 6))
    plane.flags.writeable = False
    np.testing.assert_array_equal(_row_2d(plane, 1, 0, 6), plane[1])
    with pytest.raises(TypingError):
        _fill_row(plane, 1, 0, 6, 1.0)  # a store into a read-only view does not compile
    other = np.zeros(6)
    with pytest.raises(TypingError):  # nor into a row that may be the read-only array's
        _row_or_written(True, plane, 1, 0, 6, other)


@pytest.mark.parametrize(
    "call",
    [
        lambda: _row_2d(np.zeros((4, 6), order="F"), 1, 0, 4),  # not C-contiguous
        lambda: _row_2d(np.zeros((4, 6))[:, ::2], 1, 0, 2),  # a strided view
        lambda: _row_2d(np.zeros((2, 4, 6)), 1, 0, 4),  # one index for a 3-D array
        lambda: _row_3d_to_end(np.zeros((4, 6)), 1, 1, 0),  # two for a 2-D one
        lambda: _row_2d(np.zeros((4, 6)), 1, 0.5, 4),  # a float bound
        lambda: _row_2d(np.zeros((4, 6)), 1.0, 0, 4),  # a float index
        lambda: _row_or(True, np.zeros((2, 3, 4)), 0, 0, 0, 4, np.zeros(4, np.float32)),  # other dtype
        lambda: _row_or(1, np.zeros((2, 3, 4)), 0, 0, 0, 4, np.zeros(4)),  # an integer flag
    ],
)
def test_other_types_are_refused(call):
    with pytest.raises(TypingError):
        call()
