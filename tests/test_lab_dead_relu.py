"""Experiment 3, dead-relu: its measuring functions against hand-made cases and a plain-Python
reference, its sweep on a made-up score, and the whole experiment on made-up runs (the rates it
picks, collapse and divergence counted apart from dead units)."""

import math

import pytest
import torch

from trainlab.lab import exp_03_dead_relu as exp
from trainlab.lab import run_experiment
from trainlab.lab.loop import Trained


def test_silent_units_are_never_positive_on_the_probe():
    # layer 1: unit 0 never positive, unit 1 positive once, unit 2 exactly 0 everywhere
    # layer 2: unit 0 NaN everywhere (no number is positive), unit 1 positive
    pre = [
        torch.tensor([[-1.0, -1.0, 0.0], [-2.0, 0.5, 0.0]]),
        torch.tensor([[math.nan, 3.0], [math.nan, -1.0]]),
    ]
    assert exp.silent_units(pre).tolist() == [True, False, True, True, False]


def _reference_dead(silent):
    """Dead at checkpoint k: silent at k and at every later checkpoint, in plain Python."""
    rows = silent.tolist()
    return [[all(r[u] for r in rows[k:]) for u in range(len(rows[0]))] for k in range(len(rows))]


def test_dead_by_recovery_against_a_plain_python_reference():
    silent = torch.tensor(
        [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.bool
    )
    dead = exp.dead_by_recovery(silent)
    assert dead.tolist() == _reference_dead(silent)
    assert dead[:, 1].tolist() == [False, False, True, True]  # silent, recovers, silent to the end
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        silent = torch.rand(7, 11, generator=gen) < 0.7
        assert exp.dead_by_recovery(silent).tolist() == _reference_dead(silent)


def test_summary_reads_the_half_way_checkpoint_and_names_failures():
    at = [0, 5, 10, 15, 20]
    silent = torch.tensor(
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1]], dtype=torch.bool
    )
    s = exp.summary(Trained(None, [2.0] * 19 + [1.0]), at, silent, classes=10)
    assert s["status"] == "trained" and s["final_loss"] == pytest.approx(1.5)
    assert s["silent_at_init"] == 0.25
    assert s["dead"] == 0.5  # step 10: units 0 and 1 stay silent to the end; unit 2 recovers
    assert s["dead_curve"] == [0.25, 0.5, 0.5, 0.75, 1.0]
    # a loss ending at chance (ln 10 = 2.303) is a collapse, not a dead fraction
    at_chance = exp.summary(Trained(None, [2.3] * 20), at, silent, classes=10)
    assert at_chance["status"] == "collapsed" and "dead" in at_chance
    assert exp._value(at_chance) == "collapsed"
    diverged = exp.summary(Trained(None, [2.0], diverged_at=2), at, silent, classes=10)
    assert diverged == {"status": "diverged", "final_loss": None}


def test_sweep_climbs_until_a_run_fails_on_any_tuning_seed():
    tried = []

    def score(lr, seed):
        tried.append((lr, seed))
        failed = lr > 0.25 or (lr > 0.15 and seed == 2)  # seed 2 collapses one step earlier
        return {"status": "collapsed" if failed else "trained"}

    grid = [0.01, 0.0178, 0.0316, 0.0562, 0.1]
    s = exp.sweep(score, grid, [0, 1, 2], max_up=6)
    assert [lr for lr, _ in tried[::3]] == grid + [0.178]
    assert s["edge"] == 0.178 and s["high"] == 0.1
    s = exp.sweep(lambda lr, seed: {"status": "trained"}, grid, [0, 1, 2], max_up=2)
    assert s["edge"] is None and s["high"] == 0.316
    s = exp.sweep(lambda lr, seed: {"status": "diverged"}, grid, [0, 1, 2], max_up=2)
    assert s["edge"] == 0.01 and s["high"] is None and s["rates"] == grid


def _fake(dead_at):
    """A stand-in for train_arm: (arm, lr) -> (dead fraction from step 1 on, final loss)."""

    def train_arm(arm, lr, x, y, cfg, seed):
        fraction, loss = dead_at(arm, lr)
        units = 100
        row = torch.arange(units) < round(fraction * units)
        silent = torch.stack([torch.zeros(units, dtype=torch.bool), row, row])
        losses = [3.0] * 19 + [loss]
        return (
            Trained(None, losses, diverged_at=20 if math.isinf(loss) else None),
            [0, 10, 20],
            silent,
        )

    return train_arm


def test_rates_and_comparisons_on_made_up_runs(monkeypatch, tmp_path):
    # ReLU collapses above 0.15 (loss at chance): its high rate is 0.1, where 40% of its units
    # die; Leaky ReLU trains everywhere (1% dead); ELU diverges above 0.06.
    def dead_at(arm, lr):
        if arm == "elu":
            return 0.01, math.inf if lr > 0.06 else 1.0
        if arm.startswith("relu"):
            return (0.4 if lr > 0.09 else 0.0), (2.3 if lr > 0.15 else 1.0)
        return 0.01, 1.0

    monkeypatch.setenv("TRAINLAB_LAB_SMOKE", "1")
    monkeypatch.setattr(exp, "train_arm", _fake(dead_at))
    monkeypatch.setitem(exp.SIZES, "seeds", (6, 6, 6))  # enough pairs to decide
    result = run_experiment("dead-relu", tmp_path, quick=True)
    m = result["measured"]
    assert m["high_lr"]["relu"] == 0.1 and m["edge"]["relu"] == 0.178
    assert m["high_lr"]["elu"] == 0.0562 and m["low_lr"] == pytest.approx(0.00333)
    primary, *secondaries = result["comparisons"]
    assert primary["difference"] == pytest.approx(0.4) and primary["verdict"] == "held"
    by_name = {c["name"]: c for c in secondaries}
    leaky = by_name["ReLU loses more units than leaky_relu at a common rate"]
    assert leaky["arms"] == ["relu at 0.1", "leaky_relu at 0.1"]
    assert leaky["difference"] == pytest.approx(0.39)
    # Leaky ReLU never fails, so its sweep climbs the smoke size's 2 points above the grid
    own_leaky = by_name["ReLU loses more units than leaky_relu at their own high rates"]
    assert own_leaky["arms"] == ["relu at 0.1", "leaky_relu at 0.316"]
    elu_common = by_name["ReLU loses more units than elu at a common rate"]
    assert elu_common["arms"] == ["relu at 0.0562", "elu at 0.0562"]  # below ReLU's deaths
    assert elu_common["difference"] == pytest.approx(-0.01)
    own = by_name["ReLU loses more units than elu at their own high rates"]
    assert own["arms"] == ["relu at 0.1", "elu at 0.0562"]
    # the primary is re-checked one grid step below ReLU's high rate, where nobody dies
    assert [n["lr"] for n in primary["neighbours"]] == [0.0562] and primary["sensitive"]
