"""Optimisers, registered by name: the recipe's ``optimizer`` section picks one.

Every optimiser takes the same checked :class:`OptimizerParams` (``lr``, ``weight_decay``,
``momentum``), so that changing ``optimizer.name`` alone keeps a recipe valid; the resolved
config of a run lists all three. ``momentum`` is used by ``sgd`` only.
"""
from __future__ import annotations

from typing import Annotated, Iterable

import torch
from pydantic import AfterValidator, Field

from spikeport.core.registry import Params, Registry
from spikeport.models.neurons import fits_float32


class OptimizerParams(Params):
    """torch keeps these in float32 state: values above 1e30 are refused (1e300 overflowed)."""

    lr: Annotated[float, Field(gt=0), AfterValidator(fits_float32)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0), AfterValidator(fits_float32)] = 0.0
    momentum: Annotated[float, Field(ge=0), AfterValidator(fits_float32)] = 0.9


# An optimiser is built for the model's parameters (``params``).
OPTIMIZERS: Registry = Registry("optimizer", inputs=("params",), section="optimizer")


@OPTIMIZERS.register("adam", "Adam (torch.optim.Adam), L2 penalty added to the gradient",
                     params=OptimizerParams)
def adam(params: Iterable, p: OptimizerParams) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay)


@OPTIMIZERS.register("adamw", "AdamW (torch.optim.AdamW), decoupled weight decay",
                     params=OptimizerParams)
def adamw(params: Iterable, p: OptimizerParams) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)


@OPTIMIZERS.register("sgd", "SGD with momentum (torch.optim.SGD)", params=OptimizerParams)
def sgd(params: Iterable, p: OptimizerParams) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)


def make_optimizer(name: str, params: Iterable, **options) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params`` with its options checked."""
    return OPTIMIZERS.build(name, params, **options)
