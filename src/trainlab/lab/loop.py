"""The lab's one training loop for its own networks: the engine's step
(:func:`trainlab.train.bare_run` + :func:`trainlab.train.train_step`) over shuffled index batches
of in-memory tensors, with a per-step probe, and a checkpoint per epoch where a paper-scale run
must continue across commands (:mod:`trainlab.lab.paper`).

    trained = train(model, optimizer, x, y, batch=128, gen=gen, steps=1000,
                    probe=lambda step, loss: step in checkpoints and record(model))

A non-finite loss ends a run: it is *diverged* from that step on, never given a made-up value.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


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


def sgd(model: nn.Module, lr: float, momentum: float = 0.9, nesterov: bool = True):
    """SGD with (Nesterov) momentum on every parameter: the lab's default optimizer."""
    nesterov = nesterov and momentum > 0
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)


@dataclass
class Trained:
    """A finished run: every step's batch loss (until it diverged), per epoch the mean batch
    loss and the running error (each batch's before its update), the 1-based step of the first
    non-finite loss, whether the probe stopped it, and the trained model."""

    model: nn.Module
    losses: list[float] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    diverged_at: int | None = None
    stopped: bool = False

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def status(self) -> str:
        return "diverged" if self.diverged else "trained"


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    batch: int,
    gen: torch.Generator,
    steps: int | None = None,
    epochs: int | None = None,
    probe: Callable[[int, float], Any] | None = None,
    on_epoch: Callable[[dict[str, float]], Any] | None = None,
    checkpoint: Path | None = None,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Trained:
    """Train ``model`` on ``(x, y)`` (on the device where they lie) through the engine's step,
    for ``steps`` steps and/or ``epochs`` epochs (whichever ends first), each epoch a fresh
    permutation from ``gen``. ``probe(step, loss)`` runs after every step (1-based) with the
    batch loss and stops the run by returning True; ``on_epoch(stats)`` runs after every epoch
    with its mean batch loss and running error and may stop it too. A non-finite loss ends the
    run as diverged.

    With ``checkpoint`` (a file), the run restarts from it if it exists, saves itself there at
    the end of every epoch and then lets :func:`trainlab.lab.paper.check_deadline` end the
    command; the continued run is the uninterrupted one (model, optimizer and batch order are
    restored). ``loss(output, target)`` replaces the engine's cross-entropy."""
    from trainlab.train import bare_run, train_step

    if steps is None and epochs is None:
        raise ValueError("train needs steps or epochs")
    steps = steps if steps is not None else math.inf
    epochs = epochs if epochs is not None else math.inf
    run = bare_run(model, optimizer)
    run.loss = loss or run.loss
    done = Trained(model)
    if checkpoint is not None and checkpoint.is_file():
        _restore(checkpoint, done, optimizer, gen)
        run.step = len(done.losses)
    while len(done.epochs) < epochs and len(done.losses) < steps and not done.stopped:
        run.reset_tally()
        model.train()
        for idx in epoch_batches(len(y), batch, gen):
            if len(done.losses) >= steps:
                break
            idx = idx.to(x.device, non_blocking=True)
            value = float(train_step(run, x[idx], y[idx]))
            if not math.isfinite(value):
                done.diverged_at = len(done.losses) + 1
                return done
            done.losses.append(value)
            if probe is not None and probe(len(done.losses), value):
                done.stopped = True
                break
        seen = max(1, run.tally.seen)
        done.epochs.append(
            {
                "loss": float(run.tally.loss_sum) / seen,
                "error": 1.0 - float(run.tally.correct) / seen,
            }
        )
        if on_epoch is not None and on_epoch(done.epochs[-1]):
            done.stopped = True
        more = len(done.epochs) < epochs and len(done.losses) < steps and not done.stopped
        if checkpoint is not None:
            _save(checkpoint, done, optimizer, gen)
            if more:
                from trainlab.lab.paper import check_deadline

                check_deadline()
    return done


def _save(path: Path, done: Trained, optimizer: torch.optim.Optimizer, gen: torch.Generator):
    from trainlab.fileio import write_with

    state = {
        "model": done.model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": gen.get_state(),
        "losses": done.losses,
        "epochs": done.epochs,
        "stopped": done.stopped,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: torch.save(state, tmp))


def _restore(path: Path, done: Trained, optimizer: torch.optim.Optimizer, gen: torch.Generator):
    device = next(done.model.parameters()).device
    state = torch.load(path, map_location=device, weights_only=True)
    done.model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"].cpu())
    done.losses, done.epochs = list(state["losses"]), list(state["epochs"])
    done.stopped = bool(state["stopped"])


def checkpointed_losses(path: Path | None) -> list[float]:
    """The losses a checkpoint of :func:`train` holds (none if there is none): what a probe
    with a window needs to go on where the last command stopped."""
    if path is None or not path.is_file():
        return []
    return list(torch.load(path, map_location="cpu", weights_only=True)["losses"])
