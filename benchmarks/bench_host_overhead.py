"""The engine's host work per training step, apart from the model's arithmetic.

On a GPU the fast recipes' eager step is bound by kernel launches (docs/benchmarks/speed_gpu.md):
what costs is the number of operations the host issues, not their size. This measures that
host cost on the CPU, where it can be seen alone: a one-channel CNN on batches of 16 makes the
arithmetic negligible, so the time of a step is the time of issuing it. It compares
`trainlab.train.fit`'s step (loader gather, augmentation, layout, loss, bookkeeping, optimizer)
with the bare step of bench_speed.py (forward, loss, backward, SGD on a fixed batch), and counts
the top-level ATen operations of each engine step with torch.profiler.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_host_overhead.py
Writes docs/benchmarks/host_overhead.md.
"""

from __future__ import annotations

import datetime
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_speed import step_throughput  # noqa: E402

from trainlab.bench import cpu_model  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402
from trainlab.train import fit, prepare_splits  # noqa: E402

RECIPE = ROOT / "recipes" / "fashion-mnist-fast-gpu.toml"
BATCH, STEPS = 16, 1000
TINY = [
    "train.device=cpu",
    "model.widths=[1]",
    "model.depth=1",
    f"train.batch_size={BATCH}",
    f"data.subset={BATCH * STEPS}",
    "data.test_subset=16",
    "train.epochs=1",
]
AUGMENTS = {
    "none": "augment.train=[]",
    "hflip": "augment.train=['hflip']",
    "pad_crop(2) + hflip": "augment.train=[\"pad_crop(2, mode='reflect')\", 'hflip']",
}


def engine_step_us(recipe) -> float:
    """Median over 3 one-epoch fits of the engine's seconds per step, in microseconds."""
    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            result = fit(recipe, tmp, progress=False, report=False)
        times.append(1e6 * result.summary["run_seconds"] / STEPS)
    return statistics.median(times)


def ops_per_step(recipe) -> float:
    """Top-level ATen operations (not those inside another) per engine step."""
    small = load_recipe(RECIPE, [*TINY, f"data.subset={BATCH * 100}", *recipe])
    with tempfile.TemporaryDirectory() as tmp:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fit(small, tmp, progress=False, report=False)
    count = 0
    for event in prof.events():
        parent = event.cpu_parent
        if event.name.startswith("aten::") and not (parent and parent.name.startswith("aten::")):
            count += 1
    return count / 100  # includes the one test pass and set-up, spread over 100 steps


def main() -> int:
    torch.set_num_threads(1)  # one issuing thread, as a GPU's host has
    rows = []
    for label, override in AUGMENTS.items():
        recipe = load_recipe(RECIPE, [*TINY, override])
        rows.append((label, engine_step_us(recipe), ops_per_step([override])))
        print(rows[-1], flush=True)
    recipe = load_recipe(RECIPE, [*TINY, AUGMENTS["none"]])
    splits = prepare_splits(recipe)
    rates = [
        step_throughput(recipe, splits, torch.device("cpu"), amp=False, compiled=False, steps=300)[
            0
        ]
        for _ in range(3)
    ]
    bare = 1e6 * BATCH / statistics.median(rates)
    command = "PYTHONPATH=src .venv/bin/python benchmarks/bench_host_overhead.py"
    lines = [
        "## Host work per training step: the engine against the bare step",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores (1 thread used), torch "
        f"{torch.__version__}. Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. "
        f"Command: `{command}`.",
        "",
        f"`recipes/{RECIPE.name}` cut to a one-channel CNN on batches of {BATCH}, so that a "
        f"step's time is the host's time to issue it ({STEPS} steps, median of 3 fits). The bare "
        "step is forward, loss, backward and SGD on a fixed batch (bench_speed.py's "
        "`step_throughput`); top-level ATen operations per engine step are counted with "
        "torch.profiler over a 100-step fit (set-up and the test pass included).",
        "",
        "| step | microseconds a step | x the bare step | ATen operations a step |",
        "|---|---:|---:|---:|",
        f"| bare step | {bare:.0f} | 1.00 | |",
        *(
            f"| engine, augmentation {label} | {us:.0f} | {us / bare:.2f} | {ops:.0f} |"
            for label, us, ops in rows
        ),
        "",
        "On a GPU most of these operations launch a kernel (views such as reshape and expand do "
        "not; and SGD, one operation a parameter here, runs there as a few multi-tensor kernels), "
        "and the H200's eager step was bound by such launches (docs/benchmarks/speed_gpu.md). CUDA "
        "graphs (`train.compile_mode = "
        '"reduce-overhead"`) replay the model\'s forward and backward at once, and with '
        '`train.compile_scope = "step"` the optimizer step too; what this table shows beyond '
        "that (the loader's gather, the augmentation, the bookkeeping) stays outside them.",
    ]
    write_text(ROOT / "docs" / "benchmarks" / "host_overhead.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
