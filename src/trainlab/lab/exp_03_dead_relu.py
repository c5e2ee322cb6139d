"""Experiment 3: large learning rates kill ReLUs; Leaky ReLU and ELU units do not die.

A ReLU unit whose pre-activation is negative for every input outputs 0 and passes no gradient
to its weights, so nothing can revive it: it is *dead*. A large update can push a unit's bias
and weights there (cs231n: "as much as 40% of your network can be dead" with a high learning
rate). Leaky ReLU (Maas et al. 2013) keeps a slope of 0.01 for negative inputs and ELU (Clevert
et al. 2016) one of ``exp(x)``, so the same unit still learns.

The rule calls a unit dead when it is saturated on every probe input, the same test for every
activation (``ActivationInfo.saturated``): Leaky ReLU's constant negative slope never counts as
saturated, and ELU is dead only where all of a unit's inputs are below ``ln 0.02 = -3.9``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from trainlab.activations import activation_info
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import pyplot, save_figure
from trainlab.lab.runs import at_size, generator, initialized_mlp, outputs_of, sgd_curve

ACTIVATIONS = ("relu", "leaky_relu(0.01)", "elu")
MIN_DEAD = 0.05  # ReLU's dead fraction at the largest learning rate must reach this
MOMENTUM = 0.9
SIZES = {  # smoke, quick, full
    "n": (512, 8192, 30000),
    "hidden": (32, 128, 256),
    "steps": (10, 150, 1000),
    # 0.1 is the edge of stability here: at 0.3 all three activations diverged in a trial run
    "lrs": ([0.01, 0.1], [0.003, 0.01, 0.03, 0.1], [0.001, 0.003, 0.01, 0.03, 0.1]),
}


def dead_fractions(spec: str, pre: list[Tensor]) -> dict[str, float]:
    """Fractions of hidden units saturated on every probe input, and never positive."""
    info = activation_info(spec)
    dead = torch.cat([info.saturated(z).all(0) for z in pre])
    never_positive = torch.cat([(z <= 0).all(0) for z in pre])
    return {
        "dead": float(dead.double().mean()),
        "never_positive": float(never_positive.double().mean()),
    }


def _train(spec, lr, x, y, probe, widths, steps, seed) -> dict[str, float]:
    net = initialized_mlp(widths, spec, "kaiming", generator(seed, "dead-relu", "weights"))
    gen = generator(seed, "dead-relu", "batches")  # same init and batches for every run
    losses = sgd_curve(
        net, x, y, steps=steps, lr=lr, batch=128, gen=gen, momentum=MOMENTUM, nesterov=False
    )
    diverged = not all(math.isfinite(v) for v in losses[-20:])
    result = {"final_loss": sum(losses[-20:]) / len(losses[-20:]), "diverged": diverged}
    if diverged:
        return {**result, "dead": math.nan, "never_positive": math.nan}
    hidden = [m for m in net if isinstance(m, nn.Linear)][:-1]
    return {**result, **dead_fractions(spec, outputs_of(net, hidden, probe, train=False))}


def _figure(out: Path, lrs: list[float], results) -> str:
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for i, spec in enumerate(ACTIVATIONS):
        dead = [results[spec][str(lr)]["dead"] for lr in lrs]
        never = [results[spec][str(lr)]["never_positive"] for lr in lrs]
        ax.semilogx(lrs, dead, "-o", color=f"C{i}", label=f"{spec}: dead")
        ax.semilogx(lrs, never, ":", color=f"C{i}", label=f"{spec}: never positive")
    ax.set(xlabel=f"learning rate (SGD, momentum {MOMENTUM})", ylabel="fraction of hidden units")
    ax.set_title("Dead units after training, against learning rate")
    ax.legend(fontsize=7)
    return save_figure(fig, out, "dead_fraction_vs_lr.png")


@experiment(
    "dead-relu",
    claim=(
        "With a high learning rate many ReLU units die (never activate again); Leaky ReLU and "
        "ELU units do not."
    ),
    source=(
        "cs231n lecture 'Training Neural Networks I' (ReLU: dead units); Maas et al. 2013 "
        "(Leaky ReLU); Clevert et al. 2016 (ELU)"
    ),
    rule=(
        "A unit is dead when its derivative is below 0.02 x the activation's peak slope on "
        "every probe input (ReLU: never positive). Same MLP, init (Kaiming), batches and "
        "steps for each activation and learning rate. Checks: (1) ReLU's dead fraction at the "
        f"largest learning rate is >= {MIN_DEAD:.0%} and above its fraction at the smallest; "
        "(2) at the largest learning rate ReLU's dead fraction exceeds both Leaky ReLU's and "
        "ELU's. A diverged run fails the checks it enters. All: held; none: did not hold; "
        "else partly held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    n, hidden, steps, lrs = at_size(SIZES, size).values()
    x, y, data = image_subset("fashion-mnist", n, generator(seed, "dead-relu", "data"), size)
    x = x.flatten(1)
    probe = x[: min(len(x), 4096)]
    widths = [x.shape[1], hidden, hidden, hidden, int(y.max()) + 1]
    results = {
        spec: {str(lr): _train(spec, lr, x, y, probe, widths, steps, seed) for lr in lrs}
        for spec in ACTIVATIONS
    }
    low, high = str(lrs[0]), str(lrs[-1])
    relu, leaky, elu = (results[s] for s in ACTIVATIONS)
    checks = {
        f"relu's dead fraction rises with lr and reaches {MIN_DEAD:.0%}": relu[high]["dead"]
        >= MIN_DEAD
        and relu[high]["dead"] > relu[low]["dead"],
        "relu's dead fraction exceeds leaky relu's and elu's at the largest lr": all(
            relu[high]["dead"] > other[high]["dead"] for other in (leaky, elu)
        ),  # each comparison on its own: a diverged run's NaN must fail it (max() would drop it)
    }
    figures = [_figure(out, lrs, results)]
    measured = {
        "data": data,
        "widths": widths,
        "steps": steps,
        "learning_rates": lrs,
        "probe_inputs": len(probe),
        "per_activation": results,
    }
    return conclude(
        checks,
        measured,
        figures,
        f"MLP {widths}, Kaiming init for each activation's gain, SGD momentum 0.9, batch "
        f"128, {steps} steps on {data}; dead counted on {len(probe)} training inputs. "
        "Learning rates stop at 0.1: at 0.3 all three activations diverged in a trial run.",
    )
