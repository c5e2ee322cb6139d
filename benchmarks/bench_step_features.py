"""What the trainer's features cost a training step: EMA of the weights and gradient clipping
against the plain step (targets: at most 3% each), and the plain step against the engine as it
was before they came (target: within 2%).

1. One run of the default recipe's CNN on Fashion-MNIST, built by ``build_run`` with both
   features on and stepped by the engine's ``train_steps`` in chunks. Before each chunk the
   feature under test is switched on and the others off (``run.ema``, ``run.clip_gradients``),
   so every arm steps the same model, data and memory: a per-run difference in placement
   cannot pass for a feature's cost. The arms take turns, rotated round by round; the median
   of the paired chunk-time ratios and a distribution-free 95% interval. The feature's own
   call is also timed alone, against the step.
2. The plain step of this checkout against the one of ``--baseline REV`` (a git revision,
   checked out in a temporary worktree), each timed in a process of its own, alternating A B A B;
   each process reports the median of its chunk times.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_step_features.py [--baseline d3708f3]
Writes docs/benchmarks/step_features.md. docs/benchmarks/step_features_separate_runs.md keeps
the first design's result (three runs built apart, which differ in placement as well).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.bench import cpu_model, median_interval  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402

SETTINGS = ["data.subset=8192", "train.batch_size=128", "data.test_subset=16",
            "diagnostics.every=0"]  # fmt: skip
FEATURES = {"plain": [], "ema": ["train.ema_decay=0.999"], "clip": ["optim.clip_grad_norm=1.0"]}

# The plain step timed in a process of its own: the same code path in any revision that has
# trainlab.train.build_run and train_steps (the engine since the one-engine issue).
TIMER = """
import statistics, sys, time, torch
torch.set_num_threads(1)
from trainlab.recipe import load_recipe
from trainlab.train import build_run, train_steps
run = build_run(load_recipe(None, sys.argv[1:]))
train_steps(run, 10)
chunks = []
for _ in range(10):
    t0 = time.perf_counter()
    train_steps(run, 10)
    chunks.append(1000 * (time.perf_counter() - t0) / 10)
print(statistics.median(chunks))
"""


def features(rounds: int, steps: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    from trainlab.engine import build_run, train_steps
    from trainlab.engine.ema import NoAverage
    from trainlab.engine.step import no_clipping
    from trainlab.recipe import load_recipe

    torch.set_num_threads(1)
    extras = [f for name in FEATURES for f in FEATURES[name]]
    run = build_run(load_recipe(None, [*SETTINGS, *extras]))
    ema, clip = run.ema, run.clip_gradients
    arms = {"plain": (NoAverage(), no_clipping), "ema": (ema, no_clipping),
            "clip": (NoAverage(), clip)}  # fmt: skip
    train_steps(run, 2 * steps)  # warm
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate who goes first
            run.ema, run.clip_gradients = arms[name]
            t0 = time.perf_counter()
            train_steps(run, steps)
            times[name].append(1000 * (time.perf_counter() - t0) / steps)
    alone = {"ema": _call_ms(lambda: ema.update(run.step)), "clip": _call_ms(clip)}
    return times, alone


def _call_ms(call, calls: int = 200) -> float:
    """The median time of one call on its own, in ms (the gradients of the last step remain)."""
    for _ in range(20):
        call()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        samples.append(1000 * (time.perf_counter() - t0))
    return statistics.median(samples)


def versus(baseline: str, pairs: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), baseline], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
        try:
            now, then = [], []
            for i in range(pairs):
                for src, into in ((ROOT / "src", now), (worktree / "src", then))[
                    :: 1 - 2 * (i % 2)
                ]:
                    env = {**os.environ, "PYTHONPATH": str(src)}
                    command = [sys.executable, "-c", TIMER, *SETTINGS]
                    out = subprocess.run(command, env=env, check=True, capture_output=True,
                                         text=True, cwd=ROOT)  # fmt: skip
                    into.append(float(out.stdout.split()[-1]))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT,
                           check=False, capture_output=True)  # fmt: skip
    return now, then


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=600)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--baseline", default="d3708f3", help="git revision to compare against")
    parser.add_argument("--pairs", type=int, default=50)
    args = parser.parse_args()
    times, alone = features(args.rounds, args.steps)
    lines = [
        "## What EMA and gradient clipping cost a step, and the plain step against before",
        "",
        f"Machine: {cpu_model()}, 1 thread, torch {torch.__version__}. Date: "
        f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Command: "
        "`PYTHONPATH=src .venv/bin/python benchmarks/bench_step_features.py --rounds "
        f"{args.rounds} --steps {args.steps} --baseline {args.baseline} --pairs {args.pairs}`.",
        "",
        "The default recipe's CNN on 8,192 Fashion-MNIST images, batches of 128, diagnostics off. "
        f"One run, built with both features on, steps in chunks of {args.steps}; before each "
        "chunk the arm's feature is switched on and the others off, the arms taking turns over "
        f"{args.rounds} rounds; ratios are paired by round. The last column times the feature's "
        "own call alone (median of 200), as a share of the plain step:",
        "",
        "| step | ms (median) | x plain (median) | 95% interval | target | call alone |",
        "|---|---:|---:|---|---|---:|",
        f"| plain | {statistics.median(times['plain']):.2f} | 1 | | | |",
    ]
    plain_ms = statistics.median(times["plain"])
    for name, label in (("ema", "EMA, decay 0.999"), ("clip", "clipping at norm 1")):
        ratios = [t / p for t, p in zip(times[name], times["plain"], strict=True)]
        low, high = median_interval(ratios)
        state = "met" if high <= 1.03 else ("missed" if low > 1.03 else "not decided")
        lines.append(
            f"| {label} | {statistics.median(times[name]):.2f} | {statistics.median(ratios):.3f} "
            f"| {low:.3f} to {high:.3f} | at most 1.03: {state} "
            f"| {alone[name]:.3f} ms, {100 * alone[name] / plain_ms:.2f}% |"
        )
    now, then = versus(args.baseline, args.pairs)
    ratios = [a / b for a, b in zip(now, then, strict=True)]
    low, high = median_interval(ratios)
    state = "met" if 0.98 <= low and high <= 1.02 else "not shown"
    lines += [
        "",
        f"The plain step of this checkout against revision {args.baseline} (before the run "
        f"folder rules, own models and these features), each process timing 10 chunks of 10 "
        f"steps and giving their median, alternating, {args.pairs} pairs: "
        f"{statistics.median(now):.2f} ms against "
        f"{statistics.median(then):.2f} ms, median ratio {statistics.median(ratios):.3f} "
        f"(95% interval {low:.3f} to {high:.3f}); target within 2%: {state}.",
        "",
    ]
    write_text(ROOT / "docs" / "benchmarks" / "step_features.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
