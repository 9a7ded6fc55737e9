"""Self-supervised two-branch training with Poisson views (Chamand & Joly, CBMI 2022; seed
003 of ../shared/design/METHODS.md): the only "augmentation" is the encoder's randomness,
so two Bernoulli rate encodings of the same image are the two views.

Both views go through the same spiking encoder (the model); its embedding is the spike
count of each output neuron, z = sum_t s(t) (B, D). A host-side projector g (Linear ->
BatchNorm -> ReLU -> Linear, ``projector`` units) maps it to p = g(z / T). The paper's
objective is not published; three are implemented (``objective``):

- ``vicreg`` (Bardes, Ponce, LeCun, ICLR 2022): L = w_inv * mean((p1 - p2)^2)
  + w_var * sum_b mean_j relu(1 - sqrt(var_j(p_b) + 1e-4))
  + w_cov * sum_b sum_{i != j} cov_ij(p_b)^2 / P;
- ``simsiam`` (Chen & He, CVPR 2021): a predictor h (P -> P/4 -> P), L = -(cos(h(p1),
  sg(p2)) + cos(h(p2), sg(p1))) / 2, sg = stop-gradient;
- ``ntxent`` (SimCLR, Chen et al., ICML 2020): the normalised temperature-scaled
  cross-entropy over the 2B projections, the other view of each sample its positive.

No label is read: the batches are a permutation of the training indices and nothing else
(tests/test_methods.py poisons the labels and gets the same weights). The projector and the
predictor are training devices only: they are not part of the model, not saved and not
exported; evaluation freezes the encoder (spikeport.training.embeddings).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Iterator, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from spikeport.training.embeddings import counts, evaluate_embedding, fit_embedding
from spikeport.training.methods import METHODS, EmbeddingMethod

PositiveInt = Annotated[int, Field(gt=0)]
Weight = Annotated[float, Field(ge=0)]


def vicreg(p1: torch.Tensor, p2: torch.Tensor, w_inv: float, w_var: float,
           w_cov: float) -> torch.Tensor:
    """VICReg's invariance, variance and covariance terms, weighted."""
    inv = F.mse_loss(p1, p2)
    var, cov = 0.0, 0.0
    for p in (p1, p2):
        p = p - p.mean(0)
        std = torch.sqrt(p.var(0) + 1e-4)
        var = var + torch.relu(1 - std).mean()
        c = (p.T @ p) / (len(p) - 1)
        off = c - torch.diag(torch.diag(c))
        cov = cov + off.pow(2).sum() / p.shape[1]
    return w_inv * inv + w_var * var + w_cov * cov


def simsiam(h1: torch.Tensor, h2: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor
            ) -> torch.Tensor:
    """SimSiam's symmetric negative cosine with a stop-gradient on the target branch."""
    return -(F.cosine_similarity(h1, p2.detach()).mean()
             + F.cosine_similarity(h2, p1.detach()).mean()) / 2


def ntxent(p1: torch.Tensor, p2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over the 2B projections (cosine similarities / temperature, self excluded)."""
    z = F.normalize(torch.cat([p1, p2]), dim=1)
    sim = z @ z.T / temperature
    n = len(p1)
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, positive)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class Head(nn.Module):
    """The host-side projector (and SimSiam's predictor) on the encoder's rates z / T."""

    def __init__(self, n_in: int, projector: int, predictor: bool):
        super().__init__()
        self.projector = _mlp(n_in, projector, projector)
        self.predictor = _mlp(projector, max(projector // 4, 1), projector) if predictor else None


@METHODS.register("ssl-two-view", "self-supervised: two Poisson views of each image, shared "
                  "encoder and projector, no labels (VICReg, SimSiam or NT-Xent)")
@dataclass(frozen=True)
class TwoView(EmbeddingMethod):
    objective: Literal["vicreg", "simsiam", "ntxent"] = "vicreg"
    embedding: PositiveInt = 256
    projector: PositiveInt = 512
    inv_weight: Weight = 25.0
    var_weight: Weight = 25.0
    cov_weight: Weight = 1.0
    temperature: Annotated[float, Field(gt=0)] = 0.5
    knn_k: PositiveInt = 10
    uses_labels = False

    def batches(self, c, gen: torch.Generator) -> Iterator[tuple]:
        """A permutation of the training indices in batches; both views are the same
        images. Only the number of training samples is read, never their labels."""
        n, bs = len(c.dataset.x_train), c.config.train["batch_size"]
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - 1, bs):  # a batch of one has no variance to normalise
            idx = order[start:start + bs]
            if len(idx) > 1:
                yield idx, idx, None

    def pair_loss(self, s1: torch.Tensor, s2: torch.Tensor, extra, head: Head) -> torch.Tensor:
        T = s1.shape[0]
        p1, p2 = head.projector(counts(s1) / T), head.projector(counts(s2) / T)
        if self.objective == "vicreg":
            return vicreg(p1, p2, self.inv_weight, self.var_weight, self.cov_weight)
        if self.objective == "simsiam":
            return simsiam(head.predictor(p1), head.predictor(p2), p1, p2)
        return ntxent(p1, p2, self.temperature)

    def fit(self, c, progress: bool = True, device="cpu") -> list[dict]:
        with torch.random.fork_rng():
            torch.manual_seed(c.config.train["seed"])
            head = Head(self.embedding, self.projector, self.objective == "simsiam")
        return fit_embedding(c, self, head, progress, device)

    def evaluate(self, c, progress: bool = False) -> dict:
        return evaluate_embedding(c, counts, self.knn_k, "euclidean",
                                  "spike count of each output neuron", progress)
