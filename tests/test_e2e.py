"""End to end: the default recipe through the CLI, as `make demo` runs it."""
import json

import pytest
from typer.testing import CliRunner

from toolchain.cli import app


@pytest.mark.slow
def test_default_digits_recipe_trains_to_97_percent_and_evaluates_identically(tmp_path):
    runner = CliRunner()
    out = tmp_path / "digits"
    result = runner.invoke(app, ["train", "--recipe", "digits", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test_accuracy"] >= 0.97, summary
    assert summary["test_f1"] >= 0.97, summary
    assert 0.05 < summary["hidden_usage"] < 0.95, summary  # neither silent nor saturated
    again = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert json.loads(again.stdout) == summary
