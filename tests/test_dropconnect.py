import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainlab.errors import RegistryError
from trainlab.regularize.dropconnect import (
    DROPCONNECT,
    DropConnectConv2d,
    DropConnectLinear,
    dropconnect_layer,
    keep_mask,
    realised_keep,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def linear(p=0.5, mode="batch", **kw):
    layer = DropConnectLinear(16, 8, p, mode=mode, seed=3, **kw)
    with torch.no_grad():
        layer.weight.copy_(randn(8, 16, seed=1))
        layer.bias.copy_(randn(8, seed=2))
    return layer


def conv(p=0.5, mode="batch", **kw):
    layer = DropConnectConv2d(3, 4, 3, p, mode=mode, padding=1, seed=3, **kw)
    with torch.no_grad():
        layer.weight.copy_(randn(4, 3, 3, 3, seed=1))
        layer.bias.copy_(randn(4, seed=2))
    return layer


def assert_mc_mean_matches_eval(layer, x, draws):
    """Train mean over ``draws`` vs eval output, within 5 standard errors per element.

    One draw of a unit has variance p/(1-p) * (W o W)(x o x) (independent Bernoulli masks with
    the inverted scale), the same in both modes; the mean of K draws has that over K.
    """
    layer.train()
    with torch.no_grad():
        mean = torch.stack([layer(x) for _ in range(draws)]).double().mean(0)
        layer.eval()
        expected = layer(x).double()
        _, var = layer.moments(x)
    se = (var.double() / draws).sqrt()
    assert ((mean - expected).abs() <= 5 * se + 1e-5).all()
    if isinstance(layer, nn.Linear):
        torch.testing.assert_close(expected, F.linear(x, layer.weight, layer.bias).double())


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_linear_train_mean_equals_eval_output(mode):
    assert_mc_mean_matches_eval(linear(0.4, mode), randn(5, 16, seed=4), draws=300)


@pytest.mark.parametrize("mode", ["batch", "sample"])
def test_conv_train_mean_equals_eval_output(mode):
    layer = conv(0.3, mode)
    assert_mc_mean_matches_eval(layer, randn(3, 3, 5, 5, seed=4), draws=150)


def test_variance_formula_matches_empirical_variance():
    layer, x = linear(0.5, "sample"), randn(2, 16, seed=5)
    with torch.no_grad():
        draws = torch.stack([layer(x) for _ in range(2000)]).double()
        _, var = layer.moments(x)
    # sample variance of n normal-ish draws has relative std sqrt(2/(n-1)) ~ 3.2%
    torch.testing.assert_close(draws.var(0), var.double(), rtol=0.2, atol=1e-6)


@pytest.mark.parametrize("p", [0.5, 0.1, 0.37])
def test_keep_mask_frequency_and_realised_probability(p):
    assert abs(realised_keep(p) - (1 - p)) <= 2**-17
    if p == 0.5:
        assert realised_keep(p) == 0.5
    n = 200_000
    kept = keep_mask((n,), p, torch.Generator().manual_seed(1), torch.device("cpu"))
    q = realised_keep(p)
    assert kept.dtype == torch.bool
    assert abs(kept.double().mean().item() - q) < 5 * math.sqrt(q * (1 - q) / n)
    # the float form is the same draw as 0/1 values
    as_float = keep_mask(
        (n,), p, torch.Generator().manual_seed(1), torch.device("cpu"), torch.float32
    )
    assert torch.equal(as_float, kept.float())


def test_per_sample_gives_identical_samples_different_masks():
    x = randn(1, 16, seed=6).expand(4, 16).contiguous()
    y = linear(0.5, "sample")(x)
    assert all(not torch.equal(y[0], y[i]) for i in range(1, 4))
    z = linear(0.5, "batch")(x)
    assert all(torch.equal(z[0], z[i]) for i in range(1, 4))
    yc = conv(0.5, "sample")(randn(1, 3, 4, 4).expand(2, 3, 4, 4).contiguous())
    assert not torch.equal(yc[0], yc[1])


def naive_masks(layer, shape, seed):
    """The masks the layer draws from its stream (seeded ``seed``), scaled by 1/keep."""
    g = torch.Generator().manual_seed(seed)
    keep = keep_mask((*shape, *layer.weight.shape), layer.p, g, torch.device("cpu"))
    return keep.float() / realised_keep(layer.p)


def naive_per_batch_linear(layer, x, seed):
    """Reference: one mask for the batch, then a plain linear map."""
    return F.linear(x, layer.weight * naive_masks(layer, (), seed), layer.bias)


def naive_per_sample_linear(layer, x, seed):
    """Reference: every sample's masked weights, then an einsum."""
    weights = layer.weight * naive_masks(layer, (x.shape[0],), seed)
    return torch.einsum("boi,bi->bo", weights, x) + layer.bias


def naive_per_batch_conv(layer, x, seed):
    return F.conv2d(x, layer.weight * naive_masks(layer, (), seed), layer.bias, padding=1)


def naive_per_sample_conv(layer, x, seed):
    weights = layer.weight * naive_masks(layer, (x.shape[0],), seed)
    outs = [F.conv2d(x[b : b + 1], weights[b], layer.bias, padding=1) for b in range(len(x))]
    return torch.cat(outs)


@pytest.mark.parametrize(
    "make, mode, naive, shape",
    [
        (linear, "batch", naive_per_batch_linear, (5, 16)),
        (linear, "sample", naive_per_sample_linear, (5, 16)),
        (conv, "batch", naive_per_batch_conv, (5, 3, 4, 4)),
        (conv, "sample", naive_per_sample_conv, (5, 3, 4, 4)),
    ],
)
def test_values_and_gradients_match_naive_reference(make, mode, naive, shape):
    """The layer's output and autograd's gradients equal a hand-written masked layer's."""
    layer = make(0.5, mode)
    x = randn(*shape, seed=7).requires_grad_()
    y = layer(x)
    g_out = randn(*y.shape, seed=8)
    (y * g_out).sum().backward()
    got = (y.detach(), x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    x.grad = None
    layer.zero_grad()
    ref = naive(layer, x, seed=3)
    (ref * g_out).sum().backward()
    expected = (ref.detach(), x.grad, layer.weight.grad, layer.bias.grad)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_per_sample_backward_passes_gradcheck():
    layer = linear(0.3, "sample").double()
    x = randn(4, 16, seed=9, dtype=torch.float64).requires_grad_()

    def run(x, w):
        layer.reseed(11)  # same masks on every evaluation gradcheck makes
        return torch.func.functional_call(layer, {"weight": w}, (x,))

    assert torch.autograd.gradcheck(run, (x, layer.weight.detach().clone().requires_grad_()))


def test_gaussian_inference_matches_monte_carlo_through_relu():
    """Paper's moment matching vs the real DropConnect's E[relu(u)] by Monte Carlo.

    Tolerance: 5 combined standard errors of the two Monte-Carlo means, plus 3% of the
    unit's std for the Gaussian (central-limit) approximation with 256 inputs.
    """
    n_in, draws = 256, 3000
    layer = DropConnectLinear(
        n_in, 6, 0.5, inference="gaussian", mc_samples=4000, activation=nn.ReLU(), seed=1
    )
    with torch.no_grad():
        layer.weight.copy_(randn(6, n_in, seed=1) / math.sqrt(n_in))
        layer.bias.zero_()
        x = randn(3, n_in, seed=2)
        samples = torch.stack([layer(x) for _ in range(draws)]).double()
        layer.eval()
        gauss = layer(x).double()
        mean, var = layer.moments(x)
    mc = samples.mean(0)
    se = (samples.var(0) / draws + samples.var(0) / 4000).sqrt()
    assert ((gauss - mc).abs() <= 5 * se + 0.03 * var.double().sqrt()).all()
    # and it is a real correction: relu of the mean is far off for some unit
    assert ((torch.relu(mean).double() - mc).abs() > 10 * se).any()
    assert torch.equal(layer(x), layer(x))  # deterministic in eval


def test_mean_inference_is_deterministic_and_applies_activation():
    layer = linear(0.5, activation=torch.tanh).eval()
    x = randn(3, 16)
    torch.testing.assert_close(layer(x), torch.tanh(F.linear(x, layer.weight, layer.bias)))


def test_seeded_identical_and_global_rng_untouched():
    x = randn(4, 16)
    for mode in ("batch", "sample"):
        a, b, other = linear(0.5, mode), linear(0.5, mode), linear(0.5, mode)
        other.reseed(99)
        state = torch.get_rng_state()  # after construction: nn.Linear's init uses it
        ya = a(x)
        assert torch.equal(ya, b(x))
        assert not torch.equal(other(x), ya)
        assert torch.equal(torch.get_rng_state(), state)


def test_conversion_shares_parameters_and_registry():
    base = nn.Linear(4, 3)
    layer = DROPCONNECT.create("dropconnect(0.5)", layer=base)
    assert isinstance(layer, DropConnectLinear) and layer.weight is base.weight
    assert (layer.p, layer.mode, layer.inference) == (0.5, "batch", "mean")
    c = dropconnect_layer(nn.Conv2d(2, 5, 3, stride=2, padding=1, bias=False), 0.2, mode="sample")
    assert isinstance(c, DropConnectConv2d) and c.stride == (2, 2) and c.bias is None
    c.eval()
    x = randn(2, 2, 6, 6)
    torch.testing.assert_close(c(x), F.conv2d(x, c.weight, None, 2, 1))
    with pytest.raises(RegistryError, match="layer"):
        DROPCONNECT.create("dropconnect(0.5)")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"p": 1.0}, "p must be in"),
        ({"p": -0.2}, "p must be in"),
        ({"mode": "per_unit"}, "mode"),
        ({"inference": "gaussian"}, "activation"),
        ({"mc_samples": 0}, "mc_samples"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DropConnectLinear(4, 3, **kwargs)
