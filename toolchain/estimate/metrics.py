"""Streaming per-layer and total activity metrics of one target (ENERGY.md sections 1 and 2).

:class:`MetricsAccumulator` consumes one :class:`~toolchain.record.Recording` per batch
together with the batch input x (T, B, *input_shape) and optional exit steps, and keeps only
per-layer per-step sums (arrays of length T) and per-sample scalars; no spike train outlives
``update``. ``summary()`` returns a JSON-serialisable dict.

What is counted (t*_b = exit step of sample b, 1-based; every count uses only t <= t*_b):

- **Spiking layers** are the program's spiking nodes (LIF, CubaLIF, IF, Threshold). Their
  values must be recorded by the target (every target records its neuron populations).
  ``spikes_per_step[t]`` is the sum over neurons, averaged over *all* samples (a sample that
  exited before t contributes 0); ``firing_rate`` = mean over samples of sum S / (N t*_b).
- **Hidden layers** are all spiking layers except those whose output reaches the graph output
  through pass-through nodes only (Output / Input / Flatten / Delay). Usage U_b = fraction of
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
  :mod:`exporters.reference`; anything else unrecorded is an error. Effective ops per step =
  sum of the output of the connection run with binarised weights (w != 0 -> 1) and zero bias on
  the binarised input (x != 0 -> 1) -- NeuroBench's method, exact for convolutions with
  padding and stride. Bias is not an op.
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
  pass-throughs allow recomputing) those sources -- float targets -- else ``None``.

A :class:`~toolchain.record.Recording` with a per-node ``delay`` is read on the model's time
axis (``aligned``), zero-padded at the end to T steps.
"""
from __future__ import annotations

import nir
import numpy as np

from exporters.graph import SPIKING, Program
from exporters.reference import KERNELS
from toolchain.errors import GraphError
from toolchain.record import Recording

CONNECTIONS = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
POPULATIONS = SPIKING + (nir.LI, nir.CubaLI, nir.I)
PASS_BINARY = (nir.Input, nir.Output, nir.Flatten, nir.Delay)   # keep a spike a spike
RECOMPUTABLE = (nir.Input, nir.Output, nir.Flatten, nir.SumPool2d, nir.AvgPool2d, nir.Scale)
HIST_BINS = 10


class _NotAvailable(Exception):
    """A node's value is neither recorded nor recomputable from recorded values."""


def _shift(v: np.ndarray) -> np.ndarray:
    """The previous step's value (zero at the first step): what a recurrent edge delivers."""
    return np.concatenate([np.zeros_like(v[:1]), v[:-1]])


def _apply(kernel, v: np.ndarray) -> np.ndarray:
    """A stateless reference kernel applied to (T, B, ...) by folding time into the batch."""
    T, B = v.shape[:2]
    out, _ = kernel.step(v.reshape(T * B, *v.shape[2:]), None)
    return out.reshape(T, B, *out.shape[1:])


def _stats(a: np.ndarray) -> dict:
    if a.size == 0:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None}
    return {"mean": float(a.mean()), "std": float(a.std()), "median": float(np.median(a)),
            "min": float(a.min()), "max": float(a.max())}


class _Batch:
    """Values and synaptic-event maps of one batch, computed on demand and memoised."""

    def __init__(self, acc: "MetricsAccumulator", rec: Recording, x: np.ndarray):
        self.acc, self.rec, self.x = acc, rec, x
        self.T = x.shape[0]
        self._values: dict[str, np.ndarray] = {}
        self._events: dict[str, np.ndarray] = {}
        self._conn: dict[str, np.ndarray] = {}

    def recorded(self, name: str) -> np.ndarray:
        v = np.asarray(self.rec.aligned(name), dtype=np.float64)
        if v.shape[0] < self.T:  # delayed target: zero-pad the tail
            v = np.concatenate([v, np.zeros((self.T - v.shape[0], *v.shape[1:]))])
        return v[:self.T]

    def value(self, name: str) -> np.ndarray:
        if name in self._values:
            return self._values[name]
        p = self.acc.program
        node = p.nodes[name]
        if name == self.acc.input_node:
            v = self.x
        elif name in self.rec.values:
            v = self.recorded(name)
        elif isinstance(node, RECOMPUTABLE):
            v = _apply(self.acc.kernel(name), self.node_input(name))
        else:
            raise _NotAvailable(name)
        self._values[name] = v
        return v

    def node_input(self, name: str) -> np.ndarray:
        """Sum of the node's incoming edges (recurrent edges: previous step)."""
        terms = [_shift(self.value(s)) if r else self.value(s)
                 for s, r in self.acc.program.inputs[name]]
        if not terms:
            raise _NotAvailable(name)
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    def conn_out(self, name: str) -> np.ndarray:
        """Per output element: number of (non-zero input, non-zero weight) pairs, (T, B, ...)."""
        if name not in self._conn:
            try:
                inp = self.node_input(name)
            except _NotAvailable as e:
                raise GraphError(
                    f"the input of connection {name!r} cannot be reconstructed: node {e.args[0]!r} "
                    "is not recorded by this target and is not a stateless pass-through",
                    "record that node, or estimate on a target that records every node") from None
            self._conn[name] = (inp, _apply(self.acc.binary_kernel(name), (inp != 0).astype(np.float64)))
        return self._conn[name][1]

    def conn_in(self, name: str) -> np.ndarray:
        self.conn_out(name)
        return self._conn[name][0]

    def events(self, name: str) -> np.ndarray:
        """Synaptic events (>= 0, per element) emitted by a node, (T, B, ...)."""
        if name in self._events:
            return self._events[name]
        node = self.acc.program.nodes[name]
        if name == self.acc.input_node:
            e = (self.x != 0).astype(np.float64)
        elif isinstance(node, CONNECTIONS):
            e = self.conn_out(name)
        elif isinstance(node, SPIKING):
            e = (self.value(name) != 0).astype(np.float64)
        elif isinstance(node, RECOMPUTABLE):
            e = np.abs(_apply(self.acc.kernel(name), self.events_into(name)))
        else:
            e = (self.value(name) != 0).astype(np.float64)
        self._events[name] = e
        return e

    def events_into(self, name: str) -> np.ndarray:
        terms = [_shift(self.events(s)) if r else self.events(s)
                 for s, r in self.acc.program.inputs[name]]
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out


class MetricsAccumulator:
    """Accumulates activity metrics of one target over batches; see the module docstring."""

    def __init__(self, program: Program, input_binary: bool):
        self.program = program
        self.input_binary = bool(input_binary)
        self.input_node = program.graph_inputs[0]
        nodes = program.nodes
        self.spiking = program.spiking_nodes()
        self.output_layers = self._output_layers()
        self.hidden = [n for n in self.spiking if n not in self.output_layers]
        self.connections = [n for n in program.order if isinstance(nodes[n], CONNECTIONS)]
        self.populations = [n for n in program.order if isinstance(nodes[n], POPULATIONS)]
        self.kind = {c: ("AC" if self._binary_message(c) else "MAC") for c in self.connections}
        self._kernels: dict[str, object] = {}
        self._bin_kernels: dict[str, object] = {}
        self.T: int | None = None
        self.n = 0

    # ---- graph analysis -------------------------------------------------------------------
    def _output_layers(self) -> list[str]:
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

    def kernel(self, name: str):
        if name not in self._kernels:
            node = self.program.nodes[name]
            self._kernels[name] = KERNELS.get(type(node).__name__)(node, self.program.dt)
        return self._kernels[name]

    def binary_kernel(self, name: str, ones: bool = False):
        key = (name, ones)
        if key not in self._bin_kernels:
            node = self.program.nodes[name]
            k = KERNELS.get(type(node).__name__)(node, self.program.dt)
            k.w = np.ones_like(k.w) if ones else (k.w != 0).astype(np.float64)
            if hasattr(k, "b"):
                k.b = np.zeros_like(k.b)
            self._bin_kernels[key] = k
        return self._bin_kernels[key]

    def _conn_static(self, name: str, in_shape: tuple, out_shape: tuple) -> dict:
        node = self.program.nodes[name]
        w = np.asarray(node.weight)
        fan_in = int(np.prod(w.shape[1:]))  # Linear: in features; conv: C_in/groups * k...
        n_out = int(np.prod(out_shape))
        ones = np.ones((1, *in_shape))
        dense_step = float(self.binary_kernel(name, ones=True).step(ones, None)[0].sum())
        return {"fan_in": fan_in, "outputs": n_out, "weights": int(w.size),
                "nonzero_weights": int(np.count_nonzero(w)), "dense_per_step": dense_step,
                "ann_macs": fan_in * n_out, "ann_flops": (2 * fan_in + 1) * n_out}

    # ---- accumulation ---------------------------------------------------------------------
    def _init(self, T: int):
        self.T = T
        z = lambda: np.zeros(T)  # noqa: E731
        self.exit_steps: list[np.ndarray] = []
        self.input_step = z()
        self.layer = {n: {"N": None, "step": z(), "totals": [], "used": [], "nnz": 0.0,
                          "numel": 0.0, "rate_sum": 0.0} for n in self.spiking}
        self.usage: list[np.ndarray] = []
        self.conn = {c: {"static": None, "step": z(), "eff": 0.0, "nb_ac": 0.0, "nb_mac": 0.0,
                         "dense": 0.0} for c in self.connections}
        self.upd = {p: {"N": None, "dense": 0.0, "events": 0.0, "input": 0.0,
                        "input_known": True} for p in self.populations}

    def update(self, rec: Recording, x: np.ndarray, exit_steps: np.ndarray | None = None) -> None:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim < 3:
            raise ValueError(f"x must be (T, B, *input_shape), got shape {x.shape}")
        T, B = x.shape[:2]
        if self.T is None:
            self._init(T)
        elif T != self.T:
            raise ValueError(f"batch has T={T}, earlier batches had T={self.T}")
        ts = np.full(B, T, dtype=np.int64) if exit_steps is None else \
            np.asarray(exit_steps).astype(np.int64).reshape(-1)
        if ts.shape != (B,) or np.any(ts < 1) or np.any(ts > T):
            raise ValueError(f"exit_steps must be {B} integers in 1..{T}")
        mask = (np.arange(T)[:, None] < ts[None, :]).astype(np.float64)  # (T, B)
        ctx = _Batch(self, rec, x)
        self.exit_steps.append(ts)
        self.input_step += (np.count_nonzero(x.reshape(T, B, -1), -1) * mask).sum(1)

        # spiking layers
        used_hidden = np.zeros(B)
        for name in self.spiking:
            if name not in rec.values:
                raise GraphError(f"spiking node {name!r} is not in the recording",
                                 "every target must record its neuron populations")
            s = ctx.value(name).reshape(T, B, -1)
            L = self.layer[name]
            N = L["N"] = s.shape[-1]
            nz = (s != 0) * mask[..., None]
            s_tb = s.sum(-1) * mask
            tot = s_tb.sum(0)
            used = (nz.sum(0) >= 1).sum(-1)
            L["step"] += s_tb.sum(1)
            L["totals"].append(tot)
            L["used"].append(used)
            L["nnz"] += float(nz.sum())
            L["numel"] += float(N * ts.sum())
            L["rate_sum"] += float((tot / (N * ts)).sum())
            if name in self.hidden:
                used_hidden += used
        n_hidden = sum(self.layer[h]["N"] for h in self.hidden)
        if n_hidden:
            self.usage.append(used_hidden / n_hidden)

        # synaptic operations
        for c in self.connections:
            out = ctx.conn_out(c)
            inp = ctx.conn_in(c)
            C = self.conn[c]
            if C["static"] is None:
                C["static"] = self._conn_static(c, inp.shape[2:], out.shape[2:])
            ops = out.reshape(T, B, -1).sum(-1) * mask
            flat = inp.reshape(T, B, -1)
            spiky = np.all((flat == 0) | (flat == 1) | (flat == -1), -1)
            C["step"] += ops.sum(1)
            C["eff"] += float(ops.sum())
            C["nb_ac"] += float((ops * spiky).sum())
            C["nb_mac"] += float((ops * ~spiky).sum())
            C["dense"] += C["static"]["dense_per_step"] * float(ts.sum())

        # neuron updates
        for p in self.populations:
            U = self.upd[p]
            ev = ctx.events_into(p).reshape(T, B, -1) > 0
            N = U["N"] = ev.shape[-1]
            if isinstance(self.program.nodes[p], SPIKING):
                ev = ev | (ctx.value(p).reshape(T, B, -1) != 0)
            U["dense"] += float(N * ts.sum())
            U["events"] += float((ev * mask[..., None]).sum())
            try:
                cur = ctx.node_input(p).reshape(T, B, -1)
                U["input"] += float(((cur != 0) * mask[..., None]).sum())
            except _NotAvailable:
                U["input_known"] = False
        self.n += B

    # ---- report ---------------------------------------------------------------------------
    def summary(self) -> dict:
        if self.n == 0:
            raise ValueError("no batch accumulated")
        n = self.n
        ts = np.concatenate(self.exit_steps)
        out: dict = {
            "samples": n, "time_steps": self.T, "mean_exit_step": float(ts.mean()),
            "input_binary": self.input_binary,
            "conventions": {
                "per_step": "sum over samples / number of samples (exited samples count 0)",
                "per_sample": "mean over samples, integrated over t <= exit step",
                "firing_rate": "spikes / (neurons * exit step), averaged over samples",
                "ac_mac": "from the graph: AC iff the only source is a spiking node (or the "
                          "graph input when input_binary); neurobench_*: value-based per "
                          "(step, sample)",
                "active_events": "(neuron, step) with >= 1 incoming synaptic event or a spike",
                "active_input": "(neuron, step) with non-zero input current; null if the "
                                "target did not record the population's input",
            },
            "input": {"events_per_step": (self.input_step / n).tolist(),
                      "events_per_sample": float(self.input_step.sum() / n)},
        }
        layers = {}
        for name in self.spiking:
            L = self.layer[name]
            tot = np.concatenate(L["totals"])
            used = np.concatenate(L["used"]) / L["N"]
            layers[name] = {
                "neurons": L["N"], "hidden": name in self.hidden,
                "spikes_per_step": (L["step"] / n).tolist(),
                "spikes_per_sample": _stats(tot),
                "firing_rate": L["rate_sum"] / n,
                "activation_sparsity": 1.0 - L["nnz"] / L["numel"],
                "usage": {"mean": float(used.mean()), "median": float(np.median(used))},
            }
        out["layers"] = layers
        out["spikes_per_sample"] = float(sum(self.layer[l]["step"].sum() for l in self.spiking) / n)
        out["spikes_per_step"] = (sum((self.layer[l]["step"] for l in self.spiking),
                                      np.zeros(self.T)) / n).tolist()

        u = np.concatenate(self.usage) if self.usage else np.zeros(0)
        counts, edges = np.histogram(u, bins=HIST_BINS, range=(0.0, 1.0))
        out["hidden_usage"] = {
            "layers": list(self.hidden),
            "neurons": int(sum(self.layer[h]["N"] for h in self.hidden)),
            "mean": float(u.mean()) if u.size else None,
            "median": float(np.median(u)) if u.size else None,
            "per_layer": {h: layers[h]["usage"]["mean"] for h in self.hidden},
            "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
        }

        def sparsity(names):
            numel = sum(self.layer[l]["numel"] for l in names)
            return None if numel == 0 else 1.0 - sum(self.layer[l]["nnz"] for l in names) / numel
        out["activation_sparsity"] = {"all": sparsity(self.spiking), "hidden": sparsity(self.hidden)}

        syn, total = {}, {"effective": 0.0, "ac": 0.0, "mac": 0.0, "neurobench_ac": 0.0,
                          "neurobench_mac": 0.0, "dense_snn": 0.0, "ann_macs": 0,
                          "ann_flops": 0, "nonzero_weights": 0}
        per_step = np.zeros(self.T)
        for c in self.connections:
            C, S = self.conn[c], self.conn[c]["static"]
            eff = C["eff"] / n
            row = {
                "kind": self.kind[c], "sources": [s for s, _ in self.program.inputs[c]],
                "recurrent_input": any(r for _, r in self.program.inputs[c]),
                "fan_in": S["fan_in"], "outputs": S["outputs"], "weights": S["weights"],
                "nonzero_weights": S["nonzero_weights"],
                "effective_per_step": (C["step"] / n).tolist(),
                "effective_per_sample": eff,
                "ac_per_sample": eff if self.kind[c] == "AC" else 0.0,
                "mac_per_sample": eff if self.kind[c] == "MAC" else 0.0,
                "neurobench_ac_per_sample": C["nb_ac"] / n,
                "neurobench_mac_per_sample": C["nb_mac"] / n,
                "dense_snn_per_sample": C["dense"] / n,
                "ann_macs": S["ann_macs"], "ann_flops": S["ann_flops"],
                "effective_per_synapse": eff / S["nonzero_weights"] if S["nonzero_weights"] else None,
            }
            syn[c] = row
            per_step += C["step"] / n
            for k_out, k_in in (("effective", "effective_per_sample"), ("ac", "ac_per_sample"),
                                ("mac", "mac_per_sample"), ("neurobench_ac", "neurobench_ac_per_sample"),
                                ("neurobench_mac", "neurobench_mac_per_sample"),
                                ("dense_snn", "dense_snn_per_sample"), ("ann_macs", "ann_macs"),
                                ("ann_flops", "ann_flops"), ("nonzero_weights", "nonzero_weights")):
                total[k_out] += row[k_in]
        total["effective_per_step"] = per_step.tolist()
        total["effective_per_synapse"] = (total["effective"] / total["nonzero_weights"]
                                          if total["nonzero_weights"] else None)
        out["synops"] = syn
        out["synops_total"] = total

        upd, utot = {}, {"dense": 0.0, "active_events": 0.0, "active_input": 0.0}
        for p in self.populations:
            U = self.upd[p]
            upd[p] = {"neurons": U["N"], "dense_per_sample": U["dense"] / n,
                      "active_events_per_sample": U["events"] / n,
                      "active_input_per_sample": U["input"] / n if U["input_known"] else None}
            utot["dense"] += U["dense"] / n
            utot["active_events"] += U["events"] / n
            if utot["active_input"] is not None:
                utot["active_input"] = (None if not U["input_known"]
                                        else utot["active_input"] + U["input"] / n)
        out["neuron_updates"] = upd
        out["neuron_updates_total"] = utot
        return out
