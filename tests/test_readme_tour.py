"""The README's tour, executed: every command of its "A tour" block, read from README.md
itself and run in a scratch directory in the README's order (later commands read the run
directories earlier ones wrote). The first command runs through the installed `spikeport`
script, the README's `.venv/bin/spikeport` (so the entry point is exercised); the others
run in this process through typer's CliRunner on the `app` that script calls, which saves
about 2 s of imports per command.

What is substituted, to keep the tour to about a minute (each substitution keeps the
command and its flags; only what would take minutes or does not exist is swapped):

- `--recipe NAME` of a built-in recipe trains tests/fixtures/tiny.yaml (64-16-10, T = 4, one
  epoch, about a second) with `--set dataset.name=` NAME's dataset, so `mnist-5k` still
  reads the real MNIST subset. The default digits recipe itself is trained and deployed
  to Lava in tests/test_e2e.py.
- `--recipe my.yaml` (the user's own file) is a copy of that tiny recipe.
- `--to nir|onnx|loihi` runs once per format.
- `make bench` runs the Makefile's `bench` command on the tour's tiny run with
  `--samples 2 --estimator-targets "" --no-scale`: the Lava side (emulator against Lava, batched
  against per-sample runs) on 2 samples, not 20 (a Lava run per sample costs seconds),
  no estimator timing (3 minutes on the tiny run; tests/test_estimate_cli.py runs
  bench_estimator), and `--no-scale` (training in 1 and 2 processes, estimate's memory,
  binning 60,000 recordings: minutes and 4 GB; tests/test_bench_scale.py runs them small).
  `make` itself is not run: its prerequisites are the install.
"""
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from spikeport.cli import app

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).resolve().parent / "fixtures" / "tiny.yaml"
# The README's `.venv/bin/spikeport`: the console script of the Python running the tests
# (`make test` runs them with .venv/bin/python).
BIN = Path(sys.executable).parent
EXPORTED = {"nir": "model.nir", "onnx": "model.onnx", "loihi": "model.net"}


def tour_lines() -> list[str]:
    """The lines of the first code block under "## A tour" in README.md."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## A tour\n"):]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block, "README.md: no code block under '## A tour'"
    return [line for line in block.group(1).splitlines() if line.strip()]


def make_target(name: str) -> list[list[str]]:
    """The commands of a Makefile target, $(BIN) resolved."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    body = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        body.append(shlex.split(line.strip().replace("$(BIN)", str(BIN))))
    return body


def recipe_dataset(name: str) -> str:
    return yaml.safe_load((ROOT / "models" / "recipes" / f"{name}.yaml").read_text())["dataset"]["name"]


def substitute(argv: list[str], cwd: Path) -> list[list[str]]:
    """One README command -> the commands the tour runs for it (see the module docstring)."""
    if argv[:2] == ["make", "bench"]:
        cmds = make_target("bench")
        assert cmds and all(c[0] == str(BIN / "spikeport") for c in cmds), cmds
        return [c + ["--samples", "2", "--estimator-targets", "", "--no-scale"] for c in cmds]
    assert argv[0] == ".venv/bin/spikeport", f"the tour runs spikeport commands: {argv}"
    argv = [str(BIN / "spikeport")] + argv[1:]
    if "--recipe" in argv:
        i = argv.index("--recipe") + 1
        name = argv[i]
        if (ROOT / "models" / "recipes" / f"{name}.yaml").exists():
            argv[i:i + 1] = [str(TINY), "--set", f"dataset.name={recipe_dataset(name)}"]
        else:
            assert not (cwd / name).exists()
            shutil.copy(TINY, cwd / name)
    if "--to" in argv:
        i = argv.index("--to") + 1
        return [argv[:i] + [fmt] + argv[i + 1:] for fmt in argv[i].split("|")]
    return [argv]


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# ---------------------------------------------------------------- what each command shows
# check(argv, stdout, tour): argv as run, `tour` the scratch directory and what earlier
# commands left for later ones (the `train --json` summaries, by run directory).

@dataclass
class Tour:
    cwd: Path
    summaries: dict = field(default_factory=dict)


def check_list(argv, out, tour):
    for heading in ("datasets:", "encoders:", "losses:", "models:", "recipes:"):
        assert heading in out
    assert "digits" in out and "mnist-5k" in out


def check_train(argv, out, tour):
    run = tour.cwd / option(argv, "--out")
    assert {"checkpoint.pt", "config.yaml", "metrics.json"} <= {p.name for p in run.iterdir()}
    config = yaml.safe_load((run / "config.yaml").read_text())
    for override in (argv[i + 1] for i, a in enumerate(argv) if a == "--set"):
        key, value = override.split("=", 1)
        written = config
        for part in key.split("."):
            written = written[part]
        assert written == yaml.safe_load(value), (override, written)
    if "--epochs" in argv:
        assert config["train"]["epochs"] == int(option(argv, "--epochs"))
    if "--json" in argv:
        summary = json.loads(out)
        assert summary["run_dir"] == option(argv, "--out")
        assert 0 < summary["test_accuracy"] <= 1 and 0 < summary["hidden_usage"] <= 1
        tour.summaries[option(argv, "--out")] = summary
    else:
        assert "test accuracy" in out and "hidden usage" in out


def check_evaluate(argv, out, tour):
    assert json.loads(out) == tour.summaries[argv[2]]  # recomputed, equal to training's


def check_export(argv, out, tour):
    artifact = Path(argv[2]) / EXPORTED[option(argv, "--to")]
    assert f"wrote {artifact}" in out and (tour.cwd / artifact).stat().st_size > 0


def check_inspect(argv, out, tour):
    assert "neurons: 26" in out and "LIF" in out  # the tiny recipe: 16 + 10 LIF neurons


def check_validate(argv, out, tour):
    targets = option(argv, "--targets").split(",")
    for t in targets:
        assert t in out, t
    if {"loihi-emu", "lava"} <= set(targets):
        assert "loihi-emu vs lava: 0 of " in out  # the emulator is spike-exact with Lava
    assert (tour.cwd / argv[2] / "validation.json").exists()


def check_estimate(argv, out, tour):
    assert "spikes per sample" in out and "synaptic ops / sample" in out
    assert f"energy [{option(argv, '--profile')}]" in out
    assert (tour.cwd / argv[2] / f"estimate-{option(argv, '--target')}.json").exists()


def check_lava_env(argv, out, tour):
    status = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    assert status["ready"] == "True" and status["import_ok"] == "True", out
    assert status["lava-dl"] == "0.6.0" and status["lava-nc"] == "0.10.0"


def check_bench(argv, out, tour):
    result = json.loads(out)
    assert result["emulator_equals_lava"] and result["batched_equals_per_sample"], result
    assert result["samples"] == result["per_sample_runs"] == 2
    w = result["validate_workers"]  # two Lava simulators, one sample each
    assert w["identical_results"] and w["samples"] == 2 and w["speedup"] > 0
    assert json.loads((tour.cwd / option(argv, "--out")).read_text()) == result


CHECKS = {"list": check_list, "train": check_train, "evaluate": check_evaluate,
          "export": check_export, "inspect": check_inspect, "validate": check_validate,
          "estimate": check_estimate, "lava-env": check_lava_env, "bench": check_bench}


def test_the_tour_is_the_commands_the_checks_know():
    """Cheap, and in `make test-fast`: a command added to the tour needs a check here, and
    every option the tour shows is one the CLI has."""
    runner = CliRunner()
    for line in tour_lines():
        argv = shlex.split(line, comments=True)
        if argv[0] == "make":
            assert make_target(argv[1]), line
            continue
        sub = argv[1]
        assert sub in CHECKS, f"README tour command without a check in {__file__}: {line}"
        path = [sub, argv[2]] if sub == "lava-env" else [sub]
        shown = runner.invoke(app, path + ["--help"], terminal_width=200)
        assert shown.exit_code == 0, f"{line}: {shown.output}"
        for opt in (a for a in argv if a.startswith("--")):
            assert opt in shown.output, f"{line}: `spikeport {' '.join(path)}` has no {opt}"


def spikeport(argv: list[str], cwd: Path, script: bool) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one command: through the script, or in-process."""
    if script:
        r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
        return r.returncode, r.stdout, r.stderr
    r = CliRunner().invoke(app, argv[1:])
    crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
    return r.exit_code, r.stdout, r.stderr + (f"\nraised {r.exception!r}" if crashed else "")


@pytest.mark.slow
@pytest.mark.lava
def test_readme_tour_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's relative paths (runs/digits) land here
    tour = Tour(tmp_path)
    ran = []
    for line in tour_lines():
        for argv in substitute(shlex.split(line, comments=True), tmp_path):
            code, out, err = spikeport(argv, tmp_path, script=not ran)
            assert code == 0, f"{line}\n-> {shlex.join(argv)}\n{out}\n{err}"
            assert "Traceback" not in err, err
            assert out.strip(), f"{line}: printed nothing"
            CHECKS[argv[1]](argv, out, tour)
            ran.append(argv[1])
    # the README's order: train before reading the run, export before inspecting the graph
    assert ran.index("train") < ran.index("evaluate") < ran.index("export") < ran.index("inspect")
    assert {"validate", "estimate", "lava-env", "bench"} <= set(ran)
