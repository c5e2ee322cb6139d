"""Experiment 7: a 30-layer plain ReLU network stalls with Xavier and trains with Kaiming.

He et al. 2015 ("Delving Deep into Rectifiers", sec. 2.2 and Fig. 3): with ``std = 1/sqrt(n)``
each ReLU layer halves the signal's variance, so after 30 layers it is ``2^-30`` of the input's
and the gradients reaching the early layers are as small; their 30-layer plain net did not
learn with it, while ``std = sqrt(2/n)`` keeps both constant and the net trains. At the CPU
sizes the network is a 30-layer plain MLP (no batch norm, no residuals) on a Fashion-MNIST
subset; at paper scale (``--scale paper``, for a GPU) a 30-layer plain convolutional ReLU net
(:func:`plain_conv`) on all 50,000 CIFAR-10 training images. Both inits draw the same normal
numbers within a seed (Xavier's weights are Kaiming's divided by sqrt(2)).

"Stalls" is tested literally: a run *reaches* the loss threshold when the mean of its last
:data:`WINDOW` batch losses first falls below half of ``ln 10``; it *stalls* when it does not
within the step cap. The primary counts, per paired seed, whether Xavier stalled minus whether
Kaiming did; if Kaiming itself stalled, both runs are capped and the seed says nothing about
the claim, so the comparison is "not reached" unless Kaiming reached the threshold on every
seed (the censoring guard). How much slower Xavier is, where both reach it, is secondary.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from trainlab.lab import paper
from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.data import image_subset
from trainlab.lab.evidence import capped_counts
from trainlab.lab.figures import plot_curves
from trainlab.lab.loop import checkpointed_losses, sgd, train
from trainlab.lab.nets import generator, initialized, initialized_mlp
from trainlab.lab.rules import Rule, Spec
from trainlab.lab.sizes import lab_device
from trainlab.lab.tuning import diverged, final_loss, log_grid, recheck, tune_lr

DEPTH = 30  # weight layers, as in the paper's deep model
INITS = ("xavier", "kaiming")
THRESHOLD = 0.5 * math.log(10)  # the loss to reach: half of a uniform guess's ln 10
WINDOW = 10  # batch losses averaged for "the training loss" at a step
BATCH = 128
DOWNSAMPLE = (10, 20)  # plain_conv's convolutions (0-based) of stride 2: 32 -> 16 -> 8 pixels
SIZES = {  # smoke, quick, full (the MLP on Fashion-MNIST), paper (plain_conv on CIFAR-10)
    "n": (256, 2048, 10000, 50000),
    "width": (8, 16, 128, 64),
    "cap": (30, 200, 1500, 6000),  # the step cap: a run not reaching THRESHOLD by then stalls
    "seeds": (3, 3, 6, 6),
}
NETWORK = {"smoke": "mlp", "quick": "mlp", "full": "mlp", "paper": "conv"}
PRIMARY = Spec(
    "Xavier stalls where Kaiming trains",
    ("xavier stalled", "kaiming stalled"),
    "stalled (1) or reached the threshold (0)",
    "fraction",
    0.5,
    +1,
)
RULE = Rule(
    design=f"A {DEPTH}-layer plain ReLU network, no batch norm or residuals (an MLP on "
    "Fashion-MNIST at the CPU sizes; at paper scale 29 3x3 convolutions of width 64, stride 2 "
    "at two, global average pooling and a linear classifier on CIFAR-10), SGD momentum 0.9, "
    f"batch {BATCH}. A run reaches the threshold when the mean of its last {WINDOW} batch "
    f"losses first falls below {THRESHOLD:.4f} (0.5 ln 10); it stalls when it does not within "
    "the cap; a diverged run is left out of its pair.",
    primary=PRIMARY,
    preconditions=(
        "Kaiming reached the threshold on every paired seed (if both arms are "
        "capped the pair says nothing about the claim)",
    ),
    secondaries=(
        "log steps to the threshold, Xavier over Kaiming, at least twice (a stalled "
        "run counts as the cap, a lower bound; not reached where that could have "
        "produced the verdict)",
    ),
    tuning="each init's on the tuning seeds, a log grid of 3 rates half a decade apart around "
    "0.00316 extended past an edge holding the best; score: steps to the threshold (cap plus "
    "the final loss if not reached; inf if diverged). Re-checked with each init at its "
    "neighbouring rates.",
)


def steps_to_threshold(
    losses: Sequence[float], threshold: float = THRESHOLD, window: int = WINDOW
) -> int | None:
    """The first step ``s`` (1-based, at least ``window``) at which the mean of the last
    ``window`` losses is below ``threshold``; None if there is none."""
    for s in range(window, len(losses) + 1):
        if math.fsum(losses[s - window : s]) / window < threshold:
            return s
    return None


def tuning_score(run: dict, cap: int) -> float:
    """Steps to the threshold; else the cap plus the final loss; ``inf`` if it diverged."""
    if run["steps"] is not None:
        return float(run["steps"])
    if run["diverged"] or diverged(run["losses"]):
        return math.inf
    return cap + final_loss(run["losses"])


def plain_conv(channels: int, width: int, classes: int, depth: int = DEPTH) -> nn.Sequential:
    """The paper scale's network: ``depth - 1`` 3x3 convolutions of ``width`` channels (padding
    1, stride 2 at :data:`DOWNSAMPLE`), each followed by ReLU, no batch norm and no residuals;
    then global average pooling and a linear classifier: ``depth`` weight layers."""
    layers: list[nn.Module] = []
    for i in range(depth - 1):
        stride = 2 if i in DOWNSAMPLE else 1
        layers += [nn.Conv2d(channels if i == 0 else width, width, 3, stride, 1), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes)]
    return nn.Sequential(*layers)


def network(scheme: str, spec: list[int] | tuple[int, int, int], seed: int) -> nn.Module:
    """The plain ReLU network from ``seed``'s weight generator: the MLP of widths ``spec`` (a
    list), or :func:`plain_conv` for ``spec = (channels, width, classes)``."""
    gen = generator(seed, "deep-init", "weights")
    if isinstance(spec, list):
        return initialized_mlp(spec, "relu", scheme, gen)
    return initialized(lambda: plain_conv(*spec), scheme, "relu", gen)


def train_to_threshold(
    scheme: str, x: Tensor, y: Tensor, spec, lr: float, cap: int, seed: int
) -> dict:
    """``scheme``'s network on the device of ``x`` through the engine's step until the loss
    reaches :data:`THRESHOLD` or ``cap`` steps; within a seed both inits draw the same weights
    (before scaling) and batches. Remembered and checkpointed at paper scale."""

    def compute(folder):
        net = network(scheme, spec, seed).to(x.device)
        state = folder / "state.pt" if folder else None
        recent = checkpointed_losses(state)[-WINDOW:]  # the probe's window, across a resume

        def reached(_step: int, loss: float) -> bool:
            recent.append(loss)
            return len(recent) >= WINDOW and math.fsum(recent[-WINDOW:]) / WINDOW < THRESHOLD

        done = train(
            net,
            sgd(net, lr, nesterov=False),
            x,
            y,
            batch=BATCH,
            steps=cap,
            gen=generator(seed, "deep-init", "batches"),
            probe=reached,
            checkpoint=state,
        )
        return {
            "losses": done.losses,
            "diverged": done.diverged,
            "steps": None if done.diverged else steps_to_threshold(done.losses),
        }

    key = paper.run_key(scheme=scheme, lr=lr, seed=seed, cap=cap, n=len(y), spec=spec)
    return paper.remembered(key, compute)


def plan(cfg: dict) -> list[paper.PlannedRun]:
    make = lambda: plain_conv(3, cfg["width"], 10)  # noqa: E731
    epochs = cfg["cap"] * BATCH / cfg["n"]  # the cap in epochs: an upper bound
    return [
        paper.PlannedRun(what, k, epochs, cfg["n"], make, (3, 32, 32))
        for what, k in (
            ("tuning (2 inits x ~4 rates x 3 tuning seeds)", 2 * 4 * 3),
            ("paired runs", 2 * cfg["seeds"]),
            ("re-checked at neighbouring rates", 4 * cfg["seeds"]),
        )
    ]


@experiment(
    "deep-init",
    claim=(
        "A 30-layer plain ReLU network initialized with Xavier (std 1/sqrt(fan_in)) stalls, "
        "while with Kaiming (std sqrt(2/fan_in)) it trains."
    ),
    source="He et al. 2015, 'Delving Deep into Rectifiers', sec. 2.2 and Fig. 3",
    sizes=SIZES,
    rule=RULE,
    plan=plan,
)
def run(ctx: Context) -> Outcome:
    cfg, cap = ctx.cfg, ctx.cfg["cap"]
    kind = NETWORK[ctx.size]
    name = "fashion-mnist" if kind == "mlp" else "cifar10"
    x, y, data = image_subset(name, cfg["n"], generator(ctx.seed, "deep-init", "data"), ctx.size)
    classes = int(y.max()) + 1
    if kind == "mlp":
        x = x.flatten(1)
        spec = [x.shape[1]] + [cfg["width"]] * (DEPTH - 1) + [classes]
    else:
        spec = (x.shape[1], cfg["width"], classes)
    device = lab_device(ctx.size)
    x, y = x.to(device), y.to(device)

    @functools.cache
    def measure(scheme: str, lr: float, seed: int) -> dict:
        return train_to_threshold(scheme, x, y, spec, lr, cap, seed)

    def score(scheme: str):
        return lambda lr, seed: tuning_score(measure(scheme, lr, seed), cap)

    searches = {s: tune_lr(score(s), log_grid(10**-2.5, 3), ctx.tuning_seeds) for s in INITS}
    lrs = {s: searches[s].best for s in INITS}

    def rows(rates) -> dict[str, list[dict]]:
        return {s: [measure(s, rates[s], k) for k in ctx.seeds] for s in INITS}

    def decide(rates):
        r = rows(rates)
        stalled = lambda s: [  # noqa: E731
            "diverged" if v["diverged"] else float(v["steps"] is None) for v in r[s]
        ]
        reached = all(v["steps"] is not None for v in r["kaiming"])
        return PRIMARY.compare(stalled("xavier"), stalled("kaiming"), ctx.seeds, reached)

    primary = recheck(decide, lrs, searches)
    paired = rows(lrs)
    (xavier, x_cap), (kaiming, k_cap) = (capped_counts(paired[s], cap, "steps") for s in INITS)
    slower = Spec(
        "Xavier needs at least twice Kaiming's steps to the threshold",
        ("xavier", "kaiming"),
        "steps to the threshold",
        "log",
        math.log(2),
        +1,
    )
    secondaries = [slower.compare(xavier, kaiming, ctx.seeds, capped=(x_cap, k_cap))]
    measured = {
        "data": data,
        "network": kind,
        "steps_to_threshold": {s: [v["steps"] for v in paired[s]] for s in INITS},
    }
    figure = plot_curves(
        ctx.out,
        "deep_init_loss.png",
        {f"{s} (lr {lrs[s]})": paired[s][0]["losses"] for s in INITS},
        xlabel="SGD step",
        ylabel="training loss (batch)",
        title=f"{DEPTH}-layer plain ReLU {kind}, first paired seed",
    )
    notes = (
        f"{DEPTH}-layer plain ReLU {kind} of width {cfg['width']} on {data} (the paper: a "
        f"30-layer plain conv net on ImageNet), trained on {device}; cap {cap} steps; tuned "
        f"rates xavier {lrs['xavier']}, kaiming {lrs['kaiming']} (steps None: stalled)."
    )
    return Outcome(primary, measured, [figure], notes, secondaries, searches)
