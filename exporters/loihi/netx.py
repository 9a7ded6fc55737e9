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

import h5py
import numpy as np

from spikeport.exporters.loihi.quantize import LayerReport, LoihiLayer, LoihiNetwork
from spikeport.core.errors import GraphError
from spikeport.core.io import atomic_write

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


def _str(v) -> str:
    v = v[()] if isinstance(v, h5py.Dataset) else v
    return v.decode() if isinstance(v, bytes) else str(v)


def read(path: str | Path) -> LoihiNetwork:
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"netx file not found: {path}", "export it with `spikeport export RUN --to loihi`")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("spikeport_format") != FORMAT:
                raise GraphError(f"{path} was not written by spikeport's netx writer",
                                 "export it with `spikeport export RUN --to loihi`")
            names = json.loads(f.attrs["layer_names"])
            reports = [LayerReport(**r) for r in json.loads(f.attrs["report"])]
            layers = []
            groups = [f["layer"][str(k)] for k in range(1, len(f["layer"]))]
            groups = [g for g in groups if _str(g["type"]) != "flatten"]
            for (name, syn, rec_syn), g in zip(names, groups):
                n = g["neuron"]
                w = np.asarray(g["weight"], dtype=np.int64)
                conv = None
                if _str(g["type"]) == "conv":
                    conv = {key: tuple(int(v) for v in np.asarray(g[key])) for key in
                            ("stride", "padding", "dilation")}
                    conv["groups"] = int(g["groups"][()])
                layers.append(LoihiLayer(
                    name=name, synapse=syn, shape=tuple(int(v) for v in np.asarray(g["shape"])),
                    weight=w, conv=conv,
                    i_decay=int(n["iDecay"][()]), v_decay=int(n["vDecay"][()]),
                    v_th_mant=int(n["vThMant"][()]),
                    bias_mant=(np.asarray(g["bias"], dtype=np.int64) if "bias" in g
                               else np.zeros(w.shape[0], np.int64)),
                    weight_rec=(np.asarray(g["weight_rec"], dtype=np.int64)
                                if _str(g["type"]) == "dense_rec" else None),
                    rec_synapse=rec_syn))
            for i in range(1, len(layers)):
                layers[i].flatten_before = layers[i].conv is None and layers[i - 1].conv is not None
            return LoihiNetwork(tuple(int(v) for v in f.attrs["input_shape"]), layers, reports,
                                float(f.attrs["dt"]), json.loads(f.attrs["approximations"]))
    except GraphError:
        raise
    except Exception as e:
        raise GraphError(f"{path} is not a readable netx file ({type(e).__name__})",
                         "export it again with `spikeport export RUN --to loihi`") from None
