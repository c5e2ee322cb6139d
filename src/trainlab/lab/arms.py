"""Comparing arms over paired seeds: every arm trains once per seed with trainlab's own recipe
and engine, and a seed fixes the training subset, initialization and batch order in every arm,
so within a seed the arms differ only in what the arm changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    data)``, one per seed, in seed order."""
    return {arm: [fit_recipe(base(s) + extra, data) for s in seeds] for arm, extra in arms.items()}


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
