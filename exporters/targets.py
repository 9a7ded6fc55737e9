"""Targets: registered once, each offering the same verbs (docs/architecture.md).

``compile(graph, options) -> artifact`` turns a NIR graph into what the target runs;
``run(artifact, x) -> Recording`` simulates inputs x (T, B, *input_shape). ``profiles``
names the energy profiles that apply; ``exactness`` says what agreement with the reference
is expected. What the estimator needs beyond that is one declared :class:`Counting` object.
Adding a target is one module and one :func:`register` call; the support matrix in the docs
is generated from :data:`TARGETS` and the node registries.
"""
from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import nir
import numpy as np

from spikeport.core.recording import Recording
from spikeport.core.registry import Registry


@dataclass(frozen=True)
class Counting:
    """What a target tells the estimator, so that counting costs little and counts the right
    network. Every field has a safe default: a target that declares nothing is counted on its
    exported graph, with numpy products and its spikes checked for being 0/1.

    - ``matmul``: the library whose thread pool ``run`` computes with (``"numpy"`` or
      ``"torch"``); the estimator does its own matrix products in the same one, so no second
      pool spins between steps.
    - ``binary_spikes``: every spiking node's recorded values are exactly 0 or 1 by
      construction (a comparison against the threshold); the estimator then skips checking it.
    - ``run``: ``run(artifact, x)`` for the estimator: also fills ``Recording.active``
      (non-zero input or state per update) and/or ``Recording.nonzero`` (where each node is
      non-zero, written while each step's values are at hand). None: the plain ``run``.
    - ``graph``: the network as the target runs it (artifact -> NIR graph; Loihi: integer
      weights, pools folded into strided convolutions). None: the exported graph itself.
    - ``mapping``: ``mapping(artifact, chip)`` -> the cores and chips the network takes on a
      chip (:meth:`spikeport.exporters.loihi.mapping.Mapping.as_dict`), which the energy
      model charges static power for. None: no placement known (a whole chip is charged).
    """

    matmul: str = "numpy"
    binary_spikes: bool = False
    run: Callable[[Any, np.ndarray], Recording] | None = None
    graph: Callable[[Any], nir.NIRGraph] | None = None
    mapping: Callable[[Any, str], dict] | None = None


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
    counting: Counting = field(default_factory=Counting)

    def counting_run(self) -> "Target":
        """This target with ``run`` replaced by its counting run (if it declares one)."""
        if self.counting.run is None:
            return self
        from dataclasses import replace

        return replace(self, run=self.counting.run)

    def counted_graph(self, artifact, graph: nir.NIRGraph) -> nir.NIRGraph:
        """The graph whose connections the estimator counts: the one the target runs."""
        return self.counting.graph(artifact) if self.counting.graph else graph


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


# Set (to an Event) in a worker of :func:`run_in_batches`: a target whose ``run`` waits on
# another process (Lava) polls it and stops that process when the Event is set.
CANCEL: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "spikeport_cancel", default=None)


def run_in_batches(target: Target, artifact, x: np.ndarray, batch_size: int,
                   workers: int = 1) -> Recording:
    """Run ``x`` through ``target``, in its own batch size; recordings are concatenated
    along the batch axis (values, and the optional ``active`` / ``nonzero`` maps).

    ``workers`` > 1 runs that many shards of the samples at once: contiguous shards for a
    target that takes every sample in one call (Lava: one simulator process each), else the
    target's batches. Samples are independent (every target resets its state between them),
    so the joined recording is the one of a single worker. Each shard runs in a thread of
    this process; Lava's thread only waits on its simulator process, and the in-process
    targets' kernels (numpy, torch, onnxruntime) release the GIL. Ctrl-C or an error in one
    shard stops the others' simulator processes before it propagates."""
    n = x.shape[1]
    if target.batch_size is None:  # every sample in one call, or one call per worker
        k = max(1, min(workers, n))
        cuts = [round(i * n / k) for i in range(k + 1)]
    else:
        size = min(target.batch_size, batch_size)
        cuts = list(range(0, n, size)) + [n]
    spans = list(zip(cuts[:-1], cuts[1:]))
    if len(spans) == 1:  # (x[:, 0:n]: an array as it is, a Samples read whole)
        return target.run(artifact, x[:, 0:n])
    if workers <= 1:
        return Recording.concatenate([target.run(artifact, x[:, a:b]) for a, b in spans])
    stop = threading.Event()

    def shard(a: int, b: int) -> Recording:
        CANCEL.set(stop)
        return target.run(artifact, x[:, a:b])

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spikeport-shard") as pool:
        futures = [pool.submit(contextvars.copy_context().run, shard, a, b) for a, b in spans]
        try:
            parts = [f.result() for f in futures]
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise
    return Recording.concatenate(parts)


_LOADED = False
BUILTIN_TARGET_MODULES = ("spikeport.exporters.reference", "spikeport.exporters.snntorch",
                          "spikeport.exporters.onnx", "spikeport.exporters.loihi.target",
                          "spikeport.exporters.lava.target")


def _load_builtin_targets() -> None:
    """Import the target modules (each registers itself) on first use."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for module in BUILTIN_TARGET_MODULES:
        importlib.import_module(module)
