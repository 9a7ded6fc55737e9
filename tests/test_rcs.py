"""The RCS regulariser (AOI-SNN, docs/methods.md): its arithmetic on hand-made tensors, which
samples and layers it takes, where its gradient goes, the recipe option that enables it and
the one-line errors of bad option values."""
import math

import pytest
import torch
import yaml

from spikeport.core.errors import ConfigError, UnknownNameError
from spikeport.core.recording import predict
from spikeport.models.network import record
from spikeport.training.losses import (NORM_EPS, REGULARIZERS, LayerTrace, correct_over_last,
                                       make_regularizer, rcs_terms, window_steps)
from spikeport.training.loop import batch_loss, build_components, train
from spikeport.training.recipes import load_recipe

EPS = 1e-5


def layer(r, threshold=1.0, requires_grad=False):
    """A trace whose r(t) = s(t) + ReLU(u/theta) is ``r``: spikes 0, membrane r * theta."""
    r = torch.as_tensor(r, dtype=torch.float32)
    u = (r * threshold).clone().requires_grad_(requires_grad)
    return LayerTrace(torch.zeros_like(r), u, torch.tensor(threshold))


def outputs_predicting(labels_per_step, C=3):
    """(T, B, C) output spikes whose cumulative prediction at step t is labels_per_step[t][b]:
    each step gives the class of that step 10 more spikes than anything before."""
    T, B = len(labels_per_step), len(labels_per_step[0])
    o = torch.zeros(T, B, C)
    for t, labels in enumerate(labels_per_step):
        for b, c in enumerate(labels):
            o[t, b, c] = 10.0 * (t + 1) ** 2
    return o


def cosine(a, b):
    """The cosine of the paper's code, by hand: norms sqrt(sum x^2 + 1e-5)."""
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a) + NORM_EPS)
    nb = math.sqrt(sum(x * x for x in b) + NORM_EPS)
    return dot / (na * nb)


def test_the_registry_and_its_defaults():
    assert "rcs" in REGULARIZERS.names()
    reg = make_regularizer("rcs")
    assert (reg.name, reg.alpha) == ("rcs", 0.002)  # snncutoff configs/default.yaml
    assert reg.term.keywords == {"beta": 0.3, "eps": 1e-5, "layers": "hidden"}


@pytest.mark.parametrize("beta, T, k", [(0.3, 10, 3), (0.3, 20, 6), (0.29, 100, 29),
                                        (0.5, 4, 2), (1.0, 7, 7), (0.3, 3, 0)])
def test_the_window_is_floor_of_beta_T(beta, T, k):
    assert window_steps(beta, T) == k


def test_a_response_constant_over_time_has_cs_1_and_term_1_over_1_plus_eps():
    r = torch.tensor([[0.5, 1.0, 0.0, 2.0]]).expand(5, 1, 4)  # (T, B, N), the same at every t
    term = rcs_terms(layer(r), k=2, eps=EPS)
    # cs = |r|^2 / (|r|^2 + 1e-5) with |r|^2 = 5.25: 1 up to 2e-6
    assert term.item() == pytest.approx(1 / (1 + EPS), rel=1e-5)


def test_the_term_is_one_over_the_mean_cosine_to_the_mean_of_the_last_steps():
    rows = [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]  # T = 4, N = 3
    r = torch.tensor(rows).unsqueeze(1)
    k = 2
    r_d = [(rows[2][i] + rows[3][i]) / 2 for i in range(3)]  # mean of the last two steps
    cs = sum(cosine(row, r_d) for row in rows) / 4  # averaged over every step, as rcs_snn.py
    assert rcs_terms(layer(r), k, EPS).item() == pytest.approx(1 / (cs + EPS), rel=1e-6)


def test_r_is_the_spike_plus_the_positive_membrane_in_units_of_the_threshold():
    s = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])
    u = torch.tensor([[[0.0, 1.0, -3.0]], [[0.5, 0.0, 2.0]]])   # theta = 2: u/theta, ReLU
    r = [[1.0, 0.5, 0.0], [0.25, 1.0, 1.0]]
    k = 1
    cs = (cosine(r[0], r[1]) + cosine(r[1], r[1])) / 2
    term = rcs_terms(LayerTrace(s, u, torch.tensor(2.0)), k, EPS)
    assert term.item() == pytest.approx(1 / (cs + EPS), rel=1e-6)


def test_a_sample_counts_only_when_predicted_correctly_at_each_of_the_last_steps():
    # T = 4, k = 2 (beta 0.5); labels 0, 1, 2
    o = outputs_predicting([[0, 1, 2], [0, 1, 1], [0, 0, 2], [0, 1, 2]])
    y = torch.tensor([0, 1, 2])
    # sample 0 correct throughout; sample 1 wrong at step 3 (one of the last two) although
    # right at T; sample 2 wrong at step 2 only, before the window
    assert correct_over_last(o, y, 2).tolist() == [True, False, True]
    assert correct_over_last(o, y, 1).tolist() == [True, True, True]
    assert correct_over_last(o, y, 4).tolist() == [True, False, False]


def test_max_over_the_correct_samples_then_mean_over_layers():
    T, k = 4, 2
    steady = [[1.0, 1.0]] * T                                  # term 1/(1 + eps)
    drifting = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    half = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    # layer a: samples (steady, drifting, half); layer b: (drifting, half, steady)
    a = layer(torch.tensor([steady, drifting, half]).transpose(0, 1))
    b = layer(torch.tensor([drifting, half, steady]).transpose(0, 1))
    terms_a, terms_b = rcs_terms(a, k, EPS), rcs_terms(b, k, EPS)
    o = outputs_predicting([[0, 1, 2], [0, 1, 1], [0, 0, 2], [0, 2, 2]])
    y = torch.tensor([0, 1, 2])  # sample 1 is wrong at T: it never counts
    value = REGULARIZERS.get("rcs")([a, b], o, y, beta=0.5, eps=EPS)
    expected = (max(terms_a[0], terms_a[2]) + max(terms_b[0], terms_b[2])) / 2
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms_a[1] > terms_a[0] and terms_b[0] > terms_b[2]  # the wrong sample's is larger


def test_hidden_only_leaves_the_output_population_out():
    T, k = 4, 2
    steady = layer(torch.ones(T, 1, 3))
    drifting = layer(torch.eye(T)[:, None, :3])._replace(output=True)
    o = outputs_predicting([[0]] * T)
    y = torch.tensor([0])
    rcs = REGULARIZERS.get("rcs")
    both = rcs([steady, drifting], o, y, beta=0.5, eps=EPS, layers="all")
    hidden = rcs([steady, drifting], o, y, beta=0.5, eps=EPS, layers="hidden")
    assert hidden.item() == pytest.approx(rcs_terms(steady, k, EPS).item(), rel=1e-6)
    assert both.item() == pytest.approx(
        (rcs_terms(steady, k, EPS) + rcs_terms(drifting, k, EPS)).item() / 2, rel=1e-6)
    assert rcs([drifting], o, y, beta=0.5, eps=EPS, layers="hidden").item() == 0.0


def test_no_correct_sample_gives_zero():
    a = layer(torch.rand(4, 2, 3))
    o = outputs_predicting([[1, 0]] * 4, C=2)
    value = REGULARIZERS.get("rcs")([a], o, torch.tensor([0, 1]), beta=0.5, eps=EPS)
    assert value.item() == 0.0


def test_the_gradient_reaches_the_membranes_but_not_through_the_detached_mean():
    torch.manual_seed(0)
    r0 = torch.rand(5, 1, 4)
    trace = layer(r0, threshold=1.0, requires_grad=True)
    rcs_terms(trace, k=2, eps=EPS).sum().backward()
    grad = trace.membrane.grad
    assert grad is not None and grad.abs().sum() > 0
    # the same term with the mean of the last steps computed apart, as a constant
    u = r0.clone().requires_grad_(True)
    r_d = r0[-2:].mean(0, keepdim=True)
    norm = lambda v: (v.pow(2).sum(-1) + NORM_EPS).sqrt()  # noqa: E731
    cs = ((u * r_d).sum(-1) / (norm(u) * norm(r_d))).mean(0)
    (1 / (cs + EPS)).sum().backward()
    assert torch.allclose(grad, u.grad, atol=1e-7)
    # and not the gradient of the term with the mean attached, which differs
    v = r0.clone().requires_grad_(True)
    v_d = v[-2:].mean(0, keepdim=True)
    cs = ((v * v_d).sum(-1) / (norm(v) * norm(v_d))).mean(0)
    (1 / (cs + EPS)).sum().backward()
    assert not torch.allclose(grad, v.grad, atol=1e-5)


def test_the_gradient_reaches_the_spikes_and_the_mask_carries_none():
    s = torch.zeros(4, 2, 3, requires_grad=True)
    u = torch.rand(4, 2, 3)
    o = outputs_predicting([[0, 1]] * 4, C=2).requires_grad_(True)
    value = REGULARIZERS.get("rcs")([LayerTrace(s, u, torch.tensor(1.0))], o,
                                    torch.tensor([0, 1]), beta=0.5, eps=EPS)
    value.backward()
    assert s.grad.abs().sum() > 0
    assert o.grad is None or o.grad.abs().sum() == 0


def test_record_keeps_the_graph_only_when_asked(tiny_recipe):
    c = build_components(load_recipe(str(tiny_recipe)))
    x = torch.rand(4, 3, 1, 8, 8)
    for detach in (True, False):
        with record(c.model, membranes=True, detach=detach) as rec:
            c.model(x)
        for name, _ in c.model.neuron_layers():
            assert rec[name].shape[:2] == rec.membranes[name].shape[:2] == (4, 3)
            assert (rec.membranes[name].grad_fn is None) == detach


def test_the_option_adds_alpha_times_the_term_and_trains_the_hidden_layer(tiny_recipe):
    # beta 0.25 of T = 4: the window is the last step, so labels equal to the network's own
    # predictions make every sample count
    cfg = load_recipe(str(tiny_recipe), ["regularizer={name: rcs, alpha: 0.5, beta: 0.25}"])
    c = build_components(cfg, training=True)
    torch.manual_seed(1)
    x = (torch.rand(4, 16, 1, 8, 8) < 0.5).float()
    with torch.no_grad():
        y = predict(c.model(x))
    spikes, loss, term = batch_loss(c, x, y)
    assert loss.item() == pytest.approx(c.loss(spikes, y).item() + 0.5 * term.item(), rel=1e-6)
    term.backward()
    first = next(m for m in c.model.layers if hasattr(m, "weight"))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_a_recipe_with_the_option_trains_and_records_it(tiny_recipe, tmp_path):
    result = train(tiny_recipe, tmp_path / "run",
                   ["regularizer={name: rcs, alpha: 0.1, beta: 0.5}"])
    assert all(math.isfinite(e["regularizer"]) and e["regularizer"] >= 0
               for e in result.train_history)
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["regularizer"] == {"name": "rcs", "alpha": 0.1, "beta": 0.5, "eps": 1e-5,
                                      "layers": "hidden"}
    plain = load_recipe(str(tiny_recipe))
    assert plain.regularizer is None and "regularizer" not in plain.to_yaml()


def test_the_rcs_recipes_are_their_base_recipes_plus_the_section():
    for name in ("digits", "mnist-5k"):
        base, rcs = load_recipe(name).to_dict(), load_recipe(f"{name}-rcs").to_dict()
        assert rcs.pop("regularizer")["name"] == "rcs"
        assert {**rcs, "name": name} == base


@pytest.mark.parametrize("override, message", [
    ("regularizer={name: rcs, alhpa: 0.1}",
     "unknown key regularizer.alhpa -- fix: did you mean regularizer.alpha?"),
    ("regularizer={name: rcs, alpha: -1}", "regularizer.alpha must be a number >= 0"),
    ("regularizer={name: rcs, beta: 0}", "regularizer.beta must be in (0, 1]"),
    ("regularizer={name: rcs, beta: 1.5}", "regularizer.beta must be in (0, 1]"),
    ("regularizer={name: rcs, eps: 0}", "regularizer.eps must be a positive number"),
    ("regularizer={name: rcs, layers: output}", "regularizer.layers must be"),
    ("regularizer={name: rcs, alpha: fast}", "regularizer.alpha must be a number"),
    ("regularizer={name: rcs, beta: 0.2}",
     "regularizer.beta 0.2 with time_steps 4 leaves no step to average over"),
    ("regularizer={alpha: 0.1}", "regularizer.name: missing or not a string"),
    ("regularizer=rcs", "section 'regularizer' must be a mapping or null"),
])
def test_bad_option_values_are_one_line_config_errors(tiny_recipe, override, message):
    with pytest.raises(ConfigError) as e:
        load_recipe(str(tiny_recipe), [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unknown_regularizer_lists_the_known_ones(tiny_recipe):
    with pytest.raises(UnknownNameError, match="unknown regularizer 'rc' -- fix: use one of: .*rcs"):
        load_recipe(str(tiny_recipe), ["regularizer={name: rc}"])
