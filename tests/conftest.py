"""Shared test set-up: a private cache folder, the data sets' locations, hypothesis profiles."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests (tests/test_corrupt_files.py): "ci" keeps the whole file to seconds on two
# cores; "nightly" (HYPOTHESIS_PROFILE=nightly) searches far longer. No examples database: a
# failing input is printed in the report, nothing is written into the checkout.
settings.register_profile("ci", max_examples=30, deadline=None, database=None)
settings.register_profile("nightly", max_examples=3000, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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


def installed_or_skip(name: str):
    """The named data set, or a clean skip where it is not installed."""
    from trainlab.data import load_dataset
    from trainlab.errors import DataError

    try:
        return load_dataset(name)
    except DataError as exc:
        pytest.skip(f"{name} is not installed: {exc}")


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real Fashion-MNIST, or a clean skip where it is not installed."""
    return installed_or_skip("fashion-mnist")


@pytest.fixture(scope="session")
def cifar10():
    """The released CIFAR-10, or a clean skip where it is not installed."""
    return installed_or_skip("cifar10")


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: a second intra-op thread only adds contention on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
