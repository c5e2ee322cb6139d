"""Argument checks shared by every pillar, so a wrong value reads the same wherever it is given."""

from __future__ import annotations

from typing import Any

from trainlab.errors import RegistryError


def check_probability(p: Any, name: str = "p", *, below_one: bool = False) -> float:
    """``p`` as a float in [0, 1], or in [0, 1) with ``below_one``.

    ``below_one`` is for drop probabilities: p = 1 would drop everything, and inverted
    dropout's scale ``1 / (1 - p)`` would be infinite. NaN and bools are refused.
    Raises :class:`RegistryError` (a ``ValueError``) naming ``name`` and the value.
    """
    number = isinstance(p, int | float) and not isinstance(p, bool)
    if not (number and (0.0 <= p < 1.0 if below_one else 0.0 <= p <= 1.0)):
        interval = "[0, 1)" if below_one else "[0, 1]"
        raise RegistryError(f"{name} must be in {interval}, a probability, got {p!r}")
    return float(p)
