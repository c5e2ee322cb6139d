"""What a moving average of the weights does for recipes/fashion-mnist-fast.toml: the same recipe
with and without ``train.ema_decay = 0.999`` (fixed before any run: a window of about 1,000
steps, two of the recipe's twelve epochs), on paired seeds (same data order, initialization and
augmentation draws within a seed), compared as the lab compares arms: the mean paired
difference of test accuracy with its paired-t 95% interval against a minimum effect of 0.2
points, stated before the run.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_ema.py [--seeds 3]
Writes docs/benchmarks/ema.md and docs/benchmarks/ema.json (the record).
"""

from __future__ import annotations

import argparse
import datetime
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from trainlab.bench import cpu_model  # noqa: E402
from trainlab.engine import fit  # noqa: E402
from trainlab.fileio import write_json, write_text  # noqa: E402
from trainlab.recipe import load_recipe  # noqa: E402

RECIPE = ROOT / "recipes" / "fashion-mnist-fast.toml"
DECAY = 0.999
MIN_EFFECT = 0.002  # 0.2 points of test accuracy, either way
T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306}


def accuracy(seed: int, ema: bool) -> float:
    extra = [f"train.seed={seed}"] + ([f"train.ema_decay={DECAY}"] if ema else [])
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(load_recipe(RECIPE, extra), tmp, progress=False, report=False)
    return result.final["test_acc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for seed in range(args.seeds):
        pair = {arm: accuracy(seed, arm == "ema") for arm in ("plain", "ema")}
        rows.append(pair)
        print(f"seed {seed}: plain {pair['plain']:.4f}, ema {pair['ema']:.4f}", flush=True)
    diffs = [r["ema"] - r["plain"] for r in rows]
    mean = statistics.mean(diffs)
    half = T95[len(diffs)] * statistics.stdev(diffs) / math.sqrt(len(diffs))
    low, high = mean - half, mean + half
    if low > MIN_EFFECT:
        verdict = "EMA helps"
    elif high < -MIN_EFFECT:
        verdict = "EMA hurts"
    elif -MIN_EFFECT < low and high < MIN_EFFECT:
        verdict = "no difference beyond the minimum effect"
    else:
        verdict = "inconclusive"
    record = {
        "name": "ema-on-fashion-mnist-fast", "metric": "test accuracy (fraction)",
        "arms": ["ema", "plain"], "difference": mean, "ci95": [low, high],
        "min_effect": MIN_EFFECT, "seeds": list(range(args.seeds)), "values": rows,
        "verdict": verdict, "decay": DECAY, "recipe": str(RECIPE.relative_to(ROOT)),
    }  # fmt: skip
    write_json(ROOT / "docs" / "benchmarks" / "ema.json", record)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## A moving average of the weights on recipes/fashion-mnist-fast.toml",
        "",
        f"Machine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}. "
        f"Date: {now}. Command: `PYTHONPATH=src .venv/bin/python benchmarks/bench_ema.py "
        f"--seeds {args.seeds}`. Record: docs/benchmarks/ema.json.",
        "",
        f"The recipe as it is, and with `train.ema_decay = {DECAY}` (the average is what is "
        "evaluated), on paired seeds. Decay, metric and minimum effect "
        f"({100 * MIN_EFFECT:.1f} points) were fixed before the runs.",
        "",
        "| seed | test accuracy, plain | with EMA | difference |",
        "|---:|---:|---:|---:|",
        *[
            f"| {s} | {100 * r['plain']:.2f}% | {100 * r['ema']:.2f}% | "
            f"{100 * (r['ema'] - r['plain']):+.2f} |"
            for s, r in enumerate(rows)
        ],  # fmt: skip
        "",
        f"Mean paired difference {100 * mean:+.2f} points, 95% interval {100 * low:+.2f} to "
        f"{100 * high:+.2f} (paired t, {len(rows)} seeds): **{verdict}**.",
        "",
    ]
    write_text(ROOT / "docs" / "benchmarks" / "ema.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
