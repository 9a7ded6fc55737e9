"""Where a quantised network goes on the chip: Loihi cores and chips, per layer and in total.

A Loihi neuro-core holds a limited number of compartments (neurons), receives spikes on a
limited number of input axons, sends them on a limited number of output axons and stores its
synapses in a fixed synaptic memory. :func:`map_network` splits every layer of a
:class:`~spikeport.exporters.loihi.quantize.LoihiNetwork` into the fewest equal, contiguous
slices (one per core) that respect all four limits, and reports per layer the cores it needs,
the largest use of each limit on one of its cores and which limit decided the split; in total
the cores, the chips and the utilisation of each limit.

The model, per core c holding the slice S of a layer's neurons (every count from the integer
weights the export writes, so a weight quantised to 0 is no synapse):

- compartments: |S|;
- input axons: the presynaptic neurons (the previous layer's, or the input's, and, for a
  recurrent layer, its own) with at least one non-zero weight into S;
- synaptic memory: per input axon a, its n_a synapses into S stored in blocks of at most 64,
  each block n x (weight bits + index bits) plus a 10-bit block header, rounded up to 64-bit
  words; 8 weight bits (spikeport's weights are 8-bit mantissas), index bits the fewest of
  6 .. 12 that address |S| compartments, none when a of S is dense (an axon reaching every
  compartment of the core);
- output axons: per neuron of S, one per core of the next layer (and, recurrent, of its own
  layer) that it reaches with a non-zero weight. The last layer's spikes leave the chip; they
  take no output axons here.

This follows the synapse format of nengo-loihi's Loihi 1 builder (``SynapseFmt.bits_per_axon``
and the per-core limits in ``nengo_loihi/block.py``: 1,024 compartments, 4,096 input axons,
4,096 output axons, 1,048,576 synapse bits = 128 KB); it is an estimate of the placement, not
the output of Intel's compiler. Convolutions are counted expanded, one synapse per connection:
Loihi's population axons can share a convolution's weights between positions, so for
convolutions the synaptic memory and the core count are upper bounds. Loihi 2's per-core
figures are not all published; :data:`CHIPS` marks which ones are assumptions.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from spikeport.core import budget
from spikeport.core.errors import ExportError
from spikeport.ir.checks import conv_padding

WEIGHT_BITS = 8               # spikeport's Loihi weights are 8-bit mantissas
BLOCK_SYNAPSES = 64           # synapses per block (a 6-bit count field)
BLOCK_HEADER_BITS = 4 + 6     # synapse-format index + count, per block
WORD_BITS = 64                # synaptic memory is allocated in 64-bit words
INDEX_BITS = (6, 7, 8, 9, 10, 11, 12)  # the index widths a synapse format can use
NENGO_LOIHI = "nengo-loihi nengo_loihi/block.py (MAX_COMPARTMENTS, MAX_IN_AXONS, MAX_OUT_AXONS, MAX_SYNAPSE_BITS)"


@dataclass(frozen=True)
class Chip:
    """The per-core limits of one chip generation and its cores per chip, with sources."""
    name: str
    compartments: int
    input_axons: int
    output_axons: int
    synapse_bits: int
    cores_per_chip: int
    source: str
    assumptions: tuple[str, ...] = ()


CHIPS = {
    "loihi": Chip("loihi", 1024, 4096, 4096, 1024 * 1024, 128,
                  f"{NENGO_LOIHI}; 128 neuro-cores per chip: Davies et al., IEEE Micro 38(1), 2018"),
    "loihi2": Chip("loihi2", 8192, 4096, 4096, 1024 * 1024, 128,
                   "Intel Loihi 2 brief (2021): up to 1 M neurons on 128 cores per chip "
                   "(8,192 per core)",
                   ("input and output axons and synaptic memory per core: Loihi 1's figures, "
                    "no Loihi 2 figure is published; Loihi 2's memory is shared between "
                    "synapses and neuron state, so its real limits differ",)),
}
LIMITS = ("compartments", "input_axons", "output_axons", "synapse_bits")


@dataclass
class LayerMapping:
    """One layer on the chip: its cores and, over them, the largest use of each limit."""
    layer: str
    neurons: int
    synapses: int
    cores: int
    compartments: int      # the largest number on one of the layer's cores
    input_axons: int
    output_axons: int
    synapse_bits: int
    decided_by: str        # the limit that set the number of cores ("none": one core holds it)


@dataclass
class Mapping:
    chip: Chip
    layers: list[LayerMapping]

    @property
    def cores(self) -> int:
        return sum(m.cores for m in self.layers)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / self.chip.cores_per_chip)

    def utilisation(self) -> dict[str, float]:
        """Per limit: the largest use on any core, as a fraction of the limit."""
        return {k: max(getattr(m, k) for m in self.layers) / getattr(self.chip, k)
                for k in LIMITS}

    def as_dict(self) -> dict:
        return {"chip": self.chip.name, "cores": self.cores, "chips": self.chips,
                "cores_per_chip": self.chip.cores_per_chip,
                "limits_per_core": {k: getattr(self.chip, k) for k in LIMITS},
                "utilisation": self.utilisation(),
                "layers": [asdict(m) for m in self.layers],
                "source": self.chip.source, "assumptions": list(self.chip.assumptions),
                "model": "estimate after nengo-loihi's synapse format; convolutions counted "
                         "expanded (no shared population axons): an upper bound for them"}


def map_network(net, chip: str = "loihi") -> Mapping:
    """The cores and chips ``net`` (a LoihiNetwork) needs on ``chip`` (module docstring)."""
    spec = CHIPS[chip]
    layers = net.layers
    syn = [_synapses(net, i) for i in range(len(layers))]
    cores = [0] * len(layers)
    out: list[LayerMapping] = []
    for i in reversed(range(len(layers))):  # a layer's output axons depend on the next one's cores
        layer, (ff, rec) = layers[i], syn[i]
        targets = ([(*syn[i + 1][0], layers[i + 1].size, cores[i + 1])] if i + 1 < len(layers)
                   else []) + ([(*rec, layer.size, None)] if rec is not None else [])
        use = lambda k: _use(layer.size, k, ff, rec, targets)  # noqa: E731
        cores[i], decided = _fewest(layer.size, spec, use, layer.name)
        n_syn = len(ff[0]) + (len(rec[0]) if rec is not None else 0)
        out.append(LayerMapping(layer.name, layer.size, n_syn, cores[i], decided_by=decided,
                                **use(cores[i])))
    return Mapping(spec, out[::-1])


def _fewest(n: int, spec: Chip, use, name: str) -> tuple[int, str]:
    """The fewest cores (found by doubling, then bisection) on which every core of a layer of
    n neurons is within the limits, and the limit that decided it."""
    def over(k: int) -> list[str]:
        u = use(k)
        return [lim for lim in LIMITS if u[lim] > getattr(spec, lim)]

    lo = max(1, -(-n // spec.compartments))
    first = over(lo)
    if not first:
        return lo, "compartments" if lo > 1 else "none"
    hi = lo
    while over(hi):
        if hi >= n:
            u = use(n)
            lim = over(n)[0]
            raise ExportError(f"layer {name!r} does not fit Loihi cores even one neuron per core: "
                              f"it needs {u[lim]} {lim.replace('_', ' ')} on a core, the limit is "
                              f"{getattr(spec, lim)}", "reduce the layer's fan-in or fan-out")
        lo, hi = hi, min(n, hi * 2)
    while hi - lo > 1:  # lo fails, hi fits
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if not over(mid) else (mid, hi)
    return hi, first[0]


def _synapses(net, i: int):
    """(post, pre) index arrays of layer i's non-zero feed-forward synapses, and of its
    recurrent ones (None without), neurons numbered in C order of their shapes."""
    layer = net.layers[i]
    prev_shape = tuple(net.input_shape) if i == 0 else tuple(net.layers[i - 1].shape)
    w = np.asarray(layer.weight)
    budget.check_bytes(16 * int(np.count_nonzero(w)) * (1 if layer.conv is None else
                                                         int(np.prod(layer.shape[1:]))),
                       f"mapping layer {layer.name!r} onto cores", "map a smaller network",
                       ExportError)
    if layer.conv is not None:
        ff = _conv_synapses(w, layer.conv, prev_shape, tuple(layer.shape))
    else:
        post, pre = np.nonzero(w.reshape(w.shape[0], -1))
        ff = (post.astype(np.int64), pre.astype(np.int64))
    rec = None
    if layer.weight_rec is not None:
        post, pre = np.nonzero(np.asarray(layer.weight_rec))
        rec = (post.astype(np.int64), pre.astype(np.int64))
    return ff, rec


def _conv_synapses(w: np.ndarray, conv: dict, in_shape: tuple, out_shape: tuple):
    """(post, pre) of a convolution's non-zero connections, one per output position."""
    O, Cg, kh, kw = w.shape
    C, H, W = in_shape
    _, Ho, Wo = out_shape
    (sh, sw), (dh, dw) = conv["stride"], conv["dilation"]
    (pt, _), (pl, _) = conv_padding(conv["padding"], (kh, kw), (dh, dw))
    og = O // conv["groups"]
    o, c, ky, kx = np.nonzero(w)                          # the non-zero kernel entries
    cin = (o // og) * Cg + c
    y = np.arange(Ho)[:, None] * sh - pt + (ky * dh)[None, :]   # (Ho, nnz)
    x = np.arange(Wo)[:, None] * sw - pl + (kx * dw)[None, :]   # (Wo, nnz)
    vy, vx = (y >= 0) & (y < H), (x >= 0) & (x < W)
    oy, k1 = np.nonzero(vy)
    ox, k2 = np.nonzero(vx)
    # every (oy, ox) pair for the same kernel entry: join on the entry index
    order = np.argsort(k2, kind="stable")
    k2s, ox_s = k2[order], ox[order]
    lo, hi = np.searchsorted(k2s, k1, "left"), np.searchsorted(k2s, k1, "right")
    reps = hi - lo
    rows = np.repeat(np.arange(len(k1)), reps)
    cols = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(k1) else np.zeros(0, int)
    k = k1[rows]
    oyy, oxx = oy[rows], ox_s[cols]
    post = (o[k] * Ho + oyy) * Wo + oxx
    pre = (cin[k] * H + y[oyy, k]) * W + x[oxx, k]
    return post.astype(np.int64), pre.astype(np.int64)


def _chunk(index: np.ndarray, n: int, cores: int) -> np.ndarray:
    """The core of each neuron index when n neurons are cut into ``cores`` equal slices."""
    return index * cores // n


def _use(n: int, cores: int, ff, rec, targets) -> dict[str, int]:
    """The largest use of each limit on one of the ``cores`` cores of a layer of n neurons:
    ``ff`` / ``rec`` its (post, pre) synapses, ``targets`` the synapse sets its spikes feed,
    as (post, pre, neurons there, cores there; None: these ``cores``)."""
    compartments = -(-n // cores)
    axons, bits = np.zeros(cores, np.int64), np.zeros(cores, np.int64)
    for post, src in [ff] + ([rec] if rec is not None else []):
        m = int(src.max(initial=-1)) + 1
        keys, n_w = np.unique(_chunk(post, n, cores) * m + src, return_counts=True)
        np.add.at(axons, keys // m, 1)                   # one input axon per (core, source)
        np.add.at(bits, keys // m, _bits(n_w, compartments))
    per_neuron = np.zeros(n, np.int64)
    for post, src, n_post, c_post in targets:
        c_post = cores if c_post is None else c_post
        pairs = np.unique(src * c_post + _chunk(post, n_post, c_post))
        np.add.at(per_neuron, pairs // c_post, 1)        # one output axon per (neuron, core)
    per_core = np.zeros(cores, np.int64)
    np.add.at(per_core, _chunk(np.arange(n), n, cores), per_neuron)
    return {"compartments": compartments, "input_axons": int(axons.max(initial=0)),
            "output_axons": int(per_core.max(initial=0)), "synapse_bits": int(bits.max(initial=0))}


def _bits(n_weights: np.ndarray, compartments: int) -> np.ndarray:
    """Synaptic memory of axons with ``n_weights`` synapses each into a core of
    ``compartments`` (module docstring)."""
    idx = next((b for b in INDEX_BITS if 2 ** b >= compartments), INDEX_BITS[-1])
    per = np.where(n_weights >= compartments, WEIGHT_BITS, WEIGHT_BITS + idx)
    full, rest = np.divmod(n_weights, BLOCK_SYNAPSES)
    words = lambda k: -(-(k * per + BLOCK_HEADER_BITS) // WORD_BITS)  # noqa: E731
    return full * words(BLOCK_SYNAPSES) * WORD_BITS + np.where(rest > 0, words(rest), 0) * WORD_BITS


def format_mapping(m: dict) -> str:
    """The table of a mapping's JSON (:meth:`Mapping.as_dict`): cores per layer, the largest
    use of each limit on one of them, the limit that split the layer, and the total."""
    rows = [f"  {'layer':<16} {'neurons':>8} {'cores':>6} {'in axons':>9} {'out axons':>9} "
            f"{'syn KB':>7}  split by"]
    for lm in m["layers"]:
        rows.append(f"  {lm['layer']:<16} {lm['neurons']:>8} {lm['cores']:>6} "
                    f"{lm['input_axons']:>9} {lm['output_axons']:>9} "
                    f"{lm['synapse_bits'] / 8192:>7.1f}  {lm['decided_by']}")
    rows.append(f"  {m['cores']} cores on {m['chips']} {m['chip']} chip(s) "
                f"({m['cores_per_chip']} cores per chip; an estimate, see the mapping's 'model')")
    return "\n".join(rows)
