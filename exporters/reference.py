"""The reference target: a batched float64 numpy simulator of NIR semantics.

It defines what every other target must agree with. Inputs are (T, B, *input_shape); each
step every node is evaluated in the program order (:mod:`spikeport.ir.program`), fan-in edges are
summed, and cycle-closing edges deliver the previous step's value. Neuron populations run the
steps of :mod:`spikeport.ir.neurons` (the discretisation of :mod:`spikeport.core.units`) on
float64 numpy arrays.

Node kernels are registered per NIR node class in :data:`KERNELS`; a graph with any other
node is refused before simulating, naming the node.
"""
from __future__ import annotations

import nir
import numpy as np

from spikeport.ir import neurons
from spikeport.ir.program import (Program, build_program, check_values, conv_padding,
                                  delay_steps, node_implementations, pair, summed_input)
from spikeport.core.recording import Recording
from spikeport.core.registry import Registry

KERNELS: Registry = Registry("reference node kernel")


class Kernel:
    stateful = False

    def init(self, like: np.ndarray):
        return None

    def step(self, x: np.ndarray, state):
        raise NotImplementedError


kernel = KERNELS.for_types  # @kernel(nir.LIF, ...) on a Kernel class


def _arr(v):
    return np.asarray(v, dtype=np.float64)


@kernel(nir.Input, nir.Output)
class Identity(Kernel):
    """identity"""

    def __init__(self, node, dt):
        pass

    def step(self, x, state):
        return x, state


@kernel(nir.Affine)
class Affine(Kernel):
    """y = x W^T + b"""

    def __init__(self, node, dt):
        self.w, self.b = _arr(node.weight), _arr(node.bias)

    def step(self, x, state):
        return x @ self.w.T + self.b, state


@kernel(nir.Linear)
class Linear(Kernel):
    """y = x W^T"""

    def __init__(self, node, dt):
        self.w = _arr(node.weight)

    def step(self, x, state):
        return x @ self.w.T, state


@kernel(nir.Scale)
class Scale(Kernel):
    """y = s * x"""

    def __init__(self, node, dt):
        self.s = _arr(node.scale)

    def step(self, x, state):
        return x * self.s, state


def conv2d(x, w, b, stride, padding, dilation, groups):
    """Cross-correlation as in torch, float64. x (B, C, H, W), w (O, C/groups, kh, kw)."""
    B, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    ph, pw = conv_padding(padding, (kh, kw), (dh, dw))
    xp = np.pad(x, ((0, 0), (0, 0), ph, pw))
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (B, C, Ho, Wo, kh, kw)
    Ho, Wo = win.shape[2:4]
    outs = []
    og = O // groups
    for g in range(groups):
        wg = w[g * og:(g + 1) * og].reshape(og, -1)  # (og, Cg*kh*kw)
        xg = win[:, g * Cg:(g + 1) * Cg].transpose(0, 2, 3, 1, 4, 5).reshape(B, Ho, Wo, -1)
        outs.append(xg @ wg.T)  # (B, Ho, Wo, og)
    y = np.concatenate(outs, -1).transpose(0, 3, 1, 2)
    return y + b.reshape(1, -1, 1, 1)


@kernel(nir.Conv2d)
class Conv2d(Kernel):
    """2-d convolution (zero padding, stride, dilation, groups, bias)"""

    def __init__(self, node, dt):
        self.w, self.b = _arr(node.weight), _arr(node.bias)
        self.stride, self.dilation = pair(node.stride), pair(node.dilation)
        self.padding = node.padding if isinstance(node.padding, str) else pair(node.padding)
        self.groups = int(node.groups)

    def step(self, x, state):
        return conv2d(x, self.w, self.b, self.stride, self.padding, self.dilation, self.groups), state


@kernel(nir.Conv1d)
class Conv1d(Kernel):
    """1-d convolution, computed as a 2-d one of height 1"""

    def __init__(self, node, dt):
        self.w, self.b = _arr(node.weight)[:, :, None, :], _arr(node.bias)
        self.stride = (1, int(np.atleast_1d(node.stride)[0]))
        self.dilation = (1, int(np.atleast_1d(node.dilation)[0]))
        p = node.padding
        self.padding = p if isinstance(p, str) else (0, int(np.atleast_1d(p)[0]))
        self.groups = int(node.groups)

    def step(self, x, state):
        y = conv2d(x[:, :, None, :], self.w, self.b, self.stride, self.padding, self.dilation,
                   self.groups)
        return y[:, :, 0, :], state


@kernel(nir.SumPool2d, nir.AvgPool2d)
class Pool2d(Kernel):
    """sum or average over k x k windows (zero padding counted)"""

    def __init__(self, node, dt):
        self.k, self.s, self.p = pair(node.kernel_size), pair(node.stride), pair(node.padding)
        self.avg = isinstance(node, nir.AvgPool2d)

    def step(self, x, state):
        B, C = x.shape[:2]
        w = np.ones((C, 1, *self.k))
        y = conv2d(x, w, np.zeros(C), self.s, self.p, (1, 1), C)
        return (y / (self.k[0] * self.k[1]) if self.avg else y), state


@kernel(nir.Flatten)
class Flatten(Kernel):
    """reshape; dimensions counted without the batch axis"""

    def __init__(self, node, dt):
        self.start, self.end = int(node.start_dim), int(node.end_dim)

    def step(self, x, state):
        shape = x.shape[1:]
        nd = len(shape)
        s = self.start % nd
        e = self.end % nd
        new = shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]
        return x.reshape(x.shape[0], *new), state


@kernel(nir.Threshold)
class Threshold(Kernel):
    """z = [x > theta]"""
    spiking = True

    def __init__(self, node, dt):
        self.th = _arr(node.threshold)

    def step(self, x, state):
        return (x > self.th).astype(np.float64), state


@kernel(nir.Delay)
class Delay(Kernel):
    """y[k] = x[k - round(delay / dt)], zero before the first input"""
    stateful = True

    def __init__(self, node, dt):
        self.steps = delay_steps(node, dt)

    def init(self, like):
        return [np.zeros_like(like) for _ in range(self.steps)]

    def step(self, x, state):
        return neurons.delay_step(x, state)


class Neuron(Kernel):
    """A neuron population: the step of :mod:`spikeport.ir.neurons` on numpy arrays."""
    stateful = True

    def __init__(self, node, dt):
        self.model = neurons.model_of(node)
        self.spiking = self.model.spiking
        self.p = self.model.params(node, dt)

    def init(self, like):
        return tuple(np.zeros_like(like) for _ in self.model.states)

    def step(self, x, state):
        return self.model.step(self.p, x, state, neurons.NUMPY)

    def membrane(self, state) -> np.ndarray:
        return state[self.model.membrane]


for _entry in neurons.NEURONS.entries():  # one kernel for every neuron type, its step's summary
    KERNELS.add(_entry.name, Neuron, _entry.summary)


def compile_program(program: Program) -> dict[str, Kernel]:
    return {name: kernel(program.nodes[name], program.dt)
            for name, kernel in node_implementations(program, KERNELS, "reference").items()}


def simulate(program: Program, x: np.ndarray, membranes: bool = False) -> Recording:
    """Run ``program`` on x (T, B, *input_shape); every node's value at every step."""
    kernels = compile_program(program)
    x = program.check_input(x)
    T = x.shape[0]
    prev: dict[str, np.ndarray] = {}
    state: dict[str, object] = {}
    values: dict[str, list[np.ndarray]] = {n: [] for n in program.order}
    mems: dict[str, list[np.ndarray]] = {}
    src = program.graph_inputs[0]
    # values that overflow float64 are refused by check_values below, with one error; numpy
    # should not also print its RuntimeWarnings for them
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            cur: dict[str, np.ndarray] = {}
            for name in program.order:
                inp = x[t] if name == src else summed_input(program, name, cur, prev)
                k = kernels[name]
                if name not in state:
                    state[name] = k.init(inp)
                out, state[name] = k.step(inp, state[name])
                cur[name] = out
                values[name].append(out)
                st = state[name]
                if membranes and isinstance(k, Neuron) and k.spiking:
                    mems.setdefault(name, []).append(k.membrane(st))
            prev = cur
    spiking = [n for n in program.order if getattr(kernels[n], "spiking", False)]
    values = {n: np.stack(v) for n, v in values.items()}
    check_values(values, program.kinds(), spiking)
    return Recording(values, program.output, spiking,
                     program.dt, {n: np.stack(v) for n, v in mems.items()})


def run_graph(graph: nir.NIRGraph, x: np.ndarray, dt: float | None = None,
              membranes: bool = False) -> Recording:
    return simulate(build_program(graph, dt), x, membranes)


def _compile(graph: nir.NIRGraph, options: dict | None = None) -> Program:
    options = options or {}
    program = build_program(graph, options.get("dt"))
    compile_program(program)  # refuse unsupported nodes at compile time
    return program


def _register():
    from spikeport.exporters.targets import Counting, Target, register

    register(Target(
        name="reference", compile=_compile, run=lambda p, x: simulate(p, x),
        supported=KERNELS.names, profiles=("cpu", "gpu", "ann-45nm"), counting=Counting(binary_spikes=True),
        exactness="defines the semantics (float64)",
        summary="batched float64 numpy simulator of NIR semantics"))


_register()
