"""Foreign layouts on the Loihi targets: graphs built with the NIR API the way sinabs writes
them (IF, SumPool2d after the neurons, Flatten with start_dim 0, no metadata) and the way
norse writes them (recurrent CubaLIF with biases on the input and the recurrent Affine, no
dt in the metadata), plus per-neuron thresholds. Each runs on the float targets (0
mismatches between them), on loihi-emu and on the real Lava simulator (0 mismatches
between the two); where quantisation is lossless (weights and thresholds on the Loihi
grid) Loihi equals the float reference spike for spike."""

import warnings

import nir
import numpy as np
import pytest

from spikeport.core.errors import ExportError
from spikeport.exporters.loihi import fold
from spikeport.exporters.loihi.quantize import quantize
from spikeport.exporters.reference import conv2d
from spikeport.exporters.targets import get_target

DT = 1e-4
Q = 1 / 128  # weights m * Q with |m| <= 127 and one |m| = 127: the layer scale is 2 / Q = 256
FLOAT_TARGETS = ("reference", "snntorch", "onnx")
LOIHI_TARGETS = ("loihi-emu", "lava")


def quiet(fn, *args, **kwargs):
    """fn(...) without the "records no dt" warning of a graph that has no metadata."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*records no dt")
        return fn(*args, **kwargs)


def grid(rng, shape, mean=0.0, sd=40.0):
    """Weights on the Loihi grid: m * Q, one of them 127 * Q (pins the scale to 256)."""
    m = np.clip(np.rint(rng.normal(mean, sd, shape)), -127, 127)
    m.flat[0] = 127
    return m * Q


def iaf(shape, threshold):
    """sinabs' IAF as it writes it: IF with r = 1 (the per-step gain when there is no dt)."""
    return nir.IF(r=np.ones(shape), v_threshold=np.full(shape, float(threshold)),
                  v_reset=np.zeros(shape))


def conv(weight, in_hw, padding=1):
    return nir.Conv2d(input_shape=np.array(in_hw), weight=weight, stride=1, padding=padding,
                      dilation=1, groups=1, bias=np.zeros(weight.shape[0]))


def pool2(kind=nir.SumPool2d):
    return kind(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))


def sequential(nodes: dict, metadata=None) -> nir.NIRGraph:
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])),
                        metadata=metadata or {}, type_check=False)


def sinabs_graph(rng):
    """IF -> SumPool2d -> Conv2d and IF -> SumPool2d -> Flatten(start_dim 0) -> Affine, named
    and laid out as sinabs' to_nir writes a Sequential; no metadata. Thresholds are odd
    multiples of Q/2, so no membrane ever lands on one (the sums are multiples of Q)."""
    return sequential({
        "input": nir.Input(input_type=np.array([2, 8, 8])),
        "0": conv(grid(rng, (4, 2, 3, 3), mean=8), (8, 8)), "1": iaf((4, 8, 8), 129 / 256),
        "2": pool2(), "3": conv(grid(rng, (4, 4, 3, 3), mean=4), (4, 4)), "4": iaf((4, 4, 4), 385 / 256),
        "5": pool2(), "6": nir.Flatten(input_type={"input": np.array([4, 2, 2])}, start_dim=0, end_dim=-1),
        "7": nir.Affine(grid(rng, (5, 16), mean=5), np.zeros(5)), "8": iaf((5,), 511 / 256),
        "output": nir.Output(output_type=np.array([5]))})


def sinabs_avg_graph(rng):
    """The input's spikes pooled before the first convolution, average pooling (factor 1/4
    folded into the weights: the grid becomes Q/4, thresholds odd multiples of Q/8) and a
    Linear readout."""
    return sequential({
        "input": nir.Input(input_type=np.array([1, 8, 8])),
        "0": pool2(), "1": conv(grid(rng, (3, 1, 3, 3), mean=10), (4, 4)), "2": iaf((3, 4, 4), 129 / 256),
        "3": pool2(nir.AvgPool2d),
        "4": nir.Flatten(input_type={"input": np.array([3, 2, 2])}, start_dim=0, end_dim=-1),
        "5": nir.Linear(grid(rng, (4, 12), mean=0)), "6": iaf((4,), 129 / 1024),
        "output": nir.Output(output_type=np.array([4]))})


def norse_graph(rng, readout=None):
    """input -> fc (Affine, bias) -> rnn{input -> lif (CubaLIF) <-> w_rec (Affine, bias) ->
    output} -> readout (Affine) -> out (a spiking LIF, or ``readout``) -> output, nested as
    norse writes it, with no metadata (dt is passed when compiling)."""
    n_in, n_h, n_out = 6, 10, 3
    ones = np.ones(n_h)
    lif = nir.CubaLIF(tau_syn=5e-4 * ones, tau_mem=1e-3 * ones, r=ones, v_leak=0 * ones,
                      v_threshold=0.05 * ones, w_in=ones, v_reset=0 * ones)
    f32 = lambda a: np.asarray(a, np.float32).astype(np.float64)  # noqa: E731
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_h])), "lif": lif,
               "w_rec": nir.Affine(f32(rng.normal(0, 0.5, (n_h, n_h))), f32(rng.normal(0, 0.1, n_h))),
               "output": nir.Output(output_type=np.array([n_h]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False)
    out = np.ones(n_out)
    readout = readout or nir.LIF(tau=2e-3 * out, r=20 * out, v_leak=0 * out,
                                 v_threshold=0.3 * out, v_reset=0 * out)
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n_in])),
               "fc": nir.Affine(f32(rng.normal(0, 1.0, (n_h, n_in))), f32(rng.normal(0, 0.2, n_h))),
               "rnn": inner, "readout": nir.Affine(f32(rng.normal(0, 0.6, (n_out, n_h))), np.zeros(n_out)),
               "out": readout, "output": nir.Output(output_type=np.array([n_out]))},
        edges=[("input", "fc"), ("fc", "rnn"), ("rnn", "readout"), ("readout", "out"), ("out", "output")],
        metadata={}, type_check=False)


def mixed_threshold_graph(rng):
    """Thresholds per channel (a convolution) and per neuron (dense), theta_max / theta_j
    powers of two and the weights chosen so that the rows scaled by theta_max / theta_j lie
    on the Loihi grid: lossless. dt in the metadata, IF with r = 1/dt."""
    f1 = np.array([1.0, 2.0])           # theta_max / theta per channel
    f2 = np.array([1.0, 2.0, 4.0])      # per neuron
    th = 255 / 128                      # odd multiple of 1/128: sums of the weights are even
    w1 = np.clip(np.rint(rng.normal(30, 60, (2, 1, 3, 3))) * 2, -254, 254)
    w1.flat[0] = 254
    w2 = np.clip(np.rint(rng.normal(0, 60, (3, 2 * 3 * 3))) * 2, -254, 254)
    w2.flat[0] = 254
    shape1 = (2, 6, 6)
    return sequential({
        "input": nir.Input(input_type=np.array([1, 6, 6])),
        "conv": conv(w1 / 128 / f1[:, None, None, None], (6, 6)),
        "if1": nir.IF(r=np.full(shape1, 1 / DT), v_reset=np.zeros(shape1),
                      v_threshold=np.broadcast_to((th / f1)[:, None, None], shape1).copy()),
        "pool": pool2(), "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0,
                                             end_dim=-1),
        "fc": nir.Linear(w2 / 128 / f2[:, None]),
        "if2": nir.IF(r=np.full(3, 1 / DT), v_threshold=th / f2, v_reset=np.zeros(3)),
        "output": nir.Output(output_type=np.array([3]))}, {"dt": DT})


def spikes(rng, graph, T=30, B=5, p=0.3):
    shape = tuple(int(v) for v in np.atleast_1d(graph.nodes["input"].input_type["input"]))
    return (rng.random((T, B, *shape)) < p).astype(float)


def run(target, graph, x, options=None):
    t = get_target(target)
    return quiet(lambda: t.run(t.compile(graph, dict(options or {})), x))


def assert_same_spikes(recs: dict, names) -> None:
    """Every population's spikes equal on every recording (0 mismatched bins), and active:
    neither silent nor saturated, so the comparison cannot pass vacuously."""
    first, ref = next(iter(recs.items()))
    for name in names:
        s = ref.values[name]
        assert 0.02 < s.mean() < 0.9, f"{name} on {first}: rate {s.mean():.3f}, the check would be vacuous"
        for target, rec in recs.items():
            bad = int((rec.values[name] != s).sum())
            assert bad == 0, f"{target} vs {first}: {bad} of {s.size} bins differ on {name}"


# ------------------------------------------------------------ the folds, exact in float

def _pool_ref(x, kind, k, s, p):
    C = x.shape[1]
    y = conv2d(x, np.ones((C, 1, k, k)), np.zeros(C), (s, s), (p, p), (1, 1), C)
    return y / (k * k) if kind is nir.AvgPool2d else y


@pytest.mark.parametrize("kind", [nir.SumPool2d, nir.AvgPool2d])
@pytest.mark.parametrize("size, pk, ps, pp, ck, cs, cp, cd", [
    (8, 2, 2, 0, 3, 1, 1, 1),   # sinabs: 2x2 pool, padded 3x3 conv
    (9, 2, 2, 0, 3, 1, 0, 1),   # the pool drops the last row: fine without conv padding
    (9, 3, 2, 0, 2, 2, 0, 1),   # overlapping pool, strided conv
    (8, 2, 2, 1, 3, 1, 1, 2),   # padded pool, dilated padded conv
    (7, 1, 2, 0, 3, 1, 1, 1),   # subsampling (1x1 pool, stride 2)
])
def test_pool_of_spikes_then_conv_is_one_convolution_exactly(kind, size, pk, ps, pp, ck, cs, cp, cd):
    rng = np.random.default_rng(size + pk + cd)
    x = rng.normal(size=(2, 3, size, size))
    w = rng.normal(size=(4, 3, ck, ck))
    b = rng.normal(size=4)
    pool = kind(np.array([pk, pk]), np.array([ps, ps]), np.array([pp, pp]))
    hw = (size + 2 * pp - pk) // ps + 1
    c = nir.Conv2d(input_shape=np.array([hw, hw]), weight=w, stride=cs, padding=cp, dilation=cd, groups=1, bias=b)
    want = conv2d(_pool_ref(x, kind, pk, ps, pp), w, b, (cs, cs), (cp, cp), (cd, cd), 1)
    folded = fold.conv_after_pool(fold.conv_of("c", c), "c", pool, "p", x.shape[1:])
    p = folded.params()
    got = conv2d(x, folded.weight, folded.bias, p["stride"], p["padding"], p["dilation"], p["groups"])
    assert got.shape == want.shape and folded.out_shape(x.shape[1:]) == want.shape[1:]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", [nir.SumPool2d, nir.AvgPool2d])
@pytest.mark.parametrize("size, k, s, p", [(8, 2, 2, 0), (7, 2, 2, 0), (7, 3, 2, 1), (6, 3, 1, 0)])
def test_pool_of_spikes_then_flatten_then_dense_is_one_dense_layer_exactly(kind, size, k, s, p):
    rng = np.random.default_rng(size * k)
    x = rng.normal(size=(4, 2, size, size))
    pooled = _pool_ref(x, kind, k, s, p)
    w = rng.normal(size=(5, pooled[0].size))
    pool = kind(np.array([k, k]), np.array([s, s]), np.array([p, p]))
    folded = fold.dense_after_pool(w, pool, x.shape[1:])
    np.testing.assert_allclose(x.reshape(4, -1) @ folded.T, pooled.reshape(4, -1) @ w.T,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, pk, ps", [(8, 2, 1), (9, 2, 2)])
def test_pool_before_a_padded_conv_that_would_read_real_inputs_is_refused(size, pk, ps):
    """Overlapping windows reach into the conv's left padding; a pool that drops the last
    row leaves real inputs where the conv pads its right edge: no single convolution."""
    rng = np.random.default_rng(0)
    pooled = (size - pk) // ps + 1
    g = sequential({"input": nir.Input(input_type=np.array([1, size, size])),
                    "pool": nir.SumPool2d(np.array([pk, pk]), np.array([ps, ps]), np.array([0, 0])),
                    "conv": conv(rng.normal(size=(2, 1, 3, 3)), (pooled, pooled)),
                    "if": iaf((2, pooled, pooled), 1.0),
                    "output": nir.Output(output_type=np.array([2]))}, {"dt": DT})
    with pytest.raises(ExportError, match="cannot be folded exactly"):
        quantize(g)


# ------------------------------------------------------------ sinabs layout

@pytest.mark.parametrize("make", [sinabs_graph, sinabs_avg_graph])
def test_sinabs_layout_is_spike_exact_on_the_float_targets_and_on_loihi_emu(make):
    """0 mismatches between reference, snntorch, onnx and loihi-emu: the pools after the
    neurons are folded exactly and the weights lie on the Loihi grid (lossless)."""
    rng = np.random.default_rng(1)
    g = make(rng)
    x = spikes(rng, g)
    recs = {t: run(t, g, x) for t in FLOAT_TARGETS + ("loihi-emu",)}
    populations = recs["loihi-emu"].spiking
    assert populations == [n for n in recs["reference"].spiking]
    assert_same_spikes(recs, populations)
    net = quiet(quantize, g)
    assert all(r.weight_rms_error == 0 and r.weights_clipped_fraction == 0 for r in net.reports)


def test_sinabs_layout_folds_into_strided_convolutions_and_a_wider_dense_layer():
    net = quiet(quantize, sinabs_graph(np.random.default_rng(1)))
    c1, c2, fc = net.layers
    assert c1.conv["stride"] == (1, 1) and c1.weight.shape == (4, 2, 3, 3)
    # 3x3 conv (padding 1) after a 2x2 pool: one 6x6 kernel at stride 2, padding 2
    assert c2.conv["stride"] == (2, 2) and c2.conv["padding"] == (2, 2) and c2.weight.shape == (4, 4, 6, 6)
    # the Affine reads the 4x4x4 spikes directly: each pooled weight over its 2x2 window
    assert fc.weight.shape == (5, 64) and fc.flatten_before
    w = fc.weight.reshape(5, 4, 4, 4)
    np.testing.assert_array_equal(w[:, :, ::2, ::2], w[:, :, 1::2, 1::2])


# ------------------------------------------------------------ norse layout

def test_norse_layout_is_spike_exact_on_the_float_targets():
    rng = np.random.default_rng(2)
    g = norse_graph(rng)
    x = spikes(rng, g, T=40, p=0.4)
    recs = {t: run(t, g, x, {"dt": DT}) for t in FLOAT_TARGETS}
    assert recs["reference"].spiking == ["rnn.lif", "out"]
    assert_same_spikes(recs, ["rnn.lif", "out"])


def test_recurrent_bias_is_summed_into_the_neuron_bias_and_recorded():
    """Both biases add into the CubaLIF's synaptic input: the network equals the one with
    the recurrent bias moved into the input Affine; refused without the approximation flag
    (the float model receives a recurrent edge's bias from step 2 on)."""
    g = norse_graph(np.random.default_rng(3))
    with pytest.raises(ExportError, match="bias current.*allow the approximation"):
        quantize(g, dt=DT)
    net = quantize(g, dt=DT, allow_approximation=True)
    moved = norse_graph(np.random.default_rng(3))
    rnn = moved.nodes["rnn"].nodes
    moved.nodes["fc"].bias = moved.nodes["fc"].bias + rnn["w_rec"].bias
    rnn["w_rec"] = nir.Linear(rnn["w_rec"].weight)
    ref = quantize(moved, dt=DT, allow_approximation=True)
    for a, b in zip(net.layers, ref.layers):
        np.testing.assert_array_equal(a.bias_mant, b.bias_mant)
        np.testing.assert_array_equal(a.weight, b.weight)
    assert np.any(net.layers[0].bias_mant != 0)
    notes = " ".join(net.approximations)
    assert "steady-state" in notes and "from step 2 in the float model" in notes
    assert "recurrent Affine bias summed" in net.reports[0].bias


def test_recurrent_bias_into_an_lif_needs_the_flag_only_for_the_recurrent_part():
    """Into a LIF the input Affine's bias is exact (no flag); the recurrent bias is not
    (it starts one step later in the float model), so it asks for the flag."""
    rng = np.random.default_rng(4)
    n = 4
    lif = nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                  v_threshold=np.ones(n), v_reset=np.zeros(n))
    nodes = {"input": nir.Input(input_type=np.array([3])),
             "fc": nir.Affine(rng.normal(size=(n, 3)), rng.normal(0, 0.1, n)), "lif": lif,
             "w_rec": nir.Affine(rng.normal(size=(n, n)), rng.normal(0, 0.1, n)),
             "output": nir.Output(output_type=np.array([n]))}
    edges = [("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    with pytest.raises(ExportError, match="recurrent input of 'lif'.*from step 2.*--allow-approximation"):
        quantize(g)
    assert quantize(g, allow_approximation=True).approximations
    nodes["w_rec"] = nir.Linear(nodes["w_rec"].weight)
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    assert quantize(g).approximations == []


def test_affine_bias_into_a_cubalif_with_tau_syn_equal_to_dt_is_exact():
    n = 3
    ones = np.ones(n)
    cuba = nir.CubaLIF(tau_syn=DT * ones, tau_mem=1e-3 * ones, r=10 * ones, v_leak=0 * ones,
                       v_threshold=ones, w_in=ones, v_reset=0 * ones)
    g = sequential({"input": nir.Input(input_type=np.array([2])),
                    "fc": nir.Affine(np.full((n, 2), 0.5), np.full(n, 0.1)), "cuba": cuba,
                    "output": nir.Output(output_type=np.array([n]))}, {"dt": DT})
    net = quantize(g)
    assert net.approximations == [] and "(exact)" in net.reports[0].bias


# ------------------------------------------------------------ thresholds per neuron

def test_thresholds_per_neuron_and_channel_fold_into_the_rows_losslessly():
    rng = np.random.default_rng(5)
    g = mixed_threshold_graph(rng)
    x = spikes(rng, g, p=0.4)
    recs = {t: run(t, g, x) for t in FLOAT_TARGETS + ("loihi-emu",)}
    assert_same_spikes(recs, ["if1", "if2"])
    net = quantize(g)
    assert all(r.weight_rms_error == 0 for r in net.reports)
    assert all("theta / theta_j" in " ".join(r.notes) for r in net.reports)
    # per-channel and per-neuron firing really differs from one uniform threshold
    s = recs["reference"].values["if2"]
    assert len({float(s[:, :, j].mean()) for j in range(3)}) > 1


@pytest.mark.parametrize("what, node, words", [
    ("tau", nir.LIF(tau=np.array([1e-3, 2e-3]), r=np.array([10.0, 20.0]), v_leak=np.zeros(2),
                    v_threshold=np.ones(2), v_reset=np.zeros(2)), "different tau per neuron.*in sequence"),
    ("threshold <= 0", nir.IF(r=np.full(2, 1 / DT), v_threshold=np.array([1.0, 0.0]),
                              v_reset=np.zeros(2)), "threshold <= 0"),
])
def test_what_cannot_be_made_uniform_is_refused(what, node, words):
    g = sequential({"input": nir.Input(input_type=np.array([2])), "fc": nir.Linear(np.eye(2)),
                    "pop": node, "output": nir.Output(output_type=np.array([2]))}, {"dt": DT})
    with pytest.raises(ExportError, match=words):
        quantize(g)


def test_threshold_varying_within_a_channel_is_refused():
    th = np.ones((2, 4, 4))
    th[0, 0, 0] = 2.0
    g = sequential({"input": nir.Input(input_type=np.array([1, 4, 4])),
                    "conv": conv(np.ones((2, 1, 3, 3)), (4, 4)),
                    "if": nir.IF(r=np.full(th.shape, 1 / DT), v_threshold=th, v_reset=np.zeros(th.shape)),
                    "output": nir.Output(output_type=np.array([2, 4, 4]))}, {"dt": DT})
    with pytest.raises(ExportError, match="within a channel"):
        quantize(g)


# ------------------------------------------------------------ what the chain refuses

def test_a_pool_after_the_last_population_is_refused():
    g = sequential({"input": nir.Input(input_type=np.array([1, 4, 4])),
                    "conv": conv(np.ones((1, 1, 3, 3)), (4, 4)), "if": iaf((1, 4, 4), 1.0),
                    "pool": pool2(), "output": nir.Output(output_type=np.array([1, 2, 2]))}, {"dt": DT})
    with pytest.raises(ExportError, match="'pool'.*feeds the graph output"):
        quantize(g)


def test_a_population_reading_anything_but_the_previous_one_is_refused():
    """netx connects its layers in sequence: a branch off an earlier population would be
    wired to the wrong input, so it is refused rather than rewired."""
    lin = lambda: nir.Linear(np.eye(2))  # noqa: E731
    nodes = {"input": nir.Input(input_type=np.array([2])), "fc1": lin(), "if1": iaf(2, 0.5),
             "fc2": lin(), "if2": iaf(2, 0.5), "fc3": lin(), "if3": iaf(2, 0.5),
             "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "fc1"), ("fc1", "if1"), ("if1", "fc2"), ("fc2", "if2"), ("if2", "output"),
             ("if1", "fc3"), ("fc3", "if3")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)
    with pytest.raises(ExportError, match="reads 'if1' where the layer chain has population"):
        quantize(g)


def test_a_flatten_of_the_output_spikes_is_accepted():
    """Only a reshape: Loihi's output is the last population's spikes, as before."""
    g = sequential({"input": nir.Input(input_type=np.array([1, 4, 4])),
                    "conv": conv(np.ones((2, 1, 3, 3)), (4, 4)), "if": iaf((2, 4, 4), 1.0),
                    "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
                    "output": nir.Output(output_type=np.array([32]))}, {"dt": DT})
    assert [layer.name for layer in quantize(g).layers] == ["if"]


def test_norse_li_readout_is_refused_naming_the_node():
    n = np.ones(3)
    g = norse_graph(np.random.default_rng(6), nir.LI(tau=2e-3 * n, r=n, v_leak=0 * n))
    with pytest.raises(ExportError, match=r"'out' \(LI\) has no Loihi equivalent"):
        quantize(g, dt=DT, allow_approximation=True)


# ------------------------------------------------------------ against the real Lava simulator

def loihi_cases():
    """(name, graph, compile options, T, input probability) run on both Loihi targets."""
    yield "sinabs sum pools", sinabs_graph(np.random.default_rng(1)), {}, 30, 0.3
    yield "sinabs input pool, avg pool", sinabs_avg_graph(np.random.default_rng(1)), {}, 30, 0.3
    yield "norse recurrent CubaLIF, both biases", norse_graph(np.random.default_rng(2)), \
        {"dt": DT, "allow_approximation": True}, 40, 0.4
    yield "thresholds per channel and neuron", mixed_threshold_graph(np.random.default_rng(5)), {}, 30, 0.4


@pytest.fixture(scope="module")
def loihi_results():
    """Every case on loihi-emu and in the Lava simulator, with the float reference."""
    out = {}
    for name, graph, options, T, p in loihi_cases():
        x = spikes(np.random.default_rng(9), graph, T=T, p=p)
        out[name] = {t: run(t, graph, x, options) for t in ("reference",) + LOIHI_TARGETS}
    return out


@pytest.mark.lava
@pytest.mark.parametrize("name", [c[0] for c in loihi_cases()])
def test_lava_is_spike_exact_with_loihi_emu(loihi_results, name):
    recs = loihi_results[name]
    emu, lava = recs["loihi-emu"], recs["lava"]
    assert emu.spiking == lava.spiking
    assert_same_spikes({"loihi-emu": emu, "lava": lava}, emu.spiking)
    assert lava.pipeline_latency == len(emu.spiking)


@pytest.mark.lava
@pytest.mark.parametrize("name", ["sinabs sum pools", "sinabs input pool, avg pool",
                                  "thresholds per channel and neuron"])
def test_lava_equals_the_float_reference_where_quantisation_is_lossless(loihi_results, name):
    recs = loihi_results[name]
    assert_same_spikes({"reference": recs["reference"], "lava": recs["lava"]}, recs["lava"].spiking)

