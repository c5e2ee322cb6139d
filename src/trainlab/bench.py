"""Time to accuracy, measured the way the speed records measure it.

``time_to_accuracy(recipe, target, runs)`` trains the recipe ``runs`` times with seeds
``seed, seed + 1, ...`` and reports the mean and spread of the final test accuracy and of the
time, plus whether the mean reached the target. The data set is loaded once, and that time is
reported on its own; each run is timed from its data on the device to the end of its final
evaluation (airbench's convention: Jordan 2024, "94% on CIFAR-10 in 3.29 seconds").
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainlab.errors import RecipeError
from trainlab.recipe import Recipe

if TYPE_CHECKING:
    from trainlab.data.datasets import ImageDataset


def cpu_model() -> str:
    """The processor's model name, for the machine line of every benchmark."""
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max of at least one value."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def median_interval(ratios: list[float]) -> tuple[float, float]:
    """A distribution-free 95% interval of the median of paired ratios: the order statistics
    whose binomial(n, 1/2) tails hold at most 2.5% each (robust to the load spikes of a shared
    machine, which a t interval on the mean is not)."""
    xs, n = sorted(ratios), len(ratios)
    cdf, k = 0.0, 0
    while True:
        cdf += math.comb(n, k) / 2**n
        if cdf > 0.025:
            break
        k += 1
    return xs[max(k - 1, 0)], xs[min(n - k, n - 1)]


def time_to_accuracy(
    recipe: Recipe,
    target: float,
    runs: int = 3,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    warmup: int = 0,
    dataset: ImageDataset | None = None,
) -> dict[str, Any]:
    """Train ``runs`` seeds of ``recipe``; accuracy and time statistics against ``target``.

    ``target`` is a test accuracy as a fraction (0.93) or a percentage (93). ``warmup`` runs
    go first and are not counted: they pay one-off costs such as torch.compile's code
    generation and cuDNN's algorithm search, as airbench's timing does.
    """
    from trainlab.data import load_dataset
    from trainlab.engine import fit

    if runs < 1:
        raise RecipeError(f"--runs {runs}: expected at least 1 run")
    if warmup < 0:
        raise RecipeError(f"--warmup {warmup}: expected 0 or more runs")
    if target > 1:
        target /= 100.0
    if not 0 < target <= 1:
        raise RecipeError(f"--target {target}: expected an accuracy in (0, 1] or (0, 100]")

    t0 = time.perf_counter()
    if dataset is None:
        dataset = load_dataset(recipe.data.name, recipe.data.data_dir or None)
    load_seconds = time.perf_counter() - t0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(out) if out is not None else Path(tmp)
        for i in range(warmup):
            fit(recipe, Path(tmp) / f"warmup-{i}", progress=progress, dataset=dataset, report=False)
        for seed in range(recipe.train.seed, recipe.train.seed + runs):
            run_recipe = replace(recipe, train=replace(recipe.train, seed=seed))
            result = fit(
                run_recipe, root / f"seed-{seed}", progress=progress, dataset=dataset, report=False
            )
            final = result.final
            row = {"seed": seed, "test_acc": final["test_acc"]}
            row.update(seconds=result.summary["run_seconds"], epochs=final["epoch"])
            rows.append(row)
    accs = [r["test_acc"] for r in rows]
    acc = summarize(accs)
    return {
        "dataset": recipe.data.name,
        "target": target,
        "runs": rows,
        "accuracy": acc,
        "seconds": summarize([r["seconds"] for r in rows]),
        "load_seconds": load_seconds,
        "warmup_runs": warmup,
        "reached": acc["mean"] >= target,
        "runs_reaching_target": sum(a >= target for a in accs),
        # a one-sided check that the mean is above target, not just by luck of the seeds
        "accuracy_sem": acc["std"] / math.sqrt(len(accs)),
    }


def format_report(stats: dict[str, Any]) -> str:
    acc, sec = stats["accuracy"], stats["seconds"]
    warmup = (
        f"; {stats['warmup_runs']} warm-up run(s) not counted" if stats.get("warmup_runs") else ""
    )
    lines = [
        f"{stats['dataset']}: {len(stats['runs'])} runs, target {100 * stats['target']:.2f}%",
        f"  test accuracy  {100 * acc['mean']:.2f}% +- {100 * acc['std']:.2f} "
        f"(min {100 * acc['min']:.2f}, max {100 * acc['max']:.2f}); "
        f"{stats['runs_reaching_target']}/{len(stats['runs'])} runs reached the target",
        f"  time per run   {sec['mean']:.2f} s +- {sec['std']:.2f} "
        f"(data on the device to final evaluation)",
        f"  data loading   {stats['load_seconds']:.2f} s (once){warmup}",
        f"  target {'reached' if stats['reached'] else 'NOT reached'} by the mean accuracy",
    ]
    return "\n".join(lines)
