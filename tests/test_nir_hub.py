"""NIR hub: golden cases per node type and per network on every float target, round trips
model -> NIR -> torch and write -> read, foreign-style graphs, and clear refusals."""
import math
from dataclasses import dataclass

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from spikeport.models.export import export_model
from spikeport.exporters.snntorch import import_graph
from spikeport.exporters.reference import run_graph
from spikeport.exporters.targets import get_target, target_names
from spikeport.models import build_model, record
from spikeport.core import units
from spikeport.core.errors import ExportError, GraphError

FLOAT_TARGETS = [t for t in ("reference", "snntorch", "onnx") if t in target_names()]
DT = 1e-4


def graph_of(*chain, dt=DT, shape=None):
    """input -> chain... -> output, with our metadata."""
    nodes = {"input": nir.Input(input_type=np.array(shape))}
    edges, prev = [], "input"
    for i, node in enumerate(chain):
        nodes[f"n{i}"] = node
        edges.append((prev, f"n{i}"))
        prev = f"n{i}"
    nodes["output"] = nir.Output(output_type=np.array([1]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt}, type_check=False)


def run_all(graph, x):
    out = {}
    for name in FLOAT_TARGETS:
        t = get_target(name)
        out[name] = t.run(t.compile(graph, {}), x)
    return out


def assert_all_targets_equal(graph, x, exact=True):
    """Every node equal on every target. Bit-exact when parameters are float32 values and
    inputs binary (all weighted sums are then exact in float64, whatever the summation
    order); with analog inputs sums may round differently, so values get a 1e-12 tolerance."""
    recs = run_all(graph, x)
    ref = recs["reference"]
    for name, rec in recs.items():
        for n in ref.values:
            if exact or n in ref.spiking:
                np.testing.assert_array_equal(rec.values[n], ref.values[n], err_msg=f"{name}: {n}")
            else:
                np.testing.assert_allclose(rec.values[n], ref.values[n], rtol=1e-12, atol=1e-12,
                                           err_msg=f"{name}: {n}")
        assert rec.spiking == ref.spiking
    return ref


def f32(a):
    """Parameters as float32 values (what trained models hold), stored as float64."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def col(*v):
    """A (T, 1, 1) input from a list of per-step values."""
    return np.array(v, dtype=np.float64).reshape(-1, 1, 1)


def test_float_targets_are_registered():
    assert {"reference", "snntorch"} <= set(FLOAT_TARGETS)


# ---------------------------------------------------------------- golden: one node each
# Each expected train is worked out by hand from SEMANTICS.md 2.2 in the comment beside it.

def test_golden_lif():
    # tau = 2 dt -> d = 0.5; r = 2 -> g = r * dt/tau = 1; v_th = 1
    g = graph_of(nir.LIF(tau=np.array([2 * DT]), r=np.array([2.0]), v_leak=np.array([0.0]),
                         v_threshold=np.array([1.0]), v_reset=np.array([0.0])), shape=[1])
    ref = assert_all_targets_equal(g, col(0.6, 0.7, 1.0, 0.2, 0.9))
    # v: 0.6; 0.3+0.7 = 1.0 (not > 1); 0.5+1.0 = 1.5 spike -> 0; 0.2; 0.1+0.9 = 1.0 (no)
    assert ref.values["n0"][:, 0, 0].tolist() == [0, 0, 1, 0, 0]


def test_golden_lif_leak_and_nonzero_reset():
    # d = 0.5, g = 1, l = b * v_leak = 0.5 * 1.0; v_reset = 0.25
    g = graph_of(nir.LIF(tau=np.array([2 * DT]), r=np.array([2.0]), v_leak=np.array([1.0]),
                         v_threshold=np.array([1.0]), v_reset=np.array([0.25])), shape=[1])
    ref = assert_all_targets_equal(g, col(0.0, 0.0, 0.0, 0.5))
    # v: 0.5; 0.25+0.5 = 0.75; 0.375+0.5 = 0.875; 0.4375+0.5+0.5 = 1.4375 spike -> 0.25
    assert ref.values["n0"][:, 0, 0].tolist() == [0, 0, 0, 1]


def test_golden_if_and_i():
    # IF with our dt metadata: gain = dt * r = 0.5
    g = graph_of(nir.IF(r=np.array([0.5 / DT]), v_threshold=np.array([1.0]), v_reset=np.array([0.0])),
                 shape=[1])
    ref = assert_all_targets_equal(g, col(1, 1, 1, 1, 1))
    # v: 0.5, 1.0 (no), 1.5 spike -> 0, 0.5, 1.0 (no)
    assert ref.values["n0"][:, 0, 0].tolist() == [0, 0, 1, 0, 0]
    gi = graph_of(nir.I(r=np.array([0.5 / DT])), shape=[1])
    ref = assert_all_targets_equal(gi, col(1, 2, 0))
    assert ref.values["n0"][:, 0, 0].tolist() == [0.5, 1.5, 1.5]


def test_golden_li_and_cubali_membranes():
    g = graph_of(nir.LI(tau=np.array([2 * DT]), r=np.array([2.0]), v_leak=np.array([0.0])), shape=[1])
    ref = assert_all_targets_equal(g, col(1, 0, 0))
    assert ref.values["n0"][:, 0, 0].tolist() == [1.0, 0.5, 0.25]
    # a = b = 0.5, w_in = 2 -> g_i = 1; r = 2 -> g_v = 1
    cli = nir.CubaLI(tau_syn=np.array([2 * DT]), tau_mem=np.array([2 * DT]), r=np.array([2.0]),
                     v_leak=np.array([0.0]), w_in=np.array([2.0]))
    ref = assert_all_targets_equal(graph_of(cli, shape=[1]), col(1, 0, 0))
    # i: 1, 0.5, 0.25; v: 1, 0.5+0.5 = 1, 0.5+0.25 = 0.75
    assert ref.values["n0"][:, 0, 0].tolist() == [1.0, 1.0, 0.75]


def test_golden_cubalif_current_feeds_voltage_and_is_not_reset():
    c = nir.CubaLIF(tau_syn=np.array([2 * DT]), tau_mem=np.array([2 * DT]), r=np.array([2.0]),
                    v_leak=np.array([0.0]), v_threshold=np.array([1.2]), v_reset=np.array([0.0]),
                    w_in=np.array([2.0]))
    ref = assert_all_targets_equal(graph_of(c, shape=[1]), col(1, 0, 0, 0))
    # i: 1, 0.5, 0.25, 0.125; v: 1, 1.0 (0.5+0.5), 0.75... no spike at 1.0 <= 1.2
    assert ref.values["n0"][:, 0, 0].tolist() == [0, 0, 0, 0]
    ref = assert_all_targets_equal(graph_of(c, shape=[1]), col(1, 1, 0, 0))
    # i: 1, 1.5, 0.75; v: 1, 0.5+1.5 = 2 spike -> 0, 0.75 -> no
    assert ref.values["n0"][:, 0, 0].tolist() == [0, 1, 0, 0]


def test_golden_affine_linear_scale_threshold():
    w = np.array([[1.0, -2.0], [0.5, 0.25]])
    b = np.array([0.1, -0.1])
    g = graph_of(nir.Affine(w, b), nir.Scale(np.array([2.0, -1.0])),
                 nir.Threshold(np.array([0.0, -0.2])), shape=[2])
    x = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    ref = assert_all_targets_equal(g, x)
    np.testing.assert_allclose(ref.values["n0"][:, 0], [[1.1, 0.4], [-1.9, 0.15], [-0.9, 0.65]])
    np.testing.assert_allclose(ref.values["n1"][:, 0], [[2.2, -0.4], [-3.8, -0.15], [-1.8, -0.65]])
    assert ref.values["n2"][:, 0].tolist() == [[1, 0], [0, 1], [0, 0]]
    gl = graph_of(nir.Linear(w), shape=[2])
    np.testing.assert_allclose(assert_all_targets_equal(gl, x).values["n0"][:, 0],
                               [[1, 0.5], [-2, 0.25], [-1, 0.75]])


def test_golden_conv_pool_flatten():
    w = np.zeros((1, 1, 3, 3))
    w[0, 0, 1, 1] = 1.0
    w[0, 0, 0, 0] = 0.5
    conv = nir.Conv2d(input_shape=np.array([4, 4]), weight=w, stride=1, padding=1, dilation=1,
                      groups=1, bias=np.array([0.0]))
    g = graph_of(conv, nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
                 nir.Flatten(input_type={"input": np.array([1, 2, 2])}, start_dim=0, end_dim=-1),
                 shape=[1, 4, 4])
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 1, 4, 4)
    ref = assert_all_targets_equal(g, x)
    # y[i, j] = x[i, j] + 0.5 * x[i-1, j-1] (zero outside)
    xi = np.arange(16.0).reshape(4, 4)
    y = xi.copy()
    y[1:, 1:] += 0.5 * xi[:-1, :-1]
    np.testing.assert_allclose(ref.values["n0"][0, 0, 0], y)
    pooled = y.reshape(2, 2, 2, 2).sum((1, 3))
    np.testing.assert_allclose(ref.values["n2"][0, 0], pooled.reshape(-1))
    ga = graph_of(conv, nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])), shape=[1, 4, 4])
    np.testing.assert_allclose(assert_all_targets_equal(ga, x).values["n1"][0, 0, 0], pooled / 4)


def test_golden_conv_stride_dilation_groups_against_torch():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 1, 3, 3))
    conv = nir.Conv2d(input_shape=np.array([7, 7]), weight=w, stride=(2, 1), padding=(1, 2),
                      dilation=(1, 2), groups=2, bias=rng.normal(size=4))
    x = rng.normal(size=(2, 3, 2, 7, 7))
    ref = assert_all_targets_equal(graph_of(conv, shape=[2, 7, 7]), x, exact=False)
    expected = torch.nn.functional.conv2d(torch.tensor(x[1]), torch.tensor(w), torch.tensor(conv.bias),
                                          stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    np.testing.assert_allclose(ref.values["n0"][1], expected.numpy(), rtol=1e-12, atol=1e-12)


def test_golden_delay_on_reference_and_snntorch():
    g = graph_of(nir.Delay(np.array([2 * DT])), shape=[1])
    for name in ("reference", "snntorch"):
        t = get_target(name)
        rec = t.run(t.compile(g, {}), col(1, 2, 3, 4))
        assert rec.values["n0"][:, 0, 0].tolist() == [0, 0, 1, 2]


# ---------------------------------------------------------------- networks

def _spiky(model, gain=4.0):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(gain)
    return model


@pytest.mark.parametrize("arch, kw, shape", [
    ("mlp", {"hidden": [24, 12], "neuron": "lif"}, (1, 8, 8)),
    ("mlp", {"hidden": [16], "neuron": "cuba", "alpha": 0.6, "beta": 0.8}, (1, 8, 8)),
    ("conv", {"channels": [4, 6], "pool": "sum", "dense": [10]}, (1, 8, 8)),
    ("conv", {"channels": [3], "pool": "avg", "neuron": "cuba"}, (2, 6, 6)),
])
def test_model_to_nir_to_every_target_gives_identical_spikes(arch, kw, shape):
    torch.manual_seed(0)
    model = _spiky(build_model(arch, shape, 5, threshold=0.5, **kw)).double()
    x = (torch.rand(8, 6, *shape, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    with torch.no_grad(), record(model) as rec:
        model(x)
    graph = export_model(model, shape)
    recs = run_all(graph, x.numpy())
    for target, r in recs.items():
        assert len(r.spiking) == len(rec)
        for node, (name, spikes) in zip(r.spiking, rec.items()):
            np.testing.assert_array_equal(r.values[node], spikes.numpy(), err_msg=f"{target} {node}")
            assert spikes.sum() > 0, f"{name} never spikes: the comparison would be vacuous"


def test_write_read_round_trip_keeps_graph_metadata_and_spikes(tmp_path):
    torch.manual_seed(0)
    model = _spiky(build_model("conv", (1, 8, 8), 4, channels=[3], pool="avg", dense=[8],
                               threshold=0.5))
    graph = export_model(model, (1, 8, 8))
    nir.write(str(tmp_path / "g.nir"), graph)
    back = nir.read(str(tmp_path / "g.nir"))
    assert back.metadata["reset_mode"] == "zero" and float(back.metadata["dt"]) == DT
    assert int(back.metadata["reset_delay"]) == 0
    x = (np.random.default_rng(0).random((6, 3, 1, 8, 8)) < 0.5).astype(float)
    a, b = run_graph(graph, x), run_graph(back, x)
    for n in a.values:
        np.testing.assert_array_equal(a.values[n], b.values[n])
    assert sum(a.values[n].sum() for n in a.spiking) > 0


def test_imported_module_is_made_of_snntorch_neurons_and_keeps_affine_bias():
    w = np.array([[0.3, -0.2]])
    b = np.array([0.7])
    g = graph_of(nir.Affine(w, b), nir.LIF(tau=np.array([1e-3]), r=np.array([10.0]),
                                          v_leak=np.array([0.0]), v_threshold=np.array([1.0]),
                                          v_reset=np.array([0.0])), shape=[2])
    m = import_graph(g)
    assert isinstance(m.node("n1").neuron, snn.Leaky)
    np.testing.assert_array_equal(m.node("n0").bias.detach().numpy(), b)  # not a random bias
    out = m(torch.zeros(5, 1, 2, dtype=torch.float64))
    # bias 0.7 alone: v = 0.7, 1.33, ... crosses 1 at step 2
    assert out[:, 0, 0].tolist() == [0, 1, 0, 1, 0]


def test_populations_stay_snntorch_neurons_unless_snntorch_cannot_express_them():
    from spikeport.exporters.snntorch import ExplicitNeuron

    one, zero = np.array([1.0]), np.array([0.0])
    lif = dict(tau=np.array([2 * DT]), r=np.array([2.0]), v_leak=zero, v_threshold=one)
    cuba = dict(tau_syn=np.array([2 * DT]), tau_mem=np.array([2 * DT]), r=np.array([2.0]),
                w_in=np.array([2.0]))  # g_i = g_v = 1
    cases = [
        (nir.LIF(**lif, v_reset=zero), snn.Leaky),
        (nir.LIF(**lif, v_reset=np.array([0.25])), None),
        (nir.LI(tau=lif["tau"], r=lif["r"], v_leak=zero), snn.Leaky),
        (nir.IF(r=one / DT, v_threshold=one, v_reset=zero), snn.Leaky),
        (nir.IF(r=one / DT, v_threshold=one, v_reset=np.array([-0.5])), None),
        (nir.I(r=one / DT), snn.Leaky),
        (nir.CubaLIF(**cuba, v_leak=zero, v_threshold=one, v_reset=zero), snn.Synaptic),
        (nir.CubaLIF(**cuba, v_leak=np.array([0.5]), v_threshold=one, v_reset=zero), None),
        (nir.CubaLI(**cuba, v_leak=zero), snn.Synaptic),
        (nir.CubaLI(**{**cuba, "r": np.array([3.0])}, v_leak=zero), None),  # g_v = 1.5
    ]
    for node, want in cases:
        m = import_graph(graph_of(node, shape=[1])).node("n0")
        if want is None:
            assert isinstance(m, ExplicitNeuron), node
        else:
            assert isinstance(m.neuron, want), node
        assert_all_targets_equal(graph_of(node, shape=[1]), col(0.9, 0.4, 1.3, 0.0, -0.6, 1.1))


# ---------------------------------------------------------------- foreign-style graphs

def _cuba_params(n, rng, tau_syn=5e-4, tau_mem=1e-3):
    return dict(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.ones(n),
                v_leak=np.zeros(n), v_threshold=np.full(n, 0.05), w_in=np.ones(n),
                v_reset=np.zeros(n))


def norse_style_recurrent_graph(rng, with_dt=True):
    """input -> fc (Affine, bias) -> rnn{input -> lif (CubaLIF) <-> w_rec (Affine, bias)
    -> output} -> readout (Affine) -> LI -> output, as norse and snntorch nest recurrence."""
    n_in, n_h, n_out = 6, 8, 3
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_h])),
               "lif": nir.CubaLIF(**_cuba_params(n_h, rng)),
               "w_rec": nir.Affine(f32(rng.normal(0, 0.5, (n_h, n_h))), f32(rng.normal(0, 0.1, n_h))),
               "output": nir.Output(output_type=np.array([n_h]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False)
    nodes = {"input": nir.Input(input_type=np.array([n_in])),
             "fc": nir.Affine(f32(rng.normal(0, 1.0, (n_h, n_in))), f32(rng.normal(0, 0.2, n_h))),
             "rnn": inner,
             "readout": nir.Affine(f32(rng.normal(0, 1.0, (n_out, n_h))), np.zeros(n_out)),
             "li": nir.LI(tau=np.full(n_out, 2e-3), r=np.ones(n_out), v_leak=np.zeros(n_out)),
             "output": nir.Output(output_type=np.array([n_out]))}
    edges = [("input", "fc"), ("fc", "rnn"), ("rnn", "readout"), ("readout", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False,
                        metadata={"dt": DT} if with_dt else {})


def test_norse_style_recurrent_cubalif_with_biases_runs_identically_on_all_targets(tmp_path):
    rng = np.random.default_rng(3)
    graph = norse_style_recurrent_graph(rng)
    nir.write(str(tmp_path / "norse.nir"), graph)
    graph = nir.read(str(tmp_path / "norse.nir"), type_check=False)
    x = (rng.random((30, 5, 6)) < 0.3).astype(float)
    ref = assert_all_targets_equal(graph, x)
    assert ref.spiking == ["rnn.lif"]
    s = ref.values["rnn.lif"]
    assert 0 < s.mean() < 0.9
    # the recurrent edge really acts: without it the spike trains differ
    graph.nodes["rnn"].edges.remove(("w_rec", "lif"))
    assert not np.array_equal(run_graph(graph, x).values["rnn.lif"], s)


def test_snntorch_style_dotted_flat_recurrent_graph():
    """snntorch flattens subgraphs into top-level dotted names ("1.lif", "1.w_rec") and
    leaves the inner Input/Output nodes dangling."""
    rng = np.random.default_rng(4)
    n = 5
    nodes = {"input": nir.Input(input_type=np.array([4])),
             "0": nir.Affine(f32(rng.normal(0, 1, (n, 4))), np.zeros(n)),
             "1.input": nir.Input(input_type=np.array([n])),
             "1.lif": nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                              v_threshold=np.full(n, 0.5), v_reset=np.zeros(n)),
             "1.w_rec": nir.Linear(f32(rng.normal(0, 0.5, (n, n)))),
             "1.output": nir.Output(output_type=np.array([n])),
             "output": nir.Output(output_type=np.array([n]))}
    edges = [("input", "0"), ("0", "1.lif"), ("1.lif", "1.w_rec"), ("1.w_rec", "1.lif"),
             ("1.lif", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    x = (rng.random((20, 3, 4)) < 0.5).astype(float)
    ref = assert_all_targets_equal(g, x)
    assert ref.values["1.lif"].sum() > 0


def test_graph_without_metadata_warns_and_reads_if_with_per_step_gain():
    """sinabs writes its IAF as IF(r=1) meaning 'add the input once per step'."""
    nodes = {"input": nir.Input(input_type=np.array([1])),
             "iaf": nir.IF(r=np.array([1.0]), v_threshold=np.array([1.5]), v_reset=np.array([0.0])),
             "output": nir.Output(output_type=np.array([1]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "iaf"), ("iaf", "output")])
    with pytest.warns(UserWarning, match="records no dt"):
        rec = run_graph(g, col(1, 1, 1, 1))
    assert rec.values["iaf"][:, 0, 0].tolist() == [0, 1, 0, 1]  # v: 1, 2 -> spike, 1, 2


def test_heterogeneous_per_neuron_parameters():
    n = 4
    lif = nir.LIF(tau=np.array([2e-4, 4e-4, 1e-3, 1e-2]), r=np.array([2.0, 1.0, 10.0, 100.0]),
                  v_leak=np.array([0.0, 0.1, 0.0, -0.1]), v_threshold=np.array([0.5, 0.6, 0.7, 0.8]),
                  v_reset=np.zeros(n))
    x = np.random.default_rng(0).random((15, 3, n))
    ref = assert_all_targets_equal(graph_of(lif, shape=[n]), x, exact=False)
    assert ref.values["n0"].sum() > 0


# ---------------------------------------------------------------- users' own models

def test_snntorch_default_model_is_refused_with_the_fix_or_exported_as_approximation():
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(ExportError, match="resets by subtraction.*reset_mechanism='zero'.*allow_approximation"):
        export_model(net, (4,))
    g = export_model(net, (4,), allow_approximation=True)
    notes = " ".join(g.metadata["approximations"])
    assert "reset to zero" in notes and "same step" in notes
    # scalar beta is broadcast to the population shape
    assert g.nodes["1"].tau.shape == (3,)


def test_users_class_based_model_is_traced_and_exported_faithfully():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(6, 8)
            self.lif1 = snn.Leaky(beta=torch.full((8,), 0.8), reset_mechanism="zero", reset_delay=False)
            self.fc2 = nn.Linear(8, 2)
            self.lif2 = snn.Synaptic(alpha=0.5, beta=0.9, reset_mechanism="zero", reset_delay=False)

        def forward(self, x):  # x (T, B, 6)
            m1 = torch.zeros(x.shape[1], 8, dtype=x.dtype)
            s2 = m2 = torch.zeros(x.shape[1], 2, dtype=x.dtype)
            out = []
            for t in range(x.shape[0]):
                s1, m1 = self.lif1(self.fc1(x[t]), m1)
                s2, s2_, m2 = self.lif2(self.fc2(s1.to(x.dtype)), s2, m2)
                s2 = s2_
                out.append(s2_)
            return torch.stack(out)

    torch.manual_seed(0)
    net = _spiky(Net(), 3.0).double()
    x = (torch.rand(10, 4, 6) < 0.5).double()
    g = export_model(net, (6,), sample_input=x[:1])
    assert [type(n).__name__ for n in g.nodes.values()] == ["Input", "Affine", "LIF", "Affine", "CubaLIF", "Output"]
    with torch.no_grad(), record(net) as rec:
        net(x)
    ref = run_graph(g, x.numpy())
    np.testing.assert_array_equal(ref.values["lif1"], rec["lif1"].numpy())
    assert rec["lif1"].sum() > 0


def test_recurrent_snntorch_layers_export_to_a_recurrent_subgraph():
    torch.manual_seed(1)
    rl = snn.RLeaky(beta=torch.full((5,), 0.9), linear_features=5, reset_mechanism="zero",
                    reset_delay=False, init_hidden=True)
    g = export_model(nn.Sequential(nn.Linear(3, 5), rl), (3,))
    sub = g.nodes["1"]
    assert isinstance(sub, nir.NIRGraph) and ("w_rec", "lif") in sub.edges
    np.testing.assert_array_equal(sub.nodes["w_rec"].weight, rl.recurrent.weight.detach().numpy())


@pytest.mark.parametrize("module, match", [
    (snn.Leaky(beta=torch.ones(3) * 0.9, reset_mechanism="zero", reset_delay=True), "reset_delay=True"),
    (snn.Leaky(beta=torch.ones(3) * 0.9, reset_mechanism="zero", reset_delay=False, inhibition=True), "inhibition"),
    (snn.Leaky(beta=torch.ones(3) * 0.9, reset_mechanism="none", reset_delay=False), "never resets"),
    (snn.Leaky(beta=torch.tensor([0.9, 1.0, 0.8]), reset_mechanism="zero", reset_delay=False), "mixes beta = 1"),
    (nn.LSTM(3, 3), "has no NIR export"),
    (nn.Conv2d(3, 3, 3, padding_mode="circular"), "padding_mode"),
])
def test_unsupported_constructs_are_refused_with_module_reason_and_fix(module, match):
    net = nn.Sequential(nn.Linear(3, 3), module)
    with pytest.raises(ExportError, match=match) as e:
        export_model(net, (3,))
    assert "fix:" in str(e.value) and "'1'" in str(e.value)


def test_non_chain_user_model_is_refused():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = nn.Linear(3, 3)

        def forward(self, x):
            return self.b(x) + self.a(x)

    with pytest.raises(ExportError, match="not a chain"):
        export_model(Skip(), (3,), sample_input=torch.zeros(1, 3))


@dataclass(eq=False)
class Mystery(nir.NIRNode):
    """A node type no target knows."""
    gain: np.ndarray

    def __post_init__(self):
        self.input_type = {"input": None}
        self.output_type = {"output": None}


@pytest.mark.parametrize("mutate, match", [
    (lambda n, e: n.update(bad=Mystery(np.array([1.0]))), "Mystery"),
    (lambda n, e: e.append(("input", "ghost")), "does not exist"),
    (lambda n, e: e.append(("input", "n0")), "duplicate edge"),
    (lambda n, e: n.update(input2=nir.Input(input_type=np.array([1]))) or e.append(("input2", "n0")), "2 inputs"),
])
def test_malformed_or_unsupported_graphs_raise_graph_errors(mutate, match):
    nodes = {"input": nir.Input(input_type=np.array([1])), "n0": nir.Scale(np.array([1.0])),
             "output": nir.Output(output_type=np.array([1]))}
    edges = [("input", "n0"), ("n0", "output")]
    mutate(nodes, edges)
    if "bad" in nodes:
        edges.insert(1, ("n0", "bad"))
    g = nir.NIRGraph.__new__(nir.NIRGraph)  # bypass NIR's own checks: we must catch these
    g.nodes, g.edges, g.metadata = nodes, edges, {"dt": DT}
    for name in FLOAT_TARGETS:
        with pytest.raises(GraphError, match=match):
            t = get_target(name)
            t.run(t.compile(g, {}), col(1, 2))


def test_subtractive_reset_metadata_is_refused():
    g = graph_of(nir.Scale(np.array([1.0])), shape=[1])
    g.metadata["reset_mode"] = "subtract"
    with pytest.raises(GraphError, match="reset_mode"):
        run_graph(g, col(1))


# ---------------------------------------------------------------- properties

from hypothesis import given, settings, strategies as st  # noqa: E402


@given(st.floats(0.0, 0.999).map(lambda v: float(np.float32(v))), st.sampled_from([1e-4, 1e-3, 0.5e-3]))
def test_decay_tau_round_trip_is_exact_or_within_one_ulp(beta, dt):
    tau = units.tau_from_decay(beta, dt)
    back = float(units.decay_from_tau(tau, dt))
    assert abs(back - beta) <= math.ulp(max(beta, 1e-300)) * 2 + math.ulp(1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.integers(1, 5),
       st.sampled_from(["lif", "cuba"]), st.floats(0.05, 0.99), st.floats(0.0, 0.99))
def test_random_mlps_agree_on_every_target(seed, n_in, n_h, neuron, beta, alpha):
    torch.manual_seed(seed)
    model = _spiky(build_model("mlp", (n_in,), 3, hidden=[n_h], neuron=neuron, beta=beta,
                               alpha=alpha, threshold=0.3), 3.0).double()
    x = (torch.rand(6, 4, n_in, generator=torch.Generator().manual_seed(seed)) < 0.5).double()
    with torch.no_grad(), record(model) as rec:
        model(x)
    recs = run_all(export_model(model, (n_in,)), x.numpy())
    for r in recs.values():
        for node, spikes in zip(r.spiking, rec.values()):
            np.testing.assert_array_equal(r.values[node], spikes.numpy())


def test_residual_block_exports_as_fan_in_edges_and_matches_the_model():
    from spikeport.models.network import Residual, SpikingSequential
    from spikeport.models.neurons import make_neuron

    torch.manual_seed(2)
    model = SpikingSequential([
        nn.Flatten(), nn.Linear(16, 12), make_neuron("lif", (12,), threshold=0.4),
        Residual([nn.Linear(12, 12), make_neuron("cuba", (12,), threshold=0.4)]),
        nn.Linear(12, 4), make_neuron("lif", (4,), threshold=0.4)], (1, 4, 4), 4)
    model = _spiky(model, 3.0).double()
    g = export_model(model, (1, 4, 4))
    assert ("layers_2", "layers_4") in g.edges and ("layers_3_body_1", "layers_4") in g.edges
    x = (torch.rand(12, 5, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    with torch.no_grad(), record(model) as rec:
        model(x)
    assert list(rec) == ["layers.2", "layers.3.body.1", "layers.5"]
    for target, r in run_all(g, x.numpy()).items():
        for node, spikes in zip(r.spiking, rec.values()):
            np.testing.assert_array_equal(r.values[node], spikes.numpy(), err_msg=f"{target} {node}")
            assert spikes.sum() > 0
    # the skip matters: remove one fan-in edge and the output changes
    g.edges.remove(("layers_2", "layers_4"))
    assert not np.array_equal(run_graph(g, x.numpy()).values["layers_5"], rec["layers.5"].numpy())


def test_residual_block_that_changes_shape_is_refused():
    from spikeport.models.network import Residual
    from spikeport.models.neurons import make_neuron

    net = nn.Sequential(nn.Linear(4, 6), make_neuron("lif", (6,)),
                        Residual([nn.Linear(6, 3), make_neuron("lif", (3,))]))
    with pytest.raises(ExportError, match="residual block '2' maps shape"):
        export_model(net, (4,))


def test_conv1d_model_exports_and_matches():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, stride=2),
                        snn.Leaky(beta=torch.full((3, 4), 0.8), threshold=0.3, reset_mechanism="zero",
                                  reset_delay=False),
                        nn.Flatten(), nn.Linear(12, 2),
                        snn.Leaky(beta=torch.full((2,), 0.9), threshold=0.3, reset_mechanism="zero",
                                  reset_delay=False))
    net = _spiky(net, 3.0).double()
    g = export_model(net, (2, 8))
    assert type(g.nodes["0"]).__name__ == "Conv1d"
    x = (torch.rand(9, 4, 2, 8, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    from spikeport.models.network import _run_layers
    with torch.no_grad(), record(net) as rec:
        _run_layers(net, x)
    for target, r in run_all(g, x.numpy()).items():
        np.testing.assert_array_equal(r.values["1"], rec["1"].numpy(), err_msg=target)
    assert rec["1"].sum() > 0
