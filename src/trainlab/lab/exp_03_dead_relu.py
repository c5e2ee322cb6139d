"""Experiment 3: large learning rates kill ReLUs; Leaky ReLU and ELU units do not die.

A ReLU unit whose pre-activation is negative for every input outputs 0 and passes no gradient
to its weights, so nothing can revive it: it is *dead*. A large update can push a unit's bias
and weights there (cs231n: "as much as 40% of your network can be dead" with a high learning
rate). Leaky ReLU (Maas et al. 2013) keeps a slope of 0.01 for negative inputs and ELU (Clevert
et al. 2016) one of ``exp(x)``, so the same unit still gets a gradient and can come back.

Dead is decided by recovery, the same test for every activation: a unit is *silent* at a
checkpoint when its pre-activation is not positive on any probe input; it is *dead* at a
checkpoint when it is silent there and at every later checkpoint to the end of training
(:func:`dead_by_recovery`). A Leaky ReLU unit that is silent for a while and then comes back
is not dead; one that stays silent is, whatever its slope. The number each comparison uses is
the fraction dead at the half-way checkpoint: silent through the whole second half.

Learning rates. Each arm's rate is swept on a tuning seed (not a paired seed) over a log grid
of :data:`GRID_POINTS` points :data:`GRID_RATIO` apart, extended upwards until a run diverges
(:func:`trainlab.lab.arms.diverged`: a non-finite loss or a loss ending above its start), at
most ``max_up`` points (6 at full size); the divergence edge is the smallest rate that diverged. The
"high" rate of each activation is fixed from its own sweep before the paired seeds run: the
largest rate below its own edge that did not diverge (ReLU's, Leaky ReLU's, ELU's: comparing
them at ReLU's rate would compare a stable net with one past its edge, where ELU diverges
first); the "low" rate is :data:`LOW_FACTOR` times ReLU's high rate.

Evidence. Three comparisons on paired seeds (within a seed every arm shares the data, the
initial weights and the batch order), each the mean paired difference of dead fractions with
its paired-t 95% interval against a minimum effect of :data:`MIN_EFFECT` (5 points), claimed
direction +1 (:func:`trainlab.lab.evidence.compare`): (1) ReLU at the high rate minus ReLU at
the low rate: many ReLU units die at a high rate; (2) ReLU minus Leaky ReLU and (3) ReLU minus
ELU, each at its own high rate, "not reached" unless ReLU's mean dead fraction rose by at least
:data:`MIN_EFFECT` from the low rate to the high one (the regime the claim is about). A paired
run that diverged counts against the claim: dead fraction 0 for ReLU at the high rate, 1 for
the arm ReLU is compared with. Verdict rule "all"
(:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if any did not hold, else not
reached if any was not reached, else inconclusive if any was, else held. SGD without momentum,
Adam and hidden biases initialised at 0.01 (the lecture's remedy, which it calls of unclear
benefit) are measured on the same seeds at their own largest stable rate (the bias arm at the
reference's high rate) and reported without a comparison. Smoke runs use 2 seeds, which never
give "held" or "did not hold".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.lab import evidence
from trainlab.lab.arms import TUNING_SEED, diverged, final_loss, log_grid
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import comparison_intervals, pyplot, save_figure
from trainlab.lab.numbers import mean_std
from trainlab.lab.runs import (
    at_size,
    generator,
    initialized_mlp,
    intra_op_threads,
    outputs_of,
    step_batches,
)

MOMENTUM = 0.9
MIN_EFFECT = 0.05  # 5 points of dead units: fewer would not change what a practitioner does
GRID_POINTS = 5
GRID_RATIO = 10**0.25  # four points a decade: the dead fraction climbs steeply near the edge
LOW_FACTOR = 1 / 30  # the "low" rate, against which ReLU's rise in dead units is measured
BATCH = 128
PROBE = 2048  # training inputs on which silence is decided
CHECKPOINTS = 20  # probes over training, besides the one at initialization

# arm -> (activation, optimizer, initial hidden bias); "relu" is the reference
ARMS: dict[str, tuple[str, str, float]] = {
    "relu": ("relu", "sgd_momentum", 0.0),
    "leaky_relu": ("leaky_relu(0.01)", "sgd_momentum", 0.0),
    "elu": ("elu", "sgd_momentum", 0.0),
    "relu_bias_0.01": ("relu", "sgd_momentum", 0.01),
    "relu_no_momentum": ("relu", "sgd", 0.0),
    "relu_adam": ("relu", "adam", 0.0),
}
CLAIMED = ("leaky_relu", "elu")  # each at its own high rate, compared with ReLU at its
# the first grid's centre per optimizer (the sweep then climbs to the divergence edge)
GRID_CENTRE = {"sgd_momentum": 10**-1.5, "sgd": 10**-0.5, "adam": 10**-2.5}
SIZES = {  # smoke, quick, full
    "n": (512, 8192, 30000),
    "hidden": (32, 64, 128),
    "steps": (20, 100, 1000),
    "max_up": (2, 5, 6),  # the sweep grows at most this many points upwards looking for the edge
    "seeds": (2, 3, 5),  # paired seeds; 2 (smoke) never decide
    "remedy_seeds": (2, 2, 5),  # seeds of the arms measured without a comparison
}


def silent_units(pre: list[Tensor]) -> Tensor:
    """One bool per hidden unit (the layers' units concatenated): True where the unit's
    pre-activation is not positive on any input (rows of each tensor are inputs). A NaN
    pre-activation is not positive."""
    return torch.cat([~(z > 0).any(0) for z in pre])


def dead_by_recovery(silent: Tensor) -> Tensor:
    """``silent`` (checkpoints x units, bool, in order of training) -> the same shape, True
    where a unit is silent at that checkpoint and at every later one: it never recovers."""
    return silent.flip(0).to(torch.int8).cummin(0).values.flip(0).bool()


def _optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM if kind == "sgd_momentum" else 0.0)


def train_arm(arm: str, lr: float, x: Tensor, y: Tensor, cfg: dict[str, Any], seed: int):
    """Train ``arm`` at ``lr`` for ``cfg["steps"]`` steps of the engine's own step, probing
    which hidden units are silent at initialization and at :data:`CHECKPOINTS` evenly spaced
    steps. Returns the losses, the checkpoint steps and their silent masks (checkpoints x
    units); a non-finite loss stops the run (remaining losses ``inf``, remaining checkpoints
    silent: the weights are no longer numbers)."""
    from trainlab.train import bare_run, train_step

    spec, opt_kind, bias = ARMS[arm]
    widths = [x.shape[1]] + [cfg["hidden"]] * 3 + [int(y.max()) + 1]
    net = initialized_mlp(widths, spec, "kaiming", generator(seed, "dead-relu", "weights"))
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    with torch.no_grad():
        for layer in hidden:
            layer.bias.fill_(bias)
    probe = x[:PROBE]
    steps = cfg["steps"]
    at = sorted({0, *(round(steps * (k + 1) / CHECKPOINTS) for k in range(CHECKPOINTS))})
    run = bare_run(net, _optimizer(opt_kind, net.parameters(), lr))
    batches = step_batches(len(x), BATCH, steps, generator(seed, "dead-relu", "batches"))
    losses: list[float] = []
    masks = [silent_units(outputs_of(net, hidden, probe, train=False))]
    net.train()
    for step, idx in enumerate(batches, start=1):
        loss = train_step(run, x[idx], y[idx]).item()
        if not math.isfinite(loss):
            losses += [math.inf] * (steps - len(losses))
            masks += [torch.ones_like(masks[0])] * (len(at) - len(masks))
            break
        losses.append(loss)
        if step in at:
            masks.append(silent_units(outputs_of(net, hidden, probe, train=False)))
            net.train()
    return losses, at, torch.stack(masks)


def summary(losses: list[float], at: list[int], silent: Tensor) -> dict[str, Any]:
    """The numbers of one run: whether it diverged, its final loss, the fraction of units
    silent at initialization, silent then and never recovering, dead at the half-way
    checkpoint (the comparisons' number), silent at the end, and the dead fraction at every
    checkpoint."""
    dead = dead_by_recovery(silent).double().mean(1)
    mid = min(range(len(at)), key=lambda k: abs(at[k] - at[-1] / 2))
    return {
        "diverged": diverged(losses),
        "final_loss": final_loss(losses),
        "silent_at_init": float(silent[0].double().mean()),
        "dead_from_init": float(dead[0]),
        "dead": float(dead[mid]),
        "silent_at_end": float(silent[-1].double().mean()),
        "dead_curve": dead.tolist(),
    }


def sweep(
    score: Callable[[float], dict[str, Any]], grid: list[float], max_up: int
) -> dict[str, Any]:
    """Run ``score(lr)`` on the rising ``grid``, then on rates :data:`GRID_RATIO` apart above it
    until one diverges (at most ``max_up`` more). Returns every rate's summary, the
    divergence edge (the smallest rate that diverged, None if none did) and the largest rate
    below the edge that did not diverge (None if none)."""
    runs = {lr: score(lr) for lr in grid}
    for k in range(1, max_up + 1):
        if any(r["diverged"] for r in runs.values()):
            break
        lr = float(f"{grid[-1] * GRID_RATIO**k:.3g}")
        runs[lr] = score(lr)
    rates = sorted(runs)
    edge = next((r for r in rates if runs[r]["diverged"]), None)
    stable = [r for r in rates if not runs[r]["diverged"] and (edge is None or r < edge)]
    return {"runs": runs, "edge": edge, "stable": stable[-1] if stable else None}


def _claim_value(run: dict[str, Any], relu: bool) -> float:
    """A paired run's dead fraction, or, if it diverged, the value that counts against the
    claim (0 for ReLU, whose deaths the claim predicts; 1 for the arm it is compared with)."""
    if run["diverged"]:
        return 0.0 if relu else 1.0
    return run["dead"]


def _sweep_figure(out: Path, sweeps: dict[str, dict[str, Any]], high: float | None) -> str:
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(11, 4))
    for i, (arm, s) in enumerate(sweeps.items()):
        rates = sorted(s["runs"])
        dead = [math.nan if s["runs"][r]["diverged"] else s["runs"][r]["dead"] for r in rates]
        loss = [s["runs"][r]["final_loss"] for r in rates]
        ax1.semilogx(rates, dead, "-o", color=f"C{i}", ms=3, label=arm)
        ax2.loglog(rates, [v if math.isfinite(v) else math.nan for v in loss], "-o", ms=3,
                   color=f"C{i}", label=arm)  # fmt: skip
        if s["edge"] is not None:
            for ax in (ax1, ax2):
                ax.axvline(s["edge"], color=f"C{i}", ls=":", lw=1)
    if high is not None:
        ax1.axvline(high, color="k", lw=0.8)
    ax1.set(xlabel="learning rate", ylabel="dead at half-way (never recovers; diverged: none)")
    ax2.set(xlabel="learning rate", ylabel="final training loss")
    ax1.set_title("Tuning seed: dead units against learning rate (black: the high rate)")
    ax2.set_title("Dotted: each arm's divergence edge")
    ax1.legend(fontsize=7)
    return save_figure(fig, out, "dead_fraction_vs_lr.png")


def _curve_figure(out: Path, at: list[int], curves: dict[str, list[float]]) -> str:
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot(at, curve, "-o", ms=2, color=f"C{i}", label=label)
    ax.set(xlabel="step", ylabel="fraction of hidden units dead (never recover)")
    ax.set_title("Dead units over training (mean over the seeds that did not diverge)")
    ax.legend(fontsize=7)
    return save_figure(fig, out, "dead_fraction_over_steps.png")


@experiment(
    "dead-relu",
    claim=(
        "With a high learning rate many ReLU units die (never activate again); Leaky ReLU and "
        "ELU units do not."
    ),
    source=(
        "cs231n lecture 'Training Neural Networks I' (ReLU: dead units, positive bias 0.01); "
        "Maas et al. 2013 (Leaky ReLU); Clevert et al. 2016 (ELU)"
    ),
    rule=(
        "Fashion-MNIST MLP (3 hidden layers, Kaiming init), SGD momentum 0.9. A unit is dead at "
        "a step when its pre-activation is not positive on any of the probe inputs then and at "
        "every later checkpoint to the end (it never recovers); the number compared is the "
        "fraction dead half-way through training. Each arm's learning rate is swept on a "
        f"tuning seed over a log grid ({GRID_POINTS} points, 4 a decade) extended upwards until "
        "a run diverges (non-finite or loss ending above its start); the high rate is the "
        "largest below its own divergence edge that did not diverge, the low rate "
        f"{LOW_FACTOR:.3g} x ReLU's. Paired seeds (5 full, 3 quick): ReLU high minus ReLU low, "
        "ReLU minus Leaky ReLU and ReLU minus ELU (each at its own high rate); each held if the "
        f"paired-t 95% interval lies above +{MIN_EFFECT}, did not hold if below, inconclusive "
        "if it contains it; the last two not reached unless ReLU's mean dead fraction rose by at "
        f"least {MIN_EFFECT} from the low rate to the high. A diverged paired run counts "
        "against the claim (ReLU 0, the other arm 1). Overall: did not hold if any did not "
        "hold, else not reached if any was, else inconclusive if any was, else held. SGD "
        "without momentum, Adam and biases at 0.01 are measured, not compared."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    with intra_op_threads(1):  # tiny matrices: more threads only wait on each other
        return _run(out, size, seed)


def _run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    x, y, data = image_subset("fashion-mnist", cfg["n"], generator(seed, "dead-relu", "data"), size)
    x = x.flatten(1)
    seeds = [seed + i for i in range(cfg["seeds"])]
    tuning = seed + TUNING_SEED
    at: list[int] = []

    def measure(arm: str, lr: float, s: int) -> dict[str, Any]:
        losses, steps_at, silent = train_arm(arm, lr, x, y, cfg, s)
        at[:] = steps_at
        return summary(losses, steps_at, silent)

    sweeps = {
        arm: sweep(lambda lr, a=arm: measure(a, lr, tuning),
                   log_grid(GRID_CENTRE[ARMS[arm][1]], GRID_POINTS, GRID_RATIO), cfg["max_up"])
        for arm in ARMS
    }  # fmt: skip
    high = sweeps["relu"]["stable"]
    reached_rate = high is not None
    high = high if reached_rate else min(sweeps["relu"]["runs"])
    low = float(f"{high * LOW_FACTOR:.3g}")
    # every arm at its own largest stable rate; the bias remedy at ReLU's, to isolate the bias
    rates = {arm: sweeps[arm]["stable"] or high for arm in ARMS}
    rates["relu"] = rates["relu_bias_0.01"] = high
    paired = {arm: [measure(arm, rates[arm], s) for s in seeds] for arm in ("relu", *CLAIMED)}
    paired["relu_low"] = [measure("relu", low, s) for s in seeds]
    remedy_seeds = seeds[: cfg["remedy_seeds"]]
    for arm in ARMS:
        if arm not in paired:
            paired[arm] = [measure(arm, rates[arm], s) for s in remedy_seeds]

    relu_high = [_claim_value(r, relu=True) for r in paired["relu"]]
    relu_low = [_claim_value(r, relu=False) for r in paired["relu_low"]]
    rise = mean_std(relu_high)[0] - mean_std(relu_low)[0]
    regime = reached_rate and rise >= MIN_EFFECT
    comparisons = [
        evidence.compare(
            "ReLU units die at the high learning rate", "dead_fraction", ("relu", "relu_low"),
            relu_high, relu_low, seeds, MIN_EFFECT, +1, reached=reached_rate,
        )
    ] + [
        evidence.compare(
            f"ReLU loses more units than {arm} at its high rate", "dead_fraction",
            ("relu", arm), relu_high, [_claim_value(r, relu=False) for r in paired[arm]],
            seeds, MIN_EFFECT, +1, reached=regime,
        )
        for arm in CLAIMED
    ]  # fmt: skip

    def per_seed(key: str) -> dict[str, list[Any]]:
        return {arm: [r[key] for r in rows] for arm, rows in paired.items()}

    kept = {arm: [r for r in rows if not r["diverged"]] for arm, rows in paired.items()}
    curves = {  # diverged runs left out: after a non-finite loss no unit is positive
        arm: [mean_std([r["dead_curve"][k] for r in rows])[0] for k in range(len(at))]
        for arm, rows in kept.items()
        if rows
    }
    measured = {
        "data": data,
        "hidden": cfg["hidden"],
        "steps": cfg["steps"],
        "batch": BATCH,
        "threads_used": torch.get_num_threads(),
        "probe_inputs": min(PROBE, len(x)),
        "seeds": seeds,
        "tuning_seed": tuning,
        "min_effect": MIN_EFFECT,
        "high_lr": high,
        "low_lr": low,
        "lr": {**rates, "relu_low": low},
        "divergence_edge": {arm: s["edge"] for arm, s in sweeps.items()},
        "largest_stable_lr": {arm: s["stable"] for arm, s in sweeps.items()},
        "sweep": {
            arm: {
                "lr": sorted(s["runs"]),
                "diverged": [s["runs"][r]["diverged"] for r in sorted(s["runs"])],
                "final_loss": [s["runs"][r]["final_loss"] for r in sorted(s["runs"])],
                "dead": [s["runs"][r]["dead"] for r in sorted(s["runs"])],
            }
            for arm, s in sweeps.items()
        },
        "relu_rise_low_to_high": rise,
        "dead_mean": {arm: mean_std(v)[0] for arm, v in per_seed("dead").items()},
        "dead_runs": per_seed("dead"),
        "diverged_runs": {arm: sum(v) for arm, v in per_seed("diverged").items()},
        "silent_at_init_mean": {
            arm: mean_std(v)[0] for arm, v in per_seed("silent_at_init").items()
        },
        "dead_from_init_mean": {
            arm: mean_std(v)[0] for arm, v in per_seed("dead_from_init").items()
        },
        "silent_at_end_mean": {arm: mean_std(v)[0] for arm, v in per_seed("silent_at_end").items()},
        "final_loss_mean": {arm: mean_std(v)[0] for arm, v in per_seed("final_loss").items()},
        "checkpoint_steps": at,
        "dead_curve_mean": curves,  # over the runs that did not diverge
    }
    figures = [
        _sweep_figure(out, sweeps, high if reached_rate else None),
        _curve_figure(
            out, at,
            {f"{a} (lr {rates.get(a, low)}, {len(kept[a])}/{len(paired[a])} runs)": c
             for a, c in curves.items()},
        ),
        comparison_intervals(out, "comparisons.png", "Dead fraction: ReLU against each arm",
                             comparisons),
    ]  # fmt: skip
    notes = (
        f"MLP {x.shape[1]}-{cfg['hidden']}x3-10 on {data}, Kaiming init for each activation's "
        f"gain, batch {BATCH}, {cfg['steps']} steps of the engine's step at one thread (the "
        "matrices are too small for more to help); silence probed on "
        f"{min(PROBE, len(x))} training inputs at initialization and {CHECKPOINTS} checkpoints. "
        f"Learning rates swept on tuning seed {tuning}; paired seeds {seeds} (remedy arms: "
        f"{remedy_seeds}). High rate {high}, low rate {low}. The dead-fraction curves leave out "
        "diverged runs; their last points have little follow-up left, so they approach the "
        "fraction silent at that moment."
    )
    if not reached_rate:
        notes += " Every rate of ReLU's sweep diverged: no high rate below its edge exists."
    if size == "smoke":
        notes += " Smoke size: synthetic data, 2 seeds decide nothing."
    return conclude(comparisons, measured, figures, notes)
