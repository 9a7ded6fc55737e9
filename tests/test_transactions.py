"""Artifacts as transactions (issue 11): a command's outputs are committed together or not at
all, whatever stops it, and a directory or a read-only path in the way is one clear line.

The interrupt tests stop a command at each step of its writing -- the k-th rename, sync,
removal or new directory under the work directory, for every k -- by raising
KeyboardInterrupt there (in process), and at chosen steps with real signals, SIGINT and
SIGKILL, that the command sends itself from the same hook (subprocesses: deterministic, no
timing). The old artifacts are sentinels, so the work directory is compared by hash with
its state before and after an uninterrupted run: right after the interrupt every file is
one or the other, and once the next command has recovered the directory (``transactions.recover``,
which every transaction runs first, or the ``claim`` of the next train) the whole directory
is exactly one or the other, with no temporary file left.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

from spikeport.cli import app
from spikeport.core import fs, interrupts, transactions
from spikeport.core.errors import RunDirError
from tests.cli_checks import assert_user_error

runner = CliRunner()
SENTINEL = b"an old artifact\n"
OLD_ARTIFACTS = ("model.nir", "model.net", "loihi_report.json", "model.onnx", "validation.json",
                 "estimate-reference.json", "cutoff_topk.json")
PLOTS = ("spikes-per-layer", "raster", "accuracy-vs-step", "energy")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def digest(d: Path) -> dict[str, str]:
    """sha256 of every file under ``d`` (hidden ones too: temporaries, records, locks)."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def hidden(d: Path) -> list[str]:
    """Spikeport's temporary files, records, journals and locks all have hidden names."""
    return sorted(str(p.relative_to(d)) for p in d.rglob(".*"))


class StopAt:
    """Count the write steps under ``root`` (renames, syncs, removals, new directories, the
    run-directory swap); with ``k``, stop at the k-th, before it happens: raise
    KeyboardInterrupt there (as if Python's own handler did), or with ``real_signal`` send
    the process a real SIGINT, which the command's handlers see."""

    def __init__(self, monkeypatch, root: Path, k: int | None = None, real_signal=False):
        self.root, self.k, self.real_signal, self.steps = str(root), k, real_signal, 0
        for name in ("replace", "rename", "unlink", "mkdir", "fsync"):
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name), name == "fsync"))
        monkeypatch.setattr(fs, "exchange", self._wrap(fs.exchange, False))

    def _wrap(self, real, any_path: bool):
        def step(*args, **kwargs):
            if any_path or str(args[0]).startswith(self.root):
                self.steps += 1
                if self.steps == self.k:
                    if not self.real_signal:
                        raise KeyboardInterrupt
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.01)  # the handler runs here, while this step waits
            return real(*args, **kwargs)
        return step


@dataclass
class Case:
    """A command run on a copy of the template work directory (``run/``, ``plots/``): the
    directory's digest before and after, its write steps, the first step after its commit
    point (the first rename of a new file into place, or the swap of the run directory)."""
    args: Callable[[Path], list]
    old: dict[str, str]
    new: dict[str, str]
    steps: int
    commit_at: int
    recover: Callable[[Path], None]


def _recover_run(work: Path) -> None:
    transactions.recover(work / "run")  # what the next transaction in the run does first


def _reclaim(work: Path) -> None:
    with transactions.claim(work / "run"):  # what the next train to the same --out does first
        pass


def _train_args(trained_run) -> Callable[[Path], list]:
    return lambda w: ["train", *trained_run.train_args, "--epochs", 1, "--out", w / "run",
                      "--force", "--no-progress"]


COMMANDS = {
    "export": (lambda w: ["export", w / "run", "--to", "loihi"], _recover_run),
    "estimate": (lambda w: ["estimate", w / "run", "--target", "reference", "--samples", 20,
                            "--plots", w / "plots"], _recover_run),
    "validate": (lambda w: ["validate", w / "run", "--targets", "reference,snntorch",
                            "--samples", 20], _recover_run),
}


@pytest.fixture(scope="module", autouse=True)
def cheap_plots():
    """Plots as a few bytes instead of rendered PNGs (a tenth of the time): their writing,
    not their drawing, is under test. The subprocesses do the same (HOOK)."""
    import matplotlib.figure

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", _cheap_savefig)
        yield


def _cheap_savefig(fig, fname, **kwargs):
    Path(fname).write_bytes(b"plot: " + fig.axes[0].get_title().encode())


@pytest.fixture(scope="module")
def template(trained_run, tmp_path_factory) -> Path:
    """The shared run with an old version of every artifact (sentinels) and old plots."""
    work = tmp_path_factory.mktemp("template")
    shutil.copytree(trained_run.path, work / "run")
    for name in OLD_ARTIFACTS:
        (work / "run" / name).write_bytes(SENTINEL + name.encode())
    (work / "plots").mkdir()
    for name in PLOTS:
        (work / "plots" / f"reference-{name}.png").write_bytes(SENTINEL + name.encode())
    return work


@pytest.fixture(scope="module")
def cases(template, trained_run, tmp_path_factory) -> dict[str, Case]:
    """Every command's old and new state, and its write steps, counted on one clean run."""
    out = {}
    commands = {**COMMANDS, "train": (_train_args(trained_run), _reclaim)}
    for name, (args, recover) in commands.items():
        work = tmp_path_factory.mktemp(f"reference-{name}")
        shutil.copytree(template, work, dirs_exist_ok=True)
        commit_at = []
        with pytest.MonkeyPatch.context() as mp:
            counter = StopAt(mp, work)
            save, swap = transactions.Transaction._save, transactions._swap

            def saved(tx, state):
                save(tx, state)
                if state == "committed":
                    commit_at.append(counter.steps + 1)

            def swapped(new, target):
                commit_at.append(counter.steps + 2)  # the exchange is the commit point
                return swap(new, target)

            mp.setattr(transactions.Transaction, "_save", saved)
            mp.setattr(transactions, "_swap", swapped)
            result = invoke(*args(work))
        assert result.exit_code == 0, result.output
        assert hidden(work) == [] and len(commit_at) == 1
        out[name] = Case(args, digest(template), digest(work), counter.steps, commit_at[0],
                         recover)
        assert out[name].new != out[name].old
    return out


@pytest.mark.parametrize("command", ["export", "estimate", "validate", "train"])
def test_an_interrupt_at_any_write_step_leaves_the_old_artifacts_or_all_new_ones(
        command, cases, template, tmp_path, monkeypatch):
    case = cases[command]
    outcomes = set()
    for k in range(1, case.steps + 1):
        work = tmp_path / f"k{k}"
        shutil.copytree(template, work)
        with monkeypatch.context() as mp:
            StopAt(mp, work, k)
            result = invoke(*case.args(work))
        assert result.exit_code == 130, (k, result.output)
        assert "Traceback" not in result.output
        committed = "interrupted after writing" in result.stderr
        assert committed or "interrupted: nothing was written" in result.stderr, result.stderr
        assert committed == (k >= case.commit_at), (k, result.stderr)
        now = digest(work)
        for f in case.old.keys() | case.new.keys():  # each file whole: old, new, or not yet
            if f in now and not Path(f).name.startswith("."):
                assert now[f] in (case.old.get(f), case.new.get(f)), (k, f)
        case.recover(work)
        assert digest(work) == (case.new if committed else case.old), (k, hidden(work))
        outcomes.add(committed)
    assert outcomes == {False, True}


def test_train_replaces_a_run_whole_without_renameat2_exchange(cases, template, tmp_path,
                                                               monkeypatch):
    """Where the file system cannot exchange two directories, the swap is two renames behind
    a journal: killed between them, the run directory is missing until the next train's
    claim puts the new one in place."""
    case = cases["train"]
    monkeypatch.setattr(fs, "exchange", lambda a, b: False)
    outcomes = set()
    for k in range(case.commit_at - 1, case.steps + 10):  # from the swap's journal on
        work = tmp_path / f"k{k}"
        shutil.copytree(template, work)
        with monkeypatch.context() as mp:
            stop = StopAt(mp, work, k)
            mp.setattr(fs, "exchange", lambda a, b: False)
            result = invoke(*case.args(work))
        if stop.steps < k:
            assert result.exit_code == 0
            break
        if not (work / "run").exists():
            outcomes.add("no run until the next claim")
        assert result.exit_code == 130, (k, result.output)
        committed = "interrupted after writing" in result.stderr
        _reclaim(work)
        assert digest(work) == (case.new if committed else case.old), (k, hidden(work))
        outcomes.add(committed)
    assert outcomes == {False, True, "no run until the next claim"}


# --------------------------------------------------------------------------- real signals

HOOK = """
import os, signal, sys
from spikeport.core import fs
root, sig, k = sys.argv[1], getattr(signal, sys.argv[2]), int(sys.argv[3])
calls = 0
def hook(real, any_path=False):
    def step(*args, **kwargs):
        global calls
        if any_path or str(args[0]).startswith(root):
            calls += 1
            if calls == k:
                os.kill(os.getpid(), sig)
        return real(*args, **kwargs)
    return step
for name in ("replace", "rename", "unlink", "mkdir", "fsync"):
    setattr(os, name, hook(getattr(os, name), name == "fsync"))
fs.exchange = hook(fs.exchange)
if "estimate" in sys.argv:  # the plots as in cheap_plots
    import matplotlib.figure
    from pathlib import Path
    matplotlib.figure.Figure.savefig = lambda fig, fname, **kwargs: Path(fname).write_bytes(
        b"plot: " + fig.axes[0].get_title().encode())
sys.argv = ["spikeport", *sys.argv[4:]]
from spikeport.cli import main
main()
"""


def signal_at(work: Path, args: list, sig: str, k: int):
    """Run the CLI in a subprocess that sends itself ``sig`` at its k-th write step."""
    return subprocess.run([sys.executable, "-c", HOOK, str(work), sig, str(k),
                           *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("command, kills", [("export", (1,)), ("estimate", (1,))])
def test_sigkill_around_the_commit_point(command, kills, cases, template, tmp_path):
    """Killed (SIGKILL) at step ``commit_at + d``: after the commit point, between two
    renames (estimate: a JSON in the run and plots in another directory), the next command
    in the run rolls the set forward (before it, back: as a dead command's staging record,
    test_a_dead_commands_staging_record_is_rolled_back)."""
    case = cases[command]
    for d in kills:
        work = tmp_path / f"kill{d}"
        shutil.copytree(template, work)
        proc = signal_at(work, case.args(work), "SIGKILL", case.commit_at + d)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        now = digest(work)
        for f, h in now.items():  # every file whole
            if not Path(f).name.startswith("."):
                assert h in (case.old.get(f), case.new.get(f)), (d, f)
        assert any(".spikeport-tx-" in f for f in now)  # the record the next command reads
        if d > 0:
            assert {f for f, h in now.items() if h == case.new.get(f) != case.old.get(f)}
            assert {f for f, h in now.items() if h == case.old.get(f) != case.new.get(f)}
        case.recover(work)
        assert digest(work) == (case.new if d > 0 else case.old), (d, hidden(work))


@pytest.mark.parametrize("d, written", [(-3, False), (-1, True), (1, True)])
def test_sigint_while_staging_writes_nothing_and_during_the_commit_waits_for_it(
        d, written, cases, template, tmp_path, monkeypatch):
    """A real SIGINT at step ``commit_at + d`` of an export: while files are being staged it
    stops the command with nothing written; from the committed record on, Ctrl-C waits for
    the commit to finish and the command says what it wrote."""
    case = cases["export"]
    work = tmp_path / "work"
    shutil.copytree(template, work)
    with monkeypatch.context() as mp:
        StopAt(mp, work, case.commit_at + d, real_signal=True)
        result = invoke(*case.args(work))
    assert result.exit_code == 130, result.output
    assert ("interrupted after writing" in result.stderr) == written, result.stderr
    assert digest(work) == (case.new if written else case.old), hidden(work)


def test_sigint_during_training_stops_between_batches_and_writes_nothing(
        cases, template, tmp_path, monkeypatch):
    """A real SIGINT while a batch trains only asks to stop: training stops before the next
    batch (never inside torch), nothing is written and the old run is untouched."""
    case = cases["train"]
    work = tmp_path / "work"
    shutil.copytree(template, work)
    seen, check = [], interrupts.check

    def batch_then_sigint():
        seen.append(interrupts.pending())
        check()
        if len(seen) == 2:  # during the second batch
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)

    monkeypatch.setattr(interrupts, "check", batch_then_sigint)
    result = invoke(*case.args(work))
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "interrupted: nothing was written"
    assert seen == [False, False, True]  # recorded, then raised at the next check
    assert digest(work) == case.old


def test_sigkill_around_the_run_swap_leaves_one_whole_run(cases, template, tmp_path):
    """Killed before the renameat2 exchange, after it, or before the old run is removed: the
    directory holds one whole run, old or new; the next train's claim removes the rest."""
    case = cases["train"]
    old_run = {f[4:]: h for f, h in case.old.items() if f.startswith("run/")}
    new_run = {f[4:]: h for f, h in case.new.items() if f.startswith("run/")}
    seen = []
    for k in (case.commit_at - 1, case.commit_at):
        work = tmp_path / f"k{k}"
        shutil.copytree(template, work)
        proc = signal_at(work, case.args(work), "SIGKILL", k)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        run = {f: h for f, h in digest(work / "run").items() if f != transactions.LOCK_FILE}
        assert run in (old_run, new_run), k
        seen.append(run == new_run)
        _reclaim(work)
        assert digest(work) == (case.new if seen[-1] else case.old), (k, hidden(work))
    assert seen == [False, True]


IMPORT_HOOK = """
import os, signal, sys
inside = []
def profile(frame, event, arg):  # Ctrl-C inside torch's C++ initialisation of c10d
    if event == "c_call" and getattr(arg, "__name__", "") == "_c10d_init":
        inside.append(1)
    elif event == "call" and inside:  # the Python that C++ calls back: it must not raise
        sys.setprofile(None)
        print("sigint inside _c10d_init", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
sys.setprofile(profile)
sys.argv = ["spikeport", *sys.argv[1:]]
from spikeport.cli import main
main()
"""


def test_ctrl_c_inside_torchs_cxx_initialisation_is_held_until_torch_is_loaded(trained_run,
                                                                             tmp_path):
    """A KeyboardInterrupt raised in Python that torch's C++ calls while ``import torch``
    runs (``torch._C._c10d_init``) aborted the process with "terminate called after throwing
    an instance of 'python_error'" (exit 134). The CLI loads torch with Ctrl-C held back,
    then stops with exit code 130 and nothing written."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", IMPORT_HOOK, "train", *trained_run.train_args,
                           "--out", str(out)], capture_output=True, text=True)
    if "sigint inside _c10d_init" not in proc.stderr:
        pytest.skip("this torch does not call back into Python from _c10d_init on import")
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines()[1:] == ["interrupted: nothing was written"], proc.stderr
    assert not out.exists() and hidden(tmp_path) == []


# --------------------------------------------------------------------------- exclusive claims


def test_a_second_train_to_the_same_out_fails_while_the_first_runs(trained_run, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from spikeport.core import transactions\n"
         "with transactions.claim(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()", out],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke("train", *trained_run.train_args, "--out", out)
        assert_user_error(result, f"run directory {out} is in use", f"pid {holder.pid}",
                          "choose another --out")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # killed, it holds nothing: the next train takes the claim over (no stale lock)
    result = invoke("train", *trained_run.train_args, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {**trained_run.summary, "run_dir": str(out)}
    assert hidden(tmp_path) == []


def test_two_commits_into_one_directory_take_turns(tmp_path, monkeypatch):
    """Two transactions committing into one run directory at once: each set lands whole,
    one after the other, never interleaved (the directory's lock)."""
    (tmp_path / "run").mkdir()
    renames: list[str] = []
    real_replace = os.replace

    def slow_replace(src, dst):
        if Path(dst).suffix == ".txt" and Path(src).suffix == ".tx":  # a commit's rename
            renames.append(threading.current_thread().name)
            time.sleep(0.05)  # the other commit would slip in here without the lock
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", slow_replace)

    def commit(tag: str) -> None:
        with transactions.transaction(tmp_path / "run") as tx:
            for name in ("a.txt", "b.txt", "c.txt"):
                tx.write_text(name, tag)

    threads = [threading.Thread(target=commit, args=(t,), name=t) for t in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert renames in (["one"] * 3 + ["two"] * 3, ["two"] * 3 + ["one"] * 3), renames
    last = renames[-1]
    assert [(tmp_path / "run" / n).read_text() for n in ("a.txt", "b.txt", "c.txt")] == [last] * 3
    assert hidden(tmp_path) == []


def test_a_commit_waits_for_the_lock_then_says_who_holds_it(own_run, monkeypatch):
    monkeypatch.setattr(transactions, "LOCK_WAIT", 0.2)
    lock = fs.Lock(own_run / transactions.LOCK_FILE, "a spikeport commit", own_run)
    lock.acquire(0)
    try:
        result = invoke("export", own_run, "--to", "nir")
    finally:
        lock.release()
    assert_user_error(result, f"{own_run} is busy", f"pid {os.getpid()}")
    assert not (own_run / "model.nir").exists() and hidden(own_run) == []


# --------------------------------------------------------------------------- in the way


def test_a_directory_where_an_artifact_goes_is_refused_and_nothing_changes(own_run):
    (own_run / "model.nir").write_bytes(SENTINEL)
    (own_run / "loihi_report.json").mkdir()
    before = digest(own_run)
    result = invoke("export", own_run, "--to", "loihi")
    assert_user_error(result, f"{own_run / 'loihi_report.json'} is a directory",
                      "move the directory")
    assert digest(own_run) == before and hidden(own_run) == []


def test_a_file_where_a_directory_goes_is_refused_before_the_work(own_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("estimate", own_run, "--target", "reference", "--plots", blocker / "plots")
    assert_user_error(result, f"{blocker} is a file, not a directory")
    assert not (own_run / "estimate-reference.json").exists()
    result = invoke("run", own_run, "--samples", 5, "--out", blocker / "rec.npz")
    assert_user_error(result, f"{blocker} is a file, not a directory")
    result = invoke("train", "--recipe", "digits", "--out", blocker / "run")
    assert_user_error(result, f"{blocker} is a file, not a directory")


@pytest.mark.parametrize("error, words", [
    (PermissionError(13, "Permission denied"), "permission denied"),
    (OSError(30, "Read-only file system"), "the file system is read-only"),
    (OSError(28, "No space left on device"), "no space left on the device"),
])
def test_a_read_only_or_full_run_directory_is_one_clear_line(own_run, monkeypatch, error,
                                                             words):
    """Root ignores file modes, so the refusal of the file system is simulated where the
    first file is created; it is found before the command's work."""
    def refuse(path):
        raise type(error)(error.errno, error.strerror, str(path))

    monkeypatch.setattr(fs, "create", refuse)
    before = digest(own_run)
    for args in (["export", own_run, "--to", "loihi"], ["validate", own_run, "--samples", 5],
                 ["estimate", own_run, "--target", "reference", "--samples", 5]):
        assert_user_error(invoke(*args), words, str(own_run))
    assert digest(own_run) == before


def test_a_full_disk_while_writing_removes_what_was_staged(own_run, monkeypatch):
    real = fs.fsync
    calls = []

    def full(path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path)

    monkeypatch.setattr(fs, "fsync", full)
    before = digest(own_run)
    assert_user_error(invoke("export", own_run, "--to", "loihi"), "no space left",
                      "no file was replaced")
    assert digest(own_run) == before and hidden(own_run) == []


def test_a_full_disk_while_training_names_the_run_not_its_staging_directory(
        trained_run, tmp_path, monkeypatch):
    real = fs.fsync

    def full(path):
        if Path(path).name.startswith(".checkpoint.pt"):
            raise OSError(28, "No space left on device")
        real(path)

    monkeypatch.setattr(fs, "fsync", full)
    out = tmp_path / "run"
    result = invoke("train", *trained_run.train_args, "--epochs", 1, "--out", out)
    assert_user_error(result, f"no space left on the device of {out} (writing checkpoint.pt)")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- units


def test_nested_transactions_join_and_files_elsewhere_commit_with_them(tmp_path):
    run, plots = tmp_path / "run", tmp_path / "plots"
    run.mkdir()
    with transactions.transaction(run) as tx:
        tx.write_text("a.txt", "a")
        with transactions.transaction(run) as inner:
            assert inner is tx
            inner.write_text("b.txt", "b")
        tx.write_bytes((plots / "p.png").absolute(), b"png")
        assert not (run / "a.txt").exists() and not plots.joinpath("p.png").exists()
    assert (run / "b.txt").read_text() == "b" and (plots / "p.png").read_bytes() == b"png"
    with pytest.raises(KeyboardInterrupt):
        with transactions.transaction(run) as tx:
            tx.write_text("a.txt", "newer")
            tx.write_bytes((tmp_path / "new-dir" / "x").absolute(), b"x")
            raise KeyboardInterrupt
    assert (run / "a.txt").read_text() == "a" and not (tmp_path / "new-dir").exists()
    assert hidden(tmp_path) == []


def test_a_dead_commands_staging_record_is_rolled_back(tmp_path):
    """A record in staging state whose pid is gone: its files are removed, nothing else."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "a.txt").write_text("old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    staged = run / f".a.txt.{dead}-0123abcd.tx"
    staged.write_text("new")
    (run / f".spikeport-tx-{dead}-0123abcd.json").write_text(json.dumps(
        {"format": transactions.TRANSACTION_FORMAT, "pid": int(dead), "state": "staging",
         "files": [[staged.name, "a.txt"]]}))
    (run / f".b.txt.{dead}-4567cdef.tmp").write_text("half")
    transactions.recover(run)
    assert digest(run) == {"a.txt": hashlib.sha256(b"old").hexdigest()}


def test_deferred_ctrl_c_is_raised_at_the_end_and_a_second_one_at_once():
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs: the press is recorded, not raised
            assert interrupts.pending()
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)  # the second press raises at once
            time.sleep(0.01)
            pytest.fail("a second Ctrl-C did not stop the block")
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            with interrupts.deferred(strict=True):  # a commit: every press waits for it
                for _ in range(2):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.01)
            interrupts.check()


def test_a_run_directory_replaced_during_a_command_is_refused(own_run, tmp_path):
    with pytest.raises(RunDirError, match="was replaced or removed while this command ran"):
        with transactions.transaction(own_run) as tx:
            tx.write_text("validation.json", "{}")
            shutil.move(own_run, tmp_path / "moved")
            (own_run).mkdir()


def test_a_command_that_only_reads_finishes_a_killed_commit_before_reading(own_run):
    """kill -9 after the commit point leaves a committed record with files still staged; a
    reader (`evaluate`, `run`) rolls it forward before reading, as a writer would, instead of
    reading half of the commit."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    metrics = json.loads((own_run / "metrics.json").read_text())
    new = {**metrics, "note": "written by the killed command"}
    staged = own_run / f".metrics.json.{dead}-0123abcd.tx"
    staged.write_text(json.dumps(new))
    (own_run / f".spikeport-tx-{dead}-0123abcd.json").write_text(json.dumps(
        {"format": transactions.TRANSACTION_FORMAT, "pid": int(dead), "state": "committed",
         "files": [[staged.name, "metrics.json"]]}))
    result = invoke("evaluate", own_run, "--json")
    assert result.exit_code == 0, result.output
    assert hidden(own_run) == []
    assert json.loads((own_run / "metrics.json").read_text()) == new


def test_a_file_that_cannot_be_replaced_is_found_before_the_commit_point(own_run):
    """An immutable file (chattr +i: not even root can rename over it) among a command's
    outputs: refused before the commit point, so no other output changes and nothing is
    left behind (before, the renames before it had happened and the record stayed)."""
    target = own_run / "loihi_report.json"
    assert invoke("export", own_run, "--to", "loihi").exit_code == 0
    if subprocess.run(["chattr", "+i", str(target)], capture_output=True).returncode != 0:
        pytest.skip("this file system or user cannot set the immutable flag (chattr +i)")
    try:
        before = digest(own_run)
        result = invoke("export", own_run, "--to", "loihi")
        assert_user_error(result, "immutable or append-only", "chattr -i")
        assert digest(own_run) == before and hidden(own_run) == []
    finally:
        subprocess.run(["chattr", "-i", str(target)])


def test_check_replaceable_refuses_only_what_a_rename_cannot_replace(tmp_path, monkeypatch):
    import errno

    f = tmp_path / "a.json"
    f.write_text("{}")
    f.chmod(0o444)
    fs.check_replaceable(f)              # read-only: a rename still replaces it
    fs.check_replaceable(tmp_path / "missing.json")
    real = os.open

    def flagged(path, flags, *a):
        if str(path) == str(f):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        return real(path, flags, *a)

    monkeypatch.setattr(os, "open", flagged)
    with pytest.raises(RunDirError, match="immutable or append-only"):
        fs.check_replaceable(f)
