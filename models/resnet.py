"""Spiking ResNets (Vicente-Sola et al. 2022, "Keys to accurate feature extraction using
residual spiking neural networks"; ../shared/design/METHODS.md 5) with the residual
variants they compare, built from :class:`~spikeport.models.network.Residual` blocks.

Architecture ``resnet``: a stem (3x3 conv -> BatchNorm -> neurons), stages of basic blocks
(two 3x3 convs, each followed by BatchNorm; the first block of every stage after the first
has stride 2), then a readout: global average pool (or ``readout: flatten``) -> Linear -> neurons
(n_classes). Where a
block changes shape, the skip is a 1x1 strided convolution with its own BatchNorm.

Residual variants (``variant``), for a block with body ``conv -> BN -> N -> conv -> BN``:

- ``spike-add`` (the paper's released code): the body ends with its population and the skip
  is added to its spikes, ``out = N2(...) + skip(x)``. The next block's input is this sum, so
  the skip accumulates: a block's input is the count of all earlier blocks' spikes (graded),
  and after a downsampling skip it is real-valued.
- ``current-add``: the skip joins the second population's input current,
  ``out = N2(BN(conv(...)) + skip(x))``; every message between populations stays a spike.
- ``sew-add`` / ``sew-iand`` (SEW-ResNet, Fang et al. 2021): spike-wise combination of the
  body's spikes and the skip, whose downsampling path ends with its own population
  (spiking); ADD sums them (graded, accumulating as above), IAND keeps ``(1 - body) * skip``
  (binary).

``batchnorm``: ``bn`` (one BatchNorm per layer, shared by all time steps; folded exactly
into the convolution at export), ``bntt`` (one BatchNorm per layer and time step, as the
paper's code; ``bntt_steps`` must equal the recipe's ``time_steps``; the export refuses it
unless asked to fold the step-averaged maps, an approximation) or ``none`` (convolutions
with a bias instead).
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from spikeport.core.errors import ConfigError
from spikeport.models.architectures import ARCHITECTURES, OddKernel, Sizes
from spikeport.models.network import Residual, SpikingSequential
from spikeport.models.neurons import Neurons

Variant = Literal["spike-add", "current-add", "sew-add", "sew-iand"]
VARIANTS = ("spike-add", "current-add", "sew-add", "sew-iand")
Blocks = Annotated[int, Field(ge=1, le=64, description="1 to 64 blocks per stage")]
Positive = Annotated[int, Field(gt=0)]


class BatchNormTT(nn.Module):
    """BatchNorm through time (BNTT): one ``BatchNorm2d`` per time step; it takes the whole
    (T, B, C, H, W) current of a layer-major pass (``time_major``), T = ``steps``."""

    time_major = True

    def __init__(self, channels: int, steps: int, eps: float = 1e-5):
        super().__init__()
        self.steps = steps
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels, eps=eps) for _ in range(steps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.steps:
            raise ConfigError(f"a BNTT layer built for {self.steps} time steps received "
                              f"{x.shape[0]}", "set model.bntt_steps to the recipe's time_steps")
        return torch.stack([bn(xt) for bn, xt in zip(self.norms, x)])


def _out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class _Parts:
    """Builds the layers of one network: convolutions with their normalisation."""

    def __init__(self, neurons: Neurons, kernel: int, batchnorm: str, bntt_steps: int):
        self.neurons, self.kernel = neurons, kernel
        self.batchnorm, self.bntt_steps = batchnorm, bntt_steps

    def conv(self, c_in: int, c_out: int, stride: int = 1, kernel: int | None = None) -> list[nn.Module]:
        k = self.kernel if kernel is None else kernel
        conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2,
                         bias=self.batchnorm == "none")
        if self.batchnorm == "bn":
            return [conv, nn.BatchNorm2d(c_out)]
        if self.batchnorm == "bntt":
            return [conv, BatchNormTT(c_out, self.bntt_steps)]
        return [conv]

    def block(self, variant: str, c_in: int, c_out: int, stride: int, h: int, w: int) -> Residual:
        shape = (c_out, _out(h, self.kernel, stride), _out(w, self.kernel, stride))
        body = self.conv(c_in, c_out, stride) + [self.neurons(shape)] + self.conv(c_out, c_out)
        skip: list[nn.Module] = []
        if stride != 1 or c_in != c_out:
            skip = self.conv(c_in, c_out, stride, kernel=1)
            if variant.startswith("sew"):
                skip.append(self.neurons(shape))
        if variant == "current-add":
            return Residual(body, skip, after=[self.neurons(shape)])
        return Residual(body + [self.neurons(shape)], skip,
                        combine="iand" if variant == "sew-iand" else "add")


@ARCHITECTURES.register("resnet", "spiking ResNet: stem, stages of basic blocks, residual variants")
def build_resnet(input_shape, n_classes, neurons: Neurons, *, variant: Variant = "spike-add",
                 stem: Positive = 16, widths: Sizes = (16, 32, 64), blocks: Blocks = 1,
                 kernel: OddKernel = 3, batchnorm: Literal["bn", "bntt", "none"] = "bn",
                 bntt_steps: Annotated[int, Field(ge=0)] = 0, stem_stride: Literal[1, 2] = 1,
                 readout: Literal["avg", "flatten"] = "avg",
                 dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0) -> SpikingSequential:
    """``widths``: channels of each stage; ``blocks``: basic blocks per stage; ``readout``:
    global average pool (the paper) or every position of the last stage into the Linear;
    ``dropout``: before that Linear, in training only (nothing is exported for it)."""
    if len(input_shape) != 3:
        raise ConfigError(f"model 'resnet' needs image input (C, H, W), got shape {input_shape}",
                          "use model.arch: mlp for this dataset")
    if batchnorm == "bntt" and bntt_steps < 1:
        raise ConfigError("model 'resnet' with batchnorm: bntt needs bntt_steps",
                          "set model.bntt_steps to the recipe's time_steps")
    parts = _Parts(neurons, kernel, batchnorm, bntt_steps)
    c, h, w = input_shape
    h, w = _out(h, kernel, stem_stride), _out(w, kernel, stem_stride)
    layers: list[nn.Module] = parts.conv(c, stem, stem_stride) + [neurons((stem, h, w))]
    c = stem
    for i, width in enumerate(widths):
        for j in range(blocks):
            stride = 2 if i > 0 and j == 0 else 1
            if stride == 2 and min(h, w) < 2:
                raise ConfigError(f"model 'resnet': too many stages for input {input_shape}",
                                  "use fewer model.widths")
            layers.append(parts.block(variant, c, width, stride, h, w))
            h, w, c = _out(h, kernel, stride), _out(w, kernel, stride), width
    pool = [nn.AvgPool2d((h, w))] if readout == "avg" else []
    features = c if readout == "avg" else c * h * w
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    layers += [*pool, nn.Flatten(), *drop, nn.Linear(features, n_classes), neurons((n_classes,))]
    return SpikingSequential(layers, input_shape, n_classes)
