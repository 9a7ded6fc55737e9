"""The CLI through typer's runner: results, reproducibility, and every bad input ending in
one clear line, exit code 2, no traceback and nothing overwritten."""
import json

import pytest
import torch
from typer.testing import CliRunner

from spikeport.cli import app
from tests.cli_checks import assert_user_error

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_json_has_the_four_fields_and_writes_the_run_dir(trained_run):
    out, summary = trained_run.path, trained_run.summary
    assert set(summary) == {"run_dir", "test_accuracy", "test_f1", "hidden_usage"}
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and 0.0 <= summary["hidden_usage"] <= 1.0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    for k in ("test_accuracy", "test_f1", "hidden_usage"):
        assert metrics[k] == summary[k]
    assert metrics["train_history"][0]["epoch"] == 1


def test_evaluate_recomputes_exactly_the_training_figures(trained_run):
    result = invoke("evaluate", trained_run.path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == trained_run.summary


def test_evaluate_prints_a_table(trained_run):
    summary = trained_run.summary
    result = invoke("evaluate", trained_run.path)
    assert result.exit_code == 0
    assert f"{summary['test_accuracy']:.4f}" in result.stdout and "hidden usage" in result.stdout


def test_same_seed_same_weights_other_seed_other_weights(trained_run, tmp_path):
    args = trained_run.train_args  # the shared run's recipe and overrides, its seed
    assert invoke("train", *args, "--out", tmp_path / "a").exit_code == 0
    assert invoke("train", *args, "--out", tmp_path / "b", "--seed", 99).exit_code == 0
    ref = torch.load(trained_run.path / "checkpoint.pt", weights_only=True)["state_dict"]
    same = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["state_dict"]
    other = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert ref.keys() == same.keys()
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert not torch.equal(ref["layers.1.weight"], other["layers.1.weight"])


def test_existing_run_dir_is_not_overwritten_without_force(tiny_recipe, own_run):
    out = own_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = invoke("train", "--recipe", tiny_recipe, "--out", out, "--seed", 5)
    assert_user_error(result, "already exists", "--force")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_force_replaces_the_run_dir(tiny_recipe, own_run):
    (own_run / "stale.txt").write_text("old")
    result = invoke("train", "--recipe", tiny_recipe, "--out", own_run, "--force", "--json")
    assert result.exit_code == 0, result.output
    assert not (own_run / "stale.txt").exists() and (own_run / "checkpoint.pt").exists()
    assert not [p for p in own_run.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_force_never_empties_a_directory_that_is_not_a_run(tiny_recipe, tmp_path):
    """`--out . --force` in a project folder: refused, every file kept."""
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "data").mkdir()
    result = invoke("train", "--recipe", tiny_recipe, "--out", out, "--force")
    assert_user_error(result, "not a spikeport run directory", "choose another --out")
    assert sorted(p.name for p in out.iterdir()) == ["data", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("override, fragments", [
    ("dataset.name=cifar", ["unknown dataset 'cifar'", "digits"]),
    ("encoder.name=poisson", ["unknown encoder 'poisson'", "rate"]),
    ("loss.name=nll", ["unknown loss 'nll'", "spikemax"]),
    ("model.arch=transformer", ["unknown model architecture 'transformer'", "mlp"]),
    ("model.neuron=izhikevich", ["unknown neuron 'izhikevich'"]),
    ("model.beta=1.5", ["model.beta must be in [0, 1]"]),
])
def test_unknown_names_and_bad_values(tiny_recipe, tmp_path, override, fragments):
    out = tmp_path / "run"
    result = invoke("train", "--recipe", tiny_recipe, "--out", out, "--set", override)
    assert_user_error(result, *fragments)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_unknown_recipe(tmp_path):
    assert_user_error(invoke("train", "--recipe", "imagenet", "--out", tmp_path / "r"),
                      "unknown recipe 'imagenet'", "digits")


def test_malformed_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntime_steps: {\n")
    assert_user_error(invoke("train", "--recipe", bad, "--out", tmp_path / "r"), "not valid YAML")
    assert not (tmp_path / "r").exists()


def test_missing_run_dir_and_missing_checkpoint(trained_run, tmp_path):
    assert_user_error(invoke("evaluate", tmp_path / "nowhere"), "run directory not found")
    out = trained_run.path
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / "config.yaml").write_bytes((out / "config.yaml").read_bytes())
    assert_user_error(invoke("evaluate", broken), "checkpoint not found")


def test_corrupt_checkpoint(trained_run, tmp_path):
    out = trained_run.path
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / "config.yaml").write_bytes((out / "config.yaml").read_bytes())
    (broken / "checkpoint.pt").write_bytes(b"\x00not a checkpoint" * 10)
    assert_user_error(invoke("evaluate", broken), "corrupt")
    (broken / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes()[:200])
    assert_user_error(invoke("evaluate", broken), "corrupt")


def test_checkpoint_that_would_unpickle_code_is_refused(trained_run, tmp_path):
    out = trained_run.path
    broken = tmp_path / "run"
    broken.mkdir()
    (broken / "config.yaml").write_bytes((out / "config.yaml").read_bytes())

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"format": "spikeport-checkpoint/1", "state_dict": Evil()}, broken / "checkpoint.pt")
    result = invoke("evaluate", broken)
    assert_user_error(result, "corrupt")
    assert "code ran" not in result.output


def test_checkpoint_of_another_model_is_refused(trained_run, tiny_recipe, tmp_path):
    other = tmp_path / "other"
    assert invoke("train", "--recipe", tiny_recipe, "--out", other, "--set", "model.hidden=[8]").exit_code == 0
    (other / "checkpoint.pt").write_bytes((trained_run.path / "checkpoint.pt").read_bytes())
    assert_user_error(invoke("evaluate", other), "does not match its config.yaml")


def test_list_shows_the_registries():
    result = invoke("list")
    assert result.exit_code == 0
    for name in ("digits", "mnist-5k", "fashion-mnist", "rate", "latency", "delta", "direct",
                 "spikemax", "spikemax-window", "ce-count", "mse-count", "mlp", "conv"):
        assert name in result.stdout
    assert_user_error(invoke("list", "widgets"), "nothing called 'widgets'")


@pytest.mark.parametrize("args, words", [
    (["validate", "somewhere", "--samples", "abc"], "'--samples'"),
    (["no-such-command"], "No such command"),
    (["estimate"], "Missing argument"),
])
def test_the_console_script_prints_a_usage_error_as_one_line(args, words):
    """Usage errors from the installed script are the same one line and exit code 2 as every
    other user error, not click's box."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("spikeport")
    r = subprocess.run([str(script), *args], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and " -- fix: " in lines[0], r.stderr
    assert words in lines[0] and "Traceback" not in r.stderr


def _graph_without_dt(tmp_path):
    """A tiny graph whose writer recorded no dt, as sinabs and others write them, and an input."""
    import nir
    import numpy as np

    nodes = {"input": nir.Input(np.array([3])),
             "fc": nir.Affine(np.ones((2, 3)), np.zeros(2)),
             "lif": nir.LIF(tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2),
                            v_threshold=np.full(2, 2.0)),
             "output": nir.Output(np.array([2]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")])
    nir.write(str(tmp_path / "g.nir"), g)
    np.savez(tmp_path / "x.npz", x=np.ones((10, 2, 3)))
    return tmp_path / "g.nir", tmp_path / "x.npz"


def test_a_graph_without_dt_warns_once_in_one_line_and_dt_sets_its_step(tmp_path):
    """The console script prints the assumption as one `warning:` line (not Python's two
    lines per module that read the graph); --dt gives the step, which changes the dynamics."""
    import subprocess
    import sys
    from pathlib import Path

    graph, x = _graph_without_dt(tmp_path)
    script = str(Path(sys.executable).with_name("spikeport"))
    base = [script, "run", str(graph), "--target", "reference", "--input", str(x), "--json"]
    r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [line for line in r.stderr.splitlines()
                                     if line.startswith("warning: ")]
    assert len(r.stderr.splitlines()) == 1 and "records no dt" in r.stderr and "--dt" in r.stderr
    r_dt = subprocess.run(base + ["--dt", "1e-3"], capture_output=True, text=True)
    assert r_dt.returncode == 0 and r_dt.stderr == "", r_dt.stderr
    # dt = tau: the membrane follows its input in one step; at 1e-4 it charges ten times slower
    fast, slow = json.loads(r_dt.stdout), json.loads(r.stdout)
    assert fast["output_spikes_per_sample"] > slow["output_spikes_per_sample"]


def test_dt_is_refused_where_it_would_contradict_the_graph_or_the_run(tmp_path, own_run):
    graph, x = _graph_without_dt(tmp_path)
    assert_user_error(invoke("run", graph, "--input", x, "--dt", "0"), "--dt must be a positive")
    assert_user_error(invoke("validate", own_run, "--dt", "1e-3"),
                      "a run's dt comes from its recipe")
    assert invoke("export", own_run, "--to", "nir").exit_code == 0
    recorded = own_run / "model.nir"
    assert_user_error(invoke("estimate", recorded, "--target", "reference", "--input", x,
                             "--dt", "5e-3"), "contradicts it")


def test_run_checks_its_out_path_before_it_writes_anything(own_run, tmp_path):
    (tmp_path / "afile").write_text("x")
    before = {p.name: p.read_bytes() for p in own_run.iterdir()}
    result = invoke("run", own_run, "--samples", 3, "--out", tmp_path / "afile" / "rec.npz")
    assert_user_error(result, "is a file, not a directory")
    assert {p.name: p.read_bytes() for p in own_run.iterdir()} == before


def test_an_empty_profile_name_is_refused_not_read_as_the_default(own_run):
    assert_user_error(invoke("estimate", own_run, "--target", "reference", "--profile", ""),
                      "unknown energy profile ''")


def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path):
    result = invoke("inspect", tmp_path / ("x" * 300 + ".nir"))
    assert_user_error(result, "File name too long")


def test_run_never_writes_its_recording_over_its_own_inputs(own_run, tmp_path):
    import numpy as np

    assert invoke("export", own_run, "--to", "nir").exit_code == 0
    graph = tmp_path / "g.nir"
    graph.write_bytes((own_run / "model.nir").read_bytes())
    x = tmp_path / "x.npz"
    np.savez(x, x=np.ones((3, 2, 1, 8, 8)))  # the tiny recipe's digits input
    before = x.read_bytes(), graph.read_bytes()
    assert_user_error(invoke("run", graph, "--input", x, "--out", x), "is --input")
    assert_user_error(invoke("run", graph, "--input", x, "--out", graph), "is the graph")
    assert (x.read_bytes(), graph.read_bytes()) == before


def test_bare_spikeport_prints_its_help_once():
    import subprocess
    import sys
    from pathlib import Path

    r = subprocess.run([str(Path(sys.executable).with_name("spikeport"))], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.count("Usage:") == 1, r.stdout
