import math

import pytest
import torch
from torch import nn

from trainlab.errors import RegistryError
from trainlab.regularize.dropout import DROPOUT, Dropout, mc_predict

pytestmark = pytest.mark.usefixtures("one_thread")


def data(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def mc_mean(module: nn.Module, x: torch.Tensor, draws: int) -> torch.Tensor:
    module.train()
    return torch.stack([module(x) for _ in range(draws)]).double().mean(0)


@pytest.mark.parametrize("mode", ["inverted", "classic"])
@pytest.mark.parametrize("channelwise", [False, True])
def test_train_mean_equals_eval_output(mode, channelwise):
    """E[train] = eval. Per element, one draw has std |x| sqrt(p(1-p)) * s, where s is the
    train scale (1/(1-p) inverted, 1 classic); the mean of K draws is within 5 standard errors.
    """
    p, draws = 0.3, 400
    x = data((4, 3, 5, 5))
    layer = Dropout(p, mode=mode, channelwise=channelwise, seed=1)
    mean = mc_mean(layer, x, draws)
    layer.eval()
    expected = layer(x).double()
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    se = x.double().abs() * math.sqrt(p * (1 - p)) * scale / math.sqrt(draws)
    assert ((mean - expected).abs() <= 5 * se + 1e-6).all()
    reference = x if mode == "inverted" else x * (1 - p)
    torch.testing.assert_close(expected, reference.double())


def test_inverted_and_classic_draw_the_same_mask_up_to_the_scale():
    x = data((8, 16))
    inv, cla = Dropout(0.25, seed=5), Dropout(0.25, mode="classic", seed=5)
    torch.testing.assert_close(inv(x), cla(x) / 0.75)


def test_keep_fraction_matches_binomial():
    p, n = 0.4, 20000
    y = Dropout(p, seed=2)(torch.ones(n))
    kept = (y != 0).double().mean().item()
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))


def test_channelwise_drops_whole_feature_maps():
    p, b, c = 0.5, 64, 32
    y = Dropout(p, channelwise=True, seed=3)(torch.ones(b, c, 4, 4))
    flat = y.flatten(2)
    assert (flat == flat[..., :1]).all()  # one value per (sample, channel)
    kept = (flat[..., 0] != 0).double().mean().item()
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / (b * c))
    # different samples get different channel masks
    assert not torch.equal(flat[0, :, 0], flat[1, :, 0])


def test_eval_is_deterministic_and_p0_is_identity():
    x = data((3, 7))
    layer = Dropout(0.5).eval()
    assert torch.equal(layer(x), layer(x))
    assert torch.equal(Dropout(0.0)(x), x)


def test_seeded_identical_and_global_rng_untouched():
    x = data((5, 11))
    state = torch.get_rng_state()
    a, b, c = Dropout(0.5, seed=7), Dropout(0.5, seed=7), Dropout(0.5, seed=8)
    ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb) and not torch.equal(ya, yc)
    assert torch.equal(torch.get_rng_state(), state)
    # an explicit caller-owned generator is used and advanced
    g = torch.Generator().manual_seed(7)
    d = Dropout(0.5, generator=g)
    assert torch.equal(d(x), ya)
    assert not torch.equal(d(x), ya)


def test_mc_predict_keeps_batchnorm_in_eval_and_restores_modes():
    torch.manual_seed(0)  # test-only weights
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), Dropout(0.5, seed=1), nn.Linear(8, 3))
    model[1].running_mean.fill_(0.3)
    model[1].running_var.fill_(2.0)
    model.train()
    model[3].eval()  # a mixed mode that must come back as it was
    before = {name: m.training for name, m in model.named_modules()}
    running = model[1].running_mean.clone()
    x = data((6, 5))
    draws = 300
    mean, var = mc_predict(model, x, draws, return_var=True)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert torch.equal(model[1].running_mean, running)  # BatchNorm stayed in eval mode
    # the network is linear after the dropout, so the MC mean converges to the eval output
    model.eval()
    expected = model(x)
    assert (var > 0).all()
    se = (var / draws).sqrt()
    assert ((mean - expected).abs() <= 5 * se + 1e-5).all()


def test_mc_predict_refuses_a_model_without_stochastic_modules():
    with pytest.raises(RegistryError, match="Monte-Carlo"):
        mc_predict(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), torch.ones(1, 2), 4)
    with pytest.raises(RegistryError, match="k"):
        mc_predict(nn.Sequential(Dropout(0.5)), torch.ones(1, 2), 0)


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan"), "half"])
def test_bad_probability_is_refused_with_its_name_and_value(p):
    with pytest.raises(ValueError, match=r"p must be .*got"):
        Dropout(p)


def test_registry_factories():
    d = DROPOUT.create("dropout(0.5)")
    assert (d.p, d.mode, d.channelwise) == (0.5, "inverted", False)
    assert DROPOUT.create("dropout2d(0.1)").channelwise
    assert DROPOUT.create("dropout(0.5, channelwise=True)").channelwise
    assert DROPOUT.create("classic_dropout(0.5)").mode == "classic"
    with pytest.raises(RegistryError, match="p must be in"):
        DROPOUT.create("dropout(1.0)")
    with pytest.raises(RegistryError, match="mode"):
        DROPOUT.create("dropout(0.5, mode='weird')")


@pytest.mark.parametrize(
    "factory, args, kwargs, name",
    [
        ("dropout", (float("nan"),), {}, "p"),
        ("dropout", (float("inf"),), {}, "p"),
        ("dropout", (0.5,), {"channelwise": "yes"}, "channelwise"),
        ("dropout", (0.5,), {"mode": "scaled"}, "mode"),
        ("dropout2d", (-0.1,), {}, "p"),
        ("classic_dropout", (1.0,), {}, "p"),
    ],
)
def test_factories_refuse_values_by_meaning(factory, args, kwargs, name):
    # ValueError naming the argument and its value, at construction
    with pytest.raises(ValueError, match=rf"{name}.* must be .*got"):
        DROPOUT.get(factory)(*args, **kwargs)
