"""The Lava runtime environment: a Python 3.10 venv with the upstream-pinned Lava stack.

lava-nc 0.10.0 / lava-dl 0.6.0 install only on Python 3.10 (numpy < 2, torch 2.3) and fail
to import on 3.11+ (SEMANTICS.md 11), so spikeport keeps them in their own environment in a
per-user cache outside the clone::

    ${SPIKEPORT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/spikeport}/lava-env-<key>

``key`` is the first 12 hex digits of the sha256 of ``requirements-lava.txt``: editing the
requirements selects a new environment. The stack is installed unmodified with
``<env>/bin/python -m pip install -r requirements-lava.txt``, verified by importing
``lava.lib.dl.netx`` in a subprocess, and only then marked ready with a ``.spikeport-ready``
file holding the requirements hash. An environment without that marker is an interrupted or
failed install: ``install()`` deletes and rebuilds it; everything else refuses to use it.

Lava is never imported in this process (importing it sets the multiprocessing start method,
SEMANTICS.md 9); everything that needs Lava runs ``<env>/bin/python`` in a subprocess.
Nothing here sets a multiprocessing start method.

Command line (also reachable as ``spikeport lava-env ...`` once wired into the CLI)::

    python -m spikeport.exporters.lava.env path|check|install
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from spikeport.core.errors import SpikeportError

REQUIREMENTS = Path(__file__).resolve().parent / "requirements-lava.txt"
MARKER = ".spikeport-ready"
INSTALL_CMD = "spikeport lava-env install"
INSTALL_COST = "about 4 minutes, 5.6 GB"
VERIFY_MODULE = "lava.lib.dl.netx"

# Run inside the Lava env's python: import check plus versions, one JSON line on stdout.
_PROBE = r"""
import json, sys
out = {"python": "%d.%d.%d" % sys.version_info[:3]}
try:
    from importlib.metadata import version
    for dist in ("lava-nc", "lava-dl", "numpy", "h5py", "torch"):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = None
    import lava.lib.dl.netx  # noqa: F401  (the verification import)
    out["import_ok"] = True
except Exception as exc:
    out["import_ok"] = False
    out["import_error"] = "%s: %s" % (type(exc).__name__, " ".join(str(exc).split()))
print("SPIKEPORT-PROBE " + json.dumps(out))
"""


class LavaEnvError(SpikeportError):
    """The Lava runtime environment is missing, incomplete, or cannot be built."""


def requirements_hash() -> str:
    """Full sha256 hex digest of ``requirements-lava.txt``."""
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def env_key() -> str:
    return requirements_hash()[:12]


def cache_dir() -> Path:
    """``$SPIKEPORT_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/spikeport`` (empty = unset)."""
    explicit = os.environ.get("SPIKEPORT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "spikeport"


def env_path() -> Path:
    """Where the Lava environment for the current requirements lives (may not exist)."""
    return cache_dir() / f"lava-env-{env_key()}"


def env_python(path: Path | None = None) -> Path:
    return (path or env_path()) / "bin" / "python"


def _missing_error(path: Path) -> LavaEnvError:
    return LavaEnvError(
        f"Lava environment not found at {path}",
        f"run `{INSTALL_CMD}` ({INSTALL_COST})")


def _incomplete_error(path: Path, why: str) -> LavaEnvError:
    return LavaEnvError(
        f"Lava environment at {path} is incomplete ({why})",
        f"run `{INSTALL_CMD}`, which deletes and rebuilds it ({INSTALL_COST})")


def _marker_state(path: Path) -> str | None:
    """None if ready, else the reason it is not."""
    marker = path / MARKER
    if not marker.is_file():
        return f"no {MARKER} marker: an install was interrupted or failed"
    if marker.read_text().strip() != requirements_hash():
        return f"{MARKER} does not match {REQUIREMENTS.name}"
    if not env_python(path).exists():
        return "bin/python is missing"
    return None


def is_ready(path: Path | None = None) -> bool:
    path = path or env_path()
    return path.is_dir() and _marker_state(path) is None


def ensure_ready() -> Path:
    """The ready environment's python, or a :class:`LavaEnvError` that says how to get it.

    Cheap (no subprocess): checks the directory and the marker only.
    """
    path = env_path()
    if not path.is_dir():
        raise _missing_error(path)
    why = _marker_state(path)
    if why is not None:
        raise _incomplete_error(path, why)
    return env_python(path)


# --- finding a Python 3.10 ---------------------------------------------------------------

def _probe_python(exe: str | os.PathLike) -> str | None:
    """None if ``exe`` runs, is CPython 3.10 and can create a venv with pip; else why not."""
    try:
        proc = subprocess.run(
            [str(exe), "-c",
             "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"does not run ({type(exc).__name__})"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"fails: {last}"
    if proc.stdout.strip() != "3.10":
        return f"is Python {proc.stdout.strip()}, not 3.10"
    return None


def _pyenv_root() -> Path | None:
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            proc = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
            if proc.returncode == 0 and proc.stdout.strip():
                return Path(proc.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    root = os.environ.get("PYENV_ROOT")
    if root:
        return Path(root)
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _version_key(path: str) -> tuple[int, ...]:
    name = Path(path).parent.parent.name  # .../versions/3.10.13/bin/python3.10
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def find_python310() -> Path:
    """A working Python 3.10 interpreter to build the Lava environment with.

    Tried in order: ``$SPIKEPORT_PYTHON310``; ``python3.10`` on PATH if it actually runs
    (a pyenv shim fails unless that version is selected); the newest
    ``$(pyenv root)/versions/3.10.*/bin/python3.10``; ``/usr/bin/python3.10``;
    ``/usr/local/bin/python3.10``.
    """
    explicit = os.environ.get("SPIKEPORT_PYTHON310")
    if explicit:
        why = _probe_python(explicit)
        if why is None:
            return Path(explicit)
        raise LavaEnvError(
            f"SPIKEPORT_PYTHON310={explicit} {why}",
            "point SPIKEPORT_PYTHON310 at a CPython 3.10 interpreter with venv and ensurepip, "
            "or unset it to search the usual places")

    candidates: list[str] = []
    on_path = shutil.which("python3.10")
    if on_path:
        candidates.append(on_path)
    root = _pyenv_root()
    if root is not None:
        found = glob.glob(str(root / "versions" / "3.10.*" / "bin" / "python3.10"))
        candidates += sorted(found, key=_version_key, reverse=True)
    candidates += ["/usr/bin/python3.10", "/usr/local/bin/python3.10"]

    tried = []
    seen = set()
    for cand in candidates:
        if cand in seen:
            continue
        seen.add(cand)
        if not Path(cand).exists():
            continue
        why = _probe_python(cand)
        if why is None:
            return Path(cand)
        tried.append(f"{cand} {why}")
    detail = "; ".join(tried) if tried else "no candidate exists"
    raise LavaEnvError(
        f"no usable Python 3.10 found (lava-nc 0.10.0 and lava-dl 0.6.0 install only on "
        f"Python 3.10; tried: {detail})",
        "install CPython 3.10 with venv support (e.g. `pyenv install 3.10` or "
        "`apt-get install python3.10 python3.10-venv`), or set "
        "SPIKEPORT_PYTHON310=/path/to/python3.10")


# --- status -----------------------------------------------------------------------------

def _run_probe(python: Path, timeout: float = 300) -> dict:
    try:
        proc = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"import_ok": False, "import_error": f"import check timed out after {timeout}s"}
    except OSError as exc:
        return {"import_ok": False, "import_error": f"{type(exc).__name__}: {exc}"}
    for line in proc.stdout.splitlines():
        if line.startswith("SPIKEPORT-PROBE "):
            return json.loads(line[len("SPIKEPORT-PROBE "):])
    last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return {"import_ok": False, "import_error": last}


def check() -> dict:
    """Status of the Lava environment; never raises for a missing or broken env.

    Runs a tiny import check in the env's python (subprocess, a few seconds); never imports
    Lava here. Keys: ``ok``, ``path``, ``key``, ``exists``, ``ready`` (marker present and
    current), ``python``, ``lava-nc``, ``lava-dl``, ``numpy``, ``h5py``, ``torch``,
    ``import_ok``, and ``problem``/``fix`` when not ok.
    """
    path = env_path()
    status: dict = {"ok": False, "path": str(path), "key": env_key(),
                    "exists": path.is_dir(), "ready": False}
    if not status["exists"]:
        err = _missing_error(path)
        return {**status, "problem": err.problem, "fix": err.fix}
    why = _marker_state(path)
    status["ready"] = why is None
    if env_python(path).exists():
        status.update(_run_probe(env_python(path)))
    if why is not None:
        err = _incomplete_error(path, why)
        return {**status, "problem": err.problem, "fix": err.fix}
    if not status.get("import_ok"):
        err = _incomplete_error(
            path, f"`import {VERIFY_MODULE}` fails: {status.get('import_error')}")
        return {**status, "problem": err.problem, "fix": err.fix}
    status["ok"] = True
    return status


# --- install ----------------------------------------------------------------------------

def _stream(cmd: list[str], progress: Callable[[str], None] | None, what: str,
            fix: str) -> None:
    """Run ``cmd``; feed its output lines to ``progress``; typed error on failure."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
    except OSError as exc:
        raise LavaEnvError(f"{what} could not start: {exc}", fix) from exc
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        if progress is not None and line:
            progress(line)
    code = proc.wait()
    if code != 0:
        errors = [ln for ln in tail if "error" in ln.lower()] or tail or ["no output"]
        raise LavaEnvError(f"{what} failed (exit code {code}): {errors[-1].strip()}", fix)


class _CacheLock:
    """Exclusive flock on the cache directory itself (no lock file next to the env)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.fd: int | None = None

    def __enter__(self) -> "_CacheLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.directory, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def install(progress: Callable[[str], None] | None = None) -> Path:
    """Create (or reuse) the Lava environment; returns its path.

    A ready environment (marker present and matching) is reused as is. An environment
    without the marker is deleted and rebuilt: venv from :func:`find_python310`, then
    ``<env>/bin/python -m pip install -r requirements-lava.txt``, then ``import
    lava.lib.dl.netx`` in a subprocess, then the marker. ``progress`` receives one line per
    step and the installer's output lines. Concurrent installs wait for each other.
    """
    say = progress or (lambda _msg: None)
    path = env_path()
    with _CacheLock(path.parent):
        if is_ready(path):
            say(f"Lava environment ready at {path}")
            return path
        python = find_python310()  # before deleting anything
        if path.exists() or path.is_symlink():
            say(f"removing incomplete Lava environment at {path}")
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)
        fix = (f"check network access to PyPI and free disk space ({INSTALL_COST}), then "
               f"rerun `{INSTALL_CMD}`")
        say(f"creating venv at {path} with {python}")
        _stream([str(python), "-m", "venv", str(path)], progress, "creating the venv", fix)
        say(f"installing {REQUIREMENTS.name} ({INSTALL_COST})")
        _stream([str(env_python(path)), "-m", "pip", "install", "--disable-pip-version-check",
                 "-r", str(REQUIREMENTS)], progress, "pip install of the Lava stack", fix)
        say(f"verifying `import {VERIFY_MODULE}`")
        probe = _run_probe(env_python(path))
        if not probe.get("import_ok"):
            raise LavaEnvError(
                f"Lava environment at {path} was installed but `import {VERIFY_MODULE}` "
                f"fails: {probe.get('import_error')}",
                f"report the error; `{INSTALL_CMD}` will rebuild the environment")
        tmp = path / (MARKER + ".tmp")
        tmp.write_text(requirements_hash() + "\n")
        os.replace(tmp, path / MARKER)
        say(f"Lava environment ready at {path} (lava-nc {probe.get('lava-nc')}, "
            f"lava-dl {probe.get('lava-dl')}, Python {probe.get('python')})")
        return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cmd = argv[0] if argv else "check"
    try:
        if cmd == "path":
            print(env_path())
        elif cmd == "check":
            status = check()
            print(json.dumps(status, indent=1))
            return 0 if status["ok"] else 1
        elif cmd == "install":
            print(install(progress=lambda line: print(line, flush=True)))
        else:
            print("usage: python -m spikeport.exporters.lava.env path|check|install", file=sys.stderr)
            return 2
    except SpikeportError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
