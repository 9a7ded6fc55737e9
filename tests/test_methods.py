"""Training methods (docs/methods.md): the method registry and its one-line refusals, the
EMD between spike trains and its silent-neuron rule, the balanced pair sampler, the
self-supervised objectives, that self-supervised training never reads a label, and that
an embedding run evaluates to the figures it was trained with. Small digits runs only."""
import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from spikeport.cli import app
from spikeport.core.errors import ConfigError, SpikeportError
from spikeport.training.loop import build_components, fit, train
from spikeport.training.methods import method_registry
from spikeport.training.recipes import load_recipe, parse_recipe, recipe_path
from spikeport.training.siamese import PairSampler, contrastive, emd, spike_cdf
from spikeport.training.ssl import ntxent, simsiam, vicreg

runner = CliRunner()

TINY = ["dataset={name: digits, test_fraction: 0.2, split_seed: 0}", "model.hidden=[32]",
        "train.epochs=1", "train.batch_size=64", "time_steps=6", "model.loihi_aware=false"]


def tiny(recipe, *more):
    return load_recipe(recipe, TINY + ["method.embedding=16", *more])


def recipe_data(**changes):
    data = yaml.safe_load(recipe_path("ssl-poisson-mnist").read_text())
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


# ------------------------------------------------------------------ registry and recipe

def test_the_registry_lists_the_methods_and_the_cli_shows_them():
    assert {"supervised", "siamese-emd", "ssl-two-view"} <= set(method_registry().names())
    out = runner.invoke(app, ["list", "methods"])
    assert out.exit_code == 0 and "siamese-emd" in out.output and "ssl-two-view" in out.output


@pytest.mark.parametrize("changes, message", [
    ({"method": {"name": "simclr"}}, "unknown training method 'simclr'"),
    ({"method": {"name": "ssl-two-view", "objective": "byol"}}, "method.objective"),
    ({"method": {"name": "siamese-emd", "margin": -1}}, "method.margin"),
    ({"method": {"name": "siamese-emd", "marign": 1}}, "unknown key method.marign"),
    ({"loss": {"name": "ce-count"}}, "loss section is not used"),
    ({"regularizer": {"name": "rcs", "alpha": 0.1}}, "cannot take regularizer 'rcs'"),
    ({"method": None}, "missing 'loss'"),
])
def test_bad_method_sections_are_one_line_errors(changes, message):
    with pytest.raises(SpikeportError) as e:
        parse_recipe(recipe_data(**changes), "r.yaml")
    text = str(e.value)
    assert message in text and "\n" not in text and text.startswith("r.yaml: ")


def test_a_method_section_is_completed_with_its_defaults_and_a_supervised_one_is_not_written():
    cfg = load_recipe("siamese-emd-mnist")
    assert cfg.method["name"] == "siamese-emd" and "knn_k" in cfg.method and cfg.loss is None
    assert "loss" not in cfg.to_dict()
    digits = load_recipe("digits").to_dict()
    assert "method" not in digits and digits["loss"]["name"]


# ------------------------------------------------------------------ EMD and pairs

def train_of(T, steps):
    s = torch.zeros(T)
    s[list(steps)] = 1.0
    return s.view(T, 1, 1)


@pytest.mark.parametrize("a, b, distance", [
    ([2], [5], 3.0),             # one spike each: the shift in steps
    ([0, 1], [0, 1, 2, 3], 1.0),  # the rate does not count, the timing does: CDFs .5,1 vs .25,.5,.75,1
    ([3], [], 5.0),              # silent = all mass at step T+1: T - 3 of T = 8 steps
    ([], [], 0.0),               # two silent neurons
])
def test_emd_is_the_wasserstein_distance_in_steps_with_silent_mass_at_t_plus_1(a, b, distance):
    assert emd(train_of(8, a), train_of(8, b)).item() == pytest.approx(distance)


def test_emd_averages_over_neurons_and_the_silent_gradient_is_finite():
    s1 = torch.zeros(6, 1, 2, requires_grad=True)  # both neurons silent
    s2 = torch.zeros(6, 1, 2)
    s2[1, 0, 0] = s2[4, 0, 1] = 1.0
    d = emd(s1, s2)
    assert d.item() == pytest.approx(((6 - 1) + (6 - 4)) / 2)
    d.backward()
    assert torch.isfinite(s1.grad).all() and s1.grad.abs().max() <= 6
    assert torch.equal(spike_cdf(torch.zeros(3, 1, 1)), torch.zeros(3, 1, 1))


def test_the_contrastive_loss_pulls_same_pairs_and_hinges_different_ones():
    d = torch.tensor([0.5, 3.0, 1.0, 0.2])
    same = torch.tensor([True, True, False, False])
    assert contrastive(d, same, 2.0).item() == pytest.approx((0.5 + 3.0 + 1.0 + 1.8) / 4)


def test_pairs_are_balanced_seeded_and_of_the_right_classes():
    y = np.repeat(np.arange(4), [5, 2, 7, 3])
    sampler = PairSampler(y)
    anchors = torch.arange(len(y)).repeat(20)
    same = torch.arange(len(anchors)) % 2 == 0
    p1 = sampler.partners(anchors, same, torch.Generator().manual_seed(1))
    p2 = sampler.partners(anchors, same, torch.Generator().manual_seed(1))
    assert torch.equal(p1, p2) and same.float().mean() == 0.5
    yt = torch.as_tensor(y)
    assert (yt[p1[same]] == yt[anchors[same]]).all() and (p1[same] != anchors[same]).all()
    assert (yt[p1[~same]] != yt[anchors[~same]]).all()
    assert set(yt[p1[~same]].tolist()) == {0, 1, 2, 3}  # every class gets drawn
    with pytest.raises(ConfigError, match="two training samples"):
        PairSampler(np.array([0, 0, 1]))


# ------------------------------------------------------------------ SSL objectives

def test_ssl_objectives_on_hand_made_projections():
    torch.manual_seed(0)
    p = torch.randn(64, 8) * 3
    # identical views: no invariance term; a spread-out batch leaves the variance term 0
    assert vicreg(p, p, 25, 0, 0).item() == 0.0
    assert vicreg(p, p, 0, 1, 0).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(64, 8)
    assert vicreg(collapsed, collapsed, 0, 1, 0).item() == pytest.approx(2 * (1 - 1e-2), rel=1e-4)
    assert simsiam(p, p, p, p).item() == pytest.approx(-1.0)
    other = torch.randn(64, 8)
    assert ntxent(p, p, 0.5).item() < ntxent(p, other, 0.5).item()


# ------------------------------------------------------------------ no labels in SSL

def _weights_after_fit(cfg, labels=None):
    c = build_components(cfg, training=True)
    if labels is not None:
        c.dataset = dataclasses.replace(c.dataset, y_train=labels(c.dataset.y_train))
    fit(c, progress=False)
    return c.model.state_dict()


@pytest.mark.parametrize("objective", ["vicreg", "simsiam", "ntxent"])
def test_self_supervised_training_never_reads_the_labels(objective):
    """Permuted labels give the same weights; siamese training, which reads them, does not
    (so the comparison can fail)."""
    cfg = tiny("ssl-poisson-mnist", f"method.objective={objective}")
    clean = _weights_after_fit(cfg)
    shuffled = _weights_after_fit(cfg, lambda y: np.random.default_rng(1).permutation(y))
    assert all(torch.equal(clean[k], shuffled[k]) for k in clean)
    assert any(not torch.equal(clean[k], v) for k, v in build_components(cfg).model.state_dict().items())


def test_siamese_training_reads_the_labels_so_poisoning_them_changes_the_weights():
    cfg = tiny("siamese-emd-mnist")
    clean = _weights_after_fit(cfg)
    shuffled = _weights_after_fit(cfg, lambda y: np.random.default_rng(1).permutation(y))
    assert any(not torch.equal(clean[k], shuffled[k]) for k in clean)


# ------------------------------------------------------------------ runs

@pytest.mark.parametrize("recipe", ["ssl-poisson-mnist", "siamese-emd-mnist"])
def test_an_embedding_run_reports_both_probes_and_evaluates_identically(recipe, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--recipe", recipe, "--out", str(out), "--json"]
    for s in TINY + ["method.embedding=16"]:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test_accuracy"] == summary["knn_accuracy"]
    assert 0 <= summary["linear_probe_accuracy"] <= 1 and 0 <= summary["hidden_usage"] <= 1
    metrics = json.loads((out / "metrics.json").read_text())
    floor = metrics["embedding"]["random_floor"]
    assert set(floor) >= {"knn_accuracy", "linear_probe_accuracy"}
    again = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert json.loads(again.stdout) == summary
    state = torch.load(out / "checkpoint.pt", weights_only=False)["state_dict"]
    assert set(state) == set(build_components(load_recipe(str(out / "config.yaml"))).model
                             .state_dict())  # the projector is host-side, not saved


def test_an_embedding_method_refuses_data_parallel_training(tmp_path):
    with pytest.raises(ConfigError, match="trains in one process"):
        train(tiny("ssl-poisson-mnist"), tmp_path / "r", nproc=2)


def test_weights_that_left_the_finite_numbers_stop_training_in_one_line():
    """Both training loops (supervised and embedding) check the weights after every epoch:
    the last step's loss can be finite while the step overflows them."""
    import types

    import torch

    from spikeport.training.methods import check_finite_weights

    cfg = types.SimpleNamespace(optimizer={"lr": 0.01})
    good, bad = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    check_finite_weights(cfg, [good], 3)  # finite: nothing happens
    with torch.no_grad():
        bad.bias[1] = float("nan")
    with pytest.raises(ConfigError, match="parameter bias is not finite after epoch 3") as e:
        check_finite_weights(cfg, [good, bad], 3)
    assert "optimizer.lr=0.001" in str(e.value)
