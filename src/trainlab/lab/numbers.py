"""Numbers of lab results: rounding for JSON."""

from __future__ import annotations

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
