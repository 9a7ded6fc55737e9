"""PNG plots of an estimate: per-layer spikes, a raster of one sample, accuracy against exit
step, and the energy breakdown. matplotlib with the Agg backend (no display needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeport.core import io


def write_plots(result: dict, first_sample: dict, out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = result["target"]
    written = []

    def save(fig, name):
        path = out / f"{target}-{name}.png"
        io.atomic_write(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
        plt.close(fig)
        written.append(path)

    layers = result["metrics"]["layers"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(layers)
    ax.bar(names, [layers[n]["spikes_per_sample"]["mean"] for n in names], color="#4477aa")
    ax.set_ylabel("spikes per sample (up to exit)")
    ax.set_title(f"{target}: spikes per layer")
    save(fig, "spikes-per-layer")

    fig, axes = plt.subplots(len(first_sample), 1, figsize=(7, 1.2 + 1.6 * len(first_sample)),
                             squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], first_sample.items()):
        s = np.asarray(s).reshape(s.shape[0], -1)  # (T, N)
        t, i = np.nonzero(s)
        ax.scatter(t + 1, i, s=2, color="black")
        ax.set_ylabel(name, fontsize=8)
        ax.set_xlim(0.5, s.shape[0] + 0.5)
    axes[-1, 0].set_xlabel("time step")
    axes[0, 0].set_title(f"{target}: raster of test sample 0")
    save(fig, "raster")

    c = result.get("cutoff")
    if c and "accuracy_at_step" in c["report"]:
        acc = c["report"]["accuracy_at_step"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(1, len(acc) + 1), acc, marker="o", ms=3, label="fixed exit step")
        ax.axvline(c["mean_steps"], color="#cc6677", ls="--", label=f"{c['method']} mean exit")
        ax.axhline(c["accuracy"], color="#cc6677", lw=0.8)
        ax.set_xlabel("exit step")
        ax.set_ylabel("test accuracy")
        ax.legend()
        ax.set_title(f"{target}: accuracy against exit step")
        save(fig, "accuracy-vs-step")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, (name, e) in enumerate(result["energy"].items()):
        bottom = 0.0
        for term, v in e["terms_J"].items():
            if v:
                ax.bar(k, v, bottom=bottom, label=term if k == 0 else None)
                bottom += v
    ax.set_xticks(range(len(result["energy"])), list(result["energy"]))
    ax.set_ylabel("J per sample")
    ax.legend(fontsize=7)
    ax.set_title(f"{target}: energy breakdown")
    save(fig, "energy")
    return written
