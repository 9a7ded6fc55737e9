"""Run directories, atomic writes, transactions and safe checkpoint loading.

A run directory holds ``config.yaml`` (the resolved recipe), ``checkpoint.pt`` (the model's
state dict) and ``metrics.json``; later commands add artifacts next to them. Every file is
written to a temporary name in the same directory and then renamed, so an interrupted
command never leaves a half-written file; the files of one command are committed together
(:func:`transaction`) and a run directory is replaced as a whole (:class:`StagedDir`), so
an interrupted or killed command leaves every artifact as it was or all of them new.
Checkpoints hold tensors only and are loaded with ``torch.load(weights_only=True)``:
loading never unpickles code.

A directory, a file or a read-only path in the way of a write is a :class:`RunDirError`
naming the path and the fix, never an ``OSError``.
"""
from __future__ import annotations

import contextvars
import ctypes
import dataclasses
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from spikeport.core import interrupts
from spikeport.core.errors import CheckpointError, RunDirError

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
CHECKPOINT_FORMAT = "spikeport-checkpoint/1"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place.

    One file on its own; the files of one command go through :func:`transaction`."""
    path = Path(path)
    _prepare_file(path)
    tmp = path.with_name(_temp_name(path.name, "tmp"))
    try:
        with _live(tmp), _os_errors(path):
            _create(tmp)
            write(tmp)
            _fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], meta: dict) -> Path:
    payload = {"format": CHECKPOINT_FORMAT, "meta": meta,
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}

    def save(p: Path) -> None:
        with open(p, "wb") as f:  # a file object: the archive inside is not named after p,
            torch.save(payload, f)  # a temporary name, so the same weights give the same bytes

    return atomic_write(path, save)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, meta) of a checkpoint written by :func:`save_checkpoint`, its structure
    checked: a mapping with the format key, ``state_dict`` mapping parameter names to dense
    real tensors of finite values, ``meta`` a mapping. Whether the tensors fit a model is
    the caller's check (``spikeport.training.loop.load_run``)."""
    path = Path(path)
    retrain = "retrain the run with `spikeport train --force`"
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory",
                              "move the directory away, then retrain the run with "
                              "`spikeport train --force`")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}",
                              "train the run first with `spikeport train`, or pass the right run directory")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure to parse is a corrupt file, whatever torch raises
        raise CheckpointError(f"checkpoint {path} is corrupt or not a spikeport checkpoint "
                              f"({type(e).__name__})", retrain) from None
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if not isinstance(fmt, str) or fmt != CHECKPOINT_FORMAT:
        found = f" (format {fmt!r})" if isinstance(fmt, str) else ""
        raise CheckpointError(f"{path} is not a spikeport checkpoint{found}", retrain)
    state, meta = payload.get("state_dict"), payload.get("meta", {})
    if not isinstance(state, dict):
        what = "no state_dict" if state is None else f"a state_dict that is a {type(state).__name__}"
        raise CheckpointError(f"checkpoint {path} has {what}, not a mapping of parameter "
                              "names to tensors", retrain)
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path}: meta is a {type(meta).__name__}, not a "
                              "mapping", retrain)
    for key, value in state.items():
        _check_checkpoint_tensor(path, key, value, retrain)
    return state, meta


def _check_checkpoint_tensor(path: Path, key: Any, value: Any, fix: str) -> None:
    if not isinstance(key, str):
        raise CheckpointError(f"checkpoint {path}: state_dict key {key!r} is not a parameter "
                              "name", fix)
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"checkpoint {path}: state_dict[{key!r}] is a "
                              f"{type(value).__name__}, not a tensor", fix)
    if value.layout != torch.strided or value.is_complex() or value.is_quantized:
        raise CheckpointError(f"checkpoint {path}: state_dict[{key!r}] is a {value.dtype} "
                              f"{str(value.layout).removeprefix('torch.')} tensor, not a dense "
                              "real one", fix)
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise CheckpointError(f"checkpoint {path}: state_dict[{key!r}] holds {bad} NaN or "
                              "infinite values", fix)


def require_run_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        raise RunDirError(f"{path} is a file, not a run directory",
                          "pass a directory written by `spikeport train --out DIR` (a .nir "
                          "graph goes to run, validate, estimate or inspect)")
    if not path.is_dir():
        raise RunDirError(f"run directory not found: {path}",
                          "pass a directory written by `spikeport train --out DIR`")
    if (path / CONFIG_FILE).is_dir():
        raise RunDirError(f"{path / CONFIG_FILE} is a directory, not the run's config",
                          "restore the run's config.yaml, or retrain with `spikeport train --force`")
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path} has no {CONFIG_FILE}: not a spikeport run directory",
                          "pass a directory written by `spikeport train --out DIR`")
    return path


def check_output_dir(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing, non-empty directory unless ``force``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} exists and is not a directory",
                          "choose another --out path")
    blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise RunDirError(f"cannot create {path}: {blocked} is a file, not a directory",
                          "choose another --out path")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise RunDirError(f"run directory {path} already exists",
                          "choose another --out, or pass --force to replace it")
    return path


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
        parent = _absolute(self.target).parent
        _prepare_dir(parent)
        self.path = parent / _temp_name(self.target.name, "staging")
        with _os_errors(self.target):
            os.mkdir(self.path)
        _LIVE.add(str(self.path))

    def commit(self) -> Path:
        target = _absolute(self.target)
        if target.exists() and not target.is_dir():
            raise RunDirError(f"{target} exists and is not a directory", "choose another --out path")
        lock = _Lock(target / LOCK_FILE, "spikeport train", target) if target.is_dir() else None
        if lock is not None:
            lock.acquire(LOCK_WAIT)  # no export commits into the old directory meanwhile
        try:
            with interrupts.deferred(strict=True), _os_errors(target):
                old = _swap(self.path, target)
                _COMMITTED.append(self.target)
                _fsync_dir(target.parent)
        except BaseException:
            if _swap_journal(target).exists():  # half swapped: the next claim() finishes it
                _COMMITTED.append(self.target)
            raise
        finally:
            if lock is not None:
                lock.release()
        if old is not None:
            _remove(old)  # the replaced run; a leftover of a killed command is swept by claim()
        _LIVE.discard(str(self.path))
        return self.target

    def discard(self) -> None:
        """Remove the staging directory (before the swap: the new run; after it: the old
        one), unless a swap stopped half-way: then its journal owns both directories and
        the next :func:`claim` of the path finishes it."""
        if not _swap_journal(_absolute(self.target)).exists():
            _remove(self.path)
        _LIVE.discard(str(self.path))

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


def dataclass_json(obj, omit_if_none: tuple[str, ...] | None = ()) -> dict:
    """A result dataclass as the dict its JSON is made of (nested dataclasses too); fields
    named in ``omit_if_none`` are left out when None (``None``: every None field is)."""
    out = dataclasses.asdict(obj)
    for key in list(out):
        if out[key] is None and (omit_if_none is None or key in omit_if_none):
            del out[key]
    return out


# --------------------------------------------------------------------------- transactions

LOCK_FILE = ".spikeport.lock"
LOCK_WAIT = 60.0  # seconds a commit waits for another command's commit into the same directory
TRANSACTION_FORMAT = "spikeport-transaction/1"
# the names of what a command leaves while it works: its transaction record, the temporary
# files of atomic_write (.tmp) and of a transaction (.tx), the staging directory of a run
# (.staging); each carries the pid of its command, so a leftover of a dead one is known
_RECORD = re.compile(r"^\.spikeport-tx-(\d+)-[0-9a-f]+\.json$")
_TEMP = re.compile(r"^\..+\.(\d+)-[0-9a-f]+\.(tmp|tx|staging)$")

_LIVE: set[str] = set()  # the temporary paths this process is using right now
_COMMITTED: list[Path] = []  # what the commits of this process put in place, in order
_OPEN: contextvars.ContextVar[tuple["Transaction", ...]] = contextvars.ContextVar(
    "spikeport_open_transactions", default=())


def committed() -> list[Path]:
    """Every path the commits of this process have put in place so far, in order (the CLI
    names them when an interrupt comes after a commit)."""
    return list(_COMMITTED)


@contextmanager
def transaction(directory: str | Path) -> Iterator["Transaction"]:
    """Commit the files a block writes together, or none of them.

    ``with io.transaction(run_dir) as tx:`` then ``tx.write_json(name, obj)``,
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
        self.record = _absolute(directory) / f".spikeport-tx-{self.id}.json"
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
        target = _absolute(final)
        self._made += _prepare_file(target)
        self._drop(target)
        if target.parent not in self._swept:  # leftovers of dead commands in another directory
            _sweep(target.parent, ("tmp",))
            self._swept.add(target.parent)
        staged = target.with_name(_temp_name(target.name, "tx"))
        _LIVE.add(str(staged))
        self.files.append((staged, target))
        self._save("staging")  # listed before it exists: a kill leaves nothing unlisted
        with _os_errors(target):
            _create(staged)
            write(staged)
            _fsync(staged)
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
            _remove(entry[0])
            _LIVE.discard(str(entry[0]))
            self.files.remove(entry)

    def _save(self, state: str) -> None:
        home = _absolute(self.directory)
        record = {"format": TRANSACTION_FORMAT, "pid": os.getpid(), "state": state,
                  "files": [[_to_record(home, s), _to_record(home, f)] for s, f in self.files]}
        with _os_errors(home):  # the directory is what the user can fix, not the record
            _replace_file(self.record, json.dumps(record, indent=1).encode())

    def _open(self) -> None:
        home = _absolute(self.directory)
        self._made += _prepare_dir(home)
        self._identity = _identity(home)
        recover(home)
        _LIVE.add(str(self.record))
        self._save("staging")  # also finds a read-only directory before the command's work

    def _commit(self) -> None:
        home = _absolute(self.directory)
        if not self.files:
            self._discard()
            return
        lock = _Lock(home / LOCK_FILE, "a spikeport commit", home)
        lock.acquire(LOCK_WAIT)
        try:
            with interrupts.deferred(strict=True):
                _recover_locked(home)
                try:
                    same = _identity(home) == self._identity
                except OSError:
                    same = False
                if not same or not self.record.is_file():
                    raise RunDirError(f"{self.directory} was replaced or removed while this "
                                      "command ran (by `spikeport train --force`?)",
                                      "run the command again")
                for _, final in self.files:
                    _prepare_file(final)  # nothing has become a directory meanwhile
                self._save("committed")  # the commit point
                self.committed = True
                _COMMITTED.extend(f for _, f in self.files)  # in place now, or by recover()
                with _os_errors(home):
                    for staged, final in self.files:
                        os.replace(staged, final)
                    for d in {f.parent for _, f in self.files}:
                        _fsync_dir(d)
                    os.unlink(self.record)
        finally:
            lock.release()
            self._forget()

    def _discard(self) -> None:
        """Undo: remove the staged files and the record, unless the commit point was passed
        (then the record rolls the commit forward, see :func:`transaction`)."""
        try:
            if self.committed or (_read_json(self.record) or {}).get("state") == "committed":
                return
            with interrupts.deferred(strict=True):
                for staged, _ in self.files:
                    _remove(staged)
                _remove(self.record)
                for d in reversed(self._made):
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
        finally:
            self._forget()  # what is left is a dead command's: the next recover() removes it

    def _forget(self) -> None:
        for staged, _ in self.files:
            _LIVE.discard(str(staged))
        _LIVE.discard(str(self.record))


def recover(directory: str | Path) -> None:
    """Finish what killed commands left in ``directory``: roll committed transactions
    forward, remove the staged files of uncommitted ones once their command is gone, and
    the temporary files of dead commands (:func:`transaction`). Every transaction does this
    when it opens; call it to tidy a directory by hand."""
    home = _absolute(Path(directory))
    with _os_errors(home):
        if not home.is_dir() or not _has_leftovers(home):
            return
    lock = _Lock(home / LOCK_FILE, "a spikeport commit", home)
    lock.acquire(LOCK_WAIT)
    try:
        with interrupts.deferred(strict=True):
            _recover_locked(home)
    finally:
        lock.release()


def _has_leftovers(home: Path) -> bool:
    for name in os.listdir(home):
        if name == LOCK_FILE:
            return True
        m = _RECORD.match(name)
        if m and (not _owner_alive(home / name, int(m.group(1)))
                  or (_read_json(home / name) or {}).get("state") == "committed"):
            return True
        m = _TEMP.match(name)
        if m and m.group(2) != "staging" and not _owner_alive(home / name, int(m.group(1))):
            return True
    return False


def _recover_locked(home: Path) -> None:
    """:func:`recover`, with the directory's lock held."""
    with _os_errors(home):
        for name in sorted(os.listdir(home)):
            m = _RECORD.match(name)
            record = home / name
            data = _read_json(record) if m else None
            if not data or data.get("format") != TRANSACTION_FORMAT:
                continue
            files = [(_from_record(home, s), _from_record(home, f)) for s, f in data["files"]]
            if data["state"] == "committed":
                for staged, final in files:
                    if staged.exists():
                        os.replace(staged, final)
                for d in {f.parent for _, f in files}:
                    _fsync_dir(d)
                os.unlink(record)
            elif not _owner_alive(record, int(m.group(1))):
                for staged, _ in files:
                    _remove(staged)
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
        if m and m.group(2) in kinds and not _owner_alive(directory / name, int(m.group(1))):
            _remove(directory / name)


@contextmanager
def claim(path: str | Path, command: str = "train") -> Iterator[Path]:
    """Hold the run directory ``path`` (existing or not) for one command that builds it
    whole (``spikeport train``): a second claim of the same path, by any process, fails at
    once with a :class:`RunDirError` naming the holder. The lock is an flock on
    ``.NAME.spikeport-claim`` beside the directory; the kernel releases it when its holder
    exits or is killed, so a crash never leaves a stale claim (the file of a dead holder is
    taken over). Taking the claim finishes a replacement that a killed command left half
    done (:class:`StagedDir`) and removes the staging directories of dead commands."""
    target = _absolute(Path(path))
    _prepare_dir(target.parent)
    lock = _Lock(target.with_name(f".{target.name}.spikeport-claim"), f"spikeport {command}",
                 target)
    lock.acquire(0)
    try:
        with interrupts.deferred(strict=True), _os_errors(target):
            _finish_swap(target)
            prefix = f".{target.name}."
            for name in os.listdir(target.parent):
                m = _TEMP.match(name)
                if (m and name.startswith(prefix) and m.group(2) in ("staging", "tmp")
                        and not _owner_alive(target.parent / name, int(m.group(1)))):
                    _remove(target.parent / name)
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
    if _exchange(new, target):
        return new
    old = target.with_name(_temp_name(target.name, "staging"))
    journal = _swap_journal(target)
    _replace_file(journal, json.dumps({"new": new.name, "old": old.name}).encode())
    os.rename(target, old)
    os.rename(new, target)
    os.unlink(journal)
    return old


def _finish_swap(target: Path) -> None:
    """Complete the two-rename replacement of ``target`` its journal describes: a journal
    exists only once the new directory is complete, so this always rolls forward."""
    journal = _swap_journal(target)
    data = _read_json(journal)
    if data is None:
        return
    new, old = target.with_name(data["new"]), target.with_name(data["old"])
    if new.is_dir():
        if os.path.lexists(target) and not os.path.lexists(old):
            os.rename(target, old)
        os.rename(new, target)
    os.unlink(journal)
    _remove(old)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the C library or the file system has no such call."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


class _Lock:
    """An exclusive flock on the file ``path``, which names its holder (pid, what) for the
    message of a command that finds it taken. The kernel drops the lock when its process
    dies; the holder removes the file on release (a taker checks that the file it locked
    is still the one at ``path``, else takes the new one)."""

    def __init__(self, path: Path, what: str, place: Path):
        self.path, self.what, self.place = path, what, place
        self.fd: int | None = None

    def acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            with _os_errors(self.path):
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise self._busy(wait) from None
                time.sleep(0.05)
                continue
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps({"pid": os.getpid(), "what": self.what}).encode())
                self.fd = fd
                return
            os.close(fd)  # its holder removed it meanwhile: lock the new one

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _busy(self, wait: float) -> RunDirError:
        holder = _read_json(self.path) or {}
        who = (f"{holder.get('what', 'another spikeport command')} (pid {holder['pid']})"
               if "pid" in holder else "another spikeport command")
        if wait <= 0:
            return RunDirError(f"run directory {self.place} is in use: {who} is writing it",
                               "wait for that command to finish, or choose another --out")
        return RunDirError(f"{self.place} is busy: {who} has held it for over {wait:.0f} s",
                           "wait for that command to finish (or stop it), then run this "
                           "command again")


# --------------------------------------------------------------------------- file helpers


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _temp_name(name: str, kind: str) -> str:
    return f".{name[:200]}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


@contextmanager
def _live(path: Path) -> Iterator[None]:
    _LIVE.add(str(path))
    try:
        yield
    finally:
        _LIVE.discard(str(path))


def _owner_alive(path: Path, pid: int) -> bool:
    """Whether the command that made the leftover ``path`` may still be using it."""
    if pid == os.getpid():
        return str(path) in _LIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:  # a killed child not yet waited for is a zombie: it uses nothing
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _identity(directory: Path) -> tuple[int, int]:
    st = os.stat(directory)
    return st.st_dev, st.st_ino


def _to_record(home: Path, path: Path) -> str:
    rel = os.path.relpath(path, home)
    return str(path) if rel.startswith("..") else rel


def _from_record(home: Path, text: str) -> Path:
    return home / text  # an absolute path stays itself


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _create(path: Path) -> None:
    """Create the empty file ``path`` (which must not exist), with the usual permissions."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a file system that cannot sync a directory
    finally:
        os.close(fd)


def _replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a record or journal: not a command's output)."""
    tmp = path.with_name(_temp_name(path.name, "tmp"))
    try:
        with _live(tmp):
            _create(tmp)
            tmp.write_bytes(data)
            _fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    """Remove a file or a directory tree if it is there; never raises OSError."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def _prepare_dir(directory: Path) -> list[Path]:
    """Make ``directory`` and its missing parents; returns those it made. A file in the way
    is a RunDirError."""
    directory = _absolute(directory)
    if directory.is_dir():
        return []
    missing, p = [], directory
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise RunDirError(f"cannot create {directory}: {p} is a file, not a directory",
                          f"move {p} away, or choose another path")
    made = []
    with _os_errors(directory):
        for d in reversed(missing):
            try:
                os.mkdir(d)
                made.append(d)
            except FileExistsError:
                if not d.is_dir():
                    raise
    return made


def _prepare_file(path: Path) -> list[Path]:
    """Refuse a directory where the file ``path`` goes; make its parent directories."""
    if os.path.isdir(path):
        raise RunDirError(f"{path} is a directory, where spikeport writes a file",
                          f"move the directory {path} away, then run the command again")
    return _prepare_dir(Path(path).parent)


@contextmanager
def _os_errors(path: str | Path) -> Iterator[None]:
    """Turn an OSError of writing ``path`` into a RunDirError naming the path and the fix."""
    try:
        yield
    except OSError as e:
        raise _fs_error(e, Path(path)) from None


def _fs_error(e: OSError, path: Path) -> RunDirError:
    text = str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text:
        where = path if os.path.isdir(path) else f"{path.parent} (writing {path.name})"
        return RunDirError(f"no space left on the device of {where}",
                           "free some space, then run the command again; no file was replaced")
    if isinstance(e, IsADirectoryError):
        named = [Path(os.fsdecode(f)) for f in (e.filename2, e.filename) if f]
        culprit = next((p for p in named if p.is_dir()), path)
        return RunDirError(f"{culprit} is a directory, where spikeport writes a file",
                           f"move the directory {culprit} away, then run the command again")
    if e.errno == errno.EROFS or "ead-only file system" in text:
        return RunDirError(f"cannot write {path}: the file system is read-only",
                           "work on a copy of the directory on a writable file system")
    if isinstance(e, PermissionError) or "ermission denied" in text:
        where = path if os.path.isdir(path) else path.parent
        return RunDirError(f"cannot write {path}: permission denied",
                           f"make {where} writable (chmod u+w), or work on a writable copy of it")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        blocked = next((p for p in [path, *path.parents]
                        if os.path.lexists(p) and not os.path.isdir(p)), None)
        if blocked is not None:
            return RunDirError(f"cannot write {path}: {blocked} is a file, not a directory",
                               f"move {blocked} away, or choose another path")
    reason = e.strerror or (text.splitlines()[0] if text else type(e).__name__)
    return RunDirError(f"cannot write {path} ({reason})",
                       f"check that {path.parent} exists and is writable")
