"""What the diagnostics' test files share: a small training loop watched by Diagnostics, with
the calls the engine's step makes, in the engine's order."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.diagnostics import Diagnostics, DiagnosticsReport


def optimizer_step(diag: Diagnostics, opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward and the optimizer's step, with the diagnostics' hooks where the engine calls
    them (the step itself begins with ``diag.begin_step`` before the forward pass)."""
    opt.zero_grad()
    loss.backward()
    diag.after_backward()
    diag.before_optimizer_step()
    opt.step()
    diag.after_optimizer_step()


def watched_steps(
    model: nn.Module,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    g: torch.Generator,
    *,
    steps: int,
    lr: float,
    every: int,
    window: int,
    batch: int = 64,
    adam: bool = False,
    offset: float = 0.0,
    loss_curve: bool = False,
) -> tuple[DiagnosticsReport, torch.Tensor]:
    """``steps`` steps of SGD with momentum 0.9 (or Adam) on batches drawn from ``x_all`` by
    ``g``, watched; the trainable parameters only. ``loss_curve``: keep every step's loss too
    (the curve rules read it). -> (the report, the last step's loss)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if adam else torch.optim.SGD(params, lr=lr, momentum=0.9)
    diag = Diagnostics(model, every=every, window=window)
    loss = torch.zeros(())
    for step in range(steps):
        diag.begin_step(step)
        idx = torch.randint(0, len(x_all), (batch,), generator=g)
        loss = F.cross_entropy(model(x_all[idx] + offset), y_all[idx])
        optimizer_step(diag, opt, loss)
        if loss_curve:
            diag.after_step(loss)
    diag.detach()
    return diag.report(), loss.detach()
