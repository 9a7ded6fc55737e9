"""``spikeport estimate``: spikes, hidden-neuron usage, synaptic operations, anytime-cutoff
latency and energy of a network *as deployed on one target*.

The pipeline (ENERGY.md 5): run the target on the inputs batch by batch; from each batch's
output layer compute the exit step of every sample under the chosen cutoff; feed the
Recording, the inputs and the exit steps to :class:`~spikeport.estimation.metrics.MetricsAccumulator`
(every count integrated only up to the exit step); at the end turn the per-sample counts
into energy with each energy profile of the target (or the one asked for). The result is an
:class:`~spikeport.estimation.report.EstimateResult`.

Cutoffs: ``topk`` (AOI-SNN's Top-K gap with one threshold per step, calibrated on the run's
*training* split with the reference target and stored as ``RUN/cutoff_topk.json``, then
applied to any target), ``confidence`` (exit when max softmax of the accumulated output
counts exceeds 1 - epsilon), ``none`` (fixed T). The readout is the accumulated output spike
count. Calibration differs from the paper in one respect: AOI-SNN calibrates with dropout
p = 0.3 switched on; spikeport's models have no dropout, so calibration is deterministic.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikeport.exporters.targets import get_target, run_in_batches
from spikeport import runs as artifacts
from spikeport.core import transactions
from spikeport.core.devices import check_target_device
from spikeport.core.errors import SpikeportError
from spikeport.training.scores import require_finite
from spikeport.estimation import cutoff as co
from spikeport.estimation.energy import energy
from spikeport.estimation.metrics import MetricsAccumulator
from spikeport.estimation.profiles import Profile, load_profile
from spikeport.estimation.report import EstimateResult

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
    inputs = artifacts.run_inputs(run_dir, samples, split="train", lazy=True)
    ref = get_target("reference")
    rec = run_in_batches(ref, ref.compile(graph, {}), inputs.x, batch_size)
    th = co.calibrate_topk(_output_per_step(rec), inputs.y, epsilon=epsilon,
                           calibration_set=f"{inputs.source}, reference target")
    th["calibration_samples"] = samples
    with transactions.transaction(run_dir) as tx:  # joins estimate()'s: committed with its outputs
        tx.write_with(TOPK_FILE, lambda p: co.save_thresholds(p, th))
    return th


@dataclass(frozen=True)
class CutoffRule:
    """The cutoff of one estimate: its method, tolerance and (topk) calibrated thresholds."""
    method: str
    epsilon: float | None
    thresholds: dict | None = None

    def exits(self, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exit steps (1-based) and the forced mask of per-step outputs o (T, B, C)."""
        if self.method == "topk":
            return co.apply_topk(o, self.thresholds["thresholds"], return_forced=True)
        if self.method == "confidence":
            return co.apply_confidence(o, self.epsilon, return_forced=True)
        return co.apply_none(o, return_forced=True)


def _cutoff_rule(method: str, epsilon: float | None, run_dir: Path | None, inputs,
                 calibration_samples: int | None, batch_size: int) -> CutoffRule:
    """Check the cutoff options, then calibrate (topk), in that order: a bad option fails
    before anything runs."""
    eps = epsilon
    if method == "topk":
        if run_dir is None:
            raise SpikeportError("the topk cutoff is calibrated on a run's training split",
                                 "pass a run directory, or use --cutoff confidence|none")
        eps = 0.0 if epsilon is None else epsilon
    elif method == "confidence":
        eps = 0.05 if epsilon is None else epsilon
    if method != "none" and inputs.y is None:
        raise SpikeportError("a cutoff report needs labels", "pass inputs with labels y, or --cutoff none")
    if eps is not None and not 0.0 <= eps < 1.0:
        raise SpikeportError(f"--epsilon must be in [0, 1), got {eps}", "pass e.g. --epsilon 0.01")
    if method != "topk":
        return CutoffRule(method, eps)
    T = inputs.x.shape[0]
    return CutoffRule(method, eps, calibrate(run_dir, T, eps, calibration_samples, batch_size))


@dataclass
class _Counted:
    """What running the target batch by batch leaves: the metrics, the per-step predictions
    (T, B) (not the outputs (T, B, C): memory), exit steps and forced mask (B,), the first
    sample's spikes, the latency, and the compiled artifact."""
    metrics: dict
    predictions: np.ndarray
    exits: np.ndarray
    forced: np.ndarray
    first_sample: dict
    pipeline_latency: int | None
    artifact: object = None


def _run_and_count(tg, graph, x: np.ndarray, rule: CutoffRule, batch_size: int,
                   options: dict, workers: int = 1) -> _Counted:
    """Run the target on x in chunks; cut each chunk off and count it up to its exits."""
    artifact = tg.compile(graph, options)
    # count on the network the target runs (Loihi: integer weights, pools folded)
    acc = MetricsAccumulator.for_target(tg, artifact, graph, x)
    runner = tg.counting_run()
    chunk = x.shape[1] if tg.batch_size is None else batch_size
    outputs, exits, forced, first, latency = [], [], [], None, None
    for start in range(0, x.shape[1], chunk):
        xb = x[:, start:start + chunk]
        rec = run_in_batches(runner, artifact, xb, batch_size, workers)
        o = _output_per_step(rec)
        t, f = rule.exits(o)
        acc.update(rec, xb, t)
        outputs.append(co.predictions(o).astype(np.int32))
        exits.append(t)
        forced.append(f)
        if first is None:
            first = {n: rec.aligned(n)[:, 0].copy() for n in rec.spiking}
        if rec.pipeline_latency is not None:
            latency = int(rec.pipeline_latency)
        # free this batch's recording before the next one is made: kept alive through the next
        # inference, it made that inference 8-10 % slower (digits MLP on onnx, measured side by
        # side with plain inference; freed first, the difference was gone)
        del rec
    return _Counted(acc.summary(), np.concatenate(outputs, 1), np.concatenate(exits),
                    np.concatenate(forced), first, latency, artifact)


def _cutoff_summary(rule: CutoffRule, counted: _Counted, y: np.ndarray | None) -> dict | None:
    """The ``cutoff`` field of the result (None without labels)."""
    if y is None:
        return None
    pred, T = counted.predictions, counted.predictions.shape[0]
    report = co.report_from_predictions(pred, y, counted.exits, counted.forced)
    report["method"] = rule.method
    report["epsilon"] = rule.epsilon
    if rule.thresholds is not None:
        report["thresholds"] = rule.thresholds["thresholds"]
        report["calibration_set"] = rule.thresholds["calibration_set"]
    report["accuracy_at_step"] = [float((pred[k] == y).mean()) for k in range(T)]
    return {"method": rule.method, "mean_steps": report["mean_steps"],
            "median_steps": report["median_steps"], "p95_steps": report["p95_steps"],
            "accuracy": report["accuracy_at_cutoff"], "full_accuracy": report["accuracy_at_T"],
            "T": int(T), "speedup": report["speedup"], "fraction_forced": report["fraction_forced"],
            "mean_oct": report["mean_oct"], "histogram": report["histogram"], "report": report}


def energy_counts(m: dict) -> dict:
    """The per-sample counts the energy model takes (:mod:`spikeport.estimation.energy`), from
    the metrics: the contract's active updates where the target can tell (non-zero input or
    state), else those with non-zero input current (float targets), else the event-based
    lower bound."""
    tot, upd = m["synops_total"], m["neuron_updates_total"]
    active = next(v for v in (upd["active_state"], upd["active_input"], upd["active_events"])
                  if v is not None)
    return {"synops_ac": tot["ac"], "synops_mac": tot["mac"], "synops_dense": tot["dense_snn"],
            "dense_ann_macs": tot["ann_macs"], "neuron_updates_active": active,
            "neuron_updates_idle": upd["dense"] - active, "spikes": m["spikes_per_sample"],
            "steps": m["mean_exit_step"],
            "dense_ann_memory_accesses_64bit": m["memory"]["ann_dense"]["accesses_64bit"]}


def _mappings(tg, artifact, profiles: dict[str, Profile]) -> dict[str, dict]:
    """Chip -> the network's mapping onto it, for the chips the profiles name, where the
    target can place its network (:attr:`Counting.mapping`)."""
    chips = {p.chip for p in profiles.values() if p.chip is not None}
    if tg.counting.mapping is None:
        return {}
    return {chip: tg.counting.mapping(artifact, chip) for chip in sorted(chips)}


def _energies(counts: dict, memory: dict, profiles: dict[str, Profile],
              mappings: dict[str, dict]) -> dict[str, dict]:
    """Energy per profile; the Lemaire memory traffic goes to the profiles that price it, and
    static power is charged for the cores the mapping on the profile's chip uses."""
    with_memory = {**counts, "memory_accesses_64bit": memory["accesses_64bit"]}
    return {name: energy(with_memory if prof.prices_memory else counts, prof,
                         placement=mappings.get(prof.chip))
            for name, prof in profiles.items()}


def estimate(run_or_graph, target: str, *, profile: str | None = None, cutoff: str = "topk",
             epsilon: float | None = None, samples: int | None = None, input_file=None,
             calibration_samples: int | None = 1000, batch_size: int = 128,
             allow_approximation: bool = False, plots: str | Path | None = None,
             dt: float | None = None, workers: int = 1, device: str = "cpu") -> EstimateResult:
    """Estimate a run directory (its test split) or a ``.nir`` graph (on ``input_file``) as
    deployed on ``target``: see the module docstring. With a run directory, the result is
    also written to ``RUN/estimate-TARGET.json`` (:meth:`EstimateResult.as_dict`); with
    ``plots``, PNG plots go into that directory and ``result.plots`` lists them. Everything
    an estimate writes (the JSON, the plots, the run's model.nir and calibration) is
    committed together (:func:`spikeport.core.transactions.transaction`): interrupted, nothing
    changes. ``dt``: the step of a graph that records none (:func:`spikeport.runs.read_graph`).
    ``workers``: sample shards run at once (Lava: simulator processes); same result for any
    number (:func:`spikeport.exporters.targets.run_in_batches`)."""
    artifacts.check_workers(workers)
    check_target_device(device, [target])
    if cutoff not in CUTOFFS:
        raise SpikeportError(f"unknown cutoff {cutoff!r}", f"use one of: {', '.join(CUTOFFS)}")
    if plots is not None:
        transactions.check_dir_path(plots, "--plots")  # before the work, not after
    if Path(run_or_graph).is_dir():
        commit = transactions.run_transaction(run_or_graph)  # the run's files, and the plots anywhere
    elif plots is not None:
        commit = transactions.transaction(plots)
    else:
        commit = contextlib.nullcontext()  # a graph without plots: nothing to write
    with commit as tx:
        return _estimate(tx, run_or_graph, target, profile, cutoff, epsilon, samples, input_file,
                         calibration_samples, batch_size, allow_approximation, plots, dt,
                         workers, device)


def _estimate(tx: transactions.Transaction | None, run_or_graph, target: str, profile: str | None,
              cutoff: str, epsilon: float | None, samples: int | None, input_file,
              calibration_samples: int | None, batch_size: int, allow_approximation: bool,
              plots: str | Path | None, dt: float | None, workers: int,
              device: str = "cpu") -> EstimateResult:
    graph, inputs, run_dir = artifacts.resolve(run_or_graph, input_file, samples,
                                               targets=[target], dt=dt, lazy=True)
    tg = get_target(target)
    names = [profile] if profile is not None else list(tg.profiles)
    profiles = {p: load_profile(p) for p in names}  # bad profile: fail before running anything
    rule = _cutoff_rule(cutoff, epsilon, run_dir, inputs, calibration_samples, batch_size)
    counted = _run_and_count(tg, graph, inputs.x, rule, batch_size,
                             {"allow_approximation": allow_approximation, "device": device}, workers)
    m = counted.metrics
    counts = energy_counts(m)
    mappings = _mappings(tg, counted.artifact, profiles)
    energies = _energies(counts, m["memory"], profiles, mappings)
    first = energies[names[0]]
    result = EstimateResult(
        target=target, inputs=inputs.source, samples=int(inputs.x.shape[1]),
        T=int(inputs.x.shape[0]), spikes_per_sample=m["spikes_per_sample"],
        hidden_usage=m["hidden_usage"]["mean"],
        synops_per_sample=m["synops_total"]["effective"],
        memory_bytes_per_sample=m["memory"]["bytes_per_sample"],
        energy_per_sample_j=first["total_J"], energy_profile=names[0],
        energy_dynamic_j=first["dynamic_J"], energy_static_j=first["static_J"],
        neurobench=m["neurobench"],
        mapping=mappings.get(profiles[names[0]].chip),
        energy=energies, cutoff=_cutoff_summary(rule, counted, inputs.y), counts=counts,
        metrics=m, pipeline_latency_steps=counted.pipeline_latency,
        first_sample=counted.first_sample)
    require_finite(result.as_dict(), f"estimate on {target}")
    if run_dir is not None:
        tx.write_json(f"estimate-{target}.json", result.as_dict())
    if plots is not None:
        from spikeport.estimation.plots import write_plots

        result.plots = [str(p) for p in write_plots(result, plots, tx)]
    return result
