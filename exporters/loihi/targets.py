"""Registration of the two Loihi targets.

- ``loihi-emu``: :mod:`exporters.loihi.emulator` on the quantised network, in this process.
- ``lava``: the netx file run in Lava's CPU simulator (``Loihi2SimCfg``, fixed point) in the
  separate Lava environment, all samples in one run (:mod:`exporters.lava.bridge`). The
  recording is cut back into samples on the model's time axis: layer i's model step t is
  at step latency_i + t of its sample's window, latency_i = i + 1 for a dense stack
  (one step per Dense, SEMANTICS.md 8); ``pipeline_latency`` keeps that number.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np

from exporters.loihi import emulator, netx
from exporters.loihi.quantize import LoihiNetwork, quantize
from exporters.targets import Target, register
from toolchain.record import Recording

SUPPORTED = ["Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
             "LIF", "CubaLIF", "IF"]


def _compile_emu(graph: nir.NIRGraph, options: dict | None = None) -> LoihiNetwork:
    options = options or {}
    return quantize(graph, dt=options.get("dt"),
                    allow_approximation=bool(options.get("allow_approximation", False)))


@dataclass
class LavaArtifact:
    net: LoihiNetwork
    path: Path
    timeout: float = 1800.0
    _tmp: object = None  # keeps a temporary directory alive as long as the artifact


def _compile_lava(graph: nir.NIRGraph, options: dict | None = None) -> LavaArtifact:
    options = options or {}
    net = _compile_emu(graph, options)
    if options.get("netx_path"):
        path = Path(options["netx_path"])
        netx.write(net, path)
        return LavaArtifact(net, path, float(options.get("timeout", 1800)))
    tmp = tempfile.TemporaryDirectory(prefix="spikeport-netx-")
    path = Path(tmp.name) / "model.net"
    netx.write(net, path)
    return LavaArtifact(net, path, float(options.get("timeout", 1800)), tmp)


def run_lava(artifact: LavaArtifact, x: np.ndarray) -> Recording:
    from exporters.lava.bridge import run_netx

    x = np.asarray(x)
    T, B = x.shape[:2]
    conv_first = artifact.net.layers[0].conv is not None
    flat = x.reshape(T, B, *(x.shape[2:] if conv_first else (-1,)))
    spikes = np.ascontiguousarray(np.moveaxis(flat, 0, 1))  # (B, T, *input)
    rec = run_netx(artifact.path, spikes, timeout=artifact.timeout)
    latencies = rec.latencies
    values = {}
    for i, layer in enumerate(artifact.net.layers):
        arr = rec[f"layer_{i}"]  # (B, W, N)
        c = latencies[i]
        values[layer.name] = np.ascontiguousarray(
            np.moveaxis(arr[:, c:c + T].reshape(B, T, *layer.shape), 1, 0)).astype(np.float64)
    out = Recording(values, artifact.net.output, [l.name for l in artifact.net.layers],
                    artifact.net.dt)
    out.pipeline_latency = latencies[-1] if latencies else 0
    out.lava_status = rec.status
    return out


register(Target(
    name="loihi-emu", compile=_compile_emu, run=lambda net, x: emulator.run(net, x),
    supported=lambda: list(SUPPORTED), profiles=("loihi", "loihi2"),
    exactness="bit-identical to lava (fixed point)",
    summary="batched numpy emulator of Loihi CUBA fixed-point arithmetic",
    counting_graph=lambda net: net.as_graph(), binary_spikes=True,
    run_counting=lambda net, x: emulator.run(net, x, activity=True)))

register(Target(
    name="lava", compile=_compile_lava, run=run_lava, supported=lambda: list(SUPPORTED),
    profiles=("loihi", "loihi2"), exactness="ground truth for Loihi (bit-accurate simulation)",
    summary="netx file in Lava's CPU simulator (Loihi2SimCfg, fixed point), Python 3.10 env",
    batch_size=None, counting_graph=lambda art: art.net.as_graph(), binary_spikes=True))
