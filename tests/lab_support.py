"""What the lab's test files share: which data sets are installed, and every number in a
result."""

from __future__ import annotations

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
