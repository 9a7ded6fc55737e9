"""Loihi's CUBA neuron in fixed point, written once: the integer update Lava's CPU simulator
computes for a netx network (lava-nc 0.10.0, ``lava/proc/lif/models.py``,
``Loihi2SimCfg(select_tag="fixed_pt")``; SEMANTICS.md 6).

Per step, with ``a`` the integer sum of the weights of this step's input spikes::

    u <- wrap24( sign(p) (|p| >> 12) + (a << 6) ),           p = u (4096 - iDecay)
    v <- sat24(  sign(q) (|q| >> 12) + u + (bias_mant << 6) ), q = v (4096 - vDecay)
    z  = [v > vThMant << 6];  v <- 0 where z  (u keeps its value)

The shifts toward zero are Lava's rounding of the decay; netx writes du = iDecay - 1 and
Lava adds its ds_offset 1 back, so iDecay is used as written. u wraps and v saturates at
24 bits. Mantissas (weights, bias_mant, vThMant) act on the state shifted left by 6: the
state integer is 64 s times the float state for a layer scale s (:mod:`spikeport.core.units`,
which holds the ranges the quantiser fits the mantissas into).
"""
from __future__ import annotations

import numpy as np

from spikeport.core import units

STATE_SHIFT = 6
HALF = 2 ** (units.LOIHI_STATE_BITS - 1)   # 2^23: the 24-bit state range is [-HALF, HALF)


def state_of(mantissa) -> np.ndarray:
    """A mantissa (bias_mant, vThMant, a weight sum) on the scale of the state: m << 6."""
    return np.asarray(mantissa, dtype=np.int64) << STATE_SHIFT


def decay(x: np.ndarray, decay_int: int) -> np.ndarray:
    """sign(p) (|p| >> 12), p = x (4096 - decay): one step of decay, rounded toward zero."""
    p = x * (units.DECAY_UNITY - decay_int)
    return np.sign(p) * (np.abs(p) >> 12)


def wrap(u: np.ndarray) -> np.ndarray:
    """The current's 24-bit wrap: values above 2^23 wrap down, values at or below -2^23 up."""
    u = np.where(u > HALF, u - 2 * HALF, u)
    return np.where(u <= -HALF, u + 2 * HALF, u)


def saturate(v: np.ndarray) -> np.ndarray:
    """The voltage's 24-bit saturation to [-2^23 + 1, 2^23 - 1]."""
    return np.clip(v, -HALF + 1, HALF - 1)


def cuba_step(u: np.ndarray, v: np.ndarray, a: np.ndarray, bias: np.ndarray, i_decay: int,
              v_decay: int, v_th: int):
    """One CUBA step (module docstring) on int64 arrays: ``a`` the weight sum (mantissa),
    ``bias`` and ``v_th`` already on the state scale (:func:`state_of`). Returns (z, u, v)
    with z boolean."""
    u = wrap(decay(u, i_decay) + state_of(a))
    v = saturate(decay(v, v_decay) + u + bias)
    z = v > v_th
    return z, u, np.where(z, 0, v)
