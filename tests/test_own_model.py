"""The user's own network gets everything a built-in one gets: normalizer, init, augmentation,
mixing, schedule, checkpoints, exact resume, evaluation; a network that does not fit the images
is one line naming the key, before any training."""

import textwrap

import pytest
import torch
from torch import nn

from trainlab.cli import main
from trainlab.engine import build_run, fit, load_checkpoint, model_from_checkpoint
from trainlab.errors import RecipeError
from trainlab.models import build_mlp
from trainlab.recipe import load_recipe

TINY = [
    "data.name=synthetic(n=256, classes=4, size=8)", "train.batch_size=64", "train.epochs=2",
    "model.kind=mlp", "model.widths=[16]", "diagnostics.every=0", "schedule.name=linear",
    "regularize.mix=mixup(0.2)", "augment.train=['hflip']",
]  # fmt: skip


def tiny(*extra):
    return load_recipe(None, [*TINY, *extra])


def mlp_like_trainlabs(in_shape, num_classes):
    """The built-in MLP's layers, as a user would write them: one Sequential of its own."""
    features, head = build_mlp(tiny().model, in_shape, num_classes)
    return nn.Sequential(features, head)


def test_a_users_copy_of_the_built_in_network_trains_exactly_as_the_built_in_one(tmp_path):
    """The same layers in the same order get the same normalizer, the same initialization draws,
    augmentation, mixing and schedule: the two runs are identical, loss for loss."""
    built_in = fit(tiny(), tmp_path / "built-in", progress=False, report=False)
    own = fit(tiny(), tmp_path / "own", model=mlp_like_trainlabs, progress=False, report=False)
    assert [m["train_loss"] for m in own.metrics] == [m["train_loss"] for m in built_in.metrics]
    assert [m["test_acc"] for m in own.metrics] == [m["test_acc"] for m in built_in.metrics]
    a, b = (
        load_checkpoint(tmp_path / "built-in")["model"],
        load_checkpoint(tmp_path / "own")["model"],
    )
    assert [v.shape for v in a.values()] == [v.shape for v in b.values()]
    assert all(torch.equal(x, y) for x, y in zip(a.values(), b.values(), strict=True))
    assert (
        'kind = "python:tests.test_own_model.mlp_like_trainlabs"'
        in (tmp_path / "own" / "recipe.toml").read_text()
        or "python:" in (tmp_path / "own" / "recipe.toml").read_text()
    )


def test_an_own_network_resumes_exactly_and_is_evaluated_from_its_checkpoint(tmp_path):
    import trainlab.engine.checkpoint as checkpoint_mod

    whole = fit(tiny("train.epochs=3"), tmp_path / "whole", model=mlp_like_trainlabs,
                progress=False, report=False)  # fmt: skip
    real, saves = checkpoint_mod.write_checkpoint, {"n": 0}

    def save_then_die(path, data):
        real(path, data)
        saves["n"] += 1
        if saves["n"] == 1:
            raise KeyboardInterrupt

    checkpoint_mod.write_checkpoint = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(tiny("train.epochs=3"), tmp_path / "cut", model=mlp_like_trainlabs,
                progress=False, report=False)  # fmt: skip
    finally:
        checkpoint_mod.write_checkpoint = real
    with pytest.raises(RecipeError, match="model.kind = 'python:.*pass it again"):
        fit(None, tmp_path / "cut", resume=True, progress=False, report=False)
    resumed = fit(None, tmp_path / "cut", resume=True, model=mlp_like_trainlabs, progress=False,
                  report=False)  # fmt: skip
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in whole.metrics]
    model, _, _ = model_from_checkpoint(tmp_path / "cut", model=mlp_like_trainlabs)
    from trainlab.data import load_dataset
    from trainlab.engine import evaluate

    ds = load_dataset("synthetic(n=256, classes=4, size=8)")
    result = evaluate(model, ds.test_images, ds.test_labels, 4)
    assert result.accuracy == pytest.approx(resumed.final["test_acc"])


def test_init_keep_keeps_the_networks_own_weights_and_other_schemes_replace_them():
    net = mlp_like_trainlabs((1, 8, 8), 4)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.125)
    kept = build_run(tiny("init.scheme=keep"), model=net).model.features
    assert all(torch.all(p == 0.125) for p in kept.parameters())
    redrawn = build_run(tiny("init.scheme=xavier"), model=mlp_like_trainlabs((1, 8, 8), 4))
    assert not all(torch.all(p == 0.125) for p in redrawn.model.features.parameters())


FACTORY = """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, in_shape, num_classes, hidden):
            super().__init__()
            inputs = in_shape[0] * in_shape[1] * in_shape[2]
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(),
                                      nn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.body(x)

    def make(in_shape, num_classes, hidden=3):
        return Net(in_shape, num_classes, hidden)

    def wrong_shape(in_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[1] * in_shape[2], num_classes + 1))

    def too_deep(in_shape, num_classes):
        return nn.Sequential(nn.Conv2d(in_shape[0], 2, 9), nn.Flatten(), nn.LazyLinear(num_classes))

    def broken(in_shape, num_classes):
        raise ValueError("no such layer size")

    def not_a_module(in_shape, num_classes):
        return 42
"""


@pytest.fixture
def factories(tmp_path):
    path = tmp_path / "my_nets.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


def test_a_recipe_imports_a_factory_and_passes_its_args(tmp_path, factories, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = tiny("model.kind=import:my_nets.py:make", "model.args={hidden = 5}")
    assert recipe.model.kind == f"import:{factories}:make"  # absolute: found from anywhere
    fit(recipe, tmp_path / "run", progress=False, report=False)
    state = load_checkpoint(tmp_path / "run")
    assert state["model"]["features.body.1.weight"].shape == (5, 64)
    monkeypatch.chdir(tmp_path.parent)
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0


@pytest.mark.parametrize(
    ("kind", "needle"),
    [("import:my_nets.py:nothing_here", "cannot import it"),
     ("import:no_such_module_xyz:make", "cannot import it (ModuleNotFoundError"),
     ("import:my_nets.py:broken", "the factory failed for images of 1x8x8 and 4 classes "
                                  "(ValueError: no such layer size)"),
     ("import:my_nets.py:not_a_module", "returned a int, not an nn.Module"),
     ("import:my_nets.py:wrong_shape", "the network returns (2, 5); expected logits (2, 4)"),
     ("import:my_nets.py:too_deep", "the network fails on a batch of 1x8x8 images"),
     ("nonsense", "expected one of mlp, cnn, resnet, or import:")],
)  # fmt: skip
def test_a_factory_that_fails_is_one_line_naming_model_kind(
    tmp_path, factories, monkeypatch, capsys, kind, needle
):
    monkeypatch.chdir(tmp_path)
    argv = ["train", *[a for t in TINY for a in ("--set", t)], "--set", f"model.kind={kind}"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.kind" in err and needle in err, err
    assert not (tmp_path / "out").exists()


def test_logits_of_the_wrong_shape_are_one_line_with_the_sizes(tmp_path):
    def three_outputs(in_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes - 1))

    with pytest.raises(RecipeError) as info:
        fit(tiny(), tmp_path / "out", model=three_outputs, progress=False)
    message = str(info.value)
    assert "model.kind = 'python:" in message
    assert "returns (2, 3); expected logits (2, 4) = [batch, classes]" in message
    assert not (tmp_path / "out").exists()


def test_a_built_in_network_too_deep_for_the_images_names_widths_and_size(capsys, tmp_path):
    argv = ["train", "--set", "data.name=synthetic(n=256, size=8)", "--set",
            "model.widths=[4,4,4,4,4]", "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "model.widths = [4, 4, 4, 4, 4]" in err and "does not fit 1x8x8 images" in err, err


def test_the_shape_check_moves_no_statistic_and_draws_nothing():
    """One eval-mode forward pass: batch-norm running statistics stay as built, and the run's
    random streams are those of a run without the check."""
    recipe = tiny("model.kind=cnn", "model.widths=[4]")
    run = build_run(recipe)
    norms = [m for m in run.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(int(m.num_batches_tracked) == 0 for m in norms)
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in norms)
    assert run.model.training
