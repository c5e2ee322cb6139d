"""Experiment 13: what each data augmentation looks like, and what it adds.

Augmentation trains on label-preserving transformations of the images, so the model sees more
variation than the data set holds: horizontal flips, random crops and scales (Krizhevsky et al.
2012; Simonyan & Zisserman 2014; He et al. 2016), Inception-style random resized crops
(Szegedy et al. 2015), colour jitter and PCA lighting (Krizhevsky et al. 2012), random
greyscale. Every image in a batch draws its own parameters (`trainlab.augment`).

The claim is about a CNN that over-fits limited data: a VGG-style CNN with a flatten head on a
small CIFAR-10 subset. The primary is the standard CIFAR-10 augmentation, random crop + flip
(He et al. 2016), against none; each augmentation alone is secondary. The budget grows until
the augmented arm's validation loss stops improving (augmentation trains slower).
"""

from __future__ import annotations

import torch

from trainlab.augment import make_pipeline, plot_augment
from trainlab.lab import paper
from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.data import dataset, subset
from trainlab.lab.figures import accuracy_bars, pyplot, save_figure
from trainlab.lab.nets import generator
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
from trainlab.preprocess import compute_stats

# name -> the recipe's augment.train list (all shown in the grid figure)
AUGMENTS: dict[str, list[str]] = {
    "none": [],
    "pad_crop+hflip": ["pad_crop(4)", "hflip"],
    "hflip": ["hflip"],
    "pad_crop": ["pad_crop(4)"],
    "random_resized_crop": ["random_resized_crop(32, scale=(0.35, 1.0))"],
    "color_jitter": ["jitter(0.4, 0.4, 0.4)"],
    "scale_aug": ["scale_aug(32, 40, 32)"],
    "pca_lighting": ["pca_lighting(0.1)"],
    "grayscale": ["grayscale(0.2)"],
}
TRAINED = ("none", "pad_crop+hflip", "hflip", "pad_crop", "random_resized_crop", "color_jitter")
VERSIONS = 6
SIZES = {  # smoke, quick, full, paper
    "augments": (TRAINED[:2], TRAINED[:2], TRAINED, TRAINED),
    "model": ("cnn", "cnn", "cnn", "resnet"),  # cnn: flatten head; resnet: ResNet-20
    "train_images": (256, 400, 1000, PAPER_TRAIN),
    "test_images": (256, 1000, 3000, PAPER_TEST),
    "widths": ("[8, 16]", "[8, 16]", "[8, 16, 32]", PAPER_WIDTHS),
    "budgets": ((1, 2), (6, 12), (20, 40), (30, 60, 90)),  # epochs, grown to the regime
    "limit_seconds": (60, 45, 1050, 10**9),
    "seeds": (3, 3, 6, 6),
}
PRIMARY = Spec(
    "random crop + flip improves test accuracy",
    ("pad_crop+hflip", "none"),
    "test accuracy",
    "fraction",
    MIN_EFFECT,
    +1,
)
RULE = Rule(
    design="A VGG-style CNN with batch norm, weight decay 5e-4 and a flatten head on a CIFAR-10 "
    "subset drawn by the seed (1,000 images at full size), SGD Nesterov with a cosine "
    "schedule; each augmentation alone against none. Paper scale: all of CIFAR-10 with "
    "ResNet-20.",
    primary=PRIMARY,
    preconditions=(
        f"the CNN without augmentation over-fits (train - test accuracy >= {OVERFIT_GAP})",
        "crop + flip reached its regime: validation loss (mean "
        f"over the tuning seeds) falling by at most {STILL_IMPROVING:.0%} over the last 20% of the "
        "budget",
    ),
    secondaries=(
        "flips, pad-and-crop, random resized crops and colour jitter, each alone against none",
    ),
    tuning="each arm's on the tuning seeds with 20% of their subset held out, a 3-point log "
    "grid half a decade apart around 0.03 extended past an edge holding the best; score: final "
    "validation error. The budget starts at the first of its sizes' epochs and grows, the rates "
    "kept, while crop + flip still improves and the time limit allows. Re-checked with each "
    "primary arm at its neighbouring rates.",
)


def base_overrides(cfg: dict, seed: int, epochs: int, device="cpu", batch: int = 64) -> list[str]:
    """A small VGG-style CNN (or ResNet-20 at paper scale) with batch norm and weight decay
    5e-4, whose flatten head sees every feature of its last stage (many weights for few images:
    it can over-fit); no augmentation unless an arm adds it."""
    if cfg["model"] == "resnet":
        model = ["model.kind=resnet", f"model.depth={PAPER_DEPTH}"]
    else:
        model = ["model.kind=cnn", "model.head=flatten"]
    return [
        "data.name=cifar10",
        f"data.subset={cfg['train_images']}",
        *model,
        f"model.widths={cfg['widths']}",
        "model.norm=batch",
        "optim.weight_decay=0.0005",
        "augment.train=[]",
    ] + training_overrides(epochs, seed, device, batch)


def _grid(out, images: torch.Tensor, stats, seed: int) -> str:
    """One row per augmentation: the original image, then ``VERSIONS`` augmented versions."""
    names = [n for n in AUGMENTS if n != "none"]
    rows = len(names) * len(images)
    fig, axes = pyplot().subplots(
        rows, VERSIONS + 1, figsize=(1.2 * (VERSIONS + 1), 1.2 * rows), squeeze=False
    )
    for row, (name, image) in enumerate((n, i) for n in names for i in images):
        pipeline = make_pipeline(AUGMENTS[name], stats=stats)
        versions = pipeline(image[None].repeat(VERSIONS, 1, 1, 1), generator(seed, "exp13", name))
        for col, img in enumerate([image, *versions]):
            axes[row][col].imshow(img.permute(1, 2, 0).float().div(255).clamp(0, 1).numpy())
            axes[row][col].set_xticks([])
            axes[row][col].set_yticks([])
        axes[row][0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    axes[0][0].set_title("original", fontsize=8)
    return save_figure(fig, out, "augmentation_grid.png")


def plan(cfg: dict) -> list[paper.PlannedRun]:
    return paper.recipe_plan(cfg, paper.resnet20("batch"), len(cfg["augments"]), 2)


@experiment(
    "augmentation",
    claim=(
        "Data augmentation (flips, random crops and scales, colour changes) improves the test "
        "accuracy of a CNN that over-fits limited data."
    ),
    source=(
        "CS231n lecture 'Training Neural Networks' (data augmentation); Krizhevsky et al. 2012; "
        "Simonyan & Zisserman 2014; Szegedy et al. 2015; He et al. 2016"
    ),
    sizes=SIZES,
    rule=RULE,
    plan=plan,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    full = dataset("cifar10")
    shown, _ = subset(full.test_images, full.test_labels, 6, generator(ctx.seed, "exp13", "show"))
    stats = compute_stats(full.train_images[:5000])
    figures = [_grid(ctx.out, shown[:2], stats, ctx.seed)]
    standard = make_pipeline(["pad_crop(4)", "hflip", "jitter(0.4, 0.4, 0.4)"], stats=stats)
    plot_augment(
        shown, ctx.out / "standard_pipeline.png", standard, generator(ctx.seed, "exp13", "std")
    )
    figures.append("standard_pipeline.png")
    arms = paired_arms(
        ctx,
        "cifar10",
        base_overrides,
        {a: [f"augment.train={AUGMENTS[a]!r}"] for a in cfg["augments"]},
        ["pad_crop+hflip"],
        0.03,
        2,
    )
    primary = arms.primary(PRIMARY.name, "pad_crop+hflip", "none")
    secondaries = [
        arms.compare(f"{a} improves test accuracy", a, "none") for a in cfg["augments"][2:]
    ]
    measured = arms.table()
    figures.append(
        accuracy_bars(
            ctx.out,
            "augmentation_accuracy.png",
            "Each augmentation alone on a CIFAR-10 subset",
            measured["test_acc_runs"],
            "none",
        )
    )
    notes = (
        f"Base overrides: {' '.join(base_overrides(cfg, ctx.seed, arms.epochs, arms.device))}; "
        f"{arms.epochs} epochs (budget history in measured); accuracy on {cfg['test_images']} "
        "random CIFAR-10 test images. Train accuracy is the last epoch's, with the arm's "
        "augmentation on. The grid shows two test images under each augmentation (PCA lighting "
        "uses the eigenvectors of 5,000 training images' RGB covariance; scale_aug, "
        "pca_lighting and grayscale are shown, not trained)."
    )
    return Outcome(primary, measured, figures, notes, secondaries, arms.searches)
