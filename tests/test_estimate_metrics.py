"""spikeport.estimation metrics and counting engine: hand-computed counts, conv fan-out, AC/MAC,
streaming, NeuroBench; the engine through its public functions (count_connection, window_any)."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from spikeport.ir.program import build_program
from spikeport.exporters.reference import run_graph
from spikeport.estimation import MetricsAccumulator
from spikeport.core.recording import Recording

DT = 1e-3


def _lif(n, thr=1.0):
    shape = (n,) if isinstance(n, int) else n
    return nir.LIF(tau=np.full(shape, 0.01), r=np.full(shape, 1.0), v_leak=np.zeros(shape),
                   v_threshold=np.full(shape, thr))


def _graph(nodes, edges, type_check=True):
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=type_check)


# ---- hand-computed MLP ---------------------------------------------------------------------
W1 = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]])   # non-zeros per input column: 1, 0, 2
W2 = np.array([[1.0, 1.0], [0.0, 3.0]])              # non-zeros per input column: 1, 2

X = np.zeros((3, 2, 3))
X[:, 0] = [[1, 1, 0], [0, 0, 1], [1, 0, 1]]
X[:, 1] = [[0, 0, 0], [0, 1, 0], [1, 1, 1]]
S1 = np.zeros((3, 2, 2))
S1[:, 0] = [[1, 0], [0, 0], [1, 1]]
S1[:, 1] = [[0, 0], [0, 0], [0, 1]]
S2 = np.zeros((3, 2, 2))
S2[:, 0] = [[0, 0], [1, 0], [0, 1]]


def _mlp_program():
    g = _graph({"in": nir.Input(input_type=np.array([3])),
                "a1": nir.Affine(weight=W1, bias=np.array([0.5, 0.0])),
                "lif1": _lif(2),
                "a2": nir.Affine(weight=W2, bias=np.zeros(2)),
                "lif2": _lif(2),
                "out": nir.Output(output_type=np.array([2]))},
               [("in", "a1"), ("a1", "lif1"), ("lif1", "a2"), ("a2", "lif2"), ("lif2", "out")])
    return build_program(g)


def _loihi_like_recording():
    """Only the neuron populations are recorded, as the Loihi targets do."""
    return Recording({"lif1": S1.copy(), "lif2": S2.copy()}, "lif2", ["lif1", "lif2"], DT)


def test_hand_computed_mlp_without_cutoff():
    acc = MetricsAccumulator(_mlp_program(), input_binary=True)
    acc.update(_loihi_like_recording(), X)
    s = acc.summary()
    json.dumps(s)
    assert s["samples"] == 2 and s["time_steps"] == 3 and s["mean_exit_step"] == 3
    l1, l2 = s["layers"]["lif1"], s["layers"]["lif2"]
    assert l1["hidden"] and not l2["hidden"]
    assert l1["spikes_per_step"] == [0.5, 0.0, 1.5]
    assert l1["spikes_per_sample"]["mean"] == 2.0 and l1["spikes_per_sample"]["max"] == 3.0
    assert l2["spikes_per_step"] == [0.0, 0.5, 0.5]
    assert l1["firing_rate"] == pytest.approx((3 / 6 + 1 / 6) / 2)
    assert s["input"]["events_per_step"] == [1.0, 1.0, 2.5]
    hu = s["hidden_usage"]
    assert hu["layers"] == ["lif1"] and hu["neurons"] == 2
    assert hu["mean"] == 0.75 and hu["median"] == 0.75
    assert hu["histogram"]["counts"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert s["activation_sparsity"]["all"] == pytest.approx(1 - 6 / 24)
    assert s["activation_sparsity"]["hidden"] == pytest.approx(1 - 4 / 12)
    a1, a2 = s["synops"]["a1"], s["synops"]["a2"]
    # a1: sample 0 steps 1 + 2 + 3, sample 1 steps 0 + 0 + 3
    assert a1["effective_per_step"] == [0.5, 1.0, 3.0] and a1["effective_per_sample"] == 4.5
    assert a2["effective_per_step"] == [0.5, 0.0, 2.5] and a2["effective_per_sample"] == 3.0
    assert a1["kind"] == a2["kind"] == "AC"
    assert a1["ac_per_sample"] == 4.5 and a1["mac_per_sample"] == 0.0
    assert a1["neurobench_ac_per_sample"] == 4.5 and a1["neurobench_mac_per_sample"] == 0.0
    assert (a1["dense_snn_per_sample"], a2["dense_snn_per_sample"]) == (18.0, 12.0)
    assert (a1["ann_macs"], a2["ann_macs"], a1["ann_flops"], a2["ann_flops"]) == (6, 4, 14, 10)
    assert (a1["nonzero_weights"], a1["weights"]) == (3, 6)
    assert a1["effective_per_synapse"] == 1.5 and a2["effective_per_synapse"] == 1.0
    t = s["synops_total"]
    assert t["effective"] == 7.5 and t["ac"] == 7.5 and t["mac"] == 0.0
    assert t["effective_per_step"] == [1.0, 1.0, 5.5] and t["effective_per_synapse"] == 1.25
    assert t["dense_snn"] == 30.0 and t["ann_macs"] == 10
    nu = s["neuron_updates"]
    assert nu["lif1"]["dense_per_sample"] == 6.0 and nu["lif2"]["dense_per_sample"] == 6.0
    # lif1 sample 0: {n0}, {n0,n1}, {n0,n1}; sample 1: {}, {} (input 1 has no weights), {n0,n1}
    assert nu["lif1"]["active_events_per_sample"] == 3.5
    # lif2 sample 0: {n0}, {n0 (spike, no input)}, {n0,n1}; sample 1: {}, {}, {n0,n1}
    assert nu["lif2"]["active_events_per_sample"] == 3.0
    assert nu["lif1"]["active_input_per_sample"] is None  # Affine output not recorded
    assert s["neuron_updates_total"]["active_input"] is None


def test_hand_computed_mlp_with_cutoff():
    acc = MetricsAccumulator(_mlp_program(), input_binary=True)
    acc.update(_loihi_like_recording(), X, exit_steps=np.array([2, 1]))
    s = acc.summary()
    assert s["mean_exit_step"] == 1.5
    l1, l2 = s["layers"]["lif1"], s["layers"]["lif2"]
    assert l1["spikes_per_step"] == [0.5, 0.0, 0.0]
    assert l1["spikes_per_sample"]["mean"] == 0.5
    assert l2["spikes_per_step"] == [0.0, 0.5, 0.0]
    assert l1["firing_rate"] == pytest.approx((1 / 4 + 0) / 2)
    assert s["hidden_usage"]["mean"] == 0.25 and s["hidden_usage"]["median"] == 0.25
    assert s["activation_sparsity"]["all"] == pytest.approx(1 - 2 / 12)
    assert s["activation_sparsity"]["hidden"] == pytest.approx(1 - 1 / 6)
    assert s["synops"]["a1"]["effective_per_step"] == [0.5, 1.0, 0.0]
    assert s["synops"]["a1"]["effective_per_sample"] == 1.5
    assert s["synops"]["a2"]["effective_per_sample"] == 0.5
    assert s["synops"]["a1"]["dense_snn_per_sample"] == 9.0
    assert s["neuron_updates"]["lif1"]["dense_per_sample"] == 3.0
    assert s["neuron_updates"]["lif1"]["active_events_per_sample"] == 1.5
    assert s["input"]["events_per_sample"] == 1.5  # sample 0: 2 + 1, sample 1: 0


def test_full_recording_gives_input_current_updates():
    prog = _mlp_program()
    rec = _loihi_like_recording()
    a1 = X @ W1.T + np.array([0.5, 0.0])
    rec.values.update({"in": X, "a1": a1, "a2": S1 @ W2.T, "out": S2})
    acc = MetricsAccumulator(prog, input_binary=True)
    acc.update(rec, X)
    nu = acc.summary()["neuron_updates"]
    # the bias 0.5 makes neuron 0 of lif1 active at every step: 6; neuron 1: x[2] != 0 -> 3
    assert nu["lif1"]["active_input_per_sample"] == (6 + 3) / 2
    assert nu["lif2"]["active_input_per_sample"] == 2.5  # (S1 @ W2.T != 0): 3 and 2


def test_invalid_exit_steps_and_time_axis():
    acc = MetricsAccumulator(_mlp_program(), input_binary=True)
    with pytest.raises(ValueError):
        acc.update(_loihi_like_recording(), X, exit_steps=np.array([0, 3]))
    with pytest.raises(ValueError):
        acc.update(_loihi_like_recording(), X, exit_steps=np.array([4, 3]))
    acc.update(_loihi_like_recording(), X)
    with pytest.raises(ValueError):
        acc.update(_loihi_like_recording(), X[:2])


# ---- convolution fan-out -------------------------------------------------------------------
@pytest.mark.parametrize("stride,pad,groups", [(1, 1, 1), (2, 1, 2), (2, 0, 1)])
def test_conv_effective_ops_match_brute_force(stride, pad, groups, brute_force_conv_ops):
    rng = np.random.default_rng(stride * 10 + pad + groups)
    C, O, H, W, k = 2, 4, 5, 6, 3
    w = rng.normal(size=(O, C // groups, k, k)) * (rng.random((O, C // groups, k, k)) < 0.6)
    conv = nir.Conv2d(input_shape=(H, W), weight=w, stride=stride, padding=pad, dilation=1,
                      groups=groups, bias=np.ones(O))
    Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
    g = _graph({"in": nir.Input(input_type=np.array([C, H, W])), "conv": conv,
                "lif": _lif((O, Ho, Wo)), "out": nir.Output(output_type=np.array([O, Ho, Wo]))},
               [("in", "conv"), ("conv", "lif"), ("lif", "out")],
               type_check=groups == 1)  # nir infers C_in = weight.shape[1], wrong for groups
    T, B = 3, 2
    x = (rng.random((T, B, C, H, W)) < 0.5).astype(float)
    x[0, 0] = 1.0  # one all-ones frame: every edge input is non-zero
    prog = build_program(g)
    acc = MetricsAccumulator(prog, input_binary=True)
    acc.update(run_graph(g, x), x)
    s = acc.summary()["synops"]["conv"]
    expected = sum(brute_force_conv_ops(x[t], w, stride, pad, groups) for t in range(T))
    assert s["effective_per_sample"] * B == expected
    dense = brute_force_conv_ops(x[0], w, stride, pad, groups, all_ones=True)  # both samples
    assert s["dense_snn_per_sample"] == dense / B * T
    # with padding, edge inputs reach fewer outputs: the dense count is below the nominal
    # C_in/groups * k^2 per output element (= ann_macs), which counts padded positions
    if pad:
        assert dense / B < s["ann_macs"]
    else:
        assert dense / B == s["ann_macs"]
    assert s["fan_in"] == C // groups * k * k and s["outputs"] == O * Ho * Wo
    assert s["ann_macs"] == C // groups * k * k * O * Ho * Wo


# ---- AC vs MAC from the graph --------------------------------------------------------------
def test_ac_mac_is_decided_from_the_graph():
    rng = np.random.default_rng(0)
    C, H, W = 1, 4, 4
    conv = nir.Conv2d(input_shape=(H, W), weight=rng.normal(size=(2, C, 3, 3)), stride=1,
                      padding=1, dilation=1, groups=1, bias=np.zeros(2))
    nodes = {"in": nir.Input(input_type=np.array([C, H, W])), "conv": conv,
             "lif0": _lif((2, H, W), 0.5),
             "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                   padding=np.array([0, 0])),
             "flat": nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0,
                                 end_dim=-1),
             "fc_pool": nir.Linear(weight=rng.normal(size=(5, 8))),  # pooled spikes -> MAC
             "lifa": _lif(5, 0.5),
             "fc_a": nir.Linear(weight=rng.normal(size=(3, 5))),  # spikes -> AC
             "fc_b": nir.Linear(weight=rng.normal(size=(5, 5))),
             "lifb": _lif(5, 0.5),
             "fc_res": nir.Linear(weight=rng.normal(size=(3, 5))),  # lifa + lifb summed -> MAC
             "lifc": _lif(3, 0.5),
             "out": nir.Output(output_type=np.array([3]))}
    edges = [("in", "conv"), ("conv", "lif0"), ("lif0", "pool"), ("pool", "flat"),
             ("flat", "fc_pool"), ("fc_pool", "lifa"), ("lifa", "fc_b"), ("fc_b", "lifb"),
             ("lifb", "fc_res"), ("lifa", "fc_res"), ("fc_res", "lifc"), ("lifc", "out"),
             ("lifa", "fc_a"), ("fc_a", "lifc")]
    g = _graph(nodes, edges)
    prog = build_program(g)
    x = (rng.random((4, 3, C, H, W)) < 0.6).astype(float)
    rec = run_graph(g, x)
    kinds = {}
    for binary in (True, False):
        acc = MetricsAccumulator(prog, input_binary=binary)
        acc.update(rec, x)
        s = acc.summary()["synops"]
        kinds[binary] = {c: r["kind"] for c, r in s.items()}
        # NeuroBench's value-based split: the input is binary, so conv is AC by value
        assert s["conv"]["neurobench_mac_per_sample"] == 0.0
    assert kinds[True] == {"conv": "AC", "fc_pool": "MAC", "fc_a": "AC", "fc_b": "AC",
                           "fc_res": "MAC"}
    assert kinds[False]["conv"] == "MAC"
    t = acc.summary()["synops_total"]
    assert t["ac"] + t["mac"] == pytest.approx(t["effective"])
    assert t["neurobench_ac"] + t["neurobench_mac"] == pytest.approx(t["effective"])

    # the pooled input and the Flatten are recomputed when only populations are recorded
    spk = {n: rec.values[n] for n in rec.spiking}
    thin = Recording(spk, rec.output, list(rec.spiking), rec.dt)
    a, b = MetricsAccumulator(prog, True), MetricsAccumulator(prog, True)
    a.update(rec, x)
    b.update(thin, x)
    sa, sb = a.summary(), b.summary()
    assert sb["synops"] == sa["synops"]
    assert sb["neuron_updates_total"]["active_events"] == sa["neuron_updates_total"]["active_events"]
    assert sb["neuron_updates_total"]["active_input"] is None
    assert sa["neuron_updates_total"]["active_input"] is not None


def test_analog_input_is_mac_by_graph_and_by_value():
    prog = _mlp_program()
    x = X * 0.5
    acc = MetricsAccumulator(prog, input_binary=False)
    acc.update(_loihi_like_recording(), x)
    a1 = acc.summary()["synops"]["a1"]
    assert a1["kind"] == "MAC" and a1["mac_per_sample"] == 4.5
    # steps where the input is all zero count as "binary" for NeuroBench but carry no ops
    assert a1["neurobench_mac_per_sample"] == 4.5 and a1["neurobench_ac_per_sample"] == 0.0


# ---- streaming -----------------------------------------------------------------------------
def _random_mlp(seed: int, bias: bool = False):
    """A 6-8-3 LIF MLP with some zero weights (and some biases), 7 steps of 10 binary
    input samples and random exit steps: (graph, program, x, exit steps)."""
    rng = np.random.default_rng(seed)
    g = _graph({"in": nir.Input(input_type=np.array([6])),
                "a1": nir.Affine(weight=rng.normal(size=(8, 6)) * (rng.random((8, 6)) < 0.7),
                                 bias=rng.normal(size=8) * (rng.random(8) < 0.5) if bias else np.zeros(8)),
                "lif1": _lif(8, 0.3),
                "a2": nir.Affine(weight=rng.normal(size=(3, 8)), bias=np.zeros(3)),
                "lif2": _lif(3, 0.3),
                "out": nir.Output(output_type=np.array([3]))},
               [("in", "a1"), ("a1", "lif1"), ("lif1", "a2"), ("a2", "lif2"), ("lif2", "out")])
    x = (rng.random((7, 10, 6)) < 0.5).astype(float)
    return g, build_program(g), x, rng.integers(1, 8, size=10)


def test_two_batches_equal_one_batch():
    g, prog, x, ts = _random_mlp(3)
    whole = MetricsAccumulator(prog, True)
    whole.update(run_graph(g, x), x, ts)
    parts = MetricsAccumulator(prog, True)
    for sl in (slice(0, 4), slice(4, 10)):
        parts.update(run_graph(g, x[:, sl]), x[:, sl], ts[sl])
    a, b = whole.summary(), parts.summary()
    assert a["synops_total"]["effective"] > 0 and a["spikes_per_sample"] > 0

    def close(u, v):
        if isinstance(u, dict):
            assert u.keys() == v.keys()
            for k in u:
                close(u[k], v[k])
        elif isinstance(u, list):
            assert len(u) == len(v)
            for p, q in zip(u, v):
                close(p, q)
        elif isinstance(u, float):
            assert u == pytest.approx(v, rel=1e-12, abs=1e-12)
        else:
            assert u == v
    close(a, b)


@pytest.mark.parametrize("hot_bytes", [None, 200])
def test_recorded_nonzero_maps_change_nothing(hot_bytes, monkeypatch):
    """The onnx target's counting run records where each node is non-zero (exactly
    values != 0, also across run_in_batches' parts; with a small HOT_STEP_BYTES only the
    nodes whose step values fit); the metrics read from those maps equal the metrics
    computed from the values, with exit steps and on a delayed time axis."""
    import dataclasses

    from spikeport.exporters import onnx as onnx_target
    from spikeport.exporters.targets import get_target
    from spikeport.exporters.targets import run_in_batches
    if hot_bytes is not None:  # 4 samples per part: 8 neurons = 256 bytes, 6 or 3 fit
        monkeypatch.setattr(onnx_target, "HOT_STEP_BYTES", hot_bytes)
    g, prog, x, ts = _random_mlp(5, bias=True)
    tg = get_target("onnx")
    art = tg.compile(g, {})
    plain = run_in_batches(tg, art, x, 4)
    counted = run_in_batches(tg.counting_run(), art, x, 4)
    wide = {"a1", "lif1"} if hot_bytes else set()
    assert not plain.nonzero and set(counted.nonzero) == set(counted.values) - wide
    for n in counted.nonzero:
        np.testing.assert_array_equal(counted.nonzero[n], counted.values[n] != 0)

    def summary(rec):
        acc = MetricsAccumulator(prog, True, binary_spikes=True)
        acc.update(rec, x, ts)
        return acc.summary()

    with_maps = summary(counted)
    assert with_maps == summary(plain)
    assert with_maps["neuron_updates_total"]["active_input"] > 0

    def delayed(rec, maps):  # every node one step late, as on a pipelined target
        shift = {n: np.concatenate([np.zeros_like(v[:1]), v]) for n, v in rec.values.items()}
        nz = {n: np.concatenate([np.zeros_like(v[:1]), v]) for n, v in rec.nonzero.items()}
        return Recording(shift, rec.output, rec.spiking, rec.dt, delay={n: 1 for n in shift},
                         nonzero=nz if maps else {})
    assert summary(delayed(counted, True)) == summary(delayed(counted, False)) == with_maps


# ---- NeuroBench cross-check ----------------------------------------------------------------
@pytest.mark.parametrize("arch, kw", [
    ("mlp", {"hidden": [32]}),
    ("conv", {"channels": [4, 6], "pool": "avg", "dense": [12]}),
])
def test_neurobench_cross_check(arch, kw):
    # neurobench is installed by `make setup` (--no-deps); a missing install must fail here,
    # not skip, or the cross-check would silently stop running.
    import torch
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import SNNTorchModel
    from torch.utils.data import DataLoader, TensorDataset

    from spikeport.models.export import export_model
    from spikeport.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, (1, 8, 8), 10, threshold=0.5, **kw)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.mul_(4.0)
                m.weight[m.weight.abs() < 0.1] = 0.0  # some zero weights
    model.eval()
    T, B = 12, 16
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, 1, 8, 8, generator=gen) < 0.3).double()

    class Wrapped(torch.nn.Module):  # NeuroBench passes (batch, T, ...)
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, data):
            return self.net(data.transpose(0, 1))  # (T, B, C); SNNTorchModel transposes back

    net = Wrapped(model.double())
    loader = DataLoader(TensorDataset(x.transpose(0, 1), torch.zeros(B)), batch_size=B)
    bench = Benchmark(SNNTorchModel(net, custom_forward=True), loader, [], [],
                      [[Footprint, ConnectionSparsity], [SynapticOperations, ActivationSparsity]])
    res = bench.run(quiet=True)
    nb_ops = res["SynapticOperations"]
    nb_sparsity = res["ActivationSparsity"]
    assert nb_ops["Effective_ACs"] > 0 and 0 < nb_sparsity < 1  # not a swallowed error

    graph = export_model(model.float(), (1, 8, 8))
    prog = build_program(graph)
    acc = MetricsAccumulator(prog, input_binary=True)
    xn = x.numpy()
    acc.update(run_graph(graph, xn), xn)
    s = acc.summary()
    t = s["synops_total"]
    ours_eff = t["effective"]
    theirs_eff = nb_ops["Effective_ACs"] + nb_ops["Effective_MACs"]
    rel_eff = abs(ours_eff - theirs_eff) / theirs_eff
    rel_dense = abs(t["dense_snn"] - nb_ops["Dense"]) / nb_ops["Dense"]
    rel_sp = abs(s["activation_sparsity"]["all"] - nb_sparsity) / nb_sparsity
    print(f"\nNeuroBench cross-check: effective ours {ours_eff:.2f} vs {theirs_eff:.2f} "
          f"(rel {rel_eff:.2e}); dense {t['dense_snn']:.1f} vs {nb_ops['Dense']:.1f} "
          f"(rel {rel_dense:.2e}); sparsity {s['activation_sparsity']['all']:.6f} vs "
          f"{nb_sparsity:.6f} (rel {rel_sp:.2e}); NB ACs {nb_ops['Effective_ACs']:.2f} "
          f"MACs {nb_ops['Effective_MACs']:.2f}; ours AC {t['ac']:.2f} MAC {t['mac']:.2f}")
    assert rel_eff < 0.01 and rel_dense < 0.01 and rel_sp < 0.01
    # the same figures under NeuroBench's names, and its two static metrics
    nbs = s["neurobench"]
    assert nbs["SynapticOperations"] == {"Effective_MACs": t["neurobench_mac"],
                                         "Effective_ACs": t["neurobench_ac"], "Dense": t["dense_snn"]}
    assert nbs["ActivationSparsity"] == s["activation_sparsity"]["all"]
    assert abs(nbs["ConnectionSparsity"] - res["ConnectionSparsity"]) < 1e-3  # NB rounds
    assert 0 < res["ConnectionSparsity"] < 1
    # Footprint: NeuroBench counts the model as it ran, in float64 here (8 bytes, ours is
    # float32: 4), plus snntorch's two scalar buffers per spiking layer (graded_spikes_factor
    # and reset_mechanism_val, 8 bytes each here)
    spiking_layers = sum(1 for n in graph.nodes.values() if isinstance(n, (nir.LIF, nir.CubaLIF)))
    assert 2 * nbs["Footprint"] + 16 * spiking_layers == res["Footprint"]


def test_recurrent_weights_are_counted():
    rng = np.random.default_rng(5)
    w_in = rng.normal(size=(4, 3))
    w_rec = rng.normal(size=(4, 4)) * (rng.random((4, 4)) < 0.5)
    g = _graph({"in": nir.Input(input_type=np.array([3])),
                "a_in": nir.Linear(weight=w_in), "lif": _lif(4, 0.2),
                "a_rec": nir.Linear(weight=w_rec),
                "out": nir.Output(output_type=np.array([4]))},
               [("in", "a_in"), ("a_in", "lif"), ("lif", "a_rec"), ("a_rec", "lif"),
                ("lif", "out")])
    prog = build_program(g)
    assert prog.recurrent_edges() == [("a_rec", "lif")]
    x = (rng.random((6, 5, 3)) < 0.5).astype(float)
    rec = run_graph(g, x)
    acc = MetricsAccumulator(prog, True)
    acc.update(rec, x)
    s = acc.summary()["synops"]["a_rec"]
    spikes = rec.values["lif"]
    assert spikes.sum() > 0
    expected = float(((spikes != 0) @ (w_rec != 0).sum(0)).sum()) / 5
    assert s["kind"] == "AC" and s["effective_per_sample"] == pytest.approx(expected)
    assert s["dense_snn_per_sample"] == 16 * 6


# ---- the event counter against the reference kernels with binarised weights --------------
def _binarised_reference(node, nz):
    """Per output element: (non-zero input, non-zero weight) pairs, by the float64 reference
    kernels of spikeport.exporters.reference (an implementation independent of the counter's)."""
    from spikeport.exporters.reference import KERNELS
    k = KERNELS.get(type(node).__name__)(node, DT)
    k.w = (k.w != 0).astype(np.float64)
    if hasattr(k, "b"):
        k.b = np.zeros_like(k.b)
    T, B = nz.shape[:2]
    y, _ = k.step(nz.reshape(T * B, *nz.shape[2:]).astype(np.float64), None)
    return y.reshape(T, B, *y.shape[1:])


def _conv2d(w, **kw):
    args = dict(input_shape=None, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(len(w)))
    args.update(kw)
    return nir.Conv2d(weight=w, **args)


@pytest.mark.parametrize("case", ["dense-full", "dense-zeros", "dense-wide-spread", "dense-multiword",
                                  "affine-two-axes", "conv-full", "conv-zeros",
                                  "conv-groups-stride-dilation", "conv-same", "conv1d-full",
                                  "conv1d-zeros"])
def test_counter_matches_binarised_reference(case):
    """Events, non-zero inputs and receiving outputs of every counting path -- dense by
    popcounts (fan-outs within 4 bits of each other) or by a product (wider spread), inputs
    of one and of several 64-bit words, an Affine over two axes, convolutions with and
    without zero weights -- equal the binarised connection run by the reference kernels."""
    from spikeport.estimation.counting import MAX_FANOUT_BITS, count_connection
    rng = np.random.default_rng(len(case))
    sparse = "zeros" in case or case in ("dense-wide-spread", "dense-multiword", "affine-two-axes")
    T, B = 3, 4

    def weights(shape):
        w = rng.normal(size=shape)
        if sparse:
            w = w * (rng.random(shape) < 0.5)
            w.reshape(shape[0], -1)[0] = 0.0  # one output with no synapse at all
        return w

    if case == "dense-wide-spread":  # column i has about i zeros: fan-outs spread over 40
        w = weights((40, 70))
        w[:, 40:] = 1.0
        w[np.arange(40)[:, None] < np.arange(70)[None, :] % 40] = 0.0
        node, in_shape = nir.Linear(weight=w), (70,)
    elif case == "dense-multiword":
        node, in_shape = nir.Linear(weight=weights((3, 150))), (150,)
    elif case == "affine-two-axes":
        node, in_shape = nir.Affine(weight=weights((4, 5)), bias=np.zeros(4)), (3, 5)
    elif case.startswith("dense"):
        node, in_shape = nir.Linear(weight=weights((7, 5))), (5,)
    elif case == "conv-groups-stride-dilation":
        node, in_shape = _conv2d(weights((6, 2, 3, 3)), stride=2, padding=2, dilation=2, groups=2), (4, 9, 8)
    elif case == "conv-same":
        node, in_shape = _conv2d(weights((3, 2, 4, 3)), padding="same"), (2, 6, 7)
    elif case.startswith("conv1d"):
        w = weights((4, 2, 3))
        node, in_shape = nir.Conv1d(input_shape=None, weight=w, stride=2, padding=1, dilation=1,
                                    groups=1, bias=np.zeros(4)), (2, 9)
    else:
        node, in_shape = _conv2d(weights((5, 3, 3, 3)), stride=1, padding=1), (3, 6, 6)
    nz = rng.random((T, B, *in_shape)) < (0.03 if case == "dense-wide-spread" else 0.3)
    nz[0, 0] = True   # every input non-zero
    nz[1, 1] = False  # no input at all
    ref = _binarised_reference(node, nz)
    count = count_connection(node, nz)
    assert count.zero_weights == sparse
    if case == "dense-wide-spread":
        assert count.method == "product"  # counted by the float32 product
    elif not isinstance(node, (nir.Conv1d, nir.Conv2d)):
        assert count.method == "popcount" and count.popcount_masks <= MAX_FANOUT_BITS
    ops, nonzero, receives, active = count.ops, count.nonzero, count.receives, count.active
    np.testing.assert_array_equal(ops, ref.reshape(T, B, -1).sum(-1))
    np.testing.assert_array_equal(nonzero, nz.reshape(T, B, -1).sum(-1))
    np.testing.assert_array_equal(receives, ref > 0)
    if active is not None:
        np.testing.assert_array_equal(active, (ref > 0).reshape(T, B, -1).sum(-1))
    assert not receives[1, 1].any()
    assert ops[0, 0] > 0 and ops[1, 1] == 0


@pytest.mark.parametrize("k,stride,pad", [(2, 2, 0), (3, 2, 1), (3, 1, 1)])
def test_pool_events_match_reference_pool(k, stride, pad):
    """A pool passes an event on iff its window holds one (zero padding holds none)."""
    from spikeport.exporters.reference import KERNELS
    from spikeport.estimation.counting import window_any
    rng = np.random.default_rng(k * 100 + stride * 10 + pad)
    e = rng.random((2, 3, 4, 7, 6)) < 0.1
    node = nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([stride, stride]),
                         padding=np.array([pad, pad]))
    ref, _ = KERNELS.get("SumPool2d")(node, DT).step(e.reshape(6, 4, 7, 6).astype(float), None)
    np.testing.assert_array_equal(window_any(node, e), ref.reshape(2, 3, *ref.shape[1:]) > 0)


def test_dense_receives_when_active_inputs_outnumber_zero_weights():
    """Output 0 has zero weights from inputs 0 and 1: a step whose only non-zero inputs are
    among those misses output 0; one more non-zero input anywhere reaches it."""
    from spikeport.estimation.counting import count_connection
    w = np.ones((3, 6))
    w[0, :2] = 0.0
    node = nir.Linear(weight=w)
    nz = np.zeros((1, 6, 6), bool)
    nz[0, 0, [0]] = True          # only a zero-weight input: output 0 misses
    nz[0, 1, [0, 1]] = True       # two active inputs, both zero-weight for output 0: misses
    nz[0, 2, [0, 2]] = True       # one of them reaches output 0
    nz[0, 3, [2, 3, 4]] = True    # more active inputs than zeros: every output receives
    nz[0, 5, [1]] = True
    got = count_connection(node, nz).receives
    np.testing.assert_array_equal(got, _binarised_reference(node, nz) > 0)
    np.testing.assert_array_equal(got[0, :, 0], [False, False, True, True, False, False])
    np.testing.assert_array_equal(got[0, :, 1], [True, True, True, True, False, True])


def test_memory_traffic_of_the_hand_computed_mlp():
    """Lemaire-style bytes per sample, by hand (fp32 = 4 bytes; every buffer is below 8 KB,
    so each 64-bit access counts buffer/8 KB of an 8 KB access)."""
    acc = MetricsAccumulator(_mlp_program(), input_binary=True)
    acc.update(_loihi_like_recording(), X)
    mem = acc.summary()["memory"]
    a1, a2 = mem["connections"]["a1"], mem["connections"]["a2"]
    # a1: 4.5 non-zero inputs and 4.5 synaptic ops per sample; a2: 2 input spikes, 3 ops
    assert (a1["input_reads"], a1["weight_reads"], a1["accumulator_reads_writes"]) == (18, 18, 36)
    assert (a2["input_reads"], a2["weight_reads"], a2["accumulator_reads_writes"]) == (8, 12, 24)
    assert a1["buffers"] == {"input": 12, "weights": 24, "accumulator": 8}
    l1, l2 = mem["populations"]["lif1"], mem["populations"]["lif2"]
    # 2 neurons x 3 steps, one state variable read and written; spikes 2.0 and 1.0 per sample
    assert (l1["state_reads_writes"], l1["spike_writes"]) == (48, 8)
    assert (l2["state_reads_writes"], l2["spike_writes"]) == (48, 4)
    assert mem["bytes_per_sample"] == 72 + 44 + 56 + 52
    assert set(mem["accesses_64bit"]) == {"8kb"}
    assert mem["accesses_64bit"]["8kb"] == pytest.approx(281 / 8192)
    assert mem["ann_dense"]["bytes_per_sample"] == 76
    assert mem["ann_dense"]["accesses_64bit"]["8kb"] == pytest.approx(146 / 8192)


@pytest.mark.parametrize("kb,expected", [(8, {"8kb": 1.0}), (20, {"8kb": 0.5, "32kb": 0.5}),
                                         (32, {"32kb": 1.0}), (4, {"8kb": 0.5}),
                                         (2048, {"1mb": 1.0})])
def test_memory_levels_interpolate_the_energy_in_buffer_size(kb, expected):
    from spikeport.estimation.memory import accesses_by_level
    assert accesses_by_level(8.0, kb * 1024) == pytest.approx(expected)  # one 64-bit access


# ---- one definition of the hidden populations ------------------------------------------------
@pytest.mark.parametrize("recipe, input_shape", [("digits", (1, 8, 8)), ("mnist-5k", (1, 28, 28))])
def test_training_and_the_estimator_name_the_same_hidden_populations(recipe, input_shape):
    """Training takes a model's populations in forward order, the estimator walks the NIR
    graph back from its Output; both leave hidden_populations() to decide, and agree."""
    from pathlib import Path

    import yaml

    import spikeport.models
    from spikeport.models import build_model
    from spikeport.models.export import export_model
    from spikeport.training.scores import HiddenUsage

    path = Path(spikeport.models.__file__).parent / "recipes" / f"{recipe}.yaml"
    params = dict(yaml.safe_load(path.read_text())["model"])
    model = build_model(params.pop("arch"), input_shape, 10, **params)
    usage = HiddenUsage.of_network([name for name, _ in model.neuron_layers()])
    acc = MetricsAccumulator(build_program(export_model(model, input_shape)), input_binary=True)
    assert usage.layers and len(acc.network.hidden) == len(acc.network.spiking) - 1
    # the exporter names a module "layers.2" node "layers_2"
    assert [name.replace(".", "_") for name in usage.layers] == acc.network.hidden


# ---- the typed result ------------------------------------------------------------------------
def test_estimate_result_json_leaves_out_the_first_sample_and_unset_fields():
    from spikeport.estimation.report import EstimateResult

    r = EstimateResult(target="t", inputs="i", samples=2, T=3, spikes_per_sample=1.5,
                       hidden_usage=None, synops_per_sample=2.0, memory_bytes_per_sample=8.0,
                       energy_per_sample_j=1e-9, energy_dynamic_j=4e-10, energy_static_j=6e-10,
                       energy_profile="p", energy={"p": {}}, neurobench={},
                       cutoff=None, counts={"spikes": 1.5}, metrics={"layers": {}},
                       first_sample={"lif": np.ones((3, 2))})
    d = r.as_dict()
    assert "first_sample" not in d and "pipeline_latency_steps" not in d and "plots" not in d
    assert "mapping" not in d and d["energy_dynamic_j"] == 4e-10
    assert d["metrics"] == {"layers": {}} and d["cutoff"] is None and d["hidden_usage"] is None
    assert r.to_json() == {k: v for k, v in d.items() if k != "metrics"}
    r.pipeline_latency_steps, r.plots = 2, ["a.png"]
    assert r.to_json()["pipeline_latency_steps"] == 2 and r.to_json()["plots"] == ["a.png"]
    json.dumps(r.as_dict())
