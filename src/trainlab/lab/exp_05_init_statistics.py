"""Experiment 5: what the initial weight scale does to activations six layers deep.

The lecture's histograms, after Glorot & Bengio 2010 and He et al. 2015. For a layer
``z = W y`` with ``n`` inputs and weights of variance ``sigma^2``, ``Var(z) = n sigma^2 E[y^2]``.
Where the activation is linear for the signal it sees (tanh of a small signal: ``tanh z ~ z``,
gain factor ``g = 1``; Glorot & Bengio 2010, sec. 4.2.1) or where ``E[y^2] = Var(z) / 2``
(ReLU, ``g = 1/2``; He et al. 2015, eq. 10), each layer multiplies the activations' std by
``sqrt(n sigma^2 g)``, so after ``L`` more layers

    std_L = std_0 * (n sigma^2 g)^(L / 2).

With tanh and ``sigma = 0.01`` at ``n = 4096`` that factor is ``(4096 * 1e-4)^(1/2) = 0.64``
per layer: collapse. With ``sigma = 0.05`` it is 3.2, the signal is not small, tanh saturates
and the small-signal formula does not apply. With Xavier (``sigma^2 = 1/n``) tanh sees signals
of std about 1, not small either; there the prediction is the same variance recursion with
``E[tanh(z)^2]`` taken exactly over ``z ~ N(0, q)`` instead of linearised (the Gaussian
"mean-field" recursion of Poole et al. 2016, computed by quadrature).

Evidence. Five comparisons, each over paired init seeds (a seed draws the input batch and every
weight): four agreements (direction 0) of the measured ``log10(std_6 / std_1)`` of the
activations with the prediction, within :data:`TOLERANCE` decades (stated before the run), and
one directional comparison for saturation (tanh, sigma 0.05): the smallest fraction of
``|tanh| > 0.99`` among layers 2-6 against the constant :data:`SATURATED_SHARE`, min effect 0.
Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if any did
not hold, else inconclusive if any was, else held. Smoke runs use 2 seeds, which decide nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from trainlab.init import normal_expectation
from trainlab.lab import evidence
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.figures import comparison_intervals, pyplot, save_figure
from trainlab.lab.runs import at_size, generator

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
    "seeds": (2, 3, 5),  # init seeds; 2 (smoke) never decide
}


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


def layer_statistics(units: int, samples: int, seed: int) -> tuple[dict, dict]:
    """Every setting's activations through ``LAYERS`` square layers (no biases, no training)
    on the same ``samples`` inputs ``N(0, I)``. Common random numbers: layer ``l`` of every
    setting is the same standard-normal matrix ``G_l`` times that setting's ``sigma`` (exactly
    the distribution its init scheme draws, :func:`weight_variance`), so within a seed the
    settings differ only in scale and activation. Returns, per setting label, the statistics
    of :func:`_add_stats` and the first :data:`HIST_VALUES` activations of each layer (for
    the histograms)."""
    gen = generator(seed, "init-statistics", "weights")
    y0 = torch.randn(samples, units, generator=generator(seed, "init-statistics", "input"))
    ys = {label: y0 for label, _, _ in SETTINGS}
    post: dict[str, list[Tensor]] = {label: [] for label in ys}
    stats: dict[str, dict[str, list[float]]] = {label: _empty_stats() for label in ys}
    for _ in range(LAYERS):
        g = torch.randn(units, units, generator=gen)
        for label, act, scheme in SETTINGS:
            z = math.sqrt(weight_variance(scheme, act, units)) * (ys[label] @ g.T)
            ys[label] = torch.tanh(z) if act == "tanh" else torch.relu(z)
            _add_stats(stats[label], z, ys[label])
            post[label].append(ys[label].flatten()[:HIST_VALUES].clone())
        del g
    return stats, post


def saturated_fraction(y: Tensor) -> float:
    """The fraction of activations with ``|y| > SATURATED``."""
    return float((y.abs() > SATURATED).double().mean())


def _empty_stats() -> dict[str, list[float]]:
    return {"std": [], "mean": [], "pre_activation_std": [], "saturated_fraction": []}


def _add_stats(stats: dict[str, list[float]], z: Tensor, y: Tensor) -> None:
    stats["std"].append(float(y.double().std()))
    stats["mean"].append(float(y.double().mean()))
    stats["pre_activation_std"].append(float(z.double().std()))
    stats["saturated_fraction"].append(saturated_fraction(y))


def _prediction(act: str, scheme: str, units: int, stats) -> list[float]:
    """Predicted ``log10(std_l / std_1)`` of the activations for l = 1..LAYERS."""
    n_sigma2 = units * weight_variance(scheme, act, units)
    if scheme == "xavier" and act == "tanh":  # signal of std ~1: not small; mean-field
        q1 = stats["pre_activation_std"][0] ** 2
        stds = mean_field_tanh_stds(q1, n_sigma2, LAYERS)
        return [math.log10(s / stds[0]) for s in stds]
    return [small_signal_log10_ratio(units, n_sigma2 / units, GAIN_FACTOR[act], layer)
            for layer in range(LAYERS)]  # fmt: skip


def _log_ratios(stds: list[float]) -> list[float]:
    return [math.log10(max(s, 1e-300) / max(stds[0], 1e-300)) for s in stds]


AGREEMENTS = {  # comparison name -> setting
    "tanh N(0, 0.01^2) collapses as (n sigma^2)^(L/2) predicts": "tanh, N(0, 0.01^2)",
    "tanh Xavier keeps the std the variance recursion predicts": "tanh, Xavier",
    "ReLU Xavier halves the variance per layer ((1/2)^L)": "relu, Xavier",
    "ReLU Kaiming keeps the variance (1 per layer)": "relu, Kaiming",
}
SATURATION = "tanh N(0, 0.05^2) saturates (min over layers 2-6 of share |tanh| > 0.99)"


def _figure(out: Path, activations: dict[str, list[Tensor]], stats) -> str:
    fig, axes = pyplot().subplots(
        len(SETTINGS), LAYERS, figsize=(2.2 * LAYERS, 1.9 * len(SETTINGS)), squeeze=False
    )
    for row, (label, act, _) in enumerate(SETTINGS):
        for col, y in enumerate(activations[label]):
            ax = axes[row, col]
            values = y.flatten()[:HIST_VALUES].numpy()
            rng = (-1.0, 1.0) if act == "tanh" else (0.0, max(float(values.max()), 1e-12))
            ax.hist(values, bins=60, range=rng, color="C0" if act == "tanh" else "C2")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            ax.set_title(f"layer {col + 1}: std {stats[label]['std'][col]:.2g}", fontsize=7)
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle("Activations per layer at initialization (one row per setting, first seed)")
    return save_figure(fig, out, "init_histograms.png")


def _std_figure(out: Path, measured: dict[str, list[list[float]]], predicted) -> str:
    fig, ax = pyplot().subplots(figsize=(6.5, 4.2))
    layers = list(range(1, LAYERS + 1))
    for i, (label, _, _) in enumerate(SETTINGS):
        for j, per_seed in enumerate(measured[label]):
            ax.plot(layers, per_seed, "o", color=f"C{i}", ms=3, label=label if j == 0 else None)
        if label in predicted:
            ax.plot(layers, predicted[label], "--", color=f"C{i}", lw=1)
    ax.set(xlabel="layer", ylabel="log10(activation std / layer 1's)")
    ax.set_title("Measured (dots, every seed) against the prediction (dashed)", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, out, "init_std_per_layer.png")


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
    rule=(
        "Six square layers, inputs N(0, 1), biases 0, paired init seeds (5 full, 3 quick). "
        "Four agreement comparisons of the measured log10(std_6 / std_1) of the activations "
        f"with the prediction: held if the paired-t 95% interval of measured - predicted lies "
        f"inside +-{TOLERANCE} decades, did not hold if it lies wholly outside, else "
        "inconclusive. Predictions: tanh std 0.01 and ReLU use std_L = std_0 (n sigma^2 g)^(L/2) "
        "with g = 1 (tanh, small signal) or 1/2 (ReLU): (0.4096)^(5/2), (1/2)^(5/2) for ReLU "
        "Xavier, 1 for ReLU Kaiming; tanh Xavier uses the variance recursion with E[tanh(z)^2] "
        "computed exactly. Saturation (tanh std 0.05, where the small-signal theory does not "
        "apply): the smallest share of |tanh| > 0.99 over layers 2-6 against the constant "
        f"{SATURATED_SHARE}, direction +1, min effect 0 (held if the interval is above it). "
        "Overall: did not hold if any did not hold, else inconclusive if any was, else held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    units, samples = cfg["units"], cfg["samples"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    per_seed: dict[str, list[dict[str, list[float]]]] = {label: [] for label, _, _ in SETTINGS}
    predicted: dict[str, list[list[float]]] = {label: [] for label, _, _ in SETTINGS}
    shown: dict[str, list[Tensor]] = {}
    for s in seeds:
        stats, post = layer_statistics(units, samples, s)
        for label, act, scheme in SETTINGS:
            per_seed[label].append(stats[label])
            predicted[label].append(_prediction(act, scheme, units, stats[label]))
        if s == seeds[0]:
            shown = post
    log_ratio = {label: [_log_ratios(r["std"]) for r in rows] for label, rows in per_seed.items()}

    comparisons = [
        evidence.compare(
            name, "log10(std_6 / std_1)", ("measured", "predicted"),
            [r[-1] for r in log_ratio[label]], [p[-1] for p in predicted[label]],
            seeds, TOLERANCE, 0,
        )
        for name, label in AGREEMENTS.items()
    ]  # fmt: skip
    saturation = [min(r["saturated_fraction"][1:]) for r in per_seed["tanh, N(0, 0.05^2)"]]
    comparisons.append(
        evidence.compare(
            SATURATION, "share saturated", ("tanh N(0, 0.05^2)", f"constant {SATURATED_SHARE}"),
            saturation, [SATURATED_SHARE] * len(seeds), seeds, 0.0, +1,
        )
    )  # fmt: skip

    shown_stats = {label: per_seed[label][0] for label in shown}
    figures = [
        _figure(out, shown, shown_stats),
        _std_figure(out, log_ratio, {label: predicted[label][0] for label, _, _ in SETTINGS}),
        comparison_intervals(
            out, "comparisons.png", "Activation std at init: measured against theory", comparisons
        ),
    ]
    measured = {
        "units": units,
        "samples": samples,
        "layers": LAYERS,
        "seeds": seeds,
        "tolerance_decades": TOLERANCE,
        "saturated_share_threshold": SATURATED_SHARE,
        "per_setting": {
            label: _setting_summary(label, act, scheme, units, per_seed, log_ratio, predicted)
            for label, act, scheme in SETTINGS
        },
        "min_saturated_fraction_layers_2_6_runs": saturation,
    }
    notes = (
        f"{LAYERS} square layers of {units} units, no biases, {samples} input vectors N(0, I) "
        f"per seed; seeds {seeds} (a seed draws the inputs and every weight). Std of the "
        "activations per layer, relative to layer 1's (the first tanh already sees std 0.64 "
        "under sigma 0.01, not a small signal, so the prediction starts from its output). "
        "Per-setting numbers are means over the seeds. The histogram figure shows the first "
        "seed. Both ReLU settings use the same Gaussian matrices at two scales and ReLU is "
        "positively homogeneous, so their measured - predicted differences coincide."
    )
    if size != "full":
        notes += f" Size '{size}': {units} units, {samples} inputs, {len(seeds)} seeds."
    return conclude(comparisons, measured, figures, notes)


def _setting_summary(label, act, scheme, units, per_seed, log_ratio, predicted) -> dict:
    """A setting's numbers for result.json: means over the seeds, per layer."""
    rows = per_seed[label]
    summary = {
        "n_sigma2": units * weight_variance(scheme, act, units),
        "std": _mean_rows([r["std"] for r in rows]),
        "mean": _mean_rows([r["mean"] for r in rows]),
        "pre_activation_std": _mean_rows([r["pre_activation_std"] for r in rows]),
        "log10_std_ratio": _mean_rows(log_ratio[label]),
        "log10_std_ratio_predicted": _mean_rows(predicted[label]),
        "log10_std_ratio_layer6_runs": [r[-1] for r in log_ratio[label]],
    }
    if act == "tanh":  # ReLU has no saturated side
        summary["saturated_fraction"] = _mean_rows([r["saturated_fraction"] for r in rows])
    return summary


def _mean_rows(rows: list[list[float]]) -> list[float]:
    return [math.fsum(col) / len(col) for col in zip(*rows, strict=True)]
