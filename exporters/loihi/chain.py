"""A NIR program read as the chain of synapse -> population layers a netx file holds.

Each layer is one population (LIF, CubaLIF or IF) fed by one synapse (Affine, Linear or
Conv2d), optionally with a recurrent Affine/Linear from the population into itself. Around
the synapse the chain accepts the linear reshaping foreign tools write, which
:mod:`spikeport.exporters.loihi.fold` folds into the synapse's weights:

- before it, between the previous population (or the graph input) and the synapse: pools
  of the spikes and a Flatten, in that order (sinabs: ``IF -> SumPool2d -> Conv2d`` and
  ``IF -> SumPool2d -> Flatten -> Affine``);
- after a Conv2d, one pool of its current (``Conv2d -> SumPool2d -> LIF``).

Every layer must read the previous layer's spikes (the first the graph input) and the graph
output must read the last population: netx connects its layers strictly in sequence, so a
branch, a skip connection or a node left over would be lost; those are refused naming the
node.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import nir

from spikeport.core.errors import ExportError
from spikeport.ir.program import Program

SYNAPSES = (nir.Affine, nir.Linear)
POOLS = (nir.SumPool2d, nir.AvgPool2d)
NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)
PASS = (nir.Input, nir.Output)


@dataclass
class LayerSpec:
    """The NIR nodes one Loihi layer realises."""
    synapse: str                       # Affine, Linear or Conv2d
    neuron: str                        # the population
    recurrent: str | None = None       # Affine/Linear from the population into itself
    post_pool: str | None = None       # a pool of the convolution's current
    pre: list[str] = field(default_factory=list)  # pools / Flatten before the synapse, in data order
    source: str = ""                   # the previous population, or the graph input

    def nodes(self) -> set[str]:
        return {self.synapse, self.neuron, *self.pre} | \
            {n for n in (self.recurrent, self.post_pool) if n is not None}


def refuse(node_name, node, why, fix):
    raise ExportError(f"node {node_name!r} ({type(node).__name__}) {why} for the Loihi target", fix)


def through_identities(program: Program, name: str) -> str:
    """The first node upstream of ``name`` that is not a subgraph's Input/Output pass-through."""
    while isinstance(program.nodes[name], PASS) and name not in program.graph_inputs:
        srcs = [s for s, rec in program.inputs[name] if not rec]
        if len(srcs) != 1:
            break
        name = srcs[0]
    return name


def _single_source(program: Program, name: str) -> str:
    """The one node feeding ``name`` (through pass-throughs); refused otherwise."""
    node = program.nodes[name]
    if any(rec for _, rec in program.inputs[name]):
        refuse(name, node, "is fed by a recurrent edge", "close recurrences only through a "
               "population's own recurrent Affine/Linear")
    srcs = [through_identities(program, s) for s, _ in program.inputs[name]]
    if len(srcs) != 1:
        refuse(name, node, f"sums {len(srcs)} inputs ({', '.join(srcs)})",
               "use a chain of synapse -> population layers (netx layers connect in sequence)")
    return srcs[0]


def _spec(program: Program, name: str) -> LayerSpec:
    """The layer realising population ``name``: its synapse, pools, recurrence, source."""
    nodes = program.nodes
    ff = [through_identities(program, s) for s, rec in program.inputs[name] if not rec]
    rec = [s for s, r in program.inputs[name] if r]
    if len(ff) != 1:
        refuse(name, nodes[name], "is not fed by exactly one Affine, Linear or Conv2d",
               "use a chain of synapse -> population layers")
    spec = LayerSpec(synapse=ff[0], neuron=name)
    if isinstance(nodes[spec.synapse], POOLS):
        spec.post_pool = spec.synapse
        spec.synapse = _single_source(program, spec.post_pool)
        if not isinstance(nodes[spec.synapse], nir.Conv2d):
            refuse(spec.post_pool, nodes[spec.post_pool], "pools something other than a "
                   "convolution's current right before a population",
                   "pool the synaptic current of a Conv2d (conv -> pool -> neurons), or pool "
                   "the spikes before the next synapse (neurons -> pool -> conv)")
    if not isinstance(nodes[spec.synapse], SYNAPSES + (nir.Conv2d,)):
        refuse(name, nodes[name], "is not fed by exactly one Affine, Linear or Conv2d",
               "use a chain of synapse -> population layers")
    if rec:
        if len(rec) != 1 or not isinstance(nodes[rec[0]], SYNAPSES) or \
                [s for s, _ in program.inputs[rec[0]]] != [name]:
            refuse(name, nodes[name], "has a recurrence that is not one weight from the "
                   "population to itself", "use a single recurrent Affine/Linear")
        spec.recurrent = rec[0]
    src = _single_source(program, spec.synapse)
    while isinstance(nodes[src], POOLS + (nir.Flatten,)):
        if isinstance(nodes[src], nir.Flatten) and any(isinstance(nodes[p], POOLS) for p in spec.pre):
            refuse(src, nodes[src], "comes before a pool", "pool (C, H, W) spikes, then flatten")
        spec.pre.insert(0, src)
        src = _single_source(program, src)
    spec.source = src
    return spec


def chain(program: Program) -> list[LayerSpec]:
    """The layers of ``program`` in order (module docstring); every other node refused."""
    _refuse_fan_in(program)
    specs = []
    for name in program.order:
        node = program.nodes[name]
        if isinstance(node, NEURONS):
            specs.append(_spec(program, name))
        elif isinstance(node, nir.Conv1d):
            refuse(name, node, "is not supported", "use Conv2d (a 1-d signal as height 1)")
        elif not isinstance(node, PASS + SYNAPSES + POOLS + (nir.Conv2d, nir.Flatten)):
            refuse(name, node, "has no Loihi equivalent",
                   "use Affine/Linear synapses and LIF, CubaLIF or IF populations")
    if not specs:
        raise ExportError("the graph has no spiking population", "export a spiking network")
    _check_sequence(program, specs)
    return specs


def _refuse_fan_in(program: Program) -> None:
    """A node summing several feed-forward inputs (a residual or skip connection) has no netx
    form: every netx layer reads only the layer before it (SEMANTICS.md 5)."""
    for name in program.order:
        srcs = [s for s, rec in program.inputs[name] if not rec]
        if len(srcs) > 1 and not isinstance(program.nodes[name], PASS):
            refuse(name, program.nodes[name], f"sums {len(srcs)} inputs ({', '.join(srcs)}), a "
                   "residual or skip connection, which a netx file (a chain of layers, each "
                   "reading only the previous one) cannot hold",
                   "deploy residual networks on reference, snntorch or onnx; for Loihi train a "
                   "chain model (model.arch: mlp or conv)")


def _check_sequence(program: Program, specs: list[LayerSpec]) -> None:
    """Each layer reads the one before it, the output reads the last, nothing is left over."""
    expected = program.graph_inputs[0]
    for spec in specs:
        if spec.source != expected:
            what = "the graph input" if expected == program.graph_inputs[0] else f"population {expected!r}"
            refuse(spec.synapse, program.nodes[spec.synapse], f"reads {spec.source!r} where the "
                   f"layer chain has {what}", "use a chain of layers, each reading the "
                   "previous one's spikes (netx connects layers in sequence)")
        expected = spec.neuron
    out = program.output
    last = _single_source(program, out) if program.inputs[out] else out
    trailing = set()  # a Flatten of the output spikes only reshapes them
    while isinstance(program.nodes[last], nir.Flatten):
        trailing.add(last)
        last = _single_source(program, last)
    if last != specs[-1].neuron:
        refuse(last, program.nodes[last], "feeds the graph output, which on Loihi is the last "
               "population's spikes", "end the graph with a population (its spikes are the output)")
    used = set().union(*(s.nodes() for s in specs)) | {out, program.graph_inputs[0]} | trailing
    for name in program.order:
        if name not in used and not isinstance(program.nodes[name], PASS):
            refuse(name, program.nodes[name], "does not lie on the chain of layers (it feeds no "
                   "population's synapse)", "remove it, or place it between a population and "
                   "the next synapse")
