"""Cross-target validation: run the same inputs on several targets and compare.

For every target: accuracy (when labels are known; prediction = the output class with the
most spikes, ties to the lowest index). For every pair of targets and every spiking node:
the number of spike bins (step, sample, neuron) compared and how many differ, after aligning
each target's time axis to the model's (``Recording.delay``). Inputs are processed in
batches so memory stays bounded on whole test splits.

:func:`validate` takes a run directory or a graph (what ``spikeport validate`` takes) and
writes ``validation.json`` into a run; :func:`compare_targets` is the comparison itself on a
graph and an input array.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import nir
import numpy as np

from spikeport import runs
from spikeport.core.devices import check_target_device
from spikeport.core import io, transactions
from spikeport.core.errors import SpikeportError
from spikeport.core.recording import Recording, predict
from spikeport.exporters.targets import get_target, run_in_batches, target_names
from spikeport.training.scores import require_finite

VALIDATION_FILE = "validation.json"
DEFAULT_TARGETS = ("reference", "snntorch", "onnx")


@dataclass
class LayerAgreement:
    mismatched_spike_bins: int
    total_spike_bins: int


@dataclass
class PairAgreement:
    """Spike-bin agreement of two targets: in total and per spiking node."""
    a: str
    b: str
    mismatched_spike_bins: int
    total_spike_bins: int
    layers: dict[str, LayerAgreement]


@dataclass
class ValidationResult:
    """What ``spikeport validate --json`` prints and ``RUN/validation.json`` holds.

    - ``samples``: inputs compared; ``inputs``: where they came from
    - ``targets``: accuracy per target (None without labels)
    - ``spikes``: total spikes per target and spiking node
    - ``pairs``: one :class:`PairAgreement` per pair of targets, in the order listed
    """
    samples: int
    targets: dict[str, float | None]
    spikes: dict[str, dict[str, int]]
    pairs: list[PairAgreement] = field(default_factory=list)
    inputs: str | None = None

    def to_json(self) -> dict:
        return io.dataclass_json(self, omit_if_none=("inputs",))


def check_target_names(names: list[str]) -> list[str]:
    """Refuse an empty list, unknown names and repeated names, before anything runs."""
    if not names:
        raise SpikeportError("no target to validate", "pass --targets reference,snntorch,...")
    known = target_names()
    for t in names:
        if t not in known:
            raise SpikeportError(f"unknown target {t!r}", f"use one of: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise SpikeportError("a target is listed twice", "list each target once")
    return list(names)


def _agreement(ra: Recording, rb: Recording, pairs: dict, key: tuple[str, str]) -> None:
    """Add the spike bins of every spiking node the two recordings share to ``pairs[key]``."""
    for node in ra.spiking:
        if node not in rb.spiking:
            continue
        sa, sb = ra.aligned(node), rb.aligned(node)
        steps = min(len(sa), len(sb))
        sa, sb = sa[:steps], sb[:steps]
        acc = pairs.setdefault(key, {}).setdefault(node, [0, 0])
        acc[0] += int((sa != sb).sum())
        acc[1] += int(sa.size)


def compare_targets(graph: nir.NIRGraph, x: np.ndarray, y: np.ndarray | None,
                    targets: list[str], batch_size: int = 128,
                    options: dict | None = None, workers: int = 1) -> ValidationResult:
    """Run x (T, B, ...) on every target; accuracy per target, spike agreement per pair.
    ``workers``: shards run at once on each target (:func:`run_in_batches`)."""
    check_target_names(list(targets))
    compiled = {t: (get_target(t), get_target(t).compile(graph, dict(options or {})))
                for t in targets}
    n = x.shape[1]
    correct = {t: 0 for t in targets}
    pairs: dict[tuple[str, str], dict[str, list[int]]] = {}
    spike_totals: dict[str, dict[str, int]] = {t: {} for t in targets}
    # A chunk of samples is what every target sees before the comparison; a target that
    # wants all samples in one call (Lava: one simulator run) makes the chunk the whole set.
    chunk = n if any(tg.batch_size is None for tg, _ in compiled.values()) else batch_size
    for start in range(0, n, chunk):
        xb = x[:, start:start + chunk]
        yb = None if y is None else y[start:start + chunk]
        recs = {t: run_in_batches(tg, art, xb, batch_size, workers)
                for t, (tg, art) in compiled.items()}
        for t, rec in recs.items():
            if yb is not None:
                correct[t] += int((predict(rec.aligned(rec.output)) == yb).sum())
            for node in rec.spiking:
                spike_totals[t][node] = spike_totals[t].get(node, 0) + int(rec.aligned(node).sum())
        for a, b in combinations(targets, 2):
            _agreement(recs[a], recs[b], pairs, (a, b))
    return ValidationResult(
        samples=int(n), targets={t: (correct[t] / n if y is not None else None) for t in targets},
        spikes=spike_totals,
        pairs=[PairAgreement(a, b, sum(v[0] for v in layers.values()),
                             sum(v[1] for v in layers.values()),
                             {node: LayerAgreement(*v) for node, v in layers.items()})
               for (a, b), layers in pairs.items()])


def validate(run_or_graph: str | Path, targets: list[str] | tuple[str, ...] = DEFAULT_TARGETS, *,
             samples: int | None = None, input_file: str | Path | None = None,
             allow_approximation: bool = False, batch_size: int = 128,
             dt: float | None = None, workers: int = 1, device: str = "cpu") -> ValidationResult:
    """Validate a run directory (its test split) or a ``.nir`` file (with ``input_file``) on
    ``targets``; a run directory also gets the result as ``validation.json``, committed
    with the ``model.nir`` it was computed from (interrupted: neither changes). ``dt``: the
    step of a graph that records none (:func:`spikeport.runs.read_graph`). ``workers``: sample
    shards run at once on each target (Lava: that many simulator processes); the result is
    the same for any number. ``device``: where the torch-based target (snntorch) computes."""
    names = check_target_names(list(targets))
    check_target_device(device, names)
    runs.check_workers(workers)
    if samples is not None and samples < 1:
        raise SpikeportError("--samples must be >= 1", "pass a positive number of samples")
    with transactions.run_transaction(run_or_graph) as tx:
        graph, inputs, run_dir = runs.resolve(run_or_graph, input_file, samples, targets=names, dt=dt,
                                              lazy=True)
        result = compare_targets(graph, inputs.x, inputs.y, names, batch_size,
                                 options={"allow_approximation": allow_approximation,
                                          "device": device},
                                 workers=workers)
        result.inputs = inputs.source
        require_finite(result.to_json(), "validation")
        if tx is not None:
            tx.write_json(VALIDATION_FILE, result.to_json())
    return result
