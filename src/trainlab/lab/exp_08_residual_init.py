"""Experiment 8: zero-initialized residual branches keep a deep ResNet's signal flat.

A basic block computes ``out = relu(x + branch(x))``. With standard (Kaiming) weights every
branch adds a signal of its own, so the residual stream's variance grows with depth: linearly
with batch norm (each branch ends in a unit-variance BN), geometrically without it. Zeroing the
last layer of each branch (the BN scale gamma, or the last conv without BN) starts the network
as a shallow one that learns to use its blocks. That a zeroed block is then exactly the identity
is an identity of the arithmetic (tests/test_lab_deep_init.py), not evidence here.

CIFAR-10 images are average-pooled to 16 x 16 for the CPU; single-stage ResNets with batch
norm and without. The claim's practical half (Goyal et al. use it with batch norm) is the
primary: with batch norm, zero init trains at least as well as standard init.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.init import zero_init_residual
from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.data import train_subset
from trainlab.lab.figures import plot_curves
from trainlab.lab.loop import sgd, train
from trainlab.lab.nets import generator, initialized, outputs_of
from trainlab.lab.rules import Rule, Spec
from trainlab.lab.tuning import final_loss, log_grid, recheck, tune_lr
from trainlab.models import BasicBlock, build_model
from trainlab.preprocess import compute_stats, make_normalizer
from trainlab.recipe import ModelConfig

NORMS = {"bn": "batch", "no_bn": "none"}
MIN_GROWTH = math.log10(2)  # "grows": the last block's variance at least twice the first's
MARGIN = 1.10  # non-inferiority: zero init's final training loss at most 10% above standard's
SIDE = 16  # CIFAR-10 images average-pooled to SIDE x SIDE: a quarter of the convolutions' work
BATCH = 32
PROBE = 64  # images the variance is measured on
SIZES = {  # smoke, quick, full; the variance is measured deeper than the network trained
    "variance_blocks": (4, 16, 32),
    "variance_width": (4, 8, 16),
    "train_blocks": (2, 3, 8),
    "train_width": (4, 8, 8),
    "steps": (6, 40, 300),
    "train_images": (256, 2000, 10000),
    "seeds": (3, 3, 6),
}
PRIMARY = Spec(
    "bn: zero init trains at least as well",
    ("bn zero", "bn standard"),
    "final training loss",
    "log",
    -math.log(MARGIN),
    -1,
)
RULE = Rule(
    design=f"CIFAR-10 images pooled to {SIDE}x{SIDE}, single-stage ResNets with batch norm "
    f"and without, SGD Nesterov momentum 0.9, batch {BATCH}, no augmentation; a seed draws "
    "the weights (zeroed or not) and the batch order. Final training loss: the mean batch loss "
    "of the last 10% of steps.",
    primary=PRIMARY,
    secondaries=(
        f"without batch norm, zero init trains at least as well (ratio <= {MARGIN})",
        "per norm, standard init's activation variance grows with depth: log10(last / "
        "first block) above log10 2 over init seeds (zero init's is 0 exactly)",
    ),
    tuning="each arm's on the tuning seeds, a log grid of 3 rates half a decade apart around "
    "0.0316 extended past an edge holding the best; score: final training loss (inf if "
    "diverged). Re-checked with each primary arm at its neighbouring rates.",
)


def pooled(images: Tensor, side: int = SIDE) -> Tensor:
    """uint8 (N, C, H, W) images average-pooled to ``side`` x ``side``, still uint8."""
    if images.shape[-1] == side:
        return images
    return F.adaptive_avg_pool2d(images.float(), side).round().clamp(0, 255).to(torch.uint8)


def resnet(
    norm: str,
    blocks: int,
    width: int,
    zero: bool,
    seed: int,
    normalize: nn.Module,
    side: int = SIDE,
) -> nn.Module:
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
    sizes=SIZES,
    rule=RULE,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    x, y = train_subset("cifar10", cfg["train_images"], generator(ctx.seed, "exp08", "data"))
    x = pooled(x)
    normalize = make_normalizer("standardize", compute_stats(x))
    probe = x[:PROBE]

    growth, variances = {}, {}
    for key, norm in NORMS.items():
        depth, width = cfg["variance_blocks"], cfg["variance_width"]
        per_seed = [
            block_variances(resnet(norm, depth, width, False, s, normalize), probe)
            for s in ctx.seeds
        ]
        growth[key] = [log_growth(v) for v in per_seed]
        variances[f"{key} standard"] = per_seed[0]
        variances[f"{key} zero"] = block_variances(
            resnet(norm, depth, width, True, ctx.seeds[0], normalize), probe
        )

    @functools.cache
    def measure(arm: str, lr: float, seed: int) -> dict:
        key, init = arm.split()
        blocks, width = cfg["train_blocks"], cfg["train_width"]
        model = resnet(NORMS[key], blocks, width, init == "zero", seed, normalize)
        gen = generator(seed, "exp08", "batches")
        done = train(model, sgd(model, lr), x, y, batch=BATCH, steps=cfg["steps"], gen=gen)
        return {"losses": done.losses, "final": final_loss(done.losses)}

    arms = [f"{k} {i}" for k in NORMS for i in ("zero", "standard")]
    score = lambda a: lambda lr, s: measure(a, lr, s)["final"]  # noqa: E731
    searches = {a: tune_lr(score(a), log_grid(10**-1.5, 3), ctx.tuning_seeds) for a in arms}
    lrs = {a: searches[a].best for a in arms}

    def losses(arm: str, lr: float) -> list:
        values = [measure(arm, lr, s)["final"] for s in ctx.seeds]
        return [v if math.isfinite(v) else "diverged" for v in values]

    primary = recheck(
        lambda r: PRIMARY.of(lambda a: losses(a, r[a]), ctx.seeds), lrs, searches, PRIMARY.arms
    )
    no_bn = Spec(
        "no_bn: zero init trains at least as well",
        ("no_bn zero", "no_bn standard"),
        PRIMARY.metric,
        "log",
        -math.log(MARGIN),
        -1,
    )
    secondaries = [no_bn.of(lambda a: losses(a, lrs[a]), ctx.seeds)]
    for k in NORMS:
        grows = Spec(
            f"{k}: standard init's variance grows with depth",
            ("standard", "zero (0)"),
            "log10 variance ratio last/first",
            "linear",
            MIN_GROWTH,
            +1,
        )
        secondaries.append(grows.compare(growth[k], [0.0] * len(ctx.seeds), ctx.seeds))
    measured = {
        "log10_variance_ratio": growth,
        "variance_per_block_first_seed": variances,
        "final_train_loss": {a: losses(a, lrs[a]) for a in arms},
    }
    figures = [
        plot_curves(
            ctx.out,
            "variance_vs_block.png",
            variances,
            style={"marker": "o", "ms": 3},
            xlabel="residual block",
            ylabel="output variance (log)",
            yscale="log",
            title="Activation variance with depth at initialization (first seed)",
        ),
        plot_curves(
            ctx.out,
            "training_curves.png",
            {f"{a} (lr {lrs[a]})": measure(a, lrs[a], ctx.seeds[0])["losses"] for a in arms},
            hide_above=1e3,
            xlabel="SGD step",
            ylabel="training loss (batch)",
            yscale="log",
            title="Training at each arm's tuned rate (first paired seed)",
        ),
    ]
    notes = (
        f"Variance at init on {PROBE} images (BN in training mode). The papers train deep "
        "ResNets on ImageNet for many epochs; this is a short run on a small one."
    )
    return Outcome(primary, measured, figures, notes, secondaries, searches)
