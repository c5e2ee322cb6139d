"""Experiment 13: what each data augmentation looks like, and what it adds.

Augmentation trains on label-preserving transformations of the images, so the model sees more
variation than the data set holds: horizontal flips, random crops and scales (Krizhevsky et al.
2012; Simonyan & Zisserman 2014; He et al. 2016), Inception-style random resized crops
(Szegedy et al. 2015), colour jitter and PCA lighting (Krizhevsky et al. 2012), random
greyscale. Every image in a batch draws its own parameters (`trainlab.augment`).

Evidence. Each augmentation is its own comparison with no augmentation on paired seeds (within a
seed every arm shares the training subset, initialization and batch order: ``train.seed``),
judged by :func:`trainlab.lab.evidence.compare`: the mean paired test-accuracy difference and its
paired-t 95% interval against a minimum effect of :data:`~trainlab.lab.arms.MIN_EFFECT` (0.5
points), provided the run without augmentation over-fits (train - test accuracy >=
:data:`~trainlab.lab.arms.OVERFIT_GAP`, 15 points), else "not reached". Verdict rule "all"
(:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if any did not hold, else not
reached if any was not reached, else inconclusive if any was, else held. Smoke runs use 2 seeds,
which never give "held" or "did not hold".
"""

from __future__ import annotations

from pathlib import Path

import torch

from trainlab.augment import make_pipeline, plot_augment
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
from trainlab.lab.data import dataset, subset, with_test_subset
from trainlab.lab.figures import accuracy_bars, comparison_intervals, pyplot, save_figure
from trainlab.lab.runs import at_size, generator
from trainlab.preprocess import compute_stats

# name -> the recipe's augment.train list
AUGMENTS: dict[str, list[str]] = {
    "none": [],
    "hflip": ["hflip"],
    "pad_crop": ["pad_crop(4)"],
    "pad_crop+hflip": ["pad_crop(4)", "hflip"],
    "random_resized_crop": ["random_resized_crop(32, scale=(0.35, 1.0))"],
    "scale_aug": ["scale_aug(32, 40, 32)"],
    "color_jitter": ["jitter(0.4, 0.4, 0.4)"],
    "pca_lighting": ["pca_lighting(0.1)"],
    "grayscale": ["grayscale(0.2)"],
}
VERSIONS = 6
QUICK_AUGMENTS = ("none", "hflip", "pad_crop", "pad_crop+hflip", "color_jitter")
SIZES = {  # smoke, quick, full
    "augments": (("none", "pad_crop+hflip", "pca_lighting"), QUICK_AUGMENTS, tuple(AUGMENTS)),
    "train_images": (256, 1000, 5000),
    "test_images": (256, 1000, 2000),
    "widths": ("[8, 16]", "[8, 16, 32]", "[16, 32, 64]"),
    "epochs": (1, 3, 10),
    "seeds": (2, 3, 5),  # paired seeds; 2 (smoke) never decide
}


def _grid(out: Path, images: torch.Tensor, stats, seed: int) -> str:
    """One row per augmentation: the original image, then ``VERSIONS`` augmented versions."""
    names = [n for n in AUGMENTS if n != "none"]
    rows = len(names) * len(images)
    fig, axes = pyplot().subplots(
        rows, VERSIONS + 1, figsize=(1.2 * (VERSIONS + 1), 1.2 * rows), squeeze=False
    )
    row = 0
    for name in names:
        pipeline = make_pipeline(AUGMENTS[name], stats=stats)
        gen = generator(seed, "exp13", "grid", name)
        for image in images:
            versions = pipeline(image[None].repeat(VERSIONS, 1, 1, 1), gen)
            shown = [image, *versions]
            for col, img in enumerate(shown):
                ax = axes[row][col]
                ax.imshow(img.permute(1, 2, 0).float().div(255).clamp(0, 1).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
            axes[row][0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            row += 1
    axes[0][0].set_title("original", fontsize=8)
    return save_figure(fig, out, "augmentation_grid.png")


@experiment(
    "augmentation",
    claim=(
        "Data augmentation (flips, random crops and scales, colour changes) improves the test "
        "accuracy of a CNN trained on limited data."
    ),
    source=(
        "CS231n lecture 'Training Neural Networks' (data augmentation); Krizhevsky et al. 2012; "
        "Simonyan & Zisserman 2014; Szegedy et al. 2015"
    ),
    rule=(
        "A 5,000-image CIFAR-10 subset, a small CNN with batch norm and weight decay, the same "
        "training for every run; each augmentation alone against none on paired seeds (5 full, 3 "
        "quick). One comparison per augmentation: "
        f"{paired_rule('the run without augmentation')}."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    names, n_test = cfg["augments"], cfg["test_images"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    full_data = dataset("cifar10")
    data = with_test_subset(full_data, n_test, generator(seed, "exp13", "test"))

    shown, _ = subset(
        full_data.test_images, full_data.test_labels, 6, generator(seed, "exp13", "show")
    )
    stats = compute_stats(full_data.train_images[:5000])
    figures = [_grid(out, shown[:2], stats, seed)]
    standard = make_pipeline(["pad_crop(4)", "hflip", "jitter(0.4, 0.4, 0.4)"], stats=stats)
    plot_augment(shown, out / "standard_pipeline.png", standard, generator(seed, "exp13", "std"))
    figures.append("standard_pipeline.png")

    runs = fit_arms(
        lambda s: cnn_overrides(cfg, s),
        {name: [f"augment.train={AUGMENTS[name]!r}"] for name in names},
        seeds,
        data,
    )
    table = accuracy_table(runs, "none")
    comparisons = paired_comparisons(
        runs,
        {f"{name} beats no augmentation": (name, "none") for name in names[1:]},
        seeds,
        {"none": overfits(runs, "none")},
    )
    checks: dict[str, bool] = {}  # the comparisons decide
    measured = {
        "test_images": n_test,
        "seeds": seeds,
        "augmentations": {name: AUGMENTS[name] for name in names},
        **table,
    }
    title = "Each augmentation alone on a CIFAR-10 subset"
    figures.append(accuracy_bars(out, "augmentation_accuracy.png", title, runs, lambda arm: "none"))
    notes = (
        f"Base overrides: {' '.join(cnn_overrides(cfg, seed))}; accuracy on {n_test} random "
        f"CIFAR-10 test images, seeds {seeds}. The grid shows two test images under each "
        "augmentation (PCA lighting uses the eigenvectors of 5,000 training images' RGB "
        "covariance); 'standard_pipeline.png' shows crop + flip + jitter together."
    )
    notes += underfit_note(table, "none", "run without augmentation")
    if size == "quick":
        notes += (
            f" Quick size: only {', '.join(names)}; 1,000 images, 3 epochs, narrow widths: too "
            "short to over-fit, so the comparisons are expected to be not reached."
        )
    elif size == "smoke":
        notes += f" Smoke size: only {', '.join(names)}; 2 seeds decide nothing."
    figures.append(
        comparison_intervals(
            out, "comparisons.png", "Each augmentation against none, paired seeds", comparisons
        )
    )
    return conclude(checks, measured, figures, notes, comparisons)
