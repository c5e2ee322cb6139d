"""The engine: one training step for every training in the project.

    build_run(recipe, dataset) -> Run                                   engine.build
    fit:  while run.epoch < epochs: train_epoch(run) [train_step per batch]; end_epoch(run, out)
                                                                        engine.loop
    train_step: data (uint8, on the device) -> augment (uint8, batched) -> mix (float) -> model
        -> loss (+ penalty) -> backward -> optimizer step (lr from the schedule)
                                                                        engine.step

``trainlab train`` runs :func:`fit`, ``trainlab diagnose`` :func:`run_diagnostics`, the lab
:func:`bare_run` and :func:`train_step`, the benchmarks the same. Per epoch, :func:`end_epoch`
appends a line to ``metrics.jsonl`` and writes the checkpoint atomically (engine.checkpoint,
engine.folder); every ``train.eval_every`` epochs and after the last, it first evaluates on the
test split (and the validation split, if any; engine.evaluate). Every random stream (shuffling,
augmentation, mixing, dropout masks) is derived from ``(seed, epoch)``, so ``--resume``
continues an interrupted run exactly as an uninterrupted one would have gone on.
"""

from trainlab.engine.build import autocast_for, bare_run, build_optimizer, build_run, select_device
from trainlab.engine.checkpoint import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    checkpoint_recipe,
    load_checkpoint,
    load_initial_weights,
    model_from_checkpoint,
    save_checkpoint,
)
from trainlab.engine.evaluate import (
    Evaluation,
    evaluate,
    evaluate_run,
    evaluate_sharded,
    midpoint_error_run,
)
from trainlab.engine.folder import RunResult
from trainlab.engine.loop import (
    DiagnosisResult,
    begin_epoch,
    end_epoch,
    fit,
    run_diagnostics,
    train_epoch,
    train_steps,
)
from trainlab.engine.model import build_training_model, empty_model, uses_channels_last
from trainlab.engine.splits import Splits, held_out_split, prepare_splits
from trainlab.engine.step import Run, lr_factor, train_step

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "DiagnosisResult",
    "Evaluation",
    "Run",
    "RunResult",
    "Splits",
    "autocast_for",
    "bare_run",
    "begin_epoch",
    "build_optimizer",
    "build_run",
    "build_training_model",
    "checkpoint_recipe",
    "empty_model",
    "end_epoch",
    "evaluate",
    "evaluate_run",
    "evaluate_sharded",
    "fit",
    "held_out_split",
    "load_checkpoint",
    "load_initial_weights",
    "lr_factor",
    "midpoint_error_run",
    "model_from_checkpoint",
    "prepare_splits",
    "run_diagnostics",
    "save_checkpoint",
    "select_device",
    "train_epoch",
    "train_step",
    "train_steps",
    "uses_channels_last",
]
