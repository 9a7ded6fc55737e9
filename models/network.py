"""The container every spikeport model is built from, and hidden-spike recording.

A :class:`SpikingSequential` is an ordered list of stateless layers (Linear, Conv2d, pools,
Flatten) and snntorch neuron populations. It maps an input (T, B, ...) to the spikes of its
last population (T, B, C). The order of layers *is* the graph, which keeps export to NIR a
walk over a list.

Evaluation is layer-major: a stateless layer is applied to all T*B inputs at once, a neuron
population is stepped through time. For a feed-forward network this computes exactly what
the step-major loop computes, with large batched matmuls instead of T small ones.

:func:`record` captures the spikes (and optionally membranes) of every neuron population
through forward hooks, so any model, ours or a user's, can be recorded unchanged. Recordings
are detached by default; ``detach=False`` keeps them in the autograd graph, for a training
term computed from the hidden layers (the RCS regulariser, training/losses.py).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import snntorch as snn
import torch
from torch import nn


class SpikingSequential(nn.Module):
    def __init__(self, layers: list[nn.Module], input_shape: tuple[int, ...], n_classes: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_layers(self.layers, x)  # (T, B, C) spikes of the last population

    def neuron_layers(self) -> list[tuple[str, snn.SpikingNeuron]]:
        """(qualified name, population) in forward order, nested residual bodies included."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, snn.SpikingNeuron)]


class Residual(nn.Module):
    """A skip connection around a chain of layers: ``after(combine(body(x), skip(x)))``.

    - ``skip``: a chain applied to the skip path (empty: the identity), e.g. a 1x1 strided
      convolution where the block changes shape;
    - ``combine``: ``"add"`` sums the two paths; ``"iand"`` keeps the skip's spikes where the
      body did not spike, ``(1 - body) * skip`` (SEW-ResNet's IAND; binary in, binary out);
    - ``after``: layers applied to the combination (empty: none), e.g. the population that
      receives a current-domain sum.

    Placed around a block that starts with a synapse and ends with a population, the sum of
    spikes feeds the next synapse, which NIR expresses as several edges into that synapse
    (fan-in is summed); models/export.py writes the IAND as a gate population.
    """

    def __init__(self, layers: list[nn.Module], skip: list[nn.Module] | None = None,
                 after: list[nn.Module] | None = None, combine: str = "add"):
        super().__init__()
        if combine not in ("add", "iand"):
            raise ValueError(f"combine must be 'add' or 'iand', got {combine!r}")
        self.body = nn.ModuleList(layers)
        self.skip = nn.ModuleList(skip or [])
        self.after = nn.ModuleList(after or [])
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (T, B, ...)
        body = _run_layers(self.body, x)
        skip = _run_layers(self.skip, x)
        h = (1 - body) * skip if self.combine == "iand" else body + skip
        return _run_layers(self.after, h)


def _run_layers(layers, h: torch.Tensor) -> torch.Tensor:
    T, B = h.shape[:2]
    for layer in layers:
        if isinstance(layer, snn.SpikingNeuron):
            h = _step_population(layer, h)
        elif isinstance(layer, Residual) or getattr(layer, "time_major", False):
            h = layer(h)  # takes (T, B, ...) itself (a time-major layer: per-step BatchNorm)
        else:
            y = layer(h.reshape(T * B, *h.shape[2:]))
            h = y.reshape(T, B, *y.shape[1:])
    return h


def _step_population(neuron: snn.SpikingNeuron, current: torch.Tensor) -> torch.Tensor:
    """Run one population over time from zero state; current (T, B, ...) -> spikes."""
    zeros = torch.zeros_like(current[0])
    state = (zeros, zeros) if isinstance(neuron, snn.Synaptic) else (zeros,)
    out = []
    for t in range(current.shape[0]):
        spk, *state = neuron(current[t], *state)
        out.append(spk.to(current.dtype))  # snntorch's surrogates return float32 spikes
    return torch.stack(out)


class Recording(dict):
    """name -> tensor (T, B, ...) of spikes; ``membranes`` holds v when requested."""

    def __init__(self):
        super().__init__()
        self.membranes: dict[str, torch.Tensor] = {}


@contextmanager
def record(model: nn.Module, membranes: bool = False,
           detach: bool = True) -> Iterator[Recording]:
    """Record every snntorch neuron population of ``model`` during the ``with`` block.

    Each population's hook receives one call per time step; the steps of one forward pass
    are stacked into (T, B, ...). Recording several forward passes concatenates along the
    batch axis. The membrane is the population's state after the step's reset. With
    ``detach=False`` the tensors stay attached to the graph, so a loss on them trains.
    """
    rec = Recording()
    steps: dict[str, list[torch.Tensor]] = {}
    mems: dict[str, list[torch.Tensor]] = {}
    handles = []
    names = [(n, m) for n, m in model.named_modules() if isinstance(m, snn.SpikingNeuron)]

    def hook(name):
        def fn(module, inputs, output):
            spk, mem = output[0], output[-1]
            steps.setdefault(name, []).append(spk.detach() if detach else spk)
            if membranes:
                mems.setdefault(name, []).append(mem.detach() if detach else mem)
        return fn

    for name, module in names:
        handles.append(module.register_forward_hook(hook(name)))

    def flush():
        # Turn the per-step lists of the finished forward pass into (T, B, ...) tensors.
        for store, target in ((steps, rec), (mems, rec.membranes)):
            for name, seq in store.items():
                new = torch.stack(seq)
                target[name] = new if name not in target else torch.cat([target[name], new], 1)
            store.clear()

    def post(module, inputs, output):
        flush()

    handles.append(model.register_forward_hook(post))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()
        flush()
