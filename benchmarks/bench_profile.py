"""Where one epoch's time goes: data, forward, backward, optimizer step, evaluation.

One epoch of a recipe (default: recipes/default.toml) with the engine's own pieces (loader,
augmentation, model, optimizer), each phase timed on its own. On a GPU every phase ends with a
synchronization so that its time is its own; that costs a little, which is why the engine
itself never does this inside an epoch.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_profile.py [RECIPE] [--set k=v ...]
Writes docs/benchmarks/profile.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.augment import make_pipeline  # noqa: E402
from trainlab.bench import cpu_model  # noqa: E402
from trainlab.data import DeviceLoader  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402
from trainlab.preprocess import compute_stats  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402
from trainlab.train import (  # noqa: E402
    build_optimizer,
    build_training_model,
    evaluate,
    prepare_splits,
    select_device,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=str(ROOT / "recipes" / "default.toml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, ["diagnostics.every=0", *args.overrides])
    device = select_device(recipe.train.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    splits = prepare_splits(recipe)
    stats = compute_stats(splits.train[0])
    model = build_training_model(recipe, splits, stats).to(device)
    optimizer = build_optimizer(recipe, model)
    augment = make_pipeline(recipe.augment.train, stats=stats) if recipe.augment.train else None
    loader = DeviceLoader(
        *splits.train, recipe.train.batch_size, seed=0, device=device, transform=augment
    )
    smoothing = recipe.regularize.label_smoothing
    phases = dict.fromkeys(("data", "forward", "backward", "optimizer"), 0.0)

    def epoch(record: bool) -> None:
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                return
            sync()
            t1 = time.perf_counter()
            loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
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
    epoch(record=False)  # warm-up: allocator, kernels, lazy imports
    loader.set_epoch(1)
    epoch(record=True)
    t0 = time.perf_counter()
    evaluate(model, *splits.test, len(splits.classes), recipe.train.eval_batch_size, device)
    sync()
    phases["evaluation"] = time.perf_counter() - t0

    total = sum(phases.values())
    rows = "\n".join(
        f"| {name} | {seconds:.2f} | {100 * seconds / total:.1f}% |"
        for name, seconds in phases.items()
    )
    biggest = max(phases, key=phases.get)
    text = f"""## Profile of one epoch

Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, device {device}.
Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Command:
`PYTHONPATH=src .venv/bin/python benchmarks/bench_profile.py {" ".join(sys.argv[1:])}`.
Recipe: `{Path(args.recipe).name}` ({len(splits.train[0])} training images, batch
{recipe.train.batch_size}, {len(loader)} steps; second epoch, after a warm-up epoch; diagnostics
off).

| phase | seconds | share |
|---|---:|---:|
{rows}
| total | {total:.2f} | 100% |

The largest share is **{biggest}**: that is the next bottleneck to work on.
"""
    write_text(ROOT / "docs" / "benchmarks" / "profile.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
