"""The saccade event simulator, binning, the event cache and the event datasets
(spikeport.data.events, docs/data.md). Nothing here downloads anything or needs tonic."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from spikeport.core.errors import ConfigError, DataError
from spikeport.data import events as ev
from spikeport.data.datasets import EventDataset, load_dataset
from spikeport.data.encoders import make_encoder

FAST = dict(saccade_us=10_000, dt_us=1000)  # 30 steps of 1 ms: quick to simulate


def params(**kw) -> ev.SaccadeParams:
    return ev.SaccadeParams(**{**FAST, **kw})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private event cache: no test reads or writes the user's."""
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "events"


def square(size=12, lo=3, hi=9, value=0.8) -> np.ndarray:
    img = np.zeros((1, size, size), np.float32)
    img[0, lo:hi, lo:hi] = value
    return img


# ---------------------------------------------------------------- the events


def test_events_have_tonics_structured_layout():
    (e,) = ev.simulate(square(), params())
    assert e.dtype == np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    assert e.dtype.names == ("x", "y", "t", "p") and len(e) > 0
    assert set(np.unique(e["p"])) == {ev.OFF, ev.ON}
    assert (np.diff(e["t"]) >= 0).all()  # sorted by time
    assert e["t"].min() >= 0 and e["t"].max() < 3 * 10_000
    assert (e["t"] % 1000 == 0).all()  # stamped on the dt_us grid


def test_the_simulator_is_deterministic_under_its_seed():
    imgs = np.random.default_rng(0).random((3, 10, 10)).astype(np.float32)
    a = ev.simulate(imgs, params(noise_hz=200.0, noise_seed=4))
    b = ev.simulate(imgs, params(noise_hz=200.0, noise_seed=4))
    c = ev.simulate(imgs, params(noise_hz=200.0, noise_seed=5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    # an image's recording does not depend on the batch it is simulated in
    (alone,) = ev.simulate(imgs[2:], params(noise_hz=200.0, noise_seed=4), first_index=2)
    assert np.array_equal(alone, a[2])


def test_a_constant_image_gives_no_events_and_noise_is_all_that_appears():
    flat = np.full((2, 10, 10), 0.5, np.float32)
    # a static sensor: no saccade at all (the smallest amplitude moves nothing measurable)
    still = params(saccade_px=1e-9)
    assert all(len(e) == 0 for e in ev.simulate(flat, still))
    # moving over a uniform scene changes nothing inside it: events only at the dark border
    (moving,) = ev.simulate(flat[:1], params())
    inner = (moving["x"] > 1) & (moving["x"] < 8) & (moving["y"] > 1) & (moving["y"] < 8)
    assert not inner.any()
    # with noise: events at about the rate asked for (Poisson, mean 100 Hz x 0.03 s x 100
    # pixels = 300; a few land on the same pixel and step and count once)
    noisy = ev.simulate(flat, params(saccade_px=1e-9, noise_hz=100.0))
    counts = [len(e) for e in noisy]
    assert all(220 < n <= 360 for n in counts)
    assert {0, 1} <= set(np.unique(noisy[0]["p"]))


def test_an_edge_moving_right_gives_on_ahead_of_it_and_off_behind_it():
    # a bright bar moving right (first saccade of the triangle is +x): pixels it enters
    # brighten (ON, right edge), pixels it leaves darken (OFF, left edge)
    img = np.zeros((1, 9, 20), np.float32)
    img[0, :, 8:12] = 1.0
    p = params(saccade_px=4.0)
    (e,) = ev.simulate(img, p)
    first = e[e["t"] < p.saccade_us]  # the first saccade moves along +x only
    on, off = first[first["p"] == ev.ON], first[first["p"] == ev.OFF]
    assert len(on) and len(off)
    # the bar spans x = 6..9 at the start of the saccade and x = 10..13 at its end
    assert set(on["x"]) == {10, 11, 12, 13} and set(off["x"]) == {6, 7, 8, 9}
    # a dark bar on a bright ground swaps them (the frame's own borders aside)
    (neg,) = ev.simulate(1.0 - img, p)
    first = neg[(neg["t"] < p.saccade_us) & (neg["x"] >= 4) & (neg["x"] <= 15)]
    assert set(first[first["p"] == ev.ON]["x"]) == {6, 7, 8, 9}
    assert set(first[first["p"] == ev.OFF]["x"]) == {10, 11, 12, 13}


def test_no_pixel_fires_twice_within_the_refractory_period():
    imgs = np.random.default_rng(1).random((4, 12, 12)).astype(np.float32)
    for refractory in (0, 3000, 7000):
        for e in ev.simulate(imgs, params(refractory_us=refractory, noise_hz=500.0)):
            order = np.lexsort((e["t"], e["x"], e["y"]))
            s = e[order]
            same = (s["x"][1:] == s["x"][:-1]) & (s["y"][1:] == s["y"][:-1])
            gaps = np.diff(s["t"])[same]
            assert gaps.size and gaps.min() >= max(refractory, 1000)
    # a longer refractory period can only remove events
    few = sum(map(len, ev.simulate(imgs, params(refractory_us=7000))))
    many = sum(map(len, ev.simulate(imgs, params(refractory_us=0))))
    assert few < many


def test_a_finer_threshold_gives_more_events():
    img = square()
    n = [len(ev.simulate(img, params(threshold=c))[0]) for c in (0.1, 0.3, 1.0)]
    assert n[0] > n[1] > n[2]


def test_shift_is_bilinear_and_dark_outside():
    img = np.zeros((1, 1, 5), np.float32)
    img[0, 0, 2] = 1.0
    out = ev.shift_images(img, 0.25, 0.0)[0, 0]
    np.testing.assert_allclose(out, [0, 0, 0.75, 0.25, 0])
    np.testing.assert_allclose(ev.shift_images(img, -3.0, 0.0)[0, 0], 0)


def test_the_saccades_form_a_closed_triangle_one_side_per_saccade():
    p = params(saccade_px=3.0)
    off = ev.saccade_offsets(p)
    assert off.shape == (p.steps + 1, 2)
    np.testing.assert_allclose(off[0], off[-1])  # back where it started
    np.testing.assert_allclose(off.mean(0), 0, atol=0.1)  # centred
    v = ev.saccade_vertices(3.0)
    np.testing.assert_allclose(off[[0, 10, 20, 30]], v)  # a vertex every saccade_us


# ---------------------------------------------------------------- binning


def test_binning_counts_events_per_window_pixel_and_polarity():
    e = np.zeros(6, ev.EVENT_DTYPE)
    e["x"], e["y"] = [1, 1, 1, 0, 2, 2], [0, 0, 0, 1, 1, 1]
    e["t"] = [0, 500, 999, 1000, 2500, 9000]  # the last one is past 3 windows
    e["p"] = [1, 1, 1, 0, 1, 1]
    counts = ev.to_frames(e, (2, 3), 1000, 3, "count")
    assert counts.shape == (3, 2, 2, 3) and counts.dtype == np.uint8
    assert counts[0, 1, 0, 1] == 3 and counts[1, 0, 1, 0] == 1 and counts[2, 1, 1, 2] == 1
    assert counts.sum() == 5
    clipped = ev.to_frames(e, (2, 3), 1000, 3, "clip")
    np.testing.assert_array_equal(clipped, np.minimum(counts, 1))  # at most one spike per bin
    assert clipped.max() == 1


def test_binning_refuses_events_outside_the_sensor():
    e = np.zeros(1, ev.EVENT_DTYPE)
    e["x"] = 5
    with pytest.raises(DataError, match="outside a 3x2 sensor"):
        ev.to_frames(e, (2, 3), 1000, 3)


def test_n_bins_covers_the_recording():
    assert ev.n_bins(300_000, 10_000) == 30 and ev.n_bins(300_000, 7_000) == 43


# ---------------------------------------------------------------- the cache


def test_a_second_load_reads_the_cache_file(cache, monkeypatch):
    opts = dict(saccade_us=20_000, time_window_us=4000)
    first = load_dataset("digits-events", **opts)
    assert isinstance(first, EventDataset)
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 2  # train and test
    assert not list(cache.glob(".*"))  # no temporary file left behind

    def no_simulation(*a, **k):
        raise AssertionError("the second load simulated instead of reading the cache")

    monkeypatch.setattr(ev, "simulate", no_simulation)
    second = load_dataset("digits-events", **opts)
    assert isinstance(second.x_train, np.memmap)
    assert {str(second.x_train.filename), str(second.x_test.filename)} == {str(f) for f in files}
    np.testing.assert_array_equal(first.x_test, second.x_test)
    # another binning is another key: it is simulated, not read from the first files
    with pytest.raises(AssertionError, match="simulated instead"):
        load_dataset("digits-events", **{**opts, "binarize": "count"})


def test_a_corrupt_cache_file_is_rebuilt(cache):
    opts = dict(saccade_us=20_000, time_window_us=4000)
    good = np.array(load_dataset("digits-events", **opts).x_test)
    for f in cache.glob("*.npy"):
        f.unlink()  # a new file, not this one truncated: the old one may still be mapped
        f.write_bytes(b"not an array")
    again = load_dataset("digits-events", **opts)
    np.testing.assert_array_equal(good, again.x_test)


# ---------------------------------------------------------------- the datasets


def test_digits_events_frames_feed_the_events_encoder(cache):
    ds = load_dataset("digits-events", saccade_us=20_000, time_window_us=4000)
    T = ds.time_steps
    assert T == 15 and ds.input_shape == (2, 20, 20)
    assert ds.x_train.shape == (len(ds.y_train), T, 2, 20, 20) and ds.x_train.dtype == np.uint8
    assert set(np.unique(ds.x_test[:20])) == {0, 1}  # binarize: clip (the default)
    assert len(ds.y_train) + len(ds.y_test) == 1797
    x = make_encoder("events")(torch.from_numpy(ds.x_test[:4]), T)
    assert x.shape == (T, 4, 2, 20, 20) and x.dtype == torch.float32
    assert torch.equal(x[:, 1], torch.from_numpy(ds.x_test[1]).float())
    # what run / validate / estimate get: the same frames, time-first, still uint8
    frames = make_encoder("events").time_first(ds.x_test[:4], T)
    assert frames.dtype == np.uint8 and np.array_equal(frames, x.numpy())
    with pytest.raises(ConfigError, match="time_steps is 10, but the dataset's recordings are "
                                          "binned into 15 frames -- fix: set time_steps: 15"):
        make_encoder("events")(torch.from_numpy(ds.x_test[:4]), 10)
    with pytest.raises(ConfigError, match="the rate encoder takes images, but the dataset "
                                          "holds binned events"):
        make_encoder("rate")(torch.from_numpy(ds.x_test[:4]), T)


def test_train_copies_add_jittered_recordings_to_the_training_split_only(cache):
    opts = dict(saccade_us=20_000, time_window_us=4000)
    one = load_dataset("digits-events", **opts)
    two = load_dataset("digits-events", train_copies=2, jitter_px=1, **opts)
    n = len(one.y_train)
    assert two.x_train.shape == (2 * n, *one.x_train.shape[1:])
    np.testing.assert_array_equal(two.y_train, np.tile(one.y_train, 2))
    np.testing.assert_array_equal(two.x_train[:n], one.x_train)  # the originals first
    assert not np.array_equal(two.x_train[n:], one.x_train)  # then displaced copies
    np.testing.assert_array_equal(two.x_test, one.x_test)  # the test split as it was
    # whole-pixel displacements move pixels without interpolating them
    moved = ev.jitter_copies(np.eye(5, dtype=np.float32)[None], 4, 2, seed=0)
    assert moved.shape == (4, 5, 5) and set(np.unique(moved)) <= {0.0, 1.0}


@pytest.mark.parametrize("options, message", [
    ({"threshold": 0}, "dataset 'digits-events': dataset.threshold must be"),
    ({"refractory_us": -1}, "dataset.refractory_us must be"),
    ({"dt_us": 3000}, "dataset.dt_us: 3000 does not divide saccade_us 100000"),
    ({"time_window_us": 500}, "dataset.time_window_us: 500 is shorter than the simulator's step"),
    ({"binarize": "max"}, "dataset.binarize must be clip or count"),
    ({"noise_hz": "lots"}, "dataset.noise_hz must be"),
    ({"frames": 3}, "unknown key dataset.frames"),
    ({"train_copies": 0}, "dataset.train_copies must be"),
])
def test_bad_simulator_parameters_are_one_line_config_errors(options, message, cache):
    with pytest.raises(ConfigError) as e:
        load_dataset("digits-events", **options)
    text = str(e.value)
    assert message in text and "\n" not in text and " -- fix: " in text
    assert not cache.exists()  # refused before anything was simulated


def test_event_datasets_work_where_tonic_cannot_be_imported(tmp_path):
    """tonic is GPL-3.0-only: the simulator, the binning and the event datasets must not
    need it (docs/data.md, the licence boundary)."""
    code = (
        "import sys; sys.modules['tonic'] = None\n"  # any `import tonic` now fails
        "from spikeport.data.datasets import load_dataset\n"
        "ds = load_dataset('digits-events', saccade_us=20000, time_window_us=4000)\n"
        "assert ds.x_test.shape[1:] == (15, 2, 20, 20)\n"
        "import spikeport.cli, spikeport.training.loop, spikeport.runs\n"
        # the CLI: listing (the tonic datasets are registered, not imported) and a
        # non-event command
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(spikeport.cli.app, ['list', 'datasets'])\n"
        "assert r.exit_code == 0 and 'nmnist ' in r.output and 'shd ' in r.output, r.output\n"
        f"r = CliRunner().invoke(spikeport.cli.app, ['train', '--recipe', 'digits', '--out', "
        f"{str(tmp_path / 'run')!r}, '--set', 'train.epochs=1', '--set', 'model.hidden=[8]', "
        "'--no-progress', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('ok')\n")
    env = {**os.environ, "SPIKEPORT_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.slow
def test_digits_events_trains_and_runs_on_loihi_in_a_tiny_run(tmp_path, cache):
    from typer.testing import CliRunner

    from spikeport.cli import app

    run = tmp_path / "run"
    args = ["train", "--recipe", "digits-events", "--out", str(run), "--json", "--no-progress",
            "--set", "train.epochs=1", "--set", "model.hidden=[32]",
            "--set", "dataset.saccade_us=20000", "--set", "dataset.time_window_us=8000",
            "--set", "time_steps=8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    # the inputs of run / validate / estimate: the test frames time-first, still uint8
    from spikeport.runs import run_inputs

    inputs = run_inputs(run, samples=16)
    ds = load_dataset("digits-events", saccade_us=20000, time_window_us=8000)
    assert inputs.x.dtype == np.uint8 and inputs.x.shape == (8, 16, 2, 20, 20)
    np.testing.assert_array_equal(inputs.x, np.moveaxis(ds.x_test[:16], 1, 0))
    np.testing.assert_array_equal(inputs.y, ds.y_test[:16])
    result = CliRunner().invoke(app, ["validate", str(run), "--targets",
                                      "reference,loihi-emu", "--samples", "16", "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["targets"]) == {"reference", "loihi-emu"}
    # counts are graded input: the float targets take them, Loihi refuses them with the fix
    counted = tmp_path / "counted"
    result = CliRunner().invoke(app, [*args[:4], str(counted), *args[5:],
                                      "--set", "dataset.binarize=count"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["validate", str(counted), "--targets",
                                      "reference,loihi-emu", "--samples", "16"])
    assert result.exit_code == 2
    assert "takes only 0/1 input spikes" in result.output
    assert "bin events with dataset.binarize: clip" in result.output
