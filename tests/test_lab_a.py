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


def test_steps_to_leave_start_against_a_hand_made_curve():
    from trainlab.lab.exp_07_deep_init import FLAT, WINDOW, steps_to_leave_start

    flat = [2.0] * (3 * WINDOW)
    assert steps_to_leave_start(flat) is None
    # the loss drops to 1.0 from step 2 WINDOW on; the trailing-window mean passes below
    # (1 - FLAT) * 2 once k of its WINDOW entries are 1.0 with 2 - k / WINDOW < 2 (1 - FLAT)
    dropping = [2.0] * (2 * WINDOW) + [1.0] * WINDOW
    k = math.floor(2 * FLAT * WINDOW) + 1
    assert steps_to_leave_start(dropping) == 2 * WINDOW + k
