"""The benchmark's verdict on the per-family compile and first-call aims (``benchmarks/``)."""

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = str(Path(__file__).resolve().parents[1] / "benchmarks")
NO_SECTIONS = {"targets": [], "threads": {}}


@pytest.fixture(scope="module")
def report():
    """``benchmarks/report.py`` (which imports ``latency``, beside it, for the aims)."""
    sys.path.insert(0, BENCHMARKS)
    try:
        return importlib.import_module("report")
    finally:
        sys.path.remove(BENCHMARKS)


def _row(cold_s, warm_ms, cold_limit_s=2.0):
    return {
        "cold_compile_s": cold_s,
        "warm_first_call_s": warm_ms / 1e3,
        "cold_limit_s": cold_limit_s,
        "warm_limit_s": 0.3,
        "pass_cold": cold_s <= cold_limit_s,
        "pass_warm": warm_ms <= 300,
    }


def _latency(families):
    return {
        "limits": {"import": 0.3, "first_sobel": 0.5},
        "import_s": 0.09,
        "first_sobel_s": 0.2,
        "pass_import": True,
        "pass_first_sobel": True,
        "families": families,
    }


def test_every_aim_met_passes_with_the_smallest_margins(report):
    families = {"sobel": _row(1.2, 210), "sobel 3-D": _row(2.5, 260, cold_limit_s=4.0)}
    verdicts = report.verdicts(NO_SECTIONS, _latency(families))
    assert not verdicts["failed"]
    assert verdicts["lines"][-1] == (
        "PASS  per-family compile and first-call aims (2 families): every cold compile within "
        "its aim by 0.80 s or more, first calls from a warm cache 210-260 ms (aim 300 ms)"
    )


@pytest.mark.parametrize(
    "row, missed",
    [
        (_row(2.3, 200), "farid cold compile 2.30 s (aim <= 2 s)"),
        (_row(1.1, 320), "farid first call from a warm cache 320 ms (aim <= 300 ms)"),
        ({"error": "the process failed"}, "farid: the process failed"),
    ],
)
def test_a_missed_aim_fails_the_run_and_names_the_family(report, row, missed):
    families = {"sobel": _row(1.0, 190), "farid": row}
    verdicts = report.verdicts(NO_SECTIONS, _latency(families))
    assert verdicts["failed"]
    assert verdicts["lines"][-1] == f"FAIL  per-family compile and first-call aims: {missed}"
