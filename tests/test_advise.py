"""``trainlab advise``: the recipe checked against the lecture's rules without torch.

The torch-free reader must agree with ``load_recipe`` field for field and refuse what it
refuses; its tables of technique names and gains must be the registries' own; each rule fires on
a recipe built to break it, with the number it states computed here independently, and every
shipped recipe is clean.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import subprocess
import sys
from pathlib import Path

import pytest

from trainlab.doctor import advise as adv
from trainlab.errors import RecipeError
from trainlab.recipe import load_recipe
from trainlab.techniques import _REGISTRIES

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))


def codes(recipe):
    return {a.code for a in adv.advise(recipe)}


def test_the_name_tables_are_the_registries():
    for kind, (module, attr) in _REGISTRIES.items():
        names = set(getattr(importlib.import_module(module), attr).names())
        assert adv.KNOWN_NAMES[kind] == names, f"update advise.KNOWN_NAMES[{kind!r}]"
    from trainlab.augment import AUGMENTATIONS
    from trainlab.regularize.mix import MIXES

    assert adv.KNOWN_NAMES["augment"] == set(AUGMENTATIONS.names())
    assert adv.KNOWN_NAMES["mix"] == set(MIXES.names())


def test_the_gains_are_trainlab_inits():
    from trainlab.init import gain

    for name, value in adv.GAINS.items():
        assert value == pytest.approx(gain(name), abs=5e-4), name


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_the_fast_reader_agrees_with_load_recipe(path):
    extra = ["optim.lr=0.3", "model.activation=leaky_relu(0.2)", "data.subset=500"]
    for overrides in ([], extra):
        assert adv.read_recipe(path, overrides) == load_recipe(path, overrides)


def test_reading_a_recipe_imports_no_torch():
    code = (
        "import sys; from trainlab.cli import main\n"
        "try:\n    main(['advise', 'recipes/default.toml'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "src")}, check=True)  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["optim.lr=-1"], "optim.lr"),
        (["model.depth=0"], "model.depth"),
        (["model.activation=rellu"], "did you mean 'relu'"),  # checked by the registry
        (["augment.train=['flip']"], "flip"),
        (["data.name=cifar11"], "data.name"),
        (["trian.epochs=3"], "unknown section"),
        (["train.epoch=3"], "unknown key train.epoch"),
    ],
)
def test_bad_recipes_are_refused_as_load_recipe_refuses_them(overrides, match):
    with pytest.raises(RecipeError, match=match):
        adv.read_recipe(None, overrides)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_shipped_recipe_is_clean(path):
    assert adv.advise(adv.read_recipe(path)) == []


def test_saturating_units_in_a_deep_plain_net():
    deep = ["model.kind=mlp", "model.norm=none", "model.widths=[64,64,64,64,64]"]
    assert "vanishing_grad" in codes(load_recipe(None, [*deep, "model.activation=sigmoid"]))
    assert "vanishing_grad" in codes(load_recipe(None, [*deep, "model.activation=tanh"]))
    assert "vanishing_grad" not in codes(load_recipe(None, [*deep, "model.activation=relu"]))
    shallow = [*deep[:2], "model.widths=[64,64,64,64]", "model.activation=tanh"]
    assert "vanishing_grad" not in codes(load_recipe(None, shallow))
    with_norm = [*deep, "model.activation=tanh", "model.norm=batch"]
    assert "vanishing_grad" not in codes(load_recipe(None, with_norm))


def test_a_fixed_init_std_is_measured_against_the_activations_right_one():
    # MLP on Fashion-MNIST: fan-ins 784, 256, 256, 256; the right std is gain / sqrt(fan_in)
    base = ["model.kind=mlp", "model.norm=none", "model.widths=[256,256,256,256]"]
    for std, code in ((0.01, "collapse"), (0.3, "explode"), (0.09, None)):
        recipe = load_recipe(None, [*base, f"init.scheme=normal({std})"])
        scale = math.prod(std * math.sqrt(n) / math.sqrt(2) for n in (784, 256, 256, 256))
        expected = {"collapse": scale < 0.1, "explode": scale > 10}
        found = codes(recipe)
        for name, fires in expected.items():
            assert (name in found) is fires, (std, scale)
        assert code is None or code in found


def test_input_dropout_data_and_rate_rules():
    assert "input_not_centred" in codes(load_recipe(None, ["data.normalize=scale"]))
    assert "input_not_centred" in codes(load_recipe(None, ["data.normalize=none"]))
    assert "input_not_centred" not in codes(load_recipe(None, ["data.normalize=channel_mean"]))
    avg = ["model.head=avg", "model.dropout=dropout(0.5)"]
    assert "dropout_placement" in codes(load_recipe(None, avg))
    assert "dropout_placement" not in codes(load_recipe(None, ["model.dropout=dropout(0.5)"]))
    small = ["data.subset=5000", "augment.train=[]"]
    assert "overfitting" in codes(load_recipe(None, small))
    assert "overfitting" not in codes(load_recipe(None, [*small, "regularize.mix=mixup(0.2)"]))
    assert "overfitting" not in codes(load_recipe(None, ["augment.train=[]"]))  # 60,000 images
    # the reference for SGD at batch 128 and momentum 0.9 is 0.05 (0.1 per 256)
    assert "large_updates" in codes(load_recipe(None, ["optim.lr=0.51"]))
    assert "large_updates" not in codes(load_recipe(None, ["optim.lr=0.49"]))
    assert "stalled" in codes(load_recipe(None, ["optim.lr=0.0049"]))
    assert "stalled" not in codes(load_recipe(None, ["optim.lr=0.0051"]))


def test_advice_names_keys_the_recipe_does_not_set_already():
    recipe = load_recipe(None, ["data.normalize=scale", "optim.lr=2"])
    by_code = {a.code: a for a in adv.advise(recipe)}
    assert by_code["input_not_centred"].changes[0].settings == {"data.normalize": "standardize"}
    assert by_code["large_updates"].changes[0].settings == {"optim.lr": 0.05}
    line = by_code["input_not_centred"].line()
    assert "--set data.normalize=standardize" in line and "preprocessing" in line


def test_a_users_network_gets_only_the_rules_that_do_not_read_model_keys():
    recipe = load_recipe(None, ["data.normalize=none"])
    own = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, kind="python:x.Y"))
    assert codes(own) == {"input_not_centred"}


def test_zero_or_constant_init_is_a_symmetry():
    for scheme in ("zeros", "constant(0.1)"):
        by_code = {a.code: a for a in adv.advise(load_recipe(None, [f"init.scheme={scheme}"]))}
        assert by_code["symmetric"].changes[0].settings == {"init.scheme": "kaiming"}
        assert "zero-init" in by_code["symmetric"].line()
    assert "symmetric" not in codes(load_recipe(None, ["init.scheme=normal(0.01)"]))
