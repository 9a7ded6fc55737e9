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
"""
from __future__ import annotations

from functools import partial
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from spikeport.core.registry import Registry

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
