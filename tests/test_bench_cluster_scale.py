"""The arithmetic of benchmarks/bench_cluster_scale.py on hand-computed cases (no Ray)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cluster_scale.py"
_spec = importlib.util.spec_from_file_location("bench_cluster_scale", _PATH)
assert _spec and _spec.loader
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_busy_fraction_counts_only_the_window():
    # 2 GPUs over [0, 10]: one trial holds 1 GPU on [0, 10], another 1 GPU on [5, 20] -> 10 + 5 of 20 GPU-seconds.
    assert bench.busy_fraction([(0, 10, 1), (5, 20, 1)], capacity=2, start=0, end=10) == pytest.approx(0.75)
    # an 8-GPU trial entirely outside the window counts nothing
    assert bench.busy_fraction([(11, 12, 8)], capacity=8, start=0, end=10) == 0.0
    assert math.isnan(bench.busy_fraction([], capacity=8, start=5, end=5))


def test_slot_gaps_match_freed_slots_first_in_first_out():
    # concurrency 2: trials 1-2 start on the empty cluster at 0 and 0.5; slots free at 10 and 12, trials 3-4 start
    # at 11 and 12.5 -> gaps 1.0 and 0.5; an extra freed slot without a later start is not a gap
    assert bench.slot_gaps([12, 10, 30], [0, 0.5, 12.5, 11], 2) == pytest.approx([1.0, 0.5])


def test_slope_and_quantiles():
    assert bench.slope([0, 1, 2, 3], [5, 7, 9, 11]) == pytest.approx(2.0)
    assert math.isnan(bench.slope([1, 1], [3, 4]))
    assert bench.quantiles([3.0, 1.0, 2.0]) == "2.00 / 3.00 / 3.00 s"
    assert bench.quantiles([]) == "-"


def test_children_finds_a_child_process_and_rss_is_positive():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert child.pid in bench.children(__import__("os").getpid())
        assert bench.rss_mb(child.pid) > 1
    finally:
        child.kill()
        child.wait()
