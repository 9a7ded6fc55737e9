"""Run netx networks in the Lava simulator from the main (Python 3.11+) process.

The Lava stack lives in its own Python 3.10 environment (``exporters/lava/env.py``); this
module talks to it through files only (docs/architecture.md, "The Lava runtime boundary"): it
writes the request and an .npz of input spikes to a temporary directory, runs
``runner.py`` with the environment's python in a subprocess, and reads back one spike array
per netx block plus a JSON status. All samples go through one Lava run (state reset between
samples; the time layout is documented in ``runner.py``).

Errors are typed: a missing or incomplete environment raises
:class:`~spikeport.exporters.lava.env.LavaEnvError` (with the install command), a failed run
:class:`LavaRunError` carrying the runner's one-line message, a run over its time limit
:class:`LavaTimeoutError`. No multiprocessing is used here (SEMANTICS.md 9).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from spikeport.exporters.lava.env import LavaEnvError, ensure_ready
from spikeport.exporters.lava.watchdog import Watchdog, end_group
from spikeport.exporters.targets import CANCEL
from spikeport.core.errors import SpikeportError

RUNNER = Path(__file__).resolve().parent / "runner.py"
STOP_GRACE = 20.0  # seconds a timed-out runner gets to stop Lava cleanly before it is killed
POLL_SECONDS = 0.5  # how often the bridge looks at the runner's process group
STALL_SECONDS = 120.0  # no CPU time used by any simulator process for this long: ended

__all__ = ["LavaEnvError", "LavaRunError", "LavaTimeoutError", "LavaWorkerError", "LavaRecording",
           "run_netx"]


class LavaRunError(SpikeportError):
    """A Lava simulation that failed; ``problem`` holds the runner's message.

    ``details`` holds the runner's traceback (or the tail of its stderr) for debugging.
    """

    def __init__(self, problem: str, fix: str | None = None, details: str = ""):
        super().__init__(problem, fix)
        self.details = details


class LavaTimeoutError(LavaRunError):
    """A Lava simulation that did not finish within its time limit (it was killed)."""


class LavaWorkerError(LavaRunError):
    """A Lava simulation ended by the watchdog: one of its processes died or was stopped,
    or none of them made progress (the whole process group was ended)."""


class LavaRecording(dict):
    """``{"layer_0": (B, W, *shape), ...}`` in netx block order (the last is the output),
    uint8 spikes in spikeport's layout, plus the runner's ``status`` dict (steps, seconds,
    window ``W``, ``reset_interval``, and per layer its ``latency`` c_i: the model's step t
    of layer i is at index ``c_i + t`` of the window)."""

    def __init__(self, arrays: dict[str, np.ndarray], status: dict):
        super().__init__(arrays)
        self.status = status

    @property
    def output(self) -> np.ndarray:
        return self[f"layer_{len(self) - 1}"]

    @property
    def latencies(self) -> list[int]:
        return [layer["latency"] for layer in self.status.get("layers", [])]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _clean_env() -> dict[str, str]:
    """The environment for the Lava interpreter: nothing from the main interpreter leaks in."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"):
        env.pop(var, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def run_netx(net_path: str | os.PathLike, spikes: np.ndarray, num_layers: int | None = None,
             timeout: float = 600, stall_seconds: float = STALL_SECONDS) -> LavaRecording:
    """Run the netx file on ``spikes`` (B, T, *input_shape) of 0/1 in one Lava run.

    Returns a :class:`LavaRecording` (a dict of per-layer arrays of shape
    (B, W, *layer_shape), W = T + latency of the last layer). ``num_layers`` is passed to
    ``netx.hdf5.Network`` (stop before unsupported trailing layers). ``timeout`` in seconds
    bounds the whole subprocess, Lava import and compilation included. A watchdog
    (:mod:`~spikeport.exporters.lava.watchdog`) ends the run early, with a
    :class:`LavaWorkerError`, when a simulator process dies or is stopped, or when none of
    them uses CPU time for ``stall_seconds``.
    """
    python = ensure_ready()
    net = Path(net_path).expanduser().resolve()
    spikes = _checked_input(net, spikes)
    with tempfile.TemporaryDirectory(prefix="spikeport-lava-") as tmpdir:
        tmp = Path(tmpdir)
        request = {
            "net": str(net),
            "input": str(tmp / "input.npz"),
            "output": str(tmp / "output.npz"),
            "status": str(tmp / "status.json"),
            "num_layers": None if num_layers is None else int(num_layers),
            "progress": str(tmp / "progress.json"),
        }
        np.savez(request["input"], spikes=spikes.astype(np.uint8))
        (tmp / "request.json").write_text(json.dumps(request, indent=1))
        cmd = [str(python), str(RUNNER), str(tmp / "request.json")]
        # output to files, not pipes: the bridge polls the runner instead of reading it, and
        # a full pipe would block a chatty runner
        with open(tmp / "stdout.txt", "w+") as out, open(tmp / "stderr.txt", "w+") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=tmp,
                                    env=_clean_env(), start_new_session=True)
            dog = Watchdog(proc.pid, Path(request["progress"]), stall_seconds=stall_seconds)
            _wait(proc, dog, timeout, net, spikes.shape, err)
            stdout, stderr = (tmp / "stdout.txt").read_text(), (tmp / "stderr.txt").read_text()
        status_file = Path(request["status"])
        status = json.loads(status_file.read_text()) if status_file.is_file() else None
        _raise_on_failure(proc.returncode, status, stdout, stderr, net, python)
        with np.load(request["output"]) as data:
            arrays = {key: data[key] for key in data.files}
    order = sorted(arrays, key=lambda k: int(k.rsplit("_", 1)[1]))
    return LavaRecording({k: arrays[k] for k in order}, status)


def _checked_input(net: Path, spikes) -> np.ndarray:
    if not net.is_file():
        raise LavaRunError(f"netx file not found: {net}",
                           "export the network first, or pass the path of an existing .net")
    spikes = np.asarray(spikes)
    if spikes.ndim < 3 or spikes.shape[0] < 1 or spikes.shape[1] < 1:
        raise LavaRunError(
            f"input spikes must have shape (samples, time, *input_shape), got {spikes.shape}",
            "add the sample axis (spikes[None]) or the time axis")
    if not np.isin(spikes, (0, 1)).all():
        raise LavaRunError("input spikes must be 0/1", "binarise the input spikes")
    return spikes


def _wait(proc: subprocess.Popen, dog: Watchdog, timeout: float, net: Path, shape,
          err) -> None:
    """Return once the runner exits. Until then, poll it: a watchdog finding (a simulator
    process died, was stopped, or made no progress) or the time limit ends the whole process
    group and raises; so does any exception here (Ctrl-C) before it propagates."""
    deadline = time.monotonic() + timeout
    cancel = CANCEL.get()  # set when this run is one shard of several (run_in_batches)
    try:
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt  # another shard failed or was interrupted
            problem = dog.check()
            if problem is not None:
                end_group(proc.pid)
                proc.wait()
                raise LavaWorkerError(
                    f"Lava run of {net.name} stopped: {problem}",
                    "run it again; if it recurs, check the machine's memory and /dev/shm "
                    "(`df -h /dev/shm`) and that nothing else signals the simulator",
                    details=_tail(_read(err)))
            if time.monotonic() > deadline:
                _stop_after_timeout(proc)
                steps = shape[0] * shape[1]
                raise LavaTimeoutError(
                    f"Lava run of {net.name} ({shape[0]} samples x {shape[1]} steps"
                    f" = {steps} input steps) did not finish within {timeout:g} s and was killed",
                    "raise the timeout or run fewer samples or steps (the Lava CPU simulator "
                    "does roughly 25-100 steps per second)",
                    details=_tail(_read(err)))
    except BaseException:
        end_group(proc.pid, grace=1.0)
        proc.wait()
        raise
    end_group(proc.pid, grace=1.0)  # in case a failed run left Lava workers behind


def _stop_after_timeout(proc: subprocess.Popen) -> None:
    """SIGINT first: the runner stops Lava, whose shared-memory manager then frees its
    /dev/shm segments; whatever is left after a grace period is killed."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    end_group(proc.pid)
    proc.wait()


def _read(f) -> str:
    f.flush()
    f.seek(0)
    return f.read()


def _raise_on_failure(returncode: int, status: dict | None, stdout: str, stderr: str,
                      net: Path, python) -> None:
    """A :class:`LavaRunError` with the runner's own message if the run did not succeed."""
    if returncode == 0 and status and status.get("ok"):
        return
    if status and status.get("error"):
        raise LavaRunError(
            f"Lava run of {net.name} failed: {_one_line(status['error'])}",
            "check the netx file and the input shape; the runner's traceback is in "
            "the error's .details",
            details=status.get("traceback", ""))
    last = _tail(stderr, 1) or f"exit code {returncode}"
    raise LavaRunError(
        f"Lava runner for {net.name} exited with code {returncode} without a "
        f"status: {_one_line(last)}",
        f"run `{python} {RUNNER} REQUEST.json` by hand to see the full output",
        details=_tail(stderr + "\n" + stdout, 40))


def _main(argv: list[str]) -> int:  # pragma: no cover - a debugging aid
    """``python -m spikeport.exporters.lava.bridge NET.net SPIKES.npy [num_layers]``"""
    if len(argv) < 2:
        print(_main.__doc__, file=sys.stderr)
        return 2
    try:
        rec = run_netx(argv[0], np.load(argv[1]),
                       num_layers=int(argv[2]) if len(argv) > 2 else None)
    except SpikeportError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(rec.status, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
