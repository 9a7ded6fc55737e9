"""Neuron presets that are deployable by default (SEMANTICS.md).

snntorch's defaults (reset by subtraction, reset delayed by one step, a scalar ``beta``)
cannot be exported faithfully: NIR has no subtractive reset, Loihi's LIF resets to zero in
the same step, and a scalar beta breaks snntorch's own NIR export. The presets here fix
that: reset to zero, no reset delay, strict threshold (snntorch fires on mem - thr > 0),
and per-neuron tensor parameters of the population shape.

Per step (k), with x[k] the synaptic input (snntorch's update, SEMANTICS.md 2.2):

- ``lif`` (snntorch ``Leaky``):     v' = beta * v[k-1] + x[k];  z = [v' > thr];  v = 0 if z else v'
- ``cuba`` (snntorch ``Synaptic``): i[k] = alpha * i[k-1] + x[k];  v' = beta * v[k-1] + i[k];
                                    z and reset as above; the current i is not reset.

With ``learn_decay`` the decays become trainable per-neuron parameters (snntorch clamps
them to [0, 1] in its forward pass).
"""
from __future__ import annotations

import snntorch as snn
import torch
from snntorch import surrogate as sg

from spikeport.core.errors import ConfigError

NEURONS = ("lif", "cuba")
SURROGATES = {"atan": sg.atan, "fast_sigmoid": lambda slope: sg.fast_sigmoid(slope=slope)}


def _decay(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"model.{name} must be in [0, 1], got {value}",
                          f"set model.{name} to a decay factor such as 0.9")
    return float(value)


def make_neuron(kind: str, shape: tuple[int, ...], *, beta: float = 0.9, alpha: float = 0.8,
                threshold: float = 1.0, learn_decay: bool = False,
                surrogate: str = "atan", surrogate_slope: float = 2.0) -> snn.SpikingNeuron:
    """A deployable snntorch neuron population of the given (non-batch) shape."""
    if surrogate not in SURROGATES:
        raise ConfigError(f"unknown surrogate {surrogate!r}",
                          f"use one of: {', '.join(sorted(SURROGATES))}")
    if not threshold > 0:
        raise ConfigError(f"model.threshold must be > 0, got {threshold}",
                          "set model.threshold to a positive number such as 1.0")
    spike_grad = SURROGATES[surrogate](surrogate_slope)
    common = dict(threshold=torch.full(shape, float(threshold)), spike_grad=spike_grad,
                  reset_mechanism="zero", reset_delay=False)
    b = torch.full(shape, _decay("beta", beta))
    if kind == "lif":
        return snn.Leaky(beta=b, learn_beta=learn_decay, **common)
    if kind == "cuba":
        a = torch.full(shape, _decay("alpha", alpha))
        return snn.Synaptic(alpha=a, beta=b, learn_alpha=learn_decay, learn_beta=learn_decay,
                            **common)
    raise ConfigError(f"unknown neuron {kind!r}", f"use one of: {', '.join(NEURONS)}")


def is_deployable(neuron: snn.SpikingNeuron) -> list[str]:
    """Reasons why a neuron is not deployable as is (empty list if it is)."""
    reasons = []
    if getattr(neuron, "reset_mechanism", "zero") != "zero":
        reasons.append(f"reset_mechanism={neuron.reset_mechanism!r} (need 'zero')")
    if getattr(neuron, "reset_delay", False):
        reasons.append("reset_delay=True (need False)")
    if torch.as_tensor(neuron.beta).dim() == 0:
        reasons.append("scalar beta (need a per-neuron tensor)")
    return reasons
