"""Comparing arms over paired seeds: every arm trains once per seed with trainlab's own recipe
and engine, and a seed fixes the training subset, initialization and batch order in every arm,
so within a seed the arms differ only in what the arm changes.

Each arm gets its own learning rate (:func:`tune_lr`): a log grid that brackets the optimum,
searched on a tuning seed that is not one of the paired seeds, then fixed for them; a claim
about arms compared at one shared rate would be a claim about that rate."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainlab.data import ImageDataset
from trainlab.lab import evidence
from trainlab.lab.numbers import mean_std
from trainlab.lab.runs import fit_recipe


def training_overrides(epochs: int, seed: int) -> list[str]:
    """The training part of every lab recipe: ``epochs`` of batches of 64 on the CPU, seeded."""
    return [
        f"train.epochs={epochs}",
        "train.batch_size=64",
        "train.device=cpu",
        f"train.seed={seed}",
    ]


def cnn_overrides(cfg: dict[str, Any], seed: int, *extra: str) -> list[str]:
    """A small CNN on a CIFAR-10 subset (``cfg``'s ``train_images``, ``widths`` and ``epochs``),
    then ``extra`` overrides and :func:`training_overrides`."""
    return [
        "data.name=cifar10",
        f"data.subset={cfg['train_images']}",
        "model.kind=cnn",
        "model.head=avg",  # pinned: the results in docs/lab.md were measured with this head
        f"model.widths={cfg['widths']}",
        *extra,
    ] + training_overrides(cfg["epochs"], seed)


def fit_arms(
    base: Callable[[int], list[str]],
    arms: dict[str, list[str]],
    seeds: Sequence[int],
    data: ImageDataset,
) -> dict[str, list[dict[str, Any]]]:
    """Arm name -> the last epoch's metrics of ``fit_recipe(base(seed) + the arm's overrides,
    data)``, one per seed, in seed order. A run that diverges counts as a classifier at chance
    (accuracy 1 / classes, loss inf) with ``"diverged": True``: it stays paired with its seed
    instead of silently leaving the comparison."""
    from trainlab.errors import TrainingDiverged

    def fit(overrides: list[str]) -> dict[str, Any]:
        try:
            return fit_recipe(overrides, data)
        except TrainingDiverged:
            chance = 1.0 / len(data.classes)
            return {"train_acc": chance, "test_acc": chance, "train_loss": math.inf,
                    "test_loss": math.inf, "diverged": True}  # fmt: skip

    return {arm: [fit(base(s) + extra) for s in seeds] for arm, extra in arms.items()}


def mean_of(rows: list[dict[str, Any]], key: str) -> float:
    return mean_std([r[key] for r in rows])[0]


def accuracy_table(
    runs: dict[str, list[dict[str, Any]]],
    reference: str,
    baseline_of: Callable[[str], str] = lambda arm: "",
) -> dict[str, Any]:
    """The measured numbers of a comparison: per arm the mean, spread and each seed's test
    accuracy, mean train accuracy and test loss; each arm's gain over its baseline (``reference``
    unless ``baseline_of`` names another), and how much the reference overfits (mean train minus
    test accuracy)."""
    acc = {arm: mean_std([r["test_acc"] for r in rows]) for arm, rows in runs.items()}
    baselines = {arm: baseline_of(arm) or reference for arm in runs}
    return {
        "test_acc_mean": {k: v[0] for k, v in acc.items()},
        "test_acc_std": {k: v[1] for k, v in acc.items()},
        "test_acc_runs": {k: [r["test_acc"] for r in v] for k, v in runs.items()},
        "train_acc_mean": {k: mean_of(v, "train_acc") for k, v in runs.items()},
        "test_loss_mean": {k: mean_of(v, "test_loss") for k, v in runs.items()},
        f"gain_over_{reference}": {
            k: v[0] - acc[baselines[k]][0] for k, v in acc.items() if baselines[k] in acc
        },
        f"{reference}_train_minus_test_acc": mean_std(
            [r["train_acc"] - r["test_acc"] for r in runs[reference]]
        )[0],
    }


def underfit_note(table: dict[str, Any], reference: str, what: str) -> str:
    """A sentence for the notes when the reference arm did not over-fit (its train - test gap is
    below :data:`OVERFIT_GAP`, the precondition of :func:`overfits`): regularizers and
    augmentation fight over-fitting, so without it their comparisons are "not reached"."""
    gap = table[f"{reference}_train_minus_test_acc"]
    if gap >= OVERFIT_GAP:
        return ""
    return (
        f" The {what} did not over-fit (train - test accuracy = {gap:+.3f} < {OVERFIT_GAP}): "
        "the regime the claim is about was not reached, so its comparisons say 'not reached'."
    )


MIN_SEEDS = 3  # fewer paired seeds than this never decide a claim
OVERFIT_GAP = 0.15  # the over-fitting regime: baseline train - test accuracy >= 15 points
MIN_EFFECT = 0.005  # 0.5 accuracy points: see paired_comparisons


def paired_rule(baseline: str) -> str:
    """How every paired comparison of arms is decided, as each experiment's rule states it (the
    numbers are this module's constants, so the text cannot drift from the code)."""
    return (
        f"the mean paired test-accuracy difference's paired-t 95% interval above +{MIN_EFFECT} "
        f"held, below it did not hold, containing it (or fewer than {MIN_SEEDS} seeds) "
        f"inconclusive; not reached unless {baseline} over-fits (train - test accuracy >= "
        f"{OVERFIT_GAP}). Overall: did not hold if any did not hold, else not reached if any "
        "was, else inconclusive if any was, else held"
    )


def overfits(runs: dict[str, list[dict[str, Any]]], baseline: str) -> bool:
    """Whether ``baseline`` over-fits: its mean train minus test accuracy is at least
    :data:`OVERFIT_GAP`, the regime that regularizers and augmentation are claimed to help in."""
    return mean_of(runs[baseline], "train_acc") - mean_of(runs[baseline], "test_acc") >= OVERFIT_GAP


def paired_comparisons(
    runs: dict[str, list[dict[str, Any]]],
    pairs: dict[str, tuple[str, str]],
    seeds: Sequence[int],
    reached: dict[str, bool],
    min_effect: float = MIN_EFFECT,
) -> list[evidence.Comparison]:
    """One :class:`evidence.Comparison` per ``name -> (treatment, baseline)`` in ``pairs``: the
    claim that the treatment's test accuracy beats the baseline's by at least ``min_effect``, on
    the per-seed test accuracies of :func:`fit_arms` (paired by seed), with the paired-t 95%
    interval. ``reached[baseline]`` says whether the baseline's regime precondition held; when
    not, the verdict is "not reached". With fewer than :data:`MIN_SEEDS` seeds (the smoke size)
    the verdict is "inconclusive": two seeds decide nothing.

    The minimum effect, 0.5 accuracy points by default, is fixed before the run: smaller gains
    are within what the choice of the test subset (a binomial standard error of about 1 point on
    2,000 images) and the training seed move, and would not change a practitioner's choice."""
    return [
        evidence.compare(
            name,
            "test_acc",
            (treatment, baseline),
            [r["test_acc"] for r in runs[treatment]],
            [r["test_acc"] for r in runs[baseline]],
            seeds,
            min_effect,
            +1,
            reached=reached[baseline],
            min_seeds=MIN_SEEDS,
        )
        for name, (treatment, baseline) in pairs.items()
    ]


TUNING_SEED = 10_000  # added to an experiment's seed: the tuning run shares no paired seed
GRID_POINTS = 5  # the least a learning-rate grid holds
GRID_RATIO = math.sqrt(10)  # neighbouring rates of a grid: half a decade apart
MAX_EXTENSIONS = 3  # a grid grows at most this many points past its edges


def log_grid(centre: float, points: int = GRID_POINTS, ratio: float = GRID_RATIO) -> list[float]:
    """``points`` learning rates centred (in log scale) on ``centre``, ``ratio`` apart, rising,
    rounded to 3 significant digits so that they print and key as written."""
    half = (points - 1) / 2
    return [_tidy(centre * ratio ** (i - half)) for i in range(points)]


def _tidy(lr: float) -> float:
    return float(f"{lr:.3g}")


def diverged(losses: Sequence[float], window: int = 0) -> bool:
    """A training run diverged if a loss is not finite, or if it ends above where it started:
    the mean of the last ``window`` losses (10% of them, at least one, by default) is above the
    first loss."""
    if not losses or not all(math.isfinite(v) for v in losses):
        return True
    window = window or max(1, len(losses) // 10)
    return math.fsum(losses[-window:]) / window > losses[0]


def final_loss(losses: Sequence[float], window: int = 0) -> float:
    """The mean of the last ``window`` losses (10% by default), or ``inf`` if the run
    :func:`diverged`: the score a learning-rate search minimises on a training curve."""
    if diverged(losses, window):
        return math.inf
    window = window or max(1, len(losses) // 10)
    return math.fsum(losses[-window:]) / window


@dataclass
class LRSearch:
    """A learning-rate search: every rate tried with its score (lower is better, ``inf`` for a
    diverged run), the chosen rate, and how many points were added past the first grid's edges
    to bracket it."""

    scores: dict[float, float] = field(default_factory=dict)
    best: float = math.nan
    extensions: int = 0
    bracketed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tried": sorted(self.scores),
            "score": [self.scores[lr] for lr in sorted(self.scores)],
            "best": self.best,
            "extensions": self.extensions,
            "bracketed": self.bracketed,
        }


def tune_lr(
    score: Callable[[float], float],
    grid: Sequence[float],
    *,
    ratio: float = GRID_RATIO,
    max_extensions: int = MAX_EXTENSIONS,
) -> LRSearch:
    """The learning rate in ``grid`` (at least :data:`GRID_POINTS` rising rates) with the lowest
    ``score(lr)``, the grid extended by a factor ``ratio`` past whichever edge holds the best
    until the best is interior (``bracketed``) or ``max_extensions`` points were added. A rate
    that diverges scores ``inf``; when every rate diverges the grid grows downwards. Ties go to
    the smaller rate (the safer one)."""
    if len(grid) < GRID_POINTS or list(grid) != sorted(grid) or min(grid) <= 0:
        raise ValueError(
            f"grid must hold at least {GRID_POINTS} rising positive rates, got {list(grid)}"
        )
    search = LRSearch()
    exact = {_tidy(lr): lr for lr in grid}  # extensions step from the unrounded edge
    for lr in exact:
        search.scores[lr] = score(lr)
    while True:
        rates = sorted(search.scores)
        search.best = min(rates, key=lambda lr: (search.scores[lr], lr))
        low_edge, high_edge = search.best == rates[0], search.best == rates[-1]
        search.bracketed = not (low_edge or high_edge)
        if search.bracketed or search.extensions >= max_extensions:
            return search
        step = exact[rates[0]] / ratio if low_edge else exact[rates[-1]] * ratio
        exact[_tidy(step)] = step
        search.scores[_tidy(step)] = score(_tidy(step))
        search.extensions += 1


def tune_arm(
    base: Callable[[int], list[str]],
    extra: list[str],
    seed: int,
    data: ImageDataset,
    grid: Sequence[float],
    val_fraction: float = 0.2,
) -> LRSearch:
    """:func:`tune_lr` for one arm of :func:`fit_arms`: each rate trains ``base(tuning seed) +
    extra`` with ``val_fraction`` of its training subset held out, and scores the held-out
    error; ``inf`` if the run diverged: it stopped on a non-finite loss, or its last epoch's
    training loss ended above its first epoch's (:func:`diverged`'s rule, by epochs). The test
    split is never looked at."""
    from trainlab.errors import TrainingDiverged

    def score(lr: float) -> float:
        overrides = base(seed + TUNING_SEED) + extra
        overrides += [f"optim.lr={lr}", f"data.val_fraction={val_fraction}"]
        try:
            final = fit_recipe(overrides, data)
        except TrainingDiverged:
            return math.inf
        if diverged([final["first_train_loss"], final["train_loss"]], window=1):
            return math.inf
        return 1.0 - final["val_acc"]

    return tune_lr(score, grid)


def fit_tuned_arms(
    base: Callable[[int], list[str]],
    arms: dict[str, list[str]],
    seeds: Sequence[int],
    data: ImageDataset,
    grid: Sequence[float],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, LRSearch]]:
    """Each arm's learning rate by :func:`tune_arm` (on the tuning seed ``seeds[0] +``
    :data:`TUNING_SEED`), then :func:`fit_arms` with it on the paired ``seeds``. Returns the
    runs and the searches, by arm."""
    searches = {arm: tune_arm(base, extra, seeds[0], data, grid) for arm, extra in arms.items()}
    tuned = {arm: extra + [f"optim.lr={searches[arm].best}"] for arm, extra in arms.items()}
    return fit_arms(base, tuned, seeds, data), searches


def device_training_overrides(
    epochs: int, seed: int, device: Any, batch_size: int = 64
) -> list[str]:
    """:func:`training_overrides` on ``device`` (a ``torch.device`` or its name, e.g. the
    result of :func:`trainlab.lab.runs.lab_device`: CUDA at the paper's scale where there is
    one) with batches of ``batch_size``; the engine puts the model and data there."""
    return [
        f"train.epochs={epochs}",
        f"train.batch_size={batch_size}",
        f"train.device={device}",
        f"train.seed={seed}",
    ]
