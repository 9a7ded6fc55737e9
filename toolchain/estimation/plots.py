"""PNG plots of an estimate: per-layer spikes, a raster of one sample, accuracy against exit
step, and the energy breakdown. matplotlib with the Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeport.core import transactions
from spikeport.estimation.report import EstimateResult


def write_plots(result: EstimateResult, out_dir: str | Path,
                tx: transactions.Transaction | None = None) -> list[Path]:
    """Write the PNG plots of ``result`` into ``out_dir``; returns their paths. The plots are
    staged in ``tx`` (committed with the rest of a command's outputs) or, without one,
    committed together on their own: interrupted, none of the old plots changes."""
    if tx is None:
        with transactions.transaction(out_dir) as own:
            return write_plots(result, out_dir, own)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    written = []
    plots = [("spikes-per-layer", _spikes_per_layer), ("raster", _raster)]
    c = result.cutoff
    if c and "accuracy_at_step" in c["report"]:
        plots.append(("accuracy-vs-step", _accuracy_vs_step))
    plots.append(("energy", _energy))
    for name, draw in plots:
        fig = draw(plt, result)
        path = out / f"{result.target}-{name}.png"
        try:
            tx.write_with(path.absolute(),
                          lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
        finally:
            plt.close(fig)
        written.append(path)
    return written


def _spikes_per_layer(plt, result: EstimateResult):
    layers = result.metrics["layers"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(layers)
    ax.bar(names, [layers[n]["spikes_per_sample"]["mean"] for n in names], color="#4477aa")
    ax.set_ylabel("spikes per sample (up to exit)")
    ax.set_title(f"{result.target}: spikes per layer")
    return fig


def _raster(plt, result: EstimateResult):
    first = result.first_sample
    fig, axes = plt.subplots(len(first), 1, figsize=(7, 1.2 + 1.6 * len(first)), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], first.items()):
        s = np.asarray(s).reshape(s.shape[0], -1)  # (T, N)
        t, i = np.nonzero(s)
        ax.scatter(t + 1, i, s=2, color="black")
        ax.set_ylabel(name, fontsize=8)
        ax.set_xlim(0.5, s.shape[0] + 0.5)
    axes[-1, 0].set_xlabel("time step")
    axes[0, 0].set_title(f"{result.target}: raster of test sample 0")
    return fig


def _accuracy_vs_step(plt, result: EstimateResult):
    c = result.cutoff
    acc = c["report"]["accuracy_at_step"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(acc) + 1), acc, marker="o", ms=3, label="fixed exit step")
    ax.axvline(c["mean_steps"], color="#cc6677", ls="--", label=f"{c['method']} mean exit")
    ax.axhline(c["accuracy"], color="#cc6677", lw=0.8)
    ax.set_xlabel("exit step")
    ax.set_ylabel("test accuracy")
    ax.legend()
    ax.set_title(f"{result.target}: accuracy against exit step")
    return fig


def _energy(plt, result: EstimateResult):
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, (name, e) in enumerate(result.energy.items()):
        bottom = 0.0
        for term, v in e["terms_J"].items():
            if v:
                ax.bar(k, v, bottom=bottom, label=term if k == 0 else None)
                bottom += v
    ax.set_xticks(range(len(result.energy)), list(result.energy))
    ax.set_ylabel("J per sample")
    ax.legend(fontsize=7)
    ax.set_title(f"{result.target}: energy breakdown")
    return fig
