"""The data of lab experiments: data sets by name, subsets drawn by a generator, standardized
images (and, at smoke size, synthetic stand-ins)."""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

from trainlab.data import ImageDataset, load_dataset
from trainlab.errors import DataError
from trainlab.lab.sizes import SMOKE_ENV


@functools.cache
def dataset(name: str) -> ImageDataset:
    """A data set by name. At smoke size only, where CIFAR-10 itself is not installed, the lossy
    ``cifar10-jpeg`` stands in: smoke runs check an experiment's plumbing, never its numbers."""
    try:
        return load_dataset(name)
    except DataError:
        if name != "cifar10" or not os.environ.get(SMOKE_ENV):
            raise
        return load_dataset("cifar10-jpeg")


def standardize(images: Tensor) -> Tensor:
    """uint8 (N, C, H, W) -> float32, zero mean and unit std per channel (over this subset)."""
    x = images.float() / 255.0
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


def image_subset(name: str, n: int, gen: torch.Generator, size: str) -> tuple[Tensor, Tensor, str]:
    """``n`` training images of ``name`` (standardized float) and labels, drawn without
    replacement; in smoke size, or where the data set is missing, a synthetic stand-in.

    Returns ``(x, y, description)``.
    """
    if size != "smoke":
        try:
            ds = load_dataset(name)
        except DataError:
            ds = None
        if ds is not None:
            idx = torch.randperm(len(ds.train_labels), generator=gen)[:n]
            return standardize(ds.train_images[idx]), ds.train_labels[idx], f"{name} ({n} train)"
    channels, side = (3, 32) if name.startswith("cifar") else (1, 28)
    seed = int(torch.randint(2**31, (1,), generator=gen))
    spec = f"synthetic(n={n}, classes=10, channels={channels}, size={side}, seed={seed})"
    ds = load_dataset(spec)
    return standardize(ds.train_images), ds.train_labels, spec


def subset(images: Tensor, labels: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` examples drawn without replacement by ``gen``, in their original order."""
    keep = torch.randperm(len(images), generator=gen)[:n].sort().values
    return images[keep], labels[keep]


def train_subset(name: str, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` uint8 training images of the data set ``name`` and their labels (:func:`subset`)."""
    data = dataset(name)
    return subset(data.train_images, data.train_labels, n, gen)


def test_split(data: ImageDataset, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` test examples drawn at random. Not the first ``n``: CIFAR-10 read from its JPEG
    class folders is sorted by class, so a prefix would hold a single class."""
    return subset(data.test_images, data.test_labels, n, gen)


def with_test_subset(data: ImageDataset, n: int, gen: torch.Generator) -> ImageDataset:
    """The data set with its test split replaced by ``n`` random test examples, for
    :func:`fit_recipe` (the recipe's ``data.test_subset`` takes a prefix; see
    :func:`test_split`)."""
    from dataclasses import replace

    tx, ty = test_split(data, n, gen)
    return replace(data, test_images=tx, test_labels=ty)
