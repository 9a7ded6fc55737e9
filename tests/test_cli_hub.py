"""export / inspect / run / validate through typer's runner, on copies of the session's
trained run (conftest.py: every test here writes artifacts into its run directory)."""
import json
from pathlib import Path

import nir
import numpy as np
import pytest
from typer.testing import CliRunner

from spikeport.cli import app

runner = CliRunner()
FLOAT_TARGETS = "reference,snntorch,onnx"  # all registered; a missing one must fail, not shrink the list


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def run_dir(own_run):
    return own_run


def test_export_nir_writes_the_graph_into_the_run(run_dir):
    r = invoke("export", run_dir, "--to", "nir", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    g = nir.read(info["artifact"])
    assert Path(info["artifact"]) == run_dir / "model.nir"
    assert [type(n).__name__ for n in g.nodes.values()].count("LIF") == 2


def test_inspect_lists_nodes_neurons_and_metadata(run_dir):
    invoke("export", run_dir, "--to", "nir")
    r = invoke("inspect", run_dir / "model.nir")
    assert r.exit_code == 0, r.output
    assert "LIF" in r.stdout and "neurons: 26" in r.stdout and "reset_mode: zero" in r.stdout
    s = json.loads(invoke("inspect", run_dir / "model.nir", "--json").stdout)
    assert s["neurons"] == 26 and s["dt"] == 1e-4


def test_validate_reports_accuracy_per_target_and_mismatches_per_pair(run_dir, trained_run):
    r = invoke("validate", run_dir, "--targets", FLOAT_TARGETS, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    # what `evaluate` recomputes from the checkpoint (test_cli.py: equal to training's figures)
    test_accuracy = trained_run.summary["test_accuracy"]
    names = FLOAT_TARGETS.split(",")
    assert set(res["targets"]) == set(names)
    for acc in res["targets"].values():
        assert acc == pytest.approx(test_accuracy)  # the same test split, same spikes
    assert len(res["pairs"]) == len(names) * (len(names) - 1) // 2
    T = trained_run.config["time_steps"]
    for p in res["pairs"]:
        assert p["mismatched_spike_bins"] == 0
        assert p["total_spike_bins"] == res["samples"] * T * (16 + 10)
    assert res["spikes"]["reference"]["layers_2"] > 0
    assert (run_dir / "validation.json").exists()


def test_export_loihi_writes_netx_and_the_loss_report(run_dir):
    r = invoke("export", run_dir, "--to", "loihi", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["artifact"] == str(run_dir / "model.net")
    report = json.loads((run_dir / "loihi_report.json").read_text())
    assert [l["neuron"] for l in report["layers"]] == ["layers_2", "layers_4"]
    for layer in report["layers"]:
        assert layer["weights_clipped_fraction"] == 0.0
        assert layer["voltage_decay"]["vDecay"] == 410 and layer["current_decay"]["iDecay"] == 4096
    text = invoke("export", run_dir, "--to", "loihi").stdout
    assert "weight rms error" in text and "threshold 0.3 -> 0.3" in text


def test_loihi_targets_refuse_analog_input_in_one_line(run_dir, tmp_path):
    invoke("export", run_dir, "--to", "nir")
    np.savez(tmp_path / "analog.npz", x=np.full((3, 2, 1, 8, 8), 0.5))
    r = invoke("validate", run_dir / "model.nir", "--targets", "reference,loihi-emu",
               "--input", tmp_path / "analog.npz")
    assert r.exit_code == 2 and "0/1 input spikes" in r.stderr and "Traceback" not in r.output


def test_run_on_a_graph_with_an_input_file(run_dir, tmp_path):
    invoke("export", run_dir, "--to", "nir")
    x = (np.random.default_rng(0).random((4, 7, 1, 8, 8)) < 0.5).astype(np.float64)
    np.savez(tmp_path / "in.npz", x=x, y=np.zeros(7, dtype=int))
    r = invoke("run", run_dir / "model.nir", "--target", "snntorch", "--input", tmp_path / "in.npz",
               "--out", tmp_path / "rec.npz", "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["samples"] == 7 and info["steps"] == 4 and 0 <= info["accuracy"] <= 1
    rec = np.load(tmp_path / "rec.npz")
    assert rec["layers_2"].shape == (4, 7, 16)


@pytest.mark.parametrize("args, message", [
    (["validate", "{run}", "--targets", "reference,quantum"], "unknown target 'quantum'"),
    (["validate", "{run}", "--targets", "reference,reference"], "listed twice"),
    (["validate", "{tmp}/missing.nir"], "NIR file not found"),
    (["validate", "{tmp}/garbage.nir", "--input", "{tmp}/in.npz"], "not a readable NIR graph"),
    (["run", "{run}/model.nir", "--target", "reference"], "without data"),
    (["run", "{run}/model.nir", "--input", "{tmp}/bad.npz"], "no array named 'x'"),
    (["export", "{run}", "--to", "tflite"], "unknown export format"),
    (["inspect", "{tmp}/garbage.nir"], "not a readable NIR graph"),
])
def test_bad_input_is_one_clear_line(run_dir, tmp_path, args, message):
    invoke("export", run_dir, "--to", "nir")
    (tmp_path / "garbage.nir").write_bytes(b"not hdf5 at all")
    np.savez(tmp_path / "bad.npz", spikes=np.zeros((2, 1, 64)))
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 1, 64)))
    r = invoke(*[a.format(run=run_dir, tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in r.output
