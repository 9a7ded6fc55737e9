"""The scale-out benchmarks report what they measure, small (their speed is never checked:
benchmarks measure, tests check behaviour)."""
from __future__ import annotations

from spikeport.bench import bench_estimate_memory, bench_training


def test_bench_training_trains_in_one_and_two_processes(tmp_path):
    r = bench_training("digits", epochs=1, nproc=2)
    for key in ("1_processes", "2_processes"):
        assert r[key]["seconds"] > 0 and r[key]["samples_per_s"] > 0
        assert 0.5 < r[key]["test_accuracy"] <= 1.0  # one epoch of digits learns
    assert r["speedup"] == r["1_processes"]["seconds"] / r["2_processes"]["seconds"]


def test_bench_estimate_memory_measures_each_size_in_its_own_process(trained_run):
    r = bench_estimate_memory(trained_run.path, sizes=(50, 500))
    assert set(r["peak_bytes"]) == {50, 500}
    assert all(v > 50e6 for v in r["peak_bytes"].values())  # a Python with torch and numpy
    assert r["input_bytes"][500] == 10 * r["input_bytes"][50]
    assert r["growth"] == r["peak_bytes"][500] / r["peak_bytes"][50] - 1
