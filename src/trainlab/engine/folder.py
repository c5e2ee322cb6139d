"""The run folder: recipe.toml and metrics.jsonl at the start; summary.json, the diagnostics and
the report at the end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trainlab.distributed import DistContext, reduce_diagnostics_
from trainlab.engine.step import Run
from trainlab.fileio import write_json, write_text


@dataclass
class RunResult:
    out: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    confusion: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1] if self.metrics else {}


def start_run_folder(run: Run, out: Path, resumed: bool) -> None:
    if not run.ctx.is_main:
        return
    out.mkdir(parents=True, exist_ok=True)
    if not resumed:
        write_text(out / "recipe.toml", run.recipe.to_toml())
        write_text(out / "metrics.jsonl", "")


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
    }
    diagnosis = None
    if hasattr(run.diag, "report"):
        diagnosis = write_diagnosis(run.diag, out, run.ctx)
        summary["findings"] = [f.sentence() for f in diagnosis[1]]
    if not run.ctx.is_main:
        return result
    write_json(out / "summary.json", summary)
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
