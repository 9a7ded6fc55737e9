"""Spiking ResNets (models/resnet.py): every residual variant exported to NIR gives the
model's own spikes on reference, snntorch and onnx; BatchNorm folds exactly; BNTT is
refused or folded as a recorded approximation; the Loihi targets refuse fan-in in one line;
the Fashion-MNIST loader reads the IDX fixture and refuses broken files."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spikeport.core.errors import ConfigError, DataError, ExportError
from spikeport.exporters.targets import get_target
from spikeport.models.architectures import build_model, model_size
from spikeport.models.export import export_model
from spikeport.models.network import record
from spikeport.models.resnet import VARIANTS, BatchNormTT

SHAPE = (1, 12, 12)
FLOAT_TARGETS = ("reference", "snntorch", "onnx")
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "fashion-mnist-mini"


def _resnet(variant: str, seed: int = 0, **kw) -> nn.Module:
    """A small ResNet with non-trivial BatchNorm statistics and weights strong enough to
    spike, in float64 and inference mode."""
    torch.manual_seed(seed)
    model = build_model("resnet", SHAPE, 4, variant=variant, stem=4, widths=[4, 6],
                        threshold=0.5, **kw)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.3)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(3.0)
    return model.double().eval()


def _spikes(seed: int = 1, steps: int = 8, batch: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, *SHAPE, generator=g) < 0.4).double()


def _run(graph, x: np.ndarray, target: str):
    t = get_target(target)
    return t.run(t.compile(graph, {}), x)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_gives_the_models_spikes_on_every_float_target(variant):
    model, x = _resnet(variant), _spikes()
    with torch.no_grad(), record(model) as rec:
        out = model(x).numpy()
    graph = export_model(model, SHAPE)
    assert out.sum() > 0 and all(r.sum() > 0 for r in rec.values())
    for target in FLOAT_TARGETS:
        r = _run(graph, x.numpy(), target)
        np.testing.assert_array_equal(r.values[r.output], out, err_msg=f"{variant} {target}")
        for name, spikes in rec.items():  # every population of the model, by its NIR name
            np.testing.assert_array_equal(r.values[name.replace(".", "_")], spikes.numpy(),
                                          err_msg=f"{variant} {target} {name}")


def test_residual_adds_are_fan_in_edges_and_the_skip_changes_the_output():
    model, x = _resnet("spike-add"), _spikes()
    graph = export_model(model, SHAPE)
    # block 4 (identity skip) reads both block 3's spikes and block 3's own input
    into = sorted(s for s, d in graph.edges if d == "layers_4_body_0")
    assert into == ["layers_2", "layers_3_body_5"]
    # the downsampling skip is a 1x1 stride-2 convolution from the same sources
    skip = graph.nodes["layers_4_skip_0"]
    assert tuple(skip.weight.shape[2:]) == (1, 1) and tuple(skip.stride) == (2, 2)
    with torch.no_grad():
        out = model(x).numpy()
    graph.edges.remove(("layers_2", "layers_4_body_0"))
    graph.edges.remove(("layers_2", "layers_4_skip_0"))
    r = _run(graph, x.numpy(), "reference")
    assert not np.array_equal(r.values[r.output], out)


def test_current_add_keeps_every_message_binary():
    model, x = _resnet("current-add"), _spikes()
    graph = export_model(model, SHAPE)
    r = _run(graph, x.numpy(), "reference")
    into_after = sorted(s for s, d in graph.edges if d == "layers_3_after_0")
    assert into_after == ["layers_2", "layers_3_body_3"]  # the skip joins the current
    for name in r.spiking:
        assert set(np.unique(r.values[name])) <= {0.0, 1.0}


def test_iand_gate_is_not_body_and_skip():
    model, x = _resnet("sew-iand"), _spikes()
    graph = export_model(model, SHAPE)
    r = _run(graph, x.numpy(), "reference")
    body, skip = r.values["layers_3_body_5"], r.values["layers_2"]
    gate = r.values["layers_3_iand"]
    np.testing.assert_array_equal(gate, (1 - body) * skip)
    assert gate.sum() > 0 and ((body == 1) & (skip == 1)).any()


def test_batchnorm_folds_exactly_into_the_convolution():
    model = _resnet("spike-add")
    conv, bn = model.layers[0], model.layers[1]
    graph = export_model(model, SHAPE)
    node = graph.nodes["layers_0"]
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    with torch.no_grad():
        want = bn(conv(x)).numpy()
        got = nn.functional.conv2d(x, torch.as_tensor(node.weight, dtype=torch.float64),
                                   torch.as_tensor(node.bias, dtype=torch.float64),
                                   padding=1).numpy()
        unfolded = conv(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # NIR stores float32
    assert not np.allclose(unfolded, want, atol=1e-2)
    assert not any(isinstance(n, nn.BatchNorm2d) for n in graph.nodes.values())


def test_bntt_is_refused_or_folded_as_a_recorded_approximation():
    model = _resnet("spike-add", batchnorm="bntt", bntt_steps=8)
    x = _spikes(steps=8)
    with torch.no_grad():
        model(x)  # runs with 8 steps
    with pytest.raises(ExportError, match="BNTT.*allow_approximation=True"):
        export_model(model, SHAPE)
    bntt = model.layers[1]
    with torch.no_grad():
        for i, bn in enumerate(bntt.norms):
            bn.running_mean.fill_(0.1 * i)
    graph = export_model(model, SHAPE, allow_approximation=True)
    notes = graph.metadata["approximations"]
    assert any("layers.1: BNTT folded" in n for n in notes)
    conv = model.layers[0]
    with torch.no_grad():
        want_bias = np.mean([(bn.bias - bn.running_mean * bn.weight
                              / torch.sqrt(bn.running_var + bn.eps)).numpy()
                             for bn in bntt.norms], 0)
    np.testing.assert_allclose(graph.nodes["layers_0"].bias, want_bias, rtol=1e-6)
    assert conv.bias is None
    with pytest.raises(ConfigError, match="bntt_steps"):
        model(_spikes(steps=16))  # 16 x 3 inputs would fit 8 steps if it counted T x B


@pytest.mark.parametrize("target", ["loihi-emu", "lava"])
def test_loihi_targets_refuse_a_residual_graph_in_one_line(target):
    graph = export_model(_resnet("current-add"), SHAPE)
    with pytest.raises(ExportError, match="sums 2 inputs .*a residual or skip connection") as e:
        get_target(target).compile(graph, {})
    assert "\n" not in str(e.value) and "reference, snntorch or onnx" in str(e.value)


def test_resnet_options_shape_the_network_and_bad_ones_are_refused():
    small = model_size("resnet", (1, 28, 28), 10, widths=[4, 8])
    deeper = model_size("resnet", (1, 28, 28), 10, widths=[4, 8], blocks=2)
    assert deeper[0] > small[0] and deeper[1] > small[1]
    m = build_model("resnet", (1, 28, 28), 10, widths=[4, 8, 16], readout="flatten")
    assert m.layers[-2].in_features == 16 * 7 * 7
    assert isinstance(build_model("resnet", (1, 8, 8), 3, widths=[2], batchnorm="bntt",
                                  bntt_steps=3).layers[1], BatchNormTT)
    with pytest.raises(ConfigError, match="needs image input"):
        build_model("resnet", (64,), 10)
    with pytest.raises(ConfigError, match="bntt_steps"):
        build_model("resnet", (1, 8, 8), 3, batchnorm="bntt")
    with pytest.raises(ConfigError, match="too many stages"):
        build_model("resnet", (1, 2, 2), 3, widths=[2, 2, 2, 2])


# --------------------------------------------------------------------------- Fashion-MNIST

def _fixture_module():
    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURE / "make_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fashion_mnist_loader_reads_the_idx_fixture():
    from spikeport.data.datasets import load_fashion_mnist

    fix = _fixture_module()
    ds = load_fashion_mnist(root=FIXTURE)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train[:, 0], fix.images(20) / np.float32(255.0))
    np.testing.assert_array_equal(ds.x_test[:, 0], fix.images(10) / np.float32(255.0))
    np.testing.assert_array_equal(ds.y_train, np.arange(20) % 10)
    assert ds.n_classes == 10 and ds.x_train.max() <= 1.0


def _broken_copy(tmp_path: Path, name: str, data: bytes) -> Path:
    for f in FIXTURE.glob("*.gz"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize("name, make, match", [
    ("train-images-idx3-ubyte.gz", lambda raw: gzip.compress(raw[:-5]), "holds 15675 values"),
    ("train-images-idx3-ubyte.gz", lambda raw: gzip.compress(b"\0\0\x09\x03" + raw[4:]),
     "not an IDX file of 3-d unsigned bytes"),
    ("t10k-images-idx3-ubyte.gz", lambda raw: raw[:40], "not a readable gzip file"),
    ("train-labels-idx1-ubyte.gz", lambda raw: gzip.compress(
        raw[:4] + (19).to_bytes(4, "big") + raw[8:27]), "20 images, 19 labels"),
])
def test_a_broken_fashion_mnist_file_is_one_line(tmp_path, name, make, match):
    from spikeport.data.datasets import load_fashion_mnist

    raw = gzip.decompress((FIXTURE / name).read_bytes())
    root = _broken_copy(tmp_path, name, make(raw))
    with pytest.raises(DataError, match=match) as e:
        load_fashion_mnist(root=root)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- Loihi-aware conv

@pytest.mark.parametrize("aware", [True, False])
def test_loihi_aware_convolutions_are_exported_on_the_loihi_grid(aware):
    from spikeport.exporters.loihi.target import compile_network
    from spikeport.models.loihi_aware import loihi_scale

    torch.manual_seed(4)
    model = build_model("conv", (1, 8, 8), 3, channels=[4, 6], pool="none", stride=2,
                        loihi_aware=aware, threshold=0.7)
    x = _spikes(steps=6).float()[:, :, :, :8, :8]
    model(x).sum().backward()
    assert model.layers[0].weight.grad.abs().sum() > 0  # straight-through gradient
    net = compile_network(export_model(model.eval(), (1, 8, 8)))
    errors = [r.weight_rms_error for r in net.reports]
    assert [l.conv is not None for l in net.layers] == [True, True, False]
    if not aware:
        assert min(errors) > 1e-4
        return
    assert max(errors) < 1e-6  # float32 storage of the projected weights in NIR only
    for layer, trained in zip(net.layers, (model.layers[0], model.layers[2], model.layers[5])):
        w, b = trained.quantized()
        s = loihi_scale(w, b, 0.7)
        np.testing.assert_array_equal(layer.weight, np.round(w.detach().numpy() * s).astype(int))
        np.testing.assert_array_equal(layer.bias_mant, np.round(b.detach().numpy() * s))


def test_loihi_aware_conv_needs_unpooled_layers():
    with pytest.raises(ConfigError, match="pool: none"):
        build_model("conv", (1, 8, 8), 3, pool="avg", loihi_aware=True)


def test_a_checkpoint_with_trained_batchnorm_statistics_loads(tmp_path):
    from spikeport.core.errors import CheckpointError
    from spikeport.training.loop import check_state

    fresh = build_model("resnet", SHAPE, 4, stem=2, widths=[2])
    state = {k: v.clone() for k, v in fresh.state_dict().items()}
    moved = [k for k in state if "running_" in k or "num_batches" in k]
    assert "layers.1.running_var" in moved and "layers.3.body.1.running_mean" in moved
    for k in moved:  # what training does to BatchNorm's statistics
        state[k] = state[k] + 3
    check_state(state, fresh, tmp_path / "checkpoint.pt")
    state["layers.2.threshold"] = state["layers.2.threshold"] + 1  # a config constant
    with pytest.raises(CheckpointError, match="layers.2.threshold"):
        check_state(state, fresh, tmp_path / "checkpoint.pt")
