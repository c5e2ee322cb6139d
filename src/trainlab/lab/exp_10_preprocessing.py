"""Experiment 10: zero-centred, scaled inputs make a classifier easier to optimize.

The lecture's picture: with inputs far from the origin (all pixel values positive), a linear
score ``w . x + b`` swings with any small change of ``w``, because ``x`` is long in every
direction the weights could move; centring (and scaling) the data shrinks ``x`` to its
variation (LeCun et al. 1998, "Efficient BackProp", sec. 4.3). The normalizers compared are
`trainlab.preprocess`'s: raw 0..255, x/255, the mean image (AlexNet), the channel mean (VGG)
and per-channel standardization (ResNet).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import dataset, subset, test_split
from trainlab.lab.figures import draw_curves, pyplot, save_figure
from trainlab.lab.runs import at_size, generator, initialized, sgd_curve
from trainlab.preprocess import compute_stats, make_normalizer

PREPROCESSINGS = ("none", "scale", "mean_image", "channel_mean", "standardize")
CENTRED = ("mean_image", "channel_mean", "standardize")
UNCENTRED = ("none", "scale")
LR_GRID = (0.1, 0.03, 0.01, 0.003, 0.001)  # for inputs on the [0, 1] scale
NOISE = 0.05  # weight perturbation: 5% of each weight matrix's RMS, per entry
DRAWS = 8
SIZES = {  # smoke, quick, full
    "train_images": (512, 5000, 20000),
    "eval_images": (256, 1000, 5000),
    "steps": (5, 150, 800),
    "mlp_hidden": (8, 32, 128),
    "lr_grid": (list(LR_GRID[1:3]), list(LR_GRID[:4]), list(LR_GRID)),
}


def _model(kind: str, dim: int, hidden: int, seed: int) -> nn.Module:
    def make() -> nn.Module:
        if kind == "linear":
            return nn.Sequential(nn.Flatten(), nn.Linear(dim, 10))
        return nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    return initialized(make, "kaiming", "relu", generator(seed, "exp10", kind))


@torch.no_grad()
def _loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    value = float(F.cross_entropy(model(x), y))
    return value if math.isfinite(value) else math.inf


@torch.no_grad()
def weight_sensitivity(model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> float:
    """Mean relative loss change ``|L(W + dW) - L(W)| / L(W)`` over ``DRAWS`` perturbations,
    ``dW_ij = NOISE * rms(W) * N(0, 1)`` for every weight matrix (biases untouched)."""
    base = _loss(model, x, y)
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    saved = [w.clone() for w in weights]
    changes = []
    for _ in range(DRAWS):
        for w, w0 in zip(weights, saved, strict=True):
            noise = torch.randn(w0.shape, generator=gen, dtype=w0.dtype)
            w.copy_(w0 + NOISE * w0.pow(2).mean().sqrt() * noise)
        changes.append(abs(_loss(model, x, y) - base) / base)
    for w, w0 in zip(weights, saved, strict=True):
        w.copy_(w0)
    return float(sum(changes) / len(changes))


def _features(spec: str, x: Tensor, stats) -> Tensor:
    normalize = make_normalizer(
        spec, None if spec in UNCENTRED else stats, shape=tuple(x.shape[1:])
    )
    with torch.no_grad():
        return normalize(x)


@experiment(
    "preprocessing",
    claim=(
        "Zero-centred (and scaled) inputs make a classifier easier to optimize and its loss less "
        "sensitive to small changes of the weights than raw, all-positive inputs."
    ),
    source=(
        "CS231n lecture 'Training Neural Networks' (data preprocessing); LeCun et al. 1998, "
        "'Efficient BackProp', sec. 4.3"
    ),
    rule=(
        "CIFAR-10, a linear softmax classifier and a one-hidden-layer ReLU MLP (no batch norm), "
        "each trained with SGD for the same steps at its best learning rate from a grid (grid "
        "divided by 255^2 for raw pixels). For each model: (1) every centred preprocessing "
        "(mean_image, channel_mean, standardize) ends with a lower held-out loss than every "
        "uncentred one (none, scale); (2) with trained weights, standardize's relative loss "
        f"change under {NOISE:.0%} relative weight noise is smaller than none's and scale's. "
        "Held if all four checks pass, partly if some do."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = {**at_size(SIZES, size), "batch_size": 128}
    n_train, n_eval, steps, hidden, grid, batch = cfg.values()

    data = dataset("cifar10")
    x, y = subset(data.train_images, data.train_labels, n_train, generator(seed, "exp10", "data"))
    xe, ye = test_split(data, n_eval, generator(seed, "exp10", "eval"))
    stats = compute_stats(x)  # the training subset's statistics, never the test split's
    dim = x[0].numel()

    results: dict[str, dict[str, dict]] = {}
    for kind in ("linear", "mlp"):
        results[kind] = {}
        for spec in PREPROCESSINGS:
            xf, xef = _features(spec, x, stats), _features(spec, xe, stats)
            # each gets its best lr of the grid; raw 0..255 inputs make every gradient 255x
            # larger per weight and its effect on the score 255x larger again
            factor = 1 / 255**2 if spec == "none" else 1.0
            tried = []
            for lr in grid:
                model = _model(kind, dim, hidden, seed)
                curve = sgd_curve(
                    model, xf, y, steps=steps, lr=lr * factor, batch=batch,
                    gen=generator(seed, "exp10", "batches"),
                )  # fmt: skip
                loss = _loss(model, xef, ye)
                tried.append({"loss": loss, "lr": lr * factor, "curve": curve, "model": model})
            best = min(tried, key=lambda r: r["loss"])  # the first of equals, as in the grid
            noise = generator(seed, "exp10", "noise")
            results[kind][spec] = {
                **{k: best[k] for k in ("loss", "lr", "curve")},
                "sensitivity": weight_sensitivity(best["model"], xef, ye, noise),
                "sensitivity_at_init": weight_sensitivity(
                    _model(kind, dim, hidden, seed), xef, ye, generator(seed, "exp10", "noise")
                ),
                "accuracy": _accuracy(best["model"], xef, ye),
            }

    checks: dict[str, bool] = {}
    for kind, rows in results.items():
        worst_centred = max(rows[s]["loss"] for s in CENTRED)
        best_uncentred = min(rows[s]["loss"] for s in UNCENTRED)
        checks[f"{kind}: centred inputs converge lower"] = worst_centred < best_uncentred
        checks[f"{kind}: standardized less sensitive to weight noise"] = rows["standardize"][
            "sensitivity"
        ] < min(rows[s]["sensitivity"] for s in UNCENTRED)

    measured = {
        **cfg,
        "weight_noise": NOISE,
        **{
            f"{kind}_{field}": {s: r[field] for s, r in rows.items()}
            for kind, rows in results.items()
            for field in ("loss", "accuracy", "lr", "sensitivity", "sensitivity_at_init")
        },
    }
    figures = [_plot(out, results)]
    notes = (
        f"Held-out loss on {n_eval} test images after {steps} SGD steps (batch {batch}, Nesterov "
        f"momentum 0.9) on {n_train} training images; the best of the learning-rate grid per "
        f"row. Sensitivity: mean over {DRAWS} draws of |L(W+dW)-L(W)|/L(W), dW = {NOISE} x "
        "RMS(W) x N(0,1) per weight matrix, with the trained weights (and, for reference, at "
        "initialization). Statistics from the training subset."
    )
    if size != "full":
        notes += f" Size '{size}': fewer images and steps, a shorter lr grid, a narrower MLP."
    return conclude(checks, measured, figures, notes)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def _plot(out: Path, results: dict[str, dict[str, dict]]) -> str:
    fig, axes = pyplot().subplots(2, 2, figsize=(10, 7))
    for row, (kind, rows) in enumerate(results.items()):
        ax = axes[row][0]
        draw_curves(ax, {f"{s} (lr {r['lr']:.2g})": r["curve"] for s, r in rows.items()}, lw=1)
        ax.set(title=f"{kind}: training loss at the best learning rate", xlabel="SGD step")
        ax.set(ylabel="batch loss", ylim=(0.0, 5.0))  # raw pixels start with losses in the 100s
        ax.legend(fontsize=7)
        ax = axes[row][1]
        specs = list(rows)
        ax.bar(range(len(specs)), [rows[s]["sensitivity"] for s in specs])
        ax.set_xticks(range(len(specs)), specs, rotation=20, fontsize=8)
        ax.set_title(f"{kind}: relative loss change, {NOISE:.0%} weight noise")
        ax.set_yscale("log")
    return save_figure(fig, out, "preprocessing.png")
