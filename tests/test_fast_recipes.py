"""The shipped recipes validate, and the fast ones train end to end on a slice of their data."""

from pathlib import Path

import pytest

from trainlab.recipe import load_recipe, recipe_from_dict
from trainlab.train import fit, load_checkpoint

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FAST = ["fashion-mnist-fast.toml", "fashion-mnist-fast-gpu.toml", "cifar10-fast.toml"]


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_round_trips(path):
    import tomllib

    recipe = load_recipe(path)
    assert recipe_from_dict(tomllib.loads(recipe.to_toml())) == recipe


@pytest.mark.parametrize("name", FAST)
def test_fast_recipes_spend_nothing_on_watching(name):
    # timed runs: one test pass at the end, no statistics hooks, mirrored test images averaged
    recipe = load_recipe(RECIPES / name)
    assert recipe.train.eval_every == 0 and recipe.diagnostics.every == 0
    assert recipe.augment.tta == "flip"


def smoke(name, tmp_path, minimum, data=()):
    # 32 steps: batch 128 instead of the GPU recipes' 512, or batch norm's running statistics
    # are still far from the data's after the 8 steps 2048 images make, and the test accuracy
    # is chance. The learning rate scales with the batch, as the recipes' own lr was scaled.
    full = load_recipe(RECIPES / name)
    lr = full.optim.lr * 128 / full.train.batch_size
    short = ["data.subset=2048", "data.test_subset=500", "train.epochs=2", "train.batch_size=128"]
    recipe = load_recipe(RECIPES / name, [*short, f"optim.lr={lr}", "train.device=cpu", *data])
    result = fit(recipe, tmp_path, progress=False, report=False)
    assert [("test_acc" in m) for m in result.metrics] == [False, True], "tested once, at the end"
    assert load_checkpoint(tmp_path)["epoch"] == 2
    assert result.final["test_acc"] > minimum, result.final  # chance is 0.1
    return result


def test_fashion_mnist_fast_recipe_smoke(tmp_path, fashion_mnist):
    smoke("fashion-mnist-fast.toml", tmp_path, 0.6)  # 0.78 when written


def test_fashion_mnist_fast_gpu_recipe_smoke_on_the_cpu(tmp_path, fashion_mnist):
    smoke("fashion-mnist-fast-gpu.toml", tmp_path, 0.5)  # 0.66 when written


@pytest.mark.parametrize("cpu_recipe", ["cifar10-fast.toml", "cifar10-cpu.toml"])
def test_cifar10_recipes_smoke_on_the_cpu(tmp_path, cpu_recipe):
    """A smoke run needs CIFAR-like images, not CIFAR-10's exact pixels: where the released set
    is not installed, the lossy JPEG copy stands in (nothing here measures accuracy on it)."""
    from trainlab.data import load_dataset
    from trainlab.errors import DataError

    data = []
    try:
        load_dataset("cifar10")
    except DataError:
        try:
            load_dataset("cifar10-jpeg")
        except DataError as exc:
            pytest.skip(f"neither CIFAR-10 nor its JPEG copy is available: {exc}")
        data = ["data.name=cifar10-jpeg"]
    smoke(cpu_recipe, tmp_path, 0.25, data)  # 0.36 for cifar10-fast when written
