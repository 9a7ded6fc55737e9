"""A watchdog over the Lava runner's process group.

Lava's CPU simulator runs every process of a network in a worker process forked from the
runner (one process group: the runner started a new session). When one of those workers
dies or is stopped, the runner does not notice: it waits forever on the worker's channel.
The bridge therefore polls the group and ends it when

- a worker that was seen during the simulation is gone or a zombie while the runner still
  reports the ``run`` phase (workers exit legitimately only once the run is over);
- any process of the group has been stopped (SIGSTOP, SIGTSTP) for ``stop_grace`` seconds;
- the group's total CPU time has not grown for ``stall_seconds`` (a deadlocked simulation
  blocks on semaphores and uses no CPU; a healthy one always computes somewhere).

It reads ``/proc`` only (Linux), and the runner's phase from the small JSON file the runner
writes at each phase change (``runner.py``: ``import``, ``build``, ``run``, ``stop``,
``write``). :func:`end_group` stops a group so that Python's shared-memory resource tracker
can still unlink the simulator's ``/dev/shm`` segments.
"""
from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

TRACKER = "resource_tracker"  # multiprocessing's resource tracker: not a simulator worker
# Lava forks its workers from the runner without exec, so they carry the runner's command
# line; helpers exec'd while Lava imports or compiles (ldconfig, compilers) do not, and come
# and go legitimately.
RUNNER_MARK = "runner.py"


@dataclass(frozen=True)
class Member:
    """One process of the group as /proc shows it."""
    pid: int
    state: str        # R, S, D, Z (zombie), T / t (stopped), ...
    cpu_ticks: int    # utime + stime
    tracker: bool     # multiprocessing's resource tracker
    worker: bool = True  # forked from the runner (its command line): a simulator process


def _read_member(pid: int) -> tuple[int, Member] | None:
    """(process group, Member) of ``pid``, or None if it is gone or unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    state, pgrp = fields[0], int(fields[2])
    ticks = int(fields[11]) + int(fields[12])
    tracker = TRACKER.encode() in cmdline
    return pgrp, Member(pid, state, ticks, tracker,
                        worker=RUNNER_MARK.encode() in cmdline and not tracker)


def group_members(pgid: int) -> dict[int, Member]:
    """Every process whose process group is ``pgid``."""
    members = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _read_member(int(entry))
            if found is not None and found[0] == pgid:
                members[found[1].pid] = found[1]
    return members


def read_phase(path: Path | None) -> str | None:
    """The runner's current phase from its progress file (None before the first)."""
    if path is None:
        return None
    try:
        return json.loads(path.read_text()).get("phase")
    except (OSError, ValueError, AttributeError):
        return None  # not written yet, or caught half-written: ask again next poll


@dataclass
class Watchdog:
    """Polled by the bridge while the runner (the group leader ``pgid``) runs;
    :meth:`check` returns a problem description once the group must be ended."""
    pgid: int
    progress: Path | None = None
    stall_seconds: float = 120.0
    stop_grace: float = 3.0
    read_group: Callable[[int], dict[int, Member]] = group_members
    clock: Callable[[], float] = time.monotonic
    _workers: set[int] = field(default_factory=set)
    _stopped_since: dict[int, float] = field(default_factory=dict)
    _cpu: int = -1
    _cpu_since: float | None = None

    def check(self) -> str | None:
        now = self.clock()
        members = self.read_group(self.pgid)
        phase = read_phase(self.progress)
        return (self._dead_worker(members, phase) or self._stopped(members, now)
                or self._stalled(members, now))

    def _dead_worker(self, members: dict[int, Member], phase: str | None) -> str | None:
        workers = {pid for pid, m in members.items()
                   if pid != self.pgid and m.worker and not m.tracker}
        if phase != "run":  # only processes seen during the simulation are its workers
            self._workers.clear()
            return None
        for pid in sorted(self._workers | workers):
            m = members.get(pid)
            if m is None or m.state == "Z":
                return (f"a Lava simulator process (pid {pid}) "
                        f"{'died' if m is None else 'exited'} during the simulation")
        self._workers |= workers
        return None

    def _stopped(self, members: dict[int, Member], now: float) -> str | None:
        for pid, m in members.items():
            if m.state in ("T", "t"):
                since = self._stopped_since.setdefault(pid, now)
                if now - since >= self.stop_grace:
                    return f"a Lava simulator process (pid {pid}) was stopped (SIGSTOP)"
            else:
                self._stopped_since.pop(pid, None)
        return None

    def _stalled(self, members: dict[int, Member], now: float) -> str | None:
        cpu = sum(m.cpu_ticks for m in members.values())
        if cpu != self._cpu or self._cpu_since is None:
            self._cpu, self._cpu_since = cpu, now
            return None
        if now - self._cpu_since >= self.stall_seconds:
            return (f"the Lava simulator made no progress for {now - self._cpu_since:.0f} s "
                    "(no CPU time used by any of its processes)")
        return None


def end_group(pgid: int, grace: float = 5.0, read_group=group_members) -> None:
    """Kill every process of the group but the resource tracker, give the tracker up to
    ``grace`` seconds to unlink the shared memory of the killed processes (it exits once
    every writer is gone), then kill whatever is left."""
    def kill(pids):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    kill(pid for pid, m in read_group(pgid).items() if not m.tracker)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        left = {pid: m for pid, m in read_group(pgid).items() if m.state != "Z"}
        if not left:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
