"""CIFAR-10 on this project's 2-core CPU: recipes/cifar10-cpu.toml against its target, and the
accuracy a run of each time budget reaches.

1. The target: 2 seeds of the recipe as shipped, mean test accuracy at least 91.0% in at most
   20 minutes a run.
2. The time-to-accuracy table: the same recipe shortened or lengthened to fit budgets of 5, 10
   and 30 minutes (epochs scaled, the warm-up kept at the same fraction of the run), one seed
   each; the 20-minute row is the target's runs. A one-cycle schedule is tuned to its length,
   so each budget is its own run, not a point on a longer run's curve.

Timing: `trainlab bench time-to-accuracy`'s convention, from the data in memory to the end of
the final evaluation (with test-time flips); the data loading time is reported once, apart.
Data: the released CIFAR-10 (`make cifar10`), checked against its published sha256 at load.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_cifar10_cpu.py [--only 20 5 10 30] [--smoke]
          [--render]
Writes docs/benchmarks/cifar10_cpu.md and the rows measured so far to cifar10_cpu.json beside
it; `--only` measures some rows and keeps the others from the JSON, so the rows can be taken in
separate sittings of an otherwise idle machine. With --smoke: a few hundred images, one epoch,
only to rehearse the code paths, written to a temporary folder; not a measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.bench import cpu_model, time_to_accuracy  # noqa: E402
from trainlab.data import load_dataset  # noqa: E402
from trainlab.fileio import write_json, write_text  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402

RECIPE = ROOT / "recipes" / "cifar10-cpu.toml"
TARGET = 91.0
TARGET_MINUTES = 20.0
TARGET_SEEDS = 2
# budget in minutes -> epochs, from the recipe's measured ~46 s an epoch on the 2-core EPYC
BUDGET_EPOCHS = {5: 6, 10: 12, 30: 36}


def scaled(recipe, epochs: int):
    fraction = recipe.schedule.warmup_epochs / recipe.train.epochs
    return dataclasses.replace(
        recipe,
        train=dataclasses.replace(recipe.train, epochs=epochs),
        schedule=dataclasses.replace(recipe.schedule, warmup_epochs=fraction * epochs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: rehearse, not measure")
    parser.add_argument(
        "--only", nargs="+", type=int, choices=[20, *BUDGET_EPOCHS], default=[20, *BUDGET_EPOCHS]
    )
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "cifar10_cpu.md"))
    parser.add_argument("--render", action="store_true", help="only rewrite the page from the JSON")
    args = parser.parse_args()
    if args.render:
        store = Path(args.out).with_suffix(".json")
        write_text(args.out, render(json.loads(store.read_text()), smoke=False))
        return

    t0 = time.perf_counter()
    data = load_dataset("cifar10")
    load_seconds = time.perf_counter() - t0
    recipe = load_recipe(RECIPE)
    budgets = {20: recipe.train.epochs, **BUDGET_EPOCHS}
    if args.smoke:
        recipe = load_recipe(RECIPE, ["data.subset=512", "data.test_subset=256", "train.epochs=1"])
        budgets = {20: 1, 5: 1, 10: 1, 30: 1}
        args.out = str(Path(tempfile.mkdtemp()) / "cifar10_cpu.md")
    store = Path(args.out).with_suffix(".json")
    rows = json.loads(store.read_text()) if store.exists() else {}
    for minutes in args.only:
        seeds = TARGET_SEEDS if minutes == 20 else 1
        stats = time_to_accuracy(scaled(recipe, budgets[minutes]), TARGET, seeds, dataset=data)
        rows[str(minutes)] = {
            "epochs": budgets[minutes],
            "test_acc": [r["test_acc"] for r in stats["runs"]],
            "seconds": [r["seconds"] for r in stats["runs"]],
            "load_seconds": load_seconds,
            "machine": f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "date": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        }
        write_json(store, rows)
        write_text(args.out, render(rows, args.smoke))
    print(Path(args.out).read_text())


def render(rows: dict, smoke: bool) -> str:
    lines = [
        "## CIFAR-10 on the 2-core CPU: `recipes/cifar10-cpu.toml`",
        "",
        "Command: `PYTHONPATH=src .venv/bin/python benchmarks/bench_cifar10_cpu.py`"
        + (" --smoke (NOT a measurement)" if smoke else "")
        + ". Data: the released CIFAR-10 from `trainlab data get cifar10`, sha256 verified at "
        "load. Each run is timed from the data in memory to the end of its final evaluation "
        "(with test-time flips); the 20-minute row is the recipe as shipped, the others the "
        "same recipe with its epochs (and warm-up, in proportion) fitted to the budget.",
        "",
        "| budget | epochs | seeds | test accuracy (%) | per seed | minutes a run "
        "| machine, date |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for minutes in sorted(rows, key=int):
        row = rows[minutes]
        accs = [100 * a for a in row["test_acc"]]
        mean = statistics.fmean(accs)
        spread = f" +- {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        lines.append(
            f"| {minutes} min | {row['epochs']} | {len(accs)} | {mean:.2f}{spread} | "
            f"{', '.join(f'{a:.2f}' for a in accs)} | "
            f"{', '.join(f'{s / 60:.1f}' for s in row['seconds'])} | "
            f"{row['machine']}; {row['date']} |"
        )
    notes = [f"- {m} min: {rows[m]['note']}" for m in sorted(rows, key=int) if rows[m].get("note")]
    if notes:
        lines += ["", "Notes written after the runs:", *notes]
    if "20" in rows:
        row = rows["20"]
        acc = 100 * statistics.fmean(row["test_acc"])
        worst = max(row["seconds"]) / 60
        met = acc >= TARGET and worst <= TARGET_MINUTES
        lines += [
            "",
            f"Target: mean of {TARGET_SEEDS} seeds >= {TARGET}% in <= {TARGET_MINUTES:.0f} "
            f"minutes a run: **{'met' if met else 'NOT met'}** ({acc:.2f}%, slowest run "
            f"{worst:.1f} min). Data loading (once, apart): {row['load_seconds']:.2f} s.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
