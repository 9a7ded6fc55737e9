"""The ``lava`` target: the netx file run in Lava's CPU simulator (``Loihi2SimCfg``, fixed
point) in the separate Lava environment, all samples in one run
(:mod:`spikeport.exporters.lava.bridge`). The recording is cut back into samples on the
model's time axis: layer i's model step t is at step latency_i + t of its sample's window,
latency_i = i + 1 for a dense stack (one step per Dense, SEMANTICS.md 8);
``Recording.pipeline_latency`` keeps that number.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np

from spikeport.core.recording import Recording
from spikeport.exporters.loihi import netx
from spikeport.exporters.loihi.emulator import check_spikes
from spikeport.exporters.loihi.mapping import map_network
from spikeport.exporters.loihi.quantize import LoihiNetwork
from spikeport.exporters.loihi.target import SUPPORTED, compile_network
from spikeport.exporters.targets import Counting, Target, register


@dataclass
class LavaArtifact:
    net: LoihiNetwork
    path: Path
    timeout: float = 1800.0
    _tmp: object = None  # keeps a temporary directory alive as long as the artifact


def _compile_lava(graph: nir.NIRGraph, options: dict | None = None) -> LavaArtifact:
    options = options or {}
    net = compile_network(graph, options)
    if options.get("netx_path"):
        path = Path(options["netx_path"])
        netx.write(net, path)
        return LavaArtifact(net, path, float(options.get("timeout", 1800)))
    tmp = tempfile.TemporaryDirectory(prefix="spikeport-netx-")
    path = Path(tmp.name) / "model.net"
    netx.write(net, path)
    return LavaArtifact(net, path, float(options.get("timeout", 1800)), tmp)


def run_lava(artifact: LavaArtifact, x: np.ndarray) -> Recording:
    from spikeport.exporters.lava.bridge import run_netx

    # the recording comes back as float64 copies of every population's spikes per step
    sizes = sum(layer.size for layer in artifact.net.layers)
    x = check_spikes(artifact.net, x, 2 * 8 * sizes)
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
    return Recording(values, artifact.net.output, [l.name for l in artifact.net.layers],
                     artifact.net.dt, pipeline_latency=latencies[-1] if latencies else 0,
                     lava_status=rec.status)


register(Target(
    name="lava", compile=_compile_lava, run=run_lava, supported=lambda: list(SUPPORTED),
    profiles=("loihi", "loihi2"), exactness="ground truth for Loihi (bit-accurate simulation)",
    summary="netx file in Lava's CPU simulator (Loihi2SimCfg, fixed point), Python 3.10 env",
    batch_size=None,
    counting=Counting(binary_spikes=True, graph=lambda art: art.net.as_graph(),
                      mapping=lambda art, chip: map_network(art.net, chip).as_dict())))
