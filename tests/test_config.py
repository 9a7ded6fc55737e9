import pytest

from spikeport.train.recipes import load_recipe, recipe_names
from spikeport.core.errors import ConfigError, UnknownNameError


def test_builtin_recipes_validate():
    names = recipe_names()
    assert {"digits", "mnist-5k"} <= set(names)
    for name in names:
        cfg = load_recipe(name)
        assert cfg.name == name


def test_overrides_apply_to_nested_keys_with_yaml_values():
    cfg = load_recipe("digits", ["train.epochs=3", "model.hidden=[7, 5]", "encoder.threshold=0.1",
                                 "loss={name: ce-count}"])
    assert cfg.train["epochs"] == 3 and cfg.model["hidden"] == [7, 5]
    assert cfg.encoder == {"name": "delta", "threshold": 0.1} and cfg.loss == {"name": "ce-count"}


def test_defaults_are_filled_and_written_back(tiny_recipe):
    cfg = load_recipe(str(tiny_recipe))
    assert cfg.train["eval_batch_size"] == 256 and cfg.optimizer["weight_decay"] == 0.0
    assert "eval_batch_size: 256" in cfg.to_yaml()


@pytest.mark.parametrize("text, message", [
    ("name: x\ntime_steps: [\n", "not valid YAML at line"),
    ("- a\n- b\n", "must hold a mapping"),
    ("name: x\ntime_steps: 4\n", "missing 'dataset'"),
    ("name: x\ntime_steps: 0\ndataset: {name: digits}\nencoder: {name: rate}\n"
     "model: {arch: mlp}\nloss: {name: spikemax}\n", "time_steps must be a positive integer"),
    ("name: x\ntime_steps: 4\ndataset: digits\nencoder: {name: rate}\n"
     "model: {arch: mlp}\nloss: {name: spikemax}\n", "section 'dataset' must be a mapping"),
    ("name: x\ntime_steps: 4\ndataset: {name: digits}\nencoder: {name: rate}\n"
     "model: {arch: mlp}\nloss: {name: spikemax}\nextra: 1\n", "unknown section"),
    ("name: x\ntime_steps: 4\ndataset: {name: digits}\nencoder: {name: rate}\n"
     "model: {arch: mlp}\nloss: {name: spikemax}\ntrain: {epochs: -1}\n", "train.epochs must be"),
    ("name: x\ntime_steps: 4\ndataset: {name: digits}\nencoder: {name: rate}\n"
     "model: {arch: mlp}\nloss: {name: spikemax}\ntrain: {epoch: 1}\n", "unknown key"),
    ("name: x\ntime_steps: 4\ndataset: {name: digits}\nencoder: {name: rate}\n"
     "model: {arch: mlp}\nloss: {name: spikemax}\noptimizer: {lr: -1}\n", "optimizer.lr must be"),
])
def test_malformed_recipes_are_refused_with_the_reason(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_recipe(str(p))


def test_unknown_recipe_and_optimizer():
    with pytest.raises(UnknownNameError, match="unknown recipe 'nope'.*digits"):
        load_recipe("nope")
    with pytest.raises(UnknownNameError, match="unknown optimizer 'lbfgs'"):
        load_recipe("digits", ["optimizer.name=lbfgs"])
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe("missing/file.yaml")


@pytest.mark.parametrize("override, message", [
    ("train.epochs", "not KEY=VALUE"),
    ("train..epochs=3", "malformed"),
    ("name.x=3", "'name' is not a section"),
    ("model.hidden=[1,", "not valid YAML"),
])
def test_malformed_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe("digits", [override])
