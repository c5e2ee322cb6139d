"""The shipped recipes are healthy (issue 24, item 5): the first loss is ln(classes) once the
classifier starts small, and the fast recipe's warm-up keeps its first steps from blowing up.

The cause and the fix of the first loss are shown on the default recipe's own network: with
the Kaiming gain sqrt(2) that ``initialize`` gives a ReLU network's every layer, the classifier's
logits have variance ~1 and the first loss is well above ln 10; with
``trainlab.models.init_classifier`` it is within 0.1 of ln 10, the loss of a uniform guess.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trainlab.models import init_classifier
from trainlab.recipe import load_recipe
from trainlab.train import build_run, build_training_model, prepare_splits, train_steps

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread


@pytest.mark.parametrize("seed", [0, 1])
def test_a_small_classifier_starts_at_the_loss_of_a_guess(fashion_mnist, seed):
    recipe = load_recipe("recipes/default.toml", ["data.subset=1000", f"train.seed={seed}"])
    splits = prepare_splits(recipe, fashion_mnist)
    model = build_training_model(recipe, splits).train()
    x, y = splits.train[0][:512], splits.train[1][:512]
    chance = math.log(10)
    g = torch.Generator().manual_seed(seed)
    head = model.head
    with torch.no_grad():  # the cause: Kaiming's ReLU gain on the classifier
        head.weight.normal_(0, math.sqrt(2 / head.in_features), generator=g)
        head.bias.zero_()
        kaiming = F.cross_entropy(model(x), y).item()
    init_classifier(head, generator=g)
    with torch.no_grad():
        small = F.cross_entropy(model(x), y).item()
        logits = model(x)
    assert kaiming > chance + 0.1
    assert abs(small - chance) < 0.1
    assert logits.std().item() < 0.2  # logits near zero: the guess is near uniform
    assert head.weight.std().item() == pytest.approx(0.1 / math.sqrt(head.in_features), rel=0.05)


def test_warm_up_keeps_the_fast_recipes_first_steps_from_blowing_up(fashion_mnist):
    """The cause, measured: at the full rate from step 0 the loss of recipes/fashion-mnist-fast.toml
    jumps to several times its first value within a few steps (the 6272-input head moves all
    logits together); with its 0.2 epoch of warm-up it stays at or below the first value."""
    first_losses = {}
    for warmup in (0.0, 0.2):
        recipe = load_recipe(
            "recipes/fashion-mnist-fast.toml",
            ["train.device=cpu", "diagnostics.every=0", f"schedule.warmup_epochs={warmup}"],
        )
        run = build_run(recipe, fashion_mnist)
        losses = first_losses[warmup] = []
        train_steps(run, 12, on_step=lambda run, loss, seen=losses: seen.append(float(loss)))
    assert max(first_losses[0.0]) > 3 * first_losses[0.0][0]
    assert max(first_losses[0.2]) <= first_losses[0.2][0] * 1.05
    assert load_recipe("recipes/fashion-mnist-fast.toml").schedule.warmup_epochs == 0.2


@pytest.mark.parametrize("recipe_path", ["recipes/default.toml", "recipes/fashion-mnist-fast.toml"])
def test_the_engine_starts_the_shipped_recipes_at_the_loss_of_a_guess(fashion_mnist, recipe_path):
    """The fix in place: the network the engine builds (init.small_head, on by default) gives a
    first loss within 0.1 of ln 10 on a training batch; with the key off, the classifier keeps
    Kaiming's draw, std sqrt(2 / fan_in), and the loss is well above it."""
    first = {}
    for small_head in (True, False):
        recipe = load_recipe(
            recipe_path, ["data.subset=1000", f"init.small_head={str(small_head).lower()}"]
        )
        splits = prepare_splits(recipe, fashion_mnist)
        model = build_training_model(recipe, splits).train()
        x, y = splits.train[0][:512], splits.train[1][:512]
        with torch.no_grad():
            first[small_head] = F.cross_entropy(model(x), y).item()
        fan_in = model.head.in_features
        expected_std = (0.1 if small_head else math.sqrt(2)) / math.sqrt(fan_in)
        assert model.head.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert abs(first[True] - math.log(10)) < 0.1
    assert first[False] > math.log(10) + 0.1


def test_a_users_own_classifier_is_found_and_a_fixed_scheme_is_left_alone(fashion_mnist):
    """The head is the last Linear to the classes in any network (here a user's, whose last
    Linear is not called ``head``); a scheme whose std the user chose (normal(0.05)) keeps it."""
    from torch import nn

    def factory(in_shape, num_classes):
        return nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )

    recipe = load_recipe("recipes/default.toml", ["data.subset=500"])
    splits = prepare_splits(recipe, fashion_mnist)
    network = build_training_model(recipe, splits, model=factory)
    last = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    assert last.weight.std().item() == pytest.approx(0.1 / math.sqrt(64), rel=0.15)
    fixed = load_recipe("recipes/default.toml", ["data.subset=500", "init.scheme=normal(0.05)"])
    network = build_training_model(fixed, splits, model=factory)
    last = [m for m in network.modules() if isinstance(m, nn.Linear)][-1]
    assert last.weight.std().item() == pytest.approx(0.05, rel=0.15)


@pytest.mark.parametrize(
    ("scheme", "head_std"),
    [
        ("uniform(0.2)", lambda fan_in: 0.2 / math.sqrt(3)),  # the user's std: kept
        ("constant(0.01)", lambda fan_in: 0.0),  # every weight 0.01: no spread at all
        ("he", lambda fan_in: 0.1 / math.sqrt(fan_in)),  # Kaiming's alias: sized by fans
        ("xavier", lambda fan_in: 0.1 / math.sqrt(fan_in)),
    ],
)
def test_the_small_head_follows_the_scheme_not_its_spelling(fashion_mnist, scheme, head_std):
    """Whether the head starts small is the scheme's own property (``InitScheme.sized_by_fans``),
    so aliases and arguments cannot fool it: a fixed std is the user's choice, a fan-sized one
    gets the head of std 0.1 / sqrt(fan_in)."""
    recipe = load_recipe("recipes/default.toml", ["data.subset=500", f"init.scheme={scheme}"])
    splits = prepare_splits(recipe, fashion_mnist)
    head = build_training_model(recipe, splits).head
    expected = head_std(head.in_features)
    assert head.weight.std().item() == pytest.approx(expected, rel=0.05, abs=1e-7)
