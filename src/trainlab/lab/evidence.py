"""The lab's evidence: paired comparisons judged against a minimum effect stated before the run.

A comparative claim ("treatment beats baseline on METRIC by at least MIN_EFFECT") is run on
paired seeds: within a seed both arms share the data subset, initialization and batch order, so
the per-seed difference removes what the seed alone decides. :func:`compare` turns the per-seed
values into a :class:`Comparison`:

- on the metric's **scale**: ``"linear"``; ``"log"`` for ratios and losses (the difference of
  natural logs, a ratio's log; values must be positive); ``"fraction"`` for bounded fractions in
  [0, 1], whose paired difference lies in [-1, 1], so its interval is cut to that range (the
  true mean difference lies there, so the coverage is unchanged);
- with the mean paired difference and its Student-t interval (:func:`paired_t_interval`);
- with the exact sign-flip permutation test (Fisher 1935; :func:`sign_flip_p`) reported beside
  it for up to :data:`MAX_EXACT` pairs; with n <= 5 pairs the verdict takes the more
  conservative of the two (and since the sign-flip test cannot then reach 2.5% on one side,
  1/32 at best, five pairs or fewer decide nothing);
- without the pairs in which a run diverged or collapsed: those are counted in ``excluded``,
  never coded as a metric value.

One **primary** comparison decides an experiment's verdict. Its **secondary** comparisons are
judged at Holm's step-down levels (:func:`holm`; Holm 1979): they add detail and never overturn
the primary. Everything is computed in float64 (Python floats).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from trainlab.checks import check_number
from trainlab.errors import RegistryError

VERDICTS = ("held", "did not hold", "inconclusive", "not reached")
SCALES = ("linear", "log", "fraction")
FAILURES = ("diverged", "collapsed")  # what a run may be instead of a value
MIN_SEEDS = 3  # fewer pairs than this never decide a claim
MAX_EXACT = 16  # the sign-flip test enumerates all 2^n sign patterns up to this many pairs
CONSERVATIVE_UP_TO = 5  # with this many pairs or fewer the verdict needs the sign-flip test too
LEVEL = 0.95


def _t_central_mass(theta: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` degrees of freedom, where theta = atan(t / sqrt(df)):
    the finite series of Abramowitz & Stegun 26.7.3 (df odd) and 26.7.4 (df even)."""
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin θ [1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ... up to cos^(df-2)θ]
        term = total = 1.0
        for k in range(2, df, 2):
            term *= (k - 1) / k * c2
            total += term
        return s * total
    # 2/π [θ + sin θ (cos θ + 2/3 cos³θ + ... + 2·4···(df-3)/(3·5···(df-2)) cos^(df-2)θ)]
    term = total = math.cos(theta) if df > 1 else 0.0
    for k in range(3, df, 2):
        term *= (k - 1) / k * c2
        total += term
    return 2 / math.pi * (theta + s * total)


def _check_df(df: int) -> None:
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise RegistryError(f"df must be an integer >= 1, got {df!r}")


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t distribution with integer ``df`` >= 1
    (Student 1908): the t with P(|T| <= t) = 2p - 1, found by bisection on theta = atan(t/√df)
    in (0, π/2), on which the central mass of A&S 26.7.3-4 rises monotonically from 0 to 1."""
    p = check_number(p, "p", 0.5, 1, lo_open=True, hi_open=True)
    _check_df(df)
    lo, hi = 0.0, math.pi / 2
    for _ in range(64):  # 2^-64 of π/2: below float64 resolution of theta
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central_mass(mid, df) < 2 * p - 1 else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def t_upper_tail(t: float, df: int) -> float:
    """P(T >= t) for Student's t with ``df`` degrees of freedom (A&S 26.7.3-4; +-inf allowed)."""
    _check_df(df)
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = (1 - _t_central_mass(math.atan(abs(t) / math.sqrt(df)), df)) / 2
    return tail if t >= 0 else 1 - tail


def _finite_floats(values: Iterable[Any], name: str) -> list[float]:
    out = [float(v) for v in values]
    bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
    if bad:
        raise RegistryError(f"{name} must be finite numbers, got {out[bad[0]]} at index {bad[0]}")
    return out


def paired_t_interval(
    a: Iterable[Any], b: Iterable[Any], level: float = LEVEL
) -> tuple[float, tuple[float, float]]:
    """Mean of the paired differences d_i = a_i - b_i and its Student-t interval (Student 1908):
    mean(d) ± t_{(1+level)/2, n-1} · s_d / √n, with s_d the sample standard deviation (n - 1).
    Returns ``(difference, (lo, hi))``. Needs at least 2 pairs of finite numbers; raises
    ``ValueError`` naming the argument otherwise."""
    level = check_number(level, "level", 0, 1, lo_open=True, hi_open=True)
    xs, ys = _finite_floats(a, "a"), _finite_floats(b, "b")
    if len(xs) != len(ys):
        raise RegistryError(f"a and b must be paired (same length), got {len(xs)} and {len(ys)}")
    n = len(xs)
    if n < 2:
        raise RegistryError(f"a and b must hold at least 2 pairs, got {n}")
    d = [x - y for x, y in zip(xs, ys, strict=True)]
    mean = math.fsum(d) / n
    half = t_quantile((1 + level) / 2, n - 1) * _sd(d, mean) / math.sqrt(n)
    return mean, (mean - half, mean + half)


def _sd(d: Sequence[float], mean: float) -> float:
    return math.sqrt(math.fsum((v - mean) ** 2 for v in d) / (len(d) - 1))


def t_p_above(d: Sequence[float], c: float) -> float:
    """One-sided p-value of the paired t test of "mean(d) > c": P(T >= (mean - c) / (s / √n));
    with s = 0 it is 0 when mean > c and 1 otherwise."""
    n = len(d)
    mean = math.fsum(d) / n
    se = _sd(d, mean) / math.sqrt(n)
    if se == 0:
        return 0.0 if mean > c else 1.0
    return t_upper_tail((mean - c) / se, n - 1)


def sign_flip_p(e: Sequence[float]) -> tuple[float, float]:
    """Exact one-sided p-values of Fisher's sign-flip (randomization) test that the values
    ``e`` are symmetric about 0, against "their mean is above 0" and "below 0": the share of the
    2^n sign patterns s with sum(s |e|) >= sum(e), resp. <= sum(e), the observed pattern
    included. At most :data:`MAX_EXACT` values. Returns ``(p_above, p_below)``."""
    import numpy as np

    n = len(e)
    if not 1 <= n <= MAX_EXACT:
        raise RegistryError(f"sign_flip_p needs 1 to {MAX_EXACT} values, got {n}")
    values = np.asarray(e, dtype=np.float64)
    bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    sums = (1.0 - 2.0 * bits) @ np.abs(values)
    observed = float(values.sum())
    tol = 1e-12 * max(1.0, float(np.abs(values).sum()))  # the observed pattern counts itself
    return float((sums >= observed - tol).mean()), float((sums <= observed + tol).mean())


@dataclass
class Comparison:
    """One comparative claim, measured: ``arms`` is (treatment, baseline); ``difference`` the mean
    of treatment - baseline on the metric's ``scale`` over the paired ``seeds`` (the pairs in
    which neither run failed) with its interval ``ci`` at ``level``; ``min_effect`` (on that
    scale) the smallest difference the claim counts, stated before the run (negative for a
    claim of non-inferiority: "treatment is no worse than baseline by more than |min_effect|");
    ``direction`` +1 if the claim says treatment > baseline, -1 if <, and 0 if it says they
    agree: |treatment - baseline| < min_effect, which needs min_effect > 0. ``difference`` and
    ``ci`` are None when fewer than two pairs remain."""

    name: str
    metric: str
    arms: tuple[str, str]
    difference: float | None
    ci: tuple[float, float] | None
    min_effect: float
    direction: int
    seeds: list[int] = field(default_factory=list)
    verdict: str = "inconclusive"
    scale: str = "linear"
    level: float = LEVEL
    t_verdict: str = "inconclusive"
    sign_flip: dict[str, Any] | None = None  # {"p_above", "p_below", "verdict"} of the margin
    p_value: float = 1.0  # the t test's two-sided p of the nearer decision: Holm's order
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    role: str = "primary"
    sensitive: bool | None = None  # None: not checked; see trainlab.lab.tuning.recheck
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    inputs: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # rejudge

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise RegistryError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        _check_direction(self.direction, self.min_effect)
        if len(self.arms) != 2:
            raise RegistryError(f"arms must be (treatment, baseline), got {self.arms!r}")
        if self.scale not in SCALES:
            raise RegistryError(f"scale must be one of {SCALES}, got {self.scale!r}")

    def to_dict(self) -> dict[str, Any]:
        """The record result.json carries for this comparison."""
        return {
            "name": self.name,
            "role": self.role,
            "metric": self.metric,
            "scale": self.scale,
            "arms": list(self.arms),
            "difference": self.difference,
            "ci": None if self.ci is None else list(self.ci),
            "level": self.level,
            "min_effect": self.min_effect,
            "direction": self.direction,
            "seeds": list(self.seeds),
            "excluded": self.excluded,
            "verdict": self.verdict,
            "t_verdict": self.t_verdict,
            "sign_flip": self.sign_flip,
            "p_value": self.p_value,
            "sensitive": self.sensitive,
            "neighbours": self.neighbours,
            "note": self.note,
        }


def _check_direction(direction: int, min_effect: float) -> None:
    if direction not in (1, -1, 0) or isinstance(direction, bool):
        raise RegistryError(f"direction must be +1, -1 or 0, got {direction!r}")
    if direction == 0:
        check_number(min_effect, "min_effect", 0, lo_open=True)
    else:
        check_number(min_effect, "min_effect")


def judge(lo: float, hi: float, min_effect: float, direction: int) -> str:
    """The verdict an interval ``(lo, hi)`` of treatment - baseline gives, by the rule fixed
    before the run. For a claimed direction (+1 or -1) the interval is turned to it,
    (lo', hi') = sorted(direction · (lo, hi)): "held" if lo' > min_effect (the whole interval is
    beyond the minimum effect), "did not hold" if hi' < min_effect (smaller, or the other way),
    else "inconclusive". For agreement (direction 0, the two one-sided tests of Schuirmann 1987
    read off the same interval): "held" inside (-m, m), "did not hold" wholly outside it
    (lo >= m or hi <= -m), else "inconclusive". The inequalities are strict: an interval that
    ends exactly at the minimum effect does not exclude it."""
    if direction == 0:
        if -min_effect < lo and hi < min_effect:
            return "held"
        return "did not hold" if lo >= min_effect or hi <= -min_effect else "inconclusive"
    lo_d, hi_d = sorted((direction * lo, direction * hi))
    if lo_d > min_effect:
        return "held"
    return "did not hold" if hi_d < min_effect else "inconclusive"


def _flip_verdict(d: list[float], m: float, direction: int, side: float) -> dict[str, Any]:
    """The sign-flip test's verdict at one-sided level ``side``, by the same rule as
    :func:`judge`: held if the margin-shifted differences are significantly beyond the minimum
    effect, did not hold if significantly short of it."""
    if direction == 0:
        above_lower, _ = sign_flip_p([v + m for v in d])  # mean > -m
        _, below_upper = sign_flip_p([v - m for v in d])  # mean < m
        above_upper, _ = sign_flip_p([v - m for v in d])  # mean > m
        _, below_lower = sign_flip_p([v + m for v in d])  # mean < -m
        held = above_lower < side and below_upper < side
        refuted = above_upper < side or below_lower < side
        p_above, p_below = max(above_lower, below_upper), min(above_upper, below_lower)
    else:
        p_above, p_below = sign_flip_p([direction * v - m for v in d])
        held, refuted = p_above < side, p_below < side
    verdict = "held" if held else "did not hold" if refuted else "inconclusive"
    return {"p_above": p_above, "p_below": p_below, "verdict": verdict}


def _t_p_value(d: list[float], m: float, direction: int) -> float:
    """Two-sided p of the nearer decision: twice the smaller one-sided t p-value of "beyond the
    minimum effect" and "short of it" (agreement: the larger of the two one-sided tests inside
    the band, and the smaller of those outside it)."""
    if direction == 0:
        inside = max(t_p_above(d, -m), 1 - t_p_above(d, m))
        outside = min(t_p_above(d, m), 1 - t_p_above(d, -m))
        return min(1.0, 2 * min(inside, outside))
    turned = [direction * v for v in d]
    return min(1.0, 2 * min(t_p_above(turned, m), 1 - t_p_above(turned, m)))


def _transform(value: float, scale: str, where: str) -> float:
    if scale == "log":
        if not value > 0:
            raise RegistryError(f"{where}: a log-scale value must be positive, got {value!r}")
        return math.log(value)
    if scale == "fraction" and not 0.0 <= value <= 1.0:
        raise RegistryError(f"{where}: a fraction must lie in [0, 1], got {value!r}")
    return float(value)


def compare(
    name: str,
    metric: str,
    arms: tuple[str, str],
    treatment_values: Sequence[Any],
    baseline_values: Sequence[Any],
    seeds: Sequence[int],
    min_effect: float,
    direction: int,
    reached: bool = True,
    min_seeds: int = MIN_SEEDS,
    *,
    scale: str = "linear",
    level: float = LEVEL,
    note: str = "",
    capped: tuple[bool, bool] = (False, False),
) -> Comparison:
    """The :class:`Comparison` of treatment against baseline, one value per seed in each arm (a
    value, or one of :data:`FAILURES` for a run that diverged or collapsed).

    Rule, fixed before the run: "not reached" if the claim's precondition failed
    (``reached=False``), whatever the numbers. Pairs with a failed run are left out (and counted
    in ``excluded``). With fewer than ``min_seeds`` pairs left: "inconclusive". Otherwise the
    t interval at ``level`` is judged by :func:`judge`; with up to :data:`MAX_EXACT` pairs the
    exact sign-flip test at one-sided level (1 - level) / 2 is judged by the same rule and
    reported; with at most :data:`CONSERVATIVE_UP_TO` pairs the verdict is theirs where they
    agree, else "inconclusive" (the more conservative). On the
    ``"fraction"`` scale the interval is cut to [-1, 1]. ``capped`` says whether any treatment
    or baseline value is a count stopped at a cap (a lower bound; direction +1 only): where
    that could have produced the verdict, it is "not reached"."""
    _check_direction(direction, min_effect)
    if scale not in SCALES:
        raise RegistryError(f"scale must be one of {SCALES}, got {scale!r}")
    if len(seeds) != len(treatment_values) or len(seeds) != len(baseline_values):
        raise RegistryError(
            f"seeds must give one seed per pair, got {len(seeds)} seeds for "
            f"{len(treatment_values)} and {len(baseline_values)} values"
        )
    min_effect = float(min_effect)
    excluded: dict[str, dict[str, int]] = {}
    kept: list[tuple[int, float, float]] = []
    for s, a, b in zip(seeds, treatment_values, baseline_values, strict=True):
        failed = [(arm, v) for arm, v in zip(arms, (a, b), strict=True) if isinstance(v, str)]
        for arm, status in failed:
            if status not in FAILURES:
                raise RegistryError(f"{name}: a failed run is one of {FAILURES}, got {status!r}")
            excluded.setdefault(arm, {}).setdefault(status, 0)
            excluded[arm][status] += 1
        if not failed:
            kept.append((int(s), _transform(a, scale, name), _transform(b, scale, name)))
    inputs = dict(
        name=name,
        metric=metric,
        arms=arms,
        treatment_values=list(treatment_values),
        baseline_values=list(baseline_values),
        seeds=list(seeds),
        min_effect=min_effect,
        direction=direction,
        reached=reached,
        min_seeds=min_seeds,
        scale=scale,
        note=note,
        capped=capped,
    )
    record = Comparison(
        name,
        metric,
        tuple(arms),
        None,
        None,
        min_effect,
        direction,
        [s for s, _, _ in kept],
        "inconclusive",
        scale,
        level,
        excluded=excluded,
        note=note,
        inputs=inputs,
    )
    if len(kept) >= 2:
        difference, (lo, hi) = paired_t_interval(
            [a for _, a, _ in kept], [b for _, _, b in kept], level
        )
        if scale == "fraction":
            lo, hi = max(lo, -1.0), min(hi, 1.0)
        d = [a - b for _, a, b in kept]
        record.difference, record.ci = difference, (lo, hi)
        record.t_verdict = judge(lo, hi, min_effect, direction)
        record.p_value = _t_p_value(d, min_effect, direction)
        if len(d) <= MAX_EXACT:
            record.sign_flip = _flip_verdict(d, min_effect, direction, (1 - level) / 2)
    if not reached:
        record.verdict = "not reached"
    elif len(kept) >= max(2, min_seeds):
        flip = record.sign_flip["verdict"] if record.sign_flip else record.t_verdict
        conservative = len(kept) <= CONSERVATIVE_UP_TO and flip != record.t_verdict
        record.verdict = "inconclusive" if conservative else record.t_verdict
    if any(capped) and record.verdict != "not reached":
        if direction != 1:
            raise RegistryError(f"{name}: capped counts are for direction +1 claims")
        if _censoring_decides(record.verdict, capped):
            record.note = (note + "; " if note else "") + (
                f"{record.verdict} by the numbers, but counts stopped at the cap (lower bounds) "
                "could have produced that"
            )
            record.verdict = "not reached"
    return record


def rejudge(c: Comparison, level: float) -> Comparison:
    """The comparison ``c`` (made by :func:`compare`) judged anew at ``level``, from the per-seed
    values it keeps."""
    if not c.inputs:
        raise RegistryError(f"comparison {c.name!r} keeps no values to judge again")
    return replace(compare(**{**c.inputs, "level": level}), role=c.role)


def holm(secondaries: Sequence[Comparison], alpha: float = 1 - LEVEL) -> list[Comparison]:
    """The secondary comparisons judged at Holm's step-down levels (Holm 1979), in their own
    order: those that can be decided (not "not reached", with an interval) are ranked by
    :attr:`Comparison.p_value`; the k-th of m (from 0) is judged at level 1 - alpha / (m - k)
    while every one before it was decided; from the first that was not, the rest are judged at
    that first one's level and stay "inconclusive" (the step-down stops there). Each keeps role
    "secondary"."""
    ranked = sorted(
        (i for i, c in enumerate(secondaries) if c.verdict != "not reached" and c.ci is not None),
        key=lambda i: secondaries[i].p_value,
    )
    out = [replace(c, role="secondary") for c in secondaries]
    m, stopped = len(ranked), None
    for k, i in enumerate(ranked):
        again = rejudge(secondaries[i], 1 - alpha / (m - (k if stopped is None else stopped)))
        if stopped is not None:
            again.verdict = "inconclusive"
        elif again.verdict == "inconclusive":
            stopped = k
        out[i] = replace(again, role="secondary")
    return out


def _censoring_decides(verdict: str, capped: tuple[bool, bool]) -> bool:
    """Whether counts stopped at a cap (lower bounds) could have produced ``verdict`` of a
    direction +1 claim: a capped treatment makes the measured difference too small (only
    "held" survives it), a capped baseline too large (only "did not hold" survives it), and
    with both nothing does."""
    treatment, baseline = capped
    if treatment and baseline:
        return True
    return (treatment and verdict != "held") or (baseline and verdict != "did not hold")


def capped_counts(runs: Sequence[dict[str, Any]], cap: float, key: str) -> tuple[list, bool]:
    """One arm's per-seed counts for :func:`compare`: ``run[key]``, or ``cap`` where it is None
    (the run stopped at the cap: a lower bound), or "diverged"; and whether any was capped."""
    values = ["diverged" if r["diverged"] else cap if r[key] is None else r[key] for r in runs]
    return values, any(r[key] is None and not r["diverged"] for r in runs)


def count_verdicts(comparisons: Sequence[Comparison | dict[str, Any]]) -> dict[str, int]:
    """How many comparisons gave each verdict, in :data:`VERDICTS` order (zeros left out)."""
    verdicts = [c["verdict"] if isinstance(c, dict) else c.verdict for c in comparisons]
    return {v: verdicts.count(v) for v in VERDICTS if v in verdicts}
