"""Loihi core and chip mapping (spikeport.exporters.loihi.mapping): the synapse enumeration
against a brute-force one, the synaptic-memory format worked out by hand, layers split by
each limit, and a layer over one core's limits still bit-exact between loihi-emu and Lava."""
from __future__ import annotations

import nir
import numpy as np
import pytest

from spikeport.core.errors import ExportError
from spikeport.exporters.loihi.mapping import (CHIPS, _bits, _conv_synapses, map_network)
from spikeport.exporters.loihi.quantize import LoihiLayer, LoihiNetwork
from spikeport.exporters.reference import conv2d
from spikeport.exporters.targets import get_target


def layer(name, weight, shape=None, rec=None, conv=None):
    w = np.asarray(weight, dtype=np.int64)
    shape = shape or (w.shape[0],)
    n = int(np.prod(shape))
    return LoihiLayer(name, name + "_syn", tuple(shape), w, 0, 0, 100, np.zeros(n, np.int64),
                      weight_rec=None if rec is None else np.asarray(rec, np.int64), conv=conv)


def net(input_shape, *layers):
    return LoihiNetwork(tuple(input_shape), list(layers), [], 1e-3)


@pytest.mark.parametrize("stride, padding, dilation, groups", [
    ((1, 1), (1, 1), (1, 1), 1), ((2, 2), (1, 1), (1, 1), 1), ((1, 2), (0, 2), (2, 1), 1),
    ((1, 1), "same", (1, 1), 2), ((2, 1), (2, 0), (1, 2), 4)])
def test_conv_synapses_are_exactly_the_non_zero_entries_of_the_dense_matrix(
        stride, padding, dilation, groups):
    rng = np.random.default_rng(3)
    C, H, W, O = 4, 7, 6, 8
    w = rng.integers(-3, 4, (O, C // groups, 3, 3))
    w[rng.random(w.shape) < 0.3] = 0
    conv = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    # brute force: the response of the convolution to every one-hot input is a matrix column
    eye = np.eye(C * H * W).reshape(-1, C, H, W)
    out = conv2d(eye, w.astype(float), np.zeros(O), stride, padding, dilation, groups)
    dense = out.reshape(C * H * W, -1).T  # (post, pre)
    post, pre = _conv_synapses(w, conv, (C, H, W), out.shape[1:])
    expect = set(zip(*np.nonzero(dense)))
    assert len(post) == len(expect) > 0
    assert set(zip(post.tolist(), pre.tolist())) == expect


def test_synaptic_memory_follows_the_block_format_worked_out_by_hand():
    # 64 synapses on a 1,024-compartment core: 64 x (8 weight + 10 index) + 10 header bits
    # = 1,162 bits -> 19 words of 64 = 1,216; a 65th synapse opens a block of 1 x 18 + 10 -> 64
    assert _bits(np.array([64, 65]), 1024).tolist() == [1216, 1280]
    # an axon that reaches every compartment is stored dense: no index bits (32 x 8 + 10 -> 320)
    assert _bits(np.array([32]), 32).tolist() == [320]
    assert _bits(np.array([31]), 32).tolist() == [64 * -(-(31 * (8 + 6) + 10) // 64)]


def test_a_small_network_takes_one_core_per_layer_and_counts_what_it_uses():
    w1 = np.ones((16, 64), np.int64)
    w1[:, :10] = 0                     # inputs 0..9 reach nothing: no input axon for them
    w2 = np.ones((10, 16), np.int64)
    m = map_network(net((64,), layer("h", w1), layer("o", w2)))
    h, o = m.layers
    assert (h.cores, h.compartments, h.input_axons, h.output_axons) == (1, 16, 54, 16)
    assert (o.cores, o.input_axons, o.output_axons) == (1, 16, 0)  # output leaves the chip
    assert h.synapses == 16 * 54 and h.decided_by == "none"
    assert m.cores == 2 and m.chips == 1
    assert m.as_dict()["utilisation"]["compartments"] == 16 / 1024


def test_compartments_split_a_large_layer_into_equal_slices():
    m = map_network(net((8,), layer("big", np.ones((2500, 8)))))
    (big,) = m.layers
    assert big.cores == 3 and big.compartments == 834 and big.decided_by == "compartments"


def test_synaptic_memory_splits_a_dense_layer_where_the_hand_count_says():
    # 1,024 neurons, fan-in 3,000, all weights non-zero. With s neurons per core every axon
    # is dense: 3,000 x ceil((s x 8 + 10) / 64) words. s = 64: 3,000 x 9 x 64 = 1,728,000
    # bits > 1,048,576; s = 32: 3,000 x 5 x 64 = 960,000 bits, fits -> 32 cores
    m = map_network(net((3000,), layer("wide", np.ones((1024, 3000)))))
    (wide,) = m.layers
    assert wide.cores == 32 and wide.decided_by == "synapse_bits"
    assert wide.synapse_bits == 960_000 and wide.input_axons == 3000


def test_output_axons_split_the_layer_before_a_layer_spread_over_many_cores():
    # the second layer (fan-in 1,024, dense) fits 64 neurons a core: 1,024 axons x 9 words x
    # 64 bits = 589,824 (128 would take 17 words: 1,114,112 > 1,048,576) -> 32 cores. Every
    # neuron of the first layer then reaches 32 cores: 4,096 output axons hold 128 of them
    # a core -> 8 cores, where compartments alone would need one
    rng = np.random.default_rng(0)
    first = layer("first", rng.integers(1, 3, (1024, 16)))
    second = layer("second", np.ones((2048, 1024)))
    f, s = map_network(net((16,), first, second)).layers
    assert (s.cores, s.decided_by, s.synapse_bits) == (32, "synapse_bits", 589_824)
    assert (f.cores, f.decided_by, f.output_axons) == (8, "output_axons", 4096)


def test_recurrent_synapses_add_input_and_output_axons():
    w = np.ones((100, 20), np.int64)
    rec = np.eye(100, dtype=np.int64) * 2
    (r,) = map_network(net((20,), layer("r", w, rec=rec))).layers
    assert r.input_axons == 120 and r.output_axons == 100 and r.synapses == 2000 + 100


def test_a_neuron_beyond_one_core_is_refused_with_the_reason():
    with pytest.raises(ExportError, match="input axons.*limit is 4096"):
        map_network(net((5000,), layer("huge", np.ones((4, 5000)))))


def test_loihi2_limits_are_marked_as_assumptions_where_unpublished():
    m = map_network(net((8,), layer("big", np.ones((2500, 8)))), "loihi2")
    assert m.layers[0].cores == 1 and m.as_dict()["assumptions"]
    assert not CHIPS["loihi"].assumptions


@pytest.mark.lava
def test_a_layer_over_one_cores_limits_is_split_and_still_bit_exact_with_lava():
    """1,300 hidden neurons need two Loihi cores; the split is a placement, and the netx file
    Lava runs and the emulator still agree spike for spike."""
    rng = np.random.default_rng(5)
    n_in, n_h, n_out, dt = 12, 1300, 5, 1e-4

    def lif(n, thr):
        return nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                       v_threshold=np.full(n, thr), v_reset=np.zeros(n))

    nodes = {"input": nir.Input(input_type=np.array([n_in])),
             "fc1": nir.Affine(rng.normal(0, 0.6, (n_h, n_in)), rng.normal(0, 0.05, n_h)),
             "hidden": lif(n_h, 0.5),
             "fc2": nir.Affine(rng.normal(0, 0.1, (n_out, n_h)), np.zeros(n_out)),
             "out": lif(n_out, 0.5), "output": nir.Output(output_type=np.array([n_out]))}
    names = list(nodes)
    g = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])),
                     metadata={"dt": dt}, type_check=False)
    emu, lava = get_target("loihi-emu"), get_target("lava")
    compiled = emu.compile(g, {})
    assert [m.cores for m in map_network(compiled).layers] == [2, 1]
    x = (rng.random((20, 3, n_in)) < 0.4).astype(float)
    a, b = emu.run(compiled, x), lava.run(lava.compile(g, {}), x)
    for node in a.spiking:
        assert 0 < a.values[node].mean() < 0.95, node
        np.testing.assert_array_equal(a.values[node], b.values[node])
