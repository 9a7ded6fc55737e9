"""Inputs too large to hold at once: a (T, B, ...) array read a block of samples at a time.

:class:`Samples` has an array's ``shape``, ``dtype`` and ``ndim`` and answers
``x[:, a:b]`` (the batch-axis slices every target and the estimator take) by reading or
making only those samples, so a command's peak memory follows its batch, not its dataset.
``np.asarray(x)`` still gives the whole array, for code that needs it.

Sources: an uncompressed ``.npz`` member read straight from the file (:func:`npz_member`),
a dataset encoded block by block (``spikeport.runs.run_inputs``), and :meth:`Samples.map`
of either (the float64 conversion the targets' input check makes).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from spikeport.core import budget
from spikeport.core.errors import DataError

Reader = Callable[[int, int], np.ndarray]  # (first, stop) -> x[:, first:stop]


class Samples:
    """A (T, B, ...) array along whose batch axis blocks are read on demand by ``read``."""

    def __init__(self, shape: tuple[int, ...], dtype, read: Reader, block: int = 256):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.block = max(1, int(block))
        self._read = read

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None)
                and isinstance(key[1], slice) and key[1].step in (None, 1)):
            return np.asarray(self)[key]
        a, b, _ = key[1].indices(self.shape[1])
        self._check_fits(max(0, b - a))
        out = self._read(a, max(a, b))
        return out if out.dtype == self.dtype else out.astype(self.dtype)

    def blocks(self, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first sample, x[:, first:first + size]) for every block, in order."""
        size = self.block if size is None else size
        for a in range(0, self.shape[1], size):
            yield a, self[:, a:a + size]

    def _check_fits(self, samples: int) -> None:
        """Refuse to hold ``samples`` samples at once beyond the memory budget (a target that
        takes every sample in one call reads the whole input)."""
        budget.check_bytes(budget.nbytes((self.shape[0], samples, *self.shape[2:]),
                                         self.dtype.itemsize),
                           f"{samples} samples of {self.shape[0]} steps held at once",
                           "use fewer samples (--samples)", DataError)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        self._check_fits(self.shape[1])
        out = np.empty(self.shape, dtype=self.dtype if dtype is None else dtype)
        for a, part in self.blocks():
            out[:, a:a + part.shape[1]] = part
        return out

    def head(self, n: int) -> "Samples":
        """The first ``n`` samples."""
        n = min(int(n), self.shape[1])
        return Samples((self.shape[0], n, *self.shape[2:]), self.dtype,
                       lambda a, b: self._read(a, min(b, n)), self.block)

    def map(self, fn: Callable[[np.ndarray], np.ndarray], dtype) -> "Samples":
        """``fn`` applied to every block as it is read (element-wise, same shape)."""
        return Samples(self.shape, dtype, lambda a, b: fn(self._read(a, b)), self.block)


def blocks(x, size: int = 256) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks of samples of an array or :class:`Samples` (an array: views, no copies)."""
    if isinstance(x, Samples):
        yield from x.blocks(size)
        return
    for a in range(0, x.shape[1], size):
        yield a, x[:, a:a + size]


def npz_member(path: str | Path, key: str) -> Samples | None:
    """The array ``key`` of an .npz read from the file a block at a time, without loading it;
    None where that is impossible (a compressed member, Fortran order, an object array, a
    member shorter than its header says)."""
    path = Path(path)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with z.open(info) as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            header = f.tell()
    if fortran or dtype.hasobject or len(shape) < 2:
        return None
    with open(path, "rb") as f:  # the member's data starts after its local header
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
    start = info.header_offset + 30 + int(name_len) + int(extra_len) + header
    T, B = shape[:2]
    row = int(np.prod(shape[2:], dtype=np.int64)) * dtype.itemsize  # one sample, one step
    if start + T * B * row > info.header_offset + 30 + int(name_len) + int(extra_len) \
            + info.file_size or start + T * B * row > path.stat().st_size:
        return None  # a truncated member: the eager reader names the damage

    def read(a: int, b: int) -> np.ndarray:
        out = np.empty((T, b - a, *shape[2:]), dtype)
        with open(path, "rb") as f:
            for t in range(T):
                f.seek(start + (t * B + a) * row)
                out[t] = np.frombuffer(f.read((b - a) * row), dtype).reshape(out.shape[1:])
        return out

    return Samples(shape, dtype, read)
