"""Streaming per-layer and total activity metrics of one target (ENERGY.md sections 1 and 2).

:class:`MetricsAccumulator` consumes one :class:`~spikeport.core.recording.Recording` per batch
together with the batch input x (T, B, *input_shape) and optional exit steps, and keeps only
per-layer per-step sums (arrays of length T) and per-sample scalars, in one declared tally per
spiking layer, connection and population; no spike train outlives ``update``. ``summary()``
returns a JSON-serialisable dict (its fields: docs/energy.md, "The estimate JSON").

What is counted (t*_b = exit step of sample b, 1-based; every count uses only t <= t*_b):

- **Spiking layers** are the program's spiking nodes (LIF, CubaLIF, IF, Threshold). Their
  values must be recorded by the target (every target records its neuron populations).
  ``spikes_per_step[t]`` is the sum over neurons, averaged over *all* samples (a sample that
  exited before t contributes 0); ``firing_rate`` = mean over samples of sum S / (N t*_b).
- **Hidden layers** are all spiking layers except those whose output reaches the graph output
  through pass-through nodes only (Output / Input / Flatten / Delay):
  :func:`~spikeport.core.recording.hidden_populations`, as in training. Usage U_b = fraction of
  hidden neurons with >= 1 spike up to t*_b; histogram over 10 equal bins of [0, 1] (the last
  bin includes 1).
- **Activation sparsity** = 1 - sum nnz / sum numel over (layer, step <= t*, sample, neuron),
  all spiking layers (NeuroBench's definition, output layer included) and hidden layers only.
- **Synaptic operations** of every connection node (Affine, Linear, Conv1d, Conv2d; a
  recurrent weight is an ordinary connection node fed by a recurrent edge). A connection's
  input is the sum of its sources' values (a recurrent edge delivers the previous step's
  value). A source that the target did not record (the Loihi targets record only neuron
  populations) is *recomputed* from its own sources when it is a stateless pass-through node
  (Input, Output, Flatten, SumPool2d, AvgPool2d, Scale), with the kernels of
  :mod:`spikeport.exporters.reference`; anything else unrecorded is an error
  (:mod:`spikeport.estimation.batch`). Effective ops per step = sum of the output of the
  connection run with binarised weights (w != 0 -> 1) and zero bias on the binarised input
  (x != 0 -> 1) -- NeuroBench's definition, exact for convolutions with padding and stride.
  Bias is not an op. Computed without running the connection, by the counting engine
  (:class:`~spikeport.estimation.counting.ConnectionCounter`: popcounts of the bit-packed input
  map, or one matrix-vector product per batch; tests compare it with the binarised
  connection run by the reference kernels).
  *AC vs MAC from the graph*: AC iff the connection has exactly one incoming edge and that
  source is, through Input/Output/Flatten/Delay pass-throughs, a spiking node or the graph
  input with ``input_binary=True``; otherwise MAC (analog input, pooled / scaled currents,
  several summed sources such as residual sums).
  *NeuroBench's value-based split* is evaluated per (step, sample): AC iff every input element
  is in {-1, 0, 1} (NeuroBench decides per layer call, i.e. per batch; identical whenever the
  inputs are spikes).
  Recurrent connections are counted at the step at which their input spike is emitted.
- **Dense baselines**: ``dense_snn`` = ops of the connection run with all-ones weights on an
  all-ones input, at every step up to t* (NeuroBench's ``Dense``; padding positions excluded);
  ``ann_macs`` = fan_in * N_out of one dense pass (conv: C_in/groups * kh * kw per output
  element, padding included) and ``ann_flops`` = (2 fan_in + 1) N_out.
  ``effective_per_synapse`` = effective ops per sample / number of non-zero weights.
- **Neuron updates** of every neuron population (spiking nodes and LI / CubaLI / I nodes):
  ``dense`` = N t*; ``active_events`` = (neuron, step) pairs at which the neuron received at
  least one synaptic event (a non-zero input meeting a non-zero weight of a connection feeding
  it, propagated through pools / flatten) or spiked -- computable on every target, but blind to
  bias currents and to a non-zero membrane without input, so a lower bound of the contract's
  "non-zero input or non-zero state"; ``active_input`` = pairs with non-zero input current
  (sum of the population's sources, bias included), only when the target recorded (or the
  pass-throughs allow recomputing) those sources -- float targets -- else ``None``;
  ``active_state`` = the contract's definition, (neuron, step) pairs with non-zero input or
  non-zero state before the update, counted from the target's own ``Recording.active``
  (loihi-emu records it on request), else ``None``.
- **Memory traffic**: :mod:`spikeport.estimation.memory`.
- **NeuroBench's names** (``neurobench``): ``Footprint`` = 4 bytes (float32) per weight, bias
  and per-neuron parameter the neuron model keeps (decays and threshold:
  :data:`NEURON_STATE_PARAMS`); ``ConnectionSparsity`` = zero weights / weights of the
  connection nodes; ``ActivationSparsity`` (all spiking layers, as above);
  ``SynapticOperations`` = ``Effective_MACs``, ``Effective_ACs`` (the value-based split) and
  ``Dense``. Checked against NeuroBench 2.3.0 on snntorch models
  (tests/test_estimate_metrics.py::test_neurobench_cross_check; NeuroBench's Footprint also
  counts snntorch's two scalar buffers per layer). NeuroBench's MembraneUpdates and
  NeuronOperations are not reported: they compare snntorch's membrane before and after each
  step, which only the torch targets hold; ``neuron_updates`` is spikeport's counterpart.

A :class:`~spikeport.core.recording.Recording` with a per-node ``delay`` is read on the model's
time axis (``aligned``), zero-padded at the end to T steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spikeport.core import samples
from spikeport.core.errors import GraphError
from spikeport.core.recording import Recording
from spikeport.estimation.batch import Batch, NotAvailable, spiky
from spikeport.estimation.counting import nonzero_counts
from spikeport.estimation.memory import ConnectionLoad, PopulationLoad, memory_traffic
from spikeport.estimation.network import ConnectionShape, CountedNetwork
from spikeport.ir.program import SPIKING, Program, build_program

HIST_BINS = 10
CONVENTIONS = {
    "per_step": "sum over samples / number of samples (exited samples count 0)",
    "per_sample": "mean over samples, integrated over t <= exit step",
    "firing_rate": "spikes / (neurons * exit step), averaged over samples",
    "ac_mac": "from the graph: AC iff the only source is a spiking node (or the "
              "graph input when input_binary); neurobench_*: value-based per "
              "(step, sample)",
    "active_events": "(neuron, step) with >= 1 incoming synaptic event or a spike",
    "active_input": "(neuron, step) with non-zero input current; null if the "
                    "target did not record the population's input",
    "active_state": "(neuron, step) with non-zero input or non-zero state before "
                    "the update (ENERGY.md 1.5), as the target recorded it "
                    "(Recording.active); null where the target cannot tell",
}
# connection row -> total it adds to, in this order
_SYNOPS_TOTALS = (("effective", "effective_per_sample"), ("ac", "ac_per_sample"),
                  ("mac", "mac_per_sample"), ("neurobench_ac", "neurobench_ac_per_sample"),
                  ("neurobench_mac", "neurobench_mac_per_sample"),
                  ("dense_snn", "dense_snn_per_sample"), ("ann_macs", "ann_macs"),
                  ("ann_flops", "ann_flops"), ("nonzero_weights", "nonzero_weights"))


def _stats(a: np.ndarray) -> dict:
    if a.size == 0:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None}
    srt, m = np.sort(a), a.size // 2
    median = srt[m] if a.size % 2 else (srt[m - 1] + srt[m]) / 2  # as np.median computes it
    return {"mean": float(a.mean()), "std": float(a.std()), "median": float(median),
            "min": float(srt[0]), "max": float(srt[-1])}


@dataclass(frozen=True)
class Exits:
    """The exit steps of one batch and the (step, sample) pairs they keep."""
    steps: np.ndarray   # (B,) int64, 1-based
    mask: np.ndarray    # (T, B) float64: 1 where t < exit step
    full: bool          # every sample runs all T steps

    @classmethod
    def of(cls, exit_steps, T: int, B: int) -> "Exits":
        if exit_steps is None:
            ts, full = np.full(B, T, dtype=np.int64), True
        else:
            ts = np.asarray(exit_steps).astype(np.int64).reshape(-1)
            if ts.shape != (B,) or ts.min() < 1 or ts.max() > T:
                raise ValueError(f"exit_steps must be {B} integers in 1..{T}")
            full = bool(ts.min() == T)
        return cls(ts, (np.arange(T)[:, None] < ts[None, :]).astype(np.float64), full)

    def total(self, a: np.ndarray, mm) -> float:
        """Non-zero elements of a (T, B, ...) array up to the exit step."""
        if self.full:
            return float(np.count_nonzero(a if a.dtype == bool else a != 0))
        return float((nonzero_counts(a, mm) * self.mask).sum())


@dataclass
class LayerTally:
    """One spiking layer, summed over the batches so far."""
    step: np.ndarray                                      # (T,) spikes per step
    neurons: int = 0
    totals: list[np.ndarray] = field(default_factory=list)  # per batch: spikes per sample
    used: list[np.ndarray] = field(default_factory=list)    # per batch: neurons that spiked
    nonzero: float = 0.0                                  # (step, sample, neuron) spiking
    elements: float = 0.0                                 # (step, sample, neuron) counted
    rate_sum: float = 0.0                                 # sum over samples of firing rates

    def add(self, batch: Batch, name: str, exits: Exits) -> np.ndarray:
        """Count one batch; returns the neurons used per sample (B,)."""
        T, mask, ts = batch.T, exits.mask, exits.steps
        s = batch.value(name).reshape(T, mask.shape[1], -1)
        N = self.neurons = s.shape[-1]
        binary = batch.ones_only(name)
        if binary:  # the sum is the count: row sums of the 0/1 operand (exact)
            s_tb = batch.rows(name) * mask
        else:
            s_tb = s.sum(-1, dtype=np.float64) * mask
        tot = s_tb.sum(0)
        if exits.full and binary:  # a neuron is used if it spiked at any step
            used = batch.operand(name).ever(T)
        elif exits.full:
            used = np.count_nonzero(batch.events(name).reshape(T, -1, N).any(0), -1)
        else:  # a neuron counts as used if its first spike comes before the exit step
            nz = batch.events(name).reshape(T, -1, N)
            first = np.where(nz.any(0), nz.argmax(0), T)
            used = np.count_nonzero(first < ts[:, None], -1)
        self.step += s_tb.sum(1)
        self.totals.append(tot)
        self.used.append(used)
        self.nonzero += float(tot.sum()) if binary else exits.total(batch.events(name), batch.net.mm)
        self.elements += float(N * ts.sum())
        self.rate_sum += float((tot / (N * ts)).sum())
        return used

    def report(self, n: int, hidden: bool) -> dict:
        used = np.concatenate(self.used) / self.neurons
        return {
            "neurons": self.neurons, "hidden": hidden,
            "spikes_per_step": (self.step / n).tolist(),
            "spikes_per_sample": _stats(np.concatenate(self.totals)),
            "firing_rate": self.rate_sum / n,
            "activation_sparsity": 1.0 - self.nonzero / self.elements,
            "usage": {"mean": float(used.mean()), "median": float(np.median(used))},
        }


@dataclass
class ConnectionTally:
    """One connection node, summed over the batches so far."""
    step: np.ndarray                   # (T,) effective ops per step
    shape: ConnectionShape | None = None
    effective: float = 0.0
    neurobench_ac: float = 0.0
    neurobench_mac: float = 0.0
    dense: float = 0.0
    nonzero_inputs: float = 0.0

    def add(self, batch: Batch, name: str, exits: Exits) -> None:
        inp, counter, op, nonzero = batch.conn(name)
        T, B = inp.shape[:2]
        if self.shape is None:
            self.shape = batch.net.shape(name, inp.shape[2:])
        ops = counter.ops(op, nonzero).reshape(T, B) * exits.mask
        self.step += ops.sum(1)
        self.effective += float(ops.sum())
        src = batch.net.direct_source(name)
        if src is not None and batch.ones_only(src):
            by_value = np.ones((T, B), bool)
        else:
            by_value = spiky(inp, batch.conn_nz(name))
        self.neurobench_ac += float((ops * by_value).sum())
        self.neurobench_mac += float((ops * ~by_value).sum())
        self.dense += self.shape.dense_per_step * float(exits.steps.sum())
        self.nonzero_inputs += float((nonzero.reshape(T, B) * exits.mask).sum())

    def report(self, n: int, net: CountedNetwork, name: str) -> dict:
        S, kind, eff = self.shape, net.kind[name], self.effective / n
        return {
            "kind": kind, "sources": [s for s, _ in net.program.inputs[name]],
            "recurrent_input": any(r for _, r in net.program.inputs[name]),
            "fan_in": S.fan_in, "outputs": S.outputs, "weights": S.weights,
            "nonzero_weights": S.nonzero_weights,
            "effective_per_step": (self.step / n).tolist(),
            "effective_per_sample": eff,
            "ac_per_sample": eff if kind == "AC" else 0.0,
            "mac_per_sample": eff if kind == "MAC" else 0.0,
            "neurobench_ac_per_sample": self.neurobench_ac / n,
            "neurobench_mac_per_sample": self.neurobench_mac / n,
            "dense_snn_per_sample": self.dense / n,
            "ann_macs": S.ann_macs, "ann_flops": S.ann_flops,
            "effective_per_synapse": eff / S.nonzero_weights if S.nonzero_weights else None,
        }

    def load(self, n: int) -> ConnectionLoad:
        return ConnectionLoad(self.nonzero_inputs / n, self.effective / n, self.shape.inputs,
                              self.shape.weights, self.shape.outputs)


@dataclass
class PopulationTally:
    """One neuron population's updates, summed over the batches so far; ``input`` and
    ``state`` become None once a batch cannot tell them."""
    neurons: int = 0
    dense: float = 0.0
    events: float = 0.0
    input: float | None = 0.0
    state: float | None = 0.0

    def add(self, batch: Batch, name: str, exits: Exits) -> None:
        net, T = batch.net, batch.T
        spiking = isinstance(net.program.nodes[name], SPIKING)
        active = self._active_dense(batch, name, spiking)
        if active is not None:  # counted without building the (T, B, N) event map
            self.events += float((active.reshape(T, -1) * exits.mask).sum())
        else:
            ev = batch.events_into(name).reshape(T, exits.mask.shape[1], -1)
            self.neurons = ev.shape[-1]
            if spiking:
                ev = ev | batch.events(name).reshape(ev.shape)
            self.events += exits.total(ev, net.mm)
        self.dense += float(self.neurons * exits.steps.sum())
        if self.input is not None:
            try:
                self.input += exits.total(batch.input_nonzero(name), net.mm)
            except NotAvailable:
                self.input = None
        if name not in batch.rec.active:
            self.state = None
        elif self.state is not None:  # the target's own (step, neuron) activity
            self.state += exits.total(batch.aligned(batch.rec.active, name), net.mm)

    def _active_dense(self, batch: Batch, name: str, spiking: bool) -> np.ndarray | None:
        """Receiving (or spiking) neurons per (step, sample) of a population fed by one dense
        connection over one axis, from the connection's counter; else None."""
        c = batch.net.dense_feed(name)
        if c is None:
            return None
        inp, counter, op, nonzero = batch.conn(c)
        if math.prod(inp.shape[2:-1]) != 1:  # an Affine over more than one axis
            return None
        self.neurons = counter.outputs
        return counter.active_rows(nonzero, op, batch.operand(name) if spiking else None,
                                   batch.rows(name).reshape(-1) if spiking else None)

    def report(self, n: int) -> dict:
        return {"neurons": self.neurons, "dense_per_sample": self.dense / n,
                "active_events_per_sample": self.events / n,
                "active_input_per_sample": None if self.input is None else self.input / n,
                "active_state_per_sample": None if self.state is None else self.state / n}


# per-neuron parameters a neuron model keeps, for NeuroBench's Footprint: decay(s) and
# threshold (snntorch's Leaky keeps beta and threshold, Synaptic alpha, beta and threshold)
NEURON_STATE_PARAMS = {"LIF": 2, "CubaLIF": 3, "IF": 1, "LI": 1, "CubaLI": 2, "I": 0}


class MetricsAccumulator:
    """Accumulates activity metrics of one target over batches; see the module docstring.

    ``input_binary``: every x given to ``update`` holds only 0 and 1 (the estimator checks
    all its inputs once); taken on trust by the AC/MAC split, graph-based and value-based
    alike. ``matmul``: the library of the target's thread pool
    (:data:`~spikeport.estimation.counting.MATMUL`). ``binary_spikes``: the target guarantees
    that its spiking nodes emit exactly 0 or 1 (``Counting.binary_spikes``, tested per
    built-in target), which spares one pass over every spike array; otherwise that is
    checked on every batch."""

    def __init__(self, program: Program, input_binary: bool, matmul: str = "numpy",
                 binary_spikes: bool = False):
        self.network = CountedNetwork(program, input_binary, matmul, binary_spikes)
        self.T: int | None = None
        self.n = 0

    @classmethod
    def for_target(cls, target, artifact, graph, x) -> "MetricsAccumulator":
        """The accumulator for a compiled target: it counts the network the target runs
        (``target.counted_graph``: Loihi's integer weights, pools folded) with the target's
        ``Counting`` declarations; the input is binary iff every element of x (an array or
        :class:`~spikeport.core.samples.Samples`, read a block at a time) is 0 or 1."""
        program = build_program(target.counted_graph(artifact, graph))
        binary = all(bool(np.all((b == 0) | (b == 1))) for _, b in samples.blocks(x))
        return cls(program, binary, target.counting.matmul, target.counting.binary_spikes)

    def _start(self, T: int) -> None:
        net = self.network
        self.T = T
        self.exit_steps: list[np.ndarray] = []
        self.input_step = np.zeros(T)
        self.layers = {n: LayerTally(np.zeros(T)) for n in net.spiking}
        self.usage: list[np.ndarray] = []   # per batch: hidden usage per sample
        self.connections = {c: ConnectionTally(np.zeros(T)) for c in net.connections}
        self.populations = {p: PopulationTally() for p in net.populations}

    def update(self, rec: Recording, x: np.ndarray, exit_steps: np.ndarray | None = None) -> None:
        """Count one batch: its Recording, its input x (T, B, ...) and the exit step of each
        sample (1-based; None: every sample runs all T steps)."""
        x = np.asarray(x)
        if x.ndim < 3:
            raise ValueError(f"x must be (T, B, *input_shape), got shape {x.shape}")
        T, B = x.shape[:2]
        if self.T is None:
            self._start(T)
        elif T != self.T:
            raise ValueError(f"batch has T={T}, earlier batches had T={self.T}")
        exits = Exits.of(exit_steps, T, B)
        batch = Batch(self.network, rec, x)
        self.exit_steps.append(exits.steps)
        self.input_step += (batch.rows(self.network.input_node) * exits.mask).sum(1)
        used_hidden = np.zeros(B)
        for name, layer in self.layers.items():
            if name not in rec.values:
                raise GraphError(f"spiking node {name!r} is not in the recording",
                                 "every target must record its neuron populations")
            used = layer.add(batch, name, exits)
            if name in self.network.hidden:
                used_hidden += used
        n_hidden = sum(self.layers[h].neurons for h in self.network.hidden)
        if n_hidden:
            self.usage.append(used_hidden / n_hidden)
        for name, conn in self.connections.items():
            conn.add(batch, name, exits)
        for name, pop in self.populations.items():
            pop.add(batch, name, exits)
        self.n += B

    # ---- report ---------------------------------------------------------------------------
    def summary(self) -> dict:
        """The metrics of every batch so far, per sample (see the module docstring)."""
        if self.n == 0:
            raise ValueError("no batch accumulated")
        n, net = self.n, self.network
        out: dict = {
            "samples": n, "time_steps": self.T,
            "mean_exit_step": float(np.concatenate(self.exit_steps).mean()),
            "input_binary": net.input_binary, "conventions": dict(CONVENTIONS),
            "input": {"events_per_step": (self.input_step / n).tolist(),
                      "events_per_sample": float(self.input_step.sum() / n)},
        }
        labels = net.labels()
        layers = {name: {"label": labels[name], **L.report(n, name in net.hidden)}
                  for name, L in self.layers.items()}
        out["layers"] = layers
        out["spikes_per_sample"] = float(sum(L.step.sum() for L in self.layers.values()) / n)
        out["spikes_per_step"] = (sum((L.step for L in self.layers.values()),
                                      np.zeros(self.T)) / n).tolist()
        out["hidden_usage"] = self._hidden_usage(layers)
        out["activation_sparsity"] = {"all": self._sparsity(net.spiking),
                                      "hidden": self._sparsity(net.hidden)}
        out["synops"], out["synops_total"] = self._synops()
        out["neuron_updates"], out["neuron_updates_total"] = self._neuron_updates()
        out["neurobench"] = self._neurobench(out)
        out["memory"] = memory_traffic(
            {c: C.load(n) for c, C in self.connections.items()},
            {p: PopulationLoad(type(net.program.nodes[p]).__name__, U.neurons, U.dense / n,
                               layers[p]["spikes_per_sample"]["mean"] if p in layers else 0.0)
             for p, U in self.populations.items()})
        return out

    def _neurobench(self, out: dict) -> dict:
        """NeuroBench 2.3.0's names for the figures it shares with spikeport (module
        docstring): Footprint, ConnectionSparsity, ActivationSparsity, SynapticOperations."""
        nodes = self.network.program.nodes
        weights = zeros = params = 0
        for name in self.network.connections:
            w = np.asarray(nodes[name].weight)
            weights, zeros = weights + w.size, zeros + int(np.count_nonzero(w == 0))
            bias = getattr(nodes[name], "bias", None)
            params += w.size + (0 if bias is None else np.asarray(bias).size)
        for name in self.network.populations:
            kind = type(nodes[name]).__name__
            params += NEURON_STATE_PARAMS.get(kind, 0) * self.populations[name].neurons
        t = out["synops_total"]
        return {"Footprint": 4 * params,
                "ConnectionSparsity": zeros / weights if weights else None,
                "ActivationSparsity": out["activation_sparsity"]["all"],
                "SynapticOperations": {"Effective_MACs": t["neurobench_mac"],
                                       "Effective_ACs": t["neurobench_ac"],
                                       "Dense": t["dense_snn"]}}

    def _hidden_usage(self, layers: dict) -> dict:
        hidden = self.network.hidden
        u = np.concatenate(self.usage) if self.usage else np.zeros(0)
        # np.histogram's bins over [0, 1] (each [e_i, e_i+1), the last one closed)
        edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
        counts = np.bincount(np.clip(np.searchsorted(edges, u, side="right") - 1, 0, HIST_BINS - 1),
                             minlength=HIST_BINS)
        return {
            "layers": list(hidden),
            "neurons": int(sum(self.layers[h].neurons for h in hidden)),
            "mean": float(u.mean()) if u.size else None,
            "median": float(np.median(u)) if u.size else None,
            "per_layer": {h: layers[h]["usage"]["mean"] for h in hidden},
            "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
        }

    def _sparsity(self, names: list[str]) -> float | None:
        elements = sum(self.layers[name].elements for name in names)
        if elements == 0:
            return None
        return 1.0 - sum(self.layers[name].nonzero for name in names) / elements

    def _synops(self) -> tuple[dict, dict]:
        """Per connection and in total (``synops`` and ``synops_total``)."""
        n = self.n
        total: dict = {"effective": 0.0, "ac": 0.0, "mac": 0.0, "neurobench_ac": 0.0,
                       "neurobench_mac": 0.0, "dense_snn": 0.0, "ann_macs": 0, "ann_flops": 0,
                       "nonzero_weights": 0}
        rows, per_step = {}, np.zeros(self.T)
        for name, C in self.connections.items():
            rows[name] = row = C.report(n, self.network, name)
            per_step += C.step / n
            for k_out, k_in in _SYNOPS_TOTALS:
                total[k_out] += row[k_in]
        total["effective_per_step"] = per_step.tolist()
        total["effective_per_synapse"] = (total["effective"] / total["nonzero_weights"]
                                          if total["nonzero_weights"] else None)
        return rows, total

    def _neuron_updates(self) -> tuple[dict, dict]:
        """Per population and in total (``neuron_updates`` and ``neuron_updates_total``); a
        total is None if any population's is."""
        n = self.n
        rows, total = {}, {"dense": 0.0, "active_events": 0.0, "active_input": 0.0,
                           "active_state": 0.0}
        for name, U in self.populations.items():
            rows[name] = U.report(n)
            total["dense"] += U.dense / n
            total["active_events"] += U.events / n
            for key, value in (("active_input", U.input), ("active_state", U.state)):
                if total[key] is not None:
                    total[key] = None if value is None else total[key] + value / n
        return rows, total
