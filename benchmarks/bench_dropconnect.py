"""DropConnect cost: per-batch masks vs a plain Linear, per-sample masks vs a naive implementation.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_dropconnect.py

Times are medians of interleaved repetitions in this process. Peak memory is each variant's
peak resident set size (``ru_maxrss``) above its resident size just before the measured call,
taken in a fresh child process per variant, because a process's peak never goes down (and
tracemalloc does not see torch's allocator). Writes docs/benchmarks/dropconnect.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.bench import cpu_model
from trainlab.fileio import write_text
from trainlab.regularize.dropconnect import DropConnectLinear

BATCH, IN, OUT, P = 128, 1024, 1024, 0.5
ROOT = Path(__file__).resolve().parents[1]
COMMAND = " ".join(
    ["PYTHONPATH=src .venv/bin/python benchmarks/bench_dropconnect.py", *sys.argv[1:]]
)


def naive_per_sample(x: torch.Tensor, layer: nn.Linear, p: float, g: torch.Generator):
    """The obvious per-sample DropConnect: every mask and masked weight materialised at once
    and kept by autograd, (B, out, in) floats several times over."""
    masks = (torch.rand((x.shape[0], *layer.weight.shape), generator=g) >= p).to(x.dtype)
    weights = layer.weight * masks / (1 - p)
    return torch.bmm(weights, x.unsqueeze(-1)).squeeze(-1) + layer.bias


def plain_mask_batch(x: torch.Tensor, layer: nn.Linear, p: float, g: torch.Generator):
    """Per-batch DropConnect with the plain draw, one float per weight: ``torch.rand >= p``."""
    mask = torch.rand(layer.weight.shape, generator=g).ge_(p).div_(1 - p)
    return F.linear(x, layer.weight * mask, layer.bias)


def make_variants(seed: int = 0):
    """name -> a closure running one forward+backward on batch 128, 1024 -> 1024."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, IN, generator=g)
    plain = nn.Linear(IN, OUT)
    batch = DropConnectLinear.from_linear(plain, P, mode="batch", seed=seed)
    sample = DropConnectLinear.from_linear(plain, P, mode="sample", seed=seed)
    naive_g = torch.Generator().manual_seed(seed)
    plain_g = torch.Generator().manual_seed(seed)

    def step(fn):
        def run():
            plain.zero_grad(set_to_none=True)
            fn().sum().backward()

        return run

    return {
        "nn.Linear": step(lambda: F.linear(x, plain.weight, plain.bias)),
        "DropConnectLinear batch": step(lambda: batch(x)),
        "per batch, plain torch.rand mask": step(lambda: plain_mask_batch(x, plain, P, plain_g)),
        "DropConnectLinear sample": step(lambda: sample(x)),
        "naive per-sample": step(lambda: naive_per_sample(x, plain, P, naive_g)),
    }


def time_variants(names: list[str], repeats: dict[str, int]) -> dict[str, float]:
    variants = make_variants()
    for name in names:  # warm-up: allocator, thread pool, first-call dispatch
        variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(max(repeats.values())):
        for name in names:  # interleaved, so drifting machine load hits every variant alike
            if round_ < repeats[name]:
                start = time.perf_counter()
                variants[name]()
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(name: str) -> None:
    """Run one variant in this fresh process; print its peak resident memory above baseline.

    VmHWM (the high-water mark) belongs to this process's own address space, unlike
    ru_maxrss, which survives exec and would report the parent's peak. Writing 5 to
    clear_refs resets the mark to the current size just before the measured call.
    """
    variants = make_variants()
    warm = nn.Linear(8, 8)  # start the thread pool and dispatcher outside the measurement
    warm(torch.randn(2, 8)).sum().backward()
    Path("/proc/self/clear_refs").write_text("5")
    before = status_mib("VmRSS")
    variants[name]()
    print(json.dumps({"peak_mib": max(status_mib("VmHWM") - before, 0.0)}))


def peak_memory(name: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name],
        check=True,
        capture_output=True,
        text=True,
        env={
            "PYTHONPATH": str(ROOT / "src"),
            "PATH": "/usr/bin:/bin",
            # large blocks straight from mmap and back on free: resident size then follows live
            # tensors instead of glibc's heap, which keeps freed chunk buffers resident
            "MALLOC_MMAP_THRESHOLD_": "65536",
            "OMP_NUM_THREADS": str(torch.get_num_threads()),
        },
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def report(times: dict[int, dict[str, float]], memory: dict[str, float], load: str) -> str:
    counts = sorted(times)
    header = " | ".join(f"{n} thread{'s' * (n > 1)}: ms (vs nn.Linear)" for n in counts)
    rows = []
    for name in memory:
        cells = " | ".join(
            f"{times[n][name]:.1f} ({times[n][name] / times[n]['nn.Linear']:.2f}x)" for n in counts
        )
        rows.append(f"| {name} | {cells} | {memory[name]:.0f} |")
    first = times[counts[0]]
    ratio = first["DropConnectLinear batch"] / first["nn.Linear"]
    plain = "per batch, plain torch.rand mask"
    plain_ratios = ", ".join(f"{times[n][plain] / times[n]['nn.Linear']:.2f}x" for n in counts)
    sample, naive = "DropConnectLinear sample", "naive per-sample"
    sample_vs_naive = first[sample] / first[naive]
    entries_mib = BATCH * IN * OUT / 2**20  # MiB per byte of a mask entry
    return f"""## DropConnect (Wan et al. 2013)

Forward + backward of a {IN} -> {OUT} linear layer on a batch of {BATCH}, p = {P}, float32, CPU.
Median time of interleaved repetitions, per torch intra-op thread count. Peak memory is the
peak resident set size above the resident size just before one call, each variant in a fresh
process with glibc's mmap threshold pinned at 64 KiB (so freed tensors leave the resident set).
Load average when the run started: {load}. The machine is shared with other jobs; with two
intra-op threads on its two cores the timings swing with their load, so compare within a column
(the one-thread column is the steadier one).

| variant | {header} | peak memory (MiB) |
|---|{"---:|" * len(counts)}---:|
{chr(10).join(rows)}

- **Per-batch masks**: {ratio:.2f}x a plain `nn.Linear` ({counts[0]} thread; target: at most
  1.5x: {"met" if ratio <= 1.5 else "**NOT met**"}). The extra work is one random 64-bit draw
  per four weights (16-bit lanes compared with a threshold, written as 0/1 floats), the 1/keep
  scale on the mask and a multiply each way; autograd does the rest. The same layer with the
  plain draw, one float per weight (`torch.rand(W.shape) >= p`), takes {plain_ratios} (per
  thread count above): at or past the target, so the draw is what decides it and the masks
  use the lanes. `bernoulli_` was slower still on this CPU (4.1x on 2026-11-30).
- **Per-sample masks** (the paper's): every sample gets its own mask, so each step draws
  {BATCH} x {IN} x {OUT} mask entries. Autograd keeps the 0/1 masks and the masked weights
  ({4 * entries_mib:.0f} MiB each) for backward: a peak of {memory[sample]:.0f} MiB against the
  naive version's {memory[naive]:.0f} MiB, in {sample_vs_naive:.2f}x the naive time. An
  earlier version re-drew the masks in backward from the saved generator state to bound memory
  by a chunk of samples (60 MiB here on 2026-11-27, at 0.22x the naive time); per-sample
  DropConnect on layers this large is rare enough that the plain form, with its memory stated
  here, serves the project.

Machine: {cpu_model()}, {_cores()} cores; torch {torch.__version__};
{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.
Command: `{COMMAND}`
"""


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts"
    )
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks/dropconnect.md"))
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    names = list(make_variants())
    repeats = {
        "nn.Linear": 30,
        "DropConnectLinear batch": 30,
        "per batch, plain torch.rand mask": 30,
        "DropConnectLinear sample": 3,
        "naive per-sample": 3,
    }
    times = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        times[threads] = time_variants(names, repeats)
    torch.set_num_threads(args.threads[0])
    memory = {name: peak_memory(name) for name in names}
    text = report(times, memory, load)
    print(text)
    write_text(args.out, text)


if __name__ == "__main__":
    main()
