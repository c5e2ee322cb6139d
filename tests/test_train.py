"""The training engine end to end, on tiny data: metrics, checkpoint, report, resume, faults."""

import json
import math
import shutil

import pytest
import torch

import trainlab.engine.build as build_mod
import trainlab.engine.checkpoint as checkpoint_mod
import trainlab.train as train_mod
from trainlab.engine.progress import Progress
from trainlab.errors import CheckpointError, RecipeError, TrainingDiverged
from trainlab.recipe import load_recipe
from trainlab.train import (
    fit,
    held_out_split,
    load_checkpoint,
    lr_factor,
    model_from_checkpoint,
    prepare_splits,
)

TINY = [
    "data.name=synthetic(n=384, classes=4, size=16)",
    "train.batch_size=64",
    "train.epochs=2",
    "model.widths=[8,16]",
]


def tiny(*extra):
    return load_recipe(None, [*TINY, *extra])


def test_one_epoch_on_real_data_writes_everything_and_learns(tmp_path, fashion_mnist):
    recipe = load_recipe(
        None, ["data.subset=600", "data.test_subset=500", "train.epochs=1", "train.batch_size=50"]
    )
    result = fit(recipe, tmp_path, progress=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    for key in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"):
        assert key in row
    assert row["epoch"] == 1 and row == result.final
    assert row["test_acc"] > 0.3, "ten classes: chance is 0.1"
    # the reported test numbers are the checkpoint's numbers, recomputed independently
    model, _, state = model_from_checkpoint(tmp_path)
    ds_x, ds_y = result_test_split(recipe)
    with torch.no_grad():
        logits = model.eval()(ds_x)
    assert (logits.argmax(1) == ds_y).float().mean().item() == pytest.approx(row["test_acc"])
    assert torch.nn.functional.cross_entropy(logits, ds_y).item() == pytest.approx(
        row["test_loss"], rel=1e-4
    )
    assert state["epoch"] == 1 and state["confusion"].sum().item() == 500
    html = (tmp_path / "report.html").read_text()
    diag_figures = list((tmp_path / "figures").glob("diag_*.png"))
    assert diag_figures, "diagnostics are on by default"
    assert html.count('src="data:image/png;base64,') == 2 + len(diag_figures)
    assert "[train]" in html and "<h2>Diagnostics</h2>" in html
    assert isinstance(json.loads((tmp_path / "findings.json").read_text()), list)
    assert (tmp_path / "diagnostics.html").is_file()
    md = (tmp_path / "report.md").read_text()
    assert "figures/curves.png" in md and (tmp_path / "figures" / "confusion.png").is_file()
    assert f"{100 * row['test_acc']:.2f}%" in md


def result_test_split(recipe):
    from trainlab.data import load_dataset

    return held_out_split(load_dataset(recipe.data.name), recipe.data.test_subset)


def test_same_seed_same_weights_and_other_seed_differs(tmp_path):
    a = fit(tiny(), tmp_path / "a", progress=False, report=False)
    b = fit(tiny(), tmp_path / "b", progress=False, report=False)
    c = fit(tiny("train.seed=1"), tmp_path / "c", progress=False, report=False)
    wa, wb, wc = (load_checkpoint(r.out)["model"] for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert [m[key] for m in a.metrics] == [m[key] for m in b.metrics]


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [
            "regularize.mix=mixup(0.4)",
            "model.dropout=dropout(0.3)",
            "regularize.penalty=l2(1e-4)",
            "augment.train=['pad_crop(2)', 'hflip']",
            "model.kind=resnet",
            "model.survival_prob=0.7",
        ],
    ],
)
def test_resume_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch, extra):
    recipe = tiny("train.epochs=3", *extra)
    whole = fit(recipe, tmp_path / "whole", progress=False, report=False)

    saves = {"n": 0}
    real_save = checkpoint_mod.write_checkpoint

    def save_then_die(path, data):
        real_save(path, data)
        saves["n"] += 1
        if saves["n"] == 1:
            raise KeyboardInterrupt  # the process is killed right after the first checkpoint

    monkeypatch.setattr(checkpoint_mod, "write_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(recipe, tmp_path / "cut", progress=False, report=False)
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 1
    resumed = fit(None, tmp_path / "cut", resume=True, progress=False, report=False)

    w1, w2 = load_checkpoint(whole.out)["model"], load_checkpoint(resumed.out)["model"]
    for key in w1:
        assert torch.equal(w1[key], w2[key]), key
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3]
    assert [m["test_acc"] for m in resumed.metrics] == [m["test_acc"] for m in whole.metrics]


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    recipe = tiny("train.epochs=3", "train.log_every=1")
    steps_per_epoch = 384 // 64
    real = build_mod.lr_factor
    monkeypatch.setattr(
        build_mod,
        "lr_factor",
        lambda r, step, spe: 1e30 if step >= steps_per_epoch + 2 else real(r, step, spe),
    )
    with pytest.raises(TrainingDiverged) as info:
        fit(recipe, tmp_path, progress=False, report=False)
    message = str(info.value)
    assert "non-finite" in message and "epoch 2" in message
    bad_step = int(message.split("at step ")[1].split()[0])
    assert bad_step >= steps_per_epoch + 2
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("name", ["constant", "step", "cosine", "linear"])
def test_schedules_against_their_formulas(name):
    r = load_recipe(
        None,
        [
            f"schedule.name={name}",
            "schedule.warmup_epochs=1",
            "train.epochs=4",
            "schedule.step_epochs=2",
            "schedule.gamma=0.5",
            "schedule.final_lr=0.1",
        ],
    )
    spe = 10
    assert lr_factor(r, 0, spe) == pytest.approx(0.1)  # warm-up: (step + 1) / 10
    assert lr_factor(r, 9, spe) == pytest.approx(1.0)
    t = (25 - 10) / 30  # progress after warm-up at step 25
    expected = {
        "constant": 1.0,
        "step": 0.5 ** (25 // 20),
        "cosine": 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)),
        "linear": 1 - 0.9 * t,
    }
    assert lr_factor(r, 25, spe) == pytest.approx(expected[name])


def test_bad_checkpoints_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable trainlab checkpoint"):
        load_checkpoint(tmp_path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="not a trainlab checkpoint"):
        load_checkpoint(tmp_path)


def test_checkpoint_refuses_to_unpickle_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"format": train_mod.CHECKPOINT_FORMAT, "x": Evil()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)


def test_test_subset_is_a_fixed_draw_of_every_class_not_a_prefix():
    from trainlab.data import load_dataset

    recipe = load_recipe(
        None, ["data.name=synthetic(n=64, classes=4, test_n=400)", "data.test_subset=100"]
    )
    ds = load_dataset(recipe.data.name)
    order = ds.test_labels.argsort(stable=True)  # a class-sorted test set, as image folders give
    ds.test_images, ds.test_labels = ds.test_images[order], ds.test_labels[order]
    x, y = held_out_split(ds, 100)
    assert len(y) == 100 and set(y.tolist()) == {0, 1, 2, 3}
    again = prepare_splits(load_recipe(None, [*recipe_overrides(recipe), "train.seed=5"]), ds)
    assert torch.equal(again.test[1], y), "the same test images whatever the seed"


def recipe_overrides(recipe):
    return [f"data.name={recipe.data.name}", f"data.test_subset={recipe.data.test_subset}"]


def test_validation_split_is_carved_from_training_data(tmp_path):
    recipe = tiny("data.val_fraction=0.25", "train.epochs=1")
    splits = prepare_splits(recipe)
    assert len(splits.val[0]) == 96 and len(splits.train[0]) == 384 - 96
    result = fit(recipe, tmp_path, progress=False, report=False)
    assert 0 <= result.final["val_acc"] <= 1 and "val_loss" in result.final


def test_eval_every_tests_only_the_chosen_epochs_and_trains_the_same_model(tmp_path):
    every = fit(tiny("train.epochs=3"), tmp_path / "every", progress=False, report=False)
    end = fit(tiny("train.epochs=3", "train.eval_every=0"), tmp_path / "end", progress=False)
    second = fit(tiny("train.epochs=3", "train.eval_every=2"), tmp_path / "2", progress=False)
    assert [("test_acc" in m) for m in end.metrics] == [False, False, True]
    assert [("test_acc" in m) for m in second.metrics] == [False, True, True]
    # testing is read-only: the same weights and the same final numbers either way
    w1, w2 = load_checkpoint(every.out)["model"], load_checkpoint(end.out)["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert end.final["test_acc"] == every.final["test_acc"]
    assert end.confusion.sum().item() == len(prepare_splits(tiny()).test[1])
    # the report copes with epochs that have no test numbers
    md = (tmp_path / "end" / "report.md").read_text()
    assert f"{100 * end.final['test_acc']:.2f}%" in md


def test_cpu_autocast_trains_in_bfloat16_and_needs_bf16(tmp_path):
    seen = []

    def record(module, inputs, output):
        # training steps only: building the model runs one float32 probe in eval mode
        if isinstance(module, torch.nn.Conv2d) and module.training:
            seen.append(output.dtype)

    fp32 = fit(tiny("train.epochs=1"), tmp_path / "fp32", progress=False, report=False)
    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        bf16 = fit(
            tiny("train.epochs=1", "train.cpu_autocast=true", "train.device=cpu"),
            tmp_path / "bf16",
            progress=False,
            report=False,
        )
    finally:
        handle.remove()
    assert seen and all(d == torch.bfloat16 for d in seen), "every conv ran in bfloat16"
    w1, w2 = load_checkpoint(fp32.out)["model"], load_checkpoint(bf16.out)["model"]
    assert all(w2[k].dtype == w1[k].dtype for k in w1), "master weights stay float32"
    assert not all(torch.equal(w1[k], w2[k]) for k in w1)
    assert abs(bf16.final["train_loss"] - fp32.final["train_loss"]) < 0.05
    with pytest.raises(RecipeError, match="cpu_autocast.*bf16"):
        tiny("train.cpu_autocast=true", "train.autocast=fp16")


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="torch.compile on the CPU needs a C++ compiler",
)
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_matches_eager_training(tmp_path, mode):
    eager = fit(tiny("train.epochs=1"), tmp_path / "eager", progress=False, report=False)
    compiled = fit(
        tiny("train.epochs=1", "train.compile=true", f"train.compile_mode={mode}"),
        tmp_path / "compiled",
        progress=False,
    )
    # the same arithmetic reordered by fusion: equal to float32 rounding after 6 steps (on the
    # CPU, reduce-overhead has no CUDA graphs to record: it checks the engine's path to them)
    w1, w2 = load_checkpoint(eager.out)["model"], load_checkpoint(compiled.out)["model"]
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5)
    assert compiled.final["train_loss"] == pytest.approx(eager.final["train_loss"], rel=1e-5)
    with pytest.raises(RecipeError, match="compile_mode"):
        tiny("train.compile_mode=fastest")


@pytest.mark.parametrize(
    "extra",
    [[], ["optim.clip_grad_norm=0.5"], ["train.ema_decay=0.99"]],
    ids=["plain", "clipped", "ema"],
)
def test_a_silent_run_reads_nothing_back_from_the_device_inside_an_epoch(
    tmp_path, monkeypatch, extra
):
    # Every host read of a tensor (.item(), .tolist(), bool/int/float of a tensor) is counted;
    # doubling the steps of an epoch must not add a single one: the step loop never waits.
    counts = {"n": 0}
    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            counts["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def reads(batch_size):
        counts["n"] = 0
        recipe = tiny(f"train.batch_size={batch_size}", "diagnostics.every=0", *extra)
        fit(recipe, tmp_path / str(batch_size), progress=False, report=False)
        return counts["n"]

    assert reads(64) == reads(32), "6 and 12 steps an epoch: the same reads"


def test_the_whole_update_compiles_to_the_same_weights_as_eager():
    """train.compile_scope = "step" hands forward, backward and the optimizer step to
    torch.compile as one function (CUDA graphs of all of it on a GPU under reduce-overhead).
    On the CPU the aot_eager backend traces it the same way without generating code: after a
    few steps of a moving schedule, with mixup and a penalty, the weights match the eager step's
    to float32 rounding, and the moving learning rate does not make it trace again."""
    from torch._dynamo.backends.common import aot_autograd  # noqa: F401 (aot_eager's home)

    from trainlab.data import load_dataset
    from trainlab.train import build_run, train_steps

    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    data = load_dataset("synthetic(n=256, channels=3, size=8)")
    base = [
        "train.device=cpu", "train.batch_size=32", "train.epochs=2", "diagnostics.every=0",
        "model.widths=[4,8]", "schedule.name=linear", "schedule.warmup_epochs=0.5",
        "regularize.mix=mixup(0.2)", "regularize.penalty=l2(0.001)",
    ]  # fmt: skip
    eager = build_run(load_recipe(None, base), data)
    captured = build_run(
        load_recipe(None, [*base, "train.compile=true", "train.compile_scope=step"]),
        data,
        compile_backend=counting_backend,
    )
    torch._dynamo.reset()
    with torch.random.fork_rng(devices=[]):  # each call starts a new epoch: call both alike
        train_steps(eager, 2)
        train_steps(eager, 10)
    with torch.random.fork_rng(devices=[]):
        train_steps(captured, 2)
        traced = len(graphs)
        train_steps(captured, 10)
    assert traced > 0 and len(graphs) == traced, "the schedule made torch.compile trace again"
    assert [float(g["lr"]) for g in captured.optimizer.param_groups] == pytest.approx(
        [g["lr"] for g in eager.optimizer.param_groups]
    )
    pairs = zip(eager.model.state_dict().items(), captured.model.state_dict().values(), strict=True)
    for (name, a), b in pairs:
        assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize(("log_steps", "step_lines"), [(0, 0), (2, 2)])
def test_a_log_gets_a_line_per_epoch_and_no_progress_bar(tmp_path, capfd, log_steps, step_lines):
    # pytest's captured stderr is not a terminal, as a redirected `make demo > log` is not
    recipe = tiny("train.epochs=2", f"train.log_steps={log_steps}")  # 6 steps an epoch
    fit(recipe, tmp_path, progress=True, report=False)
    out, err = capfd.readouterr()
    assert "\r" not in out + err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines if "step" not in line] == ["epoch 1", "epoch 2"]
    assert len([line for line in lines if " step " in line]) == 2 * step_lines


def test_on_a_terminal_the_bar_refreshes_every_log_every_steps(tmp_path, monkeypatch):
    updates = []

    class Bar:
        def __init__(self, **kwargs):
            updates.append(("new", kwargs["total"]))

        def set_postfix(self, **values):
            updates.append(("postfix", values["loss"]))

        def update(self, n):
            updates.append(("update", n))

        def close(self):
            updates.append(("close", 0))

    import tqdm

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    recipe = tiny("train.epochs=1", "train.log_every=4")
    run = train_mod.build_run(recipe)
    watch = Progress(recipe.train, terminal=True)
    train_mod.train_epoch(run, watch)
    kinds = [kind for kind, _ in updates]
    assert updates[0] == ("new", 6) and kinds.count("update") == 6
    assert kinds.count("postfix") == 2  # after steps 4 and 6 (the epoch's last)


def test_the_run_eta_is_the_average_step_time_times_the_steps_left():
    import time
    from types import SimpleNamespace

    from trainlab.engine.progress import run_eta

    now = time.perf_counter()
    run = SimpleNamespace(step=25, timing={"run_start": now - 10.0, "run_start_step": 20})
    assert run_eta(run, 100) == pytest.approx(10.0 / 5 * 75, rel=1e-3)  # resumed at step 20
    assert run_eta(SimpleNamespace(step=0, timing={}), 100) != run_eta(run, 100)  # nan: unknown
