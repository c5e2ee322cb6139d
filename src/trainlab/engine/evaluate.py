"""Evaluation: loss (plain cross-entropy) and accuracy over a whole split, in eval mode, with the
confusion matrix; sharded over the ranks under torchrun."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.distributed import DistContext, all_reduce_, shard_bounds
from trainlab.engine.step import Run


@dataclass
class Evaluation:
    loss: float
    accuracy: float
    confusion: torch.Tensor  # (K, K): rows are true classes, columns predictions


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int = 1024,
    device: torch.device | None = None,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> Evaluation:
    """Loss (plain cross-entropy, no smoothing) and accuracy over a whole split, in eval mode."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        y = labels[start : start + batch_size].to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes**2)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    n = max(1, len(images))
    return Evaluation(loss_sum.item() / n, confusion.diag().sum().item() / n, confusion)


def evaluate_sharded(
    ctx: DistContext,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> Evaluation:
    """:func:`evaluate` with each rank on a contiguous part of the split; loss sums and the
    confusion matrix are summed over the ranks, so every rank returns the whole split's result."""
    if not ctx.distributed:
        return evaluate(model, images, labels, num_classes, batch_size, device, autocast)
    lo, hi = shard_bounds(len(images), ctx.rank, ctx.world_size)
    part = evaluate(model, images[lo:hi], labels[lo:hi], num_classes, batch_size, device, autocast)
    loss_sum = all_reduce_(torch.tensor(part.loss * max(1, hi - lo), device=device).double(), ctx)
    confusion = all_reduce_(part.confusion.to(device), ctx).cpu()
    n = max(1, len(images))
    return Evaluation(loss_sum.item() / n, confusion.diag().sum().item() / n, confusion)


def evaluate_run(run: Run, images: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    """Loss and accuracy of the run's evaluation model (test-time flips where asked)."""
    assert run.splits is not None and run.eval_model is not None
    return evaluate_sharded(
        run.ctx, run.eval_model, images, labels, len(run.splits.classes),
        run.recipe.train.eval_batch_size, run.device, run.autocast,
    )  # fmt: skip


def midpoint_error_run(run: Run, pairs: int = 8) -> float | None:
    """:func:`trainlab.diagnostics.collect.midpoint_nonlinearity` of the run's model on its
    first ``2 * pairs`` training images, as floats on the [0, 1] scale the model's normalizer
    takes beside uint8: how far the trained network is from an affine map (0: no nonlinearity
    at all)."""
    from trainlab.diagnostics.collect import midpoint_nonlinearity
    from trainlab.preprocess import to_unit

    assert run.splits is not None
    images = to_unit(run.splits.train[0][: 2 * pairs].to(run.device))
    return midpoint_nonlinearity(run.model, images)
