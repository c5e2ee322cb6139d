"""Experiment 4: a four-layer CNN with ReLUs reaches a training-error target faster than with tanh.

Krizhevsky, Sutskever & Hinton 2012 (sec. 3.1, Fig. 1): a four-layer convolutional network on
CIFAR-10 reaches 25% training error six times faster (in epochs) with ReLUs than with tanh
units, each activation with the learning rate that made it fastest and no regularization.
Here the same protocol runs on a CIFAR-10 subset with a conv5-pool-conv5-pool-fc-fc net of that
era's shape, smaller than the paper's (see the notes); ``--scale paper`` runs it on all 50,000
training images with that era's CIFAR-10 widths, conv5x5(64)-pool-conv5x5(64)-pool-fc(384)-fc(10)
(those of TensorFlow's CIFAR-10 tutorial net), on the GPU where there is one.

Evidence. Per paired seed (within a seed both activations share the training subset, the
initialization draws and the batch order), each activation's epochs to 25% running training
error (:func:`epochs_to_target`) at its own learning rate, tuned beforehand on a tuning seed
(:func:`tune`). Two comparisons of the paired difference log(epochs tanh) - log(epochs ReLU),
i.e. the log of the ratio, with its paired-t 95% interval (:func:`trainlab.lab.evidence.compare`,
direction +1): "ReLU reaches the target faster" against the minimum effect log
:data:`FASTER` and "six times faster" against log :data:`PAPER_RATIO`. A run that misses the
target within the epoch cap counts as cap + 1 epochs, a lower bound on its true count; where
such a bound could have produced the verdict, the comparison is "not reached"
(:func:`censoring_decides`).
Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`): the paper's claim is the
six-times factor, so it holds only if both comparisons held; did not hold if either did not
hold, else not reached if either was not reached, else inconclusive if either was. Smoke runs use
2 seeds, which never give "held" or "did not hold".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.activations import make_activation
from trainlab.lab import evidence
from trainlab.lab.arms import MIN_SEEDS, TUNING_SEED, diverged, log_grid, tune_lr
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import comparison_intervals, pyplot, save_figure
from trainlab.lab.runs import at_size, epoch_batches, generator, initialized, lab_device
from trainlab.train import bare_run, train_step

ACTIVATIONS = ("relu", "tanh")
TARGET = 0.25  # running training error over an epoch, as in the paper's Fig. 1
PAPER_RATIO = 6.0  # the paper's factor: minimum effect log 6 of the "six times" comparison
FASTER = 1.25  # "faster": at least 25% fewer epochs, minimum effect log 1.25
BATCH = 64
MOMENTUM = 0.9
GRID_CENTRE = {"relu": 0.01, "tanh": 0.01}  # log_grid's centre; tune_lr extends past edges
SIZES = {  # smoke, quick, full, paper (AlexNet's Fig. 1: all of CIFAR-10, for a GPU)
    "n": (128, 1500, 9000, 50000),  # training images (CIFAR-10; synthetic at smoke size)
    "channels": ((4, 8), (8, 16), (16, 32), (64, 64)),  # paper: the era's CIFAR-10 widths
    "hidden": (16, 32, 64, 384),  # paper: TensorFlow's CIFAR-10 tutorial net's first fc
    "cap": (1, 10, 20, 60),  # most epochs a run trains; missing the target counts cap + 1
    "seeds": (2, 3, 5, 3),  # paired seeds; 2 (smoke) never decide
}


def four_layer_cnn(activation: str, channels: tuple[int, int], hidden: int) -> nn.Sequential:
    """conv5x5 - act - maxpool2 - conv5x5 - act - maxpool2 - fc - act - fc, for 3x32x32."""
    c1, c2 = channels
    act = lambda: make_activation(activation)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, c1, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 8 * 8, hidden), act(), nn.Linear(hidden, 10),
    )  # fmt: skip


def epochs_to_target(errors: list[float], target: float = TARGET) -> int | None:
    """The first epoch (1-based) whose running training error is <= ``target``, or None."""
    return next((e for e, err in enumerate(errors, start=1) if err <= target), None)


def train_to_target(
    activation: str, lr: float, x: Tensor, y: Tensor, cfg: dict[str, Any], seed: int, cap: int
) -> dict[str, Any]:
    """SGD with momentum through the engine's own step, from Kaiming init with the activation's
    gain, until an epoch's running training error (the error on each batch before its update) is
    <= :data:`TARGET`, for at most ``cap`` epochs; stops at a non-finite loss. Within ``seed``
    every activation and learning rate gets the same initialization draws and batch order. The
    net trains where ``x`` and ``y`` lie (drawn on the CPU, then moved there, with each epoch's
    batch indices); one host read per epoch."""
    device = x.device
    make = lambda: four_layer_cnn(activation, cfg["channels"], cfg["hidden"])  # noqa: E731
    net = initialized(make, "kaiming", activation, generator(seed, "relu-vs-tanh", "weights"))
    net = net.to(device)  # a no-op on the CPU
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=MOMENTUM)
    gen = generator(seed, "relu-vs-tanh", "batches")
    run = bare_run(net, opt)
    errors: list[float] = []
    epoch_loss: list[float] = []
    losses: list[float] = []
    start, wall = time.process_time(), time.perf_counter()
    for _ in range(cap):
        run.reset_tally()
        batches = epoch_batches(len(y), BATCH, gen)
        if device.type != "cpu":  # one copy of the epoch's indices, not one per step
            batches = list(torch.cat(batches).to(device).split([len(b) for b in batches]))
        losses += torch.stack([train_step(run, x[idx], y[idx]) for idx in batches]).tolist()
        errors.append(1.0 - run.tally.correct.item() / run.tally.seen)
        epoch_loss.append(run.tally.loss_sum.item() / run.tally.seen)
        if int(run.tally.first_bad) >= 0 or epochs_to_target(errors) is not None:
            break
    return {
        "epochs": epochs_to_target(errors),
        "diverged": diverged(losses),
        "error_curve": errors,
        "loss_curve": epoch_loss,
        "cpu_seconds": time.process_time() - start,
        "wall_seconds": time.perf_counter() - wall,
    }


def tuning_score(run: dict[str, Any]) -> float:
    """What the learning-rate search minimises: the epochs to the target, or (target missed)
    the epochs trained + 1, a lower bound; plus L / (1 + L) in [0, 1) of the last epoch's mean
    training loss L as the tie-break; ``inf`` if the run :func:`~trainlab.lab.arms.diverged`
    (a non-finite loss, or a loss ending above its start)."""
    if run["diverged"]:
        return math.inf
    trained = len(run["error_curve"])
    loss = run["loss_curve"][-1]
    return trained + (0 if run["epochs"] is not None else 1) + loss / (1 + loss)


def tune(
    train: Callable[[float, int], dict[str, Any]], centre: float, cap: int
) -> tuple[Any, dict[float, dict[str, Any]]]:
    """:func:`~trainlab.lab.arms.tune_lr` of :func:`tuning_score` on ``log_grid(centre)``
    (extended past an edge holding the best). ``train(lr, cap)`` trains one tuning run. The
    centre runs first; every later run stops once it has trained as many epochs as the fewest
    that reached the target so far without reaching it (it can no longer win: its score is then
    a lower bound above the best), which leaves the chosen rate unchanged and saves time."""
    runs: dict[float, dict[str, Any]] = {}
    fewest = [cap]

    def score(lr: float) -> float:
        if lr not in runs:
            runs[lr] = train(lr, fewest[0])
            if runs[lr]["epochs"] is not None and not runs[lr]["diverged"]:
                fewest[0] = min(fewest[0], runs[lr]["epochs"])
        return tuning_score(runs[lr])

    grid = log_grid(centre)
    score(grid[len(grid) // 2])
    return tune_lr(score, grid), runs


def censoring_decides(verdict: str, relu_censored: bool, tanh_censored: bool) -> bool:
    """Whether runs that missed the target (counted as cap + 1 epochs, a lower bound) could have
    produced ``verdict``: a censored tanh count makes the measured ratio too small, so only
    "held" survives it; a censored ReLU count makes it too large, so only "did not hold"
    survives it; with both, nothing does."""
    if relu_censored and tanh_censored:
        return True
    if tanh_censored:
        return verdict != "held"
    if relu_censored:
        return verdict != "did not hold"
    return False


def ratio_comparisons(
    epochs: dict[str, list[int | None]], cap: int, seeds: list[int]
) -> list[evidence.Comparison]:
    """The two comparisons of log(epochs tanh / epochs ReLU) over paired seeds: "faster"
    (minimum effect log :data:`FASTER`) and "six times faster" (log :data:`PAPER_RATIO`); a
    missed target counts cap + 1 epochs and is judged by :func:`censoring_decides`."""
    logs = {a: [math.log(e if e is not None else cap + 1) for e in v] for a, v in epochs.items()}
    censored = {a: any(e is None for e in v) for a, v in epochs.items()}
    out = []
    for name, factor in (
        ("ReLU reaches 25% training error in fewer epochs than tanh", FASTER),
        ("ReLU reaches 25% training error six times faster than tanh", PAPER_RATIO),
    ):

        def judged(reached: bool, factor: float = factor, name: str = name):
            return evidence.compare(
                name, "log(epochs tanh / epochs relu)", ("tanh", "relu"), logs["tanh"],
                logs["relu"], seeds, math.log(factor), +1, reached=reached, min_seeds=MIN_SEEDS,
            )  # fmt: skip

        comparison = judged(True)
        if censoring_decides(comparison.verdict, censored["relu"], censored["tanh"]):
            comparison = judged(False)
        out.append(comparison)
    return out


@experiment(
    "relu-vs-tanh",
    claim=(
        "A four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster "
        "(in epochs) than the same network with tanh."
    ),
    source="Krizhevsky, Sutskever & Hinton 2012, 'ImageNet Classification with Deep CNNs', Fig. 1",
    rule=(
        "conv5-pool-conv5-pool-fc-fc on a CIFAR-10 subset drawn by the seed ("
        f"{SIZES['n'][2]:,} images full, {SIZES['n'][1]:,} quick; at most {SIZES['cap'][2]} "
        f"and {SIZES['cap'][1]} epochs; at paper scale all {SIZES['n'][3]:,} training images, "
        f"conv5({SIZES['channels'][3][0]})-pool-conv5({SIZES['channels'][3][1]})-pool-"
        f"fc({SIZES['hidden'][3]})-fc(10), at most {SIZES['cap'][3]} epochs), "
        f"Kaiming init with each activation's gain, SGD momentum {MOMENTUM}, batch {BATCH}, no "
        "regularization. Each activation's learning rate is tuned on a tuning seed (a log grid "
        "of 5 rates half a decade apart, extended past an edge holding the best, up to 3 times), "
        f"scored by epochs to {TARGET:.0%} running training error (a missed target: epochs + 1; "
        "tie-break: the last epoch's training loss; diverged, or loss ending above its start: "
        "inf), then fixed. Paired seeds ("
        f"{SIZES['seeds'][2]} full, {SIZES['seeds'][1]} quick, {SIZES['seeds'][3]} paper): "
        "per seed each activation's epochs to "
        "the target (missing it within the cap = cap + 1). Two comparisons of log(epochs tanh / "
        "epochs ReLU), paired-t 95% interval: 'fewer epochs' with minimum effect "
        f"log {FASTER}, 'six times' with minimum effect log {PAPER_RATIO:g}; held if the "
        "interval lies above it, did not hold if below, inconclusive if it contains it (or "
        f"fewer than {MIN_SEEDS} seeds); not reached where a missed target (a lower bound) "
        "could have produced the verdict. Overall: did not hold if either did not hold, else "
        "not reached if either was, else inconclusive if either was, else held."
    ),
    scales=("quick", "full", "paper"),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    cap, seeds = cfg["cap"], [seed + i for i in range(cfg["seeds"])]
    device = lab_device(size)

    def subset(s: int) -> tuple[Tensor, Tensor, str]:
        x, y, data = image_subset("cifar10", cfg["n"], generator(s, "relu-vs-tanh", "data"), size)
        return x.to(device), y.to(device), data  # no-ops on the CPU

    tuning_seed = seed + TUNING_SEED
    tx, ty, _ = subset(tuning_seed)
    searches, tuning_runs = {}, {}
    for act in ACTIVATIONS:

        def train(lr: float, limit: int, act: str = act) -> dict[str, Any]:
            return train_to_target(act, lr, tx, ty, cfg, tuning_seed, limit)

        searches[act], tuning_runs[act] = tune(train, GRID_CENTRE[act], cap)
    lrs = {act: searches[act].best for act in ACTIVATIONS}

    runs: dict[str, list[dict[str, Any]]] = {act: [] for act in ACTIVATIONS}
    data = ""
    for s in seeds:
        x, y, data = subset(s)
        for act in ACTIVATIONS:
            runs[act].append(train_to_target(act, lrs[act], x, y, cfg, s, cap))
    epochs = {act: [r["epochs"] for r in rs] for act, rs in runs.items()}
    comparisons = ratio_comparisons(epochs, cap, seeds)
    diff, (lo, hi) = comparisons[0].difference, comparisons[0].ci95

    measured = {
        "data": data,
        "config": {**cfg, "channels": list(cfg["channels"]), "batch": BATCH, "target": TARGET},
        "seeds": seeds,
        "tuning_seed": tuning_seed,
        "lr": lrs,
        "lr_search": {act: searches[act].to_dict() for act in ACTIVATIONS},
        "epochs_to_target": {
            a: [e if e is not None else f">{cap}" for e in v] for a, v in epochs.items()
        },  # fmt: skip
        "epochs_ratio_tanh_over_relu": math.exp(diff),
        "epochs_ratio_ci95": [math.exp(lo), math.exp(hi)],
        "ratio_per_seed": [
            (t if t is not None else cap + 1) / (r if r is not None else cap + 1)
            for t, r in zip(epochs["tanh"], epochs["relu"], strict=True)
        ],
        "missed_target": {a: sum(e is None for e in v) for a, v in epochs.items()},
        "last_error": {a: [r["error_curve"][-1] for r in rs] for a, rs in runs.items()},
        "timing": {
            "cpu_seconds_tuning": sum(
                r["cpu_seconds"] for t in tuning_runs.values() for r in t.values()
            ),  # fmt: skip
            "cpu_seconds_paired": sum(r["cpu_seconds"] for rs in runs.values() for r in rs),
        },
    }
    if size == "paper":  # where it ran, and wall time (the GPU works asynchronously)
        measured["config"]["device"] = str(device)
        measured["timing"] |= {
            "wall_seconds_tuning": sum(
                r["wall_seconds"] for t in tuning_runs.values() for r in t.values()
            ),
            "wall_seconds_paired": sum(r["wall_seconds"] for rs in runs.values() for r in rs),
        }
    figures = [
        _plot_errors(out, runs, lrs, seeds),
        comparison_intervals(
            out,
            "comparisons.png",
            "ReLU against tanh: log epochs ratio, paired seeds",
            comparisons,
        ),  # fmt: skip
    ]
    net = (
        f"net conv5({cfg['channels'][0]})-pool-conv5({cfg['channels'][1]})-pool-"
        f"fc({cfg['hidden']})-fc(10), batch {BATCH}, at most {cap} epochs per run"
    )
    if size == "paper":
        scale = (
            f"{data} per seed (the seed draws them and their order; tuning on seed "
            f"{tuning_seed}), seeds {seeds}; {net}, on {device}. The "
            "paper's scale: AlexNet's Fig. 1 trained a four-layer convolutional net on all "
            "50,000 images without regularization; its widths are not given there, so this "
            "net takes the era's CIFAR-10 widths, those of TensorFlow's CIFAR-10 tutorial net "
            "(conv5x5 64, conv5x5 64, fc 384; without its local response norm and second fc). "
            "The paper used Gaussian init; this uses Kaiming with each activation's gain."
        )
    else:
        scale = (
            f"{data} per seed (the seed draws the subset; tuning on seed {tuning_seed}'s "
            f"subset), seeds {seeds}; {net}. The paper trained on all 50,000 images with a "
            "larger four-layer net on a GPU (and Gaussian init); this CPU budget (15 minutes at "
            "one thread, tuning included) allows a subset and a net of the same shape with "
            "fewer channels."
        )
    notes = (
        scale + " The running error is counted on each "
        "batch before its update, as a training curve is. Chosen learning rates: "
        + ", ".join(f"{a} {lr:g}" for a, lr in lrs.items())
        + ". CPU seconds are process time"
        + (", wall seconds the host's clock, both" if size == "paper" else ",")
        + " outside the reproducibility guarantee."
    )
    if size == "smoke":
        notes += " Smoke size: synthetic images, 2 seeds decide nothing."
    return conclude(comparisons, measured, figures, notes)


def _plot_errors(
    out: Path, runs: dict[str, list[dict[str, Any]]], lrs: dict[str, float], seeds: list[int]
) -> str:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for act, colour in zip(ACTIVATIONS, ("tab:blue", "tab:orange"), strict=True):
        for i, r in enumerate(runs[act]):
            errors = r["error_curve"]
            label = f"{act} (lr {lrs[act]:g}), {len(seeds)} seeds" if i == 0 else None
            ax.plot(range(1, len(errors) + 1), errors, color=colour, marker="o", ms=2, lw=1,
                    label=label)  # fmt: skip
    ax.axhline(TARGET, color="k", ls="--", lw=0.8)
    ax.set(xlabel="epoch", ylabel="training error (running, over the epoch)",
           title=f"Four-layer CNN on CIFAR-10: ReLU vs tanh (target {TARGET:.0%})")  # fmt: skip
    ax.legend(fontsize=8)
    return save_figure(fig, out, "relu_vs_tanh_error.png")
