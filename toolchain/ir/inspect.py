"""A readable summary of a NIR graph: nodes in execution order, shapes, neuron counts,
parameter ranges, recurrent edges and metadata (``spikeport inspect``)."""
from __future__ import annotations

import nir
import numpy as np

from spikeport.ir.program import build_program

NEURONS = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
PARAMS = ("weight", "bias", "tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
          "v_reset", "w_in", "scale", "threshold", "delay", "kernel_size", "stride", "padding")


def _shape(types: dict) -> list[int] | None:
    for v in (types or {}).values():
        if v is not None:
            return [int(s) for s in np.atleast_1d(v)]
    return None


def summarize(graph: nir.NIRGraph, dt: float | None = None) -> dict:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = build_program(graph, dt)
    nodes = []
    total_neurons = 0
    for name in program.order:
        node = program.nodes[name]
        out_shape = _shape(getattr(node, "output_type", None))
        params = {}
        for p in PARAMS:
            v = getattr(node, p, None)
            if v is None or isinstance(v, str):
                continue
            a = np.asarray(v, dtype=np.float64)
            if a.size == 0:
                continue
            params[p] = ({"shape": list(a.shape), "min": float(a.min()), "max": float(a.max())}
                         if a.size > 1 else float(a.reshape(-1)[0]))
        neurons = 0
        if isinstance(node, NEURONS):
            neurons = int(np.asarray(getattr(node, "v_threshold", getattr(node, "tau", getattr(node, "r", 0)))).size)
            total_neurons += neurons
        nodes.append({"name": name, "type": type(node).__name__, "output_shape": out_shape,
                      "neurons": neurons, "params": params,
                      "inputs": [s + (" (previous step)" if rec else "")
                                 for s, rec in program.inputs[name]]})
    return {
        "nodes": nodes,
        "neurons": total_neurons,
        "recurrent_edges": [list(e) for e in program.recurrent_edges()],
        "dt": program.dt,
        "dt_from_metadata": program.dt_from_metadata,
        "metadata": {k: (v.tolist() if hasattr(v, "tolist") else v)
                     for k, v in program.metadata.items()},
        "warnings": [str(w.message) for w in caught],
    }


def format_summary(s: dict) -> str:
    lines = [f"{'node':<22} {'type':<10} {'output shape':<16} {'neurons':>8}  inputs"]
    for n in s["nodes"]:
        shape = "x".join(map(str, n["output_shape"])) if n["output_shape"] else "?"
        lines.append(f"{n['name']:<22} {n['type']:<10} {shape:<16} {n['neurons'] or '':>8}  "
                     f"{', '.join(n['inputs'])}")
    lines.append("")
    for n in s["nodes"]:
        for p, v in n["params"].items():
            if isinstance(v, dict):
                lines.append(f"  {n['name']}.{p}: shape {v['shape']}, range [{v['min']:.6g}, {v['max']:.6g}]")
            else:
                lines.append(f"  {n['name']}.{p}: {v:.6g}")
    lines.append("")
    lines.append(f"neurons: {s['neurons']}   dt: {s['dt']:g} s"
                 f"{'' if s['dt_from_metadata'] else ' (not in metadata: assumed)'}")
    if s["recurrent_edges"]:
        lines.append("recurrent edges: " + ", ".join(f"{a} -> {b}" for a, b in s["recurrent_edges"]))
    for k, v in s["metadata"].items():
        lines.append(f"metadata {k}: {v}")
    return "\n".join(lines)
