"""Experiment 2: all-positive inputs slow a neuron's gradient descent.

For a neuron ``y = w . x`` and one sample, ``dL/dw_i = (dL/dy) x_i``: when every ``x_i > 0``
(the outputs of a sigmoid layer) all components of the gradient have the sign of ``dL/dy``, so
a per-sample step can only move ``w`` towards the all-positive or the all-negative orthant, and
reaching an optimum in another orthant takes a zig-zag (cs231n; LeCun et al. 1998, "Efficient
BackProp", sec. 4.3, which also shows that a non-zero input mean makes the Hessian
ill-conditioned: one large eigenvalue along the mean, which caps the step size for every other
direction). That the gradient rows share a sign, and so that every per-sample move lies in
quadrant I or III, is an identity of the arithmetic: it is unit-tested
(:func:`single_sign_fraction`, :func:`sgd_step`), not evidence.

Evidence. The claim about optimisation: per-sample SGD on a linear neuron with all-positive
inputs ``sigmoid(z)``, ``z ~ N(0, I)``, needs more steps to reach the optimum than with the same
inputs centred (minus their mean). A paired seed draws the inputs, the optimum ``w*``, the
initial weights ``w0`` and the order of the samples, shared by both arms; the targets are
``w* . x`` without noise, so both arms have the optimum ``w*``. Each arm's learning rate is
tuned on its own (:func:`trainlab.lab.arms.tune_lr`: a log grid of :data:`GRID_POINTS` rates a
quarter-decade apart centred on the arm's ``1 / mean ||x||^2``, extended past an edge that holds
the best) on a tuning seed that is none of the paired seeds, scored by the steps it needs; then
fixed. Metric: ``log(steps)`` to bring ``||w - w*||`` within :data:`TOL` of ``||w0 - w*||`` (the
distance, not the loss, because the two arms' losses are on different scales: the positive arm
starts with the large error along the input mean), a run that does not get there within
:data:`BUDGET` steps counting as the budget. One comparison, positive against centred,
direction +1, paired-t 95% interval against the minimum effect :data:`MIN_EFFECT` = log(1.5)
stated before the run (at least 1.5 times the steps): held if the interval lies above it, did
not hold if below, inconclusive if it contains it (or with fewer than 3 seeds: smoke's 2 decide
nothing); not reached unless every centred run converged within the budget. Verdict rule "all"
(:func:`~trainlab.lab.evidence.overall_verdict`) over this one comparison: its verdict.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from trainlab.lab import evidence
from trainlab.lab.arms import TUNING_SEED, LRSearch, log_grid, tune_lr
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.figures import comparison_intervals, pyplot, save_figure
from trainlab.lab.runs import at_size, generator

ARMS = ("positive", "centred")
TOL = 0.01  # converged: ||w - w*|| <= 1% of ||w0 - w*||
BUDGET = 20_000  # per-sample SGD steps at most
ESCAPE = 1e3  # ||w - w*|| beyond this many times its start: diverged, the run stops
MIN_RATIO = 1.5  # the least slow-down the claim counts: 1.5 times the steps
MIN_EFFECT = math.log(MIN_RATIO)
MIN_SEEDS = 3
GRID_POINTS = 9
GRID_RATIO = 10**0.25  # a quarter-decade between neighbouring rates
SIZES = {  # smoke, quick, full
    "inputs": (4, 16, 16),  # the neuron's fan-in
    "samples": (64, 1024, 4096),
    "seeds": (2, 5, 10),  # paired seeds; 2 (smoke) never decide
}


def single_sign_fraction(x: Tensor, upstream: Tensor) -> Tensor:
    """Fraction of neurons whose weight-gradient row ``upstream_j * x`` has one sign, per
    sample: ``x`` (N, D) inputs, ``upstream`` (N, J) values of dL/dy_j. Returns (N,)."""
    grads = upstream[:, :, None] * x[:, None, :]  # (N, J, D): dL/dW_jd for each sample
    same = (grads > 0).all(-1) | (grads < 0).all(-1)
    return same.double().mean(-1)


def sgd_step(error: list[float], x: list[float], lr: float) -> list[float]:
    """One per-sample SGD step on ``0.5 (w . x - w* . x)^2`` written in the error ``w - w*``:
    ``e <- e - lr (e . x) x``. Every component moves by ``-lr (e . x) x_i``: with ``x > 0`` all
    in the same direction."""
    residual = math.fsum(e * xi for e, xi in zip(error, x, strict=True))
    return [e - lr * residual * xi for e, xi in zip(error, x, strict=True)]


def _norm(v: list[float]) -> float:
    return math.sqrt(math.fsum(e * e for e in v))


def _loss(x: list[list[float]], error: list[float]) -> float:
    """The mean of ``0.5 (e . x)^2`` over the samples: the full-data loss at ``w = w* + e``."""
    residuals = (math.fsum(e * xi for e, xi in zip(error, r, strict=True)) for r in x)
    return math.fsum(0.5 * v * v for v in residuals) / len(x)


def sgd_run(
    x: list[list[float]],
    error0: list[float],
    order: list[int],
    lr: float,
    path: bool = False,
) -> dict:
    """Per-sample SGD from ``w0 = w* + error0`` on the samples ``x[order[t]]``, until
    ``||w - w*|| <= TOL ||w0 - w*||`` or the end of ``order``. Returns ``steps`` (to converge, or
    None), ``diverged`` (the distance left :data:`ESCAPE` times its start, went non-finite, or
    the full-data loss ended above its start), ``distance`` (relative, after each step) and, with
    ``path``, the errors ``e_0, e_1, ...``."""
    start = _norm(error0)
    e, distance, errors = list(error0), [1.0], [list(error0)]
    for step, i in enumerate(order, start=1):
        e = sgd_step(e, x[i], lr)
        d = _norm(e) / start
        distance.append(d)
        if path:
            errors.append(e)
        if not math.isfinite(d) or d > ESCAPE:
            return {"steps": None, "diverged": True, "distance": distance, "path": errors}
        if d <= TOL:
            return {"steps": step, "diverged": False, "distance": distance, "path": errors}
    return {
        "steps": None,
        "diverged": _loss(x, e) > _loss(x, error0),
        "distance": distance,
        "path": errors,
    }


def problem(seed: int, inputs: int, samples: int) -> dict:
    """One paired seed's problem: the all-positive inputs ``sigmoid(z)`` and the same centred,
    the error ``w0 - w*`` (``w*`` and ``w0`` both N(0, I)) and the order of :data:`BUDGET`
    samples, shared by both arms."""
    gen = generator(seed, "not-zero-centred", "problem")
    positive = torch.sigmoid(torch.randn(samples, inputs, generator=gen, dtype=torch.float64))
    w_star = torch.randn(inputs, generator=gen, dtype=torch.float64)
    w0 = torch.randn(inputs, generator=gen, dtype=torch.float64)
    order = torch.randint(samples, (BUDGET,), generator=gen)
    return {
        "x": {"positive": positive.tolist(), "centred": (positive - positive.mean(0)).tolist()},
        "error0": (w0 - w_star).tolist(),
        "order": order.tolist(),
        "input_mean": float(positive.mean()),
    }


def normalised_rate(x: list[list[float]]) -> float:
    """``1 / mean ||x||^2``, the step of normalised LMS: the centre of an arm's grid."""
    return len(x) / math.fsum(math.fsum(v * v for v in r) for r in x)


def tuning_score(run: dict) -> float:
    """What the learning-rate search minimises: the steps to converge; ``inf`` for a diverged
    run; beyond the budget, the budget times how far the run ended from the threshold."""
    if run["diverged"]:
        return math.inf
    if run["steps"] is not None:
        return float(run["steps"])
    return BUDGET * run["distance"][-1] / TOL


def tune_arm(tuning: dict, arm: str) -> LRSearch:
    """The arm's learning rate, searched on the tuning seed's problem."""
    x = tuning["x"][arm]
    grid = log_grid(normalised_rate(x), GRID_POINTS, GRID_RATIO)
    return tune_lr(
        lambda lr: tuning_score(sgd_run(x, tuning["error0"], tuning["order"], lr)),
        grid,
        ratio=GRID_RATIO,
    )


def _curves_figure(out: Path, curves: dict[str, list[list[float]]], lrs: dict) -> str:
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    for arm, colour in zip(ARMS, ("C0", "C2"), strict=True):
        for k, d in enumerate(curves[arm]):
            label = f"{arm} inputs (lr {lrs[arm]:.3g})" if k == 0 else None
            ax.semilogy(range(len(d)), d, color=colour, lw=0.7, alpha=0.7, label=label)
    ax.axhline(TOL, color="k", ls="--", lw=0.8, label=f"threshold {TOL}")
    ax.set(xlabel="per-sample SGD step", ylabel="||w - w*|| / ||w0 - w*||")
    ax.set_title("Distance to the optimum, each paired seed, tuned rate per arm", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, out, "distance_curves.png")


def _zigzag_figure(out: Path, seed: int) -> str:
    """An illustration (not evidence): two weights, optimum (1, -1), start (0, 0), each input
    kind at its normalised rate; the positive arm's moves all lie in quadrant I or III."""
    gen = generator(seed, "not-zero-centred", "zigzag")
    positive = torch.sigmoid(torch.randn(512, 2, generator=gen, dtype=torch.float64))
    order = torch.randint(512, (200,), generator=gen).tolist()
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4.4))
    for ax, arm in zip(axes, ARMS, strict=True):
        x = (positive if arm == "positive" else positive - positive.mean(0)).tolist()
        run = sgd_run(x, [-1.0, 1.0], order, normalised_rate(x), path=True)
        p = [(e[0] + 1.0, e[1] - 1.0) for e in run["path"]]  # w = w* + e
        ax.plot(
            *zip(*p, strict=True), "-o", ms=2, lw=0.8, color="C0" if arm == "positive" else "C2"
        )
        ax.plot(1.0, -1.0, "r*", ms=12, label="optimum w*")
        ax.plot(0, 0, "ks", ms=5, label="start")
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
        ax.set(xlim=(-0.6, 2.0), ylim=(-1.8, 0.6), xlabel="w1", ylabel="w2")
        ax.set_title(f"{arm} inputs: first {len(p) - 1} SGD steps", fontsize=9)
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
        f"Per-sample SGD on a linear neuron ({SIZES['inputs'][2]} inputs) with noiseless "
        "targets w* . x, inputs sigmoid(z), z ~ N(0, I), against the same inputs centred; "
        f"paired seeds ({SIZES['seeds'][2]} full, {SIZES['seeds'][1]} quick) each draw the "
        "inputs, w*, w0 and the sample order for both arms; each arm's "
        f"learning rate tuned on a tuning seed (log grid of {GRID_POINTS} rates a quarter-decade "
        "apart, extended at the edges). Metric: log(steps until ||w - w*|| <= "
        f"{TOL} ||w0 - w*||), {BUDGET} at most. The mean paired difference (positive - centred), "
        f"its paired-t 95% interval above log({MIN_RATIO}) = {MIN_EFFECT:.4f} held, below it did "
        f"not hold, containing it (or fewer than {MIN_SEEDS} seeds) inconclusive; not reached "
        "unless every centred run converged. Overall (rule 'all', one comparison): its verdict. "
        "The sign identities are unit tests, not evidence."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    inputs, samples = cfg["inputs"], cfg["samples"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    tuning = problem(seed + TUNING_SEED, inputs, samples)
    searches = {arm: tune_arm(tuning, arm) for arm in ARMS}
    lrs = {arm: searches[arm].best for arm in ARMS}
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for s in seeds:
        p = problem(s, inputs, samples)
        for arm in ARMS:
            runs[arm].append(sgd_run(p["x"][arm], p["error0"], p["order"], lrs[arm]))
    steps = {arm: [r["steps"] or BUDGET for r in runs[arm]] for arm in ARMS}
    reached = all(r["steps"] is not None for r in runs["centred"])
    comparison = evidence.compare(
        "positive inputs need more SGD steps than centred ones",
        "log(steps to converge)",
        ("positive", "centred"),
        [math.log(v) for v in steps["positive"]],
        [math.log(v) for v in steps["centred"]],
        seeds,
        MIN_EFFECT,
        +1,
        reached=reached,
        min_seeds=MIN_SEEDS,
    )
    measured = {
        **cfg,
        "seeds": seeds,
        "tolerance": TOL,
        "step_budget": BUDGET,
        "min_ratio": MIN_RATIO,
        "min_effect": MIN_EFFECT,
        "lr": lrs,
        "lr_search": {arm: searches[arm].to_dict() for arm in ARMS},
        "steps": steps,
        "not_converged": {arm: sum(r["steps"] is None for r in runs[arm]) for arm in ARMS},
        "diverged": {arm: sum(r["diverged"] for r in runs[arm]) for arm in ARMS},
        "steps_ratio_geometric_mean": math.exp(comparison.difference),
    }
    figures = [
        _curves_figure(out, {arm: [r["distance"] for r in runs[arm]] for arm in ARMS}, lrs),
        _zigzag_figure(out, seed),
        comparison_intervals(
            out, "comparisons.png", "Positive against centred inputs, paired seeds", [comparison]
        ),
    ]
    notes = (
        f"A linear neuron with {inputs} inputs, {samples} samples per seed of sigmoid(z), z ~ "
        "N(0, I) (positive arm) or the same minus their mean (centred arm); targets w* . x "
        "without noise; w* and w0 drawn N(0, I); per-sample SGD without momentum, the sample "
        f"order shared by both arms; seeds {seeds}, tuning seed {seed + TUNING_SEED}. Tuned "
        f"rates: positive {lrs['positive']:.3g}, centred {lrs['centred']:.3g}. The zig-zag "
        "figure (two weights, optimum (1, -1), normalised rates) illustrates; it is not evidence."
    )
    if len(seeds) < MIN_SEEDS:
        notes += f" Only {len(seeds)} seeds: no comparison can be decided."
    return conclude([comparison], measured, figures, notes)
