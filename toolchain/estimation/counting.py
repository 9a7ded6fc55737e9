"""The estimator's counting engine: where values are non-zero, kept as bits, and the synaptic
events of one connection node, counted without computing its weighted sums.

- :class:`BitRows`: a 0/1 matrix (R, n) -- R = steps x samples -- of where a node's value is
  non-zero, as a bool map and bit-packed into 64-bit words (:func:`pack`): set elements per
  row (optionally within a column mask) are popcounts.
- :class:`ConnectionCounter`: the events of one Affine / Linear / Conv1d / Conv2d node, i.e.
  (non-zero input, non-zero weight) pairs, per row, and which outputs receive at least one.
- :func:`window_any` / :func:`window_max`: which outputs of a convolution or pool window hold
  a set input (receptive fields, zero padding holding none).
- :func:`count_connection`: all of the above for one connection on one input map (the
  engine's one-call entry point, used by the tests against brute-force references).

Every count is exact: integer popcounts, or float32 arithmetic on 0/1 values while the
counts stay below 2**24 (checked), else float64. Matrix products run in the library the
target computes with (:data:`MATMUL`).
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import nir
import numpy as np
import torch
import torch.nn.functional as F

from spikeport.core.errors import GraphError
from spikeport.ir.program import conv_padding, pair, torch_conv_args

# Counting runs in float32: a count of (non-zero input, non-zero weight) pairs per output
# element is an integer no larger than the fan-in, exact in float32 below 2**24.
EXACT_F32 = 2 ** 24
# a dense connection counts its events by popcounts, one per bit of the spread of its
# fan-outs, when that spread has at most this many bits (else by a float32 product)
MAX_FANOUT_BITS = 4


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


def pack(nz: np.ndarray) -> np.ndarray:
    """Bool rows (R, n) -> uint64 words (R, ceil(n / 64)): each row's bits packed, zero-padded."""
    packed = np.packbits(nz, axis=-1)
    if packed.shape[-1] % 8:
        wide = np.zeros((*packed.shape[:-1], -(-packed.shape[-1] // 8) * 8), np.uint8)
        wide[..., :packed.shape[-1]] = packed
        packed = wide
    return packed.view(np.uint64)


class BitRows:
    """A 0/1 matrix (R, n) -- R = steps x samples -- of where a node's value is non-zero, kept
    as a bool map ``nz`` and as bits (each row packed into 64-bit words): per-row counts of
    set elements, optionally restricted to a set of columns, are popcounts over a sixteenth
    of the bool map's bytes, and one popcount of the words OR-reduced over time tells which
    columns were ever set. A float32 copy is made only for the products that need one."""

    def __init__(self, nz: np.ndarray, rows: int, mm=_mm_numpy):
        self.nz = nz.reshape(rows, -1)
        self.n = self.nz.shape[1]
        self.mm = mm
        self.words = pack(self.nz)
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
        dt = np.float32 if self.n < EXACT_F32 else np.float64
        return self.mm(c.astype(dt), np.ones(c.shape[1], dt)).astype(np.float64, copy=False)

    def f32(self) -> np.ndarray:
        """The matrix as float32 0/1, for matrix products."""
        if self._f32 is None:
            self._f32 = self.nz.astype(np.float32)
        return self._f32


def nonzero_counts(a: np.ndarray, mm=_mm_numpy) -> np.ndarray:
    """Non-zero elements per (step, sample) of a (T, B, ...) array, float64 (T, B)."""
    T, B = a.shape[:2]
    return BitRows(a if a.dtype == bool else a != 0, T * B, mm).count().reshape(T, B)


def run_connection(node, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A connection node with weights ``w`` and no bias on x (batch, *in), float32."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return x @ w.T
    conv = F.conv1d if isinstance(node, nir.Conv1d) else F.conv2d
    with warnings.catch_warnings():  # torch notes that asymmetric "same" padding copies the input
        warnings.filterwarnings("ignore", message="Using padding='same'")
        return conv(x, w, None, **torch_conv_args(node))


def _tup(v) -> tuple:
    return tuple(v) if isinstance(v, tuple) else (int(v),)


class ConnectionCounter:
    """Synaptic events of one connection node: (non-zero input, non-zero weight) pairs.

    Counting never needs the weighted sums. The number of events a sample emits through the
    connection at one step is nz(x) . f, where the fan-out vector f (one entry per input
    element) counts the non-zero weights each input element meets across all outputs,
    padding and stride included; f = d/dx sum(conv_b(x)) with binarised weights, taken once
    by automatic differentiation (dense: the column counts). Dense connections need no
    product: with f = lowest + sum_k 2^k b_k over the bits b_k of the spread of the fan-outs,
    nz(x) . f = lowest * |nz(x)| + sum_k 2^k popcount(nz(x) & b_k) on the bit-packed input
    (:class:`BitRows`) -- no popcount at all without zero weights. Which outputs receive at
    least one event (neuron updates) mostly needs no product either. Dense: an output misses a
    step only if all of the step's non-zero inputs meet its zero weights, impossible when they
    outnumber the zeros of every row or when one of them meets no zero weight at all; only the
    remaining steps are multiplied. Convolution whose kernels have no zero: an output receives
    iff any input in its receptive field (within its group) is non-zero -- a window-any of
    one channel per group; with zero weights the binarised convolution is run. Integer
    popcounts, or float32 arithmetic on 0/1 values, exact while the counts stay below 2**24
    (checked)."""

    def __init__(self, node, in_shape: tuple, mm=_mm_numpy):
        self.node = node
        self.mm = mm
        w = np.asarray(node.weight)
        self.conv = isinstance(node, (nir.Conv1d, nir.Conv2d))
        self.in_shape = tuple(in_shape)
        fan_in = math.prod(w.shape[1:])
        if fan_in >= EXACT_F32:
            raise GraphError(f"connection fan-in {fan_in} is too large to count exactly in float32",
                             "split the layer")
        rows = (w != 0).reshape(w.shape[0], -1)  # per output, which weights are non-zero
        self.wT = np.ascontiguousarray(rows.T, dtype=np.float32)
        zeros = fan_in - self.wT.sum(0)
        self.full_rows = zeros == 0  # outputs whose weights are all non-zero
        self.max_zeros = int(zeros.max())  # most zeros in one output row
        self.fan_masks = None
        if self.conv:
            self.w = torch.from_numpy(self.wT.T.reshape(w.shape))  # the binarised kernel
            x = torch.zeros((1, *in_shape), requires_grad=True)
            run_connection(node, self.w, x).sum().backward()
            self.fanout = x.grad.reshape(-1).numpy().astype(np.float64)
            self.groups = int(node.groups)
            self.kernel = tuple(int(k) for k in w.shape[2:])
            self.args = torch_conv_args(node)
        else:  # dense: input i meets the non-zero weights of its column
            self.fanout = np.broadcast_to(self.wT.sum(1, dtype=np.float64), in_shape).reshape(-1)
            self._popcount_plan(rows)
        self.fanout32 = self.fanout.astype(np.float32)
        self.exact32 = float(self.fanout.sum()) < EXACT_F32

    def _popcount_plan(self, rows: np.ndarray) -> None:
        """Dense: fan-out = lowest + sum_k 2^k bit_k, so the events are lowest * non-zero
        inputs + sum_k 2^k * popcount(input & bit_k): one popcount per bit of the spread of
        the fan-outs (none for a dense layer without zero weights)."""
        lo = int(self.fanout.min()) if self.fanout.size else 0
        spread = self.fanout.astype(np.int64) - lo
        bits = int(spread.max()).bit_length() if spread.size else 0
        if bits <= MAX_FANOUT_BITS:
            self.base = float(lo)
            self.fan_masks = [(float(1 << k), pack((spread >> k) & 1 == 1)) for k in range(bits)]
        # an input whose column has no zero weight reaches every output
        self.full_cols = pack(rows.all(0))

    @property
    def method(self) -> str:
        """How :meth:`ops` counts: ``"popcount"`` (dense, bit masks of the fan-outs) or
        ``"product"`` (a matrix-vector product with the fan-out vector)."""
        return "product" if self.fan_masks is None else "popcount"

    @property
    def outputs(self) -> int:
        """Output features (dense) or channels (convolution)."""
        return len(self.full_rows)

    def ops(self, op: BitRows, nonzero: np.ndarray) -> np.ndarray:
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

    def _suspects(self, nonzero: np.ndarray, op: BitRows) -> tuple[np.ndarray, np.ndarray]:
        """Dense connections: the rows (steps of one sample) whose non-zero inputs might all
        meet zero weights of some output -- no more of them than the most zeros of an output,
        none in a column without zeros -- and for them the outputs that do receive."""
        suspect = np.flatnonzero((nonzero > 0) & (nonzero <= self.max_zeros))
        if suspect.size:
            suspect = suspect[op.count(self.full_cols, suspect) == 0]
        if not suspect.size:
            return suspect, np.zeros((0, self.wT.shape[1]), bool)
        return suspect, self.mm(op.nz[suspect].astype(np.float32), self.wT) > 0

    def active_rows(self, nonzero: np.ndarray, op: BitRows, other: BitRows | None,
                    other_rows: np.ndarray | None) -> np.ndarray:
        """Dense connections: per row of the input, the outputs that receive at least one
        event or are set in ``other`` (the population's own spikes), without building the
        map: every output when the row has a non-zero input that cannot miss (see
        ``_suspects``), the ``other`` count (``other_rows``) when it has none, and an exact
        product for the suspect rows; float64 (T*B,)."""
        base = np.zeros(len(nonzero)) if other_rows is None else other_rows
        out = np.where(nonzero > 0, float(self.outputs), base)
        suspect, got = self._suspects(nonzero, op)
        if suspect.size:
            if other is not None:
                got |= other.nz[suspect]
            out[suspect] = got.sum(-1)
        return out

    def receives(self, nz: np.ndarray, op: BitRows, nonzero: np.ndarray) -> np.ndarray:
        """Outputs that receive at least one event, bool (T, B, *out), from the input map nz
        (T, B, *in), the same as rows (T*B, n_in) and its non-zero count per row."""
        T, B = nz.shape[:2]
        if self.conv and not self.full_rows.all():
            t = torch.from_numpy(nz.reshape(T * B, *self.in_shape).astype(np.float32))
            with torch.no_grad():
                y = run_connection(self.node, self.w, t).numpy() > 0
            return y.reshape(T, B, *y.shape[1:])
        if self.conv:
            C, g = self.in_shape[0], self.groups
            x = nz.reshape(T * B, g, C // g, *self.in_shape[1:]).any(2)
            a = self.args
            y = window_max(x, self.kernel, _tup(a["stride"]), a["padding"] if isinstance(a["padding"], str)
                           else _tup(a["padding"]), _tup(a["dilation"]))
            y = np.repeat(y, self.w.shape[0] // g, axis=1)  # (TB, O, *out): channels by group
            return y.reshape(T, B, *y.shape[1:])
        # Dense: an output j misses a step only if every non-zero input meets a zero weight of
        # row j, impossible when the step has more non-zero inputs than row j has zeros.
        n = self.in_shape[-1]
        if op.n != n:  # an Affine over the last of several axes: a row per leading index
            op = BitRows(op.nz, op.nz.size // n, self.mm)
            nonzero = op.count()
        out = np.repeat((nonzero > 0)[:, None], self.outputs, axis=1)
        suspect, got = self._suspects(nonzero, op)
        if suspect.size:
            out[suspect] = got
        return out.reshape(T, B, *self.in_shape[:-1], -1)


def window_max(x: np.ndarray, kernel: tuple, stride: tuple, padding, dilation: tuple) -> np.ndarray:
    """Per output position of a convolution / pool window: does the window hold a True?

    x: bool (N, C, *spatial). ``padding`` is an int per spatial dimension or "same" / "valid"
    (:func:`spikeport.ir.program.conv_padding`). Zero padding adds no True, so this is an OR
    over the kernel offsets of strided slices of the padded input."""
    pads = conv_padding(padding, kernel, dilation)
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


def window_any(node, e: np.ndarray) -> np.ndarray:
    """Pool windows (SumPool2d / AvgPool2d ``node``) that contain at least one True element
    of ``e`` (T, B, C, H, W)."""
    T, B = e.shape[:2]
    y = window_max(e.reshape(T * B, *e.shape[2:]), pair(node.kernel_size), pair(node.stride),
                   pair(node.padding), (1, 1))
    return y.reshape(T, B, *y.shape[1:])


@dataclass(frozen=True)
class ConnectionCount:
    """The events of one connection on one input map (:func:`count_connection`)."""
    ops: np.ndarray            # (T, B) synaptic events: (non-zero input, non-zero weight) pairs
    nonzero: np.ndarray        # (T, B) non-zero input elements
    receives: np.ndarray       # (T, B, *out) bool: the output received at least one event
    active: np.ndarray | None  # (T, B) outputs receiving (dense over one axis only, else None)
    method: str                # how the events were counted: "popcount" or "product"
    popcount_masks: int        # bit masks of the fan-out spread ("popcount"; else 0)
    zero_weights: bool         # some output has a zero weight


def count_connection(node, nz: np.ndarray, matmul: str = "numpy") -> ConnectionCount:
    """Count the events of connection ``node`` (Affine, Linear, Conv1d, Conv2d) on the input
    map ``nz`` (T, B, *input_shape), bool: where the input is non-zero."""
    T, B = nz.shape[:2]
    mm = MATMUL[matmul]
    counter = ConnectionCounter(node, nz.shape[2:], mm)
    rows = BitRows(nz, T * B, mm)
    nonzero = rows.count()
    active = None
    if not counter.conv and rows.n == counter.in_shape[-1]:
        active = counter.active_rows(nonzero, rows, None, None).reshape(T, B)
    return ConnectionCount(counter.ops(rows, nonzero).reshape(T, B), nonzero.reshape(T, B),
                           counter.receives(nz, rows, nonzero), active, counter.method,
                           len(counter.fan_masks or ()), not counter.full_rows.all())
