"""The lava-dl netx HDF5 format: writer and reader for :class:`LoihiNetwork`.

Layout written (the subset lava-dl 0.6.0's ``netx.hdf5.Network`` loads unmodified,
``lava/lib/dl/netx/hdf5.py``)::

    /layer/0            type = "input", shape = [N_in]           (no neuron group: the
                                                                   first dense block takes
                                                                   the input spikes directly)
    /layer/k            type = "dense" | "dense_rec", shape = [N]
    /layer/k/weight     (N, N_prev) int, even, in [-256, 254]     (torch flatten order)
    /layer/k/weight_rec (N, N) int                                (dense_rec only)
    /layer/k/bias       (N,) int: bias_mant (netx sets bias_exp = 6)   (only if non-zero)
    /layer/k/neuron     type = "CUBA", iDecay, vDecay, vThMant, refDelay = 1,
                        gradedSpike = False                      (netx: du = iDecay - 1)
    /layer/k            type = "conv", shape = [C, H, W], weight (O, I, kh, kw) in torch
                        layout, stride / padding / dilation = [h, w], groups, bias (O,)
                        channel-wise, neuron as above (netx flips and transposes the kernel
                        and reverses shapes to Lava's W, H, C order itself)
    /layer/k            type = "flatten"   between the last conv and the first dense layer

For a network that starts with a convolution the input layer's shape is [C, H, W].

spikeport's own record rides along as root attributes: ``spikeport_format``, ``dt``,
``input_shape`` (the model's, before flattening), the NIR node names of each layer, the
quantisation report and any approximations (JSON). netx ignores them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import h5py
import numpy as np

from spikeport.core import budget, units
from spikeport.core.errors import GraphError
from spikeport.core.io import atomic_write
from spikeport.exporters.loihi.quantize import LayerReport, LoihiLayer, LoihiNetwork
from spikeport.ir import checks

FORMAT = "spikeport-netx/1"


def write(net: LoihiNetwork, path: str | Path) -> Path:
    def _write(tmp: Path):
        with h5py.File(tmp, "w") as f:
            f.attrs["spikeport_format"] = FORMAT
            f.attrs["dt"] = net.dt
            f.attrs["input_shape"] = np.asarray(net.input_shape, dtype=np.int64)
            f.attrs["layer_names"] = json.dumps([[l.name, l.synapse, l.rec_synapse] for l in net.layers])
            f.attrs["report"] = json.dumps(net.report())
            f.attrs["approximations"] = json.dumps(net.approximations)
            layers = f.create_group("layer")
            g = layers.create_group("0")
            g["type"] = "input"
            first_conv = net.layers[0].conv is not None
            g["shape"] = np.array(net.input_shape if first_conv else [int(np.prod(net.input_shape))],
                                  dtype=np.int64)
            k = 0
            for i, layer in enumerate(net.layers):
                if layer.conv is None and i > 0 and net.layers[i - 1].conv is not None:
                    k += 1  # netx flattens the conv output (WHC) back to torch order for us
                    layers.create_group(str(k))["type"] = "flatten"
                k += 1
                g = layers.create_group(str(k))
                if layer.conv is not None:
                    g["type"] = "conv"
                    g["shape"] = np.array(layer.shape, dtype=np.int64)  # (C, H, W): netx reverses
                    for key in ("stride", "padding", "dilation"):
                        g[key] = np.array(layer.conv[key], dtype=np.int64)  # (H, W): netx reverses
                    g["groups"] = int(layer.conv["groups"])
                else:
                    g["type"] = "dense_rec" if layer.weight_rec is not None else "dense"
                    g["shape"] = np.array([layer.weight.shape[0]], dtype=np.int64)
                g["weight"] = layer.weight.astype(np.int64)
                if layer.weight_rec is not None:
                    g["weight_rec"] = layer.weight_rec.astype(np.int64)
                if np.any(layer.bias_mant):
                    g["bias"] = layer.bias_mant.astype(np.int64)
                n = g.create_group("neuron")
                n["type"] = "CUBA"
                n["iDecay"] = int(layer.i_decay)
                n["vDecay"] = int(layer.v_decay)
                n["vThMant"] = int(layer.v_th_mant)
                n["refDelay"] = 1
                n["gradedSpike"] = False
    return atomic_write(path, _write)


# --------------------------------------------------------------------------- reading

REEXPORT = "export it again with `spikeport export RUN --to loihi`"
BIAS_MIN, BIAS_MAX = -units.LOIHI_BIAS_MAX - 1, units.LOIHI_BIAS_MAX   # s13
REPORT_NUMBERS = ("scale", "weights_clipped_fraction", "weight_rms_error")


def kind(path: str | Path) -> str:
    """What an HDF5 file holds, by its layout: "netx" (spikeport's), "foreign-netx" (a netx
    layout without spikeport's record), "nir" (a NIR graph), "hdf5" (anything else) or
    "not-hdf5"."""
    try:
        with h5py.File(path, "r") as f:
            if isinstance(f.get("layer"), h5py.Group):
                return "netx" if _text(f.attrs.get("spikeport_format")) == FORMAT else "foreign-netx"
            if isinstance(f.get("node"), h5py.Group):
                return "nir"
            return "hdf5"
    except Exception:  # h5py raises OSError, or others, for a file that is not HDF5
        return "not-hdf5"


def _text(v) -> str | None:
    v = v[()] if isinstance(v, h5py.Dataset) else v
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return v if isinstance(v, str) else None


class _Reader:
    """Reads one netx file; every refusal names the file, the layer and the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, where: str, problem: str, fix: str = REEXPORT) -> NoReturn:
        raise GraphError(f"{self.path}: {where}: {problem}", fix)

    def item(self, g: h5py.Group, key: str, where: str):
        if key not in g:
            self.fail(where, f"the key {key!r} is missing")
        obj = g[key]
        if not isinstance(obj, h5py.Dataset):
            self.fail(where, f"{key!r} is a group, not a value")
        return obj[()]

    def text(self, g: h5py.Group, key: str, where: str) -> str:
        v = _text(self.item(g, key, where))
        if v is None:
            self.fail(where, f"{key!r} is not a text")
        return v

    def ints(self, g: h5py.Group, key: str, where: str, shape=None, low=None, high=None,
             even: bool = False) -> np.ndarray:
        """The integer array ``key`` (int64), of ``shape`` (None: any; ints in it: that size)
        and within [low, high]."""
        a = np.asarray(self.item(g, key, where))
        if a.dtype.kind not in "iu":
            if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                self.fail(where, f"{key!r} holds {a.dtype} values, not integers")
        if shape is not None and tuple(a.shape) != tuple(shape):
            self.fail(where, f"{key!r} has shape {tuple(a.shape)}, expected {tuple(shape)}")
        if a.size and a.dtype.kind != "i" and not np.abs(a).max() < 2 ** 62:
            self.fail(where, f"{key!r} holds values beyond int64")
        a = a.astype(np.int64)
        if a.size and ((low is not None and a.min() < low) or (high is not None and a.max() > high)):
            bad = a.min() if low is not None and a.min() < low else a.max()
            self.fail(where, f"{key!r} holds {int(bad)}, outside [{low}, {high}]")
        if even and a.size and np.any(a % 2):
            self.fail(where, f"{key!r} holds odd values ({int(a[a % 2 != 0][0])}); netx's packing "
                      "keeps only even weights exactly")
        return a

    def int(self, g: h5py.Group, key: str, where: str, low=None, high=None) -> int:
        return int(self.ints(g, key, where, (), low, high))

    def json_attr(self, attrs, key: str):
        text = _text(attrs.get(key))
        if text is None:
            self.fail("root", f"the attribute {key!r} is missing")
        try:
            return json.loads(text, parse_constant=lambda c: self.fail(
                "root", f"the attribute {key!r} holds {c}"))
        except json.JSONDecodeError:
            self.fail("root", f"the attribute {key!r} is not JSON")

    def network(self, f: h5py.File) -> LoihiNetwork:
        dt = checks.check_dt(f.attrs.get("dt"), f"{self.path}: the attribute 'dt'")
        shape = np.asarray(f.attrs.get("input_shape", []))
        if shape.dtype.kind not in "iu" or shape.ndim != 1 or not shape.size or np.any(shape < 1):
            self.fail("root", f"the attribute 'input_shape' is {shape.tolist()!r}, not a list of "
                      "sizes >= 1")
        input_shape = tuple(int(v) for v in shape)
        names = self.json_attr(f.attrs, "layer_names")
        if not isinstance(names, list) or not all(
                isinstance(n, list) and len(n) == 3 and isinstance(n[0], str) and isinstance(n[1], str)
                and (n[2] is None or isinstance(n[2], str)) for n in names):
            self.fail("root", "the attribute 'layer_names' is not a list of [neuron, synapse, "
                      "recurrent synapse or null]")
        reports = self.reports(self.json_attr(f.attrs, "report"))
        approximations = self.json_attr(f.attrs, "approximations")
        if not isinstance(approximations, list) or not all(isinstance(a, str) for a in approximations):
            self.fail("root", "the attribute 'approximations' is not a list of texts")
        groups = self.groups(f["layer"])
        layers = self.layers(groups, input_shape, names)
        if len(reports) != len(layers):
            self.fail("root", f"the attribute 'report' describes {len(reports)} layers, the file "
                      f"holds {len(layers)}")
        return LoihiNetwork(input_shape, layers, reports, dt, approximations)

    def reports(self, raw) -> list[LayerReport]:
        fields = set(LayerReport.__dataclass_fields__)
        if not isinstance(raw, list):
            self.fail("root", "the attribute 'report' is not a list")
        out = []
        for i, r in enumerate(raw):
            where = f"report of layer {i + 1}"
            if not isinstance(r, dict) or not set(r) <= fields or not set(r) >= fields - {"notes"}:
                self.fail(where, f"expected the keys {sorted(fields)}")
            for key in REPORT_NUMBERS:
                v = r[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                    self.fail(where, f"{key!r} is {v!r}, not a finite number")
            out.append(LayerReport(**r))
        return out

    def groups(self, layer: h5py.Group) -> list[h5py.Group]:
        keys = sorted(layer.keys(), key=lambda k: (len(k), k))
        if keys != [str(k) for k in range(len(keys))] or len(keys) < 2:
            self.fail("/layer", f"the layers are {keys[:8]}{'...' if len(keys) > 8 else ''}; "
                      "expected 0 (input), 1, 2, ... with at least one neuron layer")
        for k in keys:
            if not isinstance(layer[k], h5py.Group):
                self.fail(f"layer {k}", "is not a group")
        return [layer[k] for k in keys]

    def layers(self, groups: list[h5py.Group], input_shape: tuple, names: list) -> list[LoihiLayer]:
        g0 = groups[0]
        if self.text(g0, "type", "layer 0") != "input":
            self.fail("layer 0", f"type is {self.text(g0, 'type', 'layer 0')!r}, expected 'input'")
        shape0 = tuple(int(v) for v in self.ints(g0, "shape", "layer 0", None, 1))
        types = [self.text(g, "type", f"layer {k}") for k, g in enumerate(groups)]
        for k, t in enumerate(types[1:], 1):
            if t not in ("dense", "dense_rec", "conv", "flatten"):
                self.fail(f"layer {k}", f"type is {t!r}; spikeport writes dense, dense_rec, conv "
                          "and flatten layers")
        real = [k for k, t in enumerate(types) if k > 0 and t != "flatten"]
        if len(names) != len(real):
            self.fail("root", f"'layer_names' names {len(names)} layers, the file holds {len(real)}")
        first_conv = bool(real) and types[real[0]] == "conv"
        expect0 = input_shape if first_conv else (int(np.prod(input_shape)),)
        if shape0 != expect0:
            self.fail("layer 0", f"shape is {list(shape0)}, but the input shape {list(input_shape)} "
                      f"makes it {list(expect0)}")
        layers: list[LoihiLayer] = []
        prev, prev_type = shape0, "input"
        for k in range(1, len(groups)):
            g, t, where = groups[k], types[k], f"layer {k} ({types[k]})"
            if t == "flatten":
                if prev_type != "conv" or k + 1 >= len(groups) or types[k + 1] not in ("dense", "dense_rec"):
                    self.fail(where, "a flatten layer stands only between a conv and a dense layer")
                prev_type = t
                continue
            if t == "conv" and prev_type not in ("input", "conv"):
                self.fail(where, f"a conv layer follows a {prev_type} layer")
            if t != "conv" and prev_type == "conv":
                self.fail(where, "a dense layer follows a conv layer without a flatten layer")
            name, syn, rec_syn = names[len(layers)]
            layer = self.conv(g, where, prev) if t == "conv" else self.dense(g, where, t, prev)
            layer.name, layer.synapse = name, syn
            layer.rec_synapse = rec_syn if t == "dense_rec" else None
            layer.flatten_before = prev_type == "flatten"
            layers.append(layer)
            prev, prev_type = layer.shape, t
        return layers

    def dense(self, g: h5py.Group, where: str, t: str, prev: tuple) -> LoihiLayer:
        (n,) = self.shape(g, where, 1)
        n_in = int(np.prod(prev))
        w = self.ints(g, "weight", where, (n, n_in), units.LOIHI_WEIGHT_MIN, units.LOIHI_WEIGHT_MAX, even=True)
        w_rec = (self.ints(g, "weight_rec", where, (n, n), units.LOIHI_WEIGHT_MIN,
                           units.LOIHI_WEIGHT_MAX, even=True) if t == "dense_rec" else None)
        return self.neuron(g, where, (n,), w, None, w_rec)

    def conv(self, g: h5py.Group, where: str, prev: tuple) -> LoihiLayer:
        shape = self.shape(g, where, 3)
        if len(prev) != 3:
            self.fail(where, f"receives shape {list(prev)}; a convolution takes (C, H, W)")
        w = self.ints(g, "weight", where, None, units.LOIHI_WEIGHT_MIN, units.LOIHI_WEIGHT_MAX, even=True)
        if w.ndim != 4 or w.shape[0] != shape[0] or 0 in w.shape:
            self.fail(where, f"'weight' has shape {tuple(w.shape)}, expected ({shape[0]}, "
                      "in_channels / groups, kh, kw)")
        conv = {key: tuple(int(v) for v in self.ints(g, key, where, (2,), low))
                for key, low in (("stride", 1), ("padding", 0), ("dilation", 1))}
        conv["groups"] = self.int(g, "groups", where, 1)
        C, H, W = prev
        if w.shape[1] * conv["groups"] != C or shape[0] % conv["groups"]:
            self.fail(where, f"'weight' {tuple(w.shape)} with groups={conv['groups']} does not fit "
                      f"{C} input channels and {shape[0]} output channels")
        out = []
        for size, k, s, p, d in zip((H, W), w.shape[2:], conv["stride"], conv["padding"], conv["dilation"]):
            reach = d * (k - 1) + 1
            if size + 2 * p < reach:
                self.fail(where, f"the kernel {tuple(w.shape[2:])} reaches beyond the padded input")
            out.append((size + 2 * p - reach) // s + 1)
        if tuple(shape[1:]) != tuple(out):
            self.fail(where, f"'shape' is {list(shape)}, but the convolution of {list(prev)} gives "
                      f"{[shape[0], *out]}")
        return self.neuron(g, where, shape, w, conv, None)

    def shape(self, g: h5py.Group, where: str, ndim: int) -> tuple[int, ...]:
        return tuple(int(v) for v in self.ints(g, "shape", where, (ndim,), 1))

    def neuron(self, g, where, shape, w, conv, w_rec) -> LoihiLayer:
        channels = shape[0] if conv is not None else int(np.prod(shape))
        bias = (self.ints(g, "bias", where, (channels,), BIAS_MIN, BIAS_MAX) if "bias" in g
                else np.zeros(channels, np.int64))
        if "neuron" not in g or not isinstance(g["neuron"], h5py.Group):
            self.fail(where, "the group 'neuron' is missing")
        n, nw = g["neuron"], f"{where} neuron"
        if self.text(n, "type", nw) != "CUBA":
            self.fail(nw, f"type is {self.text(n, 'type', nw)!r}; spikeport writes CUBA neurons")
        return LoihiLayer(
            name="", synapse="", shape=tuple(shape), weight=w, conv=conv,
            i_decay=self.int(n, "iDecay", nw, 0, units.DECAY_UNITY),
            v_decay=self.int(n, "vDecay", nw, 0, units.DECAY_UNITY - 1),
            v_th_mant=self.int(n, "vThMant", nw, 0, units.LOIHI_VTH_MAX),
            bias_mant=bias, weight_rec=w_rec)


def read(path: str | Path) -> LoihiNetwork:
    """A netx file written by :func:`write`, checked against the layout it writes: a NIR
    graph or any other HDF5 file is refused as "not a netx file", and a key that is missing,
    of the wrong shape, not integer or out of Loihi's range is refused naming its layer."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"netx file not found: {path}", "export it with `spikeport export RUN --to loihi`")
    what = kind(path)
    if what == "nir":
        raise GraphError(f"{path} is a NIR graph, not a netx file",
                         "pass it where a graph is expected (spikeport run / validate / estimate "
                         "GRAPH.nir), or export a netx file with `spikeport export RUN --to loihi`")
    if what != "netx":
        reason = {"not-hdf5": "not an HDF5 file", "hdf5": "an HDF5 file without netx layers",
                  "foreign-netx": "netx layers without spikeport's record (spikeport_format)"}[what]
        raise GraphError(f"{path} is not a netx file written by spikeport ({reason})",
                         "export it with `spikeport export RUN --to loihi`")
    budget.check_hdf5(path, f"the netx file {path}", "pass a netx file written by spikeport",
                      GraphError)
    try:
        with h5py.File(path, "r") as f:
            return _Reader(path).network(f)
    except GraphError:
        raise
    except Exception as e:  # h5py raises many types for a damaged file
        raise GraphError(f"{path} is not a readable netx file ({type(e).__name__})", REEXPORT) from None
