"""Activation speed: trainlab's modules vs PyTorch's native modules for the same function.

Forward + backward of each activation on a (256, 1024) float32 tensor: trainlab's module
(which calls PyTorch's kernel and adds the reference math around it) against ``nn.ReLU``,
``nn.GELU``, ... Samples of ``INNER`` calls are timed, the two contestants interleaved in
alternating order so drifting machine load hits both alike; the figure is the median sample.
Target: trainlab / native <= 1.10.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_activations.py
Writes docs/benchmarks/activations.md.
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from trainlab import fileio
from trainlab.activations import make_activation
from trainlab.bench import cpu_model

SHAPE = (256, 1024)
INNER = 20  # calls per timed sample
SAMPLES = 100  # samples per contestant
THREADS = 1  # one intra-op thread: on a shared 2-core machine more threads only add contention
TARGET = 1.10
ROOT = Path(__file__).resolve().parents[1]
COMMAND = "PYTHONPATH=src .venv/bin/python benchmarks/bench_activations.py"

PAIRS: list[tuple[str, nn.Module]] = [
    ("sigmoid", nn.Sigmoid()),
    ("tanh", nn.Tanh()),
    ("relu", nn.ReLU()),
    ("leaky_relu(0.1)", nn.LeakyReLU(0.1)),
    ("prelu", nn.PReLU()),
    ("elu", nn.ELU()),
    ("selu", nn.SELU()),
    ("gelu", nn.GELU()),
    ("gelu('tanh')", nn.GELU("tanh")),
    ("silu", nn.SiLU()),
    ("identity", nn.Identity()),
]


def sample_seconds(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> float:
    """Seconds per forward + backward, averaged over ``INNER`` calls."""
    start = time.perf_counter()
    for _ in range(INNER):
        y = module(x)
        y.backward(grad)
    return (time.perf_counter() - start) / INNER


def compare(ours: nn.Module, native: nn.Module, x, grad) -> tuple[float, float]:
    """Median seconds of ours and native, interleaved ABBA so neither always goes first."""
    for module in (ours, native):  # warm-up: allocator, first-call dispatch
        sample_seconds(module, x, grad)
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(SAMPLES):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for k in order:
            times[k].append(sample_seconds((ours, native)[k], x, grad))
            x.grad = None
    return statistics.median(times[0]), statistics.median(times[1])


def machine() -> str:
    model = cpu_model()
    threads = torch.get_num_threads()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} ({threads} threads)"


def main() -> None:
    torch.set_num_threads(THREADS)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g).requires_grad_(True)
    grad = torch.randn(SHAPE, generator=g)
    rows = []
    for spec, native in PAIRS:
        ours = make_activation(spec)
        t_ours, t_native = compare(ours, native, x, grad)
        ratio = t_ours / t_native
        rows.append((spec, type(native).__name__, t_ours, t_native, ratio))
        print(
            f"{spec:16s} {t_ours * 1e6:8.1f} us  {t_native * 1e6:8.1f} us  {ratio:.3f}", flush=True
        )
    worst = max(r[4] for r in rows)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Activations: trainlab modules vs PyTorch's native modules",
        "",
        f"Machine: {machine()}, CPU only. Date: {now}. Command: `{COMMAND}`.",
        "",
        f"Forward + backward on a {SHAPE[0]}x{SHAPE[1]} float32 tensor. Each sample times "
        f"{INNER} calls; {SAMPLES} samples per module, trainlab and native interleaved in "
        "alternating order; the median sample per call is shown.",
        "",
        "| activation | native module | trainlab (us) | native (us) | ratio |",
        "|---|---|---:|---:|---:|",
        *(
            f"| `{spec}` | `nn.{name}` | {a * 1e6:.1f} | {b * 1e6:.1f} | {r:.3f} |"
            for spec, name, a, b, r in rows
        ),
        "",
        f"Target: ratio <= {TARGET:.2f} for every activation: "
        + (f"**met** (worst {worst:.3f})." if worst <= TARGET else f"**NOT met** ({worst:.3f})."),
        "",
        "Both sides run the same PyTorch kernel (`torch.relu`, `F.gelu`, `F.prelu`, ...); the "
        "trainlab module adds only a Python attribute lookup or two per call. The reference "
        "formulas, derivatives and properties live beside the module and cost nothing at "
        "training time. Ratios within a few percent of 1 are noise on a shared machine.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    fileio.write_text(ROOT / "docs" / "benchmarks" / "activations.md", text)


if __name__ == "__main__":
    main()
