import pytest
import torch

from spikeport.data.encoders import ENCODERS, make_encoder
from spikeport.core.errors import ConfigError, UnknownNameError


def test_registry_has_the_five_encoders():
    assert ENCODERS.names() == ["delta", "direct", "events", "latency", "rate"]


def test_rate_is_binary_with_mean_count_T_times_x():
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(4000, 1)  # (B, 5)
    T = 20
    s = make_encoder("rate")(x, T, torch.Generator().manual_seed(0))
    assert s.shape == (T, 4000, 5)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    mean_count = s.sum(0).mean(0)
    expected = T * torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    # Binomial(T, p) mean over 4000 samples: standard error <= sqrt(20*0.25/4000) ~ 0.035.
    assert torch.allclose(mean_count, expected, atol=0.15)
    assert mean_count[0] == 0 and mean_count[-1] == T  # p = 0 and p = 1 are deterministic


def test_rate_gain_clips_probability_at_one():
    s = make_encoder("rate", gain=4.0)(torch.full((100, 3), 0.5), 10, torch.Generator().manual_seed(1))
    assert s.sum() == 100 * 3 * 10


def test_rate_is_reproducible_from_the_generator_and_differs_across_seeds():
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    enc = make_encoder("rate")
    a = enc(x, 10, torch.Generator().manual_seed(5))
    b = enc(x, 10, torch.Generator().manual_seed(5))
    c = enc(x, 10, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_latency_fires_once_at_round_one_minus_x_times_T_minus_1():
    x = torch.tensor([[1.0, 0.75, 0.5, 0.02, 0.005, 0.0]])
    T = 9
    s = make_encoder("latency", threshold=0.01)(x, T)
    counts = s.sum(0)[0]
    assert counts.tolist() == [1, 1, 1, 1, 0, 0]
    first = s[:, 0].argmax(0)
    # t_f = round((1 - x) * 8): 0, 2, 4, round(7.84) = 8
    assert first[:4].tolist() == [0, 2, 4, 8]


def test_delta_count_codes_intensity_in_threshold_steps():
    x = torch.tensor([[0.0, 0.05, 0.15, 0.35, 0.95]])
    s = make_encoder("delta", threshold=0.1)(x, 20)
    # count = number of k >= 0 with x - k*theta > theta
    assert s.sum(0)[0].tolist() == [0, 0, 1, 3, 9]
    # spikes come on consecutive steps from t = 0
    assert s[:3, 0, 3].tolist() == [1, 1, 1] and s[3:, 0, 3].sum() == 0


def test_delta_count_is_capped_by_T():
    s = make_encoder("delta", threshold=0.01)(torch.ones(1, 1), 5)
    assert s.sum() == 5


def test_direct_repeats_the_analog_value():
    x = torch.tensor([[0.2, 0.7]])
    s = make_encoder("direct", gain=2.0)(x, 3)
    assert s.shape == (3, 1, 2)
    assert torch.allclose(s, torch.tensor([0.4, 1.4]).expand(3, 1, 2))
    assert make_encoder("direct").binary is False and make_encoder("rate").binary is True


def test_unknown_encoder_and_bad_parameters_are_named():
    with pytest.raises(UnknownNameError, match="unknown encoder 'poisson'.*rate"):
        make_encoder("poisson")
    with pytest.raises(ConfigError, match="encoder 'rate': unknown key encoder.slope.*use only: gain"):
        make_encoder("rate", slope=2)
    with pytest.raises(ConfigError, match="encoder.gain must be a positive number, got 0"):
        make_encoder("rate", gain=0)
    with pytest.raises(ConfigError, match="encoder.threshold must be a positive number, got 'x'"):
        make_encoder("delta", threshold="x")
