"""The step: one optimizer step on one batch, on the device, with no host synchronization.

    train_step: lr <- schedule(step); augment -> layout -> mix -> forward under autocast
                -> loss (+ penalty) -> backward -> optimizer step -> device tallies

Every technique sits in the :class:`Run` in a form the step calls unconditionally (the no-op
forms at the end of this module), so the step has no branches.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trainlab.distributed import SINGLE, DistContext
from trainlab.engine.ema import NoAverage
from trainlab.engine.splits import Splits
from trainlab.recipe import Recipe

# Named random streams, each derived from (seed, epoch, stream) so they never overlap; the
# data's (subset 1, test 6) are in engine.splits.
STREAM_INIT, STREAM_MIX, STREAM_MODULES, STREAM_GLOBAL = 2, 3, 4, 5


# ---------------------------------------------------------------------------------------------
# The no-op forms: what the step calls where a technique is off.


def no_augmentation(x: torch.Tensor, generator: Any) -> torch.Tensor:
    return x


def no_mixing(
    x: torch.Tensor, y: torch.Tensor, generator: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    return x, y


def unweighted_loss(loss: torch.Tensor, batch_index: int) -> torch.Tensor:
    return loss


def constant_lr(step: int) -> float:
    return 1.0


def same_layout(x: torch.Tensor) -> torch.Tensor:
    return x


def no_clipping() -> None:
    return None


class NoScaler:
    """No loss scaling (every precision but fp16 on CUDA): torch.amp.GradScaler's calls, each
    doing what the step does without it."""

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        return None

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def update(self) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def no_step_mark() -> None:
    return None


def channels_last_layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def no_diagnostics() -> Any:
    from trainlab.diagnostics import NoDiagnostics

    return NoDiagnostics()


def lr_factor(recipe: Recipe, step: int, steps_per_epoch: int) -> float:
    """The schedule as a pure function of the step: nothing to save, exact on resume."""
    cfg = recipe.schedule
    total = recipe.train.epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** (step // (cfg.step_epochs * steps_per_epoch))
    if cfg.name == "cosine":
        return cfg.final_lr + (1 - cfg.final_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - (1.0 - cfg.final_lr) * progress  # linear


@dataclass(eq=False)
class Run:
    """Everything one training needs, built once by :func:`build_run`.

    Every technique is held in a form the step can call unconditionally: no augmentation is the
    identity, no mixing passes ``(x, y)`` through, no diagnostics is :class:`NoDiagnostics`, a
    single process weights its loss by nothing. So :func:`train_step` has no branches.
    """

    recipe: Recipe
    device: torch.device
    model: nn.Module  # the plain model: optimizer, penalty, evaluation and checkpoints see it
    step_model: Callable[[torch.Tensor], torch.Tensor]  # what the step runs (DDP, compiled)
    optimizer: torch.optim.Optimizer
    loader: Any  # DeviceLoader, or ShardedLoader under torchrun
    augment: Callable[[torch.Tensor, Any], torch.Tensor]
    layout: Callable[[torch.Tensor], torch.Tensor]  # NHWC where the model is convolutional
    mix: Callable[[torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    regularize: Callable[[torch.Tensor, int], torch.Tensor]  # rank weight, then penalty
    lr_factor: Callable[[int], float]
    update: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None  # fwd, bwd, step
    clip_gradients: Callable[[], Any] = no_clipping  # optim.clip_grad_norm, after backward
    scaler: Any = field(default_factory=NoScaler)  # torch.amp.GradScaler for fp16 on CUDA
    ema: Any = field(default_factory=NoAverage)  # train.ema_decay: WeightAverage
    set_lr: Callable[[float], None] | None = None
    diag: Any = field(default_factory=no_diagnostics)
    ctx: DistContext = SINGLE
    autocast: Callable[[], Any] = contextlib.nullcontext
    mark_step: Callable[[], None] = no_step_mark  # a CUDA-graph replay's step boundary
    eval_model: nn.Module | None = None
    splits: Splits | None = None
    seed: int = 0
    step: int = 0
    epoch: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    confusion: torch.Tensor | None = None
    stats: Any = None
    base_lrs: list[float] = field(default_factory=list)
    # this epoch's random streams and device-side tallies (set by begin_epoch)
    aug_generator: Any = None
    mix_generator: Any = None
    tally: Any = None
    timing: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # what the user must be told, once
    extensions: list[dict[str, int]] = field(default_factory=list)  # where the run was lengthened
    resumed_at: int | None = None  # the epoch this process resumed the run at
    # train.select_on: the best evaluation so far ({epoch, metric, value}), evaluations since
    # it, and whether early stopping ended the run
    selection: dict[str, Any] = field(
        default_factory=lambda: {"best": None, "stale": 0, "stopped_at": None}
    )

    def __post_init__(self) -> None:
        self.base_lrs = self.base_lrs or [float(g["lr"]) for g in self.optimizer.param_groups]
        self.update = self.update or functools.partial(forward_backward_update, self)
        self.set_lr = self.set_lr or functools.partial(set_lr, self)
        self.eval_model = self.model if self.eval_model is None else self.eval_model
        self.reset_tally()

    def reset_tally(self) -> None:
        """Start counting loss, accuracy and divergence afresh (an epoch's, by default)."""
        self.tally = Tally(self.device, self.step)


def train_step(run: Run, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimizer step on the batch ``(x, y)``, all on the device: no host synchronization.

    augment -> mix -> forward under autocast -> loss (+ penalty) -> backward -> optimizer step.
    Returns the detached loss of the batch.
    """
    run.set_lr(run.lr_factor(run.step))  # a pure function of the step: exact on resume
    x = run.layout(run.augment(x, run.aug_generator))
    x, target = run.mix(x, y, run.mix_generator)
    run.diag.begin_step(run.step)
    run.mark_step()
    loss, logits = run.update(x, target, run.step - run.tally.first_step)
    run.diag.after_step(loss)  # the loss curve, kept on the device
    run.ema.update(run.step)
    run.tally.add(loss, logits, y, run.step)
    run.step += 1
    return loss


def forward_backward_update(run: Run, x: torch.Tensor, target: torch.Tensor, batch_index: int):
    """The part of the step that ``train.compile_scope = "step"`` hands to torch.compile whole:
    forward under autocast, loss (+ penalty), backward, optimizer step. Returns the detached
    loss and logits."""
    with run.autocast():
        logits = run.step_model(x)
    loss = run.loss(logits.float(), target)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(run.regularize(loss, batch_index)).backward()
    run.scaler.unscale_(run.optimizer)  # diagnostics and clipping see the true gradients
    run.diag.after_backward()
    run.clip_gradients()
    run.diag.before_optimizer_step()
    run.scaler.step(run.optimizer)  # skipped, and the scale backed off, if a gradient is inf
    run.scaler.update()
    run.diag.after_optimizer_step()
    return loss.detach(), logits.detach()


def set_lr(run: Run, factor: float) -> None:
    for group, base in zip(run.optimizer.param_groups, run.base_lrs, strict=True):
        group["lr"] = base * factor


def fill_lr_tensors(run: Run, factor: float) -> None:
    """A compiled optimizer step reads its lr from a tensor, so a moving schedule does not make
    torch.compile trace the step again for every new value."""
    for group, base in zip(run.optimizer.param_groups, run.base_lrs, strict=True):
        group["lr"].fill_(base * factor)


class Tally:
    """An epoch's loss, accuracy and first non-finite step, kept on the device."""

    def __init__(self, device: torch.device, first_step: int) -> None:
        self.first_step = first_step
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, step: int) -> None:
        self.first_bad = torch.where(  # new_full is a fill kernel: no host-to-device copy
            (self.first_bad < 0) & ~torch.isfinite(loss), self.first_bad.new_full((), step),
            self.first_bad,
        )  # fmt: skip
        self.loss_sum += loss.double() * len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)
