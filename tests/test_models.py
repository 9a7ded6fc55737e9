import snntorch as snn
import torch

from spikeport.models import build_model, record
from spikeport.models.neurons import is_deployable, make_neuron


def step_major(model, x):
    """Reference: the textbook snntorch loop, one time step through all layers at a time."""
    states = {}
    out = []
    for t in range(x.shape[0]):
        h = x[t]
        for i, layer in enumerate(model.layers):
            if isinstance(layer, snn.Synaptic):
                syn, mem = states.get(i, (torch.zeros_like(h), torch.zeros_like(h)))
                h, syn, mem = layer(h, syn, mem)
                states[i] = (syn, mem)
            elif isinstance(layer, snn.Leaky):
                mem = states.get(i, torch.zeros_like(h))
                h, mem = layer(h, mem)
                states[i] = mem
            else:
                h = layer(h)
        out.append(h)
    return torch.stack(out)


def test_presets_are_deployable():
    for kind in ("lif", "cuba"):
        n = make_neuron(kind, (5,), learn_decay=True)
        assert is_deployable(n) == []
        assert n.beta.shape == (5,) and n.threshold.shape == (5,)
        assert isinstance(n.beta, torch.nn.Parameter)
    assert "subtract" in " ".join(is_deployable(snn.Leaky(beta=0.9)))
    assert "scalar beta" in " ".join(is_deployable(snn.Leaky(beta=0.9)))


def test_lif_preset_resets_to_zero_in_the_same_step_and_fires_strictly():
    n = make_neuron("lif", (1,), beta=0.5, threshold=1.0)
    mem = torch.zeros(1, 1)
    spikes, mems = [], []
    for x in [0.6, 0.7, 1.0, 0.2]:
        s, mem = n(torch.tensor([[x]]), mem)
        spikes.append(s.item())
        mems.append(mem.item())
    # v: 0.6; 0.3 + 0.7 = 1.0 (not > 1: no spike); 0.5 + 1.0 = 1.5 -> spike, v = 0; 0.2
    assert spikes == [0, 0, 1, 0]
    assert mems == [0.6, 1.0, 0.0, 0.2] or torch.allclose(torch.tensor(mems), torch.tensor([0.6, 1.0, 0.0, 0.2]))


def test_cuba_preset_keeps_the_current_after_a_spike():
    n = make_neuron("cuba", (1,), alpha=0.5, beta=0.5, threshold=1.0)
    syn = mem = torch.zeros(1, 1)
    s, syn, mem = n(torch.tensor([[1.5]]), syn, mem)  # i = 1.5, v = 1.5 -> spike
    assert s.item() == 1 and mem.item() == 0 and syn.item() == 1.5


def test_layer_major_forward_equals_the_step_major_loop():
    torch.manual_seed(0)
    for arch, kw, shape in [("mlp", {"hidden": [20, 12], "neuron": "lif"}, (1, 8, 8)),
                            ("mlp", {"hidden": [20], "neuron": "cuba", "beta": 0.8}, (1, 8, 8)),
                            ("conv", {"channels": [4, 6], "pool": "sum", "dense": [10]}, (1, 8, 8)),
                            ("conv", {"channels": [4], "pool": "avg", "neuron": "cuba"}, (2, 6, 6))]:
        model = build_model(arch, shape, 5, **kw, threshold=0.5)
        with torch.no_grad():  # stronger weights, so that every layer spikes
            for m in model.modules():
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                    m.weight.mul_(4.0)
        x = (torch.rand(7, 3, *shape) < 0.4).float()
        a = model(x)
        b = step_major(model, x)
        assert a.shape == (7, 3, 5)
        assert torch.equal(a, b), arch
        assert a.sum() > 0  # the comparison is not vacuous


def test_record_captures_every_population_without_changing_the_model():
    torch.manual_seed(1)
    model = build_model("mlp", (1, 8, 8), 10, hidden=[32, 16], threshold=0.5)
    x = (torch.rand(6, 4, 1, 8, 8) < 0.5).float()
    with record(model, membranes=True) as rec:
        out = model(x)
        model(x[:, :2])
    assert list(rec) == ["layers.2", "layers.4", "layers.6"]
    assert rec["layers.2"].shape == (6, 6, 32)  # two forward passes: batch 4 + 2
    assert rec["layers.6"].shape == (6, 6, 10)
    assert torch.equal(rec["layers.6"][:, :4], out)
    assert rec.membranes["layers.4"].shape == (6, 6, 16)
    # hooks are gone after the block
    assert all(not m._forward_hooks for m in model.modules())


def test_record_works_on_a_users_plain_snntorch_model():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.lif = snn.Leaky(beta=0.9)

        def forward(self, x):
            mem = torch.zeros(x.shape[1], 3)
            out = []
            for t in range(x.shape[0]):
                s, mem = self.lif(self.fc(x[t]), mem)
                out.append(s)
            return torch.stack(out)

    net = Net()
    with record(net) as rec:
        out = net(torch.ones(5, 2, 4))
    assert torch.equal(rec["lif"], out)


def test_neuron_and_model_parameters_are_checked_with_their_key_path():
    import pytest

    from spikeport.core.errors import ConfigError, UnknownNameError
    from spikeport.models.neurons import SURROGATES

    cases = [
        (dict(beta=1.5), r"model.beta must be in \[0, 1\], got 1.5"),
        (dict(threshold=0), "model.threshold must be a positive number, got 0"),
        (dict(surrogate="sigmoid"), "model.surrogate: unknown surrogate 'sigmoid'"),
        (dict(neuron="izhikevich"), "model.neuron: unknown neuron 'izhikevich'"),
        (dict(hiden=[3]), "unknown key model.hiden -- fix: did you mean model.hidden?"),
        (dict(hidden=[8, 0]), r"model.hidden must be a list of positive integers, got \[8, 0\]"),
        (dict(loihi_aware="yes"), "model.loihi_aware must be true or false, got 'yes'"),
    ]
    for params, message in cases:
        with pytest.raises(ConfigError, match=message):
            build_model("mlp", (1, 8, 8), 10, **params)
    with pytest.raises(ConfigError, match="model.kernel must be a positive odd integer, got 4"):
        build_model("conv", (1, 8, 8), 10, kernel=4)
    with pytest.raises(ConfigError, match="model.pool must be avg, sum or none, got 'max'"):
        build_model("conv", (1, 8, 8), 10, pool="max")
    with pytest.raises(UnknownNameError, match="unknown model architecture 'rnn'.*conv, mlp"):
        build_model("rnn", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="neuron 'lif': model.alpha must be in"):
        make_neuron("lif", (3,), alpha=-0.1)
    assert SURROGATES.names() == ["atan", "fast_sigmoid"]


def test_every_neuron_kind_takes_the_same_parameters():
    # alpha is cuba's; a lif accepts it so that switching model.neuron alone stays valid
    a = build_model("mlp", (4,), 2, hidden=[3], neuron="lif", alpha=0.5)
    b = build_model("mlp", (4,), 2, hidden=[3], neuron="cuba", alpha=0.5, surrogate="fast_sigmoid",
                    surrogate_slope=10.0, learn_decay=True)
    assert isinstance(a.layers[2], snn.Leaky) and isinstance(b.layers[2], snn.Synaptic)
    assert torch.all(b.layers[2].alpha == 0.5) and isinstance(b.layers[2].beta, torch.nn.Parameter)
