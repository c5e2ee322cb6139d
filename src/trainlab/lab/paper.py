"""Paper-scale runs: for a GPU, in commands of at most ten minutes, and priced before they run.

A paper-scale experiment runs inside a :func:`session` (its output folder and a time budget):
every training run is :func:`remembered` under a key naming all that decides it (arm, seed,
rate, budget), so a finished run is read back instead of trained again, and an unfinished one
continues from its checkpoint (the engine's per epoch for recipe runs, :func:`trainlab.lab.loop.
train`'s for the lab's own networks). When the budget is spent, the next checkpoint ends the
command with :class:`Unfinished`; the same command run again continues where it stopped, and
the result is the one an uninterrupted run gives.

:func:`plan` prices an experiment's paper-scale runs without running them (``trainlab lab NAME
--scale paper --plan``): each kind of run, how many, its images and epochs, the floating-point
operations of its model counted layer by layer, and the time at a stated throughput.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMMAND_SECONDS = 540  # a command's budget: 9 minutes of work inside a 10-minute limit
GPU_FLOPS = 10e12  # the effective rate assumed: a tenth of an H100's dense bf16 peak, since
# networks this small are bound by kernel launches and memory traffic, not by arithmetic


class Unfinished(Exception):
    """A paper-scale command ran out of its time budget; running it again continues."""

    def __init__(self, done: int) -> None:
        super().__init__(
            f"time budget spent after {done} finished run(s); run the same command "
            "again to continue"
        )
        self.done = done


@dataclass
class _Session:
    store: Path
    deadline: float
    finished: int = 0


_SESSION: contextvars.ContextVar[_Session | None] = contextvars.ContextVar(
    "lab_paper", default=None
)


@contextlib.contextmanager
def session(folder: Path, seconds: float = COMMAND_SECONDS) -> Iterator[None]:
    """Remember runs in ``folder/runs`` and stop at the first checkpoint after ``seconds``."""
    token = _SESSION.set(_Session(Path(folder) / "runs", time.monotonic() + seconds))
    try:
        yield
    finally:
        _SESSION.reset(token)


def check_deadline() -> None:
    """Raise :class:`Unfinished` when a session's budget is spent (a no-op outside one)."""
    s = _SESSION.get()
    if s is not None and time.monotonic() > s.deadline:
        raise Unfinished(s.finished)


def run_key(**decides: Any) -> str:
    """A file name for one run: the readable fields and a hash of all of them."""
    text = json.dumps(decides, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def remembered(key: str, compute: Callable[[Path | None], dict[str, Any]]) -> dict[str, Any]:
    """``compute(checkpoint_folder)`` once per ``key`` in a session (its JSON result kept under
    the session's store and read back by later commands); outside a session, ``compute(None)``.
    A new run starts only while the budget lasts, or when it is this command's first (so that
    every command makes progress)."""
    from trainlab.fileio import write_json

    s = _SESSION.get()
    if s is None:
        return compute(None)
    done = s.store / f"{key}.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    if s.finished:  # every command makes progress: at least one epoch of one run
        check_deadline()
    result = compute(s.store / key)
    write_json(done, result)
    s.finished += 1
    return result


def fit_resumable(recipe: Any, data: Any, folder: Path | None) -> list[dict[str, Any]]:
    """Train ``recipe`` with the engine (build_run, train_epoch, end_epoch); with a ``folder``,
    checkpoint every epoch into it, continue from the checkpoint there and call
    :func:`check_deadline` after each epoch but the last. Returns every epoch's metrics row."""
    import torch

    from trainlab.train import build_run, end_epoch, load_checkpoint, train_epoch

    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    resume = folder is not None and (folder / "checkpoint.pt").is_file()
    with torch.random.fork_rng(devices=[]):  # the engine seeds the global RNG per epoch
        run = build_run(recipe, data, state=load_checkpoint(folder) if resume else None)
        while run.epoch < recipe.train.epochs:
            train_epoch(run)
            end_epoch(run, folder)
            if folder is not None and run.epoch < recipe.train.epochs:
                check_deadline()
    return list(run.metrics)


# ---------------------------------------------------------------------------------- the plan


@dataclass
class PlannedRun:
    """One kind of paper-scale run: ``count`` runs of ``epochs`` epochs over ``images`` images
    (``epochs`` may be an upper bound: a run that stops at a target), of the model ``make()``
    on inputs of ``in_shape``."""

    what: str
    count: int
    epochs: float
    images: int
    make: Callable[[], Any]
    in_shape: tuple[int, int, int]


def recipe_plan(cfg: dict[str, Any], make: Callable[[], Any], arms: int, moved: int):
    """The runs of a recipe experiment (:class:`trainlab.lab.recipes.PairedArms`): tuning on a
    3-point grid (about 4 rates with an extension) on 3 tuning seeds at the first budget, the
    budget's growth, the paired runs and the primary's re-check (``moved`` arms, two neighbours
    each), at the largest budget (an upper bound)."""
    n, seeds, first, top = cfg["train_images"], cfg["seeds"], cfg["budgets"][0], cfg["budgets"][-1]
    tuning = int((1 - 0.2) * n)  # the validation split is held out
    return [
        PlannedRun(
            f"tuning ({arms} arms x ~4 rates x 3 tuning seeds)",
            arms * 12,
            first,
            tuning,
            make,
            (3, 32, 32),
        ),
        PlannedRun(
            f"budget growth ({arms} arms x 3 tuning seeds, at most)",
            arms * 3,
            top,
            tuning,
            make,
            (3, 32, 32),
        ),
        PlannedRun("paired runs", arms * seeds, top, n, make, (3, 32, 32)),
        PlannedRun(
            "primary re-checked at neighbouring rates", 2 * moved * seeds, top, n, make, (3, 32, 32)
        ),
    ]


def resnet20(norm: str) -> Callable[[], Any]:
    """A factory of the paper scale's CIFAR ResNet-20 (He et al. 2016: widths 16, 32, 64, three
    basic blocks per stage) with ``norm``, for a plan's FLOP count."""
    import json

    from torch import nn

    from trainlab.lab.sizes import PAPER_DEPTH, PAPER_WIDTHS
    from trainlab.models import build_model
    from trainlab.recipe import ModelConfig

    widths = json.loads(PAPER_WIDTHS)  # kept as a recipe value, "[16, 32, 64]"
    model = ModelConfig(kind="resnet", widths=widths, depth=PAPER_DEPTH, norm=norm)
    return lambda: build_model(model, (3, 32, 32), 10, nn.Identity())


def forward_flops(model: Any, in_shape: tuple[int, int, int]) -> int:
    """Floating-point operations of one forward pass of ``model`` on one image: 2 per
    multiply-add of every convolution and linear layer (what dominates; activations, norms and
    pooling are left out), counted from the layers' output shapes on a zero image."""
    import torch
    from torch import nn

    total = 0

    def count(module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            total += 2 * output.numel() * k // module.groups
        elif isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *in_shape))
    finally:
        for h in hooks:
            h.remove()
    return total


def plan_lines(name: str, runs: list[PlannedRun], flops_per_second: float = GPU_FLOPS) -> str:
    """The plan as text: per kind of run its count, epochs, images, FLOPs per run (training
    costs three forward passes: forward, and backward for inputs and weights) and estimated
    time; then the total and the commands of :data:`COMMAND_SECONDS` it takes."""
    lines = [
        f"{name} at paper scale (estimated at {flops_per_second:.3g} FLOP/s, an assumed "
        "effective GPU rate):"
    ]
    total = 0.0
    for r in runs:
        per_run = 3 * forward_flops(r.make(), r.in_shape) * r.images * r.epochs
        seconds = r.count * per_run / flops_per_second
        total += seconds
        lines.append(
            f"  {r.what}: {r.count} run(s) x {r.epochs:g} epochs x {r.images:,} images, "
            f"{per_run:.3g} FLOP per run, about {seconds / 60:.1f} min"
        )
    commands = math.ceil(total / COMMAND_SECONDS)
    lines.append(
        f"  total about {total / 3600:.2f} h: at least {commands} command(s) of "
        f"{COMMAND_SECONDS // 60} min; each continues where the last stopped"
    )
    return "\n".join(lines)
