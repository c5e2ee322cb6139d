"""Recipe validation: every mistake is one clear RecipeError naming the key, before any work."""

from pathlib import Path

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
        ("[optim]\nname = 'lion'\n", "optim.name = 'lion': expected one of sgd, adam, adamw"),
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


# NaN fails every `value < lo` check and infinity every field without an upper bound, so both
# are refused by type, for every float field, before any bound is compared.
FLOAT_FIELDS = [
    "data.val_fraction", "model.survival_prob", "optim.lr", "optim.momentum", "optim.beta2",
    "optim.weight_decay", "optim.clip_grad_norm", "schedule.warmup_epochs", "schedule.gamma",
    "schedule.final_lr", "train.ema_decay",
    "regularize.label_smoothing",
]  # fmt: skip


@pytest.mark.parametrize("key", FLOAT_FIELDS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_field_refuses_nan_and_infinity(key, value):
    with pytest.raises(RecipeError, match=rf"{key} = {value.lstrip('-')}|{key} = -inf"):
        load_recipe(None, [f"{key}={value}"])


def test_the_float_field_list_is_the_whole_schema():
    import typing

    floats = {
        f"{section}.{key}"
        for section, cls in typing.get_type_hints(Recipe).items()
        for key, hint in typing.get_type_hints(cls).items()
        if hint is float
    }
    assert floats == set(FLOAT_FIELDS)


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("model.activation=leaky_relu('abc')", "negative_slope"),
        ("model.activation=elu(alpha=nan)", "alpha"),
        ("init.scheme=kaiming(mode='sideways')", "mode must be 'fan_in' or 'fan_out', got"),
        ("init.scheme=normal(-1)", "std must be a finite number > 0"),
        ("data.normalize=zca_whiten(eps=-1)", "eps"),
        ("data.name=foo", "unknown dataset 'foo'"),
        ("data.name=fashion_mnsit", "did you mean"),
        ("data.name=synthetic(n=-1)", "synthetic: n must be"),
        ("data.name=synthetic(noise=nan)", "noise must be a finite number"),
        ("data.name=synthetic(bogus=1)", "bogus"),
        ("data.name=cifar10(3)", "takes no arguments"),
        ("data.name=imagefolder:", "needs a path"),
        ("schedule.warmup_epochs=9", "at most train.epochs = 8"),
    ],
)
def test_technique_arguments_and_data_names_are_checked_by_meaning(item, needle):
    key = item.split("=")[0]
    with pytest.raises(RecipeError) as info:
        load_recipe(None, [item])
    message = str(info.value)
    assert f"{key} = " in message and needle in message and "\n" not in message


@pytest.mark.parametrize(
    "name", ["fashion-mnist", "cifar10", "synthetic(n=64, size=8)", "imagefolder:some/folder"]
)
def test_valid_data_names_pass_without_loading_anything(name):
    # an image folder's path is kept absolute, so the run finds it from any working folder
    folder = f"imagefolder:{Path.cwd() / 'some/folder'}"
    expected = folder if name.startswith("imagefolder") else name
    assert load_recipe(None, [f"data.name={name!r}"]).data.name == expected
