"""The lab's small helpers (loop, numbers, page formatting, the CLI's refusals) against
hand-computed cases. Every experiment's smoke run and the gallery: tests/test_lab_results.py."""

from __future__ import annotations

import math

import pytest
import torch
from lab_support import needs_data, smoke_lab

from trainlab.lab.gallery import flatten, format_value, run_lab
from trainlab.lab.loop import epoch_batches, step_batches, train
from trainlab.lab.numbers import rounded


@needs_data
def test_same_seed_same_numbers(tmp_path, monkeypatch):
    """A second run of one experiment at seed 0 repeats the shared smoke run's numbers; another
    seed gives others."""
    monkeypatch.setenv("TRAINLAB_LAB_SMOKE", "1")
    _, results, _ = smoke_lab()
    again = run_lab(["selu"], tmp_path / "a", quick=True, seed=0)[0]
    other = run_lab(["selu"], tmp_path / "b", quick=True, seed=4)[0]
    assert again["measured"] == results["selu"]["measured"]  # timing lives in "seconds"
    assert again["comparisons"] == results["selu"]["comparisons"]
    assert other["measured"]["final_train_loss"] != again["measured"]["final_train_loss"]


def test_unknown_experiment_is_a_clear_error(tmp_path):
    from trainlab.errors import TrainlabError

    with pytest.raises(TrainlabError, match="unknown lab experiment.*'nope'.*valid names"):
        run_lab(["nope"], tmp_path)


def test_flatten_format_and_rounding():
    rows = flatten({"a": {"b": 1, "c": {"d": 2.5}}, "e": [1, 2], "f": True})
    assert rows == [("a.b", 1), ("a.c.d", 2.5), ("e", [1, 2]), ("f", True)]
    assert format_value(0.123456) == "0.1235" and format_value(None) == "n/a"
    assert format_value(list(range(20))) == "[" + ", ".join(map(str, range(20))) + "]"
    assert rounded([math.inf, 1.23456789, (2, 3.0)]) == [None, 1.23457, [2, 3.0]]


def test_batches():
    g = torch.Generator().manual_seed(0)
    batches = step_batches(10, 3, 7, g)
    assert len(batches) == 7 and all(len(b) == 3 for b in batches)
    assert len(set(torch.cat(batches[:3]).tolist())) == 9  # one permutation per epoch
    assert len(epoch_batches(10, 4, g)) == 2  # the short last batch dropped


def test_the_loop_stops_at_a_non_finite_loss_and_on_the_probe():
    x, y = torch.randn(32, 4, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 2
    bad = x.clone()
    bad[5] = math.nan  # the first batch holding image 5 has a NaN loss
    first = next(
        i
        for i, b in enumerate(epoch_batches(32, 8, torch.Generator().manual_seed(1)))
        if 5 in b.tolist()
    )
    net = torch.nn.Linear(4, 2)
    blown = train(
        net,
        torch.optim.SGD(net.parameters(), lr=0.1),
        bad,
        y,
        batch=8,
        steps=20,
        gen=torch.Generator().manual_seed(1),
    )
    assert blown.diverged and blown.status == "diverged"
    assert len(blown.losses) == first and blown.diverged_at == first + 1
    net = torch.nn.Linear(4, 2)
    probed = train(
        net,
        torch.optim.SGD(net.parameters(), lr=0.1),
        x,
        y,
        batch=8,
        epochs=5,
        gen=torch.Generator().manual_seed(1),
        probe=lambda step, _: step == 6,
    )
    assert probed.stopped and len(probed.losses) == 6 and len(probed.epochs) == 2


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
    assert main(["lab", "zero-init", "--plan"]) == 2  # no paper scale, no plan
