"""File-system primitives under :mod:`spikeport.core.io` and :mod:`spikeport.core.transactions`.

Temporary names that carry the pid of their command (so a leftover of a dead command is
known), creation, fsync of files and directories, removal that never raises, the one-step
directory exchange of Linux, the flock that names its holder (:class:`Lock`), and
:func:`os_errors`, which turns an ``OSError`` into a :class:`RunDirError` naming the path
and the fix.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from spikeport.core.errors import RunDirError

LIVE: set[str] = set()  # the temporary paths this process is using right now

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
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




def absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def temp_name(name: str, kind: str) -> str:
    return f".{name[:200]}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


@contextmanager
def live(path: Path) -> Iterator[None]:
    LIVE.add(str(path))
    try:
        yield
    finally:
        LIVE.discard(str(path))


def owner_alive(path: Path, pid: int) -> bool:
    """Whether the command that made the leftover ``path`` may still be using it."""
    if pid == os.getpid():
        return str(path) in LIVE
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


def same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def identity(directory: Path) -> tuple[int, int]:
    st = os.stat(directory)
    return st.st_dev, st.st_ino


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def create(path: Path) -> None:
    """Create the empty file ``path`` (which must not exist), with the usual permissions."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
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


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a record or journal: not a command's output)."""
    tmp = path.with_name(temp_name(path.name, "tmp"))
    try:
        with live(tmp):
            create(tmp)
            tmp.write_bytes(data)
            fsync(tmp)
            os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def remove(path: Path) -> None:
    """Remove a file or a directory tree if it is there; never raises OSError."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def prepare_dir(directory: Path) -> list[Path]:
    """Make ``directory`` and its missing parents; returns those it made. A file in the way
    is a RunDirError."""
    directory = absolute(directory)
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
    with os_errors(directory):
        for d in reversed(missing):
            try:
                os.mkdir(d)
                made.append(d)
            except FileExistsError:
                if not d.is_dir():
                    raise
    return made


def prepare_file(path: Path) -> list[Path]:
    """Refuse a directory where the file ``path`` goes; make its parent directories."""
    if os.path.isdir(path):
        raise RunDirError(f"{path} is a directory, where spikeport writes a file",
                          f"move the directory {path} away, then run the command again")
    return prepare_dir(Path(path).parent)


def check_replaceable(path: Path) -> None:
    """Refuse an existing regular file at ``path`` that a rename cannot replace: one marked
    immutable or append-only (``chattr +i`` / ``+a``), which even root cannot replace.
    Opening it for appending writes nothing and fails with EPERM exactly then; a file that is
    merely read-only (chmod 444) can still be replaced by a rename and passes."""
    if not os.path.isfile(path):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    except PermissionError as e:
        if e.errno == errno.EPERM:
            raise RunDirError(f"{path} is marked immutable or append-only: spikeport cannot "
                              "replace it, and wrote nothing",
                              f"clear the flag (chattr -i -a {path}), or work on a copy of the "
                              "directory") from None
        return
    except OSError:
        return
    os.close(fd)


@contextmanager
def os_errors(path: str | Path) -> Iterator[None]:
    """Turn an OSError of writing ``path`` into a RunDirError naming the path and the fix."""
    try:
        yield
    except OSError as e:
        raise fs_error(e, Path(path)) from None


def fs_error(e: OSError, path: Path) -> RunDirError:
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


class Lock:
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
            with os_errors(self.path):
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
            if same_file(fd, self.path):
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
            if same_file(fd, self.path):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _busy(self, wait: float) -> RunDirError:
        holder = read_json(self.path) or {}
        who = (f"{holder.get('what', 'another spikeport command')} (pid {holder['pid']})"
               if "pid" in holder else "another spikeport command")
        if wait <= 0:
            return RunDirError(f"run directory {self.place} is in use: {who} is writing it",
                               "wait for that command to finish, or choose another --out")
        return RunDirError(f"{self.place} is busy: {who} has held it for over {wait:.0f} s",
                           "wait for that command to finish (or stop it), then run this "
                           "command again")
