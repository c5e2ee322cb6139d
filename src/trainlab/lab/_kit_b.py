"""Shared pieces of lab experiments 8-13: run sizes, seeded generators, data, short fits.

Three sizes: ``full`` (the default), ``quick`` (``--quick``: under a minute on two cores) and
``smoke`` (``TRAINLAB_LAB_SMOKE=1``: seconds, for the test-suite; it checks that the code runs
and writes well-formed results, not that the claim holds). The same variable drives
experiments 1-7.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from trainlab.data import ImageDataset, load_dataset
from trainlab.data.loader import make_generator
from trainlab.errors import DataError
from trainlab.lab._kit_a import SMOKE_ENV, built, pick, size_of  # noqa: F401 (re-exported)

T = TypeVar("T")


def generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU generator for one purpose of one experiment, independent of every other."""
    return make_generator(seed, "lab-b", *keys)


quietly_built = built  # the same rule for experiments 8-13: no trace on the global RNG


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


def subset(images: Tensor, labels: Tensor, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` examples drawn without replacement by ``gen``, in their original order."""
    keep = torch.randperm(len(images), generator=gen)[:n].sort().values
    return images[keep], labels[keep]


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


def batches(n: int, batch: int, steps: int, gen: torch.Generator) -> list[Tensor]:
    """Index batches for ``steps`` SGD steps: consecutive slices of fresh permutations."""
    out: list[Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        out += [perm[i : i + batch] for i in range(0, n - batch + 1, batch)]
    return out[:steps]


def train_steps(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    lr: float,
    batch: int,
    gen: torch.Generator,
    momentum: float = 0.9,
) -> list[float]:
    """Plain SGD with (Nesterov) momentum through the engine's own step
    (:func:`trainlab.train.train_step`); the loss of every step.

    A non-finite loss stops the run: that step and the remaining ones are reported as ``inf``.
    """
    from trainlab.train import bare_run, train_step

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0)
    run = bare_run(model, opt)
    model.train()
    losses: list[float] = []
    for idx in batches(len(x), batch, steps, gen):
        loss = train_step(run, x[idx], y[idx]).item()
        if not math.isfinite(loss):
            return losses + [math.inf] * (steps - len(losses))
        losses.append(loss)
    return losses


def diverged_at(losses: Sequence[float]) -> int | None:
    """The 1-based step whose loss was first non-finite (the run stopped there), or None."""
    for step, value in enumerate(losses, start=1):
        if not math.isfinite(value):
            return step
    return None


def tail_mean(values: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of a loss curve (at least one value): the end of training
    without the noise of a single batch."""
    k = max(1, int(len(values) * fraction))
    return float(sum(values[-k:]) / k)


def fit_recipe(overrides: list[str], data: ImageDataset) -> dict[str, Any]:
    """Train ``load_recipe(None, overrides)`` with trainlab's engine in a throw-away folder;
    returns the last epoch's metrics."""
    from trainlab.recipe import load_recipe
    from trainlab.train import fit

    recipe = load_recipe(None, overrides)
    with tempfile.TemporaryDirectory(prefix="trainlab-lab-") as tmp:
        result = fit(recipe, tmp, progress=False, report=False, dataset=data)
    return dict(result.final)


def underfit_note(train_acc: float, test_acc: float, what: str) -> str:
    """A sentence for the notes when the reference run did not overfit: regularizers and
    augmentation fight overfitting, so without it they can only slow fitting down."""
    gap = train_acc - test_acc
    if gap >= 0.1:
        return ""
    return (
        f" The {what} did not overfit (train - test accuracy = {gap:+.3f}): the run was too "
        "short for the regime the claim is about, so these techniques could only slow fitting."
    )


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def finite(x: float) -> float | None:
    """JSON has no infinity: a diverged number is written as ``null``."""
    return float(x) if math.isfinite(x) else None


def accuracy_bars(
    out: Path,
    name: str,
    title: str,
    runs: dict[str, list[dict]],
    acc: dict[str, tuple[float, float]],
    colors: list[str],
) -> str:
    """Mean test accuracy per variant with its spread, each seed's run as a dot; saved as
    ``out/name``."""
    from trainlab.lab.base import pyplot, save_figure

    plt = pyplot()
    names = list(runs)
    fig, ax = plt.subplots(figsize=(8, 4))
    means = [acc[n][0] for n in names]
    ax.bar(range(len(names)), means, yerr=[acc[n][1] for n in names], color=colors, alpha=0.7)
    for i, n in enumerate(names):
        values = [r["test_acc"] for r in runs[n]]
        ax.scatter([i] * len(values), values, color="k", s=8, zorder=3)
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(max(0.0, min(means) - 0.1), None)
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, out, name)
