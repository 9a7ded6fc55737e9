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

Neuron kinds (:data:`NEURONS`) and surrogate gradients (:data:`SURROGATES`) are registries;
every kind takes the same checked :class:`NeuronParams`, which a model section carries
flat next to the architecture's own keys (:class:`NeuronSection`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import snntorch as snn
import torch
from pydantic import AfterValidator, Field
from snntorch import surrogate as sg

from spikeport.core.registry import Invalid, Params, Registry


def fits_float32(value: float) -> float:
    """Values are used in float32, where anything beyond about 3.4e38 is inf (a pydantic
    after-validator)."""
    if value > 1e30:
        raise Invalid(f"{value:g} is beyond what float32 computes with", "use a value up to 1e30")
    return value


Positive = Annotated[float, Field(gt=0), AfterValidator(fits_float32)]
Decay = Annotated[float, Field(ge=0, le=1)]

SURROGATES: Registry = Registry("surrogate")


@SURROGATES.register("atan", "arctangent surrogate gradient (snntorch atan, alpha = slope)")
def atan(slope: Positive = 2.0):
    return sg.atan(alpha=slope)


@SURROGATES.register("fast_sigmoid", "fast-sigmoid surrogate gradient, 1 / (slope |x| + 1)^2")
def fast_sigmoid(slope: Positive = 25.0):
    return sg.fast_sigmoid(slope=slope)


SurrogateName = SURROGATES.name_type()


class NeuronParams(Params):
    """The neuron keys of a model section, one set for every kind: ``alpha`` is the synaptic
    current decay of ``cuba`` and unused by ``lif``, so that changing ``model.neuron``
    alone keeps a recipe valid (and its resolved config the same shape)."""

    beta: Decay = 0.9
    alpha: Decay = 0.8
    threshold: Positive = 1.0
    learn_decay: bool = False
    surrogate: SurrogateName = "atan"
    surrogate_slope: Positive = 2.0


# A neuron population is built for a (non-batch) shape; its parameters are NeuronParams.
NEURONS: Registry = Registry("neuron", inputs=("shape",), section="model")
NeuronName = NEURONS.name_type()


def _common(shape: tuple[int, ...], p: NeuronParams) -> dict[str, Any]:
    return dict(threshold=torch.full(shape, float(p.threshold)),
                spike_grad=SURROGATES.build(p.surrogate, slope=p.surrogate_slope),
                reset_mechanism="zero", reset_delay=False)


@NEURONS.register("lif", "leaky integrate-and-fire (snntorch Leaky), reset to zero",
                  params=NeuronParams)
def lif(shape: tuple[int, ...], p: NeuronParams) -> snn.Leaky:
    return snn.Leaky(beta=torch.full(shape, float(p.beta)), learn_beta=p.learn_decay,
                     **_common(shape, p))


@NEURONS.register("cuba", "current-based LIF (snntorch Synaptic), reset to zero",
                  params=NeuronParams)
def cuba(shape: tuple[int, ...], p: NeuronParams) -> snn.Synaptic:
    return snn.Synaptic(alpha=torch.full(shape, float(p.alpha)),
                        beta=torch.full(shape, float(p.beta)), learn_alpha=p.learn_decay,
                        learn_beta=p.learn_decay, **_common(shape, p))


def make_neuron(kind: str, shape: tuple[int, ...], **params) -> snn.SpikingNeuron:
    """A deployable snntorch neuron population of the given (non-batch) shape; ``params``
    are the fields of :class:`NeuronParams`, checked."""
    return NEURONS.build(kind, tuple(shape), **params)


class NeuronSection(NeuronParams):
    """The neuron keys of a model section including the choice of neuron, which every
    architecture accepts besides its own parameters."""

    neuron: NeuronName = "lif"


@dataclass(frozen=True)
class Neurons:
    """One neuron kind with checked parameters: ``neurons(shape)`` builds a population."""

    kind: str
    params: NeuronParams

    @classmethod
    def pop_from(cls, checked: dict[str, Any]) -> "Neurons":
        """Take the :class:`NeuronSection` keys out of a checked model section."""
        kind = checked.pop("neuron")
        values = {k: checked.pop(k) for k in NeuronParams.model_fields}
        return cls(kind, NeuronParams(**values))

    def __call__(self, shape: tuple[int, ...]) -> snn.SpikingNeuron:
        return NEURONS.get(self.kind)(tuple(shape), self.params)


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
