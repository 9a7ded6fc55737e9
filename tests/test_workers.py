"""--workers: samples split into shards run at once (Lava: one simulator process each), with
the same result as one worker; a failing shard stops the others."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from spikeport.cli import app
from spikeport.core.recording import Recording
from spikeport.exporters.targets import CANCEL, Target, run_in_batches

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _fake_target(run, batch_size=None):
    return Target(name="fake", compile=lambda g, o: None, run=run, supported=list, profiles=(),
                  exactness="", summary="", batch_size=batch_size)


def test_shards_are_joined_in_sample_order():
    seen = []

    def run(_, x):
        seen.append(x.shape[1])
        return Recording({"n": x.copy()}, "n", ["n"], 1e-3)

    x = np.arange(2 * 7).reshape(2, 7, 1).astype(float)
    rec = run_in_batches(_fake_target(run), None, x, batch_size=128, workers=3)
    np.testing.assert_array_equal(rec.values["n"], x)
    assert sorted(seen) == [2, 2, 3]  # 7 samples in three contiguous shards


def test_a_failing_shard_cancels_the_shards_still_running():
    """The shard that waits (as the Lava bridge waits on its simulator) sees the cancel
    Event set once another shard fails, and the failure reaches the caller."""
    cancelled = threading.Event()

    def run(_, x):
        if x[0, 0, 0] == 0:
            time.sleep(0.2)
            raise RuntimeError("shard failed")
        event = CANCEL.get()
        assert event is not None
        for _ in range(600):
            if event.is_set():
                cancelled.set()
                raise KeyboardInterrupt
            time.sleep(0.05)
        return Recording({"n": x}, "n", ["n"], 1e-3)

    x = np.arange(4, dtype=float).reshape(1, 4, 1)
    with pytest.raises(RuntimeError, match="shard failed"):
        run_in_batches(_fake_target(run), None, x, batch_size=128, workers=2)
    assert cancelled.is_set()
    assert CANCEL.get() is None  # the caller's context is untouched


def test_workers_must_be_a_positive_whole_number(trained_run):
    result = invoke("validate", trained_run.path, "--targets", "reference", "--workers", 0)
    assert result.exit_code == 2 and "--workers must be a whole number >= 1" in result.stderr


def test_float_and_emulator_targets_give_the_same_result_for_any_number_of_workers(own_run):
    args = ["validate", own_run, "--targets", "reference,snntorch,onnx,loihi-emu", "--json"]
    one = json.loads(invoke(*args).stdout)
    three = json.loads(invoke(*args, "--workers", 3).stdout)
    assert one == three and one["samples"] > 3
    e1 = json.loads(invoke("estimate", own_run, "--target", "onnx", "--cutoff", "none",
                           "--json").stdout)
    e2 = json.loads(invoke("estimate", own_run, "--target", "onnx", "--cutoff", "none",
                           "--workers", 2, "--json").stdout)
    assert e1 == e2


@pytest.mark.lava
def test_two_lava_simulators_give_the_result_of_one(own_run):
    """`validate --targets loihi-emu,lava --workers 2` equals `--workers 1` exactly (two Lava
    processes, each on half of the samples), and both agree with the emulator."""
    args = ["validate", own_run, "--targets", "loihi-emu,lava", "--samples", 24, "--json"]
    r1, r2 = invoke(*args), invoke(*args, "--workers", 2)
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    one, two = json.loads(r1.stdout), json.loads(r2.stdout)
    assert one == two
    (pair,) = one["pairs"]
    assert pair["mismatched_spike_bins"] == 0 and pair["total_spike_bins"] > 0
