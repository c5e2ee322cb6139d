"""Experiment 9: a deep SELU network normalizes itself (Klambauer et al. 2017).

SELU's ``alpha ~ 1.6733`` and ``lambda ~ 1.0507`` are chosen so that, with LeCun-normal
weights, the map from one layer's (mean, variance) to the next has the attracting fixed point
(0, 1). ReLU with Kaiming weights (He et al. 2015) keeps the second moment but not the mean:
every ReLU output is positive. The practical half of the claim, that the deep SELU network
trains better than the same ReLU one without batch norm, is the primary; it is judged on the
log of the final training loss (a ratio: one ReLU seed ending high should not widen a
difference in nats); the fixed point is checked at initialization as secondary.
"""

from __future__ import annotations

import functools
import math

from torch import nn

from trainlab.lab.base import Context, Outcome, experiment
from trainlab.lab.data import train_subset
from trainlab.lab.figures import draw_curves, plot_curves, pyplot, save_figure
from trainlab.lab.loop import sgd, train
from trainlab.lab.nets import generator, initialized, mean_loss, outputs_of
from trainlab.lab.rules import Rule, Spec
from trainlab.lab.tuning import final_loss, log_grid, recheck, tune_lr
from trainlab.models import build_model
from trainlab.preprocess import compute_stats, make_normalizer
from trainlab.recipe import ModelConfig

MEAN_TOL = 0.1  # agreement of the deepest layer's mean with 0: |mean| < 0.1
STD_TOL = 0.2  # agreement of the deepest layer's std with 1: |std - 1| < 0.2
MIN_RATIO = 1.05  # "trains better": SELU's final training loss at least 5% below ReLU's
BATCH = 128
NETS = {"selu": ("selu", "lecun_normal"), "relu": ("relu", "kaiming")}
SIZES = {  # smoke, quick, full
    "depth": (4, 32, 32),
    "width": (16, 64, 128),
    "steps": (5, 80, 400),
    "train_images": (256, 2000, 10000),
    "probe_images": (64, 512, 512),
    "seeds": (3, 3, 6),
    "init_seeds": (3, 6, 10),  # initializations whose deepest-layer statistics are compared
}
PRIMARY = Spec(
    "selu trains to a lower training loss than relu",
    ("selu", "relu"),
    "final training loss (whole subset)",
    "log",
    math.log(MIN_RATIO),
    -1,
)
RULE = Rule(
    design="Fashion-MNIST standardized per channel, an MLP of 32 equal hidden layers without any "
    "normalization, SELU with LeCun-normal weights against ReLU with Kaiming weights, SGD "
    "Nesterov momentum 0.9, batch 128; a seed draws the subset, the weights and the batch "
    "order. Final training loss: cross-entropy of the trained network on its whole subset.",
    primary=PRIMARY,
    secondaries=(
        f"SELU's deepest layer's mean agrees with 0 within {MEAN_TOL} and its std "
        f"with 1 within {STD_TOL} at initialization, over init seeds",
    ),
    tuning="each arm's on the tuning seeds, a log grid of 3 rates half a decade apart around "
    "0.003 extended past an edge holding the best; score: the mean batch loss of the last 10% "
    "of steps (inf if diverged). Re-checked with each arm at its neighbouring rates.",
)


def mlp(activation: str, scheme: str, depth: int, width: int, seed: int, normalize: nn.Module):
    cfg = ModelConfig(kind="mlp", widths=[width] * depth, activation=activation, norm="none")
    make = lambda: build_model(cfg, (1, 28, 28), 10, normalize)  # noqa: E731
    return initialized(make, scheme, activation, generator(seed, "exp09", "init"))


def layer_stats(model: nn.Module, x) -> tuple[list[float], list[float]]:
    """Mean and std (over samples and units) of each hidden activation on the batch ``x``."""
    acts = [m for m in model.features if not isinstance(m, nn.Linear | nn.Identity | nn.Flatten)]
    outputs = [out.double() for out in outputs_of(model, acts, x, train=False)]
    return [float(h.mean()) for h in outputs], [float(h.std()) for h in outputs]


def _plot_stats(out, stats: dict[str, list[tuple[list[float], list[float]]]]) -> str:
    """Per layer, each arm's mean (left) and std (right) averaged over init seeds."""
    fig, axes = pyplot().subplots(1, 2, figsize=(9, 3.6))
    for i, (what, level) in enumerate((("mean", 0), ("std", 1))):
        avg = {
            arm: [sum(col) / len(col) for col in zip(*(r[i] for r in rows), strict=True)]
            for arm, rows in stats.items()
        }
        draw_curves(axes[i], avg, marker="o", ms=3)
        axes[i].axhline(level, color="gray", lw=0.5)
        axes[i].set(xlabel="hidden layer", title=f"activation {what} per layer (init)")
        axes[i].legend(fontsize=8)
    return save_figure(fig, out, "layer_stats.png")


@experiment(
    "selu",
    claim=(
        "A deep fully-connected network with SELU activations and LeCun-normal weights keeps its "
        "activations near zero mean and unit variance through every layer and trains without "
        "batch norm, better than the same ReLU network with Kaiming weights."
    ),
    source="Klambauer et al. 2017, 'Self-Normalizing Neural Networks'",
    sizes=SIZES,
    rule=RULE,
)
def run(ctx: Context) -> Outcome:
    cfg = ctx.cfg
    depth, width = cfg["depth"], cfg["width"]
    data = {}
    for s in ctx.seeds + ctx.tuning_seeds:
        x, y = train_subset("fashion-mnist", cfg["train_images"], generator(s, "exp09", "data"))
        data[s] = (x, y, make_normalizer("standardize", compute_stats(x)))
    x0, _, normalize0 = data[ctx.seeds[0]]
    probe = x0[: cfg["probe_images"]]
    init_seeds = [ctx.seed + i for i in range(cfg["init_seeds"])]
    stats = {
        arm: [layer_stats(mlp(a, s, depth, width, i, normalize0), probe) for i in init_seeds]
        for arm, (a, s) in NETS.items()
    }

    @functools.cache
    def measure(arm: str, lr: float, seed: int) -> dict:
        x, y, normalize = data[seed]
        model = mlp(*NETS[arm], depth, width, seed, normalize)
        gen = generator(seed, "exp09", "batches")
        done = train(model, sgd(model, lr), x, y, batch=BATCH, steps=cfg["steps"], gen=gen)
        loss = math.inf if done.diverged else mean_loss(model, x, y)  # inf: the last update too
        final = loss if math.isfinite(loss) else "diverged"
        return {"losses": done.losses, "final": final, "tuning": final_loss(done.losses)}

    score = lambda a: lambda lr, s: measure(a, lr, s)["tuning"]  # noqa: E731
    searches = {a: tune_lr(score(a), log_grid(0.003, 3), ctx.tuning_seeds) for a in NETS}
    lrs = {a: s.best for a, s in searches.items()}

    def finals(arm: str, lr: float) -> list:
        return [measure(arm, lr, s)["final"] for s in ctx.seeds]

    primary = recheck(lambda r: PRIMARY.of(lambda a: finals(a, r[a]), ctx.seeds), lrs, searches)
    secondaries = []
    for i, (what, point, tol) in enumerate((("mean", 0.0, MEAN_TOL), ("std", 1.0, STD_TOL))):
        spec = Spec(
            f"selu: deepest layer's {what} agrees with {point:g} at init",
            ("selu (measured)", f"fixed point {point:g}"),
            f"activation {what}",
            "linear",
            tol,
            0,
        )
        deepest = [rows[i][-1] for rows in stats["selu"]]
        secondaries.append(spec.compare(deepest, [point] * len(init_seeds), init_seeds))
    measured = {
        "init_seed_values": init_seeds,
        "deepest_layer_mean": {a: [r[0][-1] for r in rows] for a, rows in stats.items()},
        "deepest_layer_std": {a: [r[1][-1] for r in rows] for a, rows in stats.items()},
        "final_train_loss": {a: finals(a, lrs[a]) for a in NETS},
    }
    figures = [
        _plot_stats(ctx.out, stats),
        plot_curves(
            ctx.out,
            "training_curves.png",
            {f"{a} (lr {lrs[a]:g})": measure(a, lrs[a], ctx.seeds[0])["losses"] for a in NETS},
            hide_above=1e3,
            xlabel="SGD step",
            ylabel="training loss (batch)",
            yscale="log",
            title=f"Deep MLP without batch norm, seed {ctx.seeds[0]}",
        ),
    ]
    notes = (
        f"Fashion-MNIST subsets of {cfg['train_images']} images (one per seed, standardized by "
        f"its own statistics); {depth} hidden layers of {width} units. Statistics at "
        f"initialization over init seeds {init_seeds} on {cfg['probe_images']} images. ReLU's "
        "mean is positive by construction, which is why only SELU's statistics are compared "
        "with the fixed point."
    )
    return Outcome(primary, measured, figures, notes, secondaries, searches)
