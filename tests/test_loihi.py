"""Loihi target: quantisation by hand, refusals, netx round trip, and the emulator against
the real Lava simulator (no mocks) on golden networks and on a trained model."""

import re

import nir
import numpy as np
import pytest

from spikeport.exporters.loihi import emulator, netx
from spikeport.exporters.loihi.quantize import quantize
from spikeport.exporters.reference import run_graph
from spikeport.exporters.targets import get_target
from spikeport.core.errors import ExportError, GraphError

DT = 1e-4


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def chain(*nodes, n_in):
    names = ["input"] + [f"n{i}" for i in range(len(nodes))] + ["output"]
    all_nodes = {"input": nir.Input(input_type=np.array([n_in]))}
    all_nodes.update({f"n{i}": node for i, node in enumerate(nodes)})
    all_nodes["output"] = nir.Output(output_type=np.array([1]))
    return nir.NIRGraph(nodes=all_nodes, edges=list(zip(names[:-1], names[1:])),
                        metadata={"dt": DT}, type_check=False)


def lif(n, tau=1e-3, thr=1.0, v_leak=0.0, v_reset=0.0):
    b = DT / tau
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, 1.0 / b), v_leak=np.full(n, v_leak),
                   v_threshold=np.full(n, thr), v_reset=np.full(n, v_reset))


def cuba(n, tau_syn=5e-4, tau_mem=1e-3, thr=1.0):
    return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                       r=np.full(n, tau_mem / DT), v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                       v_reset=np.zeros(n), w_in=np.full(n, tau_syn / DT))


# ---------------------------------------------------------------- quantisation by hand

def test_lif_layer_quantises_as_worked_out_by_hand():
    w = np.array([[0.5, -0.25], [0.125, 1.0]])
    net = quantize(chain(nir.Affine(w, np.array([0.0, 0.1])), lif(2, tau=1e-3, thr=0.5), n_in=2))
    (layer,) = net.layers
    # scale: weights need 254 / 1.0, threshold 131071 / 0.5, bias 4095 / 0.1 -> 254;
    # threshold made integral: floor(0.5 * 254) / 0.5 = 254
    assert net.reports[0].scale == 254.0
    np.testing.assert_array_equal(layer.weight, [[128, -64], [32, 254]])  # even: 2*round(w*254/2)
    assert layer.v_th_mant == 127
    assert layer.i_decay == 4096 and layer.v_decay == 410  # round(4096 * 0.1)
    np.testing.assert_array_equal(layer.bias_mant, [0, 25])  # round(0.1 * 254)
    assert net.reports[0].weights_clipped_fraction == 0.0
    assert net.reports[0].voltage_decay["realised"] == 410 / 4096


def test_cubalif_decays_and_folded_gains():
    net = quantize(chain(nir.Linear(np.array([[1.0]])), cuba(1, tau_syn=4e-4, tau_mem=1e-3), n_in=1))
    layer = net.layers[0]
    assert layer.i_decay == 1024 and layer.v_decay == 410  # 4096 * dt/tau_syn, 4096 * dt/tau_mem


@pytest.mark.parametrize("node, match", [
    (lif(2, v_reset=0.3), "non-zero value"),
    (nir.LIF(tau=np.array([1e-3, 2e-3]), r=np.array([10.0, 20.0]), v_leak=np.zeros(2),
             v_threshold=np.ones(2), v_reset=np.zeros(2)), "different tau per neuron"),
    (lif(2, tau=DT), "tau_mem <= dt"),
    (nir.LI(tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2)), "no Loihi equivalent"),
])
def test_unexpressible_populations_are_refused(node, match):
    with pytest.raises(ExportError, match=match):
        quantize(chain(nir.Linear(np.eye(2)), node, n_in=2))


def test_bias_current_into_cubalif_is_refused_unless_allowed_and_then_recorded():
    g = chain(nir.Affine(np.eye(2), np.array([0.1, 0.0])), cuba(2), n_in=2)
    with pytest.raises(ExportError, match="bias current.*allow the approximation"):
        quantize(g)
    net = quantize(g, allow_approximation=True)
    assert "steady-state" in " ".join(net.approximations)


def conv_net(rng, pool=None, stride=1, in_shape=(2, 6, 6), ch=3, thr=0.5):
    """input -> conv [-> pool] -> LIF (C, H, W) -> flatten -> Affine -> LIF."""
    C, H, W = in_shape
    conv = nir.Conv2d(input_shape=np.array([H, W]), weight=f32(rng.normal(0, 0.5, (ch, C, 3, 3))),
                      stride=stride, padding=1, dilation=1, groups=1, bias=f32(rng.normal(0, 0.05, ch)))
    Ho = (H + 2 - 3) // stride + 1
    nodes = {"input": nir.Input(input_type=np.array(in_shape)), "conv": conv}
    edges = [("input", "conv")]
    prev = "conv"
    if pool is not None:
        nodes["pool"] = pool(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
        edges.append(("conv", "pool"))
        prev, Ho = "pool", Ho // 2
    n = ch * Ho * Ho
    nodes["lif1"] = nir.LIF(tau=np.full((ch, Ho, Ho), 1e-3), r=np.full((ch, Ho, Ho), 10.0),
                            v_leak=np.zeros((ch, Ho, Ho)), v_threshold=np.full((ch, Ho, Ho), thr),
                            v_reset=np.zeros((ch, Ho, Ho)))
    nodes["flat"] = nir.Flatten(input_type={"input": np.array([ch, Ho, Ho])}, start_dim=0, end_dim=-1)
    nodes["fc"] = nir.Affine(f32(rng.normal(0, 0.4, (4, n))), f32(rng.normal(0, 0.05, 4)))
    nodes["lif2"] = lif(4, thr=0.3)
    nodes["output"] = nir.Output(output_type=np.array([4]))
    edges += [(prev, "lif1"), ("lif1", "flat"), ("flat", "fc"), ("fc", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


@pytest.mark.parametrize("pool", [nir.SumPool2d, nir.AvgPool2d])
def test_pool_after_conv_folds_into_one_strided_convolution_exactly(pool):
    """Folding is exact in float: the folded conv reproduces conv -> pool on any input."""
    from spikeport.exporters.loihi.quantize import _conv_params
    from spikeport.exporters.reference import conv2d

    rng = np.random.default_rng(5)
    g = conv_net(rng, pool=pool, in_shape=(2, 7, 7))
    x = rng.normal(size=(3, 2, 7, 7))
    ref = run_graph(g, x[None]).values["pool"][0]
    w, b, p, shape = _conv_params("conv", g.nodes["conv"], "pool", g.nodes["pool"], (2, 7, 7))
    folded = conv2d(x, w, b, p["stride"], p["padding"], p["dilation"], p["groups"])
    assert folded.shape[1:] == shape == ref.shape[1:]
    np.testing.assert_allclose(folded, ref, rtol=1e-12, atol=1e-12)


def test_pool_that_cannot_be_folded_is_refused():
    rng = np.random.default_rng(6)
    g = conv_net(rng, pool=nir.SumPool2d, stride=2, in_shape=(2, 8, 8))
    with pytest.raises(ExportError, match="cannot be folded"):
        quantize(g)


def test_netx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    g = chain(nir.Affine(f32(rng.normal(0, 0.3, (6, 5))), f32(rng.normal(0, 0.05, 6))), lif(6, thr=0.4),
              nir.Linear(f32(rng.normal(0, 0.5, (3, 6)))), cuba(3, thr=0.3), n_in=5)
    net = quantize(g)
    back = netx.read(netx.write(net, tmp_path / "m.net"))
    assert [l.name for l in back.layers] == ["n1", "n3"]
    for a, b in zip(net.layers, back.layers):
        for k in ("weight", "bias_mant"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        assert (a.i_decay, a.v_decay, a.v_th_mant) == (b.i_decay, b.v_decay, b.v_th_mant)
    assert back.report() == net.report()


def test_emulator_is_close_to_the_float_reference():
    """Quantisation changes spikes a little, not the network: most bins agree."""
    rng = np.random.default_rng(1)
    g = chain(nir.Affine(f32(rng.normal(0, 0.4, (20, 10))), f32(rng.normal(0, 0.05, 20))), lif(20, thr=0.5),
              n_in=10)
    x = (rng.random((30, 8, 10)) < 0.3).astype(float)
    emu = emulator.run(quantize(g), x).values["n1"]
    ref = run_graph(g, x).values["n1"]
    assert ref.sum() > 50 and (emu != ref).mean() < 0.02


def test_emulator_refuses_analog_input():
    g = chain(nir.Linear(np.eye(2)), lif(2), n_in=2)
    with pytest.raises(GraphError, match="binary input spikes"):
        emulator.run(quantize(g), np.full((3, 1, 2), 0.5))


# ---------------------------------------------------------------- against the real Lava simulator

def norse_recurrent(rng, n_in=6, n_h=10):
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_h])), "lif": cuba(n_h, thr=0.1),
               "w_rec": nir.Linear(f32(rng.normal(0, 0.4, (n_h, n_h)))),
               "output": nir.Output(output_type=np.array([n_h]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False)
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])),
               "fc": nir.Affine(f32(rng.normal(0, 0.6, (n_h, n_in))), f32(rng.normal(0, 0.02, n_h))),
               "rnn": inner, "out": nir.Linear(f32(rng.normal(0, 0.8, (3, n_h)))),
               "lif_out": lif(3, thr=0.3), "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "out"), ("out", "lif_out"), ("lif_out", "output")],
        metadata={"dt": DT}, type_check=False)


def golden_networks():
    rng = np.random.default_rng(7)
    yield "dense LIF with bias", chain(
        nir.Affine(f32(rng.normal(0, 0.5, (12, 8))), f32(rng.normal(0, 0.1, 12))), lif(12, thr=0.6),
        nir.Affine(f32(rng.normal(0, 0.5, (4, 12))), f32(rng.normal(0, 0.1, 4))), lif(4, thr=0.4), n_in=8), {}
    yield "dense CubaLIF", chain(
        nir.Linear(f32(rng.normal(0, 0.5, (12, 8)))), cuba(12, thr=0.3),
        nir.Linear(f32(rng.normal(0, 0.5, (4, 12)))), cuba(4, tau_syn=2e-4, tau_mem=5e-4, thr=0.2), n_in=8), {}
    yield "IF and leak", chain(
        nir.Linear(f32(rng.normal(0, 0.4, (6, 8)))),
        nir.IF(r=np.full(6, 1 / DT), v_threshold=np.full(6, 0.7), v_reset=np.zeros(6)),
        nir.Affine(f32(rng.normal(0, 0.5, (3, 6))), np.zeros(3)), lif(3, thr=0.3, v_leak=0.05), n_in=8), {}
    yield "norse-style recurrent CubaLIF, Affine bias (approximated)", norse_recurrent(rng), \
        {"allow_approximation": True}
    yield "conv -> sum pool (folded) -> flatten -> dense", conv_net(rng, pool=nir.SumPool2d), {}
    yield "conv -> avg pool (folded), 1x8x8 input", conv_net(rng, pool=nir.AvgPool2d, in_shape=(1, 8, 8), thr=0.2), {}


@pytest.fixture(scope="module")
def lava_results():
    """Every golden network through the emulator and the real Lava simulator."""
    rng = np.random.default_rng(11)
    out = {}
    emu, lava = get_target("loihi-emu"), get_target("lava")
    for name, graph, options in golden_networks():
        in_shape = tuple(int(v) for v in np.atleast_1d(graph.nodes["input"].input_type["input"]))
        x = (rng.random((25, 6, *in_shape)) < 0.35).astype(float)
        out[name] = (emu.run(emu.compile(graph, options), x),
                     lava.run(lava.compile(graph, options), x))
    return out


@pytest.mark.lava
@pytest.mark.parametrize("name", [n for n, _, _ in golden_networks()])
def test_emulator_is_spike_exact_with_lava(lava_results, name):
    rec_emu, rec_lava = lava_results[name]
    assert rec_emu.spiking == rec_lava.spiking
    for node in rec_emu.spiking:
        a, b = rec_emu.values[node], rec_lava.values[node]
        assert a.shape == b.shape
        assert 0 < a.mean() < 0.95, f"{node} silent or saturated: the check would be vacuous"
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: {node}")
    assert rec_lava.pipeline_latency == len(rec_emu.spiking)


@pytest.mark.lava
@pytest.mark.parametrize("target", ["loihi-emu", "lava"])
@pytest.mark.parametrize("bad, words", [
    (lambda shape: np.full((5, 2, *shape), 0.5), "binary input spikes"),
    (lambda shape: np.zeros((5, 2, 3)), "the graph expects (T, B, 8)"),
    (lambda shape: np.full((5, 2, *shape), np.nan), "not finite"),
    (lambda shape: np.zeros((0, 2, *shape)), "0 time steps")])
def test_both_loihi_targets_refuse_bad_input_alike_before_running(target, bad, words):
    """The same check guards the emulator and the Lava simulator (no Lava process starts)."""
    _, graph, options = next(golden_networks())
    tg = get_target(target)
    art = tg.compile(graph, options)
    with pytest.raises(GraphError, match=re.escape(words)):
        tg.run(art, bad((8,)))


@pytest.mark.lava
def test_the_written_netx_file_loads_in_netx_unmodified(tmp_path):
    """Load the file with lava-dl's own netx.hdf5.Network inside the Lava environment."""
    import subprocess

    from spikeport.exporters.lava.env import ensure_ready

    _, graph, _ = next(golden_networks())
    path = netx.write(quantize(graph), tmp_path / "m.net")
    code = ("import sys; from lava.lib.dl import netx; "
            "net = netx.hdf5.Network(net_config=sys.argv[1]); "
            "print(len(net.layers), net.inp.shape, net.out.shape)")
    r = subprocess.run([str(ensure_ready()), "-c", code, str(path)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "2 (8,) (4,)"


# ------------------------------------------------- counting on the network Loihi runs

def test_loihi_targets_count_the_folded_integer_network(brute_force_conv_ops):
    """On Loihi a sum pool is folded into its convolution (a 4x4 kernel at stride 2 here),
    and a weight quantised to 0 is no synapse: the estimator counts that network, which the
    float graph (3x3 conv at stride 1, then the pool) overcounts."""
    from spikeport.ir.program import build_program
    from spikeport.estimation import MetricsAccumulator

    rng = np.random.default_rng(11)
    g = conv_net(rng, pool=nir.SumPool2d, in_shape=(2, 6, 6))
    g.nodes["fc"].weight[0, :5] = 1e-6  # far below one quantisation step: becomes 0
    tg = get_target("loihi-emu")
    net = tg.compile(g, {})
    assert net.layers[0].conv["stride"] == (2, 2) and net.layers[0].weight.shape[2:] == (4, 4)
    assert np.all(net.layers[1].weight[0, :5] == 0)
    counted = tg.counting.graph(net)
    T, B = 5, 3
    x = (rng.random((T, B, 2, 6, 6)) < 0.4).astype(float)
    rec = tg.run(net, x)
    acc = MetricsAccumulator(build_program(counted), input_binary=True)
    acc.update(rec, x)
    syn = acc.summary()["synops"]
    conv_ops = sum(brute_force_conv_ops(x[t], net.layers[0].weight, 2, 1, 1) for t in range(T))
    assert syn["conv"]["effective_per_sample"] * B == conv_ops
    s1 = rec.values["lif1"].reshape(T, B, -1) != 0
    fc_ops = int((s1 * (net.layers[1].weight != 0).sum(0)).sum())
    assert syn["fc"]["effective_per_sample"] * B == fc_ops
    # the same spikes counted on the float graph: more conv ops (pre-pool resolution) and
    # the quantised-away synapses
    float_ops = sum(brute_force_conv_ops(x[t], np.asarray(g.nodes["conv"].weight), 1, 1, 1)
                    for t in range(T))
    assert float_ops > conv_ops
    fc_float = int((s1 * (np.asarray(g.nodes["fc"].weight) != 0).sum(0)).sum())
    assert fc_float > fc_ops


def test_emulator_activity_marks_input_or_state_before_the_update():
    """ENERGY.md 1.5: an update is active when the neuron has non-zero input or non-zero
    state (current, voltage) before it. One input spike to neuron 0 at step 0: neuron 0 is
    active at step 0 (input) and then while its decaying state is non-zero; neuron 1 (no
    weight from that input, no bias) never is."""
    net = quantize(chain(nir.Linear(np.array([[1.0, 0.0], [0.0, 1.0]])),
                         cuba(2, tau_syn=2e-4, tau_mem=3e-4, thr=50.0), n_in=2))
    T = 40
    x = np.zeros((T, 1, 2))
    x[0, 0, 0] = 1.0
    rec = emulator.run(net, x, membranes=True, activity=True)
    act = rec.active["n1"][:, 0]
    assert act[0, 0] and not act[:, 1].any()
    assert np.all(rec.values["n1"] == 0)  # threshold far away: state only decays
    v = rec.membranes["n1"][:, 0, 0]
    # active at t > 0 exactly while the state entering t was non-zero; the voltage decays to
    # exactly 0 in integer arithmetic, after which the neuron idles
    last = int(np.flatnonzero(act[:, 0]).max())
    assert 1 <= last < T - 1 and v[last - 1] != 0 and not act[last + 1:, 0].any()
    assert np.all(act[:last + 1, 0])
    silent = emulator.run(net, np.zeros((5, 2, 2)), activity=True)
    assert not silent.active["n1"].any()
    assert emulator.run(net, x).active == {}  # recorded only on request


def test_fixed_point_step_rounds_toward_zero_wraps_the_current_and_saturates_the_voltage():
    from spikeport.exporters.loihi import fixed_point as fp

    # (4096 - 1024) / 4096 = 0.75: 5 -> 3.75 -> 3 and -5 -> -3.75 -> -3 (toward zero)
    np.testing.assert_array_equal(fp.decay(np.array([5, -5]), 1024), [3, -3])
    half, never = 2 ** 23, fp.state_of(2 ** 30)
    # one weight unit (64 on the state scale) past the top: u wraps, v saturates
    z, u, v = fp.cuba_step(np.array([half - 10]), np.array([0]), np.array([1]), np.array([0]),
                           i_decay=0, v_decay=0, v_th=never)
    assert (u[0], v[0], z[0]) == (half + 54 - 2 * half, half + 54 - 2 * half, False)
    z, u, v = fp.cuba_step(np.array([0]), np.array([half - 10]), np.array([1]), np.array([0]),
                           i_decay=4096, v_decay=0, v_th=never)
    assert (u[0], v[0], z[0]) == (64, half - 1, False)
    # strictly above the threshold: spike, v reset to 0, u kept
    z, u, v = fp.cuba_step(np.array([0, 0]), np.array([0, 0]), np.array([2, 3]), np.array([0, 0]),
                           i_decay=4096, v_decay=4096, v_th=fp.state_of(2))
    assert z.tolist() == [False, True] and u.tolist() == [128, 192] and v.tolist() == [128, 0]
