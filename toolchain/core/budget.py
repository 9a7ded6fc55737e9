"""The memory budget: how much memory spikeport agrees to allocate for one thing, decided in
one place.

Sizes that follow from what a user hands in -- a graph's weights, a Delay's buffer, the
recording of T steps x batch x neurons, an input array, a dataset inside an HDF5 file -- are
compared with the budget *before* anything of that size is allocated, so a hostile or
mistaken file gets a one-line error naming the number instead of a MemoryError or the
out-of-memory killer.

The rule: the budget is ``SPIKEPORT_MEMORY_BUDGET`` if that environment variable is set (a
number of bytes, optionally with a suffix K, M, G or T, powers of 1024: ``"512M"``), else
half of the machine's physical memory. It is read on every call, so a test or a caller can
set it for one operation.

    nbytes(shape, itemsize=8) -> int          exact, never overflows
    memory_budget() -> int                    bytes
    check_bytes(n, what, fix, error=...)      raises error(problem, fix) if n > budget
    check_hdf5(path, what, fix, error=...)    every dataset of an HDF5 file within budget
    format_bytes(n) -> str                    "1.5 GB"
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

from spikeport.core.errors import SpikeportError

ENV_VAR = "SPIKEPORT_MEMORY_BUDGET"
MACHINE_FRACTION = 0.5
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def physical_memory() -> int:
    """The machine's physical memory in bytes (4 GiB where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 4 << 30


def memory_budget() -> int:
    """The largest number of bytes one allocation driven by user input may take."""
    text = os.environ.get(ENV_VAR, "").strip()
    if text:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", text, flags=re.I)
        if not m or float(m.group(1)) <= 0:
            raise SpikeportError(f"{ENV_VAR}={text!r} is not a size",
                                 f"set {ENV_VAR} to a number of bytes, e.g. 2G or 500M")
        return int(float(m.group(1)) * _SUFFIX[m.group(2).upper()])
    return int(physical_memory() * MACHINE_FRACTION)


def nbytes(shape, itemsize: int = 8) -> int:
    """Bytes of an array of ``shape`` (Python integers: exact for any size)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def format_bytes(n: int) -> str:
    n = int(n)
    for unit, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} bytes"


def check_bytes(n: int, what: str, fix: str, error: type[SpikeportError] = SpikeportError) -> None:
    """Refuse ``what`` (a phrase such as "node 'd' (Delay): a buffer of 10^12 steps") if it
    needs more than the budget: ``error("<what> needs <n> bytes, more than the memory budget
    of <budget> bytes", fix)``."""
    budget = memory_budget()
    if n > budget:
        raise error(f"{what} needs {format_bytes(n)} ({n} bytes), more than the memory budget "
                    f"of {format_bytes(budget)} ({budget} bytes; {ENV_VAR} sets it)", fix)


def check_hdf5(path: str | Path, what: str, fix: str,
               error: type[SpikeportError] = SpikeportError) -> None:
    """Refuse an HDF5 file whose datasets together would need more than the budget to read
    (HDF5 stores a huge dataset of fill values in a few bytes; reading it would allocate it
    whole). Only shapes are read. A file that is not HDF5 passes: its reader reports that."""
    import h5py

    big: list[tuple[int, str]] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            shape = obj.shape or ()
            size = nbytes(shape, max(int(obj.dtype.itemsize), 1))
            big.append((size, name))

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError):
        return
    if big:
        size, name = max(big)
        total = sum(s for s, _ in big)
        where = (f"reading dataset {name!r}" if total == size
                 else f"reading its datasets (the largest {name!r})")
        check_bytes(total, f"{what}: {where}", fix, error)
