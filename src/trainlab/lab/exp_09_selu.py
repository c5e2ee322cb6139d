"""Experiment 9: a deep SELU network normalizes itself (Klambauer et al. 2017).

SELU's ``alpha ~ 1.6733`` and ``lambda ~ 1.0507`` are chosen so that, with LeCun-normal
weights, the map from one layer's (mean, variance) to the next has the attracting fixed point
(0, 1). ReLU with Kaiming weights (He et al. 2015) keeps the second moment but not the mean:
every ReLU output is positive.

Evidence. Three comparisons, each on seeds stated in :data:`SIZES`, judged by
:func:`trainlab.lab.evidence.compare` (paired-t 95% interval):

- self-normalization at initialization, two claims of agreement (direction 0) over
  initialization seeds: the deepest hidden layer's activation mean agrees with the fixed
  point's 0 within :data:`MEAN_TOL`, and its standard deviation with 1 within :data:`STD_TOL`;
- "trains better than ReLU": the final training loss (cross-entropy of the trained network on
  its whole training subset) of SELU/LeCun-normal minus that of ReLU/Kaiming on paired seeds
  (same subset, initial weight draws and batch order within a seed), claimed negative by at
  least :data:`MIN_LOSS_EFFECT`. Each arm trains at its own learning rate
  (:func:`trainlab.lab.arms.tune_lr`: a log grid of 5 rates half a decade apart centred on
  :data:`LR_CENTRE`, extended past an edge that holds the best, on a tuning seed that is none of
  the paired seeds; a run diverges if its loss is not finite or ends above its start). A paired
  run whose loss becomes non-finite is scored at its initial training loss (it learned nothing).

Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if any
comparison did not hold, else inconclusive if any was, else held. Smoke runs use 2 seeds, which
never decide.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.lab import arms, evidence
from trainlab.lab.base import Outcome, conclude, experiment
from trainlab.lab.data import train_subset
from trainlab.lab.figures import comparison_intervals, draw_curves, plot_curves, pyplot, save_figure
from trainlab.lab.numbers import mean_std
from trainlab.lab.runs import at_size, generator, initialized, outputs_of, sgd_curve
from trainlab.models import build_model
from trainlab.preprocess import compute_stats, make_normalizer
from trainlab.recipe import ModelConfig

MEAN_TOL = 0.1  # agreement of the deepest layer's mean with 0: |mean| < 0.1
STD_TOL = 0.2  # agreement of the deepest layer's std with 1: |std - 1| < 0.2
# "Trains better": SELU's final training loss at least 0.02 nats below ReLU's. Smaller gaps are
# within what the tuned learning rate's grid step (half a decade) moves a 32-layer net's final
# loss, and would not make anyone pick one activation over the other.
MIN_LOSS_EFFECT = 0.02
LR_CENTRE = 0.003  # the grid's centre: 3e-4 ... 3e-2 for both arms before any extension
BATCH = 128
NETS = {"selu": ("selu", "lecun_normal"), "relu": ("relu", "kaiming")}
SIZES = {  # smoke, quick, full
    "depth": (4, 32, 32),
    "width": (16, 64, 128),
    "steps": (5, 150, 400),
    "train_images": (256, 5000, 10000),
    "probe_images": (64, 512, 512),
    "seeds": (2, 3, 5),  # paired training seeds; 2 (smoke) never decide
    "init_seeds": (2, 10, 10),  # initializations whose deepest-layer statistics are compared
}


def _mlp(activation: str, scheme: str, depth: int, width: int, seed: int, normalize: nn.Module):
    cfg = ModelConfig(kind="mlp", widths=[width] * depth, activation=activation, norm="none")
    make = lambda: build_model(cfg, (1, 28, 28), 10, normalize)  # noqa: E731
    return initialized(make, scheme, activation, generator(seed, "exp09", "init"))


def _activations(model: nn.Module) -> list[nn.Module]:
    """The non-linearities of the MLP: every module of ``features`` that is not a Linear, a
    placeholder (Identity) or the Flatten."""
    return [m for m in model.features if not isinstance(m, nn.Linear | nn.Identity | nn.Flatten)]


def layer_stats(model: nn.Module, x: Tensor) -> tuple[list[float], list[float]]:
    """Mean and std (over samples and units) of each hidden activation on the batch ``x``."""
    outputs = [out.double() for out in outputs_of(model, _activations(model), x, train=False)]
    return [float(h.mean()) for h in outputs], [float(h.std()) for h in outputs]


@torch.no_grad()
def dataset_loss(model: nn.Module, x: Tensor, y: Tensor, chunk: int = 1024) -> float:
    """Mean cross-entropy of ``model`` (eval mode) over all of ``x``, summed in float64 by
    chunks; ``inf`` if it is not finite."""
    model.eval()
    total = 0.0
    for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True):
        total += float(F.cross_entropy(model(xs), ys, reduction="sum").double())
    value = total / len(x)
    return value if math.isfinite(value) else math.inf


def _data(seed: int, n: int):
    x, y = train_subset("fashion-mnist", n, generator(seed, "exp09", "data"))
    return x, y, make_normalizer("standardize", compute_stats(x))


def _train(cfg: dict, arm: str, seed: int, lr: float, data: dict) -> dict:
    """One arm trained on ``seed``'s subset, initial weight draws and batch order (``data``
    caches each seed's subset)."""
    if seed not in data:
        data[seed] = _data(seed, cfg["train_images"])
    x, y, normalize = data[seed]
    model = _mlp(*NETS[arm], cfg["depth"], cfg["width"], seed, normalize)
    start = copy.deepcopy(model)
    curve = sgd_curve(
        model, x, y, steps=cfg["steps"], lr=lr, batch=BATCH,
        gen=generator(seed, "exp09", "batches"),
    )  # fmt: skip
    initial = dataset_loss(start, x, y)
    final = dataset_loss(model, x, y)
    return {
        "curve": curve,
        "diverged": arms.diverged(curve),
        "initial_loss": initial,
        "final_loss": final if math.isfinite(final) else initial,
    }


def _rule() -> str:
    return (
        "Fashion-MNIST standardized per channel, an MLP of 32 equal hidden layers without any "
        "normalization, SELU with LeCun-normal weights against ReLU with Kaiming weights. "
        "(1)-(2) Agreement over initialization seeds (10 full and quick): the deepest hidden "
        f"layer's activation mean agrees with 0 within {MEAN_TOL} and its std with 1 within "
        f"{STD_TOL} (paired-t 95% interval of measured - predicted inside (-tol, tol): held; "
        "wholly outside: did not hold; else inconclusive). (3) SELU's final training loss "
        f"minus ReLU's, paired seeds (5 full, 3 quick), below -{MIN_LOSS_EFFECT} nats: held if "
        "the interval lies below it, did not hold if it lies above, else inconclusive. Each "
        f"arm's SGD learning rate is tuned on a tuning seed (log grid of 5 around {LR_CENTRE}, "
        "half a decade apart, extended at an edge; divergence = non-finite loss or a loss "
        "ending above its start). Overall: did not hold if any did not hold, else "
        "inconclusive if any was, else held."
    )


@experiment(
    "selu",
    claim=(
        "A deep fully-connected network with SELU activations and LeCun-normal weights keeps its "
        "activations near zero mean and unit variance through every layer and trains without "
        "batch norm, better than the same ReLU network with Kaiming weights."
    ),
    source="Klambauer et al. 2017, 'Self-Normalizing Neural Networks'",
    rule=_rule(),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    depth, width = cfg["depth"], cfg["width"]
    seeds = [seed + i for i in range(cfg["seeds"])]
    init_seeds = [seed + i for i in range(cfg["init_seeds"])]

    # (1)-(2) statistics at initialization, on one probe batch, over initialization seeds
    data = {seed: _data(seed, cfg["train_images"])}
    x, _, normalize = data[seed]
    probe = x[: cfg["probe_images"]]
    stats = {
        arm: [layer_stats(_mlp(a, s, depth, width, i, normalize), probe) for i in init_seeds]
        for arm, (a, s) in NETS.items()
    }
    deepest_mean = {arm: [m[-1] for m, _ in rows] for arm, rows in stats.items()}
    deepest_std = {arm: [s[-1] for _, s in rows] for arm, rows in stats.items()}
    comparisons = [
        evidence.compare(
            "selu: deepest layer's mean agrees with 0 at init",
            "activation mean",
            ("selu (measured)", "fixed point 0"),
            deepest_mean["selu"], [0.0] * len(init_seeds), init_seeds, MEAN_TOL, 0,
        ),
        evidence.compare(
            "selu: deepest layer's std agrees with 1 at init",
            "activation std",
            ("selu (measured)", "fixed point 1"),
            deepest_std["selu"], [1.0] * len(init_seeds), init_seeds, STD_TOL, 0,
        ),
    ]  # fmt: skip

    # (3) each arm at its own learning rate, tuned on a seed none of the paired ones share
    tuning_seed = seed + arms.TUNING_SEED
    searches = {
        arm: arms.tune_lr(
            lambda lr, arm=arm: arms.final_loss(_train(cfg, arm, tuning_seed, lr, data)["curve"]),
            arms.log_grid(LR_CENTRE),
        )
        for arm in NETS
    }
    runs = {arm: [_train(cfg, arm, s, searches[arm].best, data) for s in seeds] for arm in NETS}
    final = {arm: [r["final_loss"] for r in rows] for arm, rows in runs.items()}
    comparisons.append(
        evidence.compare(
            "selu trains to a lower training loss than relu",
            "final training loss",
            ("selu", "relu"),
            final["selu"],
            final["relu"],
            seeds,
            MIN_LOSS_EFFECT,
            -1,
        )  # fmt: skip
    )

    measured = {
        **cfg,
        "batch_size": BATCH,
        "seeds": seeds,
        "init_seeds": init_seeds,
        "tuning_seed": tuning_seed,
        "lr": {arm: s.best for arm, s in searches.items()},
        "lr_search": {arm: s.to_dict() for arm, s in searches.items()},
        "deepest_layer_mean": deepest_mean,
        "deepest_layer_std": deepest_std,
        "max_abs_mean": {
            arm: max(abs(m) for means, _ in rows for m in means) for arm, rows in stats.items()
        },
        "std_range": {
            arm: [min(min(s) for _, s in rows), max(max(s) for _, s in rows)]
            for arm, rows in stats.items()
        },
        "initial_train_loss": {
            arm: [r["initial_loss"] for r in rows] for arm, rows in runs.items()
        },
        "final_train_loss": final,
        "final_train_loss_mean": {arm: mean_std(v)[0] for arm, v in final.items()},
        "diverged_runs": {arm: sum(r["diverged"] for r in rows) for arm, rows in runs.items()},
    }
    figures = [
        _plot_stats(out, stats),
        plot_curves(
            out,
            "training_curves.png",
            {f"{arm} (lr {searches[arm].best:g})": runs[arm][0]["curve"] for arm in NETS},
            hide_above=1e3,
            xlabel="SGD step",
            ylabel="training loss (batch)",
            yscale="log",
            title=f"Deep MLP without batch norm, seed {seeds[0]}",
        ),
        comparison_intervals(
            out, "comparisons.png", "SELU: self-normalization and training", comparisons
        ),
    ]
    notes = (
        f"Fashion-MNIST training subsets of {cfg['train_images']} images (one per seed, "
        f"standardized per channel by its own statistics); {depth} hidden layers of {width} "
        "units, no batch norm, no dropout. Statistics at initialization over init seeds "
        f"{init_seeds} on {cfg['probe_images']} images of seed {seed}'s subset (mean and std "
        f"over images and units). Training: SGD, Nesterov momentum 0.9, batch {BATCH}, "
        f"{cfg['steps']} steps, each arm at its tuned rate (tuning seed {tuning_seed}: score = "
        "mean batch loss over the last 10% of steps, inf if diverged); paired seeds "
        f"{seeds}; final training loss = cross-entropy on the whole training subset after "
        "training. ReLU's mean is positive by construction (its std is preserved by Kaiming's "
        "gain), which is why only SELU's statistics are compared with the fixed point."
    )
    if size != "full":
        notes += f" Size '{size}': narrower layers, fewer steps and seeds than the full run."
    return conclude(comparisons, measured, figures, notes)


def _plot_stats(out: Path, stats: dict[str, list[tuple[list[float], list[float]]]]) -> str:
    """Per layer, each arm's mean (left) and std (right) averaged over initialization seeds."""
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
