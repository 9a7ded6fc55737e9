"""Anytime cutoff (Top-K, confidence, OCT, report, threshold files) and energy profiles.

Every expected number below is worked out by hand in the comments.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from spikeport.core.errors import SpikeportError, UnknownNameError
from spikeport.estimation import cutoff as co
from spikeport.estimation import energy as en
from spikeport.estimation import profiles as pr


# ------------------------------------------------------------------------ cutoff fixtures

def _tiny():
    """T = 3, B = 4, C = 3 per-step output counts and labels.

    sample 0 (y=0): o = [2,0,0],[1,0,0],[0,0,0]  Y = [2,0,0],[3,0,0],[3,0,0]  g = 2,3,3
                    pred 0,0,0  correct_from T,T,T
    sample 1 (y=1): o = [1,0,0],[0,2,0],[0,1,0]  Y = [1,0,0],[1,2,0],[1,3,0]  g = 1,1,2
                    pred 0,1,1  correct_from F,T,T
    sample 2 (y=2): o = [0,0,1],[1,0,0],[1,0,0]  Y = [0,0,1],[1,0,1],[2,0,1]  g = 1,0,1
                    pred 2,0(tie 0/2 -> lowest),0  correct_from F,F,F
    sample 3 (y=0): all zero; Y = 0, g = 0, pred 0 (tie -> lowest) correct_from T,T,T
    """
    o = np.zeros((3, 4, 3), np.int64)
    o[0, 0] = [2, 0, 0]; o[1, 0] = [1, 0, 0]
    o[0, 1] = [1, 0, 0]; o[1, 1] = [0, 2, 0]; o[2, 1] = [0, 1, 0]
    o[0, 2] = [0, 0, 1]; o[1, 2] = [1, 0, 0]; o[2, 2] = [1, 0, 0]
    y = np.array([0, 1, 2, 0])
    return o, y


def test_gaps_predictions_and_ties():
    o, y = _tiny()
    np.testing.assert_array_equal(co.gaps(o), [[2, 1, 1, 0], [3, 1, 0, 0], [3, 2, 1, 0]])
    np.testing.assert_array_equal(co.predictions(o), [[0, 0, 2, 0], [0, 1, 0, 0],
                                                      [0, 1, 0, 0]])
    np.testing.assert_array_equal(co.correct_from(o, y), [[1, 0, 0, 1], [1, 1, 0, 1],
                                                          [1, 1, 0, 1]])


def test_calibrate_topk_by_hand():
    o, y = _tiny()
    # max g = 3, grid = 4 -> beta_m = 0, 0.75, 1.5, 2.25
    # eps = 0:
    #  t1: g = [2,1,1,0], ok = [T,F,F,T]; beta 0 -> {0,1,2}: 1/3; 0.75 -> 1/3; 1.5 -> {0}: 1
    #  t2: g = [3,1,0,0], ok = [T,T,F,T]; beta 0 -> {0,1}: 2/2 = 1
    #  t3: g = [3,2,1,0], ok = [T,T,F,T]; beta 0 -> {0,1,2}: 2/3; 0.75 -> 2/3; 1.5 -> {0,1}: 1
    d = co.calibrate_topk(o, y, epsilon=0.0, grid=4, calibration_set="tiny")
    assert d["thresholds"] == [1.5, 0.0, 1.5]
    assert d["max_gap"] == 3.0 and d["T"] == 3 and d["method"] == "topk"
    assert d["coverage"] == [1, 2, 2] and d["precision"] == [1.0, 1.0, 1.0]
    assert d["readout"] == "output spike counts" and d["calibration_set"] == "tiny"
    # eps = 0.5: t3 at beta 0 has 2/3 >= 0.5; t1 still needs 1.5 (1/3 < 0.5)
    assert co.calibrate_topk(o, y, epsilon=0.5, grid=4)["thresholds"] == [1.5, 0.0, 0.0]
    # eps = 0.7: 1/3 >= 0.3 everywhere -> all 0
    assert co.calibrate_topk(o, y, epsilon=0.7, grid=4)["thresholds"] == [0.0, 0.0, 0.0]


def test_calibrate_topk_empty_grid_value_is_not_qualifying():
    # T = 2, B = 2, C = 2
    # s0 (y=0): Y = [1,0],[1,0]  g = 1,1  ok T,T
    # s1 (y=1): Y = [1,0],[1,4]  g = 1,3  pred 0,1 -> ok F,T
    # max g = 3, grid 3 -> beta = 0, 1, 2
    # t1: beta 0 -> 1/2; beta 1 -> nobody above (0/0: does not qualify); beta 2 -> top, C = 1
    # t2: beta 0 -> 2/2 -> 0
    o = np.array([[[1, 0], [1, 0]], [[0, 0], [0, 4]]])
    d = co.calibrate_topk(o, [0, 1], epsilon=0.0, grid=3)
    assert d["thresholds"] == [2.0, 0.0]
    assert d["coverage"] == [0, 2]


def test_calibrate_all_ties_gives_zero_thresholds_and_forced_exits():
    o = np.ones((4, 3, 2))          # every step ties: g = 0, max g = 0, grid all zeros
    d = co.calibrate_topk(o, [0, 0, 1])
    assert d["thresholds"] == [0.0] * 4
    steps, forced = co.apply_topk(o, d, return_forced=True)
    np.testing.assert_array_equal(steps, [4, 4, 4])
    assert forced.all()


def test_apply_topk_and_report_by_hand():
    o, y = _tiny()
    # beta = [1.5, 0, 1.5]: t1 g [2,1,1,0] > 1.5 -> s0 exits at 1
    # t2 g [3,1,0,0] > 0 -> s1 exits at 2; t3 g [3,2,1,0] > 1.5 -> s2 (g=1), s3 (g=0) forced
    steps, forced = co.apply_topk(o, [1.5, 0.0, 1.5], return_forced=True)
    np.testing.assert_array_equal(steps, [1, 2, 3, 3])
    np.testing.assert_array_equal(forced, [False, False, True, True])
    r = co.cutoff_report(o, y, steps, forced)
    assert r["mean_steps"] == 2.25
    assert r["median_steps"] == 2.5
    assert r["p95_steps"] == 3.0                 # sorted [1,2,3,3], rank 2.85 -> 3
    assert r["histogram"] == [1, 1, 2]
    assert r["fraction_forced"] == 0.5
    # at cutoff: s0 pred 0 ok, s1 pred 1 ok, s2 pred 0 (y 2) wrong, s3 pred 0 ok
    assert r["accuracy_at_cutoff"] == 0.75
    assert r["accuracy_at_T"] == 0.75
    # OCT = [1, 2, sentinel 4, 1]; mean over samples correct at T: (1 + 2 + 1) / 3
    assert r["mean_oct"] == pytest.approx(4 / 3)
    assert r["speedup"] == pytest.approx(3 / 2.25)
    # without the forced mask, every exit at T counts as forced
    r2 = co.cutoff_report(o, y, steps)
    assert r2["fraction_forced"] == 0.5 and "includes" in r2["forced_definition"]


def test_cutoff_accuracy_can_differ_from_accuracy_at_T():
    o, y = _tiny()
    # exit everything at t = 1: predictions [0, 0, 2, 0] vs y [0, 1, 2, 0] -> 3/4, and
    # s2 is right at t = 1 but wrong at T
    r = co.cutoff_report(o, y, [1, 1, 1, 1])
    assert r["accuracy_at_cutoff"] == 0.75 and r["accuracy_at_T"] == 0.75
    r = co.cutoff_report(o, y, [1, 1, 3, 3])    # s1 wrong at 1, s2 wrong at 3 -> 2/4
    assert r["accuracy_at_cutoff"] == 0.5
    assert r["speedup"] == pytest.approx(3 / 2)


def test_oct_sentinel():
    o, y = _tiny()
    np.testing.assert_array_equal(co.oct_steps(o, y), [1, 2, 4, 1])   # T + 1 = never


def test_apply_confidence_by_hand():
    o, y = _tiny()
    e = math.e
    # s0 t1: Y [2,0,0] -> e^2/(e^2+2) = 0.787 > 0.75 -> exit 1
    # s1: t1 e/(e+2) = 0.576, t2 e^2/(e^2+e+1) = 0.665, t3 e^3/(e^3+e+1) = 0.844 -> exit 3
    # s2: 0.576, e/(2e+1) = 0.422, e^2/(e^2+e+1) = 0.665 -> forced 3
    # s3: 1/3 every step -> forced 3
    assert e ** 2 / (e ** 2 + 2) > 0.75 > e ** 2 / (e ** 2 + e + 1)
    np.testing.assert_allclose(co.softmax_confidence(o)[:, 1],
                               [e / (e + 2), e ** 2 / (e ** 2 + e + 1),
                                e ** 3 / (e ** 3 + e + 1)])
    steps, forced = co.apply_confidence(o, 0.25, return_forced=True)
    np.testing.assert_array_equal(steps, [1, 3, 3, 3])
    np.testing.assert_array_equal(forced, [False, False, True, True])
    # count-scale dependence (see the docstring): 10x the counts exits s1 at t = 1
    assert co.apply_confidence(o * 10, 0.25)[1] == 1


def test_apply_none():
    o, _ = _tiny()
    steps, forced = co.apply_none(o, return_forced=True)
    np.testing.assert_array_equal(steps, [3, 3, 3, 3])
    assert not forced.any()


def test_apply_topk_wrong_length():
    o, _ = _tiny()
    with pytest.raises(SpikeportError, match="thresholds for T = 3"):
        co.apply_topk(o, [0.0, 0.0])


def test_report_rejects_bad_steps():
    o, y = _tiny()
    with pytest.raises(SpikeportError, match="1-based"):
        co.cutoff_report(o, y, [0, 1, 1, 1])


def test_save_load_round_trip_and_T_mismatch(tmp_path):
    o, y = _tiny()
    d = co.calibrate_topk(o, y, epsilon=0.0, grid=4, calibration_set="tiny-train")
    path = co.save_thresholds(tmp_path / "cutoff.json", d)
    raw = json.loads(Path(path).read_text())
    assert raw["method"] == "topk" and raw["readout"] == "output spike counts"
    assert raw["calibration_set"] == "tiny-train" and raw["T"] == 3 and raw["epsilon"] == 0.0
    back = co.load_thresholds(path, T=3)
    assert back["thresholds"] == [1.5, 0.0, 1.5]
    np.testing.assert_array_equal(co.apply_topk(o, back), [1, 2, 3, 3])
    with pytest.raises(SpikeportError, match="T = 3.*T = 5") as e:
        co.load_thresholds(path, T=5)
    assert "recalibrate" in e.value.fix
    assert not list(tmp_path.glob(".*.tmp"))           # atomic write left no temp file


def test_save_requires_calibration_set(tmp_path):
    o, y = _tiny()
    d = co.calibrate_topk(o, y, grid=4)
    with pytest.raises(SpikeportError, match="calibration_set"):
        co.save_thresholds(tmp_path / "c.json", d)


def test_load_rejects_foreign_file(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"thresholds": [1]}')
    with pytest.raises(SpikeportError, match="not a spikeport cutoff file"):
        co.load_thresholds(p)
    with pytest.raises(SpikeportError, match="not found"):
        co.load_thresholds(tmp_path / "missing.json")


# ------------------------------------------------------------------------------ profiles

EXPECTED = {   # (profile, constant) -> (value, unit, marker, basis)
    ("loihi", "e_synop"): (23.6, "pJ", "secondary", "simulated"),
    ("loihi", "e_neuron_active"): (81, "pJ", "secondary", "simulated"),
    ("loihi", "e_neuron_idle"): (52, "pJ", "secondary", "simulated"),
    ("loihi", "e_spike"): (1.7, "pJ", "secondary", "simulated"),
    ("loihi", "p_static"): (104, "mW", "secondary", "derived"),
    ("loihi", "dt_step"): (1, "ms", "assumption", "preset"),
    ("loihi", "dt_step_unthrottled_min"): (5.8, "us", "secondary", "measured"),
    ("loihi", "dt_step_unthrottled_max"): (13, "us", "secondary", "measured"),
    ("loihi2", "e_synop"): (23.6, "pJ", "assumption", "simulated"),
    ("loihi2", "p_static"): (0.282, "W", "primary", "measured"),
    ("spinnaker2", "e_synop"): (450, "pJ", "primary", "preset"),
    ("spinnaker2", "e_neuron_update"): (2.19, "nJ", "primary", "preset"),
    ("truenorth", "e_synop"): (26, "pJ", "secondary", "measured"),
    ("cpu", "e_synop"): (8.6, "nJ", "primary", "preset"),
    ("gpu", "e_synop"): (0.3, "nJ", "primary", "preset"),
    ("ann-45nm", "e_add_int8"): (0.03, "pJ", "primary", "preset"),
    ("ann-45nm", "e_mult_int8"): (0.2, "pJ", "primary", "preset"),
    ("ann-45nm", "e_synop_mac"): (4.6, "pJ", "primary", "preset"),
    ("ann-45nm", "e_synop"): (0.9, "pJ", "primary", "preset"),
    ("ann-45nm", "e_mem_8kb"): (10, "pJ", "secondary", "derived"),
    ("ann-45nm", "e_mem_32kb"): (20, "pJ", "secondary", "derived"),
    ("ann-45nm", "e_mem_1mb"): (100, "pJ", "secondary", "derived"),
}


def test_every_profile_loads_with_sources():
    names = pr.list_profiles()
    assert set(names) == {"loihi", "loihi2", "spinnaker2", "truenorth", "cpu", "gpu",
                          "ann-45nm"}
    for n in names:
        p = pr.load_profile(n)
        assert p.name == n and p.constants
        for c in p.constants.values():
            assert c.source.strip() and c.marker in pr.MARKERS and c.basis in pr.BASES
            assert c.value >= 0
    for (n, k), (v, unit, marker, basis) in EXPECTED.items():
        c = pr.load_profile(n).constants[k]
        assert (c.value, c.unit, c.marker, c.basis) == (v, unit, marker, basis), (n, k)
    assert "Davies" in pr.load_profile("loihi").constants["e_synop"].source
    assert "Frady" in pr.load_profile("loihi").constants["p_static"].source
    assert "Loihi 1 proxy" in pr.load_profile("loihi2").constants["e_synop"].source
    assert "Höppner" in pr.load_profile("spinnaker2").constants["e_synop"].source
    assert "Degnan" in pr.load_profile("cpu").constants["e_synop"].source
    assert "Merolla" in pr.load_profile("truenorth").constants["e_synop"].source
    tn = pr.load_profile("truenorth")
    assert tn.static_power_included_in == "e_synop" and "p_static" not in tn.constants
    assert pr.load_profile("cpu").device == "dense" == pr.load_profile("gpu").device


def test_load_profile_by_path_and_unknown_name():
    p = pr.load_profile(pr.PROFILE_DIR / "loihi.yaml")
    assert p.name == "loihi"
    with pytest.raises(UnknownNameError, match="unknown energy profile 'loihi3'") as e:
        pr.load_profile("loihi3")
    assert "loihi2" in e.value.fix


def _bad(tmp_path, mutate) -> Path:
    raw = yaml.safe_load((pr.PROFILE_DIR / "loihi.yaml").read_text())
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


@pytest.mark.parametrize("mutate, key, fix_word", [
    (lambda r: r["constants"]["e_synop"].update(value=-1), "constants.e_synop.value", "sign"),
    (lambda r: r["constants"]["e_spike"].pop("source"), "constants.e_spike.source", "cite"),
    (lambda r: r["constants"]["e_spike"].update(source=" "), "constants.e_spike.source", "cite"),
    (lambda r: r["constants"].update(e_foo=r["constants"]["e_spike"]), "constants.e_foo",
     "e_synop"),
    (lambda r: r["constants"]["e_synop"].update(colour="red"), "constants.e_synop.colour",
     "allowed"),
    (lambda r: r.update(vendor="Intel"), "vendor", "allowed"),
    (lambda r: r["constants"]["e_synop"].update(marker="tertiary"), "constants.e_synop.marker",
     "primary"),
    (lambda r: r["constants"]["e_synop"].update(basis="guess"), "constants.e_synop.basis",
     "simulated"),
    (lambda r: r["constants"]["e_synop"].update(unit="mW"), "constants.e_synop.unit", "pJ"),
    (lambda r: r["constants"]["e_synop"].update(value="23.6"), "constants.e_synop.value",
     "plain number"),
    (lambda r: r["constants"]["e_synop"].update(value=float("nan")), "constants.e_synop.value",
     "plain number"),
    (lambda r: r["constants"]["e_spike"].update(value=float("inf")), "constants.e_spike.value",
     "plain number"),
    (lambda r: r["constants"]["e_spike"].update(value=None), "constants.e_spike.value", "add value"),
    (lambda r: r["constants"].update(e_synop=23.6), "constants.e_synop", "value: 23.6"),
    (lambda r: r.update(notes="one caveat"), "notes", "YAML list"),
    (lambda r: r.update(name=""), "name", "add name"),
    (lambda r: r.update(static_power_included_in="e_zzz") or r["constants"].pop("p_static"),
     "static_power_included_in", "null"),
    (lambda r: r.update(static_power_included_in="e_synop"), "constants.p_static", "remove"),
    (lambda r: r.update(device="quantum"), "device", "event-driven"),
    (lambda r: r["constants"]["e_synop"].update(unit="J"), "constants.e_synop.value", "unit"),
    (lambda r: r["constants"]["p_static"].update(value=5e4, unit="W"), "constants.p_static.value",
     "unit"),
    (lambda r: r["constants"]["dt_step"].update(value=1e3, unit="s"), "constants.dt_step.value",
     "unit"),
])
def test_bad_profile_errors_name_file_key_and_fix(tmp_path, mutate, key, fix_word):
    path = _bad(tmp_path, mutate)
    with pytest.raises(pr.ProfileError) as e:
        pr.load_profile(path)
    assert str(path) in e.value.problem and key in e.value.problem
    assert e.value.fix and fix_word in e.value.fix
    assert isinstance(e.value, SpikeportError)


def test_nan_and_inf_constants_are_refused_as_not_finite(tmp_path):
    for value in (".nan", ".inf", "-.inf"):
        path = tmp_path / "x.yaml"
        path.write_text((pr.PROFILE_DIR / "loihi.yaml").read_text().replace(
            "value: 23.6", f"value: {value}", 1))
        with pytest.raises(pr.ProfileError, match="constants.e_synop.value: not a finite number"):
            pr.load_profile(path)


def test_a_profile_that_is_not_a_mapping(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("- just\n- a list\n")
    with pytest.raises(pr.ProfileError, match="is not a mapping") as e:
        pr.load_profile(p)
    assert "shipped profile" in e.value.fix


def test_a_value_beyond_any_device_is_refused_as_a_wrong_unit(tmp_path):
    # 23.6 J per synaptic op instead of 23.6 pJ: finite, non-negative, and 1e12 times too big
    path = _bad(tmp_path, lambda r: r["constants"]["e_synop"].update(unit="J"))
    with pytest.raises(pr.ProfileError, match=r"e_synop.value: 23.6 J is more than 1 J") as e:
        pr.load_profile(path)
    assert "check the unit" in e.value.fix


def test_a_profile_that_is_not_text_or_not_a_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_bytes(b"\xff\xfe\x00name: x\n")
    with pytest.raises(pr.ProfileError, match="is not UTF-8 text"):
        pr.load_profile(p)
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(pr.ProfileError, match="is a directory"):
        pr.load_profile(tmp_path / "d.yaml")


def test_bad_yaml(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(pr.ProfileError, match="not valid YAML"):
        pr.load_profile(p)


# -------------------------------------------------------------------------------- energy

COUNTS = dict(synops_ac=1000, synops_mac=0, neuron_updates_active=200,
              neuron_updates_idle=300, spikes=50, steps=4)


def test_energy_loihi_by_hand():
    r = en.energy(COUNTS, "loihi")
    t = r["terms_J"]
    assert t["synops"] == pytest.approx(1000 * 23.6e-12)            # 23.6 nJ
    assert t["neuron_updates_active"] == pytest.approx(200 * 81e-12)  # 16.2 nJ
    assert t["neuron_updates_idle"] == pytest.approx(300 * 52e-12)    # 15.6 nJ
    assert t["spikes"] == pytest.approx(50 * 1.7e-12)                 # 0.085 nJ
    assert t["static"] == pytest.approx(0.104 * 4 * 1e-3)             # 416 uJ
    assert t["memory"] is None
    assert r["total_J"] == pytest.approx(55.485e-9 + 416e-6)
    assert r["static_power"]["status"] == "added"
    assert r["wall_time_s"] == pytest.approx(4e-3)
    assert r["counts"]["synops_ac"] == 1000
    assert "assumption" in r["markers_used"] and "secondary" in r["markers_used"]
    assert r["constants_used"]["e_synop"]["source"].startswith("Davies")
    # naive comparison, labelled: 1000 ACs x 0.9 pJ
    assert r["naive"]["J"] == pytest.approx(0.9e-9) and "naive" in r["naive"]["label"]
    # unthrottled step time passed explicitly: static = 0.104 W x 4 x 5.8 us
    r2 = en.energy(COUNTS, "loihi", dt_step=5.8e-6)
    assert r2["terms_J"]["static"] == pytest.approx(0.104 * 4 * 5.8e-6)
    assert r2["static_power"]["dt_step_source"] == "argument"


def test_static_power_is_charged_for_the_mapped_cores_with_the_whole_chip_alongside():
    whole = 0.104 * 4 * 1e-3                                          # 416 uJ: one chip
    r = en.energy(COUNTS, "loihi", placement={"cores": 2, "cores_per_chip": 128})
    assert r["terms_J"]["static"] == pytest.approx(whole * 2 / 128)    # 6.5 uJ
    assert r["static_J"] == r["terms_J"]["static"]
    assert r["dynamic_J"] == pytest.approx(55.485e-9)
    assert r["total_J"] == pytest.approx(r["dynamic_J"] + r["static_J"])
    s = r["static_power"]
    assert (s["cores"], s["chips"], s["whole_chips_J"]) == (2, 1, pytest.approx(whole))
    assert "2 of 128 cores" in s["charged_for"]
    # 300 cores take three chips: charged 300 / 128 of a chip, three whole chips alongside
    s3 = en.energy(COUNTS, "loihi", placement={"cores": 300, "cores_per_chip": 128})
    assert s3["static_J"] == pytest.approx(whole * 300 / 128)
    assert s3["static_power"]["whole_chips_J"] == pytest.approx(3 * whole)
    # without a placement a whole chip is charged, and said so
    r0 = en.energy(COUNTS, "loihi")
    assert r0["static_J"] == pytest.approx(whole) and "whole chip" in r0["static_power"]["charged_for"]


def test_dynamic_energy_follows_the_activity_and_static_does_not():
    """Halving every activity count halves the dynamic energy exactly; the static term stays."""
    half = {k: v / 2 if k != "steps" else v for k, v in COUNTS.items()}
    place = {"cores": 2, "cores_per_chip": 128}
    a, b = en.energy(COUNTS, "loihi", placement=place), en.energy(half, "loihi", placement=place)
    assert b["dynamic_J"] == pytest.approx(a["dynamic_J"] / 2)
    assert b["static_J"] == pytest.approx(a["static_J"])


@pytest.mark.parametrize("placement", [{"cores": 0, "cores_per_chip": 128}, {"cores": 2},
                                       {"cores": 2.5, "cores_per_chip": 128}, "two"])
def test_a_bad_placement_is_refused(placement):
    with pytest.raises(en.ProfileError, match="placement"):
        en.energy(COUNTS, "loihi", placement=placement)


def test_energy_truenorth_no_double_counted_static():
    r = en.energy(COUNTS, "truenorth")
    assert r["total_J"] == pytest.approx(1000 * 26e-12)               # 26 nJ, nothing else
    assert r["terms_J"]["static"] is None
    assert r["static_power"]["status"].startswith("included in e_synop")
    assert not any(s.startswith("static") for s in r["not_modelled"])
    assert any(s.startswith("neuron_updates_active") for s in r["not_modelled"])
    # even with a step time supplied, no static term appears
    assert en.energy(COUNTS, "truenorth", dt_step=1e-3)["total_J"] == pytest.approx(26e-9)


def test_energy_macs_and_naive_ann():
    c = dict(COUNTS, synops_mac=100, dense_ann_macs=5000)
    r = en.energy(c, "ann-45nm")
    # 1000 x 0.9 pJ + 100 x 4.6 pJ = 1.36 nJ; no other terms in this profile
    assert r["total_J"] == pytest.approx(1.36e-9)
    assert r["naive"]["J"] == pytest.approx(1.36e-9)
    assert r["naive"]["ann_dense_J"] == pytest.approx(5000 * 4.6e-12)
    # Loihi charges MACs at e_synop (no separate MAC figure): 1100 x 23.6 pJ
    assert en.energy(c, "loihi")["terms_J"]["synops"] == pytest.approx(1100 * 23.6e-12)


def test_energy_dense_device_and_memory():
    c = dict(COUNTS, synops_dense=5000)
    r = en.energy(c, "cpu")
    # every connection every step: 5000 x 8.6 nJ; every neuron every step: 500 x 8.6 nJ
    assert r["terms_J"]["synops"] == pytest.approx(5000 * 8.6e-9)
    assert r["total_J"] == pytest.approx(5500 * 8.6e-9)
    assert r["terms_J"]["spikes"] == 0.0
    with pytest.raises(en.ProfileError, match="synops_dense"):
        en.energy(COUNTS, "gpu")
    m = dict(COUNTS, memory_accesses_64bit={"8kb": 10, "1mb": 2})
    r = en.energy(m, "ann-45nm")
    assert r["terms_J"]["memory"] == pytest.approx(10 * 10e-12 + 2 * 100e-12)
    with pytest.raises(en.ProfileError, match="no e_mem_8kb"):
        en.energy(m, "loihi")


def test_profile_pricing_only_some_memory_levels_is_refused_on_loading(tmp_path):
    """Memory traffic is interpolated between the three levels: all of e_mem_* or none."""
    src = yaml.safe_load((pr.PROFILE_DIR / "ann-45nm.yaml").read_text())
    assert pr.load_profile("ann-45nm").prices_memory
    assert not pr.load_profile("loihi").prices_memory
    del src["constants"]["e_mem_32kb"]
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(src))
    with pytest.raises(pr.ProfileError, match="e_mem_32kb"):
        pr.load_profile(path)


def test_energy_spinnaker2_single_neuron_figure():
    r = en.energy(COUNTS, "spinnaker2")
    assert r["total_J"] == pytest.approx(1000 * 450e-12 + 500 * 2.19e-9)


@pytest.mark.parametrize("counts, match", [
    ({k: v for k, v in COUNTS.items() if k != "spikes"}, "lack spikes"),
    (dict(COUNTS, spikes=-1), "spikes"),
    (dict(COUNTS, spkes=3), "unknown count 'spkes'"),
    (dict(COUNTS, memory_accesses_64bit={"4kb": 1}), "unknown memory level"),
    (dict(COUNTS, steps=float("nan")), "count steps = nan is not a finite number"),
    (dict(COUNTS, memory_accesses_64bit={"8kb": float("nan")}), "8kb = nan is not a finite"),
    (dict(COUNTS, memory_accesses_64bit={"8kb": "3"}), "8kb = '3' is not a finite"),
])
def test_energy_bad_counts(counts, match):
    profile = "ann-45nm" if "memory_accesses_64bit" in counts else "loihi"
    with pytest.raises(en.ProfileError, match=match):
        en.energy(counts, profile)


@pytest.mark.parametrize("dt_step", [float("nan"), float("inf"), 0.0, -1e-3, "1e-3", True])
def test_energy_refuses_a_step_time_that_is_not_seconds(dt_step):
    with pytest.raises(en.ProfileError, match="is not a step time in seconds"):
        en.energy(COUNTS, "loihi", dt_step=dt_step)


def test_energy_that_overflows_is_refused_not_reported_as_inf(tmp_path):
    # two terms of 1.5e308 J each: finite, their sum is not; refused, never "inf J"
    path = _bad(tmp_path, lambda r: [r["constants"][k].update(value=1, unit="J")
                                     for k in ("e_synop", "e_spike")])
    with pytest.raises(en.ProfileError, match="total_J is inf .*overflow"):
        en.energy(dict(COUNTS, synops_ac=1.5e308, spikes=1.5e308), path)
