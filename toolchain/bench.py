"""Speed, measured side by side in one run on the same inputs (never inside tests).

``spikeport bench`` times, on the first N test samples of a run:

- the Loihi emulator against the Lava simulator (one batched Lava run), and
- one batched Lava run against one Lava run per sample,

and reports ratios. Lava wall time includes starting the Python 3.10 process and importing
Lava; the runner's own simulation time (``lava_sim_seconds``) is reported beside it.

It also bins a synthetic event set of N-MNIST's size into the event cache and reads it
back (:func:`bench_binning`): the first pass against the cached second, and the memory the
process holds meanwhile (docs/benchmarks.md).
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

from spikeport.exporters.targets import get_target
from spikeport import runs as artifacts


def bench(run_dir: str | Path, samples: int = 20, per_sample: int | None = None) -> dict:
    graph, _ = artifacts.export_run_graph(run_dir, write=False)
    inputs = artifacts.run_inputs(run_dir, samples)
    x = inputs.x
    T, B = x.shape[:2]
    emu, lava = get_target("loihi-emu"), get_target("lava")
    net = emu.compile(graph, {})
    art = lava.compile(graph, {})

    t0 = time.perf_counter()
    r_emu = emu.run(net, x)
    t_emu = time.perf_counter() - t0

    t0 = time.perf_counter()
    r_lava = lava.run(art, x)
    t_lava = time.perf_counter() - t0
    sim_lava = float((r_lava.lava_status or {}).get("seconds", float("nan")))

    k = B if per_sample is None else min(per_sample, B)
    t0 = time.perf_counter()
    singles = [lava.run(art, x[:, i:i + 1]) for i in range(k)]
    t_single = time.perf_counter() - t0
    # the same samples must give the same spikes either way (state reset between samples)
    same = all(np.array_equal(s.values[n], r_lava.values[n][:, i:i + 1])
               for i, s in enumerate(singles) for n in s.spiking)
    agree = all(np.array_equal(r_emu.values[n], r_lava.values[n]) for n in r_emu.spiking)
    steps = int(B * (T + len(net.layers)))
    return {
        "run": str(run_dir), "samples": int(B), "time_steps": int(T),
        "neurons": int(sum(l.weight.shape[0] for l in net.layers)),
        "emulator_seconds": t_emu,
        "lava_batched_seconds": t_lava,
        "lava_sim_seconds": sim_lava,
        "lava_per_sample_seconds": t_single, "per_sample_runs": k,
        "emulator_speedup_vs_lava": t_lava / t_emu,
        "emulator_speedup_vs_lava_sim_only": sim_lava / t_emu,
        "batched_speedup_vs_per_sample": (t_single / k) * B / t_lava,
        "lava_steps_per_second": steps / sim_lava if sim_lava == sim_lava else None,
        "emulator_equals_lava": agree, "batched_equals_per_sample": same,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }


def bench_estimator(run_dir: str | Path, target: str, samples: int | None = None,
                    repeats: int = 9, min_seconds: float = 0.5) -> dict:
    """The estimator's cost against plain inference of the same target on the same inputs.

    Two measurements, both after one warm-up run of each side:

    - ``overhead``: the metrics alone over recordings made beforehand, against the target's
      inference alone, each the fastest of ``repeats`` timings of ``passes`` passes over the
      inputs (as many as make plain inference last ``min_seconds``); the ratio reported is
      (inference + metrics) / inference. Stable: the two sides do not disturb each other.
    - ``end_to_end``: inference with the metrics interleaved batch by batch (what
      ``spikeport estimate`` does, cutoff aside) against plain inference, run alternately in
      ``repeats`` pairs so that load changes hit both sides alike; the ratio of the fastest
      runs and the median of the per-pair ratios. Also shows thread-pool interference
      between the target and the metrics; on a shared machine it scatters by +-10 %.
      ``read_once``: the target with every recorded array merely read once
      (``np.not_equal(v, 0)``) between batches -- the floor of any count made after the
      fact. The three run in rotating order."""
    sides = _estimator_sides(run_dir, target, samples)
    return {"target": target, "samples": sides["samples"], "repeats": repeats,
            **_time_sides(sides, repeats, min_seconds)}


def _timed(fn, loops: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(loops):
        fn()
    return time.perf_counter() - t0


def _estimator_sides(run_dir, target: str, samples: int | None) -> dict:
    """The four things :func:`bench_estimator` times, as closures over one run's inputs:
    plain inference, inference with the metrics, inference reading every array once, and
    the metrics alone over recordings made here."""
    from spikeport.estimation import MetricsAccumulator
    from spikeport.exporters.targets import run_in_batches

    graph, _ = artifacts.export_run_graph(run_dir, write=False)
    x = artifacts.run_inputs(run_dir, samples).x
    tg = get_target(target)
    art = tg.compile(graph, {})
    starts = range(0, x.shape[1], 128)
    counting = tg.counting_run()

    def accumulator():
        return MetricsAccumulator.for_target(tg, art, graph, x)

    def plain():
        for s in starts:
            run_in_batches(tg, art, x[:, s:s + 128], 128)

    def with_metrics():
        acc = accumulator()
        for s in starts:
            xb = x[:, s:s + 128]
            acc.update(run_in_batches(counting, art, xb, 128), xb)
        acc.summary()

    def read_once():  # the floor of any after-the-fact count: every recorded array read once
        for s in starts:
            for v in run_in_batches(tg, art, x[:, s:s + 128], 128).values.values():
                np.not_equal(v, 0)

    recordings = [run_in_batches(counting, art, x[:, s:s + 128], 128) for s in starts]

    def metrics_only():
        acc = accumulator()
        for rec, s in zip(recordings, starts):
            acc.update(rec, x[:, s:s + 128])
        acc.summary()

    return {"samples": int(x.shape[1]), "plain": plain, "with_metrics": with_metrics,
            "read_once": read_once, "metrics_only": metrics_only}


def _time_sides(sides: dict, repeats: int, min_seconds: float) -> dict:
    """The overhead and end-to-end figures of :func:`bench_estimator` (its docstring)."""
    plain, with_metrics = sides["plain"], sides["with_metrics"]
    one = _timed(plain)  # warm-up: caches, lazy imports, first allocations
    _timed(with_metrics)
    _timed(sides["metrics_only"])
    loops = max(1, int(np.ceil(min_seconds / max(one, 1e-6))))
    t_inf = min(_timed(plain, loops) for _ in range(repeats))
    t_met = min(_timed(sides["metrics_only"], loops) for _ in range(repeats))
    # the three in a rotating order: each side runs first, second and third equally often
    # (measured: whichever ran right after an estimation ran several percent differently)
    order = (plain, with_metrics, sides["read_once"])
    triples = []
    for r in range(repeats):
        t = {}
        for k in range(3):
            i = (r + k) % 3
            t[i] = _timed(order[i], loops)
        triples.append((t[0], t[1], t[2]))
    pairs = [(p, e) for p, e, _ in triples]
    t_plain = min(p for p, _ in pairs)
    t_est = min(e for _, e in pairs)
    t_read = min(r for _, _, r in triples)
    return {"passes": loops,
            "overhead": {"inference_seconds": t_inf, "metrics_seconds": t_met,
                         "estimation_over_inference": (t_inf + t_met) / t_inf},
            "end_to_end": {"inference_seconds": t_plain, "estimation_seconds": t_est,
                           "estimation_over_inference": t_est / t_plain,
                           "median_pair_ratio": float(np.median([e / p for p, e in pairs])),
                           "read_once_seconds": t_read,
                           "read_once_over_inference": t_read / t_plain}}


def bench_workers(run_dir: str | Path, samples: int = 20, workers: int = 2) -> dict:
    """``validate --targets loihi-emu,lava`` on the same ``samples`` test samples with one
    worker and with ``workers``, side by side in one process: both wall times, their ratio,
    and whether the two results are identical."""
    from spikeport.validation import validate

    names = ["loihi-emu", "lava"]
    timings, results = {}, {}
    for w in (1, workers):
        t0 = time.perf_counter()
        results[w] = validate(run_dir, names, samples=samples, workers=w).to_json()
        timings[w] = time.perf_counter() - t0
    return {"targets": names, "samples": samples, "workers": workers,
            "seconds_1_worker": timings[1], f"seconds_{workers}_workers": timings[workers],
            "speedup": timings[1] / timings[workers],
            "identical_results": results[1] == results[workers]}


# ---------------------------------------------------------------------------- scale-out

def bench_training(recipe: str = "digits", epochs: int = 5, nproc: int = 2) -> dict:
    """``train --recipe RECIPE`` for ``epochs`` epochs in one process and in ``nproc``
    (:mod:`spikeport.training.distributed`), side by side: end-to-end wall time (process
    start, data loading and evaluation included) and training samples per second."""
    import tempfile

    from spikeport.training.loop import train
    from spikeport.training.recipes import load_recipe

    cfg = load_recipe(recipe, [f"train.epochs={epochs}"])
    out: dict = {"recipe": recipe, "epochs": epochs}
    seen = epochs * _train_size(cfg)
    with tempfile.TemporaryDirectory(prefix="spikeport-bench-train-") as tmp:
        for n in (1, nproc):
            t0 = time.perf_counter()
            result = train(cfg, Path(tmp) / f"p{n}", nproc=n)
            seconds = time.perf_counter() - t0
            out[f"{n}_processes"] = {"seconds": seconds, "samples_per_s": seen / seconds,
                                     "test_accuracy": result.test_accuracy}
    out["speedup"] = out["1_processes"]["seconds"] / out[f"{nproc}_processes"]["seconds"]
    return out


def _train_size(cfg) -> int:
    from spikeport.data.datasets import load_dataset

    return len(load_dataset(cfg.dataset["name"], **cfg.params("dataset")).y_train)


_PEAK = """
import re, sys
from spikeport.estimation.pipeline import estimate
estimate(sys.argv[1], sys.argv[2], cutoff="confidence", input_file=sys.argv[3])
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def bench_estimate_memory(run_dir: str | Path, target: str = "loihi-emu",
                          sizes: tuple[int, ...] = (1000, 10000)) -> dict:
    """Peak resident memory (VmHWM) of ``estimate`` on ``sizes`` samples of the run's
    training split (repeated to reach the size), each in a fresh process, inputs in an
    uncompressed .npz read a block at a time."""
    import subprocess
    import sys
    import tempfile

    import nir

    graph, _ = artifacts.export_run_graph(run_dir, write=False)
    x = artifacts.run_inputs(run_dir, split="train")
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="spikeport-bench-mem-") as tmp:
        nir.write(Path(tmp) / "model.nir", graph)
        for n in sizes:
            idx = np.arange(n) % x.x.shape[1]
            path = Path(tmp) / f"in{n}.npz"
            np.savez(path, x=x.x[:, idx], y=x.y[idx])
            done = subprocess.run([sys.executable, "-c", _PEAK, str(Path(tmp) / "model.nir"),
                                   target, str(path)], capture_output=True, text=True, check=True)
            peaks[n] = int(done.stdout.split()[-1]) * 1024
    first, last = sizes[0], sizes[-1]
    return {"target": target, "T": int(x.x.shape[0]), "peak_bytes": peaks,
            "input_bytes": {n: int(x.x[:, :1].nbytes) * n for n in sizes},
            "growth": peaks[last] / peaks[first] - 1}


# ---------------------------------------------------------------------------- binning

def synthetic_events(first: int, count: int, events_per_recording: int, duration_us: int,
                     size: int, seed: int) -> list[np.ndarray]:
    """Recordings ``first`` ... ``first + count - 1`` of a synthetic event set: each a
    uniform number of events in [3/4, 5/4] x ``events_per_recording`` at uniform pixels of a
    size x size sensor, polarities and times in [0, duration_us), sorted by t, in tonic's
    layout; recording i drawn from a generator seeded by (seed, i)."""
    from spikeport.data.events import EVENT_DTYPE

    out = []
    for i in range(first, first + count):
        rng = np.random.default_rng([seed, i])
        n = int(rng.integers(events_per_recording * 3 // 4, events_per_recording * 5 // 4 + 1))
        ev = np.empty(n, dtype=EVENT_DTYPE)
        ev["t"] = np.sort(rng.integers(0, duration_us, n))
        ev["x"], ev["y"] = rng.integers(0, size, n), rng.integers(0, size, n)
        ev["p"] = rng.integers(0, 2, n)
        out.append(ev)
    return out


class _PeakMemory:
    """Samples this process's resident memory from /proc/self/status every 20 ms: the peak
    of RssAnon (memory the process holds: heap, numpy arrays) and of RssFile (file pages
    mapped, e.g. the cache's memory map, which the kernel can drop and re-read)."""

    def __init__(self):
        import threading

        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self) -> dict:
        try:
            lines = Path("/proc/self/status").read_text().splitlines()
        except OSError:
            return {}
        return {k: int(v.split()[0]) * 1024 for k, v in (l.split(":", 1) for l in lines)
                if k in self.peak}

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for k, v in self._read().items():
                self.peak[k] = max(self.peak[k], v)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _evict(path: Path) -> bool:
    """Drop ``path``'s pages from the page cache (this file only), so that the next read
    comes from the disk; False where the system cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def _read_all(frames: np.ndarray, batch: int = 256) -> int:
    """Read every frame once, batch by batch, as an epoch does; the number of spikes."""
    return sum(int(np.count_nonzero(frames[s:s + batch])) for s in range(0, len(frames), batch))


def binning_passes(recordings: int, events_per_recording: int = 4000, duration_us: int = 300_000,
                   size: int = 34, time_window_us: int = 10_000, seed: int = 0) -> dict:
    """Bin a synthetic set into the event cache (:func:`spikeport.data.events.cached_frames`,
    under ``$SPIKEPORT_CACHE``) and read every frame (first pass), then load it again from
    the cache and read every frame (second pass, the file still in the page cache), and
    once more after dropping the file's pages (the second pass from the disk, as for a
    dataset larger than the memory). Checks that no later pass built anything and that each
    returned the frames the first wrote (every spike counted, and the first and last 64
    recordings binned afresh)."""
    import resource

    from spikeport.data import events

    bins = events.n_bins(duration_us, time_window_us)
    shape = (recordings, bins, 2, size, size)
    key = events.cache_key(np.array([seed], np.float32), dataset="bench-binning", shape=shape,
                           events_per_recording=events_per_recording, window=time_window_us)
    built, generating = [], [0.0]

    def rebin(first: int, count: int) -> np.ndarray:
        t0 = time.perf_counter()
        recs = synthetic_events(first, count, events_per_recording, duration_us, size, seed)
        generating[0] += time.perf_counter() - t0
        return np.stack([events.to_frames(e, (size, size), time_window_us, bins, "clip")
                         for e in recs])

    def build(out: np.ndarray) -> None:
        built.append(len(out))
        for s in range(0, recordings, events.CHUNK):
            out[s:s + events.CHUNK] = rebin(s, min(events.CHUNK, recordings - s))

    def cached_pass() -> tuple[int, float]:
        t0 = time.perf_counter()
        spikes = _read_all(events.cached_frames(key, shape, build))
        return spikes, time.perf_counter() - t0

    with _PeakMemory() as mem:
        spikes_1, first = cached_pass()
        spikes_2, second = cached_pass()  # the file's pages still in the page cache
        cold = _evict(events.cache_dir() / f"{key}.npy")
        spikes_3, third = cached_pass()  # read from the disk
    cached = events.cached_frames(key, shape, build)
    ends = (0, max(0, recordings - 64))
    identical = spikes_1 == spikes_2 == spikes_3 and all(
        np.array_equal(cached[s:s + 64], rebin(s, min(64, recordings - s))) for s in ends)
    return {"recordings": recordings, "events_per_recording": events_per_recording,
            "duration_us": duration_us, "sensor": [2, size, size], "time_window_us": time_window_us,
            "cache_bytes": int(np.prod(shape)), "spikes": spikes_1,
            "first_pass_seconds": first, "of_which_generating_events_seconds": generating[0],
            "second_pass_seconds": second, "first_over_second": first / second,
            "second_pass_from_disk_seconds": third if cold else None,
            "first_over_second_from_disk": first / third if cold else None,
            "second_pass_built_nothing": len(built) == 1, "second_pass_identical": identical,
            "peak_anon_rss_bytes": mem.peak["RssAnon"], "peak_file_rss_bytes": mem.peak["RssFile"],
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def _passes_in(cache: str, kwargs: dict) -> dict:
    os.environ["SPIKEPORT_CACHE"] = cache
    return binning_passes(**kwargs)


def bench_binning(recordings: int = 60_000, **kwargs) -> dict:
    """:func:`binning_passes` in a fresh process (its memory is the benchmark's alone) with
    a temporary event cache, deleted afterwards. The default is N-MNIST's size: 60,000
    training recordings of 300 ms, about 4,000 events each, 2x34x34, 30 windows of 10 ms
    (a 4.2 GB cache file)."""
    import multiprocessing
    import shutil
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    cache = tempfile.mkdtemp(prefix="spikeport-bench-binning-")
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result = pool.submit(_passes_in, cache, {"recordings": recordings, **kwargs}).result()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    return result


def run_benchmarks(run_dir: str | Path, samples: int = 20,
                   estimator_targets: tuple[str, ...] = ("reference", "snntorch", "onnx", "loihi-emu"),
                   out: str | Path | None = None, binning_recordings: int = 60_000,
                   scale: bool = True) -> dict:
    """``spikeport bench``: :func:`bench` on ``samples`` test samples, then
    :func:`bench_estimator` on each of ``estimator_targets``, then :func:`bench_workers`,
    and with ``scale``: :func:`bench_training` (digits, 1 and 2 processes),
    :func:`bench_estimate_memory`, then :func:`bench_binning` on ``binning_recordings``
    synthetic recordings (0: skipped); also written to ``out``."""
    from spikeport.core import io
    from spikeport.core.errors import SpikeportError

    io.require_run_dir(run_dir)
    if samples < 1:
        raise SpikeportError("--samples must be >= 1", "pass a positive number")
    for t in estimator_targets:
        get_target(t)  # an unknown name fails here, before the long Lava timing
    result = bench(run_dir, samples)
    result["estimator"] = [bench_estimator(run_dir, t) for t in estimator_targets]
    result["validate_workers"] = bench_workers(run_dir, samples)
    if scale:
        result["training_processes"] = bench_training()
        result["estimate_memory"] = bench_estimate_memory(run_dir)
    if scale and binning_recordings:
        result["binning"] = bench_binning(binning_recordings)
    if out is not None:
        io.write_json(out, result)
    return result
