"""Lab experiments 9 (selu) and 10 (preprocessing): their measuring functions against
independent computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------ selu


def test_mean_loss_is_the_mean_cross_entropy_in_float64():
    from trainlab.lab.nets import mean_loss as dataset_loss

    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    x = torch.randn(50, 3, 2, 2, generator=g)
    y = torch.randint(0, 10, (50,), generator=g)
    logits = model(x).detach().double()
    expected = float(-(logits.log_softmax(1)[torch.arange(50), y]).mean())
    assert dataset_loss(model, x, y, chunk=7) == pytest.approx(expected, rel=1e-6)


def test_selu_layer_stats_follow_a_hand_written_forward():
    from trainlab.lab.exp_09_selu import layer_stats, mlp
    from trainlab.preprocess import make_normalizer

    model = mlp("selu", "lecun_normal", 3, 16, 0, make_normalizer("scale"))
    x = torch.randint(0, 256, (32, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    means, stds = layer_stats(model, x.to(torch.uint8))
    h = x.double().flatten(1) / 255
    linears = [m for m in model.features if isinstance(m, nn.Linear)]
    assert len(means) == len(linears) == 3
    for i, lin in enumerate(linears):
        h = F.selu(h @ lin.weight.double().T + lin.bias.double())
        assert means[i] == pytest.approx(h.mean().item(), abs=1e-5)
        assert stds[i] == pytest.approx(h.std().item(), rel=1e-4)


def test_selu_keeps_the_fixed_point_on_gaussian_inputs_and_relu_does_not():
    """Klambauer et al.'s fixed point (0, 1) with LeCun-normal weights, on N(0, 1) inputs of a
    wide net; ReLU's outputs are positive, so their mean is far from 0."""
    from trainlab.lab.exp_09_selu import layer_stats, mlp
    from trainlab.preprocess import make_normalizer

    x = torch.randn(512, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    selu = mlp("selu", "lecun_normal", 16, 256, 0, nn.Identity())
    means, stds = layer_stats(selu, x)
    assert max(abs(m) for m in means) < 0.1 and all(0.8 < s < 1.2 for s in stds)
    relu = mlp("relu", "kaiming", 16, 256, 0, make_normalizer("none", shape=(1, 28, 28)))
    assert layer_stats(relu, x)[0][-1] > 0.2


# ------------------------------------------------------------------ preprocessing


def test_weight_sensitivity_restores_weights_and_matches_a_direct_computation():
    from trainlab.lab.exp_10_preprocessing import DRAWS, NOISE, model_for, weight_sensitivity

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 4, 4, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    model = model_for("linear", 16, 0, 0)
    before = [p.clone() for p in model.parameters()]
    got = weight_sensitivity(model, x, y, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    # independent: float64, the same noise draws
    w, b = model[1].weight.double(), model[1].bias.double()
    xf = x.flatten(1).double()
    base = F.cross_entropy(xf @ w.T + b, y).item()
    gen, changes = torch.Generator().manual_seed(1), []
    for _ in range(DRAWS):
        noise = torch.randn(w.shape, generator=gen, dtype=torch.float32).double()
        wn = w + NOISE * w.pow(2).mean().sqrt() * noise
        changes.append(abs(F.cross_entropy(xf @ wn.T + b, y).item() - base) / base)
    assert got == pytest.approx(sum(changes) / DRAWS, rel=1e-3)
    # The lecture's picture: the same weights, inputs moved far from the origin.
    shifted = weight_sensitivity(model, x + 5.0, y, torch.Generator().manual_seed(1))
    assert shifted > 3 * got


def test_input_rms_and_grid_centre_scale_with_the_inputs():
    from trainlab.lab.exp_10_preprocessing import input_rms

    x = torch.tensor([[3.0, -4.0], [0.0, 0.0]])
    assert input_rms(x) == pytest.approx(math.sqrt(25 / 4))
    assert input_rms(255 * x) == pytest.approx(255 * input_rms(x))


def test_centred_features_have_zero_mean_and_raw_and_scale_are_not_centred():
    from trainlab.lab.exp_10_preprocessing import features
    from trainlab.preprocess import compute_stats

    x = torch.randint(0, 256, (64, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    x = x.to(torch.uint8)
    stats = compute_stats(x)
    raw, scale, mean_image, channel, std = (
        features(a, stats, x)[0]
        for a in ("raw", "scale", "mean_image", "channel_mean", "standardize")
    )
    assert torch.allclose(raw, x.float())
    assert torch.allclose(scale, x.float() / 255)  # the arm that isolates scale from centring
    # centring on the x/255 scale: channel_mean is scale minus the channel means, exactly
    means = (x.double() / 255).mean((0, 2, 3), keepdim=True)
    assert torch.allclose(channel.double(), scale.double() - means, atol=1e-6)
    assert mean_image.double().mean(0).abs().max() < 1e-5
    assert channel.double().mean((0, 2, 3)).abs().max() < 1e-5
    assert torch.allclose(
        std.double().std((0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-3
    )
