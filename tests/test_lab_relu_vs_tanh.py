"""Lab experiment 4 (relu-vs-tanh): the smoke run's result, and the pieces its verdict rests on
(epochs to the target, the tuning score, the early-stopped search, the censoring rule and the
log-ratio comparisons) against hand-computed cases."""

import json
import math

import pytest
import torch

from trainlab.lab import exp_04_relu_vs_tanh as exp
from trainlab.lab import run_experiment
from trainlab.lab.base import VERDICTS

RECORD = {"name", "metric", "arms", "difference", "ci95", "min_effect", "seeds", "verdict"}


def test_smoke_run_writes_comparison_records(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINLAB_LAB_SMOKE", "1")
    result = run_experiment("relu-vs-tanh", tmp_path, quick=True, seed=1)
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert result["size"] == "smoke" and result["verdict"] in VERDICTS
    assert len(result["comparisons"]) == 2
    for c in result["comparisons"]:
        assert RECORD <= set(c) and c["arms"] == ["tanh", "relu"] and c["seeds"] == [1, 2]
        assert c["verdict"] in ("inconclusive", "not reached")  # 2 seeds never decide
    mins = [c["min_effect"] for c in result["comparisons"]]
    assert mins == pytest.approx([math.log(exp.FASTER), math.log(exp.PAPER_RATIO)])
    m = result["measured"]
    for act in exp.ACTIVATIONS:
        search = m["lr_search"][act]
        assert len(search["tried"]) >= 5 and m["lr"][act] == search["best"]
    assert "partly" not in json.dumps(result)
    for name in result["figures"]:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_four_layer_cnn_shape_and_size():
    net = exp.four_layer_cnn("tanh", (4, 8), 16)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    expected = (3 * 25 + 1) * 4 + (4 * 25 + 1) * 8 + (8 * 64 + 1) * 16 + (16 + 1) * 10
    assert sum(p.numel() for p in net.parameters()) == expected


def test_epochs_to_target():
    assert exp.epochs_to_target([0.6, 0.3, 0.25, 0.2]) == 3  # <= target counts
    assert exp.epochs_to_target([0.2]) == 1
    assert exp.epochs_to_target([0.6, 0.26]) is None
    assert exp.epochs_to_target([]) is None


def _run(errors, loss, diverged=False):
    return {"epochs": exp.epochs_to_target(errors), "diverged": diverged,
            "error_curve": errors, "loss_curve": [9.0] * (len(errors) - 1) + [loss]}  # fmt: skip


def test_tuning_score_hand_cases():
    assert exp.tuning_score(_run([0.5, 0.2], 1.0)) == 2.5  # reached at 2, loss 1 -> 1/2
    assert exp.tuning_score(_run([0.5, 0.4, 0.3], 3.0)) == 4.75  # missed after 3: 3 + 1 + 3/4
    assert exp.tuning_score(_run([0.5, 0.2], 0.5, diverged=True)) == math.inf
    # fewer epochs always win, whatever the loss; equal epochs: the lower loss
    assert exp.tuning_score(_run([0.2], 100.0)) < exp.tuning_score(_run([0.3, 0.2], 0.0))
    assert exp.tuning_score(_run([0.3, 0.2], 0.4)) < exp.tuning_score(_run([0.3, 0.2], 0.5))


def _fake_trainer(needs, calls):
    """A training run that reaches the target after ``needs[lr]`` epochs (None: never; inf:
    diverges at once), stopping at ``limit``."""

    def train(lr, limit):
        calls.append((lr, limit))
        need = needs[lr]
        if need == math.inf:
            return _run([0.9], 1.0, diverged=True)
        trained = min(limit, need if need is not None else limit)
        errors = [0.5] * (trained - 1) + [0.2 if need is not None and need <= limit else 0.5]
        return _run(errors, 1.0 / lr)

    return train


def test_tune_stops_losers_early_and_keeps_the_same_choice():
    # grid around 0.01: 0.001, 0.00316, 0.01, 0.0316, 0.1
    needs = {0.001: None, 0.00316: 9, 0.01: 6, 0.0316: 4, 0.1: math.inf}
    calls = []
    search, runs = exp.tune(_fake_trainer(needs, calls), 0.01, cap=20)
    assert search.best == 0.0316 and search.bracketed
    assert calls[0] == (0.01, 20)  # the centre first, under the full cap
    limits = dict(calls)
    assert limits[0.001] == limits[0.00316] == 6  # after the centre reached it in 6 epochs
    assert limits[0.1] == 4  # after 0.0316 reached it in 4
    assert runs[0.001]["epochs"] is None
    # without stopping early, the scores order the rates the same way
    full = {lr: exp.tuning_score(_fake_trainer(needs, [])(lr, 20)) for lr in needs}
    assert min(full, key=full.get) == search.best


def test_tune_extends_past_an_edge():
    needs = {0.001: 12, 0.00316: 10, 0.01: 8, 0.0316: 6, 0.1: 5, 0.316: 7}
    search, _ = exp.tune(_fake_trainer(needs, []), 0.01, cap=20)
    assert search.best == 0.1 and search.extensions == 1 and search.bracketed


def test_censoring_decides():
    for v in VERDICTS:
        assert not exp.censoring_decides(v, False, False)
        assert exp.censoring_decides(v, True, True)
    assert not exp.censoring_decides("held", False, True)  # tanh's bound only shrinks the ratio
    assert exp.censoring_decides("did not hold", False, True)
    assert exp.censoring_decides("inconclusive", False, True)
    assert not exp.censoring_decides("did not hold", True, False)  # ReLU's only grows it
    assert exp.censoring_decides("held", True, False)


def test_ratio_comparisons_against_float64_reference():
    relu, tanh = [2, 3, 2, 4, 2], [24, 12, 18, 12, 26]
    faster, six = exp.ratio_comparisons({"relu": relu, "tanh": tanh}, cap=40, seeds=[0, 1, 2, 3, 4])
    d = [math.log(t / r) for t, r in zip(tanh, relu, strict=True)]
    mean = sum(d) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4)
    for c in (faster, six):
        assert c.difference == pytest.approx(mean, rel=1e-12)
        assert c.ci95 == pytest.approx((mean - half, mean + half), rel=1e-9)
        assert c.arms == ("tanh", "relu") and c.direction == 1
    assert faster.min_effect == pytest.approx(math.log(1.25))
    assert faster.verdict == "held"  # ratios 12, 4, 9, 3, 13: the interval is above log 1.25
    assert six.verdict == "inconclusive"  # ... and contains log 6
    assert mean - half < math.log(6) < mean + half


def test_ratio_comparisons_verdicts_and_censoring():
    seeds = [0, 1, 2]
    same = exp.ratio_comparisons({"relu": [10, 11, 12], "tanh": [10, 11, 12]}, 30, seeds)
    assert [c.verdict for c in same] == ["did not hold", "did not hold"]
    # tanh misses the 30-epoch cap in every seed (31, a lower bound): ratio >= 31/2 is held
    fast = exp.ratio_comparisons({"relu": [2, 2, 3], "tanh": [None, None, 30]}, 30, seeds)
    assert [c.verdict for c in fast] == ["held", "held"]
    # ... but a bound that leaves the ratio under 6 cannot refute six times: not reached
    slow = exp.ratio_comparisons({"relu": [10, 11, 12], "tanh": [None, None, None]}, 30, seeds)
    assert [c.verdict for c in slow] == ["held", "not reached"]
    # ReLU missing the target: its bound inflates the ratio; a 'held' is not reached
    relu_miss = exp.ratio_comparisons({"relu": [None, None, None], "tanh": [2, 3, 2]}, 30, seeds)
    assert [c.verdict for c in relu_miss] == ["did not hold", "did not hold"]
    both = exp.ratio_comparisons({"relu": [None, 2, 2], "tanh": [None, 20, 20]}, 30, seeds)
    assert [c.verdict for c in both] == ["not reached", "not reached"]
    two = exp.ratio_comparisons({"relu": [2, 2], "tanh": [20, 30]}, 30, [0, 1])
    assert [c.verdict for c in two] == ["inconclusive", "inconclusive"]


def test_paper_column_is_alexnets_figure_1_scale():
    from trainlab.lab.base import get_experiment
    from trainlab.lab.runs import at_size, sizes_in

    assert sizes_in(exp.SIZES)[-1] == "paper"
    assert "paper" in get_experiment("relu-vs-tanh").scales
    paper = at_size(exp.SIZES, "paper")
    assert paper["n"] == 50_000  # all of CIFAR-10's training images
    assert paper["channels"] == (64, 64) and paper["hidden"] == 384  # the era's widths
    assert paper["seeds"] >= 3 and paper["cap"] >= 60  # paired seeds; room for tanh
    net = exp.four_layer_cnn("relu", paper["channels"], paper["hidden"])
    assert sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in net) == 4
    # the CPU sizes are unchanged (docs/lab.md was generated from them)
    assert [at_size(exp.SIZES, s)["n"] for s in ("smoke", "quick", "full")] == [128, 1500, 9000]


def test_a_shrunk_paper_run_writes_a_well_formed_result(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAINLAB_LAB_SMOKE", raising=False)
    shrunk = {"n": 128, "channels": (4, 8), "hidden": 16, "cap": 1, "seeds": 3}
    table = {k: (*v[:3], shrunk[k]) for k, v in exp.SIZES.items()}
    monkeypatch.setattr(exp, "SIZES", table)
    result = run_experiment("relu-vs-tanh", tmp_path, seed=1, scale="paper")
    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert result["size"] == "paper" and not result["quick"] and result["verdict"] in VERDICTS
    assert len(result["comparisons"]) == 2
    for c in result["comparisons"]:
        assert RECORD <= set(c) and c["seeds"] == [1, 2, 3] and c["verdict"] in VERDICTS
    m = result["measured"]
    assert m["config"]["n"] == 128 and m["config"]["device"] in ("cpu", "cuda")
    assert {"wall_seconds_tuning", "wall_seconds_paired"} <= set(m["timing"])
    assert all(len(v) == 3 for v in m["epochs_to_target"].values())
    assert "paper's scale" in result["notes"] and "TensorFlow's CIFAR-10" in result["notes"]
    for name in result["figures"]:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")
