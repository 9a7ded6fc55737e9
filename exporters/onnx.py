"""The ONNX target: a NIR graph as a per-time-step float64 ONNX model, run by onnxruntime.

:func:`compile` builds one ONNX graph (opset 17, all tensors DOUBLE) that computes a single
time step of the :class:`~spikeport.ir.program.Program`:

- inputs: ``x`` (this step's input, ``[batch, *input_shape]``, symbolic batch) and one
  state tensor per stateful quantity: the membrane ``v`` of LIF / LI / IF / I, ``i`` and
  ``v`` of CubaLIF / CubaLI, the buffer of a Delay (``[batch, steps, *shape]``), and the
  previous-step value of every node that is the source of a recurrent (cycle-closing) edge;
- outputs: the value of every node at this step (spikes for spiking nodes), then the new
  value of every state, in the same order as the state inputs.

Every kernel mirrors :mod:`spikeport.exporters.reference` operation for operation, in float64, with the
coefficients of :mod:`spikeport.core.units` baked in as DOUBLE initializers and one ONNX node per
arithmetic operation (separate ``Mul`` and ``Add``, never a fused op), so that each
element-wise update rounds exactly as numpy does: e.g. LIF is ``v = d*v + (g*x + l)``,
``z = Cast(Greater(v, v_th))``, ``v = Where(z, v_reset, v)``. Fan-in edges are summed left to
right in the program's edge order; a recurrent edge reads the state holding the source's
previous value (zeros at the first step, where the reference skips the term: adding 0.0 is
exact). onnxruntime's CPU provider has no double ``Conv`` or ``AveragePool``, so
convolutions and pools are lowered as the reference computes them: zero ``Pad``, a ``Gather``
of the k x k windows (im2col), a ``MatMul`` with the (grouped) weight matrix, then the bias
``Add`` (and the ``Div`` of an average pool). Graph optimisations are switched off at run
time so that onnxruntime cannot fuse or reassociate any of it.

Bit identity with the reference holds for every element-wise operation unconditionally. The
weighted sums (Affine, Linear, Conv, pools) are computed by different matrix kernels (numpy's
BLAS vs onnxruntime's); they agree bit for bit whenever those sums are exact in float64 --
which they are for binary spikes and float32 weights (see :mod:`spikeport.core.units`) -- and
otherwise within float64 rounding.

The model's ``metadata_props`` carry everything :func:`run` needs (key ``spikeport``, JSON),
so a saved ``.onnx`` file is self-contained: :func:`load` reads it back into an
:class:`OnnxArtifact`.

ONNX node builders are registered per NIR class name in :data:`BUILDERS` (mirroring
:data:`spikeport.exporters.reference.KERNELS`); a graph with any other node is refused at compile time,
naming the node and the supported set.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spikeport.ir.program import SPIKING, Program, build_program, pair
from spikeport.core import units
from spikeport.core.errors import GraphError
from spikeport.core.io import atomic_write
from spikeport.core.recording import Recording
from spikeport.core.registry import Registry

OPSET = 17
FORMAT = "spikeport-onnx/1"
METADATA_KEY = "spikeport"
INPUT_NAME = "x"
DOUBLE = TensorProto.DOUBLE

BUILDERS: Registry = Registry("ONNX node builder")


# --------------------------------------------------------------------------- artifact


@dataclass(frozen=True)
class StateSpec:
    """One state tensor carried from step to step."""
    node: str                 # the NIR node it belongs to
    kind: str                 # "v", "i", "delay" or "prev" (previous value of a recurrent source)
    input: str                # ONNX graph input name
    output: str               # ONNX graph output name (its new value)
    shape: tuple[int, ...]    # shape without the batch axis (initial value: zeros)


@dataclass
class OnnxArtifact:
    model: onnx.ModelProto
    input_name: str
    input_shape: tuple[int, ...]        # one step of one sample (no time, no batch)
    order: list[str]                    # program order of the NIR nodes
    values: dict[str, str]              # NIR node -> ONNX output holding its value
    shapes: dict[str, tuple[int, ...]]  # NIR node -> value shape without batch
    states: list[StateSpec]
    spiking: list[str]
    output: str
    dt: float
    membranes: dict[str, str] = field(default_factory=dict)  # spiking node -> its "v" state output

    def metadata(self) -> dict:
        return {"format": FORMAT, "input_name": self.input_name,
                "input_shape": list(self.input_shape), "order": self.order,
                "values": self.values, "shapes": {k: list(v) for k, v in self.shapes.items()},
                "states": [{"node": s.node, "kind": s.kind, "input": s.input, "output": s.output,
                            "shape": list(s.shape)} for s in self.states],
                "spiking": self.spiking, "output": self.output, "dt": self.dt,
                "membranes": self.membranes}

    @classmethod
    def from_model(cls, model: onnx.ModelProto, source: str = "the ONNX model") -> "OnnxArtifact":
        props = {p.key: p.value for p in model.metadata_props}
        try:
            meta = json.loads(props[METADATA_KEY])
            if meta.get("format") != FORMAT:
                raise ValueError(meta.get("format"))
            return cls(model=model, input_name=meta["input_name"],
                       input_shape=tuple(meta["input_shape"]), order=list(meta["order"]),
                       values=dict(meta["values"]),
                       shapes={k: tuple(v) for k, v in meta["shapes"].items()},
                       states=[StateSpec(s["node"], s["kind"], s["input"], s["output"],
                                         tuple(s["shape"])) for s in meta["states"]],
                       spiking=list(meta["spiking"]), output=meta["output"],
                       dt=float(meta["dt"]), membranes=dict(meta.get("membranes", {})))
        except (KeyError, ValueError, TypeError) as e:
            raise GraphError(f"{source} is not a spikeport ONNX artifact (missing or unreadable "
                             f"'{METADATA_KEY}' metadata: {type(e).__name__})",
                             "export it with `spikeport export --to onnx` or "
                             "spikeport.exporters.onnx.save") from None


# --------------------------------------------------------------------------- graph emitter


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class Emitter:
    """Collects ONNX nodes and initializers with unique tensor names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._used: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = _safe(hint)
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
        self.prefix = _safe(name)

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


def _broadcast(shape, *params, name="") -> tuple[int, ...]:
    """Value shape (no batch) of ``x (B, *shape)`` combined element-wise with ``params``."""
    try:
        for p in params:
            p = np.shape(p)
            if len(p) > len(shape):
                raise ValueError
            shape = np.broadcast_shapes(shape, p)
    except ValueError:
        raise GraphError(f"node {name!r}: parameter shapes {[np.shape(p) for p in params]} do not "
                         f"broadcast against its input shape {tuple(shape)}",
                         "give the node parameters of its population shape") from None
    return tuple(int(d) for d in shape)


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
        if w.ndim != 2 or not shape or shape[-1] != w.shape[1]:
            raise GraphError(f"node {c.name!r} (Affine): weight {w.shape} does not fit input shape "
                             f"{shape}", "fix the weight shape or the edges")
        y = c.op("MatMul", [x, c.const("wT", w.T)], "matmul")
        out = _broadcast(tuple(shape[:-1]) + (w.shape[0],), b, name=c.name)
        return c.add(y, c.const("b", b), "affine"), out


@builder(nir.Linear)
class Linear:
    """MatMul(x, W^T)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        w = _arr(node.weight)
        if w.ndim != 2 or not shape or shape[-1] != w.shape[1]:
            raise GraphError(f"node {c.name!r} (Linear): weight {w.shape} does not fit input shape "
                             f"{shape}", "fix the weight shape or the edges")
        return c.op("MatMul", [x, c.const("wT", w.T)], "matmul"), tuple(shape[:-1]) + (w.shape[0],)


@builder(nir.Scale)
class Scale:
    """Mul(x, s)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        s = _arr(node.scale)
        return c.mul(x, c.const("s", s), "scale"), _broadcast(shape, s, name=c.name)


def _conv2d(c: Ctx, x, shape, w, b, stride, padding, dilation, groups, tag="conv"):
    """The reference's conv2d (spikeport.exporters.reference.conv2d) as Pad -> Gather (im2col) ->
    MatMul -> Add(bias). x is (B, C, H, W); returns (y, (O, Ho, Wo))."""
    if len(shape) != 3:
        raise GraphError(f"node {c.name!r}: a 2-d convolution needs input (C, H, W), got {shape}",
                         "feed it an image-shaped input")
    C, H, W = shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    if groups < 1 or C != Cg * groups or O % groups:
        raise GraphError(f"node {c.name!r}: weight {w.shape} with groups={groups} does not fit "
                         f"{C} input channels", "fix the weight shape or groups")
    if isinstance(padding, str):
        if padding == "valid":
            ph = pw = (0, 0)
        elif padding == "same":  # torch pads the extra element on the right/bottom
            th, tw = dh * (kh - 1), dw * (kw - 1)
            ph, pw = (th // 2, th - th // 2), (tw // 2, tw - tw // 2)
        else:
            raise GraphError(f"node {c.name!r}: unknown padding {padding!r}",
                             "use an integer pair, 'same' or 'valid'")
    else:
        ph, pw = (padding[0], padding[0]), (padding[1], padding[1])
    if min(*ph, *pw) < 0 or min(sh, sw, dh, dw) < 1:
        raise GraphError(f"node {c.name!r}: negative padding or non-positive stride/dilation",
                         "use padding >= 0, stride >= 1, dilation >= 1")
    Hp, Wp = H + ph[0] + ph[1], W + pw[0] + pw[1]
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if Hp < eh or Wp < ew:
        raise GraphError(f"node {c.name!r}: kernel {(kh, kw)} (dilation {(dh, dw)}) is larger "
                         f"than the padded input {(Hp, Wp)}", "use a smaller kernel or more padding")
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
        if len(shape) != 2:
            raise GraphError(f"node {c.name!r}: a 1-d convolution needs input (C, L), got {shape}",
                             "feed it a (channels, length) input")
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
        if len(shape) != 3:
            raise GraphError(f"node {c.name!r}: pooling needs input (C, H, W), got {shape}",
                             "feed it an image-shaped input")
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
        if nd == 0:
            raise GraphError(f"node {c.name!r} (Flatten) receives a scalar per sample",
                             "flatten a tensor of rank >= 1")
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
        return c.op("Cast", [z], "z", to=DOUBLE), _broadcast(shape, th, name=c.name)


@builder(nir.Delay)
class Delay:
    """y[k] = x[k - round(delay / dt)]: a [batch, steps, ...] buffer (Gather, Slice, Concat)"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        d = np.round(_arr(node.delay) / c.dt)
        if np.any(d < 0) or not np.all(d == d.flat[0]):
            raise GraphError("Delay with negative or per-neuron different delays is not supported",
                             "use one non-negative delay per Delay node")
        steps = int(d.flat[0])
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


def _threshold_params(node):
    v_th = _arr(getattr(node, "v_threshold", np.inf))
    v_reset = getattr(node, "v_reset", None)
    return v_th, (np.zeros_like(v_th) if v_reset is None else _arr(v_reset))


def _fire(c: Ctx, v, v_th, v_reset):
    """z = [v > v_th] as double; v = Where(z, v_reset, v)."""
    zb = c.op("Greater", [v, c.const("v_th", v_th)], "gt")
    z = c.op("Cast", [zb], "z", to=DOUBLE)
    return z, c.op("Where", [zb, c.const("v_reset", v_reset), v], "reset")


@builder(nir.LIF)
class LIF:
    """v' = d v + (g x + l); z = [v' > v_th]; v = v_reset where z"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        d, g, l = units.lif_coefficients(node.tau, node.r, node.v_leak, c.dt)
        v_th, v_reset = _threshold_params(node)
        out = _broadcast(shape, d, g, l, v_th, v_reset, name=c.name)
        st = c.state("v", out)
        v = c.add(c.mul(c.const("d", d), st["input"], "dv"),
                  c.add(c.mul(c.const("g", g), x, "gx"), c.const("l", l), "gxl"), "v1")
        z, st["new"] = _fire(c, v, v_th, v_reset)
        return z, out


@builder(nir.LI)
class LI:
    """v' = d v + (g x + l); output v"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        d, g, l = units.lif_coefficients(node.tau, node.r, node.v_leak, c.dt)
        out = _broadcast(shape, d, g, l, name=c.name)
        st = c.state("v", out)
        v = c.add(c.mul(c.const("d", d), st["input"], "dv"),
                  c.add(c.mul(c.const("g", g), x, "gx"), c.const("l", l), "gxl"), "v1")
        st["new"] = v
        return v, out


@builder(nir.IF)
class IF:
    """v' = v + g x with g = dt r; z = [v' > v_th]; v = v_reset where z"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        g = units.if_gain(node.r, c.dt)
        v_th, v_reset = _threshold_params(node)
        out = _broadcast(shape, g, v_th, v_reset, name=c.name)
        st = c.state("v", out)
        v = c.add(st["input"], c.mul(c.const("g", g), x, "gx"), "v1")
        z, st["new"] = _fire(c, v, v_th, v_reset)
        return z, out


@builder(nir.I)
class I:
    """v' = v + g x; output v"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        g = units.if_gain(node.r, c.dt)
        out = _broadcast(shape, g, name=c.name)
        st = c.state("v", out)
        v = c.add(st["input"], c.mul(c.const("g", g), x, "gx"), "v1")
        st["new"] = v
        return v, out


def _cuba(c: Ctx, node, x, shape, extra=()):
    di, gi, dv, gv, l = units.cuba_coefficients(node.tau_syn, node.tau_mem, node.r, node.v_leak,
                                                node.w_in, c.dt)
    out = _broadcast(shape, di, gi, dv, gv, l, *extra, name=c.name)
    si, sv = c.state("i", out), c.state("v", out)
    i = c.add(c.mul(c.const("d_i", di), si["input"], "di"), c.mul(c.const("g_i", gi), x, "gx"), "i")
    v = c.add(c.mul(c.const("d_v", dv), sv["input"], "dv"),
              c.add(c.mul(c.const("g_v", gv), i, "gi"), c.const("l", l), "gil"), "v1")
    si["new"] = i
    return v, sv, out


@builder(nir.CubaLIF)
class CubaLIF:
    """i = d_i i + g_i x; v' = d_v v + (g_v i + l); z = [v' > v_th]; v = v_reset where z"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        v_th, v_reset = _threshold_params(node)
        v, sv, out = _cuba(c, node, x, shape, (v_th, v_reset))
        z, sv["new"] = _fire(c, v, v_th, v_reset)
        return z, out


@builder(nir.CubaLI)
class CubaLI:
    """i = d_i i + g_i x; v' = d_v v + (g_v i + l); output v"""

    @staticmethod
    def build(c: Ctx, node, x, shape):
        v, sv, out = _cuba(c, node, x, shape)
        sv["new"] = v
        return v, out


# --------------------------------------------------------------------------- compile


def _input_shape(program: Program) -> tuple[int, ...]:
    name = program.graph_inputs[0]
    t = getattr(program.nodes[name], "input_type", None)
    shape = t.get("input") if isinstance(t, dict) else None
    if shape is None:
        raise GraphError(f"the graph input {name!r} has no known shape",
                         "start the graph with nir.Input(input_type=np.array(shape))")
    return tuple(int(s) for s in np.atleast_1d(np.asarray(shape)))


def compile_program(program: Program) -> OnnxArtifact:
    """Build the per-step ONNX model of ``program``."""
    for name in program.order:
        key = type(program.nodes[name]).__name__
        if key not in BUILDERS:
            raise GraphError(f"node {name!r} ({key}) is not supported by the onnx target",
                             f"supported nodes: {', '.join(BUILDERS.names())}")
    em = Emitter()
    em.fresh(INPUT_NAME)
    in_shape = _input_shape(program)
    states: list[dict] = []
    rec_sources = sorted({s for s, _ in program.recurrent_edges()}, key=program.order.index)
    prev = {s: {"node": s, "kind": "prev", "shape": None,
                "input": em.fresh(f"state__{_safe(s)}__prev"), "new": None} for s in rec_sources}
    value: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    rec_uses: list[tuple[str, str, tuple]] = []  # (consumer, source, consumer input shape)
    src = program.graph_inputs[0]
    for name in program.order:
        node = program.nodes[name]
        if name == src:
            x, shape = INPUT_NAME, in_shape
        else:
            terms, tshapes = [], []
            for s, recurrent in program.inputs[name]:
                if recurrent:
                    terms.append(prev[s]["input"])
                else:
                    terms.append(value[s])
                    tshapes.append(shapes[s])
            if not tshapes:
                raise GraphError(f"node {name!r} has no input at the first step",
                                 "give every node a path from the graph input")
            shape = tshapes[0]
            for t in tshapes[1:]:
                if len(t) != len(shape):
                    raise GraphError(f"node {name!r} sums inputs of shapes {tshapes}",
                                     "make every edge into a node carry the same shape")
                shape = _broadcast(shape, np.zeros(t, dtype=np.int8), name=name)
            x = terms[0]
            for k, t in enumerate(terms[1:], 1):
                x = em.op("Add", [x, t], f"{_safe(name)}__fanin{k}")
            rec_uses += [(name, s, shape) for s, r in program.inputs[name] if r]
        ctx = Ctx(em, name, program.dt, states)
        y, out_shape = BUILDERS.get(type(node).__name__).build(ctx, node, x, tuple(shape))
        value[name], shapes[name] = y, tuple(int(d) for d in out_shape)
    for s in rec_sources:
        prev[s]["shape"], prev[s]["new"] = shapes[s], value[s]
    for consumer, s, shape in rec_uses:
        try:
            fits = len(shapes[s]) == len(shape) and np.broadcast_shapes(shape, shapes[s]) == shape
        except ValueError:
            fits = False
        if not fits:
            raise GraphError(f"recurrent edge ({s!r}, {consumer!r}) carries shape {shapes[s]} "
                             f"into a node whose input has shape {shape}",
                             "make the recurrent weights map back to the node's input shape")
    states = states + [prev[s] for s in rec_sources]

    def info(name, shape):
        return helper.make_tensor_value_info(name, DOUBLE, ["batch", *shape])

    graph_inputs = [info(INPUT_NAME, in_shape)] + [info(s["input"], s["shape"]) for s in states]
    outputs, value_out, specs = [], {}, []
    for name in program.order:
        o = em.op("Identity", [value[name]], f"value__{_safe(name)}")
        value_out[name] = o
        outputs.append(info(o, shapes[name]))
    for s in states:
        o = em.op("Identity", [s["new"]], f"{s['input']}__next")
        specs.append(StateSpec(s["node"], s["kind"], s["input"], o, s["shape"]))
        outputs.append(info(o, s["shape"]))

    spiking = program.spiking_nodes()
    membranes = {s.node: s.output for s in specs
                 if s.kind == "v" and isinstance(program.nodes[s.node], SPIKING)}
    graph = helper.make_graph(em.nodes, "spikeport_step", graph_inputs, outputs,
                              initializer=em.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="spikeport",
                              doc_string="one time step of a NIR graph (float64); see "
                                         "exporters/onnx_target.py")
    model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime releases too
    art = OnnxArtifact(model=model, input_name=INPUT_NAME, input_shape=in_shape,
                       order=list(program.order), values=value_out, shapes=shapes, states=specs,
                       spiking=spiking, output=program.output, dt=program.dt, membranes=membranes)
    helper.set_model_props(model, {METADATA_KEY: json.dumps(art.metadata(), sort_keys=True)})
    onnx.checker.check_model(model)
    return art


def compile(graph: nir.NIRGraph, options: dict | None = None) -> OnnxArtifact:  # noqa: A001
    """NIR graph -> per-step ONNX model. Options: ``dt`` (overrides the graph's metadata)."""
    options = options or {}
    return compile_program(build_program(graph, options.get("dt")))


# --------------------------------------------------------------------------- save / load


def save(artifact: OnnxArtifact, path: str | Path) -> Path:
    """Write the .onnx file atomically; the run metadata travels inside it."""
    data = artifact.model.SerializeToString()
    return atomic_write(path, lambda p: p.write_bytes(data))


def load(path: str | Path) -> OnnxArtifact:
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"ONNX file not found: {path}", "pass a file written by onnx_target.save")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except Exception as e:  # protobuf raises its own DecodeError
        raise GraphError(f"{path} is not a readable ONNX model ({type(e).__name__})",
                         "pass a file written by onnx_target.save") from None
    return OnnxArtifact.from_model(model, str(path))


# --------------------------------------------------------------------------- run


def session(artifact: OnnxArtifact, threads: int = 1):
    """An onnxruntime CPU session that executes the graph exactly as built (no fusion)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(artifact.model.SerializeToString(), sess_options=so,
                                providers=["CPUExecutionProvider"])


# The counting run compares a node's step values with zero while they are in cache only if
# one step's values (float64) fit in this many bytes; larger ones are left to the estimator.
# Measured end to end against plain inference: the digits MLP's 512 KB per step, compared in
# the loop, 1.13-1.16x instead of 1.18-1.21x; the MNIST conv net's 6.4 MB per step (past this
# machine's 2 MB L2), 1.17-1.29x instead of 1.09-1.11x.
HOT_STEP_BYTES = 1 << 20


def run(artifact: OnnxArtifact, x: np.ndarray, membranes: bool = False,
        nonzero: bool = False) -> Recording:
    """Run x (T, B, *input_shape) step by step; every node's value at every step (and, with
    ``nonzero``, where each node whose step values fit in ``HOT_STEP_BYTES`` is non-zero:
    ``Recording.nonzero``)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 + len(artifact.input_shape) or tuple(x.shape[2:]) != artifact.input_shape:
        raise GraphError(f"input has shape {x.shape}, the graph expects "
                         f"(T, B, {', '.join(map(str, artifact.input_shape))})",
                         "pass x with a time axis, a batch axis, then one step's input shape")
    T, B = x.shape[:2]
    sess = session(artifact)
    names = [artifact.values[n] for n in artifact.order] + [s.output for s in artifact.states]
    n_values = len(artifact.order)
    state = {s.input: np.zeros((B, *s.shape)) for s in artifact.states}
    values = {n: np.empty((T, B, *artifact.shapes[n])) for n in artifact.order}
    mem_pos = {n: names.index(o) for n, o in artifact.membranes.items()} if membranes else {}
    mems = {n: np.empty((T, B, *artifact.shapes[n])) for n in mem_pos}
    nzs = {n: np.empty((T, B, *artifact.shapes[n]), bool) for n in artifact.order
           if nonzero and 8 * B * math.prod(artifact.shapes[n]) <= HOT_STEP_BYTES}
    for t in range(T):
        outs = sess.run(names, {artifact.input_name: np.ascontiguousarray(x[t]), **state})
        for k, n in enumerate(artifact.order):
            values[n][t] = outs[k]
            if n in nzs:
                np.not_equal(outs[k], 0, out=nzs[n][t])
        for j, s in enumerate(artifact.states):
            state[s.input] = outs[n_values + j]
        for n, k in mem_pos.items():
            mems[n][t] = outs[k]
    return Recording(values, artifact.output, list(artifact.spiking), artifact.dt, mems,
                     nonzero=nzs)


def _register():
    from spikeport.exporters.targets import Counting, Target, register

    register(Target(
        name="onnx", compile=compile, run=lambda a, x: run(a, x),
        counting=Counting(binary_spikes=True, run=lambda a, x: run(a, x, nonzero=True)),
        supported=BUILDERS.names, profiles=("cpu", "gpu", "ann-45nm"),
        exactness="bit-identical to reference (float64)",
        summary="per-step float64 ONNX model run by onnxruntime (CPU)"))


_register()
