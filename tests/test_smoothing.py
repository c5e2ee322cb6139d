"""Label smoothing and soft-target cross-entropy, checked against PyTorch's own cross-entropy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainlab.errors import RegistryError
from trainlab.regularize.smoothing import (
    LabelSmoothingCrossEntropy,
    as_soft_targets,
    smooth_targets,
    soft_target_cross_entropy,
)


def _batch(seed=0, b=7, k=5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, generator=g) * 3
    y = torch.randint(0, k, (b,), generator=g)
    probs = torch.rand(b, k, generator=g).softmax(dim=1)
    return logits, y, probs


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.9])
def test_smooth_targets_formula(eps):
    _, y, _ = _batch()
    k = 5
    ref = np.full((len(y), k), eps / k)
    ref[np.arange(len(y)), y.numpy()] += 1 - eps
    got = smooth_targets(y, k, eps)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, atol=1e-6)


def test_smooth_soft_targets_mixes_with_uniform():
    _, _, probs = _batch()
    eps = 0.2
    np.testing.assert_allclose(
        smooth_targets(probs, 5, eps).numpy(), (1 - eps) * probs.numpy() + eps / 5, atol=1e-7
    )


def test_as_soft_targets_one_hot_and_passthrough():
    y = torch.tensor([2, 0, 1])
    np.testing.assert_array_equal(as_soft_targets(y, 3).numpy(), np.eye(3)[[2, 0, 1]])
    soft = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    out = as_soft_targets(soft, 2)
    assert out.dtype == torch.float32 and torch.equal(out, soft.float())
    with pytest.raises(ValueError, match="columns"):
        as_soft_targets(soft, 3)
    with pytest.raises(ValueError, match="class indices"):
        as_soft_targets(torch.zeros(2, 2, dtype=torch.long), 2)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_soft_target_cross_entropy_equals_torch(reduction):
    logits, _, probs = _batch(1)
    logits.requires_grad_(True)
    ours = soft_target_cross_entropy(logits, probs, reduction)
    ref = F.cross_entropy(logits, probs, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


def test_soft_target_cross_entropy_half_logits_computed_in_float32():
    logits, _, probs = _batch(2)
    ours = soft_target_cross_entropy(logits.half(), probs)
    ref = F.cross_entropy(logits.half().float(), probs)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_ce_equals_torch_label_smoothing(eps, reduction):
    logits, y, probs = _batch(3)
    loss = LabelSmoothingCrossEntropy(eps, reduction)
    torch.testing.assert_close(
        loss(logits, y), F.cross_entropy(logits, y, label_smoothing=eps, reduction=reduction)
    )
    torch.testing.assert_close(
        loss(logits, probs),
        F.cross_entropy(logits, probs, label_smoothing=eps, reduction=reduction),
    )


@pytest.mark.parametrize("eps", [-0.1, 1.0, 1.5, True, "0.1", None])
def test_bad_eps_refused(eps):
    with pytest.raises(RegistryError, match="eps"):
        LabelSmoothingCrossEntropy(eps)
    with pytest.raises(RegistryError, match="eps"):
        smooth_targets(torch.tensor([0]), 2, eps)


def test_bad_arguments_refused():
    with pytest.raises(RegistryError, match="num_classes"):
        as_soft_targets(torch.tensor([0]), 0)
    with pytest.raises(RegistryError, match="reduction"):
        LabelSmoothingCrossEntropy(0.1, reduction="avg")
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), 1.0, -0.1])
def test_eps_refused_by_meaning(eps):
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\), got"):
        LabelSmoothingCrossEntropy(eps)
