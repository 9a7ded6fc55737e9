"""Recipes: YAML files naming dataset, encoder, model, loss, optimiser and time steps.

A recipe is either a built-in name (``models/recipes/NAME.yaml``) or a path to a YAML file.
Command-line overrides are applied on top as dotted keys (``train.epochs=5``). The result is
parsed into a :class:`RunConfig` (a pydantic model): its layout is checked here, and each
section's keys by the registry of the component it names (dataset, encoder, model
architecture and neuron, loss, optimiser), so a wrong key, a string where a number belongs
or an out-of-range value is one line naming the recipe, the key path and the fix before
anything is built. Sections stay plain dicts with a ``name`` (or ``arch``) and that
component's parameters as written; ``optimizer`` and ``train`` are completed with their
defaults. ``config.yaml`` in a run directory is the resolved config, so a run can be rebuilt
from its directory alone. The ``regularizer`` section is optional (absent: none); when
given, it is completed with its defaults too. So is ``method`` (absent: supervised
training with the ``loss`` section; an embedding method, spikeport.training.methods,
brings its own objective and its recipe has no ``loss`` section).

Layout::

    name: digits
    time_steps: 16
    dataset:   {name: digits, test_fraction: 0.2, split_seed: 0}
    encoder:   {name: direct}
    model:     {arch: mlp, hidden: [128], neuron: lif, beta: 0.9}
    loss:      {name: spikemax}
    regularizer: {name: rcs, alpha: 0.002, beta: 0.3}     # optional
    method:    {name: supervised}                          # optional
    optimizer: {name: adam, lr: 0.002}
    train:     {epochs: 20, batch_size: 64, seed: 0}
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

import spikeport.models as _models_pkg

from spikeport.core.errors import ConfigError, SpikeportError
from spikeport.core.registry import (Invalid, Params, Registry, defaults_of, explain, load_yaml,
                                     parse_as)
from spikeport.data.datasets import DATASETS, Seed
from spikeport.data.encoders import ENCODERS
from spikeport.models.architectures import check_model_params
from spikeport.training.losses import LOSSES, check_regularizer
from spikeport.training.methods import check_method
from spikeport.training.optimizers import OPTIMIZERS

RECIPE_DIR = Path(_models_pkg.__file__).resolve().parent / "recipes"  # models/recipes/*.yaml
RECIPES: Registry[Path] = Registry.of_files("recipe", RECIPE_DIR, or_else="a path to a .yaml file")

PositiveInt = Annotated[int, Field(gt=0)]


class TrainParams(Params):
    """The ``train`` section."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    seed: Seed = 0
    eval_batch_size: PositiveInt = 256


TRAIN_DEFAULTS = defaults_of(TrainParams)
OPTIMIZER_DEFAULTS = {"name": "adam", **OPTIMIZERS.defaults("adam")}

# section -> (the key naming its component, the check of the section's other keys)
COMPONENTS: dict[str, tuple[str, Callable[[str, dict], dict]]] = {
    "dataset": ("name", DATASETS.check),
    "encoder": ("name", ENCODERS.check),
    "model": ("arch", check_model_params),
    "loss": ("name", LOSSES.check),
    "regularizer": ("name", check_regularizer),
    "optimizer": ("name", OPTIMIZERS.check),
    "method": ("name", None),  # checked with the other sections (check_method)
}
OPTIONAL = ("regularizer", "method", "loss")  # sections that may be absent (or null);
# loss only in a recipe whose method brings its own objective


def _section(example: dict, **kw) -> Any:
    return Field(examples=[example], **kw)


class RunConfig(BaseModel):
    """A checked, resolved run configuration; every section is a plain dict."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: str = Field(examples=["digits"])
    time_steps: PositiveInt = Field(examples=[16])
    dataset: dict[str, Any] = _section({"name": "digits"}, title="section 'dataset'")
    encoder: dict[str, Any] = _section({"name": "rate"}, title="section 'encoder'")
    model: dict[str, Any] = _section({"arch": "mlp", "hidden": [128]}, title="section 'model'")
    loss: dict[str, Any] | None = _section({"name": "spikemax"}, default=None,
                                           title="section 'loss'")
    regularizer: dict[str, Any] | None = _section({"name": "rcs", "alpha": 0.002}, default=None,
                                                  title="section 'regularizer'")
    optimizer: dict[str, Any] = _section({"name": "adam", "lr": 0.001}, default_factory=dict,
                                         title="section 'optimizer'")
    train: dict[str, Any] = _section({"epochs": 10}, default_factory=dict,
                                     title="section 'train'")
    method: dict[str, Any] | None = _section({"name": "siamese-emd"}, default=None,
                                             title="section 'method'")

    @field_validator(*COMPONENTS)
    @classmethod
    def _names_its_component(cls, section: dict | None, info) -> dict | None:
        key = COMPONENTS[info.field_name][0]
        if section is None and info.field_name in OPTIONAL:
            return section
        if info.field_name == "optimizer" and key not in section:
            return section  # adam
        if not isinstance(section.get(key), str):
            raise Invalid("missing or not a string", f"name the {info.field_name}, e.g. "
                          f"{info.field_name}: {{{key}: ...}}", key=key)
        return section

    @model_validator(mode="after")
    def _check_sections(self) -> "RunConfig":
        """Each section's keys checked by its component (errors propagate as they are:
        ConfigError and UnknownNameError); optimizer and train completed with defaults."""
        name = self.optimizer.get("name", "adam")
        self.optimizer = {"name": name, **OPTIMIZERS.defaults(name), **self.params("optimizer")}
        for section, (key, check) in COMPONENTS.items():
            if section not in OPTIONAL or section == "loss" and self.loss is not None:
                check(getattr(self, section)[key], self.params(section, key))
        if self.regularizer is not None:
            name = self.regularizer["name"]
            self.regularizer = {"name": name, **check_regularizer(
                name, self.params("regularizer"), self.time_steps)}
        method = self.method or {"name": "supervised"}
        checked = check_method(method["name"], self.params("method") if self.method else {},
                               {"loss": self.loss, "regularizer": self.regularizer})
        if self.method is not None:
            self.method = {"name": method["name"], **checked}
        self.train = {**TRAIN_DEFAULTS, **self.train}
        parse_as(TrainParams, self.train, section="train")
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data; an absent optional section is left out (so the
        config.yaml of a run without one reads as it did before the section existed)."""
        data = self.model_dump()
        for section in OPTIONAL:
            if data[section] is None:
                del data[section]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # Convenience views with the selector key removed.
    def params(self, section: str, key: str = "name") -> dict[str, Any]:
        return {k: v for k, v in getattr(self, section).items() if k != key}


def parse_recipe(data: Any, source: str = "recipe") -> RunConfig:
    """A recipe's mapping as a :class:`RunConfig`, or its first problem as one line
    ``<source>: <problem> -- fix: ...`` (the error class of the check that found it)."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        error, (problem, fix) = ConfigError, explain(RunConfig, e, data, top="section")
    except SpikeportError as e:  # raised by a component's check of its section
        error, problem, fix = type(e), e.problem, e.fix
    raise error(f"{source}: {problem}", fix)


def recipe_names() -> list[str]:
    return RECIPES.names()


def recipe_path(recipe: str) -> Path:
    """A built-in recipe name or a path to a YAML file."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file not found: {path}", "check the path to the YAML file")
        return path
    return RECIPES.get(recipe)


def _read_yaml(path: Path) -> dict:
    try:
        data = load_yaml(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}",
                          "fix the syntax of the recipe file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a YAML file",
                          "pass a recipe .yaml file (a run's is its config.yaml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", "write the recipe as a YAML text file"
                          ) from None
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror or type(e).__name__})",
                          "check the recipe file") from None
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
        value = load_yaml(raw) if raw.strip() else ""
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


def load_recipe(recipe: str, overrides: list[str] = ()) -> RunConfig:
    path = recipe_path(recipe)
    data = _read_yaml(path)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value)
    source = f"{path} with {', '.join(overrides)}" if overrides else str(path)
    return parse_recipe(data, source)


def load_run_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    return parse_recipe(_read_yaml(path), source=str(path))
