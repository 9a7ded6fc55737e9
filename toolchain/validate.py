"""Cross-target validation: run the same inputs on several targets and compare.

For every target: accuracy (when labels are known; prediction = the output class with the
most spikes, ties to the lowest index). For every pair of targets and every spiking node:
the number of spike bins (step, sample, neuron) compared and how many differ, after aligning
each target's time axis to the model's (``Recording.delay``). Inputs are processed in
batches so memory stays bounded on whole test splits.
"""
from __future__ import annotations

from itertools import combinations

import nir
import numpy as np

from spikeport.exporters.targets import get_target, run_in_batches
from spikeport.core.errors import SpikeportError
from spikeport.core.recording import Recording


def predict(output: np.ndarray) -> np.ndarray:
    return output.sum(0).argmax(-1)


def validate(graph: nir.NIRGraph, x: np.ndarray, y: np.ndarray | None, targets: list[str],
             batch_size: int = 128, options: dict | None = None) -> dict:
    if len(targets) < 1:
        raise SpikeportError("no target to validate", "pass --targets reference,snntorch,...")
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
        recs: dict[str, Recording] = {t: run_in_batches(tg, art, xb, batch_size)
                                      for t, (tg, art) in compiled.items()}
        for t, rec in recs.items():
            if yb is not None:
                correct[t] += int((predict(rec.aligned(rec.output)) == yb).sum())
            for node in rec.spiking:
                spike_totals[t][node] = spike_totals[t].get(node, 0) + int(rec.aligned(node).sum())
        for a, b in combinations(targets, 2):
            ra, rb = recs[a], recs[b]
            for node in ra.spiking:
                if node not in rb.spiking:
                    continue
                sa, sb = ra.aligned(node), rb.aligned(node)
                steps = min(len(sa), len(sb))
                sa, sb = sa[:steps], sb[:steps]
                acc = pairs.setdefault((a, b), {}).setdefault(node, [0, 0])
                acc[0] += int((sa != sb).sum())
                acc[1] += int(sa.size)
    result = {
        "samples": int(n),
        "targets": {t: (correct[t] / n if y is not None else None) for t in targets},
        "spikes": spike_totals,
        "pairs": [],
    }
    for (a, b), layers in pairs.items():
        result["pairs"].append({
            "a": a, "b": b,
            "mismatched_spike_bins": sum(v[0] for v in layers.values()),
            "total_spike_bins": sum(v[1] for v in layers.values()),
            "layers": {node: {"mismatched_spike_bins": v[0], "total_spike_bins": v[1]}
                       for node, v in layers.items()},
        })
    return result
