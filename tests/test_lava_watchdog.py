"""The Lava runner's watchdog: a simulator process that dies, is stopped or stalls ends the
whole run with a clear error instead of a parent waiting forever (issue 11).

The rules are tested on a scripted process table; the real thing on the Lava simulator by
killing and stopping one of its worker processes in the middle of a run."""
from __future__ import annotations

import os
import signal
import threading
import time

import nir
import numpy as np
import pytest

from spikeport.exporters.lava.watchdog import Member, Watchdog, group_members


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def scripted(tables):
    """A read_group that returns the next process table at each call (the last one after)."""
    it = iter(tables)
    last = {}

    def read(pgid):
        nonlocal last
        last = next(it, last)
        return last
    return read


def table(*rows):
    return {pid: Member(pid, state, ticks, tracker) for pid, state, ticks, tracker in rows}


def dog(tmp_path, tables, phase="run", **kw):
    progress = tmp_path / "progress.json"
    progress.write_text(f'{{"phase": "{phase}"}}')
    clock = Clock()
    return Watchdog(1, progress, read_group=scripted(tables), clock=clock, **kw), clock, progress


def test_a_worker_that_dies_during_the_simulation_is_reported(tmp_path):
    w, clock, _ = dog(tmp_path, [table((1, "S", 5, False), (2, "S", 1, False), (3, "S", 1, True)),
                                 table((1, "S", 6, False), (3, "S", 1, True))])
    assert w.check() is None
    problem = w.check()
    assert problem is not None and "pid 2" in problem and "died" in problem


def test_a_zombie_worker_is_reported_but_not_the_resource_tracker(tmp_path):
    w, _, _ = dog(tmp_path, [table((1, "S", 5, False), (2, "S", 1, False), (3, "S", 1, True)),
                             table((1, "S", 6, False), (2, "S", 2, False), (3, "Z", 1, True)),
                             table((1, "S", 7, False), (2, "Z", 2, False), (3, "Z", 1, True))])
    assert w.check() is None
    assert w.check() is None  # the tracker is no simulator process
    assert "pid 2" in w.check()


def test_workers_ending_after_the_simulation_are_not_a_failure(tmp_path):
    w, _, progress = dog(tmp_path, [table((1, "S", 5, False), (2, "S", 1, False)),
                                    table((1, "R", 9, False))])
    assert w.check() is None
    progress.write_text('{"phase": "stop"}')
    assert w.check() is None


def test_helpers_that_come_and_go_are_not_simulator_workers(tmp_path):
    """Processes exec'd while Lava imports or compiles (ldconfig, a compiler) share the group
    but not the runner's command line; their exit is no failure, before or during the run
    (seen once under load as a false 'died during the simulation')."""
    helper = Member(4, "S", 1, False, worker=False)
    w, _, progress = dog(tmp_path, [table((1, "S", 5, False)) | {4: helper},
                                    table((1, "S", 6, False)),
                                    table((1, "S", 7, False), (2, "S", 1, False)) | {4: helper},
                                    table((1, "S", 8, False), (2, "S", 2, False))], phase="build")
    assert w.check() is None      # a helper during the build
    progress.write_text('{"phase": "run"}')
    assert w.check() is None      # ... gone once the run starts: not a worker
    assert w.check() is None      # a worker and another helper during the run
    assert w.check() is None      # the helper ends: still no failure


def test_a_stopped_process_is_reported_after_the_grace_period(tmp_path):
    rows = [table((1, "S", t, False), (2, "T", 1, False)) for t in range(10)]
    w, clock, _ = dog(tmp_path, rows, stop_grace=3.0)
    assert w.check() is None
    clock.now = 2.0
    assert w.check() is None
    clock.now = 3.5
    problem = w.check()
    assert problem is not None and "stopped" in problem and "pid 2" in problem


def test_no_cpu_progress_for_the_stall_time_is_reported_and_progress_resets_it(tmp_path):
    busy = [table((1, "S", 5, False))] * 3 + [table((1, "S", 6, False))] + [table((1, "S", 6, False))] * 3
    w, clock, _ = dog(tmp_path, busy, stall_seconds=10.0)
    for now in (0.0, 5.0):
        clock.now = now
        assert w.check() is None
    clock.now = 9.0
    assert w.check() is None          # 9 s without CPU: not yet
    clock.now = 9.5
    assert w.check() is None          # CPU moved: the stall clock restarts here
    clock.now = 15.0
    assert w.check() is None
    clock.now = 20.0
    problem = w.check()
    assert problem is not None and "no progress" in problem


def test_group_members_reads_this_process_group():
    members = group_members(os.getpgrp())
    assert os.getpid() in members
    me = members[os.getpid()]
    assert me.state in "RS" and me.cpu_ticks >= 0 and not me.tracker


# ------------------------------------------------------------------ the real simulator

def _netx_file(tmp_path):
    from spikeport.exporters.loihi import netx
    from spikeport.exporters.loihi.target import compile_network

    rng = np.random.default_rng(0)
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([32])),
               "fc1": nir.Affine(rng.normal(0, 0.4, (64, 32)).astype(np.float32), np.zeros(64, np.float32)),
               "lif1": nir.LIF(tau=np.full(64, 1e-3), r=np.full(64, 10.0), v_leak=np.zeros(64),
                               v_threshold=np.full(64, 0.5)),
               "fc2": nir.Affine(rng.normal(0, 0.4, (10, 64)).astype(np.float32), np.zeros(10, np.float32)),
               "lif2": nir.LIF(tau=np.full(10, 1e-3), r=np.full(10, 10.0), v_leak=np.zeros(10),
                               v_threshold=np.full(10, 0.5)),
               "output": nir.Output(output_type=np.array([10]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")],
        metadata={"dt": 1e-4})
    path = tmp_path / "model.net"
    netx.write(compile_network(graph, {}), path)
    return path


def _runner_pid() -> int | None:
    """The Lava runner started by this process, if it is running."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = open(f"/proc/{entry}/cmdline", "rb").read()
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        if b"runner.py" in cmd and int(stat[stat.rindex(")") + 2:].split()[1]) == os.getpid():
            return int(entry)
    return None


def _attack_a_worker(sig: int, done: threading.Event, hit: list):
    """Wait until the simulation's workers run, then send ``sig`` to one of them."""
    while not done.is_set():
        runner = _runner_pid()
        workers = [] if runner is None else [
            pid for pid, m in group_members(runner).items() if pid != runner and not m.tracker]
        if len(workers) >= 3:
            time.sleep(1.0)  # inside the simulation, not its start-up
            os.kill(workers[-1], sig)
            hit.append((runner, workers[-1]))
            return
        time.sleep(0.2)


@pytest.mark.lava
@pytest.mark.parametrize("sig, words", [(signal.SIGKILL, "during the simulation"),
                                        (signal.SIGSTOP, "was stopped")])
def test_a_killed_or_stopped_simulator_process_ends_the_run_with_a_clear_error(tmp_path, sig, words):
    from spikeport.exporters.lava.bridge import LavaWorkerError, run_netx

    net = _netx_file(tmp_path)
    # long enough that the attack lands inside the simulation (about a minute undisturbed)
    spikes = (np.random.default_rng(1).random((300, 20, 32)) < 0.3).astype(np.uint8)
    done, hit = threading.Event(), []
    attacker = threading.Thread(target=_attack_a_worker, args=(sig, done, hit), daemon=True)
    attacker.start()
    try:
        # the time limit is only a backstop: the watchdog, not the timeout, must end the run
        with pytest.raises(LavaWorkerError) as err:
            run_netx(net, spikes, timeout=1200)
    finally:
        done.set()
    assert hit, "the simulation ended before a worker could be signalled"
    assert words in err.value.one_line() and " -- fix: " in err.value.one_line()
    runner, _ = hit[0]
    alive = {pid: m.state for pid, m in group_members(runner).items() if m.state != "Z"}
    assert alive == {}, f"processes of the ended run are left behind: {alive}"
