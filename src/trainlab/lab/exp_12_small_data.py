"""Experiment 12: which regularizers pay off on a small data set?

The lecture's advice for regularization in practice: "batch normalization and data
augmentation almost always a good idea"; "try cutout and mixup especially for small
classification datasets". Every technique is taken from trainlab's recipe fields, so each arm
is exactly what ``trainlab train`` would run: mixup (Zhang et al. 2018), cutout (DeVries &
Taylor 2017), random crop + flip, batch norm (Ioffe & Szegedy 2015).

The regime: techniques against over-fitting only show on a network that over-fits, and the
regularizers train slower, so a budget cut short judges them before they fit (15 epochs did:
the earlier verdict here rested on that). The baseline is a plain CNN with a flatten head, no
normalization, augmentation or weight decay, on a small CIFAR-10 subset; the budget grows until
the treated arms' validation loss stops improving or the time limit is reached. The primary is
the small-data advice itself: the mean of mixup's and cutout's test accuracy against the
baseline's; each technique alone is secondary.
"""

from __future__ import annotations

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
from trainlab.lab.sizes import (
    PAPER_DEPTH,
    PAPER_TEST,
    PAPER_TRAIN,
    PAPER_WIDTHS,
)

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "mixup": ["regularize.mix=mixup(1.0)"],
    "cutout": ["regularize.mix=cutout(16)"],
    "augmentation": ["augment.train=['pad_crop(4)', 'hflip']"],
    "batch_norm": ["model.norm=batch"],
}
SMALL_DATA = ("mixup", "cutout")  # the primary: "especially for small classification datasets"
SIZES = {  # smoke, quick, full, paper
    "model": ("cnn", "cnn", "cnn", "resnet"),  # cnn: flatten head; resnet: ResNet-20
    "train_images": (128, 500, 1000, PAPER_TRAIN),
    "test_images": (128, 500, 2000, PAPER_TEST),
    "widths": ("[8, 16]", "[8, 16]", "[8, 16]", PAPER_WIDTHS),
    "arms": (
        ("baseline", *SMALL_DATA),
        ("baseline", *SMALL_DATA),
        tuple(VARIANTS),
        tuple(VARIANTS),
    ),
    "budgets": ((1, 2), (6, 12), (20, 40, 60), (30, 60, 90)),  # epochs, grown to the regime
    "limit_seconds": (60, 45, 1050, 10**9),
    "seeds": (3, 3, 6, 6),
}
PRIMARY = Spec(
    "mixup and cutout (their mean) beat the baseline on a small data set",
    ("mean(mixup, cutout)", "baseline"),
    "test accuracy",
    "fraction",
    MIN_EFFECT,
    +1,
)
RULE = Rule(
    design="A CIFAR-10 subset drawn by the seed (1,000 images at full size), a plain CNN with a "
    "flatten head and no batch norm, augmentation or weight decay as the baseline, SGD Nesterov "
    "with a cosine schedule; each technique added alone; per seed the primary's treatment value "
    "is the mean of mixup's and cutout's test accuracy. Paper scale: all of CIFAR-10 with a "
    "plain ResNet-20.",
    primary=PRIMARY,
    preconditions=(
        f"the baseline over-fits (train - test accuracy >= {OVERFIT_GAP})",
        "mixup and cutout reached their regime: validation loss (mean over the "
        f"tuning seeds) falling by at most {STILL_IMPROVING:.0%} over the last 20% of the budget",
    ),
    secondaries=(
        "mixup, cutout, crop + flip augmentation and batch norm, each alone against "
        "the baseline (a technique that did not reach its regime: not reached)",
    ),
    tuning="each arm's on the tuning seeds with 20% of their subset held out, a 3-point log "
    "grid half a decade apart around 0.01 extended past an edge holding the best; score: final "
    "validation error. The budget starts at the first of its sizes' epochs and grows, the rates "
    "kept, while mixup or cutout still improves and the time limit allows. Re-checked with "
    "mixup, cutout and the baseline each at its neighbouring rates.",
)


def base_overrides(cfg: dict, seed: int, epochs: int, device="cpu", batch: int = 64) -> list[str]:
    """The baseline: a plain CNN with a flatten head (or, at paper scale, a plain ResNet-20), no
    normalization layers, augmentation, mixing or weight decay, cosine schedule."""
    if cfg["model"] == "resnet":
        model = ["model.kind=resnet", f"model.depth={PAPER_DEPTH}"]
    else:
        model = ["model.kind=cnn", "model.head=flatten"]
    return [
        "data.name=cifar10",
        f"data.subset={cfg['train_images']}",
        *model,
        f"model.widths={cfg['widths']}",
        "model.norm=none",
        "augment.train=[]",
        "optim.weight_decay=0.0",
    ] + training_overrides(epochs, seed, device, batch)


def plan(cfg: dict) -> list[paper.PlannedRun]:
    return paper.recipe_plan(cfg, paper.resnet20("none"), len(cfg["arms"]), 3)


@experiment(
    "small-data",
    claim=(
        "On a small classification data set, cutout and mixup help, and batch normalization and "
        "data augmentation are (almost always) a good idea."
    ),
    source=(
        "CS231n lecture 'Training Neural Networks' (regularization in practice); DeVries & "
        "Taylor 2017 (cutout); Zhang et al. 2018 (mixup); Ioffe & Szegedy 2015 (batch norm)"
    ),
    sizes=SIZES,
    rule=RULE,
    plan=plan,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    variants = {a: VARIANTS[a] for a in ctx.cfg["arms"]}
    arms = paired_arms(ctx, "cifar10", base_overrides, variants, SMALL_DATA, 0.01, 3)
    primary = arms.primary(PRIMARY.name, SMALL_DATA, "baseline")
    secondaries = [
        arms.compare(f"{a} beats the baseline", a, "baseline") for a in variants if a != "baseline"
    ]
    measured = {
        "variants": VARIANTS,
        **arms.table(),
    }
    figure = accuracy_bars(
        ctx.out,
        "small_data.png",
        "Small CIFAR-10 subset: each technique alone",
        measured["test_acc_runs"],
        "baseline",
    )
    notes = (
        f"Baseline overrides: {' '.join(base_overrides(cfg, ctx.seed, arms.epochs, arms.device))}; "
        f"each arm adds its own and its tuned optim.lr. {arms.epochs} epochs (budget history in "
        f"measured); accuracy on {cfg['test_images']} random CIFAR-10 test images, the same for "
        "every run. Train accuracy is the running accuracy of the last epoch on the batches as "
        "trained (augmented or mixed for those arms). L2, dropout, DropConnect and fractional "
        "pooling, measured by earlier versions, are left out to fit the time limit."
    )
    return Outcome(primary, measured, [figure], notes, secondaries, arms.searches)
