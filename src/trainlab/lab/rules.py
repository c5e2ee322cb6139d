"""Registered rules: what decides an experiment's verdict, written as data before the run and
hashed, so that a rule that changes is a new version (docs/lab_ledger.md keeps every version
with the verdicts it gave).

A :class:`Rule` names the design, the one **primary** comparison (treatment, baseline, metric
and its scale, the minimum effect in the claimed direction), the secondary comparisons (judged
at Holm's levels; they never overturn the primary), the preconditions under which the claim is
"not reached", and how rates are tuned. Its hash covers the experiment's name, claim and size
table's full and paper columns too (seeds and sizes are part of the rule).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from trainlab.lab.evidence import LEVEL, MAX_EXACT, SCALES, compare


@dataclass(frozen=True)
class Spec:
    """A comparison specified before the run (a rule's primary one decides the verdict):
    ``arms`` = (treatment, baseline), ``metric`` on ``scale`` (see :mod:`trainlab.lab.evidence`),
    ``min_effect`` on that scale in the claimed ``direction`` (+1 treatment above, -1 below, 0
    agreement within ±min_effect)."""

    name: str
    arms: tuple[str, str]
    metric: str
    scale: str
    min_effect: float
    direction: int

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"primary {self.name!r}: scale must be one of {SCALES}")
        if self.direction not in (-1, 0, 1) or not math.isfinite(self.min_effect):
            raise ValueError(f"primary {self.name!r}: direction -1/0/+1, finite min_effect")
        if self.direction == 0 and self.min_effect <= 0:
            raise ValueError(f"primary {self.name!r}: agreement needs min_effect > 0")
        if len(self.arms) != 2 or self.arms[0] == self.arms[1]:
            raise ValueError(f"primary {self.name!r}: arms must be two different names")

    def compare(
        self, treatment: Any, baseline: Any, seeds: Any, reached: bool = True, **options: Any
    ):
        """:func:`trainlab.lab.evidence.compare` by this rule (``options``: ``arms`` to name
        the arms otherwise, ``note``, ``capped``)."""
        arms = options.pop("arms", self.arms)
        return compare(
            self.name,
            self.metric,
            arms,
            treatment,
            baseline,
            seeds,
            self.min_effect,
            self.direction,
            reached,
            scale=self.scale,
            **options,
        )

    def of(self, values: Any, seeds: Any, reached: bool = True, **options: Any):
        """:meth:`compare` of ``values(arm)`` (per-seed values) for the treatment and baseline."""
        return self.compare(values(self.arms[0]), values(self.arms[1]), seeds, reached, **options)

    def text(self) -> str:
        t, b = self.arms
        if self.direction == 0:
            claim = f"agree within ±{self.min_effect:.4g}"
        else:
            side = "above" if self.direction > 0 else "below"
            claim = f"{t} {side} {b} by at least {abs(self.min_effect):.4g}"
            if self.min_effect < 0:  # evidence.judge: a negative minimum is non-inferiority
                claim = f"{t} no worse than {b} by more than {abs(self.min_effect):.4g}"
        return f"{self.name}: {t} - {b}, {self.metric} on a {self.scale} scale, {claim}"


@dataclass(frozen=True)
class Rule:
    """An experiment's registered rule (see the module docstring)."""

    design: str
    primary: Spec
    secondaries: tuple[str, ...] = ()
    preconditions: tuple[str, ...] = ()
    tuning: str = ""

    def data(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, sizes: dict[str, tuple[Any, ...]]) -> str:
        """The rule as the page shows it, from the data (so the text cannot drift)."""
        seeds = sizes["seeds"]
        parts = [
            self.design,
            f"Primary comparison (decides the verdict): {self.primary.text()}; held if its "
            f"paired-t {LEVEL:.0%} interval lies wholly beyond the minimum effect, did not hold "
            "if wholly short of it, else inconclusive; with 5 pairs or fewer only where the "
            f"exact sign-flip test (reported up to {MAX_EXACT} pairs) agrees.",
        ]
        if self.preconditions:
            parts.append("Not reached unless: " + "; ".join(self.preconditions) + ".")
        if self.secondaries:
            parts.append(
                "Secondary comparisons (Holm's step-down levels; never overturn the "
                "primary): " + "; ".join(self.secondaries) + "."
            )
        if self.tuning:
            parts.append("Rates: " + self.tuning)
        parts.append(
            f"Paired seeds: {seeds[2]} full, {seeds[1]} quick"
            + (f", {seeds[3]} paper" if len(seeds) > 3 else "")
            + ". A run that diverged or collapsed is reported as such and leaves its pair out."
        )
        return " ".join(parts)


def rule_hash(name: str, claim: str, rule: Rule, sizes: dict[str, tuple[Any, ...]]) -> str:
    """The first 12 hex digits of the SHA-256 of the rule's canonical JSON (name, claim, rule,
    and the size table's full and paper columns, the sizes whose runs decide): any change to
    what decides the verdict is a new rule version. The smoke and quick columns, previews that
    the ledger never records, are left out."""
    data = {"name": name, "claim": claim, "rule": rule.data(),
            "sizes": {k: v[2:] for k, v in sizes.items()}}  # fmt: skip
    text = json.dumps(data, sort_keys=True, default=list, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
