"""Per-target energy from operation counts and a sourced energy profile (ENERGY.md 3, 4).

Profiles are YAML files in ``toolchain/estimate/profiles/`` (the schema is documented in the
header comment of every file); each constant carries its value, unit, basis
(simulated / measured / derived / preset), marker (primary / secondary / assumption) and
source. :func:`load_profile` validates a file strictly; :func:`energy` evaluates

    E = N_synop * e_synop + N_upd,active * e_active + N_upd,idle * e_idle
        + N_spike,out * e_spike + P_static * t* * dt_step  [+ memory terms]

per sample, with hops = 0 (no placement known). The static term is added only where the
profile gives ``p_static`` and ``dt_step`` and does not declare
``static_power_included_in`` (TrueNorth's 26 pJ per event already contains static power).
On a ``dense`` (non-spiking) device every connection and every neuron is charged every
step: the synaptic term uses ``synops_dense`` and there is no spike term.

``counts`` -- the input of :func:`energy`, **per sample** (mean over the evaluated samples),
every count integrated only over steps t <= t*_b (ENERGY.md 5.4). Energy is linear in the
counts, so mean counts give the mean energy per sample.

=========================  ========  ==========================================================
key                        required  meaning (ENERGY.md 1)
=========================  ========  ==========================================================
``synops_ac``              yes       effective synaptic ops whose source is a binary spiking
                                     population (ACs), summed over layers and steps <= t*
``synops_mac``             yes       effective ops with analog / graded / count inputs (MACs)
``neuron_updates_active``  yes       (neuron, step) pairs with non-zero input or state
``neuron_updates_idle``    yes       dense updates (N_l * t*) minus active ones
``spikes``                 yes       spikes sent by all spiking layers (N_spike,out)
``steps``                  yes       mean exit step t* (T without cutoff), 1-based
``synops_dense``           dense     every input x every weight at every step <= t*
                           devices   (NeuroBench ``Dense``); needed for cpu / gpu profiles
``dense_ann_macs``         no        MACs of one dense ANN pass (for the naive ANN figure)
``memory_accesses_64bit``  no        {"8kb" | "32kb" | "1mb": number of 64-bit accesses} --
                                     only for profiles with e_mem_* constants (the estimator
                                     passes the Lemaire-style traffic of metrics ``memory``)
``dense_ann_memory_...``   no        ``dense_ann_memory_accesses_64bit``: the same for one
                                     dense ANN pass (naive comparison only)
=========================  ========  ==========================================================

A term whose constant the profile lacks is reported as ``None`` and listed in
``not_modelled``; the total is then a sum over the modelled terms only (never a silent 0).
The "naive" figure (#AC x 0.9 pJ + #MAC x 4.6 pJ, constants from the ``ann-45nm`` profile)
is returned separately and labelled, for comparison only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spikeport.core import units
from spikeport.core.errors import SpikeportError, UnknownNameError

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
NAIVE_PROFILE = "ann-45nm"

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
MEMORY_LEVELS = ("8kb", "32kb", "1mb")
BASES = ("simulated", "measured", "derived", "preset")
MARKERS = ("primary", "secondary", "assumption")
DEVICES = ("event-driven", "dense")
TOP_KEYS = {"name", "description", "device", "process", "voltage",
            "static_power_included_in", "constants", "notes"}
TOP_REQUIRED = ("name", "description", "device", "constants")
ENTRY_KEYS = {"value", "unit", "basis", "marker", "source", "note"}
ENTRY_REQUIRED = ("value", "unit", "basis", "marker", "source")

COUNT_REQUIRED = ("synops_ac", "synops_mac", "neuron_updates_active", "neuron_updates_idle",
                  "spikes", "steps")
COUNT_OPTIONAL = ("synops_dense", "dense_ann_macs", "memory_accesses_64bit",
                  "dense_ann_memory_accesses_64bit")


class ProfileError(SpikeportError):
    """An energy profile file that is malformed, or counts that do not fit it."""


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

    def si(self, name: str) -> float | None:
        c = self.constants.get(name)
        return None if c is None else c.si

    @property
    def prices_memory(self) -> bool:
        """Does the profile price memory accesses (all of e_mem_8kb / 32kb / 1mb; a profile
        with only some of them is refused on loading)?"""
        return all(f"e_mem_{lvl}" in self.constants for lvl in MEMORY_LEVELS)


# ------------------------------------------------------------------------------- loading

def list_profiles() -> list[str]:
    """Names of the shipped profiles (file stems in ``profiles/``), sorted."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
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


def _err(path: Path, key: str, problem: str, fix: str) -> ProfileError:
    return ProfileError(f"energy profile {path}: {key}: {problem}", fix)


def _constant(path: Path, name: str, entry) -> Constant:
    key = f"constants.{name}"
    if name not in CONSTANTS:
        raise _err(path, key, "unknown constant",
                   f"use one of: {', '.join(CONSTANTS)} (see the header of any shipped profile)")
    if not isinstance(entry, dict):
        raise _err(path, key, "must be a mapping with value, unit, basis, marker, source",
                   "write e.g. {value: 23.6, unit: pJ, basis: simulated, marker: secondary, "
                   "source: 'paper, table'}")
    unknown = sorted(set(entry) - ENTRY_KEYS)
    if unknown:
        raise _err(path, f"{key}.{unknown[0]}", "unknown key",
                   f"allowed keys: {', '.join(sorted(ENTRY_KEYS))}")
    for k in ENTRY_REQUIRED:
        if k not in entry or entry[k] is None or (isinstance(entry[k], str)
                                                   and not entry[k].strip()):
            fix = ("cite where the number comes from (paper + table, or owner/repo:path of a "
                   "preset); mark unpublished stand-ins with marker: assumption"
                   if k == "source" else f"add {k} to the entry")
            raise _err(path, f"{key}.{k}", "missing", fix)
    v = entry["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(path, f"{key}.value", f"not a finite number: {v!r}",
                   "write the published number as a plain number, e.g. 23.6")
    if v < 0:
        raise _err(path, f"{key}.value", f"negative ({v})",
                   "energies, powers and times are >= 0; fix the sign")
    kind = CONSTANTS[name][0]
    if entry["unit"] not in UNITS[kind]:
        raise _err(path, f"{key}.unit", f"{entry['unit']!r} is not a unit of {kind}",
                   f"use one of: {', '.join(UNITS[kind])}")
    if entry["basis"] not in BASES:
        raise _err(path, f"{key}.basis", f"{entry['basis']!r} is not a basis",
                   f"use one of: {', '.join(BASES)}")
    if entry["marker"] not in MARKERS:
        raise _err(path, f"{key}.marker", f"{entry['marker']!r} is not a marker",
                   f"use one of: {', '.join(MARKERS)}")
    return Constant(name, float(v), entry["unit"], float(v) * UNITS[kind][entry["unit"]],
                    entry["basis"], entry["marker"], str(entry["source"]),
                    str(entry.get("note") or ""))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a profile by name (see :func:`list_profiles`) or by file path."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    path = _resolve(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"energy profile {path} is not valid YAML ({type(e).__name__})",
                           "fix the YAML syntax (compare with a shipped profile)") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"energy profile {path} is not a mapping",
                           "start from a shipped profile in toolchain/estimate/profiles/")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise _err(path, unknown[0], "unknown key", f"allowed keys: {', '.join(sorted(TOP_KEYS))}")
    for k in TOP_REQUIRED:
        if raw.get(k) in (None, ""):
            raise _err(path, k, "missing", f"add {k} (see the header comment of a shipped profile)")
    if raw["device"] not in DEVICES:
        raise _err(path, "device", f"{raw['device']!r} is not a device kind",
                   f"use one of: {', '.join(DEVICES)}")
    if not isinstance(raw["constants"], dict):
        raise _err(path, "constants", "must be a mapping of constant name -> entry",
                   "see the header comment of a shipped profile")
    consts = {n: _constant(path, str(n), e) for n, e in raw["constants"].items()}
    if "e_neuron_update" in consts and ({"e_neuron_active", "e_neuron_idle"} & set(consts)):
        raise _err(path, "constants.e_neuron_update", "given together with e_neuron_active / "
                   "e_neuron_idle", "keep either e_neuron_update or the active/idle pair")
    if raw["device"] == "dense" and "e_synop" not in consts:
        raise _err(path, "constants.e_synop", "missing for a dense device",
                   "a dense device charges every connection every step: give e_synop")
    mem = [f"e_mem_{lvl}" for lvl in MEMORY_LEVELS]
    missing = [c for c in mem if c not in consts]
    if 0 < len(missing) < len(mem):  # the traffic is interpolated between the three levels
        raise _err(path, f"constants.{missing[0]}", f"missing although the profile prices other "
                   f"memory levels (lacks {', '.join(missing)})",
                   "give all of e_mem_8kb, e_mem_32kb and e_mem_1mb, or none")
    inc = raw.get("static_power_included_in")
    if inc is not None:
        if inc not in consts:
            raise _err(path, "static_power_included_in", f"names {inc!r}, which is not a "
                       "constant of this profile", "name the constant that contains static "
                       "power (e.g. e_synop), or set it to null")
        if "p_static" in consts:
            raise _err(path, "constants.p_static", f"given although static power is included "
                       f"in {inc} (it would be counted twice)",
                       "remove p_static, or set static_power_included_in: null")
    notes = raw.get("notes") or []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise _err(path, "notes", "must be a list of strings", "write notes as a YAML list")
    return Profile(str(raw["name"]), path, str(raw["description"]), raw["device"],
                   str(raw.get("process") or "unstated"), str(raw.get("voltage") or "unstated"),
                   inc, consts, tuple(notes))


# -------------------------------------------------------------------------------- energy

def _check_counts(counts: dict, profile: Profile) -> dict:
    if not isinstance(counts, dict):
        raise ProfileError("counts must be a dict", "see the table in spikeport.estimate.energy")
    unknown = sorted(set(counts) - set(COUNT_REQUIRED) - set(COUNT_OPTIONAL))
    if unknown:
        raise ProfileError(f"unknown count {unknown[0]!r}",
                           f"allowed: {', '.join(COUNT_REQUIRED + COUNT_OPTIONAL)}")
    missing = [k for k in COUNT_REQUIRED if counts.get(k) is None]
    if profile.device == "dense" and counts.get("synops_dense") is None:
        missing.append("synops_dense")
    if missing:
        raise ProfileError(f"counts lack {', '.join(missing)} (needed for profile "
                           f"{profile.name!r})", "give every required count per sample; pass 0 "
                           "explicitly for a count that is truly zero")
    out = {}
    for k, v in counts.items():
        if k in ("memory_accesses_64bit", "dense_ann_memory_accesses_64bit"):
            if not isinstance(v, dict):
                raise ProfileError(f"{k} must map a level to a count",
                                   f"levels: {', '.join(MEMORY_LEVELS)}")
            for lvl, n in v.items():
                if lvl not in MEMORY_LEVELS:
                    raise ProfileError(f"unknown memory level {lvl!r}",
                                       f"use one of: {', '.join(MEMORY_LEVELS)} (no "
                                       "interpolation between levels)")
                if k == "memory_accesses_64bit" and profile.si(f"e_mem_{lvl}") is None:
                    raise ProfileError(f"profile {profile.name!r} has no e_mem_{lvl}",
                                       "drop memory_accesses_64bit or use a profile with "
                                       "memory constants (e.g. ann-45nm)")
                if float(n) < 0:
                    raise ProfileError(f"negative count {k}.{lvl}",
                                       "counts are >= 0")
            out[k] = {lvl: float(n) for lvl, n in v.items()}
            continue
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ProfileError(f"count {k} = {v!r} is not a finite number >= 0",
                               "pass per-sample counts as non-negative numbers")
        out[k] = float(v)
    return out


def _naive(c: dict) -> dict:
    p = load_profile(NAIVE_PROFILE)
    e_ac, e_mac = p.si("e_synop"), p.si("e_synop_mac")
    d = {"label": "naive: #AC x 0.9 pJ + #MAC x 4.6 pJ (45 nm fp32; no memory, neuron "
                  "updates, routing or static power) -- comparison only",
         "J": c["synops_ac"] * e_ac + c["synops_mac"] * e_mac,
         "ann_dense_J": None,
         "profile": NAIVE_PROFILE}
    if c.get("dense_ann_macs") is not None:
        d["ann_dense_J"] = c["dense_ann_macs"] * e_mac
        d["ann_dense_label"] = "dense ANN pass: dense_ann_macs x 4.6 pJ (fp32 MAC, 45 nm)"
    mem = c.get("dense_ann_memory_accesses_64bit")
    if mem and d["ann_dense_J"] is not None:
        d["ann_dense_memory_J"] = sum(n * p.si(f"e_mem_{lvl}") for lvl, n in mem.items())
        d["ann_dense_with_memory_J"] = d["ann_dense_J"] + d["ann_dense_memory_J"]
    return d


def energy(counts: dict, profile, dt_step: float | None = None) -> dict:
    """Energy per sample on ``profile`` (a :class:`Profile`, a name or a path).

    ``dt_step`` (seconds) overrides the profile's step time, e.g. for an unthrottled run.
    Returns the joules per term (``None`` where the profile has no constant for it), the
    total over the modelled terms, the count breakdown, the constants used with their
    markers, the static-power treatment, the wall-clock time t* x dt_step, and the labelled
    "naive" figure.
    """
    p = load_profile(profile)
    c = _check_counts(counts, p)
    terms: dict[str, float | None] = {}
    used: set[str] = set()
    not_modelled: list[str] = []

    def charge(term: str, n: float, const: str, *fallbacks: str) -> None:
        for name in (const, *fallbacks):
            e = p.si(name)
            if e is not None:
                terms[term] = n * e
                used.add(name)
                return
        terms[term] = None
        not_modelled.append(f"{term} (profile has no {const})")

    # synaptic ops
    if p.device == "dense":
        charge("synops", c["synops_dense"], "e_synop")
    else:
        e_ac, e_mac = p.si("e_synop"), p.si("e_synop_mac") or p.si("e_synop")
        if e_ac is None:
            terms["synops"] = None
            not_modelled.append("synops (profile has no e_synop)")
        else:
            terms["synops"] = c["synops_ac"] * e_ac + c["synops_mac"] * e_mac
            used.add("e_synop")
            if c["synops_mac"] and p.si("e_synop_mac") is not None:
                used.add("e_synop_mac")
    charge("neuron_updates_active", c["neuron_updates_active"], "e_neuron_active",
           "e_neuron_update")
    charge("neuron_updates_idle", c["neuron_updates_idle"], "e_neuron_idle", "e_neuron_update")
    if p.device == "dense":
        terms["spikes"] = 0.0    # a non-spiking device sends no spikes; all ops are in synops
    else:
        charge("spikes", c["spikes"], "e_spike")

    # static power x t* x dt_step, unless already inside another constant
    dt = dt_step if dt_step is not None else p.si("dt_step")
    if dt is not None and dt_step is None:
        used.add("dt_step")
    if p.static_power_included_in is not None:
        terms["static"] = None
        static = {"status": f"included in {p.static_power_included_in}; not added again"}
    elif p.si("p_static") is None:
        terms["static"] = None
        static = {"status": "not in profile"}
        not_modelled.append("static (profile has no p_static)")
    elif dt is None:
        terms["static"] = None
        static = {"status": "p_static given but no step time; pass dt_step="}
        not_modelled.append("static (no dt_step)")
    else:
        terms["static"] = p.si("p_static") * c["steps"] * dt
        used.add("p_static")
        static = {"status": "added", "p_static_W": p.si("p_static"), "dt_step_s": dt,
                  "dt_step_source": "argument" if dt_step is not None else "profile"}

    # memory (only where counts are given)
    mem = c.get("memory_accesses_64bit")
    if mem:
        terms["memory"] = sum(n * p.si(f"e_mem_{lvl}") for lvl, n in mem.items())
        used.update(f"e_mem_{lvl}" for lvl in mem)
    else:
        terms["memory"] = None
        has_mem = any(p.si(f"e_mem_{lvl}") is not None for lvl in MEMORY_LEVELS)
        not_modelled.append("memory (no memory_accesses_64bit counts)" if has_mem
                            else "memory (profile has no e_mem_* constants)")

    total = sum(v for v in terms.values() if v is not None)
    return {
        "profile": p.name,
        "profile_file": str(p.path),
        "device": p.device,
        "per": "sample (counts integrated over steps <= t*)",
        "counts": c,
        "terms_J": terms,
        "total_J": total,
        "not_modelled": not_modelled,
        "static_power": static,
        "wall_time_s": None if dt is None else c["steps"] * dt,
        "constants_used": {n: p.constants[n].as_dict() for n in sorted(used)},
        "markers_used": sorted({p.constants[n].marker for n in used}),
        "notes": list(p.notes),
        "naive": _naive(c),
    }
