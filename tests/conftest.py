"""Shared test set-up: a private cache folder, and the data sets' locations."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Decoded data and statistics are cached per test session, never in the user's cache.

    Data sets that 'trainlab data get' placed in the user's data home stay visible (through
    $TRAINLAB_DATA), so the tests of the real CIFAR-10 run where 'make cifar10' has been run.
    """
    from trainlab.data.sources import data_home

    mp = pytest.MonkeyPatch()
    mp.setenv("TRAINLAB_DATA", str(data_home()))
    mp.setenv("TRAINLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real Fashion-MNIST, or a clean skip where it is not installed."""
    from trainlab.data import load_dataset
    from trainlab.errors import DataError

    try:
        return load_dataset("fashion-mnist")
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST is not installed: {exc}")
