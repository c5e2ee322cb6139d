"""The lab's evidence: paired comparisons with a 95% interval, judged against a minimum effect.

A comparative claim ("treatment beats baseline on METRIC by at least MIN_EFFECT") is run on
paired seeds: within a seed both arms share the data subset, initialization and batch order, so
the per-seed difference removes what the seed alone decides. :func:`compare` turns the per-seed
values into a :class:`Comparison` with the mean paired difference, its Student-t interval
(:func:`paired_t_interval`) and a verdict by a rule fixed before the run; :func:`overall_verdict`
combines an experiment's comparisons. Everything is computed in float64 (Python floats).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from trainlab.checks import check_number
from trainlab.errors import RegistryError

VERDICTS = ("held", "did not hold", "inconclusive", "not reached")
RULES = ("all",)


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


@lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (0.5 < p < 1) of Student's t distribution with integer ``df`` >= 1
    (Student 1908): the t with P(|T| <= t) = 2p - 1, found by bisection on theta = atan(t/√df)
    in (0, π/2), on which the central mass of A&S 26.7.3-4 rises monotonically from 0 to 1."""
    p = check_number(p, "p", 0.5, 1, lo_open=True, hi_open=True)
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise RegistryError(f"df must be an integer >= 1, got {df!r}")
    lo, hi = 0.0, math.pi / 2
    for _ in range(64):  # 2^-64 of π/2: below float64 resolution of theta
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_central_mass(mid, df) < 2 * p - 1 else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def _finite_floats(values: Iterable[Any], name: str) -> list[float]:
    out = [float(v) for v in values]
    bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
    if bad:
        raise RegistryError(f"{name} must be finite numbers, got {out[bad[0]]} at index {bad[0]}")
    return out


def paired_t_interval(
    a: Iterable[Any], b: Iterable[Any], level: float = 0.95
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
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in d) / (n - 1))
    half = t_quantile((1 + level) / 2, n - 1) * sd / math.sqrt(n)
    return mean, (mean - half, mean + half)


@dataclass
class Comparison:
    """One comparative claim, measured: ``arms`` is (treatment, baseline); ``difference`` the mean
    of treatment - baseline over the paired ``seeds`` with its 95% interval ``ci95``;
    ``min_effect`` (in the metric's units) the smallest difference the claim counts, stated
    before the run (negative for a claim of non-inferiority: "treatment is no worse than
    baseline by more than |min_effect|"); ``direction`` +1 if the claim says treatment >
    baseline, -1 if <, and 0 if it says they agree: |treatment - baseline| < min_effect (a
    measurement against a theory's prediction, say), which needs min_effect > 0."""

    name: str
    metric: str
    arms: tuple[str, str]
    difference: float
    ci95: tuple[float, float]
    min_effect: float
    direction: int
    seeds: list[int] = field(default_factory=list)
    verdict: str = "inconclusive"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise RegistryError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        _check_direction(self.direction, self.min_effect)
        if len(self.arms) != 2:
            raise RegistryError(f"arms must be (treatment, baseline), got {self.arms!r}")

    def to_dict(self) -> dict[str, Any]:
        """The record result.json carries for this comparison."""
        return {
            "name": self.name,
            "metric": self.metric,
            "arms": list(self.arms),
            "difference": self.difference,
            "ci95": list(self.ci95),
            "min_effect": self.min_effect,
            "seeds": list(self.seeds),
            "verdict": self.verdict,
            "direction": self.direction,
            "interval": "paired t",
        }


def _check_direction(direction: int, min_effect: float) -> None:
    if direction not in (1, -1, 0) or isinstance(direction, bool):
        raise RegistryError(f"direction must be +1, -1 or 0, got {direction!r}")
    if direction == 0:
        check_number(min_effect, "min_effect", 0, lo_open=True)
    else:
        check_number(min_effect, "min_effect")


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
    min_seeds: int = 3,
) -> Comparison:
    """The :class:`Comparison` of treatment against baseline, one value per seed in each arm.

    Rule, fixed before the run. If the claim's precondition failed (``reached=False``, e.g. the
    over-fitting regime was not reached) the verdict is "not reached", whatever the numbers.
    Otherwise, with fewer than ``min_seeds`` pairs it is "inconclusive" (two seeds decide
    nothing: a smoke run's interval is only a shape). For a claimed direction (+1 or -1) the 95%
    paired-t interval is turned to it, (lo, hi) = sorted(direction · ci95), and the verdict is:

    - "held" if lo > min_effect: the whole interval is beyond the minimum effect;
    - "did not hold" if hi < min_effect: the effect is smaller than the minimum, or points the
      other way;
    - "inconclusive" otherwise: the interval contains min_effect.

    For a claim of agreement (direction 0, min_effect m > 0; the two one-sided tests of
    Schuirmann 1987 read off the same interval): "held" if the interval lies inside (-m, m),
    "did not hold" if it lies wholly outside it (lo >= m or hi <= -m), "inconclusive" otherwise.

    Boundaries: the inequalities are strict, so an interval that ends exactly at min_effect is
    inconclusive (it does not exclude it); with min_effect = 0 a zero-width interval at 0 is
    inconclusive too. ``difference`` and ``ci95`` are recorded as treatment - baseline (not
    turned), so they read the same whatever the claim's direction.
    """
    _check_direction(direction, min_effect)
    min_effect = float(min_effect)
    difference, (lo, hi) = paired_t_interval(treatment_values, baseline_values)
    if len(seeds) != len(treatment_values):
        raise RegistryError(
            f"seeds must give one seed per pair, got {len(seeds)} seeds for "
            f"{len(treatment_values)} pairs"
        )
    lo_d, hi_d = sorted((direction * lo, direction * hi))
    if not reached:
        verdict = "not reached"
    elif len(seeds) < min_seeds:
        verdict = "inconclusive"
    elif direction == 0:
        inside = -min_effect < lo and hi < min_effect
        outside = lo >= min_effect or hi <= -min_effect
        verdict = "held" if inside else "did not hold" if outside else "inconclusive"
    elif lo_d > min_effect:
        verdict = "held"
    elif hi_d < min_effect:
        verdict = "did not hold"
    else:
        verdict = "inconclusive"
    return Comparison(
        name, metric, tuple(arms), difference, (lo, hi), min_effect, direction,
        [int(s) for s in seeds], verdict,
    )  # fmt: skip


def overall_verdict(comparisons: Sequence[Comparison], rule: str = "all") -> str:
    """An experiment's verdict from its comparisons, by ``rule``.

    "all" (the claim is the conjunction of its sub-claims), first match wins:
    "did not hold" if any comparison did not hold (one refuted part refutes the whole);
    else "not reached" if any was not reached (part of the claim was never tested);
    else "inconclusive" if any was inconclusive; else "held" (every comparison held).
    """
    if rule not in RULES:
        raise RegistryError(f"rule must be one of {RULES}, got {rule!r}")
    if not comparisons:
        raise RegistryError("comparisons must hold at least one comparison, got none")
    verdicts = {c.verdict for c in comparisons}
    for verdict in ("did not hold", "not reached", "inconclusive"):
        if verdict in verdicts:
            return verdict
    return "held"
