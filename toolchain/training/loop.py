"""Training and evaluation of a recipe, producing and reading run directories.

``train_run`` validates everything it can before touching the disk (dataset, encoder, loss,
model are all built first), trains with a seeded generator that drives shuffling and
encoding (same seed, same weights), evaluates on the test split, and writes the run
directory through a staging directory so that a failed or interrupted run leaves any
previous run untouched. ``evaluate_run`` rebuilds the model from a run directory and
recomputes the same figures.

Test-time encoding uses its own generator seeded from the run's seed, so evaluation of a
stochastic encoder (rate) is repeatable and ``spikeport evaluate`` reproduces
``metrics.json`` exactly.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from spikeport.models.architectures import build_model, model_size
from spikeport.models.network import SpikingSequential, record
from spikeport.core import budget, io, transactions
from spikeport.training.recipes import RunConfig, load_recipe, load_run_config
from spikeport.data.datasets import Dataset, load_dataset
from spikeport.data.encoders import make_encoder
from spikeport.core.errors import CheckpointError, ConfigError, SpikeportError
from spikeport.core.recording import predict
from spikeport.core import interrupts
from spikeport.core.devices import check_device
from spikeport.training import distributed
from spikeport.training.losses import LayerTrace, Regularizer, make_loss, make_regularizer
from spikeport.training.methods import (EVAL_SEED_OFFSET, check_finite_weights,
                                        diverged as _diverged, make_method)
from spikeport.training.scores import HiddenUsage, classification_metrics, require_finite

log = logging.getLogger(__name__)


@dataclass
class Components:
    config: RunConfig
    dataset: Dataset
    encoder: Callable
    loss: Callable
    model: SpikingSequential
    regularizer: Regularizer | None = None
    method: Any = None  # an embedding method (spikeport.training.methods); None: supervised
    initial_state: dict[str, torch.Tensor] | None = None  # an embedding's untrained encoder


def build_components(cfg: RunConfig, training: bool = False) -> Components:
    """The run's dataset, encoder, loss and model (initialised from ``train.seed``), once the
    memory they need fits the budget (:func:`check_memory`; ``training``: for training)."""
    dataset = load_dataset(cfg.dataset["name"], **cfg.params("dataset"))
    encoder = make_encoder(cfg.encoder["name"], **cfg.params("encoder"))
    loss = make_loss(cfg.loss["name"], **cfg.params("loss")) if cfg.loss is not None else None
    reg = (make_regularizer(cfg.regularizer["name"], cfg.time_steps, **cfg.params("regularizer"))
           if cfg.regularizer is not None else None)
    method = make_method(cfg.method["name"], **cfg.params("method")) if cfg.method else None
    if method is not None and method.supervised:
        method = None  # the loop's own training
    n_out = method.output_size(dataset.n_classes) if method else dataset.n_classes
    check_memory(cfg, dataset, training, n_out)
    torch.manual_seed(cfg.train["seed"])  # weight initialisation
    model = build_model(cfg.model["arch"], dataset.input_shape, n_out,
                        **cfg.params("model", "arch"))
    initial = None if method is None else {k: v.clone() for k, v in model.state_dict().items()}
    return Components(cfg, dataset, encoder, loss, model, reg, method, initial)


def check_memory(cfg: RunConfig, dataset: Dataset, training: bool = False,
                 n_out: int | None = None) -> None:
    """Refuse a config whose model or batches cannot fit in memory, before any of it is
    allocated (:mod:`spikeport.core.budget`). The bytes are lower bounds, float32: the
    parameters (training: also their gradients and the optimiser's state), and per batch the
    encoded input and, per neuron and step, its input current and its spikes. ``n_out``:
    the output population's size (default: one neuron per class)."""
    params, neurons = model_size(cfg.model["arch"], dataset.input_shape,
                                 dataset.n_classes if n_out is None else n_out,
                                 **cfg.params("model", "arch"))
    copies = 3 if training else 1
    model_bytes = 4 * copies * params
    budget.check_bytes(model_bytes, f"a model of {params:,} parameters ({neurons:,} neurons)"
                       + (" with its gradients and optimiser state" if training else ""),
                       "use smaller model sizes (hidden, channels, dense, kernel)", ConfigError)
    T, features = cfg.time_steps, math.prod(dataset.input_shape)
    batches = [("eval_batch_size", len(dataset.y_test))]
    if training:
        if len(dataset.y_train) == 0:
            raise ConfigError(f"dataset.test_fraction {cfg.dataset.get('test_fraction')} leaves "
                              "no training examples", "lower dataset.test_fraction, e.g. 0.2")
        batches.insert(0, ("batch_size", len(dataset.y_train)))
    for key, n in batches:
        b = min(cfg.train[key], n)
        values = features + 2 * neurons
        budget.check_bytes(model_bytes + budget.nbytes((T, b, values), 4),
                           f"a batch of time_steps {T} x train.{key} {b} x {values:,} values per "
                           f"step ({features} inputs, {neurons:,} neurons x 2)",
                           f"lower time_steps or train.{key}", ConfigError)


def _optimizer(cfg: RunConfig, params) -> torch.optim.Optimizer:
    from spikeport.training.optimizers import make_optimizer

    return make_optimizer(cfg.optimizer["name"], params, **cfg.params("optimizer"))


def batch_loss(c: Components, x: torch.Tensor, y: torch.Tensor, forward=None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(output spikes, loss, regulariser term) of one training batch: the task loss plus,
    with a regulariser, alpha times its term on every spiking layer's spikes and membranes
    (recorded attached to the graph). ``forward``: the module to call (the model wrapped in
    DistributedDataParallel when training data-parallel), ``c.model`` by default."""
    forward = c.model if forward is None else forward
    if c.regularizer is None:
        spikes = forward(x)  # (T, B, classes)
        return spikes, c.loss(spikes, y), None
    with record(c.model, membranes=True, detach=False) as rec:
        spikes = forward(x)
    populations = c.model.neuron_layers()  # the last one's spikes are the output
    traces = [LayerTrace(rec[name], rec.membranes[name], neuron.threshold.detach(),
                         output=i == len(populations) - 1)
              for i, (name, neuron) in enumerate(populations)]
    term = c.regularizer.term(traces, spikes, y)
    return spikes, c.loss(spikes, y) + c.regularizer.alpha * term, term


@dataclass
class _Epoch:
    """What one epoch of :func:`fit` needs besides the components."""
    forward: torch.nn.Module
    opt: torch.optim.Optimizer
    gen: torch.Generator
    shard: distributed.Shard
    device: torch.device
    sampler: DistributedSampler | None


def _order(c: Components, e: _Epoch, epoch: int, n: int) -> tuple[torch.Tensor, int]:
    """This rank's sample order for an epoch and its batch size. One process: a permutation
    from the training generator, the recipe's batch size. N ranks: the DistributedSampler's
    shard (padded to equal length), and the batch size split between the ranks (rounded up)
    so that one step still averages about ``batch_size`` samples."""
    bs = c.config.train["batch_size"]
    if e.sampler is None:
        return torch.randperm(n, generator=e.gen), bs
    e.sampler.set_epoch(epoch)
    return torch.tensor(list(e.sampler), dtype=torch.long), -(-bs // e.shard.world)


def _epoch(c: Components, e: _Epoch, epoch: int, x_all, y_all, progress: bool) -> dict:
    cfg, T, epochs = c.config, c.config.time_steps, c.config.train["epochs"]
    c.model.train()
    order, bs = _order(c, e, epoch, len(y_all))
    total_loss, total_reg, correct, seen = 0.0, 0.0, 0, 0
    bar = tqdm(range(0, len(order), bs), desc=f"epoch {epoch + 1}/{epochs}",
               disable=not progress, leave=False, unit="batch")
    for batch, start in enumerate(bar):
        interrupts.check()  # Ctrl-C stops here, between batches (train_run)
        idx = order[start:start + bs]
        x = c.encoder(x_all[idx], T, e.gen).to(e.device)  # (T, B, C, H, W)
        y = y_all[idx].to(e.device)
        spikes, loss, term = batch_loss(c, x, y, e.forward)
        sums = distributed.sum_across(
            [loss.item() * len(idx), 0.0 if term is None else term.item() * len(idx),
             (predict(spikes) == y).sum().item(), len(idx)], e.device)  # every rank agrees
        if not math.isfinite(sums[0]):
            _diverged(cfg, f"the loss is {sums[0] / sums[3]} at epoch {epoch + 1}, batch "
                           f"{batch + 1} of {math.ceil(len(order) / bs)}")
        e.opt.zero_grad(set_to_none=True)
        loss.backward()
        e.opt.step()
        total_loss, total_reg = total_loss + sums[0], total_reg + sums[1]
        correct, seen = correct + int(sums[2]), seen + int(sums[3])
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}")
    return {"epoch": epoch + 1, "loss": total_loss / seen, "accuracy": correct / seen,
            **({"regularizer": total_reg / seen} if c.regularizer else {})}


def fit(c: Components, progress: bool = True, device: torch.device | str = "cpu") -> list[dict]:
    """Train ``c.model`` in place on ``device``; returns per-epoch training loss (with the
    regulariser's share, whose mean term is logged as ``regularizer``) and accuracy, summed
    over all ranks when training data-parallel (:mod:`spikeport.training.distributed`)."""
    cfg, shard, device = c.config, distributed.current(), torch.device(device)
    if c.method is not None:  # an embedding method trains with its own objective
        if shard.world > 1:
            raise ConfigError(f"method {cfg.method['name']!r} trains in one process",
                              "drop --nproc (and torchrun) for this recipe")
        return c.method.fit(c, progress=progress, device=device)
    c.model.to(device)
    gen = torch.Generator().manual_seed(shard.seed(cfg.train["seed"]))
    forward, sampler = c.model, None
    if shard.world > 1:
        forward = DistributedDataParallel(c.model, device_ids=None if device.type == "cpu"
                                          else [device])
        sampler = DistributedSampler(range(len(c.dataset.y_train)), num_replicas=shard.world,
                                     rank=shard.rank, shuffle=True, seed=cfg.train["seed"])
    e = _Epoch(forward, _optimizer(cfg, c.model.parameters()), gen, shard, device, sampler)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(e.opt, T_max=cfg.train["epochs"])
    x_all, y_all = torch.from_numpy(c.dataset.x_train), torch.from_numpy(c.dataset.y_train)
    history = []
    for epoch in range(cfg.train["epochs"]):
        row = _epoch(c, e, epoch, x_all, y_all, progress)
        sched.step()
        check_finite_weights(cfg, [c.model], epoch + 1)
        history.append(row)
        log.info("epoch %d: loss %.4f accuracy %.4f", epoch + 1, row["loss"], row["accuracy"])
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.train['epochs']}  loss {row['loss']:.4f}  "
                       f"train accuracy {row['accuracy']:.4f}")
    c.model.to("cpu")
    return history


@torch.no_grad()
def evaluate(c: Components, progress: bool = False) -> dict:
    """Test accuracy, macro F1 and hidden-neuron usage on the test split (an embedding
    method: of a kNN on the embeddings, with the linear probe's and the random floor's)."""
    if c.method is not None:
        return c.method.evaluate(c, progress=progress)
    cfg, ds, T = c.config, c.dataset, c.config.time_steps
    gen = torch.Generator().manual_seed(cfg.train["seed"] + EVAL_SEED_OFFSET)
    c.model.eval()
    bs = cfg.train["eval_batch_size"]
    usage = HiddenUsage.of_network([name for name, _ in c.model.neuron_layers()])
    preds = []
    x_all = torch.from_numpy(ds.x_test)
    for start in tqdm(range(0, len(x_all), bs), desc="evaluate", disable=not progress,
                      leave=False, unit="batch"):
        interrupts.check()
        x = c.encoder(x_all[start:start + bs], T, gen)
        with record(c.model) as rec:
            out = c.model(x)
        usage.update(rec)
        preds.append(predict(out))
    y_pred = torch.cat(preds).numpy()
    metrics = classification_metrics(ds.y_test, y_pred, ds.n_classes)
    metrics.update(usage.summary())
    metrics["n_test"] = int(len(y_pred))
    return metrics


@dataclass
class Evaluation:
    """A trained model's figures on its test split (``spikeport evaluate``).

    ``test_accuracy`` and ``test_f1`` (macro) from the output spike counts; hidden-neuron
    usage (ENERGY.md 1.2) as the mean over examples, its median and per layer (None without
    hidden layers); ``n_test`` examples. ``summary()`` is what ``--json`` prints.

    An embedding method's run (spikeport.training.methods) takes ``test_accuracy`` and
    ``test_f1`` from a kNN classifier on the embeddings, and adds ``knn_accuracy``,
    ``linear_probe_accuracy`` (printed too) and ``embedding`` (the readout, both F1s,
    the untrained encoder's figures as ``random_floor``).
    """
    run_dir: str
    test_accuracy: float
    test_f1: float
    hidden_usage: float | None
    hidden_usage_median: float | None
    hidden_usage_per_layer: dict[str, float]
    n_test: int
    knn_accuracy: float | None = None
    linear_probe_accuracy: float | None = None
    embedding: dict | None = None

    SUMMARY_KEYS = ("run_dir", "test_accuracy", "test_f1", "hidden_usage")
    EMBEDDING_KEYS = ("knn_accuracy", "linear_probe_accuracy")

    def summary(self) -> dict:
        """The four figures printed by ``--json`` (and an embedding's two probes)."""
        return {k: getattr(self, k) for k in self.SUMMARY_KEYS + self.EMBEDDING_KEYS
                if k in self.SUMMARY_KEYS or getattr(self, k) is not None}

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult(Evaluation):
    """:class:`Evaluation` of the freshly trained model, with the per-epoch history
    (``loss``, ``train_accuracy``) that ``metrics.json`` also records; after data-parallel
    training, ``ranks``: each rank's weight digest (identical replicas have equal ones)."""
    train_history: list[dict] = field(default_factory=list)
    ranks: list[dict] | None = None

    def summary(self) -> dict:
        out = super().summary()
        if self.ranks is not None:
            out["ranks"] = self.ranks
        return out


def train_run(cfg: RunConfig, out: str | Path, force: bool = False,
              progress: bool = True, device: str = "cpu") -> TrainResult | None:
    """Train ``cfg`` on ``device`` and write the run directory ``out`` (config, checkpoint,
    metrics) in one commit; an existing directory is replaced only with ``force``.

    ``out`` is claimed for the whole run (:func:`spikeport.core.transactions.claim`): a second train to
    the same directory fails at once. Ctrl-C stops training at the end of the current batch
    (a second one at once), never inside a torch operation, and leaves any old run as it was.

    Inside a process group (``torchrun``, or ``--nproc`` through :func:`train`) every rank
    trains its shard; rank 0 alone claims, evaluates and writes, and returns the result
    (with ``ranks``: each rank's weight digest), the other ranks return None.
    """
    dev = check_device(device)
    shard = distributed.init_from_env(dev)
    dev = distributed.rank_device(dev, shard)
    c = build_components(cfg, training=True)  # every config error surfaces here, before any write
    with contextlib.ExitStack() as stack:
        error = None
        if shard.main:
            try:
                stack.enter_context(transactions.claim(out))
                out = io.check_output_dir(out, force)
            except SpikeportError as e:
                error = e
        if shard.world > 1:
            distributed.agree(error)
        elif error is not None:
            raise error
        with interrupts.deferred():
            history = fit(c, progress=progress and shard.main, device=dev)
            digests = distributed.gather(distributed.weights_digest(c.model))
            if not shard.main:
                return None
            metrics = evaluate(c, progress=progress)
            metrics["train_history"] = history
            if shard.world > 1:
                metrics["ranks"] = [{"rank": r, "weights_sha256": d} for r, d in enumerate(digests)]
            require_finite(metrics, "training's figures")
            _write_run(cfg, c.model, out, metrics)
    return TrainResult(run_dir=str(out), **metrics)


def _write_run(cfg: RunConfig, model: torch.nn.Module, out: Path, metrics: dict) -> None:
    with transactions.StagedDir(out) as stage:
        io.write_text(stage.path / io.CONFIG_FILE, cfg.to_yaml())
        io.save_checkpoint(stage.path / io.CHECKPOINT_FILE, model.state_dict(),
                           {"arch": cfg.model["arch"], "recipe": cfg.name})
        io.write_json(stage.path / io.METRICS_FILE, metrics)
        interrupts.check()  # the last moment to stop without replacing anything


def train(recipe: str | Path | RunConfig, out: str | Path, overrides: list[str] | tuple = (),
          force: bool = False, progress: bool = False, nproc: int = 1,
          device: str = "cpu") -> TrainResult | None:
    """Train a recipe (a built-in name, a YAML path or a :class:`RunConfig`) with ``key=value``
    overrides into the run directory ``out`` on ``device``; ``nproc`` > 1 trains
    data-parallel in that many local processes (:mod:`spikeport.training.distributed`)."""
    cfg = recipe if isinstance(recipe, RunConfig) else load_recipe(str(recipe), list(overrides))
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc must be a positive whole number, not {nproc!r}",
                          "use --nproc 1 (one process) or --nproc 2 on two cores")
    if nproc > 1 and cfg.method is not None and cfg.method["name"] != "supervised":
        raise ConfigError(f"method {cfg.method['name']!r} trains in one process",
                          "drop --nproc for this recipe")
    if nproc == 1:
        return train_run(cfg, out, force=force, progress=progress, device=device)
    if check_device(device).type != "cpu":
        raise ConfigError("--nproc starts local CPU processes (gloo)",
                          "use torchrun --nproc-per-node N for several CUDA devices "
                          "(docs/scaling.md)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--nproc inside torchrun would start processes twice",
                          "drop --nproc: torchrun already starts one process per rank")
    io.check_output_dir(out, force)  # fail before starting any process
    return distributed.spawn(nproc, train_run, cfg, out, force, progress, device)


def load_run(run_dir: str | Path) -> Components:
    """A run's components with its checkpoint loaded into the model, once the checkpoint's
    structure (:func:`spikeport.core.io.load_checkpoint`) and its names, shapes and dtypes
    (against the model its config.yaml builds) are checked. A commit a killed command left
    half done is finished first (:func:`spikeport.core.transactions.open_run`)."""
    run_dir = transactions.open_run(run_dir)
    cfg = load_run_config(run_dir)
    state, _ = io.load_checkpoint(run_dir / io.CHECKPOINT_FILE)
    c = build_components(cfg)
    check_state(state, c.model, run_dir / io.CHECKPOINT_FILE)
    c.model.load_state_dict(state)
    return c


def check_state(state: dict[str, torch.Tensor], model: torch.nn.Module, source: Path) -> None:
    """Refuse a state dict that does not fit ``model``: the first missing or unknown name,
    the first tensor of another shape (both shapes named) or of a non-float dtype, the first
    buffer (a value the config sets and training never changes: a fixed threshold or decay,
    the reset mechanism; BatchNorm's running statistics are trained) that differs from the
    config's."""
    own = model.state_dict()
    trained = {name for name, _ in model.named_parameters()} | {  # and what BatchNorm tracks
        f"{n}.{b}" if n else b for n, m in model.named_modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for b, _ in m.named_buffers(recurse=False)}
    fix = ("retrain the run with `spikeport train --force`, or restore the checkpoint.pt "
           "that goes with this config.yaml")
    where = f"checkpoint {source} does not match its config.yaml"
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    for keys, what in ((missing, "lacks"), (extra, "has an unknown entry")):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise CheckpointError(f"{where}: it {what} {keys[0]!r}{more}", fix)
    for k, t in own.items():
        v = state[k]
        if tuple(v.shape) != tuple(t.shape):
            raise CheckpointError(f"{where}: {k!r} has shape {tuple(v.shape)}, the config's "
                                  f"model needs {tuple(t.shape)}", fix)
        if t.is_floating_point() and not v.is_floating_point():
            raise CheckpointError(f"{where}: {k!r} holds {v.dtype} values, the config's "
                                  f"model needs {t.dtype}", fix)
        if k not in trained and not torch.equal(v.to(t.dtype), t):
            raise CheckpointError(f"{where}: {k!r}, which the config sets and training does not "
                                  f"change, is {_brief(v)} in the checkpoint and {_brief(t)} in "
                                  "the config", fix)


def _brief(t: torch.Tensor) -> str:
    """A tensor's value in a few characters: the value of a constant tensor, else its range."""
    flat = t.reshape(-1)
    if flat.numel() == 0:
        return "empty"
    lo, hi = flat.min().item(), flat.max().item()
    return f"{lo:g}" if lo == hi else f"in [{lo:g}, {hi:g}]"


def evaluate_run(run_dir: str | Path, progress: bool = False) -> Evaluation:
    """Rebuild a run's model from its checkpoint and recompute its test figures."""
    c = load_run(run_dir)
    metrics = evaluate(c, progress=progress)
    require_finite(metrics, "evaluation")
    return Evaluation(run_dir=str(run_dir), **metrics)
