import copy

import pytest
import torch
from torch import nn

from trainlab.errors import RegistryError
from trainlab.regularize.penalties import (
    PENALTIES,
    ElasticNetPenalty,
    L1Penalty,
    L2Penalty,
    NoPenalty,
    decay_param_groups,
    elastic_net,
    l1,
    l2,
    penalized_parameters,
)


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)  # test-only: builds fixed weights; library code never does this
    return nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.BatchNorm2d(3),
        nn.PReLU(),
        nn.Flatten(),
        nn.Linear(3 * 2 * 2, 4),
        nn.LayerNorm(4),
        nn.Linear(4, 2, bias=False),
    )


def weights64(model: nn.Module) -> list[torch.Tensor]:
    return [model[0].weight.double(), model[4].weight.double(), model[6].weight.double()]


def test_selection_is_linear_and_conv_weights_only():
    model = small_model()
    names = [name for name, _ in penalized_parameters(model)]
    assert names == ["0.weight", "4.weight", "6.weight"]
    everything = [name for name, _ in penalized_parameters(model, exclude_bias_and_norm=False)]
    assert everything == [name for name, _ in model.named_parameters()]


def test_penalties_match_hand_computed_float64():
    model = small_model()
    ws = weights64(model)
    sq = sum((w**2).sum() for w in ws)
    ab = sum(w.abs().sum() for w in ws)
    torch.testing.assert_close(l2(0.3)(model).double(), 0.3 / 2 * sq, rtol=1e-6, atol=0)
    torch.testing.assert_close(l1(0.2)(model).double(), 0.2 * ab, rtol=1e-6, atol=0)
    expected = 0.1 * (0.25 * ab + 0.75 / 2 * sq)
    torch.testing.assert_close(elastic_net(0.1, 0.25)(model).double(), expected, rtol=1e-6, atol=0)
    # the elastic net's ends are L1 and L2 with the same lam
    torch.testing.assert_close(elastic_net(0.1, 1.0)(model), l1(0.1)(model))
    torch.testing.assert_close(elastic_net(0.1, 0.0)(model), l2(0.1)(model))
    assert NoPenalty()(model).item() == 0.0


def test_sgd_with_l2_penalty_equals_sgd_weight_decay_step():
    torch.manual_seed(1)  # test-only data
    x, y = torch.randn(5, 2, 4, 4), torch.randn(5, 2)
    # Powers of two, so the float32 roundings of (lam/2) * 2w and wd * w coincide and the two
    # steps are bit-identical; for other values they agree only to float rounding.
    wd, lr = 0.125, 0.5
    a, b = small_model(), small_model()
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.SGD(a.parameters(), lr=lr)
    opt_b = torch.optim.SGD(decay_param_groups(b, wd), lr=lr)
    for model, opt, penalty in ((a, opt_a, l2(wd)), (b, opt_b, NoPenalty())):
        loss = nn.functional.mse_loss(model(x), y) + penalty(model)
        loss.backward()
        opt.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name


def test_adamw_decoupled_differs_from_adam_with_l2():
    """One step from the same state, checked against the float64 formulas of both rules."""
    w0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([[0.3, 0.1, -0.2]], dtype=torch.float64)
    lr, lam, eps = 0.1, 0.5, 1e-8

    def step(kind: str) -> torch.Tensor:
        layer = nn.Linear(3, 1, bias=False).double()
        layer.weight.data.copy_(w0)
        if kind == "adam+l2":
            opt = torch.optim.Adam(layer.parameters(), lr=lr, eps=eps)
            loss = layer(x).sum() + l2(lam)(layer)
        else:
            opt = torch.optim.AdamW(decay_param_groups(layer, lam), lr=lr, eps=eps)
            loss = layer(x).sum()
        loss.backward()
        opt.step()
        return layer.weight.detach().clone()

    g = x  # d(w . x)/dw
    # Adam's first step: m_hat = g', v_hat = g'^2, update = g' / (|g'| + eps)
    g_l2 = g + lam * w0
    adam_l2 = w0 - lr * g_l2 / (g_l2.abs() + eps)
    adamw = w0 * (1 - lr * lam) - lr * g / (g.abs() + eps)
    got_l2, got_w = step("adam+l2"), step("adamw")
    torch.testing.assert_close(got_l2, adam_l2)
    torch.testing.assert_close(got_w, adamw)
    assert (got_l2 - got_w).abs().max() > 0.01


def test_decay_param_groups_split():
    model = small_model()
    groups = decay_param_groups(model, 0.01)
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for _, p in penalized_parameters(model)}
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(model.parameters()))
    assert len(decay_param_groups(model, 0.01, exclude_bias_and_norm=False)) == 1


def test_penalty_gradient_is_lam_w():
    model = small_model()
    model2 = copy.deepcopy(model)
    l2(0.25)(model).backward()
    torch.testing.assert_close(model[4].weight.grad, 0.25 * model2[4].weight)
    assert model[4].bias.grad is None and model[1].weight.grad is None


def test_registry_names_and_bad_arguments():
    assert isinstance(PENALTIES.create("none"), NoPenalty)
    p = PENALTIES.create("l2(5e-4)")
    assert isinstance(p, L2Penalty) and p.lam == 5e-4
    assert isinstance(PENALTIES.create("l1(1e-5)"), L1Penalty)
    e = PENALTIES.create("elastic_net(1e-4, 0.5)")
    assert isinstance(e, ElasticNetPenalty) and (e.lam, e.l1_ratio) == (1e-4, 0.5)
    with pytest.raises(RegistryError, match="lam"):
        PENALTIES.create("l2(-1.0)")
    with pytest.raises(ValueError, match="l1_ratio must be in"):
        ElasticNetPenalty(1e-4, 1.5)
    with pytest.raises(RegistryError, match="weight_decay"):
        decay_param_groups(small_model(), float("nan"))


@pytest.mark.parametrize(
    "factory, args, kwargs, name",
    [
        ("l2", (float("inf"),), {}, "lam"),
        ("l2", (float("nan"),), {}, "lam"),
        ("l1", (-1e-5,), {}, "lam"),
        ("l2", (True,), {}, "lam"),
        ("elastic_net", (1e-4, float("nan")), {}, "l1_ratio"),
        ("l2", (5e-4,), {"exclude_bias_and_norm": "no"}, "exclude_bias_and_norm"),
    ],
)
def test_factories_refuse_values_by_meaning(factory, args, kwargs, name):
    # ValueError naming the argument and its value, at construction
    with pytest.raises(ValueError, match=rf"{name}.* must be .*got"):
        PENALTIES.get(factory)(*args, **kwargs)
