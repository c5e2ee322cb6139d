"""The lab's statistics: the t quantile against printed tables, the paired interval against a hand
computation and by its coverage on simulated data, and the verdict rules on constructed cases."""

import json
import math

import numpy as np
import pytest
import torch

from trainlab.lab.evidence import (
    VERDICTS,
    Comparison,
    compare,
    overall_verdict,
    paired_t_interval,
    t_quantile,
)

ARMS = ("treatment", "baseline")
SEEDS = [0, 1, 2, 3, 4]
BASE = [0.50, 0.52, 0.47, 0.55, 0.51]


# Abramowitz & Stegun (1964) Table 26.10 / Fisher & Yates, Statistical Tables: two-sided 5% and 1%
# points of Student's t, to three decimals; df = ∞ is the normal's 1.960 and 2.576.
@pytest.mark.parametrize(
    ("p", "df", "table"),
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 4, 2.776),
        (0.975, 9, 2.262),
        (0.975, 29, 2.045),
        (0.975, 120, 1.980),
        (0.975, 100_000, 1.960),
        (0.995, 1, 63.657),
        (0.995, 4, 4.604),
        (0.995, 10, 3.169),
        (0.95, 5, 2.015),
        (0.9, 3, 1.638),
    ],
)
def test_t_quantile_matches_printed_tables(p, df, table):
    assert round(t_quantile(p, df), 3) == table


def test_t_quantile_closed_forms():
    # df = 1 is Cauchy: t = tan(π(p - 1/2)); df = 2: t = (2p - 1) sqrt(2 / (1 - (2p - 1)^2)).
    for p in (0.6, 0.9, 0.975):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
        a = 2 * p - 1
        assert t_quantile(p, 2) == pytest.approx(a * math.sqrt(2 / (1 - a * a)), rel=1e-12)


def test_interval_hand_computed():
    # d = (1, 2, 3, 4, 5) - (0, 0, 0, 0, 1) = (1, 2, 3, 4, 4): mean 2.8, s² = 1.7 (6.8 / 4),
    # half-width t(0.975, 4) · sqrt(1.7 / 5) = 2.776445 · 0.583095 = 1.618931.
    diff, (lo, hi) = paired_t_interval([1, 2, 3, 4, 5], [0, 0, 0, 0, 1])
    assert diff == pytest.approx(2.8, abs=1e-12)
    assert lo == pytest.approx(2.8 - 1.618931, abs=1e-6)
    assert hi == pytest.approx(2.8 + 1.618931, abs=1e-6)
    # Tensors work too, in float64 whatever their dtype; a constant shift gives a zero-width one.
    same = paired_t_interval(torch.tensor([1.0, 2, 3, 4, 5]), torch.tensor([0.0, 0, 0, 0, 1]))
    assert same[0] == pytest.approx(diff) and same[1] == pytest.approx((lo, hi))
    assert paired_t_interval([3, 4, 5], [1, 2, 3]) == (2.0, (2.0, 2.0))
    # Another level: t(0.995, 4) = 4.604094 gives the 99% interval.
    _, (lo99, hi99) = paired_t_interval([1, 2, 3, 4, 5], [0, 0, 0, 0, 1], level=0.99)
    assert hi99 - 2.8 == pytest.approx(4.604094 * math.sqrt(1.7 / 5), abs=1e-5)


def test_interval_coverage_on_simulated_pairs():
    # 2000 paired data sets of 5 seeds: a shared per-seed effect (what pairing removes) plus
    # independent noise per arm; the true mean difference is 0.3. Binomial sd at 2000 draws is
    # 0.5%, so 95% ± 1.5% is three of them.
    rng = np.random.default_rng(17)
    truth, trials, n = 0.3, 2000, 5
    shared = rng.normal(0.0, 2.0, size=(trials, n))
    treatment = shared + truth + rng.normal(0.0, 0.5, size=(trials, n))
    baseline = shared + rng.normal(0.0, 0.5, size=(trials, n))
    hits = 0
    for a, b in zip(treatment, baseline, strict=True):
        _, (lo, hi) = paired_t_interval(a, b)
        hits += lo <= truth <= hi
    assert abs(hits / trials - 0.95) <= 0.015


def _values(shift, spread=0.01):
    # Treatment = baseline + shift + a small per-seed wobble of mean 0.
    wobble = [spread * w for w in (-2, -1, 0, 1, 2)]
    return [b + shift + w for b, w in zip(BASE, wobble, strict=True)]


def _compare(shift, min_effect=0.02, direction=1, reached=True, spread=0.01):
    return compare(
        "lower loss", "val_loss", ARMS, _values(shift, spread), BASE, SEEDS, min_effect,
        direction, reached,
    )  # fmt: skip


def test_verdicts_on_constructed_cases():
    # Half-width here is t(0.975, 4) · 0.01 · sqrt(2.5) / sqrt(5) = 0.0196.
    held = _compare(0.05)
    assert held.verdict == "held" and held.ci95[0] > 0.02
    assert _compare(-0.05).verdict == "did not hold"  # points the other way
    assert _compare(0.0).verdict == "did not hold"  # too small: interval below the minimum effect
    assert _compare(0.02).verdict == "inconclusive"  # straddles the minimum effect
    assert _compare(0.05, reached=False).verdict == "not reached"
    # direction = -1: the claim is that treatment is lower, so a negative difference holds.
    assert _compare(-0.05, direction=-1).verdict == "held"
    assert _compare(0.05, direction=-1).verdict == "did not hold"
    # The record keeps treatment - baseline whatever the direction.
    assert _compare(-0.05, direction=-1).difference == pytest.approx(-0.05)


def test_agreement_verdicts_on_constructed_cases():
    # direction 0: the claim is |treatment - baseline| < min_effect. Half-width 0.0196 as above.
    assert _compare(0.0, min_effect=0.05, direction=0).verdict == "held"  # inside (-0.05, 0.05)
    assert _compare(0.1, min_effect=0.05, direction=0).verdict == "did not hold"
    assert _compare(-0.1, min_effect=0.05, direction=0).verdict == "did not hold"
    assert _compare(0.05, min_effect=0.05, direction=0).verdict == "inconclusive"  # straddles +m
    assert _compare(0.0, min_effect=0.01, direction=0).verdict == "inconclusive"  # wider than band
    assert _compare(0.0, min_effect=0.05, direction=0, reached=False).verdict == "not reached"


def test_non_inferiority_is_a_negative_minimum_effect():
    # "treatment is no worse than baseline by more than 0.03": held when the interval's lower end
    # (in the claimed direction) clears -0.03, though the difference itself is negative.
    assert _compare(-0.005, min_effect=-0.03).verdict == "held"
    assert _compare(-0.1, min_effect=-0.03).verdict == "did not hold"
    assert _compare(-0.03, min_effect=-0.03).verdict == "inconclusive"


def test_too_few_seeds_decide_nothing():
    kwargs = dict(name="n", metric="m", arms=ARMS, min_effect=0.0, direction=1)
    clear = compare(**kwargs, treatment_values=[1.0, 1.1], baseline_values=[0.0, 0.0],
                    seeds=[0, 1], min_seeds=2)  # fmt: skip
    assert clear.verdict == "held"
    two = compare(**kwargs, treatment_values=[1.0, 1.1], baseline_values=[0.0, 0.0], seeds=[0, 1])
    assert two.verdict == "inconclusive" and two.ci95[0] > 0  # the interval alone would hold


def test_verdict_boundaries_are_inconclusive():
    # A zero-width interval exactly at the minimum effect neither clears nor excludes it
    # (values exact in binary, so the differences are exactly 0.5 and 0).
    exact = compare("c", "m", ARMS, [1.5, 2.5, 3.5], [1.0, 2.0, 3.0], [0, 1, 2], 0.5, 1)
    assert exact.ci95 == (0.5, 0.5) and exact.verdict == "inconclusive"
    assert _compare(0.0, min_effect=0.0, spread=0.0).verdict == "inconclusive"
    assert _compare(0.0, min_effect=0.0).verdict == "inconclusive"
    assert _compare(0.05, min_effect=0.0).verdict == "held"


def test_comparison_record():
    record = _compare(0.05).to_dict()
    assert set(record) == {
        "name", "metric", "arms", "difference", "ci95", "min_effect", "seeds", "verdict",
        "direction", "interval",
    }  # fmt: skip
    assert record["arms"] == list(ARMS) and record["seeds"] == SEEDS
    assert record["interval"] == "paired t" and len(record["ci95"]) == 2
    assert json.loads(json.dumps(record)) == record


def _with(verdict):
    return Comparison("c", "m", ARMS, 0.0, (-1.0, 1.0), 0.0, 1, SEEDS, verdict)


@pytest.mark.parametrize(
    ("verdicts", "overall"),
    [
        (["held"], "held"),
        (["held", "held", "held"], "held"),
        (["held", "inconclusive"], "inconclusive"),
        (["held", "not reached", "inconclusive"], "not reached"),
        (["held", "did not hold", "not reached", "inconclusive"], "did not hold"),
        (["did not hold", "held"], "did not hold"),
        (["not reached"], "not reached"),
    ],
)
def test_overall_verdict_precedence(verdicts, overall):
    assert overall_verdict([_with(v) for v in verdicts]) == overall
    assert overall in VERDICTS


def test_input_errors():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        paired_t_interval([1.0], [0.0])
    with pytest.raises(ValueError, match="same length"):
        paired_t_interval([1.0, 2.0, 3.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="^a must be finite"):
        paired_t_interval([1.0, math.nan], [0.0, 1.0])
    with pytest.raises(ValueError, match="^b must be finite"):
        paired_t_interval([1.0, 2.0], [0.0, math.inf])
    with pytest.raises(ValueError, match="level"):
        paired_t_interval([1.0, 2.0], [0.0, 1.0], level=1.0)
    with pytest.raises(ValueError, match="df"):
        t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="p must"):
        t_quantile(0.4, 3)
    with pytest.raises(ValueError, match="min_effect"):
        _compare(0.05, min_effect=math.nan)
    with pytest.raises(ValueError, match="direction"):
        _compare(0.05, direction=2)
    with pytest.raises(ValueError, match="min_effect"):  # agreement needs a tolerance band
        _compare(0.05, direction=0, min_effect=0.0)
    with pytest.raises(ValueError, match="seeds"):
        compare("c", "m", ARMS, [1.0, 2.0], [0.0, 1.0], [0], 0.0, 1)
    with pytest.raises(ValueError, match="verdict"):
        _with("partly held")
    with pytest.raises(ValueError, match="rule"):
        overall_verdict([_with("held")], rule="any")
    with pytest.raises(ValueError, match="at least one"):
        overall_verdict([])


def test_tune_lr_brackets_the_optimum_and_counts_divergence_as_worst():
    import math as m

    from trainlab.lab.arms import diverged, log_grid, tune_lr

    # A score with its minimum at 3.0 and divergence above 5: the grid around 0.01 must climb
    # past its upper edge, half a decade at a time, until the best (3.16, the point nearest 3)
    # is interior; the point above it diverged.
    def score(lr):
        return m.inf if lr > 5 else (m.log10(lr) - m.log10(3.0)) ** 2

    search = tune_lr(score, log_grid(0.01), max_extensions=5)
    assert sorted(search.scores) == [0.001, 0.00316, 0.01, 0.0316, 0.1, 0.316, 1.0, 3.16, 10.0]
    assert search.best == 3.16 and search.bracketed and search.extensions == 4
    assert search.scores[10.0] == m.inf
    capped = tune_lr(score, log_grid(0.01), max_extensions=2)
    assert capped.best == 1.0 and not capped.bracketed  # the cap leaves the optimum unbracketed
    everything_diverges = tune_lr(lambda lr: m.inf, log_grid(0.01))
    assert everything_diverges.best == 3.16e-05 and not everything_diverges.bracketed
    with pytest.raises(ValueError, match="at least 5"):
        tune_lr(score, [0.1, 0.2, 0.3])
    # Divergence: a non-finite loss, or the last 10% ending above the first loss.
    assert diverged([2.0, 1.0, m.nan]) and diverged([2.0] + [1.0] * 8 + [2.5])
    assert not diverged([2.0] + [1.0] * 9)
