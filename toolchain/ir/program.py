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
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import nir
import numpy as np

from spikeport.core import units
from spikeport.core.errors import GraphError

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

    @property
    def output(self) -> str:
        return self.graph_outputs[0]

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
    meta = dict(getattr(graph, "metadata", {}) or {})
    dt, from_meta = _step(meta, dt)
    if not from_meta:
        nodes = _per_step_integrators(nodes, dt)
    return Program(nodes, order, inputs, top_inputs, top_outputs, float(dt), meta, from_meta)


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
    if dt is None:
        if "dt" in meta:
            dt = float(meta["dt"])
        else:
            dt, from_meta = units.DEFAULT_DT, False
            warnings.warn("the NIR graph records no dt; assuming dt = 1e-4 s (snntorch's value) "
                          "and reading IF/I nodes with r as the per-step gain. Pass dt "
                          "explicitly if the graph was written for another step.",
                          stacklevel=3)
    if not (dt > 0 and np.isfinite(dt)):
        raise GraphError(f"dt must be a positive number of seconds, got {dt}", "pass e.g. dt=1e-4")
    for key, allowed in (("reset_mode", ("zero",)), ("discretisation", ("forward_euler",))):
        if key in meta and str(meta[key]) not in allowed:
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
            new.r = np.asarray(node.r, dtype=np.float64) / dt
            out[name] = new
    return out


def pair(v) -> tuple[int, int]:
    """A NIR int-or-pair parameter (kernel, stride, padding, dilation) as (h, w)."""
    v = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(v[0]), int(v[-1])) if v.size <= 2 else (int(v[0]), int(v[1]))


def torch_conv_args(node) -> dict:
    """stride, padding, dilation and groups of a NIR Conv1d / Conv2d node as torch's conv
    functions and modules take them (ints for 1-d, pairs for 2-d; "same" / "valid" kept)."""
    one_d = isinstance(node, nir.Conv1d)
    conv = (lambda v: int(np.atleast_1d(v)[0])) if one_d else pair
    padding = node.padding if isinstance(node.padding, str) else conv(node.padding)
    return {"stride": conv(node.stride), "padding": padding, "dilation": conv(node.dilation),
            "groups": int(node.groups)}


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
