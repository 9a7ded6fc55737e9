"""Encoders: turn a static input x (B, ...) with values in [0, 1] into T steps (T, B, ...).

Each encoder is a small frozen dataclass whose fields are its parameters; the registry maps
a name to the class, and checks the recipe's ``encoder`` section against the fields' types
and ranges before it constructs the encoder. Random
encoders draw from an explicit ``torch.Generator`` so that evaluation is repeatable.

Equations (t = 0 ... T-1, x clipped to [0, 1]):

- ``rate``:    s[t] ~ Bernoulli(min(1, gain * x)), independent per step and element;
               E[sum_t s[t]] = T * min(1, gain * x).
- ``latency``: one spike at t_f = round((1 - x) * (T - 1)) if x > threshold, none otherwise
               (brighter fires earlier; x = 1 fires at t = 0).
- ``delta``:   send-on-delta modulation of the input held constant over time: a reference
               r[-1] = 0 tracks the signal, s[t] = [x - r[t-1] > threshold],
               r[t] = r[t-1] + threshold * s[t]. A pixel emits min(T, ceil(x/threshold) - 1)
               spikes on consecutive steps from t = 0: the count codes intensity in steps of
               ``threshold``. ON events only (a static image never decreases).
- ``direct``:  s[t] = gain * x every step: an analog current, not spikes. The first layer
               then performs multiply-accumulates, not accumulates (ENERGY.md).
- ``events``:  s[t] = x[:, t]: an event dataset's frames (B, T, 2, H, W), already spikes
               (binary with the dataset's ``binarize: clip``), passed through time-first.
               The recipe's time_steps must equal the dataset's T.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import AfterValidator, Field

from spikeport.core.errors import ConfigError
from spikeport.core.registry import Invalid, Registry

ENCODERS: Registry = Registry("encoder", section="encoder")

def _fits_float32(value: float) -> float:
    """Values are used in float32, where anything beyond about 3.4e38 is inf."""
    if value > 1e30:
        raise Invalid(f"{value:g} is beyond what float32 computes with", "use a value up to 1e30")
    return value


Positive = Annotated[float, Field(gt=0), AfterValidator(_fits_float32)]


def _images(x: torch.Tensor, encoder: str) -> torch.Tensor:
    """``x`` if it holds images (float values); an event dataset's frames (integer counts)
    are refused with the fix."""
    if not x.is_floating_point():
        raise ConfigError(f"the {encoder} encoder takes images, but the dataset holds binned "
                          "events", "use encoder: {name: events} with an event dataset")
    return x


@ENCODERS.register("rate", "Bernoulli spike per step with probability gain*x")
@dataclass(frozen=True)
class RateEncoder:
    gain: Positive = 1.0
    binary = True

    def __call__(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None):
        x = _images(x, "rate")
        p = (self.gain * x.clamp(0, 1)).clamp(0, 1)
        p = p.unsqueeze(0).expand(steps, *p.shape)
        return torch.bernoulli(p, generator=generator)


@ENCODERS.register("latency", "one spike per input, earlier for larger x (time to first spike)")
@dataclass(frozen=True)
class LatencyEncoder:
    threshold: Annotated[float, Field(ge=0)] = 0.01
    binary = True

    def __call__(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None):
        x = _images(x, "latency").clamp(0, 1)
        t_fire = torch.round((1.0 - x) * (steps - 1))  # (B, ...)
        t = torch.arange(steps, dtype=x.dtype).view(steps, *([1] * x.dim()))
        return ((t == t_fire) & (x > self.threshold)).to(x.dtype)


@ENCODERS.register("delta", "send-on-delta modulation: spike count codes x in steps of threshold")
@dataclass(frozen=True)
class DeltaEncoder:
    threshold: Positive = 0.1
    binary = True

    def __call__(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None):
        x = _images(x, "delta").clamp(0, 1)
        ref = torch.zeros_like(x)
        out = []
        for _ in range(steps):
            s = (x - ref > self.threshold).to(x.dtype)
            ref = ref + self.threshold * s
            out.append(s)
        return torch.stack(out)


@ENCODERS.register("direct", "analog current gain*x at every step (no spikes)")
@dataclass(frozen=True)
class DirectEncoder:
    gain: Positive = 1.0
    binary = False

    def __call__(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None):
        x = _images(x, "direct")
        x = self.gain * x.clamp(0, 1)
        return x.unsqueeze(0).expand(steps, *x.shape).contiguous()


@ENCODERS.register("events", "event frames (B, T, 2, H, W) of an event dataset, passed through")
@dataclass(frozen=True)
class EventsEncoder:
    binary = True  # with the dataset's binarize: clip (the default)

    def __call__(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None):
        self._check(x.shape, x.dtype.is_floating_point, x.dtype, steps)
        out = torch.empty((steps, x.shape[0], *x.shape[2:]), dtype=torch.float32)
        return out.copy_(x.transpose(0, 1))

    def time_first(self, frames: np.ndarray, steps: int) -> np.ndarray:
        """The frames (B, T, ...) as (T, B, ...) in their own dtype (uint8): the inputs of
        run, validate and estimate, a quarter of the float32 encoding's memory."""
        self._check(frames.shape, frames.dtype.kind == "f", frames.dtype, steps)
        return np.ascontiguousarray(np.moveaxis(frames, 1, 0))

    @staticmethod
    def _check(shape, floating: bool, dtype, steps: int) -> None:
        if len(shape) < 3 or floating:
            raise ConfigError(f"the events encoder takes an event dataset's frames (B, T, 2, H, "
                              f"W) of counts; got {dtype} values of shape {tuple(shape)}",
                              "use it with an event dataset (digits-events, nmnist-sim), or "
                              "another encoder for images")
        if shape[1] != steps:
            raise ConfigError(f"time_steps is {steps}, but the dataset's recordings are binned "
                              f"into {shape[1]} frames", f"set time_steps: {shape[1]} (or "
                              "change dataset.time_window_us)")


def make_encoder(name: str, **params):
    """The encoder ``name`` with its parameters checked (:class:`ConfigError` naming the key)."""
    return ENCODERS.build(name, **params)
