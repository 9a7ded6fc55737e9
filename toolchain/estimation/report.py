"""The result of ``spikeport estimate``: :class:`EstimateResult`, its JSON and its table.

The JSON is documented field by field in docs/energy.md ("The estimate JSON").
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

# fields left out of the JSON when None
_OPTIONAL = ("pipeline_latency_steps", "plots", "mapping")


@dataclass
class EstimateResult:
    """Spikes, usage, synaptic operations, cutoff latency and energy of one target, per sample
    (mean over the evaluated samples; every count integrated up to each sample's exit step).

    - ``target``, ``inputs`` (where the samples came from), ``samples``, ``T`` (steps run).
    - ``spikes_per_sample``: spikes of all spiking layers; ``hidden_usage``: mean fraction of
      hidden neurons that spike at least once (None without hidden layers);
      ``synops_per_sample``: effective synaptic operations; ``memory_bytes_per_sample``: the
      Lemaire memory traffic (:mod:`~spikeport.estimation.memory`).
    - ``energy``: per energy profile, the result of :func:`~spikeport.estimation.energy.energy`;
      ``energy_profile`` names the first (the one asked for, else the target's first), whose
      total is ``energy_per_sample_j``, split into ``energy_dynamic_j`` (every term but
      static power) and ``energy_static_j`` (None where the profile has no static term).
    - ``mapping``: the cores and chips the network takes on the first profile's chip
      (:func:`spikeport.exporters.loihi.mapping.map_network`), on which its static power is
      charged; only on the Loihi targets with a Loihi profile (absent from the JSON else).
    - ``neurobench``: the figures NeuroBench 2.3.0 shares with spikeport, under its names
      (``metrics["neurobench"]``: Footprint, ConnectionSparsity, ActivationSparsity,
      SynapticOperations).
    - ``cutoff``: the anytime-exit summary (method, mean / median / p95 steps, accuracy at the
      cutoff and at T, speedup, forced fraction, oracle OCT, histogram, and the full ``report``
      of :func:`~spikeport.estimation.cutoff.cutoff_report`); None without labels.
    - ``counts``: the per-sample counts the energy model was given (ENERGY.md 1).
    - ``metrics``: everything :meth:`MetricsAccumulator.summary
      <spikeport.estimation.metrics.MetricsAccumulator.summary>` reports (per layer, per
      connection, per population, memory); in the file, not in the CLI's ``--json``.
    - ``pipeline_latency_steps``: steps an input spike takes through the deployed pipeline
      (the ``lava`` target only; absent from the JSON otherwise).
    - ``plots``: PNG files written for this result (absent from the JSON until set).
    - ``first_sample``: the spikes (T, ...) of every spiking layer for the first sample, for
      the raster plot; never in the JSON.
    """
    target: str
    inputs: str
    samples: int
    T: int
    spikes_per_sample: float
    hidden_usage: float | None
    synops_per_sample: float
    memory_bytes_per_sample: float
    energy_per_sample_j: float
    energy_dynamic_j: float
    energy_static_j: float | None
    energy_profile: str
    energy: dict[str, dict]
    neurobench: dict
    cutoff: dict | None
    counts: dict
    metrics: dict = field(repr=False)
    pipeline_latency_steps: int | None = None
    plots: list[str] | None = None
    mapping: dict | None = None
    first_sample: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict:
        """The whole report, as written to ``RUN/estimate-TARGET.json``: every field but
        ``first_sample``; ``pipeline_latency_steps`` and ``plots`` only when set."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "first_sample"
                and not (f.name in _OPTIONAL and getattr(self, f.name) is None)}

    def to_json(self) -> dict:
        """What ``spikeport estimate --json`` prints: :meth:`as_dict` without ``metrics``."""
        out = self.as_dict()
        del out["metrics"]
        return out

    def table(self) -> str:
        """The human-readable report ``spikeport estimate`` prints."""
        header = [f"target {self.target}  inputs {self.inputs}  T = {self.T}", ""]
        mapping = []
        if self.mapping is not None:
            from spikeport.exporters.loihi.mapping import format_mapping

            mapping = ["", f"mapping on {self.mapping['chip']}:", format_mapping(self.mapping)]
        return "\n".join(header + _population_lines(self.metrics) + _summary_lines(self)
                         + mapping + _energy_lines(self))


def _population_lines(m: dict) -> list[str]:
    width = max([len("population")] + [len(L["label"]) for L in m["layers"].values()])
    nodes = max([len("node")] + [len(name) for name in m["layers"]])
    lines = [f"{'population':<{width}} {'node':<{nodes}} {'spikes/sample':>14} {'rate':>8} "
             f"{'usage':>7}"]
    for name, L in m["layers"].items():
        lines.append(f"{L['label']:<{width}} {name:<{nodes}} "
                     f"{L['spikes_per_sample']['mean']:>14.1f} {L['firing_rate']:>8.4f} "
                     f"{L['usage']['mean']:>7.3f}")
    lines += ["", f"{'connection':<18} {'kind':>5} {'synops/sample':>14} {'per synapse':>12} {'ANN MACs':>10}"]
    for name, c in m["synops"].items():
        per = c["effective_per_synapse"]
        lines.append(f"{name:<18} {c['kind']:>5} {c['effective_per_sample']:>14.1f} "
                     f"{'-' if per is None else f'{per:.2f}':>12} {c['ann_macs']:>10}")
    return lines


def _summary_lines(r: EstimateResult) -> list[str]:
    m, tot, c = r.metrics, r.metrics["synops_total"], r.cutoff
    usage = "n/a" if r.hidden_usage is None else f"{r.hidden_usage:.3f}"
    lines = ["", f"spikes per sample       {r.spikes_per_sample:.1f}",
             f"hidden-neuron usage     {usage} (mean fraction of hidden neurons spiking)",
             f"synaptic ops / sample   {tot['effective']:.1f} (AC {tot['ac']:.1f}, MAC {tot['mac']:.1f}); "
             f"dense SNN {tot['dense_snn']:.0f}; one dense ANN pass {tot['ann_macs']} MACs",
             f"activation sparsity     {m['activation_sparsity']['all']:.4f}",
             _neurobench_line(r.neurobench)]
    if c:
        lines += [f"cutoff ({c['method']}){' ' * max(1, 16 - len(c['method']))}mean {c['mean_steps']:.2f} / "
                  f"median {c['median_steps']:.0f} / p95 {c['p95_steps']:.1f} of {c['T']} steps "
                  f"({c['speedup']:.2f}x fewer), forced {c['fraction_forced']:.3f}",
                  f"accuracy                {c['accuracy']:.4f} at cutoff, {c['full_accuracy']:.4f} at T; "
                  "oracle OCT " + ("n/a (no sample correct at T)" if c["mean_oct"] is None
                                    else f"{c['mean_oct']:.2f} steps")]
    if r.pipeline_latency_steps is not None:
        lines.append(f"pipeline latency        {r.pipeline_latency_steps} steps (Lava; add to every exit)")
    return lines


def _energy_lines(r: EstimateResult) -> list[str]:
    lines = []
    for name, e in r.energy.items():
        terms = ", ".join(f"{k} {v:.3g}" for k, v in e["terms_J"].items() if v is not None)
        lines.append(f"energy [{name}]{' ' * max(1, 14 - len(name))}{e['total_J']:.4g} J per sample "
                     f"({terms}); constants: {', '.join(e['markers_used'])}")
        static = e["static_power"]
        if e["static_J"] is not None:
            whole = static.get("whole_chips_J")
            lines.append(f"  dynamic {e['dynamic_J']:.4g} J, static {e['static_J']:.4g} J for "
                         f"{static['charged_for']}" + ("" if whole is None else
                                                       f"; whole chip(s): {whole:.4g} J"))
    naive = next(iter(r.energy.values()))["naive"]
    lines.append(f"naive #AC x 0.9 pJ + #MAC x 4.6 pJ (comparison only): {naive['J']:.4g} J")
    if naive.get("ann_dense_J") is not None:
        mem = naive.get("ann_dense_with_memory_J")
        lines.append(f"one dense ANN pass, 45 nm fp32 (comparison only): {naive['ann_dense_J']:.4g} J "
                     "MACs" + ("" if mem is None else f", {mem:.4g} J with Lemaire memory traffic"))
    mem = r.metrics.get("memory")
    if mem:
        lines.append(f"memory traffic          {mem['bytes_per_sample'] / 1024:.1f} KiB per sample "
                     f"(Lemaire model; priced by profiles with e_mem_*, e.g. --profile ann-45nm)")
    return lines


def _neurobench_line(nb: dict) -> str:
    cs = nb["ConnectionSparsity"]
    ops = nb["SynapticOperations"]
    return (f"NeuroBench names        Footprint {nb['Footprint']} B, ConnectionSparsity "
            f"{'n/a' if cs is None else f'{cs:.4f}'}, Effective_ACs {ops['Effective_ACs']:.1f}, "
            f"Effective_MACs {ops['Effective_MACs']:.1f}, Dense {ops['Dense']:.0f}")
