"""A NIR graph prepared for execution: flat, ordered, with its recurrent edges marked.

Every target executes the same :class:`Program`, built once from a ``nir.NIRGraph``:

- Subgraphs are flattened into dotted names (``"lif1.lif"``); an edge to a subgraph goes to
  its ``Input`` nodes (or, without any, to its nodes that have no inner predecessor), an edge
  from it leaves from its ``Output`` nodes (or its nodes without inner successor). Edges may
  also name inner nodes directly (``"G.B"``), as snntorch and norse write them.
- Nodes are ordered by a depth-first topological sort from the graph inputs. An edge whose
  target comes earlier in that order (or is its own source) closes a cycle: it carries the
  source's value of the *previous* step (zero at the first step), as nirtorch and snntorch's
  RLeaky do (SEMANTICS.md 2.2). All other edges are instantaneous.
- Several edges into one node are summed.
- ``dt`` is read from the graph metadata; a graph without it gets 1e-4 s and a warning, and
  its IF / I nodes are read with the per-step gain convention of the tools that write such
  graphs (v' = v + r x).
- The graph is validated once, here: parameters (:mod:`spikeport.ir.checks`), shapes along
  every edge (:mod:`spikeport.ir.shapes`), sizes against the memory budget. The shapes found are ``Program.shapes``;
  every target's ``run`` passes its input through :func:`check_input` (the one check of an
  input against the graph) and its recording through :func:`check_values`.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import nir
import numpy as np

from spikeport.core import budget, units
from spikeport.core.errors import GraphError
from spikeport.ir import checks
from spikeport.ir.shapes import check_graph, state_bytes
from spikeport.ir.checks import (check_values, conv_padding, delay_steps, pair,  # noqa: F401
                                 same_padding)

log = logging.getLogger(__name__)


@dataclass
class Program:
    nodes: dict[str, nir.NIRNode]          # flat name -> node (no NIRGraph nodes)
    order: list[str]                       # execution order
    inputs: dict[str, list[tuple[str, bool]]]  # node -> [(source, recurrent?)]
    graph_inputs: list[str]
    graph_outputs: list[str]
    dt: float
    metadata: dict = field(default_factory=dict)
    dt_from_metadata: bool = True
    input_shape: tuple[int, ...] = ()      # one step of one sample at the graph input
    # node -> shape of its value for one sample (None behind a node type spikeport does
    # not know: the targets refuse those by name)
    shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    transient_bytes: int = 0  # the most one node's step allocates and frees, per sample

    @property
    def output(self) -> str:
        return self.graph_outputs[0]

    def kinds(self) -> dict[str, str]:
        """node -> its NIR type name."""
        return {n: type(v).__name__ for n, v in self.nodes.items()}

    def check_input(self, x, first: int | None = None) -> np.ndarray:
        """``x`` (T, B, *input_shape) as float64, checked against this program
        (:func:`check_input`): what every target's ``run`` calls first. ``first``: the
        number of the first sample of x, for the messages (x a block of a larger input)."""
        step = sum(budget.nbytes(s) for s in self.shapes.values() if s is not None)
        return check_input(x, self.input_shape, step, self.transient_bytes
                           + state_bytes(self.nodes, self.shapes, self.dt), first)

    def spiking_nodes(self) -> list[str]:
        return [n for n in self.order if isinstance(self.nodes[n], SPIKING)]

    def recurrent_edges(self) -> list[tuple[str, str]]:
        return [(s, d) for d, srcs in self.inputs.items() for s, rec in srcs if rec]


SPIKING = (nir.LIF, nir.CubaLIF, nir.IF, nir.Threshold)


def _flatten(graph: nir.NIRGraph, prefix: str = ""):
    """(nodes, edges) with subgraphs expanded; names are prefixed with their path."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    entries: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    _check_structure(graph, prefix)
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges, _, _ = _flatten(node, full + ".")
            nodes.update(sub_nodes)
            edges.extend(sub_edges)
            inner = {n for n in sub_nodes}
            has_pred = {d for s, d in sub_edges}
            has_succ = {s for s, d in sub_edges}
            ins = [n for n, v in sub_nodes.items() if isinstance(v, nir.Input)]
            outs = [n for n, v in sub_nodes.items() if isinstance(v, nir.Output)]
            entries[full] = ins or [n for n in inner if n not in has_pred]
            exits[full] = outs or [n for n in inner if n not in has_succ]
        else:
            nodes[full] = node
    for src, dst in graph.edges:
        s, d = prefix + src, prefix + dst
        for s2 in exits.get(s, [s]):
            for d2 in entries.get(d, [d]):
                edges.append((s2, d2))
    return nodes, edges, entries, exits


def _check_structure(graph, prefix: str) -> None:
    """A graph's nodes are a mapping of names to NIR nodes, its edges pairs of names."""
    where = f"subgraph {prefix[:-1]!r}" if prefix else "the graph"
    nodes, edges = getattr(graph, "nodes", None), getattr(graph, "edges", None)
    if not isinstance(nodes, dict) or not nodes:
        raise GraphError(f"{where} has no nodes (nodes: {type(nodes).__name__})",
                         "build it as nir.NIRGraph(nodes={name: node}, edges=[(src, dst)])")
    for name, node in nodes.items():
        if not isinstance(name, str) or not name:
            raise GraphError(f"{where} has a node named {name!r}", "name every node by a non-empty string")
        if not isinstance(node, nir.NIRNode):
            raise GraphError(f"node {prefix + name!r} of {where} is a {type(node).__name__}, not a "
                             "NIR node", "use the node classes of the nir package")
    if not isinstance(edges, (list, tuple)):
        raise GraphError(f"the edges of {where} are a {type(edges).__name__}",
                         "give the edges as a list of (source, target) name pairs")
    for e in edges:
        if not (isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(v, str) for v in e)):
            raise GraphError(f"{where} has an edge {e!r} that is not a (source, target) pair of "
                             "names", "give the edges as a list of (source, target) name pairs")


def build_program(graph: nir.NIRGraph, dt: float | None = None) -> Program:
    nodes, edges, _, _ = _flatten(graph)
    # Input/Output nodes that no edge touches are leftovers of flattened subgraphs (the
    # dotted "1.input" nodes some exporters write); they carry nothing.
    touched = {n for e in edges for n in e}
    nodes = {n: v for n, v in nodes.items()
             if n in touched or not isinstance(v, (nir.Input, nir.Output))}
    _check_edges(nodes, edges)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for s, d in edges:
        preds[d].append(s)
        succs[s].append(d)
    top_inputs = _the_one(nodes, nir.Input, preds, "input")
    top_outputs = _the_one(nodes, nir.Output, succs, "output")
    order, back = _order(nodes, succs, top_inputs[0])
    inputs = {n: [(s, (s, n) in back) for s in preds[n]] for n in nodes}
    meta = getattr(graph, "metadata", None)
    meta = dict(meta) if isinstance(meta, dict) else {}
    dt, from_meta = _step(meta, dt)
    if not from_meta:
        nodes = _per_step_integrators(nodes, dt)
    in_shape, shapes, transient = check_graph(nodes, order, inputs, top_inputs[0], dt)
    return Program(nodes, order, inputs, top_inputs, top_outputs, float(dt), meta, from_meta,
                   in_shape, shapes, transient)


def check_input(x, input_shape: tuple[int, ...], step_bytes: int = 0,
                sample_bytes: int = 0, first: int | None = None) -> np.ndarray:
    """The one check of an input array against a graph, used by every target's ``run``:
    ``x`` as float64 (T, B, *input_shape), finite, with at least one step and one sample,
    and a run of ``step_bytes`` recorded per step and sample plus ``sample_bytes`` of state
    and scratch per sample within the memory budget (:func:`spikeport.ir.checks.check_input`)."""
    return checks.check_input(x, input_shape, step_bytes, sample_bytes, first)


def _check_edges(nodes: dict, edges: list[tuple[str, str]]) -> None:
    for s, d in edges:
        for end in (s, d):
            if end not in nodes:
                raise GraphError(f"edge ({s!r}, {d!r}) names a node that does not exist: {end!r}",
                                 "fix the graph's edges")
    if len(set(edges)) != len(edges):
        dup = next(e for e in edges if edges.count(e) > 1)
        raise GraphError(f"duplicate edge {dup}", "remove the repeated edge (NIR sums fan-in "
                         "edges, so a duplicate would double the input)")


def _the_one(nodes: dict, cls, links: dict, what: str) -> list[str]:
    """The graph's single top-level Input / Output node (else the one node without
    incoming / outgoing edges)."""
    found = [n for n in nodes if "." not in n and isinstance(nodes[n], cls)]
    found = found or [n for n in nodes if not links[n]]
    if len(found) != 1:
        raise GraphError(f"the graph has {len(found)} {what}s ({', '.join(found) or 'none'})",
                         f"spikeport runs graphs with exactly one {cls.__name__} node")
    return found


def _order(nodes: dict, succs: dict, start: str) -> tuple[list[str], set[tuple[str, str]]]:
    """(execution order, back edges). Depth-first post-order from the input; reversed, it is
    a topological order of the graph without its back edges."""
    visited, on_stack, post = {start}, {start}, []
    back: set[tuple[str, str]] = set()
    stack = [(start, iter(succs[start]))]
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            stack.pop()
            on_stack.discard(node)
            post.append(node)
        elif nxt in on_stack:
            back.add((node, nxt))
        elif nxt not in visited:
            visited.add(nxt)
            on_stack.add(nxt)
            stack.append((nxt, iter(succs[nxt])))
    unreachable = [n for n in nodes if n not in visited]
    if unreachable:
        raise GraphError(f"node(s) not reachable from the input: {', '.join(sorted(unreachable))}",
                         "connect them or remove them from the graph")
    return post[::-1], back


def _step(meta: dict, dt: float | None) -> tuple[float, bool]:
    """(dt, read from the metadata?); refuses metadata this simulator does not implement."""
    from_meta = True
    if dt is not None:
        dt = checks.check_dt(dt, "the dt option")
    else:
        if "dt" in meta:
            dt = checks.check_dt(meta["dt"], "the graph's metadata dt")
        else:
            dt, from_meta = units.DEFAULT_DT, False
            warnings.warn("the NIR graph records no dt; assuming dt = 1e-4 s (snntorch's value) "
                          "and reading IF/I nodes with r as the per-step gain; pass --dt "
                          "(dt= in Python) if the graph was written for another step",
                          stacklevel=3)
    for key, allowed in (("reset_mode", ("zero",)), ("discretisation", ("forward_euler",))):
        value = meta.get(key)
        value = value.decode(errors="replace") if isinstance(value, bytes) else value
        if key in meta and str(value) not in allowed:
            raise GraphError(f"graph metadata {key}={meta[key]!r} is not supported",
                             f"spikeport simulates {key} in {allowed}")
    return dt, from_meta


def _per_step_integrators(nodes: dict, dt: float) -> dict:
    """Foreign convention for graphs without our ``dt`` metadata (SEMANTICS.md 2.2): sinabs
    and snntorch write IF / I with r as the per-step gain, v' = v + r x. Under our contract
    the gain is dt * r, so such nodes are read with r / dt."""
    import copy

    out = dict(nodes)
    for name, node in nodes.items():
        if isinstance(node, (nir.IF, nir.I)):
            new = copy.copy(node)
            with np.errstate(over="ignore"):  # an r that overflows is refused by the checks
                new.r = checks.NodeCheck(name, node, dt).array("r") / dt
            out[name] = new
    return out


def torch_conv_args(node) -> dict:
    """stride, padding, dilation and groups of a NIR Conv1d / Conv2d node as torch's conv
    functions and modules take them (ints for 1-d, pairs for 2-d; "same" / "valid" kept)."""
    one_d = isinstance(node, nir.Conv1d)
    conv = (lambda v: int(np.atleast_1d(v)[0])) if one_d else pair
    padding = node.padding if isinstance(node.padding, str) else conv(node.padding)
    return {"stride": conv(node.stride), "padding": padding, "dilation": conv(node.dilation),
            "groups": int(node.groups)}


def summed_input(program: Program, name: str, cur: dict, prev: dict):
    """The input of ``name`` at this step: the sum of its incoming edges, in edge order;
    a cycle-closing edge delivers the source's previous-step value (absent at the first step).
    Every target sums in this same order, so element-wise results match bit for bit."""
    terms = [prev.get(s) if recurrent else cur[s] for s, recurrent in program.inputs[name]]
    terms = [a for a in terms if a is not None]
    if not terms:
        raise GraphError(f"node {name!r} has no input at the first step",
                         "give every node a path from the graph input")
    out = terms[0]
    for a in terms[1:]:
        out = out + a
    return out


def node_implementations(program: Program, registry, target: str) -> dict:
    """What ``registry`` (keyed by NIR class name) holds for every node of ``program``, in
    program order. A node the target has nothing for is refused before anything runs, naming
    the node, its type, the target and the nodes the target supports."""
    found = {}
    for name in program.order:
        key = type(program.nodes[name]).__name__
        if key not in registry:
            raise GraphError(f"node {name!r} ({key}) is not supported by the {target} target",
                             f"supported nodes: {', '.join(registry.names())}")
        found[name] = registry.get(key)
    return found
