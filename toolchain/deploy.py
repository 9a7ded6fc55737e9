"""Deploying a trained network: export a run's artifacts, run a graph on one target.

:func:`export` writes a run's model as NIR (``model.nir``), ONNX (``model.onnx``) or a Loihi
netx file (``model.net``, with ``loihi_report.json``: what quantisation cost, layer by
layer) into the run directory. :func:`run` executes a run or a ``.nir`` file on one target
and reports output spikes, spikes per population and accuracy (with labels), optionally
keeping every node's values in an ``.npz``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np

from spikeport import runs
from spikeport.core import io, transactions
from spikeport.core.devices import check_target_device
from spikeport.core.errors import SpikeportError
from spikeport.core.recording import predict
from spikeport.exporters.targets import get_target, run_in_batches, target_names
from spikeport.training.scores import require_finite

EXPORT_FORMATS = ("nir", "onnx", "loihi")


@dataclass
class ExportResult:
    """What ``spikeport export --json`` prints: the artifact written and its format (``nir``,
    ``onnx`` or ``netx``); a NIR export also counts its top-level ``nodes``; a Loihi export
    names its ``report`` file and carries the per-layer quantisation report (``layers``), the
    lossy rewrites applied (``approximations``) and the cores and chips it needs on Loihi
    (``mapping``, :func:`spikeport.exporters.loihi.mapping.map_network`)."""
    artifact: str
    format: str
    nodes: int | None = None
    report: str | None = None
    layers: list[dict] | None = None
    approximations: list[str] | None = None
    mapping: dict | None = None

    def to_json(self) -> dict:
        return io.dataclass_json(self, omit_if_none=None)


def export(run_dir: str | Path, to: str, allow_approximation: bool = False) -> ExportResult:
    """Export a run's model into its run directory as ``to`` = nir, onnx or loihi. Every
    export also writes ``model.nir``; the files of one export are committed together
    (:func:`spikeport.core.transactions.transaction`): interrupted, it leaves the old ones as they were."""
    run_dir = io.require_run_dir(run_dir)
    if to not in EXPORT_FORMATS:
        raise SpikeportError(f"unknown export format {to!r}", "use --to nir, onnx or loihi")
    with transactions.transaction(run_dir) as tx:
        graph, path = runs.export_run_graph(run_dir)  # staged in tx: committed with the rest
        if to == "nir":
            return ExportResult(str(path), "nir", nodes=len(graph.nodes))
        if to == "onnx":
            from spikeport.exporters import onnx as onnx_target

            artifact = onnx_target.compile(graph, {})
            tx.write_with(runs.ONNX_FILE, lambda p: onnx_target.save(artifact, p))
            return ExportResult(str(run_dir / runs.ONNX_FILE), "onnx")
        return _export_loihi(tx, run_dir, graph, allow_approximation)


def _export_loihi(tx: transactions.Transaction, run_dir: Path, graph: nir.NIRGraph,
                  allow_approximation: bool) -> ExportResult:
    from spikeport.exporters.loihi import netx
    from spikeport.exporters.loihi.mapping import map_network
    from spikeport.exporters.loihi.quantize import quantize

    net = quantize(graph, allow_approximation=allow_approximation)
    mapping = map_network(net).as_dict()
    tx.write_with(runs.NETX_FILE, lambda p: netx.write(net, p))
    tx.write_json(runs.LOIHI_REPORT_FILE, {"layers": net.report(),
                                           "approximations": net.approximations,
                                           "mapping": mapping})
    return ExportResult(str(run_dir / runs.NETX_FILE), "netx",
                        report=str(run_dir / runs.LOIHI_REPORT_FILE), layers=net.report(),
                        approximations=net.approximations, mapping=mapping)


@dataclass
class RunResult:
    """What ``spikeport run --json`` prints: the target, samples and steps run, output spikes
    per sample, spikes per sample of every spiking population, the accuracy (None without
    labels) and, when kept, the ``recording`` file of every node's values."""
    target: str
    samples: int
    steps: int
    output_spikes_per_sample: float
    spikes_per_sample: dict[str, float]
    accuracy: float | None
    recording: str | None = None

    def to_json(self) -> dict:
        return io.dataclass_json(self, omit_if_none=("recording",))


def run(run_or_graph: str | Path, target: str = "reference", *,
        input_file: str | Path | None = None, samples: int | None = None,
        out: str | Path | None = None, dt: float | None = None, workers: int = 1,
        device: str = "cpu") -> RunResult:
    """Run a run directory (its test split) or a ``.nir`` file (with ``input_file``) on one
    target; with ``out``, every node's values (T, B, ...) go into that ``.npz``. ``dt``: the
    step of a graph that records none (:func:`spikeport.runs.read_graph`). ``workers``: sample
    shards run at once (:func:`spikeport.exporters.targets.run_in_batches`). ``device``: where
    the torch-based target (snntorch) computes; the others run on the CPU."""
    runs.check_workers(workers)
    known = target_names()
    if target not in known:
        raise SpikeportError(f"unknown target {target!r}", f"use one of: {', '.join(known)}")
    check_target_device(device, [target])
    if out is not None and Path(out).is_dir():
        raise SpikeportError(f"--out {out} is a directory", "pass a file name for the recording, "
                             "e.g. --out rec.npz")
    if out is not None:
        transactions.check_dir_path(Path(out).parent, "--out")  # before anything is written
        for given, what in ((input_file, "--input"), (run_or_graph, "the graph")):
            if given is not None and Path(given).is_file() and Path(out).exists() \
                    and Path(out).samefile(given):
                raise SpikeportError(f"--out {out} is {what}: the recording would overwrite it",
                                     "pass another file name for the recording")
    graph, inputs, _ = runs.resolve(run_or_graph, input_file, samples, targets=[target], dt=dt)
    t = get_target(target)
    n = inputs.x.shape[1]
    rec = run_in_batches(t, t.compile(graph, {"device": device}), inputs.x, -(-n // workers),
                         workers)
    output = rec.aligned(rec.output)
    result = RunResult(
        target=target, samples=int(n), steps=int(inputs.x.shape[0]),
        output_spikes_per_sample=float(output.sum() / n),
        spikes_per_sample={name: float(rec.aligned(name).sum() / n) for name in rec.spiking},
        accuracy=float((predict(output) == inputs.y).mean()) if inputs.y is not None else None)
    require_finite(result.to_json(), f"run on {target}")
    if out is not None:
        def write(p):
            with open(p, "wb") as f:  # a file object: numpy adds no ".npz" suffix
                np.savez_compressed(f, **rec.values)

        out_path = Path(out).absolute()
        with transactions.transaction(out_path.parent) as tx:  # a directory or read-only path: RunDirError
            tx.write_with(out_path.name, write)
        result.recording = str(out)
    return result
