"""Experiment 8: zero-initialized residual branches keep a deep ResNet's signal flat.

A basic block computes ``out = relu(x + branch(x))``. With standard (Kaiming) weights every
branch adds a signal of its own, so the residual stream's variance grows with depth: linearly
with batch norm (each branch ends in a unit-variance BN), geometrically without it. Zeroing the
last layer of each branch (the BN scale gamma, or the last conv without BN) makes every block
the identity at initialization (Goyal et al. 2017, sec. 5.1; He et al. 2019, "Bag of Tricks";
Zhang et al. 2019, Fixup), so the variance is flat whatever the depth, and the network starts
as a shallow one that learns to use its blocks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from trainlab.init import initialize, zero_init_residual
from trainlab.lab.base import Outcome, experiment, pyplot, save_figure, verdict_from
from trainlab.lab.data import dataset, subset
from trainlab.lab.numbers import diverged_at, finite, tail_mean
from trainlab.lab.runs import built, generator, pick, sgd_curve, size_of
from trainlab.models import BasicBlock, build_model
from trainlab.preprocess import compute_stats, make_normalizer
from trainlab.recipe import ModelConfig

NORMS = ("batch", "none")
INITS = ("standard", "zero")
GROWTH = 2.0  # "grows": last/first variance ratio above this; "flat": within [1/GROWTH, GROWTH]
TOLERANCE = 1.05  # zero-init "trains at least as well": tail loss within 5% of standard init's


def _resnet(norm: str, blocks: int, width: int, zero: bool, seed: int, normalize: nn.Module):
    cfg = ModelConfig(kind="resnet", widths=[width], depth=blocks, norm=norm)
    model = built(lambda: build_model(cfg, (3, 32, 32), 10, normalize))
    initialize(model, "kaiming", activation="relu", generator=generator(seed, "exp08", "init"))
    if zero:
        zero_init_residual(model)
    return model


@torch.no_grad()
def block_variances(model: nn.Module, x: Tensor) -> list[float]:
    """Variance of each residual block's output on the batch ``x`` (batch statistics in BN)."""
    seen: list[float] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(float(out.double().var())))
        for m in model.modules()
        if isinstance(m, BasicBlock)
    ]
    try:
        model.train()  # batch norm normalizes with the batch's statistics, as in training
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


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
        "On CIFAR-10 images, for a single-stage ResNet with and without batch norm: (1) standard "
        f"init: last/first block output variance > {GROWTH}; (2) zero init: the ratio lies in "
        f"[1/{GROWTH}, {GROWTH}]; (3) after the same SGD steps, zero init's mean training loss "
        f"over the last 10% of steps <= {TOLERANCE} x standard init's (a diverged run counts as "
        "infinite loss). Held if all six checks pass, partly if some do."
    ),
)
def run(out: Path, quick: bool, seed: int) -> Outcome:
    size = size_of(quick)
    depth = pick(size, smoke=4, quick=16, full=32)
    train_depth = pick(size, smoke=2, quick=8, full=16)
    width = pick(size, smoke=4, quick=8, full=16)
    train_width = pick(size, smoke=4, quick=8, full=8)
    steps = pick(size, smoke=6, quick=60, full=300)
    n_train = pick(size, smoke=256, quick=2000, full=10000)
    lr, batch = 0.02, 32

    data = dataset("cifar10")
    x, y = subset(data.train_images, data.train_labels, n_train, generator(seed, "exp08", "data"))
    normalize = make_normalizer("standardize", compute_stats(x))
    probe = x[:64]

    variances: dict[str, list[float]] = {}
    curves: dict[str, list[float]] = {}
    for norm in NORMS:
        for init in INITS:
            key = f"{'bn' if norm == 'batch' else 'no_bn'}/{init}"
            model = _resnet(norm, depth, width, init == "zero", seed, normalize)
            variances[key] = block_variances(model, probe)
            model = _resnet(norm, train_depth, train_width, init == "zero", seed, normalize)
            curves[key] = sgd_curve(
                model, x, y, steps=steps, lr=lr, batch=batch,
                gen=generator(seed, "exp08", "batches"),
            )  # fmt: skip

    ratio = {k: v[-1] / v[0] for k, v in variances.items()}
    final = {k: tail_mean(c) for k, c in curves.items()}
    checks: dict[str, bool] = {}
    for prefix in ("bn", "no_bn"):
        std, zero = f"{prefix}/standard", f"{prefix}/zero"
        checks[f"{prefix}: standard init variance grows"] = ratio[std] > GROWTH
        checks[f"{prefix}: zero init variance flat"] = 1 / GROWTH <= ratio[zero] <= GROWTH
        checks[f"{prefix}: zero init trains as well"] = final[zero] <= TOLERANCE * final[std]

    measured = {
        "variance_depth_blocks": depth,
        "train_depth_blocks": train_depth,
        "width": width,
        "train_width": train_width,
        "steps": steps,
        "lr": lr,
        "batch_size": batch,
        "train_images": n_train,
        "variance_ratio_last_over_first": {k: finite(v) for k, v in ratio.items()},
        "variance_last_block": {k: finite(v[-1]) for k, v in variances.items()},
        "final_train_loss": {k: finite(v) for k, v in final.items()},
        "diverged_at_step": {k: diverged_at(v) for k, v in curves.items()},
        "checks": checks,
    }
    figures = [_plot_variance(out, variances), _plot_curves(out, curves)]
    notes = (
        f"Variance measured at init on 64 training images through {depth} blocks of width "
        f"{width} (BN in training mode, i.e. batch statistics); training uses {train_depth} "
        f"blocks of width {train_width}, SGD lr {lr}, Nesterov momentum 0.9, batch {batch}, "
        f"{steps} steps, no augmentation. Without batch norm the standard-init stream roughly "
        "doubles its variance per block (each Kaiming branch adds as much as it receives)."
    )
    if size != "full":
        notes += f" Size '{size}': fewer blocks and steps than the full run."
    return Outcome(verdict_from(checks), measured, figures, notes)


def _plot_variance(out: Path, variances: dict[str, list[float]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, values in variances.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("residual block")
    ax.set_ylabel("output variance (log)")
    ax.set_title("Activation variance with depth at initialization")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out, "variance_vs_block.png")


def _plot_curves(out: Path, curves: dict[str, list[float]]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, losses in curves.items():
        shown = [v if v < 1e3 else float("nan") for v in losses]
        ax.plot(range(1, len(shown) + 1), shown, label=key, lw=1)
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss (batch)")
    ax.set_yscale("log")
    ax.set_title("Training: standard vs zero-initialized residual branches")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out, "training_curves.png")
