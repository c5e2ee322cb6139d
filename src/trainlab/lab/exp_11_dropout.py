"""Experiment 11: dropout's two scalings, its test-time rule, and what it buys.

Dropout (Srivastava et al. 2014) keeps each unit with probability ``1 - p``. *Classic* dropout
trains with ``y = x * m`` and scales at test, ``y = (1 - p) x``; *inverted* dropout trains with
``y = x * m / (1 - p)`` and leaves test time alone. Both make the test output the expectation
of the training output. The expectation is exact for whatever is linear in the mask (the layer
after dropout); through later non-linearities, the scaled test pass is only an approximation of
the average over masks, which Monte-Carlo dropout (Gal & Ghahramani 2016) estimates by
averaging ``K`` stochastic passes.

Evidence. The claim, "dropout on large fully-connected layers improves test accuracy", is one
comparison per scaling (inverted dropout; classic dropout, at full size only) of an MLP with
dropout against the same MLP without it, on paired seeds (within a seed every arm shares the
training subset, initialization and batch order: ``train.seed``), judged by
:func:`trainlab.lab.evidence.compare`: the mean paired test-accuracy difference and its paired-t
95% interval against a minimum effect of :data:`~trainlab.lab.arms.MIN_EFFECT` (0.5 points),
provided the baseline over-fits (train - test accuracy >= :data:`~trainlab.lab.arms.OVERFIT_GAP`,
15 points), else "not reached". Each arm trains with its own learning rate, chosen on a tuning
seed with a held-out validation split (:func:`~trainlab.lab.arms.fit_tuned_arms`), and every arm
trains for as many epochs, enough for the dropout arms to fit their training data too (the paper
trained longer; it also used max-norm, which trainlab's recipe has not). Verdict rule "all"
(:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if either did not hold, else not
reached if either was not reached, else inconclusive if either was, else held. The expectation
of both scalings and the Monte-Carlo convergence are identities (unit tests in
tests/test_lab_regularize.py); their numbers are reported, never evidence. Smoke runs use 2
seeds, which never give "held" or "did not hold".
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

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
from trainlab.lab.data import dataset, with_test_subset
from trainlab.lab.figures import accuracy_bars, comparison_intervals, pyplot, save_figure
from trainlab.lab.runs import at_size, built, generator, initialized, lab_device
from trainlab.regularize.dropout import Dropout

P = 0.5
LR_CENTRE = 0.03  # the middle of each arm's first learning-rate grid (log_grid: 0.003 to 0.3)
# arm -> the recipe's model.dropout
ARMS = {"none": "none", "dropout": f"dropout({P})", "classic": f"dropout({P}, mode='classic')"}
# The paper's scale (issue 17 item 7: full CIFAR-10 with a ResNet, for a GPU): dropout before
# the classifier of He et al. 2016's CIFAR ResNet-20 (widths 16, 32, 64; 3 basic blocks per
# stage; batch norm, no weight decay or augmentation), batches of 128, on all 50,000 training
# and all 10,000 test images of CIFAR-10, 30 epochs (a few minutes per run on one GPU).
PAPER_DEPTH = 3  # residual blocks per stage at the paper's scale
PAPER_BATCH = 128
SIZES = {  # smoke, quick, full, paper
    "draws": (50, 500, 2000, 2000),  # training-mode passes averaged for the reported expectation
    "k_max": (8, 64, 256, 256),  # Monte-Carlo passes (reported)
    "mc_width": (32, 256, 512, 512),
    "arms": (("none", "dropout"), ("none", "dropout"), tuple(ARMS), tuple(ARMS)),
    "model": ("mlp", "mlp", "mlp", "resnet"),  # resnet: dropout before its classifier
    "data": ("fashion-mnist", "fashion-mnist", "fashion-mnist", "cifar10"),
    # the MLP's hidden units, or the ResNet's stage widths (paper)
    "mlp_widths": ("[32, 32]", "[256, 256]", "[1024, 1024]", "[16, 32, 64]"),
    "train_images": (256, 500, 1000, 50_000),
    "test_images": (256, 1000, 5000, 10_000),
    "epochs": (1, 30, 50, 30),  # long enough for the dropout arms to fit their data too
    "seeds": (2, 3, 5, 3),  # paired seeds; 2 (smoke) never decide
}
_FULL, _QUICK, _PAPER = (at_size(SIZES, s) for s in ("full", "quick", "paper"))


def relative_error(a: Tensor, b: Tensor) -> float:
    """``||a - b|| / ||b||`` in float64."""
    return float((a.double() - b.double()).norm() / b.double().norm())


@torch.no_grad()
def expectation_check(x: Tensor, mode: str, draws: int, seed: int) -> dict[str, float]:
    """Average ``draws`` training-mode outputs of one dropout layer and compare with its
    eval output. Each element has variance ``x^2 p / (1 - p)`` (inverted) or
    ``x^2 p (1 - p)`` (classic) around ``x`` resp. ``(1 - p) x``, so the relative error of the
    mean is predicted to be ``sqrt(p / ((1 - p) M))`` in both modes."""
    layer = Dropout(P, mode=mode, generator=generator(seed, "exp11", "expect", mode))
    layer.eval()
    target = layer(x)
    layer.train()
    total = torch.zeros_like(x, dtype=torch.float64)
    for _ in range(draws):
        total += layer(x).double()
    error = relative_error(total / draws, target)
    predicted = math.sqrt(P / ((1 - P) * draws))
    return {"relative_error": error, "predicted": predicted, "ratio": error / predicted}


@torch.no_grad()
def mc_errors(after: nn.Module, x: Tensor, ks: list[int], gen: torch.Generator) -> list[float]:
    """Relative error of the running average of ``max(ks)`` passes of ``after(dropout(x))``
    against the deterministic (eval) pass ``after(x)``, at each ``k``; only the dropout layer
    is random."""
    layer = Dropout(P, generator=gen)
    target = after(x)
    total = torch.zeros_like(target, dtype=torch.float64)
    errors = []
    for k in range(1, max(ks) + 1):
        total += after(layer.train()(x)).double()
        if k in ks:
            errors.append(relative_error(total / k, target))
    return errors


def _mlp_overrides(cfg: dict, seed: int) -> list[str]:
    if cfg["model"] == "resnet":
        return _resnet_overrides(cfg, seed)
    return [
        "data.name=fashion-mnist",
        f"data.subset={cfg['train_images']}",
        "model.kind=mlp",
        f"model.widths={cfg['mlp_widths']}",
        "model.norm=none",
        "augment.train=[]",
        "optim.weight_decay=0.0",
        "diagnostics.every=0",  # not measured here; the hooks only cost time
        "train.eval_every=0",  # the last epoch is tested, which is all the comparison reads
    ] + training_overrides(cfg["epochs"], seed)


def _resnet_overrides(cfg: dict, seed: int) -> list[str]:
    """The paper's scale: a ResNet of ``cfg["mlp_widths"]`` (stage widths) with
    :data:`PAPER_DEPTH` blocks per stage and batch norm, no weight decay or augmentation, on
    ``cfg["train_images"]`` CIFAR-10 images, in batches of :data:`PAPER_BATCH` on
    :func:`~trainlab.lab.runs.lab_device` (CUDA where there is one); an arm's
    ``model.dropout`` acts before the classifier."""
    return [
        f"data.name={cfg['data']}",
        f"data.subset={cfg['train_images']}",
        "model.kind=resnet",
        f"model.depth={PAPER_DEPTH}",
        f"model.widths={cfg['mlp_widths']}",
        "model.norm=batch",
        "augment.train=[]",
        "optim.weight_decay=0.0",
        "diagnostics.every=0",  # not measured here; the hooks only cost time
        "train.eval_every=0",  # the last epoch is tested, which is all the comparison reads
    ] + device_training_overrides(cfg["epochs"], seed, lab_device("paper"), PAPER_BATCH)


@experiment(
    "dropout",
    claim=(
        "Dropout on large fully-connected layers improves the test accuracy of a network that "
        "over-fits its training data."
    ),
    source=(
        "Srivastava et al. 2014, 'Dropout'; Gal & Ghahramani 2016, 'Dropout as a Bayesian "
        "Approximation'; CS231n lecture 'Training Neural Networks' (regularization in practice)"
    ),
    rule=(
        f"A ReLU MLP {_FULL['mlp_widths']}, no weight decay, on {_FULL['train_images']} "
        f"Fashion-MNIST images for {_FULL['epochs']} epochs (quick: {_QUICK['mlp_widths']}, "
        f"{_QUICK['train_images']} images, {_QUICK['epochs']} epochs), with inverted "
        f"dropout(p = {P}) after each hidden layer, and (full size) classic dropout, each "
        "against none, on paired seeds "
        f"({_FULL['seeds']} full, {_QUICK['seeds']} quick); each arm's learning rate tuned on a "
        "tuning seed's held-out 20% (log "
        f"grid of >= 5 points around {LR_CENTRE}, extended past an edge that holds the best). "
        f"One comparison per scaling: {paired_rule('the MLP without dropout')}. The "
        "expectation of the "
        "training output and Monte-Carlo averages are identities, unit-tested and reported, "
        "not evidence. Paper scale (--scale paper, for a GPU): the same arms and comparisons "
        f"with dropout before the classifier of a ResNet {_PAPER['mlp_widths']} "
        f"({PAPER_DEPTH} blocks per stage, batch norm, no weight decay) on all "
        f"{_PAPER['train_images']:,} CIFAR-10 training images and {_PAPER['test_images']:,} "
        f"test images instead of the MLP on Fashion-MNIST, {_PAPER['epochs']} epochs, "
        f"{_PAPER['seeds']} paired seeds."
    ),
    scales=("quick", "full", "paper"),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    draws, n_test, width = cfg["draws"], cfg["test_images"], cfg["mc_width"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    ks = [k for k in (2**i for i in range(20)) if k <= cfg["k_max"]]

    x = torch.rand(256, 1024, generator=generator(seed, "exp11", "x"))
    expect = {mode: expectation_check(x, mode, draws, seed) for mode in ("inverted", "classic")}

    data = with_test_subset(dataset(cfg["data"]), n_test, generator(seed, "exp11", "test"))
    runs, searches = fit_tuned_arms(
        lambda s: _mlp_overrides(cfg, s),
        {name: [f"model.dropout={ARMS[name]}"] for name in cfg["arms"]},
        seeds,
        data,
        log_grid(LR_CENTRE),
    )
    table = accuracy_table(runs, "none")

    # Monte-Carlo convergence: dropout followed by a part that is linear in the mask
    # (one linear layer) and by one that is not (linear -> ReLU -> linear).
    gen = generator(seed, "exp11", "mc")
    linear = built(lambda: nn.Linear(width, 10))
    deep = initialized(
        lambda: nn.Sequential(nn.Linear(width, width), nn.ReLU(), linear), "kaiming", "relu", gen
    )
    inputs = torch.rand(256, width, generator=gen)
    err_linear = mc_errors(linear, inputs, ks, generator(seed, "exp11", "mcl"))
    err_deep = mc_errors(deep, inputs, ks, generator(seed, "exp11", "mcd"))

    comparisons = paired_comparisons(
        runs,
        {
            f"{name} dropout improves test accuracy": (arm, "none")
            for name, arm in (("inverted", "dropout"), ("classic", "classic"))
            if arm in runs
        },
        seeds,
        {"none": overfits(runs, "none")},
    )
    measured = {
        "p": P,
        "train_images": cfg["train_images"],
        "test_images": n_test,
        "mlp_widths": cfg["mlp_widths"],
        "epochs": cfg["epochs"],
        "seeds": seeds,
        "lr": {arm: search.best for arm, search in searches.items()},
        "lr_search": {arm: search.to_dict() for arm, search in searches.items()},
        **table,
        "reported_not_evidence": {
            "draws": draws,
            "expectation": expect,
            "mc_k": ks,
            "mc_error_linear": err_linear,
            "mc_error_nonlinear": err_deep,
        },
    }
    resnet = cfg["model"] == "resnet"
    network = (
        f"ResNet {cfg['mlp_widths']} (dropout before the classifier)"
        if resnet
        else f"MLP {cfg['mlp_widths']}"
    )
    data_name = "CIFAR-10" if resnet else "Fashion-MNIST"
    title = "ResNet on CIFAR-10" if resnet else "MLP on a Fashion-MNIST subset"
    figures = [
        _plot_mc(out, ks, err_linear, err_deep),
        accuracy_bars(out, "accuracy.png", title, runs, lambda arm: "none"),
    ]
    lrs = ", ".join(f"{arm} {search.best:g}" for arm, search in searches.items())
    notes = (
        f"Accuracy: {network} on {cfg['train_images']} {data_name} training "
        f"images (drawn by each seed), {cfg['epochs']} epochs, tested on {n_test} random test "
        f"images; seeds {seeds}; learning rates tuned per arm on seed {seeds[0]} + 10000 with "
        f"20% held out: {lrs}. Reported, not evidence: the mean of "
        f"M = {draws} training-mode passes against the eval output on a 256 x 1024 uniform "
        f"input (both scalings), and Monte-Carlo averages of one dropout layer (p = {P}) on 256 "
        f"random inputs of width {width}, followed by a linear layer (linear in the mask) or by "
        "linear -> ReLU -> linear (not linear): the second converges to the mask average, which "
        "differs from the scaled pass by the weight-scaling approximation's error (its floor)."
    )
    if size == "paper":
        notes += (
            f" Paper scale: the accuracy arms are not the MLP on Fashion-MNIST but a ResNet "
            f"{cfg['mlp_widths']} with {PAPER_DEPTH} basic blocks per stage (model.kind=resnet, "
            "batch norm, no weight decay or augmentation) with the arm's dropout before its "
            f"classifier (model.dropout), on {cfg['train_images']:,} CIFAR-10 training images "
            f"(all of them) and {n_test:,} test images, batches of {PAPER_BATCH}, "
            f"{cfg['epochs']} epochs, {len(seeds)} paired seeds, trained on {lab_device(size)}."
        )
        if not overfits(runs, "none"):
            notes += (
                " The over-fitting regime was not reached at this size: a ResNet on all of "
                "CIFAR-10 need not over-fit by the 15 points the precondition asks."
            )
    elif size != "full":
        notes += (
            f" Size '{size}': narrower MLP, fewer images, epochs and seeds than the full run, "
            "and no classic-dropout arm."
        )
    notes += underfit_note(table, "none", f"{network.split()[0]} without dropout")
    fit = table["train_acc_mean"]
    under = [arm for arm in runs if arm != "none" and fit[arm] < fit["none"] - 0.05]
    if under:
        notes += (
            f" Train accuracy with masks on ({', '.join(f'{a} {fit[a]:.3f}' for a in under)}) "
            f"is below the baseline's {fit['none']:.3f}: a dropout arm may be under-trained."
        )
    if len(seeds) < 3:
        notes += f" Only {len(seeds)} seeds: no comparison can be decided."
    figures.append(
        comparison_intervals(
            out, "comparisons.png", "Dropout against none, paired seeds", comparisons
        )
    )
    return conclude(comparisons, measured, figures, notes)


def _plot_mc(out: Path, ks: list[int], linear: list[float], deep: list[float]) -> str:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    ax.loglog(ks, linear, marker="o", ms=3, label="dropout -> linear (exact in expectation)")
    ax.loglog(ks, deep, marker="s", ms=3, label="dropout -> linear -> ReLU -> linear")
    ax.loglog(ks, [linear[0] / math.sqrt(k) for k in ks], "k--", lw=0.8, label="error(1)/sqrt(K)")
    ax.set(xlabel="Monte-Carlo passes K", ylabel="relative error vs scaled output")
    ax.set_title("Monte-Carlo dropout against the test-time rule")
    ax.legend(fontsize=7)
    return save_figure(fig, out, "mc_error_vs_k.png")
