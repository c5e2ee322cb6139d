"""The lab's small helpers (runs, numbers, page formatting) against hand-computed cases. Every
experiment's smoke run and the gallery: tests/test_lab_results.py."""

from __future__ import annotations

import math

import pytest
import torch
from lab_support import needs_data

from trainlab.lab import numbers as lab_numbers
from trainlab.lab import runs as lab_runs
from trainlab.lab.gallery import flatten, format_value, run_lab


@needs_data
def test_same_seed_same_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv(lab_runs.SMOKE_ENV, "1")
    a = run_lab(["selu"], tmp_path / "a", quick=True, seed=3)[0]
    b = run_lab(["selu"], tmp_path / "b", quick=True, seed=3)[0]
    c = run_lab(["selu"], tmp_path / "c", quick=True, seed=4)[0]
    assert a["measured"] == b["measured"]  # timing lives in "seconds", outside "measured"
    assert a["measured"]["final_train_loss"] != c["measured"]["final_train_loss"]


def test_unknown_experiment_is_a_clear_error(tmp_path):
    from trainlab.errors import TrainlabError

    with pytest.raises(TrainlabError, match="unknown lab experiment.*'nope'.*valid names"):
        run_lab(["nope"], tmp_path)


# ------------------------------------------------------------------ measuring functions


def test_relative_error_and_flatten():
    from trainlab.lab.exp_11_dropout import relative_error

    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 8.0])
    assert relative_error(a, b) == pytest.approx(5.0 / 8.0)
    rows = flatten({"a": {"b": 1, "c": {"d": 2.5}}, "e": [1, 2], "f": True})
    assert rows == [("a.b", 1), ("a.c.d", 2.5), ("e", [1, 2]), ("f", True)]
    assert format_value(0.123456) == "0.1235"
    assert format_value(None) == "n/a"
    assert format_value(list(range(20))) == "[" + ", ".join(map(str, range(20))) + "]"


def test_kit_helpers():
    g = torch.Generator().manual_seed(0)
    batches = lab_runs.step_batches(10, 3, 7, g)
    assert len(batches) == 7 and all(len(b) == 3 for b in batches)
    # each epoch's slices come from one permutation: no repeats within the first three
    assert len(set(torch.cat(batches[:3]).tolist())) == 9
    assert lab_numbers.tail_mean([5.0] * 90 + [1.0] * 10) == 1.0
    assert lab_numbers.mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert lab_numbers.rounded([math.inf, 1.23456789]) == [None, 1.23457]
    assert lab_numbers.diverged_at([2.0, 1.0, math.inf, math.inf]) == 3
    assert lab_numbers.diverged_at([2.0, 1.0]) is None


def test_a_scale_an_experiment_does_not_offer_is_refused_before_any_work(tmp_path, capsys):
    from trainlab.cli import main
    from trainlab.errors import TrainlabError

    with pytest.raises(TrainlabError, match="'zero-init' has no 'paper' scale; it offers quick"):
        run_lab(["zero-init"], tmp_path / "lab", scale="paper")
    assert not (tmp_path / "lab").exists()
    assert main(["lab", "zero-init", "--scale", "paper", "--out", str(tmp_path / "cli")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no 'paper' scale" in err
    assert not (tmp_path / "cli").exists()
