"""The Recording every target returns: what each node emitted at each step.

``values[name]`` is an array (T, B, ...) in the target's own time axis; for spiking nodes
the values are spikes (0/1), for LI / CubaLI / I nodes the membrane, for synapse nodes
their output. ``spiking`` lists the spiking nodes in program order, ``output`` names the
graph's output node. ``delay`` is the number of steps by which this target's time axis
lags the model's (0 for float targets; one per layer on Loihi, SEMANTICS.md 8), so that
``aligned(name)`` gives values on the model's time axis. ``active`` (optional, same time axis
as ``values``) marks the (step, neuron) updates that had non-zero input or state.
``nonzero`` (optional, same time axis) holds, per node, where its value is non-zero: a
target's counting run writes it while each step's values are at hand, which spares the
estimator a pass over every recorded array once it has left the cache.
``pipeline_latency`` and ``lava_status`` are filled by the ``lava`` target only: the steps a
spike takes through the deployed pipeline, and the simulator run's status (seconds, ...).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Recording:
    values: dict[str, np.ndarray]
    output: str
    spiking: list[str]
    dt: float
    membranes: dict[str, np.ndarray] = field(default_factory=dict)
    delay: dict[str, int] = field(default_factory=dict)
    # per population, (T, B, ...) bool: the update had non-zero input or non-zero state
    # (recorded on request by targets that can tell, e.g. the Loihi emulator)
    active: dict[str, np.ndarray] = field(default_factory=dict)
    # per node, (T, B, ...) bool: values[name] != 0 (recorded on request by the counting runs)
    nonzero: dict[str, np.ndarray] = field(default_factory=dict)
    # steps from an input spike to the output layer on the deployed pipeline (lava only)
    pipeline_latency: int | None = None
    # the Lava simulator run's status: seconds, steps, ... (lava only)
    lava_status: dict | None = None

    @property
    def output_values(self) -> np.ndarray:
        return self.values[self.output]

    def spikes(self) -> dict[str, np.ndarray]:
        return {n: self.values[n] for n in self.spiking}

    def aligned(self, name: str, arrays: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """values[name] (or ``arrays[name]``: active, nonzero) on the model's time axis."""
        v = (self.values if arrays is None else arrays)[name]
        d = self.delay.get(name, 0)
        return v[d:] if d else v

    @classmethod
    def concatenate(cls, parts: list["Recording"]) -> "Recording":
        """Recordings of consecutive sample batches of one run, joined along the batch axis."""
        first = parts[0]

        def cat(maps):
            return {k: np.concatenate([m[k] for m in maps], 1) for k in maps[0]}

        return cls(cat([p.values for p in parts]), first.output, first.spiking, first.dt,
                   cat([p.membranes for p in parts]) if first.membranes else {},
                   dict(first.delay), cat([p.active for p in parts]) if first.active else {},
                   cat([p.nonzero for p in parts]) if first.nonzero else {},
                   first.pipeline_latency, first.lava_status)


def predict(output):
    """The predicted class of each sample from an output recording (T, B, classes): the class
    with the most output spikes (or the largest summed output), ties to the lowest index.
    Works on numpy arrays and torch tensors alike; training and every target use it."""
    return output.sum(0).argmax(-1)


def hidden_populations(populations: Sequence[str], output: Iterable[str]) -> list[str]:
    """The hidden neuron populations of a network (ENERGY.md 1.2), in the order given: every
    spiking population except the output ones, those whose spikes are the network's output
    (they reach it through no synapse). Hidden-neuron usage counts the neurons of these.

    The one definition for training and the estimator: a trained model names its output
    population as its last one in forward order (its output is that population's spikes);
    the estimator finds the output populations of a NIR graph by walking back from the
    Output node through the nodes that pass spikes on unchanged (Output, Input, Flatten,
    Delay). On every shipped recipe the two name the same populations."""
    out = set(output)
    return [p for p in populations if p not in out]
