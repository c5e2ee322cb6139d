"""Experiment 8: zero-initialized residual branches keep a deep ResNet's signal flat.

A basic block computes ``out = relu(x + branch(x))``. With standard (Kaiming) weights every
branch adds a signal of its own, so the residual stream's variance grows with depth: linearly
with batch norm (each branch ends in a unit-variance BN), geometrically without it. Zeroing the
last layer of each branch (the BN scale gamma, or the last conv without BN) starts the network
as a shallow one that learns to use its blocks. That a zeroed block is then exactly the identity
(its output variance equals its input's, block after block) is an identity of the arithmetic,
checked in the unit tests (tests/test_lab_deep_init.py), not evidence here.

Evidence, four comparisons on CIFAR-10 images (average-pooled to 16 x 16 for the CPU), for a
single-stage ResNet with batch norm and without, judged by :func:`trainlab.lab.evidence.compare`
(paired-t 95% interval):

- per norm, "standard init's variance grows with depth": log10 of the last block's output
  variance over the first's, over init seeds (5 full and quick), against 0 (what zero init
  gives, by the identity above), direction +1, minimum effect :data:`MIN_GROWTH` (log10 2: the
  variance at least doubles);
- per norm, "zero init trains at least as well" (non-inferiority): the final training loss
  (:func:`trainlab.lab.arms.final_loss`, the mean batch loss of the last 10% of steps) of zero
  init minus standard init on paired seeds (5 full, 3 quick; a seed draws the weights, zeroed
  or not, and the batch order), direction -1 with minimum effect -:data:`MARGIN`: held when the
  interval's upper end is below +MARGIN nats. Each arm's learning rate is tuned first
  (:func:`trainlab.lab.arms.tune_lr`) on a tuning seed that is none of the paired seeds, scored
  by the same final loss (``inf`` if it diverged). A paired run that diverges counts as ``ln 10``
  (a uniform guess), which is lenient to it.

Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if any did
not hold, else inconclusive if any was, else held. Smoke runs use 2 seeds, which decide nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.init import zero_init_residual
from trainlab.lab import evidence
from trainlab.lab.arms import MIN_SEEDS, TUNING_SEED, final_loss, log_grid, tune_lr
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import train_subset
from trainlab.lab.figures import comparison_intervals, plot_curves
from trainlab.lab.runs import at_size, generator, initialized, outputs_of, sgd_curve
from trainlab.models import BasicBlock, build_model
from trainlab.preprocess import compute_stats, make_normalizer
from trainlab.recipe import ModelConfig

NORMS = ("batch", "none")
INITS = ("standard", "zero")
MIN_GROWTH = math.log10(2)  # "grows": the last block's variance at least twice the first's
MARGIN = 0.1  # non-inferiority margin on the final training loss, in nats
SIDE = 16  # CIFAR-10 images average-pooled to SIDE x SIDE: a quarter of the convolutions' work
BATCH = 32
LR_CENTRE = 10**-1.5  # 0.0316, centre of each arm's learning-rate grid (half a decade apart)
PROBE = 64  # images the variance is measured on
SIZES = {  # smoke, quick, full; the variance is measured deeper than the network trained
    "variance_blocks": (4, 16, 32),
    "variance_width": (4, 8, 16),
    "variance_seeds": (2, 5, 5),
    "train_blocks": (2, 4, 8),
    "train_width": (4, 8, 8),
    "steps": (6, 80, 300),
    "train_images": (256, 2000, 10000),
    "seeds": (2, 3, 5),  # paired training seeds; 2 (smoke) never decide
}


def _key(norm: str) -> str:
    return "bn" if norm == "batch" else "no_bn"


def pooled(images: Tensor, side: int = SIDE) -> Tensor:
    """uint8 (N, C, H, W) images average-pooled to ``side`` x ``side``, still uint8."""
    if images.shape[-1] == side:
        return images
    return F.adaptive_avg_pool2d(images.float(), side).round().clamp(0, 255).to(torch.uint8)


def _resnet(
    norm: str, blocks: int, width: int, zero: bool, seed: int, normalize: nn.Module,
    side: int = 32,
) -> nn.Module:  # fmt: skip
    """A one-stage ResNet of ``blocks`` basic blocks, Kaiming weights drawn from ``seed`` (the
    same with ``zero`` or not), then each branch's last layer zeroed if ``zero``."""
    cfg = ModelConfig(kind="resnet", widths=[width], depth=blocks, norm=norm)
    make = lambda: build_model(cfg, (3, side, side), 10, normalize)  # noqa: E731
    model = initialized(make, "kaiming", "relu", generator(seed, "exp08", "init"))
    if zero:
        zero_init_residual(model)
    return model


def block_variances(model: nn.Module, x: Tensor) -> list[float]:
    """Variance of each residual block's output on the batch ``x`` (batch statistics in BN)."""
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    return [float(out.double().var()) for out in outputs_of(model, blocks, x, train=True)]


def log_growth(variances: list[float]) -> float:
    """log10 of the last block's output variance over the first's."""
    return math.log10(variances[-1] / variances[0])


def counted_loss(losses: list[float]) -> float:
    """A paired run's final training loss (:func:`trainlab.lab.arms.final_loss`), or ``ln 10``
    (a uniform guess over 10 classes) if it diverged."""
    value = final_loss(losses)
    return value if math.isfinite(value) else math.log(10)


@experiment(
    "residual-init",
    claim=(
        "Zero-initializing the last layer of every residual branch makes each block the identity "
        "at initialization: activation variance stays flat with depth instead of growing, and "
        "the deep network trains at least as well as with standard initialization."
    ),
    source=(
        "Goyal et al. 2017, 'Accurate, Large Minibatch SGD', sec. 5.1; He et al. 2019, 'Bag of "
        "Tricks for Image Classification'; Zhang et al. 2019, 'Fixup Initialization'"
    ),
    rule=(
        f"CIFAR-10 images pooled to {SIDE}x{SIDE}, single-stage ResNets with batch norm and "
        "without. (1) Per norm, standard init: log10(last/first block output variance) over "
        f"init seeds ({SIZES['variance_blocks']} blocks by size), against 0 (zero init, an "
        f"identity tested in the unit tests): held if the paired-t 95% interval is above "
        f"{MIN_GROWTH:.4f} (log10 2). (2) Per norm, non-inferiority: final training loss (mean "
        f"of the last 10% of {SIZES['steps']} SGD steps by size, batch {BATCH}) of zero init "
        f"minus standard init on paired seeds (5 full, 3 quick), each arm's learning rate tuned "
        "on a tuning seed (log grid >= 5 rates half a decade apart around "
        f"{LR_CENTRE:.3g}, extended past an edge holding the best); held if the interval's upper "
        f"end is below +{MARGIN} nats, did not hold if its lower end is above it. Fewer than "
        f"{MIN_SEEDS} seeds: inconclusive. Overall: did not hold if any did not hold, else "
        "inconclusive if any was, else held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    seeds = [seed + i for i in range(cfg["seeds"])]
    var_seeds = [seed + i for i in range(cfg["variance_seeds"])]
    x, y = train_subset("cifar10", cfg["train_images"], generator(seed, "exp08", "data"))
    x = pooled(x)
    normalize = make_normalizer("standardize", compute_stats(x))
    probe = x[:PROBE]

    def resnet(norm: str, zero: bool, s: int, blocks: int, width: int) -> nn.Module:
        return _resnet(norm, blocks, width, zero, s, normalize, side=SIDE)

    # (1) the variance through a deep stack at initialization, over init seeds
    variances: dict[str, list[float]] = {}  # the first seed's, per block, for the figure
    growth: dict[str, list[float]] = {}
    for norm in NORMS:
        depth, width = cfg["variance_blocks"], cfg["variance_width"]
        runs = [block_variances(resnet(norm, False, s, depth, width), probe) for s in var_seeds]
        growth[_key(norm)] = [log_growth(v) for v in runs]
        variances[f"{_key(norm)}/standard"] = runs[0]
        variances[f"{_key(norm)}/zero"] = block_variances(
            resnet(norm, True, var_seeds[0], depth, width), probe
        )

    # (2) training: each arm's rate tuned on a tuning seed, then the paired seeds
    def train(norm: str, init: str, lr: float, s: int) -> list[float]:
        model = resnet(norm, init == "zero", s, cfg["train_blocks"], cfg["train_width"])
        gen = generator(s, "exp08", "batches")
        return sgd_curve(model, x, y, steps=cfg["steps"], lr=lr, batch=BATCH, gen=gen)

    arms = [(norm, init) for norm in NORMS for init in INITS]
    searches = {
        (n, i): tune_lr(lambda lr, n=n, i=i: final_loss(train(n, i, lr, seed + TUNING_SEED)),
                        log_grid(LR_CENTRE))
        for n, i in arms
    }  # fmt: skip
    curves = {a: [train(*a, searches[a].best, s) for s in seeds] for a in arms}
    losses = {a: [counted_loss(c) for c in curves[a]] for a in arms}

    comparisons = []
    for norm in NORMS:
        k = _key(norm)
        comparisons.append(
            evidence.compare(
                f"{k}: standard init's variance grows with depth",
                "log10 variance ratio last/first block",
                ("standard", "zero (identity: 0)"),
                growth[k],
                [0.0] * len(var_seeds),
                var_seeds,
                MIN_GROWTH,
                +1,
                min_seeds=MIN_SEEDS,
            )
        )
    for norm in NORMS:
        comparisons.append(
            evidence.compare(
                f"{_key(norm)}: zero init trains at least as well",
                "final training loss",
                ("zero", "standard"),
                losses[(norm, "zero")],
                losses[(norm, "standard")],
                seeds,
                -MARGIN,
                -1,
                min_seeds=MIN_SEEDS,
            )
        )

    name = {a: f"{_key(a[0])}/{a[1]}" for a in arms}
    measured = {
        **cfg,
        "side": SIDE,
        "batch": BATCH,
        "seeds": seeds,
        "variance_seeds": var_seeds,
        "log10_variance_ratio": growth,
        "variance_per_block_first_seed": variances,
        "lr": {name[a]: searches[a].best for a in arms},
        "lr_search": {name[a]: searches[a].to_dict() for a in arms},
        "final_train_loss": {name[a]: losses[a] for a in arms},
        "diverged": {name[a]: [not math.isfinite(final_loss(c)) for c in curves[a]] for a in arms},
    }
    figures = [
        plot_curves(
            out,
            "variance_vs_block.png",
            variances,
            style={"marker": "o", "ms": 3},
            xlabel="residual block",
            ylabel="output variance (log)",
            yscale="log",
            title="Activation variance with depth at initialization (first seed)",
        ),
        plot_curves(
            out,
            "training_curves.png",
            {f"{name[a]} (lr {searches[a].best})": curves[a][0] for a in arms},
            hide_above=1e3,
            xlabel="SGD step",
            ylabel="training loss (batch)",
            yscale="log",
            title="Training at each arm's tuned rate (first paired seed)",
        ),
        comparison_intervals(
            out,
            "comparisons.png",
            "Residual init: variance growth and non-inferiority",
            comparisons,
        ),  # fmt: skip
    ]
    diverged_runs = sum(v for a in arms for v in measured["diverged"][name[a]])
    notes = (
        f"{cfg['train_images']} CIFAR-10 training images average-pooled to {SIDE}x{SIDE}. "
        f"Variance at init on {PROBE} of them through {cfg['variance_blocks']} blocks of width "
        f"{cfg['variance_width']} (BN in training mode, i.e. batch statistics), init seeds "
        f"{var_seeds}. Training: {cfg['train_blocks']} blocks of width {cfg['train_width']}, "
        f"SGD Nesterov momentum 0.9 at each arm's tuned rate, batch {BATCH}, {cfg['steps']} "
        f"steps, no augmentation, paired seeds {seeds}; paired runs that diverged (counted as "
        f"ln 10): {diverged_runs}. The papers train deep ResNets on ImageNet for many epochs; "
        "this is a short run on a small one."
    )
    if size != "full":
        notes += f" Size '{size}': fewer blocks, images, steps and seeds than the full run."
    return conclude(comparisons, measured, figures, notes)
