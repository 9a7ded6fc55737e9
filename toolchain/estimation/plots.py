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
    ax.bar([_label(result, n).replace(" ", "\n", 1) for n in names],
           [layers[n]["spikes_per_sample"]["mean"] for n in names], color="#4477aa")
    ax.set_ylabel("spikes per sample (up to exit)")
    ax.set_title(f"{result.target}: spikes per layer")
    return fig


def _raster(plt, result: EstimateResult):
    from matplotlib.ticker import MaxNLocator

    first = result.first_sample
    fig, axes = plt.subplots(len(first), 1, figsize=(7, 1.2 + 1.6 * len(first)), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], first.items()):
        s = np.asarray(s).reshape(s.shape[0], -1)  # (T, N)
        t, i = np.nonzero(s)
        ax.scatter(t + 1, i, s=2, color="black")
        ax.set_ylabel(_label(result, name).replace(" ", "\n", 1), fontsize=8)
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    """Left: every profile's terms on a log scale, so a 5 nJ term shows beside a 500 uJ one.
    Right: the first profile's dynamic energy per connection (synaptic ops) and per
    population (neuron updates and spikes), on a log scale too."""
    from matplotlib.ticker import NullFormatter

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    terms = sorted({k for e in result.energy.values() for k, v in e["terms_J"].items() if v})
    width = 0.8 / max(1, len(terms))
    for j, term in enumerate(terms):
        values = [result.energy[p]["terms_J"].get(term) or 0.0 for p in result.energy]
        xs = [k + (j - (len(terms) - 1) / 2) * width for k in range(len(values))]
        ax.bar([x for x, v in zip(xs, values) if v > 0], [v for v in values if v > 0],
               width, label=term)
    ax.set_yscale("log")
    ax.set_xticks(range(len(result.energy)), list(result.energy))
    ax.set_ylabel("J per sample (log scale)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{result.target}: energy per term and profile")
    rows = _layer_energy(result)
    if rows:
        ax2.barh([r[0] for r in rows], [r[1] for r in rows], color="#4477aa")
        ax2.set_xscale("log")
        ax2.xaxis.set_minor_formatter(NullFormatter())
        ax2.invert_yaxis()
        ax2.tick_params(axis="y", labelsize=7)
        ax2.set_xlabel("J per sample (log scale)")
        ax2.set_title(f"dynamic energy by layer [{result.energy_profile}]", fontsize=9)
    else:
        ax2.set_axis_off()
    fig.tight_layout()
    return fig


def _label(result: EstimateResult, node: str) -> str:
    """A population's readable name (``hidden1 LIF 512``), else the node's own."""
    return result.metrics["layers"].get(node, {}).get("label", node)


def _layer_energy(result: EstimateResult) -> list[tuple[str, float]]:
    """(label, joules) per connection and per population, priced with the first profile's
    constants (event-driven profiles only: a dense device has no per-layer activity)."""
    e = result.energy[result.energy_profile]
    const = {k: v["si"] for k, v in e["constants_used"].items()}
    if e["device"] != "event-driven" or "e_synop" not in const:
        return []
    m = result.metrics
    e_mac = const.get("e_synop_mac", const["e_synop"])
    rows = [(f"synapses {name}", c["ac_per_sample"] * const["e_synop"] + c["mac_per_sample"] * e_mac)
            for name, c in m["synops"].items()]
    e_act = const.get("e_neuron_active", const.get("e_neuron_update"))
    e_idle = const.get("e_neuron_idle", const.get("e_neuron_update"))
    for name, u in m["neuron_updates"].items():
        active = next((u[k] for k in ("active_state_per_sample", "active_input_per_sample",
                                      "active_events_per_sample") if u.get(k) is not None), 0.0)
        joules = (active * (e_act or 0.0) + (u["dense_per_sample"] - active) * (e_idle or 0.0)
                  + m["layers"].get(name, {}).get("spikes_per_sample", {}).get("mean", 0.0)
                  * const.get("e_spike", 0.0))
        rows.append((f"neurons {_label(result, name)}", joules))
    return [(label, v) for label, v in rows if v > 0]
