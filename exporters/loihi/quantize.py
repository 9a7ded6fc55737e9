"""NIR -> Loihi CUBA fixed point: the layers a netx file and the emulator are built from.

Supported graphs are chains of synapse -> population layers (:mod:`spikeport.exporters.loihi.chain`):
``(Affine | Linear | Conv2d) -> (LIF | CubaLIF | IF)``, a population optionally with a recurrent
Affine/Linear into itself (netx ``dense_rec``), pools and a Flatten between populations and
convolutions folded into the synapse's weights (:mod:`spikeport.exporters.loihi.fold`). Each
NIR population becomes one Lava CUBA population (SEMANTICS.md 7):

- CubaLIF: iDecay = round(4096 dt/tau_syn), vDecay = round(4096 dt/tau_mem); the gains
  g_i = w_in dt/tau_syn and g_v = r dt/tau_mem are folded into the rows of the weights.
- LIF: iDecay = 4096 (the current is the input of this step only), vDecay as above, gain
  r dt/tau folded into the weights.
- IF: iDecay = 4096, vDecay = 0, gain dt r folded.
- v_leak and an Affine bias into a LIF or IF population become the neuron bias (exact);
  an Affine bias into a CubaLIF is a constant *current*, which Loihi cannot inject: refused,
  or with ``allow_approximation`` mapped to its steady-state voltage bias and recorded
  (exact when tau_syn = dt). A recurrent Affine's bias is summed into the same neuron bias
  under ``allow_approximation`` (the float model receives it from step 2 on).
- Thresholds that differ between neurons (or channels) become one by scaling each neuron's
  weights and bias by theta_max / theta_j (exact in float).

Each layer has its own scale s (integers = s x floats), the largest that keeps every weight
in [-256, 254], the threshold in u17 and the bias in s13. Weights are written as even
integers, which netx's bit packing keeps exactly. Refused with a clear error: non-zero
v_reset, heterogeneous time constants within a population (Lava's LIF has one du, dv per
process and netx layers are sequential), tau_mem = dt (vDecay 4096 does not fit u12),
Conv1d, any other node.

:func:`quantize` returns a :class:`LoihiNetwork` with a per-layer :class:`LayerReport` of
what was lost.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import nir
import numpy as np

from spikeport.exporters.loihi import fold
from spikeport.exporters.loihi.chain import LayerSpec, chain
from spikeport.exporters.loihi.chain import refuse as _refuse
from spikeport.ir import neurons
from spikeport.ir.program import Program, build_program
from spikeport.core import units
from spikeport.core.errors import ExportError



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
    conv: dict | None = None  # stride, padding, dilation (pairs), groups; weight (O, I, kh, kw)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


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

    def as_graph(self) -> nir.NIRGraph:
        """The network as Loihi runs it, as a NIR graph for counting (spikeport estimate):
        the integer weights (so a weight quantised to 0 is no synapse), pools folded into
        their convolutions, a CUBA neuron (current and voltage) per layer. Neuron parameters
        are placeholders: only the node types, shapes and weights are meaningful."""
        nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(self.input_shape))}
        edges: list[tuple[str, str]] = []
        prev, shape = "input", tuple(self.input_shape)
        for layer in self.layers:
            w = np.asarray(layer.weight, dtype=np.float64)
            if layer.conv is not None:
                c = layer.conv
                syn = nir.Conv2d(input_shape=shape[1:], weight=w, stride=c["stride"],
                                 padding=c["padding"], dilation=c["dilation"],
                                 groups=c["groups"], bias=np.zeros(w.shape[0]))
            else:
                if len(shape) > 1:  # the dense layer reads the flattened spikes
                    flat = f"{layer.synapse}:flatten"
                    nodes[flat] = nir.Flatten(input_type={"input": np.array(shape)},
                                              start_dim=0, end_dim=-1)
                    edges.append((prev, flat))
                    prev = flat
                syn = nir.Linear(weight=w)
            nodes[layer.synapse] = syn
            edges.append((prev, layer.synapse))
            n = tuple(int(v) for v in layer.shape)
            one = np.ones(n)
            nodes[layer.name] = nir.CubaLIF(tau_syn=one, tau_mem=one, r=one, v_leak=0 * one,
                                            v_threshold=one)
            edges.append((layer.synapse, layer.name))
            if layer.weight_rec is not None:
                rec = layer.rec_synapse or f"{layer.name}:recurrent"
                nodes[rec] = nir.Linear(weight=np.asarray(layer.weight_rec, dtype=np.float64))
                edges += [(layer.name, rec), (rec, layer.name)]
            prev, shape = layer.name, n
        nodes["output"] = nir.Output(output_type=np.array(shape))
        edges.append((prev, "output"))
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": self.dt}, type_check=False)


def _uniform(name: str, what: str, values) -> float:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(a == a[0]):
        raise ExportError(f"population {name!r} has different {what} per neuron "
                          f"(range {a.min():.6g} .. {a.max():.6g}); Lava's LIF has one value per "
                          "process and netx connects its layers in sequence, so the population "
                          "cannot be split into parallel sub-populations",
                          f"train with one {what} per layer")
    return float(a[0])


def _per_unit(name: str, what: str, values, n: int) -> np.ndarray:
    """Values per output unit (neuron of a dense layer, channel of a convolution: the
    values of a (C, H, W) population must then be constant within each channel)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == n:
        return a.reshape(n).copy()
    if a.size > n and a.size % n == 0:
        rows = a.reshape(n, -1)
        if np.all(rows == rows[:, :1]):
            return rows[:, 0].copy()
        raise ExportError(f"population {name!r} has different {what} within a channel of its "
                          "convolution; a convolution shares its weights across positions",
                          f"use one {what} per channel")
    return np.full(n, _uniform(name, what, a))


def _fold_thresholds(neu_name: str, neu, drive: _Drive, n: int) -> tuple[float, list[str]]:
    """One threshold for the layer: a neuron's threshold theta_j differs from the layer's
    theta = max theta_j by scaling its input row and bias by theta / theta_j (its voltage
    scales alike, its spikes do not change: exact in float). Returns theta and notes."""
    thetas = _per_unit(neu_name, "threshold", neu.v_threshold, n)
    if not np.all(thetas > 0):
        _refuse(neu_name, neu, "has a threshold <= 0", "use a positive threshold")
    theta = float(thetas.max())
    if np.all(thetas == theta):
        return theta, []
    f = theta / thetas
    drive.gain = drive.gain * f
    drive.v_bias = drive.v_bias * f
    return theta, [f"thresholds {thetas.min():.6g} .. {theta:.6g} made one ({theta:.6g}) by "
                   "scaling each neuron's weights and bias by theta / theta_j (exact in float)"]


def _conv_params(name, conv, pool_name, pool, in_shape):
    """(weight, bias, conv parameters, output shape) of a Conv2d with a following pool of its
    current folded in (:func:`spikeport.exporters.loihi.fold.pool_after_conv`)."""
    c = fold.conv_of(name, conv)
    if pool is not None:
        c = fold.pool_after_conv(c, name, pool, pool_name)
    return c.weight, c.bias, c.params(), c.out_shape(in_shape)


def quantize(graph: nir.NIRGraph, *, dt: float | None = None,
             allow_approximation: bool = False) -> LoihiNetwork:
    program = build_program(graph, dt)
    specs = chain(program)
    input_shape = tuple(program.input_shape)
    approximations: list[str] = []
    out_layers, reports = [], []
    prev_shape = input_shape
    for spec in specs:
        layer, report = _layer(program, spec, prev_shape, allow_approximation)
        layer.flatten_before = any(isinstance(program.nodes[n], nir.Flatten) for n in spec.pre)
        out_layers.append(layer)
        reports.append(report)
        approximations += report.notes
        prev_shape = layer.shape
    return LoihiNetwork(input_shape, out_layers, reports, program.dt, approximations)


@dataclass
class _Drive:
    """A NIR population as a CUBA one, in floats: what decays and what drives v."""
    frac_i: float             # the fraction of the current that decays per step
    frac_v: float             # the same for the voltage
    gain: np.ndarray          # per unit, folded into the weight rows
    v_bias: np.ndarray        # per unit, the neuron bias (voltage per step)
    bias: str                 # how the biases were mapped, for the report
    notes: list[str]          # approximations made


def _drive(neu_name: str, neu, dt: float, n: int) -> _Drive:
    """Decays, gains and leak of a LIF / CubaLIF / IF population, before any Affine bias;
    the coefficients are those every float target uses (:mod:`spikeport.ir.neurons`)."""
    p = neurons.params_of(neu, dt)
    if not isinstance(neu, nir.CubaLIF):
        frac_v = 1.0 - _uniform(neu_name, "tau", p.d) if isinstance(neu, nir.LIF) else 0.0
        l = p.l if isinstance(neu, nir.LIF) else np.zeros(n)
        v_bias = _per_unit(neu_name, "v_leak", l, n)
        desc = "v_leak as neuron bias (exact)" if np.any(v_bias) else "none"
        return _Drive(1.0, frac_v, _per_unit(neu_name, "input gain", p.g, n), v_bias, desc, [])
    frac_i = 1.0 - _uniform(neu_name, "tau_syn", p.d_i)
    frac_v = 1.0 - _uniform(neu_name, "tau_mem", p.d_v)
    gain = _per_unit(neu_name, "input gain", p.g_v * p.g_i, n)
    return _Drive(frac_i, frac_v, gain, _per_unit(neu_name, "v_leak", p.l, n),
                  "v_leak as neuron bias", [])


def _add_biases(drive: _Drive, neu_name: str, neu, syn_name: str, b: np.ndarray,
                rec_name: str | None, b_rec: np.ndarray, allow_approximation: bool) -> None:
    """The Affine biases into the population, added to its neuron bias (the only constant
    input Loihi has), exactly where that is exact:

    - the feed-forward bias b: a current that is this step's input only (LIF, IF, or a
      CubaLIF with tau_syn = dt) enters v as gain * b per step, exactly; into a CubaLIF it is
      a filtered current, mapped to its steady state gain * b / (dt/tau_syn) (approximation);
    - the recurrent bias b_rec adds into the same synaptic input, so it is summed with b,
      but the float model receives it from step 2 on (a recurrent edge delivers nothing at
      step 1) while the neuron bias acts from step 1 (approximation).
    """
    exact_current = drive.frac_i == 1.0
    if np.any(b != 0) and not exact_current and not allow_approximation:
        raise ExportError(f"node {syn_name!r} (Affine) adds a bias current to CubaLIF "
                          f"{neu_name!r}, which Loihi cannot inject",
                          "train without bias (bias=False), or allow the approximation "
                          "(--allow-approximation) to use the steady-state voltage bias")
    if np.any(b_rec != 0) and not allow_approximation:
        raise ExportError(f"node {rec_name!r} (Affine) adds a bias to the recurrent input of "
                          f"{neu_name!r}: the float model receives it from step 2 on (a recurrent "
                          "edge delivers nothing at step 1), Loihi's neuron bias from step 1",
                          "train the recurrent weight without bias, or allow the approximation "
                          "(--allow-approximation) to fold it into the neuron bias (exact from "
                          "step 2 on)")
    total = b + b_rec
    if not np.any(total != 0):
        return
    drive.v_bias = drive.v_bias + drive.gain * total / drive.frac_i
    parts = []
    if np.any(b != 0):
        parts.append("Affine bias as neuron bias (exact)" if exact_current else
                     "Affine bias as steady-state neuron bias (approximated)")
        if not exact_current:
            drive.notes.append(
                f"{syn_name}: Affine bias into CubaLIF {neu_name!r} mapped to its steady-state "
                "voltage bias g_v*g_i*b/(dt/tau_syn); the onset differs from the float model")
    if np.any(b_rec != 0):
        parts.append("recurrent Affine bias summed into the neuron bias (approximated at step 1)")
        drive.notes.append(
            f"{rec_name}: recurrent Affine bias of {neu_name!r} summed with the feed-forward "
            "bias into the neuron bias; it acts from step 1 on Loihi, from step 2 in the float "
            "model (a recurrent edge delivers nothing at step 1)")
    drive.bias = "; ".join(([] if drive.bias == "none" else [drive.bias]) + parts)


def _rms_error(w_q: np.ndarray, w: np.ndarray, wmax: float) -> float:
    """rms(w_q - w) / rms(w) (1 for rms(w) = 0); computed on w / wmax when the squares of
    very large weights would overflow."""
    with np.errstate(over="ignore"):
        rms = float(np.sqrt(np.mean(w ** 2))) or 1.0
        err = float(np.sqrt(np.mean((w_q - w) ** 2))) / rms
    if np.isfinite(err) and np.isfinite(rms):
        return err
    w_q, w = w_q / wmax, w / wmax
    return float(np.sqrt(np.mean((w_q - w) ** 2))) / (float(np.sqrt(np.mean(w ** 2))) or 1.0)


def _decays(neu_name: str, neu, drive) -> tuple[int, int]:
    """The 12-bit current and voltage decays (iDecay, vDecay) of a population's drive."""
    i_decay, v_decay = int(units.loihi_decay(drive.frac_i)), int(units.loihi_decay(drive.frac_v))
    if v_decay >= units.DECAY_UNITY:
        _refuse(neu_name, neu, "has tau_mem <= dt (vDecay 4096 does not fit 12 bits)",
                "use a membrane time constant longer than dt")
    if i_decay > units.DECAY_UNITY:
        _refuse(neu_name, neu, f"has tau_syn < dt (iDecay {i_decay} is more than 4096: more "
                "than the whole current would decay per step)",
                "use a synaptic time constant of at least dt")
    return i_decay, v_decay


def _recurrent(program: Program, rec_name: str | None, n: int) -> tuple[np.ndarray | None, np.ndarray]:
    """The recurrent weight matrix (None without a recurrence) and its bias (zeros if none)."""
    if rec_name is None:
        return None, np.zeros(n)
    rec = program.nodes[rec_name]
    bias = getattr(rec, "bias", None)
    bias = np.zeros(n) if bias is None else np.broadcast_to(
        np.asarray(bias, dtype=np.float64).reshape(-1), (n,)).copy()
    return np.asarray(rec.weight, dtype=np.float64), bias


def _scale(neu_name: str, neu, wmax: float, theta: float, vbias_max: float) -> float:
    """The layer's integer scale (:func:`spikeport.core.units.loihi_scale`), or a refusal."""
    if not (np.isfinite(wmax) and np.isfinite(vbias_max)):
        _refuse(neu_name, neu, "has weights or a bias that overflow float64 once its input "
                "gain is folded in", "scale the weights (or r, w_in) down")
    scale = units.loihi_scale(wmax, theta, vbias_max)
    if not scale > 0:
        _refuse(neu_name, neu, f"cannot share one integer scale between its threshold "
                f"{theta:g} and weights up to {wmax:g} (threshold x scale < 1 mantissa when the "
                f"largest weight is {units.LOIHI_WEIGHT_MAX})",
                "bring the weights and the threshold within a factor of about 250 of each "
                "other (e.g. a larger threshold)")
    return scale


def _layer(program: Program, spec: LayerSpec, prev_shape: tuple, allow_approximation: bool):
    """One synapse -> population layer in fixed point, and its report."""
    syn_name, neu_name, rec_name = spec.synapse, spec.neuron, spec.recurrent
    neu = program.nodes[neu_name]
    if np.any(neurons.params_of(neu, program.dt).v_reset != 0):
        _refuse(neu_name, neu, "resets to a non-zero value", "reset to zero (v_reset = 0)")
    w, b, conv, pop_shape = fold.synapse(program, spec, prev_shape)
    if tuple(pop_shape) != tuple(program.shapes[neu_name]):
        _refuse(neu_name, neu, f"has shape {program.shapes[neu_name]} while its synapse "
                f"{syn_name!r} gives {tuple(pop_shape)} values",
                "give the population's parameters the shape of its synapse's output")
    n = w.shape[0]  # populations: neurons; convolutions: channels
    drive = _drive(neu_name, neu, program.dt, n)
    w_rec, b_rec = _recurrent(program, rec_name, n)
    _add_biases(drive, neu_name, neu, syn_name, b, rec_name, b_rec, allow_approximation)
    theta, theta_notes = _fold_thresholds(neu_name, neu, drive, n)
    i_decay, v_decay = _decays(neu_name, neu, drive)
    w_eff = drive.gain.reshape(-1, *([1] * (w.ndim - 1))) * w
    w_rec_eff = None if w_rec is None else drive.gain[:, None] * w_rec
    wmax = max(np.abs(w_eff).max(initial=0.0),
               np.abs(w_rec_eff).max(initial=0.0) if w_rec_eff is not None else 0.0)
    scale = _scale(neu_name, neu, wmax, theta, np.abs(drive.v_bias).max(initial=0.0))
    w_int, clipped = units.loihi_weights(w_eff, scale)
    w_rec_int = None
    if w_rec_eff is not None:
        w_rec_int, clipped_rec = units.loihi_weights(w_rec_eff, scale)
        clipped = max(clipped, clipped_rec)
    vth = units.loihi_threshold(theta, scale)
    report = LayerReport(
        synapse=syn_name, neuron=neu_name, neuron_type=type(neu).__name__, scale=scale,
        weights_clipped_fraction=clipped,
        weight_rms_error=_rms_error(w_int / scale, w_eff, wmax),
        current_decay={"requested": drive.frac_i,
                       "realised": float(units.loihi_decay_fraction(i_decay)), "iDecay": i_decay},
        voltage_decay={"requested": drive.frac_v,
                       "realised": float(units.loihi_decay_fraction(v_decay)), "vDecay": v_decay},
        threshold={"requested": theta, "realised": vth / scale, "vThMant": vth},
        bias=drive.bias, notes=drive.notes + theta_notes)
    layer = LoihiLayer(neu_name, syn_name, tuple(pop_shape), w_int, i_decay, v_decay, vth,
                       np.rint(drive.v_bias * scale).astype(np.int64), False, w_rec_int,
                       rec_name, conv)
    return layer, report
