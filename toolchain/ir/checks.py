"""Validation of a NIR graph's parameters, and of the input a run gets.

:func:`spikeport.ir.program.build_program` calls :func:`spikeport.ir.shapes.check_graph` on
every graph, which checks each node's parameters here (:class:`NodeCheck`,
:func:`check_arrays`) and propagates shapes along the edges; so every target, the estimator
and ``spikeport inspect`` see only graphs that passed, and the targets trust what was
checked. A graph is refused with a :class:`GraphError` naming the node, its NIR type, what is
wrong (with the shapes or the bad value) and the fix, when

- ``dt`` (metadata or option) is not one positive finite number;
- a parameter is not a numeric array (text, Python objects, complex, ragged, empty) or holds
  NaN / inf (weights, biases, scales, thresholds, time constants, r, v_leak, v_reset, w_in,
  delays), a time constant is not > 0, a delay is negative, or a neuron's per-step
  coefficients (:mod:`spikeport.ir.neurons`) overflow for this dt;
- integer parameters are not integers in range: groups >= 1 dividing the channels,
  stride and dilation >= 1, padding >= 0 or "same" (stride 1) / "valid", pool kernels >= 1,
  Flatten dimensions inside the input's rank;
- a parameter is beyond the memory budget (:mod:`spikeport.core.budget`).

The geometry every target shares is here too (:func:`conv_padding`, :func:`same_padding`,
:func:`delay_steps`). :func:`check_input` holds the run-time side: an input array against the
graph's Input shape, and the recording it implies against the budget. :func:`check_values`
refuses a recording that overflowed float64.
"""
from __future__ import annotations

from typing import NoReturn

import nir
import numpy as np

from spikeport.core import budget
from spikeport.core.errors import GraphError

Shape = tuple[int, ...]

DELAY_STEP_OVERHEAD = 128  # bytes a target spends per buffered step beyond its values

# The numeric array parameters of each NIR node type: (attribute, required, rule), rule
# "positive" (> 0), "non-negative" (>= 0) or None. An optional parameter may be None.
_TIME = "positive"
ARRAYS: dict[str, tuple[tuple[str, bool, str | None], ...]] = {
    "Affine": (("weight", True, None), ("bias", True, None)),
    "Linear": (("weight", True, None),),
    "Scale": (("scale", True, None),),
    "Conv1d": (("weight", True, None), ("bias", True, None)),
    "Conv2d": (("weight", True, None), ("bias", True, None)),
    "Threshold": (("threshold", True, None),),
    "Delay": (("delay", True, "non-negative"),),
    "LIF": (("tau", True, _TIME), ("r", True, None), ("v_leak", True, None),
            ("v_threshold", True, None), ("v_reset", False, None)),
    "LI": (("tau", True, _TIME), ("r", True, None), ("v_leak", True, None)),
    "IF": (("r", True, None), ("v_threshold", True, None), ("v_reset", False, None)),
    "I": (("r", True, None),),
    "CubaLIF": (("tau_syn", True, _TIME), ("tau_mem", True, _TIME), ("r", True, None),
                ("v_leak", True, None), ("w_in", False, None), ("v_threshold", True, None),
                ("v_reset", False, None)),
    "CubaLI": (("tau_syn", True, _TIME), ("tau_mem", True, _TIME), ("r", True, None),
               ("v_leak", True, None), ("w_in", False, None)),
}

_KINDS = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers",
          "V": "raw records", "M": "dates", "m": "time spans"}


# --------------------------------------------------------------------------- dt


def check_dt(value, source: str = "dt") -> float:
    """``value`` as the simulation step in seconds: one real number, finite and > 0."""
    fix = "give dt as one positive number of seconds, e.g. 1e-4"
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        raise GraphError(f"{source} is the text {short(value)}, not a number", fix)
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise GraphError(f"{source} is {value!r}, not a number", fix)
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        raise GraphError(f"{source} is not a number ({type(value).__name__})", fix) from None
    if a.ndim != 0:
        raise GraphError(f"{source} is an array of shape {a.shape}, not one number", fix)
    if a.dtype.kind not in "iuf":
        raise GraphError(f"{source} holds {_KINDS.get(a.dtype.kind, a.dtype)}, not a number", fix)
    dt = float(a)
    if not (np.isfinite(dt) and dt > 0):
        raise GraphError(f"{source} must be a positive number of seconds, got {dt}", fix)
    return dt


# --------------------------------------------------------------------------- parameters


def short(v) -> str:
    """``repr(v)``, cut to 40 characters for a message."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


class NodeCheck:
    """The checks of one node, each failure worded ``node 'name' (Type): problem``."""

    def __init__(self, name: str, node, dt: float):
        self.name, self.node, self.dt = name, node, dt
        self.kind = type(node).__name__
        self.arrays: dict[str, np.ndarray] = {}
        self.transient = 0  # bytes per sample a step of this node allocates and frees

    def fail(self, problem: str, fix: str) -> NoReturn:
        raise GraphError(f"node {self.name!r} ({self.kind}): {problem}", fix)

    def fits(self, n_bytes: int, what: str, fix: str) -> None:
        budget.check_bytes(n_bytes, f"node {self.name!r} ({self.kind}): {what}", fix, GraphError)

    def array(self, key: str, required: bool = True, rule: str | None = None) -> np.ndarray | None:
        """The parameter ``key`` as a float64 array: numeric, non-empty, finite, within the
        budget, and > 0 / >= 0 if ``rule`` says so."""
        value = getattr(self.node, key, None)
        fix = f"give {key} as an array of finite numbers"
        if value is None:
            if required:
                self.fail(f"{key} is missing", fix)
            return None
        if isinstance(value, (str, bytes)):
            self.fail(f"{key} is the text {short(value)}, not numbers", fix)
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as e:
            self.fail(f"{key} is not a rectangular array ({str(e).splitlines()[0][:80]})", fix)
        if a.dtype.kind not in "biuf":
            self.fail(f"{key} holds {_KINDS.get(a.dtype.kind, a.dtype)} (dtype {a.dtype}), "
                      "not numbers", fix)
        if a.size == 0:
            self.fail(f"{key} is empty (shape {a.shape})", fix)
        self.fits(budget.nbytes(a.shape), f"{key} of shape {a.shape}",
                  "use a smaller network, or raise the memory budget")
        f = np.asarray(a, dtype=np.float64)
        bad = ~np.isfinite(f)
        if rule == "positive":
            bad |= ~(f > 0)
        elif rule == "non-negative":
            bad |= ~(f >= 0)
        if bad.any():
            idx = np.unravel_index(int(np.argmax(bad)), f.shape) if f.ndim else ()
            where = f" at index {tuple(int(i) for i in idx)}" if f.ndim else ""
            count = f" ({int(bad.sum())} of {f.size} values)" if f.size > 1 else ""
            need = {"positive": "finite and > 0", "non-negative": "finite and >= 0"}.get(rule, "finite")
            self.fail(f"{key} holds {f[idx]}{where}{count}; it must be {need}",
                      f"give {key} {need} values" + (" (seconds)" if key.startswith("tau") or key == "delay" else ""))
        self.arrays[key] = f
        return f

    def ints(self, key: str, n: int, low: int | None) -> tuple[int, ...]:
        """The integer parameter ``key`` as ``n`` Python ints (an int, or an array of 1 or n
        integral numbers), each >= ``low``."""
        value = getattr(self.node, key, None)
        fix = (f"give {key} as an integer" + (f" >= {low}" if low is not None else "")
               + (f" or {n} of them" if n > 1 else ""))
        if value is None or isinstance(value, (str, bytes, bool, np.bool_)):
            self.fail(f"{key} is {short(value)}, not an integer", fix)
        try:
            a = np.asarray(value)
        except (TypeError, ValueError):
            self.fail(f"{key} is not an integer ({type(value).__name__})", fix)
        if a.dtype.kind not in "iuf" or a.ndim > 1 or a.size not in (1, n):
            self.fail(f"{key} is {short(value)} (dtype {a.dtype}, shape {a.shape})", fix)
        f = a.astype(np.float64).reshape(-1)
        if not np.all(np.isfinite(f)) or not np.all(f == np.round(f)):
            self.fail(f"{key} is {short(value)}, not whole numbers", fix)
        out = tuple(int(v) for v in (np.repeat(f, n) if f.size == 1 else f))
        if low is not None and min(out) < low:
            self.fail(f"{key} is {out if n > 1 else out[0]}; it must be >= {low}", fix)
        return out

    def broadcast(self, shape: Shape, arrays: dict[str, np.ndarray], grow: bool = True) -> Shape:
        """The shape of a value of ``shape`` combined element-wise with ``arrays`` (numpy
        broadcasting; an array may not have more dimensions than the value, and with
        ``grow=False`` may not enlarge it)."""
        out = shape
        for key, a in arrays.items():
            try:
                if a.ndim > len(shape):
                    raise ValueError
                new = np.broadcast_shapes(out, a.shape)
                if not grow and new != out:
                    raise ValueError
            except ValueError:
                self.fail(f"{key} has shape {a.shape}, which does not fit its input of shape "
                          f"{shape}", f"give {key} one value per element of the input ({shape}) "
                          "or a single value")
            out = tuple(int(d) for d in new)
        return out


def check_arrays(c: NodeCheck) -> None:
    for key, required, rule in ARRAYS.get(c.kind, ()):
        c.array(key, required, rule)


# --------------------------------------------------------------------------- shapes


def pair(v) -> tuple[int, int]:
    """A NIR int-or-pair parameter (kernel, stride, padding, dilation) as (h, w)."""
    v = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(v[0]), int(v[-1])) if v.size <= 2 else (int(v[0]), int(v[1]))


def same_padding(kernel, dilation) -> list[tuple[int, int]]:
    """torch's "same" padding of a stride-1 convolution: (before, after) per spatial
    dimension, d (k - 1) in total, the odd extra element after (right / bottom)."""
    tot = [int(d) * (int(k) - 1) for k, d in zip(kernel, dilation)]
    return [(t // 2, t - t // 2) for t in tot]


def conv_padding(padding, kernel, dilation) -> list[tuple[int, int]]:
    """(before, after) per spatial dimension of a convolution's or pool's zero padding:
    an int per dimension (both sides), "valid" (none) or "same" (:func:`same_padding`)."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * len(kernel)
        if padding == "same":
            return same_padding(kernel, dilation)
        raise GraphError(f"unknown padding {padding!r}", "use integers, 'same' or 'valid'")
    return [(int(p), int(p)) for p in padding]


def delay_steps(node: nir.Delay, dt: float) -> int:
    """The shift of a Delay node in steps, round(delay / dt). One non-negative value per
    node: every target keeps a single buffer of that many steps."""
    d = np.round(np.asarray(node.delay, dtype=np.float64) / dt)
    if np.any(d < 0) or not np.all(d == d.flat[0]):
        raise GraphError("Delay with negative or per-neuron different delays is not supported",
                         "use one non-negative delay per Delay node")
    return int(d.flat[0])


# --------------------------------------------------------------------------- run time


def check_input(x, shape: Shape, step_bytes: int = 0, sample_bytes: int = 0,
                first: int | None = None) -> np.ndarray:
    """``x`` as a float64 array (T, B, *shape), refused unless it holds finite numbers, at
    least one step and one sample, and one step of one sample has the graph input's
    ``shape``; and unless the run fits the memory budget: the recording of ``step_bytes``
    per step and sample (counted twice: the steps, then their stack), ``sample_bytes`` per
    sample (state kept from step to step, and what one step allocates and frees) and the
    float64 input. ``first``: x is a block of a larger input that starts at that sample
    (the messages count samples from there and do not count the whole input's bad values)."""
    shape = tuple(int(s) for s in shape)
    want = f"(T, B, {', '.join(map(str, shape))})"
    fix = "pass x with a time axis, a batch axis, then one step's input shape"
    if isinstance(x, (str, bytes)):
        raise GraphError(f"the input is text, the graph expects numbers {want}", fix)
    try:
        a = np.asarray(x)
    except (TypeError, ValueError):
        raise GraphError(f"the input is not a rectangular array; the graph expects {want}", fix) from None
    if a.dtype.kind not in "biuf":
        raise GraphError(f"the input holds {_KINDS.get(a.dtype.kind, a.dtype)}, not numbers",
                         "pass a numeric array (spikes or values)")
    if a.ndim != 2 + len(shape) or tuple(a.shape[2:]) != shape:
        raise GraphError(f"input has shape {a.shape}, the graph expects {want}", fix)
    T, B = a.shape[:2]
    if T < 1 or B < 1:
        raise GraphError(f"the input has {T} time steps and {B} samples", "pass at least one "
                         "step and one sample")
    need = 2 * T * B * int(step_bytes) + B * int(sample_bytes) + budget.nbytes(a.shape)
    budget.check_bytes(need, f"running {T} steps x {B} samples", "run fewer samples at a time "
                       "(--samples) or fewer steps", GraphError)
    f = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(f)
    if bad.any():
        idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), f.shape))
        where = (idx[0], idx[1] + (first or 0), *idx[2:])
        raise GraphError(f"the input holds {f[idx]} at index {where}"
                         + ("" if first is not None else f" ({int(bad.sum())} values are not finite)"),
                         "pass finite input values")
    return f


def check_values(values: dict, kinds: dict[str, str] | None = None, spiking=()) -> None:
    """Refuse a recording in which some node's value overflowed float64 (inf or NaN): the
    graph's magnitudes are beyond what the simulation represents. ``values``: node ->
    (T, B, ...) numpy array; ``kinds``: node -> NIR type, for the message; ``spiking``:
    nodes whose values are 0 / 1 by construction, not looked at."""
    skip = set(spiking)
    for name, v in values.items():
        if name not in skip and v.dtype.kind == "f" and not np.isfinite(v).all():
            t = int(np.argmax(~np.isfinite(v).reshape(v.shape[0], -1).all(axis=1)))
            kind = f" ({kinds[name]})" if kinds and name in kinds else ""
            raise GraphError(f"node {name!r}{kind} overflowed float64 at step {t}: its value is "
                             "not finite", "scale the graph's weights or inputs down (their "
                             "magnitudes are beyond float64 in this simulation)")
