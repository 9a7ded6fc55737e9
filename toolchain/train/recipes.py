"""Recipes: YAML files naming dataset, encoder, model, loss, optimiser and time steps.

A recipe is either a built-in name (``models/recipes/NAME.yaml``) or a path to a YAML file.
Command-line overrides are applied on top as dotted keys (``train.epochs=5``). The result is
validated into a :class:`RunConfig` whose sections are plain dicts with a ``name`` (or
``arch``) and that component's parameters; the components validate their own parameters
when they are built. ``config.yaml`` in a run directory is the resolved config, so a run can
be rebuilt from its directory alone.

Layout::

    name: digits
    time_steps: 16
    dataset:   {name: digits, test_fraction: 0.2, split_seed: 0}
    encoder:   {name: direct}
    model:     {arch: mlp, hidden: [128], neuron: lif, beta: 0.9}
    loss:      {name: spikemax}
    optimizer: {name: adam, lr: 0.002}
    train:     {epochs: 20, batch_size: 64, seed: 0}
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

import spikeport.models as _models_pkg

from spikeport.core.errors import ConfigError, UnknownNameError

RECIPE_DIR = Path(_models_pkg.__file__).resolve().parent / "recipes"  # models/recipes/*.yaml

OPTIMIZERS = ("adam", "adamw", "sgd")
TRAIN_DEFAULTS = {"epochs": 10, "batch_size": 64, "seed": 0, "eval_batch_size": 256}
OPTIMIZER_DEFAULTS = {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9}


@dataclass
class RunConfig:
    name: str
    time_steps: int
    dataset: dict[str, Any]
    encoder: dict[str, Any]
    model: dict[str, Any]
    loss: dict[str, Any]
    optimizer: dict[str, Any] = field(default_factory=lambda: dict(OPTIMIZER_DEFAULTS))
    train: dict[str, Any] = field(default_factory=lambda: dict(TRAIN_DEFAULTS))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # Convenience views with the selector key removed.
    def params(self, section: str, key: str = "name") -> dict[str, Any]:
        return {k: v for k, v in getattr(self, section).items() if k != key}


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(recipe: str) -> Path:
    """A built-in recipe name or a path to a YAML file."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}", "check the path to the YAML file")
        return path
    builtin = RECIPE_DIR / f"{recipe}.yaml"
    if not builtin.is_file():
        raise UnknownNameError(f"unknown recipe {recipe!r}",
                               f"use one of: {', '.join(recipe_names())}, or a path to a .yaml file")
    return builtin


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}",
                          "fix the syntax of the recipe file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}", "check the recipe file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (name, dataset, model, ...)",
                          "see docs/cli.md for the recipe layout")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE", "write e.g. --set train.epochs=5")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override key {key!r} is malformed", "write e.g. --set model.beta=0.95")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override value {raw!r} is not valid YAML",
                          "quote strings, write lists as [1, 2]") from None
    return parts, value


def apply_override(data: dict, parts: list[str], value: Any) -> None:
    node = data
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            raise ConfigError(f"override {'.'.join(parts)}: {p!r} is not a section",
                              "overrides address keys inside sections, e.g. train.epochs")
        node = node[p]
    node[parts[-1]] = value


SECTIONS = {"dataset": "name", "encoder": "name", "model": "arch", "loss": "name",
            "optimizer": "name", "train": None}


def validate(data: dict, source: str = "recipe") -> RunConfig:
    data = copy.deepcopy(data)
    allowed = {"name", "time_steps", *SECTIONS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}",
                          f"use only: {', '.join(sorted(allowed))}")
    for key in ("name", "time_steps", "dataset", "encoder", "model", "loss"):
        if key not in data:
            raise ConfigError(f"{source}: missing '{key}'", "see docs/cli.md for the recipe layout")
    if not isinstance(data["name"], str):
        raise ConfigError(f"{source}: name must be a string", "write e.g. name: digits")
    T = data["time_steps"]
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ConfigError(f"{source}: time_steps must be a positive integer, got {T!r}",
                          "write e.g. time_steps: 16")
    data.setdefault("optimizer", {})
    data.setdefault("train", {})
    for section, selector in SECTIONS.items():
        value = data[section]
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping, got {value!r}",
                              f"write e.g. {section}: {{{selector or 'epochs'}: ...}}")
        if selector and section != "optimizer" and not isinstance(value.get(selector), str):
            raise ConfigError(f"{source}: {section}.{selector} is missing or not a string",
                              f"name the {section}, e.g. {section}: {{{selector}: ...}}")
    opt = {**OPTIMIZER_DEFAULTS, **data["optimizer"]}
    if opt["name"] not in OPTIMIZERS:
        raise UnknownNameError(f"unknown optimizer {opt['name']!r}",
                               f"use one of: {', '.join(OPTIMIZERS)}")
    _check_keys(source, "optimizer", opt, OPTIMIZER_DEFAULTS)
    _check_number(source, "optimizer.lr", opt["lr"], positive=True)
    _check_number(source, "optimizer.weight_decay", opt["weight_decay"])
    data["optimizer"] = opt
    train = {**TRAIN_DEFAULTS, **data["train"]}
    _check_keys(source, "train", train, TRAIN_DEFAULTS)
    for key in ("epochs", "batch_size", "eval_batch_size"):
        v = train[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{source}: train.{key} must be a positive integer, got {v!r}",
                              f"set train.{key} to e.g. {TRAIN_DEFAULTS[key]}")
    if not isinstance(train["seed"], int) or isinstance(train["seed"], bool):
        raise ConfigError(f"{source}: train.seed must be an integer", "write e.g. train.seed: 0")
    data["train"] = train
    return RunConfig(**data)


def _check_keys(source, section, values, defaults):
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {section}.{', '.join(unknown)}",
                          f"use only: {', '.join(sorted(defaults))}")


def _check_number(source, key, v, positive=False):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or (positive and v <= 0) or v < 0:
        raise ConfigError(f"{source}: {key} must be a {'positive ' if positive else ''}number, "
                          f"got {v!r}", f"set {key} to a number such as 0.001")


def load_recipe(recipe: str, overrides: list[str] = ()) -> RunConfig:
    path = recipe_path(recipe)
    data = _read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    return validate(data, source=str(path))


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    return validate(_read_yaml(path), source=str(path))
