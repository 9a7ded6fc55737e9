"""Speed, measured side by side in one run on the same inputs (never inside tests).

``spikeport bench`` times, on the first N test samples of a run:

- the Loihi emulator against the Lava simulator (one batched Lava run), and
- one batched Lava run against one Lava run per sample,

and reports ratios. Lava wall time includes starting the Python 3.10 process and importing
Lava; the runner's own simulation time (``lava_sim_seconds``) is reported beside it.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from exporters.targets import get_target
from toolchain import artifacts


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
    sim_lava = float(getattr(r_lava, "lava_status", {}).get("seconds", float("nan")))

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
                    repeats: int = 3) -> dict:
    """Estimation (metrics over the recording, no cutoff) against plain inference of the same
    target on the same inputs; best of ``repeats`` each."""
    from exporters.graph import build_program
    from toolchain.estimate.metrics import MetricsAccumulator
    from toolchain.validate import run_in_batches

    graph, _ = artifacts.export_run_graph(run_dir, write=False)
    x = artifacts.run_inputs(run_dir, samples).x
    tg = get_target(target)
    art = tg.compile(graph, {})
    program = build_program(graph)
    binary = bool(np.all((x == 0) | (x == 1)))

    def plain():
        run_in_batches(tg, art, x, 128)

    def with_metrics():
        acc = MetricsAccumulator(program, binary)
        for s in range(0, x.shape[1], 128):
            xb = x[:, s:s + 128]
            acc.update(run_in_batches(tg, art, xb, 128), xb)
        acc.summary()

    def best(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_plain, t_est = best(plain), best(with_metrics)
    return {"target": target, "samples": int(x.shape[1]), "inference_seconds": t_plain,
            "estimation_seconds": t_est, "estimation_over_inference": t_est / t_plain}
