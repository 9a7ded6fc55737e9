"""Commands that write several files commit them together; a run directory is replaced whole.

:func:`transaction` stages the files of one command beside their final paths and renames
them into place together under the directory's lock, with a record that lets the next
command (or :func:`recover`) roll a killed commit forward or back. :func:`claim` holds a
run directory for the one command that builds it whole, and :class:`StagedDir` builds it
under a hidden sibling name and swaps it into place. The file-system primitives below
them (temporary names, fsync, errors that name the path and the fix) are in
:mod:`spikeport.core.fs`; single files are written by :func:`spikeport.core.io.atomic_write`.
"""
from __future__ import annotations

import contextvars
import json
import os
import re
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from spikeport.core import fs, interrupts
from spikeport.core.errors import RunDirError
from spikeport.core.io import require_run_dir

LOCK_FILE = ".spikeport.lock"
LOCK_WAIT = 60.0  # seconds a commit waits for another command's commit into the same directory
TRANSACTION_FORMAT = "spikeport-transaction/1"
# the names of what a command leaves while it works: its transaction record, the temporary
# files of atomic_write (.tmp) and of a transaction (.tx), the staging directory of a run
# (.staging); each carries the pid of its command, so a leftover of a dead one is known
_RECORD = re.compile(r"^\.spikeport-tx-(\d+)-[0-9a-f]+\.json$")
_TEMP = re.compile(r"^\..+\.(\d+)-[0-9a-f]+\.(tmp|tx|staging)$")

_COMMITTED: list[Path] = []  # what the commits of this process put in place, in order
_OPEN: contextvars.ContextVar[tuple["Transaction", ...]] = contextvars.ContextVar(
    "spikeport_open_transactions", default=())


class StagedDir:
    """Build a directory under a temporary sibling name; :meth:`commit` swaps it into place.

    Until commit, an existing directory at the target path is untouched; if the block fails
    the staging directory is removed and the old one survives. The swap is one
    ``renameat2(RENAME_EXCHANGE)`` where the file system has it (Linux: ext4, xfs, btrfs,
    tmpfs): a reader sees the old directory or the new one, never none. Elsewhere it is two
    renames behind a journal (``.NAME.spikeport-swap.json``), and a command killed between
    them leaves the journal, from which the next :func:`claim` of the path puts the new
    directory in place. Hold the path's :func:`claim` around the whole build. As a context
    manager: commit when the block succeeds, discard when it fails.
    """

    def __init__(self, target: str | Path):
        self.target = Path(target)
        parent = fs.absolute(self.target).parent
        fs.prepare_dir(parent)
        self.path = parent / fs.temp_name(self.target.name, "staging")
        with fs.os_errors(self.target):
            os.mkdir(self.path)
        fs.LIVE.add(str(self.path))

    def commit(self) -> Path:
        target = fs.absolute(self.target)
        if target.exists() and not target.is_dir():
            raise RunDirError(f"{target} exists and is not a directory", "choose another --out path")
        lock = fs.Lock(target / LOCK_FILE, "spikeport train", target) if target.is_dir() else None
        if lock is not None:
            lock.acquire(LOCK_WAIT)  # no export commits into the old directory meanwhile
        try:
            with interrupts.deferred(strict=True), fs.os_errors(target):
                old = _swap(self.path, target)
                _COMMITTED.append(self.target)
                fs.fsync_dir(target.parent)
        except BaseException:
            if _swap_journal(target).exists():  # half swapped: the next claim() finishes it
                _COMMITTED.append(self.target)
            raise
        finally:
            if lock is not None:
                lock.release()
        if old is not None:
            fs.remove(old)  # the replaced run; a leftover of a killed command is swept by claim()
        fs.LIVE.discard(str(self.path))
        return self.target

    def discard(self) -> None:
        """Remove the staging directory (before the swap: the new run; after it: the old
        one), unless a swap stopped half-way: then its journal owns both directories and
        the next :func:`claim` of the path finishes it."""
        if not _swap_journal(fs.absolute(self.target)).exists():
            fs.remove(self.path)
        fs.LIVE.discard(str(self.path))

    def __enter__(self) -> "StagedDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()
            if isinstance(exc, RunDirError) and str(self.path) in exc.problem:
                # name the run directory, not its hidden staging name
                raise RunDirError(exc.problem.replace(str(self.path), str(self.target)),
                                  exc.fix and exc.fix.replace(str(self.path), str(self.target))
                                  ) from None


def committed() -> list[Path]:
    """Every path the commits of this process have put in place so far, in order (the CLI
    names them when an interrupt comes after a commit)."""
    return list(_COMMITTED)


@contextmanager
def transaction(directory: str | Path) -> Iterator["Transaction"]:
    """Commit the files a block writes together, or none of them.

    ``with transaction(run_dir) as tx:`` then ``tx.write_json(name, obj)``,
    ``tx.write_text``, ``tx.write_bytes`` or ``tx.write_with(name, write)`` (``write(tmp)``
    writes the file); ``name`` is relative to ``directory``, or an absolute path for a file
    elsewhere (a plots directory). Each file is written under a temporary name beside its
    final path as the block runs; when the block ends without an exception they are renamed
    into place together, and when it fails (or is interrupted) they are removed and every
    old file is untouched. A transaction opened on a directory that already has one open in
    this context joins it (the outer one commits), so a helper that writes RUN/model.nir
    inside a command's transaction adds to it.

    Crash semantics. The transaction keeps a record in ``directory``
    (``.spikeport-tx-PID-ID.json``) listing every staged file before it is created. The
    commit takes the directory's lock (``.spikeport.lock``, an flock), rewrites the record
    as *committed* (one atomic rename: the commit point), renames the files, then deletes
    the record; Ctrl-C waits until that is done. A command killed at any moment (kill -9,
    power loss: every file and record is fsynced) leaves either a record in *staging*
    state, whose files the next transaction in the directory (or :func:`recover`) deletes
    once the command's pid is gone -- the old files were never touched, so this rolls back
    -- or a *committed* record, whose remaining renames it performs -- rolling forward.
    Forward, because at the commit point every new file is complete on disk, while the old
    ones may already be replaced, and rolling back would need a copy of each; each rename
    is idempotent (a staged file that is gone was renamed already). Two commands committing
    into one directory take turns on the lock: their sets never interleave.

    A directory, a file or a read-only path in the way is a :class:`RunDirError`, raised
    when the file is staged (or, for the directory itself, when the block opens).
    """
    directory = Path(directory)
    real = os.path.realpath(directory)
    for tx in _OPEN.get():
        if os.path.realpath(tx.directory) == real:
            yield tx  # the outer block commits
            return
    tx = Transaction(directory)
    token = _OPEN.set(_OPEN.get() + (tx,))
    try:
        tx._open()
        yield tx
        tx._commit()
    except BaseException:
        tx._discard()
        raise
    finally:
        _OPEN.reset(token)


def check_dir_path(path: str | Path, option: str) -> Path:
    """Refuse a ``path`` where a command will write a directory that is a file or lies
    under one, before the command's work rather than after it."""
    path = Path(path)
    blocked = next((p for p in [path, *path.parents] if os.path.lexists(p) and not p.is_dir()),
                   None)
    if blocked is not None:
        raise RunDirError(f"{option} {path}: {blocked} is a file, not a directory",
                          f"pass a directory for {option}, or move {blocked} away")
    return path


def open_run(path: str | Path) -> Path:
    """``path`` checked as a run directory (:func:`spikeport.core.io.require_run_dir`), with
    what a killed command left in it finished first (:func:`recover`): a command that only
    reads a run sees its files as one commit left them, never half of one."""
    path = require_run_dir(path)
    recover(path)
    return path


@contextmanager
def run_transaction(run_or_graph: str | Path) -> Iterator["Transaction | None"]:
    """:func:`transaction` on ``run_or_graph`` if it is a directory (which must be a run
    directory); None for anything else, such as a graph file, where a command writes
    nothing."""
    if not Path(run_or_graph).is_dir():
        yield None
        return
    with transaction(require_run_dir(run_or_graph)) as tx:
        yield tx


class Transaction:
    """The files of one command, staged beside their final paths and committed together;
    made by :func:`transaction`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.record = fs.absolute(directory) / f".spikeport-tx-{self.id}.json"
        self.files: list[tuple[Path, Path]] = []  # (staged, final), absolute
        self.committed = False
        self._identity: tuple[int, int] | None = None
        self._made: list[Path] = []  # directories this transaction created
        self._swept: set[Path] = set()

    def path(self, name: str | Path) -> Path:
        """The final path of ``name`` (relative to the transaction's directory, or absolute)."""
        return self.directory / name

    def write_with(self, name: str | Path, write: Callable[[Path], None]) -> Path:
        """Stage one file: ``write(tmp)`` writes it under a temporary name beside its final
        path. Returns the final path; writing a name twice keeps the last version."""
        final = self.path(name)
        target = fs.absolute(final)
        self._made += fs.prepare_file(target)
        self._drop(target)
        if target.parent not in self._swept:  # leftovers of dead commands in another directory
            _sweep(target.parent, ("tmp",))
            self._swept.add(target.parent)
        staged = target.with_name(fs.temp_name(target.name, "tx"))
        fs.LIVE.add(str(staged))
        self.files.append((staged, target))
        self._save("staging")  # listed before it exists: a kill leaves nothing unlisted
        with fs.os_errors(target):
            fs.create(staged)
            write(staged)
            fs.fsync(staged)
        return final

    def write_bytes(self, name: str | Path, data: bytes) -> Path:
        return self.write_with(name, lambda p: p.write_bytes(data))

    def write_text(self, name: str | Path, text: str) -> Path:
        return self.write_with(name, lambda p: p.write_text(text))

    def write_json(self, name: str | Path, obj: Any) -> Path:
        """The same bytes as :func:`write_json`."""
        return self.write_text(name, json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def _drop(self, target: Path) -> None:
        for entry in [e for e in self.files if e[1] == target]:
            fs.remove(entry[0])
            fs.LIVE.discard(str(entry[0]))
            self.files.remove(entry)

    def _save(self, state: str) -> None:
        home = fs.absolute(self.directory)
        record = {"format": TRANSACTION_FORMAT, "pid": os.getpid(), "state": state,
                  "files": [[_to_record(home, s), _to_record(home, f)] for s, f in self.files]}
        with fs.os_errors(home):  # the directory is what the user can fix, not the record
            fs.replace_file(self.record, json.dumps(record, indent=1).encode())

    def _open(self) -> None:
        home = fs.absolute(self.directory)
        self._made += fs.prepare_dir(home)
        self._identity = fs.identity(home)
        recover(home)
        fs.LIVE.add(str(self.record))
        self._save("staging")  # also finds a read-only directory before the command's work

    def _commit(self) -> None:
        home = fs.absolute(self.directory)
        if not self.files:
            self._discard()
            return
        try:
            with _recovered(home):
                try:
                    same = fs.identity(home) == self._identity
                except OSError:
                    same = False
                if not same or not self.record.is_file():
                    raise RunDirError(f"{self.directory} was replaced or removed while this "
                                      "command ran (by `spikeport train --force`?)",
                                      "run the command again")
                for _, final in self.files:
                    fs.prepare_file(final)  # nothing has become a directory meanwhile
                    fs.check_replaceable(final)  # no rename after the commit point can fail
                self._save("committed")  # the commit point
                self.committed = True
                _COMMITTED.extend(f for _, f in self.files)  # in place now, or by recover()
                with fs.os_errors(home):
                    for staged, final in self.files:
                        os.replace(staged, final)
                    for d in {f.parent for _, f in self.files}:
                        fs.fsync_dir(d)
                    os.unlink(self.record)
        finally:
            self._forget()

    def _discard(self) -> None:
        """Undo: remove the staged files and the record, unless the commit point was passed
        (then the record rolls the commit forward, see :func:`transaction`)."""
        try:
            if self.committed or (fs.read_json(self.record) or {}).get("state") == "committed":
                return
            with interrupts.deferred(strict=True):
                for staged, _ in self.files:
                    fs.remove(staged)
                fs.remove(self.record)
                for d in reversed(self._made):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
        finally:
            self._forget()  # what is left is a dead command's: the next recover() removes it

    def _forget(self) -> None:
        for staged, _ in self.files:
            fs.LIVE.discard(str(staged))
        fs.LIVE.discard(str(self.record))


def recover(directory: str | Path) -> None:
    """Finish what killed commands left in ``directory``: roll committed transactions
    forward, remove the staged files of uncommitted ones once their command is gone, and
    the temporary files of dead commands (:func:`transaction`). Every transaction does this
    when it opens; call it to tidy a directory by hand."""
    home = fs.absolute(Path(directory))
    with fs.os_errors(home):
        if not home.is_dir() or not _has_leftovers(home):
            return
    with _recovered(home):
        pass


@contextmanager
def _recovered(home: Path) -> Iterator[None]:
    """Hold the directory's lock, Ctrl-C deferred, with what killed commands left in it
    finished (:func:`recover`); a commit happens inside."""
    lock = fs.Lock(home / LOCK_FILE, "a spikeport commit", home)
    lock.acquire(LOCK_WAIT)
    try:
        with interrupts.deferred(strict=True):
            _recover_locked(home)
            yield
    finally:
        lock.release()


def _has_leftovers(home: Path) -> bool:
    for name in os.listdir(home):
        if name == LOCK_FILE:
            return True
        m = _RECORD.match(name)
        if m and (not fs.owner_alive(home / name, int(m.group(1)))
                  or (fs.read_json(home / name) or {}).get("state") == "committed"):
            return True
        m = _TEMP.match(name)
        if m and m.group(2) != "staging" and not fs.owner_alive(home / name, int(m.group(1))):
            return True
    return False


def _recover_locked(home: Path) -> None:
    """:func:`recover`, with the directory's lock held."""
    with fs.os_errors(home):
        for name in sorted(os.listdir(home)):
            m = _RECORD.match(name)
            record = home / name
            data = fs.read_json(record) if m else None
            if not data or data.get("format") != TRANSACTION_FORMAT:
                continue
            files = [(_from_record(home, s), _from_record(home, f)) for s, f in data["files"]]
            if data["state"] == "committed":
                for staged, final in files:
                    if staged.exists():
                        os.replace(staged, final)
                for d in {f.parent for _, f in files}:
                    fs.fsync_dir(d)
                os.unlink(record)
            elif not fs.owner_alive(record, int(m.group(1))):
                for staged, _ in files:
                    fs.remove(staged)
                os.unlink(record)
        _sweep(home, ("tmp", "tx"))


def _sweep(directory: Path, kinds: tuple[str, ...]) -> None:
    """Remove the temporary files of ``kinds`` that dead commands left in ``directory``."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = _TEMP.match(name)
        if m and m.group(2) in kinds and not fs.owner_alive(directory / name, int(m.group(1))):
            fs.remove(directory / name)


@contextmanager
def claim(path: str | Path, command: str = "train") -> Iterator[Path]:
    """Hold the run directory ``path`` (existing or not) for one command that builds it
    whole (``spikeport train``): a second claim of the same path, by any process, fails at
    once with a :class:`RunDirError` naming the holder. The lock is an flock on
    ``.NAME.spikeport-claim`` beside the directory; the kernel releases it when its holder
    exits or is killed, so a crash never leaves a stale claim (the file of a dead holder is
    taken over). Taking the claim finishes a replacement that a killed command left half
    done (:class:`StagedDir`) and removes the staging directories of dead commands."""
    target = fs.absolute(Path(path))
    fs.prepare_dir(target.parent)
    lock = fs.Lock(target.with_name(f".{target.name}.spikeport-claim"), f"spikeport {command}",
                 target)
    lock.acquire(0)
    try:
        with interrupts.deferred(strict=True), fs.os_errors(target):
            _finish_swap(target)
            prefix = f".{target.name}."
            for name in os.listdir(target.parent):
                m = _TEMP.match(name)
                if (m and name.startswith(prefix) and m.group(2) in ("staging", "tmp")
                        and not fs.owner_alive(target.parent / name, int(m.group(1)))):
                    fs.remove(target.parent / name)
        if target.is_dir():
            recover(target)  # what a killed command left inside the old run
        yield Path(path)
    finally:
        lock.release()


def _swap_journal(target: Path) -> Path:
    return target.with_name(f".{target.name}.spikeport-swap.json")


def _swap(new: Path, target: Path) -> Path | None:
    """Put the directory ``new`` at ``target``; returns where the old directory went (to be
    deleted), or None if there was none."""
    if not os.path.lexists(target):
        os.rename(new, target)
        return None
    if fs.exchange(new, target):
        return new
    old = target.with_name(fs.temp_name(target.name, "staging"))
    journal = _swap_journal(target)
    fs.replace_file(journal, json.dumps({"new": new.name, "old": old.name}).encode())
    os.rename(target, old)
    os.rename(new, target)
    os.unlink(journal)
    return old


def _finish_swap(target: Path) -> None:
    """Complete the two-rename replacement of ``target`` its journal describes: a journal
    exists only once the new directory is complete, so this always rolls forward."""
    journal = _swap_journal(target)
    data = fs.read_json(journal)
    if data is None:
        return
    new, old = target.with_name(data["new"]), target.with_name(data["old"])
    if new.is_dir():
        if os.path.lexists(target) and not os.path.lexists(old):
            os.rename(target, old)
        os.rename(new, target)
    os.unlink(journal)
    fs.remove(old)


def _to_record(home: Path, path: Path) -> str:
    rel = os.path.relpath(path, home)
    return str(path) if rel.startswith("..") else rel


def _from_record(home: Path, text: str) -> Path:
    return home / text  # an absolute path stays itself
