"""Energy profiles: the YAML files in ``profiles/`` (next to this module), their schema and
their loading (ENERGY.md 3).

The schema is declared as pydantic models (:class:`ProfileFile`, :class:`ConstantEntry`);
the header comment of every shipped profile documents it for profile authors. A file that
does not fit is refused with one :class:`ProfileError` naming the file, the key and the fix
(``error: energy profile FILE: KEY: PROBLEM -- fix: FIX``), before anything runs. Every
constant carries its value (a finite number >= 0, as published), unit, basis
(simulated / measured / derived / preset), marker (primary / secondary / assumption) and
source. :func:`load_profile` returns a :class:`Profile` with every constant also in SI units.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError,
                      model_validator)
from pydantic_core import PydanticCustomError

from spikeport.core import units
from spikeport.core.errors import SpikeportError, UnknownNameError
from spikeport.core.registry import load_yaml

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

UNITS = units.SI_SCALE  # quantity kind -> unit -> SI factor
# constant name -> (quantity kind, used by the model)
CONSTANTS = {
    "e_synop": ("energy", True),
    "e_synop_mac": ("energy", True),
    "e_neuron_active": ("energy", True),
    "e_neuron_idle": ("energy", True),
    "e_neuron_update": ("energy", True),
    "e_spike": ("energy", True),
    "p_static": ("power", True),
    "dt_step": ("time", True),
    "e_mem_8kb": ("energy", True),
    "e_mem_32kb": ("energy", True),
    "e_mem_1mb": ("energy", True),
    "t_synop_max": ("time", False),
    "e_synop_stdp": ("energy", False),
    "e_hop_ew": ("energy", False),
    "e_hop_ns": ("energy", False),
    "dt_step_unthrottled_min": ("time", False),
    "dt_step_unthrottled_max": ("time", False),
    "p_total": ("power", False),
    "e_inference": ("energy", False),
    "e_add_int8": ("energy", False),
    "e_mult_int8": ("energy", False),
    "e_mac_int8": ("energy", False),
}
# The largest value (SI) a constant of each kind may have: far above any published figure, so
# that a value beyond it is a wrong unit or a typo (23.6 J for 23.6 pJ), not a device.
SI_MAX = {"energy": (1.0, "1 J"), "power": (1e4, "10 kW"), "time": (60.0, "60 s")}
MEMORY_LEVELS = ("8kb", "32kb", "1mb")
BASES = ("simulated", "measured", "derived", "preset")
MARKERS = ("primary", "secondary", "assumption")
DEVICES = ("event-driven", "dense")
_SHIPPED = "see the header comment of a shipped profile"


class ProfileError(SpikeportError):
    """An energy profile file that is malformed, or counts that do not fit it."""


# ------------------------------------------------------------------------------- schema

def _rule(key: str, problem: str, fix: str) -> PydanticCustomError:
    """A broken rule of the schema, carrying the key it concerns and the fix."""
    return PydanticCustomError("profile", "{problem}", {"problem": problem, "key": key, "fix": fix})


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("missing", "blank")
    return text


Text = Annotated[str, AfterValidator(_not_blank)]  # kept as written, but not blank


class _Schema(BaseModel):
    """A YAML mapping: unknown keys refused, a null value is an absent key, numbers written
    where text is expected are read as text."""
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class ConstantEntry(_Schema):
    """One constant of a profile, as published."""
    value: Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]  # in ``unit``
    unit: str                               # a unit of the constant's kind (UNITS)
    basis: Literal[BASES]
    marker: Literal[MARKERS]
    source: Text                            # paper + table, or owner/repo:path of a preset
    note: str = ""


class ProfileFile(_Schema):
    """A profile file; the rules between fields are checked after each field's own."""
    name: Text
    description: Text
    device: Literal[DEVICES]
    process: str = "unstated"
    voltage: str = "unstated"
    static_power_included_in: str | None = None
    chip: Literal["loihi", "loihi2"] | None = None  # the chip whose cores a mapping counts
    constants: dict[Literal[tuple(CONSTANTS)], ConstantEntry]
    notes: list[StrictStr] = []

    @model_validator(mode="after")
    def _rules(self) -> "ProfileFile":
        c = self.constants
        for name, entry in c.items():
            kind = CONSTANTS[name][0]
            if entry.unit not in UNITS[kind]:
                raise _rule(f"constants.{name}.unit", f"{entry.unit!r} is not a unit of {kind}",
                            f"use one of: {', '.join(UNITS[kind])}")
            limit, words = SI_MAX[kind]
            if entry.value * UNITS[kind][entry.unit] > limit:
                raise _rule(f"constants.{name}.value", f"{entry.value:g} {entry.unit} is more "
                            f"than {words}, beyond any device", f"check the unit: the value is "
                            f"in {entry.unit} ({', '.join(UNITS[kind])} are accepted)")
        if "e_neuron_update" in c and ({"e_neuron_active", "e_neuron_idle"} & set(c)):
            raise _rule("constants.e_neuron_update", "given together with e_neuron_active / "
                        "e_neuron_idle", "keep either e_neuron_update or the active/idle pair")
        if self.device == "dense" and "e_synop" not in c:
            raise _rule("constants.e_synop", "missing for a dense device",
                        "a dense device charges every connection every step: give e_synop")
        missing = [f"e_mem_{lvl}" for lvl in MEMORY_LEVELS if f"e_mem_{lvl}" not in c]
        if 0 < len(missing) < len(MEMORY_LEVELS):  # traffic is interpolated between the levels
            raise _rule(f"constants.{missing[0]}", "missing although the profile prices other "
                        f"memory levels (lacks {', '.join(missing)})",
                        "give all of e_mem_8kb, e_mem_32kb and e_mem_1mb, or none")
        inc = self.static_power_included_in
        if inc is not None and inc not in c:
            raise _rule("static_power_included_in", f"names {inc!r}, which is not a constant of "
                        "this profile", "name the constant that contains static power "
                        "(e.g. e_synop), or set it to null")
        if inc is not None and "p_static" in c:
            raise _rule("constants.p_static", f"given although static power is included in {inc} "
                        "(it would be counted twice)",
                        "remove p_static, or set static_power_included_in: null")
        return self


# ------------------------------------------------------------------ schema errors, one line

_CHOICES = {"device": ("a device kind", DEVICES), "basis": ("a basis", BASES),
            "marker": ("a marker", MARKERS)}
_MISSING_FIX = {
    "source": "cite where the number comes from (paper + table, or owner/repo:path of a "
              "preset); mark unpublished stand-ins with marker: assumption",
}


def _explain(err: dict) -> tuple[str, str, str]:
    """(key, problem, fix) of the first pydantic error of a profile file."""
    loc = [str(p) for p in err["loc"] if p != "[key]"]
    key, field_name, kind = ".".join(loc), (loc[-1] if loc else ""), err["type"]
    value, in_entry = err.get("input"), len(loc) == 3
    if kind == "profile":
        return err["ctx"]["key"], err["msg"], err["ctx"]["fix"]
    if kind == "missing":
        fix = _MISSING_FIX.get(field_name) or (f"add {field_name} to the entry" if in_entry
                                               else f"add {field_name} ({_SHIPPED})")
        return key, "missing", fix
    if kind == "extra_forbidden":
        model = ConstantEntry if in_entry else ProfileFile
        return key, "unknown key", f"allowed keys: {', '.join(sorted(model.model_fields))}"
    if kind == "literal_error" and "[key]" in err["loc"]:
        return key, "unknown constant", f"use one of: {', '.join(CONSTANTS)} ({_SHIPPED})"
    if kind == "literal_error":
        what, choices = _CHOICES[field_name]
        return key, f"{value!r} is not {what}", f"use one of: {', '.join(choices)}"
    if field_name == "value" and kind == "greater_than_equal":
        return key, f"negative ({value})", "energies, powers and times are >= 0; fix the sign"
    if field_name == "value":
        return key, f"not a finite number: {value!r}", \
            "write the published number as a plain number, e.g. 23.6"
    return key, *_shape_problem(loc, err)


def _shape_problem(loc: list[str], err: dict) -> tuple[str, str]:
    """(problem, fix) of a value of the wrong type: a mapping, a list or a text expected."""
    if loc == ["constants"]:
        return "must be a mapping of constant name -> entry", _SHIPPED
    if loc[:1] == ["constants"] and len(loc) == 2:
        return ("must be a mapping with value, unit, basis, marker, source",
                "write e.g. {value: 23.6, unit: pJ, basis: simulated, marker: secondary, "
                "source: 'paper, table'}")
    if loc[:1] == ["notes"]:
        return "must be a list of strings", "write notes as a YAML list"
    return f"{err['msg'][0].lower()}{err['msg'][1:]}", _SHIPPED


def _profile_error(path: Path, error: ValidationError) -> ProfileError:
    err = error.errors(include_url=False)[0]
    if not err["loc"] and err["type"] in ("model_type", "dict_type"):
        return ProfileError(f"energy profile {path} is not a mapping",
                            "start from a shipped profile in toolchain/estimation/profiles/")
    key, problem, fix = _explain(err)
    return ProfileError(f"energy profile {path}: {key}: {problem}", fix)


# ------------------------------------------------------------------------------ profiles

@dataclass(frozen=True)
class Constant:
    name: str
    value: float          # as published, in ``unit``
    unit: str
    si: float             # in J, W or s
    basis: str
    marker: str
    source: str
    note: str = ""

    def as_dict(self) -> dict:
        return {"value": self.value, "unit": self.unit, "si": self.si, "basis": self.basis,
                "marker": self.marker, "source": self.source, "note": self.note}


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    description: str
    device: str
    process: str
    voltage: str
    static_power_included_in: str | None
    constants: dict[str, Constant]
    notes: tuple[str, ...] = field(default_factory=tuple)
    chip: str | None = None

    def si(self, name: str) -> float | None:
        c = self.constants.get(name)
        return None if c is None else c.si

    @property
    def prices_memory(self) -> bool:
        """Does the profile price memory accesses (all of e_mem_8kb / 32kb / 1mb; a profile
        with only some of them is refused on loading)?"""
        return all(f"e_mem_{lvl}" in self.constants for lvl in MEMORY_LEVELS)

    @classmethod
    def from_file(cls, path: Path, f: ProfileFile) -> "Profile":
        consts = {n: Constant(n, e.value, e.unit, e.value * UNITS[CONSTANTS[n][0]][e.unit],
                              e.basis, e.marker, e.source, e.note)
                  for n, e in f.constants.items()}
        return cls(f.name, path, f.description, f.device, f.process, f.voltage,
                   f.static_power_included_in, consts, tuple(f.notes), f.chip)


def list_profiles() -> list[str]:
    """Names of the shipped profiles (file stems in ``profiles/``), sorted."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if p.is_dir():
            raise ProfileError(f"energy profile {p} is a directory",
                               f"pass a profile .yaml file or one of: {', '.join(list_profiles())}")
        if not p.is_file():
            raise ProfileError(f"energy profile file not found: {p}",
                               f"pass an existing file or one of: {', '.join(list_profiles())}")
        return p
    path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UnknownNameError(f"unknown energy profile {str(name_or_path)!r}",
                               f"use one of: {', '.join(list_profiles())}, or a path to a "
                               f"profile .yaml file")
    return path


def load_profile(name_or_path: str | Path | Profile) -> Profile:
    """Load and validate a profile by name (see :func:`list_profiles`) or by file path."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    path = _resolve(name_or_path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ProfileError(f"energy profile {path} is not valid YAML ({type(e).__name__})",
                           "fix the YAML syntax (compare with a shipped profile)") from None
    except UnicodeDecodeError:
        raise ProfileError(f"energy profile {path} is not UTF-8 text",
                           "write the profile as a YAML text file (compare with a shipped profile)"
                           ) from None
    except OSError as e:
        raise ProfileError(f"cannot read energy profile {path} ({e.strerror or type(e).__name__})",
                           "pass a readable profile file") from None
    try:
        return Profile.from_file(path, ProfileFile.model_validate(raw))
    except ValidationError as e:
        raise _profile_error(path, e) from None
