"""spikeport: train a spiking network in snntorch, export it through NIR, deploy it to Loihi
(lava-dl netx) and simulators, validate it in the Lava simulator, and estimate its cost.

The public API (docs/api.md), each a function of one layer below, returning a typed result:

    spikeport.train(recipe, out)                 -> TrainResult     (a run directory)
    spikeport.evaluate(run)                      -> Evaluation
    spikeport.export(run, to="nir"|"onnx"|"loihi") -> ExportResult  (artifacts in the run)
    spikeport.export_model(model, input_shape)   -> nir.NIRGraph    (any deployable model)
    spikeport.load_graph(path)                   -> nir.NIRGraph
    spikeport.run(run_or_graph, target)          -> RunResult
    spikeport.validate(run_or_graph, targets)    -> ValidationResult
    spikeport.estimate(run_or_graph, target)     -> EstimateResult
    spikeport.get_target(name)                   -> Target          (compile / run verbs)

Names are imported on first use, so ``import spikeport`` stays light (no torch, no
onnxruntime until a function needs them). Every error a user can cause is a
:class:`SpikeportError` with the problem and its fix.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "train": ("spikeport.training.loop", "train"),
    "evaluate": ("spikeport.training.loop", "evaluate_run"),
    "export": ("spikeport.deploy", "export"),
    "export_model": ("spikeport.models.export", "export_model"),
    "load_graph": ("spikeport.runs", "read_graph"),
    "run": ("spikeport.deploy", "run"),
    "validate": ("spikeport.validation", "validate"),
    "estimate": ("spikeport.estimation", "estimate"),
    "get_target": ("spikeport.exporters.targets", "get_target"),
    "SpikeportError": ("spikeport.core.errors", "SpikeportError"),
}

__all__ = sorted(_API)


def __getattr__(name: str):
    try:
        module, attr = _API[name]
    except KeyError:
        raise AttributeError(f"module 'spikeport' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
