"""Evaluating an embedding: the frozen encoder's features of both splits, a kNN classifier
and a linear probe on them, and hidden-neuron usage; the same for the untrained encoder.

The training split is encoded once with its own seed (``train.seed + PROBE_SEED_OFFSET``),
the test split with the seed every other command encodes it with (``train.seed +
EVAL_SEED_OFFSET``: the inputs of ``validate`` and ``estimate``). Only the evaluation reads
labels: the kNN's and the probe's.

- kNN: ``k`` nearest training embeddings (majority vote, ties to the nearest), with the
  method's ``metric`` (the siamese method's features are spike-time CDFs, whose manhattan
  distance is the EMD it was trained with);
- linear probe: multinomial logistic regression (scikit-learn, lbfgs) on the features
  standardised with the training split's mean and standard deviation.
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from spikeport.core import interrupts
from spikeport.models.network import record
from spikeport.training.losses import LayerTrace
from spikeport.training.methods import (EVAL_SEED_OFFSET, PROBE_SEED_OFFSET, check_finite_weights,
                                        diverged)
from spikeport.training.optimizers import make_optimizer
from spikeport.training.scores import HiddenUsage, classification_metrics

Features = Callable[[torch.Tensor], torch.Tensor]  # output spikes (T, B, D) -> (B, F)


def counts(spikes: torch.Tensor) -> torch.Tensor:
    """The spike count of every output neuron, (B, D)."""
    return spikes.sum(0)


@torch.no_grad()
def embed(c, model: torch.nn.Module, x: np.ndarray, seed: int, features: Features,
          progress: bool = False) -> tuple[np.ndarray, dict]:
    """(features (N, F), hidden-usage summary) of ``model`` on the images ``x``, encoded by
    the run's encoder in evaluation batches with a generator seeded ``seed``."""
    cfg, T = c.config, c.config.time_steps
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    bs = cfg.train["eval_batch_size"]
    usage = HiddenUsage.of_network([name for name, _ in model.neuron_layers()])
    out = []
    x_all = torch.from_numpy(x)
    for start in tqdm(range(0, len(x_all), bs), desc="embed", disable=not progress,
                      leave=False, unit="batch"):
        interrupts.check()
        xb = c.encoder(x_all[start:start + bs], T, gen)
        with record(model) as rec:
            spikes = model(xb)
        usage.update(rec)
        out.append(features(spikes).reshape(spikes.shape[1], -1))
    return torch.cat(out).numpy().astype(np.float64), usage.summary()


def probes(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray,
           n_classes: int, k: int, metric: str) -> dict:
    """Accuracy and macro F1 of the kNN classifier and of the linear probe."""
    knn = KNeighborsClassifier(n_neighbors=min(k, len(y_train)), metric=metric)
    knn_pred = knn.fit(f_train, y_train).predict(f_test)
    scaler = StandardScaler().fit(f_train)
    probe = LogisticRegression(max_iter=2000)
    probe.fit(scaler.transform(f_train), y_train)
    lin_pred = probe.predict(scaler.transform(f_test))
    knn_m = classification_metrics(y_test, knn_pred, n_classes)
    lin_m = classification_metrics(y_test, lin_pred, n_classes)
    return {"knn_accuracy": knn_m["test_accuracy"], "knn_f1": knn_m["test_f1"],
            "linear_probe_accuracy": lin_m["test_accuracy"],
            "linear_probe_f1": lin_m["test_f1"]}


def evaluate_embedding(c, features: Features, k: int, metric: str, readout: str,
                       progress: bool = False) -> dict:
    """The test figures of an embedding method (see :mod:`spikeport.training.methods`):
    kNN accuracy and F1 as ``test_accuracy`` / ``test_f1``, both probes, hidden usage of
    the trained encoder on the test split, and the probes of the untrained encoder (the
    same architecture with its initial weights, ``c.initial_state``) as ``random_floor``."""
    ds, seed = c.dataset, c.config.train["seed"]
    trained = _figures(c, c.model, features, k, metric, seed, progress)
    out = {"test_accuracy": trained["knn_accuracy"], "test_f1": trained["knn_f1"],
           **{key: trained[key] for key in ("hidden_usage", "hidden_usage_median",
                                             "hidden_usage_per_layer")},
           "n_test": int(len(ds.y_test)),
           "knn_accuracy": trained["knn_accuracy"],
           "linear_probe_accuracy": trained["linear_probe_accuracy"]}
    embedding = {"readout": readout, "knn_k": k, "knn_metric": metric,
                 "knn_f1": trained["knn_f1"], "linear_probe_f1": trained["linear_probe_f1"]}
    if c.initial_state is not None:
        untrained = copy.deepcopy(c.model)
        untrained.load_state_dict(c.initial_state)
        floor = _figures(c, untrained, features, k, metric, seed, progress)
        embedding["random_floor"] = {key: floor[key] for key in (
            "knn_accuracy", "knn_f1", "linear_probe_accuracy", "linear_probe_f1",
            "hidden_usage")}
    out["embedding"] = embedding
    return out


def _figures(c, model, features: Features, k: int, metric: str, seed: int,
             progress: bool) -> dict:
    ds = c.dataset
    f_train, _ = embed(c, model, ds.x_train, seed + PROBE_SEED_OFFSET, features, progress)
    f_test, usage = embed(c, model, ds.x_test, seed + EVAL_SEED_OFFSET, features, progress)
    return {**probes(f_train, ds.y_train, f_test, ds.y_test, ds.n_classes, k, metric), **usage}


# ----------------------------------------------------------------------------- training

def layer_traces(model, rec) -> list[LayerTrace]:
    """Every spiking population of ``model`` from a recording attached to the graph."""
    populations = model.neuron_layers()
    return [LayerTrace(rec[name], rec.membranes[name], neuron.threshold.detach(),
                       output=i == len(populations) - 1)
            for i, (name, neuron) in enumerate(populations)]


def _forward(c, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(output spikes, regulariser term or None) of one batch."""
    if c.regularizer is None:
        return c.model(x), None
    with record(c.model, membranes=True, detach=False) as rec:
        spikes = c.model(x)
    return spikes, c.regularizer.term(layer_traces(c.model, rec), spikes, None)


def fit_embedding(c, method, head: torch.nn.Module | None, progress: bool = True,
                  device: torch.device | str = "cpu") -> list[dict]:
    """Train ``c.model`` (and the host-side ``head``) with ``method``: per batch,
    ``method.batches`` gives two index tensors and what the objective needs besides the
    spikes; both sides are encoded in one draw of the encoder (independent per sample, so
    two sides of the same image are two different spike trains) and run as one batch;
    loss = ``method.pair_loss(z1, z2, extra, head)`` + alpha * regulariser."""
    cfg, T, epochs = c.config, c.config.time_steps, c.config.train["epochs"]
    device = torch.device(device)
    modules = [m for m in (c.model, head) if m is not None]
    for m in modules:
        m.to(device)
    gen = torch.Generator().manual_seed(cfg.train["seed"])
    params = [p for m in modules for p in m.parameters()]
    opt = make_optimizer(cfg.optimizer["name"], params, **cfg.params("optimizer"))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    x_all = torch.from_numpy(c.dataset.x_train)
    history = []
    for epoch in range(epochs):
        for m in modules:
            m.train()
        total, total_reg, seen = 0.0, 0.0, 0
        bar = tqdm(method.batches(c, gen), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False, unit="batch")
        for i1, i2, extra in bar:
            interrupts.check()
            x = c.encoder(x_all[torch.cat([i1, i2])], T, gen).to(device)
            spikes, term = _forward(c, x)
            loss = method.pair_loss(spikes[:, :len(i1)], spikes[:, len(i1):],
                                    extra.to(device) if extra is not None else None, head)
            if term is not None:
                loss = loss + c.regularizer.alpha * term
                total_reg += term.item() * len(i1)
            if not math.isfinite(loss.item()):
                diverged(cfg, f"the loss is {loss.item()} at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(i1), seen + len(i1)
            bar.set_postfix(loss=f"{total / seen:.4f}")
        sched.step()
        check_finite_weights(cfg, modules, epoch + 1)
        row = {"epoch": epoch + 1, "loss": total / seen,
               **({"regularizer": total_reg / seen} if c.regularizer else {})}
        history.append(row)
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{epochs}  loss {row['loss']:.4f}")
    for m in modules:
        m.to("cpu")
    return history
