"""TensorBoard event files (``train.tensorboard = true``): each epoch's metrics, and the batch
loss and learning rate every ``train.log_steps`` steps, in ``OUT/tensorboard``.

Optional: the ``tensorboard`` package is the extra ``trainlab[tensorboard]``. The step's loss
is read back to the host only at those steps, as the progress lines read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trainlab.errors import RecipeError

FOLDER = "tensorboard"
EXTRA = "pip install 'trainlab[tensorboard]'"


def require_tensorboard() -> None:
    """A recipe that asks for TensorBoard fails before any work when the package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise RecipeError(
            f"train.tensorboard = true needs the tensorboard package: {EXTRA}"
        ) from None


class TensorBoardLog:
    def __init__(self, out: Path, every: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer, self.every = SummaryWriter(log_dir=str(out / FOLDER)), every

    def step(self, run: Any, loss: torch.Tensor) -> None:
        step = run.step  # the step just taken is run.step - 1; log it as 1-based step count
        if self.every and step % self.every == 0:
            self.writer.add_scalar("step/loss", float(loss), step)
            self.writer.add_scalar("step/lr", float(run.optimizer.param_groups[0]["lr"]), step)

    def epoch(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(f"epoch/{key}", value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class NoLog:
    def step(self, run: Any, loss: torch.Tensor) -> None:
        return None

    def epoch(self, row: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None
