"""End to end: the default recipe through the CLI, as `make demo` runs it. The digits
recipe is trained once for this module (about 20 s on 2 cores); the Lava test deploys a
copy of that run."""
import json
import shutil

import pytest
from typer.testing import CliRunner

from spikeport.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The default digits recipe trained once: (run directory, `train --json` summary)."""
    out = tmp_path_factory.mktemp("e2e") / "digits"
    result = runner.invoke(app, ["train", "--recipe", "digits", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


@pytest.mark.slow
def test_default_digits_recipe_trains_above_96_5_percent_and_evaluates_identically(digits_run):
    """Seed 0 trains to 0.9777 on the machine of docs/recipes.md's table and to 0.9694 on the
    2026-12-02 CI machine (docs/recipes.md, "Machine dependence": float32 training differs
    across CPUs); the bound sits one test example (0.28 points) below the lower figure."""
    out, summary = digits_run
    assert summary["test_accuracy"] >= 0.965, summary
    assert summary["test_f1"] >= 0.965, summary
    assert 0.05 < summary["hidden_usage"] < 0.95, summary  # neither silent nor saturated
    again = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert json.loads(again.stdout) == summary


@pytest.mark.slow
@pytest.mark.lava
def test_default_digits_run_deploys_to_lava_spike_exact_with_the_emulator(digits_run, tmp_path):
    """The README's demo path: train -> export -> validate in the real Lava simulator over
    the whole test split."""
    out = shutil.copytree(digits_run[0], tmp_path / "digits")  # export writes into the run
    r = runner.invoke(app, ["export", str(out), "--to", "loihi", "--json"])
    assert r.exit_code == 0, r.output
    assert (out / "model.net").exists() and (out / "loihi_report.json").exists()
    r = runner.invoke(app, ["validate", str(out), "--targets", "reference,loihi-emu,lava", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["samples"] == 359
    pair = {(p["a"], p["b"]): p for p in res["pairs"]}
    emu_lava = pair[("loihi-emu", "lava")]
    assert emu_lava["total_spike_bins"] == 359 * 20 * (512 + 10)
    assert emu_lava["mismatched_spike_bins"] == 0
    assert res["spikes"]["lava"]["layers_2"] > 0
    # Loihi-aware training: the deployed network keeps the float model's accuracy
    assert abs(res["targets"]["lava"] - res["targets"]["reference"]) <= 0.005 + 1e-9, res["targets"]
