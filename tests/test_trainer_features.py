"""What practitioners expect of a trainer: a moving average of the weights, the best epoch on the
validation split and early stopping, fp16's loss scaling, metrics.csv; each checked against an
independent reference, and each travelling in the checkpoint so that a resume stays exact."""

import csv
import json

import pytest
import torch

import trainlab.engine.build as build_mod
import trainlab.engine.checkpoint as checkpoint_mod
from trainlab.engine import build_run, fit, load_checkpoint, model_from_checkpoint, train_steps
from trainlab.errors import RecipeError
from trainlab.recipe import load_recipe

TINY = [
    "data.name=synthetic(n=256, classes=4, size=8)", "train.batch_size=64", "train.epochs=3",
    "model.widths=[4,8]", "diagnostics.every=0",
]  # fmt: skip


def tiny(*extra):
    return load_recipe(None, [*TINY, *extra])


def test_the_moving_average_follows_the_float64_recursion_and_copies_the_buffers():
    run = build_run(tiny("train.ema_decay=0.9"))
    average = [p.detach().double().clone() for p in run.model.parameters()]

    def follow(run, loss):  # the reference, from the raw weights after each step
        decay = min(0.9, (1 + run.step - 1) / (10 + run.step - 1))
        for a, p in zip(average, run.model.parameters(), strict=True):
            a.mul_(decay).add_(p.detach().double(), alpha=1 - decay)

    train_steps(run, 9, on_step=follow)
    for a, p in zip(average, run.ema.average.parameters(), strict=True):
        torch.testing.assert_close(p.double(), a, rtol=1e-5, atol=1e-6)
    for name, buffer in run.model.named_buffers():
        assert torch.equal(dict(run.ema.average.named_buffers())[name], buffer), name


def test_the_run_evaluates_and_checkpoints_the_averaged_weights(tmp_path):
    from trainlab.data import load_dataset
    from trainlab.engine import evaluate

    result = fit(tiny("train.ema_decay=0.95"), tmp_path, progress=False, report=False)
    state = load_checkpoint(tmp_path)
    assert state["ema"] is not None and state["ema"].keys() == state["model"].keys()
    model, _, _ = model_from_checkpoint(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["ema"][key]), key
    ds = load_dataset("synthetic(n=256, classes=4, size=8)")
    again = evaluate(model, ds.test_images, ds.test_labels, 4)
    assert again.accuracy == result.final["test_acc"]
    assert again.loss == pytest.approx(result.final["test_loss"], rel=1e-6)


def test_selecting_on_validation_needs_a_validation_split(capsys, tmp_path):
    from trainlab.cli import main

    argv = ["train", "--set", "train.select_on=val_acc", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.select_on" in err and "data.val_fraction" in err
    with pytest.raises(RecipeError, match="train.early_stop_patience = 2 needs train.select_on"):
        tiny("train.early_stop_patience=2")


def test_best_pt_is_the_epoch_best_on_validation_and_eval_takes_it(tmp_path, capsys):
    from trainlab.cli import main

    # a rate high enough for the validation loss to move about
    recipe = tiny("data.val_fraction=0.25", "train.select_on=val_loss", "train.epochs=4",
                  "optim.lr=0.8")  # fmt: skip
    result = fit(recipe, tmp_path, progress=False, report=False)
    losses = [m["val_loss"] for m in result.metrics]
    best_epoch = 1 + losses.index(min(losses))
    assert result.summary["best"]["epoch"] == best_epoch
    assert result.summary["best"]["value"] == min(losses)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == best_epoch
    assert best["metrics"][-1]["val_loss"] == min(losses)
    assert main(["eval", str(tmp_path / "best.pt"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["epoch"] == best_epoch
    assert evaluated["test_acc"] == result.metrics[best_epoch - 1]["test_acc"]


def test_early_stopping_ends_after_patience_evaluations_without_improvement(tmp_path):
    recipe = tiny("data.val_fraction=0.25", "train.select_on=val_acc", "train.epochs=12",
                  "train.early_stop_patience=2", "optim.lr=0.8")  # fmt: skip
    result = fit(recipe, tmp_path, progress=False, report=False)
    accs = [m["val_acc"] for m in result.metrics]
    # the reference: walk the accuracies, count epochs since the best, stop at the patience
    best, stale, stop = -1.0, 0, None
    for epoch, acc in enumerate(accs, 1):
        best, stale = (acc, 0) if acc > best else (best, stale + 1)
        if stale >= 2:
            stop = epoch
            break
    assert stop is not None and len(accs) == stop < 12
    assert result.summary["stopped_early_at_epoch"] == stop
    again = fit(None, tmp_path, resume=True, progress=False, report=False)
    assert again.already_complete


def test_metrics_csv_holds_what_metrics_jsonl_holds(tmp_path):
    fit(tiny("data.val_fraction=0.25", "train.eval_every=2"), tmp_path, progress=False,
        report=False)  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    with open(tmp_path / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows) == 3
    for row, line in zip(rows, table, strict=True):
        for key, value in line.items():
            assert (float(value) if value else None) == (float(row[key]) if key in row else None)
    assert table[0]["test_acc"] == "" and table[1]["test_acc"] != ""  # tested every 2nd epoch


def test_the_scaler_skips_a_step_with_inf_gradients_and_backs_off_its_scale():
    """torch.amp.GradScaler in the engine's step, planted with an inf gradient at step 2: that
    step leaves the weights alone and halves the scale; after growth_interval finite steps the
    scale doubles (the hand-computed sequence)."""
    run = build_run(tiny("optim.momentum=0", "optim.weight_decay=0"))
    run.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    first = next(run.model.parameters())
    first.register_hook(lambda g: g * float("inf") if run.step == 2 else g)
    scales, moved = [], []
    for _ in range(7):
        before = [p.detach().clone() for p in run.model.parameters()]
        train_steps(run, 1)
        scales.append(run.scaler.get_scale())
        after = list(run.model.parameters())
        moved.append(any(not torch.equal(b, p) for b, p in zip(before, after, strict=True)))
    assert moved == [True, True, False, True, True, True, True]
    assert scales == [1024.0, 1024.0, 512.0, 512.0, 512.0, 1024.0, 1024.0]


@pytest.mark.parametrize(
    "extra",
    [["train.ema_decay=0.9"],
     ["data.val_fraction=0.25", "train.select_on=val_loss", "train.early_stop_patience=3"],
     ["optim.clip_grad_norm=0.05"],
     ["scaler"]],
    ids=["ema", "best-and-patience", "clipping", "grad-scaler"],
)  # fmt: skip
def test_a_resume_stays_exact_with_each_feature_on(tmp_path, monkeypatch, extra):
    if extra == ["scaler"]:  # fp16 runs on CUDA only: the scaler's state is planted on the CPU
        monkeypatch.setattr(
            build_mod, "grad_scaler",
            lambda recipe, device: torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=2),
        )  # fmt: skip
        extra = []
    recipe = tiny("train.epochs=3", *extra)
    whole = fit(recipe, tmp_path / "whole", progress=False, report=False)
    real, saves = checkpoint_mod.write_checkpoint, {"n": 0}

    def write_then_die(path, data):
        real(path, data)
        if path.name == "checkpoint.pt":
            saves["n"] += 1
            if saves["n"] == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_mod, "write_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(recipe, tmp_path / "cut", progress=False, report=False)
    monkeypatch.setattr(checkpoint_mod, "write_checkpoint", real)
    resumed = fit(None, tmp_path / "cut", resume=True, progress=False, report=False)
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "cut")
    for part in ("model", "ema"):
        if a[part] is not None:
            assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["scaler"] == b["scaler"] and a["selection"] == b["selection"]
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in whole.metrics]


def test_tensorboard_events_hold_the_epoch_metrics_and_the_logged_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = fit(tiny("train.tensorboard=true", "train.log_steps=2"), tmp_path, progress=False,
                 report=False)  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    accs = [(e.step, e.value) for e in events.Scalars("epoch/test_acc")]
    assert accs == [(m["epoch"], pytest.approx(m["test_acc"])) for m in result.metrics]
    steps = [e.step for e in events.Scalars("step/loss")]
    assert steps == [2, 4, 6, 8, 10, 12]  # 4 steps an epoch, 3 epochs, every 2nd
    lrs = [e.value for e in events.Scalars("step/lr")]
    assert all(0 < lr <= 0.05 for lr in lrs)


def test_tensorboard_without_its_package_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard":
            raise ImportError("no tensorboard here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(RecipeError, match=r"pip install 'trainlab\[tensorboard\]'"):
        fit(tiny("train.tensorboard=true"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
