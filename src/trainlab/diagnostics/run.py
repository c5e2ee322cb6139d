"""A short training run with diagnostics on: what ``trainlab diagnose RECIPE`` does.

The loop is the engine's (``trainlab.train``) cut to what a diagnosis needs: the recipe's data,
model, initialization, optimizer and augmentation, a constant learning rate (the schedule's
start, where most faults show), no evaluation and no checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from trainlab.diagnostics.collect import Diagnostics, DiagnosticsReport
from trainlab.diagnostics.findings import Finding, findings
from trainlab.diagnostics.render import write_diagnostics

__all__ = ["DiagnosisResult", "run_diagnostics", "train_steps"]


@dataclass
class DiagnosisResult:
    report: DiagnosticsReport
    findings: list[Finding]
    html: Path | None
    steps: int


def train_steps(
    model: torch.nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    steps: int,
    diag: Diagnostics | None = None,
    augment: Any = None,
) -> int:
    """Train ``steps`` steps over ``loader`` (re-shuffled per epoch), with ``diag``'s calls
    where the engine makes them. Returns the number of steps run."""
    model.train()
    step, epoch = 0, 0
    while step < steps:
        loader.set_epoch(epoch)
        for x, y in loader:
            if step >= steps:
                break
            if diag is not None:
                diag.begin_step(step)
            loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if diag is not None:
                diag.after_backward()
                diag.before_optimizer_step()
            optimizer.step()
            if diag is not None:
                diag.after_optimizer_step()
            step += 1
        epoch += 1
    return step


def run_diagnostics(
    recipe: Any = None,
    out: str | Path | None = None,
    *,
    steps: int = 400,
    every: int = 10,
    window: int = 50,
    dataset: Any = None,
) -> DiagnosisResult:
    """Train ``recipe`` (a Recipe, a TOML path or None for the default) for ``steps`` steps
    with diagnostics sampled every ``every`` steps, and write the report into ``out``."""
    from trainlab.augment import make_pipeline
    from trainlab.data import DeviceLoader
    from trainlab.preprocess import compute_stats
    from trainlab.recipe import Recipe, load_recipe
    from trainlab.train import build_optimizer, build_training_model, prepare_splits, select_device

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"run_diagnostics: steps must be a positive int, got {steps!r}")
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    device = select_device(recipe.train.device)
    splits = prepare_splits(recipe, dataset)
    stats = compute_stats(splits.train[0])
    with torch.random.fork_rng(devices=[]):
        model = build_training_model(recipe, splits, stats).to(device)
        optimizer = build_optimizer(recipe, model)
        augment = make_pipeline(recipe.augment.train, stats=stats) if recipe.augment.train else None
        loader = DeviceLoader(
            *splits.train,
            recipe.train.batch_size,
            shuffle=True,
            seed=recipe.train.seed,
            device=device,
            transform=augment,
        )
        diag = Diagnostics(model, every=every, window=window)
        try:
            done = train_steps(model, loader, optimizer, steps, diag)
        finally:
            diag.detach()
    report = diag.report()
    found = findings(report)
    html = write_diagnostics(out, report, found) if out is not None else None
    return DiagnosisResult(report, found, html, done)
