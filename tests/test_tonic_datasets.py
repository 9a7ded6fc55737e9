"""Real event datasets through tonic 1.7.0 (spikeport.data.tonic_sets / tonic_frames).

Each test writes small synthetic files in the layout and file format tonic's own class reads
(N-MNIST / N-Caltech101 .bin, DVS Gesture .npy, SHD .h5, N-TIDIGITS18 .hdf5, POKER-DVS .npy,
CIFAR10-DVS .aedat4), reads them through tonic via spikeport's loader, and compares events
and frames with what was written. tonic's existence check wants many extracted files
(N-MNIST 10,000 per split, N-Caltech101 8,709, CIFAR10-DVS 1,000): the tests make that many
hard links to one tiny valid recording (milliseconds, a few KB of directory entries) rather
than weakening the check, so the layout tonic really accepts is the one tested; the
``max_per_class`` option keeps the binning to a few recordings. Nothing downloads: a layout
tonic rejected would make it try, and fail without network.
"""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikeport.core.errors import ConfigError, DataError
from spikeport.data import tonic_frames, tonic_sets
from spikeport.data.datasets import load_dataset
from tests.tonic_formats import write_aedat4, write_bin, write_shd

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A private event cache and no inherited SPIKEPORT_DATA."""
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPIKEPORT_DATA", raising=False)
    return tmp_path / "cache" / "events"


# ---------------------------------------------------------------- helpers

def camera_events(n: int, w: int, h: int, duration_us: int) -> dict[str, np.ndarray]:
    return {"x": RNG.integers(0, w, n), "y": RNG.integers(0, h, n),
            "t": np.sort(RNG.integers(0, duration_us, n)), "p": RNG.integers(0, 2, n)}


def fill(folder: Path, n: int, suffix: str, source: Path) -> None:
    """``n`` hard links to ``source`` in ``folder``, named after the real ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        os.link(source, folder / f"zz{i:05d}{suffix}")


def touch(path: Path) -> None:
    """An archive tonic only checks for (it does not hash it in 1.7.0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def frames_by_time(ev: dict, shape: tuple[int, int, int], window: int, frames: int,
                   clip: bool = True) -> np.ndarray:
    """What the frames must be: windows from the first event, counts per (p, y, x)."""
    w, h, pol = shape
    b = (ev["t"] - ev["t"].min()) // window
    keep = b < frames
    out = np.zeros((frames, pol, h, w), np.int64)
    y = ev["y"][keep] if "y" in ev else np.zeros(keep.sum(), np.int64)
    p = ev["p"][keep] if pol == 2 else np.zeros(keep.sum(), np.int64)
    np.add.at(out, (b[keep], p, y, ev["x"][keep]), 1)
    return np.minimum(out, 1 if clip else 255).astype(np.uint8)


def assert_events(got: np.ndarray, want: dict) -> None:
    for k, v in want.items():
        np.testing.assert_array_equal(np.asarray(got[k]).astype(np.int64), v, err_msg=k)


# ---------------------------------------------------------------- N-MNIST

def nmnist_tree(root: Path, classes=(0, 1, 2), per_class=2) -> dict:
    written = {}
    for split, folder, archive in (("train", "Train", "train.zip"), ("test", "Test", "test.zip")):
        touch(root / "NMNIST" / archive)
        for c in classes:
            for k in range(per_class):
                ev = camera_events(int(RNG.integers(50, 200)), 34, 34, 300_000)
                path = root / "NMNIST" / folder / str(c) / f"{k:05d}.bin"
                write_bin(path, ev)
                written[str(path)] = (split, c, ev)
        one = root / f"one-{split}.bin"
        write_bin(one, camera_events(1, 34, 34, 1000))
        fill(root / "NMNIST" / folder / "9", 10_000 - len(classes) * per_class, ".bin", one)
    return written


def test_nmnist_events_and_frames_through_tonic(tmp_path):
    written = nmnist_tree(tmp_path)
    ds = tonic_sets.open_split("nmnist", tmp_path, "train")
    assert len(ds) == 10_000
    for path, (split, c, ev) in written.items():
        if split == "train":
            got, label = ds[ds.data.index(path)]
            assert label == c
            assert_events(got, ev)
    data = load_dataset("nmnist", data_dir=str(tmp_path), max_per_class=2,
                        time_window_us=20_000, frames=15)
    assert data.x_train.shape == (8, 15, 2, 34, 34) and data.x_train.dtype == np.uint8
    assert data.input_shape == (2, 34, 34) and data.time_steps == 15 and data.n_classes == 10
    assert list(data.y_test) == [0, 0, 1, 1, 2, 2, 9, 9]
    tests = [(c, ev) for s, c, ev in written.values() if s == "test"]
    for j, (c, ev) in enumerate(tests):
        np.testing.assert_array_equal(data.x_test[j], frames_by_time(ev, (34, 34, 2), 20_000, 15))


def test_missing_dataset_is_one_line_naming_dataset_directory_layout_and_fix(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset("nmnist", data_dir=str(tmp_path))
    text = str(e.value)
    assert "\n" not in text
    assert "dataset 'nmnist' (train) not found in " + str(tmp_path / "NMNIST") in text
    assert "train.zip and Train/**/*.bin (at least 10,000 files)" in text
    assert "fix: run `spikeport data fetch nmnist`" in text
    # found files are counted; tonic would have downloaded here
    touch(tmp_path / "NMNIST" / "train.zip")
    write_bin(tmp_path / "NMNIST" / "Train" / "0" / "a.bin", camera_events(3, 34, 34, 100))
    with pytest.raises(DataError, match=r"missing 10,000 \*\.bin files below Train/ \(found 1\)"):
        load_dataset("nmnist", data_dir=str(tmp_path))


def test_data_dir_comes_from_the_environment_then_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_DATA", str(tmp_path / "env"))
    assert tonic_sets.data_dir() == tmp_path / "env"
    assert tonic_sets.data_dir(tmp_path / "opt") == tmp_path / "opt"
    monkeypatch.delenv("SPIKEPORT_DATA")
    assert tonic_sets.data_dir() == tmp_path / "cache" / "data"


def test_a_truncated_bin_is_one_line_naming_the_file(tmp_path):
    written = nmnist_tree(tmp_path, classes=(0,), per_class=1)
    path = next(p for p, (s, _, _) in written.items() if s == "test")
    Path(path).write_bytes(Path(path).read_bytes()[:-2])  # the last event cut short
    with pytest.raises(DataError) as e:
        load_dataset("nmnist", data_dir=str(tmp_path), max_per_class=1)
    text = str(e.value)
    assert "\n" not in text and f"dataset 'nmnist': {path} cannot be read" in text
    assert "replace it with an intact copy" in text


def test_the_cache_is_reused_and_follows_the_files(tmp_path, cache):
    written = nmnist_tree(tmp_path, classes=(0,), per_class=1)
    a = load_dataset("nmnist", data_dir=str(tmp_path), max_per_class=1)
    assert isinstance(a.x_train, np.memmap)  # memory-mapped from the cache
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 2
    b = load_dataset("nmnist", data_dir=str(tmp_path), max_per_class=1)
    assert sorted(cache.glob("*.npy")) == files
    np.testing.assert_array_equal(a.x_test, b.x_test)
    # a rewritten recording is a new key, and new frames
    path = next(p for p, (s, _, _) in written.items() if s == "test")
    ev = camera_events(40, 34, 34, 300_000)
    write_bin(Path(path), ev)
    os.utime(path, ns=(1, 1))
    c = load_dataset("nmnist", data_dir=str(tmp_path), max_per_class=1)
    assert len(list(cache.glob("*.npy"))) == 4
    np.testing.assert_array_equal(c.x_test[0], frames_by_time(ev, (34, 34, 2), 10_000, 30))


# ---------------------------------------------------------------- DVS Gesture

def test_dvs_gesture_npy_with_crop_and_downsample(tmp_path):
    home = tmp_path / "DVSGesture"
    written = {}
    for split in ("Train", "Test"):
        touch(home / f"ibmGesture{split}.tar.gz")
        for user in range(1, 11):
            for label in range(11):
                n = 30
                ev = camera_events(n, 128, 128, 500)  # tonic's release: t in ms
                arr = np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], axis=1).astype(np.int64)
                path = home / f"ibmGesture{split}" / f"user{user:02d}_led" / f"{label}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, arr)
                written[str(path)] = ev
    ds = tonic_sets.open_split("dvs-gesture", tmp_path, "test")
    got, label = ds[0]
    want = dict(written[ds.data[0]])
    assert label == int(Path(ds.data[0]).stem)
    assert_events(got, {**want, "t": want["t"] * 1000})
    data = load_dataset("dvs-gesture", data_dir=str(tmp_path), max_per_class=1,
                        crop=[64, 64], downsample=0.5, time_window_us=100_000, frames=5,
                        binarize="count")
    assert data.x_test.shape == (11, 5, 2, 32, 32) and data.n_classes == 11
    assert sorted(data.y_test) == list(range(11))  # one per class, in tonic's order
    for j, label in enumerate(data.y_test):
        path = next(p for p in ds.data if Path(p).stem == str(label))
        ev = dict(written[path])
        ev["t"] = ev["t"] * 1000
        keep = (ev["x"] >= 32) & (ev["x"] < 96) & (ev["y"] >= 32) & (ev["y"] < 96)
        ev = {k: v[keep] for k, v in ev.items()}
        ev["x"], ev["y"] = (ev["x"] - 32) // 2, (ev["y"] - 32) // 2
        np.testing.assert_array_equal(
            data.x_test[j], frames_by_time(ev, (32, 32, 2), 100_000, 5, clip=False))


# ---------------------------------------------------------------- SHD and N-TIDIGITS18

def audio_events(n: int, channels: int, duration_us: int) -> tuple[np.ndarray, np.ndarray]:
    t_us = np.sort(RNG.choice(duration_us // 1000, n, replace=False)) * 1000
    return t_us, RNG.integers(0, channels, n)


def test_shd_h5_as_audio_frames(tmp_path):
    home = tmp_path / "SHD"
    home.mkdir()
    rec = {}
    for split, labels in (("train", [3, 1, 3, 19]), ("test", [0, 7])):
        touch(home / f"shd_{split}.h5.zip")
        events = [audio_events(50, 700, 900_000) for _ in labels]
        write_shd(home / f"shd_{split}.h5",
                  [((t / 1e6).astype(np.float32), u) for t, u in events], labels)
        rec[split] = (events, labels)
    ds = tonic_sets.open_split("shd", tmp_path, "train")
    got, label = ds[2]
    assert label == 3
    t, u = rec["train"][0][2]
    np.testing.assert_allclose(got["t"], t, atol=1)  # float32 seconds -> us
    np.testing.assert_array_equal(got["x"], u)
    data = load_dataset("shd", data_dir=str(tmp_path), frames=90)
    assert data.x_train.shape == (4, 90, 1, 1, 700) and data.input_shape == (1, 1, 700)
    assert list(data.y_train) == [3, 1, 3, 19] and data.n_classes == 20
    test = tonic_sets.open_split("shd", tmp_path, "test")
    for j, (t, u) in enumerate(rec["test"][0]):
        got_t = test[j][0]["t"]  # float32 seconds: a microsecond may be lost, so bin tonic's t
        assert abs(got_t - t).max() <= 1
        want = frames_by_time({"t": got_t.astype(np.int64), "x": u}, (700, 1, 1), 10_000, 90)
        np.testing.assert_array_equal(data.x_test[j], want)


def test_a_broken_h5_is_one_line_naming_the_file(tmp_path):
    home = tmp_path / "SHD"
    home.mkdir()
    for split in ("train", "test"):
        touch(home / f"shd_{split}.h5.zip")
        (home / f"shd_{split}.h5").write_bytes(b"not an hdf5 file")
    with pytest.raises(DataError) as e:
        load_dataset("shd", data_dir=str(tmp_path))
    text = str(e.value)
    assert "\n" not in text and f"dataset 'shd': {home / 'shd_train.h5'} cannot be read" in text


def test_ntidigits18_single_digits(tmp_path):
    home = tmp_path / "NTIDIGITS18"
    home.mkdir()
    samples = {"train": ["man-ae-1", "man-ae-z", "woman-bc-o", "man-ae-12"],
               "test": ["man-xy-9", "woman-cd-oz"]}
    events = {}
    with h5py.File(home / "n-tidigits.hdf5", "w") as f:
        for split, ids in samples.items():
            f[f"{split}_labels"] = np.array([s.encode() for s in ids])
            for s in ids:
                t, x = audio_events(40, 64, 800_000)
                f[f"{split}_timestamps/{s}"] = t / 1e6
                f[f"{split}_addresses/{s}"] = x
                events[s] = (t, x)
    data = load_dataset("ntidigits18", data_dir=str(tmp_path), time_window_us=20_000,
                        frames=40)
    assert list(data.y_train) == [1, 10, 0] and list(data.y_test) == [9]  # sequences left out
    assert data.x_train.shape == (3, 40, 1, 1, 64) and data.n_classes == 11
    for j, s in enumerate(["man-ae-1", "man-ae-z", "woman-bc-o"]):
        t, x = events[s]
        np.testing.assert_array_equal(
            data.x_train[j], frames_by_time({"t": t, "x": x}, (64, 1, 1), 20_000, 40))


# ---------------------------------------------------------------- POKER-DVS

def test_pokerdvs_by_event_count(tmp_path):
    home = tmp_path / "POKERDVS"
    written = {}
    for split in ("train", "test"):
        touch(home / f"pips_{split}.tar.gz")
        for cls in ("cl", "he", "di", "sp"):
            for k in range(5):
                ev = camera_events(int(RNG.integers(10, 60)), 35, 35, 20_000)
                path = home / f"pips_{split}" / cls / f"{cls}{k}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.stack([ev["t"], ev["x"], ev["y"], ev["p"]], axis=1))
                written[(split, cls, k)] = ev
    ds = tonic_sets.open_split("pokerdvs", tmp_path, "train")
    labels = tonic_frames.labels_of(tonic_sets.LAYOUTS["pokerdvs"], ds)[0]
    got, label = ds[int(np.flatnonzero(labels == 2)[0])]  # "di", the third class
    assert label == 2
    assert_events(got, written[("train", "di", 0)])
    data = load_dataset("pokerdvs", data_dir=str(tmp_path), event_count=8, frames=6)
    assert data.x_train.shape == (20, 6, 2, 35, 35) and data.n_classes == 4
    first = int(np.flatnonzero(data.y_test == 1)[0])  # "he", recording 0
    ev = written[("test", "he", 0)]
    want = np.zeros((6, 2, 35, 35), np.uint8)
    for i in range(min(6, -(-len(ev["t"]) // 8))):
        s = slice(8 * i, 8 * i + 8)
        want[i, ev["p"][s], ev["y"][s], ev["x"][s]] = 1
    np.testing.assert_array_equal(data.x_test[first], want)


def test_pokerdvs_cannot_be_fetched_and_says_where_the_files_go(tmp_path):
    with pytest.raises(DataError) as e:
        tonic_sets.fetch("pokerdvs", tmp_path)
    text = str(e.value)
    assert "tonic 1.7.0 cannot download POKER-DVS" in text
    assert f"put POKER-DVS's files in {tmp_path / 'POKERDVS'}/" in text
    assert "pips_train.tar.gz and pips_train/**/*.npy (at least 20 files)" in text


# ---------------------------------------------------------------- CIFAR10-DVS

def single_set(home: Path, archive: str, folder: Path, classes, per_class: int, suffix: str,
               write, recording, filler: tuple[str, int]) -> dict:
    """A dataset without an official split: ``per_class`` recordings per class in
    folder/<class>/, then hard links to one tiny recording in folder/<filler class>/ up to
    the total tonic's check wants. Returns {path: (class, events)} of the real ones."""
    touch(home / archive)
    written = {}
    for cls in classes:
        for k in range(per_class):
            path = folder / cls / f"{cls}_{k:04d}{suffix}"
            ev = recording()
            write(path, ev)
            written[str(path)] = (cls, ev)
    one = home.parent / f"one{suffix}"
    write(one, {k: v[:1] for k, v in recording().items()})
    fill(folder / filler[0], filler[1] - len(written), suffix, one)
    return written



def test_cifar10_dvs_aedat4_through_tonic_and_aedat(tmp_path):
    home = tmp_path / "CIFAR10DVS"

    def recording() -> dict:
        ev = camera_events(80, 128, 128, 1_200_000)
        ev["t"] += 1_600_000_000_000_000  # absolute timestamps, as recorded
        return ev
    written = single_set(home, "CIFAR10DVS.zip", home, ("airplane", "cat"), 3, ".aedat4",
                         write_aedat4, recording, ("truck", 1_000))
    ds = tonic_sets.open_split("cifar10-dvs", tmp_path, "all")
    for path, (cls, ev) in written.items():
        got, label = ds[ds.data.index(path)]
        assert label == {"airplane": 0, "cat": 3}[cls]
        assert_events(got, ev)
    data = load_dataset("cifar10-dvs", data_dir=str(tmp_path), max_per_class=2,
                        test_fraction=0.34)
    assert data.x_test.shape[1:] == (13, 2, 128, 128) and data.n_classes == 10
    assert sorted(data.y_test) == [0, 3, 9, 9]
    for j in np.flatnonzero(data.y_test < 9):
        assert any(np.array_equal(data.x_test[j], frames_by_time(ev, (128, 128, 2), 100_000, 13))
                   for cls, ev in written.values())
    # a broken file: one line naming it
    bad = next(iter(written))
    Path(bad).write_bytes(b"#!AER-DAT4.0\r\n" + b"\x07" * 40)
    with pytest.raises(DataError) as e:
        load_dataset("cifar10-dvs", data_dir=str(tmp_path), max_per_class=3, test_fraction=0.34)
    assert f"dataset 'cifar10-dvs': {bad} cannot be read" in str(e.value)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- N-Caltech101

def test_ncaltech101_single_set_split_and_shifted(tmp_path):
    home = tmp_path / "NCALTECH101"

    def recording() -> dict:
        ev = camera_events(60, 200, 150, 300_000)
        ev["x"] += 5  # tonic moves every recording to the origin
        return ev
    written = single_set(home, "N-Caltech101-archive.zip", home / "Caltech101",
                         ("accordion", "airplanes"), 4, ".bin", write_bin, recording,
                         ("zebra", 8_709))
    ds = tonic_sets.open_split("ncaltech101", tmp_path, "all")
    path = str(home / "Caltech101" / "airplanes" / "airplanes_0002.bin")
    got, label = ds[ds.data.index(path)]
    ev = written[path][1]
    assert label == "airplanes"
    assert_events(got, {**ev, "x": ev["x"] - ev["x"].min(), "y": ev["y"] - ev["y"].min()})
    data = load_dataset("ncaltech101", data_dir=str(tmp_path), max_per_class=3,
                        test_fraction=0.25)
    assert data.n_classes == 3 and data.x_train.shape[1:] == (30, 2, 180, 240)
    assert sorted(set(data.y_train)) == [0, 1, 2] and sorted(set(data.y_test)) == [0, 1, 2]
    assert int(data.x_train.sum()) > 0


# ---------------------------------------------------------------- options, listing

@pytest.mark.parametrize("options, message", [
    ({"time_window_us": 1000, "event_count": 10}, "dataset.event_count: set together with"),
    ({"crop": [1, 2, 3]}, "dataset.crop: [1, 2, 3] is neither"),
    ({"downsample": 2.0}, "dataset.downsample must be"),
    ({"frames": 0}, "dataset.frames must be"),
    ({"test_fraction": 0.3}, "unknown key dataset.test_fraction"),  # N-MNIST has its split
])
def test_bad_options_are_one_line_config_errors(options, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        load_dataset("nmnist", data_dir=str(tmp_path), **options)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_crop_must_fit_and_audio_has_no_pixels(tmp_path):
    with pytest.raises(ConfigError, match="does not fit the 34x34 sensor"):
        load_dataset("nmnist", data_dir=str(tmp_path), crop=[30, 30, 10, 10])
    with pytest.raises(ConfigError, match="crop and denoise_us apply to camera datasets"):
        load_dataset("shd", data_dir=str(tmp_path), denoise_us=1000)


def test_present_lists_every_dataset_with_its_status(tmp_path):
    nmnist_tree(tmp_path, classes=(0,), per_class=1)
    touch(tmp_path / "SHD" / "shd_train.h5.zip")
    status = {name: (path, s) for name, path, s in tonic_sets.present(tmp_path)}
    assert set(status) == set(tonic_sets.LAYOUTS)
    assert status["nmnist"] == (tmp_path / "NMNIST", "present")
    assert status["dvs-gesture"] == (tmp_path / "DVSGesture", "missing")
    assert status["shd"][1] == ("incomplete: train: shd_train.h5; test: shd_test.h5.zip, "
                                "shd_test.h5")


def test_denoise_is_tonics(tmp_path):
    """denoise_us runs tonic.transforms.Denoise: the frames are those of its output."""
    import tonic.transforms

    written = nmnist_tree(tmp_path, classes=(0,), per_class=1)
    data = load_dataset("nmnist", data_dir=str(tmp_path), max_per_class=1, denoise_us=5_000)
    ev = next(e for s, _, e in written.values() if s == "test")
    arr = np.zeros(len(ev["t"]), dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    for k in "xytp":
        arr[k] = ev[k]
    kept = tonic.transforms.Denoise(filter_time=5_000)(arr)
    assert 0 < len(kept) < len(arr)  # the test is not vacuous
    # windows start at the first event kept
    want = frames_by_time({k: kept[k] for k in "xytp"}, (34, 34, 2), 10_000, 30)
    np.testing.assert_array_equal(data.x_test[0], want)


# ---------------------------------------------------------------- without tonic

def test_without_tonic_a_tonic_dataset_says_how_to_install_it(tmp_path):
    nmnist_tree(tmp_path, classes=(0,), per_class=1)
    code = ("import sys; sys.modules['tonic'] = None\n"
            "from spikeport.core.errors import DataError\n"
            "from spikeport.data.datasets import load_dataset\n"
            "try:\n"
            f"    load_dataset('nmnist', data_dir={str(tmp_path)!r})\n"
            "except DataError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SPIKEPORT_CACHE": str(tmp_path / "c")})
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert "\n" not in line
    assert "dataset 'nmnist' is read through tonic, which is not installed" in line
    assert "fix: pip install 'spikeport[events]'" in line
