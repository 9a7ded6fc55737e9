"""Sparsity / synaptic-operation / energy estimation from a target's Recording (ENERGY.md).

Modules, by job: :mod:`~spikeport.estimate.pipeline` (``estimate()``: run, cut off, count,
price), :mod:`~spikeport.estimate.metrics` (what is counted: :class:`MetricsAccumulator`),
:mod:`~spikeport.estimate.network` and :mod:`~spikeport.estimate.batch` (the graph and one
batch as the metrics see them), :mod:`~spikeport.estimate.counting` (the bit-packed counting
engine), :mod:`~spikeport.estimate.memory` (memory traffic), :mod:`~spikeport.estimate.cutoff`
(anytime exit), :mod:`~spikeport.estimate.profiles` and :mod:`~spikeport.estimate.energy`
(energy profiles and the energy model), :mod:`~spikeport.estimate.report` (the typed result
and its table), :mod:`~spikeport.estimate.plots`.

``MetricsAccumulator`` is importable from here; it is loaded on first use, so importing a
light module of this package (cutoff, profiles, energy) does not import torch.
"""
from __future__ import annotations

import importlib

_LAZY = {"MetricsAccumulator": "spikeport.estimate.metrics"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'spikeport.estimate' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
