"""The ONNX target agrees with the float64 reference simulator bit for bit.

Every graph is small and seeded; every comparison is ``np.array_equal`` on every node's
values, and the spike trains compared are checked to contain spikes (and not only spikes),
so no check passes vacuously. Inputs into weighted sums are binary or dyadic (their sums
are exact in float64, the condition of bit identity across BLAS kernels); element-wise-only
graphs are also run on arbitrary float64 inputs.
"""
from __future__ import annotations

import os
from pathlib import Path

import nir
import numpy as np
import onnx
import pytest
import torch

from spikeport.exporters import onnx as ot
from spikeport.exporters import reference as ref
from spikeport.ir.program import build_program
from spikeport.exporters.targets import get_target, target_names
from spikeport.core import units
from spikeport.core.errors import GraphError

DT = 1e-4


# ----------------------------------------------------------------------------- helpers


def rng(seed=0):
    return np.random.default_rng(seed)


def f32(a):
    return np.asarray(a, dtype=np.float32)


def binary(shape, p=0.3, seed=1):
    return (rng(seed).random(shape) < p).astype(np.float64)


def dyadic(shape, seed=2, bits=4, scale=2.0):
    """Analog values on a 2^-bits grid: products with float32 weights sum exactly."""
    return np.round(rng(seed).uniform(-scale, scale, shape) * 2 ** bits) / 2 ** bits


def weights(shape, seed, std=0.5):
    return f32(rng(seed).normal(0, std, shape))


def lif(shape, beta=0.9, thr=0.5, v_leak=0.0):
    shape = tuple(np.atleast_1d(shape))
    tau = units.tau_from_decay(np.full(shape, beta), DT)
    return nir.LIF(tau=tau, r=units.unit_gain(DT / tau), v_leak=np.full(shape, v_leak),
                   v_threshold=np.full(shape, thr), v_reset=np.zeros(shape))


def li(shape, beta=0.8):
    shape = tuple(np.atleast_1d(shape))
    tau = units.tau_from_decay(np.full(shape, beta), DT)
    return nir.LI(tau=tau, r=units.unit_gain(DT / tau), v_leak=np.full(shape, 0.05))


def cuba(shape, alpha=0.6, beta=0.85, thr=0.6, spiking=True):
    shape = tuple(np.atleast_1d(shape))
    ts = units.tau_from_decay(np.full(shape, alpha), DT)
    tm = units.tau_from_decay(np.full(shape, beta), DT)
    kw = dict(tau_syn=ts, tau_mem=tm, r=units.unit_gain(DT / tm), v_leak=np.zeros(shape),
              w_in=units.unit_gain(DT / ts))
    if spiking:
        return nir.CubaLIF(v_threshold=np.full(shape, thr), v_reset=np.zeros(shape), **kw)
    return nir.CubaLI(**kw)


def chain(input_shape, *nodes, names=None, dt=DT, type_check=True):
    """input -> nodes... -> output."""
    names = names or [f"n{k}" for k in range(len(nodes))]
    all_nodes = {"input": nir.Input(input_type=np.array(input_shape))}
    all_nodes.update(dict(zip(names, nodes)))
    seq = ["input", *names]
    edges = list(zip(seq, seq[1:]))
    out_shape = None
    if type_check:
        g0 = nir.NIRGraph(nodes=dict(all_nodes), edges=list(edges), metadata={"dt": dt})
        g0.infer_types()
        out_shape = list(g0.nodes[names[-1]].output_type.values())[0]
    all_nodes["output"] = nir.Output(output_type=np.array(out_shape if out_shape is not None
                                                          else [1]))
    edges.append((names[-1], "output"))
    return nir.NIRGraph(nodes=all_nodes, edges=edges, metadata={"dt": dt}, type_check=type_check)


def compare(graph, x, dt=None, spikes=True):
    """ONNX vs reference: every node, bit for bit; returns the ONNX recording."""
    art = ot.compile(graph, {"dt": dt} if dt else None)
    onnx.checker.check_model(art.model, full_check=True)
    got = ot.run(art, x, membranes=True)
    want = ref.run_graph(graph, x, dt, membranes=True)
    program = build_program(graph, dt)
    assert list(got.values) == program.order
    assert set(got.values) == set(want.values)
    for n in want.values:
        assert got.values[n].shape == want.values[n].shape, n
        assert got.values[n].dtype == np.float64
        assert np.array_equal(got.values[n], want.values[n]), \
            f"{n}: max |diff| {np.max(np.abs(got.values[n] - want.values[n]))}"
    for n, v in got.membranes.items():  # the membranes of LIF / IF / CubaLIF (after reset)
        assert np.array_equal(v, want.membranes[n]), n
    assert got.output == want.output == program.output
    assert got.dt == want.dt
    assert got.spiking == program.spiking_nodes()
    if spikes:
        assert got.spiking, "the graph has no spiking node to check"
        for n in got.spiking:
            s = got.values[n]
            assert set(np.unique(s)) <= {0.0, 1.0}
            assert s.any(), f"{n} never spikes: the comparison would be vacuous"
            assert not s.all(), f"{n} spikes at every step"
    return got


# ----------------------------------------------------------------------------- graphs


def test_mlp_affine_lif_affine_lif():
    g = chain([12], nir.Affine(weights((24, 12), 3), weights(24, 4, 0.1)), lif(24),
              nir.Affine(weights((6, 24), 5), weights(6, 6, 0.1)), lif(6))
    compare(g, binary((40, 4, 12)))


def test_mlp_dyadic_analog_input_and_li_readout():
    g = chain([10], nir.Affine(weights((20, 10), 7), weights(20, 8, 0.1)), lif(20, thr=0.8),
              nir.Linear(weights((5, 20), 9)), li(5))
    got = compare(g, dyadic((30, 3, 10)))
    readout = got.values[got.output]
    assert np.unique(readout).size > 10  # an analog membrane trace, not spikes


@pytest.mark.parametrize("pool", ["sum", "avg"])
def test_conv_pool_cubalif_flatten_affine_lif(pool):
    w = weights((4, 2, 3, 3), 11)
    conv = nir.Conv2d(input_shape=(8, 8), weight=w, stride=1, padding=1, dilation=1, groups=1,
                      bias=weights(4, 12, 0.1))
    k = np.array([2, 2])
    p = (nir.SumPool2d(k, k, np.array([0, 0])) if pool == "sum"
         else nir.AvgPool2d(k, k, np.array([0, 0])))
    g = chain([2, 8, 8], conv, p, cuba((4, 4, 4), thr=0.4 if pool == "avg" else 0.8),
              nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0),
              nir.Affine(weights((10, 64), 13), weights(10, 14, 0.1)), lif(10, thr=0.5),
              names=["conv", "pool", "cuba", "flat", "fc", "lif"])
    compare(g, binary((20, 3, 2, 8, 8), p=0.4))


@pytest.mark.parametrize("padding,stride,dilation,groups,kernel", [
    ("same", 1, 1, 1, (3, 3)),
    ("same", 1, (2, 1), 2, (2, 3)),   # asymmetric 'same' padding, dilation, groups
    ("valid", (2, 1), 1, 1, (3, 2)),
    ((2, 1), 2, 2, 4, (3, 3)),        # depthwise, explicit padding pair
    (0, 1, 1, 2, (1, 1)),
])
def test_conv2d_options(padding, stride, dilation, groups, kernel):
    c_in, c_out = 4, 8
    conv = nir.Conv2d(input_shape=None, weight=weights((c_out, c_in // groups, *kernel), 21),
                      stride=stride, padding=padding, dilation=dilation, groups=groups,
                      bias=weights(c_out, 22, 0.2))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([c_in, 9, 7])), "conv": conv,
                            "lif": lif(1, thr=0.6), "output": nir.Output(output_type=np.array([1]))},
                     edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")],
                     metadata={"dt": DT}, type_check=False)
    got = compare(g, binary((12, 2, c_in, 9, 7), p=0.5))
    want = torch.nn.functional.conv2d(
        torch.as_tensor(binary((12, 2, c_in, 9, 7), p=0.5)[0]),
        torch.as_tensor(conv.weight, dtype=torch.float64), torch.as_tensor(conv.bias, dtype=torch.float64),
        stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert got.values["conv"].shape[2:] == tuple(want.shape[1:])  # torch agrees on the shape


def test_avgpool_with_padding_counts_the_padding():
    k = np.array([3, 3])
    g = chain([3, 7, 7], nir.AvgPool2d(k, np.array([2, 2]), np.array([1, 1])),
              nir.Scale(np.full((3, 4, 4), 2.5)), lif((3, 4, 4), thr=0.5), type_check=False)
    x = binary((15, 2, 3, 7, 7), p=0.5)
    got = compare(g, x)
    want = torch.nn.functional.avg_pool2d(torch.as_tensor(x[0]), 3, 2, 1, count_include_pad=True)
    assert np.allclose(got.values["n0"][0], want.numpy())


def test_conv1d():
    conv = nir.Conv1d(input_shape=16, weight=weights((3, 2, 3), 31), stride=1, padding=1,
                      dilation=2, groups=1, bias=weights(3, 32, 0.1))
    g = chain([2, 16], conv, nir.Flatten(input_type={"input": np.array([3, 14])}, start_dim=0), lif(42, thr=0.4),
              type_check=False)
    compare(g, binary((15, 2, 2, 16), p=0.4))


def _recurrent_graph(nested=True):
    n_in, n = 6, 12
    w_in, w_rec = weights((n, n_in), 41, 0.6), weights((n, n), 42, 0.4)
    b_in, b_rec = weights(n, 43, 0.1), weights(n, 44, 0.1)
    readout = nir.Affine(weights((3, n), 45), weights(3, 46, 0.1))
    if nested:  # the way norse writes a recurrent population: a subgraph
        rnn = nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([n])), "lif": cuba(n, thr=0.5),
                   "w_rec": nir.Affine(w_rec, b_rec), "output": nir.Output(output_type=np.array([n]))},
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
        nodes = {"input": nir.Input(input_type=np.array([n_in])), "affine": nir.Affine(w_in, b_in),
                 "rnn": rnn, "readout": readout, "li": li(3),
                 "output": nir.Output(output_type=np.array([3]))}
        edges = [("input", "affine"), ("affine", "rnn"), ("rnn", "readout"), ("readout", "li"),
                 ("li", "output")]
    else:  # snntorch's flattened form with dotted names
        nodes = {"input": nir.Input(input_type=np.array([n_in])), "affine": nir.Affine(w_in, b_in),
                 "rnn.lif": cuba(n, thr=0.5), "rnn.w_rec": nir.Affine(w_rec, b_rec),
                 "readout": readout, "li": li(3), "output": nir.Output(output_type=np.array([3]))}
        edges = [("input", "affine"), ("affine", "rnn.lif"), ("rnn.lif", "rnn.w_rec"),
                 ("rnn.w_rec", "rnn.lif"), ("rnn.lif", "readout"), ("readout", "li"),
                 ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


@pytest.mark.parametrize("nested", [True, False])
def test_recurrent_cubalif_with_biased_w_rec(nested):
    g = _recurrent_graph(nested)
    program = build_program(g)
    assert program.recurrent_edges() == [("rnn.w_rec", "rnn.lif")]
    got = compare(g, binary((40, 3, 6), p=0.4))
    art = ot.compile(g)
    prev = [s for s in art.states if s.kind == "prev"]
    assert [(s.node, s.shape) for s in prev] == [("rnn.w_rec", (12,))]
    # the recurrent input matters: without it the spike trains differ
    g2 = _recurrent_graph(nested)
    for node in (g2.nodes["rnn"].nodes["w_rec"] if nested else g2.nodes["rnn.w_rec"],):
        node.weight[:] = 0
        node.bias[:] = 0
    assert not np.array_equal(ot.run(ot.compile(g2), binary((40, 3, 6), p=0.4)).values["rnn.lif"],
                              got.values["rnn.lif"])


def test_fan_in_of_three_edges_is_summed_in_edge_order():
    n = 8
    nodes = {"input": nir.Input(input_type=np.array([5])),
             "a": nir.Affine(weights((n, 5), 51), weights(n, 52, 0.1)),
             "b": nir.Linear(weights((n, 5), 53)),
             "c": nir.Scale(np.full(5, 0.75)),
             "cl": nir.Linear(weights((n, 5), 54)),
             "lif": lif(n, thr=0.7), "w": nir.Linear(weights((n, n), 55, 0.3)),
             "output": nir.Output(output_type=np.array([n]))}
    edges = [("input", "a"), ("input", "b"), ("input", "c"), ("c", "cl"), ("a", "lif"),
             ("b", "lif"), ("cl", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    compare(g, dyadic((25, 2, 5), bits=3))


def test_if_with_gain_other_than_one_over_dt():
    n = 10
    r = np.full(n, 2345.0)  # g = dt * r = 0.2345, not 1
    g = chain([7], nir.Affine(weights((n, 7), 61), weights(n, 62, 0.1)),
              nir.IF(r=r, v_threshold=np.full(n, 0.9), v_reset=np.full(n, -0.125)))
    compare(g, binary((40, 3, 7), p=0.5))
    assert units.if_gain(r, DT)[0] != 1.0


def test_i_and_cubali_and_threshold_on_arbitrary_float64_inputs():
    """Element-wise nodes only: bit identity holds for any input, not just exact sums."""
    x = rng(71).normal(0, 1.5, (30, 4, 6))
    g = chain([6], nir.Scale(rng(72).normal(1, 0.3, 6)), nir.I(r=np.full(6, 777.0)),
              nir.Threshold(np.full(6, 0.3)), names=["scale", "integrator", "thr"])
    compare(g, x)
    g = chain([6], cuba(6, spiking=False), names=["cubali"])
    got = compare(g, x, spikes=False)
    assert np.unique(got.values["cubali"]).size > 100
    g = chain([6], lif(6, thr=0.4, v_leak=0.1), names=["lif"])
    compare(g, x)
    g = chain([6], cuba(6, thr=0.3), names=["cubalif"])
    compare(g, x)


def test_delay_buffers():
    n = 6
    nodes = {"input": nir.Input(input_type=np.array([4])),
             "a": nir.Affine(weights((n, 4), 81), weights(n, 82, 0.1)),
             "d3": nir.Delay(np.full(n, 3 * DT)), "d1": nir.Delay(np.full(n, 1 * DT)),
             "d0": nir.Delay(np.full(n, 0.0)),
             "lif": lif(n, thr=0.6), "output": nir.Output(output_type=np.array([n]))}
    edges = [("input", "a"), ("a", "d3"), ("a", "d1"), ("a", "d0"), ("d3", "lif"),
             ("d1", "lif"), ("d0", "lif"), ("lif", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    got = compare(g, binary((20, 2, 4), p=0.5))
    assert np.array_equal(got.values["d3"][3:], got.values["a"][:-3])
    assert not got.values["d3"][:3].any()
    assert sorted((s.node, s.shape) for s in ot.compile(g).states if s.kind == "delay") == \
        [("d1", (1, n)), ("d3", (3, n))]


def test_graph_without_dt_metadata_reads_if_as_per_step_gain():
    n = 5
    nodes = {"input": nir.Input(input_type=np.array([4])),
             "a": nir.Affine(weights((n, 4), 95), weights(n, 96, 0.1)),
             "if": nir.IF(r=np.ones(n), v_threshold=np.full(n, 1.5)),
             "output": nir.Output(output_type=np.array([n]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "if"), ("if", "output")])
    with pytest.warns(UserWarning, match="no dt"):
        compare(g, binary((30, 2, 4), p=0.5))


def test_dt_option_overrides_metadata():
    g = chain([6], nir.Affine(weights((6, 6), 91), weights(6, 92, 0.1)),
              nir.LIF(tau=np.full(6, 5e-3), r=np.full(6, 30.0), v_leak=np.zeros(6),
                      v_threshold=np.full(6, 0.3), v_reset=np.zeros(6)))
    got = compare(g, binary((20, 2, 6), p=0.5), dt=2e-4)
    assert got.dt == 2e-4


# ----------------------------------------------------------------------------- errors


class Gain(nir.Scale):
    """A made-up node type that no target knows."""


def test_unsupported_node_is_refused_naming_it():
    g = chain([4], Gain(np.ones(4)), lif(4), names=["gain", "lif"], type_check=False)
    with pytest.raises(GraphError) as e:
        ot.compile(g)
    msg = str(e.value)
    assert "'gain'" in msg and "Gain" in msg and "onnx" in msg
    for name in ("LIF", "CubaLIF", "Conv2d", "Affine", "AvgPool2d"):
        assert name in e.value.fix
    with pytest.raises(GraphError):
        get_target("onnx").compile(g, {})


def test_wrong_input_shape_is_refused():
    art = ot.compile(chain([4], lif(4)))
    with pytest.raises(GraphError, match=r"\(T, B, 4\)"):
        ot.run(art, np.zeros((3, 4)))


def test_builders_cover_every_reference_kernel():
    assert set(ref.KERNELS.names()) <= set(ot.BUILDERS.names())
    for entry in ot.BUILDERS.entries():
        assert entry.summary


def test_registered_as_target():
    assert "onnx" in target_names()
    t = get_target("onnx")
    assert t.supported() == ot.BUILDERS.names()
    assert t.exactness == "bit-identical to reference (float64)"
    assert set(t.profiles) == {"cpu", "gpu", "ann-45nm"}
    g = chain([5], nir.Affine(weights((7, 5), 101), weights(7, 102, 0.1)), lif(7))
    x = binary((10, 2, 5), p=0.5)
    rec = t.run(t.compile(g, {}), x)
    want = get_target("reference").run(get_target("reference").compile(g, {}), x)
    for n in want.values:
        assert np.array_equal(rec.values[n], want.values[n])


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path: Path):
    g = _recurrent_graph(nested=True)
    art = ot.compile(g)
    path = ot.save(art, tmp_path / "sub" / "model.onnx")
    assert sorted(os.listdir(path.parent)) == ["model.onnx"]  # no temporary file left behind
    back = ot.load(path)
    assert back.metadata() == art.metadata()
    x = binary((25, 2, 6), p=0.4)
    a, b = ot.run(art, x), ot.run(back, x)
    for n in a.values:
        assert np.array_equal(a.values[n], b.values[n])
    assert (b.output, b.spiking, b.dt) == (a.output, a.spiking, a.dt)
    # the .onnx alone is a valid model for any ONNX tool
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def test_load_refuses_foreign_or_broken_files(tmp_path: Path):
    with pytest.raises(GraphError, match="not found"):
        ot.load(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\x00 not protobuf")
    with pytest.raises(GraphError):
        ot.load(bad)
    plain = ot.compile(chain([3], lif(3))).model
    del plain.metadata_props[:]
    (tmp_path / "plain.onnx").write_bytes(plain.SerializeToString())
    with pytest.raises(GraphError, match="not a spikeport ONNX artifact"):
        ot.load(tmp_path / "plain.onnx")


# ----------------------------------------------------------------------------- project models


def _scaled(model, factor):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(factor)
    return model


@pytest.mark.parametrize("arch,params,factor", [
    ("mlp", dict(hidden=[32], threshold=0.5), 4.0),
    ("mlp", dict(hidden=[16, 16], neuron="cuba", threshold=0.5), 4.0),
    ("conv", dict(channels=[4], pool="avg", threshold=0.5), 6.0),
    ("conv", dict(channels=[4, 4], pool="sum", neuron="cuba", threshold=0.5), 3.0),
])
def test_project_models_export_to_onnx(arch, params, factor):
    from spikeport.models.export import export_model
    from spikeport.models import build_model

    torch.manual_seed(0)
    model = _scaled(build_model(arch, (1, 8, 8), 10, **params), factor)
    graph = export_model(model, (1, 8, 8))
    got = compare(graph, binary((25, 4, 1, 8, 8), p=0.3, seed=5))
    assert got.values[got.output].shape == (25, 4, 10)


# ----------------------------------------------------------------------------- neuron steps


def _taus(g, n):
    return DT * g.uniform(1.5, 40.0, n)


# Per-neuron random parameters, non-zero leaks and reset values: every coefficient matters.
RANDOM_NEURONS = {
    "LIF": lambda g, n: nir.LIF(tau=_taus(g, n), r=g.uniform(0.5, 3, n), v_leak=g.normal(0, .2, n),
                                v_threshold=g.uniform(.3, 1, n), v_reset=g.normal(0, .2, n)),
    "LI": lambda g, n: nir.LI(tau=_taus(g, n), r=g.uniform(0.5, 3, n), v_leak=g.normal(0, .2, n)),
    "IF": lambda g, n: nir.IF(r=g.uniform(0.1, 1, n) / DT, v_threshold=g.uniform(.5, 2, n),
                              v_reset=g.normal(0, .2, n)),
    "I": lambda g, n: nir.I(r=g.uniform(0.1, 1, n) / DT),
    "CubaLIF": lambda g, n: nir.CubaLIF(
        tau_syn=_taus(g, n), tau_mem=_taus(g, n), r=g.uniform(0.5, 3, n), v_leak=g.normal(0, .2, n),
        v_threshold=g.uniform(.3, 1, n), v_reset=g.normal(0, .2, n), w_in=g.uniform(0.5, 3, n)),
    "CubaLI": lambda g, n: nir.CubaLI(tau_syn=_taus(g, n), tau_mem=_taus(g, n),
                                      r=g.uniform(0.5, 3, n), v_leak=g.normal(0, .2, n),
                                      w_in=g.uniform(0.5, 3, n)),
}


def test_every_neuron_type_has_a_random_case():
    from spikeport.ir import neurons
    assert sorted(RANDOM_NEURONS) == neurons.NEURONS.names()


@pytest.mark.parametrize("kind", sorted(RANDOM_NEURONS))
def test_neuron_step_is_bit_identical_on_numpy_torch_and_onnx(kind):
    """One step function of spikeport.ir.neurons, three backends: the outputs and every state
    agree bit for bit at every step, on arbitrary float64 inputs (element-wise arithmetic
    only, so no exactness condition on the inputs is needed)."""
    from spikeport.exporters.snntorch import ExplicitNeuron
    from spikeport.ir import neurons

    g = rng(sorted(RANDOM_NEURONS).index(kind))
    n, T, B = 9, 40, 3
    node = RANDOM_NEURONS[kind](g, n)
    model, p = neurons.model_of(node), neurons.params_of(node, DT)
    x = g.normal(0.3, 1.5, (T, B, n))

    state, want = tuple(np.zeros((B, n)) for _ in model.states), []
    for t in range(T):
        out, state = model.step(p, x[t], state, neurons.NUMPY)
        want.append((out, state))

    m = ExplicitNeuron(model, p)  # the torch backend of the same step
    st = m.init(torch.zeros(B, n, dtype=torch.float64))
    for t in range(T):
        out, st = m.step(torch.from_numpy(x[t]), st)
        assert np.array_equal(out.numpy(), want[t][0]), (kind, t)
        assert all(np.array_equal(a.numpy(), b) for a, b in zip(st, want[t][1])), (kind, t)

    art = ot.compile(chain([n], node))
    assert [s.kind for s in art.states] == list(model.states)
    ops = {nd.op_type for nd in art.model.graph.node if nd.name.startswith("n0__")}
    assert ops <= {"Mul", "Add", "Greater", "Cast", "Where"}  # one node per operation, none fused
    sess = ot.session(art)
    names = [art.values["n0"]] + [s.output for s in art.states]
    feed = {s.input: np.zeros((B, *s.shape)) for s in art.states}
    for t in range(T):
        out, *new = sess.run(names, {art.input_name: x[t], **feed})
        assert np.array_equal(out, want[t][0]), (kind, t)
        assert all(np.array_equal(a, b) for a, b in zip(new, want[t][1])), (kind, t)
        feed = {s.input: a for s, a in zip(art.states, new)}

    if model.spiking:  # not vacuous: spikes, silences and resets to the non-zero v_reset
        z = np.stack([o for o, _ in want])
        assert 0 < z.mean() < 1, z.mean()
