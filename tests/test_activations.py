"""Activations against PyTorch's own ops, autograd, finite differences and the papers' values."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from trainlab.activations import (
    ACTIVATIONS,
    ELU,
    GELU,
    SELU_ALPHA,
    SELU_SCALE,
    Activation,
    LeakyReLU,
    PReLU,
    ReLU,
    activation_info,
    make_activation,
    plot_activations,
)
from trainlab.errors import RegistryError

SPECS = [
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "leaky_relu(0.2)",
    "prelu",
    "prelu(3, 0.1)",
    "elu",
    "elu(0.5)",
    "selu",
    "gelu",
    "gelu('tanh')",
    "silu",
    "identity",
]

# PyTorch's native module for the same function: the independent forward reference.
NATIVE = {
    "sigmoid": nn.Sigmoid(),
    "tanh": nn.Tanh(),
    "relu": nn.ReLU(),
    "leaky_relu": nn.LeakyReLU(0.01),
    "leaky_relu(0.2)": nn.LeakyReLU(0.2),
    "prelu": nn.PReLU(1, 0.25),
    "prelu(3, 0.1)": nn.PReLU(3, 0.1),
    "elu": nn.ELU(1.0),
    "elu(0.5)": nn.ELU(0.5),
    "selu": nn.SELU(),
    "gelu": nn.GELU(),
    "gelu('tanh')": nn.GELU("tanh"),
    "silu": nn.SiLU(),
    "identity": nn.Identity(),
}

# Trapezoid on a fine grid to 8 sigma: an independent way to take E[g(z)], z ~ N(0, 1).
Z = np.linspace(-8.0, 8.0, 160_001)
PHI = np.exp(-0.5 * Z * Z) / math.sqrt(2 * math.pi)


def normal_mean(values: np.ndarray) -> float:
    return float(np.trapezoid(values * PHI, Z))


def inputs(shape=(4, 3, 5), dtype=torch.float64, seed=0):
    """Random inputs kept away from 0, where relu-like functions have their kink."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype) * 3
    return torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x)


@pytest.mark.parametrize("spec", SPECS)
def test_forward_equals_native_op_float32(spec):
    x = inputs(dtype=torch.float32)
    ours = make_activation(spec)
    assert torch.equal(ours(x), NATIVE[spec](x))


@pytest.mark.parametrize("spec", SPECS)
def test_reference_formula_matches_module_in_float64(spec):
    x = inputs()
    module = make_activation(spec).double()
    ref = module.info().f(x.numpy())
    np.testing.assert_allclose(ref, module(x).detach().numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("spec", SPECS)
def test_derivatives_match_autograd(spec):
    x = inputs().requires_grad_(True)
    module = make_activation(spec).double()
    (auto,) = torch.autograd.grad(module(x).sum(), x)
    info = module.info()
    np.testing.assert_allclose(info.df(x.detach().numpy()), auto.numpy(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(info.grad(x.detach()), auto, rtol=1e-12, atol=1e-14)
    if info.grad_from_output is not None:
        y = module(x).detach()
        torch.testing.assert_close(info.grad_from_output(y), auto, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS)
def test_grad_keeps_dtype_and_works_where_hooks_run(spec):
    """Diagnostics call grad on float32 tensors inside no_grad or inference_mode."""
    x = inputs(dtype=torch.float32)
    module = make_activation(spec)
    (auto,) = torch.autograd.grad(module(x.requires_grad_(True)).sum(), x)
    info = module.info()
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            got = info.grad(x.detach() * 1)
        assert got.dtype == torch.float32 and not got.requires_grad
        torch.testing.assert_close(got, auto, rtol=1e-5, atol=1e-5)  # float32 tails


@pytest.mark.parametrize("spec", SPECS)
def test_reference_derivative_matches_finite_differences(spec):
    info = activation_info(spec if "prelu(3" not in spec else "prelu(1, 0.1)")
    x = np.linspace(-6, 6, 1201) + 1e-3  # grid that avoids the kink at 0
    h = 1e-6
    numeric = (info.f(x + h) - info.f(x - h)) / (2 * h)
    np.testing.assert_allclose(info.df(x), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("spec", SPECS)
def test_gradcheck(spec):
    module = make_activation(spec).double()
    x = inputs(shape=(3, 3, 2)).requires_grad_(True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-7)


def test_prelu_slope_is_learned_per_channel():
    module = make_activation("prelu(3, 0.25)").double()
    x = inputs(shape=(8, 3, 4))
    module(x).sum().backward()
    # d/da_c sum f(x) = sum of x over the negative entries of channel c
    expected = torch.where(x < 0, x, torch.zeros_like(x)).sum(dim=(0, 2))
    torch.testing.assert_close(module.weight.grad, expected)
    before = module.weight.detach().clone()
    torch.optim.SGD(module.parameters(), lr=0.1).step()
    torch.testing.assert_close(module.weight.detach(), before - 0.1 * expected)
    assert not torch.equal(module.weight.detach(), before)


def test_prelu_shared_slope_gets_one_gradient():
    module = make_activation("prelu")
    x = inputs(shape=(8, 3, 4), dtype=torch.float32)
    module(x).sum().backward()
    assert module.weight.shape == (1,)
    torch.testing.assert_close(module.weight.grad, x.clamp(max=0).sum().reshape(1))


def test_selu_constants_are_self_normalizing():
    """Klambauer et al. 2017: E[selu(z)] = 0 and E[selu(z)^2] = 1 for z ~ N(0, 1)."""
    assert SELU_ALPHA == pytest.approx(1.6732632423543772, abs=1e-15)
    assert SELU_SCALE == pytest.approx(1.0507009873554805, abs=1e-15)
    f = activation_info("selu").f(Z)
    assert normal_mean(f) == pytest.approx(0.0, abs=1e-9)
    assert normal_mean(f * f) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("spec", SPECS)
def test_zero_centred_means_small_mean_under_unit_normal_input(spec):
    info = activation_info(spec if "prelu(3" not in spec else "prelu")
    f = info.f(Z)
    mean, rms = normal_mean(f), math.sqrt(normal_mean(f * f))
    assert info.zero_centred == (abs(mean) < 0.1 * rms)


@pytest.mark.parametrize("spec", [s for s in SPECS if "prelu(3" not in s])
def test_output_range_bounds_the_function(spec):
    info = activation_info(spec)
    lo, hi = info.output_range
    y = info.f(np.linspace(-40, 40, 80_001))
    assert lo <= y.min() + 1e-12 and y.max() <= hi
    # a finite bound is reached (to 1e-6); an infinite one means f still grows at the ends
    far_left, left, right, far_right = info.f(np.array([-40.0, -20.0, 20.0, 40.0]))
    assert y.min() - lo < 1e-6 if math.isfinite(lo) else far_left < left
    assert hi - y.max() < 1e-6 if math.isfinite(hi) else far_right > right


def test_gelu_and_silu_minima_are_the_known_values():
    assert activation_info("gelu").output_range[0] == pytest.approx(-0.16997, abs=1e-5)
    assert activation_info("silu").output_range[0] == pytest.approx(-0.27846, abs=1e-5)


def test_only_relu_can_die_and_leaky_units_never_saturate():
    can_die = {n for n in ACTIVATIONS.names() if activation_info(n).can_die}
    assert can_die == {"relu"}
    for name in ("leaky_relu", "prelu", "identity"):
        x = torch.linspace(-50, 50, 101)
        assert not activation_info(name).saturated(x).any()


def test_tanh_saturation_rule_is_abs_output_above_0_99():
    info = activation_info("tanh")
    y = torch.tensor([0.0, 0.5, 0.98, 0.9901, -0.995, 0.9999])
    expected = y.abs() > 0.99
    assert torch.equal(info.saturated_from_output(y), expected)


@pytest.mark.parametrize("spec", ["sigmoid", "tanh", "relu", "elu", "selu"])
def test_saturation_from_output_agrees_with_pre_activation(spec):
    info = activation_info(spec)
    x = torch.linspace(-10, 10, 2001, dtype=torch.float64) + 1e-4
    y = make_activation(spec).double()(x)
    assert torch.equal(info.saturated(x), info.saturated_from_output(y))
    # and both agree with the float64 rule: |f'| < 0.02 * max |f'|
    expected = np.abs(info.df(x.numpy())) < 0.02 * info.peak_slope
    assert np.array_equal(info.saturated(x).numpy(), expected)
    assert np.array_equal(info.saturated_np(x.numpy()), expected)


@pytest.mark.parametrize(("spec", "dip"), [("gelu", -0.7518), ("silu", -1.2785)])
def test_non_monotone_saturate_only_in_the_left_tail(spec, dip):
    info = activation_info(spec)
    x = torch.tensor([dip, -10.0, 3.0], dtype=torch.float64)
    assert info.grad(x[:1]).abs().item() < 1e-3  # f' = 0 at the bottom of the dip...
    assert info.saturated(x).tolist() == [False, True, False]  # ...which is not saturation
    assert info.saturated_np(x.numpy()).tolist() == [False, True, False]  # figures' rule
    with pytest.raises(ValueError, match="not monotone"):
        info.saturated_from_output(x)


def test_peak_slopes_are_the_known_values():
    assert activation_info("sigmoid").peak_slope == pytest.approx(0.25)
    assert activation_info("tanh").peak_slope == pytest.approx(1.0)
    assert activation_info("selu").peak_slope == pytest.approx(SELU_SCALE * SELU_ALPHA, rel=1e-3)


def test_names_aliases_and_spec_round_trip():
    assert isinstance(make_activation("swish"), type(make_activation("silu")))
    for alias in ("linear", "none", "identity"):
        assert make_activation(alias).spec == "identity"
    for spec in SPECS:
        module = make_activation(spec)
        assert isinstance(module, Activation)
        assert make_activation(module.spec).spec == module.spec
    assert make_activation("leaky_relu(0.1)").spec == "leaky_relu(0.1)"
    assert make_activation("leaky_relu(negative_slope=0.1)").negative_slope == 0.1


def test_unknown_name_lists_valid_names():
    with pytest.raises(RegistryError, match="valid names: .*gelu.*relu"):
        make_activation("rleu")


@pytest.mark.parametrize(
    "spec", ["leaky_relu(2.0)", "leaky_relu('a')", "elu(-1)", "gelu('fast')", "prelu(0)", "relu(3)"]
)
def test_bad_arguments_raise_registry_error(spec):
    with pytest.raises(RegistryError, match="bad arguments"):
        make_activation(spec)


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (
            LeakyReLU,
            {"negative_slope": "abc"},
            "negative_slope must be in [0, 1), got 'abc'",
        ),
        (
            LeakyReLU,
            {"negative_slope": math.nan},
            "negative_slope must be in [0, 1), got nan",
        ),
        (ELU, {"alpha": math.nan}, "alpha must be a finite number > 0, got nan"),
        (ELU, {"alpha": math.inf}, "alpha must be a finite number > 0, got inf"),
        (ELU, {"alpha": True}, "alpha must be a finite number > 0, got True"),
        (PReLU, {"num_parameters": 0}, "num_parameters must be an integer >= 1, got 0"),
        (PReLU, {"num_parameters": 2.0}, "num_parameters must be an integer >= 1, got 2.0"),
        (PReLU, {"init": -math.inf}, "init must be a finite number, got -inf"),
        (GELU, {"approximate": "fast"}, "approximate must be 'none' or 'tanh', got 'fast'"),
        (ReLU, {"inplace": 1}, "inplace must be True or False, got 1"),
    ],
)
def test_constructors_say_which_argument_is_wrong(cls, kwargs, message):
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("spec", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "silu"])
def test_inplace_overwrites_input_with_same_result(spec):
    x = inputs(dtype=torch.float32)
    expected = NATIVE[spec](x)
    y = x.clone()
    out = make_activation(spec, inplace=True)(y)
    assert torch.equal(out, expected)
    assert out.data_ptr() == y.data_ptr()


def test_plot_activations_writes_png_atomically(tmp_path):
    path = tmp_path / "figs" / "activations.png"
    plot_activations(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["activations.png"]
