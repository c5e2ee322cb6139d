"""Checkpoints: tensors and plain values only, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainlab.engine.model import ModelSource, empty_model
from trainlab.engine.step import Run
from trainlab.errors import CheckpointError, OutputError, RecipeError, TrainingDiverged, summary
from trainlab.fileio import atomic_open
from trainlab.recipe import Recipe

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # train.select_on: the epoch best on the validation split


CHECKPOINT_FORMAT = "trainlab-checkpoint/1"


CHECKPOINT_KEYS = ("model", "optimizer", "epoch", "step", "recipe", "in_shape", "num_classes")


def serialize_checkpoint(**state: Any) -> bytes:
    # Serialized in memory first: torch.save reports a failed write (a full disk) as a
    # RuntimeError of its zip writer, a plain write as an OSError that names the cause.
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    return buffer.getvalue()


def write_checkpoint(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def save_checkpoint(path: Path, **state: Any) -> None:
    write_checkpoint(path, serialize_checkpoint(**state))


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


def model_from_checkpoint(
    path: str | Path, model: ModelSource = None
) -> tuple[nn.Module, Recipe, dict[str, Any]]:
    """Rebuild the trained model (with its normalizer) from a checkpoint or run folder (or its
    ``best.pt``), with the weights the run evaluated (the moving average of the weights, where
    ``train.ema_decay`` kept one); a run whose network came from Python (``fit(model=...)``)
    is given the same ``model`` again."""
    state = load_checkpoint(path)
    recipe = checkpoint_recipe(state, path)
    try:
        rebuilt = empty_model(recipe, tuple(state["in_shape"]), state["num_classes"], model)
        # the weights the run evaluated: the moving average where train.ema_decay kept one
        rebuilt.load_state_dict(state.get("ema") or state["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: its model cannot be rebuilt ({summary(exc)})") from exc
    return rebuilt, recipe, state


def checkpoint_recipe(state: dict[str, Any], path: str | Path) -> Recipe:
    """The recipe a checkpoint keeps; a damaged one is a `CheckpointError` naming the file."""
    from trainlab.recipe import recipe_from_toml

    try:
        return recipe_from_toml(state["recipe"], where=f"{path} (its recipe)")
    except RecipeError as exc:  # damaged, or a network of the user's that no longer imports
        raise CheckpointError(f"{path}: its recipe cannot be read ({exc})") from exc


def load_initial_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Start ``model`` from the weights of the checkpoint at ``path`` (fine-tuning): every
    parameter and buffer, the normalizer's statistics included (the weights were learned on
    inputs normalized that way). A classifier head whose class count differs keeps its fresh
    initialization; any other difference of names or shapes is one `CheckpointError` naming
    the parameters. Returns the notices for the console (the head, where it was reset)."""
    state = load_checkpoint(path)
    source, own = state["model"], model.state_dict()
    extra = [k for k in source if k not in own]
    absent = [k for k in own if k not in source]
    if extra or absent:
        names = ", ".join((absent or extra)[:4]) + (" ..." if len(absent or extra) > 4 else "")
        side = (
            "the model has, the checkpoint lacks"
            if absent
            else "the checkpoint has, the model lacks"
        )
        raise CheckpointError(f"--init-from {path}: parameters {side}: {names}")
    differ = [k for k in own if source[k].shape != own[k].shape]
    head = _class_head(differ, own, source, state["num_classes"])
    if differ and head is None:
        shapes = "; ".join(
            f"{k} {tuple(source[k].shape)} there, {tuple(own[k].shape)} here" for k in differ[:3]
        )
        raise CheckpointError(f"--init-from {path}: shapes differ: {shapes}")
    model.load_state_dict({k: own[k] if k in differ else v for k, v in source.items()})
    if head is None:
        return [f"--init-from {path}: all weights loaded (epoch {state['epoch']} of that run)"]
    return [
        f"--init-from {path}: the classifier head ({', '.join(differ)}) has "
        f"{state['num_classes']} classes there and {head} here: initialised afresh; every other "
        "weight loaded"
    ]


def _class_head(
    differ: list[str], own: dict[str, torch.Tensor], source: dict[str, torch.Tensor], k_old: int
) -> int | None:
    """The new class count if the tensors that differ are one layer's, and differ only in their
    first dimension, which counts the classes (K, ...) there and here: a classifier head."""
    if not differ or len({k.rsplit(".", 1)[0] for k in differ}) != 1:
        return None
    k_new = {own[k].shape[0] for k in differ}
    same_rest = all(own[k].shape[1:] == source[k].shape[1:] for k in differ)
    if len(k_new) != 1 or not same_rest or any(source[k].shape[0] != k_old for k in differ):
        return None
    return k_new.pop()


def save_run_checkpoint(run: Run, out: Path, best: bool = False) -> None:
    """The run's state after its last epoch; also as ``best.pt`` when that epoch is the best so
    far on the validation split (written first: a kill between the two leaves a checkpoint of
    the epoch before, which a resume redoes)."""
    assert run.splits is not None
    data = serialize_checkpoint(
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
        extensions=run.extensions,
        notes=run.notices,
        scaler=run.scaler.state_dict(),
        ema=run.ema.state_dict() if run.ema.average is not None else None,
        selection=run.selection,
    )
    try:
        if best:
            write_checkpoint(out / BEST, data)
        write_checkpoint(out / CHECKPOINT, data)
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
