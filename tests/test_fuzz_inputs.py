"""Hostile input at every boundary, through the real CLI (issue 11: every bad input a clear
error and nothing lost).

Generated cases (hypothesis, seeded) over recipes and ``--set`` values, checkpoints, input
arrays, energy profiles and run directories drive ``spikeport.cli.app`` in process. Every case
must end in one of two ways:

- exit 0 with a JSON result whose figures are all finite, or
- exit 2 with exactly one stderr line ``error: <problem> -- fix: <fix>`` and no traceback;

and the files a command was given are left as they were (hashed before and after): a failed
command changes nothing, a successful one only the outputs it is documented to write.

The run is the session's tiny trained run (conftest ``trained_run``, T = 8, 1 x 8 x 8 digits,
10 classes), copied once for this module (``base``) with every artifact the commands write;
a case that may write takes its own copy of that. The Lava target is pointed at an empty cache
(``SPIKEPORT_CACHE``), so an input Lava would accept ends in "Lava environment not found"
instead of a minute-long simulation: what is tested is that a bad input is refused before.

About 900 cases in all (``pytest -s`` prints the count), about 40 s on 2 cores.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tempfile
import traceback
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from spikeport.cli import app

runner = CliRunner()
PROFILES = Path(__file__).resolve().parent.parent / "toolchain" / "estimation" / "profiles"
CASES = {"count": 0}  # generated cases run in this module (printed at its end with -s)


def fuzz(n: int):
    return settings(derandomize=True, deadline=None, max_examples=n, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much,
                                           HealthCheck.large_base_example,
                                           HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------ checking

def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _non_finite(obj, path="") -> list[str]:
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [f"{path or '.'} = {obj}"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _non_finite(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _non_finite(v, f"{path}[{i}]")]
    return []


def outcome(r, args) -> dict | None:
    """The JSON result of a successful command (every figure finite), or None for a refusal
    (exit 2, one line ``error: ... -- fix: ...``); anything else fails the case."""
    CASES["count"] += 1
    cmd = "spikeport " + " ".join(str(a) for a in args)
    if r.exit_code not in (0, 2):
        tb = "".join(traceback.format_exception(*r.exc_info)) if r.exc_info else ""
        raise AssertionError(f"{cmd}: exit code {r.exit_code}\n{r.output[-3000:]}\n{tb[-5000:]}")
    assert "Traceback (most recent call last)" not in r.output, f"{cmd}:\n{r.output[-3000:]}"
    if r.exit_code == 2:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and " -- fix: " in lines[0], \
            f"{cmd}: stderr is not one 'error: ... -- fix: ...' line:\n{r.stderr[-3000:]}"
        return None
    data = json.loads(r.stdout)
    bad = [b for b in _non_finite(data) if b.split(" = ")[0] not in KNOWN_NON_FINITE]
    assert not bad, f"{cmd}: non-finite figures {bad[:5]}"
    return data


# Non-finite figures that come from code outside this suite's reach, each reproduced by a strict
# xfail test below: when it is fixed, that test fails, and the entry and the mark go.
KNOWN_NON_FINITE: set[str] = set()


def contents(*roots) -> dict[str, str]:
    """path -> sha256 (or 'dir', 'link -> target') of every entry under ``roots``."""
    out = {}
    for root in map(Path, roots):
        if not root.exists() and not root.is_symlink():
            continue
        entries = [root]
        if root.is_dir() and not root.is_symlink():
            for d, dirs, files in os.walk(root):
                entries += [Path(d) / n for n in dirs + files]
        for p in entries:
            if p.is_symlink():
                out[str(p)] = f"link -> {os.readlink(p)}"
            elif p.is_dir():
                out[str(p)] = "dir"
            else:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_kept(before: dict, after: dict, allowed: tuple[str, ...] = (), what: str = "") -> None:
    """Nothing changed between the two snapshots but entries named in ``allowed``."""
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    unexpected = [k for k in changed if Path(k).name not in allowed]
    assert not unexpected, f"{what}: changed {unexpected}"


def _copy(src: Path, work: Path) -> Path:
    return Path(shutil.copytree(src, Path(tempfile.mkdtemp(dir=work)) / "run", symlinks=True))


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz")
    old = os.environ.get("SPIKEPORT_CACHE")
    os.environ["SPIKEPORT_CACHE"] = str(path / "empty-cache")  # no Lava environment here
    yield path
    if old is None:
        os.environ.pop("SPIKEPORT_CACHE", None)
    else:
        os.environ["SPIKEPORT_CACHE"] = old
    print(f"\ntest_fuzz_inputs: {CASES['count']} generated cases")


@pytest.fixture(scope="module")
def base(trained_run, work) -> Path:
    """A copy of the shared run with every artifact the commands write into a run."""
    run = Path(shutil.copytree(trained_run.path, work / "base" / "run"))
    for args in (["export", run, "--to", "onnx"], ["export", run, "--to", "loihi"],
                 ["validate", run, "--samples", "3", "--targets", "reference,onnx"],
                 ["estimate", run, "--target", "reference", "--samples", "3"]):
        r = invoke(*args)
        assert r.exit_code == 0, r.output
    return run


@pytest.fixture(scope="module")
def graph(base, work) -> Path:
    return Path(shutil.copy(base / "model.nir", work / "graph.nir"))


@pytest.fixture(scope="module")
def good_npz(work) -> Path:
    rng = np.random.default_rng(0)
    path = work / "good.npz"
    np.savez(path, x=(rng.random((8, 3, 1, 8, 8)) < 0.3).astype(np.float64), y=np.array([0, 3, 9]))
    return path


# ------------------------------------------------------------------- recipes and --set

RECIPE = Path(__file__).resolve().parent / "fixtures" / "tiny.yaml"
KEYS = ["name", "time_steps", "dataset", "dataset.name", "dataset.test_fraction",
        "dataset.split_seed", "dataset.root", "encoder", "encoder.name", "encoder.gain",
        "encoder.threshold", "model", "model.arch", "model.hidden", "model.neuron", "model.beta",
        "model.alpha", "model.threshold", "model.learn_decay", "model.surrogate",
        "model.surrogate_slope", "model.bias", "model.loihi_aware", "model.channels",
        "model.kernel", "model.pool", "model.dense", "loss.name", "loss.window",
        "loss.correct_rate", "loss.incorrect_rate", "optimizer", "optimizer.name",
        "optimizer.lr", "optimizer.weight_decay", "optimizer.momentum", "train", "train.epochs",
        "train.batch_size", "train.seed", "train.eval_batch_size", "nonsense", "model.hidden.0",
        "train.epochs.x", "time_steps.x"]
# Sizes around the limits: tiny, word boundaries, beyond any machine. (Sizes that are valid
# but take minutes to build are left out on purpose: they are not errors.)
INTS = [0, 1, 2, 3, 7, 16, -1, -7, 2 ** 31 - 1, 2 ** 31, 2 ** 53 + 1, 2 ** 63, 2 ** 64,
        10 ** 12, 10 ** 18, 10 ** 30, -(2 ** 63)]
YAML_VALUES = ["", "null", "~", "true", "no", "nan", ".nan", ".inf", "-.inf", "1e9", "1.0e12",
               "1.0e+300", "-1.0e+300", "1.0e-320", "0.5", "0.0", "1.0", "-0.5", "1.5", "[]",
               "[1, 2]", "[0]", "[-1]", "[1.5]", "[[1]]", "[16, null]", "{}", "{a: 1}",
               "'5'", "\"x\"", "lif", "cuba", "conv", "mlp", "rate", "direct", "latency",
               "delta", "sum", "avg", "none", "atan", "fast_sigmoid", "sgd", "adamw", "digits",
               "mnist-5k", "fashion-mnist", "spikemax-window", "mse-count", "ce-count",
               "/nonexistent", "!!python/object/apply:os.system ['true']", "&a [*a]", "*x",
               "[1, 2", "{a: 1", "\x00", "é", "2020-01-01", "0x10", "0o17", "1_000",
               "!!binary aGVsbG8=", "!!set {a, b}", "- 1", "a: b: c"]
# Per key, values at the edges of what it accepts, and whole sections that combine them.
EDGES = {
    "time_steps": ["1", "2", "2147483647", "1000000000", "1000000000000"],
    "dataset.test_fraction": ["0.999", "0.9999", "0.001", "1.0e-9", "0.5"],
    "dataset.split_seed": ["4294967295", "4294967296", "-1"],
    "train.seed": ["4294967295", "4294967296", "-1"],
    "encoder": ["{name: latency, threshold: 0.0}", "{name: delta, threshold: 1.0e-300}",
                "{name: delta, threshold: 1.0e+30}", "{name: rate, gain: 1.0e+30}",
                "{name: direct, gain: 1.0e-30}", "{name: latency, threshold: 2.0}"],
    "encoder.gain": ["1.0e-30", "1.0e+30", "1.0e+31", "3.5e+38"],
    "model": ["{arch: conv, channels: [2147483647]}", "{arch: conv, kernel: 2147483647}",
              "{arch: conv, kernel: 9}", "{arch: conv, channels: [8, 8, 8, 8]}",
              "{arch: conv, pool: none, channels: [1000000]}", "{arch: conv, dense: [4294967296]}",
              "{arch: mlp, hidden: [4294967296]}", "{arch: mlp, hidden: []}",
              "{arch: mlp, hidden: [16], neuron: cuba, learn_decay: true}",
              "{arch: mlp, hidden: [16], loihi_aware: true}", "{arch: conv, channels: []}"],
    "model.hidden": ["[2147483648]", "[1000000000]", "[1, 1]", "[]", "[16, 16, 16, 16]",
                     "[100000, 100000]"],
    "model.threshold": ["1.0e-300", "1.0e+30", "1.0e+31", "3.5e+38"],
    "model.surrogate_slope": ["1.0e+30", "1.0e+300", "1.0e-300"],
    "loss": ["{name: spikemax-window, window: 1000000000000}",
             "{name: mse-count, correct_rate: 0.0}",
             "{name: spikemax-window, window: 1}"],
    "optimizer.lr": ["1.0e+300", "1.0e-300", "1.0e+30"],
    "train.batch_size": ["1000000000000", "1", "9223372036854775808"],
    "train.eval_batch_size": ["1000000000000", "1"],
    "train.epochs": ["1000000000000"],
}
EDGE_OVERRIDES = st.sampled_from([f"{k}={v}" for k, values in EDGES.items() for v in values])
VALUES = st.one_of(st.sampled_from(YAML_VALUES), st.sampled_from(INTS).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.lists(st.sampled_from(INTS), max_size=3).map(
                       lambda v: "[" + ", ".join(map(str, v)) + "]"),
                   st.text(max_size=8))
OVERRIDES = st.lists(st.one_of(EDGE_OVERRIDES, st.tuples(st.sampled_from(KEYS), VALUES).map(
    lambda kv: f"{kv[0]}={kv[1]}")), min_size=1, max_size=3)


def _train_into_taken(work: Path, overrides: list[str]) -> None:
    """``train`` into an existing run without --force: a recipe that parses and fits the
    memory budget is built and then refused for the directory, anything else is refused
    first; either way one line, and neither the directory nor its parent changes."""
    out = work / "taken"
    if not out.exists():
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    before = contents(work / "taken")
    parent_before = sorted(p.name for p in work.iterdir())
    args = ["train", "--recipe", RECIPE, "--out", out, "--json", "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    r = invoke(*args)
    assert outcome(r, args) is None  # the directory exists: never a success
    assert_kept(before, contents(work / "taken"), what=str(args))
    assert sorted(p.name for p in work.iterdir()) == parent_before


@fuzz(200)
@given(overrides=OVERRIDES)
def test_recipe_overrides_are_checked_before_anything_is_built(work, overrides):
    _train_into_taken(work, overrides)


@pytest.mark.parametrize("override", [f"{k}={v}" for k, values in EDGES.items() for v in values])
def test_every_edge_value_is_built_or_refused_in_one_line(work, override):
    _train_into_taken(work, [override])


# Values that parse and fit, but push training's numerics (the loss, the weights) to the edge.
NUMERIC_EDGES = ["optimizer.lr=1.0e+30", "optimizer.lr=1.0e+10", "optimizer.lr=1000.0",
                 "optimizer.lr=1.0e-30", "model.threshold=1.0e-30", "model.threshold=1.0e+30",
                 "model.surrogate_slope=1.0e+30", "encoder.gain=1.0e+30", "encoder.gain=1.0e-30",
                 "model.beta=0.0", "model.beta=1.0", "time_steps=1",
                 "optimizer.weight_decay=1.0e+30", "loss.name=mse-count", "encoder.name=direct",
                 "optimizer={name: adam, lr: 1.0e+30, weight_decay: 1.0e+30}",
                 "optimizer.lr=1.0e+300", "optimizer={name: sgd, momentum: 1.0e+300}",
                 "model.threshold=3.5e+38", "encoder.gain=3.5e+38", "model.surrogate_slope=1.0e+300",
                 "dataset.test_fraction=0.9999"]


@fuzz(30)
@given(extra=st.lists(st.sampled_from(NUMERIC_EDGES), min_size=1, max_size=2, unique=True))
def test_training_at_numeric_edges_succeeds_with_finite_figures_or_writes_nothing(work, extra):
    out = Path(tempfile.mkdtemp(dir=work)) / "run"
    args = ["train", "--recipe", RECIPE, "--out", out, "--json", "--no-progress",
            "--set", "dataset.test_fraction=0.8"]
    for o in extra:
        args += ["--set", o]
    result = outcome(invoke(*args), args)
    if result is None:
        assert not out.exists() and list(out.parent.iterdir()) == [], f"{args}: wrote files"
    else:
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.yaml",
                                                         "metrics.json"]
        metrics = json.loads((out / "metrics.json").read_text())
        assert not _non_finite(metrics), metrics
        state = torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]
        assert all(bool(torch.isfinite(t).all()) for t in state.values()), f"{args}: NaN weights"


# ---------------------------------------------------------------------------- checkpoints

HOSTILE_OBJECTS = [None, 0, 1.5, True, "", "spikeport-checkpoint/2", "x", [], [1, 2], {},
                   {"a": 1}, (1,), b"bytes"]
TENSOR_EDITS = ["drop", "extra", "rename", "intkey", "transpose", "flatten", "unsqueeze",
                "slice", "empty", "nan", "inf", "-inf", "huge", "int32", "int64", "bool",
                "float64", "float16", "bfloat16", "complex64", "scalar", "none", "list", "str",
                "number", "sparse", "nested"]
BYTE_EDITS = ["empty", "truncate", "flip", "garbage", "text", "zip", "pickle", "directory",
              "missing", "symlink"]
CHECKPOINT_EDITS = st.one_of(
    st.tuples(st.just("payload"), st.sampled_from(HOSTILE_OBJECTS + ["list", "tensor"])),
    st.tuples(st.just("drop"), st.sampled_from(["format", "state_dict", "meta"])),
    st.tuples(st.just("set"), st.sampled_from(["format", "state_dict", "meta", "other"]),
              st.sampled_from(HOSTILE_OBJECTS + ["tensor", "tensors"])),
    st.tuples(st.just("tensor"), st.integers(0, 50), st.sampled_from(TENSOR_EDITS)),
    st.tuples(st.just("bytes"), st.sampled_from(BYTE_EDITS), st.floats(0, 1)),
)


def _hostile(value):
    if value == "tensor":
        return torch.zeros(3)
    if value == "tensors":
        return {"layers.1.weight": torch.zeros(3)}
    return value


def _edit_tensor(state: dict, index: int, how: str) -> None:
    if not state:
        return
    key = sorted(state, key=str)[index % len(state)]
    t = state[key] if isinstance(state[key], torch.Tensor) else torch.zeros(2)
    edits = {
        "drop": lambda: state.pop(key), "extra": lambda: state.update({"layers.99.weight": t}),
        "rename": lambda: state.update({key + "_": state.pop(key)}),
        "intkey": lambda: state.update({7: state.pop(key)}),
        "transpose": lambda: state.update(
            {key: t.T.contiguous() if t.dim() == 2 else t.unsqueeze(0)}),
        "flatten": lambda: state.update(
            {key: t.reshape(-1)[:-1] if t.numel() > 1 else t.reshape(1, 1)}),
        "unsqueeze": lambda: state.update({key: t.unsqueeze(-1)}),
        "slice": lambda: state.update({key: t[:1] if t.dim() else t.reshape(1, 1)}),
        "empty": lambda: state.update({key: torch.empty(0)}),
        "nan": lambda: state.update({key: t.float().fill_(float("nan"))}),
        "inf": lambda: state.update({key: t.float().fill_(float("inf"))}),
        "-inf": lambda: state.update({key: t.float().fill_(float("-inf"))}),
        "huge": lambda: state.update({key: t.float().fill_(3e38)}),
        "int32": lambda: state.update({key: t.to(torch.int32)}),
        "int64": lambda: state.update({key: t.to(torch.int64)}),
        "bool": lambda: state.update({key: t.to(torch.bool)}),
        "float64": lambda: state.update({key: t.to(torch.float64)}),
        "float16": lambda: state.update({key: t.to(torch.float16)}),
        "bfloat16": lambda: state.update({key: t.to(torch.bfloat16)}),
        "complex64": lambda: state.update({key: t.to(torch.complex64)}),
        "scalar": lambda: state.update({key: torch.tensor(0.5)}),
        "none": lambda: state.update({key: None}), "list": lambda: state.update({key: t.tolist()}),
        "str": lambda: state.update({key: "weights"}), "number": lambda: state.update({key: 0.5}),
        "sparse": lambda: state.update({key: t.to_sparse()}),
        "nested": lambda: state.update({key: {"w": t}}),
    }
    edits[how]()


def _write_checkpoint(path: Path, payload: dict, edit: tuple, work: Path) -> None:
    kind = edit[0]
    if kind == "bytes":
        _corrupt_file(path, edit[1], edit[2], work)
        return
    payload = {**payload, "state_dict": dict(payload["state_dict"])}
    if kind == "payload":
        payload = ([payload] if edit[1] == "list" else torch.zeros(2) if edit[1] == "tensor"
                   else edit[1])
    elif kind == "drop":
        payload.pop(edit[1], None)
    elif kind == "set":
        payload[edit[1]] = _hostile(edit[2])
    else:
        _edit_tensor(payload["state_dict"], edit[1], edit[2])
    _clear(path)
    torch.save(payload, path)


def _clear(path: Path) -> None:
    """Remove whatever is at ``path`` (file, directory or link)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _corrupt_file(path: Path, how: str, where: float, work: Path) -> None:
    """Damage the file at ``path`` in one of BYTE_EDITS' ways (``where`` in [0, 1] places it)."""
    data = path.read_bytes() if path.is_file() else b""
    k = min(int(where * len(data)), max(len(data) - 1, 0))
    _clear(path)
    if how in ("directory", "missing", "symlink"):
        if how == "directory":
            path.mkdir()
            (path / "inside").write_text("x")
        elif how == "symlink":
            path.symlink_to(work / "nowhere")
        return
    if how == "empty":
        data = b""
    elif how == "truncate":
        data = data[:k]
    elif how == "flip" and data:
        data = data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:]
    elif how == "garbage":
        data = bytes(np.random.default_rng(k).integers(0, 256, 512, dtype=np.uint8))
    elif how == "text":
        data = "name: [unclosed\n\x00\xff".encode("utf-8", "surrogateescape")
    elif how == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("archive/data.pkl", b"junk")
        data = buf.getvalue()
    elif how == "pickle":
        data = pickle.dumps({"format": "spikeport-checkpoint/1", "state_dict": os.getcwd})
    path.write_bytes(data)


@fuzz(150)
@given(edits=st.lists(CHECKPOINT_EDITS, min_size=1, max_size=2),
       command=st.sampled_from([("evaluate",), ("export", "--to", "nir")]))
def test_a_damaged_checkpoint_is_refused_naming_what_is_wrong(base, work, edits, command):
    run = _copy(base, work)
    path = run / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    for edit in edits:
        _write_checkpoint(path, payload, edit, work)
        if path.is_file():
            try:
                payload = torch.load(path, weights_only=True)
            except Exception:
                payload = torch.load(base / "checkpoint.pt", weights_only=True)
            if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
                payload = torch.load(base / "checkpoint.pt", weights_only=True)
    before = contents(run)
    args = [command[0], run, *command[1:], "--json"]
    result = outcome(invoke(*args), args)
    assert_kept(before, contents(run), () if result is None else ("model.nir",), str(args))


# ---------------------------------------------------------------------------- input arrays

# An input file is a valid one (x (8, 3, 1, 8, 8) of 0/1 spikes, labels y) with up to two
# faults, so that every fault is met alone as well as in company.
SHAPE_FAULTS = {"T0": (0, 3, 1, 8, 8), "B0": (8, 0, 1, 8, 8), "T1": (1, 3, 1, 8, 8),
                "flat": (8, 3, 64), "no_channel": (8, 3, 8, 8), "short_step": (8, 3, 1, 8),
                "extra_axis": (8, 3, 1, 8, 8, 1), "two_channels": (8, 3, 2, 8, 8),
                "rank0": (), "rank1": (5,), "rank2": (8, 3)}
DTYPE_FAULTS = {"float32": "float32", "float16": "float16", "int8": "int8", "uint8": "uint8",
                "int64": "int64", "bool": "bool", "complex": "complex64", "text": "<U3",
                "object": "object", "dates": "datetime64[s]"}
VALUE_FAULTS = ["zeros", "ones", "uniform", "big", "negative", "huge", "nan", "inf", "-inf",
                "denormal", "max"]
LABEL_FAULTS = ["no_labels", "labels_short", "labels_long", "labels_2d", "labels_negative",
                "labels_ten", "labels_float_int", "labels_float_frac", "labels_nan", "labels_text",
                "labels_bool", "labels_huge", "labels_scalar"]
FILE_FAULTS = ["compressed", "npy", "no_x", "garbage", "empty", "truncated", "directory",
               "missing", "raw_member", "x_scalar", "extra_arrays"]
INPUT_FAULTS = [*SHAPE_FAULTS, *DTYPE_FAULTS, *VALUE_FAULTS, *LABEL_FAULTS, *FILE_FAULTS]


@st.composite
def input_files(draw):
    return dict(faults=draw(st.lists(st.sampled_from(INPUT_FAULTS), max_size=2, unique=True)),
                seed=draw(st.integers(0, 2 ** 16)))


def _array(shape, faults, rng) -> np.ndarray:
    values = {
        "zeros": lambda: np.zeros(shape), "ones": lambda: np.ones(shape),
        "uniform": lambda: rng.random(shape), "big": lambda: rng.random(shape) * 1e6,
        "negative": lambda: -rng.random(shape), "huge": lambda: np.full(shape, 1e308),
        "denormal": lambda: np.full(shape, 5e-324),
        "max": lambda: np.full(shape, np.finfo(np.float64).max),
    }
    x = next((values[f]() for f in faults if f in values), None)
    if x is None:
        x = (rng.random(shape) < 0.3).astype(np.float64)
    for f in ("nan", "inf", "-inf"):
        if f in faults and x.size:
            x.reshape(-1)[rng.integers(0, x.size)] = float(f)
    dtype = next((DTYPE_FAULTS[f] for f in faults if f in DTYPE_FAULTS), "float64")
    if dtype == "<U3":
        return x.astype(str).astype("<U3")
    if dtype == "datetime64[s]":
        return np.zeros(shape, dtype="datetime64[s]")
    with np.errstate(all="ignore"):
        return x.astype(dtype)


def _labels(faults, B, rng):
    kinds = {
        "labels_short": lambda: np.zeros(max(B - 1, 0), int),
        "labels_long": lambda: np.zeros(B + 1, int), "labels_2d": lambda: np.zeros((B, 1), int),
        "labels_negative": lambda: -np.ones(B, int), "labels_ten": lambda: np.full(B, 10),
        "labels_float_int": lambda: np.ones(B, float), "labels_float_frac": lambda: np.full(B, 0.5),
        "labels_nan": lambda: np.full(B, np.nan), "labels_text": lambda: np.array(["a"] * B),
        "labels_bool": lambda: np.ones(B, bool), "labels_huge": lambda: np.full(B, 2 ** 62),
        "labels_scalar": lambda: np.array(3),
    }
    if "no_labels" in faults:
        return None
    return next((kinds[f]() for f in faults if f in kinds), None) if any(
        f in kinds for f in faults) else rng.integers(0, 10, B)


def _write_inputs(path: Path, spec: dict) -> None:
    faults, rng = spec["faults"], np.random.default_rng(spec["seed"])
    shape = next((SHAPE_FAULTS[f] for f in faults if f in SHAPE_FAULTS), (8, 3, 1, 8, 8))
    x = _array(shape, faults, rng)
    y = _labels(faults, shape[1] if len(shape) > 1 else 1, rng)
    arrays = {"x": x} if y is None else {"x": x, "y": y}
    if "extra_arrays" in faults:
        arrays["z"] = np.zeros(3)
    kind = next((f for f in faults if f in FILE_FAULTS and f != "extra_arrays"), "npz")
    if kind in ("npz", "truncated"):
        np.savez(path, **arrays)
    elif kind == "compressed":
        np.savez_compressed(path, **arrays)
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, x)
    elif kind == "no_x":
        np.savez(path, spikes=x)
    elif kind == "garbage":
        path.write_bytes(bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    elif kind == "raw_member":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x", b"\x93NUMPY junk")
    elif kind == "x_scalar":
        np.savez(path, x=np.float64(1.0))
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


COMMANDS = [("run", "--target", "reference"), ("run", "--target", "snntorch"),
            ("run", "--target", "onnx"), ("run", "--target", "loihi-emu"),
            ("run", "--target", "lava"), ("validate", "--targets", "reference,snntorch"),
            ("validate", "--targets", "onnx,loihi-emu"),
            ("validate", "--targets", "reference,lava"),
            ("estimate", "--target", "reference", "--cutoff", "none"),
            ("estimate", "--target", "loihi-emu", "--cutoff", "confidence"),
            ("estimate", "--target", "snntorch", "--cutoff", "topk")]
WRITES = {"run": ("model.nir",), "validate": ("model.nir", "validation.json"),
          "estimate": ("model.nir", "estimate-reference.json", "estimate-loihi-emu.json",
                       "estimate-snntorch.json", "cutoff_topk.json")}


@fuzz(250)
@given(spec=input_files(), command=st.sampled_from(COMMANDS),
       samples=st.sampled_from([None] * 6 + [1, 2, 0, -1, 10 ** 6]),
       on_run=st.sampled_from([False] * 7 + [True]))
def test_hostile_input_arrays_are_refused_before_anything_runs(base, graph, work, spec, command,
                                                                samples, on_run):
    folder = Path(tempfile.mkdtemp(dir=work))
    path = folder / "x.npz"
    _write_inputs(path, spec)
    target = _copy(base, work) if on_run else graph
    watched = (target, path)
    before = contents(*watched)
    args = [command[0], target, *command[1:], "--input", path, "--json"]
    if samples is not None:
        args += ["--samples", samples]
    result = outcome(invoke(*args), args)
    allowed = () if result is None or not on_run else WRITES[command[0]]
    assert_kept(before, contents(*watched), allowed, str(args))
    if result is not None:  # the figures are about the samples asked for
        B = next((SHAPE_FAULTS[f] for f in spec["faults"] if f in SHAPE_FAULTS), (8, 3))[1]
        assert result["samples"] == (B if samples is None else min(samples, B)), (args, result)
        if command[0] == "run" and result["accuracy"] is not None:
            assert 0 <= result["accuracy"] <= 1, (args, result)


# -------------------------------------------------------------------------- energy profiles

def _shipped(name: str) -> dict:
    return yaml.safe_load((PROFILES / f"{name}.yaml").read_text())


PROFILE_VALUES = [float("nan"), float("inf"), float("-inf"), -1, -1e-300, 0, 0.0, 1e308, 1e-308,
                  1e30, 1e20, "5", "abc", True, None, [], {}, 5, 23.6]
UNITS_ = ["pJ", "nJ", "uJ", "mJ", "J", "W", "mW", "s", "ns", "us", "ms", "kJ", "pj", "", 5, None,
          "µJ", ["pJ"]]
FIELDS = ["basis", "marker", "source", "note", "extra"]
FIELD_VALUES = ["simulated", "measured", "primary", "assumption", "", " ", None, 5, [], {"a": 1},
                "made up"]
TOP_KEYS = ["name", "description", "device", "process", "voltage", "static_power_included_in",
            "notes", "constants", "extra"]
TOP_VALUES = ["x", "", None, 5, [], ["a", 1], {}, "dense", "event-driven", "e_synop", "p_static",
              {"e_synop": 1}, "quantum"]
CONSTANT_NAMES = ["e_synop", "e_synop_mac", "e_neuron_active", "e_neuron_idle", "e_neuron_update",
                  "e_spike", "p_static", "dt_step", "e_mem_8kb", "e_mem_32kb", "e_mem_1mb",
                  "e_bogus", "", "5"]
PROFILE_EDITS = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 20), st.sampled_from(PROFILE_VALUES)),
    st.tuples(st.just("unit"), st.integers(0, 20), st.sampled_from(UNITS_)),
    st.tuples(st.just("field"), st.integers(0, 20), st.sampled_from(FIELDS),
              st.sampled_from(FIELD_VALUES)),
    st.tuples(st.just("drop"), st.integers(0, 20)),
    st.tuples(st.just("add"), st.sampled_from(CONSTANT_NAMES), st.sampled_from(PROFILE_VALUES),
              st.sampled_from(UNITS_)),
    st.tuples(st.just("top"), st.sampled_from(TOP_KEYS), st.sampled_from(TOP_VALUES)),
)
WHOLE_FILES = [None] * 12 + ["list", "string", "empty", "null", "syntax", "binary", "directory",
                             "missing", "alias", "tabs"]


def _edit_profile(p: dict, edit: tuple) -> None:
    consts = p.get("constants")
    names = sorted(consts) if isinstance(consts, dict) and consts else []
    kind = edit[0]
    if kind == "top":
        p[edit[1]] = edit[2]
    elif kind == "add" and isinstance(consts, dict):
        consts[edit[1]] = {"value": edit[2], "unit": edit[3], "basis": "measured",
                           "marker": "primary", "source": "fuzz"}
    elif names and kind in ("value", "unit", "field", "drop"):
        name = names[edit[1] % len(names)]
        entry = consts[name]
        if kind == "drop":
            consts.pop(name)
        elif not isinstance(entry, dict):
            return
        elif kind == "value":
            entry["value"] = edit[2]
        elif kind == "unit":
            entry["unit"] = edit[2]
        else:
            entry[edit[2]] = edit[3]


def _write_profile(path: Path, base_name: str, edits: list, whole) -> None:
    if whole is None:
        p = _shipped(base_name)
        for e in edits:
            _edit_profile(p, e)
        path.write_text(yaml.safe_dump(p, allow_unicode=True))
        return
    texts = {"list": "- 1\n- 2\n", "string": "hello\n", "empty": "", "null": "null\n",
             "syntax": "name: [unclosed\n  - : :\n", "alias": "a: &a [*a]\n",
             "tabs": "name:\tx\n\tconstants: {}\n"}
    if whole == "binary":
        path.write_bytes(b"\xff\xfe\x00\x01" * 64)
    elif whole == "directory":
        path.mkdir()
    elif whole in texts:
        path.write_text(texts[whole])


@fuzz(120)
@given(base_name=st.sampled_from(["loihi", "cpu", "ann-45nm", "truenorth", "spinnaker2"]),
       edits=st.lists(PROFILE_EDITS, min_size=1, max_size=3),
       whole=st.sampled_from(WHOLE_FILES), target=st.sampled_from(["reference", "loihi-emu"]))
def test_hostile_energy_profiles_are_refused_before_anything_runs(graph, good_npz, work,
                                                                  base_name, edits, whole, target):
    path = Path(tempfile.mkdtemp(dir=work)) / "profile.yaml"
    _write_profile(path, base_name, edits, whole)
    before = contents(path, graph, good_npz)
    args = ["estimate", graph, "--target", target, "--cutoff", "none", "--input", good_npz,
            "--profile", path, "--json"]
    result = outcome(invoke(*args), args)
    assert_kept(before, contents(path, graph, good_npz), (), str(args))
    if result is not None:
        assert result["energy_per_sample_j"] >= 0


# -------------------------------------------------------------------------- run directories

RUN_FILES = ["config.yaml", "checkpoint.pt", "metrics.json", "model.nir", "model.onnx",
             "model.net", "loihi_report.json", "validation.json", "estimate-reference.json",
             "cutoff_topk.json"]
CONFIG_TEXTS = ["- 1\n- 2\n", "time_steps: x\n", "name: [\n", "{}\n", "null\n",
                "name: tiny\ntime_steps: 1000000000000\ndataset: {name: digits}\n"
                "encoder: {name: rate}\n"
                "model: {arch: mlp, hidden: [16]}\nloss: {name: spikemax}\n",
                "name: tiny\ntime_steps: 8\ndataset: {name: digits}\nencoder: {name: rate}\n"
                "model: {arch: conv}\nloss: {name: spikemax}\n"]
RUN_EDITS = st.one_of(
    st.tuples(st.sampled_from(RUN_FILES), st.sampled_from(BYTE_EDITS), st.floats(0, 1)),
    st.tuples(st.sampled_from(RUN_FILES), st.sampled_from(BYTE_EDITS), st.floats(0, 1)),
    st.tuples(st.sampled_from(RUN_FILES), st.sampled_from(BYTE_EDITS), st.floats(0, 1)),
    st.tuples(st.just("config.yaml"), st.just("text"), st.sampled_from(CONFIG_TEXTS)),
    st.tuples(st.just("."), st.sampled_from(["file", "missing"]), st.just(0.0)),
)
RUN_COMMANDS = [("evaluate",), ("export", "--to", "nir"), ("export", "--to", "onnx"),
                ("export", "--to", "loihi"), ("run", "--target", "reference", "--samples", "2"),
                ("validate", "--targets", "reference,onnx", "--samples", "2"),
                ("estimate", "--target", "reference", "--cutoff", "confidence", "--samples", "2"),
                ("estimate", "--target", "reference", "--samples", "2"),
                ("inspect", "{run}"), ("evaluate", "{run}/model.nir"), ("run", "{run}/model.nir")]
RUN_WRITES = {"export": ("model.nir", "model.onnx", "model.net", "loihi_report.json"),
              "run": ("model.nir",), "validate": ("model.nir", "validation.json"),
              "estimate": ("model.nir", "estimate-reference.json", "cutoff_topk.json")}


def _edit_run(run: Path, edit: tuple, work: Path) -> None:
    name, how, where = edit
    if name == ".":
        shutil.rmtree(run)
        if how == "file":
            run.write_text("not a run\n")
    elif how == "text" and isinstance(where, str):
        (run / name).write_text(where)
    else:
        _corrupt_file(run / name, how, float(where), work)


@fuzz(100)
@given(edit=RUN_EDITS, command=st.sampled_from(RUN_COMMANDS))
def test_a_damaged_run_directory_is_refused_naming_the_file(base, work, edit, command):
    run = _copy(base, work)
    _edit_run(run, edit, work)
    before = contents(run)
    if "{run}" in command[-1]:
        args = [command[0], command[-1].format(run=run), "--json"] if command[0] != "inspect" \
            else [command[0], run, "--json"]
    else:
        args = [command[0], run, *command[1:], "--json"]
    result = outcome(invoke(*args), args)
    allowed = () if result is None else RUN_WRITES.get(command[0], ())
    assert_kept(before, contents(run), allowed, str(args))


# ------------------------------------------------------------------ last line of defence

def test_a_non_finite_figure_is_refused_as_a_bug_before_it_is_printed_or_stored():
    from spikeport.core.errors import SpikeportError
    from spikeport.training.scores import non_finite, require_finite

    figures = {"accuracy": 0.5, "per_layer": {"a": float("nan")}, "steps": [1.0, float("inf")],
               "n": 3, "none": None}
    assert non_finite(figures) == [("per_layer.a", pytest.approx(float("nan"), nan_ok=True)),
                                   ("steps[1]", float("inf"))]
    with pytest.raises(SpikeportError, match=r"estimate: per_layer.a came out as nan \(and 1 "
                                             r"more\); nothing was written -- fix: .*bug"):
        require_finite(figures, "estimate")
    require_finite({"accuracy": 1.0, "hidden_usage": None}, "evaluation")  # passes


# ------------------------------------------------------------- known, outside this suite

def test_estimate_reports_no_nan_oracle_cutoff_when_nothing_is_correct(graph, work):
    path = work / "all-wrong.npz"
    np.savez(path, x=np.zeros((8, 2, 1, 8, 8)), y=np.array([1, 2]))  # silence: class 0 wins
    args = ["estimate", graph, "--target", "reference", "--cutoff", "none", "--input", path,
            "--json"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert not _non_finite(json.loads(r.stdout))


def test_an_overflowing_input_prints_only_the_error_line(graph, work):
    path = work / "huge.npz"
    np.savez(path, x=np.full((8, 2, 1, 8, 8), 1e308))
    args = ["run", graph, "--target", "reference", "--input", path, "--json"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = invoke(*args)
    assert outcome(r, args) is None
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], \
        [str(w.message) for w in caught]
