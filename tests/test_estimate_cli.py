"""spikeport estimate end to end through typer's runner, and its bad inputs, on the
session's trained run (conftest.py): `run_dir` is a copy for the tests that estimate
(estimates and cutoff thresholds are written into the run), `trained_run` is read as is."""
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from spikeport.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def run_dir(own_run):
    return own_run


@pytest.fixture
def time_steps(trained_run):
    return trained_run.config["time_steps"]


def test_estimate_json_has_the_documented_fields(run_dir, time_steps):
    r = invoke("estimate", run_dir, "--target", "loihi-emu", "--profile", "loihi", "--cutoff", "topk", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in ("spikes_per_sample", "hidden_usage", "synops_per_sample", "energy_per_sample_j", "cutoff"):
        assert key in res, key
    for key in ("mean_steps", "p95_steps", "accuracy", "full_accuracy", "T"):
        assert key in res["cutoff"], key
    c = res["cutoff"]
    T = time_steps
    assert c["T"] == T and 1 <= c["mean_steps"] <= T and c["p95_steps"] <= T
    assert res["spikes_per_sample"] > 0 and 0 < res["hidden_usage"] <= 1
    assert res["energy_per_sample_j"] > 0 and res["energy_profile"] == "loihi"
    # thresholds were calibrated on the training split and stored next to the run
    th = json.loads((run_dir / "cutoff_topk.json").read_text())
    assert len(th["thresholds"]) == T and "train split" in th["calibration_set"]
    assert (run_dir / "estimate-loihi-emu.json").exists()


def test_cutoff_none_counts_every_step_and_cutoff_never_counts_more(run_dir, time_steps):
    full = json.loads(invoke("estimate", run_dir, "--target", "reference", "--cutoff", "none",
                             "--json").stdout)
    cut = json.loads(invoke("estimate", run_dir, "--target", "reference", "--cutoff", "topk",
                            "--json").stdout)
    assert full["cutoff"]["mean_steps"] == time_steps and full["cutoff"]["p95_steps"] == time_steps
    assert cut["spikes_per_sample"] <= full["spikes_per_sample"]
    assert cut["synops_per_sample"] <= full["synops_per_sample"]
    assert full["cutoff"]["accuracy"] == full["cutoff"]["full_accuracy"]
    # the reference target is charged with the conventional profiles of the target
    assert set(full["energy"]) == {"cpu", "gpu", "ann-45nm"}
    # only the 45 nm profile prices memory accesses; a cutoff never adds memory traffic
    ann = full["energy"]["ann-45nm"]
    assert ann["terms_J"]["memory"] > 0 and "memory" not in " ".join(ann["not_modelled"])
    assert full["energy"]["cpu"]["terms_J"]["memory"] is None
    assert cut["memory_bytes_per_sample"] <= full["memory_bytes_per_sample"]
    assert ann["naive"]["ann_dense_with_memory_J"] > ann["naive"]["ann_dense_J"] > 0


def test_estimate_on_the_float_and_loihi_targets_agree_on_counts_where_spikes_agree(run_dir):
    a = json.loads(invoke("estimate", run_dir, "--target", "reference", "--cutoff", "none", "--json").stdout)
    b = json.loads(invoke("estimate", run_dir, "--target", "onnx", "--cutoff", "none", "--json").stdout)
    assert a["spikes_per_sample"] == b["spikes_per_sample"] and a["synops_per_sample"] == b["synops_per_sample"]


def test_plots_are_written(run_dir, tmp_path):
    r = invoke("estimate", run_dir, "--target", "reference", "--cutoff", "confidence", "--plots", tmp_path)
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["reference-accuracy-vs-step.png", "reference-energy.png", "reference-raster.png",
                     "reference-spikes-per-layer.png"]
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names)


@pytest.mark.parametrize("args, message", [
    (["--target", "loihi-emu", "--profile", "quantum"], "unknown energy profile 'quantum'"),
    (["--target", "reference", "--cutoff", "magic"], "unknown cutoff 'magic'"),
    (["--target", "reference", "--cutoff", "confidence", "--epsilon", "1.5"], "--epsilon must be in"),
    (["--target", "nowhere"], "unknown target 'nowhere'"),
])
def test_bad_estimate_input_is_one_clear_line(run_dir, args, message):
    r = invoke("estimate", run_dir, *args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_topk_on_a_bare_graph_is_refused(run_dir, tmp_path):
    invoke("export", run_dir, "--to", "nir")
    np.savez(tmp_path / "in.npz", x=np.zeros((8, 2, 1, 8, 8)), y=np.zeros(2, dtype=int))
    r = invoke("estimate", run_dir / "model.nir", "--target", "reference", "--input", tmp_path / "in.npz")
    assert r.exit_code == 2 and "calibrated on a run's training split" in r.stderr


def test_a_users_profile_file_is_validated(run_dir, tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\ndescription: x\ndevice: event-driven\nconstants:\n"
                   "  e_synop: {value: -1, unit: pJ, basis: measured, marker: primary, source: me}\n")
    r = invoke("estimate", run_dir, "--target", "reference", "--profile", bad, "--cutoff", "none")
    assert r.exit_code == 2 and "mine.yaml" in r.stderr, r.stderr


@pytest.mark.parametrize("target", ["reference", "snntorch"])
def test_estimator_benchmark_reports_both_measurements(trained_run, target):
    """Behaviour only (timings are not asserted): both sides ran the same inputs, and the
    ratios are the ratios of the reported times."""
    from spikeport.bench import bench_estimator

    r = bench_estimator(trained_run.path, target, samples=16, repeats=2, min_seconds=0.0)
    o, e = r["overhead"], r["end_to_end"]
    assert r["samples"] == 16 and r["passes"] >= 1
    assert o["inference_seconds"] > 0 and o["metrics_seconds"] > 0
    assert o["estimation_over_inference"] == pytest.approx(
        (o["inference_seconds"] + o["metrics_seconds"]) / o["inference_seconds"])
    assert e["estimation_over_inference"] == pytest.approx(e["estimation_seconds"] / e["inference_seconds"])
    assert e["median_pair_ratio"] > 0


def test_bench_refuses_an_unknown_estimator_target_before_timing(trained_run):
    r = invoke("bench", "--run", trained_run.path, "--estimator-targets", "reference,nosuch")
    assert r.exit_code != 0
    assert "nosuch" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("target", ["reference", "snntorch", "onnx", "loihi-emu"])
def test_targets_declaring_binary_spikes_emit_only_zeros_and_ones(trained_run, target):
    """The estimator takes Target.binary_spikes on trust (it skips a pass over every spike
    array); this holds each built-in target to it. Lava: tests/test_e2e.py finds its spikes
    equal to loihi-emu's, bin for bin."""
    from spikeport.exporters.targets import get_target
    from spikeport import runs as artifacts
    from spikeport.exporters.targets import run_in_batches

    tg = get_target(target)
    assert tg.counting.binary_spikes
    graph, _ = artifacts.export_run_graph(trained_run.path, write=False)
    x = artifacts.run_inputs(trained_run.path, 32).x
    rec = run_in_batches(tg, tg.compile(graph, {}), x, 128)
    assert rec.spiking
    total = 0
    for n in rec.spiking:
        v = np.asarray(rec.values[n])
        assert np.all((v == 0) | (v == 1)), n
        total += int(v.sum())
    assert total > 0


def test_a_profile_with_part_of_the_memory_levels_is_refused_before_running(run_dir, tmp_path):
    src = Path(__file__).resolve().parent.parent / "toolchain" / "estimation" / "profiles" / "ann-45nm.yaml"
    text = src.read_text().replace("name: ann-45nm", "name: partial")
    start = text.index("  e_mem_32kb:")
    end = text.index("\n  e_", start + 5)
    partial = tmp_path / "partial.yaml"
    partial.write_text(text[:start] + text[end + 1:])
    r = invoke("estimate", run_dir, "--target", "reference", "--profile", partial, "--cutoff", "none")
    assert r.exit_code == 2, r.output
    assert "e_mem_32kb" in r.stderr and "Traceback" not in r.stderr


def test_loihi_emulator_charges_neuron_updates_by_input_or_state(run_dir):
    """On loihi-emu the active neuron updates are the contract's (non-zero input or state
    before the update, recorded by the emulator); the float reference cannot tell and uses
    non-zero input current. Active + idle = dense either way."""
    emu = json.loads(invoke("estimate", run_dir, "--target", "loihi-emu", "--profile", "loihi",
                            "--cutoff", "none", "--json").stdout)
    ref = json.loads(invoke("estimate", run_dir, "--target", "reference", "--cutoff", "none",
                            "--json").stdout)
    c = emu["counts"]
    dense = c["neuron_updates_active"] + c["neuron_updates_idle"]
    assert 0 < c["neuron_updates_active"] <= dense
    est = json.loads((run_dir / "estimate-loihi-emu.json").read_text())
    nu = est["metrics"]["neuron_updates_total"]
    assert nu["active_state"] == c["neuron_updates_active"]
    assert nu["dense"] == pytest.approx(dense)
    ref_nu = json.loads((run_dir / "estimate-reference.json").read_text())["metrics"]["neuron_updates_total"]
    assert ref_nu["active_state"] is None
    assert ref["counts"]["neuron_updates_active"] == ref_nu["active_input"]


def test_a_figure_that_came_out_non_finite_is_refused_and_nothing_is_written(run_dir, monkeypatch):
    """The last line of defence: were a figure to come out NaN or inf (a bug, here forced by
    an energy model that overflows), estimate says so and writes no estimate JSON."""
    from spikeport.estimation import pipeline

    real = pipeline._energies

    def overflowing(*args):
        out = real(*args)
        for figures in out.values():
            figures["total_J"] = float("inf")
        return out

    monkeypatch.setattr(pipeline, "_energies", overflowing)
    before = sorted(p.name for p in run_dir.iterdir())
    r = invoke("estimate", run_dir, "--target", "reference", "--cutoff", "none", "--json")
    assert r.exit_code == 2 and r.stdout == "", r.output
    assert "came out as inf" in r.stderr and "nothing was written" in r.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_loihi_estimate_maps_the_network_and_splits_dynamic_from_static_energy(run_dir):
    """On a Loihi target the JSON carries the mapping, and the static term is the mapped
    cores' share of the chip; on a float target there is no mapping and a whole chip is
    charged, as the static_power entry says."""
    r = invoke("estimate", run_dir, "--target", "loihi-emu", "--profile", "loihi",
               "--cutoff", "none", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    m, e = res["mapping"], res["energy"]["loihi"]
    assert m["chip"] == "loihi" and m["cores"] == len(m["layers"]) >= 2 and m["chips"] == 1
    assert [lm["cores"] for lm in m["layers"]] == [1] * len(m["layers"])
    s = e["static_power"]
    assert s["cores"] == m["cores"]
    assert res["energy_static_j"] == pytest.approx(s["whole_chips_J"] * m["cores"] / 128)
    assert res["energy_dynamic_j"] + res["energy_static_j"] == pytest.approx(
        res["energy_per_sample_j"])
    assert 0 < res["energy_dynamic_j"] < res["energy_per_sample_j"]
    ref = json.loads(invoke("estimate", run_dir, "--target", "reference", "--profile", "loihi",
                            "--cutoff", "none", "--json").stdout)
    assert "mapping" not in ref
    assert "whole chip" in ref["energy"]["loihi"]["static_power"]["charged_for"]
    assert ref["energy_dynamic_j"] > 0


def test_the_per_layer_energy_of_the_plot_adds_up_to_the_dynamic_energy(run_dir):
    """The energy plot's per-connection and per-population bars are the dynamic energy split
    by layer: they add up to energy_dynamic_j."""
    from spikeport import estimate
    from spikeport.estimation.plots import _layer_energy

    r = estimate(run_dir, "loihi-emu", profile="loihi", cutoff="none")
    rows = _layer_energy(r)
    assert {label.split()[0] for label, _ in rows} == {"synapses", "neurons"}
    assert sum(v for _, v in rows) == pytest.approx(r.energy_dynamic_j, rel=1e-9)
