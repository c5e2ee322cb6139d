"""Experiment 12: which regularizers pay off on a small data set?

The lecture's advice for regularization in practice: "batch normalization and data
augmentation almost always a good idea"; "try cutout and mixup especially for small
classification datasets". Every technique is taken from trainlab's recipe fields, so each arm
is exactly what ``trainlab train`` would run: mixup (Zhang et al. 2018), cutout (DeVries &
Taylor 2017), random crop + flip, batch norm (Ioffe & Szegedy 2015), and, reported beside the
claim, an L2 penalty, dropout before the classifier (Srivastava et al. 2014), a DropConnect
classifier (Wan et al. 2013) and fractional max pooling (Graham 2014).

The regime. Techniques against over-fitting can only show on a network that over-fits: the
baseline is a plain CNN with a flatten head (every feature of the last stage feeds the
classifier, as in VGG), no normalization, augmentation or weight decay, trained on 2,000
CIFAR-10 images for long enough to fit them (train - test accuracy far above the 15 points the
precondition asks for at full size).

Evidence. Each claimed technique (mixup, cutout, crop + flip, batch norm) is its own comparison
with the baseline on paired seeds (5 full, 3 quick; within a seed every arm shares the training
subset, initialization and batch order: ``train.seed``), judged by
:func:`trainlab.lab.evidence.compare`: the mean paired test-accuracy difference and its paired-t
95% interval against a minimum effect of :data:`~trainlab.lab.arms.MIN_EFFECT` (0.5 points),
provided the baseline over-fits (train - test accuracy >= :data:`~trainlab.lab.arms.OVERFIT_GAP`,
15 points), else "not reached". Each arm trains at its own learning rate, chosen by
:func:`~trainlab.lab.arms.tune_arm` on a tuning seed (not a paired seed) with 20% of its
training subset held out for validation, on a log grid of at least 5 points extended past an
edge that holds the best (at quick size the tuning runs train for fewer epochs than the paired
runs, to fit the minute). Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`)
over the four claimed comparisons: did not hold if any did not hold, else not reached if any
was not reached, else inconclusive if any was, else held. The other techniques (L2, dropout,
DropConnect, fractional pooling; full size only) are compared the same way on the first 3
paired seeds, with their own tuned rates; their comparisons are reported in
``measured["others"]`` and are not part of the claim or its verdict. Stochastic depth, measured
by earlier versions, needs a ResNet baseline of its own, whose epoch costs 3x the plain CNN's on
this CPU: it is left out to fit the full run into its 15 minutes at one thread. Smoke runs use
2 seeds, which never give "held" or "did not hold".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainlab.data import ImageDataset
from trainlab.lab.arms import (
    LRSearch,
    accuracy_table,
    device_training_overrides,
    fit_arms,
    log_grid,
    overfits,
    paired_comparisons,
    paired_rule,
    training_overrides,
    tune_arm,
    underfit_note,
)
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import dataset, with_test_subset
from trainlab.lab.figures import accuracy_bars, comparison_intervals
from trainlab.lab.runs import at_size, generator, lab_device

LR_CENTRE = 0.01  # the middle of each arm's first learning-rate grid (log_grid: 0.001 to 0.1)
# arm -> its overrides on top of the baseline
VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "mixup": ["regularize.mix=mixup(1.0)"],
    "cutout": ["regularize.mix=cutout(16)"],
    "augmentation": ["augment.train=['pad_crop(4)', 'hflip']"],
    "batch_norm": ["model.norm=batch"],
    "l2": ["regularize.penalty=l2(0.0005)"],
    "dropout": ["model.dropout=dropout(0.5)"],
    "dropconnect": ["model.linear=dropconnect(0.5)"],
    "fractional_pooling": ["model.pool=fractional"],
}
CLAIMED = ("mixup", "cutout", "augmentation", "batch_norm")
OTHERS = (
    "l2",
    "dropout",
    "dropconnect",
    "fractional_pooling",
)  # reported beside the claim, not part of it
# The paper's scale (issue 17 item 7: full CIFAR-10 with a ResNet, for a GPU): He et al. 2016's
# CIFAR ResNet-20 (widths 16, 32, 64; 3 basic blocks per stage), batches of 128, on all 50,000
# training and all 10,000 test images, 30 epochs (a few minutes per run on one GPU).
PAPER_DEPTH = 3  # residual blocks per stage at the paper's scale
PAPER_BATCH = 128
SIZES = {  # smoke, quick, full, paper
    "claimed": (("mixup",), CLAIMED, CLAIMED, CLAIMED),
    "others": (("l2",), (), OTHERS, ()),
    "model": ("cnn", "cnn", "cnn", "resnet"),  # cnn: flatten head; resnet: ResNet-20
    "train_images": (128, 1000, 2000, 50_000),
    "test_images": (128, 500, 2000, 10_000),
    "widths": ("[8, 16]", "[8, 16]", "[16, 32]", "[16, 32, 64]"),
    "epochs": (1, 12, 15, 30),
    "tune_epochs": (1, 6, 15, 30),  # the tuning runs' epochs (fewer at quick: cheaper tuning)
    "seeds": (2, 3, 5, 3),  # paired seeds; 2 (smoke) never decide
    "other_seeds": (2, 3, 3, 3),  # paired seeds of the techniques outside the claim
}
_FULL, _QUICK, _PAPER = (at_size(SIZES, s) for s in ("full", "quick", "paper"))


def base_overrides(cfg: dict[str, Any], seed: int, epochs: int | None = None) -> list[str]:
    """The baseline: a plain CNN of ``cfg["widths"]`` with a flatten head, no normalization
    layers, no augmentation or mixing, no weight decay; SGD with Nesterov momentum and a cosine
    schedule over ``epochs`` (``cfg["epochs"]`` by default) on ``cfg["train_images"]`` CIFAR-10
    images drawn by ``seed``. The learning rate is each arm's own (tuned).

    Where ``cfg["model"]`` is ``"resnet"`` (the paper's scale) the network is a ResNet of
    ``cfg["widths"]`` with :data:`PAPER_DEPTH` blocks per stage, equally plain, trained in
    batches of :data:`PAPER_BATCH` on :func:`~trainlab.lab.runs.lab_device` (CUDA where there
    is one)."""
    epochs = epochs or cfg["epochs"]
    if cfg["model"] == "resnet":
        model = ["model.kind=resnet", f"model.depth={PAPER_DEPTH}"]
        training = device_training_overrides(epochs, seed, lab_device("paper"), PAPER_BATCH)
    else:
        model = ["model.kind=cnn", "model.head=flatten"]
        training = training_overrides(epochs, seed)
    return [
        "data.name=cifar10",
        f"data.subset={cfg['train_images']}",
        *model,
        f"model.widths={cfg['widths']}",
        "model.norm=none",
        "augment.train=[]",
        "optim.weight_decay=0.0",
        "diagnostics.every=0",  # not measured here; the hooks only cost time
        "train.eval_every=0",  # the last epoch is tested, which is all the comparison reads
    ] + training


def tuned_runs(
    cfg: dict[str, Any], arms: Sequence[str], seeds: Sequence[int], data: ImageDataset
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, LRSearch]]:
    """Each arm's learning rate by :func:`~trainlab.lab.arms.tune_arm` on the tuning seed
    (``seeds[0]`` + TUNING_SEED, 20% of its subset held out, ``cfg["tune_epochs"]`` epochs),
    then the arm trained at that rate on every paired seed for ``cfg["epochs"]`` epochs."""
    grid = log_grid(LR_CENTRE)
    searches = {
        arm: tune_arm(
            lambda s: base_overrides(cfg, s, cfg["tune_epochs"]), VARIANTS[arm], seeds[0], data,
            grid,
        )
        for arm in arms
    }  # fmt: skip
    tuned = {arm: VARIANTS[arm] + [f"optim.lr={searches[arm].best}"] for arm in arms}
    return fit_arms(lambda s: base_overrides(cfg, s), tuned, seeds, data), searches


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
        f"A {_FULL['train_images']}-image CIFAR-10 subset, a plain CNN {_FULL['widths']} with a "
        "flatten head and without batch norm, augmentation or weight decay as the baseline, "
        f"{_FULL['epochs']} epochs (quick: {_QUICK['train_images']} images, CNN "
        f"{_QUICK['widths']}, {_QUICK['epochs']} epochs); each technique added alone; paired "
        f"seeds ({_FULL['seeds']} full, {_QUICK['seeds']} quick); each arm's learning rate "
        "tuned on a tuning seed's held-out 20% (log grid of >= 5 points around "
        f"{LR_CENTRE}, extended past an edge that holds the best; quick tunes with "
        f"{_QUICK['tune_epochs']} epochs). One comparison each for mixup, cutout, crop+flip "
        f"augmentation and batch norm against the baseline: {paired_rule('the baseline')}. L2, "
        "dropout, DropConnect and fractional pooling (full size only, "
        f"{_FULL['other_seeds']} paired seeds) are compared the same way and reported, not part "
        "of the claim. Paper scale (--scale paper, for a GPU): the four claimed comparisons "
        f"on all {_PAPER['train_images']:,} CIFAR-10 training images and {_PAPER['test_images']:,} "
        f"test images with a ResNet {_PAPER['widths']} ({PAPER_DEPTH} blocks per stage, no "
        f"batch norm in the baseline), {_PAPER['epochs']} epochs, {_PAPER['seeds']} paired "
        "seeds (each arm's rate tuned as at full size, with tuning runs as long)."
    ),
    scales=("quick", "full", "paper"),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    n_test = cfg["test_images"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    data = with_test_subset(dataset("cifar10"), n_test, generator(seed, "exp12", "test"))

    claimed, others = cfg["claimed"], cfg["others"]
    runs, searches = tuned_runs(cfg, ("baseline", *claimed), seeds, data)
    table = accuracy_table(runs, "baseline")
    reached = {"baseline": overfits(runs, "baseline")}
    comparisons = paired_comparisons(
        runs, {f"{name} beats the baseline": (name, "baseline") for name in claimed}, seeds, reached
    )
    measured: dict[str, Any] = {
        "train_images": cfg["train_images"],
        "test_images": n_test,
        "widths": cfg["widths"],
        "epochs": cfg["epochs"],
        "tune_epochs": cfg["tune_epochs"],
        "seeds": seeds,
        "baseline_overfits": reached["baseline"],
        "variants": {name: VARIANTS[name] for name in runs},
        "lr": {arm: search.best for arm, search in searches.items()},
        "lr_search": {arm: search.to_dict() for arm, search in searches.items()},
        **table,
    }
    title = "Small CIFAR-10 subset: each technique alone"
    figures = [accuracy_bars(out, "small_data.png", title, runs, lambda arm: "baseline")]
    figures.append(
        comparison_intervals(
            out, "comparisons.png", "Each claimed technique against the baseline, paired seeds",
            comparisons,
        )
    )  # fmt: skip

    other_seeds = seeds[: cfg["other_seeds"]]
    if others:
        other_runs, other_searches = tuned_runs(cfg, others, other_seeds, data)
        other_runs = {"baseline": runs["baseline"][: len(other_seeds)], **other_runs}
        other_comparisons = paired_comparisons(
            other_runs,
            {f"{name} beats the baseline": (name, "baseline") for name in others},
            other_seeds,
            reached,
        )
        measured["others"] = {
            "seeds": other_seeds,
            "lr": {arm: search.best for arm, search in other_searches.items()},
            "lr_search": {arm: search.to_dict() for arm, search in other_searches.items()},
            "comparisons": [c.to_dict() for c in other_comparisons],
            **accuracy_table(other_runs, "baseline"),
        }
        figures.append(
            comparison_intervals(
                out, "others.png", "Techniques outside the claim (reported, not evidence)",
                other_comparisons,
            )
        )  # fmt: skip

    notes = (
        f"Baseline overrides: {' '.join(base_overrides(cfg, seed))}; each arm adds its own "
        f"overrides and its tuned optim.lr. Accuracy on {n_test} random CIFAR-10 test images "
        f"(the same for every run); paired seeds {seeds} (the seed also draws the training "
        f"subset); learning rates tuned on seed {seeds[0]} + 10000 with "
        f"{cfg['tune_epochs']}-epoch runs. Train accuracy is the running accuracy of the last "
        "epoch on the batches as trained (augmented or mixed for those arms)."
    )
    notes += underfit_note(table, "baseline", "baseline")
    if others:
        notes += (
            f" {', '.join(others)} were compared with the baseline on seeds {other_seeds} only "
            "(measured['others']): reported, not part of the claim or its verdict."
        )
    if size == "quick":
        notes += (
            f" Quick size: the claimed techniques only, {cfg['train_images']} training images, "
            f"CNN {cfg['widths']}, {cfg['epochs']} epochs, and learning rates tuned with "
            f"{cfg['tune_epochs']}-epoch runs (cheaper than the full size's tuning at the "
            "paired runs' length)."
        )
        if not reached["baseline"]:
            notes += " The over-fitting regime was not reached at this size."
    elif size == "paper":
        notes += (
            f" Paper scale: a ResNet {cfg['widths']} with {PAPER_DEPTH} basic blocks per stage "
            f"(model.kind=resnet) on {cfg['train_images']:,} CIFAR-10 training images (all of "
            f"them) and {n_test:,} test images, batches of {PAPER_BATCH}, {cfg['epochs']} "
            f"epochs (tuning runs {cfg['tune_epochs']}), {len(seeds)} paired seeds, trained on "
            f"{lab_device(size)}; the claimed techniques only (the others are measured at full "
            "size)."
        )
        if not reached["baseline"]:
            notes += (
                " The over-fitting regime was not reached at this size: a ResNet on all of "
                "CIFAR-10 need not over-fit by the 15 points the precondition asks."
            )
    elif size == "smoke":
        names = ", ".join(("baseline", *claimed, *others))
        notes += f" Smoke size: only {names}; 2 seeds decide nothing."
    return conclude(comparisons, measured, figures, notes)
