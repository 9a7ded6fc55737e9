"""Neuron dynamics, written once: one pure float step per NIR neuron type.

Every float target (the numpy reference, the torch import, the ONNX builder) takes its
neuron arithmetic from here, so they cannot drift apart. A neuron type is described by a
:class:`NeuronModel` in :data:`NEURONS` (keyed by NIR class name): a function reading the
node's per-step coefficients into a small frozen parameter record (from
:mod:`spikeport.core.units`, SEMANTICS.md 2), the names of its state tensors, whether it
spikes, and its step function

    step(p, x, state, ops) -> (out, new_state)

where ``state`` is a tuple in the order of the model's state names (zeros at the first
step) and ``out`` is the spike train (0.0 / 1.0) of a spiking type or the membrane of a
non-spiking one. A step uses only ``*`` and ``+`` on its operands and the three operations
of an :class:`Ops` (``greater``, ``where``, ``as_float``), so the same function runs on numpy
arrays, torch tensors or the symbolic tensors of an ONNX graph builder.

Why the written order matters: each update is evaluated exactly as written, e.g.
``d * v + (g * x + l)``, one rounding per operation. Multiplication and addition of two
operands are commutative in IEEE arithmetic, but regrouping three terms is not
associative, so every backend must evaluate the same tree (ONNX: one Mul / Add node per
operator, never fused) to agree bit for bit.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, make_dataclass
from typing import Any, Callable

import nir
import numpy as np

from spikeport.core import units
from spikeport.core.errors import GraphError
from spikeport.core.registry import Registry


@dataclass(frozen=True)
class Ops:
    """The non-arithmetic operations of a step, for one array library."""

    greater: Callable    # (a, b) -> boolean a > b
    where: Callable      # (cond, a, b) -> a where cond, else b
    as_float: Callable   # boolean -> 0.0 / 1.0 in the step's float type


NUMPY = Ops(np.greater, np.where, lambda z: z.astype(np.float64))


class Params:
    """Coefficients of one population; every field is a float64 array (or, after
    :meth:`map`, the backend's version of it)."""

    def fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def map(self, f: Callable[[str, Any], Any]):
        """The same record with every field replaced by ``f(name, value)`` (e.g. a torch
        buffer, or an ONNX initializer)."""
        return type(self)(**{k: f(k, v) for k, v in self.fields().items()})


def _firing_variant(base: type) -> type:
    """``base`` plus the threshold and the reset value of a spiking population
    (``v_threshold``, ``v_reset``), as a frozen dataclass named ``<base>Firing``."""
    return make_dataclass(f"{base.__name__}Firing", [("v_threshold", Any), ("v_reset", Any)],
                          bases=(base,), frozen=True, namespace={"__module__": __name__})


@dataclass(frozen=True)
class Leaky(Params):
    d: Any   # 1 - dt / tau
    g: Any   # r dt / tau
    l: Any   # v_leak dt / tau


LeakyFiring = _firing_variant(Leaky)


@dataclass(frozen=True)
class Integrator(Params):
    g: Any   # dt r


IntegratorFiring = _firing_variant(Integrator)


@dataclass(frozen=True)
class Cuba(Params):
    d_i: Any  # 1 - dt / tau_syn
    g_i: Any  # w_in dt / tau_syn
    d_v: Any  # 1 - dt / tau_mem
    g_v: Any  # r dt / tau_mem
    l: Any    # v_leak dt / tau_mem


CubaFiring = _firing_variant(Cuba)


def _firing(node) -> dict:
    """v_threshold and v_reset of a spiking node (no v_reset: reset to zero)."""
    v_th = np.asarray(node.v_threshold, dtype=np.float64)
    v_reset = getattr(node, "v_reset", None)
    return {"v_threshold": v_th,
            "v_reset": np.zeros_like(v_th) if v_reset is None else np.asarray(v_reset, np.float64)}


def _leaky(node, dt: float) -> Leaky:
    return Leaky(*units.lif_coefficients(node.tau, node.r, node.v_leak, dt))


def _leaky_firing(node, dt: float) -> LeakyFiring:
    return LeakyFiring(*units.lif_coefficients(node.tau, node.r, node.v_leak, dt), **_firing(node))


def _integrator(node, dt: float) -> Integrator:
    return Integrator(units.if_gain(node.r, dt))


def _integrator_firing(node, dt: float) -> IntegratorFiring:
    return IntegratorFiring(units.if_gain(node.r, dt), **_firing(node))


def _cuba_coefficients(node, dt: float):
    return units.cuba_coefficients(node.tau_syn, node.tau_mem, node.r, node.v_leak, node.w_in, dt)


def _cuba(node, dt: float) -> Cuba:
    return Cuba(*_cuba_coefficients(node, dt))


def _cuba_firing(node, dt: float) -> CubaFiring:
    return CubaFiring(*_cuba_coefficients(node, dt), **_firing(node))


# --------------------------------------------------------------------------- the steps


def fire(p, v, ops: Ops):
    """z = [v > v_threshold] (strict); v = v_reset where z, else v. Returns (z, v)."""
    z = ops.greater(v, p.v_threshold)
    return ops.as_float(z), ops.where(z, p.v_reset, v)


def lif_step(p: LeakyFiring, x, state, ops: Ops):
    """LIF: v' = d v + (g x + l); z = [v' > v_threshold]; v = v_reset where z.

    NIR: tau dv/dt = (v_leak - v) + r I, with d = 1 - dt/tau, g = r dt/tau, l = v_leak dt/tau.
    """
    (v,) = state
    z, v = fire(p, p.d * v + (p.g * x + p.l), ops)
    return z, (v,)


def li_step(p: Leaky, x, state, ops: Ops):
    """LI: v' = d v + (g x + l); the output is v.

    NIR: tau dv/dt = (v_leak - v) + r I (LIF without threshold).
    """
    (v,) = state
    v = p.d * v + (p.g * x + p.l)
    return v, (v,)


def if_step(p: IntegratorFiring, x, state, ops: Ops):
    """IF: v' = v + g x; z = [v' > v_threshold]; v = v_reset where z.

    NIR: dv/dt = r I, with g = dt r.
    """
    (v,) = state
    z, v = fire(p, v + p.g * x, ops)
    return z, (v,)


def i_step(p: Integrator, x, state, ops: Ops):
    """I: v' = v + g x; the output is v.

    NIR: dv/dt = r I (IF without threshold).
    """
    (v,) = state
    v = v + p.g * x
    return v, (v,)


def cuba_lif_step(p: CubaFiring, x, state, ops: Ops):
    """CubaLIF: i = d_i i + g_i x; v' = d_v v + (g_v i + l); z = [v' > v_threshold];
    v = v_reset where z (the current i is not reset).

    NIR: tau_syn di/dt = -i + w_in I, tau_mem dv/dt = (v_leak - v) + r i, with
    d_i = 1 - dt/tau_syn, g_i = w_in dt/tau_syn, d_v = 1 - dt/tau_mem, g_v = r dt/tau_mem,
    l = v_leak dt/tau_mem; the current is updated first and drives v in the same step.
    """
    i, v = state
    i = p.d_i * i + p.g_i * x
    z, v = fire(p, p.d_v * v + (p.g_v * i + p.l), ops)
    return z, (i, v)


def cuba_li_step(p: Cuba, x, state, ops: Ops):
    """CubaLI: i = d_i i + g_i x; v' = d_v v + (g_v i + l); the output is v.

    NIR: as CubaLIF without threshold.
    """
    i, v = state
    i = p.d_i * i + p.g_i * x
    v = p.d_v * v + (p.g_v * i + p.l)
    return v, (i, v)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class NeuronModel:
    """One NIR neuron type: its parameters, state and step."""

    name: str                                 # NIR class name
    params: Callable[[nir.NIRNode, float], Params]
    step: Callable                            # step(p, x, state, ops) -> (out, state)
    states: tuple[str, ...]                   # names of the state tensors, in step order
    spiking: bool                             # out is spikes (else the membrane v)

    @property
    def membrane(self) -> int:
        """Position of the membrane ``v`` in the state tuple."""
        return self.states.index("v")


NEURONS: Registry[NeuronModel] = Registry("NIR neuron type")


def _register(nir_type, params, step, states, spiking):
    NEURONS.for_types(nir_type, wrap=lambda t, s: NeuronModel(t.__name__, params, s, states,
                                                               spiking))(step)


_register(nir.LIF, _leaky_firing, lif_step, ("v",), True)
_register(nir.LI, _leaky, li_step, ("v",), False)
_register(nir.IF, _integrator_firing, if_step, ("v",), True)
_register(nir.I, _integrator, i_step, ("v",), False)
_register(nir.CubaLIF, _cuba_firing, cuba_lif_step, ("i", "v"), True)
_register(nir.CubaLI, _cuba, cuba_li_step, ("i", "v"), False)

def is_neuron(node) -> bool:
    return type(node).__name__ in NEURONS


def model_of(node) -> NeuronModel:
    """The :class:`NeuronModel` of a NIR neuron node."""
    key = type(node).__name__
    if key not in NEURONS:
        raise GraphError(f"{key} is not a neuron type", f"neuron types: {', '.join(NEURONS.names())}")
    return NEURONS.get(key)


def params_of(node, dt: float) -> Params:
    """The per-step coefficients of a NIR neuron node for step ``dt`` (float64 arrays)."""
    return model_of(node).params(node, dt)


def delay_step(x, buffer: list):
    """NIR Delay, y[k] = x[k - n]: ``buffer`` holds the last n inputs, oldest first (zeros
    before the first input); returns (y, the new buffer). With n = 0 (an empty buffer) the
    input passes through. Works on any array type (numpy, torch)."""
    if not buffer:
        return x, buffer
    return buffer[0], buffer[1:] + [x]
