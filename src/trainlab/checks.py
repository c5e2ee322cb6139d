"""Argument checks shared by every pillar, so a wrong value reads the same wherever it is given.

Each returns the value (as a float for numbers) or raises :class:`RegistryError` (a
``ValueError``) worded ``"NAME must be EXPECTED, got VALUE"``. Bools are never numbers here.
"""

from __future__ import annotations

import math
from typing import Any

from trainlab.errors import RegistryError


def _refuse(value: Any, name: str, expected: str) -> RegistryError:
    return RegistryError(f"{name} must be {expected}, got {value!r}")


def check_number(
    value: Any,
    name: str,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite real number in [lo, hi] (ends open if asked)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi):
        return float(value)
    if math.isfinite(lo) and math.isfinite(hi):
        raise _refuse(value, name, f"in {'[('[lo_open]}{lo:g}, {hi:g}{'])'[hi_open]}")
    low = f" {'>' if lo_open else '>='} {lo:g}" if math.isfinite(lo) else ""
    high = f" {'<' if hi_open else '<='} {hi:g}" if math.isfinite(hi) else ""
    raise _refuse(value, name, f"a finite number{low}{high}")


def check_probability(p: Any, name: str = "p", *, below_one: bool = False) -> float:
    """``p`` in [0, 1], or in [0, 1) with ``below_one``: drop probabilities, where p = 1 would
    drop everything and inverted dropout's scale ``1 / (1 - p)`` would be infinite."""
    return check_number(p, name, 0.0, 1.0, hi_open=below_one)


def check_int(value: Any, name: str, lo: int = 1, hi: int | None = None) -> int:
    """``value`` if it is an int (not a bool) in [lo, hi], or at least ``lo`` without ``hi``."""
    integer = isinstance(value, int) and not isinstance(value, bool)
    if not (integer and lo <= value and (hi is None or value <= hi)):
        expected = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi}]"
        raise _refuse(value, name, expected)
    return value


def check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise _refuse(value, name, "True or False")
    return value


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    """``value`` if it is one of ``choices`` and of the same type (1.0 and True are not 1)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        *rest, last = map(repr, choices)
        raise _refuse(value, name, f"{', '.join(rest)} or {last}" if rest else last)
    return value
