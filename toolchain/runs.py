"""Where a run's exported artifacts live, and how a command finds its graph and inputs.

A command that takes RUN_OR_GRAPH accepts either a run directory (its ``model.nir`` is
exported on demand from the checkpoint, and its test split supplies inputs and labels) or a
``.nir`` file (inputs then come from ``--input FILE.npz`` with ``x`` (T, B, ...) and an
optional ``y``, or from a registered dataset and the encoder settings given).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nir
import numpy as np
import torch

from spikeport.core import budget, transactions
from spikeport.core.samples import Samples, npz_member
from spikeport.core.errors import ConfigError, DataError, GraphError, RunDirError, SpikeportError

NIR_FILE = "model.nir"
ONNX_FILE = "model.onnx"
NETX_FILE = "model.net"
LOIHI_REPORT_FILE = "loihi_report.json"


@dataclass
class Inputs:
    x: np.ndarray | Samples  # (T, B, *input_shape); Samples: read a block at a time
    y: np.ndarray | None   # (B,)
    source: str


def read_graph(path: str | Path, dt: float | None = None) -> nir.NIRGraph:
    """The NIR graph in ``path``. Sizes are checked against the memory budget before anything
    is read; NIR's own type check is not applied (it refuses legitimate graphs, e.g. grouped
    convolutions): every graph is validated when a program is built from it
    (:mod:`spikeport.ir.checks`). A netx file is refused as such. ``dt`` (``--dt``) is the
    step of a graph that records none, put into its metadata; a graph that records another
    dt is refused, not silently re-read at a different step."""
    from spikeport.core import budget
    from spikeport.exporters.loihi import netx

    path = Path(path)
    if path.is_dir():
        raise GraphError(f"{path} is a directory, not a NIR file",
                         "pass a .nir file (a run's is written by `spikeport export RUN --to nir`)")
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
    return graph if dt is None else with_dt(graph, dt, path)


def with_dt(graph: nir.NIRGraph, dt: float, source: str | Path = "the graph") -> nir.NIRGraph:
    """``graph`` with the simulation step ``dt`` (seconds) in its metadata: for a graph whose
    writer recorded none (spikeport otherwise assumes snntorch's 1e-4 s, with a warning)."""
    from spikeport.ir import checks

    dt = checks.check_dt(dt, "--dt")
    meta = dict(graph.metadata or {})
    if "dt" in meta:
        recorded = checks.check_dt(meta["dt"], f"the metadata dt of {source}")
        if not np.isclose(recorded, dt, rtol=1e-9, atol=0):
            raise GraphError(f"{source} records dt = {recorded:g} s; --dt {dt:g} contradicts it",
                             "drop --dt: the graph's own dt is used")
    meta["dt"] = dt
    graph.metadata = meta
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
        write_run_graph(graph, path)
    return graph, path


def write_run_graph(graph: nir.NIRGraph, path: Path) -> Path:
    """Write a run's graph to ``path`` (RUN/model.nir), refusing a directory in its place."""
    if path.is_dir():
        raise RunDirError(f"{path} is a directory, where the run's NIR graph belongs",
                          f"move the directory away; spikeport writes the graph to {path.name}")
    with transactions.transaction(path.parent) as tx:  # joins the command's transaction, if one is open
        tx.write_with(path.name, lambda p: nir.write(str(p), graph))
    return path


def check_workers(workers) -> int:
    """``--workers`` as a whole number >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SpikeportError(f"--workers must be a whole number >= 1, got {workers!r}",
                             "pass --workers 1 (default) or the number of cores to use")
    return workers


def _check_samples(samples: int | None) -> None:
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int)
                                or samples < 1):
        raise SpikeportError(f"--samples must be a whole number >= 1, got {samples!r}",
                             "pass a positive number of samples, or leave --samples out for all")


def run_inputs(run_dir: str | Path, samples: int | None = None, split: str = "test",
               lazy: bool = False) -> Inputs:
    """The run's test split, encoded exactly as `spikeport evaluate` encodes it (or, with
    ``split="train"``, its training split encoded with a separate calibration seed).
    ``lazy``: x is a :class:`~spikeport.core.samples.Samples` encoding its samples as they
    are read (the same values, one evaluation batch in memory at a time)."""
    from spikeport.training.loop import EVAL_SEED_OFFSET, build_components
    from spikeport.training.recipes import load_run_config

    _check_samples(samples)
    if split not in ("test", "train"):
        raise SpikeportError(f"unknown split {split!r}", "use 'test' or 'train'")
    cfg = load_run_config(transactions.open_run(run_dir))
    c = build_components(cfg)
    offset = EVAL_SEED_OFFSET if split == "test" else EVAL_SEED_OFFSET + 1
    seed = cfg.train["seed"] + offset
    bs = cfg.train["eval_batch_size"]
    x_src = c.dataset.x_test if split == "test" else c.dataset.x_train
    y_src = c.dataset.y_test if split == "test" else c.dataset.y_train
    n = len(y_src) if samples is None else min(samples, len(y_src))
    # An event dataset's frames are spikes already: kept as they are (uint8, time first),
    # not encoded to float32 (spikeport.data.encoders.EventsEncoder.time_first).
    frames = getattr(c.encoder, "time_first", None)
    shape = (cfg.time_steps, n, *c.dataset.input_shape)
    held = (min(n, bs),) if lazy else (n,)  # samples in memory at once
    budget.check_bytes(budget.nbytes((cfg.time_steps, *held, *c.dataset.input_shape), 1)
                       if frames else 2 * budget.nbytes((cfg.time_steps, *held,
                                                         *c.dataset.input_shape), 4),
                       f"the {split} split of {run_dir} encoded: {cfg.time_steps} steps x "
                       f"{held[0]} samples x {math.prod(c.dataset.input_shape)} inputs",
                       "use fewer samples (--samples), or a run with fewer time_steps",
                       ConfigError)
    source = f"{cfg.dataset['name']} {split} split ({n} samples)"
    if frames is not None:
        if lazy:
            return Inputs(Samples(shape, np.uint8, lambda a, b: frames(x_src[a:b], cfg.time_steps),
                                  bs), y_src[:n], source)
        return Inputs(frames(x_src[:n], cfg.time_steps), y_src[:n], source)
    enc = _EncodedSplit(c.encoder, torch.from_numpy(x_src), cfg.time_steps, bs, seed, n)
    x = Samples(shape, np.float32, enc.read, bs)
    return Inputs(x if lazy else np.asarray(x), y_src[:n], source)


class _EncodedSplit:
    """A split encoded batch by batch with the evaluation batch size, so the random stream
    (rate coding) is consumed exactly as in evaluation and sample i gets the same spikes
    however the samples are read; reading backwards starts the stream again. Thread-safe
    (``--workers`` reads shards from several threads)."""

    def __init__(self, encoder, x_all: torch.Tensor, T: int, bs: int, seed: int, n: int):
        self.encoder, self.x_all, self.T, self.bs, self.seed, self.n = encoder, x_all, T, bs, seed, n
        self.lock = threading.Lock()
        self.next = None  # the batch the generator encodes next
        self.cached: tuple[int, np.ndarray] | None = None

    def _batch(self, k: int) -> np.ndarray:
        if self.cached is not None and self.cached[0] == k:
            return self.cached[1]
        if self.next is None or k < self.next:
            self.gen, self.next = torch.Generator().manual_seed(self.seed), 0
        while self.next <= k:
            start = self.next * self.bs
            enc = self.encoder(self.x_all[start:start + self.bs], self.T, self.gen)[:, :self.n - start]
            self.cached, self.next = (self.next, enc.numpy()), self.next + 1
        return self.cached[1]

    def read(self, a: int, b: int) -> np.ndarray:
        with self.lock:
            parts = [self._batch(k)[:, max(a - k * self.bs, 0):b - k * self.bs]
                     for k in range(a // self.bs, -(-b // self.bs))]
        if not parts:
            return np.empty((self.T, 0, *self.x_all.shape[1:]), np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, 1)


NPZ_FIX = "save inputs with np.savez(path, x=spikes (T, B, ...), y=labels (B,))"
_DTYPE_WORDS = {"c": "complex numbers", "U": "text", "S": "bytes", "O": "Python objects",
                "V": "records", "M": "dates", "m": "time deltas"}


def _npz_header(data, key: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the array ``key`` of an open .npz, read from its header only."""
    member = f"{key}.npy"
    if member not in data.zip.namelist():
        raise DataError(f"{path}: {key!r} is not a numpy array", NPZ_FIX)
    with data.zip.open(member) as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    return tuple(int(s) for s in shape), dtype


def _npz_array(data, key: str, path: Path, itemsize: int, lazy: bool = False
               ) -> np.ndarray | Samples:
    """The numeric array ``key``: its dtype and size checked from the header, before the
    array is read (a header can claim any shape). ``lazy``: an uncompressed member of at
    least two axes is read a block of samples at a time (:func:`npz_member`)."""
    shape, dtype = _npz_header(data, key, path)
    lazy_x = npz_member(path, key) if lazy and dtype.kind in "biuf" else None
    if lazy_x is not None:
        return lazy_x
    if dtype.kind not in "biuf":
        what = _DTYPE_WORDS.get(dtype.kind, f"values of dtype {dtype}")
        raise DataError(f"{path}: {key} holds {what}, not numbers",
                        f"save {key} as a numeric array" + (" of 0/1 spikes or real values"
                                                             if key == "x" else " of class labels"))
    budget.check_bytes(budget.nbytes(shape, dtype.itemsize) + budget.nbytes(shape, itemsize),
                       f"{path}: {key} of shape {shape}", "split the inputs into smaller files, "
                       "or use --samples on a smaller file", DataError)
    return data[key]


def _labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    """Labels y as int64 (B,): one whole number >= 0 per sample of x."""
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: y has shape {y.shape}, x has {n} samples",
                        f"save one label per sample: y of shape ({n},)")
    f = y.astype(np.float64)
    bad = ~np.isfinite(f) | (f < 0) | (f != np.round(f))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: label y[{i}] = {y[i]!r} is not a class index (a whole "
                        "number >= 0)", "save y as integer class indices")
    return y.astype(np.int64)


def npz_inputs(path: str | Path, samples: int | None = None, lazy: bool = False) -> Inputs:
    """Inputs from an .npz with ``x`` (T, B, ...) and optional labels ``y`` (B,), its first
    ``samples``. Refused with the fix: a missing or unreadable file, a non-numeric x or y, an
    x of fewer than 3 axes or larger than the memory budget, labels that are not one class
    index per sample. What x must be for a particular graph (its per-step shape, finite
    values, at least one step and one sample) is checked by :func:`check_inputs`."""
    path = Path(path)
    _check_samples(samples)
    if path.is_dir():
        raise DataError(f"input file {path} is a directory", NPZ_FIX)
    if not path.is_file():
        raise DataError(f"input file not found: {path}", NPZ_FIX)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise DataError(f"{path} holds one array, not named arrays x and y", NPZ_FIX)
            if "x" not in data.files:
                raise DataError(f"{path} has no array named 'x'", NPZ_FIX)
            x = _npz_array(data, "x", path, 8, lazy)
            y = _npz_array(data, "y", path, 8) if "y" in data.files else None
    except SpikeportError:
        raise
    except Exception as e:  # zipfile / numpy raise many types for a bad file
        raise DataError(f"{path} is not a readable .npz ({type(e).__name__})", NPZ_FIX) from None
    if x.ndim < 3:
        raise DataError(f"{path}: x has shape {x.shape}, expected (T, B, ...)",
                        "put time first, then batch, then one step's input shape")
    if y is not None:
        y = _labels(y, x.shape[1], path)
    if samples is not None:
        x = x.head(samples) if isinstance(x, Samples) else x[:, :samples]
        y = None if y is None else y[:samples]
    return Inputs(x, y, str(path))


# Targets that take only 0/1 input spikes (Loihi's input is spike events).
SPIKE_INPUT_TARGETS = ("loihi-emu", "lava")


def check_inputs(graph: nir.NIRGraph, inputs: Inputs, targets: Sequence[str] = ()) -> Inputs:
    """``inputs`` checked against ``graph`` before anything runs: x (T, B, *input shape) of
    finite numbers with at least one step and one sample (the graph's own input check,
    :meth:`spikeport.ir.program.Program.check_input`), only 0/1 when one of ``targets``
    takes spikes only, labels within the graph's output classes. x comes back as float64
    (a :class:`~spikeport.core.samples.Samples` x: checked a block at a time, converted as
    it is read)."""
    from spikeport.ir.program import build_program

    program = build_program(graph)
    spikes_only = [t for t in targets if t in SPIKE_INPUT_TARGETS]
    x = inputs.x
    if isinstance(x, Samples):
        if x.ndim < 2 or x.shape[1] == 0:
            program.check_input(x[:, 0:0])  # refuses it, saying why
        for first, part in x.blocks():
            _check_spikes(program.check_input(part, first), spikes_only, inputs.source, first)
        x = x.map(lambda part: part.astype(np.float64), np.float64)
    else:
        x = program.check_input(x)
        _check_spikes(x, spikes_only, inputs.source)
    y = inputs.y
    if y is not None:
        out = program.shapes.get(program.output)
        if out is not None and len(out) != 1:
            raise DataError(f"{inputs.source} has labels y, but the graph's output has shape "
                            f"{out}, not one score per class", "pass x without y")
        if out is not None and len(y) and int(y.max()) >= out[0]:
            i = int(np.argmax(y >= out[0]))
            raise DataError(f"{inputs.source}: label y[{i}] = {int(y[i])} is not a class of the "
                            f"graph, whose output has {out[0]} classes",
                            f"use labels 0 to {out[0] - 1}")
    return Inputs(x, y, inputs.source)


def _check_spikes(x: np.ndarray, spikes_only: list[str], source: str,
                  first: int | None = None) -> None:
    """Refuse values other than 0 and 1 for a target that takes spikes only; ``first``: x
    is the block of samples from that one on."""
    if not spikes_only:
        return
    analog = (x != 0) & (x != 1)
    if analog.any():
        idx = [int(i) for i in np.unravel_index(int(np.argmax(analog)), x.shape)]
        value = x[tuple(idx)]
        idx[1] += first or 0
        raise DataError(f"target {spikes_only[0]} takes only 0/1 input spikes; {source} "
                        f"holds {value:g} at index {tuple(idx)}"
                        + ("" if first is not None else f" ({int(analog.sum())} values are not 0 or 1)"),
                        "pass binary spikes (encode with rate, latency or delta; bin events "
                        "with dataset.binarize: clip), or run on reference, snntorch or onnx")


def event_inputs(graph: nir.NIRGraph, spec, run_dir: Path | None = None,
                 samples: int | None = None) -> Inputs:
    """The recordings of an event file (:class:`spikeport.data.event_files.EventFile`)
    binned into the graph's input: for a run as its recipe bins its dataset
    (:func:`spikeport.data.event_files.bin_for_run`; ``--bin-ms`` replaces its time window),
    for a bare graph in windows of ``--bin-ms`` (required) from t = 0 over the longest
    recording, clipped to 0/1 spikes."""
    from spikeport.data import event_files
    from spikeport.ir.program import build_program
    from spikeport.training.recipes import load_run_config

    _check_samples(samples)
    cfg = None if run_dir is None else load_run_config(transactions.open_run(run_dir))
    if cfg is None and spec.bin_us is None:
        raise SpikeportError("a .nir graph has no recipe that says how to bin events",
                             "pass --bin-ms MS, the time window of one step")
    recs = event_files.read_events(spec.path)
    if samples is not None:
        recs = event_files.Recordings(recs.events[:samples], None if recs.labels is None
                                      else recs.labels[:samples], recs.sensor, recs.source)
    shape = build_program(graph).input_shape
    if cfg is not None:
        x, how = event_files.bin_for_run(recs, cfg.dataset, cfg.encoder.get("name"),
                                         cfg.time_steps, shape, spec.bin_us, spec.crop)
    else:
        steps = event_files.recording_bins(recs, spec.bin_us)
        x = event_files.bin_recordings(recs, shape, spec.bin_us, steps, "clip", spec.crop)
        how = f"{steps} windows of {spec.bin_us} us from t = 0, clip"
    crop = "" if spec.crop is None else f", crop at x={spec.crop[0]}, y={spec.crop[1]}"
    return Inputs(x, recs.labels, f"{spec.path} ({x.shape[1]} recordings, {how}{crop})")


def _file_inputs(graph: nir.NIRGraph, input_file, samples: int | None,
                 run_dir: Path | None = None, lazy: bool = False) -> Inputs:
    from spikeport.data.event_files import EventFile

    if isinstance(input_file, EventFile):
        return event_inputs(graph, input_file, run_dir, samples)
    return npz_inputs(input_file, samples, lazy)


def resolve(run_or_graph: str | Path, input_file: str | Path | None = None,
            samples: int | None = None, targets: Sequence[str] = (), dt: float | None = None,
            lazy: bool = False) -> tuple[nir.NIRGraph, Inputs, Path | None]:
    """(graph, inputs, run_dir or None) for a RUN_OR_GRAPH argument, the inputs checked
    against the graph (:func:`check_inputs`; ``targets``: the targets they will run on).
    ``input_file``: an ``.npz`` (:func:`npz_inputs`) or an event recording with its binning
    (an :class:`~spikeport.data.event_files.EventFile`, :func:`event_inputs`).
    RUN/model.nir is written only once the inputs passed. ``dt``: see :func:`read_graph`.
    ``lazy``: a test split or an uncompressed .npz stays on disk, read a block of samples at a
    time (:class:`~spikeport.core.samples.Samples`), so memory does not grow with samples."""
    _check_samples(samples)
    p = Path(run_or_graph)
    if p.is_dir():
        transactions.open_run(p)
        if dt is not None:
            raise SpikeportError("--dt is for a .nir file that records no dt; a run's dt comes "
                                 "from its recipe", "drop --dt")
        graph, path = export_run_graph(p, write=False)
        inputs = (_file_inputs(graph, input_file, samples, p, lazy) if input_file
                  else run_inputs(p, samples, lazy=lazy))
        inputs = check_inputs(graph, inputs, targets)
        write_run_graph(graph, path)
        return graph, inputs, p
    graph = read_graph(p, dt)
    if input_file is None:
        raise SpikeportError(f"{p} is a graph without data", "pass --input FILE.npz with x "
                             "(T, B, ...), or --events FILE with --bin-ms")
    return graph, check_inputs(graph, _file_inputs(graph, input_file, samples, lazy=lazy),
                               targets), None
