"""NIR -> Loihi CUBA fixed point: the layers a netx file and the emulator are built from.

Supported graphs are chains ``Input [-> Flatten] -> (Affine | Linear) -> (LIF | CubaLIF | IF)
-> ... -> Output``, where a population may also have a recurrent weight (an Affine without
bias or a Linear from the population back into itself: netx ``dense_rec``). Each NIR
population becomes one Lava CUBA population (SEMANTICS.md 7):

- CubaLIF: iDecay = round(4096 dt/tau_syn), vDecay = round(4096 dt/tau_mem); the gains
  g_i = w_in dt/tau_syn and g_v = r dt/tau_mem are folded into the rows of the weights.
- LIF: iDecay = 4096 (the current is the input of this step only), vDecay as above, gain
  r dt/tau folded into the weights.
- IF: iDecay = 4096, vDecay = 0, gain dt r folded.
- v_leak and an Affine bias into a LIF or IF population become the neuron bias (exact);
  an Affine bias into a CubaLIF is a constant *current*, which Loihi cannot inject: refused,
  or with ``allow_approximation`` mapped to its steady-state voltage bias and recorded.

Each layer has its own scale s (integers = s x floats), the largest that keeps every weight
in [-256, 254], the threshold in u17 and the bias in s13. Weights are written as even
integers, which netx's bit packing keeps exactly. Refused with a clear error: non-zero
v_reset, heterogeneous time constants or thresholds within a population (Lava's LIF has one
du, dv, vth per population), tau_mem = dt (vDecay 4096 does not fit u12), convolution and
pooling (not implemented yet), any other node.

:func:`quantize` returns a :class:`LoihiNetwork` with a per-layer :class:`LayerReport` of
what was lost.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import nir
import numpy as np

from exporters.graph import Program, build_program
from toolchain import units
from toolchain.errors import ExportError

SYNAPSES = (nir.Affine, nir.Linear)
NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)


@dataclass
class LayerReport:
    synapse: str
    neuron: str
    neuron_type: str
    scale: float
    weights_clipped_fraction: float
    weight_rms_error: float          # rms(w_int / s - w_eff) / rms(w_eff)
    current_decay: dict              # requested / realised fraction decaying per step
    voltage_decay: dict
    threshold: dict                  # requested / realised
    bias: str
    notes: list[str] = field(default_factory=list)


@dataclass
class LoihiLayer:
    name: str                 # the NIR neuron node this layer realises
    synapse: str              # the NIR synapse node
    shape: tuple[int, ...]
    weight: np.ndarray        # (out, in) int64, even, in [-256, 254]
    i_decay: int
    v_decay: int
    v_th_mant: int
    bias_mant: np.ndarray     # (out,) int64
    flatten_before: bool = False
    weight_rec: np.ndarray | None = None   # (out, out) int64
    rec_synapse: str | None = None


@dataclass
class LoihiNetwork:
    input_shape: tuple[int, ...]
    layers: list[LoihiLayer]
    reports: list[LayerReport]
    dt: float
    approximations: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.layers[-1].name

    def report(self) -> list[dict]:
        return [asdict(r) for r in self.reports]


def _uniform(name: str, what: str, values) -> float:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(a == a[0]):
        raise ExportError(f"population {name!r} has different {what} per neuron "
                          f"(range {a.min():.6g} .. {a.max():.6g}); Lava's LIF has one value per population",
                          f"train with one {what} per layer, or split the population")
    return float(a[0])


def _refuse(node_name, node, why, fix):
    raise ExportError(f"node {node_name!r} ({type(node).__name__}) {why} for the Loihi target", fix)


def _through_identities(program: Program, name: str) -> str:
    """The first node upstream of ``name`` that is not a subgraph's Input/Output pass-through."""
    while isinstance(program.nodes[name], (nir.Input, nir.Output)) and name not in program.graph_inputs:
        srcs = [s for s, rec in program.inputs[name] if not rec]
        if len(srcs) != 1:
            break
        name = srcs[0]
    return name


def _chain(program: Program) -> tuple[list[tuple[str, str, str | None]], set[str]]:
    """[(synapse, neuron, recurrent synapse or None)] in order, and the Flatten nodes."""
    nodes = program.nodes
    flattens = set()
    layers = []
    consumed = set()
    for name in program.order:
        node = nodes[name]
        if name in consumed or isinstance(node, (nir.Input, nir.Output)):
            continue
        if isinstance(node, nir.Flatten):
            flattens.add(name)
            continue
        if isinstance(node, SYNAPSES):
            continue  # taken with the population it feeds
        if isinstance(node, NEURONS):
            ff = [_through_identities(program, s) for s, rec in program.inputs[name] if not rec]
            rec = [s for s, r in program.inputs[name] if r]
            if len(ff) != 1 or not isinstance(nodes[ff[0]], SYNAPSES):
                _refuse(name, node, "is not fed by exactly one Affine/Linear",
                        "use a chain of synapse -> population layers")
            rec_syn = None
            if rec:
                if len(rec) != 1 or not isinstance(nodes[rec[0]], SYNAPSES) or \
                        [s for s, _ in program.inputs[rec[0]]] != [name]:
                    _refuse(name, node, "has a recurrence that is not one weight from the "
                            "population to itself", "use a single recurrent Affine/Linear")
                rec_syn = rec[0]
                consumed.add(rec_syn)
            layers.append((ff[0], name, rec_syn))
            continue
        if isinstance(node, (nir.Conv2d, nir.Conv1d, nir.SumPool2d, nir.AvgPool2d)):
            _refuse(name, node, "is not supported yet",
                    "use a fully connected model (conv/pool to netx is planned: issue 4)")
        _refuse(name, node, "has no Loihi equivalent",
                "use Affine/Linear synapses and LIF, CubaLIF or IF populations")
    if not layers:
        raise ExportError("the graph has no spiking population", "export a spiking network")
    return layers, flattens


def quantize(graph: nir.NIRGraph, *, dt: float | None = None,
             allow_approximation: bool = False) -> LoihiNetwork:
    program = build_program(graph, dt)
    layers, flattens = _chain(program)
    nodes = program.nodes
    inp = nodes[program.graph_inputs[0]]
    input_shape = tuple(int(v) for v in np.atleast_1d(inp.input_type["input"]))
    approximations: list[str] = []
    out_layers, reports = [], []
    prev_out = int(np.prod(input_shape))
    for idx, (syn_name, neu_name, rec_name) in enumerate(layers):
        syn, neu = nodes[syn_name], nodes[neu_name]
        if np.any(np.asarray(getattr(neu, "v_reset", 0.0) if neu.v_reset is not None else 0.0) != 0):
            _refuse(neu_name, neu, "resets to a non-zero value", "reset to zero (v_reset = 0)")
        w = np.asarray(syn.weight, dtype=np.float64)
        b = np.asarray(getattr(syn, "bias", np.zeros(w.shape[0])), dtype=np.float64)
        if w.shape[1] != prev_out:
            raise ExportError(f"layer {syn_name!r} takes {w.shape[1]} inputs but receives {prev_out}",
                              "check the graph's shapes (nir.NIRGraph.infer_types)")
        n = w.shape[0]
        theta = _uniform(neu_name, "threshold", neu.v_threshold)
        notes = []
        if isinstance(neu, nir.CubaLIF):
            d_i, g_i, d_v, g_v, l = units.cuba_coefficients(neu.tau_syn, neu.tau_mem, neu.r,
                                                            neu.v_leak, neu.w_in, program.dt)
            frac_i = 1.0 - _uniform(neu_name, "tau_syn", d_i)
            frac_v = 1.0 - _uniform(neu_name, "tau_mem", d_v)
            gain = np.broadcast_to(g_v * g_i, (n,))
            v_bias = np.broadcast_to(l, (n,)).astype(np.float64)
            if np.any(b != 0):
                msg = (f"{syn_name}: Affine bias into CubaLIF {neu_name!r} mapped to its steady-state "
                       "voltage bias g_v*g_i*b/(dt/tau_syn); the onset differs from the float model")
                if not allow_approximation:
                    raise ExportError(f"node {syn_name!r} (Affine) adds a bias current to CubaLIF "
                                      f"{neu_name!r}, which Loihi cannot inject",
                                      "train without bias (bias=False), or allow the approximation "
                                      "(--allow-approximation) to use the steady-state voltage bias")
                approximations.append(msg)
                notes.append(msg)
                v_bias = v_bias + gain * b / frac_i
            bias_desc = "v_leak as neuron bias" + ("; Affine bias approximated" if np.any(b != 0) else "")
        else:
            if isinstance(neu, nir.LIF):
                d, g, l = units.lif_coefficients(neu.tau, neu.r, neu.v_leak, program.dt)
                frac_v = 1.0 - _uniform(neu_name, "tau", d)
            else:
                g = units.if_gain(neu.r, program.dt)
                l = np.zeros(n)
                frac_v = 0.0
            frac_i = 1.0
            gain = np.broadcast_to(g, (n,)).astype(np.float64)
            v_bias = np.broadcast_to(l, (n,)) + gain * b  # exact: u carries only this step's input
            bias_desc = "Affine bias and v_leak as neuron bias (exact)" if np.any(v_bias) else "none"
        i_decay = int(units.loihi_decay(frac_i))
        v_decay = int(units.loihi_decay(frac_v))
        if v_decay >= units.DECAY_UNITY:
            _refuse(neu_name, neu, "has tau_mem <= dt (vDecay 4096 does not fit 12 bits)",
                    "use a membrane time constant longer than dt")
        w_eff = gain[:, None] * w
        w_rec_eff = None
        if rec_name is not None:
            rec = nodes[rec_name]
            rb = np.asarray(getattr(rec, "bias", np.zeros(n)), dtype=np.float64)
            if np.any(rb != 0):
                _refuse(rec_name, rec, "has a bias on a recurrent weight",
                        "fold the recurrent bias into the feed-forward Affine bias")
            w_rec_eff = gain[:, None] * np.asarray(rec.weight, dtype=np.float64)
        wmax = max(np.abs(w_eff).max(initial=0.0),
                   np.abs(w_rec_eff).max(initial=0.0) if w_rec_eff is not None else 0.0)
        limits = [units.LOIHI_WEIGHT_MAX / wmax if wmax > 0 else np.inf,
                  units.LOIHI_VTH_MAX / theta if theta > 0 else np.inf,
                  units.LOIHI_BIAS_MAX / np.abs(v_bias).max() if np.any(v_bias) else np.inf]
        if theta <= 0:
            _refuse(neu_name, neu, "has a threshold <= 0", "use a positive threshold")
        scale = units.loihi_layer_scale(limits, theta)
        w_int, clipped = units.loihi_weights(w_eff, scale)
        w_rec_int = None
        if w_rec_eff is not None:
            w_rec_int, clipped_rec = units.loihi_weights(w_rec_eff, scale)
            clipped = max(clipped, clipped_rec)
        vth = units.loihi_threshold(theta, scale)
        bias_mant = np.rint(v_bias * scale).astype(np.int64)
        rms = float(np.sqrt(np.mean(w_eff ** 2))) or 1.0
        report = LayerReport(
            synapse=syn_name, neuron=neu_name, neuron_type=type(neu).__name__, scale=scale,
            weights_clipped_fraction=clipped,
            weight_rms_error=float(np.sqrt(np.mean((w_int / scale - w_eff) ** 2)) / rms),
            current_decay={"requested": frac_i, "realised": float(units.loihi_decay_fraction(i_decay)),
                           "iDecay": i_decay},
            voltage_decay={"requested": frac_v, "realised": float(units.loihi_decay_fraction(v_decay)),
                           "vDecay": v_decay},
            threshold={"requested": theta, "realised": vth / scale, "vThMant": vth},
            bias=bias_desc, notes=notes)
        flatten_before = any(s in flattens for s, _ in program.inputs[syn_name])
        out_layers.append(LoihiLayer(neu_name, syn_name, (n,), w_int, i_decay, v_decay, vth,
                                     bias_mant, flatten_before, w_rec_int, rec_name))
        reports.append(report)
        prev_out = n
    return LoihiNetwork(input_shape, out_layers, reports, program.dt, approximations)
