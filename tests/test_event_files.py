"""Event recordings from files (spikeport.data.event_files) and `--events FILE` on run,
validate and estimate, on the vendored crop of a real DAVIS346 recording
(tests/fixtures/davis346, MIT, from the aedat 2.3.0 sdist) and on synthetic files."""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from typer.testing import CliRunner

from spikeport.cli import app
from spikeport.core.errors import DataError
from spikeport.data import event_files as ef
from spikeport.data.events import EVENT_DTYPE
from tests.cli_checks import assert_user_error

DAVIS = Path(__file__).resolve().parent / "fixtures" / "davis346"
CROP = (70, 218)  # the 20x20 window of the crop with the most events (2,791 of 7,861)
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def cli_json(*args) -> dict:
    r = invoke(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def by_hand(ev: np.ndarray, corner, size, window_us, steps) -> np.ndarray:
    """Frames (steps, 2, size, size) clipped to 0/1, binned here without spikeport's code:
    the events of the size x size window at ``corner``, ON in channel 1."""
    x0, y0 = corner
    keep = ((ev["x"] >= x0) & (ev["x"] < x0 + size) & (ev["y"] >= y0) & (ev["y"] < y0 + size)
            & (ev["t"] < steps * window_us))
    e = ev[keep]
    out = np.zeros((steps, 2, size, size), np.uint8)
    out[e["t"] // window_us, (e["p"] > 0).astype(int), e["y"] - y0, e["x"] - x0] = 1
    return out


# ---------------------------------------------------------------- reading


def test_the_aedat4_crop_reads_as_the_vendored_npy_and_declares_its_sensor():
    a, n = ef.read_events(DAVIS / "crop.aedat4"), ef.read_events(DAVIS / "crop.npy")
    assert a.sensor == (260, 346) and n.sensor is None and a.labels is None
    (ea,), (en,) = a.events, n.events
    assert ea.dtype == EVENT_DTYPE and len(ea) > 1000
    np.testing.assert_array_equal(ea, en)
    assert ea["t"][0] == 0 and 190_000 < ea["t"][-1] < 200_000  # about 200 ms, from 0
    assert 0 < ea["p"].sum() < len(ea)  # both polarities


def test_tonic_like_field_sets_are_read(tmp_path):
    t = np.array([0, 5, 5, 900], np.uint64)
    narrow = np.zeros(4, [("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
    narrow["t"], narrow["x"], narrow["y"], narrow["on"] = t, [1, 2, 3, 4], [4, 3, 2, 1], [1, 0, 1, 0]
    np.save(tmp_path / "narrow.npy", narrow)
    (e,) = ef.read_events(tmp_path / "narrow.npy").events
    assert e.dtype == EVENT_DTYPE and list(e["p"]) == [1, 0, 1, 0] and list(e["y"]) == [4, 3, 2, 1]
    audio = np.zeros(3, [("t", int), ("x", int), ("p", int)])  # tonic's audio layout (SHD)
    audio["t"], audio["x"], audio["p"] = [1, 2, 3], [699, 0, 5], 1
    np.save(tmp_path / "audio.npy", audio)
    (e,) = ef.read_events(tmp_path / "audio.npy").events
    assert list(e["y"]) == [0, 0, 0] and list(e["x"]) == [699, 0, 5]


def shd_file(path, recordings, labels=None, vlen=True):
    """An SHD-style file: spikes/times (s) and spikes/units, one entry per recording."""
    with h5py.File(path, "w") as f:
        if vlen:
            for key, dt, i in (("times", np.float32, 0), ("units", np.uint16, 1)):
                d = f.create_dataset(f"spikes/{key}", (len(recordings),),
                                     dtype=h5py.vlen_dtype(np.dtype(dt)))
                for j, r in enumerate(recordings):
                    d[j] = np.asarray(r[i], dt)
        else:
            f["spikes/times"], f["spikes/units"] = recordings[0]
        if labels is not None:
            f["labels"] = np.asarray(labels, np.uint8)
    return path


def test_an_shd_file_gives_one_recording_per_entry_with_its_label(tmp_path):
    recs = [([0.0, 0.0105, 0.25], [3, 3, 699]), ([0.002], [0])]
    r = ef.read_events(shd_file(tmp_path / "s.h5", recs, labels=[7, 2]))
    assert len(r.events) == 2 and list(r.labels) == [7, 2]
    e = r.events[0]
    assert list(e["x"]) == [3, 3, 699] and set(e["p"]) == {1} and set(e["y"]) == {0}
    assert list(e["t"]) == [int(np.float32(s) * 1e6) for s in (0.0, 0.0105, 0.25)]
    one = ef.read_events(shd_file(tmp_path / "one.h5", [(np.array([0.1, 0.2]), np.array([1, 2]))],
                                  vlen=False))
    assert len(one.events) == 1 and one.labels is None and list(one.events[0]["t"]) == [100000, 200000]


def _bad_files(tmp_path):
    """(file, words of its error) for every kind of bad file."""
    ok = np.zeros(3, EVENT_DTYPE)
    ok["t"] = [1, 2, 3]
    cases = {}

    def npy(name, arr):
        np.save(tmp_path / name, arr)
        return tmp_path / name

    (tmp_path / "x.bin").write_bytes(b"\0" * 16)
    cases["ext"] = (tmp_path / "x.bin", "unknown event file type '.bin'")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    cases["corrupt npy"] = (tmp_path / "junk.npy", "not a readable .npy")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    cases["corrupt h5"] = (tmp_path / "junk.h5", "not a readable HDF5 file")
    (tmp_path / "cut.aedat4").write_bytes((DAVIS / "crop.aedat4").read_bytes()[:5000])
    cases["corrupt aedat4"] = (tmp_path / "cut.aedat4", "not a readable AEDAT 4 file")
    (tmp_path / "junk.aedat4").write_bytes(b"#!AER-DAT4.0\r\n\xff\xff")
    cases["garbage aedat4"] = (tmp_path / "junk.aedat4", "not a readable AEDAT 4 file")
    cases["missing"] = (tmp_path / "none.npy", "event file not found")
    cases["fields"] = (npy("f.npy", ok[["x", "y", "t"]]), "has no field p")
    cases["plain"] = (npy("plain.npy", np.zeros((3, 4))), "not one recording of structured events")
    cases["empty"] = (npy("empty.npy", ok[:0]), "holds no events")
    neg = ok.copy()
    neg["t"][1] = -4
    cases["negative t"] = (npy("neg.npy", neg), "event 1 has t = -4, below 0")
    unsorted = ok.copy()
    unsorted["t"] = [1, 9, 5]
    cases["unsorted"] = (npy("unsorted.npy", unsorted), "not in time order (event 2 at t = 5")
    floats = np.zeros(2, [("x", int), ("y", int), ("t", float), ("p", int)])
    cases["float t"] = (npy("float.npy", floats), "field t holds float64 values")
    with h5py.File(tmp_path / "nounits.h5", "w") as f:
        f["spikes/times"] = [0.1]
    cases["h5 fields"] = (tmp_path / "nounits.h5", "has no spikes/units")
    cases["h5 labels"] = (shd_file(tmp_path / "lab.h5", [([0.1], [1])], labels=[1, 2]),
                          "expected 1 class indices")
    return cases


def test_every_bad_file_is_one_data_error_naming_it_and_the_fix(tmp_path):
    for kind, (path, words) in _bad_files(tmp_path).items():
        with pytest.raises(DataError) as e:
            ef.read_events(path)
        line = e.value.one_line()
        assert words in line and " -- fix: " in line and "\n" not in line, (kind, line)


def test_without_the_aedat_package_an_aedat4_file_names_the_pip_command():
    code = ("import sys; sys.modules['aedat'] = None\n"
            "from spikeport.data import event_files as ef\n"
            "from spikeport.core.errors import DataError\n"
            "try:\n    ef.read_events(sys.argv[1])\nexcept DataError as e:\n    print(e.one_line())\n")
    r = subprocess.run([sys.executable, "-c", code, str(DAVIS / "crop.aedat4")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "needs the aedat package" in r.stdout and "pip install aedat==2.3.0" in r.stdout


# ---------------------------------------------------------------- binning


def test_binning_equals_a_histogram_made_by_hand_for_each_input_layout():
    recs = ef.read_events(DAVIS / "crop.npy")
    (e,) = recs.events
    steps, window = 12, 10_000
    ref = by_hand(e, CROP, 20, window, steps)
    two = ef.bin_recordings(recs, (2, 20, 20), window, steps, "clip", CROP)
    np.testing.assert_array_equal(two[:, 0], ref)
    assert two.dtype == np.uint8 and 100 < two.sum() < ref.size
    one = ef.bin_recordings(recs, (1, 20, 20), window, steps, "clip", CROP)
    np.testing.assert_array_equal(one[:, 0, 0], ref.max(axis=1))  # ON or OFF: a spike
    counts = ef.bin_recordings(recs, (2, 20, 20), window, steps, "count", CROP)
    assert counts.max() > 1 and np.array_equal(counts > 0, two > 0)
    # a one-dimensional sensor: input (N,), one channel per x
    flat = ef.bin_recordings(recs, (346,), window, steps, "clip", (0, 100))
    row = e[e["y"] == 100]
    expect = np.zeros((steps, 346), np.uint8)
    row = row[row["t"] < steps * window]
    expect[row["t"] // window, row["x"]] = 1
    np.testing.assert_array_equal(flat[:, 0], expect)


def test_recordings_too_large_for_the_graph_are_refused_with_the_sizes_and_the_crop_fix():
    with pytest.raises(DataError, match=r"events reach x = 334, y = 245, outside the graph's "
                       r"input of 20x20.*--crop X,Y"):
        ef.bin_recordings(ef.read_events(DAVIS / "crop.npy"), (2, 20, 20), 10_000, 5)
    with pytest.raises(DataError, match="recorded on a 346x260 sensor.*--crop"):
        ef.bin_recordings(ef.read_events(DAVIS / "crop.aedat4"), (2, 20, 20), 10_000, 5)
    with pytest.raises(DataError, match="outside the 346x260 sensor.*X <= 326"):
        ef.bin_recordings(ef.read_events(DAVIS / "crop.aedat4"), (2, 20, 20), 10_000, 5,
                          crop=(330, 0))
    with pytest.raises(DataError, match=r"input has shape \(3, 20, 20\)"):
        ef.bin_recordings(ef.read_events(DAVIS / "crop.npy"), (3, 20, 20), 10_000, 5, crop=CROP)


def test_a_tonic_run_bins_a_file_as_its_recipe_does_from_the_first_event_by_time_or_count():
    """A run trained on tonic's N-MNIST (2x34x34) fed a 34x34 window of the DAVIS346 crop:
    frames start at the window's first event (tonic's ToFrame), by time or by count."""
    recs = ef.read_events(DAVIS / "crop.npy")
    (e,) = recs.events
    corner = (60, 200)
    inside = e[(e["x"] >= 60) & (e["x"] < 94) & (e["y"] >= 200) & (e["y"] < 234)].copy()
    inside["t"] -= inside["t"][0]
    inside["x"] -= 60
    inside["y"] -= 200
    x, how = ef.bin_for_run(recs, {"name": "nmnist", "time_window_us": 20_000, "frames": 8},
                            "events", 8, (2, 34, 34), crop=corner)
    np.testing.assert_array_equal(x[:, 0], by_hand(inside, (0, 0), 34, 20_000, 8))
    assert "from the first event as nmnist's recipe" in how and x.sum() > 100
    x, how = ef.bin_for_run(recs, {"name": "nmnist", "event_count": 500, "frames": 3},
                            "events", 3, (2, 34, 34), crop=corner)
    expect = np.zeros((3, 2, 34, 34), np.uint8)
    for k in range(3):
        part = inside[500 * k:500 * (k + 1)]
        expect[k, (part["p"] > 0).astype(int), part["y"], part["x"]] = 1
    np.testing.assert_array_equal(x[:, 0], expect)
    with pytest.raises(DataError, match=r"bins nmnist into frames \(2, 34, 34\), its graph takes"):
        ef.bin_for_run(recs, {"name": "nmnist"}, "events", 30, (2, 20, 20), crop=corner)


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def event_run(tmp_path_factory):
    """A digits-events run (2x20x20 input, 15 steps of 20 ms, clip), small and quick,
    with its own event cache."""
    tmp = tmp_path_factory.mktemp("events")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPIKEPORT_CACHE", str(tmp / "cache"))
        cli_json("train", "--recipe", "digits-events", "--out", tmp / "run",
                 "--set", "model.hidden=[32]", "--set", "dataset.train_copies=1",
                 "--set", "train.epochs=2", "--set", "train.batch_size=128")
        yield tmp / "run"


def _numbers(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "inputs"}


def test_run_and_estimate_on_the_davis346_crop_equal_the_same_frames_given_as_input(
        event_run, tmp_path):
    """The real recording through the run's recipe (20 ms windows, clip, 15 steps) and a
    20x20 crop: what `--events` gives equals what the frames binned by hand give."""
    (e,) = ef.read_events(DAVIS / "crop.npy").events
    frames = by_hand(e, CROP, 20, 20_000, 15)
    np.savez(tmp_path / "frames.npz", x=frames[:, None])
    crop = ["--crop", f"{CROP[0]},{CROP[1]}"]
    via_events = cli_json("run", event_run, "--events", DAVIS / "crop.npy", *crop)
    via_input = cli_json("run", event_run, "--input", tmp_path / "frames.npz")
    assert via_events == via_input
    assert via_events["steps"] == 15 and via_events["samples"] == 1
    assert all(v > 0 for v in via_events["spikes_per_sample"].values()), via_events
    est = cli_json("estimate", event_run, "--target", "loihi-emu", "--profile", "loihi", "--cutoff", "none",
                   "--events", DAVIS / "crop.aedat4", *crop)
    est_input = cli_json("estimate", event_run, "--target", "loihi-emu", "--profile", "loihi", "--cutoff", "none",
                         "--input", tmp_path / "frames.npz")
    assert _numbers(est) == _numbers(est_input)
    assert est["spikes_per_sample"] > 0 and est["synops_per_sample"] > 0
    assert "crop.aedat4 (1 recordings, 15 windows of 20000 us from t = 0, clip" in est["inputs"]


def test_a_bare_graph_bins_by_bin_ms_over_the_whole_recording(event_run, tmp_path):
    assert invoke("export", event_run, "--to", "nir").exit_code == 0
    graph = event_run / "model.nir"
    (e,) = ef.read_events(DAVIS / "crop.npy").events
    steps = -(-(int(e["t"][-1]) + 1) // 5000)  # 5 ms windows up to the last event
    np.savez(tmp_path / "frames.npz", x=by_hand(e, CROP, 20, 5000, steps)[:, None])
    args = ["--events", DAVIS / "crop.aedat4", "--bin-ms", "5", "--crop", f"{CROP[0]},{CROP[1]}"]
    via_events = cli_json("run", graph, "--target", "loihi-emu", *args)
    assert via_events == cli_json("run", graph, "--target", "loihi-emu",
                                  "--input", tmp_path / "frames.npz")
    assert via_events["steps"] == steps == 40
    assert all(v > 0 for v in via_events["spikes_per_sample"].values()), via_events
    est = cli_json("estimate", graph, "--target", "reference", "--cutoff", "none", *args)
    assert est["T"] == 40 and est["spikes_per_sample"] > 0


def test_labels_of_an_shd_style_file_give_an_accuracy(tmp_path):
    """A dense (8,) -> 2 graph fed SHD-style recordings: class 0 fires from units 0-3,
    class 1 from units 4-7; --samples takes the first recordings."""
    w = np.zeros((2, 8), np.float32)
    w[0, :4] = w[1, 4:] = 5.0  # one input spike makes its class neuron fire
    nodes = {"input": nir.Input(np.array([8])), "fc": nir.Affine(w, np.zeros(2, np.float32)),
             "lif": nir.LIF(tau=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2),
                            v_threshold=np.ones(2)), "output": nir.Output(np.array([2]))}
    nir.write(str(tmp_path / "g.nir"), nir.NIRGraph(
        nodes=nodes, edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={"dt": 1e-3}, type_check=False))
    recs = [([0.001, 0.004, 0.009], [0, 1, 2]), ([0.002, 0.005], [5, 6]), ([0.001], [7])]
    shd_file(tmp_path / "s.h5", recs, labels=[0, 1, 0])
    r = cli_json("run", tmp_path / "g.nir", "--events", tmp_path / "s.h5", "--bin-ms", "1")
    assert r["samples"] == 3 and r["steps"] == 10 and r["accuracy"] == pytest.approx(2 / 3)
    first = cli_json("run", tmp_path / "g.nir", "--events", tmp_path / "s.h5", "--bin-ms", "1",
                     "--samples", "2")
    assert first["samples"] == 2 and first["accuracy"] == 1.0


def test_event_options_misused_on_the_command_line_are_one_line_errors(event_run, trained_run):
    npy = DAVIS / "crop.npy"
    assert_user_error(invoke("run", event_run, "--events", npy, "--input", npy, "--crop", "70,218"),
                      "--events and --input both give the inputs")
    assert_user_error(invoke("validate", event_run, "--crop", "1,2"), "no --events was given")
    assert_user_error(invoke("estimate", event_run, "--target", "reference", "--events", npy),
                      "outside the graph's input of 20x20", "--crop X,Y")
    assert_user_error(invoke("run", event_run, "--events", DAVIS / "crop.aedat4"),
                      "recorded on a 346x260 sensor")
    assert_user_error(invoke("run", event_run, "--events", npy, "--crop", "70,218",
                             "--bin-ms", "-1"), "--bin-ms -1 is not a positive")
    assert_user_error(invoke("run", event_run, "--events", DAVIS / "README.md"),
                      "unknown event file type '.md'")
    assert_user_error(invoke("run", trained_run.path, "--events", npy),
                      "trains on digits images", "--bin-ms")
    invoke("export", event_run, "--to", "nir")
    assert_user_error(invoke("run", event_run / "model.nir", "--events", npy, "--crop", "70,218"),
                      "no recipe that says how to bin events", "--bin-ms")


# ---------------------------------------------------------------- the binning benchmark


def test_the_binning_benchmark_reads_back_from_the_cache_the_frames_it_binned(tmp_path,
                                                                             monkeypatch):
    """spikeport.bench.binning_passes at a small size: the cache file holds what binning the
    synthetic recordings afresh gives, and the second pass builds nothing."""
    from spikeport import bench
    from spikeport.data.events import to_frames

    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path))
    r = bench.binning_passes(300, events_per_recording=400, duration_us=30_000, size=8,
                             time_window_us=5_000, seed=3)
    assert r["second_pass_built_nothing"] and r["second_pass_identical"]
    (cache_file,) = (tmp_path / "events").glob("*.npy")
    recs = bench.synthetic_events(0, 300, 400, 30_000, 8, seed=3)
    assert all(300 <= len(e) <= 500 and (np.diff(e["t"]) >= 0).all() for e in recs)
    fresh = np.stack([to_frames(e, (8, 8), 5_000, 6, "clip") for e in recs])
    np.testing.assert_array_equal(np.load(cache_file), fresh)
    assert r["spikes"] == int(np.count_nonzero(fresh)) > 0
    assert r["first_pass_seconds"] > 0 and r["second_pass_seconds"] > 0
    assert r["peak_anon_rss_bytes"] > 0 and r["cache_bytes"] == fresh.size
    # another seed is another set, in another cache file
    bench.binning_passes(300, events_per_recording=400, duration_us=30_000, size=8,
                         time_window_us=5_000, seed=4)
    assert len(list((tmp_path / "events").glob("*.npy"))) == 2


def test_bench_binning_runs_in_its_own_process_and_removes_its_cache():
    import glob
    import tempfile

    from spikeport import bench

    pattern = str(Path(tempfile.gettempdir()) / "spikeport-bench-binning-*")
    before = set(glob.glob(pattern))
    r = bench.bench_binning(40, events_per_recording=100, duration_us=20_000, size=8,
                            time_window_us=10_000)
    assert r["recordings"] == 40 and r["second_pass_identical"] and r["spikes"] > 0
    assert set(glob.glob(pattern)) == before
