"""Lab experiments 11 (dropout), 12 (small-data) and 13 (augmentation): the identities that are
not evidence (dropout's expectation and Monte-Carlo averages), each checked against a
hand-computed value or a float64 formula; every arm a valid recipe at every size; the regime's
"still improving" measure by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainlab.lab import exp_11_dropout as exp11
from trainlab.lab import exp_12_small_data as exp12
from trainlab.lab import exp_13_augmentation as exp13
from trainlab.lab.nets import built
from trainlab.regularize.dropout import Dropout

P = 0.5


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@torch.no_grad()
def expectation_check(x, mode, draws, seed):
    """The mean of ``draws`` training-mode outputs of one dropout layer against its eval
    output; each element has variance x^2 p / (1 - p) (inverted) or x^2 p (1 - p) (classic)
    around its eval value, so the relative error is predicted as sqrt(p / ((1 - p) M))."""
    layer = Dropout(P, mode=mode, generator=torch.Generator().manual_seed(seed))
    target = layer.eval()(x)
    total = torch.zeros_like(x, dtype=torch.float64)
    for _ in range(draws):
        total += layer.train()(x).double()
    error, predicted = relative_error(total / draws, target), math.sqrt(P / ((1 - P) * draws))
    return {"predicted": predicted, "ratio": error / predicted}


@torch.no_grad()
def mc_errors(after, x, ks, gen):
    """Relative error of the running average of passes of ``after(dropout(x))`` against the
    eval pass ``after(x)``, at each k of ``ks``."""
    layer = Dropout(P, generator=gen)
    target = after(x)
    total = torch.zeros_like(target, dtype=torch.float64)
    errors = []
    for k in range(1, max(ks) + 1):
        total += after(layer.train()(x)).double()
        if k in ks:
            errors.append(relative_error(total / k, target))
    return errors


# --- identities: unit tests, no longer evidence -------------------------------------------------


def test_dropout_eval_output_is_the_training_expectation_hand_computed():
    """Inverted dropout trains with x * m / (1 - p) and is the identity at test; classic trains
    with x * m and scales by (1 - p) at test. Every training output element is 0 or the kept
    value, so the mean over the two values, weighted by p and 1 - p, is the eval output."""
    p = 0.25
    x = torch.tensor([[1.0, -2.0, 4.0, 0.5]])
    for mode, kept, test in (("inverted", x / (1 - p), x), ("classic", x, (1 - p) * x)):
        layer = Dropout(p, mode=mode, generator=torch.Generator().manual_seed(0))
        assert torch.equal(layer.eval()(x), test)
        y = layer.train()(x.repeat(2000, 1))
        assert torch.all((y == 0) | torch.isclose(y, kept.expand_as(y)))
        assert torch.allclose((1 - p) * kept, test)  # E[train output] = eval output


def test_dropout_expectation_error_matches_its_prediction():
    x = torch.rand(64, 256, generator=torch.Generator().manual_seed(0)) + 0.5
    for mode in ("inverted", "classic"):
        r = expectation_check(x, mode, 400, seed=0)
        assert r["predicted"] == pytest.approx(math.sqrt(0.5 / (0.5 * 400)))
        # E||mean - target||^2 / ||target||^2 = p / ((1-p) M) exactly; one realisation over
        # 16k elements is within a few per cent of it.
        assert 0.9 < r["ratio"] < 1.1


def test_one_inverted_pass_at_half_is_off_by_exactly_one():
    """At p = 0.5 each element of one inverted pass is 2x or 0, so |y - x| = |x| everywhere and
    the relative error of K = 1 pass is exactly 1 (hand-computed)."""
    x = torch.rand(32, 64, generator=torch.Generator().manual_seed(1)) + 0.1
    errors = mc_errors(nn.Identity(), x, [1], torch.Generator().manual_seed(2))
    assert errors == [pytest.approx(1.0, abs=1e-12)]


def test_mc_average_through_a_linear_layer_converges_as_one_over_sqrt_k():
    """Through a layer linear in the mask the average of K passes is unbiased for the eval pass,
    its error ~ error(1) / sqrt(K). Checked against the float64 formula of the running mean."""
    gen = torch.Generator().manual_seed(3)
    linear = built(lambda: nn.Linear(256, 10))
    x = torch.rand(128, 256, generator=gen)
    ks = [1, 4, 64, 256]
    errors = mc_errors(linear, x, ks, torch.Generator().manual_seed(4))
    for k, e in zip(ks, errors, strict=True):
        assert 0.5 < e * math.sqrt(k) / errors[0] < 2.0
    # The same running mean in float64 by hand, with the same masks.
    layer = Dropout(0.5, generator=torch.Generator().manual_seed(4)).train()
    with torch.no_grad():
        w, b = linear.weight.double(), linear.bias.double()
        target = x.double() @ w.T + b
        total = torch.zeros_like(target)
        for _ in range(4):
            total += layer(x).double() @ w.T + b
    expected = float((total / 4 - target).norm() / target.norm())
    assert errors[1] == pytest.approx(expected, rel=1e-4)


def test_relative_error_is_the_float64_norm_ratio():
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 8.0])
    assert relative_error(a, b) == pytest.approx(math.hypot(3.0, -4.0) / 8.0)


# --- the recipes of the three regularization experiments ---------------------------------------

NAMES = {"dropout": exp11, "small-data": exp12, "augmentation": exp13}


@pytest.mark.parametrize("name", NAMES)
def test_every_arm_is_a_valid_recipe_at_every_size(name, monkeypatch):
    """Each size's baseline plus each arm's overrides loads as a recipe (recipes are validated
    when built); at paper scale on all of CIFAR-10, on the GPU where there is one."""
    from trainlab.lab.sizes import SIZES, at_size
    from trainlab.recipe import load_recipe

    module = NAMES[name]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    arms = {
        "dropout": {a: [f"model.dropout={v}"] for a, v in exp11.ARMS.items()},
        "small-data": exp12.VARIANTS,
        "augmentation": {a: [f"augment.train={v!r}"] for a, v in exp13.AUGMENTS.items()},
    }
    for size in SIZES:
        cfg = at_size(module.SIZES, size)
        device = "cuda" if size == "paper" else "cpu"
        for extra in arms[name].values():
            recipe = load_recipe(None, module.base_overrides(cfg, 7, 3, device) + extra)
            assert recipe.train.device == device and recipe.train.seed == 7
    paper = at_size(module.SIZES, "paper")
    assert paper["train_images"] == 50_000 and paper["test_images"] == 10_000
    assert paper["seeds"] >= 6 and list(paper["budgets"]) == sorted(paper["budgets"])


def test_the_paper_dropout_arm_has_two_large_fully_connected_layers():
    from trainlab.lab.sizes import at_size
    from trainlab.recipe import load_recipe

    paper = at_size(exp11.SIZES, "paper")
    recipe = load_recipe(None, exp11.base_overrides(paper, 7, 3) + ["model.dropout=dropout(0.5)"])
    assert recipe.model.kind == "mlp" and recipe.data.name == "cifar10"
    assert len(recipe.model.widths) == 2 and min(recipe.model.widths) >= 1024


def test_still_improving_reads_the_last_fifth_of_the_budget():
    from trainlab.lab.recipes import still_improving

    # 10 epochs: the value at epoch 8 (80%) against the last: (1.0 - 0.9) / 1.0
    assert still_improving([2.0] * 7 + [1.0, 0.95, 0.9]) == pytest.approx(0.1)
    assert still_improving([1.0] * 8 + [1.1, 1.2]) == pytest.approx(-0.2)  # over-fitting
    assert still_improving([3.0]) == 0.0
