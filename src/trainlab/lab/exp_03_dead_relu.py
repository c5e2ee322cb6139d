"""Experiment 3: large learning rates kill ReLUs; Leaky ReLU and ELU units do not die.

A ReLU unit whose pre-activation is negative for every input outputs 0 and passes no gradient
to its weights, so nothing revives it: it is *dead*. A large update can push a unit there
(cs231n: "as much as 40% of your network can be dead" with a high learning rate). Leaky ReLU
(Maas et al. 2013) keeps a slope of 0.01 for negative inputs and ELU (Clevert et al. 2016) one
of ``exp(x)``, so the same unit still gets a gradient and can come back.

Dead is decided by recovery, the same test for every activation: a unit is *silent* at a
checkpoint when its pre-activation is not positive on any probe input, and *dead* there when it
is silent at every later checkpoint too (:func:`dead_by_recovery`). The number compared is the
fraction dead at the half-way checkpoint. A run is *collapsed* when its training loss ends at
chance (the network stopped learning) and *diverged* when it became non-finite: both are
counted as such, never given a dead fraction.

Rates. Each arm's rate is swept on the tuning seeds over a log grid four points a decade,
extended upwards until a run diverges or collapses on any tuning seed: that rate is the arm's
*edge*, and the largest rate below it its *high* rate. ReLU's low rate is 1/30 of its high one.
The comparisons with Leaky ReLU and ELU are made twice: at a *common* rate (the smaller of the
two high rates, both arms there) and at each arm's own high rate.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import pyplot, save_figure
from trainlab.lab.loop import train
from trainlab.lab.nets import generator, initialized_mlp, outputs_of
from trainlab.lab.rules import Rule, Spec
from trainlab.lab.tuning import final_loss, log_grid, recheck

MIN_EFFECT = 0.05  # 5 points of dead units: fewer would not change what a practitioner does
GRID_RATIO = 10**0.25  # four points a decade: the dead fraction climbs steeply near the edge
LOW_FACTOR = 1 / 30
COLLAPSED = 0.95  # a final training loss above 95% of ln(classes): at chance
BATCH = 128
PROBE = 2048  # training inputs on which silence is decided
CHECKPOINTS = 20  # probes over training, besides the one at initialization
# arm -> (activation, optimizer, initial hidden bias)
ARMS: dict[str, tuple[str, str, float]] = {
    "relu": ("relu", "sgd_momentum", 0.0),
    "leaky_relu": ("leaky_relu(0.01)", "sgd_momentum", 0.0),
    "elu": ("elu", "sgd_momentum", 0.0),
    "relu_bias_0.01": ("relu", "sgd_momentum", 0.01),
    "relu_no_momentum": ("relu", "sgd", 0.0),
    "relu_adam": ("relu", "adam", 0.0),
}
OTHERS = ("leaky_relu", "elu")
GRID_CENTRE = {"sgd_momentum": 10**-1.5, "sgd": 10**-0.5, "adam": 10**-2.5}
SIZES = {  # smoke, quick, full
    "n": (512, 4096, 30000),
    "hidden": (32, 32, 128),
    "steps": (20, 60, 1000),
    "max_up": (2, 3, 6),  # the sweep grows at most this many points upwards to find the edge
    "seeds": (3, 4, 6),
    "remedy_seeds": (2, 2, 3),  # seeds of the arms measured without a comparison
}
PRIMARY = Spec(
    "ReLU units die at a high learning rate",
    ("relu high", "relu low"),
    "dead fraction at half-way",
    "fraction",
    MIN_EFFECT,
    +1,
)
RULE = Rule(
    design="Fashion-MNIST MLP (3 hidden layers, Kaiming init with each activation's gain), SGD "
    "momentum 0.9, batch 128. Silent: pre-activation not positive on any probe input; dead: "
    "silent at a checkpoint and every later one; the fraction dead half-way through training "
    f"is compared. Collapsed: final training loss at least {COLLAPSED} ln 10. Primary: ReLU "
    "at its high rate against ReLU at 1/30 of it.",
    primary=PRIMARY,
    secondaries=(
        "ReLU minus Leaky ReLU and ReLU minus ELU, each at their common rate (the smaller high "
        "rate) and, where they differ, each at its own high rate (dead fraction, minimum 5 "
        "points)",
    ),
    tuning="each arm swept on the tuning seeds over a log grid 4 points a decade (5 points, "
    "centred by optimizer), extended upwards until a run diverges or collapses on any tuning "
    "seed (the edge); the high rate is the largest below the edge. The primary is re-checked "
    "with ReLU one grid step below its high rate (the step above is the edge itself). SGD "
    "without momentum, Adam and hidden biases at 0.01 are measured, not compared.",
)


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
    return torch.optim.SGD(params, lr=lr, momentum=0.9 if kind == "sgd_momentum" else 0.0)


def train_arm(arm: str, lr: float, x: Tensor, y: Tensor, cfg: dict[str, Any], seed: int):
    """``arm`` at ``lr`` for ``cfg["steps"]`` steps of the engine's step, probing which hidden
    units are silent at initialization and at :data:`CHECKPOINTS` evenly spaced steps. Returns
    the run, the checkpoint steps and their silent masks (checkpoints x units)."""
    spec, opt_kind, bias = ARMS[arm]
    widths = [x.shape[1]] + [cfg["hidden"]] * 3 + [int(y.max()) + 1]
    net = initialized_mlp(widths, spec, "kaiming", generator(seed, "dead-relu", "weights"))
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    with torch.no_grad():
        for layer in hidden:
            layer.bias.fill_(bias)
    probe_x, steps = x[:PROBE], cfg["steps"]
    at = sorted({0, *(round(steps * (k + 1) / CHECKPOINTS) for k in range(CHECKPOINTS))})
    masks = [silent_units(outputs_of(net, hidden, probe_x, train=False))]

    def probe(step: int, _loss: float) -> None:
        if step in at:
            masks.append(silent_units(outputs_of(net, hidden, probe_x, train=False)))
            net.train()

    trained = train(
        net,
        _optimizer(opt_kind, net.parameters(), lr),
        x,
        y,
        batch=BATCH,
        steps=steps,
        gen=generator(seed, "dead-relu", "batches"),
        probe=probe,
    )
    return trained, at, torch.stack(masks)


def summary(trained, at: list[int], silent: Tensor, classes: int) -> dict[str, Any]:
    """One run: its status (diverged, collapsed or trained), final loss, the fraction silent at
    initialization, dead at the half-way checkpoint (the compared number) and at every
    checkpoint."""
    if trained.diverged:
        return {"status": "diverged", "final_loss": None}
    loss = final_loss(trained.losses)
    dead = dead_by_recovery(silent).double().mean(1)
    mid = min(range(len(at)), key=lambda k: abs(at[k] - at[-1] / 2))
    collapsed = not loss < COLLAPSED * math.log(classes)
    return {
        "status": "collapsed" if collapsed else "trained",
        "final_loss": loss,
        "silent_at_init": float(silent[0].double().mean()),
        "dead": float(dead[mid]),
        "dead_curve": dead.tolist(),
    }


def sweep(score, grid: list[float], seeds: list[int], max_up: int) -> dict[str, Any]:
    """Every rate of the rising ``grid`` on every tuning seed, then rates a quarter-decade apart
    above it until one fails (diverges or collapses) on a seed, at most ``max_up`` more. Returns
    the runs, the edge (smallest rate that failed) and the high rate (largest below it)."""
    runs = {lr: [score(lr, s) for s in seeds] for lr in grid}
    failed = lambda lr: any(r["status"] != "trained" for r in runs[lr])  # noqa: E731
    for k in range(1, max_up + 1):
        if any(failed(lr) for lr in runs):
            break
        lr = float(f"{grid[-1] * GRID_RATIO**k:.3g}")
        runs[lr] = [score(lr, s) for s in seeds]
    rates = sorted(runs)
    edge = next((r for r in rates if failed(r)), None)
    below = [r for r in rates if edge is None or r < edge]
    return {"runs": runs, "edge": edge, "high": below[-1] if below else None, "rates": rates}


def _value(run: dict[str, Any]) -> float | str:
    return run["dead"] if run["status"] == "trained" else run["status"]


def _sweep_figure(out, sweeps: dict[str, dict[str, Any]]) -> str:
    fig, ax = pyplot().subplots(figsize=(7, 4))
    for i, (arm, s) in enumerate(sweeps.items()):
        dead = [
            sum(r.get("dead", math.nan) for r in s["runs"][lr]) / len(s["runs"][lr])
            for lr in s["rates"]
        ]
        ax.semilogx(s["rates"], dead, "-o", color=f"C{i}", ms=3, label=arm)
        if s["edge"] is not None:
            ax.axvline(s["edge"], color=f"C{i}", ls=":", lw=1)
    ax.set(xlabel="learning rate", ylabel="dead at half-way (mean over tuning seeds)")
    ax.set_title("Tuning seeds: dead units against rate (dotted: each arm's edge)", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, out, "dead_fraction_vs_lr.png")


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
    sizes=SIZES,
    rule=RULE,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    x, y, data = image_subset(
        "fashion-mnist", cfg["n"], generator(ctx.seed, "dead-relu", "data"), ctx.size
    )
    x, classes = x.flatten(1), int(y.max()) + 1
    runs: dict[tuple[str, float, int], dict[str, Any]] = {}
    at: list[int] = []

    def measure(arm: str, lr: float, seed: int) -> dict[str, Any]:
        if (arm, lr, seed) not in runs:
            trained, at[:], silent = train_arm(arm, lr, x, y, cfg, seed)
            runs[arm, lr, seed] = summary(trained, at, silent, classes)
        return runs[arm, lr, seed]

    sweeps = {}
    for arm, (_, optimizer, _) in ARMS.items():
        grid = log_grid(GRID_CENTRE[optimizer], 5, GRID_RATIO)
        score = lambda lr, s, a=arm: measure(a, lr, s)  # noqa: E731
        sweeps[arm] = sweep(score, grid, ctx.tuning_seeds, cfg["max_up"])
    high = {arm: s["high"] or s["rates"][0] for arm, s in sweeps.items()}
    high["relu_bias_0.01"] = high["relu"]  # the remedy at ReLU's rate isolates the bias
    low = float(f"{high['relu'] * LOW_FACTOR:.3g}")

    def dead(arm: str, lr: float, seeds: list[int] | None = None) -> list[float | str]:
        return [_value(measure(arm, lr, s)) for s in seeds or ctx.seeds]

    def decide(rates: dict[str, float]):
        reached = sweeps["relu"]["high"] is not None
        return PRIMARY.compare(dead("relu", rates["relu"]), dead("relu", low), ctx.seeds, reached)

    below = SimpleNamespace(
        neighbours=lambda: [r for r in sweeps["relu"]["rates"] if r < high["relu"]][-1:]
    )
    primary = recheck(decide, {"relu": high["relu"]}, {"relu": below})
    secondaries = []
    for arm in OTHERS:  # at the common rate, and at each arm's own high rate where it differs
        common = min(high["relu"], high[arm])
        for r_relu, r_other in dict.fromkeys([(common, common), (high["relu"], high[arm])]):
            label = "a common rate" if r_relu == r_other else "their own high rates"
            arms = (f"relu at {r_relu:g}", f"{arm} at {r_other:g}")
            spec = Spec(
                f"ReLU loses more units than {arm} at {label}",
                arms,
                PRIMARY.metric,
                "fraction",
                MIN_EFFECT,
                +1,
            )
            secondaries.append(spec.compare(dead("relu", r_relu), dead(arm, r_other), ctx.seeds))
    remedy = ctx.seeds[: cfg["remedy_seeds"]]
    paired_status: dict[str, list[str]] = {}
    for (arm, lr, seed), r in runs.items():
        if seed in ctx.seeds:
            paired_status.setdefault(f"{arm} at {lr:g}", []).append(r["status"])
    measured = {
        "data": data,
        "high_lr": high,
        "low_lr": low,
        "edge": {arm: s["edge"] for arm, s in sweeps.items()},
        "sweep_status": {
            arm: {str(lr): [r["status"] for r in s["runs"][lr]] for lr in s["rates"]}
            for arm, s in sweeps.items()
        },
        "dead_relu_high": dead("relu", high["relu"]),
        "dead_relu_low": dead("relu", low),
        "remedies_dead": {a: dead(a, high[a], remedy) for a in ARMS if a not in ("relu", *OTHERS)},
        "paired_status": paired_status,
    }
    notes = (
        f"MLP {x.shape[1]}-{cfg['hidden']}x3-{classes}, batch {BATCH}; silence probed on "
        f"{min(PROBE, len(x))} training inputs at initialization and steps {at}. Remedy arms "
        f"on seeds {remedy}."
    )
    return Outcome(primary, measured, [_sweep_figure(ctx.out, sweeps)], notes, secondaries)
