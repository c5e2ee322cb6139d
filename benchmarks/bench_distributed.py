"""Two gloo processes against one process: step time, throughput and the cost of DDP.

The same recipe (the default Fashion-MNIST CNN, on a subset) is trained three ways, each as its
own ``trainlab train`` job launched from this script, in interleaved rounds:

- one process, one thread (``OMP_NUM_THREADS=1``);
- one process, two threads (the single-process baseline that uses both cores);
- ``torchrun --standalone --nproc_per_node=2``: two processes of one thread each, gloo;
- one process, one thread, batch 64: one rank's share of the work with no communication, the
  step time two ranks would have if DDP cost nothing.

Step time and throughput come from each run's own ``metrics.jsonl`` (training time of an epoch,
evaluation and files excluded), read for the last epoch (the first one warms up allocators and
the gloo connections). With two cores the best to expect from two processes is the speed-up
of two threads; what the comparison shows is the price of DDP's gradient all-reduce and of
running two Python processes.

Run:  .venv/bin/python benchmarks/bench_distributed.py [--rounds 2] [--subset 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from trainlab.bench import cpu_model  # noqa: E402
from trainlab.fileio import write_text  # noqa: E402

PYTHON = Path(sys.executable)
TORCHRUN = PYTHON.with_name("torchrun")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


HALF = "1 process, 1 thread, batch 64 (a rank's share)"


def run_job(kind: str, out: Path, overrides: list[str]) -> dict:
    """One training job; returns its last epoch's metrics row."""
    threads = "2" if kind == "1 process, 2 threads" else "1"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": threads}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    train = ["train", "--out", str(out), "--no-progress"]
    for item in overrides + (["train.batch_size=64"] if kind == HALF else []):
        train += ["--set", item]
    if kind.startswith("2 processes"):
        cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "trainlab", *train]
    else:
        cmd = [str(PYTHON), "-m", "trainlab", *train]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    return {**rows[-1], "world_size": summary.get("world_size", 1)}


def main() -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--subset", type=int, default=3840)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks/distributed.md")
    args = parser.parse_args()

    batch = 128
    overrides = [
        f"data.subset={args.subset}",
        "data.test_subset=1000",
        f"train.epochs={args.epochs}",
        "train.device='cpu'",
    ]
    kinds = ["1 process, 1 thread", "1 process, 2 threads", "2 processes x 1 thread (gloo)", HALF]
    steps = -(-args.subset // batch)
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    load_before = load()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, kind in enumerate(kinds):
                row = run_job(kind, Path(tmp) / f"{r}-{i}", overrides)
                results[kind].append(row)
                print(
                    f"round {r + 1} {kind}: {row['images_per_s']:.0f} img/s (load {load()})",
                    file=sys.stderr,
                )
    load_after = load()

    lines = [
        "| run | step time (ms) | throughput (img/s) | vs 1 process, 1 thread | test acc |",
        "|---|---:|---:|---:|---:|",
    ]
    step_ms, rate = {}, {}
    for kind in kinds:
        size = 64 if kind == HALF else batch
        n = -(-args.subset // size)
        step_ms[kind] = statistics.median(1000 * r["train_seconds"] / n for r in results[kind])
        rate[kind] = args.subset / (step_ms[kind] * n / 1000)  # images over the epoch's time
    for kind in kinds:
        acc = statistics.median(r["test_acc"] for r in results[kind])
        lines.append(
            f"| {kind} | {step_ms[kind]:.1f} | {rate[kind]:,.0f} | "
            f"{rate[kind] / rate[kinds[0]]:.2f}x | {acc:.4f} |"
        )
    ddp_ms = step_ms[kinds[2]] - step_ms[HALF]

    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_distributed.py"
    if args.rounds != 2 or args.subset != 3840 or args.epochs != 2:
        command += f" --rounds {args.rounds} --subset {args.subset} --epochs {args.epochs}"
    text = "\n".join(
        [
            "## Distributed training: 2 gloo processes against 1 process",
            "",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, no GPU (none was lent for this "
            f"work, so the NCCL path is untested here). Date: "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. torch {torch.__version__}. "
            f"Load average (1, 5, 15 min) before: {load_before}; after: {load_after} "
            "(the machine was shared with other jobs).",
            f"Command: `{command}`.",
            "",
            f"Recipe: `recipes/default.toml` (Fashion-MNIST CNN, widths 32-64-128, batch norm, "
            f"global batch {batch}) with `{' '.join(overrides)}`; {steps} steps per epoch. Each "
            "row is the median over "
            f"{args.rounds} interleaved rounds of the last epoch's training time (evaluation "
            "and file writing excluded) over its steps; throughput is the epoch's images over "
            "that time (global images for the two-process row). Under torchrun both ranks "
            "step together; rank 0's clock is reported.",
            "",
            *lines,
            "",
            f"Reading: the 2-process step takes {step_ms[kinds[2]]:.1f} ms against "
            f"{step_ms[HALF]:.1f} ms for one rank's share alone, so DDP's per-step price here "
            f"(gloo all-reduce of the gradients, the loader's shard bookkeeping, two "
            f"interpreters sharing two busy cores) is about {ddp_ms:.1f} ms per step. Against "
            f"one process on one thread the two processes train "
            f"{rate[kinds[2]] / rate[kinds[0]]:.2f}x as many images per second (2x at best on "
            "two cores); on a machine shared with other jobs part of that gain is two "
            "processes claiming a larger share of the CPUs than one, so the row that isolates "
            "DDP's cost is the rank's-share row. The point of the distributed path on this "
            "machine is correctness (tests/test_distributed.py: the same weights as one "
            "process within 1e-5) and a measured overhead. The two-thread row shows how badly one "
            "process with two OpenMP threads fares when other jobs hold the cores (its "
            "threads wait for each other at every parallel region). Test accuracies differ "
            "slightly between rows: this recipe uses batch norm, whose statistics are per "
            "rank under torchrun (`train.sync_batchnorm` is GPU-only in PyTorch), and the "
            "batch-64 row is a different recipe.",
            "",
        ]
    )
    print(text)
    write_text(args.out, text)
    return text


if __name__ == "__main__":
    main()
