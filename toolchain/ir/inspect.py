"""A readable summary of a NIR graph: nodes in execution order, shapes, neuron counts,
parameter ranges, recurrent edges and metadata (``spikeport inspect``)."""
from __future__ import annotations

import nir
import numpy as np

from spikeport.ir.program import build_program

NEURONS = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)
PARAMS = ("weight", "bias", "tau", "tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
          "v_reset", "w_in", "scale", "threshold", "delay", "kernel_size", "stride", "padding")


def _plain(v):
    """A metadata value as plain JSON: text, finite numbers (others as text), lists, dicts."""
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode(errors="replace")
    if isinstance(v, np.ndarray):
        v = v.tolist()
    elif isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    return str(v)


def summarize(graph: nir.NIRGraph, dt: float | None = None) -> dict:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = build_program(graph, dt)
    nodes = []
    total_neurons = 0
    for name in program.order:
        node = program.nodes[name]
        shape = program.shapes.get(name)
        out_shape = None if shape is None else list(shape)
        params = {}
        for p in PARAMS:
            v = getattr(node, p, None)
            if v is None or isinstance(v, str):
                continue
            try:
                a = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):  # a node type the checks do not know
                continue
            if a.size == 0 or not np.all(np.isfinite(a)):
                continue
            params[p] = ({"shape": list(a.shape), "min": float(a.min()), "max": float(a.max())}
                         if a.size > 1 else float(a.reshape(-1)[0]))
        neurons = 0
        if isinstance(node, NEURONS):
            neurons = int(np.prod(shape)) if shape is not None else int(np.asarray(
                getattr(node, "v_threshold", getattr(node, "tau", getattr(node, "r", 0)))).size)
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
        "metadata": {str(k): _plain(v) for k, v in program.metadata.items()},
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
