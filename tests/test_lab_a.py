"""Lab experiments 1-7: each runs (at the smoke size) and writes a well-formed result; the
measured pieces they build on are checked against hand-computed cases."""

import math

import pytest


@pytest.fixture(autouse=True)
def _smoke(monkeypatch):
    monkeypatch.setenv("TRAINLAB_LAB_SMOKE", "1")


def _numbers(value, path="measured"):
    """Every number in a nested result, with where it sits."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int | float):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k != "timing"}
    return value
