import pytest

from spikeport.training.recipes import load_recipe, recipe_names
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


def _bad_recipe(tmp_path, **sections):
    base = {"name": "x", "time_steps": 4, "dataset": "{name: digits}", "encoder": "{name: rate}",
            "model": "{arch: mlp}", "loss": "{name: spikemax}"}
    base.update(sections)
    p = tmp_path / "bad.yaml"
    p.write_text("".join(f"{k}: {v}\n" for k, v in base.items()))
    return p


@pytest.mark.parametrize("sections, message", [
    ({"time_steps": "'16'"}, "time_steps must be a positive integer, got '16'"),
    ({"train": "{batch_size: '32'}"}, "train.batch_size must be a positive integer, got '32'"),
    ({"train": "{seed: true}"}, "train.seed must be an integer from 0 to 4294967295, got True"),
    ({"train": "{seed: -1}"}, "train.seed must be an integer from 0 to 4294967295, got -1"),
    ({"dataset": "{name: digits, split_seed: 4294967296}"},
     "dataset.split_seed must be an integer from 0 to 4294967295, got 4294967296"),
    ({"dataset": "{name: digits, test_fraction: lots}"},
     "dataset 'digits': dataset.test_fraction must be in (0, 1), got 'lots'"),
    ({"encoder": "{name: rate, gain: -1}"}, "encoder 'rate': encoder.gain must be a positive number"),
    ({"model": "{arch: mlp, hidden: [-16]}"}, "model.hidden must be a list of positive integers"),
    ({"model": "{arch: mlp, beta: high}"}, "model.beta must be in [0, 1], got 'high'"),
    ({"loss": "{name: spikemax-window, window: 0}"}, "loss.window must be a positive integer"),
    ({"optimizer": "{name: sgd, momentum: -0.5}"}, "optimizer.momentum must be a number >= 0"),
    ({"optimizer": "{lr: '1e-3'}"}, "it is quoted text; write it unquoted: 0.001"),
    ({"model": "{hidden: [8]}"}, "model.arch: missing or not a string"),
])
def test_a_wrong_value_anywhere_is_one_line_naming_the_file_and_key(tmp_path, sections, message):
    p = _bad_recipe(tmp_path, **sections)
    with pytest.raises(ConfigError) as e:
        load_recipe(str(p))
    text = str(e.value)
    assert text.startswith(f"{p}: ") and " -- fix: " in text and "\n" not in text, text
    assert message in text, text


@pytest.mark.parametrize("override, message", [
    ("train.epochs=abc", "with train.epochs=abc: train.epochs must be a positive integer, got 'abc'"),
    ("model.threshold=[1]", "model.threshold must be a positive number, got [1]"),
    ("model.threshold=1.0e+31", "model.threshold: 1e+31 is beyond what float32 computes with -- "
                                "fix: use a value up to 1e30"),
    ("model.surrogate_slope=1.0e+300", "model.surrogate_slope: 1e+300 is beyond what float32"),
    ("optimizer.lr=1.0e+300", "optimizer.lr: 1e+300 is beyond what float32"),
    ("dataset.size=3", "dataset 'digits': unknown key dataset.size -- fix: use only: split_seed,"),
    ("train.epoch=3", "unknown key train.epoch -- fix: did you mean train.epochs?"),
])
def test_set_with_a_bad_value_names_the_override(override, message):
    with pytest.raises(ConfigError) as e:
        load_recipe("digits", [override])
    assert message in str(e.value) and "digits.yaml" in str(e.value)


def test_numbers_in_exponent_form_are_numbers_as_in_yaml_1_2():
    """PyYAML (YAML 1.1) reads 1e-3 as text; spikeport reads recipes, --set values and
    profiles with YAML 1.2's floats, so 1e-3 and the 1e30 its own messages suggest are numbers."""
    cfg = load_recipe("digits", ["optimizer.lr=1e-3", "model.threshold=1e0", "train.epochs=3"])
    assert cfg.optimizer["lr"] == 0.001 and cfg.model["threshold"] == 1.0
    assert cfg.train["epochs"] == 3 and isinstance(cfg.train["epochs"], int)
    assert load_recipe("digits", ["model.surrogate_slope=1e30"]).model["surrogate_slope"] == 1e30


def test_resolved_sections_keep_what_was_written_and_complete_optimizer_and_train():
    cfg = load_recipe("digits", ["optimizer={name: sgd}"])
    assert list(cfg.optimizer.items()) == [("name", "sgd"), ("lr", 0.001), ("weight_decay", 0.0),
                                           ("momentum", 0.9)]
    assert list(cfg.train) == ["epochs", "batch_size", "seed", "eval_batch_size"]
    assert cfg.encoder == {"name": "delta", "threshold": 0.06}  # no defaults added
    assert load_recipe("digits", ["optimizer.lr=1"]).optimizer["lr"] == 1  # as written


def test_a_run_config_reads_back_from_its_yaml(tmp_path):
    from spikeport.training.recipes import load_run_config

    cfg = load_recipe("mnist-5k")
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    again = load_run_config(tmp_path)
    assert again == cfg and again.to_yaml() == cfg.to_yaml()
    assert again.params("model", "arch")["channels"] == [16, 32]


@pytest.mark.parametrize("override, limit, training, words", [
    ("time_steps=1000000000000", None, True, "time_steps 1000000000000 x train.batch_size 128"),
    ("model.hidden=[1000000000000]", None, True, "a model of 77,000,000,000,030 parameters"),
    ("model={arch: conv, kernel: 2147483647}", None, False, "too large for torch to describe"),
    # the batch is capped by the split (359 test examples): refused only under a small budget
    ("train.eval_batch_size=1000000000000", "500K", False, "train.eval_batch_size 359 x 116"),
])
def test_a_config_beyond_the_memory_budget_is_refused_before_allocating(
        tiny_recipe, monkeypatch, override, limit, training, words):
    from spikeport.training.loop import build_components

    if limit:
        monkeypatch.setenv("SPIKEPORT_MEMORY_BUDGET", limit)
    cfg = load_recipe(str(tiny_recipe), [override])
    with pytest.raises(ConfigError) as e:
        build_components(cfg, training=training)
    assert words in e.value.problem, e.value.problem


def test_a_diverging_training_stops_naming_the_epoch_and_the_learning_rate(tiny_recipe, tmp_path):
    from spikeport.training.loop import train

    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="training diverged: .*epoch 1.* nothing was written") as e:
        train(str(tiny_recipe), out, ["optimizer={name: adam, lr: 1.0e+30, weight_decay: 1.0e+30}",
                                      "dataset.test_fraction=0.8"])
    assert "lower optimizer.lr (now 1e+30), e.g. --set optimizer.lr=1e+29" in e.value.fix
    assert list(tmp_path.iterdir()) == []  # no run directory, no staging left behind
