"""Comparing arms over paired seeds: every arm trains once per seed with trainlab's own recipe
and engine, and a seed fixes the training subset, initialization and batch order in every arm,
so within a seed the arms differ only in what the arm changes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from trainlab.data import ImageDataset
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
    """A sentence for the notes when the reference arm did not overfit: regularizers and
    augmentation fight overfitting, so without it they can only slow fitting down."""
    gap = table[f"{reference}_train_minus_test_acc"]
    if gap >= 0.1:
        return ""
    return (
        f" The {what} did not overfit (train - test accuracy = {gap:+.3f}): the run was too "
        "short for the regime the claim is about, so these techniques could only slow fitting."
    )
