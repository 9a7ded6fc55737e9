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
from typing import Annotated, Any, Literal, Sequence

import torch
from pydantic import AfterValidator, Field
from torch import nn

from spikeport.core.errors import ConfigError
from spikeport.core.registry import Registry
from spikeport.models.network import SpikingSequential
from spikeport.models.neurons import Neurons, NeuronSection

# An architecture is built for a dataset's input shape and class count with one neuron kind
# (``neurons``, from the model section's neuron keys); its keyword parameters are the rest
# of the model section.
ARCHITECTURES: Registry = Registry("model architecture",
                                   inputs=("input_shape", "n_classes", "neurons"), section="model")

Sizes = Sequence[Annotated[int, Field(gt=0)]]


def _odd(k: int) -> int:
    if k % 2 == 0:
        raise ValueError("even kernel")  # worded by the field's description
    return k


OddKernel = Annotated[int, Field(gt=0, description="a positive odd integer"), AfterValidator(_odd)]


@ARCHITECTURES.register("mlp", "fully connected spiking network")
def build_mlp(input_shape, n_classes, neurons: Neurons, *, hidden: Sizes = (128,),
              bias: bool = True, loihi_aware: bool = False) -> SpikingSequential:
    """``loihi_aware``: train with the weights the Loihi export will write (models/loihi_aware.py)."""
    from spikeport.models.loihi_aware import LoihiQuantLinear

    sizes = [math.prod(input_shape), *hidden, n_classes]
    layers: list[nn.Module] = [nn.Flatten()]
    thr = neurons.params.threshold
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        linear = (LoihiQuantLinear(n_in, n_out, bias=bias, threshold=thr) if loihi_aware
                  else nn.Linear(n_in, n_out, bias=bias))
        layers += [linear, neurons((n_out,))]
    return SpikingSequential(layers, input_shape, n_classes)


@ARCHITECTURES.register("conv", "small convolutional spiking network")
def build_conv(input_shape, n_classes, neurons: Neurons, *, channels: Sizes = (8, 16),
               kernel: OddKernel = 3, pool: Literal["avg", "sum", "none"] = "avg",
               dense: Sizes = (), bias: bool = True, stride: Literal[1, 2] = 1,
               loihi_aware: bool = False) -> SpikingSequential:
    """``stride``: of every convolution (with ``pool: none``, stride 2 downsamples instead);
    ``loihi_aware``: train with the weights the Loihi export writes (models/loihi_aware.py;
    needs ``pool: none``, since a pool folded into the kernel is quantised as a whole)."""
    from spikeport.models.loihi_aware import LoihiQuantConv2d, LoihiQuantLinear

    if len(input_shape) != 3:
        raise ConfigError(f"model 'conv' needs image input (C, H, W), got shape {input_shape}",
                          "use model.arch: mlp for this dataset")
    if loihi_aware and pool != "none":
        raise ConfigError("model 'conv' with loihi_aware: true needs pool: none (Loihi folds a "
                          "pool into the kernel, which then leaves the trained grid)",
                          "set model.pool: none (and model.stride: 2 to downsample)")
    thr = neurons.params.threshold
    c, h, w = input_shape
    layers: list[nn.Module] = []
    for c_out in channels:
        args = (c, c_out, kernel)
        kw = dict(stride=stride, padding=kernel // 2, bias=bias)
        layers.append(LoihiQuantConv2d(*args, threshold=thr, **kw) if loihi_aware
                      else nn.Conv2d(*args, **kw))
        h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        if pool != "none":
            if h < 2 or w < 2:
                raise ConfigError(f"model 'conv': too many pooling stages for input {input_shape}",
                                  "use fewer model.channels or model.pool: none")
            layers.append(nn.AvgPool2d(2) if pool == "avg" else SumPool2d(2))
            h, w = h // 2, w // 2
        c = c_out
        layers.append(neurons((c, h, w)))
    layers.append(nn.Flatten())
    sizes = [c * h * w, *dense, n_classes]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        linear = (LoihiQuantLinear(n_in, n_out, bias=bias, threshold=thr) if loihi_aware
                  else nn.Linear(n_in, n_out, bias=bias))
        layers += [linear, neurons((n_out,))]
    return SpikingSequential(layers, input_shape, n_classes)


class SumPool2d(nn.Module):
    """Sum over non-overlapping k x k windows (NIR ``SumPool2d``)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, self.kernel_size) * (self.kernel_size ** 2)


def check_model_params(arch: str, params: dict[str, Any]) -> dict[str, Any]:
    """A model section's keys (without ``arch``) checked: the architecture's own and the
    neuron keys of :class:`NeuronSection`; defaults filled in."""
    return ARCHITECTURES.check(arch, params, extend=NeuronSection)


def build_model(arch: str, input_shape, n_classes, **params) -> SpikingSequential:
    """The architecture ``arch`` for inputs of ``input_shape`` and ``n_classes`` outputs;
    ``params`` are the model section's keys without ``arch``, checked."""
    own = check_model_params(arch, params)
    neurons = Neurons.pop_from(own)
    return ARCHITECTURES.get(arch)(tuple(input_shape), n_classes, neurons, **own)


class _CountedNeurons:
    """Stands in for :class:`Neurons` while a model is sized: records each population's
    shape and builds nothing (snntorch's neurons cannot be made on the meta device)."""

    def __init__(self, neurons: Neurons):
        self.kind, self.params, self.shapes = neurons.kind, neurons.params, []

    def __call__(self, shape: tuple[int, ...]) -> nn.Module:
        self.shapes.append(tuple(shape))
        return nn.Identity()


def model_size(arch: str, input_shape, n_classes, **params) -> tuple[int, int]:
    """(parameters, neurons) of the model :func:`build_model` would build, counted without
    allocating it: the synapses are made on torch's meta device (no memory, no random
    numbers drawn) and each population counts its per-neuron parameters (beta, threshold,
    and alpha for cuba)."""
    own = check_model_params(arch, params)
    counted = _CountedNeurons(Neurons.pop_from(own))
    try:
        with torch.device("meta"):
            synapses = ARCHITECTURES.get(arch)(tuple(input_shape), n_classes, counted, **own)
    except RuntimeError as e:  # a size beyond int64 cannot even be described
        first = str(e).strip().splitlines()[0][:200]
        raise ConfigError(f"model '{arch}': a layer is too large for torch to describe ({first})",
                          "use smaller model sizes (hidden, channels, dense, kernel)") from None
    neurons = sum(math.prod(shape) for shape in counted.shapes)
    per_neuron = 3 if counted.kind == "cuba" else 2
    params_ = sum(t.numel() for t in synapses.parameters()) + per_neuron * neurons
    return int(params_), int(neurons)

