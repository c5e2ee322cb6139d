"""The loop: epochs of :func:`~trainlab.engine.step.train_step`, each closed by :func:`end_epoch`
(test when due, metrics row, checkpoint); :func:`fit` is ``trainlab train``, :func:`train_steps`
a fixed number of steps with no files (``trainlab diagnose``, benchmarks)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainlab.data import ImageDataset, derive_seed, make_generator
from trainlab.distributed import all_reduce_, average_buffers, broadcast_object, distributed_run
from trainlab.engine.build import build_run
from trainlab.engine.checkpoint import (
    CHECKPOINT,
    checkpoint_recipe,
    load_checkpoint,
    save_run_checkpoint,
    stop_if_diverged,
)
from trainlab.engine.evaluate import evaluate_run, midpoint_error_run
from trainlab.engine.folder import (
    METRICS,
    METRICS_CSV,
    SUMMARY,
    RunResult,
    clear_run,
    continued_recipe,
    finish_run,
    finished_result,
    refuse_held_run,
    start_run_folder,
)
from trainlab.engine.logs import NoLog, TensorBoardLog, require_tensorboard
from trainlab.engine.model import ModelSource, python_kind
from trainlab.engine.progress import Progress, Quiet
from trainlab.engine.step import STREAM_GLOBAL, STREAM_MIX, STREAM_MODULES, Run, train_step
from trainlab.errors import RecipeError
from trainlab.fileio import folder_lock, write_text
from trainlab.recipe import Recipe, load_recipe


def train_epoch(
    run: Run,
    watch: Any = None,
    *,
    max_steps: int | None = None,
    on_step: Callable[[Run, torch.Tensor], None] | None = None,
) -> None:
    """:func:`train_step` over one epoch of the loader; ``max_steps`` stops the run's step count
    there, ``on_step(run, loss)`` records whatever a caller needs after each step."""
    watch = watch or Quiet()
    begin_epoch(run)
    watch.begin(run)
    for i, (x, y) in enumerate(run.loader):
        if max_steps is not None and run.step >= max_steps:
            break
        loss = train_step(run, x, y)
        if on_step is not None:
            on_step(run, loss)
        watch.step(run, i)


def begin_epoch(run: Run) -> None:
    """Seed the epoch's streams from ``(seed, epoch)``: a resumed run draws what an uninterrupted
    one would have drawn. Masks and mixing partners are per rank (no keys in one process)."""
    from trainlab.regularize.dropout import reseed_all

    seed, epoch, keys = run.seed, run.epoch, run.ctx.keys()
    torch.manual_seed(derive_seed(seed, epoch, STREAM_GLOBAL, *keys))  # nn.Dropout and kin
    reseed_all(run.model, derive_seed(seed, epoch, STREAM_MODULES, *keys))
    run.mix_generator = torch.Generator(run.device).manual_seed(
        derive_seed(seed, epoch, STREAM_MIX, *keys)
    )
    run.aug_generator = make_generator(seed, "loader-transform", epoch, device=run.device)
    run.loader.set_epoch(epoch)
    run.model.train()
    run.reset_tally()
    run.timing["epoch_start"] = time.perf_counter()


def end_epoch(run: Run, out: Path | None = None, watch: Any = None) -> dict[str, Any]:
    """Close the epoch: combine the ranks' tallies, stop on a non-finite loss, test when due,
    append the metrics row and (in ``out``, rank 0) write the checkpoint and metrics.jsonl."""
    watch = watch or Quiet()
    cfg, ctx, tally = run.recipe.train, run.ctx, run.tally
    if ctx.distributed:  # the epoch over all ranks; any rank's divergence stops all
        all_reduce_(tally.first_bad, ctx, "max")
        all_reduce_(tally.loss_sum, ctx)
        all_reduce_(tally.correct, ctx)
        tally.seen = int(all_reduce_(torch.tensor(tally.seen, device=run.device), ctx).item())
        average_buffers(run.model, ctx)  # per-rank batch-norm statistics -> one model to save
    watch.end(run)
    stop_if_diverged(tally.first_bad, run.epoch, out)
    run.diag.snapshot(run.step)
    train_seconds = time.perf_counter() - run.timing["epoch_start"]
    seen = max(1, tally.seen)
    row: dict[str, Any] = {
        "epoch": run.epoch + 1,
        "train_loss": tally.loss_sum.item() / seen,
        "train_acc": tally.correct.item() / seen,
    }
    # The last epoch is always tested; eval_every = 0 tests it alone (the speed records' way).
    last = run.epoch + 1 == cfg.epochs
    if run.splits is not None and (
        last or (cfg.eval_every and (run.epoch + 1) % cfg.eval_every == 0)
    ):
        for name, split in (("test", run.splits.test), ("val", run.splits.val)):
            if split is not None:
                result = evaluate_run(run, *split)
                row.update({f"{name}_loss": result.loss, f"{name}_acc": result.accuracy})
                run.confusion = result.confusion if name == "test" else run.confusion
    row.update(
        lr=run.optimizer.param_groups[0]["lr"],
        seconds=time.perf_counter() - run.timing["epoch_start"],
        train_seconds=train_seconds,
        images_per_s=tally.seen / max(1e-9, train_seconds),
    )
    run.metrics.append(row)
    improved = select_epoch(run, row)
    run.epoch += 1
    if out is not None and ctx.is_main:  # the ranks hold the same model: one of them writes
        t_io = time.perf_counter()
        save_run_checkpoint(run, out, best=improved)
        write_text(out / METRICS, "".join(json.dumps(m) + "\n" for m in run.metrics))
        write_text(out / METRICS_CSV, metrics_csv(run.metrics))
        run.timing["io_seconds"] = run.timing.get("io_seconds", 0.0) + time.perf_counter() - t_io
    watch.epoch_line(run, row)
    return row


def select_epoch(run: Run, row: dict[str, Any]) -> bool:
    """``train.select_on``: is this epoch's validation result the best so far? Counts the
    evaluations without improvement, and ends the run after ``train.early_stop_patience``."""
    cfg, selection = run.recipe.train, run.selection
    if cfg.select_on == "none" or cfg.select_on not in row:
        return False
    value, best = row[cfg.select_on], selection["best"]
    sign = 1 if cfg.select_on == "val_loss" else -1  # lower loss, higher accuracy
    if best is None or sign * value < sign * best["value"]:
        selection.update(best={"epoch": row["epoch"], "metric": cfg.select_on, "value": value},
                         stale=0)  # fmt: skip
        return True
    selection["stale"] += 1
    if cfg.early_stop_patience and selection["stale"] >= cfg.early_stop_patience:
        selection["stopped_at"] = row["epoch"]
    return False


def metrics_csv(rows: list[dict[str, Any]]) -> str:
    """metrics.jsonl as a table: one column per key in the order first seen (test and
    validation columns are empty on untested epochs)."""
    import csv
    import io

    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def fit(
    recipe: Recipe | None,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    init_from: str | Path | None = None,
    model: ModelSource = None,
    progress: bool = True,
    dataset: ImageDataset | None = None,
    report: bool = True,
) -> RunResult:
    """Train the recipe, writing metrics, checkpoints and the report to ``out``.

    ``model`` trains a network of the user's own (an ``nn.Module``, or a factory ``(in_shape,
    num_classes) -> nn.Module``) with everything the recipe gives a built-in one.
    ``init_from`` starts from a checkpoint's weights (fine-tuning). A folder that holds a run is
    refused unless ``overwrite``, whose old outputs go once the new run's data has loaded.

    With ``resume=True`` training continues after the last completed epoch of
    ``out/checkpoint.pt`` with the run's own recipe; ``recipe``, if given, may differ from it in
    ``train.epochs`` alone, to lengthen the run. A finished run is returned as it is
    (``already_complete``), with nothing written.
    """
    out = Path(out)
    state = None
    if model is not None and recipe is not None and not recipe.model.kind.startswith("python:"):
        recipe = dataclasses.replace(  # the recipe records where the network came from
            recipe, model=dataclasses.replace(recipe.model, kind=python_kind(model))
        )
    if resume:
        if overwrite or init_from is not None:
            raise RecipeError(
                "--resume continues a run: it takes neither --overwrite nor --init-from"
            )
        state = load_checkpoint(out)
        stored = checkpoint_recipe(state, out / CHECKPOINT)
        recipe = continued_recipe(out, stored, recipe, state["epoch"])
        done = state["epoch"] >= recipe.train.epochs or (state.get("selection") or {}).get(
            "stopped_at"
        )
        if done and (out / SUMMARY).is_file():
            return finished_result(out, state)
    elif recipe is None:
        raise RecipeError("fit() needs a recipe, or resume=True with a run folder")
    elif not overwrite:
        refuse_held_run(out)  # before any work
    if recipe.train.tensorboard:
        require_tensorboard()
    # Under torchrun every rank runs this; rank 0 alone shows progress and writes files.
    with distributed_run(recipe.train.device) as (ctx, device):
        out = Path(broadcast_object(str(out), ctx))  # a timestamped default may differ per rank
        owner = folder_lock(out) if ctx.is_main else contextlib.nullcontext()
        # the caller's global RNG is left as it was
        with owner, torch.random.fork_rng(devices=[]):
            if state is None and not overwrite and ctx.is_main:
                refuse_held_run(out)  # again, now that the folder is ours alone
            run = build_run(recipe, dataset, ctx=ctx, device=device, state=state, model=model,
                            init_from=init_from)  # fmt: skip
            replan = state is not None and _lengthen(run, state)
            if overwrite and ctx.is_main:
                clear_run(out)  # the new recipe is valid and its data loaded: now the old goes
            start_run_folder(run, out, resumed=state is not None, replan=replan)
            cfg = recipe.train
            watch = Progress(cfg, out) if progress and ctx.is_main else Quiet()
            if ctx.is_main:  # told once, whether or not progress is shown; kept in the report
                for line in run.notices[len(state.get("notes", [])) if state else 0 :]:
                    print(f"note: {line}", flush=True)
            run.timing["run_start"] = time.perf_counter()  # the data is on the device from here
            run.timing["run_start_step"] = run.step
            log = TensorBoardLog(out, cfg.log_steps) if cfg.tensorboard and ctx.is_main else NoLog()
            try:
                while run.epoch < cfg.epochs and run.selection["stopped_at"] is None:
                    train_epoch(run, watch, on_step=log.step)
                    log.epoch(end_epoch(run, out, watch))
            finally:
                log.close()
            return finish_run(run, out, report)


def _lengthen(run: Run, state: dict[str, Any]) -> bool:
    """Record a resume that changes the run's length: the schedule is laid out over the new
    length from here on. True when the plan changed."""
    import tomllib

    before = tomllib.loads(state["recipe"])["train"]["epochs"]
    run.resumed_at = run.epoch
    if run.recipe.train.epochs == before:
        return False
    run.extensions.append(
        {"at_epoch": run.epoch, "from_epochs": before, "to_epochs": run.recipe.train.epochs}
    )
    run.notices.append(
        f"extended at epoch {run.epoch} from {before} to {run.recipe.train.epochs} epochs: the "
        f"schedule is laid out again over {run.recipe.train.epochs} epochs"
    )
    return True


def train_steps(
    run: Run, steps: int, on_step: Callable[[Run, torch.Tensor], None] | None = None
) -> int:
    """``steps`` more steps of :func:`train_step`, over as many epochs of the loader as they
    take, starting a new epoch; no evaluation and no files (``trainlab diagnose``, benchmarks).
    Returns the run's step count."""
    stop = run.step + steps
    while run.step < stop:
        train_epoch(run, max_steps=stop, on_step=on_step)
        run.epoch += 1
    return run.step


@dataclass
class DiagnosisResult:
    report: Any  # trainlab.diagnostics.DiagnosticsReport
    findings: list[Any]
    html: Path | None
    steps: int


def run_diagnostics(
    recipe: Recipe | str | Path | None = None,
    out: str | Path | None = None,
    *,
    steps: int = 400,
    every: int = 10,
    window: int = 50,
    dataset: ImageDataset | None = None,
) -> DiagnosisResult:
    """``trainlab diagnose RECIPE``: the recipe's own step for ``steps`` steps with diagnostics
    sampled every ``every`` steps, at the schedule's starting learning rate held constant (where
    most faults show); no evaluation, no checkpoint. The report goes to ``out``."""
    import dataclasses

    from trainlab.diagnostics import Diagnostics, findings, write_diagnostics

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"run_diagnostics: steps must be a positive int, got {steps!r}")
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    constant = dataclasses.replace(recipe.schedule, name="constant", warmup_epochs=0.0)
    recipe = dataclasses.replace(recipe, schedule=constant)
    with torch.random.fork_rng(devices=[]):
        run = build_run(
            recipe, dataset, diagnostics=lambda m: Diagnostics(m, every=every, window=window)
        )
        try:
            done = train_steps(run, steps)
        finally:
            run.diag.detach()
    report = run.diag.report()
    report.midpoint_error = midpoint_error_run(run)  # is the network affine?
    found = findings(report)
    html = write_diagnostics(out, report, found) if out is not None else None
    return DiagnosisResult(report, found, html, done)
