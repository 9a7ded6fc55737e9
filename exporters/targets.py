"""Targets: registered once, each offering the same verbs (ARCHITECTURE.md).

``compile(graph, options) -> artifact`` turns a NIR graph into what the target runs;
``run(artifact, x) -> Recording`` simulates inputs x (T, B, *input_shape). ``profiles``
names the energy profiles that apply; ``exactness`` says what agreement with the reference
is expected. Adding a target is one module and one :func:`register` call; the support
matrix in the docs is generated from :data:`TARGETS` and the node registries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import nir
import numpy as np

from toolchain.record import Recording
from toolchain.registry import Registry


@dataclass(frozen=True)
class Target:
    name: str
    compile: Callable[[nir.NIRGraph, dict], Any]
    run: Callable[[Any, np.ndarray], Recording]
    supported: Callable[[], list[str]]
    profiles: tuple[str, ...]
    exactness: str
    summary: str
    batch_size: int | None = 128  # samples per run() call; None = all at once (e.g. Lava)
    # the library whose thread pool run() computes with ("numpy" or "torch"); the estimator
    # does its own matrix products in the same one, so no second pool spins between steps
    matmul: str = "numpy"
    # True if every spiking node's recorded values are exactly 0 or 1 by construction (a
    # comparison against the threshold); lets the estimator skip checking it
    binary_spikes: bool = False
    # run(artifact, x) for the estimator: also fills Recording.active (non-zero input or state
    # per update; None: event-based activity) and/or Recording.nonzero (where each node is
    # non-zero, written while each step's values are at hand)
    run_counting: Callable[[Any, np.ndarray], Recording] | None = None
    # the network as the target runs it, for the estimator's counts (artifact -> NIR graph);
    # None: the exported graph itself
    counting_graph: Callable[[Any], nir.NIRGraph] | None = None


TARGETS: Registry = Registry("target")


def register(target: Target) -> Target:
    TARGETS.add(target.name, target, target.summary)
    return target


def get_target(name: str) -> Target:
    _load_builtin_targets()
    return TARGETS.get(name)


def target_names() -> list[str]:
    _load_builtin_targets()
    return TARGETS.names()


_LOADED = False


def _load_builtin_targets() -> None:
    """Import the target modules (each registers itself) on first use."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for module in ("exporters.reference", "exporters.nirgraph.importer", "exporters.onnx_target",
                   "exporters.loihi.targets"):
        importlib.import_module(module)
