"""Experiment 5: what the initial weight scale does to activations six layers deep.

The lecture's histograms, after Glorot & Bengio 2010 and He et al. 2015. For a layer
``z = W y``, ``Var(z) = n Var(w) E[y^2]``: with ``n Var(w) << 1`` the signal shrinks
geometrically, with ``n Var(w) >> 1`` tanh saturates; for ReLU, ``E[y^2] = Var(z)/2``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.figures import plot_curves, pyplot, save_figure
from trainlab.lab.runs import at_size, generator, initialized_mlp, outputs_of

LAYERS = 6
SETTINGS = (  # (label, activation, init spec)
    ("tanh, N(0, 0.01^2)", "tanh", "normal(0.01)"),
    ("tanh, N(0, 0.05^2)", "tanh", "normal(0.05)"),
    ("tanh, Xavier", "tanh", "xavier"),
    ("relu, Xavier", "relu", "xavier"),
    ("relu, Kaiming", "relu", "kaiming"),
)
SATURATED = 0.99  # |tanh| above this: derivative below 0.02
SIZES = {"units": (256, 4096, 4096), "samples": (64, 256, 2048)}  # smoke, quick, full


def _forward(activation: str, scheme: str, units: int, samples: int, seed: int):
    """Pre-activations and activations of each layer for one setting (no bias, no training)."""
    gen = generator(seed, "init-statistics", scheme)
    net = initialized_mlp([units] * (LAYERS + 1), activation, scheme, gen)
    x = torch.randn(samples, units, generator=generator(seed, "init-statistics", "input"))
    outputs = outputs_of(net, list(net), x, train=False)  # Linear, activation, Linear, ...
    pre, post = outputs[0::2], outputs[1::2]
    with torch.no_grad():  # the net ends in a Linear; its sixth activation is applied here
        post.append(net[1](pre[-1]))
    return pre, post


def _stats(activation: str, pre: list[Tensor], post: list[Tensor]) -> dict[str, list[float]]:
    pre_var = [float(z.var()) for z in pre]
    stats = {
        "std": [float(y.std()) for y in post],
        "mean": [float(y.mean()) for y in post],
        "pre_activation_var": pre_var,
    }
    if activation == "tanh":  # ReLU has no saturated side for positive inputs
        stats["saturated_fraction"] = [float((y.abs() > SATURATED).float().mean()) for y in post]
    stats["pre_activation_var_ratio"] = [  # layer to layer
        b / a if a > 0 else math.nan for a, b in zip(pre_var[:-1], pre_var[1:], strict=True)
    ]
    return stats


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _checks(stats: dict[str, dict[str, list[float]]]) -> dict[str, bool]:
    small, big, xt, rx, rk = (stats[label] for label, _, _ in SETTINGS)
    return {
        "std 0.01 collapses (last-layer std < 1% of first)": small["std"][-1]
        < 0.01 * small["std"][0],
        "std 0.05 saturates (most |tanh| > 0.99 in layers 2-6)": min(big["saturated_fraction"][1:])
        > 0.5,
        "Xavier/tanh keeps every layer's std in [0.2, 1.0]": all(
            0.2 <= s <= 1.0 for s in xt["std"]
        ),
        "ReLU/Xavier halves the pre-activation variance per layer (ratio in [0.4, 0.6])": 0.4
        <= _geomean(rx["pre_activation_var_ratio"])
        <= 0.6,
        "ReLU/Kaiming keeps it (ratio in [0.8, 1.25])": 0.8
        <= _geomean(rk["pre_activation_var_ratio"])
        <= 1.25,
    }


def _figure(out: Path, activations: dict[str, list[Tensor]], stats) -> str:
    fig, axes = pyplot().subplots(
        len(SETTINGS), LAYERS, figsize=(2.2 * LAYERS, 1.9 * len(SETTINGS)), squeeze=False
    )
    for row, (label, act, _) in enumerate(SETTINGS):
        for col, y in enumerate(activations[label]):
            ax = axes[row, col]
            values = y.flatten()[:200_000].numpy()
            rng = (-1.0, 1.0) if act == "tanh" else (0.0, max(float(values.max()), 1e-12))
            ax.hist(values, bins=60, range=rng, color="C0" if act == "tanh" else "C2")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            ax.set_title(f"layer {col + 1}: std {stats[label]['std'][col]:.2g}", fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("Activations per layer at initialization (one row per setting)")
    return save_figure(fig, out, "init_histograms.png")


@experiment(
    "init-statistics",
    claim=(
        "In six tanh layers of 4096 units, weights with std 0.01 make activations collapse to "
        "zero, std 0.05 saturates them at +-1, Xavier keeps them in range; with ReLU, Xavier "
        "halves the variance per layer and Kaiming keeps it."
    ),
    source=(
        "cs231n lecture 'Training Neural Networks I' (activation histograms); Glorot & Bengio "
        "2010; He et al. 2015, 'Delving Deep into Rectifiers', sec. 2.2"
    ),
    rule=(
        "Inputs N(0, 1), biases 0. Five checks: (1) tanh std 0.01: layer-6 std "
        "< 1% of layer-1 std; (2) tanh std 0.05: in every layer 2-6 more than 50% of |tanh| > "
        "0.99; (3) tanh Xavier: every layer's std in [0.2, 1.0]; (4) ReLU Xavier: geometric "
        "mean of the layer-to-layer pre-activation variance ratio in [0.4, 0.6]; (5) ReLU "
        "Kaiming: that ratio in [0.8, 1.25]. All five: held; none: did not hold; else partly "
        "held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    units, samples = cfg["units"], cfg["samples"]
    stats, activations = {}, {}
    for label, act, scheme in SETTINGS:
        pre, activations[label] = _forward(act, scheme, units, samples, seed)
        stats[label] = _stats(act, pre, activations[label])
    stds = {label: [max(s, 1e-30) for s in stats[label]["std"]] for label in stats}
    figures = [
        _figure(out, activations, stats),
        plot_curves(
            out,
            "init_std_per_layer.png",
            stds,
            style={"marker": "o"},
            xlabel="layer",
            ylabel="activation std",
            yscale="log",
        ),
    ]
    return conclude(
        _checks(stats),
        {**cfg, "layers": LAYERS, "per_setting": stats},
        figures,
        f"{LAYERS} layers x {units} units, {samples} input vectors N(0, I), biases 0.",
    )
