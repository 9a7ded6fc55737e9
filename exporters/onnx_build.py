"""ONNX graph building for the onnx target (:mod:`spikeport.exporters.onnx`): unique tensor
names, the symbolic tensors neuron steps run on, and one builder per NIR node type.

Builders are registered per NIR class name in :data:`BUILDERS` (mirroring
:data:`spikeport.exporters.reference.KERNELS`) as ``build(ctx, node, x, shape) -> (y,
out_shape)``, where ``x`` and ``y`` are tensor names and shapes leave out the batch axis.
Every builder emits one ONNX node per arithmetic operation of the reference, in the same
order, so each element-wise result rounds as numpy rounds it. Neuron populations are not
written here at all: their step functions (:mod:`spikeport.ir.neurons`) run on
:class:`Sym` tensors, whose ``*`` and ``+`` emit the Mul and Add nodes.
"""
from __future__ import annotations

import re

import nir
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spikeport.core.registry import Registry
from spikeport.ir import neurons
from spikeport.ir.program import conv_padding, delay_steps, pair

DOUBLE = TensorProto.DOUBLE

BUILDERS: Registry = Registry("ONNX node builder")


# --------------------------------------------------------------------------- graph emitter


def safe_name(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class Emitter:
    """Collects ONNX nodes and initializers with unique tensor names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = safe_name(hint)
        name, k = base, 1
        while name in self._used:
            k += 1
            name = f"{base}_{k}"
        self._used.add(name)
        return name

    def const(self, hint: str, value, dtype=np.float64) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def ints(self, hint: str, values) -> str:
        return self.const(hint, np.asarray(values, dtype=np.int64), np.int64)

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.fresh(f"{hint}_op"),
                                           **attrs))
        return out


class Ctx:
    """What a builder sees of the node being compiled."""

    def __init__(self, em: Emitter, name: str, dt: float, states: list[dict]):
        self.em, self.name, self.dt, self._states = em, name, dt, states
        self.prefix = safe_name(name)

    def h(self, what: str) -> str:
        return f"{self.prefix}__{what}"

    def const(self, what: str, value) -> str:
        return self.em.const(self.h(what), value)

    def op(self, op_type: str, inputs: list[str], what: str, **attrs) -> str:
        return self.em.op(op_type, inputs, self.h(what), **attrs)

    def mul(self, a, b, what):
        return self.op("Mul", [a, b], what)

    def add(self, a, b, what):
        return self.op("Add", [a, b], what)

    def state(self, kind: str, shape: tuple[int, ...]) -> dict:
        """Declare a state input; the builder sets ``["new"]`` to the tensor of its next value."""
        s = {"node": self.name, "kind": kind, "shape": tuple(int(d) for d in shape),
             "input": self.em.fresh(f"state__{self.prefix}__{kind}"), "new": None}
        self._states.append(s)
        return s


# @builder(nir.X, ...) registers ``cls.build(ctx, node, x, shape) -> (y, out_shape)``
builder = BUILDERS.for_types


def _arr(v):
    return np.asarray(v, dtype=np.float64)


def broadcast_shape(shape, *params) -> tuple[int, ...]:
    """Value shape (no batch) of ``x (B, *shape)`` combined element-wise with ``params``
    (that they broadcast was checked with the graph: :mod:`spikeport.ir.checks`)."""
    return tuple(int(d) for d in np.broadcast_shapes(tuple(shape), *(np.shape(p) for p in params)))


# --------------------------------------------------------------------------- builders


@builder(nir.Input, nir.Output)
class Identity:
    """identity"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        return c.op("Identity", [x], "id"), shape


@builder(nir.Affine)
class Affine:
    """MatMul(x, W^T) then Add(b)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        w, b = _arr(node.weight), _arr(node.bias)
        y = c.op("MatMul", [x, c.const("wT", w.T)], "matmul")
        out = broadcast_shape(tuple(shape[:-1]) + (w.shape[0],), b)
        return c.add(y, c.const("b", b), "affine"), out


@builder(nir.Linear)
class Linear:
    """MatMul(x, W^T)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        w = _arr(node.weight)
        return c.op("MatMul", [x, c.const("wT", w.T)], "matmul"), tuple(shape[:-1]) + (w.shape[0],)


@builder(nir.Scale)
class Scale:
    """Mul(x, s)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        s = _arr(node.scale)
        return c.mul(x, c.const("s", s), "scale"), broadcast_shape(shape, s)


def _conv2d(c: Ctx, x, shape, w, b, stride, padding, dilation, groups, tag="conv"):
    """The reference's conv2d (spikeport.exporters.reference.conv2d) as Pad -> Gather (im2col) ->
    MatMul -> Add(bias). x is (B, C, H, W); returns (y, (O, Ho, Wo)). Channels, groups,
    padding, stride, dilation and the kernel's fit were checked with the graph
    (:mod:`spikeport.ir.checks`)."""
    C, H, W = shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    ph, pw = conv_padding(padding, (kh, kw), (dh, dw))
    Hp, Wp = H + ph[0] + ph[1], W + pw[0] + pw[1]
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    Ho, Wo = (Hp - eh) // sh + 1, (Wp - ew) // sw + 1
    if ph != (0, 0) or pw != (0, 0):
        pads = c.em.ints(c.h(f"{tag}_pads"), [0, 0, ph[0], pw[0], 0, 0, ph[1], pw[1]])
        x = c.op("Pad", [x, pads], f"{tag}_pad", mode="constant")
    x = c.op("Reshape", [x, c.em.ints(c.h(f"{tag}_s1"), [0, C, Hp * Wp])], f"{tag}_flat")
    rows = (np.arange(Ho) * sh)[:, None, None, None] + (np.arange(kh) * dh)[None, None, :, None]
    cols = (np.arange(Wo) * sw)[None, :, None, None] + (np.arange(kw) * dw)[None, None, None, :]
    idx = (rows * Wp + cols).reshape(Ho * Wo, kh * kw)
    cols_t = c.op("Gather", [x, c.em.ints(c.h(f"{tag}_idx"), idx)], f"{tag}_im2col", axis=2)
    # (B, C, Ho*Wo, kh*kw) -> (B, G, Ho*Wo, Cg*kh*kw), flattened in (c, kh, kw) order like
    # the reference's window matrix and weight.reshape(og, -1)
    G, og = groups, O // groups
    t = c.op("Reshape", [cols_t, c.em.ints(c.h(f"{tag}_s2"), [0, G, Cg, Ho * Wo, kh * kw])],
             f"{tag}_groups")
    t = c.op("Transpose", [t], f"{tag}_t1", perm=[0, 1, 3, 2, 4])
    t = c.op("Reshape", [t, c.em.ints(c.h(f"{tag}_s3"), [0, G, Ho * Wo, Cg * kh * kw])],
             f"{tag}_rows")
    wm = np.stack([w[g * og:(g + 1) * og].reshape(og, -1).T for g in range(G)])  # (G, Cg*k*k, og)
    y = c.op("MatMul", [t, c.const(f"{tag}_w", wm)], f"{tag}_matmul")  # (B, G, Ho*Wo, og)
    y = c.op("Transpose", [y], f"{tag}_t2", perm=[0, 1, 3, 2])        # (B, G, og, Ho*Wo)
    y = c.op("Reshape", [y, c.em.ints(c.h(f"{tag}_s4"), [0, O, Ho, Wo])], f"{tag}_out")
    y = c.add(y, c.const(f"{tag}_b", np.asarray(b, np.float64).reshape(1, -1, 1, 1)), f"{tag}_bias")
    return y, (O, Ho, Wo)


@builder(nir.Conv2d)
class Conv2d:
    """2-d convolution as Pad/Gather/MatMul/Add (zero padding, stride, dilation, groups, bias)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        w = _arr(node.weight)
        padding = node.padding if isinstance(node.padding, str) else pair(node.padding)
        return _conv2d(c, x, shape, w, _arr(node.bias), pair(node.stride), padding,
                       pair(node.dilation), int(node.groups))


@builder(nir.Conv1d)
class Conv1d:
    """1-d convolution, computed as a 2-d one of height 1"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        w = _arr(node.weight)[:, :, None, :]
        p = node.padding
        padding = p if isinstance(p, str) else (0, int(np.atleast_1d(p)[0]))
        x = c.op("Unsqueeze", [x, c.em.ints(c.h("ax"), [2])], "unsq")
        y, (O, _, L) = _conv2d(c, x, (shape[0], 1, shape[1]), w, _arr(node.bias),
                               (1, int(np.atleast_1d(node.stride)[0])), padding,
                               (1, int(np.atleast_1d(node.dilation)[0])), int(node.groups))
        return c.op("Squeeze", [y, c.em.ints(c.h("ax2"), [2])], "sq"), (O, L)


@builder(nir.SumPool2d, nir.AvgPool2d)
class Pool2d:
    """sum (or average: then Div by k*k) over k x k windows as a depthwise ones-convolution"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        k, s, p = pair(node.kernel_size), pair(node.stride), pair(node.padding)
        C = shape[0]
        y, out = _conv2d(c, x, shape, np.ones((C, 1, *k)), np.zeros(C), s, p, (1, 1), C, "pool")
        if isinstance(node, nir.AvgPool2d):
            y = c.op("Div", [y, c.const("area", np.float64(k[0] * k[1]))], "avg")
        return y, out


@builder(nir.Flatten)
class Flatten:
    """Reshape; dimensions counted without the batch axis"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        nd = len(shape)
        s, e = int(node.start_dim) % nd, int(node.end_dim) % nd
        new = tuple(shape[:s]) + (int(np.prod(shape[s:e + 1])),) + tuple(shape[e + 1:])
        return c.op("Reshape", [x, c.em.ints(c.h("shape"), [0, *new])], "flatten"), new


@builder(nir.Threshold)
class Threshold:
    """z = Cast(Greater(x, theta))"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        th = _arr(node.threshold)
        z = c.op("Greater", [x, c.const("v_th", th)], "gt")
        return c.op("Cast", [z], "z", to=DOUBLE), broadcast_shape(shape, th)


@builder(nir.Delay)
class Delay:
    """y[k] = x[k - round(delay / dt)]: a [batch, steps, ...] buffer (Gather, Slice, Concat)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        steps = delay_steps(node, c.dt)
        if steps == 0:
            return c.op("Identity", [x], "id"), shape
        st = c.state("delay", (steps, *shape))
        y = c.op("Gather", [st["input"], c.em.ints(c.h("zero"), np.int64(0))], "head", axis=1)
        xin = c.op("Unsqueeze", [x, c.em.ints(c.h("ax"), [1])], "unsq")
        if steps == 1:
            st["new"] = xin
        else:
            rest = c.op("Slice", [st["input"], c.em.ints(c.h("start"), [1]),
                                  c.em.ints(c.h("end"), [steps]), c.em.ints(c.h("axes"), [1])],
                        "tail")
            st["new"] = c.op("Concat", [rest, xin], "shift", axis=1)
        return y, shape


# --------------------------------------------------------------------------- neurons


class Sym:
    """A tensor of the graph being built, for the step functions of :mod:`spikeport.ir.neurons`.

    ``a * b`` and ``a + b`` emit one Mul / Add node each, in the order the expression is
    evaluated, so the step becomes the same operation tree as in numpy (never a fused op).
    ``__array_ufunc__ = None`` makes numpy hand an ``ndarray * Sym`` over to
    :meth:`__rmul__` instead of broadcasting over the Sym as an object; such arrays become
    initializers."""

    __array_ufunc__ = None

    def __init__(self, c: Ctx, name: str):
        self.c, self.name = c, name

    def __mul__(self, other):
        return _emit("Mul", self, other)

    def __rmul__(self, other):
        return _emit("Mul", other, self)

    def __add__(self, other):
        return _emit("Add", self, other)

    def __radd__(self, other):
        return _emit("Add", other, self)


def _emit(op_type: str, *args, **attrs) -> Sym:
    """One ONNX node of ``op_type`` on Syms (and constants) -> its output as a Sym."""
    c = next(a.c for a in args if isinstance(a, Sym))
    names = [a.name if isinstance(a, Sym) else c.const("k", a) for a in args]
    return Sym(c, c.op(op_type, names, op_type.lower(), **attrs))


ONNX_OPS = neurons.Ops(greater=lambda a, b: _emit("Greater", a, b),
                       where=lambda z, a, b: _emit("Where", z, a, b),
                       as_float=lambda z: _emit("Cast", z, to=DOUBLE))


class Neuron:
    """A neuron population: its step from :mod:`spikeport.ir.neurons` run on :class:`Sym`
    tensors, one state input per state of the model, the coefficients as initializers."""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        model = neurons.model_of(node)
        p = model.params(node, c.dt)
        out = broadcast_shape(shape, *p.fields().values())
        states = [c.state(kind, out) for kind in model.states]
        y, new = model.step(p.map(lambda k, v: Sym(c, c.const(k, v))), Sym(c, x),
                            tuple(Sym(c, s["input"]) for s in states), ONNX_OPS)
        for s, v in zip(states, new):
            s["new"] = v.name
        return y.name, out


for _entry in neurons.NEURONS.entries():  # one builder for every neuron type, its step's summary
    BUILDERS.add(_entry.name, Neuron, _entry.summary)
