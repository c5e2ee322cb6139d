"""Recipe validation: every mistake is one clear RecipeError naming the key, before any work."""

import pytest

from trainlab.errors import RecipeError
from trainlab.recipe import Recipe, load_recipe, recipe_from_dict


def write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_defaults_round_trip_through_toml(tmp_path):
    recipe = Recipe()
    again = load_recipe(write(tmp_path, recipe.to_toml()))
    assert again == recipe


def test_values_are_read_and_ints_widen_to_float(tmp_path):
    r = load_recipe(write(tmp_path, "[optim]\nlr = 1\n[model]\nwidths = [8, 16]\nkind = 'mlp'\n"))
    assert r.optim.lr == 1.0 and isinstance(r.optim.lr, float)
    assert r.model.widths == [8, 16] and r.model.kind == "mlp"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[trian]\nepochs = 1\n", "unknown section [trian]"),
        ("[train]\nepoch = 1\n", "unknown key train.epoch"),
        ("[train]\nepochs = 'ten'\n", "train.epochs = 'ten': expected an integer, got a string"),
        ("[train]\nepochs = 0\n", "train.epochs = 0: expected an integer >= 1"),
        ("[optim]\nlr = -0.1\n", "optim.lr = -0.1: expected a number > 0"),
        ("[optim]\nmomentum = 1.0\n", "optim.momentum = 1.0: expected a number < 1"),
        ("[optim]\nname = 'adam'\n", "optim.name = 'adam': expected one of sgd, adamw"),
        ("[train]\nseed = true\n", "expected an integer, got a boolean"),
        ("[model]\nwidths = [8, 'x']\n", "model.widths[1]"),
        ("[model]\nwidths = 8\n", "expected a list of an integer"),
        ("[model]\nactivation = 'relu6'\n", "model.activation = 'relu6'"),
        ("[init]\nscheme = 'kaiminng'\n", "init.scheme = 'kaiminng'"),
        ("train = 3\n", "[train] must be a table"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_mistakes_name_the_key(tmp_path, text, needle):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text))
    assert needle in str(info.value)
    assert str(tmp_path / "r.toml") in str(info.value)


def test_unknown_activation_lists_valid_names():
    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"model": {"activation": "relux"}})
    message = str(info.value)
    assert "valid names" in message and "leaky_relu" in message and "selu" in message


def test_overrides_parse_toml_values_and_bare_specs():
    r = load_recipe(
        None,
        [
            "train.epochs=3",
            "model.widths=[4,8]",
            "model.activation=leaky_relu(0.1)",
            "optim.nesterov=false",
            "data.name=synthetic(n=64)",
        ],
    )
    assert r.train.epochs == 3 and r.model.widths == [4, 8]
    assert r.model.activation == "leaky_relu(0.1)" and r.optim.nesterov is False
    assert r.data.name == "synthetic(n=64)"


@pytest.mark.parametrize("item", ["epochs=3", "train.epochs", "a.b.c=1"])
def test_malformed_overrides(item):
    with pytest.raises(RecipeError, match="--set"):
        load_recipe(None, [item])


def test_override_values_are_validated_too():
    with pytest.raises(RecipeError, match="train.batch_size = 0"):
        load_recipe(None, ["train.batch_size=0"])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.toml")


def test_shipped_default_recipe_equals_the_built_in_defaults():
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[1] / "recipes" / "default.toml"
    assert load_recipe(shipped) == Recipe()
