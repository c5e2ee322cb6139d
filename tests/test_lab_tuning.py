"""The lab's rate search: the mean score over three tuning seeds, ties broken by mean rank,
grids extended past an edge, and the re-check that marks a verdict sensitive."""

from __future__ import annotations

import math

import pytest

from trainlab.lab.evidence import compare
from trainlab.lab.tuning import diverged, log_grid, mean_ranks, recheck, tune_lr


def test_log_grid():
    assert log_grid(0.01) == [0.001, 0.00316, 0.01, 0.0316, 0.1]
    assert log_grid(0.01, 3) == [0.00316, 0.01, 0.0316]


def test_tune_brackets_the_optimum_over_the_seeds_and_counts_divergence_as_worst():
    # Minimum at 3.0 and divergence above 5 on every seed; the seeds shift the score alike.
    def score(lr, seed):
        return math.inf if lr > 5 else (math.log10(lr) - math.log10(3.0)) ** 2 + seed

    search = tune_lr(score, log_grid(0.01), [0, 1, 2], max_extensions=5)
    assert sorted(search.scores) == [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0, 3.16, 10.0]
    assert search.best == 3.16 and search.bracketed and search.extensions == 4
    assert search.neighbours() == [1.0, 10.0]
    assert search.mean(10.0) == math.inf
    with pytest.raises(ValueError, match="at least 3 tuning seeds"):
        tune_lr(score, log_grid(0.01), [0, 1])
    with pytest.raises(ValueError, match="rising positive"):
        tune_lr(score, [0.1, 0.2], [0, 1, 2])


def test_one_diverged_tuning_seed_rules_a_rate_out():
    # 0.1 is best on two seeds but diverges on the third: the mean is infinite.
    def score(lr, seed):
        if lr == 0.1:
            return math.inf if seed == 2 else 0.0
        return abs(math.log10(lr) + 2)  # 0.01 next best

    assert tune_lr(score, [0.001, 0.00316, 0.01, 0.0316, 0.1], [0, 1, 2]).best == 0.01


def test_ties_of_the_mean_are_broken_by_the_mean_rank():
    # 0.01 and 0.1 tie on the mean (0.2); 0.01 ranks first on two seeds of three.
    table = {0.001: [9, 9, 9], 0.01: [0.1, 0.1, 0.4], 0.1: [0.2, 0.2, 0.2], 1.0: [9, 9, 9]}
    ranks = mean_ranks(table)
    assert ranks[0.01] == pytest.approx((1 + 1 + 2) / 3) and ranks[0.1] == pytest.approx(5 / 3)
    search = tune_lr(lambda lr, s: table[lr][s - 7], [0.001, 0.01, 0.1, 1.0], [7, 8, 9])
    assert search.best == 0.01 and search.ties == []
    # equal on every seed: a tie that survives the mean rank is recorded and re-checked
    table[0.1] = [0.1, 0.1, 0.4]
    search = tune_lr(lambda lr, s: table[lr][s - 7], [0.001, 0.01, 0.1, 1.0], [7, 8, 9])
    assert search.best == 0.01 and search.ties == [0.1] and 0.1 in search.neighbours()
    assert mean_ranks({1: [5.0], 2: [5.0], 3: [math.inf]}) == {1: 1.5, 2: 1.5, 3: 3.0}


def test_recheck_marks_a_verdict_that_flips_at_a_neighbouring_rate():
    seeds = list(range(6))
    effect = {0.01: 0.3, 0.00316: 0.25, 0.0316: 0.0}  # treatment's gain at each of its rates

    def decide(rates):
        gain = effect[rates["t"]]
        return compare(
            "p", "m", ("t", "b"), [gain + 0.01 * k for k in range(6)], [0.0] * 6, seeds, 0.1, 1
        )

    search = tune_lr(lambda lr, s: -effect.get(lr, -1.0), [0.00316, 0.01, 0.0316], [0, 1, 2])
    primary = recheck(decide, {"t": 0.01, "b": 0.5}, {"t": search})
    assert primary.verdict == "held" and primary.sensitive
    assert [(n["lr"], n["verdict"]) for n in primary.neighbours] == [
        (0.00316, "held"),
        (0.0316, "did not hold"),
    ]
    steady = recheck(decide, {"t": 0.01}, {"t": search}, arms=())
    assert steady.neighbours == [] and steady.sensitive is False


def test_divergence_rule():
    assert diverged([2.0, 1.0, math.nan]) and diverged([2.0] + [1.0] * 8 + [2.5])
    assert not diverged([2.0] + [1.0] * 9)
