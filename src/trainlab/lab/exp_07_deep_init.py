"""Experiment 7: a 30-layer plain ReLU network stalls with Xavier and trains with Kaiming.

He et al. 2015 ("Delving Deep into Rectifiers", sec. 2.2 and Fig. 3): with ``std = 1/sqrt(n)``
each ReLU layer halves the signal's variance, so after 30 layers it is ``2^-30`` of the input's
and the gradients reaching the early layers are as small; ``std = sqrt(2/n)`` keeps both
constant and the net trains. The paper's 30-layer model is a plain convolutional net on
ImageNet. At the CPU sizes (smoke, quick, full) the network here is a 30-layer plain MLP (no
batch norm, no residuals) on a Fashion-MNIST subset; at the paper size (``--scale paper``, for a
GPU: :func:`trainlab.lab.runs.lab_device`) it is a 30-layer plain convolutional ReLU net
(:func:`plain_conv`: 29 3x3 convolutions of width 64, stride 2 at two of them, no batch norm, no
residuals, then global average pooling and a linear classifier) on all 50,000 CIFAR-10 training
images. Both inits draw the same normal numbers within a seed (Xavier's weights are Kaiming's
divided by sqrt(2), for convolutions as for linear layers: both scale with the fan-in), so the
arms differ only in the scale the claim is about.

Evidence. "Stalls" is measured as the number of SGD steps until the training loss (the mean of
the last :data:`WINDOW` batch losses) first falls below :data:`THRESHOLD`, half of ``ln 10``
(the loss of a uniform guess over the 10 classes), stated before the run. A run that does not
reach it within the step cap counts as the cap (so Xavier's count is then a lower bound, which
works against the claim) and a run that diverges counts as the cap too. Each init's learning
rate is tuned first (:func:`trainlab.lab.arms.tune_lr`: a log grid of at least 5 rates,
extended past an edge that holds the best) on a tuning seed that is none of the paired seeds,
scored by :func:`tuning_score`. On the paired seeds (5 full, 3 quick and paper; a seed draws
the weights, shared by both inits, and the batch order) one comparison: log10(steps) of Xavier
minus Kaiming, direction +1, minimum effect :data:`MIN_EFFECT` (log10 2: Xavier needs at least
twice as many steps), judged by :func:`trainlab.lab.evidence.compare` (paired-t 95% interval).
Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`) over that one comparison:
its verdict is the experiment's. Smoke runs use 2 seeds, which decide nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from trainlab.lab import evidence
from trainlab.lab.arms import MIN_SEEDS, TUNING_SEED, diverged, final_loss, log_grid, tune_lr
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import comparison_intervals, draw_curves, pyplot, save_figure
from trainlab.lab.runs import (
    at_size,
    generator,
    initialized,
    initialized_mlp,
    lab_device,
    step_batches,
)

DEPTH = 30  # weight layers, as in the paper's deep model
INITS = ("xavier", "kaiming")
THRESHOLD = 0.5 * math.log(10)  # the loss to reach: half of a uniform guess's ln 10
WINDOW = 10  # batch losses averaged for "the training loss" at a step
MIN_EFFECT = math.log10(2)  # Xavier needs at least twice Kaiming's steps
LR_CENTRE = 10**-2.5  # 0.00316, centre of each init's learning-rate grid (half a decade apart)
BATCH = 128
MOMENTUM = 0.9  # SGD with momentum, as in the paper
DOWNSAMPLE = (10, 20)  # plain_conv's convolutions (0-based) of stride 2: 32 -> 16 -> 8 pixels
SIZES = {  # smoke, quick, full (the MLP on Fashion-MNIST), paper (plain_conv on CIFAR-10)
    "n": (256, 4096, 10000, 50000),  # paper: all of CIFAR-10's training images
    "width": (8, 64, 128, 64),
    "cap": (30, 600, 1500, 6000),  # the step cap: a run not reaching THRESHOLD counts as this
    "seeds": (2, 3, 5, 3),  # paired seeds; 2 (smoke) never decide
}
NETWORK = {"smoke": "mlp", "quick": "mlp", "full": "mlp", "paper": "conv"}
DATA = {"mlp": "fashion-mnist", "conv": "cifar10"}


def steps_to_threshold(
    losses: Sequence[float], threshold: float = THRESHOLD, window: int = WINDOW
) -> int | None:
    """The first step ``s`` (1-based, at least ``window``) at which the mean of the last
    ``window`` losses, ``losses[s - window : s]``, is below ``threshold``; None if there is
    none (a non-finite loss ends the search: the run stopped there)."""
    for s in range(window, len(losses) + 1):
        recent = losses[s - window : s]
        if not all(math.isfinite(v) for v in recent):
            return None
        if math.fsum(recent) / window < threshold:
            return s
    return None


def counted_steps(losses: Sequence[float], cap: int) -> int:
    """What a run counts in the comparison: its :func:`steps_to_threshold`, or ``cap`` when it
    did not reach the threshold (or diverged) within the cap."""
    steps = steps_to_threshold(losses)
    return cap if steps is None else steps


def tuning_score(losses: Sequence[float], cap: int) -> float:
    """What the learning-rate search minimises on a run: the steps to the threshold if it was
    reached; else ``cap`` plus the final loss (:func:`trainlab.lab.arms.final_loss`), which ranks
    the rates that did not reach it by how far their loss fell; ``inf`` if the run diverged
    (a non-finite loss, or one ending above its start)."""
    steps = steps_to_threshold(losses)
    if steps is not None:
        return float(steps)
    if diverged(losses):
        return math.inf
    return cap + final_loss(losses)


def plain_conv(channels: int, width: int, classes: int, depth: int = DEPTH) -> nn.Sequential:
    """The paper size's network: ``depth - 1`` 3x3 convolutions of ``width`` channels (padding
    1, stride 2 at the indices in :data:`DOWNSAMPLE`), each followed by ReLU, no batch norm and
    no residuals; then global average pooling and a linear classifier: ``depth`` weight layers."""
    layers: list[nn.Module] = []
    for i in range(depth - 1):
        stride = 2 if i in DOWNSAMPLE else 1
        layers += [nn.Conv2d(channels if i == 0 else width, width, 3, stride, 1), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    return nn.Sequential(*layers)


def network(scheme: str, spec: list[int] | tuple[int, int, int], seed: int) -> nn.Module:
    """The plain ReLU network initialized with ``scheme`` from ``seed``'s weight generator:
    the MLP of widths ``spec`` (a list), or :func:`plain_conv` for ``spec = (channels, width,
    classes)`` (a tuple)."""
    gen = generator(seed, "deep-init", "weights")
    if isinstance(spec, list):
        return initialized_mlp(spec, "relu", scheme, gen)
    return initialized(lambda: plain_conv(*spec), scheme, "relu", gen)


def train_to_threshold(
    scheme: str,
    x: Tensor,
    y: Tensor,
    widths: list[int] | tuple[int, int, int],
    lr: float,
    cap: int,
    seed: int,
) -> list[float]:
    """Train the plain ReLU network ``widths`` (:func:`network`: an MLP's widths, or
    :func:`plain_conv`'s ``(channels, width, classes)``) initialized with ``scheme``, on the
    device of ``x``, through the engine's own step (:func:`trainlab.train.train_step`, SGD
    with momentum) until the loss reaches :data:`THRESHOLD` (by :func:`steps_to_threshold`) or
    ``cap`` steps; the batch losses. A non-finite loss stops the run and is recorded as
    ``inf``. Within a seed both schemes draw the same weights (before scaling, on the CPU) and
    the same batches."""
    from trainlab.train import bare_run, train_step

    net = network(scheme, widths, seed)
    if x.device.type != "cpu":
        net = net.to(x.device)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=MOMENTUM)
    run = bare_run(net, opt)
    net.train()
    losses: list[float] = []
    for idx in step_batches(len(x), BATCH, cap, generator(seed, "deep-init", "batches")):
        if x.device.type != "cpu":
            idx = idx.to(x.device, non_blocking=True)
        loss = train_step(run, x[idx], y[idx]).item()
        losses.append(loss if math.isfinite(loss) else math.inf)
        if not math.isfinite(loss):
            break
        recent = losses[-WINDOW:]
        if len(recent) == WINDOW and math.fsum(recent) / WINDOW < THRESHOLD:
            break
    return losses


@experiment(
    "deep-init",
    claim=(
        "A 30-layer plain ReLU network initialized with Xavier (std 1/sqrt(fan_in)) stalls, "
        "while with Kaiming (std sqrt(2/fan_in)) it trains."
    ),
    source="He et al. 2015, 'Delving Deep into Rectifiers', sec. 2.2 and Fig. 3",
    rule=(
        f"A {DEPTH}-layer plain ReLU network, no batch norm or residuals: at sizes smoke, quick "
        f"and full an MLP on a Fashion-MNIST subset (widths {SIZES['width'][:3]}), at paper "
        f"size {DEPTH - 1} 3x3 convolutions of width {SIZES['width'][3]} (stride 2 at two), "
        f"global average pooling and a linear classifier on all {SIZES['n'][3]} CIFAR-10 "
        f"training images. SGD momentum {MOMENTUM}, batch {BATCH}. Steps to threshold: the "
        f"first step at which the mean of the last {WINDOW} batch losses is below "
        f"{THRESHOLD:.4f} (= 0.5 ln 10); a run not reaching it within the cap "
        f"({SIZES['cap']} steps by size) or diverging counts as the cap. Each init's learning "
        "rate tuned on a tuning seed (log grid of >= 5 rates half a decade apart around "
        f"{LR_CENTRE:.3g}, extended past an edge holding the best). On paired seeds (5 full, 3 "
        "quick and paper): log10(steps) Xavier - Kaiming, paired-t 95% interval; held if above "
        f"{MIN_EFFECT:.4f} (log10 2), did not hold if below it, inconclusive if it contains it "
        f"(or fewer than {MIN_SEEDS} seeds). The experiment's verdict is that comparison's."
    ),
    scales=("quick", "full", "paper"),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    n, width, cap = cfg["n"], cfg["width"], cfg["cap"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    kind = NETWORK[size]
    x, y, data = image_subset(DATA[kind], n, generator(seed, "deep-init", "data"), size)
    classes = int(y.max()) + 1
    widths: list[int] | tuple[int, int, int]
    if kind == "mlp":
        x = x.flatten(1)
        widths = [x.shape[1]] + [width] * (DEPTH - 1) + [classes]
        label = f"{DEPTH}-layer plain ReLU MLP"
    else:
        widths = (x.shape[1], width, classes)
        label = f"{DEPTH}-layer plain ReLU conv net"
        device = lab_device(size)
        x, y = x.to(device), y.to(device)

    def train(scheme: str, lr: float, s: int) -> list[float]:
        return train_to_threshold(scheme, x, y, widths, lr, cap, s)

    searches = {
        s: tune_lr(lambda lr, s=s: tuning_score(train(s, lr, seed + TUNING_SEED), cap),
                   log_grid(LR_CENTRE))
        for s in INITS
    }  # fmt: skip
    lrs = {s: searches[s].best for s in INITS}
    curves = {s: [train(s, lrs[s], k) for k in seeds] for s in INITS}
    steps = {s: [counted_steps(c, cap) for c in curves[s]] for s in INITS}
    log_steps = {s: [math.log10(v) for v in steps[s]] for s in INITS}
    comparison = evidence.compare(
        "Xavier needs more steps than Kaiming to reach the loss threshold",
        "log10 steps to threshold",
        ("xavier", "kaiming"),
        log_steps["xavier"],
        log_steps["kaiming"],
        seeds,
        MIN_EFFECT,
        +1,
        min_seeds=MIN_SEEDS,
    )
    reached = {s: [steps_to_threshold(c) is not None for c in curves[s]] for s in INITS}
    measured = {
        "data": data,
        "depth": DEPTH,
        "width": width,
        "cap": cap,
        "threshold": THRESHOLD,
        "window": WINDOW,
        "batch": BATCH,
        "seeds": seeds,
        "lr": lrs,
        "lr_search": {s: searches[s].to_dict() for s in INITS},
        "steps_to_threshold": steps,
        "reached_threshold": reached,
        "log10_steps": log_steps,
        "steps_ratio_xavier_over_kaiming": [
            a / b for a, b in zip(steps["xavier"], steps["kaiming"], strict=True)
        ],
        "loss_curves": {s: curves[s][0] for s in INITS},  # the first paired seed's
    }
    figures = [
        _plot(out, {s: curves[s][0] for s in INITS}, lrs, cap, label),
        comparison_intervals(
            out,
            "comparisons.png",
            f"{label}: Xavier vs Kaiming",
            [comparison],
        ),  # fmt: skip
    ]
    capped = {s: reached[s].count(False) for s in INITS}
    if kind == "mlp":
        net = (
            f"{label} of width {width}, no batch norm or residuals (the paper: a 30-layer plain "
            f"conv net on ImageNet)"
        )
    else:
        net = (
            f"{label} ({DEPTH - 1} 3x3 convolutions of width {width}, stride 2 at convolutions "
            f"{DOWNSAMPLE[0] + 1} and {DOWNSAMPLE[1] + 1}, global average pooling, a linear "
            f"classifier; no batch norm or residuals; the paper: a 30-layer plain conv net on "
            f"ImageNet), trained on {x.device.type}"
        )
    notes = (
        f"{net}, on {data}, SGD momentum {MOMENTUM}, batch "
        f"{BATCH}, tuned learning rates xavier {lrs['xavier']}, kaiming {lrs['kaiming']}; paired "
        f"seeds {seeds}. Runs that did not reach the threshold within {cap} steps (counted as "
        f"{cap}): xavier {capped['xavier']}, kaiming {capped['kaiming']} of {len(seeds)}."
    )
    if capped["xavier"]:
        notes += " Xavier's counts at the cap are lower bounds: the true difference is larger."
    if size in ("smoke", "quick"):
        notes += f" Size '{size}': narrower net, fewer images, steps and seeds than the full run."
    if size == "paper":
        notes += (
            f" Size 'paper': He et al.'s kind of network (plain, convolutional, {DEPTH} layers) "
            f"on all of CIFAR-10's {len(x)} training images, step cap {cap}, {len(seeds)} paired "
            "seeds; the full size's MLP on Fashion-MNIST is the CPU's stand-in for it."
        )
    return conclude([comparison], measured, figures, notes)


def _plot(
    out: Path, curves: dict[str, list[float]], lrs: dict[str, float], cap: int, label: str
) -> str:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    draw_curves(ax, {f"{s} (lr {lrs[s]})": c for s, c in curves.items()}, lw=1)
    ax.axhline(THRESHOLD, color="k", ls="--", lw=0.8, label=f"threshold {THRESHOLD:.3f}")
    ax.set(xlabel="SGD step", ylabel="training loss (batch)", xlim=(0, cap))
    ax.set_title(f"{label}, first paired seed, until the threshold")
    ax.legend(fontsize=8)
    return save_figure(fig, out, "deep_init_loss.png")
