"""Hostile NIR graphs and netx files through the real entry points, in process.

Small valid graphs (an MLP, a conv net, a recurrent subgraph, a Conv1d / Delay / Threshold
chain, a fan-in) are corrupted by seeded hypothesis draws -- NaN / inf / huge / negative /
zero parameters, text or complex or empty arrays, wrong lengths and ranks, dt as text or an
array, groups = 0, enormous delays, broken, missing, duplicated or cyclic edges, missing or
extra nodes, bad Input shapes, bad metadata -- written to .nir files with a writer that
stores whatever it is given, and read back with ``spikeport.runs.read_graph``; others are
corrupted in memory (what no file can hold). Each is then built (``build_program``),
compiled and run on every in-process target (reference, snntorch, onnx, loihi-emu), and a
subset goes through the estimator and the CLI (``inspect``, ``run``, ``validate``). netx
files written by spikeport are corrupted key by key and read with ``netx.read``, then run
on the emulator.

Every case must end either in success with finite figures (no NaN / inf in any recorded
value or printed JSON) or in a SpikeportError with a problem and a fix (the CLI: exit code
2 and exactly one line ``error: ... -- fix: ...`` on stderr, no traceback); and no file
outside the case's temporary directory may change.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from spikeport.cli import app
from spikeport.core.errors import GraphError, SpikeportError
from spikeport.estimation.pipeline import estimate
from spikeport.exporters.loihi import emulator, netx
from spikeport.exporters.loihi.quantize import quantize
from spikeport.exporters.targets import get_target
from spikeport.ir.program import build_program
from spikeport.runs import read_graph

pytestmark = [pytest.mark.filterwarnings("ignore:the NIR graph records no dt:UserWarning"),
              pytest.mark.filterwarnings("ignore::RuntimeWarning:nir")]  # nir's own shape maths

ROOT = Path(__file__).resolve().parent.parent
DT = 1e-4
T, B = 3, 2
TARGETS = ("reference", "snntorch", "onnx", "loihi-emu")
runner = CliRunner()
CASES = {"nir files": 0, "graphs in memory": 0, "netx files": 0, "fixed cases": 0}
OUTCOMES: dict[str, int] = {}  # "<where>: ok" / "<where>: refused", for the summary


def tally(where: str, ok: bool) -> None:
    key = f"{where}: {'ok' if ok else 'refused'}"
    OUTCOMES[key] = OUTCOMES.get(key, 0) + 1


def fuzz(n: int):
    return settings(derandomize=True, deadline=None, max_examples=n, database=None,
                    suppress_health_check=list(HealthCheck))


# ----------------------------------------------------------------------------- base graphs


def lif(shape, thr=0.5, tau=1e-3):
    shape = tuple(np.atleast_1d(shape))
    return nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / DT), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))


def weights(shape, seed):
    return np.random.default_rng(seed).normal(0, 0.6, shape).astype(np.float32).astype(np.float64)


def _graph(nodes, edges, metadata=None):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                        metadata={"dt": DT} if metadata is None else metadata)


def mlp():
    n = 3
    cuba = nir.CubaLIF(tau_syn=np.full(n, 5e-4), tau_mem=np.full(n, 1e-3), r=np.full(n, 10.0),
                       v_leak=np.zeros(n), v_threshold=np.full(n, 0.4), v_reset=np.zeros(n),
                       w_in=np.full(n, 5.0))
    return _graph({"input": nir.Input(input_type=np.array([4])),
                   "fc1": nir.Affine(weights((6, 4), 1), weights(6, 2) * 0.1), "lif1": lif(6),
                   "fc2": nir.Linear(weights((n, 6), 3)), "cuba": cuba,
                   "output": nir.Output(output_type=np.array([n]))},
                  [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "cuba"),
                   ("cuba", "output")])


def conv():
    c = nir.Conv2d(input_shape=np.array([6, 6]), weight=weights((2, 1, 3, 3), 4), stride=1,
                   padding=1, dilation=1, groups=1, bias=np.zeros(2))
    return _graph({"input": nir.Input(input_type=np.array([1, 6, 6])), "conv": c,
                   "pool": nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
                   "lif1": lif((2, 3, 3)),
                   "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0,
                                       end_dim=-1),
                   "fc": nir.Affine(weights((3, 18), 5), np.zeros(3)),
                   "if": nir.IF(r=np.full(3, 1 / DT), v_threshold=np.full(3, 0.5),
                                v_reset=np.zeros(3)),
                   "output": nir.Output(output_type=np.array([3]))},
                  [("input", "conv"), ("conv", "pool"), ("pool", "lif1"), ("lif1", "flat"),
                   ("flat", "fc"), ("fc", "if"), ("if", "output")])


def recurrent():
    n = 5
    rnn = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([n])), "lif": lif(n),
                              "w_rec": nir.Linear(weights((n, n), 6)),
                              "output": nir.Output(output_type=np.array([n]))},
                       edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                              ("lif", "output")], type_check=False)
    return _graph({"input": nir.Input(input_type=np.array([3])),
                   "fc": nir.Affine(weights((n, 3), 7), np.zeros(n)), "rnn": rnn,
                   "readout": nir.Linear(weights((2, n), 8)),
                   "li": nir.LI(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2)),
                   "output": nir.Output(output_type=np.array([2]))},
                  [("input", "fc"), ("fc", "rnn"), ("rnn", "readout"), ("readout", "li"),
                   ("li", "output")])


def signal():
    c = nir.Conv1d(input_shape=8, weight=weights((3, 2, 3), 9), stride=1, padding=1,
                   dilation=1, groups=1, bias=np.zeros(3))
    return _graph({"input": nir.Input(input_type=np.array([2, 8])), "conv": c,
                   "flat": nir.Flatten(input_type={"input": np.array([3, 8])}, start_dim=0,
                                       end_dim=-1),
                   "scale": nir.Scale(np.full(24, 1.5)), "delay": nir.Delay(np.full(24, 2 * DT)),
                   "i": nir.I(r=np.full(24, 0.5 / DT)), "thr": nir.Threshold(np.full(24, 0.3)),
                   "output": nir.Output(output_type=np.array([24]))},
                  [("input", "conv"), ("conv", "flat"), ("flat", "scale"), ("scale", "delay"),
                   ("delay", "i"), ("i", "thr"), ("thr", "output")])


def fan_in():
    n = 5
    return _graph({"input": nir.Input(input_type=np.array([4])),
                   "a": nir.Affine(weights((n, 4), 10), np.zeros(n)),
                   "b": nir.Linear(weights((n, 4), 11)),
                   "cuba": nir.CubaLI(tau_syn=np.full(n, 5e-4), tau_mem=np.full(n, 1e-3),
                                      r=np.full(n, 10.0), v_leak=np.zeros(n), w_in=np.full(n, 5.0)),
                   "avg": nir.Threshold(np.full(n, 0.2)),
                   "output": nir.Output(output_type=np.array([n]))},
                  [("input", "a"), ("input", "b"), ("a", "cuba"), ("b", "cuba"), ("cuba", "avg"),
                   ("avg", "output")])


BASES = {"mlp": mlp, "conv": conv, "recurrent": recurrent, "signal": signal, "fan_in": fan_in}
INPUT_SHAPES = {"mlp": (4,), "conv": (1, 6, 6), "recurrent": (3,), "signal": (2, 8), "fan_in": (4,)}


def spikes(shape, seed=0):
    return (np.random.default_rng(seed).random((T, B, *shape)) < 0.5).astype(np.float64)


# ----------------------------------------------------------------------------- writing


class Lazy:
    """A dataset of this shape that the writer declares without data: HDF5 keeps it in a few
    bytes, and reading it would allocate it whole."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def _store(group: h5py.Group, key: str, v) -> None:
    """Store anything: text as bytes, text arrays as fixed bytes, objects as strings."""
    if isinstance(v, dict):
        sub = group.create_group(key)
        for k, x in v.items():
            _store(sub, k, x)
    elif isinstance(v, Lazy):
        group.create_dataset(key, shape=v.shape, dtype=np.float64, chunks=True)
    elif isinstance(v, str):
        group.create_dataset(key, data=v, dtype=h5py.string_dtype())
    elif isinstance(v, (list, tuple)) and key == "edges":
        group.create_dataset(key, data=np.array([[str(a).encode() for a in e] for e in v],
                                                dtype="S").reshape(-1, 2) if v else
                             np.zeros((0, 2), "S1"))
    else:
        a = np.asarray(v) if not isinstance(v, np.ndarray) else v
        if a.dtype.kind == "U":
            a = np.char.encode(a)
        elif a.dtype.kind == "O":
            a = np.array([str(x).encode() for x in a.reshape(-1)], dtype="S").reshape(a.shape)
        group.create_dataset(key, data=a)


def write_nir(path: Path, d: dict) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        node = f.create_group("node")
        for k, v in d.items():
            _store(node, k, v)
    return path


# ----------------------------------------------------------------------------- mutations


def _nodes(d: dict, prefix=""):
    """(node dict, name) of every node, subgraphs included."""
    for name, n in d["nodes"].items():
        if n.get("type") == "NIRGraph":
            yield from _nodes(n, prefix + name + ".")
        yield n, prefix + name


def _graphs(d: dict):
    yield d
    for n in d["nodes"].values():
        if isinstance(n, dict) and n.get("type") == "NIRGraph":
            yield from _graphs(n)


NUMERIC = ("weight", "bias", "tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset",
           "w_in", "scale", "threshold", "delay")
INTEGER = ("stride", "padding", "dilation", "groups", "kernel_size", "start_dim", "end_dim",
           "shape", "input_shape")


def _bad_value(draw, a):
    """A corrupted version of the numeric array ``a``."""
    try:  # a parameter an earlier corruption left as text, objects or complex numbers
        a = np.array(np.real(a), dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        a = np.ones(3)
    how = draw(st.sampled_from([
        "nan", "inf", "-inf", "huge", "tiny", "negative", "zero", "text", "text scalar",
        "mixed", "complex", "bool", "int", "float32", "float16", "scalar", "longer", "shorter",
        "extra dim", "empty", "lazy huge", "object", "transpose", "max float"]))
    flat = a.reshape(-1)
    i = draw(st.integers(0, max(flat.size - 1, 0)))
    if how in ("nan", "inf", "-inf", "huge", "tiny", "max float") and flat.size:
        flat[i] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e300, "tiny": 1e-310,
                   "max float": np.finfo(np.float64).max}[how]
        return how, a
    if how == "negative":
        return how, -np.abs(a) - 1.0
    if how == "zero":
        return how, np.zeros_like(a)
    if how == "text":
        return how, np.array([str(v) for v in flat]).reshape(a.shape)
    if how == "text scalar":
        return how, "abc"
    if how == "mixed":
        return how, np.array([str(v) if k == i else v for k, v in enumerate(flat)], dtype=object)
    if how == "complex":
        return how, a.astype(np.complex128) + 1j
    if how == "bool":
        return how, a > 0
    if how == "int":
        return how, np.round(np.nan_to_num(a)).astype(np.int64)
    if how == "float32":
        return how, a.astype(np.float32)
    if how == "float16":
        return how, a.astype(np.float16)
    if how == "scalar":
        return how, np.asarray(flat[0] if flat.size else 1.0)
    if how == "longer":
        return how, np.concatenate([a, a[:1]]) if a.ndim else np.array([a, a])
    if how == "shorter":
        return how, a[:-1] if a.ndim and len(a) > 1 else np.zeros((0,))
    if how == "extra dim":
        return how, a[None, ...].repeat(2, 0)
    if how == "empty":
        return how, np.zeros((0,) + a.shape[1:])
    if how == "lazy huge":
        return how, Lazy((10 ** 6, 10 ** 6))
    if how == "object":
        return how, np.array([None] * max(flat.size, 1), dtype=object)
    return how, a.T.copy() if a.ndim == 2 else a[::-1].copy()


def _bad_int(draw):
    return draw(st.sampled_from([0, -1, -7, 3, 2.5, 10 ** 9, 10 ** 18, "two", "same", "valid",
                                 "bogus", np.array([1, 2, 3]), np.array([0, 0]), np.nan, True,
                                 np.array([]), 1e300]))


def mutate(draw, d: dict) -> list[str]:
    """Apply one drawn corruption to the graph dict ``d`` in place; returns its description."""
    kind = draw(st.sampled_from([
        "param", "param", "param", "param", "integer", "integer", "dt", "dt", "delay", "edge",
        "edge", "node", "input shape", "input shape", "metadata", "output"]))
    nodes = list(_nodes(d))
    if kind == "param":
        cands = [(n, name, k) for n, name in nodes for k in NUMERIC if k in n]
        n, name, k = draw(st.sampled_from(cands))
        how, n[k] = _bad_value(draw, n[k])
        return [f"{name}.{k} {how}"]
    if kind == "integer":
        cands = [(n, name, k) for n, name in nodes for k in INTEGER
                 if k in n and n.get("type") not in ("Input", "Output")]
        if not cands:
            return ["no integer parameter"]
        n, name, k = draw(st.sampled_from(cands))
        n[k] = _bad_int(draw)
        return [f"{name}.{k} = {n[k]!r}"]
    if kind == "dt":
        v = draw(st.sampled_from(["1e-4", b"1e-4", np.array([DT, DT]), np.nan, np.inf, 0.0, -DT,
                                  1e30, 1e-300, 1, True, "missing", np.array([[DT]]), DT * 3]))
        if isinstance(v, str) and v == "missing":
            d["metadata"].pop("dt", None)
        else:
            d["metadata"]["dt"] = v
        return [f"dt = {v!r}"]
    if kind == "delay":
        cands = [(n, name) for n, name in nodes if n.get("type") == "Delay"]
        factor = draw(st.sampled_from([1e12, 1e3, -1.0, 0.5, 1e308, np.nan]))
        if not cands:  # put a Delay between the input and its first successor
            g = d
            src, dst = g["edges"][0]
            g["nodes"]["zdelay"] = {"type": "Delay", "delay": np.full(INPUT_SIZE, DT * factor)}
            g["edges"][0] = (src, "zdelay")
            g["edges"].append(("zdelay", dst))
            return [f"new delay x{factor}"]
        n, name = draw(st.sampled_from(cands))
        n["delay"] = np.asarray(n["delay"]) * factor
        return [f"{name}.delay x{factor}"]
    if kind == "edge":
        g = draw(st.sampled_from(list(_graphs(d))))
        names = list(g["nodes"])
        how = draw(st.sampled_from(["ghost", "remove", "duplicate", "cycle", "self", "into input",
                                    "reverse", "none", "swap"]))
        e = g["edges"]
        i = draw(st.integers(0, max(len(e) - 1, 0)))
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        if how == "ghost":
            e.append((a, "ghost"))
        elif how == "remove" and e:
            e.pop(i)
        elif how == "duplicate" and e:
            e.append(e[i])
        elif how == "cycle":
            e.append((b, a))
        elif how == "self":
            e.append((a, a))
        elif how == "into input":
            e.append((a, "input"))
        elif how == "reverse" and e:
            e[i] = e[i][::-1]
        elif how == "none":
            e.clear()
        elif how == "swap" and len(e) > 1:
            e[0], e[i] = (e[0][0], e[i][1]), (e[i][0], e[0][1])
        return [f"edge {how} {a}->{b}"]
    if kind == "node":
        g = draw(st.sampled_from(list(_graphs(d))))
        how = draw(st.sampled_from(["delete", "second input", "stray", "unknown type",
                                    "wrong type", "empty subgraph"]))
        name = draw(st.sampled_from(list(g["nodes"])))
        if how == "delete":
            del g["nodes"][name]
        elif how == "second input":
            g["nodes"]["input2"] = {"type": "Input", "shape": np.array([4])}
            g["edges"].append(("input2", name))
        elif how == "stray":
            g["nodes"]["stray"] = {"type": "Scale", "scale": np.ones(3)}
        elif how == "unknown type":
            g["nodes"][name]["type"] = "Mystery"
        elif how == "wrong type":
            g["nodes"][name]["type"] = draw(st.sampled_from(["LIF", "Affine", "Conv2d", "Flatten"]))
        elif how == "empty subgraph":
            g["nodes"][name] = {"type": "NIRGraph", "nodes": {}, "edges": []}
        return [f"node {name} {how}"]
    if kind == "input shape" and isinstance(d["nodes"].get("input"), dict) and \
            d["nodes"]["input"].get("type") == "Input":
        v = draw(st.sampled_from([np.array([0]), np.array([-1]), np.array([4.5]), "abc",
                                  np.array([10 ** 9, 10 ** 9]), np.array([]), "plus one",
                                  "extra dim", np.array([[4]]), np.array([np.nan])]))
        shape = [int(s) for s in d["nodes"]["input"]["shape"]] if isinstance(
            d["nodes"]["input"]["shape"], np.ndarray) and d["nodes"]["input"]["shape"].ndim == 1 \
            and d["nodes"]["input"]["shape"].dtype.kind in "iu" else [4]
        if isinstance(v, str) and v == "plus one":
            v = np.array(shape[:-1] + [shape[-1] + 1])
        elif isinstance(v, str) and v == "extra dim":
            v = np.array(shape + [2])
        d["nodes"]["input"]["shape"] = v
        return [f"input shape {v!r}"]
    if kind == "metadata" or kind == "input shape":
        how = draw(st.sampled_from(["subtract", "rk4", "nan value", "bytes", "text dt"]))
        d["metadata"].update({"subtract": {"reset_mode": "subtract"}, "rk4": {"discretisation": "rk4"},
                              "nan value": {"gain": np.nan, "names": np.array([b"a", b"b"])},
                              "bytes": {"source": b"\xff\xfe", "reset_mode": b"zero"},
                              "text dt": {"dt": "0.0001"}}[how])
        return [f"metadata {how}"]
    out = d["nodes"].setdefault("output", {"type": "Output", "shape": np.array([1])})
    out["shape"] = draw(st.sampled_from([np.array([999]), np.array([-1]), "abc", np.array([])]))
    return [f"output shape {out['shape']!r}"]


INPUT_SIZE = 4  # a Delay inserted after the input has this many values (mlp, fan_in shapes)


# ----------------------------------------------------------------------------- checks


def check_error(e: SpikeportError) -> None:
    """A user error: one line, a problem and a fix."""
    assert isinstance(e, SpikeportError)
    assert e.problem and e.fix, f"an error without a problem or a fix: {e!r}"
    assert "\n" not in e.one_line(), e.one_line()


def all_finite(obj, where="") -> None:
    """No NaN or inf anywhere in a JSON-like object or array."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            all_finite(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            all_finite(v, f"{where}[{i}]")
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fc":
            assert np.isfinite(obj).all(), f"non-finite values in {where}"
    elif isinstance(obj, float):
        assert math.isfinite(obj), f"non-finite {where} = {obj}"


def check_recording(rec) -> None:
    assert rec.values, "an empty recording"
    for name, v in rec.values.items():
        all_finite(np.asarray(v), f"values[{name}]")
    for name, v in (rec.membranes or {}).items():
        all_finite(np.asarray(v), f"membranes[{name}]")
    for name in rec.spiking:
        assert set(np.unique(rec.values[name])) <= {0.0, 1.0}, name


def attempt(fn, where: str = ""):
    """fn() -> its value, or None after checking the SpikeportError it raised."""
    try:
        out = fn()
    except SpikeportError as e:
        check_error(e)
        if where:
            tally(where, False)
        return None
    if where:
        tally(where, True)
    return out


def on_targets(graph, x) -> dict:
    """Compile and run ``graph`` on every in-process target: recordings by target (None where
    refused)."""
    out = {}
    for name in TARGETS:
        t = get_target(name)

        def go():
            rec = t.run(t.compile(graph, {}), x)
            check_recording(rec)
            return rec
        out[name] = attempt(go, name)
    return out


def agree(recs: dict) -> None:
    """The float targets that ran agree spike for spike (their arithmetic is the same)."""
    ran = {t: r for t, r in recs.items() if r is not None and t != "loihi-emu"}
    if "reference" not in ran:
        assert not ran, f"{sorted(ran)} ran a graph the reference refused"
        return
    ref = ran["reference"]
    for t, r in ran.items():
        assert r.spiking == ref.spiking, t
        for n in ref.spiking:
            assert np.array_equal(r.values[n], ref.values[n]), f"{t} disagrees with reference on {n}"


def cli(*args) -> dict | None:
    """One CLI command: exit 0 with finite JSON, or exit 2 with one `error: ... -- fix:` line."""
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code in (0, 2), (args, r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    if r.exit_code == 2:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and " -- fix: " in lines[0], \
            (args, r.stderr)
        return None
    data = json.loads(r.stdout)
    all_finite(data, args[0])
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout
    return data


# ----------------------------------------------------------------------------- the guard


SKIP_DIRS = {".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache", "build"}
SOURCE = (".py", ".md", ".txt", ".toml", ".cfg", ".yaml", ".yml")


def _tree() -> dict[str, tuple[int, int]]:
    """Files of the repository (and the working directory) that a run could write: path ->
    (size, mtime). Sources are listed but their contents not compared: people edit them."""
    out = {}
    for top in {ROOT, Path.cwd()}:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [n for n in dirnames if n not in SKIP_DIRS and not n.endswith(".egg-info")]
            for f in filenames:
                p = Path(dirpath) / f
                try:
                    st_ = p.stat()
                except OSError:
                    continue
                out[str(p)] = (0, 0) if p.suffix in SOURCE else (st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def untouched():
    """Fails the module if a case created, removed or changed a file outside its temp dir."""
    before = _tree()
    yield
    after = _tree()
    changed = sorted(p for p in set(before) | set(after)
                     if before.get(p) != after.get(p) and not p.endswith(".pyc"))
    assert not changed, f"files outside the cases' temporary directories changed: {changed[:10]}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, untouched):
    return tmp_path_factory.mktemp("fuzz-graphs")


def case_dir(base: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=base))


# ----------------------------------------------------------------------------- the cases


@st.composite
def hostile_nir(draw):
    base = draw(st.sampled_from(sorted(BASES)))
    d = copy.deepcopy(BASES[base]().to_dict())
    what = []
    for _ in range(draw(st.integers(1, 2))):
        what += mutate(draw, d)
    deep = draw(st.integers(0, 5)) == 0  # also the estimator and the CLI
    return base, d, what, deep


@fuzz(260)
@given(hostile_nir())
def test_hostile_nir_files_are_run_or_refused_clearly(workdir, case):
    base, d, what, deep = case
    CASES["nir files"] += 1
    tmp = case_dir(workdir)
    try:
        path = write_nir(tmp / "g.nir", d)
    except (TypeError, ValueError):  # h5py cannot store this corruption: nothing to read
        tally("unwritable", False)
        return
    x = spikes(INPUT_SHAPES[base])
    graph = attempt(lambda: read_graph(path), "read_graph")
    if graph is not None:
        attempt(lambda: build_program(graph), "build_program")
        recs = on_targets(graph, x)
        agree(recs)
    if deep:
        np.savez(tmp / "in.npz", x=x, y=np.zeros(B, dtype=np.int64))
        if graph is not None and recs.get("reference") is not None:
            res = attempt(lambda: estimate(path, "reference", cutoff="none",
                                           input_file=tmp / "in.npz"), "estimate")
            if res is not None:
                all_finite(res.to_json(), "estimate")
        tally("cli", True)
        cli("inspect", path, "--json")
        cli("run", path, "--target", "reference", "--input", tmp / "in.npz", "--json")
        cli("validate", path, "--targets", "reference,onnx,loihi-emu", "--input",
            tmp / "in.npz", "--json")
    shutil.rmtree(tmp)


def _set(obj, key, value):
    setattr(obj, key, value)


@st.composite
def hostile_memory(draw):
    """A base graph with one attribute replaced in memory by something no file holds."""
    base = draw(st.sampled_from(sorted(BASES)))
    g = BASES[base]()
    nodes = [(n, name) for n, name in _walk(g)]
    how = draw(st.sampled_from(["param", "param", "param", "dt option", "edges", "nodes",
                                "metadata", "input type", "flatten dims"]))
    dt = None
    if how == "param":
        cands = [(n, name, k) for n, name in nodes for k in NUMERIC if getattr(n, k, None) is not None]
        n, name, k = draw(st.sampled_from(cands))
        v = draw(st.sampled_from([None, [1.0, "a"], [[1.0, 2.0], [3.0]], {"a": 1}, object(),
                                  np.array([1 + 2j]), "nan", float("nan"), [], 7,
                                  np.broadcast_to(np.float64(1.0), (10 ** 6, 10 ** 6)),
                                  np.array(np.nan), np.float32(np.inf), -0.0]))
        _set(n, k, v)
        label = f"{name}.{k} = {type(v).__name__}"
    elif how == "dt option":
        dt = draw(st.sampled_from(["abc", [DT], np.nan, -1.0, 0, None, np.array([DT, DT]),
                                  object(), 1e300, np.float32(DT)]))
        label = f"dt option {dt!r}"
    elif how == "edges":
        v = draw(st.sampled_from([None, "input->output", [("input",)], [(1, 2)],
                                  [("input", "fc1", "x")], {"input": "output"}, [["input", None]]]))
        g.edges = v
        label = f"edges {v!r}"
    elif how == "nodes":
        v = draw(st.sampled_from([None, {}, {"input": 3}, {1: nir.Input(input_type=np.array([2]))},
                                  [nir.Input(input_type=np.array([2]))]]))
        g.nodes = v
        label = f"nodes {v!r}"
    elif how == "metadata":
        v = draw(st.sampled_from([None, "dt=1e-4", {"dt": [DT]}, {"dt": "fast"}, 3]))
        g.metadata = v
        label = f"metadata {v!r}"
    elif how == "input type":
        v = draw(st.sampled_from([None, {}, {"input": None}, {"a": np.array([4]), "b": None},
                                  "4", {"input": np.array([[4]])}, {"input": [4.0]}]))
        g.nodes["input"].input_type = v
        label = f"input_type {v!r}"
    else:
        flats = [n for n, _ in nodes if isinstance(n, nir.Flatten)]
        if not flats:
            return base, g, None, "no Flatten"
        flats[0].start_dim, flats[0].end_dim = draw(st.sampled_from(
            [(5, -1), (0, 7), (-9, -1), (1, 0), ("0", -1), (0.5, -1), (None, -1)]))
        label = f"flatten {flats[0].start_dim}..{flats[0].end_dim}"
    return base, g, dt, label


def _walk(g, prefix=""):
    for name, n in g.nodes.items():
        if isinstance(n, nir.NIRGraph):
            yield from _walk(n, prefix + name + ".")
        else:
            yield n, prefix + name


@fuzz(100)
@given(hostile_memory())
def test_hostile_graphs_in_memory_are_run_or_refused_clearly(workdir, case):
    base, g, dt, what = case
    CASES["graphs in memory"] += 1
    x = spikes(INPUT_SHAPES[base])
    attempt(lambda: build_program(g, dt), "memory build_program")
    for name in TARGETS:
        t = get_target(name)

        def go():
            rec = t.run(t.compile(g, {} if dt is None else {"dt": dt}), x)
            check_recording(rec)
        attempt(go, f"memory {name}")


# ----------------------------------------------------------------------------- netx files


def _loihi_bases():
    conv_net = conv()  # IF after Affine with zero bias; Loihi folds the sum pool
    rec = recurrent()
    rec.nodes["rnn"].nodes["w_rec"] = nir.Linear(np.asarray(rec.nodes["rnn"].nodes["w_rec"].weight))
    chain = _graph({"input": rec.nodes["input"], "fc": rec.nodes["fc"],
                    "lif": rec.nodes["rnn"].nodes["lif"], "w_rec": rec.nodes["rnn"].nodes["w_rec"],
                    "output": nir.Output(output_type=np.array([5]))},
                   [("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                    ("lif", "output")])
    return {"mlp": quantize(mlp()), "conv": quantize(conv_net), "dense_rec": quantize(chain)}


LOIHI = {}


def loihi_bases():
    if not LOIHI:
        LOIHI.update(_loihi_bases())
    return LOIHI


@st.composite
def hostile_netx(draw):
    base = draw(st.sampled_from(["mlp", "conv", "dense_rec"]))
    how = draw(st.sampled_from(["dataset", "dataset", "dataset", "delete", "attribute",
                                "attribute", "layer", "file"]))
    seed = draw(st.integers(0, 10 ** 6))
    choice = draw(st.integers(0, 10 ** 6))
    value = draw(st.sampled_from([
        "nan", "float", "odd", "too big", "too small", "text", "wrong shape", "extra dim",
        "scalar", "empty", "negative", "lazy huge", "bool", "huge int"]))
    return base, how, seed, choice, value


def _corrupt_dataset(f: h5py.File, name: str, value: str, rng) -> str:
    a = np.asarray(f[name][()])
    if a.dtype.kind in "OS":  # a text: replace it by another text or a number
        new = {"text": b"lstm", "nan": np.nan}.get(value, 7)
    else:
        a = a.astype(np.float64)
        new = {
            "nan": np.where(rng.random(a.shape) < 0.5, np.nan, a) if a.ndim else np.nan,
            "float": a + 0.5, "odd": a + 1, "too big": a + 10 ** 6, "too small": a - 10 ** 6,
            "text": np.char.encode(np.full(a.shape, "x")) if a.ndim else b"x",
            "wrong shape": np.zeros(tuple(s + 1 for s in a.shape) or (2,)),
            "extra dim": np.zeros((2,) + a.shape), "scalar": np.float64(a.reshape(-1)[0]) if a.size else 0.0,
            "empty": np.zeros((0,)), "negative": -np.abs(a) - 2, "bool": a > 0,
            "huge int": np.full(a.shape, 2 ** 62, dtype=np.int64), "lazy huge": None,
        }[value]
    del f[name]
    if value == "lazy huge":
        f.create_dataset(name, shape=(10 ** 6, 10 ** 6), dtype=np.int64, chunks=True)
    else:
        f[name] = new
    return f"{name} {value}"


def corrupt_netx(path: Path, how: str, seed: int, choice: int, value: str, tmp: Path) -> str:
    rng = np.random.default_rng(seed)
    if how == "file":
        kind = ["nir", "bytes", "empty hdf5", "truncated", "foreign netx"][choice % 5]
        if kind == "nir":
            nir.write(str(path), mlp())
        elif kind == "bytes":
            path.write_bytes(rng.bytes(200))
        elif kind == "empty hdf5":
            h5py.File(path, "w").close()
        elif kind == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        else:
            with h5py.File(path, "a") as f:
                del f.attrs["spikeport_format"]
        return f"file {kind}"
    with h5py.File(path, "a") as f:
        datasets, groups = [], []
        f.visititems(lambda n, o: (datasets if isinstance(o, h5py.Dataset) else groups).append(n))
        if how == "dataset":
            return _corrupt_dataset(f, datasets[choice % len(datasets)], value, rng)
        if how == "delete":
            name = (datasets + groups)[choice % (len(datasets) + len(groups))]
            if name in f:
                del f[name]
            return f"deleted {name}"
        if how == "attribute":
            key = sorted(f.attrs)[choice % len(f.attrs)]
            new = {"nan": np.nan, "text": "garbage", "wrong shape": np.array([[1, 2]]),
                   "empty": "[]", "negative": -1.0, "scalar": 0, "float": "[[\"a\"]]",
                   "odd": "NaN", "bool": True, "too big": "[1e999]", "too small": "{}",
                   "extra dim": np.zeros((2, 2)), "lazy huge": "x" * 1000,
                   "huge int": np.array([2 ** 62])}[value]
            f.attrs[key] = new
            return f"attribute {key} = {new!r:.40}"
        layers = f["layer"]
        n = len(layers)
        op = ["gap", "extra", "swap", "flatten", "retype"][choice % 5]
        if op == "gap":
            layers.move(str(n - 1), str(n + 3))
        elif op == "extra":
            layers.copy(str(n - 1), str(n))
        elif op == "swap" and n > 2:
            layers.move("1", "tmp")
            layers.move(str(n - 1), "1")
            layers.move("tmp", str(n - 1))
        elif op == "flatten":
            layers.create_group(str(n))["type"] = "flatten"
        else:
            del layers["1"]["type"]
            layers["1"]["type"] = ["input", "conv", "dense", "dense_rec", "pool"][seed % 5]
        return f"layers {op}"


@fuzz(120)
@given(hostile_netx())
def test_hostile_netx_files_are_run_or_refused_clearly(workdir, case):
    base, how, seed, choice, value = case
    CASES["netx files"] += 1
    tmp = case_dir(workdir)
    net = loihi_bases()[base]
    path = netx.write(net, tmp / "model.net")
    corrupt_netx(path, how, seed, choice, value, tmp)
    back = attempt(lambda: netx.read(path), "netx.read")
    if back is not None:
        x = spikes(net.input_shape, seed % 7)
        rec = attempt(lambda: emulator.run(back, x), "emulator")
        if rec is not None:
            check_recording(rec)
            all_finite(back.report(), "report")
    attempt(lambda: read_graph(path))  # a netx file where a graph is expected
    shutil.rmtree(tmp)


# ----------------------------------------------------------------------------- named classes
# The failure classes the hostile-input run found, one case each, with the error they get.


def _fixed_cases():
    def edit(base, fn):
        g = BASES[base]()
        fn(g)
        return g

    def delay(v):
        return lambda g: setattr(g.nodes["delay"], "delay", np.full(24, v))

    return {
        "nan weight": (edit("mlp", lambda g: g.nodes["fc1"].weight.__setitem__((0, 0), np.nan)),
                       r"node 'fc1' \(Affine\): weight holds nan at index \(0, 0\)"),
        "inf tau": (edit("mlp", lambda g: g.nodes["lif1"].tau.__setitem__(2, np.inf)),
                    r"node 'lif1' \(LIF\): tau holds inf at index \(2,\)"),
        "negative tau": (edit("mlp", lambda g: setattr(g.nodes["cuba"], "tau_syn", -g.nodes["cuba"].tau_syn)),
                         r"tau_syn holds -0.0005.*> 0"),
        "dt text": (edit("mlp", lambda g: g.metadata.update(dt="1e-4")), r"dt is the text '1e-4'"),
        "dt array": (edit("mlp", lambda g: g.metadata.update(dt=np.array([DT, DT]))),
                     r"dt is an array of shape \(2,\)"),
        "dt nan": (edit("mlp", lambda g: g.metadata.update(dt=np.nan)), r"dt must be a positive"),
        "text weights": (edit("mlp", lambda g: setattr(g.nodes["fc2"], "weight", g.nodes["fc2"].weight.astype(str))),
                         r"node 'fc2' \(Linear\): weight holds (text|bytes)"),
        "bias length": (edit("mlp", lambda g: setattr(g.nodes["fc1"], "bias", np.zeros(5))),
                        r"node 'fc1' \(Affine\): bias has shape \(5,\).*\(6,\)"),
        "groups 0": (edit("conv", lambda g: setattr(g.nodes["conv"], "groups", 0)),
                     r"node 'conv' \(Conv2d\): groups is 0; it must be >= 1"),
        "groups 2": (edit("conv", lambda g: setattr(g.nodes["conv"], "groups", 2)),
                     r"groups=2 takes 2 input channels, its input has 1"),
        "huge delay": (edit("signal", delay(1e12 * DT)), r"node 'delay' \(Delay\): a delay of "
                       r"1000000000000 steps .*more than the memory budget"),
        "wrong flatten": (edit("conv", lambda g: setattr(g.nodes["flat"], "start_dim", 3)),
                          r"start_dim=3 is outside its input's 3 dimensions"),
        "fan-in shapes": (edit("fan_in", lambda g: setattr(g.nodes["b"], "weight", weights((4, 4), 0))),
                          r"node 'cuba' \(CubaLI\): its incoming edges carry different shapes"),
        "kernel too big": (edit("conv", lambda g: setattr(g.nodes["conv"], "padding", 0) or
                                setattr(g.nodes["conv"], "weight", weights((2, 1, 7, 7), 0))),
                           r"kernel \(7, 7\) .*more than the padded input \(6, 6\)"),
        "tau below half dt": (edit("mlp", lambda g: setattr(g.nodes["lif1"], "tau", np.full(6, DT / 3))),
                           r"tau = 3.3+e-05 s is shorter than dt / 2"),
    }


@pytest.mark.parametrize("name", sorted(_fixed_cases()))
def test_each_found_failure_class_gets_its_error(workdir, name):
    graph, match = _fixed_cases()[name]
    CASES["fixed cases"] += 1
    path = write_nir(workdir / f"{name.replace(' ', '_')}.nir", graph.to_dict())
    for g in (graph, read_graph(path)):
        with pytest.raises(GraphError, match=match) as e:
            build_program(g)
        check_error(e.value)
        for t in TARGETS:
            with pytest.raises(GraphError, match=match):
                get_target(t).compile(g, {})


def test_input_of_the_wrong_feature_size_is_refused_by_every_target():
    CASES["fixed cases"] += 1
    g = mlp()
    for t in TARGETS:
        target = get_target(t)
        art = target.compile(g, {})
        for x, match in ((spikes((5,)), r"input has shape \(3, 2, 5\), the graph expects \(T, B, 4\)"),
                         (np.full((3, 2, 4), np.nan), "the input holds nan"),
                         (np.zeros((0, 2, 4)), "0 time steps")):
            with pytest.raises(GraphError, match=match):
                target.run(art, x)


def test_a_recording_beyond_the_memory_budget_is_refused_before_it_is_made(monkeypatch):
    from spikeport.core import budget

    CASES["fixed cases"] += 1
    monkeypatch.setenv(budget.ENV_VAR, "1M")
    x = np.broadcast_to(np.float64(1.0), (10 ** 4, 64, 4))  # no memory of its own
    for t in TARGETS:
        target = get_target(t)
        with pytest.raises(GraphError, match=r"running 10000 steps x 64 samples needs .* more "
                           r"than the memory budget of 1 MB"):
            target.run(target.compile(mlp(), {}), x)


def test_a_convolution_whose_windows_exceed_the_budget_for_the_batch_is_refused(monkeypatch):
    """Padding 300 makes one sample's windows 26 MB: within a 40 MB budget at build time,
    beyond it for a batch of two, before anything is allocated."""
    from spikeport.core import budget

    CASES["fixed cases"] += 1
    monkeypatch.setenv(budget.ENV_VAR, "40M")
    c = nir.Conv2d(input_shape=np.array([6, 6]), weight=weights((1, 1, 3, 3), 4), stride=1,
                   padding=300, dilation=1, groups=1, bias=np.zeros(1))
    g = _graph({"input": nir.Input(input_type=np.array([1, 6, 6])), "conv": c,
                "output": nir.Output(output_type=np.array([1]))},
               [("input", "conv"), ("conv", "output")])
    for t in ("reference", "snntorch", "onnx"):
        target = get_target(t)
        with pytest.raises(GraphError, match=r"running 3 steps x 2 samples needs .* more than "
                           r"the memory budget of 40 MB"):
            target.run(target.compile(g, {}), spikes((1, 6, 6)))


def test_a_huge_dataset_in_a_nir_file_is_refused_before_it_is_read(workdir):
    CASES["fixed cases"] += 1
    d = mlp().to_dict()
    d["nodes"]["fc1"]["weight"] = Lazy((10 ** 6, 10 ** 6))
    path = write_nir(workdir / "huge.nir", d)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(GraphError, match=r"the largest 'node/nodes/fc1/weight'\) needs 7.276 TB"):
        read_graph(path)


def test_nir_and_netx_files_are_refused_where_the_other_is_expected(workdir):
    CASES["fixed cases"] += 1
    g_path = workdir / "swap.nir"
    nir.write(str(g_path), mlp())
    n_path = netx.write(quantize(mlp()), workdir / "swap.net")
    with pytest.raises(GraphError, match="is a NIR graph, not a netx file") as e:
        netx.read(g_path)
    assert "spikeport export RUN --to loihi" in e.value.fix
    with pytest.raises(GraphError, match="is a netx file, not a NIR graph"):
        read_graph(n_path)
    r = runner.invoke(app, ["inspect", str(n_path)])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "not a NIR graph" in r.stderr


def test_wrong_weight_shapes_in_a_netx_file_are_refused_naming_layer_and_key(workdir):
    CASES["fixed cases"] += 1
    path = netx.write(quantize(mlp()), workdir / "shape.net")
    with h5py.File(path, "a") as f:
        del f["layer/2/weight"]
        f["layer/2/weight"] = np.zeros((3, 5), np.int64)
    with pytest.raises(GraphError, match=r"layer 2 \(dense\): 'weight' has shape \(3, 5\), "
                       r"expected \(3, 6\)"):
        netx.read(path)


def test_legitimate_variations_still_load_and_agree(workdir):
    """Scalars for per-neuron parameters, float32 arrays, integer weights, grouped
    convolutions (which NIR's own type check refuses) and an Input node given an input_type
    dict all run, identically on every float target."""
    CASES["fixed cases"] += 1
    g = mlp()
    for key, v in (("tau", np.asarray(1e-3)), ("r", np.float32(10.0)), ("v_leak", 0.0),
                   ("v_threshold", np.float32(0.5)), ("v_reset", np.asarray([0.0]))):
        setattr(g.nodes["lif1"], key, v)
    g.nodes["fc2"].weight = g.nodes["fc2"].weight.astype(np.float32)
    g.nodes["fc1"].weight = np.round(g.nodes["fc1"].weight * 4).astype(np.int64)
    x = spikes((4,))
    recs = {t: get_target(t).run(get_target(t).compile(g, {}), x) for t in ("reference", "snntorch", "onnx")}
    for t, rec in recs.items():
        for n in rec.values:
            np.testing.assert_array_equal(rec.values[n], recs["reference"].values[n], err_msg=f"{t} {n}")
    assert recs["reference"].values["lif1"].shape == (T, B, 6)
    c = conv()
    c.nodes["input"] = nir.Input(input_type={"input": np.array([2, 6, 6])})
    c.nodes["conv"] = nir.Conv2d(input_shape=np.array([6, 6]), weight=weights((2, 1, 3, 3), 4), stride=1,
                                 padding=1, dilation=1, groups=2, bias=np.zeros(2))
    path = workdir / "grouped.nir"
    nir.write(str(path), c)
    back = read_graph(path)
    ref = get_target("reference").run(get_target("reference").compile(back, {}), spikes((2, 6, 6)))
    check_recording(ref)


def test_targets_agree_where_snntorch_used_to_clamp_a_negative_decay():
    """A time constant between dt / 2 and dt decays by a negative factor (1 - dt/tau); snntorch
    clamps beta and alpha to [0, 1], so the snntorch target computes such populations with
    the explicit step, and agrees with the reference."""
    CASES["fixed cases"] += 1
    g = mlp()
    g.nodes["lif1"] = lif(6, tau=0.7 * DT)
    g.nodes["cuba"].tau_syn = np.full(3, 0.6 * DT)
    x = spikes((4,))
    recs = on_targets(g, x)
    assert recs["reference"].values["lif1"].any()
    agree(recs)


def test_a_pool_padding_torch_cannot_express_is_refused_by_the_snntorch_target():
    CASES["fixed cases"] += 1
    g = conv()
    g.nodes["pool"].padding = np.array([3, 3])
    g.nodes["lif1"] = lif((2, 6, 6))
    g.nodes["fc"].weight = weights((3, 72), 0)
    t = get_target("snntorch")
    with pytest.raises(GraphError, match=r"node 'pool' \(SumPool2d\): padding \(3, 3\) is more "
                       "than half its kernel"):
        t.compile(g, {})
    check_recording(get_target("reference").run(get_target("reference").compile(g, {}),
                                                spikes((1, 6, 6))))


def test_enough_cases_ran():
    """The fuzz families above ran at least 400 cases (when the whole module runs)."""
    if not CASES["nir files"] or not CASES["netx files"]:
        pytest.skip("run the whole module to count its cases")
    print("\ncases:", CASES, "\noutcomes:", dict(sorted(OUTCOMES.items())))
    assert sum(CASES.values()) >= 400, CASES
    for where in ("read_graph", "build_program", "reference", "snntorch", "onnx", "loihi-emu",
                  "netx.read", "memory build_program"):
        assert OUTCOMES.get(f"{where}: ok") and OUTCOMES.get(f"{where}: refused"), \
            f"{where} never both succeeded and refused: the fuzz would be one-sided"
