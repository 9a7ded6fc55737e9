import math

import pytest
import torch
import torch.nn.functional as F

from spikeport.core.errors import ConfigError, UnknownNameError
from spikeport.training.losses import LOSSES, make_loss


def spikes_from_counts(counts, T=10):
    """(B, C) integer counts -> (T, B, C) spike trains with those counts."""
    counts = torch.as_tensor(counts)
    t = torch.arange(T).view(T, 1, 1)
    return (t < counts.unsqueeze(0)).float()


def test_registry():
    assert LOSSES.names() == ["ce-count", "mse-count", "spikemax", "spikemax-window"]


def test_spikemax_value_matches_the_probability_definition():
    s = spikes_from_counts([[2, 6, 0]])
    # counts clamped to >= 1: (2, 6, 1); p = n / 9
    loss = make_loss("spikemax")(s, torch.tensor([1]))
    assert loss.item() == pytest.approx(-math.log(6 / 9), rel=1e-6)


def test_spikemax_batch_mean():
    s = spikes_from_counts([[2, 6, 0], [5, 5, 5]])
    loss = make_loss("spikemax")(s, torch.tensor([0, 2]))
    expected = (-math.log(2 / 9) - math.log(5 / 15)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_spikemax_silent_target_gives_finite_loss_and_a_gradient_to_fire():
    s = spikes_from_counts([[0, 8, 3]]).requires_grad_(True)
    loss = make_loss("spikemax")(s, torch.tensor([0]))
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx(-math.log(1 / 12), rel=1e-6)
    loss.backward()
    g = s.grad
    assert torch.isfinite(g).all()
    # dL/ds_target(t) = 1/sum(n~) - 1/n~_target = 1/12 - 1 < 0: more target spikes lower the loss
    assert torch.allclose(g[:, 0, 0], torch.full((10,), 1 / 12 - 1.0))
    # other neurons: dL/ds_i(t) = 1/sum(n~) > 0
    assert torch.allclose(g[:, 0, 1], torch.full((10,), 1 / 12))


def test_spikemax_all_silent_is_finite_and_uniform():
    s = torch.zeros(5, 1, 4, requires_grad=True)
    loss = make_loss("spikemax")(s, torch.tensor([2]))
    assert loss.item() == pytest.approx(math.log(4))
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad[:, 0, 2].lt(0).all()


def test_spikemax_window_matches_a_direct_computation():
    torch.manual_seed(0)
    s = (torch.rand(12, 3, 4) < 0.3).float()
    y = torch.tensor([0, 3, 1])
    W = 4
    expected = 0.0
    for b in range(3):
        for t in range(12):
            c = s[max(0, t - W + 1):t + 1, b].sum(0).clamp(min=1)
            expected += -math.log(c[y[b]] / c.sum())
    loss = make_loss("spikemax-window", window=W)(s, y)
    assert loss.item() == pytest.approx(expected / 3, rel=1e-5)


def test_spikemax_window_longer_than_T_equals_cumulative_counts():
    s = spikes_from_counts([[3, 1]], T=5)
    loss = make_loss("spikemax-window", window=100)(s, torch.tensor([0]))
    cum = torch.cumsum(s[:, 0], 0).clamp(min=1)
    expected = -(torch.log(cum[:, 0] / cum.sum(1))).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_spikemax_window_silent_target_is_finite_with_gradient():
    s = spikes_from_counts([[0, 4]], T=6).requires_grad_(True)
    loss = make_loss("spikemax-window", window=3)(s, torch.tensor([0]))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(s.grad).all()
    assert (s.grad[:, 0, 0] < 0).all()


def test_ce_count_is_cross_entropy_of_counts():
    s = spikes_from_counts([[2, 6, 0], [1, 1, 7]])
    y = torch.tensor([1, 0])
    expected = F.cross_entropy(torch.tensor([[2.0, 6, 0], [1, 1, 7]]), y)
    assert make_loss("ce-count")(s, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_mse_count_targets_T_times_rates():
    s = spikes_from_counts([[8, 2]], T=10)
    loss = make_loss("mse-count", correct_rate=0.8, incorrect_rate=0.2)(s, torch.tensor([0]))
    assert loss.item() == pytest.approx(0.0)
    loss = make_loss("mse-count")(spikes_from_counts([[0, 0]], T=10), torch.tensor([1]))
    assert loss.item() == pytest.approx((2.0 ** 2 + 8.0 ** 2) / 2)


@pytest.mark.parametrize("name", ["spikemax", "spikemax-window", "ce-count", "mse-count"])
def test_every_loss_has_finite_gradients_on_silent_output(name):
    s = torch.zeros(6, 2, 3, requires_grad=True)
    loss = make_loss(name)(s, torch.tensor([0, 2]))
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(s.grad).all()
    assert s.grad.abs().sum() > 0


def test_unknown_loss_and_parameters():
    with pytest.raises(UnknownNameError, match="unknown loss 'nll'"):
        make_loss("nll")
    with pytest.raises(ConfigError, match="loss 'spikemax': unknown key loss.window"):
        make_loss("spikemax", window=3)
    with pytest.raises(ConfigError, match="loss.window must be a positive integer, got 0"):
        make_loss("spikemax-window", window=0)
    with pytest.raises(ConfigError, match=r"loss.correct_rate must be in \[0, 1\], got 2"):
        make_loss("mse-count", correct_rate=2)


def test_the_spikes_regularizer_is_the_mean_firing_rate_of_the_hidden_populations():
    import torch

    from spikeport.training.losses import LayerTrace, make_regularizer

    hidden = torch.zeros(4, 2, 5)
    hidden[:, :, :2] = 1.0                       # rate 2 / 5
    out = torch.ones(4, 2, 3)                    # rate 1, the output population
    traces = [LayerTrace(hidden.requires_grad_(), torch.zeros(4, 2, 5), torch.tensor(1.0)),
              LayerTrace(out, torch.zeros(4, 2, 3), torch.tensor(1.0), output=True)]
    reg = make_regularizer("spikes", 4, alpha=3.0)
    term = reg.term(traces, out, torch.zeros(2, dtype=torch.long))
    assert reg.alpha == 3.0 and term.item() == pytest.approx(0.4)
    term.backward()
    assert traces[0].spikes.grad is not None and (traces[0].spikes.grad > 0).all()
    both = make_regularizer("spikes", 4, layers="all").term(traces, out, None)
    assert both.item() == pytest.approx((0.4 + 1.0) / 2)
    with pytest.raises(ConfigError, match="layers"):
        make_regularizer("spikes", 4, layers="some")
