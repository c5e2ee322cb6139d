"""Where one epoch's time goes: data, forward, backward, optimizer step, evaluation.

One epoch of a recipe (default: recipes/fashion-mnist-fast.toml) as the engine runs it: the Run
comes from trainlab.train.build_run and its parts are called in train_step's order, each phase
timed on its own. On a GPU every phase ends with a synchronization so that its time is its own;
that costs a little, which is why the engine itself never does this inside an epoch. A second
table, from torch.profiler over 50 training steps, names the operators behind the largest
phases.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_profile.py [RECIPE] [--set k=v ...]
Writes docs/benchmarks/profile.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.bench import cpu_model  # noqa: E402
from trainlab.data import load_dataset  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402
from trainlab.train import (  # noqa: E402
    begin_epoch,
    build_run,
    evaluate_run,
    select_device,
    uses_channels_last,
)

PROFILED_STEPS = 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "recipe", nargs="?", default=str(ROOT / "recipes" / "fashion-mnist-fast.toml")
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, ["diagnostics.every=0", *args.overrides])
    cfg = recipe.train
    device = select_device(cfg.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # The engine's own run: data, model, optimizer, augmentation, mixing, loss and schedule are
    # the Run's, and the phases below call its parts in train_step's order, with a
    # synchronization between them so that each phase's time is its own.
    run = build_run(recipe, load_dataset(recipe.data.name), device=device)
    optimizer, loader, splits = run.optimizer, run.loader, run.splits
    channels_last = uses_channels_last(recipe)
    amp = run.autocast is not contextlib.nullcontext
    phases = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)

    def steps(record: bool, limit: int | None = None) -> None:
        it = iter(loader)
        for _ in range(limit or len(loader)):
            t0 = time.perf_counter()
            x, y = next(it)
            run.set_lr(run.lr_factor(run.step))
            x = run.layout(run.augment(x, run.aug_generator))
            x, target = run.mix(x, y, run.mix_generator)
            sync()
            t1 = time.perf_counter()
            with run.autocast():
                logits = run.step_model(x)
            loss = run.loss(logits.float(), target)
            sync()
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            run.regularize(loss, 0).backward()
            sync()
            t3 = time.perf_counter()
            optimizer.step()
            sync()
            t4 = time.perf_counter()
            run.step += 1
            if record:
                for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    phases[key] += dt

    begin_epoch(run)
    steps(record=False)  # warm-up: allocator, kernels, lazy imports
    run.epoch += 1
    begin_epoch(run)
    steps(record=True)
    t0 = time.perf_counter()
    evaluate_run(run, *splits.test)
    sync()
    phases["evaluation"] = time.perf_counter() - t0

    run.epoch += 1
    begin_epoch(run)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        steps(record=False, limit=PROFILED_STEPS)
    time_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    ops = sorted(prof.key_averages(), key=lambda e: getattr(e, time_key), reverse=True)
    op_total = sum(getattr(e, time_key) for e in ops)
    op_rows = "\n".join(
        f"| `{e.key}` | {getattr(e, time_key) / 1e3:.0f} | "
        f"{100 * getattr(e, time_key) / op_total:.1f}% |"
        for e in ops[:10]
    )

    total = sum(phases.values())
    rows = "\n".join(
        f"| {name} | {seconds:.2f} | {100 * seconds / total:.1f}% |"
        for name, seconds in phases.items()
    )
    biggest = max(phases, key=phases.get)
    top = ops[0].key
    text = f"""## Profile of one epoch

Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, device {device}.
Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Command:
`PYTHONPATH=src .venv/bin/python benchmarks/bench_profile.py {" ".join(sys.argv[1:])}`.
Recipe: `{Path(args.recipe).name}` ({len(splits.train[0])} training images, batch
{cfg.batch_size}, {len(loader)} steps, channels_last {channels_last}, autocast
{cfg.autocast if amp else "off"}, test-time flips {recipe.augment.tta == "flip"}; the second
epoch, after a warm-up epoch; diagnostics off). Evaluation is one pass over the test split, which
the fast recipes run once per training run, not once per epoch.

| phase | seconds | share |
|---|---:|---:|
{rows}
| total | {total:.2f} | 100% |

Operators by self time over {PROFILED_STEPS} training steps (torch.profiler; forward and backward
kernels together):

| operator | ms | share |
|---|---:|---:|
{op_rows}

The largest phase is **{biggest}**, and the operator that costs most is `{top}`: that is the
next bottleneck to work on.
"""
    write_text(ROOT / "docs" / "benchmarks" / "profile.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
