"""What mixup, CutMix and Cutout add to a training step of the default CIFAR-10 model.

Target: each adds under 3 % to one training step (forward + backward + SGD step) of the default
model (``trainlab.models.build_model(ModelConfig(), (3, 32, 32), 10, standardize)``) at batch
256.

- step alone: ``F.cross_entropy(model(x_uint8), y)``, backward, SGD with momentum;
- with a mix: ``MIXES.create(spec)(x, y, 10, generator)`` then the soft-target cross-entropy
  (the engine's uniform loss path), backward, the same SGD step.

The variants run interleaved, one step each per round in a rotating order, so they share the
machine's load; the overhead is the median over rounds of the per-round ratio minus 1. The mix
call alone is also timed (50 calls), an independent measure of its cost.
Inputs are random uint8 images: neither the convolutions nor the mixes depend on pixel values.
Run:

    PYTHONPATH=src .venv/bin/python benchmarks/bench_mix.py
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import torch
import torch.nn.functional as F

from trainlab.fileio import write_text
from trainlab.models import build_model
from trainlab.preprocess import make_normalizer
from trainlab.recipe import ModelConfig
from trainlab.regularize.mix import MIXES
from trainlab.regularize.smoothing import soft_target_cross_entropy

BATCH = 256
CLASSES = 10
TARGET = 0.03
SPECS = ("mixup(1.0)", "cutmix(1.0)", "cutout(16)", "cutout(16, fill='noise')")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def load_average() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return handle.read().split()[0]
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default="docs/benchmarks/mix.md")
    args = parser.parse_args(argv)

    load_before = load_average()
    cfg = ModelConfig()
    model = build_model(
        cfg, (3, 32, 32), CLASSES, make_normalizer("standardize", shape=(3, 32, 32))
    )
    model.train()
    params = sum(p.numel() for p in model.parameters())
    data = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=data),
            torch.randint(0, CLASSES, (BATCH,), generator=data),
        )
        for _ in range(4)
    ]
    names = ["step alone", *SPECS]
    steps = {name: make_step(model, None if name == "step alone" else name) for name in names}
    generator = torch.Generator().manual_seed(1)

    for name in names:  # warm-up: allocator, kernels, optimizer state
        for x, y in batches[:2]:
            steps[name](x, y, generator)

    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        x, y = batches[r % len(batches)]
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(timed(steps[name], x, y, generator))

    x, y = batches[0]
    mix_alone = {}
    for spec in SPECS:
        mix = MIXES.create(spec)
        mix(x, y, CLASSES, generator)
        mix_alone[spec] = sorted(timed(mix, x, y, CLASSES, generator) for _ in range(50))

    base = times["step alone"]
    base_ms = statistics.median(base) * 1e3
    best_ms = min(base) * 1e3
    rows, verdicts = [], []
    for spec in SPECS:
        ratios = [t / b for t, b in zip(times[spec], base, strict=True)]
        overhead = statistics.median(ratios) - 1
        q = statistics.quantiles(ratios, n=4)
        best = min(times[spec]) * 1e3 / best_ms - 1
        alone_med = statistics.median(mix_alone[spec]) * 1e3
        alone_best = mix_alone[spec][0] * 1e3
        ok = overhead < TARGET
        verdicts.append(ok)
        rows.append(
            f"| `{spec}` | {statistics.median(times[spec]) * 1e3:.1f} | "
            f"{overhead * 100:+.1f} % ({(q[0] - 1) * 100:+.1f} to {(q[2] - 1) * 100:+.1f}) | "
            f"{best * 100:+.1f} % | {alone_med:.2f} / {alone_best:.2f} "
            f"({alone_med / base_ms * 100:.2f} %) | {'yes' if ok else 'NO'} |"
        )

    command = (
        "PYTHONPATH=src .venv/bin/python benchmarks/bench_mix.py"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            "## Mixes: mixup, CutMix, Cutout on top of a training step",
            "",
            f"Machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__},"
            f" CPU only. Date: {date}. Command: `{command}`.",
            "",
            f"Model: the default `ModelConfig()` ({cfg.kind}, widths {cfg.widths}, depth "
            f"{cfg.depth}, {cfg.norm} norm, {cfg.activation}; {params:,} parameters) for "
            f"3x32x32 CIFAR-10 inputs, standardize normalizer, batch {BATCH} of uint8 images, "
            "SGD with Nesterov momentum. One step = forward + backward + optimizer step. "
            f"{args.rounds} interleaved rounds after a warm-up.",
            "",
            f"Step alone: **{base_ms:.1f} ms** median, {best_ms:.1f} ms best. Load average "
            f"(1 min) {load_before} before the run, {load_average()} after: other processes "
            "shared the cores, which is why the best times are shown too.",
            "",
            "| mix | step with mix, median ms | added per step: median of paired ratios "
            "(quartiles) | added, best vs best | mix call alone, median / best ms (median as % "
            "of step) | under 3 % (median) |",
            "|---|---:|---:|---:|---:|:---:|",
            *rows,
            "",
            f"Target: each mix adds under {TARGET * 100:.0f} % to a training step: "
            + ("**met**." if all(verdicts) else "**NOT met** for some mixes (see the table)."),
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
