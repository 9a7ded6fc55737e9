"""Losses on output spike trains ``spikes`` (T, B, C) against integer labels (B,).

All losses return the mean over the batch (so the learning rate does not depend on the batch
size; lava-dl's ``SpikeMax`` sums instead). Registered losses:

- ``spikemax``: Spikemax spike-count NLL, probability mode (Shrestha, Zhu, Sun, IJCNN 2022,
  arXiv 2205.09845). With counts n_i = sum_t s_i(t) and the clamp n~_i = max(1, n_i) of the
  authors' code, p_i = n~_i / sum_j n~_j and L = -log p_y. The clamp keeps the loss finite
  when the target neuron is silent. The authors' hand-written backward passes the gradient
  through the clamp (dL/ds_i(t) = (p_i - y_i)/n~_i); we do the same with a straight-through
  clamp, so a silent target neuron still receives a gradient that tells it to fire.
- ``spikemax-window``: the sliding-window variant. c_i(t) = max(1, sum over the last W steps
  of s_i), p_i(t) = c_i(t) / sum_j c_j(t), L = sum_t -log p_y(t) (summed over time as in the
  authors' code, averaged over the batch).
- ``ce-count``: softmax cross-entropy on counts, L = -log softmax(n)_y (snntorch's
  ``ce_count_loss``; lava-dl's SpikeMax in softmax mode).
- ``mse-count``: mean squared error between counts and target counts, T*correct_rate for the
  label and T*incorrect_rate for the others (snntorch's ``mse_count_loss``).

Regularisers (:data:`REGULARIZERS`, the optional recipe section ``regularizer``) are terms
added to the loss, weighted by ``alpha``, computed from every spiking layer's spikes and
membranes (:class:`LayerTrace`) besides the outputs and labels:

- ``rcs``: Regularising Cosine Similarity of the anytime-optimal-inference paper (Wu, Jin,
  Yu, Yi, Huang, arXiv 2301.09522; Front. Neurosci. 2025), as in the authors' code
  (``Dengyu-Wu/snncutoff``: ``snncutoff/regularizer/rcs_snn.py``, ``RCSSNN`` and
  ``RCSSNNLoss``). Per layer r(t) = s(t) + ReLU(u(t)/theta) (u after reset); with
  k = floor(beta*T), r_d = mean of r over the last k steps, detached; cs(t) the cosine
  similarity of r(t) and r_d over the layer's neurons (norms sqrt(sum x^2 + 1e-5)); per
  sample and layer 1/(mean_t cs(t) + eps); kept for the samples predicted correctly at each
  of the last k steps, max over the batch, mean over layers (``layers``: the hidden spiking
  populations, as in the paper's networks, whose readout does not spike; or all of them).
  docs/methods.md has the equations, the deviations and why the output population is left
  out by default.
- ``spikes``: a sparsity penalty, the mean firing rate (spikes per neuron and step) of the
  hidden spiking populations (or all), averaged over them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Callable, Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field

from spikeport.core.errors import ConfigError
from spikeport.core.registry import Params, Registry

# A loss's keyword parameters (after the spikes and the labels) are the recipe's loss options.
LOSSES: Registry = Registry("loss", inputs=("spikes", "target"), section="loss")

Rate = Annotated[float, Field(ge=0, le=1)]  # spikes per step


def _clamp_min1_straight_through(n: torch.Tensor) -> torch.Tensor:
    """max(1, n) in the forward pass, identity in the backward pass."""
    return n + (n.clamp(min=1.0) - n).detach()


@LOSSES.register("spikemax", "Spikemax spike-count NLL, probability mode (counts clamped >= 1)")
def spikemax(spikes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    n = _clamp_min1_straight_through(spikes.sum(0))  # (B, C)
    log_p = torch.log(n) - torch.log(n.sum(-1, keepdim=True))
    return F.nll_loss(log_p, target)


@LOSSES.register("spikemax-window", "Spikemax over a causal sliding window of W steps")
def spikemax_window(spikes: torch.Tensor, target: torch.Tensor,
                    window: Annotated[int, Field(ge=1)] = 8) -> torch.Tensor:
    T, B, C = spikes.shape
    csum = torch.cumsum(spikes, 0)
    shifted = torch.cat([torch.zeros_like(csum[:window]), csum[:-window]], 0)[:T]
    c = _clamp_min1_straight_through(csum - shifted)  # (T, B, C) counts over the last W steps
    log_p = torch.log(c) - torch.log(c.sum(-1, keepdim=True))
    nll = -log_p.gather(-1, target.view(1, B, 1).expand(T, B, 1)).squeeze(-1)  # (T, B)
    return nll.sum(0).mean()


@LOSSES.register("ce-count", "softmax cross-entropy on output spike counts")
def ce_count(spikes: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(spikes.sum(0), target)


@LOSSES.register("mse-count", "MSE between counts and target counts T*rate")
def mse_count(spikes: torch.Tensor, target: torch.Tensor, correct_rate: Rate = 0.8,
              incorrect_rate: Rate = 0.2) -> torch.Tensor:
    T, B, C = spikes.shape
    goal = torch.full((B, C), incorrect_rate * T, dtype=spikes.dtype)
    goal[torch.arange(B), target] = correct_rate * T
    return F.mse_loss(spikes.sum(0), goal)


def make_loss(name: str, **params):
    """The loss ``name`` as ``loss(spikes, target)``, its parameters checked and bound."""
    loss = partial(LOSSES.get(name), **LOSSES.check(name, params))
    loss.__name__ = name
    return loss


# ----------------------------------------------------------------------------- regularisers

class LayerTrace(NamedTuple):
    """One spiking layer during a training forward pass, attached to the graph."""

    spikes: torch.Tensor     # (T, B, ...)
    membrane: torch.Tensor   # (T, B, ...), after the reset of the step
    threshold: torch.Tensor  # the population's threshold, broadcastable to (B, ...)
    output: bool = False     # the output population (its spikes are the network's output)


# A regulariser's keyword parameters (after the layers, the output spikes and the labels) are
# the recipe's regularizer options; ``alpha`` (:class:`RegularizerWeight`) is common to all.
REGULARIZERS: Registry = Registry("regularizer", inputs=("traces", "outputs", "target"),
                                  section="regularizer")

Fraction = Annotated[float, Field(gt=0, le=1)]
NORM_EPS = 1e-5  # under the square root of both norms of the cosine, as in rcs_snn.py


class RegularizerWeight(Params):
    """The weight every regulariser takes: loss = task loss + alpha * term (snncutoff's
    configs/default.yaml has alpha 0.002; its released training scripts set 0)."""

    alpha: Annotated[float, Field(ge=0)] = 0.002


def window_steps(beta: float, T: int) -> int:
    """k = floor(beta * T), the last steps RCS averages over (1e-9 absorbs float rounding,
    so that 0.3 * 10 gives 3 and 0.29 * 100 gives 29)."""
    return math.floor(beta * T + 1e-9)


def correct_over_last(outputs: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """(B,) bool: the prediction from the cumulative output counts (argmax of
    sum_{tau<=t} o(tau), ties to the lowest class, as ``predict``) is the label at each of
    the last k steps."""
    pred = torch.cumsum(outputs.detach(), 0)[-k:].argmax(-1)  # (k, B)
    return (pred == target.view(1, -1)).all(0)


def _norm(v: torch.Tensor) -> torch.Tensor:
    return (v.pow(2).sum(-1) + NORM_EPS).sqrt()


def rcs_terms(layer: LayerTrace, k: int, eps: float) -> torch.Tensor:
    """(B,) per-sample RCS term of one layer, 1 / (mean_t cs(t) + eps)."""
    r = layer.spikes + torch.relu(layer.membrane / layer.threshold)
    r = r.flatten(2)                                      # (T, B, N)
    r_d = r[-k:].mean(0, keepdim=True).detach()           # (1, B, N), the final response
    cs = (r * r_d).sum(-1) / (_norm(r) * _norm(r_d))      # (T, B)
    return 1.0 / (cs.mean(0) + eps)


@REGULARIZERS.register("rcs", "AOI-SNN Regularising Cosine Similarity: early responses like "
                       "the final one")
def rcs(traces: list[LayerTrace], outputs: torch.Tensor, target: torch.Tensor,
        beta: Fraction = 0.3, eps: Annotated[float, Field(gt=0)] = 1e-5,
        layers: Literal["hidden", "all"] = "hidden") -> torch.Tensor:
    """``layers``: the hidden spiking populations (default: the paper's networks read out
    through a non-spiking classifier, which RCS does not see), or all, the output too."""
    k = window_steps(beta, outputs.shape[0])
    keep = correct_over_last(outputs, target, k).to(outputs.dtype)  # (B,), no gradient
    chosen = [t for t in traces if layers == "all" or not t.output]
    if not chosen:  # hidden only, in a network without hidden populations
        return outputs.new_zeros(())
    per_layer = [(rcs_terms(t, k, eps) * keep).max() for t in chosen]
    return torch.stack(per_layer).mean()


@REGULARIZERS.register("spikes", "sparsity penalty: mean spikes per neuron and step")
def spike_rate(traces: list[LayerTrace], outputs: torch.Tensor, target: torch.Tensor,
               layers: Literal["all", "hidden"] = "hidden") -> torch.Tensor:
    """The mean firing rate (spikes per neuron and step) over the chosen spiking populations,
    averaged over them; its gradient reaches the weights through the surrogate. ``alpha``
    trades accuracy for fewer spikes, hence less dynamic energy on an event-driven chip."""
    chosen = [t.spikes for t in traces if layers == "all" or not t.output]
    if not chosen:
        return outputs.new_zeros(())
    return torch.stack([s.mean() for s in chosen]).mean()


@dataclass(frozen=True)
class Regularizer:
    """A checked regulariser: ``term(traces, outputs, target)``, weighted by ``alpha``."""

    name: str
    alpha: float
    term: Callable[..., torch.Tensor]


def check_regularizer(name: str, params: dict[str, Any], time_steps: int | None = None
                      ) -> dict[str, Any]:
    """The regularizer section's keys (without ``name``) checked, defaults filled in; with
    ``time_steps``, a window fraction ``beta`` must leave at least one step."""
    checked = REGULARIZERS.check(name, params, extend=RegularizerWeight)
    if time_steps is not None and "beta" in checked and window_steps(checked["beta"],
                                                                     time_steps) < 1:
        raise ConfigError(f"regularizer.beta {checked['beta']:g} with time_steps {time_steps} "
                          "leaves no step to average over (floor(beta * T) = 0)",
                          f"use regularizer.beta >= {1 / time_steps:.3g} (1/time_steps)")
    return checked


def make_regularizer(name: str, time_steps: int | None = None, **params) -> Regularizer:
    """The regulariser ``name`` with its parameters checked and bound."""
    checked = check_regularizer(name, params, time_steps)
    alpha = checked.pop("alpha")
    return Regularizer(name, alpha, partial(REGULARIZERS.get(name), **checked))
