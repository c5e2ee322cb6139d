"""Checkpoints: tensors and plain values only, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.engine.model import empty_model
from trainlab.engine.step import Run
from trainlab.errors import CheckpointError, OutputError, TrainingDiverged, summary
from trainlab.fileio import atomic_open
from trainlab.recipe import Recipe

CHECKPOINT = "checkpoint.pt"


CHECKPOINT_FORMAT = "trainlab-checkpoint/1"


CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "step", "recipe", "in_shape", "num_classes")


def save_checkpoint(path: Path, **state: Any) -> None:
    # Serialized in memory first: torch.save reports a failed write (a full disk) as a
    # RuntimeError of its zip writer, a plain write as an OSError that names the cause.
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here (expected a run folder or {CHECKPOINT})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, a foreign pickle: all unreadable to us
        # torch wraps the unpickler's one-line reason in paragraphs of advice: keep the reason.
        text = str(exc)
        refused = re.search(r"GLOBAL (\S+)", text)
        reason = text.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        if refused:
            cause = f"refused to unpickle {refused.group(1)}"
        elif text.startswith("Weights only load failed") and reason.strip():
            cause = next(line.strip() for line in reason.splitlines() if line.strip())
        else:
            cause = summary(exc)
        cause = cause[:300]
        raise CheckpointError(f"{path}: not a readable trainlab checkpoint ({cause})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a trainlab checkpoint (format {CHECKPOINT_FORMAT})")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"{path}: an incomplete trainlab checkpoint (no {', '.join(missing)})"
        )
    return state


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """Rebuild the trained model (with its normalizer) from a checkpoint or run folder."""
    import tomllib

    from trainlab.recipe import recipe_from_dict

    state = load_checkpoint(path)
    try:
        recipe = recipe_from_dict(tomllib.loads(state["recipe"]), where=f"{path} (recipe)")
        model = empty_model(recipe, tuple(state["in_shape"]), state["num_classes"])
        model.load_state_dict(state["model"])
    except (tomllib.TOMLDecodeError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: its model cannot be rebuilt ({summary(exc)})") from exc
    return model, recipe, state


def save_run_checkpoint(run: Run, out: Path) -> None:
    assert run.splits is not None
    try:
        save_checkpoint(
            out / CHECKPOINT,
            model=run.model.state_dict(),
            optimizer=run.optimizer.state_dict(),
            epoch=run.epoch,
            step=run.step,
            recipe=run.recipe.to_toml(),
            classes=run.splits.classes,
            in_shape=list(run.splits.in_shape),
            num_classes=len(run.splits.classes),
            confusion=run.confusion,
            metrics=run.metrics,
        )
    except OutputError as exc:  # the write is atomic: the previous checkpoint is still whole
        kept = f"; the last good checkpoint is kept in {out / CHECKPOINT}"
        raise OutputError(f"{exc}{kept if (out / CHECKPOINT).exists() else ''}") from exc


def stop_if_diverged(first_bad: torch.Tensor, epoch: int, out: Path | None) -> None:
    bad = int(first_bad.item())
    if bad < 0:
        return
    where = f"the loss became non-finite at step {bad} (epoch {epoch + 1})"
    if out is not None and (out / CHECKPOINT).exists():
        raise TrainingDiverged(f"{where}; the last good checkpoint is kept in {out / CHECKPOINT}")
    raise TrainingDiverged(f"{where}, before the first checkpoint; try a lower optim.lr")
