"""The registry mechanism: names, parameter checks derived from signatures or declared,
and pydantic validation errors turned into one-line ``problem -- fix`` errors."""
from __future__ import annotations

from typing import Annotated, Literal, Sequence

import pytest
from pydantic import Field, field_validator

from spikeport.core.errors import ConfigError, SpikeportError, UnknownNameError
from spikeport.core.registry import Invalid, Params, Registry, parse_as

Size = Annotated[int, Field(gt=0)]


def make_widgets() -> Registry:
    reg = Registry("widget", inputs=("shape",), section="widget", or_else="a path")

    @reg.register("box", "a box")
    def box(shape, *, size: Size = 3, ratio: Annotated[float, Field(gt=0, lt=1)] = 0.5,
            layers: Sequence[Size] = (4,), solid: bool = True,
            pool: Literal["avg", "sum"] = "avg"):
        return {"shape": shape, "size": size, "ratio": ratio, "layers": layers,
                "solid": solid, "pool": pool}

    class Knobs(Params):
        gain: Annotated[float, Field(ge=0)] = 1.0

    @reg.register("dial", params=Knobs)
    def dial(shape, knobs: Knobs):
        """a dial"""
        return shape, knobs

    return reg


def one_line(exc: SpikeportError) -> str:
    text = str(exc)
    assert "\n" not in text and " -- fix: " in text, text
    return text


def test_build_passes_inputs_first_and_checked_parameters_with_defaults():
    reg = make_widgets()
    out = reg.build("box", (2, 2), size=5, layers=[8, 4])
    assert out == {"shape": (2, 2), "size": 5, "ratio": 0.5, "layers": [8, 4], "solid": True,
                   "pool": "avg"}
    assert reg.build("box", 1, ratio=1 / 3)["ratio"] == pytest.approx(1 / 3)
    assert reg.defaults("box") == {"size": 3, "ratio": 0.5, "layers": (4,), "solid": True,
                                   "pool": "avg"}
    assert [e.summary for e in reg.entries()] == ["a box", "a dial"]


def test_a_declared_model_is_passed_as_one_validated_instance():
    reg = make_widgets()
    shape, knobs = reg.build("dial", (3,), gain=2)
    assert shape == (3,) and knobs.gain == 2.0 and isinstance(knobs.gain, float)
    assert reg.check("dial", {}) == {"gain": 1.0}


def test_unknown_name_lists_the_names_and_what_else_is_accepted():
    with pytest.raises(UnknownNameError) as e:
        make_widgets().build("cube", 1)
    assert one_line(e.value) == "unknown widget 'cube' -- fix: use one of: box, dial, or a path"
    assert "cube" not in make_widgets() and [] not in make_widgets()


def test_unknown_parameters_are_named_with_their_key_path_and_the_allowed_ones():
    with pytest.raises(ConfigError) as e:
        make_widgets().build("box", 1, sise=4, colour="red")
    assert one_line(e.value) == ("widget 'box': unknown keys widget.sise, widget.colour -- fix: "
                                 "did you mean widget.size? use only: layers, pool, ratio, "
                                 "size, solid")


@pytest.mark.parametrize("params, message", [
    ({"size": "5"}, "widget 'box': widget.size must be a positive integer, got '5'"),
    ({"size": True}, "widget.size must be a positive integer, got True"),
    ({"size": 0}, "widget.size must be a positive integer, got 0"),
    ({"size": 2.0}, "widget.size must be a positive integer, got 2.0"),
    ({"ratio": 1}, "widget.ratio must be in (0, 1), got 1"),
    ({"ratio": float("nan")}, "widget.ratio must be in (0, 1), got nan"),
    ({"layers": [4, -1]}, "widget.layers must be a list of positive integers, got [4, -1]"),
    ({"layers": "44"}, "widget.layers must be a list of positive integers, got '44'"),
    ({"solid": "yes"}, "widget.solid must be true or false, got 'yes'"),
    ({"pool": "max"}, "widget.pool must be avg or sum, got 'max'"),
])
def test_wrong_types_and_ranges_are_one_line_naming_the_key(params, message):
    with pytest.raises(ConfigError) as e:
        make_widgets().build("box", 1, **params)
    assert message in one_line(e.value)


def test_a_number_given_as_quoted_text_gets_a_hint():
    with pytest.raises(ConfigError, match=r"it is quoted text; write it unquoted: 0.1"):
        make_widgets().build("box", 1, ratio="1e-1")


def test_extend_adds_fields_checked_together():
    class Extra(Params):
        colour: Literal["red", "blue"] = "red"

    reg = make_widgets()
    assert reg.check("box", {"colour": "blue"}, extend=Extra)["colour"] == "blue"
    with pytest.raises(ConfigError, match="use only: colour, layers, pool"):
        reg.check("box", {"color": "blue"}, extend=Extra)


def test_name_type_checks_against_the_registry():
    reg = make_widgets()

    class Choice(Params):
        widget: reg.name_type() = "box"  # type: ignore[valid-type]

    assert Choice(widget="dial").widget == "dial"
    with pytest.raises(ConfigError) as e:
        parse_as(Choice, {"widget": "cube"}, where="f.yaml")
    assert one_line(e.value) == ("f.yaml: widget: unknown widget 'cube' -- fix: use one of: "
                                 "box, dial")


def test_components_that_cannot_be_checked_are_refused_when_first_used():
    reg = Registry("thing", inputs=("x",))
    reg.add("kwargs", lambda x, **kw: None)
    reg.add("bare", lambda x, n=1: None)
    reg.add("no-input", lambda *, n=1: None)
    for name, message in [("kwargs", "declare params"), ("bare", "needs a type annotation"),
                          ("no-input", "are not parameters")]:
        with pytest.raises(TypeError, match=message):
            reg.build(name, 0)


class Entry(Params):
    value: Annotated[float, Field(ge=0)]
    unit: Literal["pJ", "nJ"] = "pJ"


class Profile(Params):
    name: str = Field(examples=["loihi"])
    constants: dict[str, Entry] = Field(title="the constants")
    notes: list[str] = []

    @field_validator("constants")
    @classmethod
    def _not_empty(cls, v):
        if not v:
            raise Invalid("empty", "give at least one constant")
        return v


class ProfileError(SpikeportError):
    pass


@pytest.mark.parametrize("data, message", [
    ({"constants": {"e": {"value": 1}}}, "p.yaml: missing 'name' -- fix: add name, e.g. name: loihi"),
    ({"name": "x", "constants": {"e": {"value": -1}}},
     "p.yaml: constants.e.value must be a number >= 0, got -1"),
    ({"name": "x", "constants": {"e": {"value": 1, "unit": "J"}}},
     "p.yaml: constants.e.unit must be pJ or nJ, got 'J' -- fix: set constants.e.unit to pJ or "
     "nJ, e.g. pJ"),
    ({"name": "x", "constants": {"e": {"value": 1, "src": "?"}}}, "p.yaml: unknown key constants.e.src"),
    ({"name": "x", "constants": {}}, "p.yaml: constants: empty -- fix: give at least one constant"),
    ({"name": "x", "constants": 3}, "p.yaml: the constants must be a mapping, got 3"),
    ({"name": "x", "constants": {"e": {"value": 1}}, "extra": 1}, "p.yaml: unknown section extra"),
    ("text", "p.yaml: the file must be a mapping, got 'text'"),
])
def test_parse_as_turns_a_files_first_problem_into_one_line(data, message):
    with pytest.raises(ProfileError) as e:
        parse_as(Profile, data, where="p.yaml", error=ProfileError, top="section")
    assert message in one_line(e.value)


def test_every_project_registry_of_components_derives_its_parameters():
    from spikeport.data.datasets import DATASETS
    from spikeport.data.encoders import ENCODERS
    from spikeport.models.architectures import ARCHITECTURES
    from spikeport.models.neurons import NEURONS, SURROGATES
    from spikeport.training.losses import LOSSES
    from spikeport.training.optimizers import OPTIMIZERS

    for reg in (DATASETS, ENCODERS, ARCHITECTURES, NEURONS, SURROGATES, LOSSES, OPTIMIZERS):
        for name in reg.names():
            model = reg.params_model(name)
            assert all(not f.is_required() for f in model.model_fields.values()), (reg.kind, name)


def test_a_registry_of_files(tmp_path):
    (tmp_path / "b.yaml").write_text("# the b file\nx: 1\n")
    (tmp_path / "a.yaml").write_text("x: 1\n")
    reg = Registry.of_files("recipe", tmp_path, or_else="a path to a .yaml file")
    assert reg.names() == ["a", "b"] and reg.get("b") == tmp_path / "b.yaml"
    assert [e.summary for e in reg.entries()] == ["", "the b file"]
    with pytest.raises(UnknownNameError, match="use one of: a, b, or a path to a .yaml file"):
        reg.get("c")


def test_an_entry_of_a_mapping_of_models_is_named_by_its_path():
    with pytest.raises(ConfigError) as e:
        parse_as(Profile, {"name": "x", "constants": {"e": 5}}, where="p.yaml")
    assert one_line(e.value).startswith("p.yaml: constants.e must be a mapping, got 5")


def test_restricted_keys_and_non_empty_strings_are_worded():
    class Costs(Params):
        constants: dict[Literal["e_synop", "p_static"], Annotated[str, Field(min_length=1)]]

    for data, message in [
        ({"constants": {"e_synap": "x"}}, "unknown key constants.e_synap -- fix: use e_synop or "
                                          "p_static"),
        ({"constants": {"e_synop": ""}}, "constants.e_synop must be a non-empty string, got ''"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse_as(Costs, data)
        assert one_line(e.value).startswith(message)
