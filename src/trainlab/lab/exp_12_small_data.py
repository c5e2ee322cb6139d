"""Experiment 12: which regularizers pay off on a small data set?

The lecture's advice for regularization in practice: "batch normalization and data
augmentation almost always a good idea"; "try cutout and mixup especially for small
classification datasets". Every technique is taken from trainlab's recipe fields, so each arm
is exactly what ``trainlab train`` would run: L2 penalty, dropout before the classifier
(Srivastava et al. 2014), DropConnect classifier (Wan et al. 2013), fractional max pooling
(Graham 2014), mixup (Zhang et al. 2018), cutout (DeVries & Taylor 2017), random crop + flip,
batch norm (Ioffe & Szegedy 2015), and stochastic depth (Huang et al. 2016), which needs
residual blocks and so has a ResNet baseline of its own.

Evidence. Each claimed technique (mixup, cutout, crop + flip, batch norm) is its own comparison
with the baseline on paired seeds (within a seed every arm shares the training subset,
initialization and batch order: ``train.seed``), judged by
:func:`trainlab.lab.evidence.compare`: the mean paired test-accuracy difference and its paired-t
95% interval against a minimum effect of :data:`~trainlab.lab.arms.MIN_EFFECT` (0.5 points),
provided the baseline over-fits (train - test accuracy >= :data:`~trainlab.lab.arms.OVERFIT_GAP`,
15 points), else "not reached". Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`):
did not hold if any did not hold, else not reached if any was not reached, else inconclusive if
any was, else held. Smoke runs use 2 seeds, which never give "held" or "did not hold".
"""

from __future__ import annotations

from pathlib import Path

from trainlab.lab.arms import (
    accuracy_table,
    cnn_overrides,
    fit_arms,
    overfits,
    paired_comparisons,
    paired_rule,
    underfit_note,
)
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import dataset, with_test_subset
from trainlab.lab.figures import accuracy_bars, comparison_intervals
from trainlab.lab.runs import at_size, generator

# name -> (baseline it is compared with, overrides on top of that baseline)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("baseline", []),
    "l2": ("baseline", ["regularize.penalty=l2(0.0005)"]),
    "dropout": ("baseline", ["model.dropout=dropout(0.5)"]),
    "dropconnect": ("baseline", ["model.linear=dropconnect(0.5)"]),
    "fractional_pooling": ("baseline", ["model.pool=fractional"]),
    "mixup": ("baseline", ["regularize.mix=mixup(1.0)"]),
    "cutout": ("baseline", ["regularize.mix=cutout(16)"]),
    "augmentation": ("baseline", ["augment.train=['pad_crop(4)', 'hflip']"]),
    "batch_norm": ("baseline", ["model.norm=batch"]),
    "resnet_baseline": ("resnet_baseline", ["model.kind=resnet"]),
    "stochastic_depth": ("resnet_baseline", ["model.kind=resnet", "model.survival_prob=0.8"]),
}
CLAIMED = ("mixup", "cutout", "augmentation", "batch_norm")
SMOKE_VARIANTS = ("baseline", "mixup", "stochastic_depth", "resnet_baseline")
QUICK_VARIANTS = ("baseline", *CLAIMED)  # the claim's arms only, on 3 seeds within a minute
SIZES = {  # smoke, quick, full
    "variants": (SMOKE_VARIANTS, QUICK_VARIANTS, tuple(VARIANTS)),
    "train_images": (256, 1000, 5000),
    "test_images": (256, 500, 2000),
    "widths": ("[8, 16]", "[8, 16, 32]", "[16, 32, 64]"),
    "epochs": (1, 3, 10),
    "seeds": (2, 3, 5),  # paired seeds; 2 (smoke) never decide
}


def base_overrides(cfg: dict, seed: int) -> list[str]:
    """The baseline: a small plain CNN, no normalization layers, no augmentation, no weight
    decay; SGD with Nesterov momentum and a cosine schedule."""
    plain = ("model.norm=none", "augment.train=[]", "optim.weight_decay=0.0", "optim.lr=0.02")
    return cnn_overrides(cfg, seed, *plain)


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
    rule=(
        "A 5,000-image CIFAR-10 subset, a small CNN without batch norm, augmentation or weight "
        "decay as the baseline; each technique added alone; paired seeds (5 full, 3 quick). One "
        "comparison each for mixup, cutout, crop+flip augmentation and batch norm against the "
        f"baseline: {paired_rule('the baseline')}. The other techniques (L2, dropout, "
        "DropConnect, fractional pooling, stochastic depth against its ResNet baseline; full "
        "size only) are measured and reported but not part of the claim."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    names, n_test = cfg["variants"], cfg["test_images"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    data = with_test_subset(dataset("cifar10"), n_test, generator(seed, "exp12", "test"))

    runs = fit_arms(
        lambda s: base_overrides(cfg, s), {n: VARIANTS[n][1] for n in names}, seeds, data
    )
    table = accuracy_table(runs, "baseline", lambda arm: VARIANTS[arm][0])
    reached = {b: overfits(runs, b) for b in ("baseline", "resnet_baseline") if b in runs}
    comparisons = paired_comparisons(
        runs,
        {f"{name} beats the baseline": (name, "baseline") for name in CLAIMED if name in runs},
        seeds,
        reached,
    )
    checks: dict[str, bool] = {}  # the comparisons decide
    measured = {
        "train_images": cfg["train_images"],
        "test_images": n_test,
        "seeds": seeds,
        "variants": {name: VARIANTS[name][1] for name in names},
        **table,
    }
    title = "Small CIFAR-10 subset: each technique alone"
    figures = [accuracy_bars(out, "small_data.png", title, runs, lambda arm: VARIANTS[arm][0])]
    notes = (
        f"Baseline overrides: {' '.join(base_overrides(cfg, seed))}. Accuracy on {n_test} random "
        f"CIFAR-10 test images (the same for every run); seeds {seeds} (the seed also draws the "
        "training subset). Stochastic depth (survival 0.8 at the last block) is compared with a "
        "ResNet of the same widths without it."
    )
    notes += underfit_note(table, "baseline", "baseline")
    if size == "quick":
        notes += (
            " Quick size: the claimed techniques only, 1,000 training images, 3 epochs, narrow "
            "widths: too short to over-fit, so the comparisons are expected to be not reached."
        )
    elif size == "smoke":
        notes += f" Smoke size: only {', '.join(names)}; 2 seeds decide nothing."
    figures.append(
        comparison_intervals(
            out, "comparisons.png", "Each technique against its baseline, paired seeds", comparisons
        )
    )
    return conclude(checks, measured, figures, notes, comparisons)
