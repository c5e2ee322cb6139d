"""Experiment 6: symmetric initial weights cripple learning.

If every unit of a layer starts with the same incoming and outgoing weights, each computes the
same output and receives the same gradient, so the units stay identical for ever: the layer is
one unit wide (cs231n, "Pitfall: all zero initialization"). That they stay identical is an
identity, unit-tested (tests/test_lab_init_stats.py), not evidence. With all-zero weights and
tanh it is worse: every hidden output is ``tanh(0) = 0``, so only the output bias learns.

The evidence is the consequence the lecture claims: such a network learns far worse. A seed
draws the training and held-out images, the batch order (shared by every arm) and Xavier's
weights; each arm trains at its own tuned rate, so the symmetric arms get their best chance.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import plot_curves
from trainlab.lab.loop import sgd, train
from trainlab.lab.nets import accuracy, generator, initialized_mlp
from trainlab.lab.rules import Rule, Spec
from trainlab.lab.tuning import log_grid, recheck, tune_lr

INITS = ("xavier", "zeros", "constant(0.1)")
ACTIVATION = "tanh"
MIN_EFFECT = 0.10  # held-out accuracy: Xavier ahead by at least 10 points ("crippled")
BATCH = 64
SIZES = {  # smoke, quick, full
    "train_images": (256, 2000, 8000),
    "heldout_images": (128, 1000, 2000),
    "hidden": (16, 64, 128),
    "steps": (20, 200, 800),
    "seeds": (3, 3, 6),
}
PRIMARY = Spec(
    "Xavier learns better than zero init",
    ("xavier", "zeros"),
    "held-out accuracy",
    "fraction",
    MIN_EFFECT,
    +1,
)
RULE = Rule(
    design="A tanh MLP with two hidden layers on a Fashion-MNIST subset, SGD momentum 0.9, "
    "batch 64, from Xavier, zeros and constant(0.1); a seed draws the images, Xavier's weights "
    "and the batch order shared by every arm; held-out accuracy after the steps.",
    primary=PRIMARY,
    secondaries=(f"Xavier against constant(0.1) (held-out accuracy, minimum {MIN_EFFECT})",),
    tuning="each arm's on the tuning seeds, a log grid of 3 rates half a decade apart around "
    "0.05 extended past an edge holding the best; score: held-out error (inf if diverged). "
    "Re-checked with each primary arm at its neighbouring rates.",
)


def unit_spread(weight: torch.Tensor) -> float:
    """``max_j |W_j - W_0|`` over the rows (units) of ``weight``, relative to ``max |W|``: 0 for
    a layer whose units stayed identical (0/0, all weights still zero, counts as 0)."""
    w = weight.detach()
    scale = float(w.abs().max())
    return float((w - w[:1]).abs().max()) / scale if scale > 0 else 0.0


def _split(cfg: dict, seed: int, size: str):
    """A seed's training and held-out images of Fashion-MNIST (flattened, standardized)."""
    n, m = cfg["train_images"], cfg["heldout_images"]
    x, y, data = image_subset("fashion-mnist", n + m, generator(seed, "zero-init", "data"), size)
    x = x.flatten(1)
    return x[:n], y[:n], x[n:], y[n:], data


def train_arm(scheme: str, split, cfg: dict, lr: float, seed: int) -> dict:
    """One arm on a seed's split: the tanh MLP trained through the engine's step; its held-out
    accuracy (or "diverged"), its losses and each hidden layer's unit spread."""
    x, y, hx, hy, _ = split
    widths = [x.shape[1], cfg["hidden"], cfg["hidden"], 10]
    net = initialized_mlp(widths, ACTIVATION, scheme, generator(seed, "zero-init", "weights"))
    done = train(
        net,
        sgd(net, lr, nesterov=False),
        x,
        y,
        batch=BATCH,
        steps=cfg["steps"],
        gen=generator(seed, "zero-init", "batches"),
    )
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    return {
        "accuracy": "diverged" if done.diverged else accuracy(net, hx, hy),
        "losses": done.losses,
        "spread": [unit_spread(m.weight) for m in hidden],
    }


@experiment(
    "zero-init",
    claim=(
        "Initializing all weights to zero (or to one constant) makes every unit of a layer "
        "compute and learn the same thing, which cripples learning; small random weights "
        "(Xavier) break the symmetry and the network learns."
    ),
    source="cs231n lecture 'Training Neural Networks I', weight initialization (all-zero pitfall)",
    sizes=SIZES,
    rule=RULE,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    splits = {s: _split(cfg, s, ctx.size) for s in ctx.seeds + ctx.tuning_seeds}

    @functools.cache
    def measure(scheme: str, lr: float, seed: int) -> dict:
        return train_arm(scheme, splits[seed], cfg, lr, seed)

    def score(scheme: str):
        def error(lr: float, seed: int) -> float:
            a = measure(scheme, lr, seed)["accuracy"]
            return float("inf") if isinstance(a, str) else 1.0 - a

        return error

    searches = {s: tune_lr(score(s), log_grid(0.05, 3), ctx.tuning_seeds) for s in INITS}
    lrs = {s: searches[s].best for s in INITS}

    def acc(scheme: str, lr: float) -> list:
        return [measure(scheme, lr, s)["accuracy"] for s in ctx.seeds]

    primary = recheck(
        lambda r: PRIMARY.of(lambda a: acc(a, r[a]), ctx.seeds), lrs, searches, PRIMARY.arms
    )
    other = Spec(
        "Xavier learns better than constant(0.1) init",
        ("xavier", "constant(0.1)"),
        PRIMARY.metric,
        "fraction",
        MIN_EFFECT,
        +1,
    )
    secondaries = [other.of(lambda a: acc(a, lrs[a]), ctx.seeds)]
    first = {s: measure(s, lrs[s], ctx.seeds[0]) for s in INITS}
    measured = {
        "data": splits[ctx.seeds[0]][4],
        "widths": [784, cfg["hidden"], cfg["hidden"], 10],
        "heldout_acc_runs": {s: acc(s, lrs[s]) for s in INITS},
        "unit_spread_first_seed": {s: r["spread"] for s, r in first.items()},
    }
    figure = plot_curves(
        ctx.out,
        "zero_init_loss.png",
        {s: r["losses"] for s, r in first.items()},
        xlabel="step",
        ylabel="training loss",
        title=f"{ACTIVATION} MLP, each init at its tuned rate (first seed)",
    )
    notes = (
        f"MLP {measured['widths']} with {ACTIVATION}, SGD momentum 0.9, batch {BATCH}, "
        f"{cfg['steps']} steps; biases start at 0; tuned rates {lrs}. Unit spread (max row "
        "difference / max |w| per hidden layer, first seed) is reported, not evidence."
    )
    return Outcome(primary, measured, [figure], notes, secondaries, searches)
