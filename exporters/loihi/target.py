"""The ``loihi-emu`` target: :mod:`spikeport.exporters.loihi.emulator` on the quantised
network, in this process (bit-exact to the ``lava`` target, which runs the same network in
Lava's simulator: :mod:`spikeport.exporters.lava.target`)."""
from __future__ import annotations

import nir

from spikeport.exporters.loihi import emulator
from spikeport.exporters.loihi.mapping import map_network
from spikeport.exporters.loihi.quantize import LoihiNetwork, quantize
from spikeport.exporters.targets import Counting, Target, register

SUPPORTED = ["Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten",
             "LIF", "CubaLIF", "IF"]


def compile_network(graph: nir.NIRGraph, options: dict | None = None) -> LoihiNetwork:
    """NIR graph -> the quantised Loihi network (options: ``dt``, ``allow_approximation``)."""
    options = options or {}
    return quantize(graph, dt=options.get("dt"),
                    allow_approximation=bool(options.get("allow_approximation", False)))


register(Target(
    name="loihi-emu", compile=compile_network, run=lambda net, x: emulator.run(net, x),
    supported=lambda: list(SUPPORTED), profiles=("loihi", "loihi2"),
    exactness="bit-identical to lava (fixed point)",
    summary="batched numpy emulator of Loihi CUBA fixed-point arithmetic",
    counting=Counting(binary_spikes=True, graph=lambda net: net.as_graph(),
                      run=lambda net, x: emulator.run(net, x, activity=True),
                      mapping=lambda net, chip: map_network(net, chip).as_dict())))
