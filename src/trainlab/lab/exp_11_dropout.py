"""Experiment 11: dropout on large fully-connected layers improves test accuracy.

Dropout (Srivastava et al. 2014) keeps each unit with probability ``1 - p``. *Inverted* dropout
trains with ``y = x * m / (1 - p)`` and leaves test time alone; *classic* dropout trains with
``y = x * m`` and scales by ``1 - p`` at test. Both make the test output the expectation of the
training output for whatever is linear in the mask (an identity, unit-tested in
tests/test_lab_regularize.py, not evidence).

The claim is about networks that over-fit: an MLP with two large hidden layers on a small
Fashion-MNIST subset at the CPU sizes, and at paper scale two hidden layers of 2048 on all of
CIFAR-10 (Srivastava et al.'s CIFAR-10 nets put FC layers of 2048 after convolutions; trainlab's
recipes have no FC head on a conv net, so the paper arm is the fully-connected part alone). Each
arm trains at its own rate; the budget grows until the dropout arm's validation loss stops
improving (dropout trains slower, and a budget cut short would judge it before it fits).
"""

from __future__ import annotations

from torch import nn

from trainlab.lab import paper
from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.figures import accuracy_bars
from trainlab.lab.recipes import (
    MIN_EFFECT,
    OVERFIT_GAP,
    STILL_IMPROVING,
    paired_arms,
    training_overrides,
)
from trainlab.lab.rules import Rule, Spec
from trainlab.lab.sizes import PAPER_TEST, PAPER_TRAIN

P = 0.5
ARMS = {"none": "none", "dropout": f"dropout({P})", "classic": f"dropout({P}, mode='classic')"}
SIZES = {  # smoke, quick, full, paper
    "arms": (("none", "dropout"), ("none", "dropout"), tuple(ARMS), tuple(ARMS)),
    "data": ("fashion-mnist", "fashion-mnist", "fashion-mnist", "cifar10"),
    "widths": ("[32, 32]", "[256, 256]", "[1024, 1024]", "[2048, 2048]"),
    "train_images": (256, 500, 1000, PAPER_TRAIN),
    "test_images": (256, 1000, 5000, PAPER_TEST),
    "budgets": ((1, 2), (10, 20), (30, 60), (30, 60, 90)),  # epochs: grown until the regime
    "limit_seconds": (60, 45, 1050, 10**9),
    "seeds": (3, 3, 6, 6),
}
PRIMARY = Spec(
    "inverted dropout improves test accuracy",
    ("dropout", "none"),
    "test accuracy",
    "fraction",
    MIN_EFFECT,
    +1,
)
RULE = Rule(
    design="A ReLU MLP (two hidden layers; [1024, 1024] on 1,000 Fashion-MNIST images at full "
    "size, [2048, 2048] on all of CIFAR-10 at paper scale), no weight decay, augmentation or "
    f"normalization layers, with inverted dropout(p = {P}) after each hidden layer against "
    "none; a seed draws the subset, the weights and the batch order in every arm.",
    primary=PRIMARY,
    preconditions=(
        f"the MLP without dropout over-fits (train - test accuracy >= {OVERFIT_GAP})",
        "the dropout arm reached its regime: its validation loss (mean over the "
        f"tuning seeds) fell by at most {STILL_IMPROVING:.0%} over the last 20% of the budget",
    ),
    secondaries=("classic dropout against none (full and paper sizes)",),
    tuning="each arm's on the tuning seeds with 20% of their subset held out, a 3-point log "
    "grid half a decade apart around 0.03 extended past an edge holding the best; score: "
    "final validation error. The budget starts at the first of its sizes' epochs and grows, "
    "the rates kept, while the dropout arm still improves and the time limit allows. "
    "Re-checked with each primary arm at its neighbouring rates.",
)


def base_overrides(cfg: dict, seed: int, epochs: int, device="cpu", batch: int = 64) -> list[str]:
    return [
        f"data.name={cfg['data']}",
        f"data.subset={cfg['train_images']}",
        "model.kind=mlp",
        f"model.widths={cfg['widths']}",
        "model.norm=none",
        "augment.train=[]",
        "optim.weight_decay=0.0",
    ] + training_overrides(epochs, seed, device, batch)


def plan(cfg: dict) -> list[paper.PlannedRun]:
    from trainlab.lab.nets import mlp

    widths = [3 * 32 * 32, *(int(w) for w in cfg["widths"].strip("[]").split(",")), 10]
    make = lambda: nn.Sequential(nn.Flatten(), mlp(widths, "relu"))  # noqa: E731
    return paper.recipe_plan(cfg, make, len(cfg["arms"]), 2)


@experiment(
    "dropout",
    claim=(
        "Dropout on large fully-connected layers improves the test accuracy of a network that "
        "over-fits its training data."
    ),
    source=(
        "Srivastava et al. 2014, 'Dropout'; CS231n lecture 'Training Neural Networks' "
        "(regularization in practice)"
    ),
    sizes=SIZES,
    rule=RULE,
    plan=plan,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    arms = paired_arms(
        ctx,
        cfg["data"],
        base_overrides,
        {a: [f"model.dropout={ARMS[a]}"] for a in cfg["arms"]},
        ["dropout"],
        0.03,
        2,
    )
    primary = arms.primary(PRIMARY.name, "dropout", "none")
    secondaries = []
    if "classic" in cfg["arms"]:
        secondaries.append(
            arms.compare("classic dropout improves test accuracy", "classic", "none")
        )
    measured = arms.table()
    figure = accuracy_bars(
        ctx.out,
        "accuracy.png",
        f"MLP {cfg['widths']} on {cfg['data']}",
        measured["test_acc_runs"],
        "none",
    )
    notes = (
        f"MLP {cfg['widths']} on {cfg['train_images']} {cfg['data']} training images (drawn by "
        f"each seed), {arms.epochs} epochs (budget history in measured), tested on "
        f"{cfg['test_images']} random test images; trained on {arms.device}. Train accuracy is the "
        "last epoch's running accuracy with the masks on."
    )
    return Outcome(primary, measured, [figure], notes, secondaries, arms.searches)
