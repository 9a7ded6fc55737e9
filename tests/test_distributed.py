"""Data-parallel training (``--nproc`` and ``torchrun``) on gloo: rank 0 alone writes, the
replicas end identical, the reported figures are what ``evaluate`` finds in the checkpoint;
errors of any rank reach the user as one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spikeport.training.loop import evaluate_run

ROOT = Path(__file__).resolve().parents[1]
SPIKEPORT = Path(sys.executable).with_name("spikeport")


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(cwd / "tmp")}  # temporary files stay where we look
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)


def _check_run(out: Path, result: dict, before: set[str], root: Path) -> None:
    digests = {r["weights_sha256"] for r in result["ranks"]}
    assert [r["rank"] for r in result["ranks"]] == [0, 1]
    assert len(digests) == 1, "the two replicas ended with different weights"
    again = evaluate_run(out)
    assert again.test_accuracy == result["test_accuracy"]
    assert again.test_f1 == result["test_f1"]
    assert again.hidden_usage == result["hidden_usage"]
    # Only rank 0's run directory (and the claim file beside it) appeared; the temporary
    # store of the process group is gone.
    # (torch itself keeps caches under TMPDIR: only ours are looked for there.)
    new = {f for f in _files(root) - before if not f.startswith("tmp/")}
    assert new == {"run", "run/config.yaml", "run/checkpoint.pt", "run/metrics.json"}, sorted(new)
    assert not [f for f in _files(root / "tmp") if "spikeport" in f]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ranks"] == result["ranks"]


@pytest.mark.slow
def test_nproc_2_trains_the_digits_recipe_to_its_bar_and_rank_0_alone_writes(tmp_path):
    before = _files(tmp_path) | {"tmp"}
    proc = _run([str(SPIKEPORT), "train", "--recipe", "digits", "--out", "run", "--nproc", "2",
                 "--json", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["test_accuracy"] >= 0.97  # the single-process recipe's bar (issue 16)
    _check_run(tmp_path / "run", result, before, tmp_path)


@pytest.mark.slow
def test_torchrun_ranks_train_their_shards_and_only_rank_0_prints_and_writes(tmp_path):
    before = _files(tmp_path) | {"tmp"}
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", "2", "-m", "spikeport.cli", "train", "--recipe", "digits",
                 "--out", "run", "--epochs", "2", "--json", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, proc.stdout  # rank 1 prints nothing
    result = json.loads(lines[0])
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["train_history"]
    assert [row["epoch"] for row in history] == [1, 2]
    _check_run(tmp_path / "run", result, before, tmp_path)


def test_an_error_inside_the_ranks_reaches_the_user_as_one_line(tmp_path):
    proc = _run([str(SPIKEPORT), "train", "--recipe", "digits", "--out", "run", "--nproc", "2",
                 "--epochs", "1", "--set", "optimizer.lr=1e30", "--no-progress"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "training diverged" in proc.stderr and "optimizer.lr" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc must be a positive whole number"),
    (["--device", "cuda"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"],
     "--device"),
    (["--device", "gpu"], "unknown device 'gpu'"),
])
def test_bad_nproc_and_device_are_refused_in_one_line(tmp_path, args, message):
    from typer.testing import CliRunner

    from spikeport.cli import app

    r = CliRunner().invoke(app, ["train", "--recipe", "digits", "--out", str(tmp_path / "run"),
                                 *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "fix:" in r.output
    assert not (tmp_path / "run").exists()


def test_nproc_refuses_an_existing_run_before_starting_any_process(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    proc = _run([str(SPIKEPORT), "train", "--recipe", "digits", "--out", "run", "--nproc", "2"],
                tmp_path)
    assert proc.returncode == 2 and "already exists" in proc.stderr, proc.stderr
    assert (tmp_path / "run" / "keep.txt").read_text() == "mine"
