"""A user's own network trained through the engine against the same architecture built by
trainlab: the engine must add nothing to a network it did not build.

The user's network is the default recipe's CNN written out in plain PyTorch (conv-BN-ReLU per
stage, max pooling between stages, a flattened head), as a user would write it; trainlab's is
`model.kind = "cnn"` from the same recipe. Both are built by `build_run` (what `fit` calls,
`model=users_cnn` for the user's) with everything the recipe turns on (normalizer, init scheme,
augmentation, diagnostics, channels-last), and trained by the engine's `train_steps` in chunks of
a few steps, alternating A B A B, so that both see the same machine load: on this shared machine
whole epochs timed apart varied by 2x. Reported: the median of the paired chunk-time ratios
own/built-in with a distribution-free 95% interval (order statistics of the binomial).

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_own_model.py [--rounds 40]
Writes docs/benchmarks/own_model.md.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.bench import cpu_model, median_interval  # noqa: E402
from trainlab.engine import train_steps  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402

SUBSET, BATCH = 8192, 128
TARGET = 1.03


def users_cnn(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The default recipe's network (widths 32-64-128, one conv a stage, batch norm, ReLU, max
    pooling, flatten head), written as plain PyTorch."""
    layers, c_in, size = [], in_shape[0], in_shape[1]
    for stage, width in enumerate((32, 64, 128)):
        if stage:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU()]  # fmt: skip
        c_in = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * size * size, num_classes))


def build(model):
    """The engine's run of the default recipe on the subset, with trainlab's network or the
    user's."""
    from trainlab.engine import build_run

    settings = [f"data.subset={SUBSET}", f"train.batch_size={BATCH}", "data.test_subset=16"]
    return build_run(load_recipe(None, settings), model=model)


def chunk_ms(run, steps: int) -> float:
    """Milliseconds a step over ``steps`` more steps of the engine's step."""
    t0 = time.perf_counter()
    train_steps(run, steps)
    return 1000 * (time.perf_counter() - t0) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=6, help="steps a chunk")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread: the comparison, not the machine's spare cores
    runs = {"built-in": build(None), "own": build(users_cnn)}
    parameters = {k: sum(p.numel() for p in r.model.parameters()) for k, r in runs.items()}
    assert parameters["built-in"] == parameters["own"], parameters
    for run in runs.values():
        chunk_ms(run, 2 * args.steps)  # warm caches, allocator, oneDNN kernels
    rows = []
    for r in range(args.rounds):
        order = ("built-in", "own") if r % 2 == 0 else ("own", "built-in")
        pair = {name: chunk_ms(runs[name], args.steps) for name in order}
        rows.append((pair["built-in"], pair["own"]))
    ratios = [o / b for b, o in rows]
    median_ratio = statistics.median(ratios)
    low, high = median_interval(ratios)
    verdict = "met" if high <= TARGET else ("missed" if low > TARGET else "not decided")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    built, own = statistics.median(b for b, _ in rows), statistics.median(o for _, o in rows)
    lines = [
        "## A user's own network against trainlab's: the engine adds nothing",
        "",
        f"Machine: {cpu_model()}, 1 thread, torch {torch.__version__}. Date: {now}. "
        "Command: `PYTHONPATH=src .venv/bin/python benchmarks/bench_own_model.py "
        f"--rounds {args.rounds} --steps {args.steps}`.",
        "",
        "The default recipe's CNN (32-64-128, batch norm, ReLU, max pooling, flatten head, "
        f'{parameters["own"]:,} parameters) built by trainlab (`model.kind = "cnn"`) and '
        "written as plain PyTorch by a user (`build_run(recipe, model=users_cnn)`, what "
        "`fit(recipe, out, model=users_cnn)` builds), on the same "
        f"{SUBSET:,} Fashion-MNIST images (batches of {BATCH}) with everything the recipe turns "
        f"on. The engine's step in chunks of {args.steps}, alternating A B A B, {args.rounds} "
        "pairs:",
        "",
        "| | ms a step (median) |",
        "|---|---:|",
        f"| built by trainlab | {built:.2f} |",
        f"| the user's own | {own:.2f} |",
        "",
        f"Median paired ratio own/built-in **{median_ratio:.3f}**, 95% interval {low:.3f} to "
        f"{high:.3f} (order statistics). Target: at most {TARGET} — **{verdict}**.",
        "",
    ]
    write_text(ROOT / "docs" / "benchmarks" / "own_model.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
