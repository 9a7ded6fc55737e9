"""Per-target energy from operation counts and a sourced energy profile (ENERGY.md 3, 4).

Profiles are YAML files in ``toolchain/estimation/profiles/``, validated against the schema of
:mod:`spikeport.estimation.profiles` (documented in the header comment of every file); each
constant carries its value, unit, basis (simulated / measured / derived / preset), marker
(primary / secondary / assumption) and source. :func:`energy` evaluates

    E = N_synop * e_synop + N_upd,active * e_active + N_upd,idle * e_idle
        + N_spike,out * e_spike + P_static * t* * dt_step  [+ memory terms]

per sample, with hops = 0. The static term is added only where the profile gives
``p_static`` and ``dt_step`` and does not declare ``static_power_included_in`` (TrueNorth's
26 pJ per event already contains static power). With a ``placement`` (the cores a network's
mapping uses on the profile's chip, :mod:`spikeport.exporters.loihi.mapping`) the static term
is P_static x cores / cores_per_chip: the share of the chip the network occupies, an
assumption (static power spread evenly over the cores), with the whole chips' figure
alongside in ``static_power``; without one, a whole chip is charged. ``dynamic_J`` is the
sum of every term but the static one, ``static_J`` the static term.
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

from spikeport.estimation.profiles import MEMORY_LEVELS, Profile, ProfileError, load_profile

NAIVE_PROFILE = "ann-45nm"
COUNT_REQUIRED = ("synops_ac", "synops_mac", "neuron_updates_active", "neuron_updates_idle",
                  "spikes", "steps")
COUNT_OPTIONAL = ("synops_dense", "dense_ann_macs", "memory_accesses_64bit",
                  "dense_ann_memory_accesses_64bit")
_MEMORY_COUNTS = ("memory_accesses_64bit", "dense_ann_memory_accesses_64bit")


def _check_counts(counts: dict, profile: Profile) -> dict:
    """The counts as floats (None values dropped), or a ProfileError naming the bad count."""
    if not isinstance(counts, dict):
        raise ProfileError("counts must be a dict", "see the table in spikeport.estimation.energy")
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
        if k in _MEMORY_COUNTS:
            out[k] = _memory_counts(k, v, profile)
        elif v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ProfileError(f"count {k} = {v!r} is not a finite number >= 0",
                                   "pass per-sample counts as non-negative numbers")
            out[k] = float(v)
    return out


def _memory_counts(key: str, levels, profile: Profile) -> dict[str, float]:
    """A {memory level: 64-bit accesses} count, checked against the levels and the profile."""
    if not isinstance(levels, dict):
        raise ProfileError(f"{key} must map a level to a count",
                           f"levels: {', '.join(MEMORY_LEVELS)}")
    for lvl, n in levels.items():
        if lvl not in MEMORY_LEVELS:
            raise ProfileError(f"unknown memory level {lvl!r}",
                               f"use one of: {', '.join(MEMORY_LEVELS)} (no "
                               "interpolation between levels)")
        if key == "memory_accesses_64bit" and profile.si(f"e_mem_{lvl}") is None:
            raise ProfileError(f"profile {profile.name!r} has no e_mem_{lvl}",
                               "drop memory_accesses_64bit or use a profile with "
                               "memory constants (e.g. ann-45nm)")
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
            raise ProfileError(f"count {key}.{lvl} = {n!r} is not a finite number >= 0",
                               "pass per-sample counts as non-negative numbers")
    return {lvl: float(n) for lvl, n in levels.items()}


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


class _Bill:
    """The terms of one energy evaluation (in charging order), the constants they used and
    the terms the profile cannot price."""

    def __init__(self, profile: Profile):
        self.p = profile
        self.terms: dict[str, float | None] = {}
        self.used: set[str] = set()
        self.not_modelled: list[str] = []

    def unpriced(self, term: str, why: str) -> None:
        self.terms[term] = None
        self.not_modelled.append(f"{term} ({why})")

    def charge(self, term: str, n: float, const: str, *fallbacks: str) -> None:
        """n x the first of ``const``, ``fallbacks`` that the profile gives."""
        for name in (const, *fallbacks):
            e = self.p.si(name)
            if e is not None:
                self.terms[term] = n * e
                self.used.add(name)
                return
        self.unpriced(term, f"profile has no {const}")

    def synops(self, c: dict) -> None:
        """Dense device: every connection every step; else ACs at e_synop, MACs at
        e_synop_mac (e_synop where the profile has none)."""
        p = self.p
        if p.device == "dense":
            return self.charge("synops", c["synops_dense"], "e_synop")
        e_ac, e_mac = p.si("e_synop"), p.si("e_synop_mac") or p.si("e_synop")
        if e_ac is None:
            return self.unpriced("synops", "profile has no e_synop")
        self.terms["synops"] = c["synops_ac"] * e_ac + c["synops_mac"] * e_mac
        self.used.add("e_synop")
        if c["synops_mac"] and p.si("e_synop_mac") is not None:
            self.used.add("e_synop_mac")

    def static(self, c: dict, dt_step: float | None,
               placement: dict | None = None) -> tuple[float | None, dict]:
        """Static power x t* x dt_step (x the share of the chip ``placement`` occupies),
        unless already inside another constant; returns the step time used and the
        static-power treatment."""
        p = self.p
        dt = dt_step if dt_step is not None else p.si("dt_step")
        if dt is not None and dt_step is None:
            self.used.add("dt_step")
        if p.static_power_included_in is not None:
            self.terms["static"] = None
            return dt, {"status": f"included in {p.static_power_included_in}; not added again"}
        if p.si("p_static") is None:
            self.unpriced("static", "profile has no p_static")
            return dt, {"status": "not in profile"}
        if dt is None:
            self.unpriced("static", "no dt_step")
            return dt, {"status": "p_static given but no step time; pass dt_step="}
        whole = p.si("p_static") * c["steps"] * dt
        self.used.add("p_static")
        info = {"status": "added", "p_static_W": p.si("p_static"), "dt_step_s": dt,
                "dt_step_source": "argument" if dt_step is not None else "profile"}
        if placement is None:
            self.terms["static"] = whole
            info["charged_for"] = "one whole chip (no mapping known for this target)"
            return dt, info
        cores, per_chip = int(placement["cores"]), int(placement["cores_per_chip"])
        chips = max(1, -(-cores // per_chip))
        self.terms["static"] = whole * cores / per_chip
        info.update(charged_for=f"{cores} of {per_chip} cores per chip (the network's mapping; "
                                "static power assumed spread evenly over the cores)",
                    cores=cores, cores_per_chip=per_chip, chips=chips,
                    whole_chips_J=whole * chips)
        return dt, info

    def memory(self, c: dict) -> None:
        """Memory accesses per level, only where the counts give them."""
        mem = c.get("memory_accesses_64bit")
        if mem:
            self.terms["memory"] = sum(n * self.p.si(f"e_mem_{lvl}") for lvl, n in mem.items())
            self.used.update(f"e_mem_{lvl}" for lvl in mem)
        elif any(self.p.si(f"e_mem_{lvl}") is not None for lvl in MEMORY_LEVELS):
            self.unpriced("memory", "no memory_accesses_64bit counts")
        else:
            self.unpriced("memory", "profile has no e_mem_* constants")


def energy(counts: dict, profile, dt_step: float | None = None,
           placement: dict | None = None) -> dict:
    """Energy per sample on ``profile`` (a :class:`Profile`, a name or a path).

    ``dt_step`` (seconds) overrides the profile's step time, e.g. for an unthrottled run.
    ``placement`` ({"cores": n, "cores_per_chip": m}, e.g. a mapping's): static power is
    charged for those cores only (module docstring).
    Returns the joules per term (``None`` where the profile has no constant for it), the
    total over the modelled terms, the count breakdown, the constants used with their
    markers, the static-power treatment, the wall-clock time t* x dt_step, and the labelled
    "naive" figure.
    """
    p = load_profile(profile)
    c = _check_counts(counts, p)
    if dt_step is not None and (isinstance(dt_step, bool) or not isinstance(dt_step, (int, float))
                                or not math.isfinite(dt_step) or dt_step <= 0):
        raise ProfileError(f"dt_step = {dt_step!r} is not a step time in seconds",
                           "pass a finite number of seconds > 0, e.g. dt_step=1e-3")
    bill = _Bill(p)
    bill.synops(c)
    bill.charge("neuron_updates_active", c["neuron_updates_active"], "e_neuron_active",
                "e_neuron_update")
    bill.charge("neuron_updates_idle", c["neuron_updates_idle"], "e_neuron_idle",
                "e_neuron_update")
    if p.device == "dense":
        bill.terms["spikes"] = 0.0  # a non-spiking device sends no spikes; all ops are in synops
    else:
        bill.charge("spikes", c["spikes"], "e_spike")
    dt, static = _static(bill, c, dt_step, placement)
    bill.memory(c)
    result = {
        "profile": p.name,
        "profile_file": str(p.path),
        "device": p.device,
        "per": "sample (counts integrated over steps <= t*)",
        "counts": c,
        "terms_J": bill.terms,
        "total_J": sum(v for v in bill.terms.values() if v is not None),
        "dynamic_J": sum(v for k, v in bill.terms.items() if v is not None and k != "static"),
        "static_J": bill.terms.get("static"),
        "not_modelled": bill.not_modelled,
        "static_power": static,
        "wall_time_s": None if dt is None else c["steps"] * dt,
        "constants_used": {n: p.constants[n].as_dict() for n in sorted(bill.used)},
        "markers_used": sorted({p.constants[n].marker for n in bill.used}),
        "notes": list(p.notes),
        "naive": _naive(c),
    }
    _check_finite(result, p)
    return result


def _static(bill: _Bill, c: dict, dt_step, placement: dict | None):
    if placement is not None:
        for key in ("cores", "cores_per_chip"):
            v = placement.get(key) if isinstance(placement, dict) else None
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ProfileError(f"placement {key} = {v!r} is not a whole number >= 1",
                                   "pass placement={'cores': n, 'cores_per_chip': m}")
    return bill.static(c, dt_step, placement)


def _check_finite(result: dict, profile: Profile) -> None:
    """The last line of defence: no energy figure leaves as NaN or infinity (the inputs are
    checked to be finite, but their products can overflow)."""
    figures = {**{f"terms_J.{k}": v for k, v in result["terms_J"].items()},
               "total_J": result["total_J"], "wall_time_s": result["wall_time_s"],
               "dynamic_J": result["dynamic_J"],
               **{f"naive.{k}": v for k, v in result["naive"].items()
                  if isinstance(v, float)}}
    bad = next((k for k, v in figures.items() if v is not None and not math.isfinite(v)), None)
    if bad is not None:
        raise ProfileError(f"energy on profile {profile.name!r}: {bad} is {figures[bad]} (the "
                           "counts times the profile's constants overflow)",
                           "check the profile's values and units, and the counts")
