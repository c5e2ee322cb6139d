"""Arms that are recipes: every arm trains with trainlab's own recipe and engine, and a seed fixes
the training subset, initialization and batch order in every arm, so within a seed the arms
differ only in what the arm changes (``train.seed``).

Each arm gets its own learning rate, searched on three tuning seeds with a validation split
held out of their training subsets (:func:`tune_arm`; the test split is never looked at). The
budget (epochs) of an over-fitting experiment grows until every treated arm has reached its
regime (:func:`tune_until_reached`): an arm whose validation loss still improves by more than
:data:`STILL_IMPROVING` of itself over the last 20% of its budget has not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from trainlab.data import ImageDataset
from trainlab.lab import evidence, paper
from trainlab.lab.tuning import LRSearch, log_grid, recheck, tune_lr

OVERFIT_GAP = 0.15  # the over-fitting regime: baseline train - test accuracy >= 15 points
MIN_EFFECT = 0.005  # 0.5 accuracy points: within what the test subset and seed move
STILL_IMPROVING = 0.01  # validation loss falling by more than 1% over the last 20% of a budget
VAL_FRACTION = 0.2  # of a tuning seed's training subset, held out to score its rate


def training_overrides(epochs: int, seed: int, device: Any = "cpu", batch: int = 64) -> list[str]:
    """The training part of every lab recipe: ``epochs`` of batches of ``batch`` on ``device``
    (the CPU's sizes; :func:`trainlab.lab.sizes.lab_device` at paper scale), seeded."""
    return [
        f"train.epochs={epochs}",
        f"train.batch_size={batch}",
        f"train.device={device}",
        f"train.seed={seed}",
        "diagnostics.every=0",
    ]


def fit_recipe(overrides: list[str], data: ImageDataset) -> dict[str, Any]:
    """Train ``load_recipe(None, overrides)`` with the engine: ``{"status": "trained", "rows":
    [every epoch's metrics]}``, or ``{"status": "diverged"}`` when its loss became non-finite.
    At paper scale the run is remembered and continues across commands
    (:func:`trainlab.lab.paper.remembered`)."""
    from trainlab.errors import TrainingDiverged
    from trainlab.recipe import load_recipe

    recipe = load_recipe(None, overrides)

    def compute(folder):
        try:
            return {"status": "trained", "rows": paper.fit_resumable(recipe, data, folder)}
        except TrainingDiverged:
            return {"status": "diverged"}

    return paper.remembered(paper.run_key(overrides=overrides, data=data.source), compute)


def final(run: dict[str, Any], key: str) -> float | str:
    """The last epoch's ``key`` of a run, or its failure ("diverged")."""
    return run["rows"][-1][key] if run["status"] == "trained" else run["status"]


def fit_arms(
    base: Callable[[int], list[str]],
    arms: dict[str, list[str]],
    seeds: Sequence[int],
    data: ImageDataset,
) -> dict[str, list[dict[str, Any]]]:
    """Arm name -> ``fit_recipe(base(seed) + the arm's overrides)`` per seed, in seed order."""
    return {arm: [fit_recipe(base(s) + extra, data) for s in seeds] for arm, extra in arms.items()}


def tune_arm(
    base: Callable[[int], list[str]],
    extra: list[str],
    seeds: Sequence[int],
    data: ImageDataset,
    grid: Sequence[float],
) -> tuple[LRSearch, dict[float, list[dict[str, Any]]]]:
    """:func:`trainlab.lab.tuning.tune_lr` for one arm: each rate trains ``base(tuning seed) +
    extra`` with :data:`VAL_FRACTION` of its subset held out and scored every epoch; the score
    is the final validation error, ``inf`` if the run diverged (a non-finite loss, or its last
    epoch's training loss above its first's). Returns the search and every tuning run."""
    runs: dict[float, list[dict[str, Any]]] = {}

    def score(lr: float, seed: int) -> float:
        run = fit_recipe(base(seed) + tuned_overrides(extra, lr), data)
        runs.setdefault(lr, []).append(run)
        rows = run.get("rows")
        if run["status"] != "trained" or rows[-1]["train_loss"] > rows[0]["train_loss"]:
            return math.inf
        return 1.0 - rows[-1]["val_acc"]

    return tune_lr(score, grid, seeds), runs


def still_improving(val_losses: Sequence[float]) -> float:
    """How much a validation-loss curve fell over the last 20% of its epochs, relative to its
    value there: (loss at 80% - final loss) / loss at 80% (negative when it rose)."""
    at = val_losses[max(0, math.ceil(0.8 * len(val_losses)) - 1)]
    return (at - val_losses[-1]) / at


def tune_until_reached(
    base: Callable[[int, int], list[str]],
    arms: dict[str, list[str]],
    treated: Sequence[str],
    seeds: Sequence[int],
    data: ImageDataset,
    centre: float,
    budgets: Sequence[int],
    limit_seconds: float,
    later_runs: int,
) -> dict[str, Any]:
    """Tune every arm (``base(seed, epochs) + overrides``) at the first budget in ``budgets``
    (epochs) on a 3-point grid around ``centre`` (extended at an edge). While a ``treated``
    arm's mean validation-loss curve at its rate over the tuning seeds is still improving
    (:func:`still_improving` > :data:`STILL_IMPROVING`), grow to the next budget, the rates
    kept, and train every arm's rate again at it on the tuning seeds; unless that, and the
    ``later_runs`` paired runs at that budget, would take the experiment past
    ``limit_seconds`` (estimated from the seconds per tuning epoch so far). Returns the budget,
    the searches, each arm's improvement and whether it reached its regime, and the history."""
    start, trained = time.monotonic(), 0
    tuned = {
        a: tune_arm(lambda s, e=budgets[0]: base(s, e), extra, seeds, data, log_grid(centre, 3))
        for a, extra in arms.items()
    }
    searches = {a: t[0] for a, t in tuned.items()}
    curves = {a: [r for r in t[1][t[0].best] if r["status"] == "trained"] for a, t in tuned.items()}
    trained += sum(len(r.get("rows", [])) for t in tuned.values() for v in t[1].values() for r in v)
    history = []
    for k, epochs in enumerate(budgets):
        if k:
            per_epoch = (time.monotonic() - start) / max(1, trained)  # a tuning run's epoch
            cost = per_epoch * epochs * (len(arms) * len(seeds) + later_runs / (1 - VAL_FRACTION))
            if time.monotonic() - start + cost > limit_seconds:
                history.append({"epochs": epochs, "skipped": "would pass the time limit"})
                break
            curves = {
                a: [
                    fit_recipe(base(s, epochs) + tuned_overrides(arms[a], searches[a].best), data)
                    for s in seeds
                ]
                for a in arms
            }
            trained += len(arms) * len(seeds) * epochs
            curves = {a: [r for r in rs if r["status"] == "trained"] for a, rs in curves.items()}
        improving = {
            a: still_improving(
                [math.fsum(r["rows"][e]["val_loss"] for r in rs) / len(rs) for e in range(epochs)]
            )
            if rs
            else math.inf
            for a, rs in curves.items()
        }
        history.append({"epochs": epochs, "improving": improving})
        budget = epochs
        if all(improving[a] <= STILL_IMPROVING for a in treated):
            break
    reached = {a: improving[a] <= STILL_IMPROVING for a in arms}
    return {
        "epochs": budget,
        "searches": searches,
        "improving": improving,
        "reached": reached,
        "history": history,
    }


def tuned_overrides(extra: list[str], lr: float) -> list[str]:
    """An arm's overrides at ``lr``, its validation split scored every epoch (tuning runs)."""
    return [*extra, f"optim.lr={lr}", f"data.val_fraction={VAL_FRACTION}", "train.eval_every=1"]


def overfits(runs: dict[str, list[dict[str, Any]]], baseline: str) -> bool:
    """Whether ``baseline`` over-fits: its mean final train minus test accuracy (over the seeds
    that trained) is at least :data:`OVERFIT_GAP`, the regime that regularizers and augmentation
    are claimed to help in."""
    gaps = [
        r["rows"][-1]["train_acc"] - r["rows"][-1]["test_acc"]
        for r in runs[baseline]
        if r["status"] == "trained"
    ]
    return bool(gaps) and math.fsum(gaps) / len(gaps) >= OVERFIT_GAP


def accuracy_table(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per arm: each seed's final test and train accuracy (or its failure), and the means over
    the seeds that trained."""

    def mean(values: list[Any]) -> float | None:
        kept = [v for v in values if not isinstance(v, str)]
        return math.fsum(kept) / len(kept) if kept else None

    test = {a: [final(r, "test_acc") for r in rows] for a, rows in runs.items()}
    train = {a: [final(r, "train_acc") for r in rows] for a, rows in runs.items()}
    return {
        "test_acc_runs": test,
        "train_acc_runs": train,
        "test_acc_mean": {a: mean(v) for a, v in test.items()},
        "train_acc_mean": {a: mean(v) for a, v in train.items()},
    }


def paired_arms(ctx: Any, data_name: str, base: Callable[..., list[str]],
                overrides: dict[str, list[str]], treated: Sequence[str], centre: float,
                moved: int) -> PairedArms:  # fmt: skip
    """:class:`PairedArms` for an experiment's context: its size's test images of ``data_name``
    (drawn by the base seed), ``base(cfg, seed, epochs, device, batch)`` on the lab's device
    (batches of :data:`~trainlab.lab.sizes.PAPER_BATCH` at paper scale), its budgets and time
    limit, and the later runs' count (paired runs plus ``moved`` arms re-checked at two rates
    each) for the budget's growth."""
    from trainlab.lab.data import dataset, with_test_subset
    from trainlab.lab.nets import generator
    from trainlab.lab.sizes import PAPER_BATCH, lab_device

    cfg = ctx.cfg
    data = with_test_subset(dataset(data_name), cfg["test_images"],
                            generator(ctx.seed, ctx.name, "test"))  # fmt: skip
    device, batch = lab_device(ctx.size), PAPER_BATCH if ctx.size == "paper" else 64
    later = (len(overrides) + 2 * moved) * len(ctx.seeds)
    arms = PairedArms(
        lambda s, e: base(cfg, s, e, device, batch), overrides, treated, ctx.seeds,
        ctx.tuning_seeds, data, centre=centre, budgets=cfg["budgets"],
        limit_seconds=cfg["limit_seconds"], later_runs=later,
    )  # fmt: skip
    arms.device = device
    return arms


class PairedArms:
    """Recipe arms on the paired seeds at the budget and rates :func:`tune_until_reached`
    chose: every run is trained once (remembered) whichever comparison asks for it."""

    def __init__(
        self,
        base,
        overrides,
        treated,
        seeds,
        tuning_seeds,
        data,
        *,
        centre,
        budgets,
        limit_seconds,
        later_runs,
    ):
        self.base, self.overrides, self.seeds, self.data = base, overrides, list(seeds), data
        self.device: Any = "cpu"
        self.regime = tune_until_reached(
            base, overrides, treated, tuning_seeds, data, centre, budgets, limit_seconds, later_runs
        )
        self.epochs = self.regime["epochs"]
        self.searches: dict[str, LRSearch] = self.regime["searches"]
        self.lrs = {a: s.best for a, s in self.searches.items()}
        self._runs: dict[tuple[str, float], list[dict[str, Any]]] = {}

    def runs(self, arm: str, lr: float | None = None) -> list[dict[str, Any]]:
        lr = self.lrs[arm] if lr is None else lr
        if (arm, lr) not in self._runs:
            self._runs[arm, lr] = [
                fit_recipe(
                    self.base(s, self.epochs)
                    + [*self.overrides[arm], f"optim.lr={lr}", "train.eval_every=0"],
                    self.data,
                )
                for s in self.seeds
            ]
        return self._runs[arm, lr]

    def overfits(self, baseline: str) -> bool:
        return overfits({baseline: self.runs(baseline)}, baseline)

    def compare(
        self,
        name: str,
        treatment: str | Sequence[str],
        baseline: str,
        rates: dict[str, float] | None = None,
        min_effect: float = MIN_EFFECT,
    ):
        """The accuracy comparison of ``treatment`` (one arm, or the mean of several) against
        ``baseline`` at ``rates`` (the tuned ones by default): "not reached" unless the
        baseline over-fits and every treated arm reached its regime."""
        rates = {**self.lrs, **(rates or {})}
        arms = [treatment] if isinstance(treatment, str) else list(treatment)
        runs = {a: self.runs(a, rates[a]) for a in (*arms, baseline)}
        reached = self.overfits(baseline) and all(self.regime["reached"][a] for a in arms)
        return accuracy_comparison(name, runs, treatment, baseline, self.seeds, reached, min_effect)

    def primary(self, name: str, treatment: str | Sequence[str], baseline: str):
        """The primary comparison (:meth:`compare`), re-decided with each of its arms moved to
        its neighbouring rates (:func:`trainlab.lab.tuning.recheck`)."""
        moved = [treatment] if isinstance(treatment, str) else list(treatment)
        return recheck(lambda rates: self.compare(name, treatment, baseline, rates), self.lrs,
                       self.searches, [*moved, baseline])  # fmt: skip

    def table(self) -> dict[str, Any]:
        """What result.json records: the budget and how it was reached, and each arm's
        accuracies (the frame adds the rates and their searches)."""
        runs = {a: self.runs(a) for a in self.overrides}
        return {
            "epochs": self.epochs,
            "budget_history": self.regime["history"],
            "reached_regime": self.regime["reached"],
            **accuracy_table(runs),
        }


def accuracy_comparison(
    name: str,
    runs: dict[str, list[dict[str, Any]]],
    treatment: str | Sequence[str],
    baseline: str,
    seeds: Sequence[int],
    reached: bool,
    min_effect: float = MIN_EFFECT,
) -> evidence.Comparison:
    """The claim that ``treatment``'s test accuracy (the mean of several arms' per seed, when a
    sequence) beats ``baseline``'s by at least ``min_effect``, paired by seed, on the fraction
    scale; "not reached" unless ``reached``."""
    arms = [treatment] if isinstance(treatment, str) else list(treatment)
    values = []
    for k in range(len(seeds)):
        per_arm = [final(runs[a][k], "test_acc") for a in arms]
        failed = [v for v in per_arm if isinstance(v, str)]
        values.append(failed[0] if failed else math.fsum(per_arm) / len(per_arm))
    label = arms[0] if len(arms) == 1 else "mean(" + ", ".join(arms) + ")"
    return evidence.compare(
        name,
        "test accuracy",
        (label, baseline),
        values,
        [final(r, "test_acc") for r in runs[baseline]],
        seeds,
        min_effect,
        +1,
        reached,
        scale="fraction",
    )
