"""models -> NIR: our own converter, through a registry of per-module handlers.

:func:`export_model` turns a chain of supported modules into a ``nir.NIRGraph`` with the
discretisation recorded in the graph metadata (SEMANTICS.md 2.1). It accepts spikeport's
:class:`~spikeport.models.network.SpikingSequential`, any ``nn.Sequential``, and a user's own module
whose forward pass calls its layers one after the other (found by tracing one pass with
forward hooks, given a sample input).

snntorch parameters map to NIR as in :mod:`spikeport.core.units` (tau = dt/(1 - beta),
r = 1/b, w_in = 1/a), chosen so that the graph reproduces the model's arithmetic. What NIR
cannot express is refused with the module, the reason and the way out: a subtractive or
delayed reset (use ``reset_mechanism="zero", reset_delay=False``, or pass
``allow_approximation=True`` to export it as a same-step reset to zero, recorded in the
graph metadata under ``approximations``), inhibition, graded spikes, state quantisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from spikeport.models.architectures import SumPool2d
from spikeport.models.loihi_aware import LoihiQuantConv2d, LoihiQuantLinear
from spikeport.core import units
from spikeport.core.errors import ExportError
from spikeport.core.registry import Registry

HANDLERS: Registry = Registry("NIR export handler")


@dataclass
class ExportContext:
    dt: float
    allow_approximation: bool
    approximations: list[str] = field(default_factory=list)


def _np(t) -> np.ndarray:
    return torch.as_tensor(t).detach().cpu().numpy()


def _population(value, shape, dtype=np.float64) -> np.ndarray:
    """A parameter broadcast to the population shape (NIR wants one common shape)."""
    return np.broadcast_to(np.asarray(_np(value), dtype=dtype), shape).copy()


def handler(*types):
    """Register ``fn(module, name, in_shape, ctx) -> (nir_node | None, out_shape)``."""
    return HANDLERS.for_types(*types, wrap=lambda t, fn: (t, fn))


@handler(nn.Linear, LoihiQuantLinear)
def _linear(m: nn.Linear, name, shape, ctx):
    """nn.Linear -> Affine (with bias) or Linear (without); a Loihi-aware Linear exports
    the projected (Loihi-representable) weights it computes with."""
    if shape != (m.in_features,):
        raise ExportError(f"module {name!r} (Linear) receives shape {shape}, expects ({m.in_features},)",
                          "insert an nn.Flatten before the Linear layer")
    w, b = m.quantized() if isinstance(m, LoihiQuantLinear) else (m.weight, m.bias)
    w = _np(w).astype(np.float32)
    node = nir.Affine(w, _np(b).astype(np.float32)) if b is not None else nir.Linear(w)
    return node, (m.out_features,)


@handler(nn.Conv1d, nn.Conv2d)
def _conv(m: nn.Conv1d | nn.Conv2d, name, shape, ctx):
    """nn.Conv1d / nn.Conv2d -> Conv1d / Conv2d (zero padding only); a Loihi-aware Conv2d
    exports the projected weights it computes with."""
    one_d = isinstance(m, nn.Conv1d)
    kind, expects = ("Conv1d", "(C, L)") if one_d else ("Conv2d", "(C, H, W)")
    if m.padding_mode != "zeros":
        raise ExportError(f"module {name!r} ({kind}) uses padding_mode={m.padding_mode!r}",
                          "use padding_mode='zeros' (NIR convolutions pad with zeros)")
    if len(shape) != (2 if one_d else 3):
        raise ExportError(f"module {name!r} ({kind}) receives shape {shape}, expects {expects}",
                          f"feed the convolution a {expects} input")
    w, b = m.quantized() if isinstance(m, LoihiQuantConv2d) else (m.weight, m.bias)
    bias = (_np(b) if b is not None else np.zeros(m.out_channels)).astype(np.float32)
    weight = _np(w).astype(np.float32)
    if one_d:
        padding = m.padding if isinstance(m.padding, str) else int(m.padding[0])
        node = nir.Conv1d(input_shape=shape[1], weight=weight, stride=int(m.stride[0]),
                          padding=padding, dilation=int(m.dilation[0]), groups=m.groups, bias=bias)
    else:
        padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
        node = nir.Conv2d(input_shape=shape[1:], weight=weight, stride=tuple(m.stride),
                          padding=padding, dilation=tuple(m.dilation), groups=m.groups, bias=bias)
    with torch.no_grad():
        out = m(torch.zeros(1, *shape, dtype=m.weight.dtype)).shape[1:]
    return node, tuple(out)


def _pool_params(m, name, kind):
    k = m.kernel_size
    s = getattr(m, "stride", None) or k
    p = getattr(m, "padding", 0)
    if getattr(m, "ceil_mode", False) or (kind == "AvgPool2d" and not m.count_include_pad and p):
        raise ExportError(f"module {name!r} ({kind}) uses ceil_mode or count_include_pad=False",
                          "use the defaults (floor mode, padding counted)")
    if kind == "AvgPool2d" and getattr(m, "divisor_override", None):
        raise ExportError(f"module {name!r} (AvgPool2d) sets divisor_override",
                          "use SumPool2d followed by a scale instead")
    two = lambda v: np.array(v if isinstance(v, (tuple, list)) else (v, v))
    return two(k), two(s), two(p)


@handler(nn.AvgPool2d)
def _avgpool(m, name, shape, ctx):
    """nn.AvgPool2d -> AvgPool2d."""
    with torch.no_grad():
        out = m(torch.zeros(1, *shape)).shape[1:]
    return nir.AvgPool2d(*_pool_params(m, name, "AvgPool2d")), tuple(out)


@handler(SumPool2d)
def _sumpool(m, name, shape, ctx):
    """spikeport SumPool2d -> SumPool2d."""
    with torch.no_grad():
        out = m(torch.zeros(1, *shape)).shape[1:]
    k = np.array((m.kernel_size, m.kernel_size))
    return nir.SumPool2d(k, k, np.array((0, 0))), tuple(out)


@handler(nn.Flatten)
def _flatten(m: nn.Flatten, name, shape, ctx):
    """nn.Flatten -> Flatten (dimensions counted without the batch axis)."""
    if m.start_dim == 0:
        raise ExportError(f"module {name!r} (Flatten) flattens the batch axis",
                          "use nn.Flatten() (start_dim=1)")
    start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
    end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
    node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start, end_dim=end)
    return node, tuple(int(v) for v in node.output_type["output"])


@handler(nn.Identity, nn.Dropout)
def _skip(m, name, shape, ctx):
    """nn.Identity, nn.Dropout -> nothing (identity at inference)."""
    return None, shape


def _check_neuron(m: snn.SpikingNeuron, name: str, kind: str, ctx: ExportContext) -> None:
    def refuse_or_note(problem: str, fix: str, note: str):
        if not ctx.allow_approximation:
            raise ExportError(f"module {name!r} ({kind}) {problem}: NIR cannot express it",
                              f"{fix}, or export with allow_approximation=True to {note}")
        ctx.approximations.append(f"{name}: {note}")

    if getattr(m, "inhibition", False):
        raise ExportError(f"module {name!r} ({kind}) uses inhibition", "set inhibition=False")
    if getattr(m, "state_quant", False):
        raise ExportError(f"module {name!r} ({kind}) uses state_quant", "set state_quant=False")
    if not torch.all(torch.as_tensor(m.graded_spikes_factor) == 1):
        raise ExportError(f"module {name!r} ({kind}) emits graded spikes",
                          "set graded_spikes_factor=1.0")
    if m.reset_mechanism == "subtract":
        refuse_or_note("resets by subtraction",
                       "build the neuron with reset_mechanism='zero'",
                       "export it with a reset to zero (spike trains will differ)")
    elif m.reset_mechanism == "none":
        raise ExportError(f"module {name!r} ({kind}) never resets (reset_mechanism='none')",
                          "use reset_mechanism='zero'")
    if getattr(m, "reset_delay", True):
        refuse_or_note("resets one step after the spike (reset_delay=True)",
                       "build the neuron with reset_delay=False",
                       "export it with the reset in the same step as the spike")


def _decay(m, attr, name, kind):
    d = _np(getattr(m, attr)).astype(np.float64)
    return np.clip(d, 0.0, 1.0)  # snntorch clamps decays to [0, 1] in its forward pass


@handler(snn.Leaky)
def _leaky(m: snn.Leaky, name, shape, ctx):
    """snntorch Leaky -> LIF (IF where beta = 1)."""
    _check_neuron(m, name, "Leaky", ctx)
    beta = _population(_decay(m, "beta", name, "Leaky"), shape)
    thr = _population(m.threshold, shape)
    zeros = np.zeros(shape)
    if np.all(beta == 1.0):
        return nir.IF(r=units.if_unit_r(ctx.dt, shape), v_threshold=thr, v_reset=zeros), shape
    if np.any(beta == 1.0):
        raise ExportError(f"module {name!r} (Leaky) mixes beta = 1 with beta < 1 in one population",
                          "use beta < 1 for every neuron (NIR's LIF needs a finite tau)")
    tau = units.tau_from_decay(beta, ctx.dt)
    r = units.unit_gain(ctx.dt / tau)
    return nir.LIF(tau=tau, r=r, v_leak=zeros, v_threshold=thr, v_reset=zeros), shape


@handler(snn.Synaptic)
def _synaptic(m: snn.Synaptic, name, shape, ctx):
    """snntorch Synaptic -> CubaLIF."""
    _check_neuron(m, name, "Synaptic", ctx)
    alpha = _population(_decay(m, "alpha", name, "Synaptic"), shape)
    beta = _population(_decay(m, "beta", name, "Synaptic"), shape)
    if np.any(alpha == 1.0) or np.any(beta == 1.0):
        raise ExportError(f"module {name!r} (Synaptic) has a decay of exactly 1",
                          "use alpha, beta < 1 (NIR's CubaLIF needs finite time constants)")
    tau_syn = units.tau_from_decay(alpha, ctx.dt)
    tau_mem = units.tau_from_decay(beta, ctx.dt)
    zeros = np.zeros(shape)
    return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=units.unit_gain(ctx.dt / tau_mem),
                       v_leak=zeros, v_threshold=_population(m.threshold, shape), v_reset=zeros,
                       w_in=units.unit_gain(ctx.dt / tau_syn)), shape


def _recurrent_subgraph(m, name, shape, ctx, neuron_node):
    if not getattr(m, "all_to_all", True) or not isinstance(getattr(m, "recurrent", None), nn.Linear):
        raise ExportError(f"module {name!r} ({type(m).__name__}) uses a one-to-one or convolutional "
                          "recurrence", "use all_to_all=True with a linear recurrent layer")
    if len(shape) != 1:
        raise ExportError(f"module {name!r} ({type(m).__name__}) has population shape {shape}",
                          "use recurrent populations after a Linear layer (1-d)")
    w_rec, _ = _linear(m.recurrent, name + ".recurrent", shape, ctx)
    n = np.array(shape)
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=n), "lif": neuron_node, "w_rec": w_rec,
               "output": nir.Output(output_type=n)},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        metadata={}), shape


@handler(snn.RLeaky)
def _rleaky(m: snn.RLeaky, name, shape, ctx):
    """snntorch RLeaky -> subgraph {input, lif: LIF, w_rec: Affine/Linear, output}."""
    lif, _ = _leaky(m, name, shape, ctx)
    return _recurrent_subgraph(m, name, shape, ctx, lif)


@handler(snn.RSynaptic)
def _rsynaptic(m: snn.RSynaptic, name, shape, ctx):
    """snntorch RSynaptic -> subgraph {input, lif: CubaLIF, w_rec: Affine/Linear, output}."""
    lif, _ = _synaptic(m, name, shape, ctx)
    return _recurrent_subgraph(m, name, shape, ctx, lif)


def _find_handler(module: nn.Module) -> Callable | None:
    for entry in HANDLERS.entries():
        cls, fn = entry.obj
        if type(module) is cls:
            return fn
    for entry in HANDLERS.entries():  # subclasses (e.g. a user's Leaky subclass) last
        cls, fn = entry.obj
        if isinstance(module, cls):
            return fn
    return None


def _chain(model: nn.Module, sample_input: torch.Tensor | None) -> list[tuple[str, nn.Module]]:
    from spikeport.models.network import SpikingSequential

    if isinstance(model, SpikingSequential):
        return [(f"layers.{i}", m) for i, m in enumerate(model.layers)]
    if isinstance(model, nn.Sequential):
        return list(model.named_children())
    if sample_input is None:
        raise ExportError(f"{type(model).__name__} is not a Sequential model, so its layer order "
                          "must be traced", "pass sample_input= (one input the model's forward accepts)")
    return trace_chain(model, sample_input)


def trace_chain(model: nn.Module, sample_input: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The leaf modules of one forward pass, in call order, up to the first repeat (the start
    of the next time step). Checks that each layer consumes the previous layer's output."""
    calls: list[tuple[str, nn.Module, tuple, object]] = []
    names = {m: n for n, m in model.named_modules()}
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda m, i, o: calls.append((names[m], m, i, o)))
               for m in leaves]
    try:
        with torch.no_grad():
            model(sample_input)
    finally:
        for h in handles:
            h.remove()
    chain, seen = [], set()
    for name, m, inp, out in calls:
        if m in seen:
            break
        seen.add(m)
        chain.append((name, m, inp, out))
    for (pn, _, _, pout), (n, _, inp, _) in zip(chain, chain[1:]):
        prev = pout[0] if isinstance(pout, tuple) else pout
        # Identity, or the same values after a dtype cast (snntorch emits float32 spikes).
        ok = bool(inp) and isinstance(inp[0], torch.Tensor) and isinstance(prev, torch.Tensor) \
            and (inp[0] is prev or (inp[0].shape == prev.shape
                                    and torch.equal(inp[0].to(prev.dtype), prev)))
        if not ok:
            raise ExportError(f"layer {n!r} does not take the output of {pn!r} directly, so the "
                              "model is not a chain of layers spikeport can trace",
                              "write the model as nn.Sequential or SpikingSequential, or export "
                              "each chain with export_model")
    return [(n, m) for n, m, _, _ in chain]


def _fold_batchnorm(chain, ctx) -> list[tuple[str, nn.Module]]:
    """``chain`` with every convolution followed by a BatchNorm (or BNTT) replaced by one
    float64 convolution: w' = w g / sqrt(var + eps), b' = (b - mean) g / sqrt(var + eps) + beta,
    the BatchNorm's inference map (running statistics) composed into the conv; exact up to
    float rounding. A BNTT layer (one BatchNorm per time step) has no static equivalent; it
    is refused, or folded with its step-averaged scale and shift (an approximation)."""
    from spikeport.models.resnet import BatchNormTT

    out: list[tuple[str, nn.Module]] = []
    for name, m in chain:
        if not isinstance(m, (nn.BatchNorm2d, BatchNormTT)):
            out.append((name, m))
            continue
        prev = out[-1][1] if out else None
        if not isinstance(prev, nn.Conv2d):
            raise ExportError(f"module {name!r} ({type(m).__name__}) does not follow a Conv2d, "
                              "so it cannot be folded into one", "place BatchNorm2d right after a Conv2d")
        if isinstance(prev, LoihiQuantConv2d):
            raise ExportError(f"module {name!r} follows a Loihi-aware convolution: folded into "
                              "it, the weights would leave the grid they were trained on",
                              "train Loihi-aware convolutions without BatchNorm")
        norms = list(m.norms) if isinstance(m, BatchNormTT) else [m]
        if isinstance(m, BatchNormTT):
            if not ctx.allow_approximation:
                raise ExportError(f"module {name!r} (BNTT) normalises each time step differently; "
                                  "NIR weights and biases are the same at every step",
                                  "train with model.batchnorm: bn, or export with "
                                  "allow_approximation=True to fold the step-averaged BatchNorm")
            ctx.approximations.append(f"{name}: BNTT folded with its scale and shift averaged "
                                      f"over its {len(norms)} time steps")
        scale, shift = zip(*(_bn_affine(bn, name) for bn in norms))
        out[-1] = (out[-1][0], _conv_times(prev, np.mean(scale, 0), np.mean(shift, 0)))
    return out


def _bn_affine(bn: nn.BatchNorm2d, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of a BatchNorm's inference map y = scale x + shift, float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise ExportError(f"module {name!r} (BatchNorm2d) has no running statistics "
                          "(track_running_stats=False), so its map depends on the batch",
                          "train it with track_running_stats=True")
    g = _np(bn.weight).astype(np.float64) if bn.weight is not None else 1.0
    b = _np(bn.bias).astype(np.float64) if bn.bias is not None else 0.0
    scale = g / np.sqrt(_np(bn.running_var).astype(np.float64) + bn.eps)
    return scale * np.ones(bn.num_features), b - _np(bn.running_mean).astype(np.float64) * scale


def _conv_times(conv: nn.Conv2d, scale: np.ndarray, shift: np.ndarray) -> nn.Conv2d:
    """A float64 copy of ``conv`` followed by the per-channel map y = scale x + shift."""
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       conv.padding, conv.dilation, conv.groups, True, conv.padding_mode,
                       device="cpu", dtype=torch.float64)
    bias = _np(conv.bias).astype(np.float64) if conv.bias is not None else 0.0
    with torch.no_grad():
        folded.weight.copy_(torch.from_numpy(_np(conv.weight).astype(np.float64)
                                             * scale[:, None, None, None]))
        folded.bias.copy_(torch.from_numpy(bias * scale + shift))
    return folded


def _emit_residual(name, module, sources, shape, nodes, edges, ctx):
    """A :class:`~spikeport.models.network.Residual`: body and skip from the same sources,
    combined as fan-in (add) or through an IAND gate population, then ``after``."""
    def sub(part):
        return [(f"{name}.{part}.{i}", m) for i, m in enumerate(getattr(module, part))]

    body_sources, body_shape = _emit(sub("body"), sources, shape, nodes, edges, ctx)
    skip_sources, skip_shape = _emit(sub("skip"), sources, shape, nodes, edges, ctx)
    if tuple(body_shape) != tuple(skip_shape):
        raise ExportError(f"residual block {name!r} maps shape {skip_shape} to {body_shape}",
                          "make the block keep its input shape, or add a projection")
    if module.combine == "iand":
        sources = _emit_iand(name.replace(".", "_"), body_sources, skip_sources, body_shape,
                             nodes, edges, ctx)
    else:
        sources = body_sources + skip_sources  # the skip: both feed the next node
    return _emit(sub("after"), sources, body_shape, nodes, edges, ctx)


def _emit_iand(key, body_sources, skip_sources, shape, nodes, edges, ctx) -> list[str]:
    """(NOT body) AND skip on binary spikes as a memoryless gate population: its input is
    skip - body in {-1, 0, 1}, it fires where that exceeds 0.5 (LIF with decay 0)."""
    from spikeport.models.neurons import make_neuron

    nodes[f"{key}_not"] = nir.Scale(np.full(shape, -1.0))
    edges.extend((s, f"{key}_not") for s in body_sources)
    gate, _ = _leaky(make_neuron("lif", shape, beta=0.0, threshold=0.5), key, shape, ctx)
    nodes[f"{key}_iand"] = gate
    edges.extend((s, f"{key}_iand") for s in [f"{key}_not", *skip_sources])
    return [f"{key}_iand"]


def _emit(chain, sources: list[str], shape, nodes, edges, ctx):
    """Add the nodes of ``chain`` after ``sources`` (several sources = summed fan-in).
    Returns the sources feeding whatever comes next, and the shape they carry."""
    from spikeport.models.network import Residual

    for name, module in _fold_batchnorm(chain, ctx):
        if isinstance(module, Residual):
            sources, shape = _emit_residual(name, module, sources, shape, nodes, edges, ctx)
            continue
        fn = _find_handler(module)
        if fn is None:
            raise ExportError(f"module {name!r} ({type(module).__name__}) has no NIR export",
                              f"use supported layers: {', '.join(HANDLERS.names())}, or Residual")
        node, shape = fn(module, name, shape, ctx)
        if node is None:
            continue
        key = name.replace(".", "_")  # dots address subgraphs in NIR edges
        nodes[key] = node
        edges.extend((s, key) for s in sources)
        sources = [key]
    return sources, shape


def export_model(model: nn.Module, input_shape: tuple[int, ...], *, dt: float = units.DEFAULT_DT,
                 allow_approximation: bool = False, sample_input: torch.Tensor | None = None,
                 source: str | None = None) -> nir.NIRGraph:
    """Export a chain of supported modules to a NIR graph (see the module docstring).

    ``input_shape`` is the shape of one time step of one sample, without batch and time.
    """
    if not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
        raise ExportError(f"dt must be a positive number of seconds, got {dt!r}", "pass e.g. dt=1e-4")
    ctx = ExportContext(float(dt), allow_approximation)
    shape = tuple(int(s) for s in input_shape)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    edges: list[tuple[str, str]] = []
    sources, shape = _emit(_chain(model, sample_input), ["input"], shape, nodes, edges, ctx)
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges.extend((s, "output") for s in sources)
    meta = {"dt": ctx.dt, "discretisation": "forward_euler", "update_order": "current_then_voltage",
            "reset_mode": "zero", "reset_delay": 0,
            "source": source or f"spikeport (snntorch=={snn.__version__})"}
    if ctx.approximations:
        meta["approximations"] = list(ctx.approximations)
    try:
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    except ValueError as e:
        raise ExportError(f"the exported graph does not type-check: {e}",
                          "report this as a spikeport bug, with the model") from None
