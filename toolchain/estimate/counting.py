"""Streaming per-layer and total activity metrics of one target (ENERGY.md sections 1 and 2).

:class:`MetricsAccumulator` consumes one :class:`~spikeport.core.recording.Recording` per batch
together with the batch input x (T, B, *input_shape) and optional exit steps, and keeps only
per-layer per-step sums (arrays of length T) and per-sample scalars; no spike train outlives
``update``. ``summary()`` returns a JSON-serialisable dict.

What is counted (t*_b = exit step of sample b, 1-based; every count uses only t <= t*_b):

- **Spiking layers** are the program's spiking nodes (LIF, CubaLIF, IF, Threshold). Their
  values must be recorded by the target (every target records its neuron populations).
  ``spikes_per_step[t]`` is the sum over neurons, averaged over *all* samples (a sample that
  exited before t contributes 0); ``firing_rate`` = mean over samples of sum S / (N t*_b).
- **Hidden layers** are all spiking layers except those whose output reaches the graph output
  through pass-through nodes only (Output / Input / Flatten / Delay):
  :func:`~spikeport.core.recording.hidden_populations`, as in training. Usage U_b = fraction of
  hidden neurons with >= 1 spike up to t*_b; histogram over 10 equal bins of [0, 1] (the last
  bin includes 1).
- **Activation sparsity** = 1 - sum nnz / sum numel over (layer, step <= t*, sample, neuron),
  all spiking layers (NeuroBench's definition, output layer included) and hidden layers only.
- **Synaptic operations** of every connection node (Affine, Linear, Conv1d, Conv2d; a
  recurrent weight is an ordinary connection node fed by a recurrent edge). A connection's
  input is the sum of its sources' values (a recurrent edge delivers the previous step's
  value). A source that the target did not record (the Loihi targets record only neuron
  populations) is *recomputed* from its own sources when it is a stateless pass-through node
  (Input, Output, Flatten, SumPool2d, AvgPool2d, Scale), with the kernels of
  :mod:`spikeport.exporters.reference`; anything else unrecorded is an error. Effective ops per step =
  sum of the output of the connection run with binarised weights (w != 0 -> 1) and zero bias on
  the binarised input (x != 0 -> 1) -- NeuroBench's definition, exact for convolutions with
  padding and stride. Bias is not an op. Computed without running the connection: the sum
  is nz(x) . f with the per-input fan-out vector f of :class:`_Counter` (dense: popcounts of
  the bit-packed input map, convolutions: one matrix-vector product per batch; tests compare
  it with the binarised connection run by the reference kernels).
  *AC vs MAC from the graph*: AC iff the connection has exactly one incoming edge and that
  source is, through Input/Output/Flatten/Delay pass-throughs, a spiking node or the graph
  input with ``input_binary=True``; otherwise MAC (analog input, pooled / scaled currents,
  several summed sources such as residual sums).
  *NeuroBench's value-based split* is evaluated per (step, sample): AC iff every input element
  is in {-1, 0, 1} (NeuroBench decides per layer call, i.e. per batch; identical whenever the
  inputs are spikes).
  Recurrent connections are counted at the step at which their input spike is emitted.
- **Dense baselines**: ``dense_snn`` = ops of the connection run with all-ones weights on an
  all-ones input, at every step up to t* (NeuroBench's ``Dense``; padding positions excluded);
  ``ann_macs`` = fan_in * N_out of one dense pass (conv: C_in/groups * kh * kw per output
  element, padding included) and ``ann_flops`` = (2 fan_in + 1) N_out.
  ``effective_per_synapse`` = effective ops per sample / number of non-zero weights.
- **Neuron updates** of every neuron population (spiking nodes and LI / CubaLI / I nodes):
  ``dense`` = N t*; ``active_events`` = (neuron, step) pairs at which the neuron received at
  least one synaptic event (a non-zero input meeting a non-zero weight of a connection feeding
  it, propagated through pools / flatten) or spiked -- computable on every target, but blind to
  bias currents and to a non-zero membrane without input, so a lower bound of the contract's
  "non-zero input or non-zero state"; ``active_input`` = pairs with non-zero input current
  (sum of the population's sources, bias included), only when the target recorded (or the
  pass-throughs allow recomputing) those sources -- float targets -- else ``None``;
  ``active_state`` = the contract's definition, (neuron, step) pairs with non-zero input or
  non-zero state before the update, counted from the target's own ``Recording.active``
  (loihi-emu records it on request), else ``None``.

A :class:`~spikeport.core.recording.Recording` with a per-node ``delay`` is read on the model's time
axis (``aligned``), zero-padded at the end to T steps.
"""
from __future__ import annotations

import itertools
import math
import warnings

import nir
import numpy as np
import torch
import torch.nn.functional as F

from spikeport.ir.program import SPIKING, Program, pair, torch_conv_args
from spikeport.exporters.reference import KERNELS
from spikeport.core.errors import GraphError
from spikeport.core.recording import Recording, hidden_populations
from spikeport.estimate.memory import ConnectionLoad, PopulationLoad, memory_traffic

CONNECTIONS = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
POPULATIONS = SPIKING + (nir.LI, nir.CubaLI, nir.I)
PASS_BINARY = (nir.Input, nir.Output, nir.Flatten, nir.Delay)   # keep a spike a spike
RECOMPUTABLE = (nir.Input, nir.Output, nir.Flatten, nir.SumPool2d, nir.AvgPool2d, nir.Scale)
HIST_BINS = 10

class _NotAvailable(Exception):
    """A node's value is neither recorded nor recomputable from recorded values."""


# Counting runs in float32: a count of (non-zero input, non-zero weight) pairs per output
# element is an integer no larger than the fan-in, exact in float32 below 2**24.
_EXACT_F32 = 2 ** 24
# a dense connection counts its events by popcounts, one per bit of the spread of its
# fan-outs, when that spread has at most this many bits (else by a float32 product)
_MAX_FANOUT_BITS = 4


def _shift(v: np.ndarray) -> np.ndarray:
    """The previous step's value (zero at the first step): what a recurrent edge delivers."""
    return np.concatenate([np.zeros_like(v[:1]), v[:-1]])


def _fold(kernel, v: np.ndarray) -> np.ndarray:
    """A stateless reference kernel applied to (T, B, ...) by folding time into the batch."""
    T, B = v.shape[:2]
    out, _ = kernel.step(v.reshape(T * B, *v.shape[2:]), None)
    return out.reshape(T, B, *out.shape[1:])


def _apply(kernel, v: np.ndarray) -> np.ndarray:
    """``_fold`` in float64, the reference kernels' arithmetic."""
    return _fold(kernel, np.asarray(v, dtype=np.float64))


def _stats(a: np.ndarray) -> dict:
    if a.size == 0:
        return {"mean": None, "std": None, "median": None, "min": None, "max": None}
    srt, m = np.sort(a), a.size // 2
    median = srt[m] if a.size % 2 else (srt[m - 1] + srt[m]) / 2  # as np.median computes it
    return {"mean": float(a.mean()), "std": float(a.std()), "median": float(median),
            "min": float(srt[0]), "max": float(srt[-1])}


def _run(node, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A connection node with weights ``w`` and no bias on x (batch, *in), float32."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return x @ w.T
    conv = F.conv1d if isinstance(node, nir.Conv1d) else F.conv2d
    with warnings.catch_warnings():  # torch notes that asymmetric "same" padding copies the input
        warnings.filterwarnings("ignore", message="Using padding='same'")
        return conv(x, w, None, **torch_conv_args(node))


def _mm_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b


def _mm_torch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(np.ascontiguousarray(b))).numpy()


# Matrix products run in the library the target computes with: a second BLAS thread pool
# left spinning between the target's steps competes for the same cores (measured on 2 cores:
# snntorch inference 2-3x slower when interleaved with numpy products, the numpy reference
# 2x slower when interleaved with torch products).
MATMUL = {"numpy": _mm_numpy, "torch": _mm_torch}


def _pack(nz: np.ndarray) -> np.ndarray:
    """Bool rows (R, n) -> uint64 words (R, ceil(n / 64)): each row's bits packed, zero-padded."""
    packed = np.packbits(nz, axis=-1)
    if packed.shape[-1] % 8:
        wide = np.zeros((*packed.shape[:-1], -(-packed.shape[-1] // 8) * 8), np.uint8)
        wide[..., :packed.shape[-1]] = packed
        packed = wide
    return packed.view(np.uint64)


class _Rows:
    """A 0/1 matrix (R, n) -- R = steps x samples -- of where a node's value is non-zero, kept
    as a bool map ``nz`` and as bits (each row packed into 64-bit words): per-row counts of
    set elements, optionally restricted to a set of columns, are popcounts over a sixteenth
    of the bool map's bytes, and one popcount of the words OR-reduced over time tells which
    columns were ever set. A float32 copy is made only for the products that need one."""

    def __init__(self, nz: np.ndarray, rows: int, mm):
        self.nz = nz.reshape(rows, -1)
        self.n = self.nz.shape[1]
        self.mm = mm
        self.words = _pack(self.nz)
        self._f32: np.ndarray | None = None
        self._count: np.ndarray | None = None

    def count(self, mask: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """Set elements per row (only the columns in ``mask``; only ``rows``), float64."""
        whole = mask is None and rows is None
        if whole and self._count is not None:
            return self._count
        w = self.words if rows is None else self.words[rows]
        out = self._sum(np.bitwise_count(w if mask is None else w & mask))  # each word: <= 64
        if whole:
            self._count = out
        return out

    def ever(self, T: int) -> np.ndarray:
        """Per row of one step (the samples) the number of columns set at any step, float64."""
        w = np.bitwise_or.reduce(self.words.reshape(T, -1, self.words.shape[1]), axis=0)
        return self._sum(np.bitwise_count(w))

    def _sum(self, c: np.ndarray) -> np.ndarray:
        """Row sums of per-word popcounts, float64 (exact: float32 while n < 2**24)."""
        if c.shape[1] == 1:
            return c[:, 0].astype(np.float64)
        dt = np.float32 if self.n < _EXACT_F32 else np.float64
        return self.mm(c.astype(dt), np.ones(c.shape[1], dt)).astype(np.float64, copy=False)

    def f32(self) -> np.ndarray:
        """The matrix as float32 0/1, for matrix products."""
        if self._f32 is None:
            self._f32 = self.nz.astype(np.float32)
        return self._f32


def _count_rows(a: np.ndarray, mm) -> np.ndarray:
    """Non-zero elements per (step, sample) of a (T, B, ...) array, float64 (T, B)."""
    T, B = a.shape[:2]
    return _Rows(a if a.dtype == bool else a != 0, T * B, mm).count().reshape(T, B)


def _tup(v) -> tuple:
    return tuple(v) if isinstance(v, tuple) else (int(v),)


class _Counter:
    """Synaptic events of one connection node: (non-zero input, non-zero weight) pairs.

    Counting never needs the weighted sums. The number of events a sample emits through the
    connection at one step is nz(x) . f, where the fan-out vector f (one entry per input
    element) counts the non-zero weights each input element meets across all outputs,
    padding and stride included; f = d/dx sum(conv_b(x)) with binarised weights, taken once
    by automatic differentiation (dense: the column counts). Dense connections need no
    product: with f = lowest + sum_k 2^k b_k over the bits b_k of the spread of the fan-outs,
    nz(x) . f = lowest * |nz(x)| + sum_k 2^k popcount(nz(x) & b_k) on the bit-packed input
    (:class:`_Rows`) -- no popcount at all without zero weights. Which outputs receive at
    least one event (neuron updates) mostly needs no product either. Dense: an output misses a
    step only if all of the step's non-zero inputs meet its zero weights, impossible when they
    outnumber the zeros of every row or when one of them meets no zero weight at all; only the
    remaining steps are multiplied. Convolution whose
    kernels have no zero: an output receives iff any input in its receptive field (within its
    group) is non-zero -- a window-any of one channel per group; with zero weights the
    binarised convolution is run. Integer popcounts, or float32 arithmetic on 0/1 values,
    exact while the counts stay below 2**24 (checked)."""

    def __init__(self, node, in_shape: tuple, mm=_mm_numpy):
        self.node = node
        self.mm = mm
        w = np.asarray(node.weight)
        self.conv = isinstance(node, (nir.Conv1d, nir.Conv2d))
        self.in_shape = tuple(in_shape)
        fan_in = math.prod(w.shape[1:])
        if fan_in >= _EXACT_F32:
            raise GraphError(f"connection fan-in {fan_in} is too large to count exactly in float32",
                             "split the layer")
        rows = (w != 0).reshape(w.shape[0], -1)  # per output, which weights are non-zero
        self.wT = np.ascontiguousarray(rows.T, dtype=np.float32)
        zeros = fan_in - self.wT.sum(0)
        self.full_rows = zeros == 0  # outputs whose weights are all non-zero
        self.max_zeros = int(zeros.max())  # most zeros in one output row
        if self.conv:
            self.w = torch.from_numpy(self.wT.T.reshape(w.shape))  # the binarised kernel
            x = torch.zeros((1, *in_shape), requires_grad=True)
            _run(node, self.w, x).sum().backward()
            self.fanout = x.grad.reshape(-1).numpy().astype(np.float64)
        else:  # dense: input i meets the non-zero weights of its column
            self.fanout = np.broadcast_to(self.wT.sum(1, dtype=np.float64), in_shape).reshape(-1)
        self.fanout32 = self.fanout.astype(np.float32)
        self.exact32 = float(self.fanout.sum()) < _EXACT_F32
        self.fan_masks = None
        if self.conv:
            self.groups = int(node.groups)
            self.kernel = tuple(int(k) for k in w.shape[2:])
            self.args = torch_conv_args(node)
        else:
            # dense: fan-out = lowest + sum_k 2^k bit_k, so the events are lowest * non-zero
            # inputs + sum_k 2^k * popcount(input & bit_k): one popcount per bit of the spread
            # of the fan-outs (none for a dense layer without zero weights)
            lo = int(self.fanout.min()) if self.fanout.size else 0
            spread = self.fanout.astype(np.int64) - lo
            bits = int(spread.max()).bit_length() if spread.size else 0
            if bits <= _MAX_FANOUT_BITS:
                self.base = float(lo)
                self.fan_masks = [(float(1 << k), _pack((spread >> k) & 1 == 1)) for k in range(bits)]
            # an input whose column has no zero weight reaches every output
            self.full_cols = _pack(rows.all(0))

    def ops(self, op: _Rows, nonzero: np.ndarray) -> np.ndarray:
        """Events per row of the 0/1 input ``op`` (T*B rows) whose rows hold ``nonzero`` set
        elements; float64 (T*B,). Exact: integer popcounts, float64 products, or float32
        products while the fan-out sum stays below 2**24."""
        if self.fan_masks is not None:
            out = nonzero * self.base
            for d, m in self.fan_masks:
                out = out + d * op.count(m)
            return out
        if self.exact32:
            return self.mm(op.f32(), self.fanout32).astype(np.float64)
        return self.mm(op.nz.astype(np.float64), self.fanout)

    def _suspects(self, nonzero: np.ndarray, op: _Rows) -> tuple[np.ndarray, np.ndarray]:
        """Dense connections: the rows (steps of one sample) whose non-zero inputs might all
        meet zero weights of some output -- no more of them than the most zeros of an output,
        none in a column without zeros -- and for them the outputs that do receive."""
        suspect = np.flatnonzero((nonzero > 0) & (nonzero <= self.max_zeros))
        if suspect.size:
            suspect = suspect[op.count(self.full_cols, suspect) == 0]
        if not suspect.size:
            return suspect, np.zeros((0, self.wT.shape[1]), bool)
        return suspect, self.mm(op.nz[suspect].astype(np.float32), self.wT) > 0

    def active_rows(self, nonzero: np.ndarray, op: _Rows, other: _Rows | None,
                    other_rows: np.ndarray | None) -> np.ndarray:
        """Dense connections: per row of the input, the outputs that receive at least one
        event or are set in ``other`` (the population's own spikes), without building the
        map: every output when the row has a non-zero input that cannot miss (see
        ``_suspects``), the ``other`` count (``other_rows``) when it has none, and an exact
        product for the suspect rows; float64 (T*B,)."""
        n_out = len(self.full_rows)
        base = np.zeros(len(nonzero)) if other_rows is None else other_rows
        out = np.where(nonzero > 0, float(n_out), base)
        suspect, got = self._suspects(nonzero, op)
        if suspect.size:
            if other is not None:
                got |= other.nz[suspect]
            out[suspect] = got.sum(-1)
        return out

    def receives(self, nz: np.ndarray, op: _Rows, nonzero: np.ndarray) -> np.ndarray:
        """Outputs that receive at least one event, bool (T, B, *out), from the input map nz
        (T, B, *in), the same as rows (T*B, n_in) and its non-zero count per row."""
        T, B = nz.shape[:2]
        if self.conv and not self.full_rows.all():
            t = torch.from_numpy(nz.reshape(T * B, *self.in_shape).astype(np.float32))
            with torch.no_grad():
                y = _run(self.node, self.w, t).numpy() > 0
            return y.reshape(T, B, *y.shape[1:])
        if self.conv:
            C, g = self.in_shape[0], self.groups
            x = nz.reshape(T * B, g, C // g, *self.in_shape[1:]).any(2)
            a = self.args
            y = _window_max(x, self.kernel, _tup(a["stride"]), a["padding"] if isinstance(a["padding"], str)
                            else _tup(a["padding"]), _tup(a["dilation"]))
            y = np.repeat(y, self.w.shape[0] // g, axis=1)  # (TB, O, *out): channels by group
            return y.reshape(T, B, *y.shape[1:])
        # Dense: an output j misses a step only if every non-zero input meets a zero weight of
        # row j, impossible when the step has more non-zero inputs than row j has zeros.
        n = self.in_shape[-1]
        if op.n != n:  # an Affine over the last of several axes: a row per leading index
            op = _Rows(op.nz, op.nz.size // n, self.mm)
            nonzero = op.count()
        out = np.repeat((nonzero > 0)[:, None], len(self.full_rows), axis=1)
        suspect, got = self._suspects(nonzero, op)
        if suspect.size:
            out[suspect] = got
        return out.reshape(T, B, *self.in_shape[:-1], -1)


def _window_max(x: np.ndarray, kernel: tuple, stride: tuple, padding, dilation: tuple) -> np.ndarray:
    """Per output position of a convolution / pool window: does the window hold a True?

    x: bool (N, C, *spatial). ``padding`` is an int per spatial dimension or "same" / "valid"
    (torch's convention: the odd extra element of "same" goes last). Zero padding adds no
    True, so this is an OR over the kernel offsets of strided slices of the padded input."""
    nd = x.ndim - 2
    if isinstance(padding, str):
        tot = [0] * nd if padding == "valid" else [d * (k - 1) for k, d in zip(kernel, dilation)]
        pads = [(t // 2, t - t // 2) for t in tot]
    else:
        pads = [(int(p), int(p)) for p in padding]
    if any(lo or hi for lo, hi in pads):
        x = np.pad(x, [(0, 0), (0, 0), *pads])
    size = [(n - d * (k - 1) - 1) // st + 1
            for n, k, st, d in zip(x.shape[2:], kernel, stride, dilation)]
    out = None
    for offs in itertools.product(*(range(k) for k in kernel)):
        view = x[(slice(None), slice(None)) + tuple(
            slice(o * d, o * d + st * (m - 1) + 1, st) for o, d, st, m in zip(offs, dilation, stride, size))]
        if out is None:
            out = view.copy()
        else:
            np.logical_or(out, view, out=out)
    return out


def _window_any(node, e: np.ndarray) -> np.ndarray:
    """Pool windows that contain at least one True element of ``e`` (T, B, C, H, W)."""
    T, B = e.shape[:2]
    y = _window_max(e.reshape(T * B, *e.shape[2:]), pair(node.kernel_size), pair(node.stride),
                    pair(node.padding), (1, 1))
    return y.reshape(T, B, *y.shape[1:])


def _ones_only(v: np.ndarray, nz: np.ndarray) -> bool:
    """Is every non-zero element of v exactly 1? (nz = v != 0)"""
    return v.dtype == bool or np.count_nonzero(v == 1) == np.count_nonzero(nz)


def _spiky(inp: np.ndarray, nz: np.ndarray) -> np.ndarray:
    """NeuroBench's value split per (step, sample): True iff every input element is in
    {-1, 0, 1}. One pass over the whole batch first; per row only if it finds a graded value."""
    T, B = inp.shape[:2]
    if _ones_only(inp, nz):
        return np.ones((T, B), bool)
    bad = (np.abs(inp) != 1) & nz
    if not bad.any():
        return np.ones((T, B), bool)
    return ~bad.reshape(T, B, -1).any(-1)


class _Batch:
    """Values, synaptic counts and event maps of one batch, computed on demand and memoised."""

    def __init__(self, acc: "MetricsAccumulator", rec: Recording, x: np.ndarray):
        self.acc, self.rec, self.x = acc, rec, x
        self.T = x.shape[0]
        self._values: dict[str, np.ndarray] = {}
        self._events: dict[str, np.ndarray] = {}
        self._conn: dict[str, tuple] = {}
        self._conn_nz: dict[str, np.ndarray] = {}
        self._nz: dict[str, np.ndarray] = {}
        self._ones: dict[str, bool] = {}
        self._op: dict[str, _Rows] = {}

    def operand(self, name: str) -> _Rows:
        """events(name) as rows (T*B, n): the input of the counting products and popcounts."""
        if name not in self._op:
            self._op[name] = _Rows(self.events(name), self.T * self.x.shape[1], self.acc.mm)
        return self._op[name]

    def rows(self, name: str) -> np.ndarray:
        """Non-zero elements of events(name) per (step, sample), float64 (T, B)."""
        return self.operand(name).count().reshape(self.T, -1)

    def ones_only(self, name: str) -> bool:
        """Is every non-zero value the node emits exactly 1 (binary spikes)? Taken on trust
        for the spiking nodes of a target that declares binary spikes, and for the graph
        input when the accumulator was told that the input is binary."""
        if name not in self._ones:
            if (self.acc.binary_spikes and name in self.acc.spiking) or (
                    self.acc.input_binary and name == self.acc.input_node):
                self._ones[name] = True
            else:
                self._ones[name] = _ones_only(self.value(name), self.events(name))
        return self._ones[name]

    def aligned(self, arrays: dict, name: str) -> np.ndarray:
        """A recorded (T', B, ...) array on the model's time axis: T steps from the node's
        delay on, zero-padded at the end (a delayed target)."""
        v = np.asarray(self.rec.aligned(name, arrays))
        if v.shape[0] < self.T:
            v = np.concatenate([v, np.zeros((self.T - v.shape[0], *v.shape[1:]), v.dtype)])
        return v[:self.T]

    def recorded(self, name: str) -> np.ndarray:
        return self.aligned(self.rec.values, name)

    def nonzero_of(self, name: str) -> np.ndarray:
        """Where the node's value is non-zero, bool (T, B, ...): as the target recorded it
        (``Recording.nonzero``) or from the value."""
        if name not in self._nz:
            if name in self.rec.nonzero:
                self._nz[name] = self.aligned(self.rec.nonzero, name)
            else:
                self._nz[name] = self.value(name) != 0
        return self._nz[name]

    def input_nonzero(self, name: str) -> np.ndarray:
        """Where the node's input (``node_input``) is non-zero, bool (T, B, ...)."""
        srcs = self.acc.program.inputs[name]
        if len(srcs) == 1:
            s, r = srcs[0]
            return _shift(self.nonzero_of(s)) if r else self.nonzero_of(s)
        return self.node_input(name) != 0

    def value(self, name: str) -> np.ndarray:
        if name in self._values:
            return self._values[name]
        p = self.acc.program
        node = p.nodes[name]
        if name == self.acc.input_node:
            v = self.x
        elif name in self.rec.values:
            v = self.recorded(name)
        elif isinstance(node, RECOMPUTABLE):
            v = _apply(self.acc.kernel(name), self.node_input(name))
        else:
            raise _NotAvailable(name)
        self._values[name] = v
        return v

    def node_input(self, name: str) -> np.ndarray:
        """Sum of the node's incoming edges (recurrent edges: previous step)."""
        terms = [_shift(self.value(s)) if r else self.value(s)
                 for s, r in self.acc.program.inputs[name]]
        if not terms:
            raise _NotAvailable(name)
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    def conn(self, name: str) -> tuple:
        """(input, counter, op, nonzero): the connection's input (T, B, ...), its event
        counter, where the input is non-zero as :class:`_Rows` (T*B, n) and the non-zero
        elements per row (T*B,)."""
        if name not in self._conn:
            try:
                inp = self.node_input(name)
            except _NotAvailable as e:
                raise GraphError(
                    f"the input of connection {name!r} cannot be reconstructed: node {e.args[0]!r} "
                    "is not recorded by this target and is not a stateless pass-through",
                    "record that node, or estimate on a target that records every node") from None
            counter = self.acc.counter(name, inp.shape[2:])
            src = self.direct_source(name)
            if src is not None:  # the source's own operand and counts, shared with its metrics
                op, nonzero = self.operand(src), self.rows(src).reshape(-1)
            else:
                self._conn_nz[name] = nz = self.input_nonzero(name)
                op = _Rows(nz, self.T * self.x.shape[1], self.acc.mm)
                nonzero = op.count()
            self._conn[name] = (inp, counter, op, nonzero)
        return self._conn[name]

    def direct_source(self, name: str) -> str | None:
        """The graph input or spiking node whose values the connection receives unchanged --
        its only source, directly or through Input / Output / Flatten nodes of one
        non-recurrent source each -- else None. Its event map, flattened per (step, sample),
        is the connection's."""
        p = self.acc.program
        srcs = p.inputs[name]
        while len(srcs) == 1 and not srcs[0][1]:
            s0 = srcs[0][0]
            if s0 == self.acc.input_node or s0 in self.acc.spiking:
                return s0
            if not isinstance(p.nodes[s0], (nir.Input, nir.Output, nir.Flatten)):
                return None
            srcs = p.inputs[s0]
        return None

    def conn_nz(self, name: str) -> np.ndarray:
        """Where the connection's input is non-zero, bool (T, B, ...)."""
        if name not in self._conn_nz:
            inp = self.conn(name)[0]
            self._conn_nz[name] = self.events(self.direct_source(name)).reshape(inp.shape)
        return self._conn_nz[name]

    def events(self, name: str) -> np.ndarray:
        """Where a node emits at least one synaptic event, bool (T, B, ...)."""
        if name in self._events:
            return self._events[name]
        node = self.acc.program.nodes[name]
        if name == self.acc.input_node:
            e = self.nonzero_of(name)
        elif isinstance(node, CONNECTIONS):
            _, counter, op, nonzero = self.conn(name)
            e = counter.receives(self.conn_nz(name), op, nonzero)
        elif isinstance(node, SPIKING):
            e = self.nonzero_of(name)
        elif isinstance(node, (nir.Input, nir.Output)):
            e = self.events_into(name)
        elif isinstance(node, nir.Flatten):
            e = _fold(self.acc.kernel(name), self.events_into(name))
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            e = _window_any(node, self.events_into(name))
        elif isinstance(node, nir.Scale):
            e = self.events_into(name) & (np.asarray(node.scale) != 0)
        else:
            e = self.nonzero_of(name)
        self._events[name] = e
        return e

    def events_into(self, name: str) -> np.ndarray:
        terms = [_shift(self.events(s)) if r else self.events(s)
                 for s, r in self.acc.program.inputs[name]]
        out = terms[0]
        for t in terms[1:]:
            out = out | t
        return out


class MetricsAccumulator:
    """Accumulates activity metrics of one target over batches; see the module docstring."""

    def __init__(self, program: Program, input_binary: bool, matmul: str = "numpy",
                 binary_spikes: bool = False):
        """``input_binary``: every x given to ``update`` holds only 0 and 1 (the estimator
        checks all its inputs once); taken on trust by the AC/MAC split, graph-based and
        value-based alike.
        ``matmul``: the library of the target's thread pool (see MATMUL).
        ``binary_spikes``: the target guarantees that its spiking nodes emit exactly 0 or 1
        (``Target.binary_spikes``, tested per built-in target), which spares one pass over
        every spike array; otherwise that is checked on every batch."""
        if matmul not in MATMUL:
            raise ValueError(f"matmul must be one of {sorted(MATMUL)}, got {matmul!r}")
        self.mm = MATMUL[matmul]
        self.binary_spikes = bool(binary_spikes)
        self.program = program
        self.input_binary = bool(input_binary)
        self.input_node = program.graph_inputs[0]
        nodes = program.nodes
        self.spiking = program.spiking_nodes()
        self.output_layers = self._output_layers()
        self.hidden = hidden_populations(self.spiking, self.output_layers)
        self.connections = [n for n in program.order if isinstance(nodes[n], CONNECTIONS)]
        self.populations = [n for n in program.order if isinstance(nodes[n], POPULATIONS)]
        self.kind = {c: ("AC" if self._binary_message(c) else "MAC") for c in self.connections}
        self._kernels: dict[str, object] = {}
        self._counters: dict[str, _Counter] = {}
        self.T: int | None = None
        self.n = 0

    # ---- graph analysis -------------------------------------------------------------------
    def _output_layers(self) -> list[str]:
        out, seen, stack = [], set(), [self.program.output]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            node = self.program.nodes[n]
            if isinstance(node, SPIKING):
                out.append(n)
            elif isinstance(node, PASS_BINARY):
                stack.extend(s for s, _ in self.program.inputs[n])
        return out

    def _binary_message(self, conn: str) -> bool:
        """True iff the connection's input is one binary spike stream (decided from the graph)."""
        srcs = self.program.inputs[conn]
        seen = set()
        while len(srcs) == 1:
            s = srcs[0][0]
            if s in seen:
                return False
            seen.add(s)
            if s == self.input_node:
                return self.input_binary
            node = self.program.nodes[s]
            if isinstance(node, SPIKING):
                return True
            if not isinstance(node, PASS_BINARY):
                return False
            srcs = self.program.inputs[s]
        return False

    def kernel(self, name: str):
        if name not in self._kernels:
            node = self.program.nodes[name]
            self._kernels[name] = KERNELS.get(type(node).__name__)(node, self.program.dt)
        return self._kernels[name]

    def counter(self, name: str, in_shape: tuple) -> _Counter:
        if name not in self._counters:
            self._counters[name] = _Counter(self.program.nodes[name], in_shape, self.mm)
        return self._counters[name]

    def _conn_static(self, name: str, in_shape: tuple) -> dict:
        node = self.program.nodes[name]
        w = np.asarray(node.weight)
        fan_in = int(np.prod(w.shape[1:]))  # Linear: in features; conv: C_in/groups * k...
        if isinstance(node, (nir.Conv1d, nir.Conv2d)):  # padding positions are no operations
            with torch.no_grad():
                out = _run(node, torch.ones(w.shape), torch.ones((1, *in_shape))).numpy()
            n_out, dense = int(out.size), float(out.sum(dtype=np.float64))
        else:
            n_out = int(np.prod(in_shape[:-1], dtype=np.int64)) * w.shape[0]
            dense = float(n_out * fan_in)
        return {"fan_in": fan_in, "inputs": int(np.prod(in_shape, dtype=np.int64)),
                "outputs": n_out, "weights": int(w.size),
                "nonzero_weights": int(np.count_nonzero(w)), "dense_per_step": dense,
                "ann_macs": fan_in * n_out, "ann_flops": (2 * fan_in + 1) * n_out}

    # ---- accumulation ---------------------------------------------------------------------
    def _init(self, T: int):
        self.T = T
        z = lambda: np.zeros(T)  # noqa: E731
        self.exit_steps: list[np.ndarray] = []
        self.input_step = z()
        self.layer = {n: {"N": None, "step": z(), "totals": [], "used": [], "nnz": 0.0,
                          "numel": 0.0, "rate_sum": 0.0} for n in self.spiking}
        self.usage: list[np.ndarray] = []
        self.conn = {c: {"static": None, "step": z(), "eff": 0.0, "nb_ac": 0.0, "nb_mac": 0.0,
                         "dense": 0.0, "in_nonzero": 0.0} for c in self.connections}
        self.upd = {p: {"N": None, "dense": 0.0, "events": 0.0, "input": 0.0,
                        "input_known": True, "state": 0.0, "state_known": True}
                    for p in self.populations}

    def update(self, rec: Recording, x: np.ndarray, exit_steps: np.ndarray | None = None) -> None:
        x = np.asarray(x)
        if x.ndim < 3:
            raise ValueError(f"x must be (T, B, *input_shape), got shape {x.shape}")
        T, B = x.shape[:2]
        if self.T is None:
            self._init(T)
        elif T != self.T:
            raise ValueError(f"batch has T={T}, earlier batches had T={self.T}")
        if exit_steps is None:
            ts, full = np.full(B, T, dtype=np.int64), True
        else:
            ts = np.asarray(exit_steps).astype(np.int64).reshape(-1)
            if ts.shape != (B,) or ts.min() < 1 or ts.max() > T:
                raise ValueError(f"exit_steps must be {B} integers in 1..{T}")
            full = bool(ts.min() == T)
        mask = (np.arange(T)[:, None] < ts[None, :]).astype(np.float64)  # (T, B)
        ctx = _Batch(self, rec, x)
        self.exit_steps.append(ts)

        def count_total(a: np.ndarray) -> float:
            """Non-zero elements of a (T, B, ...) array up to the exit step."""
            if full:
                return float(np.count_nonzero(a if a.dtype == bool else a != 0))
            return float((_count_rows(a, self.mm) * mask).sum())

        self.input_step += (ctx.rows(self.input_node) * mask).sum(1)

        # spiking layers: per (step, sample) sums first, so the exit mask touches (T, B) only
        used_hidden = np.zeros(B)
        for name in self.spiking:
            if name not in rec.values:
                raise GraphError(f"spiking node {name!r} is not in the recording",
                                 "every target must record its neuron populations")
            s = ctx.value(name).reshape(T, B, -1)
            L = self.layer[name]
            N = L["N"] = s.shape[-1]
            binary = ctx.ones_only(name)
            if binary:  # the sum is the count: row sums of the 0/1 operand (exact)
                s_tb = ctx.rows(name) * mask
            else:
                s_tb = s.sum(-1, dtype=np.float64) * mask
            tot = s_tb.sum(0)
            if full and binary:  # a neuron is used if it spiked at any step
                used = ctx.operand(name).ever(T)
            elif full:
                used = np.count_nonzero(ctx.events(name).reshape(T, B, N).any(0), -1)
            else:  # a neuron counts as used if its first spike comes before the exit step
                nz = ctx.events(name).reshape(T, B, N)
                first = np.where(nz.any(0), nz.argmax(0), T)
                used = np.count_nonzero(first < ts[:, None], -1)
            L["step"] += s_tb.sum(1)
            L["totals"].append(tot)
            L["used"].append(used)
            L["nnz"] += float(tot.sum()) if binary else count_total(ctx.events(name))
            L["numel"] += float(N * ts.sum())
            L["rate_sum"] += float((tot / (N * ts)).sum())
            if name in self.hidden:
                used_hidden += used
        n_hidden = sum(self.layer[h]["N"] for h in self.hidden)
        if n_hidden:
            self.usage.append(used_hidden / n_hidden)

        # synaptic operations
        for c in self.connections:
            inp, counter, op, nonzero = ctx.conn(c)
            C = self.conn[c]
            if C["static"] is None:
                C["static"] = self._conn_static(c, inp.shape[2:])
            ops = counter.ops(op, nonzero).reshape(T, B) * mask
            C["step"] += ops.sum(1)
            C["eff"] += float(ops.sum())
            src = ctx.direct_source(c)
            if src is not None and ctx.ones_only(src):
                spiky = np.ones((T, B), bool)
            else:
                spiky = _spiky(inp, ctx.conn_nz(c))
            C["nb_ac"] += float((ops * spiky).sum())
            C["nb_mac"] += float((ops * ~spiky).sum())
            C["dense"] += C["static"]["dense_per_step"] * float(ts.sum())
            C["in_nonzero"] += float((nonzero.reshape(T, B) * mask).sum())

        # neuron updates
        for p in self.populations:
            U = self.upd[p]
            spiking = isinstance(self.program.nodes[p], SPIKING)
            srcs = self.program.inputs[p]
            c = srcs[0][0] if len(srcs) == 1 and not srcs[0][1] else None
            fast = c is not None and isinstance(self.program.nodes[c], (nir.Affine, nir.Linear))
            if fast:  # count without building the (T, B, N) event map
                _, counter, op, nonzero = ctx.conn(c)
                N = U["N"] = len(counter.full_rows) * math.prod(ctx.conn(c)[0].shape[2:-1])
                if N != len(counter.full_rows):  # an Affine over more than one axis: general path
                    fast = False
            if fast:
                active = counter.active_rows(nonzero, op, ctx.operand(p) if spiking else None,
                                             ctx.rows(p).reshape(-1) if spiking else None)
                U["events"] += float((active.reshape(T, B) * mask).sum())
            else:
                ev = ctx.events_into(p).reshape(T, B, -1)
                N = U["N"] = ev.shape[-1]
                if spiking:
                    ev = ev | ctx.events(p).reshape(T, B, -1)
                U["events"] += count_total(ev)
            U["dense"] += float(N * ts.sum())
            try:
                U["input"] += count_total(ctx.input_nonzero(p))
            except _NotAvailable:
                U["input_known"] = False
            if p in rec.active:  # the target's own (step, neuron) activity: input or state
                U["state"] += count_total(ctx.aligned(rec.active, p))
            else:
                U["state_known"] = False
        self.n += B

    # ---- report ---------------------------------------------------------------------------
    def summary(self) -> dict:
        if self.n == 0:
            raise ValueError("no batch accumulated")
        n = self.n
        ts = np.concatenate(self.exit_steps)
        out: dict = {
            "samples": n, "time_steps": self.T, "mean_exit_step": float(ts.mean()),
            "input_binary": self.input_binary,
            "conventions": {
                "per_step": "sum over samples / number of samples (exited samples count 0)",
                "per_sample": "mean over samples, integrated over t <= exit step",
                "firing_rate": "spikes / (neurons * exit step), averaged over samples",
                "ac_mac": "from the graph: AC iff the only source is a spiking node (or the "
                          "graph input when input_binary); neurobench_*: value-based per "
                          "(step, sample)",
                "active_events": "(neuron, step) with >= 1 incoming synaptic event or a spike",
                "active_input": "(neuron, step) with non-zero input current; null if the "
                                "target did not record the population's input",
                "active_state": "(neuron, step) with non-zero input or non-zero state before "
                                "the update (ENERGY.md 1.5), as the target recorded it "
                                "(Recording.active); null where the target cannot tell",
            },
            "input": {"events_per_step": (self.input_step / n).tolist(),
                      "events_per_sample": float(self.input_step.sum() / n)},
        }
        layers = {}
        for name in self.spiking:
            L = self.layer[name]
            tot = np.concatenate(L["totals"])
            used = np.concatenate(L["used"]) / L["N"]
            layers[name] = {
                "neurons": L["N"], "hidden": name in self.hidden,
                "spikes_per_step": (L["step"] / n).tolist(),
                "spikes_per_sample": _stats(tot),
                "firing_rate": L["rate_sum"] / n,
                "activation_sparsity": 1.0 - L["nnz"] / L["numel"],
                "usage": {"mean": float(used.mean()), "median": float(np.median(used))},
            }
        out["layers"] = layers
        out["spikes_per_sample"] = float(sum(self.layer[l]["step"].sum() for l in self.spiking) / n)
        out["spikes_per_step"] = (sum((self.layer[l]["step"] for l in self.spiking),
                                      np.zeros(self.T)) / n).tolist()

        u = np.concatenate(self.usage) if self.usage else np.zeros(0)
        # np.histogram's bins over [0, 1] (each [e_i, e_i+1), the last one closed)
        edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
        counts = np.bincount(np.clip(np.searchsorted(edges, u, side="right") - 1, 0, HIST_BINS - 1),
                             minlength=HIST_BINS)
        out["hidden_usage"] = {
            "layers": list(self.hidden),
            "neurons": int(sum(self.layer[h]["N"] for h in self.hidden)),
            "mean": float(u.mean()) if u.size else None,
            "median": float(np.median(u)) if u.size else None,
            "per_layer": {h: layers[h]["usage"]["mean"] for h in self.hidden},
            "histogram": {"edges": edges.tolist(), "counts": counts.astype(int).tolist()},
        }

        def sparsity(names):
            numel = sum(self.layer[l]["numel"] for l in names)
            return None if numel == 0 else 1.0 - sum(self.layer[l]["nnz"] for l in names) / numel
        out["activation_sparsity"] = {"all": sparsity(self.spiking), "hidden": sparsity(self.hidden)}

        syn, total = {}, {"effective": 0.0, "ac": 0.0, "mac": 0.0, "neurobench_ac": 0.0,
                          "neurobench_mac": 0.0, "dense_snn": 0.0, "ann_macs": 0,
                          "ann_flops": 0, "nonzero_weights": 0}
        per_step = np.zeros(self.T)
        for c in self.connections:
            C, S = self.conn[c], self.conn[c]["static"]
            eff = C["eff"] / n
            row = {
                "kind": self.kind[c], "sources": [s for s, _ in self.program.inputs[c]],
                "recurrent_input": any(r for _, r in self.program.inputs[c]),
                "fan_in": S["fan_in"], "outputs": S["outputs"], "weights": S["weights"],
                "nonzero_weights": S["nonzero_weights"],
                "effective_per_step": (C["step"] / n).tolist(),
                "effective_per_sample": eff,
                "ac_per_sample": eff if self.kind[c] == "AC" else 0.0,
                "mac_per_sample": eff if self.kind[c] == "MAC" else 0.0,
                "neurobench_ac_per_sample": C["nb_ac"] / n,
                "neurobench_mac_per_sample": C["nb_mac"] / n,
                "dense_snn_per_sample": C["dense"] / n,
                "ann_macs": S["ann_macs"], "ann_flops": S["ann_flops"],
                "effective_per_synapse": eff / S["nonzero_weights"] if S["nonzero_weights"] else None,
            }
            syn[c] = row
            per_step += C["step"] / n
            for k_out, k_in in (("effective", "effective_per_sample"), ("ac", "ac_per_sample"),
                                ("mac", "mac_per_sample"), ("neurobench_ac", "neurobench_ac_per_sample"),
                                ("neurobench_mac", "neurobench_mac_per_sample"),
                                ("dense_snn", "dense_snn_per_sample"), ("ann_macs", "ann_macs"),
                                ("ann_flops", "ann_flops"), ("nonzero_weights", "nonzero_weights")):
                total[k_out] += row[k_in]
        total["effective_per_step"] = per_step.tolist()
        total["effective_per_synapse"] = (total["effective"] / total["nonzero_weights"]
                                          if total["nonzero_weights"] else None)
        out["synops"] = syn
        out["synops_total"] = total

        upd, utot = {}, {"dense": 0.0, "active_events": 0.0, "active_input": 0.0,
                         "active_state": 0.0}
        for p in self.populations:
            U = self.upd[p]
            upd[p] = {"neurons": U["N"], "dense_per_sample": U["dense"] / n,
                      "active_events_per_sample": U["events"] / n,
                      "active_input_per_sample": U["input"] / n if U["input_known"] else None,
                      "active_state_per_sample": U["state"] / n if U["state_known"] else None}
            utot["dense"] += U["dense"] / n
            utot["active_events"] += U["events"] / n
            if utot["active_input"] is not None:
                utot["active_input"] = (None if not U["input_known"]
                                        else utot["active_input"] + U["input"] / n)
            if utot["active_state"] is not None:
                utot["active_state"] = (None if not U["state_known"]
                                        else utot["active_state"] + U["state"] / n)
        out["neuron_updates"] = upd
        out["neuron_updates_total"] = utot
        out["memory"] = self._memory(out)
        return out

    def _memory(self, m: dict) -> dict:
        """The memory traffic of the counted work (:mod:`spikeport.estimate.memory`)."""
        n = self.n
        conns = {c: ConnectionLoad(self.conn[c]["in_nonzero"] / n, self.conn[c]["eff"] / n,
                                   self.conn[c]["static"]["inputs"], self.conn[c]["static"]["weights"],
                                   self.conn[c]["static"]["outputs"]) for c in self.connections}
        pops = {p: PopulationLoad(type(self.program.nodes[p]).__name__, self.upd[p]["N"],
                                  self.upd[p]["dense"] / n,
                                  m["layers"][p]["spikes_per_sample"]["mean"] if p in m["layers"] else 0.0)
                for p in self.populations}
        return memory_traffic(conns, pops)
