"""Data sets by name: search order, errors that list where we looked, real data when present."""

from __future__ import annotations

import gzip
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CIFAR_ARCHIVE
from PIL import Image

from trainlab.data import ImageDataset, dataset_names, datasets, load_dataset
from trainlab.errors import DataError, RegistryError

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
IDX_NAMES += ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No $TRAINLAB_DATA, a private cache, and no system-wide copies unless a test asks."""
    monkeypatch.delenv("TRAINLAB_DATA", raising=False)
    monkeypatch.setenv("TRAINLAB_CACHE", str(tmp_path / "cache"))


def no_system_data(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", tmp_path / "no-system-fmnist")
    monkeypatch.setattr(datasets, "REPO_ROOT", tmp_path / "no-repo")
    monkeypatch.chdir(tmp_path)


def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist_like(folder: Path, n_train=12, n_test=5, compress=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, n_train).astype(np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, n_test).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        raw = idx(array)
        (folder / (name + (".gz" if compress else ""))).write_bytes(
            gzip.compress(raw) if compress else raw
        )
    return arrays


def test_dataset_names():
    assert dataset_names() == [
        "cifar10",
        "cifar10-jpeg",
        "cifar100",
        "fashion-mnist",
        "imagefolder",
        "mnist",
        "synthetic",
    ]


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_from_data_dir(tmp_path, compress):
    arrays = write_mnist_like(tmp_path / "d", compress=compress)
    ds = load_dataset("mnist", data_dir=tmp_path / "d")
    assert isinstance(ds, ImageDataset) and ds.classes == [str(d) for d in range(10)]
    assert ds.train_images.shape == (12, 1, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.train_labels.dtype == torch.int64 and ds.test_images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), arrays[IDX_NAMES[0]])
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays[IDX_NAMES[3]])
    assert ds.source == str(tmp_path / "d")


def test_fashion_mnist_found_in_trainlab_data_subfolder(tmp_path, monkeypatch):
    no_system_data(monkeypatch, tmp_path)
    arrays = write_mnist_like(tmp_path / "root" / "fashion-mnist", seed=3)
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "root"))
    ds = load_dataset("fashion-mnist")
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(ds.train_labels.numpy(), arrays[IDX_NAMES[1]])


def test_data_dir_is_searched_before_trainlab_data(tmp_path, monkeypatch):
    write_mnist_like(tmp_path / "env", seed=1)
    arrays = write_mnist_like(tmp_path / "explicit", seed=2)
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "env"))
    ds = load_dataset("mnist", data_dir=tmp_path / "explicit")
    np.testing.assert_array_equal(ds.train_labels.numpy(), arrays[IDX_NAMES[1]])


def test_missing_fashion_mnist_lists_places_and_how_to_get_it(tmp_path, monkeypatch):
    no_system_data(monkeypatch, tmp_path)
    monkeypatch.setenv("TRAINLAB_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "given")
    message = str(info.value)
    for place in ("given", "given/fashion-mnist", "env", "env/fashion-mnist", "no-system-fmnist"):
        assert str(tmp_path / place) in message
    assert "trainlab data get fashion-mnist" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_missing_cifar10_lists_places_and_how_to_get_it(tmp_path, monkeypatch):
    no_system_data(monkeypatch, tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path / "given")
    message = str(info.value)
    assert str(tmp_path / "given" / "cifar-10-batches-py") in message
    assert str(tmp_path / "cache" / "data" / "cifar10") in message  # where 'data get' puts it
    assert "trainlab data get cifar10" in message
    assert "jpeg" not in message.lower()  # the lossy copy is never offered as CIFAR-10


def test_missing_cifar10_jpeg_looks_beside_the_checkout(tmp_path, monkeypatch):
    no_system_data(monkeypatch, tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(DataError) as info:
        load_dataset("cifar10-jpeg")
    message = str(info.value)
    assert str(tmp_path / "shared" / "data" / "cifar10-jpeg.tar.gz") in message  # ../ of cwd
    assert "for CIFAR-10 itself use 'cifar10'" in message


def test_missing_mnist_names_the_data_home(tmp_path):
    with pytest.raises(DataError, match="trainlab data get mnist") as info:
        load_dataset("mnist")
    assert str(tmp_path / "cache" / "data" / "mnist") in str(info.value)


def test_unknown_name_lists_valid_names():
    with pytest.raises(RegistryError, match="unknown dataset 'fashion-mnst'.*did you mean"):
        load_dataset("fashion-mnst")


def _cifar_dict(rng, n, key):
    return {
        key: rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
    }


def test_cifar10_pickle_layout_by_name(tmp_path, monkeypatch):
    no_system_data(monkeypatch, tmp_path)
    folder = tmp_path / "d" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps(_cifar_dict(rng, 3, b"labels"), protocol=4))
    meta = {b"label_names": [f"c{k}".encode() for k in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    ds = load_dataset("cifar10", data_dir=tmp_path / "d")
    assert ds.train_images.shape == (15, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    assert ds.classes == [f"c{k}" for k in range(10)] and ds.source == str(folder)


def test_cifar100_pickle_layout_by_name(tmp_path):
    folder = tmp_path / "d" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", 5), ("test", 2)):
        (folder / name).write_bytes(pickle.dumps(_cifar_dict(rng, n, b"fine_labels"), protocol=4))
    meta = {b"fine_label_names": [f"f{k}".encode() for k in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=4))
    ds = load_dataset("cifar100", data_dir=tmp_path / "d")
    assert ds.train_images.shape == (5, 3, 32, 32) and len(ds.classes) == 100


def _png_tree(root: Path, layout: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(
                root / folder / f"{i}.png"
            )


def test_imagefolder_by_path_with_splits(tmp_path):
    _png_tree(tmp_path / "set", {"train/a": 3, "train/b": 2, "test/a": 1, "test/b": 1})
    ds = load_dataset(f"imagefolder:{tmp_path / 'set'}")
    assert ds.classes == ["a", "b"] and ds.train_images.shape == (5, 3, 4, 4)
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1] and ds.test_labels.tolist() == [0, 1]


def test_imagefolder_without_test_split_holds_out_a_tenth(tmp_path):
    _png_tree(tmp_path / "flat", {"a": 10, "b": 10})
    ds = load_dataset(f"imagefolder:{tmp_path / 'flat'}")
    assert len(ds.test_labels) == 2 and len(ds.train_labels) == 18
    assert "held out" in ds.source
    assert ds.notes == [
        f"image folder {tmp_path / 'flat'} has no test split: 2 of its 20 images (10%, drawn "
        "with seed 0) are held out as the test split"
    ]
    every = torch.cat([ds.train_images, ds.test_images]).flatten(1)
    assert len({tuple(row.tolist()) for row in every}) == 20  # a partition: nothing lost or doubled


def test_imagefolder_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_synthetic_is_deterministic_and_seeded():
    a = load_dataset("synthetic(n=64, classes=3, channels=3, size=8, seed=5)")
    b = load_dataset("synthetic(n=64, classes=3, channels=3, size=8, seed=5)")
    c = load_dataset("synthetic(n=64, classes=3, channels=3, size=8, seed=6)")
    assert a.train_images.shape == (64, 3, 8, 8) and a.test_images.shape == (16, 3, 8, 8)
    assert a.train_images.dtype == torch.uint8 and len(a.classes) == 3
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert not torch.equal(a.train_images[:16], a.test_images)  # test is its own draw


def test_synthetic_is_learnable_but_not_trivial():
    # Nearest class mean (a reference classifier in a few lines) must beat chance (25%)
    # clearly, but not solve the task: room for the techniques trainlab compares.
    ds = load_dataset("synthetic")
    train, test = ds.train_images.flatten(1).double(), ds.test_images.flatten(1).double()
    means = torch.stack([train[ds.train_labels == k].mean(0) for k in range(4)])
    accuracy = (torch.cdist(test, means).argmin(1) == ds.test_labels).double().mean().item()
    assert 0.5 < accuracy < 0.95


def test_synthetic_bad_arguments():
    with pytest.raises(RegistryError, match="channels must be 1 or 3"):
        load_dataset("synthetic(channels=2)")
    with pytest.raises(RegistryError, match=r"classes must be an integer in \[2, 1000\], got 1"):
        load_dataset("synthetic(classes=1)")


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST not installed"
)
def test_real_fashion_mnist():
    ds = load_dataset("fashion-mnist")
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (
        10000,
        1,
        28,
        28,
    )
    assert len(ds.classes) == 10
    # Published facts: perfectly balanced, 6,000 per class in train and 1,000 in test.
    assert ds.train_labels.bincount().tolist() == [6000] * 10
    assert ds.test_labels.bincount().tolist() == [1000] * 10


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_ARCHIVE.is_file(), reason="cifar10-jpeg.tar.gz not available")
def test_real_cifar10_jpeg_archive_decodes_then_caches():
    # Decoding the 60,000 JPEGs takes ~9 s on 2 cores (under the 30 s budget), so the test
    # decodes into its private cache and then checks the cached load against it.
    start = time.perf_counter()
    ds = load_dataset("cifar10-jpeg")
    decode_seconds = time.perf_counter() - start
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (
        10000,
        3,
        32,
        32,
    )
    assert ds.classes == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    ]  # fmt: skip
    assert ds.train_labels.bincount().tolist() == [5000] * 10
    assert ds.test_labels.bincount().tolist() == [1000] * 10
    start = time.perf_counter()
    again = load_dataset("cifar10-jpeg")
    assert time.perf_counter() - start < decode_seconds
    assert torch.equal(again.train_images, ds.train_images) and torch.equal(
        again.test_labels, ds.test_labels
    )


def test_cifar10_image_folder_must_look_like_cifar10(tmp_path, monkeypatch):
    no_system_data(monkeypatch, tmp_path)
    _png_tree(tmp_path / "d" / "cifar10-jpeg", {"train/a": 1, "train/b": 1, "test/a": 1})
    with pytest.raises(DataError, match="does not look like CIFAR-10: 2 classes of 3x4x4"):
        load_dataset("cifar10-jpeg", data_dir=tmp_path / "d")


def test_plain_imagefolder_name_asks_for_a_path():
    with pytest.raises(DataError, match="imagefolder:/path"):
        load_dataset("imagefolder")


def test_image_dataset_checks_its_contract():
    images, labels = torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)
    ImageDataset("ok", images, labels, images, labels, ["a"], "here")
    with pytest.raises(
        DataError, match=r"train images must be uint8 \(N, C, H, W\), got torch.float32"
    ):
        ImageDataset("bad", images.float(), labels, images, labels, ["a"], "here")
    with pytest.raises(DataError, match=r"test labels must be int64 \(3,\)"):
        ImageDataset("bad", images, labels, images, labels[:2], ["a"], "here")
