"""Classification metrics and hidden-neuron usage.

:func:`require_finite` is the last line of defence of every command's result: no figure
leaves a command (printed or written) as NaN or infinity.

Hidden-neuron usage (ENERGY.md 1.2): for the hidden populations H (every neuron population
but the output one, :func:`spikeport.core.recording.hidden_populations`; in a trained model
the output population is the last in forward order),
U[b] = |{(l, i) : l in H, n_l[b, i] >= 1}| / sum_{l in H} N_l, the fraction of hidden
neurons that spike at least once in example b. Reported as the mean over examples
(``hidden_usage``), its median, and per layer. Computed streaming: only per-example
fractions are kept, never the spike trains.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import f1_score

from spikeport.core.errors import SpikeportError
from spikeport.core.recording import hidden_populations


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    return {
        "test_accuracy": float(np.mean(y_true == y_pred)),
        "test_f1": float(f1_score(y_true, y_pred, average="macro",
                                  labels=list(range(n_classes)), zero_division=0)),
    }


class HiddenUsage:
    """Streaming hidden-neuron usage of the populations ``layers`` (the hidden ones)."""

    def __init__(self, layers: list[str]):
        self.layers = list(layers)
        self.active = {name: [] for name in self.layers}  # per batch: (B,) active counts
        self.sizes: dict[str, int] = {}

    @classmethod
    def of_network(cls, populations: list[str]) -> "HiddenUsage":
        """Usage of the hidden populations among a model's ``populations`` (every neuron
        population, in forward order: the last one is the output)."""
        return cls(hidden_populations(populations, populations[-1:]))

    def update(self, rec: dict[str, torch.Tensor]) -> None:
        for name in self.layers:
            s = rec[name]  # (T, B, ...)
            fired = (s != 0).any(0).flatten(1)  # (B, N)
            self.sizes[name] = fired.shape[1]
            self.active[name].append(fired.sum(1).numpy())

    def per_example(self) -> np.ndarray:
        if not self.layers:
            return np.zeros(0)
        total = sum(self.sizes[n] for n in self.layers)
        active = sum(np.concatenate(self.active[n]) for n in self.layers)
        return active / total

    def summary(self) -> dict:
        if not self.layers:
            return {"hidden_usage": None, "hidden_usage_median": None, "hidden_usage_per_layer": {}}
        u = self.per_example()
        return {
            "hidden_usage": float(u.mean()),
            "hidden_usage_median": float(np.median(u)),
            "hidden_usage_per_layer": {
                n: float(np.concatenate(self.active[n]).mean() / self.sizes[n])
                for n in self.layers},
        }


def non_finite(figures, path: str = "") -> list[tuple[str, float]]:
    """(key path, value) of every float in ``figures`` (nested dicts, lists, tuples of
    numbers) that is NaN or infinite."""
    if isinstance(figures, (float, np.floating)):
        return [] if math.isfinite(figures) else [(path or "value", float(figures))]
    if isinstance(figures, dict):
        return [bad for k, v in figures.items() for bad in non_finite(v, f"{path}.{k}".lstrip("."))]
    if isinstance(figures, (list, tuple)):
        return [bad for i, v in enumerate(figures) for bad in non_finite(v, f"{path}[{i}]")]
    return []


def require_finite(figures, what: str) -> None:
    """Refuse to print or store ``figures`` (a command's result as a dict) holding NaN or
    infinity. Inputs are checked where they enter, so this firing is a bug, said as such."""
    bad = non_finite(figures)
    if bad:
        key, value = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SpikeportError(f"{what}: {key} came out as {value}{more}; nothing was written",
                             "this is a spikeport bug: please report it with the command and "
                             "its inputs")

