"""The ONNX target: a NIR graph as a per-time-step float64 ONNX model, run by onnxruntime.

:func:`compile` builds one ONNX graph (opset 17, all tensors DOUBLE) that computes a single
time step of the :class:`~spikeport.ir.program.Program`:

- inputs: ``x`` (this step's input, ``[batch, *input_shape]``, symbolic batch) and one
  state tensor per stateful quantity: the membrane ``v`` of LIF / LI / IF / I, ``i`` and
  ``v`` of CubaLIF / CubaLI, the buffer of a Delay (``[batch, steps, *shape]``), and the
  previous-step value of every node that is the source of a recurrent (cycle-closing) edge;
- outputs: the value of every node at this step (spikes for spiking nodes), then the new
  value of every state, in the same order as the state inputs.

Every builder (:mod:`spikeport.exporters.onnx_build`) mirrors
:mod:`spikeport.exporters.reference` operation for operation, in float64, with the coefficients
baked in as DOUBLE initializers and one ONNX node per arithmetic operation (separate ``Mul``
and ``Add``, never a fused op), so that each element-wise update rounds exactly as numpy
does. Neuron populations run the very step functions of :mod:`spikeport.ir.neurons` on
symbolic tensors: LIF becomes ``v = d*v + (g*x + l)``, ``z = Cast(Greater(v, v_th))``,
``v = Where(z, v_reset, v)``. Fan-in edges are summed left to right in the program's edge
order; a recurrent edge reads the state holding the source's previous value (zeros at the
first step, where the reference skips the term: adding 0.0 is exact). onnxruntime's CPU provider has no double ``Conv`` or ``AveragePool``, so
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
:data:`spikeport.exporters.reference.KERNELS`); a graph with any other node is refused at
compile time, naming the node and the supported set.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import onnx
from onnx import helper

from spikeport.core.errors import GraphError
from spikeport.core.io import atomic_write
from spikeport.core.recording import Recording
from spikeport.exporters.onnx_build import BUILDERS, DOUBLE, Ctx, Emitter, safe_name
from spikeport.ir.program import (SPIKING, Program, build_program, check_input, check_values,
                                  node_implementations)

OPSET = 17
FORMAT = "spikeport-onnx/1"
METADATA_KEY = "spikeport"
INPUT_NAME = "x"


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
    transient_bytes: int = 0  # the most one node's step allocates and frees, per sample

    def metadata(self) -> dict:
        return {"format": FORMAT, "input_name": self.input_name,
                "input_shape": list(self.input_shape), "order": self.order,
                "values": self.values, "shapes": {k: list(v) for k, v in self.shapes.items()},
                "states": [{"node": s.node, "kind": s.kind, "input": s.input, "output": s.output,
                            "shape": list(s.shape)} for s in self.states],
                "spiking": self.spiking, "output": self.output, "dt": self.dt,
                "membranes": self.membranes, "transient_bytes": self.transient_bytes}

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
                       dt=float(meta["dt"]), membranes=dict(meta.get("membranes", {})),
                       transient_bytes=int(meta.get("transient_bytes", 0)))
        except (KeyError, ValueError, TypeError) as e:
            raise GraphError(f"{source} is not a spikeport ONNX artifact (missing or unreadable "
                             f"'{METADATA_KEY}' metadata: {type(e).__name__})",
                             "export it with `spikeport export --to onnx` or "
                             "spikeport.exporters.onnx.save") from None


# --------------------------------------------------------------------------- compile


def _fan_in(em: Emitter, program: Program, name: str, value: dict, shapes: dict, prev: dict):
    """(tensor, shape) of the summed input of ``name``: its edges added left to right in
    edge order, a recurrent edge read from the state holding its source's previous value.
    Every edge into a node carries the same shape (checked with the graph)."""
    terms = [prev[s]["input"] if recurrent else value[s] for s, recurrent in program.inputs[name]]
    shape = next(shapes[s] for s, recurrent in program.inputs[name] if not recurrent)
    x = terms[0]
    for k, t in enumerate(terms[1:], 1):
        x = em.op("Add", [x, t], f"{safe_name(name)}__fanin{k}")
    return x, shape


def compile_program(program: Program) -> OnnxArtifact:
    """Build the per-step ONNX model of ``program``."""
    node_implementations(program, BUILDERS, "onnx")  # refuse unsupported nodes first
    em = Emitter()
    em.fresh(INPUT_NAME)
    in_shape = tuple(program.input_shape)
    states: list[dict] = []
    rec_sources = sorted({s for s, _ in program.recurrent_edges()}, key=program.order.index)
    prev = {s: {"node": s, "kind": "prev", "shape": None, "new": None,
                "input": em.fresh(f"state__{safe_name(s)}__prev")} for s in rec_sources}
    value: dict[str, str] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in program.order:
        node = program.nodes[name]
        if name == program.graph_inputs[0]:
            x, shape = INPUT_NAME, in_shape
        else:
            x, shape = _fan_in(em, program, name, value, shapes, prev)
        ctx = Ctx(em, name, program.dt, states)
        y, out_shape = BUILDERS.get(type(node).__name__).build(ctx, node, x, tuple(shape))
        value[name], shapes[name] = y, tuple(int(d) for d in out_shape)
    for s in rec_sources:
        prev[s]["shape"], prev[s]["new"] = shapes[s], value[s]
    return _artifact(em, program, in_shape, value, shapes, states + [prev[s] for s in rec_sources])


def _artifact(em: Emitter, program: Program, in_shape: tuple, value: dict, shapes: dict,
              states: list[dict]) -> OnnxArtifact:
    """The model with its graph inputs (x, then the states) and outputs (every node's value,
    then every state's next value), its run metadata attached, checked."""
    def info(name, shape):
        return helper.make_tensor_value_info(name, DOUBLE, ["batch", *shape])

    graph_inputs = [info(INPUT_NAME, in_shape)] + [info(s["input"], s["shape"]) for s in states]
    outputs, value_out, specs = [], {}, []
    for name in program.order:
        o = em.op("Identity", [value[name]], f"value__{safe_name(name)}")
        value_out[name] = o
        outputs.append(info(o, shapes[name]))
    for s in states:
        o = em.op("Identity", [s["new"]], f"{s['input']}__next")
        specs.append(StateSpec(s["node"], s["kind"], s["input"], o, s["shape"]))
        outputs.append(info(o, s["shape"]))
    membranes = {s.node: s.output for s in specs
                 if s.kind == "v" and isinstance(program.nodes[s.node], SPIKING)}
    graph = helper.make_graph(em.nodes, "spikeport_step", graph_inputs, outputs,
                              initializer=em.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="spikeport",
                              doc_string="one time step of a NIR graph (float64); see "
                                         "spikeport.exporters.onnx")
    model.ir_version = min(model.ir_version, 9)  # readable by older onnxruntime releases too
    art = OnnxArtifact(model=model, input_name=INPUT_NAME, input_shape=in_shape,
                       order=list(program.order), values=value_out, shapes=shapes, states=specs,
                       spiking=program.spiking_nodes(), output=program.output, dt=program.dt,
                       membranes=membranes, transient_bytes=program.transient_bytes)
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
    step = sum(math.prod(s) for s in artifact.shapes.values()) * 8
    x = check_input(x, artifact.input_shape, 2 * step if membranes or nonzero else step,
                    sum(math.prod(s.shape) for s in artifact.states) * 8
                    + artifact.transient_bytes)
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
    check_values(values, spiking=artifact.spiking)
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
