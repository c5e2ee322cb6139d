"""How a lab experiment runs: its size, its seeded generators, its networks and batches, and
its training, which is always the engine's own step.

Four sizes: ``full`` (the default), ``quick`` (``--quick``: under a minute on two cores),
``smoke`` (``TRAINLAB_LAB_SMOKE=1``: seconds, for the test-suite; it checks that the code runs
and writes well-formed results, not that the claim holds, and may swap real data sets for
``synthetic``) and ``paper`` (``--scale paper``: the claim's source's own scale, for a GPU; only
the experiments whose size table has a fourth column offer it).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from trainlab.activations import make_activation
from trainlab.data import ImageDataset
from trainlab.seeding import make_generator

SMOKE_ENV = "TRAINLAB_LAB_SMOKE"
SIZES = ("smoke", "quick", "full", "paper")
SCALES = ("quick", "full", "paper")  # what a user asks for; smoke is the test-suite's
T = TypeVar("T")


def size_of(scale: str) -> str:
    """``"smoke"`` when the test-suite asks for it, else ``scale`` (one of :data:`SCALES`)."""
    if os.environ.get(SMOKE_ENV, "") not in ("", "0"):
        return "smoke"
    return scale


def at_size(table: dict[str, tuple[Any, ...]], size: str) -> dict[str, Any]:
    """An experiment's size table, ``{parameter: (smoke, quick, full[, paper])}``, at ``size``."""
    return {name: values[SIZES.index(size)] for name, values in table.items()}


def sizes_in(table: dict[str, tuple[Any, ...]]) -> tuple[str, ...]:
    """The sizes a size table gives every parameter of."""
    return SIZES[: min(len(values) for values in table.values())]


def lab_device(size: str) -> torch.device:
    """Where an experiment trains: the GPU at the paper's scale when there is one, else the CPU
    (the lab's CPU sizes are chosen for the CPU)."""
    cuda = size == "paper" and torch.cuda.is_available()
    return torch.device("cuda" if cuda else "cpu")


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, the caller's count restored after: for
    experiments whose tensors are too small for more threads to help (they only wait on each
    other), or whose timings must not depend on the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def epoch_batches(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    """One epoch of shuffled index batches (the last, short one dropped)."""
    order = torch.randperm(n, generator=gen)
    return list(order[: n - n % batch_size].split(batch_size)) or [order]


def step_batches(n: int, batch: int, steps: int, gen: torch.Generator) -> list[Tensor]:
    """Index batches for ``steps`` SGD steps: consecutive epochs of :func:`epoch_batches`."""
    out: list[Tensor] = []
    while len(out) < steps:
        out += epoch_batches(n, batch, gen)
    return out[:steps]


def sgd_curve(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    lr: float,
    batch: int,
    gen: torch.Generator,
    momentum: float = 0.9,
    nesterov: bool = True,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """SGD with momentum through the engine's own step (:func:`trainlab.train.train_step`:
    cross-entropy, backward, optimizer step) on batches drawn from ``gen``; the loss of every
    step (one host read per step: the lab's networks are small).

    A non-finite loss stops the run: that step and the remaining ones are reported as ``inf``.
    """
    from trainlab.train import bare_run, train_step

    nesterov = nesterov and momentum > 0
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
    run = bare_run(model, opt)
    model.train()
    losses: list[float] = []
    for idx in step_batches(len(x), batch, steps, gen):
        loss = train_step(run, x[idx], y[idx]).item()
        if not math.isfinite(loss):
            return losses + [math.inf] * (steps - len(losses))
        losses.append(loss)
        if after_step is not None:
            after_step()
    return losses


def fit_recipe(overrides: list[str], data: ImageDataset) -> dict[str, Any]:
    """Train ``load_recipe(None, overrides)`` with trainlab's engine in a throw-away folder;
    returns the last epoch's metrics, with the first epoch's training loss added as
    ``first_train_loss`` (where the run started, for :func:`trainlab.lab.arms.diverged`'s rule)."""
    from trainlab.recipe import load_recipe
    from trainlab.train import fit

    recipe = load_recipe(None, overrides)
    with tempfile.TemporaryDirectory(prefix="trainlab-lab-") as tmp:
        result = fit(recipe, tmp, progress=False, report=False, dataset=data)
    return {**result.final, "first_train_loss": result.metrics[0]["train_loss"]}
