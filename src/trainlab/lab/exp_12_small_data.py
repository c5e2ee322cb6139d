"""Experiment 12: which regularizers pay off on a small data set?

The lecture's advice for regularization in practice: "batch normalization and data
augmentation almost always a good idea"; "try cutout and mixup especially for small
classification datasets". Every technique is taken from trainlab's recipe fields, so each arm
is exactly what ``trainlab train`` would run: L2 penalty, dropout before the classifier
(Srivastava et al. 2014), DropConnect classifier (Wan et al. 2013), fractional max pooling
(Graham 2014), mixup (Zhang et al. 2018), cutout (DeVries & Taylor 2017), random crop + flip,
batch norm (Ioffe & Szegedy 2015), and stochastic depth (Huang et al. 2016), which needs
residual blocks and so has a ResNet baseline of its own.
"""

from __future__ import annotations

from pathlib import Path

from trainlab.lab.arms import accuracy_table, cnn_overrides, fit_arms, underfit_note
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import dataset, with_test_subset
from trainlab.lab.figures import accuracy_bars
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
SIZES = {  # smoke, quick, full: every variant fits in the quick budget, at a tiny size
    "variants": (SMOKE_VARIANTS, tuple(VARIANTS), tuple(VARIANTS)),
    "train_images": (256, 1000, 5000),
    "test_images": (256, 500, 2000),
    "widths": ("[8, 16]", "[8, 16, 32]", "[16, 32, 64]"),
    "epochs": (1, 3, 10),
    "seeds": (1, 1, 2),
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
        "decay as the baseline; each technique added alone; mean test accuracy over seeds. "
        "Checks: mixup, cutout, crop+flip augmentation and batch norm each beat the baseline's "
        "mean. The other techniques (L2, dropout, DropConnect, fractional pooling, stochastic "
        "depth against its ResNet baseline) are measured and reported but not part of the claim. "
        "Held if all four beat it, partly if some do."
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
    acc = table["test_acc_mean"]
    checks = {
        f"{name} beats the baseline": acc[name] > acc["baseline"] for name in CLAIMED if name in acc
    }
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
            " Quick size: 1,000 training images, 3 epochs, one seed, narrow widths: far too "
            "short for the regularizers to pay off; the verdict is only meaningful in full size."
        )
    elif size == "smoke":
        notes += f" Smoke size: only {', '.join(names)}."
    return conclude(checks, measured, figures, notes)
