"""Training methods: how a recipe's model is trained and what its evaluation reports.

A recipe names its method in the optional section ``method`` (``method: {name:
siamese-emd, margin: 1.0}``); without it the model is trained ``supervised``, the loss
section's loss on the output spike counts, exactly as before the section existed. The
registry :data:`METHODS` checks a method's keys like every other registry (an unknown name
or key, a value out of range: one line naming the key and the fix).

A method other than ``supervised`` trains an *embedding*: the model's output population
(``embedding`` neurons instead of one per class) is the encoder whose spikes are the
embedding, and the method brings its own objective, so its recipe has no ``loss`` section.
Every method object has:

- ``output_size(n_classes)``: the size of the output population;
- ``uses_labels``: whether training reads the training labels (the self-supervised method
  does not, and a test poisons them to prove it);
- ``fit(c, progress, device)`` -> per-epoch history, training ``c.model`` in place;
- ``evaluate(c, progress)`` -> the test figures: ``test_accuracy`` and ``test_f1`` of a kNN
  classifier on the embeddings, ``knn_accuracy``, ``linear_probe_accuracy``, hidden-neuron
  usage and the same figures of the untrained encoder (``random_floor``).

Heads on top of the embedding (the self-supervised projector, the kNN and the logistic
regression) live on the host: they are not part of the model and never exported.
docs/methods.md has the equations and the measurements.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spikeport.core.errors import ConfigError
from spikeport.core.registry import Registry

METHODS: Registry = Registry("training method", section="method")

# Test-time encoding seed = train.seed + EVAL_SEED_OFFSET (evaluate, validate, estimate);
# embedding methods encode the training split for their probes with the next offset up.
EVAL_SEED_OFFSET = 0x5EED
PROBE_SEED_OFFSET = EVAL_SEED_OFFSET + 2


@METHODS.register("supervised", "the loss section's loss on the output spike counts (the "
                  "default without a method section)")
@dataclass(frozen=True)
class Supervised:
    """Marks the loop's own supervised training; it trains nothing by itself."""

    supervised = True
    uses_labels = True

    def output_size(self, n_classes: int) -> int:
        return n_classes


class EmbeddingMethod:
    """Base of the embedding methods: the output population has ``embedding`` neurons."""

    supervised = False
    embedding: int

    def output_size(self, n_classes: int) -> int:
        return self.embedding


def check_method(name: str, params: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """The method section's keys (without ``name``) checked, defaults filled in, and what
    the rest of the recipe must be for it: an embedding method has its own objective (no
    ``loss`` section) and takes only regularisers that need no labels."""
    _register_builtins()
    checked = METHODS.check(name, params)
    supervised = getattr(METHODS.get(name), "supervised", False)
    if supervised and sections.get("loss") is None:
        raise ConfigError("missing 'loss'", "add loss, e.g. loss: {name: ce-count}")
    if not supervised and sections.get("loss") is not None:
        raise ConfigError(f"method {name!r} trains with its own objective, so the loss "
                          "section is not used", "remove the loss section")
    reg = sections.get("regularizer")
    if not supervised and reg is not None and reg.get("name") not in LABEL_FREE_REGULARIZERS:
        raise ConfigError(f"method {name!r} cannot take regularizer {reg.get('name')!r}, "
                          "which needs the predicted class",
                          f"use one of: {', '.join(LABEL_FREE_REGULARIZERS)}, or none")
    return checked


LABEL_FREE_REGULARIZERS = ("spikes",)  # computed from the spikes alone


def make_method(name: str, **params):
    """The method ``name`` with its parameters checked and bound."""
    _register_builtins()
    return METHODS.build(name, **params)


def method_registry() -> Registry:
    """:data:`METHODS` with every built-in method registered."""
    _register_builtins()
    return METHODS


def _register_builtins() -> None:
    """Import the modules that register the embedding methods (they import this one)."""
    from spikeport.training import siamese, ssl  # noqa: F401


def check_finite_weights(cfg, modules, epoch: int) -> None:
    """Stop (:func:`diverged`) when a parameter of ``modules`` left the finite numbers in
    ``epoch`` (1-based): the last step's loss can be finite while the step itself overflows."""
    import torch

    for module in modules:
        bad = next((name for name, p in module.named_parameters()
                    if not bool(torch.isfinite(p).all())), None)
        if bad is not None:
            diverged(cfg, f"parameter {bad} is not finite after epoch {epoch}")


def diverged(cfg, what: str) -> None:
    """Stop training whose loss or weights left the finite numbers, naming the fix."""
    lr = cfg.optimizer["lr"]
    lower = repr(float(f"{lr / 10:.3g}"))
    raise ConfigError(f"training diverged: {what}; nothing was written",
                      f"lower optimizer.lr (now {lr:g}), e.g. --set optimizer.lr={lower}")
