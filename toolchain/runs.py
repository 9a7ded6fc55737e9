"""Where a run's exported artifacts live, and how a command finds its graph and inputs.

A command that takes RUN_OR_GRAPH accepts either a run directory (its ``model.nir`` is
exported on demand from the checkpoint, and its test split supplies inputs and labels) or a
``.nir`` file (inputs then come from ``--input FILE.npz`` with ``x`` (T, B, ...) and an
optional ``y``, or from a registered dataset and the encoder settings given).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import torch

from spikeport.core import io
from spikeport.core.errors import GraphError, SpikeportError

NIR_FILE = "model.nir"
ONNX_FILE = "model.onnx"
NETX_FILE = "model.net"
LOIHI_REPORT_FILE = "loihi_report.json"


@dataclass
class Inputs:
    x: np.ndarray          # (T, B, *input_shape)
    y: np.ndarray | None   # (B,)
    source: str


def read_graph(path: str | Path) -> nir.NIRGraph:
    """The NIR graph in ``path``. Sizes are checked against the memory budget before anything
    is read; NIR's own type check is not applied (it refuses legitimate graphs, e.g. grouped
    convolutions): every graph is validated when a program is built from it
    (:mod:`spikeport.ir.checks`). A netx file is refused as such."""
    from spikeport.core import budget
    from spikeport.exporters.loihi import netx

    path = Path(path)
    if not path.is_file():
        raise GraphError(f"NIR file not found: {path}", "pass a .nir file or a run directory")
    if netx.kind(path) in ("netx", "foreign-netx"):
        raise GraphError(f"{path} is a netx file, not a NIR graph",
                         "pass the run's model.nir (or the run directory) instead")
    budget.check_hdf5(path, f"the NIR file {path}", "pass a NIR graph of a size this machine "
                      "can hold", GraphError)
    try:
        graph = nir.read(str(path), type_check=False)
    except Exception as e:  # h5py / nir raise many types for a bad file
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise GraphError(f"{path} is not a readable NIR graph ({type(e).__name__}: {first})",
                         "pass a file written by nir.write (NIR 1.0)") from None
    if not isinstance(graph, nir.NIRGraph):
        raise GraphError(f"{path} holds a single {type(graph).__name__} node, not a graph",
                         "write a nir.NIRGraph with Input and Output nodes")
    return graph


def export_run_graph(run_dir: str | Path, write: bool = True) -> tuple[nir.NIRGraph, Path]:
    """The NIR graph of a run's checkpoint; written to RUN/model.nir when ``write``."""
    from spikeport.models.export import export_model
    from spikeport.training.loop import load_run

    c = load_run(run_dir)
    graph = export_model(c.model, c.dataset.input_shape,
                         source=f"spikeport run {Path(run_dir).name} ({c.config.name})")
    path = Path(run_dir) / NIR_FILE
    if write:
        with io.transaction(path.parent) as tx:  # joins the command's transaction, if one is open
            tx.write_with(path.name, lambda p: nir.write(str(p), graph))
    return graph, path


def run_inputs(run_dir: str | Path, samples: int | None = None, split: str = "test") -> Inputs:
    """The run's test split, encoded exactly as `spikeport evaluate` encodes it (or, with
    ``split="train"``, its training split encoded with a separate calibration seed)."""
    from spikeport.training.loop import EVAL_SEED_OFFSET, build_components
    from spikeport.training.recipes import load_run_config

    cfg = load_run_config(io.require_run_dir(run_dir))
    c = build_components(cfg)
    if split not in ("test", "train"):
        raise SpikeportError(f"unknown split {split!r}", "use 'test' or 'train'")
    offset = EVAL_SEED_OFFSET if split == "test" else EVAL_SEED_OFFSET + 1
    gen = torch.Generator().manual_seed(cfg.train["seed"] + offset)
    bs = cfg.train["eval_batch_size"]
    x_src = c.dataset.x_test if split == "test" else c.dataset.x_train
    y_src = c.dataset.y_test if split == "test" else c.dataset.y_train
    n = len(y_src) if samples is None else min(samples, len(y_src))
    xs = []
    x_all = torch.from_numpy(x_src)
    # Encode batch by batch with the evaluation batch size, so the random stream (rate
    # coding) is consumed exactly as in evaluation and sample i gets the same spikes.
    for start in range(0, n, bs):
        xs.append(c.encoder(x_all[start:start + bs], cfg.time_steps, gen)[:, :n - start])
    x = torch.cat(xs, 1).numpy()
    return Inputs(x, y_src[:n], f"{cfg.dataset['name']} {split} split ({n} samples)")


def npz_inputs(path: str | Path, samples: int | None = None) -> Inputs:
    path = Path(path)
    if not path.is_file():
        raise SpikeportError(f"input file not found: {path}", "pass an .npz with an array x (T, B, ...)")
    try:
        data = np.load(path, allow_pickle=False)
        x = np.asarray(data["x"], dtype=np.float64)
        y = np.asarray(data["y"]) if "y" in data.files else None
    except KeyError:
        raise SpikeportError(f"{path} has no array named 'x'",
                             "save inputs with np.savez(path, x=spikes (T, B, ...), y=labels)") from None
    except Exception as e:
        raise SpikeportError(f"{path} is not a readable .npz ({type(e).__name__})",
                             "save inputs with np.savez(path, x=..., y=...)") from None
    if x.ndim < 3:
        raise SpikeportError(f"{path}: x has shape {x.shape}, expected (T, B, ...)",
                             "put time first, then batch")
    if samples is not None:
        x = x[:, :samples]
        y = None if y is None else y[:samples]
    return Inputs(x, y, str(path))


def resolve(run_or_graph: str | Path, input_file: str | Path | None = None,
            samples: int | None = None) -> tuple[nir.NIRGraph, Inputs, Path | None]:
    """(graph, inputs, run_dir or None) for a RUN_OR_GRAPH argument."""
    p = Path(run_or_graph)
    if p.is_dir():
        io.require_run_dir(p)
        graph, _ = export_run_graph(p, write=True)
        inputs = npz_inputs(input_file, samples) if input_file else run_inputs(p, samples)
        return graph, inputs, p
    graph = read_graph(p)
    if input_file is None:
        raise SpikeportError(f"{p} is a graph without data", "pass --input FILE.npz with x (T, B, ...)")
    return graph, npz_inputs(input_file, samples), None
