"""Shapes along every edge of a NIR graph, checked where the graph enters spikeport.

:func:`check_graph` walks the nodes in program order, checks each node's parameters
(:mod:`spikeport.ir.checks`) and propagates the shape of one sample at one step (no batch
axis) from the ``Input`` node: Affine / Linear weights take the last axis, a convolution
needs (C, H, W) / (C, L) with C = weight.shape[1] x groups and a kernel no larger than the
padded input, element-wise parameters (neurons, Scale, Threshold, biases) broadcast with the
value (numpy rules, no more dimensions than the value); fan-in edges into one node carry
equal shapes, and a recurrent edge carries the shape its target receives. A value of one
sample, a Delay's buffer, a convolution's padded input or its windows beyond the memory
budget (:mod:`spikeport.core.budget`) is refused by name, as is any disagreement. The shapes
found are kept on the Program (``Program.shapes``); :func:`state_bytes` is what a run keeps
per sample from step to step.

Declared types (``input_type`` / ``output_type`` of nodes other than the graph Input) are not
checked: writers fill them inconsistently and no target reads them.
"""
from __future__ import annotations

import nir
import numpy as np

from spikeport.core import budget
from spikeport.core.errors import GraphError
from spikeport.ir import neurons
from spikeport.ir.checks import (DELAY_STEP_OVERHEAD, NodeCheck, Shape, short, check_arrays,
                                 conv_padding, delay_steps)


def _identity(c: NodeCheck, x: Shape) -> Shape:
    return x


def _dense(c: NodeCheck, x: Shape) -> Shape:
    w = c.arrays["weight"]
    if w.ndim != 2:
        c.fail(f"weight has shape {w.shape}; it must be a matrix (outputs, inputs)",
               "give weight one row per output and one column per input feature")
    if not x or x[-1] != w.shape[1]:
        c.fail(f"weight {w.shape} takes {w.shape[1]} input features, but its input has shape {x}",
               "match the weight's columns to the input's last dimension (a Flatten before "
               "it for images), or fix the edge into it")
    out = tuple(x[:-1]) + (int(w.shape[0]),)
    if "bias" in c.arrays:
        c.broadcast(out, {"bias": c.arrays["bias"]}, grow=False)
    return out


def _elementwise(c: NodeCheck, x: Shape) -> Shape:
    return c.broadcast(x, c.arrays)


# the decay coefficient of each time constant (SEMANTICS.md 2: d = 1 - dt / tau)
_DECAYS = {"d": "tau", "d_i": "tau_syn", "d_v": "tau_mem"}


def _neuron(c: NodeCheck, x: Shape) -> Shape:
    out = c.broadcast(x, c.arrays)
    with np.errstate(all="ignore"):
        p = neurons.params_of(c.node, c.dt)
    for key, v in p.fields().items():
        v = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(v)):
            c.fail(f"its per-step coefficient {key} is not finite for dt = {c.dt:g} "
                   f"(e.g. dt / tau x r overflows float64)",
                   "use time constants, r and v_leak of realistic magnitude for this dt")
        if key in _DECAYS and np.any(v < -1):
            tau = _DECAYS[key]
            c.fail(f"{tau} = {c.arrays[tau].min():g} s is shorter than dt / 2 = {c.dt / 2:g} s: "
                   f"the forward-Euler update (1 - dt/{tau}) v grows without bound",
                   f"use {tau} >= dt / 2, or a smaller dt")
    return out


def _delay(c: NodeCheck, x: Shape) -> Shape:
    d = c.arrays["delay"]
    with np.errstate(over="ignore"):
        steps = np.round(d / c.dt)
    if not np.all(np.isfinite(steps)):
        c.fail(f"a delay of {d.max():g} s is {d.max() / c.dt:g} steps of dt = {c.dt:g}, "
               "beyond any buffer", "use a delay of a few steps")
    if not np.all(steps == steps.flat[0]):
        c.fail(f"its delays differ per neuron ({d.min():g} .. {d.max():g} s)",
               "use one delay per Delay node (split the population)")
    n = int(steps.flat[0])
    c.fits(n * (budget.nbytes(x) + DELAY_STEP_OVERHEAD),
           f"a delay of {n} steps buffers {n} values of shape {x} per sample",
           "use a shorter delay or a longer dt")
    return x


def _padding(c: NodeCheck, dims: int, kernel: Shape, dilation: Shape, stride: Shape):
    p = getattr(c.node, "padding", None)
    if isinstance(p, (str, np.str_)):
        p = str(p)
        if p not in ("same", "valid"):
            c.fail(f"padding is {p!r}", "use integers >= 0, 'same' or 'valid'")
        if p == "same" and any(s != 1 for s in stride):
            c.fail(f"padding 'same' with stride {stride}: 'same' is defined for stride 1 only",
                   "give the padding as integers, or use stride 1")
        return conv_padding(p, kernel, dilation)
    return conv_padding(c.ints("padding", dims, 0), kernel, dilation)


def _window(c: NodeCheck, x: Shape, kernel: Shape, stride: Shape, dilation: Shape,
            pads: list[tuple[int, int]]) -> Shape:
    """Output spatial shape of a convolution or pool over the spatial shape x[1:]."""
    C, spatial = x[0], x[1:]
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, pads))
    reach = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    c.fits(budget.nbytes((C,) + padded), f"the padded input {(C,) + padded}",
           "use less padding")
    c.transient = budget.nbytes((C,) + padded)
    if any(p < r for p, r in zip(padded, reach)):
        c.fail(f"kernel {kernel} (dilation {dilation}) reaches {reach}, more than the padded "
               f"input {padded}", "use a smaller kernel or more padding, or fix the input shape")
    out = tuple((p - r) // s + 1 for p, r, s in zip(padded, reach, stride))
    c.fits(budget.nbytes((C,) + tuple(kernel) + out), f"its windows ({C} channels x kernel "
           f"{kernel} x output {out})", "use a smaller kernel or a larger stride")
    c.transient += budget.nbytes((C,) + tuple(kernel) + out)
    return out


def _conv(c: NodeCheck, x: Shape, dims: int) -> Shape:
    w = c.arrays["weight"]
    names = "(C, L)" if dims == 1 else "(C, H, W)"
    if w.ndim != 2 + dims:
        c.fail(f"weight has shape {w.shape}; a {dims}-d convolution takes "
               f"(out_channels, in_channels / groups{', k' if dims == 1 else ', kh, kw'})",
               "give the weight in torch's layout")
    if len(x) != 1 + dims:
        c.fail(f"its input has shape {x}; a {dims}-d convolution takes {names}",
               f"feed it a {names} input (fix the edges or the Input shape)")
    O, Cg = int(w.shape[0]), int(w.shape[1])
    kernel = tuple(int(k) for k in w.shape[2:])
    groups = c.ints("groups", 1, 1)[0]
    if x[0] != Cg * groups:
        c.fail(f"weight {w.shape} with groups={groups} takes {Cg * groups} input channels, "
               f"its input has {x[0]} (shape {x})",
               "make weight.shape[1] x groups equal the input channels, or fix the edge")
    if O % groups:
        c.fail(f"{O} output channels do not split into groups={groups}",
               "use a number of groups that divides the output channels")
    b = c.arrays["bias"]
    if b.ndim > 1 or b.size not in (1, O):
        c.fail(f"bias has shape {b.shape}; it must hold one value per output channel ({O},)",
               f"give bias {O} values")
    stride, dilation = c.ints("stride", dims, 1), c.ints("dilation", dims, 1)
    pads = _padding(c, dims, kernel, dilation, stride)
    return (O,) + _window(c, x, kernel, stride, dilation, pads)


def _pool(c: NodeCheck, x: Shape) -> Shape:
    kernel = c.ints("kernel_size", 2, 1)
    stride = c.ints("stride", 2, 1)
    if isinstance(getattr(c.node, "padding", None), str):
        c.fail(f"padding is {c.node.padding!r}; pools take integer padding",
               "give the padding as integers >= 0")
    padding = c.ints("padding", 2, 0)
    if len(x) != 3:
        c.fail(f"its input has shape {x}; 2-d pooling takes (C, H, W)",
               "feed it an image-shaped input (fix the edges or the Input shape)")
    return (x[0],) + _window(c, x, kernel, stride, (1, 1), conv_padding(padding, kernel, (1, 1)))


def _flatten(c: NodeCheck, x: Shape) -> Shape:
    start, end = c.ints("start_dim", 1, None)[0], c.ints("end_dim", 1, None)[0]
    nd = len(x)
    for key, d in (("start_dim", start), ("end_dim", end)):
        if not -nd <= d < nd:
            c.fail(f"{key}={d} is outside its input's {nd} dimensions (shape {x}; dimensions "
                   "counted without the batch axis)", f"use {key} in [{-nd}, {nd - 1}]")
    s, e = start % nd, end % nd
    if s > e:
        c.fail(f"start_dim={start} comes after end_dim={end} for input shape {x}",
               "use start_dim <= end_dim")
    return tuple(x[:s]) + (int(np.prod(x[s:e + 1])),) + tuple(x[e + 1:])


SHAPES = {
    "Input": _identity, "Output": _identity,
    "Affine": _dense, "Linear": _dense,
    "Scale": _elementwise, "Threshold": _elementwise,
    "Delay": _delay,
    "Conv1d": lambda c, x: _conv(c, x, 1), "Conv2d": lambda c, x: _conv(c, x, 2),
    "SumPool2d": _pool, "AvgPool2d": _pool,
    "Flatten": _flatten,
    **{name: _neuron for name in ("LIF", "LI", "IF", "I", "CubaLIF", "CubaLI")},
}


def input_shape(name: str, node) -> Shape:
    """The per-step shape of one sample at the graph input ``name`` (from ``input_type``)."""
    c = NodeCheck(name, node, 1.0)
    t = getattr(node, "input_type", None)
    if isinstance(t, dict):
        values = list(t.values())
        t = t.get("input", values[0] if len(values) == 1 else None)
    fix = "declare the input shape: nir.Input(input_type=np.array([features]))"
    if t is None:
        c.fail("the graph input has no shape", fix)
    if isinstance(t, (str, bytes)):
        c.fail(f"its shape is the text {short(t)}", fix)
    try:
        a = np.asarray(t)
    except (TypeError, ValueError):
        c.fail(f"its shape {short(t)} is not a list of sizes", fix)
    if a.dtype.kind not in "iuf" or a.ndim > 1 or a.size == 0:
        c.fail(f"its shape is {short(t)}, not a list of sizes", fix)
    f = a.astype(np.float64).reshape(-1)
    if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)) or np.any(f < 1):
        c.fail(f"its shape {a.tolist()} has a size that is not a whole number >= 1", fix)
    shape = tuple(int(v) for v in f)
    c.fits(budget.nbytes(shape), f"one step of one sample of shape {shape}",
           "use a smaller input")
    return shape


def check_graph(nodes: dict, order: list[str], inputs: dict[str, list[tuple[str, bool]]],
                graph_input: str, dt: float) -> tuple[Shape, dict[str, Shape | None], int]:
    """Check every node's parameters and every edge's shape (module docstring); returns the
    graph input's shape, every node's output shape (None behind a node type spikeport does
    not know: the targets refuse those by name) and the largest number of bytes per sample
    one node's step allocates and frees (a convolution's padded input and windows)."""
    transient = 0
    in_shape = input_shape(graph_input, nodes[graph_input])
    if inputs[graph_input]:
        src = inputs[graph_input][0][0]
        raise GraphError(f"edge ({src!r}, {graph_input!r}) leads into the graph input, whose "
                         "value is the external input", "remove the edge into the Input node")
    shapes: dict[str, Shape | None] = {}
    received: dict[str, Shape | None] = {}
    for name in order:
        node = nodes[name]
        c = NodeCheck(name, node, dt)
        check_arrays(c)
        if name == graph_input:
            x = in_shape
        else:
            ff = [s for s, recurrent in inputs[name] if not recurrent]
            if not ff:
                c.fail("it has no input at the first step (only recurrent edges lead into it)",
                       "give every node a path from the graph input")
            x = shapes[ff[0]]
            for s in ff[1:]:
                if x is None or shapes[s] is None:
                    x = None
                elif shapes[s] != x:
                    c.fail(f"its incoming edges carry different shapes: {ff[0]!r} {x}, "
                           f"{s!r} {shapes[s]}", "make every edge into a node carry the same shape")
        received[name] = x
        rule = SHAPES.get(c.kind)
        shapes[name] = None if rule is None or x is None else rule(c, x)
        transient = max(transient, c.transient)
        if shapes[name] is not None:
            c.fits(budget.nbytes(shapes[name]), f"a value of shape {shapes[name]} per sample",
                   "use a smaller network")
    for name in order:
        for s, recurrent in inputs[name]:
            if recurrent and None not in (shapes[s], received[name]) and shapes[s] != received[name]:
                NodeCheck(name, nodes[name], dt).fail(
                    f"the recurrent edge from {s!r} carries shape {shapes[s]}, its other inputs "
                    f"{received[name]}", "make the recurrent weights map back to the node's input shape")
    return in_shape, shapes, transient


def state_bytes(nodes: dict, shapes: dict[str, Shape | None], dt: float) -> int:
    """Bytes per sample a run keeps from step to step: neuron states, Delay buffers."""
    total = 0
    for name, node in nodes.items():
        shape = shapes.get(name)
        if shape is None:
            continue
        if neurons.is_neuron(node):
            total += len(neurons.model_of(node).states) * budget.nbytes(shape)
        elif isinstance(node, nir.Delay):
            total += delay_steps(node, dt) * (budget.nbytes(shape) + DELAY_STEP_OVERHEAD)
    return total
