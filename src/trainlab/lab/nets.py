"""The lab's own networks and their random draws: every weight from a generator the experiment
owns, never from the global RNG."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

from trainlab.activations import make_activation
from trainlab.seeding import make_generator

T = TypeVar("T")


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


def initialized(make: Callable[[], T], scheme: str, activation: str, gen: torch.Generator) -> T:
    """``make()`` under :func:`built`, then every weight drawn by ``initialize(scheme)`` from
    ``gen`` with the gain of ``activation``."""
    from trainlab.init import initialize

    model = built(make)
    initialize(model, scheme, activation, generator=gen)
    return model


def initialized_mlp(widths: list[int], activation: str, scheme: str, gen: torch.Generator):
    """:func:`mlp` with its weights drawn by :func:`initialized`."""
    return initialized(lambda: mlp(widths, activation), scheme, activation, gen)


@torch.no_grad()
def outputs_of(model: nn.Module, modules: list[nn.Module], x: Tensor, train: bool) -> list[Tensor]:
    """The outputs of ``modules``, in call order, in one forward pass of ``model`` on ``x`` (in
    training mode, e.g. batch norm on batch statistics, or in eval mode)."""
    seen: list[Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in modules]
    try:
        model.train(train)
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 2048) -> float:
    """The share of ``x`` that ``model`` (in eval mode) classifies as ``y``."""
    model.eval()
    hits = sum(
        int((model(xs).argmax(1) == ys).sum())
        for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True)
    )
    return hits / len(y)


@torch.no_grad()
def mean_loss(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 1024) -> float:
    """Mean cross-entropy of ``model`` (eval mode) over all of ``x``, summed in float64 by
    chunks; ``inf`` if it is not finite."""
    import math

    import torch.nn.functional as F

    model.eval()
    total = 0.0
    for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True):
        total += float(F.cross_entropy(model(xs), ys, reduction="sum").double())
    value = total / len(x)
    return value if math.isfinite(value) else math.inf
