"""Rows written past the caches (``_streaming.scale_row``, and ``scale_rows`` for four rows
interleaved): the bits of the scalar loop for every length and alignment, in non-temporal
stores; rows asked for ahead of their use (``_streaming.prefetch``): one prefetch per cache
line, nothing written."""

import llvmlite.binding
import numba
import numpy as np
import pytest

from napari_sepconv._streaming import prefetch, scale_row, scale_rows


@numba.njit(cache=False)
def _scale(src, dst, factor):
    scale_row(src, dst, factor)


@numba.njit(cache=False)
def _scale4(src, d0, d1, d2, d3, factor):
    scale_rows(src, d0, d1, d2, d3, factor)


@numba.njit(cache=False)
def _prefetch_rows(image, rows):
    total = 0.0
    for r in rows:
        prefetch(image[r])
        total += image[r].sum()
    return total


def _line_aligned(n, dtype, offset):
    """A writable 1-D array of ``n`` samples starting ``offset`` samples past a 64-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.zeros((n + offset) * dtype.itemsize + 128, np.uint8)
    skip = (-raw.ctypes.data) % 64
    return raw[skip : skip + (n + offset) * dtype.itemsize].view(dtype)[offset:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_row_has_the_bits_of_the_scalar_loop(rng, dtype):
    lanes = 64 // np.dtype(dtype).itemsize
    for n in (0, 1, lanes - 1, lanes, lanes + 1, 2 * lanes - 1, 2 * lanes, 2 * lanes + 1, 100):
        src = rng.standard_normal(n + 3)
        src[:3] = [np.inf, -0.0, np.nan][: min(3, n + 3)]
        for offset in range(lanes):
            dst = _line_aligned(n, dtype, offset)
            _scale(src, dst, 1.0 / 7.0)
            expected = (src[:n] * (1.0 / 7.0)).astype(dtype)
            np.testing.assert_array_equal(dst, expected, err_msg=f"n={n} offset={offset}")


def test_scale_row_unaligned_samples_and_short_source(rng):
    raw = np.zeros(4 * 40 + 1, np.uint8)
    dst = raw[1:].view(np.float32)  # not even aligned to its samples: every sample as usual
    src = rng.standard_normal(40)
    _scale(src, dst, 0.25)
    np.testing.assert_array_equal(dst, (src * 0.25).astype(np.float32))
    with pytest.raises(ValueError, match="shorter"):
        _scale(src[:10], np.zeros(20, np.float32), 0.25)


def test_scale_row_stores_are_non_temporal():
    _scale(np.ones(64), np.zeros(64, np.float32), 1.0)
    for signature, llvm_ir in _scale.inspect_llvm().items():  # other tests compile more types
        assert "!nontemporal" in llvm_ir, signature
    if llvmlite.binding.get_process_triple().startswith("x86_64"):
        for signature, asm in _scale.inspect_asm().items():
            assert "movnt" in asm and "sfence" in asm, signature


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_rows_has_the_bits_of_the_scalar_loop(rng, dtype):
    """Four rows from interleaved samples: rows lying alike against cache lines (the bulk in
    non-temporal stores) and rows that do not (every sample as usual), every length."""
    lanes = 64 // np.dtype(dtype).itemsize
    for n in (0, 1, lanes - 1, lanes, lanes + 1, 2 * lanes + 3, 100):
        src = rng.standard_normal(4 * n + 5)
        src[:5] = [np.inf, -0.0, np.nan, -np.inf, 1e-310][: min(5, 4 * n + 5)]
        expected = (src[: 4 * n].reshape(n, 4).T * (1.0 / 7.0)).astype(dtype)
        for offsets in ([0] * 4, [3] * 4, [lanes - 1] * 4, [0, 1, 0, 0], [2, 2, 2, 5]):
            rows = [_line_aligned(n, dtype, offset % lanes) for offset in offsets]
            _scale4(src, *rows, 1.0 / 7.0)
            for r in range(4):
                np.testing.assert_array_equal(rows[r], expected[r], err_msg=f"n={n} {offsets} row {r}")


def test_scale_rows_checks_its_lengths_and_stores_non_temporally(rng):
    rows = [np.zeros(64, np.float32) for _ in range(4)]
    with pytest.raises(ValueError, match="shorter"):
        _scale4(np.ones(4 * 64 - 1), *rows, 1.0)
    with pytest.raises(ValueError, match="differ"):
        _scale4(np.ones(4 * 64), *rows[:3], np.zeros(63, np.float32), 1.0)
    for signature, llvm_ir in _scale4.inspect_llvm().items():
        assert "!nontemporal" in llvm_ir and "shufflevector" in llvm_ir, signature


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_prefetch_reads_nothing_it_should_not_and_writes_nothing(rng, dtype):
    image = rng.integers(0, 100, (5, 131)).astype(dtype)  # exact sums in any order
    before = image.copy()
    rows = np.array([0, 4, 2], np.int64)
    total = _prefetch_rows(image, rows)
    np.testing.assert_array_equal(image, before)
    assert total == sum(float(image[r].astype(np.float64).sum()) for r in rows)
    _prefetch_rows(image[:, :0], rows)  # empty rows: no line is asked for


def test_prefetch_compiles_to_prefetch_instructions():
    _prefetch_rows(np.zeros((2, 8)), np.zeros(1, np.int64))
    for signature, llvm_ir in _prefetch_rows.inspect_llvm().items():
        assert "@llvm.prefetch" in llvm_ir, signature
    if llvmlite.binding.get_process_triple().startswith("x86_64"):
        for signature, asm in _prefetch_rows.inspect_asm().items():
            assert "prefetcht1" in asm, signature


def test_prefetch_takes_contiguous_rows_only():
    with pytest.raises(numba.core.errors.TypingError):
        _prefetch_rows(np.zeros((4, 8))[:, ::2], np.zeros(1, np.int64))
