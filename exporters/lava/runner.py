"""Run a lava-dl netx network in Lava's CPU simulator (fixed point) -- the Lava-side half
of the runtime boundary (docs/architecture.md, "The Lava runtime boundary").

This file is a standalone script executed by the Python 3.10 Lava environment::

    <lava-env>/bin/python runner.py REQUEST.json

It imports only numpy, h5py, json, sys, pathlib, time, traceback and lava -- never
spikeport, which does not import on that interpreter. ``exporters/lava/bridge.py`` writes
the request and reads the results.

Request (JSON object)
---------------------
``net``         path of the netx HDF5 file (.net)
``input``       path of an .npz holding ``spikes``: shape (B, T, *input_shape), values 0/1,
                in spikeport's layout (samples, time, neurons in torch order, e.g. (N,) or
                (C, H, W)). A dense first layer also accepts any input_shape with the right
                number of neurons (it is flattened).
``output``      path of the .npz to write
``status``      path of the status JSON to write
``num_layers``  optional, passed to ``netx.hdf5.Network`` (stop before unsupported
                trailing layers, e.g. ``average``)
``progress``    optional, path of a JSON file rewritten at each phase change:
                ``{"phase": "import" | "build" | "run" | "stop" | "write"}``; the bridge's
                watchdog (``watchdog.py``) reads it to tell a worker that died during the
                simulation from workers that end with it

Results
-------
The output .npz holds one array per netx block, ``layer_0`` ... ``layer_{L-1}`` (the last
is the network output), each of shape (B, W, *layer_shape) in spikeport's layout (Lava's
(x, y, z) = WHC order reversed back to torch's CHW), dtype uint8 for binary spikes (int32 for
graded ones). The status JSON is ``{"ok": true, "steps": ..., "seconds": ..., ...}`` (plus
the window, reset interval, per-layer latencies and shapes, spike counts) or
``{"ok": false, "error": "<type>: <message>", "traceback": "..."}`` with exit code 1.

Time axis and batching (SEMANTICS.md 8, 9)
------------------------------------------
All B samples go through ONE Lava run: the samples are concatenated in time, one window of
R steps per sample, and every block's neurons reset once per window (``LIFReset``, set up by
netx's ``reset_interval``).

Each block adds a pipeline latency: ``delta_i = 1`` for a synapse block (``Dense``, ``Conv``,
``RecurrentDense``: Lava's ``Dense`` sends at step t what it accumulated at step t-1), 0 for
a netx ``Input`` block (its neuron is driven directly). The latency of block i is
``c_i = delta_0 + ... + delta_i``: the model's (snntorch / slayer with delay_shift=False)
step t of layer i is Lava step ``c_i + t`` of that sample. For a plain stack of L dense
layers ``c_i = i + 1``.

Within the window of sample m (local step k = global step - m*R):

* the input occupies k = 0 .. T-1; the rest of the window is zero padding;
* block i resets its neuron state (u, v) at the start of local step ``c_i`` -- exactly when
  the model's step 0 of that layer arrives (its input at that step is the first post-reset
  output of block i-1, or x[0] for block 0). This is netx's own staggered schedule
  ("each later layer one step later"), anchored so that the reset coincides with model step
  0; the offsets are written into each block's ``LIFReset`` parameters;
* synapses that hold more than one step of history -- axonal-delay lines (``DelayDense``)
  and recurrent synapses -- are cleared by a ``lava.proc.io.reset.Reset`` process at the end
  of local step ``c_{i-1} - 1`` (resp. ``c_i - 1``), so no spike emitted before the
  upstream reset is delivered after it (Lava's LIF reset does not touch synapse buffers);
* the recorded window is ``W = T + c_{L-1}`` steps (k = 0 .. W-1): the last layer's model
  steps 0 .. T-1 fall at k = c_{L-1} .. W-1, so the full response to every input step,
  including the pipeline delay of every layer, is captured; earlier layers get
  ``c_{L-1} - c_i`` extra (zero-input) model steps. To observe longer tails (decays, axonal
  delays), pad the input with zeros;
* steps k < c_i of layer i precede that layer's reset (pipeline fill: they carry the
  previous sample's tail, or bias-only activity) and are written as 0.

Block i's state at local step k >= c_i depends only on the inputs of its own sample, and the
recorded window of sample m ends at global step m*R + W - 1, so windows need
``R = T + c_{L-1} - c_0`` steps (``T + L - 1`` for L dense layers; consecutive recorded
windows overlap by c_0 steps, which belong to different layers' segments). The run has
``(B-1)*R + W`` steps. Hence every sample's result is bit-identical to running that sample
alone, and identical to a fresh-state model of T steps shifted by c_i per layer.

Blocks whose neurons cannot be reset (Sigma-Delta, resonate-and-fire) are accepted for
B = 1 only.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import h5py
import numpy as np


def _phase(req: dict, name: str) -> None:
    """Record the phase for the bridge's watchdog (atomically: write, then rename)."""
    if not req.get("progress"):
        return
    path = Path(req["progress"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"phase": name, "time": time.time()}))
    tmp.replace(path)


def _fail(status_path: Path | None, exc: BaseException) -> int:
    status = {
        "ok": False,
        "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
        "traceback": traceback.format_exc(),
    }
    if status_path is not None:
        status_path.write_text(json.dumps(status, indent=1))
    else:  # no place to write: the bridge reads stderr
        print(json.dumps(status), file=sys.stderr)
    return 1


def _to_lava(x: np.ndarray) -> np.ndarray:
    """(T, d1..dk) in torch order -> (dk..d1, T) in Lava's order."""
    k = x.ndim - 1
    return np.transpose(x, tuple(range(k, 0, -1)) + (0,))


def _from_lava(x: np.ndarray) -> np.ndarray:
    """(dk..d1, T) in Lava's order -> (T, d1..dk) in torch order."""
    k = x.ndim - 1
    return np.transpose(x, (k,) + tuple(range(k - 1, -1, -1)))


def _load_request(path: Path) -> dict:
    req = json.loads(path.read_text())
    for key in ("net", "input", "output", "status"):
        if key not in req:
            raise KeyError(f"request {path} lacks {key!r}")
    return req


def _load_spikes(path: Path) -> np.ndarray:
    with np.load(path) as data:
        if "spikes" not in data.files:
            raise KeyError(f"input {path} has no array 'spikes' (found {data.files})")
        spikes = np.asarray(data["spikes"])
    if spikes.ndim < 3:
        raise ValueError(
            f"input spikes must have shape (B, T, *input_shape), got {spikes.shape}")
    if spikes.shape[0] < 1 or spikes.shape[1] < 1:
        raise ValueError(f"input spikes are empty: shape {spikes.shape}")
    if not np.isin(spikes, (0, 1)).all():
        raise ValueError("input spikes must be 0/1 (binary); found other values")
    return spikes.astype(np.int32)


def _import_lava():
    """Lava's modules this runner uses (imported late: the import alone takes seconds)."""
    from lava.lib.dl import netx
    from lava.lib.dl.netx.blocks.process import Input as InputBlock
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.reset import Reset
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    class Lava:  # a namespace (this script keeps to the modules its docstring names)
        pass

    for name, value in dict(netx=netx, InputBlock=InputBlock, RunSteps=RunSteps,
                            Loihi2SimCfg=Loihi2SimCfg, Reset=Reset, Sink=Sink,
                            Source=Source).items():
        setattr(Lava, name, value)
    return Lava


def _latencies(blocks, lava) -> list[int]:
    """c_i of every block (module docstring): +1 per synapse block, 0 for an Input block."""
    latency, c = [], 0
    for blk in blocks:
        c += 0 if isinstance(blk, lava.InputBlock) else 1
        latency.append(c)
    return latency


def _schedule_resets(blocks, latency: list[int], interval: int, n_samples: int, lava) -> list:
    """Per-window neuron resets (LIFReset: when time_step % R == offset % R, time_step =
    step + 1) and Reset processes that clear multi-step synapse buffers (axonal delays,
    recurrent loops) before the neuron reset; returns the Reset processes."""
    for i, blk in enumerate(blocks):
        params = blk.neuron.proc_params
        if params.get("reset_interval") is None:
            if n_samples > 1:
                raise ValueError(
                    f"block {i} ({type(blk.neuron).__name__} neurons) cannot be reset "
                    f"between samples; run one sample per call")
            continue
        params.overwrite("reset_interval", interval)
        params.overwrite("reset_offset", latency[i] + 1)
    clears = []
    for i, blk in enumerate(blocks):
        syn = getattr(blk, "synapse", None)
        if syn is not None and hasattr(syn, "delays") and hasattr(syn, "a_buff"):
            upstream = latency[i - 1] if i > 0 else 0
            clears.append((syn.a_buff, upstream - 1))
        syn_rec = getattr(blk, "synapse_rec", None)
        if syn_rec is not None and hasattr(syn_rec, "a_buff"):
            clears.append((syn_rec.a_buff, latency[i] - 1))
    resetters = []
    for var, step in clears:
        r = lava.Reset(reset_value=0, interval=interval, offset=step % interval)
        r.connect_var(var)
        resetters.append(r)
    return resetters


def _input_source(net, spikes: np.ndarray, interval: int, total: int, lava):
    """A RingBuffer source holding every sample's spikes in Lava's layout, one window each."""
    n_samples, n_steps = spikes.shape[:2]
    inp_shape = tuple(int(s) for s in net.inp.shape)
    sample_shape = spikes.shape[2:]
    if sample_shape != inp_shape[::-1]:
        if len(inp_shape) == 1 and int(np.prod(sample_shape)) == inp_shape[0]:
            spikes = spikes.reshape(n_samples, n_steps, inp_shape[0])
        else:
            raise ValueError(
                f"input spikes have per-step shape {sample_shape}; the network expects "
                f"{inp_shape[::-1]} (torch order)")
    data = np.zeros(inp_shape + (total,), dtype=np.int32)
    for m in range(n_samples):
        data[..., m * interval:m * interval + n_steps] = _to_lava(spikes[m])
    return lava.Source(data=data)


def _simulate(net, sinks, total: int, lava, req: dict) -> list[np.ndarray]:
    """Run ``total`` steps in the fixed-point CPU simulator; what each sink recorded."""
    finished = False
    try:
        _phase(req, "run")
        net.run(condition=lava.RunSteps(num_steps=total),
                run_cfg=lava.Loihi2SimCfg(select_tag="fixed_pt"))
        recorded = [np.asarray(sink.data.get()) for sink in sinks]  # read before stop()
        finished = True
    finally:
        _phase(req, "stop")
        try:
            net.stop()
        except Exception:
            if finished:  # otherwise the run's own error is the one to report
                raise
    return recorded


def _per_sample(blocks, recorded, latency, interval: int, window: int, n_samples: int):
    """Cut each block's recording into sample windows: (arrays by key, per-layer status)."""
    out, layers = {}, []
    for i, (blk, rec) in enumerate(zip(blocks, recorded)):
        ours = _from_lava(rec)  # (total, *layer_shape)
        per_sample = np.stack(
            [ours[m * interval:m * interval + window] for m in range(n_samples)])
        per_sample[:, :latency[i]] = 0  # pipeline fill (before this layer's reset)
        binary = bool(np.isin(per_sample, (0, 1)).all())
        per_sample = per_sample.astype(np.uint8 if binary else np.int32)
        key = f"layer_{i}"
        out[key] = per_sample
        layers.append({"key": key, "block": type(blk).__name__,
                       "shape": list(per_sample.shape[2:]), "latency": latency[i],
                       "spikes": int(per_sample.sum())})
    return out, layers


def run(req: dict) -> dict:
    """Execute one request (module docstring); write the output .npz, return the status."""
    t_start = time.perf_counter()
    net_path = Path(req["net"])
    if not net_path.is_file():
        raise FileNotFoundError(f"netx file not found: {net_path}")
    if not h5py.is_hdf5(str(net_path)):
        raise ValueError(f"{net_path} is not an HDF5 file (expected a lava-dl netx .net)")
    spikes = _load_spikes(Path(req["input"]))
    n_samples, n_steps = spikes.shape[:2]

    t0 = time.perf_counter()
    _phase(req, "import")
    lava = _import_lava()
    import_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    _phase(req, "build")
    num_layers = req.get("num_layers")
    # reset_interval=1 is a placeholder that makes netx build LIFReset neurons; the real
    # interval and per-block offsets are set by _schedule_resets, once latencies are known.
    net = lava.netx.hdf5.Network(net_config=str(net_path),
                                 num_layers=None if num_layers is None else int(num_layers),
                                 reset_interval=1)
    blocks = list(net.layers)
    if not blocks:
        raise ValueError(f"{net_path}: netx built no blocks (num_layers={num_layers})")
    latency = _latencies(blocks, lava)
    window = n_steps + latency[-1]
    interval = n_steps + latency[-1] - latency[0]
    total = (n_samples - 1) * interval + window
    resetters = _schedule_resets(blocks, latency, interval, n_samples, lava)
    source = _input_source(net, spikes, interval, total, lava)
    source.s_out.connect(net.inp)
    sinks = []
    for blk in blocks:
        sink = lava.Sink(shape=tuple(blk.out.shape), buffer=total)
        blk.out.connect(sink.a_in)
        sinks.append(sink)
    build_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    recorded = _simulate(net, sinks, total, lava, req)
    run_seconds = time.perf_counter() - t0
    _phase(req, "write")
    out, layers = _per_sample(blocks, recorded, latency, interval, window, n_samples)
    np.savez(req["output"], **out)
    return {
        "ok": True, "samples": int(n_samples), "input_steps": int(n_steps),
        "window": int(window), "reset_interval": int(interval), "steps": int(total),
        "seconds": round(run_seconds, 3), "import_seconds": round(import_seconds, 3),
        "build_seconds": round(build_seconds, 3),
        "total_seconds": round(time.perf_counter() - t_start, 3),
        "synapse_clears": len(resetters), "layers": layers,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: runner.py REQUEST.json", file=sys.stderr)
        return 2
    status_path = None
    try:
        req = _load_request(Path(argv[1]))
        status_path = Path(req["status"])
        status = run(req)
    except (Exception, KeyboardInterrupt) as exc:  # reported to the bridge, which raises
        return _fail(status_path, exc)               # a typed error (SIGINT on timeout)
    status_path.write_text(json.dumps(status, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
