"""The run folder: recipe.toml and metrics.jsonl at the start; summary.json, the diagnostics and
the report at the end.

A run folder is the user's data, and no command loses it by accident:

- a new run refuses a folder that holds a run (:func:`refuse_held_run`), unless told to
  overwrite it; then the old outputs go only once the new recipe is valid and its data loaded
  (:func:`clear_run`);
- resuming a finished run changes nothing (:func:`finished_result`);
- on resume only ``train.epochs`` may change, and only to lengthen the run
  (:func:`continued_recipe`); the schedule is then laid out over the new length and the run
  records where it was extended.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainlab.distributed import DistContext, reduce_diagnostics_
from trainlab.engine.checkpoint import BEST, CHECKPOINT, load_checkpoint
from trainlab.engine.step import Run
from trainlab.errors import OutputError, RecipeError, TrainlabError
from trainlab.fileio import write_json, write_text
from trainlab.recipe import Recipe

METRICS, METRICS_CSV = "metrics.jsonl", "metrics.csv"
SUMMARY, RECIPE = "summary.json", "recipe.toml"
# Everything a run writes into its folder; --overwrite removes these and nothing else.
RUN_OUTPUTS = (
    CHECKPOINT, BEST, METRICS, METRICS_CSV, SUMMARY, RECIPE, "report.html", "report.md",
    "diagnostics.html", "diagnostics.json", "findings.json", "figures", "tensorboard",
)  # fmt: skip


@dataclass
class RunResult:
    out: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    confusion: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    already_complete: bool = False  # a resume of a finished run: nothing was trained or written

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


# ---------------------------------------------------------------------------------------------
# What a folder holds, and the rules that keep it.


@dataclass
class HeldRun:
    epochs_done: int
    epochs_planned: int | None  # None: no checkpoint says
    finished: bool  # the last epoch is done and summary.json written


def held_run(out: Path) -> HeldRun | None:
    """The run ``out`` holds (a checkpoint, epochs in metrics.jsonl, or a summary), or None; a
    folder a run was started in but that has no finished epoch holds nothing to lose."""
    if (out / CHECKPOINT).is_file():
        try:
            state = load_checkpoint(out)
        except TrainlabError:  # unreadable, but still someone's file: refuse to replace it
            return HeldRun(0, None, False)
        planned = _planned_epochs(state)
        stopped = (state.get("selection") or {}).get("stopped_at") is not None
        finished = (stopped or state["epoch"] >= (planned or 0)) and (out / SUMMARY).is_file()
        return HeldRun(state["epoch"], planned, finished)
    rows = (out / METRICS).read_text().count("\n") if (out / METRICS).is_file() else 0
    if rows or (out / SUMMARY).is_file():
        return HeldRun(rows, None, (out / SUMMARY).is_file())
    return None


def _planned_epochs(state: dict[str, Any]) -> int | None:
    import tomllib

    try:
        return int(tomllib.loads(state["recipe"])["train"]["epochs"])
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        return None


def refuse_held_run(out: Path) -> None:
    """A new run's ``--out`` must not hold a run: one line naming --resume and --overwrite."""
    held = held_run(out)
    if held is None:
        return
    done = f"{held.epochs_done}/{held.epochs_planned}" if held.epochs_planned else held.epochs_done
    state = "finished" if held.finished else "not finished"
    raise OutputError(
        f"{out} holds a run ({done} epochs, {state}): continue it with --resume {out}, or "
        "replace it with --overwrite"
    )


def clear_run(out: Path) -> None:
    """Remove a run's outputs (and nothing else of the folder) before a new run replaces it."""
    import shutil

    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def continued_recipe(out: Path, stored: Recipe, asked: Recipe | None, done: int) -> Recipe:
    """The recipe a resume continues with: the run's own, with at most ``train.epochs``
    changed, and only upwards (a longer run); any other change is one `RecipeError` naming the
    key."""
    if asked is None:
        return stored
    before, after = stored.to_dict(), asked.to_dict()
    for section, body in after.items():
        for key, value in body.items():
            if value != before[section][key] and (section, key) != ("train", "epochs"):
                raise RecipeError(
                    f"--resume {out}: {section}.{key} cannot change on resume "
                    f"({before[section][key]!r} -> {value!r}); only train.epochs can, to "
                    "lengthen the run"
                )
    if asked.train.epochs < done or (
        asked.train.epochs == done and asked.train.epochs != stored.train.epochs
    ):
        raise RecipeError(
            f"--resume {out}: train.epochs = {asked.train.epochs}: the run has done {done} "
            "epochs; a run can only be lengthened"
        )
    return asked


def finished_result(out: Path, state: dict[str, Any]) -> RunResult:
    """A finished run as it stands, read without writing anything."""
    import json

    summary = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    return RunResult(out, list(state["metrics"]), state.get("confusion"),
                     list(state.get("classes", [])), summary, already_complete=True)  # fmt: skip


def start_run_folder(run: Run, out: Path, resumed: bool, replan: bool = False) -> None:
    """recipe.toml and an empty metrics.jsonl for a new run; a resumed run keeps its files, but
    for a new recipe.toml when the run is lengthened (``replan``)."""
    if not run.ctx.is_main:
        return
    out.mkdir(parents=True, exist_ok=True)
    if not resumed or replan:
        write_text(out / RECIPE, run.recipe.to_toml())
    if not resumed:
        write_text(out / METRICS, "")


def finish_run(run: Run, out: Path, report: bool) -> RunResult:
    """summary.json, the diagnostics and the report; every rank calls it, rank 0 writes."""
    assert run.splits is not None
    timing, now = run.timing, time.perf_counter()
    # training and evaluation from data on the device to the final evaluation, files excluded
    run_seconds = now - timing.get("run_start", now) - timing.get("io_seconds", 0.0)
    result = RunResult(out, run.metrics, run.confusion, run.splits.classes)
    result.summary = summary = {
        "final": result.final,
        "data_seconds": timing["data_seconds"],
        "run_seconds": run_seconds,
        "total_seconds": now - timing["start"],
        "device": str(run.device),
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "train_images": len(run.splits.train[0]),
        "test_images": len(run.splits.test[0]),
        "world_size": run.ctx.world_size,
        "notes": run.notices,
    }
    if run.extensions:
        summary["extended"] = run.extensions
    if run.selection["best"] is not None:
        summary["best"] = {**run.selection["best"], "file": BEST}
    if run.selection["stopped_at"] is not None:
        summary["stopped_early_at_epoch"] = run.selection["stopped_at"]
    if run.ema.average is not None:
        summary["evaluated"] = f"the moving average of the weights (decay {run.ema.decay})"
    if run.resumed_at is not None:  # the diagnostics' hooks watch this process's steps alone
        summary["diagnostics_from_epoch"] = run.resumed_at + 1
    diagnosis = None
    if hasattr(run.diag, "report"):
        diagnosis = write_diagnosis(run.diag, out, run.ctx)
        summary["findings"] = [f.sentence() for f in diagnosis[1]]
    if not run.ctx.is_main:
        return result
    write_json(out / SUMMARY, summary)
    if report:
        from trainlab.report import write_report

        write_report(out, run.recipe, run.metrics, run.confusion, run.splits.classes, summary,
                     diagnosis)  # fmt: skip
    return result


def write_diagnosis(diag: Any, out: Path, ctx: DistContext) -> tuple[Any, list[Any]]:
    """The run's diagnostics: diagnostics.html, findings.json and figures beside the report.

    Every rank calls this: under torchrun the ranks' statistics are combined first, so the
    findings describe whole global batches, and rank 0 writes them."""
    from trainlab.diagnostics import findings, write_diagnostics

    reduce_diagnostics_(diag, ctx)
    report = diag.report()
    diag.detach()
    found = findings(report)
    if ctx.is_main:
        write_diagnostics(out, report, found)
    return report, found
