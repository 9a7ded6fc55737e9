import numpy as np
import pytest

from spikeport.data.datasets import DATASETS, load_dataset, load_fashion_mnist, stratified_split
from spikeport.core.errors import ConfigError, DataError, UnknownNameError


def test_registry():
    assert DATASETS.names() == ["cifar10-dvs", "digits", "digits-events", "dvs-gesture",
                                "fashion-mnist", "mnist-5k", "ncaltech101", "nmnist",
                                "nmnist-sim", "ntidigits18", "pokerdvs", "shd"]


def test_digits_split_is_stratified_disjoint_and_fixed_by_seed():
    a = load_dataset("digits", test_fraction=0.2, split_seed=0)
    b = load_dataset("digits", test_fraction=0.2, split_seed=0)
    c = load_dataset("digits", test_fraction=0.2, split_seed=1)
    assert a.x_train.shape[1:] == (1, 8, 8) and a.x_train.dtype == np.float32
    assert len(a.y_train) + len(a.y_test) == 1797
    assert 0.19 < len(a.y_test) / 1797 < 0.21
    assert a.x_train.min() >= 0 and a.x_train.max() <= 1
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test) or not np.array_equal(a.x_test, c.x_test)
    # every class is represented in proportion
    counts = np.bincount(a.y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37


def test_stratified_split_indices_partition_the_data():
    y = np.repeat(np.arange(5), 20)
    tr, te = stratified_split(y, 0.25, seed=3)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 100
    assert (np.bincount(y[te]) == 5).all()


def test_mnist_5k_is_the_real_subset_with_a_held_out_stratified_test_split():
    ds = load_dataset("mnist-5k")
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert (np.bincount(ds.y_test) == 100).all() and (np.bincount(ds.y_train) == 400).all()
    assert 0 <= ds.x_train.min() and ds.x_train.max() == pytest.approx(1.0)
    # real handwriting: about 19 % of MNIST pixels are non-zero
    assert 0.1 < (ds.x_train > 0).mean() < 0.3


def test_fashion_mnist_missing_files_name_the_apt_package(tmp_path):
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist(root=tmp_path)


def test_fashion_mnist_reads_idx_files(tmp_path):
    import gzip

    def write(name, header, body):
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(header + body.tobytes())

    def header(*dims):  # IDX: magic 0x0000080N (unsigned bytes, N axes), then big-endian sizes
        return np.array([0x800 + len(dims), *dims], ">u4").tobytes()

    imgs = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28) % 251
    write("train-images-idx3-ubyte", header(2, 28, 28), imgs)
    write("t10k-images-idx3-ubyte", header(1, 28, 28), imgs[:1])
    write("train-labels-idx1-ubyte", header(2), np.array([3, 7], np.uint8))
    write("t10k-labels-idx1-ubyte", header(1), np.array([9], np.uint8))
    ds = load_fashion_mnist(root=tmp_path)
    assert ds.x_train.shape == (2, 1, 28, 28) and ds.y_train.tolist() == [3, 7]
    assert ds.y_test.tolist() == [9]
    assert ds.x_train[0, 0, 0, 5] == pytest.approx(5 / 255)


def test_fashion_mnist_from_debian_when_installed():
    from spikeport.data.datasets import FASHION_DIR

    if not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make data-fashion)")
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert (np.bincount(ds.y_test) == 1000).all()


def test_unknown_dataset_and_options():
    with pytest.raises(UnknownNameError, match="unknown dataset 'cifar'.*digits"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match="dataset 'digits': unknown key dataset.size.*"
                                          "use only: split_seed, test_fraction"):
        load_dataset("digits", size=3)
    with pytest.raises(ConfigError, match=r"dataset.test_fraction must be in \(0, 1\), got 1.5"):
        load_dataset("digits", test_fraction=1.5)
    with pytest.raises(ConfigError,
                       match="dataset.split_seed must be an integer from 0 to 4294967295, got '3'"):
        load_dataset("digits", split_seed="3")
