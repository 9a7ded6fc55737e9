"""Real event datasets from local files, read through tonic 1.7.0's own dataset classes.

tonic (GPL-3.0-only, the optional extra ``spikeport[events]``) is imported only here, inside
functions, so ``import spikeport`` never needs it. Each dataset's :class:`Layout` records
what tonic 1.7.0's class looks for under ``<data_dir>/<ClassName>/`` (its ``_check_exists``:
the original archive present, not hashed, plus at least some number of extracted files;
tonic/datasets/{nmnist,dvsgesture,hsd,ntidigits18,pokerdvs,cifar10dvs,ncaltech101}.py).
tonic downloads whenever that check fails, so spikeport checks the same layout first
(:func:`check_layout`) and stops with one line naming the dataset, the directory, what is
expected there and the fix. Only :func:`fetch` lets tonic download.

The data directory is the recipe's ``dataset.data_dir``, else ``$SPIKEPORT_DATA``, else
``data`` beside the event cache (``${XDG_CACHE_HOME:-~/.cache}/spikeport/data``).
Binning and transforms are :mod:`spikeport.data.tonic_frames`.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spikeport.core.errors import DataError
from spikeport.data import events

INSTALL = "pip install 'spikeport[events]' (or run `make setup`)"


@dataclass(frozen=True)
class Part:
    """What one split needs under ``<data_dir>/<ClassName>/``: the ``archive`` (tonic only
    tests that it exists) and at least ``count`` files ending in ``suffix`` below
    ``folder`` ("" = the class folder itself); ``count`` 0 with ``suffix`` a file name:
    that one file."""

    archive: str
    folder: str
    suffix: str
    count: int

    def describe(self) -> str:
        if not self.count:
            return f"{self.archive} and {self.suffix}" if self.suffix != self.archive \
                else self.archive
        where = f"{self.folder}/**/*{self.suffix}" if self.folder else f"<class>/*{self.suffix}"
        return f"{self.archive} and {where} (at least {self.count:,} files)"


@dataclass(frozen=True)
class Layout:
    name: str               # spikeport's dataset name
    cls: str                # tonic.datasets.<cls>, also the folder tonic reads
    title: str
    parts: dict[str, Part]  # split ("train", "test" or "all") -> what it needs
    sensor: tuple[int, int, int]  # (W, H, P) of the frames; audio: (channels, 1, 1)
    n_classes: int
    window_us: int          # default binning: frames of window_us ...
    frames: int             # ... this many (frames * window_us covers a typical recording)
    source: str             # where the files come from (docs/data.md has more)
    downloadable: bool = True  # tonic 1.7.0 can download it (fetch)

    @property
    def audio(self) -> bool:
        return self.sensor[1] == 1 and self.sensor[2] == 1

    def describe(self) -> str:
        return "; ".join(f"{s}: {p.describe()}" for s, p in self.parts.items())


def _split(archive: str, folder: str, suffix: str, count: int, test: str | None = None
           ) -> dict[str, Part]:
    if test is None:
        return {"all": Part(archive, folder, suffix, count)}
    return {"train": Part(archive, folder, suffix, count),
            "test": Part(test, folder.replace("Train", "Test").replace("train", "test"),
                         suffix, count)}


LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in [
    Layout("nmnist", "NMNIST", "N-MNIST", _split("train.zip", "Train", ".bin", 10_000,
                                                 "test.zip"),
           (34, 34, 2), 10, 10_000, 30, "Mendeley Data doi:10.17632/468j46mzdv.1"),
    Layout("dvs-gesture", "DVSGesture", "DVS128 Gesture (tonic's .npy release)",
           _split("ibmGestureTrain.tar.gz", "ibmGestureTrain", ".npy", 100,
                  "ibmGestureTest.tar.gz"),
           (128, 128, 2), 11, 100_000, 20, "figshare (tonic's converted release)"),
    Layout("shd", "SHD", "Spiking Heidelberg Digits",
           {"train": Part("shd_train.h5.zip", "", "shd_train.h5", 0),
            "test": Part("shd_test.h5.zip", "", "shd_test.h5", 0)},
           (700, 1, 1), 20, 10_000, 100, "zenkelab.org/datasets"),
    Layout("ntidigits18", "NTIDIGITS18", "N-TIDIGITS18 (single digits)",
           {"train": Part("n-tidigits.hdf5", "", "n-tidigits.hdf5", 0),
            "test": Part("n-tidigits.hdf5", "", "n-tidigits.hdf5", 0)},
           (64, 1, 1), 11, 10_000, 100, "Dropbox link in tonic (Liu lab, INI Zurich)"),
    Layout("pokerdvs", "POKERDVS", "POKER-DVS",
           _split("pips_train.tar.gz", "pips_train", ".npy", 20, "pips_test.tar.gz"),
           (35, 35, 2), 4, 1_000, 20, "IMSE-CNM (the archives tonic's repository carries)",
           downloadable=False),
    Layout("cifar10-dvs", "CIFAR10DVS", "CIFAR10-DVS",
           _split("CIFAR10DVS.zip", "", ".aedat4", 1_000),
           (128, 128, 2), 10, 100_000, 13, "figshare (tonic's aedat4 conversion)"),
    Layout("ncaltech101", "NCALTECH101", "N-Caltech101",
           _split("N-Caltech101-archive.zip", "Caltech101", ".bin", 8_709),
           (240, 180, 2), 101, 10_000, 30, "Mendeley Data doi:10.17632/cy6cvx3ryv.1"),
]}


# ---------------------------------------------------------------------- where, and what is there

def data_dir(explicit: str | Path | None = None) -> Path:
    """``explicit`` (the recipe's ``dataset.data_dir``), else ``$SPIKEPORT_DATA``, else
    ``data`` beside the event cache (empty = unset)."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("SPIKEPORT_DATA")
    if env:
        return Path(env).expanduser()
    return events.cache_dir().parent / "data"


def layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise DataError(f"unknown tonic dataset {name!r}",
                        f"use one of: {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[name]


def _count(folder: Path, suffix: str, enough: int) -> int:
    """Files ending in ``suffix`` below ``folder`` (tonic's ``**/*suffix`` glob), counting
    no further than ``enough``."""
    n = 0
    for _root, _dirs, files in os.walk(folder):
        n += sum(f.endswith(suffix) for f in files)
        if n >= enough:
            break
    return n


def missing(lay: Layout, root: Path, split: str) -> str | None:
    """What ``split`` of ``lay`` lacks under ``root/<ClassName>``, or None when tonic's
    existence check will pass (so tonic will not try to download)."""
    part, home = lay.parts[split], root / lay.cls
    lacking = []
    if not (home / part.archive).is_file():
        lacking.append(part.archive)
    if not part.count:
        if part.suffix != part.archive and not (home / part.suffix).is_file():
            lacking.append(part.suffix)
    else:
        found = _count(home / part.folder, part.suffix, part.count)
        if found < part.count:
            lacking.append(f"{part.count:,} *{part.suffix} files below "
                           f"{part.folder or '.'}/ (found {found:,})")
    return ", ".join(lacking) or None


def fix_for(lay: Layout, root: Path) -> str:
    put = f"put {lay.title}'s files in {root / lay.cls}/ as: {lay.describe()}"
    if lay.downloadable:
        return f"run `spikeport data fetch {lay.name}` (downloads through tonic), or {put}"
    return f"{put} (tonic 1.7.0 cannot download {lay.title}; see docs/data.md)"


def check_layout(name: str, root: Path, split: str) -> None:
    """One line when ``split`` of dataset ``name`` is not laid out as tonic expects."""
    lay = layout(name)
    lacking = missing(lay, root, split)
    if lacking:
        raise DataError(f"dataset {name!r} ({split}) not found in {root / lay.cls}: missing "
                        f"{lacking}; expected {lay.parts[split].describe()}",
                        fix_for(lay, root))


def present(root: str | Path | None = None) -> list[tuple[str, Path, str]]:
    """(name, folder, status) of every dataset under ``root`` (default :func:`data_dir`):
    status ``present``, ``missing`` (nothing there) or ``incomplete: <what lacks>``."""
    root = data_dir(root)
    out = []
    for name, lay in sorted(LAYOUTS.items()):
        lacking = {s: missing(lay, root, s) for s in lay.parts}
        if not any(lacking.values()):
            status = "present"
        elif not (root / lay.cls).exists():
            status = "missing"
        else:
            status = "incomplete: " + "; ".join(f"{s}: {m}" for s, m in lacking.items() if m)
        out.append((name, root / lay.cls, status))
    return out


# ---------------------------------------------------------------------- tonic itself

def tonic_module(name: str) -> Any:
    """``tonic.datasets`` (and with it tonic.transforms), or one line naming the install."""
    try:
        import tonic.datasets
        import tonic.transforms  # noqa: F401
    except ImportError as e:
        raise DataError(f"dataset {name!r} is read through tonic, which is not installed "
                        f"({e})", INSTALL) from None
    return tonic


def _construct(lay: Layout, root: Path, split: str) -> Any:
    tonic = tonic_module(lay.name)
    cls = getattr(tonic.datasets, lay.cls)
    kwargs: dict[str, Any] = {"save_to": str(root)}
    if split != "all":
        kwargs["train"] = split == "train"
    if lay.name == "ntidigits18":
        kwargs["single_digits"] = True  # digit classes; sequences have no class label
    return cls(**kwargs)


def corrupt(lay: Layout, root: Path, what: Path | str, err: BaseException) -> DataError:
    """One line naming the file (or recording) tonic could not read."""
    detail = (str(err).splitlines() or [""])[0][:200]
    again = f", or delete the folder and run `spikeport data fetch {lay.name}`" \
        if lay.downloadable else ""
    return DataError(f"dataset {lay.name!r}: {what} cannot be read "
                     f"({type(err).__name__}: {detail})",
                     f"replace it with an intact copy from {lay.title}'s original archive in "
                     f"{root / lay.cls}{again}")


def open_split(name: str, root: str | Path | None, split: str) -> Any:
    """tonic's dataset object for ``split`` ("train", "test", or "all" for a dataset
    without an official split) after checking the layout, so it never downloads."""
    lay, root = layout(name), data_dir(root)
    check_layout(name, root, split)
    try:
        return _construct(lay, root, split)
    except DataError:
        raise
    except Exception as e:  # tonic reads an h5 file or every .npy when constructed
        raise corrupt(lay, root, _culprit(lay, root, split), e) from None


def _culprit(lay: Layout, root: Path, split: str) -> Path:
    """The file that a failed construction most likely choked on: the h5 file itself, else
    the first .npy numpy cannot load (POKER-DVS loads all of them), else the folder."""
    part, home = lay.parts[split], root / lay.cls
    if not part.count:
        return home / part.suffix
    import numpy as np

    for path in sorted((home / part.folder).rglob(f"*{part.suffix}")):
        if part.suffix == ".npy":
            try:
                np.load(path, allow_pickle=False, mmap_mode="r")
            except Exception:  # noqa: BLE001 - any failure names the file
                return path
    return home / part.folder


def fetch(name: str, root: str | Path | None = None) -> Path:
    """Download ``name`` into ``root`` (default :func:`data_dir`) with tonic's own
    downloader: construct its class for every split, download allowed. Returns the folder."""
    lay, root = layout(name), data_dir(root)
    if not lay.downloadable:
        raise DataError(f"tonic 1.7.0 cannot download {lay.title}", fix_for(lay, root))
    root.mkdir(parents=True, exist_ok=True)
    fresh = not (root / lay.cls).exists()  # a failed fetch leaves no folder it made
    for split in lay.parts:
        try:
            _construct(lay, root, split)
        except BaseException as e:
            if fresh:
                shutil.rmtree(root / lay.cls, ignore_errors=True)
            if isinstance(e, DataError) or not isinstance(e, Exception):
                raise  # our own one line, or Ctrl-C
            raise DataError(f"downloading {lay.title} into {root / lay.cls} failed "
                            f"({type(e).__name__}: {str(e)[:200]})",
                            "check the connection and retry, or put the files there "
                            f"yourself: {lay.describe()}") from None
    return root / lay.cls
