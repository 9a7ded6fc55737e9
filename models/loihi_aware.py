"""Loihi-aware training: linear and convolutional layers whose forward pass uses the weights
and biases the Loihi export will write.

:class:`LoihiQuantLinear` and :class:`LoihiQuantConv2d` keep float "shadow" parameters (saved
in the checkpoint under the usual ``weight`` / ``bias`` keys) and compute with their projection onto Loihi's grid, with
a straight-through gradient. The projection is the one :mod:`spikeport.exporters.loihi.quantize`
applies at export (SEMANTICS.md 7): one scale s per layer, the largest with every weight
in [-256, 254], the bias within s13 and the threshold of the population it feeds an exact
integer; weights become even integers / s, biases integers / s. Exported, the layer's NIR
weights are these projected values, so the float model and the Loihi model use the same
weights and differ only by the fixed-point state arithmetic.

It assumes unit input gain into the population (true for spikeport's own LIF and CubaLIF
exports, whose gains are exactly 1) and binary input spikes.
"""
from __future__ import annotations

import torch
from torch import nn

from spikeport.core import units


def loihi_scale(w: torch.Tensor, b: torch.Tensor | None, threshold: float) -> float:
    """The per-layer scale of :func:`spikeport.exporters.loihi.quantize.quantize` for these
    values (both call :func:`spikeport.core.units.loihi_scale`)."""
    bmax = 0.0 if b is None else float(b.detach().abs().max())
    return units.loihi_scale(float(w.detach().abs().max()), threshold, bmax)


class _LoihiProjected:
    """The projection onto Loihi's grid shared by the Loihi-aware layers: ``weight`` and
    ``bias`` are the float shadows, ``threshold`` the population's."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    threshold: float

    @torch.no_grad()
    def _projected(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        s = loihi_scale(self.weight, self.bias, self.threshold)
        w = torch.clamp(torch.round(self.weight * s / 2) * 2,
                        units.LOIHI_WEIGHT_MIN, units.LOIHI_WEIGHT_MAX) / s
        b = None if self.bias is None else torch.round(self.bias * s) / s
        return w, b

    def quantized(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias the export writes."""
        return self._projected()

    def _straight_through(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        wq, bq = self._projected()
        # Straight-through: the value is exactly wq (x - x is exactly 0), the gradient goes
        # to the shadow weight. (weight + (wq - weight) would round and differ from wq.)
        w = wq + (self.weight - self.weight.detach())
        b = None if self.bias is None else bq + (self.bias - self.bias.detach())
        return w, b


class LoihiQuantLinear(_LoihiProjected, nn.Linear):
    """nn.Linear computing with Loihi-representable weights (straight-through gradient)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, threshold: float):
        super().__init__(in_features, out_features, bias=bias)
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, *self._straight_through())


class LoihiQuantConv2d(_LoihiProjected, nn.Conv2d):
    """nn.Conv2d computing with Loihi-representable weights (straight-through gradient):
    the layer's NIR Conv2d, exported as is (no pooling folded in after it), is written to
    netx with exactly these weights and biases."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, threshold: float,
                 **kw):
        super().__init__(in_channels, out_channels, kernel_size, **kw)
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *self._straight_through())
