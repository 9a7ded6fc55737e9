"""The network as the estimator counts it: what the program's graph alone decides, once.

Spiking layers, output and hidden layers (:func:`~spikeport.core.recording.hidden_populations`),
connection nodes and neuron populations, AC or MAC per connection, the source whose spikes a
connection receives unchanged, the static sizes of every connection, and the per-node helpers
that outlive a batch: the reference kernels that recompute stateless pass-through nodes and
the event counters (:class:`~spikeport.estimation.counting.ConnectionCounter`).
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch

from spikeport.core.recording import hidden_populations
from spikeport.estimation.counting import MATMUL, ConnectionCounter, run_connection
from spikeport.exporters.reference import KERNELS
from spikeport.ir.program import SPIKING, Program

CONNECTIONS = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
DENSE = (nir.Affine, nir.Linear)
POPULATIONS = SPIKING + (nir.LI, nir.CubaLI, nir.I)
PASS_BINARY = (nir.Input, nir.Output, nir.Flatten, nir.Delay)   # keep a spike a spike
RECOMPUTABLE = (nir.Input, nir.Output, nir.Flatten, nir.SumPool2d, nir.AvgPool2d, nir.Scale)


@dataclass(frozen=True)
class ConnectionShape:
    """The static size of one connection node on its input shape."""
    fan_in: int             # Linear: in features; conv: C_in / groups * kernel elements
    inputs: int             # elements of one step's input
    outputs: int            # elements of one step's output
    weights: int
    nonzero_weights: int
    dense_per_step: float   # ops with all-ones weights on an all-ones input (no padding ops)
    ann_macs: int           # fan_in * outputs: one dense pass, padding included
    ann_flops: int          # (2 fan_in + 1) * outputs

    @classmethod
    def of(cls, node, in_shape: tuple) -> "ConnectionShape":
        w = np.asarray(node.weight)
        fan_in = int(np.prod(w.shape[1:]))
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):  # padding positions are no operations
            with torch.no_grad():
                out = run_connection(node, torch.ones(w.shape), torch.ones((1, *in_shape))).numpy()
            n_out, dense = int(out.size), float(out.sum(dtype=np.float64))
        else:
            n_out = int(np.prod(in_shape[:-1], dtype=np.int64)) * w.shape[0]
            dense = float(n_out * fan_in)
        return cls(fan_in, int(np.prod(in_shape, dtype=np.int64)), n_out, int(w.size),
                   int(np.count_nonzero(w)), dense, fan_in * n_out, (2 * fan_in + 1) * n_out)


class CountedNetwork:
    """The graph facts and per-node helpers of one program (see the module docstring).

    ``input_binary``: every input holds only 0 and 1; ``binary_spikes``: the target's spiking
    nodes emit exactly 0 or 1 (both taken on trust); ``matmul``: the library of the target's
    thread pool (:data:`~spikeport.estimation.counting.MATMUL`)."""

    def __init__(self, program: Program, input_binary: bool, matmul: str = "numpy",
                 binary_spikes: bool = False):
        if matmul not in MATMUL:
            raise ValueError(f"matmul must be one of {sorted(MATMUL)}, got {matmul!r}")
        self.mm = MATMUL[matmul]
        self.program = program
        self.input_binary = bool(input_binary)
        self.binary_spikes = bool(binary_spikes)
        self.input_node = program.graph_inputs[0]
        nodes = program.nodes
        self.spiking = program.spiking_nodes()
        self.output_layers = self._output_layers()
        self.hidden = hidden_populations(self.spiking, self.output_layers)
        self.connections = [n for n in program.order if isinstance(nodes[n], CONNECTIONS)]
        self.populations = [n for n in program.order if isinstance(nodes[n], POPULATIONS)]
        self.kind = {c: ("AC" if self._binary_message(c) else "MAC") for c in self.connections}
        self._kernels: dict[str, object] = {}
        self._counters: dict[str, ConnectionCounter] = {}
        self._shapes: dict[str, ConnectionShape] = {}

    def labels(self) -> dict[str, str]:
        """Each spiking population by its role in forward order, its neuron model and its
        size, for reports: ``hidden1 LIF 512``, ``hidden2 CubaLIF 128``, ``output LIF 10``
        (``output1``, ``output2``, ... where several populations feed the output)."""
        outputs = [n for n in self.spiking if n not in self.hidden]
        out, k = {}, 0
        for name in self.spiking:
            if name in self.hidden:
                k += 1
                role = f"hidden{k}"
            else:
                role = "output" if len(outputs) == 1 else f"output{outputs.index(name) + 1}"
            shape = self.program.shapes.get(name)
            size = "" if shape is None else f" {int(np.prod(shape))}"
            out[name] = f"{role} {type(self.program.nodes[name]).__name__}{size}"
        return out

    def _output_layers(self) -> list[str]:
        """The spiking nodes whose spikes reach the graph output through pass-throughs."""
        out, seen, stack = [], set(), [self.program.output]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            node = self.program.nodes[n]
            if isinstance(node, SPIKING):
                out.append(n)
            elif isinstance(node, PASS_BINARY):
                stack.extend(s for s, _ in self.program.inputs[n])
        return out

    def _binary_message(self, conn: str) -> bool:
        """True iff the connection's input is one binary spike stream (decided from the graph)."""
        srcs = self.program.inputs[conn]
        seen = set()
        while len(srcs) == 1:
            s = srcs[0][0]
            if s in seen:
                return False
            seen.add(s)
            if s == self.input_node:
                return self.input_binary
            node = self.program.nodes[s]
            if isinstance(node, SPIKING):
                return True
            if not isinstance(node, PASS_BINARY):
                return False
            srcs = self.program.inputs[s]
        return False

    def direct_source(self, name: str) -> str | None:
        """The graph input or spiking node whose values the connection receives unchanged --
        its only source, directly or through Input / Output / Flatten nodes of one
        non-recurrent source each -- else None. Its event map, flattened per (step, sample),
        is the connection's."""
        p = self.program
        srcs = p.inputs[name]
        while len(srcs) == 1 and not srcs[0][1]:
            s0 = srcs[0][0]
            if s0 == self.input_node or s0 in self.spiking:
                return s0
            if not isinstance(p.nodes[s0], (nir.Input, nir.Output, nir.Flatten)):
                return None
            srcs = p.inputs[s0]
        return None

    def dense_feed(self, population: str) -> str | None:
        """The dense connection (Affine / Linear) that is a population's only, non-recurrent
        source, else None: its receiving outputs can be counted without an event map."""
        srcs = self.program.inputs[population]
        if len(srcs) != 1 or srcs[0][1]:
            return None
        c = srcs[0][0]
        return c if isinstance(self.program.nodes[c], DENSE) else None

    def kernel(self, name: str):
        """The reference kernel of a stateless node, for recomputing unrecorded values."""
        if name not in self._kernels:
            node = self.program.nodes[name]
            self._kernels[name] = KERNELS.get(type(node).__name__)(node, self.program.dt)
        return self._kernels[name]

    def counter(self, name: str, in_shape: tuple) -> ConnectionCounter:
        if name not in self._counters:
            self._counters[name] = ConnectionCounter(self.program.nodes[name], in_shape, self.mm)
        return self._counters[name]

    def shape(self, name: str, in_shape: tuple) -> ConnectionShape:
        if name not in self._shapes:
            self._shapes[name] = ConnectionShape.of(self.program.nodes[name], in_shape)
        return self._shapes[name]
