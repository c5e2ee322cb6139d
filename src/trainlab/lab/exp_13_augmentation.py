"""Experiment 13: what each data augmentation looks like, and what it adds.

Augmentation trains on label-preserving transformations of the images, so the model sees more
variation than the data set holds: horizontal flips, random crops and scales (Krizhevsky et al.
2012; Simonyan & Zisserman 2014; He et al. 2016), Inception-style random resized crops
(Szegedy et al. 2015), colour jitter and PCA lighting (Krizhevsky et al. 2012), random
greyscale. Every image in a batch draws its own parameters (`trainlab.augment`).

Evidence. Each trained augmentation is its own comparison with no augmentation on paired seeds
(within a seed every arm shares the training subset, initialization and batch order:
``train.seed``), judged by :func:`trainlab.lab.evidence.compare`: the mean paired test-accuracy
difference and its paired-t 95% interval against a minimum effect of
:data:`~trainlab.lab.arms.MIN_EFFECT` (0.5 points), provided the run without augmentation
over-fits (train - test accuracy >= :data:`~trainlab.lab.arms.OVERFIT_GAP`, 15 points), else "not
reached". The network has a flatten head (every feature of the last stage into the classifier)
and trains on a small subset for long enough to over-fit it; each arm trains with its own
learning rate, chosen on a tuning seed with a held-out validation split
(:func:`~trainlab.lab.arms.fit_tuned_arms`). Verdict rule "all"
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
    device_training_overrides,
    fit_tuned_arms,
    log_grid,
    overfits,
    paired_comparisons,
    paired_rule,
    training_overrides,
    underfit_note,
)
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import dataset, subset, with_test_subset
from trainlab.lab.figures import accuracy_bars, comparison_intervals, pyplot, save_figure
from trainlab.lab.runs import at_size, generator, lab_device
from trainlab.preprocess import compute_stats

# name -> the recipe's augment.train list (all shown in the grid figure)
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
LR_CENTRE = 0.03  # the middle of each arm's first learning-rate grid (log_grid: 0.003 to 0.3)
# Trained at full size: flips, random crops, random scales and colour changes, as the claim
# names them; the other augmentations of AUGMENTS are shown, not trained (time budget).
TRAINED = ("none", "hflip", "pad_crop", "pad_crop+hflip", "random_resized_crop", "color_jitter")
# The paper's scale (issue 17 item 7: full CIFAR-10 with a ResNet, for a GPU): He et al. 2016's
# CIFAR ResNet-20 (widths 16, 32, 64; 3 basic blocks per stage), batches of 128, on all 50,000
# training and all 10,000 test images, 30 epochs (a few minutes per run on one GPU).
PAPER_DEPTH = 3  # residual blocks per stage at the paper's scale
PAPER_BATCH = 128
SIZES = {  # smoke, quick, full, paper
    "augments": (("none", "pad_crop+hflip"), ("none", "pad_crop+hflip"), TRAINED, TRAINED),
    "model": ("cnn", "cnn", "cnn", "resnet"),  # cnn: flatten head; resnet: ResNet-20
    "train_images": (256, 500, 2000, 50_000),
    "test_images": (256, 1000, 5000, 10_000),
    "widths": ("[8, 16]", "[8, 16]", "[8, 16, 32]", "[16, 32, 64]"),
    "epochs": (1, 10, 20, 30),  # at full: the baseline fits its 2,000 images (train accuracy ~1)
    "seeds": (2, 3, 5, 3),  # paired seeds; 2 (smoke) never decide
}
_FULL, _QUICK, _PAPER = (at_size(SIZES, s) for s in ("full", "quick", "paper"))


def cnn_flatten_overrides(cfg: dict, seed: int) -> list[str]:
    """A small VGG-style CNN with batch norm and weight decay 5e-4 whose classifier sees every
    feature of its last stage (``model.head=flatten``: many weights for few images, so it can
    over-fit), on a CIFAR-10 subset; no augmentation unless an arm adds it.

    Where ``cfg["model"]`` is ``"resnet"`` (the paper's scale) the network is a ResNet of
    ``cfg["widths"]`` with :data:`PAPER_DEPTH` blocks per stage, with the same batch norm and
    weight decay, trained in batches of :data:`PAPER_BATCH` on
    :func:`~trainlab.lab.runs.lab_device` (CUDA where there is one)."""
    if cfg["model"] == "resnet":
        model = ["model.kind=resnet", f"model.depth={PAPER_DEPTH}"]
        training = device_training_overrides(cfg["epochs"], seed, lab_device("paper"), PAPER_BATCH)
    else:
        model = ["model.kind=cnn", "model.head=flatten"]
        training = training_overrides(cfg["epochs"], seed)
    return [
        "data.name=cifar10",
        f"data.subset={cfg['train_images']}",
        *model,
        f"model.widths={cfg['widths']}",
        "model.norm=batch",
        "optim.weight_decay=0.0005",
        "augment.train=[]",
        "diagnostics.every=0",  # not measured here; the hooks only cost time
        "train.eval_every=0",  # the last epoch is tested, which is all the comparison reads
    ] + training


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
        "accuracy of a CNN that over-fits limited data."
    ),
    source=(
        "CS231n lecture 'Training Neural Networks' (data augmentation); Krizhevsky et al. 2012; "
        "Simonyan & Zisserman 2014; Szegedy et al. 2015"
    ),
    rule=(
        f"A CNN {_FULL['widths']} with batch norm, weight decay 5e-4 and a flatten head on "
        f"{_FULL['train_images']} CIFAR-10 images for {_FULL['epochs']} epochs (quick: "
        f"{_QUICK['widths']}, {_QUICK['train_images']} images, {_QUICK['epochs']} epochs, crop + "
        f"flip only); each augmentation of {', '.join(TRAINED[1:])} alone against none on "
        f"paired seeds ({_FULL['seeds']} full, {_QUICK['seeds']} quick); each arm's learning "
        "rate tuned on a tuning seed's held-out 20% (log grid of >= 5 points around "
        f"{LR_CENTRE}, extended past an edge that holds the best). One comparison per "
        f"augmentation: {paired_rule('the run without augmentation')}. Paper scale (--scale "
        "paper, for a GPU): the same arms and comparisons on all "
        f"{_PAPER['train_images']:,} CIFAR-10 training images and {_PAPER['test_images']:,} "
        f"test images with a ResNet {_PAPER['widths']} ({PAPER_DEPTH} blocks per stage, batch "
        f"norm, weight decay 5e-4), {_PAPER['epochs']} epochs, {_PAPER['seeds']} paired seeds."
    ),
    scales=("quick", "full", "paper"),
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

    runs, searches = fit_tuned_arms(
        lambda s: cnn_flatten_overrides(cfg, s),
        {name: [f"augment.train={AUGMENTS[name]!r}"] for name in names},
        seeds,
        data,
        log_grid(LR_CENTRE),
    )
    table = accuracy_table(runs, "none")
    comparisons = paired_comparisons(
        runs,
        {f"{name} beats no augmentation": (name, "none") for name in names[1:]},
        seeds,
        {"none": overfits(runs, "none")},
    )
    measured = {
        "train_images": cfg["train_images"],
        "test_images": n_test,
        "widths": cfg["widths"],
        "epochs": cfg["epochs"],
        "seeds": seeds,
        "augmentations": {name: AUGMENTS[name] for name in names},
        "lr": {arm: search.best for arm, search in searches.items()},
        "lr_search": {arm: search.to_dict() for arm, search in searches.items()},
        **table,
    }
    title = "Each augmentation alone on a CIFAR-10 subset"
    figures.append(accuracy_bars(out, "augmentation_accuracy.png", title, runs, lambda arm: "none"))
    lrs = ", ".join(f"{arm} {search.best:g}" for arm, search in searches.items())
    notes = (
        f"Base overrides: {' '.join(cnn_flatten_overrides(cfg, seed))}; the training subset is "
        f"drawn by each seed; accuracy on {n_test} random CIFAR-10 test images, seeds {seeds}; "
        f"learning rates tuned per arm on seed {seeds[0]} + 10000 with 20% held out: {lrs}. "
        "Train accuracy is the last epoch's, with the arm's augmentation on. The grid shows two "
        "test images under each augmentation (PCA lighting uses the eigenvectors of 5,000 "
        "training images' RGB covariance; scale_aug, pca_lighting and grayscale are shown, not "
        "trained); 'standard_pipeline.png' shows crop + flip + jitter together."
    )
    notes += underfit_note(table, "none", "run without augmentation")
    if size == "paper":
        notes += (
            f" Paper scale: a ResNet {cfg['widths']} with {PAPER_DEPTH} basic blocks per stage "
            f"(model.kind=resnet) on {cfg['train_images']:,} CIFAR-10 training images (all of "
            f"them) and {n_test:,} test images, batches of {PAPER_BATCH}, {cfg['epochs']} "
            f"epochs, {len(seeds)} paired seeds, trained on {lab_device(size)}."
        )
        if not overfits(runs, "none"):
            notes += (
                " The over-fitting regime was not reached at this size: a ResNet on all of "
                "CIFAR-10 need not over-fit by the 15 points the precondition asks."
            )
    elif size != "full":
        notes += (
            f" Size '{size}': only {', '.join(names)}; {cfg['train_images']} images, "
            f"{cfg['epochs']} epochs, narrower widths and fewer seeds than the full run."
        )
    if len(seeds) < 3:
        notes += f" Only {len(seeds)} seeds: no comparison can be decided."
    figures.append(
        comparison_intervals(
            out, "comparisons.png", "Each augmentation against none, paired seeds", comparisons
        )
    )
    return conclude(comparisons, measured, figures, notes)
