"""Experiment 2: all-positive inputs slow a neuron's gradient descent.

For a neuron ``y = w . x`` and one sample, ``dL/dw_i = (dL/dy) x_i``: when every ``x_i > 0``
(the outputs of a sigmoid layer) all components of the gradient have the sign of ``dL/dy``, so
a per-sample step moves ``w`` only towards the all-positive or the all-negative orthant, and
reaching an optimum in another orthant takes a zig-zag (cs231n; LeCun et al. 1998, "Efficient
BackProp", sec. 4.3, which also shows that a non-zero input mean makes the Hessian
ill-conditioned). That the gradient rows share a sign is an identity, unit-tested
(:func:`single_sign_fraction`, :func:`sgd_step`), not evidence.

The evidence is about optimisation: per-sample SGD (the engine's step, squared error) on a
linear neuron with inputs ``sigmoid(z)``, ``z ~ N(0, I)``, against the same inputs centred. A
paired seed draws the inputs, the optimum ``w*``, the start ``w0`` and the sample order, shared
by both arms; the targets are ``w* . x`` without noise. The metric is the number of steps until
``||w - w*|| <= TOL ||w0 - w*||`` (the distance, not the loss: the arms' losses are on
different scales); a run that does not get there within the budget counts as the budget, a
lower bound.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.evidence import capped_counts
from trainlab.lab.figures import pyplot, save_figure
from trainlab.lab.loop import train
from trainlab.lab.nets import built, generator
from trainlab.lab.rules import Rule, Spec
from trainlab.lab.tuning import log_grid, recheck, tune_lr

ARMS = ("positive", "centred")
TOL = 0.01  # converged: ||w - w*|| <= 1% of ||w0 - w*||
ESCAPE = 1e3  # ||w - w*|| beyond this many times its start: diverged, the run stops
GRID_RATIO = 10**0.25  # a quarter-decade between neighbouring rates
SIZES = {  # smoke, quick, full
    "inputs": (4, 16, 16),  # the neuron's fan-in
    "samples": (64, 1024, 4096),
    "budget": (500, 3000, 20000),  # per-sample steps at most
    "grid": (5, 7, 7),  # rates in each arm's first grid, a quarter-decade apart
    "seeds": (3, 6, 10),
}
PRIMARY = Spec(
    "positive inputs need more SGD steps than centred ones",
    ("positive", "centred"),
    "steps to converge",
    "log",
    math.log(1.5),
    +1,
)
RULE = Rule(
    design="Per-sample SGD without momentum (the engine's step, loss (w . x - w* . x)^2 / 2) on "
    "a linear neuron with inputs sigmoid(z), z ~ N(0, I), against the same inputs minus their "
    "mean; a paired seed draws inputs, w*, w0 and the sample order for both arms. Metric: "
    f"steps until ||w - w*|| <= {TOL} ||w0 - w*||; a run not converged within the budget "
    "counts as the budget (a lower bound: where that could have produced the verdict, it is "
    f"not reached); a run whose distance grows past {ESCAPE:g} times its start, or whose loss "
    "ends above its start, diverged.",
    primary=PRIMARY,
    preconditions=("every centred run converged within the budget",),
    tuning="each arm's on the tuning seeds, a log grid a quarter-decade apart centred on "
    "1 / mean ||x||^2 (the normalised LMS step), extended past an edge holding the best; "
    "score: steps to converge (the budget times the distance left if it did not; inf if it "
    "diverged). The verdict is re-checked with each arm at its neighbouring rates.",
)


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


def half_squared(output: Tensor, target: Tensor) -> Tensor:
    return 0.5 * (output.squeeze(1) - target).pow(2).mean()


def problem(seed: int, inputs: int, samples: int) -> dict:
    """One paired seed's problem: inputs ``sigmoid(z)`` (and the same centred), ``w*`` and
    ``w0`` (both N(0, I)), float64, shared by both arms."""
    gen = generator(seed, "not-zero-centred", "problem")
    positive = torch.sigmoid(torch.randn(samples, inputs, generator=gen, dtype=torch.float64))
    w_star = torch.randn(inputs, generator=gen, dtype=torch.float64)
    w0 = torch.randn(inputs, generator=gen, dtype=torch.float64)
    return {
        "x": {"positive": positive, "centred": positive - positive.mean(0)},
        "w_star": w_star,
        "w0": w0,
        "seed": seed,
    }


def sgd_run(p: dict, arm: str, lr: float, budget: int, every: int = 10) -> dict:
    """Per-sample SGD from ``w0`` through the engine's step until ``||w - w*|| <= TOL ||w0 -
    w*||`` or ``budget`` steps: ``steps`` (None if not converged), ``diverged`` and the relative
    distance every ``every`` steps. The sample order comes from the seed, the same in both
    arms."""
    x, w_star = p["x"][arm], p["w_star"]
    model = built(lambda: nn.Linear(len(w_star), 1, bias=False, dtype=torch.float64))
    with torch.no_grad():
        model.weight.copy_(p["w0"][None])
    start = float((p["w0"] - w_star).norm())
    distance, state = [1.0], {"escaped": False}

    def probe(step: int, _loss: float) -> bool:
        d = float((model.weight[0].detach() - w_star).norm()) / start
        if step % every == 0:
            distance.append(d)
        state["escaped"] = not d <= ESCAPE  # NaN escapes too
        return d <= TOL or state["escaped"]

    opt = torch.optim.SGD(model.parameters(), lr=lr)
    trained = train(
        model,
        opt,
        x,
        x @ w_star,
        batch=1,
        steps=budget,
        probe=probe,
        gen=generator(p["seed"], "not-zero-centred", "order"),
        loss=half_squared,
    )
    final = float((model.weight[0].detach() - w_star).norm()) / start
    converged = trained.stopped and not state["escaped"]
    with torch.no_grad():
        ended_above = bool(
            half_squared(model(x), x @ w_star) > half_squared(x @ p["w0"][:, None], x @ w_star)
        )
    return {
        "steps": len(trained.losses) if converged else None,
        "diverged": trained.diverged or state["escaped"] or (not converged and ended_above),
        "final_distance": final,
        "distance": distance,
    }


def tuning_score(run: dict, budget: int) -> float:
    """Steps to converge; the budget times how far the run ended from the threshold if it did
    not; ``inf`` if it diverged."""
    if run["diverged"]:
        return math.inf
    return float(run["steps"]) if run["steps"] is not None else budget * run["final_distance"] / TOL


def _curves_figure(out, curves: dict[str, list[list[float]]], lrs: dict, every: int) -> str:
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    for arm, colour in zip(ARMS, ("C0", "C2"), strict=True):
        for k, d in enumerate(curves[arm]):
            label = f"{arm} inputs (lr {lrs[arm]:.3g})" if k == 0 else None
            ax.semilogy(
                [every * i for i in range(len(d))], d, color=colour, lw=0.7, alpha=0.7, label=label
            )
    ax.axhline(TOL, color="k", ls="--", lw=0.8, label=f"threshold {TOL}")
    ax.set(xlabel="per-sample SGD step", ylabel="||w - w*|| / ||w0 - w*||")
    ax.set_title("Distance to the optimum, each paired seed, tuned rate per arm", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, out, "distance_curves.png")


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
    sizes=SIZES,
    rule=RULE,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    budget = cfg["budget"]
    problems = {s: problem(s, cfg["inputs"], cfg["samples"]) for s in ctx.seeds + ctx.tuning_seeds}

    @functools.cache
    def measure(arm: str, lr: float, seed: int) -> dict:
        return sgd_run(problems[seed], arm, lr, budget)

    searches = {}
    for arm in ARMS:
        x = problems[ctx.tuning_seeds[0]]["x"][arm]
        centre = len(x) / float(x.pow(2).sum())  # 1 / mean ||x||^2
        grid = log_grid(centre, cfg["grid"], GRID_RATIO)
        score = lambda lr, s, a=arm: tuning_score(measure(a, lr, s), budget)  # noqa: E731
        searches[arm] = tune_lr(score, grid, ctx.tuning_seeds, ratio=GRID_RATIO)
    lrs = {arm: searches[arm].best for arm in ARMS}

    def decide(rates: dict[str, float]):
        paired = {a: [measure(a, rates[a], s) for s in ctx.seeds] for a in ARMS}
        (pos, pos_capped), (cen, cen_capped) = (
            capped_counts(paired[a], budget, "steps") for a in ARMS
        )
        reached = all(r["steps"] is not None for r in paired["centred"])
        return PRIMARY.compare(pos, cen, ctx.seeds, reached, capped=(pos_capped, cen_capped))

    primary = recheck(decide, lrs, searches)
    paired = {a: [measure(a, lrs[a], s) for s in ctx.seeds] for a in ARMS}
    measured = {
        "steps": {a: [r["steps"] for r in rows] for a, rows in paired.items()},
        "diverged": {a: sum(r["diverged"] for r in rows) for a, rows in paired.items()},
        "input_mean": float(problems[ctx.seeds[0]]["x"]["positive"].mean()),
    }
    curves = {a: [r["distance"] for r in rows] for a, rows in paired.items()}
    figures = [_curves_figure(ctx.out, curves, lrs, 10)]
    notes = (
        "Targets w* . x without noise; the sample order is a fresh permutation each epoch, the "
        f"same in both arms (steps None: not converged within {budget})."
    )
    return Outcome(primary, measured, figures, notes, searches=searches)
