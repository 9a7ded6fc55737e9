"""Validation of a NIR graph, once, where it enters spikeport.

:func:`spikeport.ir.program.build_program` calls :func:`check_graph` on every graph, so every
target, the estimator and ``spikeport inspect`` see only graphs that passed it; the targets
then trust what it checked. A graph is refused with a :class:`GraphError` naming the node,
its NIR type, what is wrong (with the shapes or the bad value) and the fix, when

- ``dt`` (metadata or option) is not one positive finite number;
- a parameter is not a numeric array (text, Python objects, complex, ragged, empty) or holds
  NaN / inf (weights, biases, scales, thresholds, time constants, r, v_leak, v_reset, w_in,
  delays), a time constant is not > 0, a delay is negative, or a neuron's per-step
  coefficients (:mod:`spikeport.ir.neurons`) overflow for this dt;
- integer parameters are not integers in range: groups >= 1 dividing the channels,
  stride and dilation >= 1, padding >= 0 or "same" (stride 1) / "valid", pool kernels >= 1,
  Flatten dimensions inside the input's rank;
- shapes disagree along an edge. Shapes are propagated from the ``Input`` node in program
  order (without the batch axis): Affine / Linear weights take the last axis, a convolution
  needs (C, H, W) / (C, L) with C = weight.shape[1] x groups and a kernel no larger than the
  padded input, element-wise parameters (neurons, Scale, Threshold, biases) broadcast with
  the value (numpy rules, no more dimensions than the value); fan-in edges into one node
  carry equal shapes, and a recurrent edge carries the shape its target receives;
- a size is beyond the memory budget (:mod:`spikeport.core.budget`): a parameter, a value of
  one sample, a Delay's buffer, a convolution's padded input or its windows.

The shapes found are kept on the Program (``Program.shapes``); :func:`check_input` holds the
run-time side: an input array against the graph's Input shape, and the recording it implies
against the budget. :func:`check_values` refuses a recording that overflowed float64.

Declared types (``input_type`` / ``output_type`` of nodes other than the graph Input) are not
checked: writers fill them inconsistently and no target reads them.
"""
from __future__ import annotations

from typing import NoReturn

import nir
import numpy as np

from spikeport.core import budget
from spikeport.core.errors import GraphError
from spikeport.ir import neurons

Shape = tuple[int, ...]

DELAY_STEP_OVERHEAD = 128  # bytes a target spends per buffered step beyond its values

# The numeric array parameters of each NIR node type: (attribute, required, rule), rule
# "positive" (> 0), "non-negative" (>= 0) or None. An optional parameter may be None.
_TIME = "positive"
ARRAYS: dict[str, tuple[tuple[str, bool, str | None], ...]] = {
    "Affine": (("weight", True, None), ("bias", True, None)),
    "Linear": (("weight", True, None),),
    "Scale": (("scale", True, None),),
    "Conv1d": (("weight", True, None), ("bias", True, None)),
    "Conv2d": (("weight", True, None), ("bias", True, None)),
    "Threshold": (("threshold", True, None),),
    "Delay": (("delay", True, "non-negative"),),
    "LIF": (("tau", True, _TIME), ("r", True, None), ("v_leak", True, None),
            ("v_threshold", True, None), ("v_reset", False, None)),
    "LI": (("tau", True, _TIME), ("r", True, None), ("v_leak", True, None)),
    "IF": (("r", True, None), ("v_threshold", True, None), ("v_reset", False, None)),
    "I": (("r", True, None),),
    "CubaLIF": (("tau_syn", True, _TIME), ("tau_mem", True, _TIME), ("r", True, None),
                ("v_leak", True, None), ("w_in", False, None), ("v_threshold", True, None),
                ("v_reset", False, None)),
    "CubaLI": (("tau_syn", True, _TIME), ("tau_mem", True, _TIME), ("r", True, None),
               ("v_leak", True, None), ("w_in", False, None)),
}

_KINDS = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers",
          "V": "raw records", "M": "dates", "m": "time spans"}


# --------------------------------------------------------------------------- dt


def check_dt(value, source: str = "dt") -> float:
    """``value`` as the simulation step in seconds: one real number, finite and > 0."""
    fix = "give dt as one positive number of seconds, e.g. 1e-4"
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        raise GraphError(f"{source} is the text {_short(value)}, not a number", fix)
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise GraphError(f"{source} is {value!r}, not a number", fix)
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        raise GraphError(f"{source} is not a number ({type(value).__name__})", fix) from None
    if a.ndim != 0:
        raise GraphError(f"{source} is an array of shape {a.shape}, not one number", fix)
    if a.dtype.kind not in "iuf":
        raise GraphError(f"{source} holds {_KINDS.get(a.dtype.kind, a.dtype)}, not a number", fix)
    dt = float(a)
    if not (np.isfinite(dt) and dt > 0):
        raise GraphError(f"{source} must be a positive number of seconds, got {dt}", fix)
    return dt


# --------------------------------------------------------------------------- parameters


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


class NodeCheck:
    """The checks of one node, each failure worded ``node 'name' (Type): problem``."""

    def __init__(self, name: str, node, dt: float):
        self.name, self.node, self.dt = name, node, dt
        self.kind = type(node).__name__
        self.arrays: dict[str, np.ndarray] = {}
        self.transient = 0  # bytes per sample a step of this node allocates and frees

    def fail(self, problem: str, fix: str) -> NoReturn:
        raise GraphError(f"node {self.name!r} ({self.kind}): {problem}", fix)

    def fits(self, n_bytes: int, what: str, fix: str) -> None:
        budget.check_bytes(n_bytes, f"node {self.name!r} ({self.kind}): {what}", fix, GraphError)

    def array(self, key: str, required: bool = True, rule: str | None = None) -> np.ndarray | None:
        """The parameter ``key`` as a float64 array: numeric, non-empty, finite, within the
        budget, and > 0 / >= 0 if ``rule`` says so."""
        value = getattr(self.node, key, None)
        fix = f"give {key} as an array of finite numbers"
        if value is None:
            if required:
                self.fail(f"{key} is missing", fix)
            return None
        if isinstance(value, (str, bytes)):
            self.fail(f"{key} is the text {_short(value)}, not numbers", fix)
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as e:
            self.fail(f"{key} is not a rectangular array ({str(e).splitlines()[0][:80]})", fix)
        if a.dtype.kind not in "biuf":
            self.fail(f"{key} holds {_KINDS.get(a.dtype.kind, a.dtype)} (dtype {a.dtype}), "
                      "not numbers", fix)
        if a.size == 0:
            self.fail(f"{key} is empty (shape {a.shape})", fix)
        self.fits(budget.nbytes(a.shape), f"{key} of shape {a.shape}",
                  "use a smaller network, or raise the memory budget")
        f = np.asarray(a, dtype=np.float64)
        bad = ~np.isfinite(f)
        if rule == "positive":
            bad |= ~(f > 0)
        elif rule == "non-negative":
            bad |= ~(f >= 0)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), f.shape) if f.ndim else ()
            where = f" at index {tuple(int(i) for i in idx)}" if f.ndim else ""
            count = f" ({int(bad.sum())} of {f.size} values)" if f.size > 1 else ""
            need = {"positive": "finite and > 0", "non-negative": "finite and >= 0"}.get(rule, "finite")
            self.fail(f"{key} holds {f[idx]}{where}{count}; it must be {need}",
                      f"give {key} {need} values" + (" (seconds)" if key.startswith("tau") or key == "delay" else ""))
        self.arrays[key] = f
        return f

    def ints(self, key: str, n: int, low: int | None) -> tuple[int, ...]:
        """The integer parameter ``key`` as ``n`` Python ints (an int, or an array of 1 or n
        integral numbers), each >= ``low``."""
        value = getattr(self.node, key, None)
        fix = (f"give {key} as an integer" + (f" >= {low}" if low is not None else "")
               + (f" or {n} of them" if n > 1 else ""))
        if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
            self.fail(f"{key} is {_short(value)}, not an integer", fix)
        try:
            a = np.asarray(value)
        except (TypeError, ValueError):
            self.fail(f"{key} is not an integer ({type(value).__name__})", fix)
        if a.dtype.kind not in "iuf" or a.ndim > 1 or a.size not in (1, n):
            self.fail(f"{key} is {_short(value)} (dtype {a.dtype}, shape {a.shape})", fix)
        f = a.astype(np.float64).reshape(-1)
        if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
            self.fail(f"{key} is {_short(value)}, not whole numbers", fix)
        out = tuple(int(v) for v in (np.repeat(f, n) if f.size == 1 else f))
        if low is not None and min(out) < low:
            self.fail(f"{key} is {out if n > 1 else out[0]}; it must be >= {low}", fix)
        return out

    def broadcast(self, shape: Shape, arrays: dict[str, np.ndarray], grow: bool = True) -> Shape:
        """The shape of a value of ``shape`` combined element-wise with ``arrays`` (numpy
        broadcasting; an array may not have more dimensions than the value, and with
        ``grow=False`` may not enlarge it)."""
        out = shape
        for key, a in arrays.items():
            try:
                if a.ndim > len(shape):
                    raise ValueError
                new = np.broadcast_shapes(out, a.shape)
                if not grow and new != out:
                    raise ValueError
            except ValueError:
                self.fail(f"{key} has shape {a.shape}, which does not fit its input of shape "
                          f"{shape}", f"give {key} one value per element of the input ({shape}) "
                          "or a single value")
            out = tuple(int(d) for d in new)
        return out


def check_arrays(c: NodeCheck) -> None:
    for key, required, rule in ARRAYS.get(c.kind, ()):
        c.array(key, required, rule)


# --------------------------------------------------------------------------- shapes


def pair(v) -> tuple[int, int]:
    """A NIR int-or-pair parameter (kernel, stride, padding, dilation) as (h, w)."""
    v = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(v[0]), int(v[-1])) if v.size <= 2 else (int(v[0]), int(v[1]))


def same_padding(kernel, dilation) -> list[tuple[int, int]]:
    """torch's "same" padding of a stride-1 convolution: (before, after) per spatial
    dimension, d (k - 1) in total, the odd extra element after (right / bottom)."""
    tot = [int(d) * (int(k) - 1) for k, d in zip(kernel, dilation)]
    return [(t // 2, t - t // 2) for t in tot]


def conv_padding(padding, kernel, dilation) -> list[tuple[int, int]]:
    """(before, after) per spatial dimension of a convolution's or pool's zero padding:
    an int per dimension (both sides), "valid" (none) or "same" (:func:`same_padding`)."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * len(kernel)
        if padding == "same":
            return same_padding(kernel, dilation)
        raise GraphError(f"unknown padding {padding!r}", "use integers, 'same' or 'valid'")
    return [(int(p), int(p)) for p in padding]


def delay_steps(node: nir.Delay, dt: float) -> int:
    """The shift of a Delay node in steps, round(delay / dt). One non-negative value per
    node: every target keeps a single buffer of that many steps."""
    d = np.round(np.asarray(node.delay, dtype=np.float64) / dt)
    if np.any(d < 0) or not np.all(d == d.flat[0]):
        raise GraphError("Delay with negative or per-neuron different delays is not supported",
                         "use one non-negative delay per Delay node")
    return int(d.flat[0])


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
        c.fail(f"its shape is the text {_short(t)}", fix)
    try:
        a = np.asarray(t)
    except (TypeError, ValueError):
        c.fail(f"its shape {_short(t)} is not a list of sizes", fix)
    if a.dtype.kind not in "iuf" or a.ndim > 1 or a.size == 0:
        c.fail(f"its shape is {_short(t)}, not a list of sizes", fix)
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


# --------------------------------------------------------------------------- run time


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


def check_input(x, shape: Shape, step_bytes: int = 0, sample_bytes: int = 0) -> np.ndarray:
    """``x`` as a float64 array (T, B, *shape), refused unless it holds finite numbers, at
    least one step and one sample, and one step of one sample has the graph input's
    ``shape``; and unless the run fits the memory budget: the recording of ``step_bytes``
    per step and sample (counted twice: the steps, then their stack), ``sample_bytes`` per
    sample (state kept from step to step, and what one step allocates and frees) and the
    float64 input."""
    shape = tuple(int(s) for s in shape)
    want = f"(T, B, {', '.join(map(str, shape))})"
    fix = "pass x with a time axis, a batch axis, then one step's input shape"
    if isinstance(x, (str, bytes)):
        raise GraphError(f"the input is text, the graph expects numbers {want}", fix)
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        raise GraphError(f"the input is not a rectangular array; the graph expects {want}", fix) from None
    if a.dtype.kind not in "biuf":
        raise GraphError(f"the input holds {_KINDS.get(a.dtype.kind, a.dtype)}, not numbers",
                         "pass a numeric array (spikes or values)")
    if a.ndim != 2 + len(shape) or tuple(a.shape[2:]) != shape:
        raise GraphError(f"input has shape {a.shape}, the graph expects {want}", fix)
    T, B = a.shape[:2]
    if T < 1 or B < 1:
        raise GraphError(f"the input has {T} time steps and {B} samples", "pass at least one "
                         "step and one sample")
    need = 2 * T * B * int(step_bytes) + B * int(sample_bytes) + budget.nbytes(a.shape)
    budget.check_bytes(need, f"running {T} steps x {B} samples", "run fewer samples at a time "
                       "(--samples) or fewer steps", GraphError)
    f = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(f)
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), f.shape))
        raise GraphError(f"the input holds {f[idx]} at index {idx} ({int(bad.sum())} values "
                         "are not finite)", "pass finite input values")
    return f


def check_values(values: dict, kinds: dict[str, str] | None = None, spiking=()) -> None:
    """Refuse a recording in which some node's value overflowed float64 (inf or NaN): the
    graph's magnitudes are beyond what the simulation represents. ``values``: node ->
    (T, B, ...) numpy array; ``kinds``: node -> NIR type, for the message; ``spiking``:
    nodes whose values are 0 / 1 by construction, not looked at."""
    skip = set(spiking)
    for name, v in values.items():
        if name not in skip and v.dtype.kind == "f" and not np.isfinite(v).all():
            t = int(np.argmax(~np.isfinite(v).reshape(v.shape[0], -1).all(axis=1)))
            kind = f" ({kinds[name]})" if kinds and name in kinds else ""
            raise GraphError(f"node {name!r}{kind} overflowed float64 at step {t}: its value is "
                             "not finite", "scale the graph's weights or inputs down (their "
                             "magnitudes are beyond float64 in this simulation)")
