"""NIR -> torch: a NIR graph re-imported as a torch module built from snntorch neurons.

:func:`import_graph` accepts graphs written by spikeport and by other frameworks (nested or
dotted recurrent subgraphs, CubaLIF with ``w_in``, Affine with bias, LIF, IF, LI, I,
Integrator-style nodes, Scale, Threshold, Delay, Conv1d/Conv2d, pooling, Flatten,
per-neuron parameter arrays). It returns a :class:`NIRModule` that runs the graph step by
step with the same program order and the same float64 arithmetic as the reference target.
Neuron populations are real ``snntorch.Leaky`` / ``Synaptic`` modules (reset to zero, no reset
delay) fed through an input gain, all coefficients read by :mod:`spikeport.ir.neurons`;
CubaLIF populations whose membrane gain is not 1 or that have a leak, and populations with a
non-zero reset value, which snntorch cannot stand in for, run that module's step function on
torch tensors (:class:`ExplicitNeuron`). Each node type maps through :data:`NODE_MAP`; any other node raises
an error naming it.
"""
from __future__ import annotations

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from spikeport.ir import neurons
from spikeport.ir.program import (Program, build_program, check_values, delay_steps,
                                  node_implementations, pair, summed_input, torch_conv_args)
from spikeport.core.errors import GraphError
from spikeport.core.recording import Recording
from spikeport.core.registry import Registry

NODE_MAP: Registry = Registry("NIR -> torch node")
DTYPE = torch.float64


def _t(v) -> torch.Tensor:
    return torch.tensor(np.array(v, dtype=np.float64), dtype=DTYPE)


maps = NODE_MAP.for_types  # @maps(nir.X, ...) on fn(node, dt) -> torch module


class Gain(nn.Module):
    """x -> g * x + l (the input gain and leak of a neuron population)."""

    def __init__(self, g, l):
        super().__init__()
        self.register_buffer("g", _t(g))
        self.register_buffer("l", _t(l))

    def forward(self, x):
        return self.g * x + self.l


class Stateful(nn.Module):
    """A node with state: ``init(like)`` and ``step(x, state) -> (out, state)``."""

    spiking = False

    def init(self, like):
        raise NotImplementedError

    def step(self, x, state):
        raise NotImplementedError


class SnnLeaky(Stateful):
    """An snntorch Leaky population behind an input gain (LIF, IF; LI and I with no reset)."""

    def __init__(self, gain: Gain, decay, threshold, spiking: bool):
        super().__init__()
        self.gain = gain
        self.spiking = spiking
        shape = np.shape(decay)
        self.neuron = snn.Leaky(beta=_t(decay), threshold=_t(np.broadcast_to(threshold, shape)),
                                reset_mechanism="zero" if spiking else "none", reset_delay=False)

    def init(self, like):
        return torch.zeros_like(like)

    def step(self, x, mem):
        spk, mem = self.neuron(self.gain(x), mem)
        return (spk.to(DTYPE) if self.spiking else mem), mem


class SnnSynaptic(Stateful):
    """An snntorch Synaptic population behind an input gain (CubaLIF with g_v = 1, l = 0)."""

    def __init__(self, gain: Gain, d_i, d_v, threshold, spiking: bool):
        super().__init__()
        self.gain = gain
        self.spiking = spiking
        self.neuron = snn.Synaptic(alpha=_t(d_i), beta=_t(d_v),
                                   threshold=_t(np.broadcast_to(threshold, np.shape(d_v))),
                                   reset_mechanism="zero" if spiking else "none", reset_delay=False)

    def init(self, like):
        return torch.zeros_like(like), torch.zeros_like(like)

    def step(self, x, state):
        spk, syn, mem = self.neuron(self.gain(x), *state)
        return (spk.to(DTYPE) if self.spiking else mem), (syn, mem)


TORCH = neurons.Ops(torch.gt, torch.where, lambda z: z.to(DTYPE))


class ExplicitNeuron(Stateful):
    """A population that snntorch cannot stand in for (a CubaLIF whose membrane gain is not 1
    or that leaks, a reset to a non-zero value): the step of :mod:`spikeport.ir.neurons` on
    torch tensors, its coefficients as buffers."""

    def __init__(self, model: neurons.NeuronModel, p: neurons.Params):
        super().__init__()
        self.model = model
        self.spiking = model.spiking
        for k, v in p.fields().items():
            self.register_buffer(k, _t(v))
        self._record, self._fields = type(p), tuple(p.fields())

    def init(self, like):
        return tuple(torch.zeros_like(like) for _ in self.model.states)

    def step(self, x, state):
        p = self._record(**{k: getattr(self, k) for k in self._fields})  # the buffers, as moved
        return self.model.step(p, x, state, TORCH)


class ThresholdNode(Stateful):
    """z = [x > theta] (stateless, kept here to be recorded as spiking)."""

    spiking = True

    def __init__(self, theta):
        super().__init__()
        self.register_buffer("theta", _t(theta))

    def init(self, like):
        return None

    def step(self, x, state):
        return (x > self.theta).to(DTYPE), None


class DelayNode(Stateful):
    """y[k] = x[k - n], zero before."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def init(self, like):
        return [torch.zeros_like(like) for _ in range(self.steps)]

    def step(self, x, buf):
        return neurons.delay_step(x, buf)


class ScaleNode(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.register_buffer("s", _t(s))

    def forward(self, x):
        return x * self.s


class FlattenNode(nn.Module):
    """NIR Flatten: dimensions counted without the batch axis."""

    def __init__(self, start: int, end: int):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x):
        nd = x.dim() - 1
        return torch.flatten(x, self.start % nd + 1, self.end % nd + 1)


@maps(nir.Input, nir.Output)
def _identity(node, dt):
    """identity"""
    return nn.Identity()


@maps(nir.Affine, nir.Linear)
def _dense(node, dt):
    """torch.nn.Linear (with the Affine's bias, or none)"""
    w = np.asarray(node.weight)
    bias = getattr(node, "bias", None)
    m = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=DTYPE)
    with torch.no_grad():
        m.weight.copy_(_t(w))
        if bias is not None:
            m.bias.copy_(_t(bias))
    return m


@maps(nir.Scale)
def _scale(node, dt):
    """elementwise scale"""
    return ScaleNode(node.scale)


@maps(nir.Conv2d, nir.Conv1d)
def _conv(node, dt):
    """torch.nn.Conv2d / Conv1d"""
    w = np.asarray(node.weight)
    args = torch_conv_args(node)
    cls = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d
    m = cls(w.shape[1] * args["groups"], w.shape[0], w.shape[2:], dtype=DTYPE, **args)
    with torch.no_grad():
        m.weight.copy_(_t(w))
        m.bias.copy_(_t(node.bias))
    return m


class _Unsupported(GraphError):
    """A node this target cannot build; :class:`NIRModule` adds the node's name."""


def _pool_args(node) -> tuple:
    """(kernel, stride, padding) pairs of a pool; torch pools pad at most half a kernel."""
    k, s, p = pair(node.kernel_size), pair(node.stride), pair(node.padding)
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise _Unsupported(f"({type(node).__name__}): padding {p} is more than half its kernel "
                           f"{k}, which torch's pooling (the snntorch target) does not support",
                           "use padding <= kernel // 2, or the reference or onnx target")
    return k, s, p


@maps(nir.AvgPool2d)
def _avgpool(node, dt):
    """torch.nn.AvgPool2d (padding counted)"""
    return nn.AvgPool2d(*_pool_args(node))


@maps(nir.SumPool2d)
def _sumpool(node, dt):
    """sum pooling: average pooling times the window size"""
    return SumPoolNode(*_pool_args(node))


class SumPoolNode(nn.Module):
    def __init__(self, k, s, p):
        super().__init__()
        self.pool = nn.AvgPool2d(k, s, p)
        self.n = k[0] * k[1]

    def forward(self, x):
        return self.pool(x) * self.n


@maps(nir.Flatten)
def _flatten(node, dt):
    """flatten (dims without batch)"""
    return FlattenNode(int(node.start_dim), int(node.end_dim))


@maps(nir.Threshold)
def _threshold(node, dt):
    """z = [x > theta]"""
    return ThresholdNode(node.threshold)


@maps(nir.Delay)
def _delay(node, dt):
    """a shift of round(delay/dt) steps"""
    return DelayNode(delay_steps(node, dt))


def _zero_reset(p: neurons.Params) -> bool:
    return bool(np.all(p.v_reset == 0))


def _decays_in_unit_range(*decays) -> bool:
    """snntorch clamps beta and alpha to [0, 1]; a time constant shorter than dt gives a
    negative decay (1 - dt/tau), which only the explicit step computes as written."""
    return all(bool(np.all(np.asarray(d) >= 0)) for d in decays)


@maps(nir.LIF, nir.LI)
def _leaky(node, dt):
    """snntorch Leaky behind an input gain (LI: no reset, membrane out; explicit update for
    a non-zero reset value)"""
    model, p = neurons.model_of(node), neurons.params_of(node, dt)
    if (model.spiking and not _zero_reset(p)) or not _decays_in_unit_range(p.d):
        return ExplicitNeuron(model, p)
    th = p.v_threshold if model.spiking else np.inf
    return SnnLeaky(Gain(p.g, p.l), p.d, th, spiking=model.spiking)


@maps(nir.IF, nir.I)
def _integrator(node, dt):
    """snntorch Leaky with beta = 1 behind the gain dt*r (I: no reset, membrane out;
    explicit update for a non-zero reset value)"""
    model, p = neurons.model_of(node), neurons.params_of(node, dt)
    if model.spiking and not _zero_reset(p):
        return ExplicitNeuron(model, p)
    ones = np.ones(np.shape(p.g))
    th = p.v_threshold if model.spiking else np.inf
    return SnnLeaky(Gain(p.g, 0.0 * ones), ones, th, spiking=model.spiking)


@maps(nir.CubaLIF, nir.CubaLI)
def _cuba(node, dt):
    """snntorch Synaptic behind an input gain (CubaLI: no reset, membrane out; explicit
    update if g_v != 1, v_leak != 0 or a non-zero reset value)"""
    model, p = neurons.model_of(node), neurons.params_of(node, dt)
    if np.all(p.g_v == 1.0) and np.all(p.l == 0.0) and (not model.spiking or _zero_reset(p)) \
            and _decays_in_unit_range(p.d_i, p.d_v):
        th = p.v_threshold if model.spiking else np.inf
        return SnnSynaptic(Gain(p.g_i, 0.0 * p.g_i), p.d_i, p.d_v, th, model.spiking)
    return ExplicitNeuron(model, p)


class NIRModule(nn.Module):
    """A NIR graph as a torch module: forward(x (T, B, ...)) -> output (T, B, ...)."""

    def __init__(self, program: Program):
        super().__init__()
        self.program = program
        mods = {}
        for name, build in node_implementations(program, NODE_MAP, "snntorch").items():
            try:
                mods[name] = build(program.nodes[name], program.dt)
            except _Unsupported as e:
                raise GraphError(f"node {name!r} {e.problem}", e.fix) from None
        # ModuleDict keys may not contain dots.
        self.nodes = nn.ModuleDict({n.replace(".", "__"): m for n, m in mods.items()})
        self.device = torch.device("cpu")  # where _compile moved it (options["device"])

    def node(self, name: str) -> nn.Module:
        return self.nodes[name.replace(".", "__")]

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's value at every step: name -> (T, B, ...)."""
        p = self.program
        src = p.graph_inputs[0]
        states, prev, values = {}, {}, {n: [] for n in p.order}
        for t in range(x.shape[0]):
            cur = {}
            for name in p.order:
                inp = x[t] if name == src else summed_input(p, name, cur, prev)
                m = self.node(name)
                if isinstance(m, Stateful):
                    if name not in states:
                        states[name] = m.init(inp)
                    out, states[name] = m.step(inp, states[name])
                else:
                    out = m(inp)
                cur[name] = out
                values[name].append(out)
            prev = cur
        return {n: torch.stack(v) for n, v in values.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)[self.program.output]

    def spiking_nodes(self) -> list[str]:
        return [n for n in self.program.order
                if isinstance(self.node(n), Stateful) and self.node(n).spiking]


def import_graph(graph: nir.NIRGraph, dt: float | None = None) -> NIRModule:
    """Import a NIR graph (ours or another framework's) as a torch module (float64)."""
    return NIRModule(build_program(graph, dt))


def _compile(graph, options=None):
    """The graph as a torch module on ``options["device"]`` (default the CPU)."""
    from spikeport.core.devices import check_device

    options = options or {}
    module = import_graph(graph, options.get("dt"))
    module.device = check_device(options.get("device") or "cpu")
    return module.to(module.device)


@torch.no_grad()
def _run(module: NIRModule, x: np.ndarray) -> Recording:
    values = module.run(torch.as_tensor(module.program.check_input(x), device=module.device))
    values = {n: v.cpu().numpy() for n, v in values.items()}
    spiking = module.spiking_nodes()
    check_values(values, module.program.kinds(), spiking)
    return Recording(values, module.program.output, spiking, module.program.dt)


def _register():
    from spikeport.exporters.targets import Counting, Target, register

    register(Target(
        name="snntorch", compile=_compile, run=_run, supported=NODE_MAP.names,
        profiles=("cpu", "gpu", "ann-45nm"), exactness="bit-identical to reference (float64)",
        summary="the graph re-imported as a torch module of snntorch neurons", 
        counting=Counting(matmul="torch", binary_spikes=True)))


_register()
