"""Shared fixtures. The tests folder is deliberately not a package (lava-dl installs a
top-level ``tests`` package of its own; SEMANTICS.md 11)."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The one trained run of a test session: the tiny recipe with these overrides serves every
# module that needs a run. T = 8 and three epochs are the setting test_estimate_cli's cutoff
# and counting checks were written for (every layer spikes); threshold 0.3 is one Loihi
# represents exactly (test_cli_hub checks "threshold 0.3 -> 0.3").
SHARED_RUN_OVERRIDES = ("model.threshold=0.3", "train.epochs=3", "time_steps=8")


@pytest.fixture
def tiny_recipe() -> Path:
    """A digits recipe small enough to train in about a second."""
    return FIXTURES / "tiny.yaml"


@dataclass(frozen=True)
class TrainedRun:
    """A run directory written by `spikeport train`, and how it was made."""

    recipe: Path
    overrides: tuple[str, ...]
    path: Path
    summary: dict  # what `spikeport train --json` printed

    @property
    def train_args(self) -> list[str]:
        """`train` arguments that make this run again (add --out, and --seed to vary it)."""
        args = ["--recipe", str(self.recipe)]
        for o in self.overrides:
            args += ["--set", o]
        return args

    @property
    def config(self) -> dict:
        return yaml.safe_load((self.path / "config.yaml").read_text())


def _contents(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """The tiny recipe trained once per test session through the CLI, shared by every module
    that reads a run. Read it only: a test that writes into a run directory (export,
    validate, estimate) takes `own_run`. Leaving it changed is an error at the end."""
    from typer.testing import CliRunner

    from spikeport.cli import app

    recipe, path = FIXTURES / "tiny.yaml", tmp_path_factory.mktemp("shared") / "run"
    args = TrainedRun(recipe, SHARED_RUN_OVERRIDES, path, {}).train_args
    result = CliRunner().invoke(app, ["train", *args, "--out", str(path), "--json"])
    assert result.exit_code == 0, result.output
    run = TrainedRun(recipe, SHARED_RUN_OVERRIDES, path, json.loads(result.stdout))
    before = _contents(run.path)
    yield run
    after = _contents(run.path)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        pytest.fail(f"a test wrote into the shared trained run ({', '.join(changed)}): "
                    "a test that writes into a run takes own_run", pytrace=False)


@pytest.fixture
def own_run(trained_run, tmp_path_factory) -> Path:
    """A private copy of the shared trained run, for a test that writes into it. It lives
    outside the test's tmp_path, which stays the test's own."""
    return Path(shutil.copytree(trained_run.path, tmp_path_factory.mktemp("own") / "run"))


def _brute_force_conv_ops(x, w, stride, pad, groups, all_ones=False):
    """Count (non-zero input, non-zero weight) pairs that reach an output, one by one."""
    B, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Ho = (H + 2 * pad - kh) // stride + 1
    Wo = (W + 2 * pad - kw) // stride + 1
    og = O // groups
    n = 0
    for b in range(B):
        for o in range(O):
            g = o // og
            for i in range(Ho):
                for j in range(Wo):
                    for c in range(Cg):
                        for a in range(kh):
                            for d in range(kw):
                                r, q = i * stride - pad + a, j * stride - pad + d
                                if 0 <= r < H and 0 <= q < W:
                                    xi = 1 if all_ones else x[b, g * Cg + c, r, q] != 0
                                    wi = 1 if all_ones else w[o, c, a, d] != 0
                                    n += int(xi and wi)
    return n


@pytest.fixture
def brute_force_conv_ops():
    """(non-zero input, non-zero weight) pairs of a convolution, counted element by element:
    f(x (B, C, H, W), w (O, C/groups, kh, kw), stride, pad, groups, all_ones=False)."""
    return _brute_force_conv_ops
