"""Siamese spiking network trained with the Earth Mover's Distance between spike trains
(Pabian, Rzepka, Pawlak, ICASSP 2022, arXiv 2203.13207; seed 000 of
../shared/design/METHODS.md). The paper's exact formulation is not public; this is the form
METHODS.md records as the closest verified one.

- Shared weights: both members of a pair go through the one model (in one batch).
- Pairs (:meth:`SiameseEMD.batches`): each epoch, every training sample is an anchor once,
  in an order drawn from the training generator; the i-th pair of the epoch is a
  same-class pair for even i and a different-class pair for odd i (balanced: half and
  half), its partner drawn uniformly from the anchor's class without the anchor itself, or
  from a uniformly drawn other class.
- EMD (:func:`emd`): per output neuron, the spike train s(t) (t = 1..T) normalised to unit
  mass, A(t) = sum_{tau<=t} s(tau) / max(1, n), n = sum_t s(t); the 1-D Wasserstein-1
  distance between two trains is sum_t |A1(t) - A2(t)|, in steps; the pair's distance is
  its mean over the D output neurons. **Silent neurons**: n = 0 gives A = 0 at every step,
  as if the train's mass sat at step T+1: a silent and an active neuron are sum_t A(t)
  apart (T+1 minus the active train's mean spike step), two silent neurons 0. max(1, n)
  equals n for every train that spikes (spikes are binary) and keeps the gradient of a
  silent neuron finite, where Barchid/dvs_ssl's n + 1e-5 divides it by 1e-5.
- Objective: L = mean over pairs of d for a same-class pair and max(0, m - d) for a
  different-class pair (margin m, in steps).

The embedding is the output population's spike trains, read as their CDFs A (D x T
values); the manhattan distance between two such vectors is D times the EMD, so the kNN
classifier on them uses the metric training shaped. The linear classifier (logistic
regression) reads the same vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Iterator

import torch
from pydantic import Field

from spikeport.core.errors import ConfigError
from spikeport.training.embeddings import evaluate_embedding, fit_embedding
from spikeport.training.methods import METHODS, EmbeddingMethod

PositiveInt = Annotated[int, Field(gt=0)]


def spike_cdf(spikes: torch.Tensor) -> torch.Tensor:
    """(T, B, D) spike trains -> their normalised CDFs A(t), (T, B, D); silent: 0."""
    n = spikes.sum(0, keepdim=True).clamp(min=1.0)
    return torch.cumsum(spikes, 0) / n


def emd(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """(B,) mean over neurons of the Wasserstein-1 distance (in steps) between the trains."""
    return (spike_cdf(s1) - spike_cdf(s2)).abs().sum(0).mean(-1)


def cdf_features(spikes: torch.Tensor) -> torch.Tensor:
    """The embedding read as (B, D*T) CDF values: manhattan distance = D * EMD."""
    return spike_cdf(spikes).permute(1, 2, 0).flatten(1)


def contrastive(d: torch.Tensor, same: torch.Tensor, margin: float) -> torch.Tensor:
    """Same class: pull the distance down; different class: hinge at the margin."""
    return torch.where(same, d, torch.relu(margin - d)).mean()


class PairSampler:
    """Seeded balanced pairs over labels ``y`` (every class must hold two samples)."""

    def __init__(self, y):
        y = torch.as_tensor(y, dtype=torch.long)
        self.y = y
        self.classes = sorted(set(y.tolist()))
        self.members = {k: torch.nonzero(y == k).flatten() for k in self.classes}
        small = [k for k in self.classes if len(self.members[k]) < 2]
        if len(self.classes) < 2 or small:
            raise ConfigError("siamese pairs need at least two classes with two training "
                              f"samples each (classes with fewer: {small})",
                              "use a dataset with more samples per class, or a lower "
                              "dataset.test_fraction")
        self.position = torch.empty_like(y)
        for k in self.classes:
            self.position[self.members[k]] = torch.arange(len(self.members[k]))

    def partners(self, anchors: torch.Tensor, same: torch.Tensor,
                 gen: torch.Generator) -> torch.Tensor:
        r = torch.randint(0, 2 ** 62, (len(anchors), 2), generator=gen)
        out = torch.empty_like(anchors)
        for i, (a, s) in enumerate(zip(anchors.tolist(), same.tolist())):
            k = int(self.y[a])
            if not s:  # another class, uniformly
                others = [c for c in self.classes if c != k]
                k = others[int(r[i, 0]) % len(others)]
                members = self.members[k]
                out[i] = members[int(r[i, 1]) % len(members)]
            else:  # the same class without the anchor itself
                members = self.members[k]
                step = 1 + int(r[i, 1]) % (len(members) - 1)
                out[i] = members[(int(self.position[a]) + step) % len(members)]
        return out


@METHODS.register("siamese-emd", "siamese: shared encoder, balanced class pairs, contrastive "
                  "loss on the EMD between output spike trains")
@dataclass(frozen=True)
class SiameseEMD(EmbeddingMethod):
    margin: Annotated[float, Field(gt=0)] = 2.0
    embedding: PositiveInt = 32
    knn_k: PositiveInt = 10
    uses_labels = True

    def batches(self, c, gen: torch.Generator) -> Iterator[tuple]:
        sampler = PairSampler(c.dataset.y_train)
        n, bs = len(sampler.y), c.config.train["batch_size"]
        anchors = torch.randperm(n, generator=gen)
        same = torch.arange(n) % 2 == 0
        for start in range(0, n, bs):
            a, s = anchors[start:start + bs], same[start:start + bs]
            yield a, sampler.partners(a, s, gen), s

    def pair_loss(self, s1: torch.Tensor, s2: torch.Tensor, same: torch.Tensor,
                  head) -> torch.Tensor:
        return contrastive(emd(s1, s2), same, self.margin)

    def fit(self, c, progress: bool = True, device="cpu") -> list[dict]:
        return fit_embedding(c, self, None, progress, device)

    def evaluate(self, c, progress: bool = False) -> dict:
        return evaluate_embedding(c, cdf_features, self.knn_k, "manhattan",
                                  "normalised spike-time CDF of each output neuron (D x T)",
                                  progress)
