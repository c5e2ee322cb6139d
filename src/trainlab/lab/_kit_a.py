"""Small shared pieces of lab experiments 1-7: run sizes, seeded generators, data subsets, models.

Three sizes: ``full`` (the default), ``quick`` (``--quick``: under a minute on two cores) and
``smoke`` (set ``TRAINLAB_LAB_SMOKE=1``: a few seconds, for the test-suite; it checks that the
code runs and writes well-formed results, not that the claim holds, and may swap real data sets
for ``synthetic``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from trainlab.activations import make_activation
from trainlab.data import load_dataset
from trainlab.data.loader import make_generator
from trainlab.errors import DataError

SMOKE_ENV = "TRAINLAB_LAB_SMOKE"
T = TypeVar("T")


def size_of(quick: bool) -> str:
    """``"smoke"`` when the test-suite asks for it, else ``"quick"`` or ``"full"``."""
    if os.environ.get(SMOKE_ENV, "") not in ("", "0"):
        return "smoke"
    return "quick" if quick else "full"


def pick(size: str, **options: T) -> T:
    """The value for this size: ``pick(size, smoke=1, quick=10, full=100)``."""
    return options[size]


def generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU generator for one purpose of one experiment, independent of every other."""
    return make_generator(seed, "lab", *keys)


def built(make: Callable[[], T]) -> T:
    """Build a module without leaving a trace on the global RNG.

    ``nn.Linear`` and ``nn.Conv2d`` draw their default weights from the global generator; the
    lab re-initializes them from its own generator afterwards, so those draws are discarded and
    the global state is restored.
    """
    with torch.random.fork_rng(devices=[]):
        return make()


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


def new_mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """:func:`mlp` built under :func:`built` (no global-RNG side effect)."""
    return built(lambda: mlp(sizes, activation))


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


def batches(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    """One epoch of shuffled index batches (the last, short one dropped)."""
    order = torch.randperm(n, generator=gen)
    return list(order[: n - n % batch_size].split(batch_size)) or [order]


def sgd_steps(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    steps: int,
    gen: torch.Generator,
    batch_size: int = 128,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """``steps`` of the engine's own step (:func:`trainlab.train.train_step`: cross-entropy,
    backward, optimizer step) over shuffled batches drawn from ``gen``; the loss of every step
    (one host read per step: the lab's networks are small)."""
    from trainlab.train import bare_run, train_step

    run = bare_run(net, opt)
    losses: list[float] = []
    while len(losses) < steps:
        for idx in batches(len(y), batch_size, gen):
            losses.append(train_step(run, x[idx], y[idx]).item())
            if after_step is not None:
                after_step()
            if len(losses) == steps:
                break
    return losses


class Stopwatch:
    """Wall-clock seconds, for the timing keys that sit outside the reproducibility guarantee."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def rounded(value: Any, digits: int = 6) -> Any:
    """Floats to ``digits`` significant digits (recursively), non-finite ones to ``None``."""
    if isinstance(value, float):
        ok = value == value and abs(value) != float("inf")
        return float(f"{value:.{digits}g}") if ok else None
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value
