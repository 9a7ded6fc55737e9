"""Model architectures, registered by name; each builds a :class:`SpikingSequential`.

- ``mlp``:  Flatten -> [Linear -> neurons] * len(hidden) -> Linear -> neurons (n_classes)
- ``conv``: [Conv2d -> pool -> neurons] * len(channels) -> Flatten -> [Linear -> neurons]
            * len(dense) -> Linear -> neurons (n_classes)

In ``conv`` the pooling is applied to the synaptic current, before the neurons, so every
message between populations stays a binary spike and conv + pool compose into one linear
map (a strided convolution) on hardware that has no pooling.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from spikeport.models.network import SpikingSequential
from spikeport.models.neurons import make_neuron
from spikeport.core.errors import ConfigError
from spikeport.core.registry import Registry

ARCHITECTURES: Registry = Registry("model architecture")

NEURON_KEYS = ("neuron", "beta", "alpha", "threshold", "learn_decay", "surrogate",
               "surrogate_slope")


def _neuron_kwargs(params: dict) -> dict:
    return {k: params[k] for k in NEURON_KEYS if k in params and k != "neuron"}


def _layer_sizes(name: str, sizes) -> list[int]:
    if not isinstance(sizes, (list, tuple)) or not all(isinstance(s, int) and s > 0
                                                       for s in sizes):
        raise ConfigError(f"model.{name} must be a list of positive integers, got {sizes!r}",
                          f"write e.g. model.{name}: [128]")
    return list(sizes)


@ARCHITECTURES.register("mlp", "fully connected spiking network")
def build_mlp(input_shape, n_classes, *, hidden=(128,), neuron="lif", bias=True,
              loihi_aware=False, **neuron_params) -> SpikingSequential:
    """``loihi_aware``: train with the weights the Loihi export will write (models/loihi_aware.py)."""
    from spikeport.models.loihi_aware import LoihiQuantLinear

    if not isinstance(loihi_aware, bool):
        raise ConfigError(f"model.loihi_aware must be true or false, got {loihi_aware!r}",
                          "write model.loihi_aware: true")
    sizes = [math.prod(input_shape), *_layer_sizes("hidden", hidden), n_classes]
    layers: list[nn.Module] = [nn.Flatten()]
    thr = float(neuron_params.get("threshold", 1.0))
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        linear = (LoihiQuantLinear(n_in, n_out, bias=bias, threshold=thr) if loihi_aware
                  else nn.Linear(n_in, n_out, bias=bias))
        layers += [linear, make_neuron(neuron, (n_out,), **neuron_params)]
    return SpikingSequential(layers, input_shape, n_classes)


POOLS = ("avg", "sum", "none")


@ARCHITECTURES.register("conv", "small convolutional spiking network")
def build_conv(input_shape, n_classes, *, channels=(8, 16), kernel=3, pool="avg", dense=(),
               neuron="lif", bias=True, **neuron_params) -> SpikingSequential:
    if len(input_shape) != 3:
        raise ConfigError(f"model 'conv' needs image input (C, H, W), got shape {input_shape}",
                          "use model.arch: mlp for this dataset")
    if pool not in POOLS:
        raise ConfigError(f"unknown model.pool {pool!r}", "use one of: avg, sum, none")
    if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ConfigError(f"model.kernel must be a positive odd integer, got {kernel!r}",
                          "set model.kernel: 3")
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for c_out in _layer_sizes("channels", channels):
        layers.append(nn.Conv2d(c, c_out, kernel, padding=kernel // 2, bias=bias))
        if pool != "none":
            if h < 2 or w < 2:
                raise ConfigError(f"model 'conv': too many pooling stages for input {input_shape}",
                                  "use fewer model.channels or model.pool: none")
            layers.append(nn.AvgPool2d(2) if pool == "avg" else SumPool2d(2))
            h, w = h // 2, w // 2
        c = c_out
        layers.append(make_neuron(neuron, (c, h, w), **neuron_params))
    layers.append(nn.Flatten())
    sizes = [c * h * w, *_layer_sizes("dense", list(dense)), n_classes]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out, bias=bias),
                   make_neuron(neuron, (n_out,), **neuron_params)]
    return SpikingSequential(layers, input_shape, n_classes)


class SumPool2d(nn.Module):
    """Sum over non-overlapping k x k windows (NIR ``SumPool2d``)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, self.kernel_size) * (self.kernel_size ** 2)


def build_model(arch: str, input_shape, n_classes, **params) -> SpikingSequential:
    import inspect

    builder = ARCHITECTURES.get(arch)
    sig = inspect.signature(builder)
    allowed = [p for p in sig.parameters if p not in ("input_shape", "n_classes",
                                                       "neuron_params")] + list(NEURON_KEYS)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"model {arch!r} has no option(s) {', '.join(unknown)}",
                          f"use only: {', '.join(sorted(set(allowed)))}")
    return builder(tuple(input_shape), n_classes, **params)
