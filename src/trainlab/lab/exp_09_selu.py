"""Experiment 9: a deep SELU network normalizes itself (Klambauer et al. 2017).

SELU's ``alpha ~ 1.6733`` and ``lambda ~ 1.0507`` are chosen so that, with LeCun-normal
weights, the map from one layer's (mean, variance) to the next has the attracting fixed point
(0, 1). ReLU with Kaiming weights (He et al. 2015) keeps the second moment but not the mean:
every ReLU output is positive.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import train_subset
from trainlab.lab.figures import draw_curves, plot_curves, pyplot, save_figure
from trainlab.lab.numbers import loss_summary
from trainlab.lab.runs import at_size, generator, initialized, outputs_of, sgd_curve
from trainlab.models import build_model
from trainlab.preprocess import compute_stats, make_normalizer
from trainlab.recipe import ModelConfig

MEAN_TOL = 0.1  # "near zero mean": |mean| <= 0.1 at every layer
STD_RANGE = (0.8, 1.2)  # "near unit variance": std within this range at every layer
TRAINS = 0.5  # "trains": final loss below half the chance-level loss ln(10)
NETS = {"selu": ("selu", "lecun_normal"), "relu": ("relu", "kaiming")}
SIZES = {  # smoke, quick, full
    "depth": (4, 32, 32),
    "width": (16, 128, 256),
    "steps": (5, 200, 1000),
    "train_images": (256, 5000, 20000),
}


def _mlp(activation: str, scheme: str, depth: int, width: int, seed: int, normalize: nn.Module):
    cfg = ModelConfig(kind="mlp", widths=[width] * depth, activation=activation, norm="none")
    make = lambda: build_model(cfg, (1, 28, 28), 10, normalize)  # noqa: E731
    return initialized(make, scheme, activation, generator(seed, "exp09", "init"))


def _activations(model: nn.Module) -> list[nn.Module]:
    """The non-linearities of the MLP: every module of ``features`` that is not a Linear, a
    placeholder (Identity) or the Flatten."""
    return [m for m in model.features if not isinstance(m, nn.Linear | nn.Identity | nn.Flatten)]


def layer_stats(model: nn.Module, x: Tensor) -> tuple[list[float], list[float]]:
    """Mean and std (over samples and units) of each hidden activation on the batch ``x``."""
    outputs = [out.double() for out in outputs_of(model, _activations(model), x, train=False)]
    return [float(h.mean()) for h in outputs], [float(h.std()) for h in outputs]


@experiment(
    "selu",
    claim=(
        "A deep fully-connected network with SELU activations and LeCun-normal weights keeps its "
        "activations near zero mean and unit variance through every layer and trains without "
        "batch norm, better than the same ReLU network with Kaiming weights."
    ),
    source="Klambauer et al. 2017, 'Self-Normalizing Neural Networks'",
    rule=(
        "Fashion-MNIST, standardized per channel, an MLP of 32 equal hidden layers without any "
        f"normalization: (1) SELU: every hidden layer's |mean| <= {MEAN_TOL} and std in "
        f"[{STD_RANGE[0]}, {STD_RANGE[1]}] at initialization; (2) SELU trains: mean training loss "
        f"over the last 10% of steps < {TRAINS} x ln(10); (3) that loss is <= ReLU's after the "
        "same SGD steps. Held if all pass, partly if some do."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = {**at_size(SIZES, size), "lr": 0.01, "batch_size": 128}
    depth, width, steps, n_train, lr, batch = cfg.values()

    x, y = train_subset("fashion-mnist", n_train, generator(seed, "exp09", "data"))
    normalize = make_normalizer("standardize", compute_stats(x))
    probe = x[:512]

    stats: dict[str, tuple[list[float], list[float]]] = {}
    curves: dict[str, list[float]] = {}
    for name, (activation, scheme) in NETS.items():
        model = _mlp(activation, scheme, depth, width, seed, normalize)
        stats[name] = layer_stats(model, probe)
        curves[name] = sgd_curve(
            model, x, y, steps=steps, lr=lr, batch=batch, gen=generator(seed, "exp09", "batches")
        )

    selu_means, selu_stds = stats["selu"]
    losses = loss_summary(curves)
    final = losses["final_train_loss"]
    chance = float(torch.log(torch.tensor(10.0)))
    checks = {
        "selu: every layer near zero mean": max(abs(m) for m in selu_means) <= MEAN_TOL,
        "selu: every layer near unit std": all(
            STD_RANGE[0] <= s <= STD_RANGE[1] for s in selu_stds
        ),
        "selu: trains without batch norm": final["selu"] < TRAINS * chance,
        "selu: trains at least as well as relu": final["selu"] <= final["relu"],
    }
    measured = {
        **cfg,
        "max_abs_mean": {k: max(abs(m) for m in v[0]) for k, v in stats.items()},
        "std_range": {k: [min(v[1]), max(v[1])] for k, v in stats.items()},
        "last_layer_mean": {k: v[0][-1] for k, v in stats.items()},
        "last_layer_std": {k: v[1][-1] for k, v in stats.items()},
        "initial_train_loss": {k: v[0] for k, v in curves.items()},
        **losses,
    }
    figures = [
        _plot_stats(out, stats),
        plot_curves(
            out,
            "training_curves.png",
            curves,
            hide_above=1e3,
            xlabel="SGD step",
            ylabel="training loss (batch)",
            yscale="log",
            title="Deep MLP without batch norm: SELU vs ReLU",
        ),
    ]
    notes = (
        f"{depth} hidden layers of {width} units, no batch norm, no dropout; statistics at "
        f"initialization on 512 training images; SGD lr {lr}, Nesterov momentum 0.9, batch "
        f"{batch}, {steps} steps on {n_train} images. ReLU's mean is positive by construction "
        "(its std is preserved by Kaiming's gain)."
    )
    if size != "full":
        notes += f" Size '{size}': narrower layers and fewer steps than the full run."
    return conclude(checks, measured, figures, notes)


def _plot_stats(out: Path, stats: dict[str, tuple[list[float], list[float]]]) -> str:
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.6))
    for i, (what, level) in enumerate((("mean", 0), ("std", 1))):
        draw_curves(axes[i], {name: s[i] for name, s in stats.items()}, marker="o", ms=3)
        axes[i].axhline(level, color="gray", lw=0.5)
        axes[i].set(xlabel="hidden layer", title=f"activation {what} per layer")
        axes[i].legend(fontsize=8)
    return save_figure(fig, out, "layer_stats.png")
