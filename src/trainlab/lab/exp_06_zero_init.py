"""Experiment 6: symmetric initial weights cripple learning.

If every unit of a layer starts with the same incoming and outgoing weights, each computes the
same output and receives the same gradient ``dL/dW_j = delta_j y^T`` with ``delta_j`` equal
across ``j``, so the units stay identical for ever: the layer is one unit wide (cs231n,
"Pitfall: all zero initialization"). That the units stay identical is an identity of the
arithmetic, checked in the unit tests (tests/test_lab_init_stats.py), not evidence here. With
all-zero weights and tanh it is worse: every hidden output is ``tanh(0) = 0``, so no weight
receives a gradient and only the output bias learns.

Evidence. The consequence the lecture claims, that such a network learns far worse, as two
comparisons on paired seeds (a seed draws the training and held-out images, the batch order
shared by every arm, and Xavier's weights): Xavier against zeros and Xavier against
constant(0.1), on held-out accuracy, direction +1, minimum effect :data:`MIN_EFFECT` (10
points: "crippled", not merely a little worse), judged by
:func:`trainlab.lab.evidence.compare` (paired-t 95% interval). Each arm's learning rate is tuned
first (:func:`trainlab.lab.arms.tune_lr`, a log grid of at least 5 rates extended past an edge
that holds the best) on a tuning seed that is none of the paired seeds, scored by its held-out
error, so the symmetric arms get their best chance. Verdict rule "all"
(:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if either did not hold, else
inconclusive if either was, else held. Smoke runs use 2 seeds, which decide nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from trainlab.lab import evidence
from trainlab.lab.arms import TUNING_SEED, diverged, final_loss, log_grid, tune_lr
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import comparison_intervals, draw_curves, pyplot, save_figure
from trainlab.lab.runs import at_size, generator, initialized_mlp, sgd_curve

INITS = ("xavier", "zeros", "constant(0.1)")
ACTIVATION = "tanh"
MIN_EFFECT = 0.10  # held-out accuracy: Xavier ahead by at least 10 points
LR_CENTRE = 0.05  # centre of each arm's first log grid (0.005 ... 0.5)
BATCH = 64
SIZES = {  # smoke, quick, full
    "train_images": (256, 2000, 8000),
    "heldout_images": (128, 1000, 2000),
    "hidden": (16, 64, 128),
    "steps": (20, 200, 800),
    "seeds": (2, 3, 5),  # paired seeds; 2 (smoke) never decide
}


def unit_spread(weight: Tensor) -> float:
    """``max_j |W_j - W_0|`` over the rows (units) of ``weight``, relative to ``max |W|``.

    A constant-initialised layer whose units stayed identical scores 0 (or float rounding);
    0/0 (all weights still zero) counts as 0.
    """
    w = weight.detach()
    scale = float(w.abs().max())
    return float((w - w[:1]).abs().max()) / scale if scale > 0 else 0.0


def _split(cfg: dict, seed: int, size: str) -> tuple[Tensor, Tensor, Tensor, Tensor, str]:
    """A seed's training and held-out images of Fashion-MNIST (flattened, standardized)."""
    n, m = cfg["train_images"], cfg["heldout_images"]
    x, y, data = image_subset("fashion-mnist", n + m, generator(seed, "zero-init", "data"), size)
    x = x.flatten(1)
    return x[:n], y[:n], x[n:], y[n:], data


def train_arm(scheme: str, split, hidden: int, steps: int, lr: float, seed: int):
    """Train one arm on a seed's split: the tanh MLP with two hidden layers, SGD with momentum
    0.9, batches drawn by the seed (the same for every arm). Returns the network, the loss per
    step and the held-out accuracy (chance, 1/10, if the run diverged)."""
    x, y, hx, hy, _ = split
    widths = [x.shape[1], hidden, hidden, 10]
    net = initialized_mlp(widths, ACTIVATION, scheme, generator(seed, "zero-init", "weights"))
    gen = generator(seed, "zero-init", "batches")  # same batches for every init
    losses = sgd_curve(net, x, y, steps=steps, lr=lr, batch=BATCH, gen=gen, nesterov=False)
    if diverged(losses):
        return net, losses, 0.1
    with torch.no_grad():
        net.eval()
        accuracy = float((net(hx).argmax(1) == hy).double().mean())
    return net, losses, accuracy


def _figure(out: Path, curves: dict[str, list[float]]) -> str:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    draw_curves(ax, curves, lw=1)
    ax.set(xlabel="step", ylabel="training loss")
    ax.set_title(f"{ACTIVATION} MLP, each init at its tuned learning rate (first seed)")
    ax.legend(fontsize=8)
    return save_figure(fig, out, "zero_init_loss.png")


@experiment(
    "zero-init",
    claim=(
        "Initializing all weights to zero (or to one constant) makes every unit of a layer "
        "compute and learn the same thing, which cripples learning; small random weights "
        "(Xavier) break the symmetry and the network learns."
    ),
    source="cs231n lecture 'Training Neural Networks I', weight initialization (all-zero pitfall)",
    rule=(
        "A tanh MLP with two hidden layers on a Fashion-MNIST subset, SGD with momentum 0.9, "
        "from Xavier, zeros and constant(0.1); each arm's learning rate tuned on a tuning seed "
        "(log grid of >= 5 rates half a decade apart, extended past an edge holding the best; "
        "score: held-out error), then paired seeds (5 full, 3 quick) sharing images and batch "
        "order. Two comparisons, Xavier - zeros and Xavier - constant(0.1) held-out accuracy: "
        f"paired-t 95% interval above +{MIN_EFFECT} held, below it did not hold, containing it "
        "(or fewer than 3 seeds) inconclusive. Overall: did not hold if either did not hold, "
        "else inconclusive if either was, else held. That symmetric units stay identical is an "
        "identity, tested in the unit tests, not evidence."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    hidden, steps = cfg["hidden"], cfg["steps"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    tuning_seed = seed + TUNING_SEED
    tuning_split = _split(cfg, tuning_seed, size)

    def tuning_score(scheme: str):
        def score(lr: float) -> float:
            _, losses, acc = train_arm(scheme, tuning_split, hidden, steps, lr, tuning_seed)
            return math.inf if diverged(losses) else 1.0 - acc

        return score

    searches = {s: tune_lr(tuning_score(s), log_grid(LR_CENTRE)) for s in INITS}
    lrs = {s: searches[s].best for s in INITS}

    acc: dict[str, list[float]] = {s: [] for s in INITS}
    loss: dict[str, list[float]] = {s: [] for s in INITS}
    spread: dict[str, list[float]] = {}
    curves: dict[str, list[float]] = {}
    data = ""
    for s in seeds:
        split = _split(cfg, s, size)
        data = split[4]
        for scheme in INITS:
            net, losses, a = train_arm(scheme, split, hidden, steps, lrs[scheme], s)
            acc[scheme].append(a)
            loss[scheme].append(final_loss(losses))
            if s == seeds[0]:
                curves[scheme] = losses
                hidden_layers = [m for m in net if isinstance(m, nn.Linear)][:-1]
                spread[scheme] = [unit_spread(m.weight) for m in hidden_layers]

    comparisons = [
        evidence.compare(
            f"Xavier learns better than {arm} init", "heldout_acc", ("xavier", arm),
            acc["xavier"], acc[arm], seeds, MIN_EFFECT, +1,
        )
        for arm in INITS[1:]
    ]  # fmt: skip
    stride = max(1, steps // 100)
    measured = {
        "data": data,
        "train_images": cfg["train_images"],
        "heldout_images": cfg["heldout_images"],
        "widths": [784, hidden, hidden, 10],
        "steps": steps,
        "batch": BATCH,
        "seeds": seeds,
        "tuning_seed": tuning_seed,
        "min_effect": MIN_EFFECT,
        "lr": lrs,
        "lr_search": {s: searches[s].to_dict() for s in INITS},
        "heldout_acc_runs": acc,
        "heldout_acc_mean": {s: math.fsum(v) / len(v) for s, v in acc.items()},
        "final_train_loss_runs": loss,
        "unit_spread_first_seed": spread,
        "curve_stride": stride,
        "loss_curve_first_seed": {s: c[::stride] for s, c in curves.items()},
    }
    figures = [
        _figure(out, curves),
        comparison_intervals(
            out, "comparisons.png", "Xavier against symmetric inits, paired seeds", comparisons
        ),
    ]
    notes = (
        f"MLP {measured['widths']} with {ACTIVATION}, SGD momentum 0.9, batch {BATCH}, {steps} "
        f"steps on {data} ({cfg['train_images']} for training, {cfg['heldout_images']} held out); "
        f"seeds {seeds}, learning rates tuned on seed {tuning_seed}: {lrs}. Biases start at 0. "
        "A diverged run counts as chance (0.1). Final training loss (mean of the last 10% of "
        "steps) and each hidden layer's unit spread (max row difference / max |w|, first seed) "
        "are reported, not evidence."
    )
    if size != "full":
        notes += f" Size '{size}': fewer images, steps and seeds, narrower layers."
    return conclude(comparisons, measured, figures, notes)
