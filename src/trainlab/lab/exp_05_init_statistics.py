"""Experiment 5: what the initial weight scale does to activations six layers deep.

The lecture's histograms, after Glorot & Bengio 2010 and He et al. 2015. For a layer
``z = W y`` with ``n`` inputs and weights of variance ``sigma^2``, ``Var(z) = n sigma^2 E[y^2]``.
Where the activation is linear for the signal it sees (tanh of a small signal: gain factor
``g = 1``; Glorot & Bengio 2010, sec. 4.2.1) or where ``E[y^2] = Var(z) / 2`` (ReLU, ``g = 1/2``;
He et al. 2015, eq. 10), each layer multiplies the activations' std by ``sqrt(n sigma^2 g)``:

    std_L = std_0 * (n sigma^2 g)^(L / 2).

With tanh and ``sigma = 0.01`` at ``n = 4096`` that factor is 0.64 per layer: collapse. With
``sigma = 0.05`` it is 3.2, the signal is not small and tanh saturates. With Xavier
(``sigma^2 = 1/n``) tanh sees signals of std about 1, not small either; there the prediction is
the variance recursion with ``E[tanh(z)^2]`` taken exactly over ``z ~ N(0, q)`` (the Gaussian
"mean-field" recursion of Poole et al. 2016, by quadrature).

Common random numbers: within a seed every setting multiplies the same standard-normal matrices
by its own ``sigma``, so the settings differ only in scale and activation. ReLU is positively
homogeneous, so its Xavier and Kaiming settings give the same measured-minus-predicted value
from the same draws: one measurement, counted once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from trainlab.init import normal_expectation
from trainlab.lab import evidence
from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.figures import pyplot, save_figure
from trainlab.lab.nets import generator
from trainlab.lab.rules import Rule, Spec

LAYERS = 6
SETTINGS = (  # (label, activation, init spec)
    ("tanh, N(0, 0.01^2)", "tanh", "normal(0.01)"),
    ("tanh, N(0, 0.05^2)", "tanh", "normal(0.05)"),
    ("tanh, Xavier", "tanh", "xavier"),
    ("relu, Xavier", "relu", "xavier"),
    ("relu, Kaiming", "relu", "kaiming"),
)
GAIN_FACTOR = {"tanh": 1.0, "relu": 0.5}  # E[y^2] / Var(z) in the small-signal / ReLU theory
TOLERANCE = 0.1  # decades on std_6 / std_1: a factor 1.26 over five layers (~5% per layer)
SATURATED = 0.99  # |tanh| above this: derivative below 0.02
SATURATED_SHARE = 0.25  # "saturates": at least a quarter of every layer 2-6 has |tanh| > 0.99
HIST_VALUES = 50_000  # activations per histogram panel
SIZES = {  # smoke, quick, full
    "units": (256, 4096, 4096),  # the claim's width: sigma 0.01 and 0.05 are scaled for it
    "samples": (64, 64, 256),
    "seeds": (3, 4, 8),  # init seeds
}
PRIMARY = Spec(
    "tanh Xavier keeps the std the variance recursion predicts",
    ("measured", "predicted"),
    "log10(std_6 / std_1)",
    "linear",
    TOLERANCE,
    0,
)
RULE = Rule(
    design="Six square layers, inputs N(0, 1), biases 0, no training; per init seed the "
    "measured log10(std_6 / std_1) of the activations against the prediction (std_L = std_0 "
    "(n sigma^2 g)^(L/2), g = 1 for tanh's small signal, 1/2 for ReLU; tanh Xavier by the "
    "exact Gaussian variance recursion).",
    primary=PRIMARY,
    secondaries=(
        f"tanh N(0, 0.01^2) collapses as predicted (agreement within {TOLERANCE} decades)",
        "ReLU: measured minus predicted within the tolerance (Xavier halves the variance per "
        "layer, Kaiming keeps it; the same draws, so one comparison)",
        f"tanh N(0, 0.05^2) saturates: the smallest share of |tanh| > {SATURATED} over layers "
        f"2-6 above {SATURATED_SHARE} (fraction scale, minimum effect 0)",
    ),
)


def weight_variance(scheme: str, activation: str, units: int) -> float:
    """``sigma^2`` of the weights ``scheme`` draws for a square layer of ``units`` inputs."""
    if scheme.startswith("normal("):
        return float(scheme[len("normal(") : -1]) ** 2
    if scheme == "xavier":
        return 1.0 / units
    if scheme == "kaiming":
        from trainlab.init import gain

        return gain(activation) ** 2 / units
    raise ValueError(f"no weight variance known for init {scheme!r}")


def small_signal_log10_ratio(units: int, variance: float, gain_factor: float, layers: int) -> float:
    """``log10(std_L / std_0)`` predicted by ``std_L = std_0 (n sigma^2 g)^(L/2)``."""
    return layers / 2 * math.log10(units * variance * gain_factor)


def tanh_second_moment(q: float) -> float:
    """``E[tanh(z)^2]`` for ``z ~ N(0, q)``, in float64."""
    s = math.sqrt(q)
    return normal_expectation(lambda z: np.tanh(s * z) ** 2)


def mean_field_tanh_stds(q1: float, n_sigma2: float, layers: int) -> list[float]:
    """Predicted std of the tanh activations of layers 1..``layers`` when layer 1's
    pre-activation variance is ``q1``: ``q_{l+1} = n sigma^2 E[tanh(z_l)^2]``, ``z_l ~ N(0,
    q_l)`` (activations have mean 0 by symmetry, so their std is ``sqrt(E[tanh^2])``)."""
    q, stds = q1, []
    for _ in range(layers):
        m2 = tanh_second_moment(q)
        stds.append(math.sqrt(m2))
        q = n_sigma2 * m2
    return stds


def saturated_fraction(y: Tensor) -> float:
    """The fraction of activations with ``|y| > SATURATED``."""
    return float((y.abs() > SATURATED).double().mean())


def layer_statistics(units: int, samples: int, seed: int) -> tuple[dict, dict]:
    """Every setting's activations through ``LAYERS`` square layers on the same inputs
    ``N(0, I)``, layer ``l`` of every setting the same standard-normal matrix times that
    setting's ``sigma``. Returns per setting the std, pre-activation std and saturated share of
    each layer, and the first :data:`HIST_VALUES` activations of each layer."""
    gen = generator(seed, "init-statistics", "weights")
    y0 = torch.randn(samples, units, generator=generator(seed, "init-statistics", "input"))
    ys = {label: y0 for label, _, _ in SETTINGS}
    post: dict[str, list[Tensor]] = {label: [] for label in ys}
    stats = {label: {"std": [], "pre_std": [], "saturated": []} for label in ys}
    for _ in range(LAYERS):
        g = torch.randn(units, units, generator=gen)
        for label, act, scheme in SETTINGS:
            z = math.sqrt(weight_variance(scheme, act, units)) * (ys[label] @ g.T)
            ys[label] = torch.tanh(z) if act == "tanh" else torch.relu(z)
            stats[label]["std"].append(float(ys[label].double().std()))
            stats[label]["pre_std"].append(float(z.double().std()))
            stats[label]["saturated"].append(saturated_fraction(ys[label]))
            post[label].append(ys[label].flatten()[:HIST_VALUES].clone())
    return stats, post


def prediction(act: str, scheme: str, units: int, pre_std_1: float) -> list[float]:
    """Predicted ``log10(std_l / std_1)`` of the activations for l = 1..LAYERS."""
    n_sigma2 = units * weight_variance(scheme, act, units)
    if scheme == "xavier" and act == "tanh":  # signal of std ~1: not small; mean-field
        stds = mean_field_tanh_stds(pre_std_1**2, n_sigma2, LAYERS)
        return [math.log10(s / stds[0]) for s in stds]
    return [
        small_signal_log10_ratio(units, n_sigma2 / units, GAIN_FACTOR[act], layer)
        for layer in range(LAYERS)
    ]


def _figure(out, activations: dict[str, list[Tensor]], stats) -> str:
    fig, axes = pyplot().subplots(
        len(SETTINGS), LAYERS, figsize=(2.2 * LAYERS, 1.9 * len(SETTINGS)), squeeze=False
    )
    for row, (label, act, _) in enumerate(SETTINGS):
        for col, y in enumerate(activations[label]):
            ax = axes[row, col]
            values = y.numpy()
            rng = (-1.0, 1.0) if act == "tanh" else (0.0, max(float(values.max()), 1e-12))
            ax.hist(values, bins=60, range=rng, color="C0" if act == "tanh" else "C2")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            ax.set_title(f"layer {col + 1}: std {stats[label]['std'][col]:.2g}", fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("Activations per layer at initialization (one row per setting, first seed)")
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
        "2010, sec. 4.2.1; He et al. 2015, 'Delving Deep into Rectifiers', sec. 2.2 (eq. 10); "
        "Poole et al. 2016 (the Gaussian variance recursion for tanh)"
    ),
    sizes=SIZES,
    rule=RULE,
)
def run(ctx: Context) -> Outcome:
    units, samples = ctx.cfg["units"], ctx.cfg["samples"]
    measured_ratio = {label: [] for label, _, _ in SETTINGS}
    predicted = {label: [] for label, _, _ in SETTINGS}
    saturation, shown = [], {}
    for s in ctx.seeds:
        stats, post = layer_statistics(units, samples, s)
        for label, act, scheme in SETTINGS:
            stds = stats[label]["std"]
            measured_ratio[label].append([math.log10(max(v, 1e-300) / stds[0]) for v in stds])
            predicted[label].append(prediction(act, scheme, units, stats[label]["pre_std"][0]))
        saturation.append(min(stats["tanh, N(0, 0.05^2)"]["saturated"][1:]))
        shown = shown or {"post": post, "stats": stats}

    def agreement(label: str, name: str | None = None) -> evidence.Comparison:
        m, p = [r[-1] for r in measured_ratio[label]], [r[-1] for r in predicted[label]]
        if name is None:
            return PRIMARY.compare(m, p, ctx.seeds)
        return evidence.compare(
            name, PRIMARY.metric, ("measured", "predicted"), m, p, ctx.seeds, TOLERANCE, 0
        )

    primary = agreement("tanh, Xavier")
    secondaries = [
        agreement("tanh, N(0, 0.01^2)", "tanh N(0, 0.01^2) collapses as (n sigma^2)^(L/2)"),
        agreement("relu, Kaiming", "ReLU keeps (Kaiming) or halves (Xavier) the variance"),
        evidence.compare(
            "tanh N(0, 0.05^2) saturates (smallest share |tanh| > 0.99 in layers 2-6)",
            "share saturated",
            ("tanh N(0, 0.05^2)", f"constant {SATURATED_SHARE}"),
            saturation,
            [SATURATED_SHARE] * len(ctx.seeds),
            ctx.seeds,
            0.0,
            +1,
            scale="fraction",
        ),
    ]
    gaps = {
        label: [m[-1] - p[-1] for m, p in zip(measured_ratio[label], predicted[label], strict=True)]
        for label in ("relu, Xavier", "relu, Kaiming")
    }
    measured = {
        "log10_std_ratio_layer6": {k: [r[-1] for r in v] for k, v in measured_ratio.items()},
        "predicted_layer6": {k: [r[-1] for r in v] for k, v in predicted.items()},
        "relu_measured_minus_predicted": gaps,  # the same draws: Xavier's and Kaiming's agree
        "min_saturated_share_layers_2_6": saturation,
        "first_seed_std": {k: v["std"] for k, v in shown["stats"].items()},
    }
    notes = (
        f"{LAYERS} square layers of {units} units, no biases, {samples} inputs N(0, I) per seed "
        "(a seed draws the inputs and every weight). Std relative to layer 1's: the first tanh "
        "under sigma 0.01 already sees std 0.64, not a small signal, so the prediction starts "
        "from its output. The histograms show the first seed."
    )
    return Outcome(
        primary, measured, [_figure(ctx.out, shown["post"], shown["stats"])], notes, secondaries
    )
