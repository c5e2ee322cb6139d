"""The lab's statistics: the t quantile against printed tables, the paired interval against a hand
computation and by its coverage on simulated data, the exact sign-flip test by hand, Holm's
levels, and the verdict rules on constructed cases."""

import json
import math

import numpy as np
import pytest
import torch

from trainlab.lab.evidence import (
    Comparison,
    capped_counts,
    compare,
    count_verdicts,
    holm,
    paired_t_interval,
    rejudge,
    sign_flip_p,
    t_quantile,
    t_upper_tail,
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


SEEDS6 = [0, 1, 2, 3, 4, 5]
BASE6 = [0.50, 0.52, 0.47, 0.55, 0.51, 0.49]
WOBBLE = (-2.5, -1.5, -0.5, 0.5, 1.5, 2.5)  # mean 0, sum of squares 17.5


def _values(shift, spread=0.01):
    # Treatment = baseline + shift + a small per-seed wobble of mean 0.
    return [b + shift + spread * w for b, w in zip(BASE6, WOBBLE, strict=True)]


def _compare(shift, min_effect=0.02, direction=1, reached=True, spread=0.01, **kw):
    return compare(
        "lower loss",
        "val_loss",
        ARMS,
        _values(shift, spread),
        BASE6,
        SEEDS6,
        min_effect,
        direction,
        reached,
        **kw,
    )


def test_verdicts_on_constructed_cases():
    # Half-width here is t(0.975, 5) * 0.01 * sqrt(17.5 / 5) / sqrt(6) = 0.0196.
    held = _compare(0.05)
    assert held.verdict == "held" and held.ci[0] > 0.02
    assert held.sign_flip["verdict"] == "held" and held.t_verdict == "held"
    assert _compare(-0.05).verdict == "did not hold"  # points the other way
    assert _compare(0.0).verdict == "did not hold"  # too small: interval below the minimum effect
    # Six pairs: the t interval decides; the sign-flip test is reported beside it (one pair
    # exceeds the minimum effect: p_below = 3/64 > 2.5%).
    assert _compare(0.0).sign_flip["verdict"] == "inconclusive"
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


def test_sign_flip_p_values_by_hand():
    # (1, 2, 3): of the 8 sign patterns only (+,+,+) sums to 6 or more: p_above = 1/8; sums of
    # at most 6 are all 8 patterns: p_below = 1.
    assert sign_flip_p([1.0, 2.0, 3.0]) == (1 / 8, 1.0)
    # (3, -1): sums 4, 2, -2, -4 (signs of 3 and 1); observed 2: above {4, 2} = 1/2, below 3/4.
    assert sign_flip_p([3.0, -1.0]) == (0.5, 0.75)
    # zeros carry no sign: (2, 0) has patterns 2, 2, -2, -2 -> p_above = 1/2
    assert sign_flip_p([2.0, 0.0])[0] == 0.5


def test_five_pairs_decide_nothing_however_clear():
    """With n <= 5 the verdict takes the more conservative of the t interval and the sign-flip
    test, whose smallest one-sided p at n = 5 is 1/32 > 2.5%: the t interval alone would hold,
    the two together do not. From six pairs the t interval decides."""
    five = compare("c", "m", ARMS, [1.0, 1.1, 1.2, 1.3, 1.4], [0.0] * 5, [0, 1, 2, 3, 4], 0.1, 1)
    assert five.t_verdict == "held" and five.sign_flip["p_above"] == 1 / 32
    assert five.verdict == "inconclusive"
    six = compare("c", "m", ARMS, [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], [0.0] * 6, SEEDS6, 0.1, 1)
    assert six.sign_flip["p_above"] == 1 / 64 and six.verdict == "held"


def test_log_scale_compares_ratios():
    # Treatment twice the baseline on every seed: the log ratio log 2, exactly, with zero width.
    c = compare(
        "c",
        "loss",
        ARMS,
        [2.0, 4.0, 6.0, 8.0, 10.0, 12.0],
        [1, 2, 3, 4, 5, 6],
        SEEDS6,
        math.log(1.5),
        1,
        scale="log",
    )
    assert c.difference == pytest.approx(math.log(2)) and c.ci == pytest.approx((math.log(2),) * 2)
    assert c.verdict == "held"
    with pytest.raises(ValueError, match="log-scale value must be positive"):
        compare("c", "loss", ARMS, [0.0, 1.0], [1.0, 1.0], [0, 1], 0.1, 1, scale="log")


def test_fraction_intervals_stay_in_bounds():
    # Differences of -1, -1, -1, 0, 0, 0: mean -0.5, half-width 2.571 * 0.5477 / sqrt(6) =
    # 0.575, so the t interval reaches below -1; it is cut to [-1, 1].
    c = compare(
        "c", "dead", ARMS, [0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], SEEDS6, 0.05, 1, scale="fraction"
    )
    _, (lo, _) = paired_t_interval([0] * 6, [1, 1, 1, 0, 0, 0])
    assert lo < -1 and c.ci[0] == -1.0
    with pytest.raises(ValueError, match="fraction must lie in"):
        compare("c", "dead", ARMS, [1.5, 0.0], [0.0, 0.0], [0, 1], 0.05, 1, scale="fraction")


def test_failed_runs_leave_their_pair_and_are_counted():
    values = _values(0.05)
    values[1] = "diverged"
    base = list(BASE6)
    base[4] = "collapsed"
    c = compare("c", "m", ARMS, values, base, SEEDS6, 0.02, 1)
    assert c.seeds == [0, 2, 3, 5]
    assert c.excluded == {"treatment": {"diverged": 1}, "baseline": {"collapsed": 1}}
    kept = [v for i, v in enumerate(_values(0.05)) if i in (0, 2, 3, 5)]
    assert c.difference == pytest.approx(paired_t_interval(kept, [BASE6[i] for i in c.seeds])[0])
    everything_failed = compare("c", "m", ARMS, ["diverged"] * 3, [1, 2, 3], [0, 1, 2], 0.1, 1)
    assert everything_failed.ci is None and everything_failed.verdict == "inconclusive"
    with pytest.raises(ValueError, match="failed run is one of"):
        compare("c", "m", ARMS, ["nan", 1, 2], [1, 2, 3], [0, 1, 2], 0.1, 1)


def test_capped_counts_decide_only_what_they_cannot_have_produced():
    rows = [
        {"steps": 10, "diverged": False},
        {"steps": None, "diverged": False},
        {"steps": None, "diverged": True},
    ]
    assert capped_counts(rows, 50, "steps") == ([10, 50, "diverged"], True)
    more = [2.0 * b for b in BASE6]  # the treatment's counts double the baseline's
    kwargs = dict(min_effect=math.log(1.5), direction=1, scale="log")
    held = compare("c", "steps", ARMS, more, BASE6, SEEDS6, capped=(True, False), **kwargs)
    assert held.verdict == "held"  # a capped treatment only understates a held difference
    guarded = compare("c", "steps", ARMS, more, BASE6, SEEDS6, capped=(False, True), **kwargs)
    assert guarded.verdict == "not reached" and "cap" in guarded.note
    both = compare("c", "steps", ARMS, more, BASE6, SEEDS6, capped=(True, True), **kwargs)
    assert both.verdict == "not reached"


def test_holm_judges_secondaries_at_step_down_levels():
    strong = _compare(0.2)  # p tiny
    middle = _compare(0.06)
    weak = _compare(0.02)  # straddles: inconclusive at any level
    out = holm([weak, strong, middle])
    by_name = dict(zip(("weak", "strong", "middle"), out, strict=True))
    assert all(c.role == "secondary" for c in out)
    assert by_name["strong"].level == pytest.approx(1 - 0.05 / 3)  # ranked first of 3
    assert by_name["middle"].level == pytest.approx(1 - 0.05 / 2)
    assert by_name["weak"].level == pytest.approx(1 - 0.05 / 1)
    assert by_name["strong"].verdict == by_name["middle"].verdict == "held"
    assert by_name["weak"].verdict == "inconclusive"
    # The interval at level L is the t interval at L (rejudged from the kept values).
    lo, hi = paired_t_interval(_values(0.06), BASE6, 1 - 0.05 / 2)[1]
    assert by_name["middle"].ci == pytest.approx((lo, hi))
    # Step-down stops at the first undecided: everything after it stays inconclusive.
    stopped = holm([_compare(0.02), _compare(0.021), _compare(0.5)])
    assert stopped[2].verdict == "held"  # ranked first
    assert [c.verdict for c in stopped[:2]] == ["inconclusive", "inconclusive"]
    # Not reached ones are not ranked.
    unranked = holm([_compare(0.2, reached=False), _compare(0.2)])
    assert unranked[0].verdict == "not reached" and unranked[1].level == pytest.approx(0.95)


def test_comparison_record():
    record = _compare(0.05).to_dict()
    assert record["arms"] == list(ARMS) and record["seeds"] == SEEDS6
    assert record["role"] == "primary" and record["level"] == 0.95 and len(record["ci"]) == 2
    assert record["sign_flip"]["verdict"] == "held" and record["excluded"] == {}
    assert json.loads(json.dumps(record)) == record
    assert rejudge(_compare(0.05), 0.99).level == 0.99


def _with(verdict):
    return Comparison("c", "m", ARMS, 0.0, (-1.0, 1.0), 0.0, 1, SEEDS, verdict)


def test_count_verdicts():
    assert count_verdicts([_with("held"), _with("held"), _with("not reached")]) == {
        "held": 2,
        "not reached": 1,
    }


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
    with pytest.raises(ValueError, match="scale"):
        _compare(0.05, scale="ratio")
    with pytest.raises(ValueError, match="1 to 16 values"):
        sign_flip_p([1.0] * 17)


def test_t_upper_tail_against_the_quantile():
    for df in (1, 4, 9):
        assert t_upper_tail(t_quantile(0.975, df), df) == pytest.approx(0.025, abs=1e-12)
        assert t_upper_tail(-t_quantile(0.9, df), df) == pytest.approx(0.9, abs=1e-12)
    assert t_upper_tail(math.inf, 3) == 0.0
