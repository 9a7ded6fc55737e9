"""``spikeport estimate``: spikes, hidden-neuron usage, synaptic operations, anytime-cutoff
latency and energy of a network *as deployed on one target*.

The pipeline (ENERGY.md 5): run the target on the inputs batch by batch; from each batch's
output layer compute the exit step of every sample under the chosen cutoff; feed the
Recording, the inputs and the exit steps to :class:`~spikeport.estimate.counting.MetricsAccumulator`
(every count integrated only up to the exit step); at the end turn the per-sample counts
into energy with each energy profile of the target (or the one asked for).

Cutoffs: ``topk`` (AOI-SNN's Top-K gap with one threshold per step, calibrated on the run's
*training* split with the reference target and stored as ``RUN/cutoff_topk.json``, then
applied to any target), ``confidence`` (exit when max softmax of the accumulated output
counts exceeds 1 - epsilon), ``none`` (fixed T). The readout is the accumulated output spike
count. Calibration differs from the paper in one respect: AOI-SNN calibrates with dropout
p = 0.3 switched on; spikeport's models have no dropout, so calibration is deterministic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeport.exporters.targets import get_target, run_in_batches
from spikeport import runs as artifacts
from spikeport.core import io
from spikeport.core.errors import SpikeportError
from spikeport.estimate import cutoff as co
from spikeport.estimate.energy import energy, load_profile
from spikeport.estimate.metrics import MetricsAccumulator

CUTOFFS = ("topk", "confidence", "none")
TOPK_FILE = "cutoff_topk.json"


def _output_per_step(rec) -> np.ndarray:
    o = rec.aligned(rec.output)
    return o.reshape(o.shape[0], o.shape[1], -1)


def calibrate(run_dir: Path, T: int, epsilon: float, samples: int | None, batch_size: int) -> dict:
    """Top-K thresholds from the reference target on the run's training split; cached."""
    path = run_dir / TOPK_FILE
    if path.exists():
        try:
            th = co.load_thresholds(path, T=T)
            if float(th.get("epsilon", -1)) == float(epsilon) and th.get("calibration_samples") == samples:
                return th
        except SpikeportError:
            pass  # stale or for another T: recalibrate and overwrite
    graph, _ = artifacts.export_run_graph(run_dir, write=False)
    inputs = artifacts.run_inputs(run_dir, samples, split="train")
    ref = get_target("reference")
    rec = run_in_batches(ref, ref.compile(graph, {}), inputs.x, batch_size)
    th = co.calibrate_topk(_output_per_step(rec), inputs.y, epsilon=epsilon,
                           calibration_set=f"{inputs.source}, reference target")
    th["calibration_samples"] = samples
    co.save_thresholds(path, th)
    return th


def estimate(run_or_graph, target: str, *, profile: str | None = None, cutoff: str = "topk",
             epsilon: float | None = None, samples: int | None = None, input_file=None,
             calibration_samples: int | None = 1000, batch_size: int = 128,
             allow_approximation: bool = False) -> dict:
    if cutoff not in CUTOFFS:
        raise SpikeportError(f"unknown cutoff {cutoff!r}", f"use one of: {', '.join(CUTOFFS)}")
    graph, inputs, run_dir = artifacts.resolve(run_or_graph, input_file, samples)
    tg = get_target(target)
    profiles = [profile] if profile else list(tg.profiles)
    loaded = {p: load_profile(p) for p in profiles}  # bad profile: fail before running anything
    x, y = inputs.x, inputs.y
    T = x.shape[0]
    thresholds = None
    eps = epsilon
    if cutoff == "topk":
        if run_dir is None:
            raise SpikeportError("the topk cutoff is calibrated on a run's training split",
                                 "pass a run directory, or use --cutoff confidence|none")
        eps = 0.0 if epsilon is None else epsilon
        thresholds = calibrate(run_dir, T, eps, calibration_samples, batch_size)
    elif cutoff == "confidence":
        eps = 0.05 if epsilon is None else epsilon
    if cutoff != "none" and y is None:
        raise SpikeportError("a cutoff report needs labels", "pass inputs with labels y, or --cutoff none")
    if eps is not None and not 0.0 <= eps < 1.0:
        raise SpikeportError(f"--epsilon must be in [0, 1), got {eps}", "pass e.g. --epsilon 0.01")

    artifact = tg.compile(graph, {"allow_approximation": allow_approximation})
    # count on the network the target runs (Loihi: integer weights, pools folded)
    acc = MetricsAccumulator.for_target(tg, artifact, graph, x)
    runner = tg.counting_run()
    chunk = x.shape[1] if tg.batch_size is None else batch_size
    outputs, exits, forced, first = [], [], [], None
    extra = {}
    for start in range(0, x.shape[1], chunk):
        xb = x[:, start:start + chunk]
        rec = run_in_batches(runner, artifact, xb, batch_size)
        o = _output_per_step(rec)
        if cutoff == "topk":
            t, f = co.apply_topk(o, thresholds["thresholds"], return_forced=True)
        elif cutoff == "confidence":
            t, f = co.apply_confidence(o, eps, return_forced=True)
        else:
            t, f = co.apply_none(o, return_forced=True)
        acc.update(rec, xb, t)
        outputs.append(o)
        exits.append(t)
        forced.append(f)
        if first is None:
            first = {n: rec.aligned(n)[:, 0].copy() for n in rec.spiking}
        if rec.pipeline_latency is not None:
            extra["pipeline_latency_steps"] = int(rec.pipeline_latency)
        # free this batch's recording before the next one is made: kept alive through the next
        # inference, it made that inference 8-10 % slower (digits MLP on onnx, measured side by
        # side with plain inference; freed first, the difference was gone)
        del rec
    o = np.concatenate(outputs, 1)
    t = np.concatenate(exits)
    m = acc.summary()
    report = None
    if y is not None:
        report = co.cutoff_report(o, y, t, np.concatenate(forced))
        report["method"] = cutoff
        report["epsilon"] = eps
        if thresholds is not None:
            report["thresholds"] = thresholds["thresholds"]
            report["calibration_set"] = thresholds["calibration_set"]
        Y = np.cumsum(o, 0)
        report["accuracy_at_step"] = [float((Y[k].argmax(-1) == y).mean()) for k in range(T)]
    tot, upd = m["synops_total"], m["neuron_updates_total"]
    # the contract's definition where the target can tell (non-zero input or state), else
    # non-zero input current (float targets), else the event-based lower bound
    active = next(v for v in (upd["active_state"], upd["active_input"], upd["active_events"])
                  if v is not None)
    counts = {"synops_ac": tot["ac"], "synops_mac": tot["mac"], "synops_dense": tot["dense_snn"],
              "dense_ann_macs": tot["ann_macs"], "neuron_updates_active": active,
              "neuron_updates_idle": upd["dense"] - active, "spikes": m["spikes_per_sample"],
              "steps": m["mean_exit_step"]}
    mem = m["memory"]
    counts["dense_ann_memory_accesses_64bit"] = mem["ann_dense"]["accesses_64bit"]

    def with_memory(prof) -> dict:
        """The Lemaire-style memory traffic, for profiles that price memory accesses."""
        if not prof.prices_memory:
            return counts
        return {**counts, "memory_accesses_64bit": mem["accesses_64bit"]}

    energies = {p: energy(with_memory(prof), prof) for p, prof in loaded.items()}
    main = profiles[0]
    result = {
        "target": target, "inputs": inputs.source, "samples": int(x.shape[1]), "T": int(T),
        "spikes_per_sample": m["spikes_per_sample"],
        "hidden_usage": m["hidden_usage"]["mean"],
        "synops_per_sample": tot["effective"],
        "memory_bytes_per_sample": m["memory"]["bytes_per_sample"],
        "energy_per_sample_j": energies[main]["total_J"],
        "energy_profile": main,
        "energy": energies,
        "cutoff": None if report is None else {
            "method": cutoff, "mean_steps": report["mean_steps"], "median_steps": report["median_steps"],
            "p95_steps": report["p95_steps"], "accuracy": report["accuracy_at_cutoff"],
            "full_accuracy": report["accuracy_at_T"], "T": int(T), "speedup": report["speedup"],
            "fraction_forced": report["fraction_forced"], "mean_oct": report["mean_oct"],
            "histogram": report["histogram"], "report": report},
        "counts": counts,
        "metrics": m,
        **extra,
    }
    if run_dir is not None:
        io.write_json(Path(run_dir) / f"estimate-{target}.json", result)
    result["_first_sample"] = first
    return result


def format_table(r: dict) -> str:
    m = r["metrics"]
    lines = [f"target {r['target']}  inputs {r['inputs']}  T = {r['T']}", "",
             f"{'population':<18} {'neurons':>8} {'spikes/sample':>14} {'rate':>8} {'usage':>7}"]
    for name, L in m["layers"].items():
        lines.append(f"{name:<18} {L['neurons']:>8} {L['spikes_per_sample']['mean']:>14.1f} "
                     f"{L['firing_rate']:>8.4f} {L['usage']['mean']:>7.3f}"
                     f"{'' if L['hidden'] else '  (output)'}")
    lines += ["", f"{'connection':<18} {'kind':>5} {'synops/sample':>14} {'per synapse':>12} {'ANN MACs':>10}"]
    for name, c in m["synops"].items():
        per = c["effective_per_synapse"]
        lines.append(f"{name:<18} {c['kind']:>5} {c['effective_per_sample']:>14.1f} "
                     f"{'-' if per is None else f'{per:.2f}':>12} {c['ann_macs']:>10}")
    tot = m["synops_total"]
    lines += ["", f"spikes per sample       {r['spikes_per_sample']:.1f}",
              f"hidden-neuron usage     {r['hidden_usage']:.3f} (mean fraction of hidden neurons spiking)",
              f"synaptic ops / sample   {tot['effective']:.1f} (AC {tot['ac']:.1f}, MAC {tot['mac']:.1f}); "
              f"dense SNN {tot['dense_snn']:.0f}; one dense ANN pass {tot['ann_macs']} MACs",
              f"activation sparsity     {m['activation_sparsity']['all']:.4f}"]
    c = r["cutoff"]
    if c:
        lines += [f"cutoff ({c['method']}){' ' * max(1, 16 - len(c['method']))}mean {c['mean_steps']:.2f} / "
                  f"median {c['median_steps']:.0f} / p95 {c['p95_steps']:.1f} of {c['T']} steps "
                  f"({c['speedup']:.2f}x fewer), forced {c['fraction_forced']:.3f}",
                  f"accuracy                {c['accuracy']:.4f} at cutoff, {c['full_accuracy']:.4f} at T; "
                  f"oracle OCT {c['mean_oct']:.2f} steps"]
    if r.get("pipeline_latency_steps") is not None:
        lines.append(f"pipeline latency        {r['pipeline_latency_steps']} steps (Lava; add to every exit)")
    for name, e in r["energy"].items():
        terms = ", ".join(f"{k} {v:.3g}" for k, v in e["terms_J"].items() if v is not None)
        lines.append(f"energy [{name}]{' ' * max(1, 14 - len(name))}{e['total_J']:.4g} J per sample "
                     f"({terms}); constants: {', '.join(e['markers_used'])}")
    naive = next(iter(r["energy"].values()))["naive"]
    lines.append(f"naive #AC x 0.9 pJ + #MAC x 4.6 pJ (comparison only): {naive['J']:.4g} J")
    if naive.get("ann_dense_J") is not None:
        mem = naive.get("ann_dense_with_memory_J")
        lines.append(f"one dense ANN pass, 45 nm fp32 (comparison only): {naive['ann_dense_J']:.4g} J "
                     "MACs" + ("" if mem is None else f", {mem:.4g} J with Lemaire memory traffic"))
    mem = m.get("memory")
    if mem:
        lines.append(f"memory traffic          {mem['bytes_per_sample'] / 1024:.1f} KiB per sample "
                     f"(Lemaire model; priced by profiles with e_mem_*, e.g. --profile ann-45nm)")
    return "\n".join(lines)
