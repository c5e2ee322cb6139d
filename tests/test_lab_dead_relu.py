"""Experiment 3, dead-relu: its measuring functions against hand-made cases and a plain-Python
reference, its learning-rate sweep on a made-up score, its comparisons on made-up runs, and one
run at the smoke size."""

import json
import math

import pytest
import torch

from trainlab.lab import exp_03_dead_relu as exp
from trainlab.lab import run_experiment
from trainlab.lab.evidence import VERDICTS


@pytest.fixture(autouse=True)
def _smoke(monkeypatch):
    monkeypatch.setenv("TRAINLAB_LAB_SMOKE", "1")


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
    # unit 0 silent throughout; unit 1 silent, recovers, silent again to the end; unit 2 silent
    # at the start only (recovers); unit 3 never silent
    silent = torch.tensor(
        [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.bool
    )
    dead = exp.dead_by_recovery(silent)
    assert dead.tolist() == _reference_dead(silent)
    assert dead[:, 1].tolist() == [False, False, True, True]
    assert dead[:, 2].tolist() == [False, False, False, False]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        silent = torch.rand(7, 11, generator=gen) < 0.7
        assert exp.dead_by_recovery(silent).tolist() == _reference_dead(silent)


def test_summary_reads_the_half_way_checkpoint():
    at = [0, 5, 10, 15, 20]
    silent = torch.tensor(
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1]], dtype=torch.bool
    )
    s = exp.summary([2.0] * 19 + [1.0], at, silent)
    assert s["diverged"] is False and s["final_loss"] == pytest.approx(1.5)
    assert s["silent_at_init"] == 0.25 and s["dead_from_init"] == 0.25
    assert s["dead"] == 0.5  # step 10: units 0 and 1 stay silent to the end; unit 2 recovers
    assert s["silent_at_end"] == 1.0
    assert s["dead_curve"] == [0.25, 0.5, 0.5, 0.75, 1.0]
    assert exp.summary([2.0, 3.0], at, silent)["diverged"] is True  # ends above its start


def test_sweep_climbs_until_a_run_diverges():
    tried = []

    def score(lr):
        tried.append(lr)
        return {"diverged": lr > 0.25}

    grid = [0.01, 0.0178, 0.0316, 0.0562, 0.1]
    s = exp.sweep(score, grid, max_up=6)
    assert tried == grid + [0.178, 0.316]
    assert s["edge"] == 0.316 and s["stable"] == 0.178
    # no divergence within the extensions: no edge, the largest rate is the stable one
    s = exp.sweep(lambda lr: {"diverged": False}, grid, max_up=2)
    assert s["edge"] is None and s["stable"] == 0.316
    # everything diverges: no stable rate, no extension
    s = exp.sweep(lambda lr: {"diverged": True}, grid, max_up=2)
    assert s["edge"] == 0.01 and s["stable"] is None and sorted(s["runs"]) == grid


def test_a_diverged_paired_run_counts_against_the_claim():
    assert exp._claim_value({"diverged": True, "dead": 0.7}, relu=True) == 0.0
    assert exp._claim_value({"diverged": True, "dead": 0.0}, relu=False) == 1.0
    assert exp._claim_value({"diverged": False, "dead": 0.3}, relu=False) == 0.3


def _fake_training(dead_at):
    """A stand-in for train_arm: arm, lr -> (silent fraction from step 1 on, diverged)."""

    def train_arm(arm, lr, x, y, cfg, seed):
        fraction, blew_up = dead_at(arm, lr)
        units = 100
        at = [0, 10, 20]
        row = torch.arange(units) < round(fraction * units)
        silent = torch.stack([torch.zeros(units, dtype=torch.bool), row, row])
        losses = [2.0] * 19 + ([math.inf] if blew_up else [1.0])
        return losses, at, silent

    return train_arm


def _comparisons(monkeypatch, tmp_path, dead_at):
    monkeypatch.setattr(exp, "train_arm", _fake_training(dead_at))
    result = run_experiment("dead-relu", tmp_path, quick=True)
    return result, {c["arms"][1]: c for c in result["comparisons"]}


def test_comparisons_on_made_up_runs(monkeypatch, tmp_path):
    # ReLU diverges above 0.2, so the high rate is 0.178 and the low 0.00593
    def dead_at(arm, lr):
        if arm.startswith("relu"):
            return min(0.4, 2 * lr), lr > 0.2
        return 0.01, arm == "elu" and lr > 0.15

    result, by_arm = _comparisons(monkeypatch, tmp_path, dead_at)
    m = result["measured"]
    assert m["high_lr"] == 0.178 and m["low_lr"] == 0.00593
    assert m["divergence_edge"]["relu"] == 0.316 and m["divergence_edge"]["elu"] == 0.178
    assert by_arm["relu_low"]["difference"] == pytest.approx(0.36 - 0.01)
    assert (
        by_arm["relu_low"]["verdict"] == "inconclusive"
    )  # zero spread: smoke seeds decide nothing
    assert by_arm["leaky_relu"]["difference"] == pytest.approx(0.36 - 0.01)
    # ELU runs at its own largest stable rate (0.1, below its edge 0.178), not at ReLU's 0.178
    assert m["lr"]["elu"] == 0.1 and m["lr"]["relu"] == 0.178
    assert by_arm["elu"]["difference"] == pytest.approx(0.36 - 0.01)
    assert m["diverged_runs"]["elu"] == 0
    assert [c["verdict"] for c in result["comparisons"]] == ["inconclusive"] * 3


def test_no_rise_in_relu_deaths_is_not_reached(monkeypatch, tmp_path):
    def dead_at(arm, lr):
        return 0.02, lr > 0.2

    result, by_arm = _comparisons(monkeypatch, tmp_path, dead_at)
    assert by_arm["relu_low"]["verdict"] == "inconclusive"
    assert by_arm["leaky_relu"]["verdict"] == by_arm["elu"]["verdict"] == "not reached"
    assert result["verdict"] == "not reached"


def test_smoke_run_writes_a_well_formed_result(tmp_path):
    result = run_experiment("dead-relu", tmp_path, quick=True)
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert result["size"] == "smoke" and result["verdict"] in VERDICTS
    assert "partly held" not in json.dumps(result) and "checks" not in result["measured"]
    names = [c["name"] for c in result["comparisons"]]
    assert len(names) == 3 and all(c["min_effect"] == exp.MIN_EFFECT for c in result["comparisons"])
    for c in result["comparisons"]:
        assert c["seeds"] == [0, 1] and c["verdict"] in ("inconclusive", "not reached")
        assert c["ci95"][0] <= c["difference"] <= c["ci95"][1]
    m = result["measured"]
    assert set(m["lr"]) == set(exp.ARMS) | {"relu_low"}
    assert set(m["divergence_edge"]) == set(exp.ARMS)
    steps = m["checkpoint_steps"]
    assert steps[0] == 0 and steps[-1] == m["steps"]
    assert all(len(curve) == len(steps) for curve in m["dead_curve_mean"].values())
    for arm, s in m["sweep"].items():
        assert len(s["lr"]) >= exp.GRID_POINTS and s["lr"] == sorted(s["lr"]), arm
    for figure in result["figures"]:
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"
