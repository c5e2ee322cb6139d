"""The learning-rate search every tuned arm of the lab goes through, and the check that a verdict
does not hang on the rate it chose.

An arm's rate is searched on a log grid that brackets its optimum (:func:`tune_lr`), scored on
at least three *tuning seeds*, none of them a paired seed (:func:`trainlab.lab.sizes.
tuning_seeds`): the rate with the lowest mean score wins, ties are broken by the mean of its
ranks within each tuning seed, and rates that remain tied are recorded. A claim about arms
compared at one shared rate would be a claim about that rate; a verdict that flips when an arm
moves to a neighbouring (or tied) rate of its grid is **sensitive** (:func:`recheck`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

GRID_POINTS = 5  # the least a learning-rate grid holds
GRID_RATIO = math.sqrt(10)  # neighbouring rates of a grid: half a decade apart
MAX_EXTENSIONS = 3  # a grid grows at most this many points past its edges
MIN_TUNING_SEEDS = 3


def log_grid(centre: float, points: int = GRID_POINTS, ratio: float = GRID_RATIO) -> list[float]:
    """``points`` learning rates centred (in log scale) on ``centre``, ``ratio`` apart, rising,
    rounded to 3 significant digits so that they print and key as written."""
    half = (points - 1) / 2
    return [tidy(centre * ratio ** (i - half)) for i in range(points)]


def tidy(lr: float) -> float:
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


def mean_ranks(scores: dict[float, list[float]]) -> dict[float, float]:
    """Each rate's mean rank over the tuning seeds (1 = best; tied scores share the mean of
    their ranks; ``inf`` ranks last)."""
    rates = list(scores)
    seeds = len(next(iter(scores.values())))
    total = dict.fromkeys(rates, 0.0)
    for k in range(seeds):
        ordered = sorted(rates, key=lambda r: scores[r][k])
        i = 0
        while i < len(ordered):
            j = i
            while j + 1 < len(ordered) and scores[ordered[j + 1]][k] == scores[ordered[i]][k]:
                j += 1
            for r in ordered[i : j + 1]:
                total[r] += (i + j) / 2 + 1
            i = j + 1
    return {r: total[r] / seeds for r in rates}


@dataclass
class LRSearch:
    """A learning-rate search: every rate tried with its score on each tuning seed (lower is
    better, ``inf`` for a diverged run), the chosen rate, the rates tied with it (same mean
    score and mean rank), how many points were added past the first grid's edges, and whether
    the choice is interior (``bracketed``)."""

    seeds: list[int]
    scores: dict[float, list[float]] = field(default_factory=dict)
    best: float = math.nan
    ties: list[float] = field(default_factory=list)
    extensions: int = 0
    bracketed: bool = False

    def mean(self, lr: float) -> float:
        values = self.scores[lr]
        return math.inf if any(math.isinf(v) for v in values) else math.fsum(values) / len(values)

    def neighbours(self) -> list[float]:
        """The rates a verdict is re-checked at: the tried rates just below and above the chosen
        one, and any rate tied with it."""
        rates = sorted(self.scores)
        i = rates.index(self.best)
        near = [rates[j] for j in (i - 1, i + 1) if 0 <= j < len(rates)]
        return sorted(set(near) | set(self.ties))

    def to_dict(self) -> dict[str, Any]:
        rates = sorted(self.scores)
        ranks = mean_ranks(self.scores)
        return {
            "tuning_seeds": self.seeds,
            "tried": rates,
            "mean_score": [self.mean(lr) for lr in rates],
            "mean_rank": [ranks[lr] for lr in rates],
            "scores": [self.scores[lr] for lr in rates],
            "best": self.best,
            "ties": self.ties,
            "extensions": self.extensions,
            "bracketed": self.bracketed,
        }


def tune_lr(
    score: Callable[[float, int], float],
    grid: Sequence[float],
    seeds: Sequence[int],
    *,
    ratio: float = GRID_RATIO,
    max_extensions: int = MAX_EXTENSIONS,
    min_points: int = 3,
) -> LRSearch:
    """The learning rate in ``grid`` (at least ``min_points`` rising rates) with the lowest mean
    of ``score(lr, tuning_seed)`` over ``seeds`` (at least :data:`MIN_TUNING_SEEDS`), ties broken
    by the mean rank within each seed; the grid extended by a factor ``ratio`` past whichever
    edge holds the best until the best is interior (``bracketed``) or ``max_extensions`` points
    were added. A rate that diverges on any tuning seed has mean ``inf``; when every rate does,
    the grid grows downwards. Rates still tied after the mean rank are recorded in ``ties``
    (the smaller is chosen; :func:`recheck` re-decides at the others)."""
    if len(grid) < min_points or list(grid) != sorted(grid) or min(grid) <= 0:
        raise ValueError(
            f"grid must hold at least {min_points} rising positive rates, got {list(grid)}"
        )
    if len(set(seeds)) < MIN_TUNING_SEEDS:
        raise ValueError(f"tune_lr needs at least {MIN_TUNING_SEEDS} tuning seeds, got {seeds}")
    search = LRSearch(list(seeds))
    exact = {tidy(lr): lr for lr in grid}  # extensions step from the unrounded edge
    for lr in exact:
        search.scores[lr] = [score(lr, s) for s in seeds]
    while True:
        rates = sorted(search.scores)
        ranks = mean_ranks(search.scores)
        key = {lr: (search.mean(lr), ranks[lr]) for lr in rates}
        search.best = min(rates, key=lambda lr: (key[lr], lr))
        search.ties = [lr for lr in rates if lr != search.best and key[lr] == key[search.best]]
        low_edge, high_edge = search.best == rates[0], search.best == rates[-1]
        search.bracketed = not (low_edge or high_edge)
        if search.bracketed or search.extensions >= max_extensions:
            return search
        step = exact[rates[0]] / ratio if low_edge else exact[rates[-1]] * ratio
        exact[tidy(step)] = step
        search.scores[tidy(step)] = [score(tidy(step), s) for s in seeds]
        search.extensions += 1


def recheck(
    decide: Callable[[dict[str, float]], Any],
    rates: dict[str, float],
    searches: dict[str, Any],
    arms: Sequence[str] | None = None,
) -> Any:
    """The primary comparison ``decide(rates)`` at the chosen per-arm ``rates``, re-decided with
    each tuned arm of ``searches`` (those in ``arms``, by default all) moved alone to each of its
    :meth:`LRSearch.neighbours`. The
    returned comparison lists those verdicts in ``neighbours`` and is ``sensitive`` when any of
    them differs from its own verdict."""
    primary = decide(dict(rates))
    primary.neighbours = []
    for arm, search in searches.items():
        if arms is not None and arm not in arms:
            continue
        for lr in search.neighbours():
            moved = decide({**rates, arm: lr})
            primary.neighbours.append(
                {
                    "arm": arm,
                    "lr": lr,
                    "verdict": moved.verdict,
                    "difference": moved.difference,
                    "ci": None if moved.ci is None else list(moved.ci),
                }
            )
    primary.sensitive = any(n["verdict"] != primary.verdict for n in primary.neighbours)
    return primary
