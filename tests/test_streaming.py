"""Bounded memory: inputs read a block of samples at a time (`spikeport.core.samples`) give
the same values and the same estimate as inputs loaded whole, and estimate's peak memory does
not grow with the number of samples."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from spikeport import runs
from spikeport.core.errors import SpikeportError
from spikeport.core.samples import Samples, npz_member
from spikeport.estimation.pipeline import estimate

RNG = np.random.default_rng(11)


def test_an_uncompressed_npz_member_is_read_in_blocks_as_saved(tmp_path):
    x = RNG.random((5, 37, 2, 3)).astype(np.float32)
    np.savez(tmp_path / "a.npz", y=np.arange(37), x=x)
    lazy = npz_member(tmp_path / "a.npz", "x")
    assert isinstance(lazy, Samples) and lazy.shape == x.shape and lazy.dtype == x.dtype
    for a, b in ((0, 37), (3, 4), (30, 99), (10, 10), (36, 37)):
        np.testing.assert_array_equal(lazy[:, a:b], x[:, a:b])
    np.testing.assert_array_equal(np.asarray(lazy), x)
    np.testing.assert_array_equal(lazy.head(7)[:, 5:20], x[:, 5:7])
    np.savez_compressed(tmp_path / "c.npz", x=x)
    assert npz_member(tmp_path / "c.npz", "x") is None  # compressed: loaded whole instead


def test_a_truncated_npz_is_still_refused_in_one_line(tmp_path):
    np.savez(tmp_path / "a.npz", x=RNG.random((4, 50, 8)).astype(np.float32))
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(SpikeportError, match="cut.npz"):
        runs.npz_inputs(tmp_path / "cut.npz", lazy=True)


def test_a_lazily_encoded_split_equals_the_eager_one_read_in_any_order(trained_run):
    # the tiny recipe rate-codes: the random stream must be consumed as in evaluation
    eager = runs.run_inputs(trained_run.path, split="train").x
    lazy = runs.run_inputs(trained_run.path, split="train", lazy=True).x
    assert isinstance(lazy, Samples) and lazy.shape == eager.shape
    n = eager.shape[1]
    for a, b in ((n - 40, n), (0, 7), (5, 300), (299, 301), (0, n)):  # backwards too
        np.testing.assert_array_equal(lazy[:, a:b], eager[:, a:b])
    parts = {}

    def read(a, b):
        parts[a] = lazy[:, a:b]

    threads = [threading.Thread(target=read, args=(a, a + 100)) for a in range(0, n, 100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(np.concatenate([parts[a] for a in sorted(parts)], 1), eager)


def test_a_bad_value_in_a_late_block_is_named_by_its_sample(trained_run, tmp_path):
    x = runs.run_inputs(trained_run.path).x
    x[2, 300, 0, 1, 1] = np.nan
    np.savez(tmp_path / "bad.npz", x=x)
    graph, _ = runs.export_run_graph(trained_run.path, write=False)
    lazy = runs.npz_inputs(tmp_path / "bad.npz", lazy=True)
    assert isinstance(lazy.x, Samples)
    with pytest.raises(SpikeportError, match=r"nan at index \(2, 300, 0, 1, 1\)"):
        runs.check_inputs(graph, lazy)
    x[2, 300, 0, 1, 1] = 0.5
    np.savez(tmp_path / "analog.npz", x=x)
    with pytest.raises(SpikeportError, match=r"holds 0.5 at index \(2, 300, 0, 1, 1\)"):
        runs.check_inputs(graph, runs.npz_inputs(tmp_path / "analog.npz", lazy=True),
                          targets=["loihi-emu"])


def test_estimate_on_a_file_read_in_blocks_equals_the_file_loaded_whole(trained_run, tmp_path):
    import nir

    inputs = runs.run_inputs(trained_run.path)
    graph = tmp_path / "model.nir"
    nir.write(graph, runs.export_run_graph(trained_run.path, write=False)[0])
    np.savez(tmp_path / "plain.npz", x=inputs.x, y=inputs.y)  # read in blocks
    np.savez_compressed(tmp_path / "packed.npz", x=inputs.x, y=inputs.y)  # loaded whole
    for target in ("reference", "loihi-emu"):
        a = estimate(graph, target, cutoff="confidence", input_file=tmp_path / "plain.npz",
                     batch_size=50).as_dict()
        b = estimate(graph, target, cutoff="confidence", input_file=tmp_path / "packed.npz",
                     batch_size=50).as_dict()
        a.pop("inputs"), b.pop("inputs")
        assert a == b


# VmHWM, the peak resident memory of this process image (ru_maxrss would carry the parent
# pytest's peak over fork and exec).
PEAK = """
import re, sys
from spikeport.estimation.pipeline import estimate
estimate(sys.argv[1], "loihi-emu", cutoff="confidence", input_file=sys.argv[2])
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


@pytest.mark.slow
def test_estimate_peak_memory_does_not_grow_with_the_samples(trained_run, tmp_path):
    """Issue 16: 1,000 and 10,000 samples within 20 % of each other. 80 steps of 64 inputs:
    10,000 samples are 205 MB of float32 on disk and would be 410 MB more as the float64 the
    targets take, had they been loaded whole (the test fails so without streaming)."""
    import nir

    graph = tmp_path / "model.nir"
    nir.write(graph, runs.export_run_graph(trained_run.path, write=False)[0])
    x = runs.run_inputs(trained_run.path, split="train")
    peaks = {}
    for n in (1000, 10000):
        idx = np.arange(n) % x.x.shape[1]
        np.savez(tmp_path / f"in{n}.npz", x=np.tile(x.x[:, idx], (10, 1, 1, 1, 1)), y=x.y[idx])
        out = subprocess.run([sys.executable, "-c", PEAK, str(graph), str(tmp_path / f"in{n}.npz")],
                             capture_output=True, text=True, check=True)
        peaks[n] = int(out.stdout.split()[-1])
    assert peaks[10000] < 1.2 * peaks[1000], peaks


def test_reading_more_than_the_memory_budget_at_once_is_refused(tmp_path, monkeypatch):
    """A target that takes every sample in one call reads the whole input: the budget the
    eager loaders checked still holds for a streamed input."""
    np.savez(tmp_path / "a.npz", x=RNG.random((4, 1000, 8)).astype(np.float32))
    lazy = npz_member(tmp_path / "a.npz", "x")
    monkeypatch.setenv("SPIKEPORT_MEMORY_BUDGET", "20000")  # bytes: 100 samples fit, 1000 not
    assert lazy[:, 0:100].shape == (4, 100, 8)
    with pytest.raises(SpikeportError, match="1000 samples of 4 steps held at once"):
        lazy[:, 0:1000]
    with pytest.raises(SpikeportError, match="--samples"):
        np.asarray(lazy)
