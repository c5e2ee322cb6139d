"""What the lab's test files share: which data sets are installed, every number in a result, and
one smoke run of every experiment per test process (its results are read by several files)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest


def have(name: str) -> bool:
    """Whether the lab can load the data set ``name`` here."""
    from trainlab.lab import data as lab_data

    try:
        lab_data.dataset(name)
    except Exception:
        return False
    return True


def have_cifar() -> bool:
    """CIFAR-10, or the JPEG copy that smoke runs accept in its place."""
    return have("cifar10") or have("cifar10-jpeg")


needs_data = pytest.mark.skipif(
    not (have_cifar() and have("fashion-mnist")),
    reason="CIFAR-10 (or its JPEG copy, which smoke runs accept) / Fashion-MNIST missing",
)


def numbers(value, where="measured"):
    """``(where, number)`` for every number in a nested result (booleans are not numbers)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from numbers(v, f"{where}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield where, value


@functools.cache
def smoke_lab() -> tuple[Path, dict, bool]:
    """Every registered experiment once at smoke size (seed 0) into a temporary folder:
    ``(folder, {name: result}, global RNG untouched)``. Run once per test process."""
    import os

    import torch

    from trainlab.lab.gallery import run_lab
    from trainlab.lab.sizes import SMOKE_ENV

    out = Path(tempfile.mkdtemp(prefix="trainlab-lab-smoke-"))
    atexit.register(shutil.rmtree, out, True)
    before, state = os.environ.get(SMOKE_ENV), torch.random.get_rng_state()
    os.environ[SMOKE_ENV] = "1"
    try:
        results = run_lab("all", out, quick=True, seed=0)
    finally:
        if before is None:
            del os.environ[SMOKE_ENV]
        else:
            os.environ[SMOKE_ENV] = before
    untouched = torch.equal(torch.random.get_rng_state(), state)
    return out, {r["name"]: r for r in results}, untouched
