"""loihi-emu: a batched emulator of Lava's fixed-point CUBA arithmetic.

It reproduces, bit for bit, what Lava's CPU simulator computes for a netx network written
by :mod:`spikeport.exporters.loihi.netx` (``Loihi2SimCfg(select_tag="fixed_pt")``): integer weight
sums of binary spikes, the current and voltage updates with right shifts toward zero, the
decay offset of netx (du = iDecay - 1, plus Lava's ds_offset 1), the 24-bit wrap of u and
saturation of v, the strict threshold on vThMant << 6 and the reset of v to 0: the step of
:mod:`spikeport.exporters.loihi.fixed_point`. It runs on the model's time axis: Lava's
one-step delay per Dense (SEMANTICS.md 8) only shifts layer l by l steps, which the Lava
target removes when it cuts its recording into samples; the pipeline latency is reported
separately.

All samples of a batch run at once with numpy int64; state starts at zero for every sample.
"""
from __future__ import annotations

import numpy as np

from spikeport.exporters.loihi.fixed_point import HALF, cuba_step, state_of
from spikeport.exporters.loihi.quantize import LoihiNetwork
from spikeport.exporters.reference import conv2d
from spikeport.core.errors import GraphError
from spikeport.core.recording import Recording
from spikeport.ir.program import check_input


def check_spikes(net: LoihiNetwork, x, step_bytes: int = 0, sample_bytes: int = 0) -> np.ndarray:
    """``x`` checked as the input of a Loihi target (:func:`check_input`: shape (T, B,
    *input_shape), finite, within the memory budget) and binary: Loihi takes spikes."""
    x = check_input(x, net.input_shape, step_bytes, sample_bytes)
    if not np.all((x == 0) | (x == 1)):
        raise GraphError("the Loihi targets take binary input spikes, got analog values",
                         "use a spiking encoder (rate, latency or delta), not direct analog input")
    return x


def run(net: LoihiNetwork, x: np.ndarray, membranes: bool = False,
        activity: bool = False) -> Recording:
    """x (T, B, *input_shape) binary spikes -> Recording of every population's spikes.

    ``activity``: also record, per (step, neuron), whether the update had work to do --
    non-zero input (synaptic or bias) or non-zero state (current or voltage) before the
    update (ENERGY.md 1.5) -- in ``Recording.active``, for the estimator."""
    sizes = sum(layer.size for layer in net.layers)
    # per step and sample: the weight sums, the spikes and their float copy (8 bytes each),
    # and the windows of the convolutions, which run over every step at once
    windows = sum(8 * layer.weight[0].size * layer.conv["groups"] * layer.size // layer.shape[0]
                  for layer in net.layers if layer.conv is not None)
    x = check_spikes(net, x, 3 * 8 * sizes + windows, 2 * 8 * sizes)
    T, B = x.shape[:2]
    s = x.astype(np.int64)  # (T, B, *input_shape)
    values, mems, active = {}, {}, {}
    for layer in net.layers:
        if layer.conv is not None:
            c = layer.conv
            flat_in = s.reshape(T * B, *s.shape[2:])
            a_ff = conv2d(flat_in, layer.weight, np.zeros(layer.weight.shape[0], np.int64),
                          c["stride"], c["padding"], c["dilation"], c["groups"])
            a_ff = np.clip(a_ff, -HALF, HALF - 1).reshape(T, B, *layer.shape)  # Lava's 24-bit a
            bias = state_of(layer.bias_mant).reshape(-1, 1, 1)
        else:
            a_ff = s.reshape(T, B, -1) @ layer.weight.T  # (T, B, N): one integer sum per step
            bias = state_of(layer.bias_mant)
        shape = tuple(layer.shape)
        u = np.zeros((B, *shape), np.int64)
        v = np.zeros((B, *shape), np.int64)
        vth = state_of(layer.v_th_mant)
        out = np.zeros((T, B, *shape), np.int64)
        vs = np.zeros((T, B, *shape), np.int64) if membranes else None
        act = np.zeros((T, B, *shape), bool) if activity else None
        has_bias = np.broadcast_to(bias != 0, shape) if activity else None
        prev = np.zeros((B, *shape), np.int64)
        for t in range(T):
            a = a_ff[t]
            if layer.weight_rec is not None:
                a = a + prev @ layer.weight_rec.T  # recurrent Dense: previous step's spikes
            if activity:
                act[t] = (a != 0) | (u != 0) | (v != 0) | has_bias
            z, u, v = cuba_step(u, v, a, bias, layer.i_decay, layer.v_decay, vth)
            out[t] = z
            prev = out[t]
            if membranes:
                vs[t] = v
        values[layer.name] = out.astype(np.float64)
        if membranes:
            mems[layer.name] = vs
        if activity:
            active[layer.name] = act
        s = out
    spiking = [l.name for l in net.layers]
    return Recording(values, net.output, spiking, net.dt, mems, active=active)
