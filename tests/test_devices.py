"""--device: the torch-based target and training compute where asked; a device torch does
not see is refused in one line before anything runs or is written."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from spikeport.cli import app
from spikeport.core.devices import check_device
from spikeport.core.errors import ConfigError

runner = CliRunner()
ABSENT = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("bad, message", [("gpu", "unknown device 'gpu'"),
                                          ("meta", "is not supported"),
                                          (ABSENT, "--device cuda")])
def test_check_device_refuses_what_torch_cannot_compute_on(bad, message):
    with pytest.raises(ConfigError, match=message):
        check_device(bad)
    assert check_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("command", [["run", "--target", "snntorch"],
                                     ["validate", "--targets", "reference,snntorch"],
                                     ["estimate", "--target", "snntorch", "--cutoff", "none"]])
def test_an_absent_device_is_one_line_and_writes_nothing(own_run, command):
    before = sorted(p.name for p in own_run.iterdir())
    r = invoke(command[0], own_run, *command[1:], "--device", ABSENT)
    assert r.exit_code == 2 and r.output.startswith("error: ") and "fix:" in r.output, r.output
    assert r.output.count("\n") == 1
    assert sorted(p.name for p in own_run.iterdir()) == before


def test_the_snntorch_target_on_the_cpu_device_equals_the_default(own_run):
    a = invoke("run", own_run, "--target", "snntorch", "--json", "--samples", "40")
    b = invoke("run", own_run, "--target", "snntorch", "--json", "--samples", "40",
               "--device", "cpu")
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads(a.output) == json.loads(b.output)
    v = invoke("validate", own_run, "--targets", "reference,snntorch", "--device", "cpu", "--json")
    assert v.exit_code == 0, v.output
    assert json.loads(v.output)["pairs"][0]["mismatched_spike_bins"] == 0
