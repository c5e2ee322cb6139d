"""The budget of the regularization experiments grows until their treated arms reach their
regime (recipes.tune_until_reached), checked on a fake trainer whose validation curves are
made up: no training runs here."""

from __future__ import annotations

import pytest

from trainlab.lab import recipes


def _fake_fit(still_falling: set[str], calls: list):
    """fit_recipe's stand-in: an arm in ``still_falling`` keeps lowering its validation loss
    by 5% an epoch; the others plateau after 5 epochs. Validation error favours lr 0.01."""

    def fit(overrides, data):
        epochs = int(next(o for o in overrides if o.startswith("train.epochs=")).split("=")[1])
        arm = next((o.split("=")[1] for o in overrides if o.startswith("arm=")), "base")
        lr = float(next(o for o in overrides if o.startswith("optim.lr=")).split("=")[1])
        calls.append((arm, epochs, lr))
        falling = arm in still_falling
        rows = [
            {
                "train_loss": 2.0 - 0.01 * e,
                "val_loss": 2.0 * 0.95 ** (e if falling else min(e, 5)),
                "val_acc": 0.5 - abs(lr - 0.01),
            }
            for e in range(epochs)
        ]
        return {"status": "trained", "rows": rows}

    return fit


def _grow(monkeypatch, falling, limit=1e9):
    calls = []
    monkeypatch.setattr(recipes, "fit_recipe", _fake_fit(falling, calls))
    regime = recipes.tune_until_reached(
        lambda seed, epochs: [f"train.epochs={epochs}", f"train.seed={seed}"],
        {"base": [], "treated": ["arm=treated"]},
        ["treated"],
        [10, 11, 12],
        None,
        0.01,
        (10, 20, 40),
        limit,
        later_runs=10,
    )
    return regime, calls


def test_a_plateaued_arm_keeps_the_first_budget(monkeypatch):
    regime, calls = _grow(monkeypatch, falling=set())
    assert regime["epochs"] == 10 and regime["reached"] == {"base": True, "treated": True}
    assert regime["searches"]["treated"].best == 0.01  # the validation error's best
    assert {e for _, e, _ in calls} == {10}


def test_a_still_improving_arm_grows_the_budget_and_is_not_reached_at_the_top(monkeypatch):
    regime, calls = _grow(monkeypatch, falling={"treated"})
    assert [h["epochs"] for h in regime["history"]] == [10, 20, 40]
    assert regime["epochs"] == 40 and regime["reached"]["treated"] is False
    assert regime["reached"]["base"] is True
    # falling 5% an epoch: over the last 8 of 40 epochs, 1 - 0.95^8 = 0.337
    assert regime["improving"]["treated"] == pytest.approx(1 - 0.95**8)
    # the growth retrains each arm's chosen rate only, on the three tuning seeds
    grown = [(a, lr) for a, e, lr in calls if e in (20, 40)]
    assert len(grown) == 2 * 2 * 3 and {lr for _, lr in grown} == {0.01}


def test_the_time_limit_stops_the_growth(monkeypatch):
    regime, _ = _grow(monkeypatch, falling={"treated"}, limit=0.0)
    assert regime["epochs"] == 10 and regime["reached"]["treated"] is False
    assert regime["history"][-1]["skipped"] == "would pass the time limit"
