"""Numbers of lab results: rounding for JSON, divergence, tails of loss curves, spreads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def rounded(value: Any, digits: int = 6) -> Any:
    """Floats to ``digits`` significant digits (recursively), non-finite ones to ``None``."""
    if isinstance(value, float):
        ok = value == value and abs(value) != float("inf")
        return float(f"{value:.{digits}g}") if ok else None
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value


def diverged_at(losses: Sequence[float]) -> int | None:
    """The 1-based step whose loss was first non-finite (the run stopped there), or None."""
    for step, value in enumerate(losses, start=1):
        if not math.isfinite(value):
            return step
    return None


def tail_mean(values: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of a loss curve (at least one value): the end of training
    without the noise of a single batch."""
    k = max(1, int(len(values) * fraction))
    return float(sum(values[-k:]) / k)


def loss_summary(curves: dict[str, Sequence[float]]) -> dict[str, dict[str, Any]]:
    """Per run: the mean training loss over the last 10% of steps (:func:`tail_mean`; infinite
    for a diverged run) and the step at which it diverged (:func:`diverged_at`)."""
    return {
        "final_train_loss": {k: tail_mean(c) for k, c in curves.items()},
        "diverged_at_step": {k: diverged_at(c) for k, c in curves.items()},
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
