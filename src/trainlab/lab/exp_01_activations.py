"""Experiment 1: every activation, its derivative, and what each costs to compute.

The figure draws ``f`` and ``f'`` from trainlab's float64 reference formulas; the costs are
timed in interleaved rounds, so that a change in machine load hits every activation alike.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from trainlab.activations import PLOT_SPECS, make_activation, plot_activations
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.figures import pyplot, save_figure
from trainlab.lab.runs import at_size, generator

TIMED = tuple(s for s in PLOT_SPECS if s != "identity")
EXP_BASED = ("sigmoid", "tanh", "elu", "selu", "gelu", "silu")
SIZES = {"elements": (1 << 14, 1 << 20, 1 << 22), "rounds": (3, 15, 40)}  # smoke, quick, full


def _time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _timings(elements: int, rounds: int, seed: int) -> dict[str, dict[str, float]]:
    """Median forward and backward seconds per activation, over interleaved rounds."""
    gen = generator(seed, "activations", "input")
    x = torch.randn(elements, generator=gen).requires_grad_(True)
    grad_out = torch.randn(elements, generator=gen)
    modules = {s: make_activation(s) for s in TIMED}
    outputs = {s: m(x) for s, m in modules.items()}
    samples: dict[str, dict[str, list[float]]] = {s: {"forward": [], "backward": []} for s in TIMED}
    with torch.no_grad():
        for m in modules.values():  # warm-up: first calls allocate and pick kernels
            m(x)
    for _ in range(rounds):
        for spec, module in modules.items():
            with torch.no_grad():
                samples[spec]["forward"].append(_time_once(lambda m=module: m(x)))
            y = outputs[spec]
            samples[spec]["backward"].append(
                _time_once(lambda y=y: torch.autograd.grad(y, x, grad_out, retain_graph=True))
            )
    return {s: {k: statistics.median(v) for k, v in times.items()} for s, times in samples.items()}


def _figure(out: Path, timings, elements: int) -> str:
    fig, ax = pyplot().subplots(figsize=(9, 3.8))
    specs = list(timings)
    pos = range(len(specs))
    scale = 1e9 / elements  # nanoseconds per element
    fwd = [timings[s]["forward"] * scale for s in specs]
    bwd = [timings[s]["backward"] * scale for s in specs]
    ax.bar([p - 0.2 for p in pos], fwd, width=0.4, label="forward")
    ax.bar([p + 0.2 for p in pos], bwd, width=0.4, label="backward")
    ax.set_xticks(list(pos), specs, rotation=30, fontsize=8)
    ax.set(
        ylabel="ns per element (median)",
        title=f"Cost of each activation on {elements:,} float32 values (CPU)",
    )
    ax.legend()
    return save_figure(fig, out, "activation_cost.png")


@experiment(
    "activations",
    claim=(
        "ReLU is the cheapest activation to compute; the exponential-based ones (sigmoid, "
        "tanh, ELU, SELU, GELU, SiLU) cost more, forward and backward."
    ),
    source=(
        "cs231n lecture 'Training Neural Networks I' (activation functions); Krizhevsky et "
        "al. 2012, sec. 3.1"
    ),
    rule=(
        "Median wall time over interleaved rounds on one float32 tensor, PyTorch's kernels on "
        "this CPU. Checks: (1) ReLU's forward time is below each of sigmoid, tanh, ELU, SELU, "
        "GELU and SiLU's; (2) the same for the backward pass. Both: held; none: did not hold; "
        "one: partly held. Timings, and so this verdict, are not covered by the same-seed "
        "reproducibility guarantee."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    elements, rounds = cfg["elements"], cfg["rounds"]
    plot_activations(out / "activations.png")
    timings = _timings(elements, rounds, seed)
    relu = timings["relu"]
    checks = {
        f"relu {phase} cheaper than every exp-based one": all(
            relu[phase] < timings[s][phase] for s in EXP_BASED
        )
        for phase in ("forward", "backward")
    }
    relative = {s: {phase: t / relu[phase] for phase, t in ts.items()} for s, ts in timings.items()}
    figures = ["activations.png", _figure(out, timings, elements)]
    timing = {"median_seconds": timings, "relative_to_relu": relative}
    return conclude(
        checks,
        {**cfg, "timing": timing},
        figures,
        f"{elements:,} float32 values, {rounds} interleaved rounds, torch {torch.__version__} "
        f"with {torch.get_num_threads()} thread(s). Every number under 'timing' (and the "
        "verdict) depends on the machine and its load.",
    )
