"""One batch of a Recording seen through the counted network: every node's values, where
they are non-zero, the events each node emits, and each connection's input and counter --
computed on demand and memoised, so that every map is made at most once per batch.

A node the target did not record is recomputed when it is a stateless pass-through
(``RECOMPUTABLE``: Input, Output, Flatten, SumPool2d, AvgPool2d, Scale) with the reference
kernels; anything else unrecorded raises :class:`NotAvailable`. A recorded array with a
per-node ``delay`` is read on the model's time axis, zero-padded at the end to T steps.
"""
from __future__ import annotations

import nir
import numpy as np

from spikeport.core.errors import GraphError
from spikeport.core.recording import Recording
from spikeport.estimation.counting import BitRows, ConnectionCounter, window_any
from spikeport.estimation.network import CONNECTIONS, RECOMPUTABLE, CountedNetwork
from spikeport.ir.program import SPIKING


class NotAvailable(Exception):
    """A node's value is neither recorded nor recomputable from recorded values."""


def _shift(v: np.ndarray) -> np.ndarray:
    """The previous step's value (zero at the first step): what a recurrent edge delivers."""
    return np.concatenate([np.zeros_like(v[:1]), v[:-1]])


def _fold(kernel, v: np.ndarray) -> np.ndarray:
    """A stateless reference kernel applied to (T, B, ...) by folding time into the batch."""
    T, B = v.shape[:2]
    out, _ = kernel.step(v.reshape(T * B, *v.shape[2:]), None)
    return out.reshape(T, B, *out.shape[1:])


def ones_only(v: np.ndarray, nz: np.ndarray) -> bool:
    """Is every non-zero element of v exactly 1? (nz = v != 0)"""
    return v.dtype == bool or np.count_nonzero(v == 1) == np.count_nonzero(nz)


def spiky(inp: np.ndarray, nz: np.ndarray) -> np.ndarray:
    """NeuroBench's value split per (step, sample): True iff every input element is in
    {-1, 0, 1}. One pass over the whole batch first; per row only if it finds a graded value."""
    T, B = inp.shape[:2]
    if ones_only(inp, nz):
        return np.ones((T, B), bool)
    bad = (np.abs(inp) != 1) & nz
    if not bad.any():
        return np.ones((T, B), bool)
    return ~bad.reshape(T, B, -1).any(-1)


class Batch:
    """Values, synaptic counts and event maps of one batch (see the module docstring)."""

    def __init__(self, net: CountedNetwork, rec: Recording, x: np.ndarray):
        self.net, self.rec, self.x = net, rec, x
        self.T = x.shape[0]
        self.rows_total = self.T * x.shape[1]
        self._values: dict[str, np.ndarray] = {}
        self._events: dict[str, np.ndarray] = {}
        self._conn: dict[str, tuple] = {}
        self._conn_nz: dict[str, np.ndarray] = {}
        self._nz: dict[str, np.ndarray] = {}
        self._ones: dict[str, bool] = {}
        self._op: dict[str, BitRows] = {}

    def operand(self, name: str) -> BitRows:
        """events(name) as rows (T*B, n): the input of the counting products and popcounts."""
        if name not in self._op:
            self._op[name] = BitRows(self.events(name), self.rows_total, self.net.mm)
        return self._op[name]

    def rows(self, name: str) -> np.ndarray:
        """Non-zero elements of events(name) per (step, sample), float64 (T, B)."""
        return self.operand(name).count().reshape(self.T, -1)

    def ones_only(self, name: str) -> bool:
        """Is every non-zero value the node emits exactly 1 (binary spikes)? Taken on trust
        for the spiking nodes of a target that declares binary spikes, and for the graph
        input when the network was told that the input is binary."""
        if name not in self._ones:
            net = self.net
            if (net.binary_spikes and name in net.spiking) or (
                    net.input_binary and name == net.input_node):
                self._ones[name] = True
            else:
                self._ones[name] = ones_only(self.value(name), self.events(name))
        return self._ones[name]

    def aligned(self, arrays: dict, name: str) -> np.ndarray:
        """A recorded (T', B, ...) array on the model's time axis: T steps from the node's
        delay on, zero-padded at the end (a delayed target)."""
        v = np.asarray(self.rec.aligned(name, arrays))
        if v.shape[0] < self.T:
            v = np.concatenate([v, np.zeros((self.T - v.shape[0], *v.shape[1:]), v.dtype)])
        return v[:self.T]

    def nonzero_of(self, name: str) -> np.ndarray:
        """Where the node's value is non-zero, bool (T, B, ...): as the target recorded it
        (``Recording.nonzero``) or from the value."""
        if name not in self._nz:
            if name in self.rec.nonzero:
                self._nz[name] = self.aligned(self.rec.nonzero, name)
            else:
                self._nz[name] = self.value(name) != 0
        return self._nz[name]

    def input_nonzero(self, name: str) -> np.ndarray:
        """Where the node's input (``node_input``) is non-zero, bool (T, B, ...)."""
        srcs = self.net.program.inputs[name]
        if len(srcs) == 1:
            s, r = srcs[0]
            return _shift(self.nonzero_of(s)) if r else self.nonzero_of(s)
        return self.node_input(name) != 0

    def value(self, name: str) -> np.ndarray:
        """The node's values (T, B, ...): the input, recorded, or recomputed."""
        if name in self._values:
            return self._values[name]
        if name == self.net.input_node:
            v = self.x
        elif name in self.rec.values:
            v = self.aligned(self.rec.values, name)
        elif isinstance(self.net.program.nodes[name], RECOMPUTABLE):
            v = _fold(self.net.kernel(name), np.asarray(self.node_input(name), dtype=np.float64))
        else:
            raise NotAvailable(name)
        self._values[name] = v
        return v

    def node_input(self, name: str) -> np.ndarray:
        """Sum of the node's incoming edges (recurrent edges: previous step)."""
        terms = [_shift(self.value(s)) if r else self.value(s)
                 for s, r in self.net.program.inputs[name]]
        if not terms:
            raise NotAvailable(name)
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    def conn(self, name: str) -> tuple[np.ndarray, ConnectionCounter, BitRows, np.ndarray]:
        """(input, counter, op, nonzero): the connection's input (T, B, ...), its event
        counter, where the input is non-zero as :class:`BitRows` (T*B, n) and the non-zero
        elements per row (T*B,)."""
        if name not in self._conn:
            try:
                inp = self.node_input(name)
            except NotAvailable as e:
                raise GraphError(
                    f"the input of connection {name!r} cannot be reconstructed: node {e.args[0]!r} "
                    "is not recorded by this target and is not a stateless pass-through",
                    "record that node, or estimate on a target that records every node") from None
            counter = self.net.counter(name, inp.shape[2:])
            src = self.net.direct_source(name)
            if src is not None:  # the source's own operand and counts, shared with its metrics
                op, nonzero = self.operand(src), self.rows(src).reshape(-1)
            else:
                self._conn_nz[name] = nz = self.input_nonzero(name)
                op = BitRows(nz, self.rows_total, self.net.mm)
                nonzero = op.count()
            self._conn[name] = (inp, counter, op, nonzero)
        return self._conn[name]

    def conn_nz(self, name: str) -> np.ndarray:
        """Where the connection's input is non-zero, bool (T, B, ...)."""
        if name not in self._conn_nz:
            inp = self.conn(name)[0]
            self._conn_nz[name] = self.events(self.net.direct_source(name)).reshape(inp.shape)
        return self._conn_nz[name]

    def events(self, name: str) -> np.ndarray:
        """Where a node emits at least one synaptic event, bool (T, B, ...)."""
        if name in self._events:
            return self._events[name]
        node = self.net.program.nodes[name]
        if name == self.net.input_node or isinstance(node, SPIKING):
            e = self.nonzero_of(name)
        elif isinstance(node, CONNECTIONS):
            _, counter, op, nonzero = self.conn(name)
            e = counter.receives(self.conn_nz(name), op, nonzero)
        elif isinstance(node, (nir.Input, nir.Output)):
            e = self.events_into(name)
        elif isinstance(node, nir.Flatten):
            e = _fold(self.net.kernel(name), self.events_into(name))
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            e = window_any(node, self.events_into(name))
        elif isinstance(node, nir.Scale):
            e = self.events_into(name) & (np.asarray(node.scale) != 0)
        else:
            e = self.nonzero_of(name)
        self._events[name] = e
        return e

    def events_into(self, name: str) -> np.ndarray:
        """Where any of the node's sources emits an event (recurrent edges: previous step)."""
        terms = [_shift(self.events(s)) if r else self.events(s)
                 for s, r in self.net.program.inputs[name]]
        out = terms[0]
        for t in terms[1:]:
            out = out | t
        return out
