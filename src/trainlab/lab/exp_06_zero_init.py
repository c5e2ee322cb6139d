"""Experiment 6: constant initial weights never break the symmetry between a layer's units.

If every unit of a layer starts with the same incoming weights and the same outgoing weights,
each computes the same output and receives the same gradient ``dL/dW_j = delta_j y^T`` with
``delta_j`` equal across ``j``, so the units stay identical for ever: the layer is one unit
wide (cs231n, "Pitfall: all zero initialization").
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import draw_curves, pyplot, save_figure
from trainlab.lab.runs import at_size, generator, initialized_mlp, sgd_curve

INITS = ("zeros", "constant(0.1)", "xavier")
ACTIVATION = "tanh"
IDENTICAL = 1e-6  # relative spread below this: identical up to float32 rounding
BROKEN = 0.1  # relative spread above this: the units have clearly become different
SIZES = {"n": (256, 4096, 20000), "steps": (20, 300, 2000), "hidden": (16, 64, 128)}


def unit_spread(weight: torch.Tensor) -> float:
    """``max_j |W_j - W_0|`` over the rows (units) of ``weight``, relative to ``max |W|``.

    A constant-initialised layer whose units stayed identical scores 0 (or float rounding);
    0/0 (all weights still zero) counts as 0.
    """
    w = weight.detach()
    scale = float(w.abs().max())
    return float((w - w[:1]).abs().max()) / scale if scale > 0 else 0.0


def _train(scheme: str, x, y, widths, steps, batch_size, lr, seed):
    net = initialized_mlp(widths, ACTIVATION, scheme, generator(seed, "zero-init", "weights"))
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    spreads: list[list[float]] = []
    losses = sgd_curve(
        net, x, y, steps=steps, lr=lr, batch=batch_size, nesterov=False,
        gen=generator(seed, "zero-init", "batches"),  # same batches for every init
        after_step=lambda: spreads.append([unit_spread(m.weight) for m in hidden]),
    )  # fmt: skip
    with torch.no_grad():
        accuracy = float((net(x).argmax(1) == y).float().mean())
    return spreads, losses, accuracy


def _figure(out: Path, results) -> str:
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(10, 3.8))
    for i, scheme in enumerate(INITS):
        spreads = torch.tensor(results[scheme]["spread_curve"])
        for layer in range(spreads.shape[1]):
            ax1.semilogy(
                spreads[:, layer].clamp_min(1e-12).numpy(),
                color=f"C{i}",
                ls=("-", "--", ":")[layer % 3],
                label=f"{scheme}, hidden {layer + 1}",
            )
    draw_curves(ax2, {s: results[s]["loss_curve"] for s in INITS})
    ax1.set(xlabel="step", ylabel="max unit difference / max |w| (0 shown as 1e-12)")
    ax2.set(xlabel="step", ylabel="training loss")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=8)
    fig.suptitle(f"Symmetry between units of a {ACTIVATION} MLP under constant vs random init")
    return save_figure(fig, out, "zero_init_symmetry.png")


@experiment(
    "zero-init",
    claim=(
        "With all-zero or constant initial weights every unit of a hidden layer computes and "
        "learns the same thing, so the units stay identical through training; random init "
        "breaks the symmetry."
    ),
    source="cs231n lecture 'Training Neural Networks I', weight initialization (all-zero pitfall)",
    rule=(
        "Train a tanh MLP (two hidden layers) with SGD+momentum from zeros, constant(0.1) and "
        "Xavier on the same batches. Spread of a layer = max over units of max|W_j - W_0| "
        "divided by max|W|. Checks: after training, every hidden layer's spread is <= 1e-6 "
        "under zeros and under constant(0.1), and >= 0.1 under Xavier. All: held; none: did "
        "not hold; else partly held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    n, steps, hidden = at_size(SIZES, size).values()
    x, y, data = image_subset("fashion-mnist", n, generator(seed, "zero-init", "data"), size)
    x = x.flatten(1)
    widths = [x.shape[1], hidden, hidden, int(y.max()) + 1]
    results = {}
    for scheme in INITS:
        spreads, losses, accuracy = _train(scheme, x, y, widths, steps, 64, 0.05, seed)
        results[scheme] = {
            "final_spread_per_layer": spreads[-1],
            "train_accuracy": accuracy,
            "final_loss": losses[-1],
            "spread_curve": spreads,
            "loss_curve": losses,
        }
    checks = {
        f"{s}: every hidden layer's units identical (spread <= {IDENTICAL:g})": max(
            results[s]["final_spread_per_layer"]
        )
        <= IDENTICAL
        for s in INITS[:2]
    }
    checks[f"xavier: every hidden layer's spread >= {BROKEN:g}"] = (
        min(results["xavier"]["final_spread_per_layer"]) >= BROKEN
    )
    figures = [_figure(out, results)]
    stride = max(1, steps // 100)  # the curves are stored thinned; the figure used them all
    for r in results.values():
        r["spread_curve"] = r["spread_curve"][::stride]
        r["loss_curve"] = r["loss_curve"][::stride]
    measured = {
        "data": data,
        "widths": widths,
        "steps": steps,
        "curve_stride": stride,
        "per_init": results,
    }
    return conclude(
        checks,
        measured,
        figures,
        f"MLP {widths} with {ACTIVATION}, SGD lr 0.05 momentum 0.9, batch 64, {steps} steps "
        f"on {data}; biases start at 0.",
    )
