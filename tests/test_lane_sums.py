"""Running sums of four interleaved lines in the lanes of a vector (``_lane_sums``): each
lane the bits of the one-line chain (its window summed left to right from zero, then one
difference of an entering and a leaving sample added per step), NaN, infinities, -0 and
subnormal samples included, and nothing written outside the segments."""

import numba
import numpy as np
import pytest

from napari_sepconv._lane_sums import LANES, lane_sums


@numba.njit(cache=False)
def _four_segments(ext, sums, first, K, size, steps):
    lane_sums(ext, sums, first, K, size, steps, 4)


@numba.njit(cache=False)
def _one_segment(ext, sums, first, K, size, steps):
    lane_sums(ext, sums, first, K, size, steps, 1)


def _chain(line, start, size, steps):
    """One segment's sums as the scalar loop gives them (Python floats are float64)."""
    s = 0.0
    for k in range(size):
        s = s + float(line[start + k])
    sums = [s]
    for t in range(steps):
        s = s + (float(line[start + t + size]) - float(line[start + t]))
        sums.append(s)
    return sums


def _samples(rng, n):
    line = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)
    special = rng.random(n)
    line[special < 0.02] = np.nan
    line[(special >= 0.02) & (special < 0.04)] = np.inf
    line[(special >= 0.04) & (special < 0.06)] = -np.inf
    line[(special >= 0.06) & (special < 0.1)] = -0.0
    line[(special >= 0.1) & (special < 0.12)] = 1e-310
    return line


@pytest.mark.parametrize("segments", [1, 4])
def test_each_lane_gets_the_bits_of_the_one_line_chain(rng, segments):
    call = _four_segments if segments == 4 else _one_segment
    for _ in range(40):
        K = int(rng.integers(1, 12))
        size = int(rng.integers(1, 9))
        steps = int(rng.integers(0, K))
        first = int(rng.integers(0, 5))
        n = first + (segments - 1) * K + steps + size + int(rng.integers(0, 4))
        lines = _samples(rng, LANES * n).reshape(n, LANES)
        if rng.random() < 0.5:
            lines[:, :] = np.abs(rng.standard_normal((n, LANES)))  # finite sums too
        sums = np.full(LANES * n, 7.5)
        call(lines.reshape(-1), sums, first, K, size, steps)
        got = sums.reshape(n, LANES)
        written = np.zeros(n, bool)
        for j in range(segments):
            start = first + j * K
            written[start : start + steps + 1] = True
            for r in range(LANES):
                expected = np.array(_chain(lines[:, r], start, size, steps))
                np.testing.assert_array_equal(
                    got[start : start + steps + 1, r], expected, err_msg=f"K={K} size={size} lane {r}"
                )
        assert np.all(got[~written] == 7.5)


def test_lane_sums_takes_float64_lines_and_a_constant_count():
    with pytest.raises(numba.core.errors.TypingError):
        _four_segments(np.zeros(16, np.float32), np.zeros(16), 0, 1, 1, 0)

    @numba.njit(cache=False)
    def runtime_count(ext, sums, count):
        lane_sums(ext, sums, 0, 1, 1, 0, count)

    with pytest.raises(numba.core.errors.TypingError):
        runtime_count(np.zeros(16), np.zeros(16), 4)
