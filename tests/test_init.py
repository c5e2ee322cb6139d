"""Initialization against closed forms, numerical integration and measured variances."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.activations import activation_info, make_activation
from trainlab.errors import RegistryError, TrainlabError
from trainlab.init import (
    INITS,
    fans,
    gain,
    initialize,
    make_init,
    signal_check,
    zero_init_residual,
)

ACTS = [
    "identity",
    "relu",
    "leaky_relu(0.1)",
    "prelu",
    "elu",
    "elu(0.5)",
    "selu",
    "tanh",
    "sigmoid",
    "gelu",
    "gelu('tanh')",
    "silu",
]

# Trapezoid on a fine grid to 8 sigma: independent of the library's quadrature.
Z = np.linspace(-8.0, 8.0, 320_001)
PHI = np.exp(-0.5 * Z * Z) / math.sqrt(2 * math.pi)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ gains
@pytest.mark.parametrize("spec", ACTS)
def test_exact_gain_matches_trapezoid_integration(spec):
    f = activation_info(spec).f(Z)
    second_moment = float(np.trapezoid(f * f * PHI, Z))
    assert gain(spec) == pytest.approx(1 / math.sqrt(second_moment), rel=1e-8)


@pytest.mark.parametrize(
    ("spec", "closed_form"),
    [
        ("identity", 1.0),
        ("relu", math.sqrt(2.0)),
        ("leaky_relu(0.1)", math.sqrt(2 / (1 + 0.1**2))),
        ("leaky_relu(0.3)", math.sqrt(2 / (1 + 0.3**2))),
        ("prelu", math.sqrt(2 / (1 + 0.25**2))),
        ("selu", 1.0),  # by construction, Klambauer et al. 2017
    ],
)
def test_gain_closed_forms(spec, closed_form):
    assert gain(spec) == pytest.approx(closed_form, abs=1e-12)


def test_sigmoid_gain_counts_the_mean():
    f = activation_info("sigmoid").f(Z)
    mean = np.trapezoid(f * PHI, Z)
    var = np.trapezoid((f - mean) ** 2 * PHI, Z)
    assert mean == pytest.approx(0.5, abs=1e-12)
    assert gain("sigmoid") == pytest.approx(1 / math.sqrt(var + mean**2), rel=1e-8)
    assert gain("sigmoid") < 0.5 / math.sqrt(var)  # the variance alone would overshoot


@pytest.mark.parametrize("spec", ACTS)
def test_gain_keeps_pre_activation_variance_at_one(spec):
    """Monte Carlo: z ~ N(0,1), y = W f(z) with std g/sqrt(n): Var[y] ~ 1 (+-5%)."""
    g = gen(1)
    n = 1000
    z = torch.randn(800, n, generator=g, dtype=torch.float64)
    x = make_activation(spec).double()(z).detach()
    w = torch.randn(n, n, generator=g, dtype=torch.float64) * gain(spec) / math.sqrt(n)
    assert float((x @ w.T).pow(2).mean()) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("spec", ["identity", "relu", "leaky_relu(0.2)", "tanh", "sigmoid", "selu"])
def test_pytorch_convention_is_calculate_gain(spec):
    name, _, arg = spec.partition("(")
    name = "linear" if name == "identity" else name
    param = float(arg.rstrip(")")) if arg else None
    assert gain(spec, "pytorch") == nn.init.calculate_gain(name, param)


@pytest.mark.parametrize("spec", ["gelu", "elu", "silu"])
def test_pytorch_convention_has_no_value_for_newer_units(spec):
    with pytest.raises(RegistryError, match="convention='exact'"):
        gain(spec, "pytorch")


def test_gain_rejects_unknown_convention():
    with pytest.raises(RegistryError, match="convention"):
        gain("relu", "keras")


# ------------------------------------------------------------------------------------- fans
def test_fans_of_linear_and_convs():
    assert fans(nn.Linear(30, 7)) == (30, 7)
    assert fans(nn.Conv1d(6, 8, 5)) == (6 * 5, 8 * 5)
    assert fans(nn.Conv2d(16, 32, 3, groups=4)) == (4 * 9, 8 * 9)
    assert fans(nn.Conv3d(4, 6, (1, 2, 3))) == (4 * 6, 6 * 6)
    assert fans(nn.Conv2d(8, 8, 4, stride=2)) == (8 * 16, 8 * 16 / 4)
    # transposed: (in, out/groups, k...); each output gathers in/groups * k^2 / stride^2 inputs
    assert fans(nn.ConvTranspose2d(16, 8, 4, stride=2, groups=2)) == (8 * 16 / 4, 4 * 16)
    assert fans(nn.ConvTranspose1d(3, 5, 3)) == (3 * 3, 5 * 3)
    with pytest.raises(TypeError):
        fans(nn.BatchNorm2d(3))


def _interior_variance(y, crop=2):
    return float(y.detach()[..., crop:-crop, crop:-crop].pow(2).mean())


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(32, 48, 3, padding=1, groups=4, bias=False),
        nn.Conv2d(32, 48, 4, stride=2, padding=1, bias=False),
        nn.ConvTranspose2d(32, 48, 3, padding=1, bias=False),
        nn.ConvTranspose2d(32, 48, 4, stride=2, padding=1, bias=False),
        nn.ConvTranspose2d(32, 48, 4, stride=2, padding=1, groups=4, bias=False),
    ],
    ids=["conv-groups", "conv-stride2", "convT", "convT-stride2", "convT-stride2-groups"],
)
def test_fan_in_keeps_forward_variance_and_fan_out_backward(layer):
    """std 1/sqrt(fan_in) -> output variance 1; std 1/sqrt(fan_out) -> input-gradient var 1."""
    x = torch.randn(16, 32, 16, 16, generator=gen(2)).requires_grad_(True)
    initialize(layer, "kaiming(fan_in, 'identity')", generator=gen(3))
    assert _interior_variance(layer(x)) == pytest.approx(1.0, rel=0.06)

    initialize(layer, "kaiming(fan_out, 'identity')", generator=gen(3))
    y = layer(x)
    upstream = torch.randn(y.shape, generator=gen(4))
    (grad,) = torch.autograd.grad(y, x, upstream)
    assert _interior_variance(grad) == pytest.approx(1.0, rel=0.06)


def test_pytorch_fan_for_transposed_conv_is_the_fan_out():
    layer = nn.ConvTranspose2d(32, 48, 4, stride=2, padding=1, bias=False)
    torch_fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
    assert torch_fan_in == fans(layer)[1] == 48 * 16
    assert fans(layer)[0] == 32 * 16 / 4


# ------------------------------------------------------------------------ scheme std on layers
@pytest.mark.parametrize(
    ("spec", "expected_std"),
    [
        ("normal(0.01)", 0.01),
        ("uniform(0.05)", 0.05 / math.sqrt(3)),
        ("xavier", 1 / math.sqrt(1000)),
        ("xavier('uniform')", 1 / math.sqrt(1000)),
        ("lecun_normal", 1 / math.sqrt(1000)),
        ("glorot_normal", math.sqrt(2 / 1500)),
        ("glorot_uniform", math.sqrt(2 / 1500)),
        ("glorot_normal(2.0)", 2 * math.sqrt(2 / 1500)),
        ("kaiming", math.sqrt(2 / 1000)),
        ("kaiming(fan_out)", math.sqrt(2 / 500)),
        ("kaiming(fan_in, 'tanh')", gain("tanh") / math.sqrt(1000)),
        ("kaiming(distribution='uniform')", math.sqrt(2 / 1000)),
        ("kaiming(convention='pytorch', activation='selu')", 0.75 / math.sqrt(1000)),
    ],
)
def test_weight_std_matches_formula_on_a_large_layer(spec, expected_std):
    """1000 -> 500 Linear: 5e5 draws, so the std is known to ~0.1%; tolerance 1%."""
    layer = nn.Linear(1000, 500)
    report = initialize(layer, spec, generator=gen())
    w = layer.weight.detach()
    assert float(w.std()) == pytest.approx(expected_std, rel=0.01)
    assert float(w.mean()) == pytest.approx(0.0, abs=3 * expected_std / math.sqrt(w.numel()))
    assert report.rows[0].std == pytest.approx(expected_std, rel=1e-12)
    assert torch.count_nonzero(layer.bias) == 0
    if "uniform" in spec:  # bounded by a = std * sqrt(3)
        assert float(w.abs().max()) <= expected_std * math.sqrt(3) + 1e-7


def test_kaiming_uses_the_activation_given_to_initialize():
    layer = nn.Linear(1000, 500)
    initialize(layer, "kaiming", "gelu", generator=gen())
    assert float(layer.weight.detach().std()) == pytest.approx(
        gain("gelu") / math.sqrt(1000), rel=0.01
    )


def test_orthogonal_rows_are_orthonormal_times_gain():
    layer = nn.Linear(300, 200)
    initialize(layer, "orthogonal(1.5)", generator=gen())
    w = layer.weight.detach().double()
    torch.testing.assert_close(
        w @ w.T, 1.5**2 * torch.eye(200, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_zeros_constant_and_default():
    layer = nn.Linear(10, 4)
    initialize(layer, "constant(0.3)")
    assert torch.all(layer.weight == 0.3) and torch.all(layer.bias == 0)
    initialize(layer, "zeros")
    assert torch.all(layer.weight == 0)
    layer = nn.Linear(10, 4)
    before = [p.detach().clone() for p in layer.parameters()]
    initialize(layer, "default")
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters(), strict=True))


def test_norm_layers_become_identity_and_report_lists_every_layer():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.GroupNorm(2, 8)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.5, 1.0, generator=gen())
    report = initialize(model, "kaiming(fan_out)", generator=gen())
    assert torch.all(model[1].weight == 1) and torch.all(model[1].bias == 0)
    assert torch.all(model[4].weight == 1) and torch.all(model[4].bias == 0)
    assert [r.name for r in report.rows] == ["0", "1", "3", "4"]
    assert (report.rows[0].fan_in, report.rows[0].fan_out) == (27, 72)
    text = str(report)
    assert "Conv2d" in text and "BatchNorm2d" in text and "fan_out" in text
    assert report.to_dict()["scheme"] == "kaiming('fan_out')"


def test_same_seed_same_weights_and_missing_generator_is_an_error():
    a, b = nn.Linear(20, 20), nn.Linear(20, 20)
    initialize(a, "kaiming", generator=gen(7))
    initialize(b, "kaiming", generator=gen(7))
    assert torch.equal(a.weight, b.weight)
    for spec in ("xavier", "orthogonal", "kaiming(distribution='uniform')"):
        with pytest.raises(TrainlabError, match="generator"):
            initialize(a, spec)


def test_scheme_names_and_errors():
    for name in (
        "zeros",
        "normal",
        "uniform",
        "xavier",
        "glorot_normal",
        "glorot_uniform",
        "kaiming",
        "lecun_normal",
        "orthogonal",
        "lsuv",
        "default",
        "constant",
    ):
        assert name in INITS
    for spec in ("kaiming(fan_in)", "normal(0.02)", "glorot_uniform", "xavier('uniform')"):
        assert make_init(make_init(spec).spec).spec == make_init(spec).spec
    with pytest.raises(RegistryError, match="valid names"):
        make_init("kaming")
    for bad in (
        "kaiming(mode='fan_x')",
        "normal(-1)",
        "kaiming(activation='relux')",
        "lsuv(0.1, 0)",
    ):
        with pytest.raises(RegistryError):
            make_init(bad)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("normal", {"std": math.nan}, "std must be a finite number > 0, got nan"),
        ("uniform", {"a": math.inf}, "a must be a finite number > 0, got inf"),
        ("constant", {"value": math.nan}, "value must be a finite number, got nan"),
        ("glorot_normal", {"gain": -1.0}, "gain must be a finite number > 0, got -1.0"),
        ("orthogonal", {"gain": True}, "gain must be a finite number > 0, got True"),
        ("lsuv", {"tol": math.nan}, "tol must be a finite number > 0, got nan"),
        ("lsuv", {"max_iter": 2.5}, "max_iter must be an integer >= 1, got 2.5"),
        (
            "kaiming",
            {"activation": 5},
            "activation must be an activation spec such as 'relu', got 5",
        ),
        (
            "kaiming",
            {"mode": "sideways"},
            "mode must be 'fan_in' or 'fan_out', got 'sideways'",
        ),
        (
            "xavier",
            {"distribution": "cauchy"},
            "distribution must be 'normal' or 'uniform', got 'cauchy'",
        ),
    ],
)
def test_factories_say_which_argument_is_wrong(name, kwargs, message):
    with pytest.raises(ValueError) as err:
        INITS.get(name)(**kwargs)
    assert str(err.value) == message


# -------------------------------------------------------------------------------- deep nets
def relu_mlp(depth=20, width=256):
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), make_activation("relu")]
    return nn.Sequential(*layers)


def linear_output_stds(model, x):
    stds = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return np.array(stds)


@pytest.fixture(scope="module")
def batch():
    return torch.randn(512, 256, generator=gen(11))


@pytest.fixture(scope="module")
def kaiming_net():
    model = relu_mlp()
    initialize(model, "kaiming(fan_in)", "relu", generator=gen())
    return model


@pytest.fixture(scope="module")
def small_net():
    model = relu_mlp()
    initialize(model, "normal(0.01)", generator=gen())
    return model


def test_kaiming_keeps_relu_signal_through_20_layers(kaiming_net, batch):
    stds = linear_output_stds(kaiming_net, batch)
    assert len(stds) == 20
    assert 0.5 < stds.min() / stds[0] and stds.max() / stds[0] < 2.0


def test_small_normal_collapses_relu_signal(small_net, batch):
    stds = linear_output_stds(small_net, batch)
    assert stds[-1] / stds[0] < 1e-3


def test_lsuv_gives_unit_variance_at_every_layer(batch):
    model = nn.Sequential(relu_mlp(depth=6), nn.Linear(256, 10))
    report = initialize(model, "lsuv(tol=0.02)", generator=gen(), batch=batch)
    variances = linear_output_stds(model, batch) ** 2
    assert len(variances) == 7
    np.testing.assert_allclose(variances, 1.0, atol=0.021)
    assert list(report.lsuv_variance.values()) == pytest.approx(list(variances), rel=1e-4)


def test_lsuv_needs_a_batch():
    with pytest.raises(TrainlabError, match="batch"):
        initialize(nn.Linear(3, 3), "lsuv", generator=gen())


def test_lsuv_on_a_conv_net():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.Tanh(), nn.Conv2d(16, 16, 3, padding=1), nn.Tanh()
    )
    x = torch.rand(32, 3, 12, 12, generator=gen(5))
    initialize(model, "lsuv", generator=gen(), batch=x)
    with torch.no_grad():
        assert float(model[0](x).var()) == pytest.approx(1.0, abs=0.05)
        assert float(model[2](model[1](model[0](x))).var()) == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------------- residual zero init
class Block(nn.Module):
    def __init__(self, last: str):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(4)
        self.residual_last = self.bn2 if last == "bn" else self.conv2

    def forward(self, x):
        return x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


def test_zero_init_residual_zeroes_the_marked_module_only():
    model = nn.Sequential(Block("bn"), Block("conv"), nn.Conv2d(4, 4, 1))
    initialize(model, "kaiming", generator=gen())
    with torch.no_grad():
        model[0].bn2.bias.fill_(0.0)
    kept = {n: p.detach().clone() for n, p in model.named_parameters()}
    zeroed = zero_init_residual(model)
    assert zeroed == ["0.bn2", "1.conv2"]
    assert torch.all(model[0].bn2.weight == 0) and torch.all(model[1].conv2.weight == 0)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, kept[n])}
    assert changed == {"0.bn2.weight", "1.conv2.weight"}
    x = torch.randn(2, 4, 6, 6, generator=gen())
    torch.testing.assert_close(model[0](x), x)  # the block starts as the identity


def test_initialize_can_zero_residuals_and_rejects_bad_marks():
    model = nn.Sequential(Block("bn"))
    report = initialize(model, "kaiming", generator=gen(), zero_residual=True)
    assert report.zeroed_residual == ["0.bn2"] and torch.all(model[0].bn2.weight == 0)
    bad = Block("bn")
    bad.residual_last = nn.ReLU()
    with pytest.raises(TrainlabError, match="residual_last"):
        zero_init_residual(bad)


# ----------------------------------------------------------------------------- signal check
def test_signal_check_flags_collapse_under_small_normal(small_net, batch):
    report = signal_check(small_net, batch)
    assert not report.ok
    assert {r.flag for r in report.flagged} == {"collapse"}
    assert report.rows[0].flag == "" and report.rows[-1].flag == "collapse"
    assert any("kaiming(fan_in)" in a and "1.41" in a for a in report.advice)
    assert "collapse" in str(report) and "vanish" in str(report)
    assert report.to_dict()["ok"] is False


def test_signal_check_passes_kaiming_net(kaiming_net, batch):
    report = signal_check(kaiming_net, batch)
    assert report.ok and report.findings == [] and report.advice == []
    assert len(report.rows) == 40 and all(r.grad_std > 0 for r in report.rows)
    assert all(p.grad is None for p in kaiming_net.parameters())


def test_signal_check_advice_for_tanh_and_loss_fn(batch):
    model = nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(256, 256), nn.Tanh())])
    model.append(nn.Linear(256, 10))
    initialize(model, "normal(0.01)", generator=gen())
    labels = torch.randint(0, 10, (512,), generator=gen())
    report = signal_check(model, (batch, labels), F.cross_entropy)
    assert not report.ok and report.activation == "tanh"
    assert "xavier" in report.advice[0]


def test_signal_check_flags_explosion(batch):
    model = relu_mlp(depth=8)
    initialize(model, "normal(0.2)", generator=gen())
    report = signal_check(model, batch)
    assert {r.flag for r in report.flagged} == {"explode"}


def test_signal_check_rejects_targets_in_place_of_loss_fn(batch):
    with pytest.raises(TypeError, match=r"signal_check\(model, \(x, y\), loss_fn\)"):
        signal_check(nn.Linear(256, 3), batch, torch.zeros(512))


def test_signal_check_compares_like_with_like_in_a_batchnorm_net(batch):
    """BatchNorm undoes a small init's scale; Linear outputs before it are not a collapse."""
    layers = [m for _ in range(10) for m in (nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU())]
    model = nn.Sequential(*layers)
    initialize(model, "normal(0.001)", generator=gen())  # ReLU outputs ~36x the first Linear's
    report = signal_check(model, batch)
    assert report.ok, str(report)


class PlainBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.residual_last = self.fc2

    def forward(self, x):
        return torch.relu(x + self.fc2(torch.relu(self.fc1(x))))


def test_signal_check_does_not_flag_zeroed_residual_branches(batch):
    model = nn.Sequential(nn.Linear(256, 256), *[PlainBlock(256) for _ in range(4)])
    initialize(model, "kaiming", generator=gen(), zero_residual=True)
    report = signal_check(model, batch)
    assert report.ok, str(report)
    zeroed = [r for r in report.rows if r.name.endswith("fc2")]
    assert len(zeroed) == 4 and all(r.act_std == 0 for r in zeroed)
