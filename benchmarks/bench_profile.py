"""Where one epoch's time goes: data, forward, backward, optimizer step, evaluation.

One epoch of a recipe (default: recipes/fashion-mnist-fast.toml) set up the way the engine sets it
up (loader, augmentation, channels_last, autocast, test-time flips), each phase timed on its
own. On a GPU every phase ends with a synchronization so that its time is its own; that costs
a little, which is why the engine itself never does this inside an epoch. A second table, from
torch.profiler over 50 training steps, names the operators behind the largest phases.

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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.augment import TTA, make_pipeline  # noqa: E402
from trainlab.bench import cpu_model  # noqa: E402
from trainlab.data import DeviceLoader  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402
from trainlab.preprocess import compute_stats  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402
from trainlab.train import (  # noqa: E402
    autocast_for,
    build_optimizer,
    build_training_model,
    evaluate,
    prepare_splits,
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

    splits = prepare_splits(recipe)
    stats = compute_stats(splits.train[0])
    model = build_training_model(recipe, splits, stats).to(device)
    channels_last = uses_channels_last(recipe)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(recipe, model)
    augment = make_pipeline(recipe.augment.train, stats=stats) if recipe.augment.train else None
    loader = DeviceLoader(*splits.train, cfg.batch_size, seed=0, device=device, transform=augment)
    autocast = autocast_for(recipe, device)
    amp = autocast is not contextlib.nullcontext

    smoothing = recipe.regularize.label_smoothing
    phases = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)

    def steps(record: bool, limit: int | None = None) -> None:
        it = iter(loader)
        for _ in range(limit or len(loader)):
            t0 = time.perf_counter()
            x, y = next(it)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sync()
            t1 = time.perf_counter()
            with autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
            sync()
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync()
            t3 = time.perf_counter()
            optimizer.step()
            sync()
            t4 = time.perf_counter()
            if record:
                for key, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    phases[key] += dt

    model.train()
    loader.set_epoch(0)
    steps(record=False)  # warm-up: allocator, kernels, lazy imports
    loader.set_epoch(1)
    steps(record=True)
    eval_model = TTA(model, flips=True) if recipe.augment.tta == "flip" else model
    t0 = time.perf_counter()
    evaluate(eval_model, *splits.test, len(splits.classes), cfg.eval_batch_size, device, autocast)
    sync()
    phases["evaluation"] = time.perf_counter() - t0

    model.train()
    loader.set_epoch(2)
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
