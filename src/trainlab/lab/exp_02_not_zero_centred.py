"""Experiment 2: all-positive inputs force a neuron's weight gradients to share one sign.

For a neuron ``y = w . x`` and one sample, ``dL/dw_i = (dL/dy) x_i``: when every ``x_i > 0``
(the outputs of a sigmoid layer) all components of the gradient have the sign of ``dL/dy``, so
a per-sample step can only move ``w`` towards the all-positive or the all-negative orthant, and
reaching an optimum in another orthant takes a zig-zag (cs231n; LeCun et al. 1998, "Efficient
BackProp", sec. 4.3, which also shows that a non-zero input mean makes the Hessian
ill-conditioned, slowing even full-batch descent).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.figures import pyplot, save_figure
from trainlab.lab.runs import at_size, generator

W_STAR = torch.tensor([1.0, -1.0], dtype=torch.float64)
TOLERANCE = 0.01  # converged: ||w - w*|| < 1% of ||w*||
BUDGET = 5000  # SGD steps at most
SIZES = {"samples": (64, 2048, 20000), "repeats": (4, 32, 200)}  # smoke, quick, full


def _inputs(n: int, dim: int, gen: torch.Generator, spread: float = 1.0) -> dict[str, Tensor]:
    """Sigmoid outputs ``sigmoid(spread z)``, z ~ N(0, I) (all positive), and the same values
    minus their mean (zero-centred)."""
    positive = torch.sigmoid(torch.randn(n, dim, generator=gen, dtype=torch.float64) * spread)
    return {"positive": positive, "zero-centred": positive - positive.mean(0)}


def single_sign_fraction(x: Tensor, upstream: Tensor) -> Tensor:
    """Fraction of neurons whose weight-gradient row ``upstream_j * x`` has one sign, per
    sample: ``x`` (N, D) inputs, ``upstream`` (N, J) values of dL/dy_j. Returns (N,)."""
    grads = upstream[:, :, None] * x[:, None, :]  # (N, J, D): dL/dW_jd for each sample
    same = (grads > 0).all(-1) | (grads < 0).all(-1)
    return same.double().mean(-1)


def _sign_part(samples: int, seed: int) -> dict[str, float]:
    """Part 1: a linear layer (64 -> 32) under a squared loss to random targets."""
    gen = generator(seed, "not-zero-centred", "layer")
    weight = torch.randn(32, 64, generator=gen, dtype=torch.float64) / 8.0
    targets = torch.randn(samples, 32, generator=gen, dtype=torch.float64)
    result = {}
    for kind, x in _inputs(samples, 64, gen).items():
        upstream = x @ weight.T - targets  # dL/dy for L = 0.5 ||y - t||^2
        per_sample = single_sign_fraction(x, upstream)
        batch_grad = upstream.T @ x / samples  # one full-batch gradient, for contrast
        batch_same = (batch_grad > 0).all(-1) | (batch_grad < 0).all(-1)
        result[kind] = {
            "per_sample_single_sign_fraction": float(per_sample.mean()),
            "full_batch_single_sign_fraction": float(batch_same.double().mean()),
        }
    return result


def _sgd_path(x: Tensor, steps: int, gen: torch.Generator) -> tuple[Tensor, int | None]:
    """Per-sample SGD on ``0.5 (w . x - w* . x)^2`` from ``w = 0``; lr = 1 / mean ||x||^2
    (normalised LMS, stable for both inputs). Returns the path and the steps to converge."""
    lr = 1.0 / float((x**2).sum(1).mean())
    w = torch.zeros(2, dtype=torch.float64)
    path, converged = [w.clone()], None
    order = torch.randint(len(x), (steps,), generator=gen)
    for step, i in enumerate(order.tolist(), start=1):  # scalar steps: 2 weights
        residual = float((w - W_STAR) @ x[i])
        w = w - lr * residual * x[i]
        path.append(w.clone())
        if float((w - W_STAR).norm()) < TOLERANCE * float(W_STAR.norm()):
            converged = step
            break
    return torch.stack(path), converged


def _same_sign_moves(path: Tensor) -> float:
    """Fraction of steps whose two components move in the same direction (I/III quadrant)."""
    moves = path[1:] - path[:-1]
    moving = moves.abs().sum(1) > 0
    return float(((moves[:, 0] * moves[:, 1]) > 0)[moving].double().mean())


def _toy(samples: int, repeats: int, spread: float, seed: int) -> dict:
    """Part 2 for one input spread: median steps to converge over ``repeats`` SGD runs (each a
    different sample order), the move statistics and the first run's path (for the figure)."""
    toy = _inputs(samples, 2, generator(seed, "not-zero-centred", "toy", str(spread)), spread)
    result = {}
    for kind, x in toy.items():
        runs = [
            _sgd_path(x, BUDGET, generator(seed, "not-zero-centred", "sgd", r))
            for r in range(repeats)
        ]
        steps = torch.tensor([s or BUDGET for _, s in runs], dtype=torch.float64)
        path, first_steps = runs[0]
        result[kind] = {
            "median_steps": float(steps.median()),
            "mean_steps": float(steps.mean()),
            "not_converged": sum(s is None for _, s in runs),
            "same_sign_move_fraction": _same_sign_moves(path[: (first_steps or BUDGET) + 1]),
            "input_mean": x.mean(0).tolist(),
            "path": path,
        }
    result["steps_ratio_positive_over_centred"] = (
        result["positive"]["median_steps"] / result["zero-centred"]["median_steps"]
    )
    return result


def _figure(out: Path, paths: dict[str, Tensor], shown: int) -> str:
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4.4))
    for ax, (kind, path) in zip(axes, paths.items(), strict=True):
        p = path[: shown + 1].numpy()
        ax.plot(p[:, 0], p[:, 1], "-o", ms=2, lw=0.8, color="C0" if kind == "positive" else "C2")
        ax.plot(*W_STAR.numpy(), "r*", ms=12, label="optimum w*")
        ax.plot(0, 0, "ks", ms=5, label="start")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
        ax.set(xlim=(-0.6, 2.0), ylim=(-1.8, 0.6), xlabel="w1", ylabel="w2")
        ax.set_title(f"{kind} inputs: first {shown} SGD steps")
        ax.legend(fontsize=8, loc="upper right")
    return save_figure(fig, out, "zigzag_paths.png")


@experiment(
    "not-zero-centred",
    claim=(
        "When a neuron's inputs are all positive (e.g. sigmoid outputs), the gradients of its "
        "weights all share one sign, so gradient descent zig-zags towards an optimum in another "
        "orthant and converges more slowly than with zero-centred inputs."
    ),
    source=(
        "cs231n lecture 'Training Neural Networks I' (sigmoid: outputs not zero-centred); "
        "LeCun et al. 1998, 'Efficient BackProp', sec. 4.3"
    ),
    rule=(
        "Checks: (1) per sample, 100% of neurons have a single-sign weight gradient with "
        "positive inputs and < 5% with the same inputs centred; (2) in per-sample SGD on a "
        "two-weight neuron with optimum (1, -1), 100% of positive-input moves change w1 and w2 "
        "in the same direction and < 75% of centred-input moves do; (3) positive inputs need "
        ">= 2x the SGD steps of centred inputs to reach within 1% of the optimum (median over "
        "sample orders; not converging within the budget counts as the budget). Inputs are "
        "sigmoid(z), z ~ N(0, I). All: held; none: did not hold; "
        "else partly held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    samples, repeats = at_size(SIZES, size).values()
    signs = _sign_part(samples, seed)
    toys = {spread: _toy(samples, repeats, spread, seed) for spread in (1.0, 2.0)}
    main = toys[1.0]
    checks = {
        "per-sample gradients share a sign: 100% positive, < 5% centred": (
            signs["positive"]["per_sample_single_sign_fraction"] == 1.0
            and signs["zero-centred"]["per_sample_single_sign_fraction"] < 0.05
        ),
        "SGD moves in quadrant I/III: 100% positive, < 75% centred": (
            main["positive"]["same_sign_move_fraction"] == 1.0
            and main["zero-centred"]["same_sign_move_fraction"] < 0.75
        ),
        "positive inputs need >= 2x the steps (median)": main["steps_ratio_positive_over_centred"]
        >= 2.0,
    }
    paths = {kind: main[kind]["path"] for kind in ("positive", "zero-centred")}
    shown = min(max(len(p) - 1 for p in paths.values()), 200)
    figures = [_figure(out, paths, shown)]
    for toy in toys.values():
        for kind in ("positive", "zero-centred"):
            del toy[kind]["path"]
    measured = {
        "gradient_signs": signs,
        "toy": {"sigmoid(z)": toys[1.0], "sigmoid(2z)": toys[2.0]},
        "toy_repeats": repeats,
        "step_budget": BUDGET,
    }
    return conclude(
        checks,
        measured,
        figures,
        f"Inputs: sigmoid(z), z ~ N(0, I), {samples} samples; centred = minus the mean. "
        "Toy: noiseless targets w* . x, per-sample SGD from w = 0 with lr = 1 / mean "
        "||x||^2 (each input kind gets its own normalised step, so the comparison is not "
        f"one of step size); median over {repeats} sample orders. The rule uses "
        "sigmoid(z); sigmoid(2z) (wider spread, better conditioned) is reported alongside.",
    )
