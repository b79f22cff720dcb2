import shutil

import pytest
import torch

from latent_models.data import DataError, expected_files, load_splits, resolve_data_dir


def test_loads_fixture_as_float_tensors_with_seeded_split(fixture_data):
    d = load_splits("mnist", str(fixture_data), val_size=100, seed=3, download=False)
    assert d.sizes == {"train": 500, "val": 100, "test": 200}
    assert d.train.images.dtype == torch.float32 and d.train.images.shape[1:] == (1, 28, 28)
    assert 0.0 <= d.train.images.min() and d.train.images.max() <= 1.0
    assert d.train.images.max() == 1.0  # scaled from 0..255
    again = load_splits("mnist", str(fixture_data), val_size=100, seed=3, download=False)
    other = load_splits("mnist", str(fixture_data), val_size=100, seed=4, download=False)
    assert torch.equal(d.val.labels, again.val.labels)
    assert not torch.equal(d.val.images, other.val.images)
    # train and val partition the official training set: no image in both
    train_set = {bytes(x.numpy()) for x in d.train.images[:, 0].mul(255).byte()}
    assert not any(bytes(x.numpy()) in train_set for x in d.val.images[:, 0].mul(255).byte())


def test_fashion_mnist_and_digest(fixture_data):
    fashion = load_splits("fashion-mnist", str(fixture_data), val_size=50, download=False)
    mnist = load_splits("mnist", str(fixture_data), val_size=50, download=False)
    assert fashion.sizes == {"train": 250, "val": 50, "test": 100}
    assert len(fashion.digest) == 16 and fashion.digest != mnist.digest


def test_data_dir_from_environment(fixture_data, monkeypatch):
    monkeypatch.setenv("LATENT_MODELS_DATA_DIR", str(fixture_data))
    assert resolve_data_dir("") == fixture_data.resolve()
    assert load_splits("mnist", "", val_size=100, download=False).sizes["test"] == 200


def test_missing_files_name_every_expected_file(tmp_path):
    with pytest.raises(DataError) as err:
        load_splits("mnist", str(tmp_path), download=False)
    for path in expected_files("mnist", tmp_path.resolve()):
        assert str(path) in str(err.value)


def test_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DataError, match="download failed.*network is unreachable"):
        load_splits("mnist", str(tmp_path), download=True)


def _copy(fixture_data, tmp_path):
    shutil.copytree(fixture_data / "MNIST", tmp_path / "MNIST")
    return tmp_path / "MNIST" / "raw"


def test_truncated_file_is_detected(fixture_data, tmp_path):
    raw = _copy(fixture_data, tmp_path)
    f = raw / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated"):
        load_splits("mnist", str(tmp_path), download=False)


def test_wrong_magic_number_is_detected(fixture_data, tmp_path):
    raw = _copy(fixture_data, tmp_path)
    f = raw / "t10k-labels-idx1-ubyte"
    f.write_bytes(b"\x1f\x8b\x08\x00" + f.read_bytes()[4:])  # looks gzip-compressed
    with pytest.raises(DataError, match="magic number"):
        load_splits("mnist", str(tmp_path), download=False)


def test_label_count_mismatch_is_detected(fixture_data, tmp_path):
    from tests.fixtures.make_fixture import copy_head

    raw = _copy(fixture_data, tmp_path)
    labels = raw / "t10k-labels-idx1-ubyte"
    copy_head(fixture_data / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", labels, 150)
    with pytest.raises(DataError, match="200 images but 150 labels"):
        load_splits("mnist", str(tmp_path), download=False)


def test_unknown_dataset_and_bad_val_size(fixture_data):
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        load_splits("cifar", str(fixture_data))
    with pytest.raises(DataError, match="val_size"):
        load_splits("mnist", str(fixture_data), val_size=600, download=False)
