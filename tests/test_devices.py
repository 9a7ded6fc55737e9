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


def test_a_device_no_chosen_target_can_use_is_refused_not_ignored(own_run):
    for command in (["run", "--target", "reference"], ["validate", "--targets", "reference,onnx"],
                    ["estimate", "--target", "loihi-emu", "--cutoff", "none"]):
        r = invoke(command[0], own_run, *command[1:], "--device", "cuda")
        assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
        if torch.cuda.is_available():
            assert "applies to the snntorch target only" in r.output


@pytest.mark.parametrize("device", [
    "cpu",  # the option's plumbing on a CPU-only machine
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA device"))])
def test_the_snntorch_target_on_a_device_equals_the_default_cpu(own_run, device):
    a = invoke("run", own_run, "--target", "snntorch", "--json", "--samples", "40")
    b = invoke("run", own_run, "--target", "snntorch", "--json", "--samples", "40",
               "--device", device)
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert json.loads(a.output) == json.loads(b.output)
    v = invoke("validate", own_run, "--targets", "reference,snntorch", "--device", device, "--json")
    assert v.exit_code == 0, v.output
    assert json.loads(v.output)["pairs"][0]["mismatched_spike_bins"] == 0


def test_a_cuda_device_is_for_the_snntorch_target_only(monkeypatch):
    from spikeport.core.devices import check_target_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_target_device("cuda", ["reference", "snntorch"])  # snntorch uses it
    check_target_device("cpu", ["reference"])
    with pytest.raises(ConfigError, match="applies to the snntorch target only; reference, onnx"):
        check_target_device("cuda", ["reference", "onnx"])
