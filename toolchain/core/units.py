"""All unit conversions of spikeport, each as a pair of inverse functions.

Discretisation contract (SEMANTICS.md 2; forward Euler, current-then-voltage, reset to
zero in the same step). For a step dt and a time constant tau, let b = dt / tau. The
per-step updates every float target computes, in this order and in float64 (written once,
as step functions, in spikeport.ir.neurons), are

    LIF      v' = d_v * v + (g * x + l)        d_v = 1 - b,   g = r * b,     l = b * v_leak
    LI       as LIF without threshold
    IF       v' = v + (g * x)                  g = dt * r
    I        as IF without threshold
    CubaLIF  i  = d_i * i + (g_i * x)          d_i = 1 - a,   g_i = a * w_in   (a = dt / tau_syn)
             v' = d_v * v + (g_v * i + l)      d_v = 1 - b,   g_v = r * b,  l = b * v_leak
    spike z = [v' > v_th] (strict); v = v_reset where z, else v'

snntorch's discrete parameters (``beta``, ``alpha`` and an implicit unit input gain) map to
NIR's continuous ones as tau = dt / (1 - beta), r = 1 / b, w_in = 1 / a (the mapping of
snntorch's own exporter). :func:`tau_from_decay` and :func:`unit_gain` choose the float64
value whose conversion back gives the decay and the gain exactly where such a float64 exists
(nudging by a few ulps; for about 5 % of float32 decays rounding skips the exact value and the
round trip is within one float64 ulp).

Why float64: with binary inputs and float32 weights, every weighted sum is exact in float64
(24-bit mantissas over a limited exponent range fit in 53 bits), so targets that sum in
different orders (numpy, torch, onnxruntime) still agree bit for bit.
"""
from __future__ import annotations

import numpy as np

DEFAULT_DT = 1e-4  # s; snntorch's hard-coded value, used by the NIR paper for every comparison


def decay_from_tau(tau, dt: float) -> np.ndarray:
    """d = 1 - dt / tau (float64). tau = inf gives d = 1 (no leak)."""
    tau = np.asarray(tau, dtype=np.float64)
    return 1.0 - dt / tau


def tau_from_decay(decay, dt: float) -> np.ndarray:
    """Inverse of :func:`decay_from_tau`: tau with 1 - dt/tau == decay exactly (float64).

    decay = 1 gives tau = inf (a pure integrator); decay must be in [0, 1].
    """
    d = np.asarray(decay, dtype=np.float64)
    if np.any((d < 0) | (d > 1)) or np.any(~np.isfinite(d)):
        raise ValueError("decay factors must lie in [0, 1]")
    with np.errstate(divide="ignore"):
        tau = dt / (1.0 - d)
    return _nudge(tau, d, lambda t: decay_from_tau(t, dt))


def unit_gain(b) -> np.ndarray:
    """r with r * b == 1 exactly (float64), for b = dt / tau > 0."""
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(divide="ignore"):
        r = 1.0 / b
    return _nudge(r, np.ones_like(b), lambda x: x * b)


def _nudge(x: np.ndarray, target: np.ndarray, f, max_steps: int = 8) -> np.ndarray:
    """Best effort: move each finite x by up to ``max_steps`` ulps (either way) so that
    f(x) == target elementwise. Where no float64 x hits the target (rounding can skip it),
    x stays at the plain quotient, within one float64 ulp of exact."""
    x = np.array(x, dtype=np.float64, copy=True)
    done = ~np.isfinite(x) | (f(x) == target)
    for direction in (np.inf, -np.inf):
        v = x.copy()
        for _ in range(max_steps):
            if done.all():
                return x
            v = np.nextafter(v, direction)
            hit = ~done & (f(v) == target)
            x[hit] = v[hit]
            done |= hit
    return x


def lif_coefficients(tau, r, v_leak, dt: float):
    """(d_v, g, l) of the LIF/LI update (module docstring)."""
    b = dt / np.asarray(tau, dtype=np.float64)
    return 1.0 - b, np.asarray(r, np.float64) * b, b * np.asarray(v_leak, np.float64)


def cuba_coefficients(tau_syn, tau_mem, r, v_leak, w_in, dt: float):
    """(d_i, g_i, d_v, g_v, l) of the CubaLIF/CubaLI update (module docstring)."""
    a = dt / np.asarray(tau_syn, dtype=np.float64)
    b = dt / np.asarray(tau_mem, dtype=np.float64)
    return (1.0 - a, a * np.asarray(w_in, np.float64), 1.0 - b,
            np.asarray(r, np.float64) * b, b * np.asarray(v_leak, np.float64))


def if_gain(r, dt: float) -> np.ndarray:
    """g of the IF/I update: dt * r (a unit-gain integrator has r = 1/dt)."""
    return dt * np.asarray(r, dtype=np.float64)


def if_unit_r(dt: float, shape) -> np.ndarray:
    """Inverse of :func:`if_gain` for g = 1: r with dt * r == 1 exactly where possible."""
    return _nudge(np.full(shape, 1.0 / dt), np.ones(shape), lambda r: if_gain(r, dt))


# ---------------------------------------------------------------- Loihi fixed point
# The ranges and conversions of Lava's CUBA LIF in fixed point (lava-nc 0.10.0; SEMANTICS.md
# 6); the integer update itself is spikeport.exporters.loihi.fixed_point. Everything in one
# layer shares one scale s: integer weight = s * float weight, vThMant = s * threshold,
# bias_mant = s * bias; state integer = 64 s * float state. iDecay / vDecay are 4096 times
# the fraction of the current / voltage that decays per step. Binary input spikes make the
# input of a step a sum of integer weight columns.

DECAY_UNITY = 4096
LOIHI_WEIGHT_MIN, LOIHI_WEIGHT_MAX = -256, 254  # even integers survive netx's bit packing
LOIHI_VTH_MAX = 2 ** 17 - 1
LOIHI_BIAS_MAX = 2 ** 12 - 1                    # bias_mant is s13
LOIHI_STATE_BITS = 24


def loihi_decay(fraction) -> np.ndarray:
    """iDecay / vDecay = round(4096 * fraction), fraction = dt / tau (the part that decays)."""
    return np.rint(DECAY_UNITY * np.asarray(fraction, dtype=np.float64)).astype(np.int64)


def loihi_decay_fraction(decay_int) -> np.ndarray:
    """Inverse of :func:`loihi_decay`: the fraction that decays per step."""
    return np.asarray(decay_int, dtype=np.float64) / DECAY_UNITY


def loihi_weights(w_eff, scale: float) -> tuple[np.ndarray, float]:
    """Even integers round(w * scale / 2) * 2 clipped to [-256, 254]; also the clipped share."""
    raw = np.rint(np.asarray(w_eff, dtype=np.float64) * scale / 2.0) * 2.0
    clipped = float(np.mean((raw < LOIHI_WEIGHT_MIN) | (raw > LOIHI_WEIGHT_MAX))) if raw.size else 0.0
    return np.clip(raw, LOIHI_WEIGHT_MIN, LOIHI_WEIGHT_MAX).astype(np.int64), clipped


def loihi_threshold(threshold: float, scale: float) -> int:
    """vThMant = round(threshold * scale)."""
    return int(np.rint(threshold * scale))


def loihi_scale(weight_absmax: float, threshold: float, bias_absmax: float = 0.0) -> float:
    """The per-layer scale s (SEMANTICS.md 7): the largest that keeps every weight in
    [-256, 254], the threshold in u17 and the bias in s13 (a zero maximum sets no limit),
    lowered so that threshold * s is an integer. The quantiser and Loihi-aware training both
    call this, so a trained layer is exported with the scale it was trained for.

    The 1e-6 tolerance makes the choice a fixed point under float32 storage of the projected
    weights: a layer trained with Loihi-aware weights gets back exactly its own scale at
    export."""
    limits = [LOIHI_WEIGHT_MAX / weight_absmax if weight_absmax > 0 else np.inf,
              LOIHI_VTH_MAX / threshold if threshold > 0 else np.inf,
              LOIHI_BIAS_MAX / bias_absmax if bias_absmax > 0 else np.inf]
    s = min(limits)
    if not np.isfinite(s):
        s = 64.0
    return float(np.floor(threshold * s * (1 + 1e-6)) / threshold)


# ---- SI scale of the units energy profiles are written in (ENERGY.md 3) -------------------
SI_SCALE = {
    "energy": {"pJ": 1e-12, "nJ": 1e-9, "uJ": 1e-6, "mJ": 1e-3, "J": 1.0},
    "power": {"mW": 1e-3, "W": 1.0},
    "time": {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0},
}
