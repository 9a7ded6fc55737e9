"""`spikeport data list | fetch` and a tonic dataset through train and validate: what is in
the data directory, one line for what cannot be fetched, nothing left by a failed fetch."""
from __future__ import annotations

import json
import urllib.error

import numpy as np
from typer.testing import CliRunner

from spikeport.cli import app
from spikeport.data import tonic_sets
from tests.tonic_formats import write_shd

runner = CliRunner()
RNG = np.random.default_rng(7)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _shd(root, splits=("train", "test"), n=(6, 4)):
    home = root / "SHD"
    home.mkdir(parents=True, exist_ok=True)
    for split, count in zip(splits, n):
        (home / f"shd_{split}.h5.zip").write_bytes(b"")
        recs = []
        for _ in range(count):
            t = np.sort(RNG.choice(900, 60, replace=False)) / 1000.0  # seconds
            recs.append((t.astype(np.float32), RNG.integers(0, 700, 60)))
        write_shd(home / f"shd_{split}.h5", recs, list(RNG.integers(0, 20, count)))


def _status(root) -> dict[str, str]:
    r = invoke("data", "list", "--data-dir", root, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["data_dir"] == str(root)
    return {d["name"]: d["status"] for d in out["datasets"]}


def test_list_says_what_is_present_missing_or_incomplete(tmp_path):
    assert set(_status(tmp_path).values()) == {"missing"}
    assert set(_status(tmp_path)) == set(tonic_sets.LAYOUTS)
    _shd(tmp_path, splits=("train",), n=(3,))
    status = _status(tmp_path)["shd"]
    assert status.startswith("incomplete") and "shd_test.h5" in status, status
    _shd(tmp_path)
    assert _status(tmp_path)["shd"] == "present"
    r = invoke("data", "list", "--data-dir", tmp_path)
    assert r.exit_code == 0 and f"data directory: {tmp_path}" in r.output


def test_list_reads_spikeport_data_when_no_directory_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEPORT_DATA", str(tmp_path / "elsewhere"))
    r = invoke("data", "list")
    assert r.exit_code == 0 and str(tmp_path / "elsewhere") in r.output


def test_fetch_refusals_are_one_line(tmp_path):
    r = invoke("data", "fetch", "nmnist-typo", "--data-dir", tmp_path)
    assert r.exit_code == 2 and "unknown tonic dataset 'nmnist-typo'" in r.output
    r = invoke("data", "fetch", "pokerdvs", "--data-dir", tmp_path)
    assert r.exit_code == 2 and "cannot download POKER-DVS" in r.output and "fix:" in r.output
    assert list(tmp_path.iterdir()) == []


def test_a_failed_download_leaves_no_folder_behind(tmp_path, monkeypatch):
    def offline(lay, root, split):
        (root / lay.cls).mkdir(exist_ok=True)
        (root / lay.cls / "shd_train.h5.zip").write_bytes(b"half")  # what a cut download leaves
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tonic_sets, "_construct", offline)
    r = invoke("data", "fetch", "shd", "--data-dir", tmp_path)
    assert r.exit_code == 2, r.output
    assert "downloading Spiking Heidelberg Digits" in r.output and "URLError" in r.output
    assert r.output.count("\n") == 1
    assert not (tmp_path / "SHD").exists()


def test_a_tonic_dataset_trains_and_validates_from_the_data_directory(tmp_path):
    _shd(tmp_path / "data")
    recipe = tmp_path / "shd.yaml"
    recipe.write_text(
        "name: shd-tiny\ntime_steps: 30\n"
        f"dataset: {{name: shd, data_dir: {tmp_path / 'data'}, frames: 30, time_window_us: 30000}}\n"
        "encoder: {name: events}\n"
        "model: {arch: mlp, hidden: [16], neuron: lif, beta: 0.9, threshold: 0.5}\n"
        "loss: {name: ce-count}\n"
        "optimizer: {name: adam, lr: 0.001}\n"
        "train: {epochs: 1, batch_size: 4, seed: 0}\n")
    r = invoke("train", "--recipe", recipe, "--out", tmp_path / "run", "--json", "--no-progress")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.splitlines()[-1])["run_dir"] == str(tmp_path / "run")
    r = invoke("validate", tmp_path / "run", "--targets", "reference,snntorch,onnx", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["samples"] == 4
    assert len(out["pairs"]) == 3 and out["spikes"], out
    for pair in out["pairs"]:
        assert pair["total_spike_bins"] > 0 and pair["mismatched_spike_bins"] == 0, pair
