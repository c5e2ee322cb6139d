"""Experiment 10: zero-centred, scaled inputs make a classifier easier to optimize.

The lecture's picture: with inputs far from the origin (all pixel values positive), a linear
score ``w . x + b`` swings with any small change of ``w``, because ``x`` is long in every
direction the weights could move; centring (and scaling) the data shrinks ``x`` to its
variation (LeCun et al. 1998, "Efficient BackProp", sec. 4.3). The normalizers compared are
`trainlab.preprocess`'s: raw 0..255 pixels ("none"), the mean image subtracted (AlexNet), the
channel mean subtracted (VGG) and per-channel standardization (ResNet).

Evidence. For each model (a linear softmax classifier and a one-hidden-layer ReLU MLP) and each
centred preprocessing, two comparisons against raw pixels on paired seeds (within a seed every
arm shares the training subset, the initial weights and the batch order), judged by
:func:`trainlab.lab.evidence.compare` (paired-t 95% interval), with the claimed sign -1:

- held-out loss: the cross-entropy on a fixed random subset of the test split after the same
  number of SGD steps, lower than raw's by at least :data:`MIN_LOSS_EFFECT`;
- sensitivity: log10 of the trained network's mean relative loss change under small relative
  weight noise (:func:`weight_sensitivity`), lower than raw's by at least
  :data:`MIN_SENSITIVITY_EFFECT` (a factor of 2); "not reached" unless the raw network learned
  something (its mean held-out accuracy at least :data:`LEARNED_MARGIN` above chance, 1/10): a
  network that collapsed to a constant output (dead ReLUs) has a loss no weight noise moves,
  which says nothing about the lecture's picture.

Each (model, preprocessing) trains at its own learning rate, tuned by
:func:`trainlab.lab.arms.tune_lr` on a tuning seed that is none of the paired seeds, scored on
a validation split held out from the training images (never the test split): a log grid of 5
rates half a decade apart centred on :data:`LR_SCALE` / RMS of that arm's preprocessed inputs
(so raw pixels, 100x larger, start 100x lower), extended past an edge that holds the best; a run
diverges if its loss is not finite or ends above its start. A paired run whose loss becomes
non-finite is scored with its initial weights (it learned nothing).

Verdict rule "all" (:func:`~trainlab.lab.evidence.overall_verdict`): did not hold if any
comparison did not hold, else not reached if any was not reached, else inconclusive if any
was, else held. Smoke runs use 2 seeds, which
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
from trainlab.lab.data import dataset, test_split
from trainlab.lab.figures import comparison_intervals, draw_curves, pyplot, save_figure
from trainlab.lab.numbers import mean_std
from trainlab.lab.runs import at_size, generator, initialized, sgd_curve
from trainlab.preprocess import compute_stats, make_normalizer

SPECS = {  # arm -> trainlab.preprocess normalizer
    "raw": "none",
    "mean_image": "mean_image",
    "channel_mean": "channel_mean",
    "standardize": "standardize",
}
CENTRED = ("mean_image", "channel_mean", "standardize")
MODELS = ("linear", "mlp")
LR_SCALE = 2e-3  # grid centre = LR_SCALE / RMS of the arm's preprocessed training inputs
NOISE = 0.05  # weight perturbation: 5% of each weight matrix's RMS, per entry
DRAWS = 8
# Held-out loss: at least 0.05 nats lower. The standard error of a mean cross-entropy over
# 2,000 test images is about 0.03 nats (per-image losses spread by ~1.5); smaller gains would
# not be seen on a fresh test set.
MIN_LOSS_EFFECT = 0.05
# Sensitivity: at least a factor 2 lower (log10 units); a smaller factor is within how much the
# tuned learning rate alone moves it between neighbouring rates of the grid.
MIN_SENSITIVITY_EFFECT = math.log10(2)
# The sensitivity comparison needs a raw network that learned: held-out accuracy at least 5
# points above chance (1/10), five binomial standard errors on 1,000 test images.
LEARNED_MARGIN = 0.05
BATCH = 128
SIZES = {  # smoke, quick, full
    "train_images": (512, 5000, 10000),
    "val_images": (256, 1000, 2000),  # held out of the training split, for tuning only
    "eval_images": (256, 1000, 2000),  # random test images, the same for every run
    "steps": (5, 120, 600),
    "mlp_hidden": (8, 32, 128),
    "seeds": (2, 3, 5),  # paired seeds; 2 (smoke) never decide
    "models": (("linear",), MODELS, MODELS),
}


def _model(kind: str, dim: int, hidden: int, seed: int) -> nn.Module:
    def make() -> nn.Module:
        if kind == "linear":
            return nn.Sequential(nn.Flatten(), nn.Linear(dim, 10))
        return nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    return initialized(make, "kaiming", "relu", generator(seed, "exp10", kind))


@torch.no_grad()
def _loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    value = float(F.cross_entropy(model(x), y))
    return value if math.isfinite(value) else math.inf


@torch.no_grad()
def weight_sensitivity(model: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> float:
    """Mean relative loss change ``|L(W + dW) - L(W)| / L(W)`` over ``DRAWS`` perturbations,
    ``dW_ij = NOISE * rms(W) * N(0, 1)`` for every weight matrix (biases untouched)."""
    base = _loss(model, x, y)
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    saved = [w.clone() for w in weights]
    changes = []
    for _ in range(DRAWS):
        for w, w0 in zip(weights, saved, strict=True):
            noise = torch.randn(w0.shape, generator=gen, dtype=w0.dtype)
            w.copy_(w0 + NOISE * w0.pow(2).mean().sqrt() * noise)
        changes.append(abs(_loss(model, x, y) - base) / base)
    for w, w0 in zip(weights, saved, strict=True):
        w.copy_(w0)
    return float(sum(changes) / len(changes))


def input_rms(x: Tensor) -> float:
    """Root mean square of every entry of ``x`` (float64): the scale a learning rate for a
    first layer on ``x`` is set against (the gradient of a weight grows with its input)."""
    return float(x.double().pow(2).mean().sqrt())


def _features(arm: str, stats, *images: Tensor) -> list[Tensor]:
    """``images`` preprocessed by the arm's normalizer, built from the training ``stats``."""
    spec = SPECS[arm]
    shape = tuple(images[0].shape[1:])
    normalize = make_normalizer(spec, None if spec == "none" else stats, shape=shape)
    with torch.no_grad():
        return [normalize(x) for x in images]


def _draw(data, n_train: int, n_val: int, seed: int) -> tuple[Tensor, ...]:
    """A seed's training subset (and, after it, ``n_val`` disjoint validation images) of the
    training split."""
    order = torch.randperm(len(data.train_labels), generator=generator(seed, "exp10", "data"))
    train, val = order[:n_train].sort().values, order[n_train : n_train + n_val].sort().values
    return data.train_images[train], data.train_labels[train], data.train_images[val], \
        data.train_labels[val]  # fmt: skip


def _train(kind: str, cfg: dict, x: Tensor, y: Tensor, lr: float, seed: int) -> dict:
    """One model trained on preprocessed ``x`` for ``cfg['steps']`` SGD steps from the seed's
    initial weights, in the seed's batch order."""
    model = _model(kind, x[0].numel(), cfg["mlp_hidden"], seed)
    start = copy.deepcopy(model)
    curve = sgd_curve(
        model, x, y, steps=cfg["steps"], lr=lr, batch=BATCH,
        gen=generator(seed, "exp10", "batches"),
    )  # fmt: skip
    finite = all(math.isfinite(v) for v in curve)
    return {"model": model if finite else start, "curve": curve, "diverged": arms.diverged(curve)}


@experiment(
    "preprocessing",
    claim=(
        "Zero-centred (and scaled) inputs make a classifier easier to optimize and its loss less "
        "sensitive to small changes of the weights than raw, all-positive inputs."
    ),
    source=(
        "CS231n lecture 'Training Neural Networks' (data preprocessing); LeCun et al. 1998, "
        "'Efficient BackProp', sec. 4.3"
    ),
    rule=(
        "CIFAR-10 subsets, a linear softmax classifier and a one-hidden-layer ReLU MLP (no batch "
        "norm), SGD for the same steps. Every (model, preprocessing) gets its own learning rate, "
        "tuned on a tuning seed against a validation split held out of the training images (log "
        f"grid of 5 centred on {LR_SCALE} / RMS of its inputs, half a decade apart, extended at "
        "an edge; divergence = non-finite loss or a loss ending above its start). For each model "
        "and each centred preprocessing (mean_image, channel_mean, standardize) against raw "
        "0..255 pixels, on paired seeds (5 full, 3 quick): (a) held-out test loss lower by at "
        f"least {MIN_LOSS_EFFECT} nats; (b) log10 of the relative loss change under "
        f"{NOISE:.0%} relative weight noise (trained weights) lower by at least "
        f"{MIN_SENSITIVITY_EFFECT:.3f} (a factor 2), not reached unless raw's mean held-out "
        f"accuracy is at least 0.1 + {LEARNED_MARGIN} (a collapsed, constant network is "
        "insensitive to any weight). Each: held if the paired-t 95% interval lies below minus "
        "the minimum effect, did not hold if it lies above it, else inconclusive. Overall: did "
        "not hold if any did not hold, else not reached if any was, else inconclusive if any "
        "was, else held."
    ),
)
def run(out: Path, size: str, seed: int) -> Outcome:
    cfg = at_size(SIZES, size)
    models = cfg.pop("models")
    seeds = [seed + i for i in range(cfg["seeds"])]
    tuning_seed = seed + arms.TUNING_SEED
    data = dataset("cifar10")
    xe, ye = test_split(data, cfg["eval_images"], generator(seed, "exp10", "eval"))

    # each (model, arm) tunes its rate on the tuning seed's subset, scored on its validation split
    xt, yt, xv, yv = _draw(data, cfg["train_images"], cfg["val_images"], tuning_seed)
    stats = compute_stats(xt)
    searches: dict[str, dict[str, arms.LRSearch]] = {kind: {} for kind in models}
    centres: dict[str, float] = {}
    for arm in SPECS:
        ft, fv = _features(arm, stats, xt, xv)
        centres[arm] = LR_SCALE / input_rms(ft)

        def score(lr: float, kind: str, ft=ft, fv=fv) -> float:
            r = _train(kind, cfg, ft, yt, lr, tuning_seed)
            return math.inf if r["diverged"] else _loss(r["model"], fv, yv)

        for kind in models:
            searches[kind][arm] = arms.tune_lr(
                lambda lr, kind=kind, score=score: score(lr, kind), arms.log_grid(centres[arm])
            )

    # paired seeds: each seed's subset, statistics, initial weights and batch order in every arm
    rows = {kind: {arm: [] for arm in SPECS} for kind in models}
    for s in seeds:
        x, y, _, _ = _draw(data, cfg["train_images"], 0, s)
        stats = compute_stats(x)  # the training subset's statistics, never the test split's
        for arm in SPECS:
            fx, fe = _features(arm, stats, x, xe)
            for kind in models:
                r = _train(kind, cfg, fx, y, searches[kind][arm].best, s)
                noise = generator(s, "exp10", "noise")
                rows[kind][arm].append(
                    {
                        "loss": _loss(r["model"], fe, ye),
                        "accuracy": _accuracy(r["model"], fe, ye),
                        "sensitivity": weight_sensitivity(r["model"], fe, ye, noise),
                        "diverged": r["diverged"],
                        "curve": r["curve"],
                    }
                )

    comparisons = []
    learned = {}  # the sensitivity comparison's precondition, per model
    for kind in models:
        raw_acc = mean_std([r["accuracy"] for r in rows[kind]["raw"]])[0]
        learned[kind] = raw_acc >= 0.1 + LEARNED_MARGIN
        for arm in CENTRED:
            a, b = rows[kind][arm], rows[kind]["raw"]
            comparisons += [
                evidence.compare(
                    f"{kind}: {arm} ends with a lower held-out loss than raw",
                    "held-out loss",
                    (arm, "raw"),
                    [r["loss"] for r in a], [r["loss"] for r in b], seeds, MIN_LOSS_EFFECT, -1,
                ),
                evidence.compare(
                    f"{kind}: {arm} is less sensitive to weight noise than raw",
                    "log10 relative loss change",
                    (arm, "raw"),
                    [_log10(r["sensitivity"]) for r in a],
                    [_log10(r["sensitivity"]) for r in b],
                    seeds, MIN_SENSITIVITY_EFFECT, -1, reached=learned[kind],
                ),
            ]  # fmt: skip

    measured = {
        **cfg,
        "batch_size": BATCH,
        "seeds": seeds,
        "tuning_seed": tuning_seed,
        "weight_noise": NOISE,
        "lr_grid_centre": centres,
        "raw_learned": learned,
        **{f"{kind}_lr": {a: s.best for a, s in searches[kind].items()} for kind in models},
        **{
            f"{kind}_lr_search": {a: s.to_dict() for a, s in searches[kind].items()}
            for kind in models
        },
        **{
            f"{kind}_{field}": {a: [r[field] for r in rs] for a, rs in rows[kind].items()}
            for kind in models
            for field in ("loss", "accuracy", "sensitivity")
        },
        **{
            f"{kind}_loss_mean": {
                a: mean_std([r["loss"] for r in rs])[0] for a, rs in rows[kind].items()
            }
            for kind in models
        },
        **{
            f"{kind}_diverged_runs": {
                a: sum(r["diverged"] for r in rs) for a, rs in rows[kind].items()
            }
            for kind in models
        },
    }
    figures = [
        _plot(out, rows, searches),
        comparison_intervals(
            out, "comparisons.png", "Centred preprocessing against raw pixels", comparisons
        ),
    ]
    notes = (
        f"CIFAR-10: a training subset of {cfg['train_images']} images per seed (seeds {seeds}), "
        f"preprocessed with that subset's statistics; held-out loss on {cfg['eval_images']} "
        f"random test images (the same for every run) after {cfg['steps']} SGD steps (batch "
        f"{BATCH}, Nesterov momentum 0.9); MLP hidden width {cfg['mlp_hidden']}. Tuning on "
        f"seed {tuning_seed}'s subset, scored by the loss on {cfg['val_images']} other training "
        f"images. Sensitivity: mean over {DRAWS} draws of |L(W+dW)-L(W)|/L(W), dW = {NOISE} x "
        "RMS(W) x N(0,1) per weight matrix, with the trained weights, on the test images. "
        "x/255 without centring ('scale') is not an arm: the claim is centred against raw."
    )
    if size != "full":
        notes += (
            f" Size '{size}': fewer images, steps and seeds, a narrower MLP; models {list(models)}."
        )
    for kind in (k for k, ok in learned.items() if not ok):
        notes += (
            f" The raw-pixel {kind} did not learn (mean held-out accuracy "
            f"{mean_std(measured[f'{kind}_accuracy']['raw'])[0]:.3f} < 0.1 + {LEARNED_MARGIN}): "
            "its sensitivity comparisons are not reached."
        )
    return conclude(comparisons, measured, figures, notes)


def _log10(value: float) -> float:
    return math.log10(max(value, 1e-12))  # a loss that does not move at all: 1e-12


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


def _plot(out: Path, rows: dict, searches: dict) -> str:
    fig, axes = pyplot().subplots(len(rows), 2, figsize=(10, 3.5 * len(rows)), squeeze=False)
    for row, kind in enumerate(rows):
        ax = axes[row][0]
        curves = {
            f"{a} (lr {searches[kind][a].best:.2g})": rs[0]["curve"] for a, rs in rows[kind].items()
        }
        draw_curves(ax, curves, lw=1)
        ax.set(title=f"{kind}: training loss at the tuned rate, first seed", xlabel="SGD step")
        ax.set(ylabel="batch loss", ylim=(0.0, 5.0))  # raw pixels start with losses in the 100s
        ax.legend(fontsize=7)
        ax = axes[row][1]
        names = list(rows[kind])
        for i, a in enumerate(names):
            values = [r["sensitivity"] for r in rows[kind][a]]
            ax.scatter([i] * len(values), values, s=12)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        ax.set_title(f"{kind}: relative loss change, {NOISE:.0%} weight noise (per seed)")
        ax.set_yscale("log")
    return save_figure(fig, out, "preprocessing.png")
