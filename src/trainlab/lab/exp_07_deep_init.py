"""Experiment 7: a 30-layer plain ReLU network stalls with Xavier and trains with Kaiming.

He et al. 2015 ("Delving Deep into Rectifiers", sec. 2.2 and Fig. 3): with ``std = 1/sqrt(n)``
each ReLU layer halves the signal's variance, so after 30 layers it is ``2^-30`` of the input's
and the gradients reaching the early layers are as small; ``std = sqrt(2/n)`` keeps both
constant and the net trains. The paper used a 30-layer conv net on ImageNet; here, for speed on
a CPU, a 30-layer MLP without batch norm or residuals.
"""

from __future__ import annotations

from pathlib import Path

from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.figures import plot_curves
from trainlab.lab.runs import at_size, generator, initialized_mlp, sgd_curve

DEPTH = 30  # weight layers, as in the paper's deep model
INITS = ("xavier", "kaiming")
FALL = 0.30  # Kaiming's loss must fall by at least this fraction of its start
FLAT = 0.05  # Xavier's loss must stay within this fraction of its start
WINDOW = 20  # steps averaged at the start and at the end of a loss curve
SIZES = {"n": (512, 8192, 30000), "width": (32, 128, 256), "steps": (2 * WINDOW, 300, 2000)}


def _train(scheme, x, y, widths, steps, lr, seed) -> list[float]:
    net = initialized_mlp(widths, "relu", scheme, generator(seed, "deep-init", "weights", scheme))
    gen = generator(seed, "deep-init", "batches")  # the same batches for both inits
    return sgd_curve(net, x, y, steps=steps, lr=lr, batch=128, gen=gen, nesterov=False)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def steps_to_leave_start(losses: list[float]) -> int | None:
    """First step at which the mean loss of the last ``WINDOW`` steps is below ``1 - FLAT`` of
    the first window's mean: when the run stopped being stalled, if it did."""
    start = _mean(losses[:WINDOW])
    for step in range(WINDOW, len(losses) + 1):
        if _mean(losses[step - WINDOW : step]) < (1 - FLAT) * start:
            return step
    return None


@experiment(
    "deep-init",
    claim=(
        "A 30-layer plain ReLU network initialized with Xavier (std 1/sqrt(fan_in)) stalls, "
        "while with Kaiming (std sqrt(2/fan_in)) it trains."
    ),
    source="He et al. 2015, 'Delving Deep into Rectifiers', sec. 2.2 and Fig. 3",
    rule=(
        f"Same data, batches, optimizer (SGD, momentum 0.9) and learning rate for both. With "
        f"L0 the mean loss of the first {WINDOW} steps and L1 of the last {WINDOW}: Kaiming's "
        f"L1 <= (1 - {FALL}) L0 and Xavier's |L1 - L0| <= {FLAT} L0. Both: held; none: did "
        "not hold; one: partly held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    n, width, steps = at_size(SIZES, size).values()
    lr = 0.01
    x, y, data = image_subset("fashion-mnist", n, generator(seed, "deep-init", "data"), size)
    x = x.flatten(1)
    widths = [x.shape[1]] + [width] * (DEPTH - 1) + [int(y.max()) + 1]
    curves = {s: _train(s, x, y, widths, steps, lr, seed) for s in INITS}
    summary = {
        s: {"start_loss": _mean(c[:WINDOW]), "end_loss": _mean(c[-WINDOW:])}
        for s, c in curves.items()
    }
    for scheme, s in summary.items():
        s["relative_change"] = (s["end_loss"] - s["start_loss"]) / s["start_loss"]
        s["steps_to_leave_start"] = steps_to_leave_start(curves[scheme])
    checks = {
        f"kaiming's loss falls by >= {FALL:.0%}": summary["kaiming"]["relative_change"] <= -FALL,
        f"xavier's loss stays within {FLAT:.0%}": abs(summary["xavier"]["relative_change"]) <= FLAT,
    }
    title = f"{DEPTH}-layer plain ReLU MLP: Xavier vs Kaiming init"
    figures = [
        plot_curves(
            out, "deep_init_loss.png", curves, xlabel="step", ylabel="training loss", title=title
        )
    ]
    measured = {
        "data": data,
        "depth": DEPTH,
        "width": width,
        "steps": steps,
        "lr": lr,
        "per_init": summary,
        "loss_curves": curves,
    }
    return conclude(
        checks,
        measured,
        figures,
        f"{DEPTH}-layer ReLU MLP of width {width} (the paper: a 30-layer conv net on "
        f"ImageNet), no batch norm, SGD lr {lr} momentum 0.9, batch 128, {steps} steps on "
        f"{data}.",
    )
