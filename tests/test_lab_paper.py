"""Paper scale without a GPU: the checkpoint-and-continue path rehearsed on the CPU at a tiny
size (a run cut by the time budget and continued by the next command ends exactly as an
uninterrupted one), the priced plan, and the lab's own loop resuming from its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from lab_support import needs_data

from trainlab.lab import paper
from trainlab.lab.base import plan_text, run_experiment
from trainlab.lab.loop import train
from trainlab.lab.sizes import SMOKE_ENV


def _toy():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 6, generator=g), torch.randint(0, 3, (64,), generator=g)


def _fit(checkpoint=None):
    x, y = _toy()
    torch.manual_seed(0)  # only for nn.Linear's default weights, restored below
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    done = train(
        net,
        opt,
        x,
        y,
        batch=16,
        epochs=4,
        gen=torch.Generator().manual_seed(1),
        checkpoint=checkpoint,
    )
    return done


def test_the_loop_continues_from_its_checkpoint_exactly(tmp_path):
    state = torch.random.get_rng_state()
    whole = _fit()
    commands = 0
    while True:  # a budget of 0 s: every command trains one epoch, saves it and stops
        commands += 1
        try:
            with paper.session(tmp_path, 0.0):
                cut = paper.remembered("toy", lambda f: {"losses": _fit(f / "state.pt").losses})
            break
        except paper.Unfinished:
            assert (tmp_path / "runs" / "toy" / "state.pt").is_file()
    torch.random.set_rng_state(state)
    assert commands == 4  # one epoch per command; the fourth finishes
    assert cut["losses"] == whole.losses  # bit for bit: model, optimizer and order restored
    again = paper.remembered  # a finished run is read back, never trained again
    with paper.session(tmp_path, 0.0):
        assert again("toy", lambda f: pytest.fail("trained again")) == cut


def test_a_recipe_run_continues_across_commands(tmp_path):
    from trainlab.data import load_dataset
    from trainlab.lab.recipes import fit_recipe

    data = load_dataset("synthetic(n=96, classes=3, channels=1, size=8, seed=0)")
    overrides = [
        "data.name=synthetic",
        "model.kind=mlp",
        "model.widths=[8]",
        "train.epochs=3",
        "train.batch_size=32",
        "train.device=cpu",
        "train.seed=5",
        "train.eval_every=0",
        "diagnostics.every=0",
    ]
    whole = fit_recipe(overrides, data)
    cut, commands = None, 0
    while cut is None:
        commands += 1
        try:
            with paper.session(tmp_path, 0.0):
                cut = fit_recipe(overrides, data)
        except paper.Unfinished:
            pass
    assert commands == 3 and cut["status"] == "trained"
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    assert [{k: r.get(k) for k in keys} for r in cut["rows"]] == [
        {k: r.get(k) for k in keys} for r in whole["rows"]
    ]


@needs_data
def test_a_paper_experiment_rehearsed_in_short_commands_matches_one_long_one(tmp_path, monkeypatch):
    """deep-init's paper code path (the plain conv net, CIFAR-10, remembered runs, per-epoch
    checkpoints) on a tiny paper column: commands of 1 s continue until the
    result is written, and it equals the result of one uninterrupted command."""
    from trainlab.lab import exp_07_deep_init as exp

    monkeypatch.delenv(SMOKE_ENV, raising=False)
    for key, value in {"n": 32, "width": 2, "cap": 3, "seeds": 3}.items():
        monkeypatch.setitem(exp.SIZES, key, (*exp.SIZES[key][:3], value))
    whole = run_experiment("deep-init", tmp_path / "whole", scale="paper", budget=1e9)
    commands, result = 0, {"unfinished": ""}
    while "unfinished" in result:
        commands += 1
        result = run_experiment("deep-init", tmp_path / "cut", scale="paper", budget=1.0)
        assert commands < 500
    assert commands > 1, "the budget cut the run into several commands"
    assert result["measured"] == whole["measured"]
    assert result["comparisons"] == whole["comparisons"]
    assert json.loads((tmp_path / "cut" / "result.json").read_text())["verdict"] == whole["verdict"]


def test_the_plan_prices_every_paper_experiment_without_running_it(capsys):
    from trainlab.cli import main
    from trainlab.lab.base import experiment_names, get_experiment

    offered = [n for n in experiment_names() if "paper" in get_experiment(n).scales]
    assert offered and main(["lab", "all", "--plan"]) == 0
    out = capsys.readouterr().out
    for name in offered:
        assert f"{name} at paper scale" in out
    assert "command(s) of 9 min" in out
    text = plan_text("dropout")
    assert "paired runs: 18 run(s)" in text  # 3 arms x 6 seeds


def test_forward_flops_by_hand():
    # conv 3->4, 3x3, 8x8 output: 2 * 4*8*8 * 3*3*3 = 13,824; linear 256 -> 10: 2 * 10 * 256
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(256, 10)
    )
    assert paper.forward_flops(net, (3, 8, 8)) == 13_824 + 5_120
