"""Sparsity / synaptic-operation / energy estimation from a target's Recording (ENERGY.md).

Modules, by job: :mod:`~spikeport.estimation.pipeline` (``estimate()``: run, cut off, count,
price), :mod:`~spikeport.estimation.metrics` (what is counted: :class:`MetricsAccumulator`),
:mod:`~spikeport.estimation.network` and :mod:`~spikeport.estimation.batch` (the graph and one
batch as the metrics see them), :mod:`~spikeport.estimation.counting` (the bit-packed counting
engine), :mod:`~spikeport.estimation.memory` (memory traffic), :mod:`~spikeport.estimation.cutoff`
(anytime exit), :mod:`~spikeport.estimation.profiles` and :mod:`~spikeport.estimation.energy`
(energy profiles and the energy model), :mod:`~spikeport.estimation.report` (the typed result
and its table), :mod:`~spikeport.estimation.plots`.

``estimate``, ``EstimateResult`` and ``MetricsAccumulator`` are importable from here; they
are loaded on first use, so importing a light module of this package (cutoff, profiles,
energy) does not import torch.
"""
from __future__ import annotations

import importlib

_LAZY = {"MetricsAccumulator": "spikeport.estimation.metrics",
         "estimate": "spikeport.estimation.pipeline",
         "EstimateResult": "spikeport.estimation.report"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'spikeport.estimation' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
