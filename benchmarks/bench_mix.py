"""What mixup, CutMix and Cutout add to a training step of the default CIFAR-10 model.

Target: each adds under 3 % to one training step (forward + backward + SGD step) of the default
model (the model of ``recipes/cifar10.toml``, a small ResNet) at batch 256.

- step alone: ``F.cross_entropy(model(x_uint8), y)``, backward, SGD with momentum;
- with a mix: ``MIXES.create(spec)(x, y, 10, generator)`` then the soft-target cross-entropy
  (the engine's uniform loss path), backward, the same SGD step.

The variants run interleaved, one step each per round in a rotating order, so they share the
machine's load; the overhead is the median over rounds of the per-round ratio minus 1. Each step
is timed twice: wall clock, and the process's CPU time, which other processes on a shared
machine disturb far less (with ``--threads 1`` it is the step's own work). The mix call alone is
also timed (50 calls), an independent measure of what it adds. Inputs are random uint8 images:
neither the convolutions nor the mixes depend on pixel values. One torch thread by default: on
a shared 2-core machine two threads wait on each other whenever one is descheduled, which
swamps a 3 % effect (``--threads 1,2`` runs both). Run:

    PYTHONPATH=src .venv/bin/python benchmarks/bench_mix.py
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F

from trainlab.bench import cpu_model
from trainlab.fileio import write_text
from trainlab.models import build_model
from trainlab.preprocess import make_normalizer
from trainlab.recipe import ModelConfig, load_recipe
from trainlab.regularize.mix import MIXES
from trainlab.regularize.smoothing import soft_target_cross_entropy

BATCH = 256
CLASSES = 10
TARGET = 0.03
CONTROL = "control: step alone again"
PLAIN = ("step alone", CONTROL)
SPECS = ("mixup(1.0)", "cutmix(1.0)", "cutout(16)", "cutout(16, fill='noise')")


def make_step(model: torch.nn.Module, mix_spec: str | None) -> Callable[..., None]:
    """One training step, with or without a mix in front of it."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    mix = MIXES.create(mix_spec) if mix_spec else None

    def step(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> None:
        optimizer.zero_grad(set_to_none=True)
        if mix is None:
            loss = F.cross_entropy(model(x), y)
        else:
            xm, targets, _ = mix(x, y, CLASSES, generator)
            loss = soft_target_cross_entropy(model(xm), targets)
        loss.backward()
        optimizer.step()

    return step


def timed(fn: Callable[..., object], *args: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def median_interval(values: list[float]) -> tuple[float, float]:
    """A distribution-free ~95 % confidence interval for the median: order statistics at
    ranks n/2 -+ 1.96 sqrt(n)/2 (the binomial(n, 1/2) count of values below the median)."""
    ordered = sorted(values)
    n = len(ordered)
    half = 1.96 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return ordered[low], ordered[high]


def load_average() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return handle.read().split()[0]
    except OSError:
        return "unknown"


def build() -> tuple[ModelConfig, torch.nn.Module]:
    cfg = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "cifar10.toml").model
    normalize = make_normalizer("standardize", shape=(3, 32, 32))
    return cfg, build_model(cfg, (3, 32, 32), CLASSES, normalize).train()


def compare(threads: int, rounds: int) -> tuple[list[str], bool]:
    """One interleaved comparison at ``threads`` torch threads: table lines and the verdict."""
    torch.set_num_threads(threads)
    load_before = load_average()
    _, model = build()
    data = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=data),
            torch.randint(0, CLASSES, (BATCH,), generator=data),
        )
        for _ in range(4)
    ]
    # The control is the plain step again: its row shows the measurement's noise floor.
    names = ["step alone", CONTROL, *SPECS]
    steps = {name: make_step(model, None if name in PLAIN else name) for name in names}
    generator = torch.Generator().manual_seed(1)

    for name in names:  # warm-up: allocator, kernels, optimizer state
        for x, y in batches[:2]:
            steps[name](x, y, generator)

    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(rounds):
        x, y = batches[r % len(batches)]
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(timed(steps[name], x, y, generator))

    x, y = batches[0]
    mix_alone = {}
    for spec in SPECS:
        mix = MIXES.create(spec)
        mix(x, y, CLASSES, generator)
        calls = [timed(mix, x, y, CLASSES, generator) for _ in range(50)]
        mix_alone[spec] = [statistics.median(c[k] for c in calls) for k in (0, 1)]

    base = {k: [t[k] for t in times["step alone"]] for k in (0, 1)}
    base_ms = {k: statistics.median(base[k]) * 1e3 for k in (0, 1)}
    rows, verdicts = [], []
    for spec in (CONTROL, *SPECS):
        cells, intervals = [], []
        for k in (0, 1):
            ratios = [t[k] / b - 1 for t, b in zip(times[spec], base[k], strict=True)]
            low, high = median_interval(ratios)
            intervals.append((low, high))
            cells.append(
                f"{statistics.median(ratios) * 100:+.1f} % ({low * 100:+.1f} to {high * 100:+.1f})"
            )
        if spec == CONTROL:
            rows.append(f"| {CONTROL} | {cells[0]} | {cells[1]} | - | - |")
            continue
        alone_cpu = mix_alone[spec][1] * 1e3
        alone_frac = alone_cpu / base_ms[1]
        low, high = intervals[1]
        if alone_frac < TARGET and high < TARGET:
            verdict = "yes"
        elif alone_frac < TARGET and low < TARGET:
            verdict = "yes, within noise"
        else:
            verdict = "NO"
        verdicts.append(verdict != "NO")
        rows.append(
            f"| `{spec}` | {cells[0]} | {cells[1]} | {mix_alone[spec][0] * 1e3:.2f} / "
            f"{alone_cpu:.2f} ({alone_frac * 100:.2f} %) | {verdict} |"
        )
    lines = [
        f"### {threads} torch thread(s)",
        "",
        f"Step alone (median): **{base_ms[0]:.1f} ms wall, {base_ms[1]:.1f} ms CPU**. Load "
        f"average (1 min) {load_before} before, {load_average()} after.",
        "",
        "| mix | added per step, wall: median of paired ratios (95 % interval) | added per "
        "step, CPU time: median (95 % interval) | mix call alone, median wall / CPU ms (CPU as "
        "% of the step) | under 3 % |",
        "|---|---:|---:|---:|:---:|",
        *rows,
        "",
    ]
    return lines, all(verdicts)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", default="docs/benchmarks/mix.md")
    parser.add_argument(
        "--threads", default="1", help="comma-separated torch thread counts, e.g. 1,2"
    )
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (quartiles need two points)")
    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        parser.error(f"--threads: expected integers like 1,2, got {args.threads!r}")

    cfg, model = build()
    params = sum(p.numel() for p in model.parameters())
    sections, verdicts = [], []
    for threads in thread_counts:
        lines, ok = compare(threads, args.rounds)
        sections += lines
        verdicts.append(ok)

    command = (
        "PYTHONPATH=src .venv/bin/python benchmarks/bench_mix.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "## Mixes: mixup, CutMix, Cutout on top of a training step",
            "",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, CPU "
            f"only, shared with other processes (load averages below). Date: {date}. "
            f"Command: `{command}`.",
            "",
            f"Model: the model of `recipes/cifar10.toml` ({cfg.kind}, widths {cfg.widths}, depth "
            f"{cfg.depth}, {cfg.norm} norm, {cfg.activation}; {params:,} parameters) for "
            f"3x32x32 CIFAR-10 inputs, standardize normalizer, batch {BATCH} of uint8 images, "
            "SGD with Nesterov momentum. One step = forward + backward + optimizer step. "
            f"{args.rounds} interleaved rounds after a warm-up, per thread count.",
            "",
            *sections,
            f"Target: each mix adds under {TARGET * 100:.0f} % to a training step: "
            + ("**met**" if all(verdicts) else "**NOT met** in some row (see the tables)")
            + ". Judged on CPU time, which other processes disturb far less than the wall "
            "clock: **yes** when the mix call alone costs under 3 % of a step and the whole "
            "95 % interval of the added step time is under 3 %; **yes, within noise** when the "
            "call costs under 3 % and the interval reaches above 3 % but starts below it, i.e. "
            "the step comparison cannot tell the difference from noise on this shared machine "
            "(the control row, the plain step timed against itself, shows how large that "
            "noise is); **NO** otherwise.",
            "",
            "The mixes work on whole batches with per-sample parameters drawn as tensors: a "
            "permutation, a Beta draw (Marsaglia-Tsang on the generator), and one broadcast "
            "comparison of row and column indices against the box edges, so their cost is a "
            "few passes over the batch, next to the convolutions' backward pass. The soft-target "
            "loss replaces the index cross-entropy in the mixed steps and is included in the "
            "added time. Cutout with noise fill draws a whole batch of uniform noise, its most "
            "expensive variant.",
            "",
        ]
    )
    print(text)
    write_text(args.out, text)
    return text


if __name__ == "__main__":
    main()
