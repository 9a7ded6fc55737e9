"""The Lava runtime boundary: the Python 3.10 Lava environment, the runner and the bridge.

These tests run the REAL Lava simulator (lava-nc 0.10.0 / lava-dl 0.6.0, fixed point) in
its own environment; nothing is mocked. They are marked `lava` and never skipped: without
the environment they fail with the command that creates it (`spikeport lava-env install`;
`make test` runs it before the tests, `make test-fast` deselects them). The tests of the
environment's bookkeeping (missing env, marker, cache location, runner imports) need no
environment and are not marked.
"""
from __future__ import annotations

import ast
import hashlib
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikeport.exporters.lava import env as lava_env
from spikeport.exporters.lava.bridge import LavaRecording, LavaRunError, LavaTimeoutError, run_netx
from spikeport.exporters.lava.env import LavaEnvError

EXPORTERS = Path(lava_env.__file__).resolve().parent


@pytest.fixture(scope="module")
def lava_python() -> Path:
    """The ready Lava environment's python; a missing env fails with the install message."""
    try:
        return lava_env.ensure_ready()
    except LavaEnvError as exc:
        pytest.fail(exc.one_line(), pytrace=False)


def _report(msg: str) -> None:
    """Timings go to the terminal (pytest -s) and to stderr captured in the report."""
    print(f"[lava timing] {msg}", file=sys.stderr)


# --- a tiny independent model of Lava's fixed-point CUBA arithmetic (SEMANTICS 6.2-6.3) ---

def _shift_decay(x: np.ndarray, decay: int) -> np.ndarray:
    """sign(p) * (|p| >> 12) with p = x * (4096 - decay): decay rounded toward zero."""
    p = x.astype(np.int64) * (4096 - decay)
    return np.sign(p) * (np.abs(p) >> 12)


def cuba_model(layers: list[dict], x: np.ndarray) -> list[np.ndarray]:
    """Spikes of every layer for one sample ``x`` (T, n_in) of 0/1, fresh state at t = 0.

    Model time: Lava's one-step Dense delay is not included (Lava shows layer i's step t at
    index c_i + t); axonal delays d_j (per output) and recurrent weights are. Weights are the
    file's even integers (netx's weight-exponent rewrite and Lava's mixed-mode LSB drop are
    then lossless, SEMANTICS 5, 6.2).
    """
    n_steps = x.shape[0]
    outs = []
    s_prev = x.astype(np.int64)
    for layer in layers:
        w = layer["weight"].astype(np.int64)
        n = w.shape[0]
        delay = np.asarray(layer.get("delay", np.zeros(n)), dtype=int)
        w_rec = layer.get("weight_rec")
        bias = np.asarray(layer.get("bias", np.zeros(n)), dtype=np.int64)
        i_decay, v_decay, vth = layer["iDecay"], layer["vDecay"], layer["vThMant"]
        drive = s_prev @ w.T  # (T, n): synaptic input at model step t, before axonal delays
        u = np.zeros(n, np.int64)
        v = np.zeros(n, np.int64)
        s = np.zeros((n_steps, n), np.int64)
        for t in range(n_steps):
            a = np.array([drive[t - delay[j], j] if t - delay[j] >= 0 else 0
                          for j in range(n)], dtype=np.int64)
            if w_rec is not None and t > 0:
                a = a + w_rec.astype(np.int64) @ s[t - 1]
            u = _shift_decay(u, i_decay) + (a << 6)
            u = np.where(u > 2**23, u - 2**24, u)  # 24-bit wrap
            u = np.where(u <= -2**23, u + 2**24, u)
            v = _shift_decay(v, v_decay) + u + (bias << 6)
            v = np.clip(v, -(2**23) + 1, 2**23 - 1)
            spike = v > (vth << 6)
            v[spike] = 0
            s[t] = spike
        outs.append(s.astype(np.uint8))
        s_prev = s
    return outs


def write_netx(path: Path, layers: list[dict]) -> Path:
    """A netx HDF5 file in lava-dl 0.6.0's layout (``netx/hdf5.py``, ``netx/utils.py``):
    /layer/<i>/{type, shape, inFeatures, outFeatures, weight[, weight_rec, bias, delay],
    neuron/{type, iDecay, vDecay, vThMant, refDelay, gradedSpike}}."""
    with h5py.File(path, "w") as f:
        for i, layer in enumerate(layers):
            g = f.create_group(f"layer/{i}")
            w = np.asarray(layer["weight"])
            kind = "dense_rec" if "weight_rec" in layer else "dense"
            g.create_dataset("type", data=np.array([kind.encode()], dtype="S10"))
            g.create_dataset("shape", data=np.array([w.shape[0]]))
            g.create_dataset("inFeatures", data=w.shape[1])
            g.create_dataset("outFeatures", data=w.shape[0])
            g.create_dataset("weight", data=w.astype(np.float32))
            for key in ("weight_rec", "bias", "delay"):
                if key in layer:
                    g.create_dataset(key, data=np.asarray(layer[key]).astype(np.float32))
            nrn = g.create_group("neuron")
            nrn.create_dataset("type", data=b"CUBA")
            for key in ("iDecay", "vDecay", "vThMant"):
                nrn.create_dataset(key, data=int(layer[key]))
            nrn.create_dataset("refDelay", data=1)
            nrn.create_dataset("gradedSpike", data=False)
        f.create_dataset("simulation/Ts", data=1)
        f.create_dataset("simulation/tSample", data=20)
    return path


def _even(rng: np.random.Generator, shape, low: int, high: int) -> np.ndarray:
    return 2 * rng.integers(low // 2, high // 2 + 1, size=shape)


def plain_net(rng: np.random.Generator) -> list[dict]:
    """8 -> 6 -> 4 CUBA, even integer weights, no bias."""
    return [
        {"weight": _even(rng, (6, 8), -40, 70), "iDecay": 1024, "vDecay": 512, "vThMant": 400},
        {"weight": _even(rng, (4, 6), -30, 80), "iDecay": 2048, "vDecay": 128, "vThMant": 250},
    ]


def rich_net(rng: np.random.Generator) -> list[dict]:
    """8 -> 6 (bias, some neurons fire on bias alone) -> 5 (recurrent) -> 4 (axonal delays)."""
    return [
        {"weight": _even(rng, (6, 8), -40, 70), "bias": np.array([0, 12, -10, 0, 5, 60]),
         "iDecay": 1024, "vDecay": 512, "vThMant": 400},
        {"weight": _even(rng, (5, 6), -30, 80), "weight_rec": _even(rng, (5, 5), -40, 40),
         "iDecay": 1536, "vDecay": 256, "vThMant": 300},
        {"weight": _even(rng, (4, 5), -30, 90), "delay": np.array([0, 1, 3, 2]),
         "iDecay": 2048, "vDecay": 128, "vThMant": 200},
    ]


def _inputs(rng: np.random.Generator, n_samples: int, n_steps: int, n_in: int) -> np.ndarray:
    x = (rng.random((n_samples, n_steps, n_in)) < 0.35).astype(np.uint8)
    x[:, -3:] = 1  # strong activity at the end of every sample: tails reach the next one
    return x


def _models(layers: list[dict], x: np.ndarray) -> list[list[np.ndarray]]:
    """The model for every sample, input padded with zeros to Lava's window T + L, so that
    every layer's recorded steps have a model counterpart."""
    padded = np.concatenate([x, np.zeros((x.shape[0], len(layers), x.shape[2]), x.dtype)], 1)
    return [cuba_model(layers, sample) for sample in padded]


def _mismatches(rec: LavaRecording, models: list[list[np.ndarray]]) -> list[int]:
    """Per layer, mismatched bins of Lava (shifted by the layer latency) against the model;
    pipeline-fill steps (before the layer's first model step) must be silent."""
    counts = []
    for i, lat in enumerate(rec.latencies):
        lava = rec[f"layer_{i}"]
        n_model = lava.shape[1] - lat
        assert not lava[:, :lat].any(), f"layer {i}: spikes before its latency {lat}"
        model = np.stack([m[i][:n_model] for m in models])
        counts.append(int((lava[:, lat:lat + n_model] != model).sum()))
    return counts


# --- (a) golden regression: lava-dl's N-TIDIGITS netx fixture --------------------------

def _ntidigits_dir(python: Path) -> Path:
    env_root = python.parent.parent
    found = sorted(env_root.glob(
        "lib/python3.10/site-packages/tests/lava/lib/dl/netx/gts/ntidigits"))
    assert found, f"lava-dl's N-TIDIGITS fixture not found under {env_root} (DATA.md)"
    return found[0]


@pytest.mark.lava
def test_ntidigits_golden_regression(lava_python):
    """lava-dl's shipped N-TIDIGITS network (64-256-256-242, axonal delays up to 62),
    3000 steps, against its stored output: 0 mismatched bins with our output at t equal to
    the stored output at t+1 (SEMANTICS 10), 22572 spikes in both."""
    gts = _ntidigits_dir(lava_python)
    x = np.load(gts / "input.npy")  # (64, 3000), Lava layout
    gt = np.load(gts / "output.npy").T.astype(np.uint8)  # (3000, 242)
    spikes = x.T[None].astype(np.uint8)  # (1, 3000, 64), our layout
    t0 = time.perf_counter()
    rec = run_netx(gts / "ntidigits.net", spikes, num_layers=5, timeout=900)
    wall = time.perf_counter() - t0
    _report(f"N-TIDIGITS 3000 steps: {wall:.1f} s wall, {rec.status['seconds']} s in Lava "
            f"run ({rec.status['steps']} steps)")
    assert list(rec) == ["layer_0", "layer_1", "layer_2"]
    assert rec.latencies == [1, 2, 3]
    assert [rec[k].shape for k in rec] == [(1, 3003, 256), (1, 3003, 256), (1, 3003, 242)]
    out = rec.output[0]
    n = gt.shape[0] - 1
    assert int((out[:n] != gt[1:]).sum()) == 0
    assert int(out[:n].sum()) == int(gt[1:].sum()) == int(gt.sum()) == 22572


# --- (b) a small dense network against the numpy model, batched and per sample ----------

@pytest.mark.lava
def test_small_dense_net_matches_fixed_point_model_and_isolates_samples(lava_python, tmp_path):
    rng = np.random.default_rng(7)
    layers = plain_net(rng)
    net = write_netx(tmp_path / "small.net", layers)
    x = _inputs(rng, 4, 20, 8)
    models = _models(layers, x)
    # the check means something only if every layer is active in every sample
    for m in models:
        assert all(layer.sum() >= 5 for layer in m), [layer.sum() for layer in m]

    t0 = time.perf_counter()
    batched = run_netx(net, x)
    t_batched = time.perf_counter() - t0
    assert batched.latencies == [1, 2]
    assert batched["layer_0"].shape == (4, 22, 6) and batched["layer_1"].shape == (4, 22, 4)
    assert batched["layer_0"].dtype == np.uint8
    assert _mismatches(batched, models) == [0, 0]

    t0 = time.perf_counter()
    alone = [run_netx(net, x[m:m + 1]) for m in range(len(x))]
    t_alone = time.perf_counter() - t0
    for m, rec in enumerate(alone):
        for key in batched:
            np.testing.assert_array_equal(batched[key][m], rec[key][0],
                                          err_msg=f"sample {m}, {key}")
    _report(f"8-6-4 net, 4 samples x 20 steps: batched {t_batched:.1f} s wall "
            f"({batched.status['seconds']} s run, {batched.status['steps']} steps); "
            f"one call per sample {t_alone:.1f} s wall "
            f"({sum(r.status['seconds'] for r in alone):.1f} s run)")


@pytest.mark.lava
def test_bias_recurrence_and_axonal_delays_are_reset_between_samples(lava_python, tmp_path):
    """Bias-driven neurons, a dense_rec layer and axonal delays: the state that a plain LIF
    reset does not clear (delay lines, the recurrent synapse) must not leak across samples."""
    rng = np.random.default_rng(11)
    layers = rich_net(rng)
    net = write_netx(tmp_path / "rich.net", layers)
    x = _inputs(rng, 3, 16, 8)
    models = _models(layers, x)
    for m in models:
        assert all(layer.sum() >= 5 for layer in m), [layer.sum() for layer in m]
    rec = run_netx(net, x)
    assert [layer["block"] for layer in rec.status["layers"]] == [
        "Dense", "RecurrentDense", "Dense"]
    assert rec.status["synapse_clears"] == 2
    assert _mismatches(rec, models) == [0, 0, 0]


# --- (c) error paths ----------------------------------------------------------------------

@pytest.mark.lava
def test_corrupt_net_file_gives_typed_error_with_runner_message(lava_python, tmp_path):
    good = write_netx(tmp_path / "good.net", plain_net(np.random.default_rng(0)))
    truncated = tmp_path / "truncated.net"
    truncated.write_bytes(good.read_bytes()[:1200])
    x = np.zeros((1, 5, 8), np.uint8)
    with pytest.raises(LavaRunError) as info:
        run_netx(truncated, x)
    msg = str(info.value)
    assert "\n" not in msg and "truncated.net failed" in msg
    assert "OSError" in msg or "KeyError" in msg, msg  # h5py's own message, via the runner
    assert "Traceback" in info.value.details

    garbage = tmp_path / "garbage.net"
    garbage.write_bytes(b"not an hdf5 file\n" * 10)
    with pytest.raises(LavaRunError, match="is not an HDF5 file"):
        run_netx(garbage, x)


@pytest.mark.lava
def test_unsupported_layer_and_wrong_input_shape_report_lava_errors(lava_python, tmp_path):
    net = write_netx(tmp_path / "pool.net", plain_net(np.random.default_rng(0)))
    with h5py.File(net, "a") as f:
        f.create_group("layer/2").create_dataset("type", data=np.array([b"pool"], "S10"))
    with pytest.raises(LavaRunError, match="NotImplementedError: pool is not implemented"):
        run_netx(net, np.zeros((1, 5, 8), np.uint8))
    # num_layers stops before the unsupported layer, as for N-TIDIGITS' `average`
    rec = run_netx(net, np.zeros((2, 5, 8), np.uint8), num_layers=2)
    assert rec.output.shape == (2, 7, 4) and not rec.output.any()
    with pytest.raises(LavaRunError, match=r"ValueError: input spikes have per-step shape \(7,\)"):
        run_netx(net, np.zeros((1, 5, 7), np.uint8), num_layers=2)


@pytest.mark.lava
def test_timeout_is_a_typed_error(lava_python, tmp_path):
    net = write_netx(tmp_path / "small.net", plain_net(np.random.default_rng(0)))
    with pytest.raises(LavaTimeoutError, match="did not finish within 0.5 s"):
        run_netx(net, np.zeros((1, 5, 8), np.uint8), timeout=0.5)


def test_missing_env_gives_install_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "empty-cache"))
    expected = tmp_path / "empty-cache" / f"lava-env-{lava_env.env_key()}"
    assert lava_env.env_path() == expected
    with pytest.raises(LavaEnvError) as info:
        run_netx(tmp_path / "whatever.net", np.zeros((1, 5, 8), np.uint8))
    msg = str(info.value)
    assert f"Lava environment not found at {expected}" in msg
    assert "-- fix: run `spikeport lava-env install` (about 4 minutes, 5.6 GB)" in msg
    status = lava_env.check()
    assert status["ok"] is False and status["exists"] is False
    assert "spikeport lava-env install" in status["fix"]


def test_env_without_marker_is_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path))
    path = lava_env.env_path()
    (path / "bin").mkdir(parents=True)
    with pytest.raises(LavaEnvError, match="incomplete.*no .spikeport-ready marker"):
        lava_env.ensure_ready()
    # install() looks for Python 3.10 before deleting anything
    monkeypatch.setenv("SPIKEPORT_PYTHON310", sys.executable)
    with pytest.raises(LavaEnvError, match="not 3.10"):
        lava_env.install()
    assert (path / "bin").is_dir()
    # a ready env (current marker) is reused as is
    (path / "bin" / "python").symlink_to(sys.executable)
    (path / ".spikeport-ready").write_text(lava_env.requirements_hash() + "\n")
    assert lava_env.install() == path
    assert lava_env.ensure_ready() == path / "bin" / "python"
    (path / ".spikeport-ready").write_text("0" * 64 + "\n")
    with pytest.raises(LavaEnvError, match="does not match"):
        lava_env.ensure_ready()


def test_cache_location_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("SPIKEPORT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert lava_env.env_path() == tmp_path / "spikeport" / f"lava-env-{lava_env.env_key()}"
    monkeypatch.setenv("SPIKEPORT_CACHE", "")  # empty means unset, as in ${VAR:-default}
    assert lava_env.env_path().parent == tmp_path / "spikeport"
    req = (EXPORTERS / "requirements-lava.txt").read_bytes()
    assert lava_env.env_key() == hashlib.sha256(req).hexdigest()[:12]


@pytest.mark.lava
def test_check_reports_versions_of_the_real_env(lava_python):
    status = lava_env.check()
    assert status["ok"], status
    assert status["ready"] and status["import_ok"]
    assert status["lava-nc"] == "0.10.0" and status["lava-dl"] == "0.6.0"
    assert status["python"].startswith("3.10.")
    assert lava_env.find_python310().exists()


def test_runner_imports_nothing_from_spikeport_and_nobody_sets_a_start_method():
    tree = ast.parse((EXPORTERS / "runner.py").read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules <= {"__future__", "json", "sys", "time", "traceback", "pathlib", "numpy",
                       "h5py", "lava"}, modules
    for name in ("env.py", "bridge.py", "runner.py"):  # SEMANTICS 9
        assert "set_start_method(" not in (EXPORTERS / name).read_text(), name
