"""Mixup, CutMix, Cutout and the generator-respecting Gamma/Beta sampler.

References: closed-form CDFs and moments of the Gamma and Beta laws, float64 re-computation of
the blends, hand-computed boxes, Python-loop reference masks, and pixel/label consistency (an
image whose pixels hold its own label must have the label mix its target says).
"""

import math

import numpy as np
import pytest
import torch

from trainlab.errors import RegistryError
from trainlab.regularize.mix import (
    MIXES,
    CutMix,
    Cutout,
    Mixup,
    box_masks,
    boxes_from_centres,
    cutmix,
    cutout,
    mixup,
    sample_beta,
    sample_gamma,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    """Kolmogorov-Smirnov distance between the empirical CDF and ``cdf``."""
    x = np.sort(samples.double().numpy())
    n = len(x)
    f = cdf(x)
    upper = np.arange(1, n + 1) / n - f
    lower = f - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


# 1.95 / sqrt(n) is the KS critical value at significance 0.001; seeds are fixed, so this is a
# deterministic check that fails for any sampler whose law is visibly wrong.
N_KS = 20_000
KS_CRIT = 1.95 / math.sqrt(N_KS)

_erf = np.vectorize(math.erf)


@pytest.mark.parametrize(
    ("shape", "cdf"),
    [
        (1.0, lambda x: 1 - np.exp(-x)),  # Exp(1)
        (0.5, lambda x: _erf(np.sqrt(x))),  # chi^2_1 / 2
        (2.0, lambda x: 1 - np.exp(-x) * (1 + x)),  # Erlang(2)
    ],
)
def test_gamma_matches_closed_form_cdf(shape, cdf):
    s = sample_gamma(shape, N_KS, gen(1))
    assert ks_statistic(s, cdf) < KS_CRIT


@pytest.mark.parametrize(
    ("a", "b", "cdf"),
    [
        (1.0, 1.0, lambda x: x),  # uniform
        (0.5, 0.5, lambda x: 2 / np.pi * np.arcsin(np.sqrt(x))),  # arcsine law
        (2.0, 2.0, lambda x: 3 * x**2 - 2 * x**3),
        (2.0, 1.0, lambda x: x**2),
    ],
)
def test_beta_matches_closed_form_cdf(a, b, cdf):
    s = sample_beta(a, b, N_KS, gen(2))
    assert ((s >= 0) & (s <= 1)).all()
    assert ks_statistic(s, cdf) < KS_CRIT


def _assert_moments(s: torch.Tensor, mean: float, var: float):
    """Sample mean and variance within 5 standard errors of the formulas."""
    s = s.double()
    n = s.numel()
    centred = s - s.mean()
    se_mean = math.sqrt(var / n)
    m4 = centred.pow(4).mean().item()
    se_var = math.sqrt(max(m4 - var**2, 0.0) / n)
    assert abs(s.mean().item() - mean) < 5 * se_mean
    assert abs(centred.pow(2).mean().item() - var) < 5 * se_var


@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.4, 1.0, 4.0, 50.0])
def test_beta_moments_mixup_formulas(alpha):
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
    _assert_moments(sample_beta(alpha, alpha, 20_000, gen(3)), 0.5, 1 / (4 * (2 * alpha + 1)))


@pytest.mark.parametrize("shape", [0.05, 0.3, 1.0, 7.5, 200.0])
def test_gamma_moments(shape):
    # Gamma(k, 1): mean k, variance k.
    _assert_moments(sample_gamma(shape, 20_000, gen(4)), shape, shape)


def test_samplers_seeded_and_never_touch_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = sample_beta(0.3, 0.3, 100, gen(5))
    b = sample_beta(0.3, 0.3, 100, gen(5))
    c = sample_beta(0.3, 0.3, 100, gen(6))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_small_alpha_beta_has_no_nan():
    s = sample_beta(0.01, 0.01, 10_000, gen(7))
    assert torch.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()


@pytest.mark.parametrize("alpha", [0, -1, 0.0, float("nan"), float("inf"), True, "1"])
def test_bad_alpha_refused(alpha):
    x, y = torch.rand(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(RegistryError, match="alpha"):
        mixup(x, y, 3, alpha, gen())
    with pytest.raises(RegistryError, match="alpha"):
        Mixup(alpha)
    with pytest.raises(RegistryError, match="alpha"):
        CutMix(alpha)


# --------------------------------------------------------------------------------------------
# Mixup
# --------------------------------------------------------------------------------------------


def _images(b=7, c=3, h=6, w=5, seed=0, dtype=torch.float32):
    g = gen(100 + seed)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8)
    else:
        x = torch.rand(b, c, h, w, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (b,), generator=g)
    return x, y


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("batch", [1, 2, 7])
def test_mixup_blend_against_float64(per_sample, batch):
    x, y = _images(batch)
    out, t, p = mixup(x, y, 4, 0.4, gen(8), per_sample=per_sample)
    lam = p.lam.double().view(-1, 1, 1, 1)
    ref = lam * x.double() + (1 - lam) * x.double()[p.perm]
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-6)
    onehot = np.eye(4)[y.numpy()]
    lam_np = p.lam.double().numpy()[:, None]
    ref_t = lam_np * onehot + (1 - lam_np) * onehot[p.perm.numpy()]
    np.testing.assert_allclose(t.numpy(), ref_t, atol=1e-6)
    assert t.dtype == torch.float32 and t.shape == (batch, 4)
    np.testing.assert_allclose(t.sum(1).numpy(), 1.0, atol=1e-6)
    assert sorted(p.perm.tolist()) == list(range(batch))
    if batch > 1:
        assert (p.lam.unique().numel() > 1) == per_sample


def test_mixup_batch_of_one_is_unchanged():
    x, y = _images(1)
    out, t, _ = mixup(x, y, 4, 1.0, gen(9))
    torch.testing.assert_close(out, x)
    np.testing.assert_allclose(t.numpy(), np.eye(4)[y.numpy()], atol=1e-6)


def test_mixup_inputs_and_targets_agree():
    # An "image" equal to its own one-hot label must be mixed exactly like the targets.
    y = torch.tensor([0, 1, 2, 3, 1, 0, 2])
    x = torch.eye(4)[y]
    out, t, _ = mixup(x, y, 4, 0.7, gen(10), per_sample=True)
    torch.testing.assert_close(out, t)


def test_mixup_uint8_comes_back_on_unit_scale():
    x, y = _images(5, dtype=torch.uint8)
    out, _, p = mixup(x, y, 4, 1.0, gen(11))
    assert out.dtype == torch.float32
    lam = p.lam.double().view(-1, 1, 1, 1)
    xf = x.double() / 255
    torch.testing.assert_close(out.double(), lam * xf + (1 - lam) * xf[p.perm], atol=1e-6, rtol=0)


def test_mixup_of_soft_targets_composes():
    x, _ = _images(4)
    soft = torch.softmax(torch.randn(4, 3, generator=gen(12)), 1)
    _, t, p = mixup(x, soft, 3, 1.0, gen(13))
    lam = p.lam[:, None]
    torch.testing.assert_close(t, lam * soft + (1 - lam) * soft[p.perm])


def test_mixup_expected_target_is_lam_bar_weighted():
    # Unbiased targets: E[t_i] = E[lam] onehot(y_i) + E[1 - lam] mean_j onehot(y_j) = 0.5 + 0.5.
    y = torch.tensor([0, 1, 1])
    x = torch.zeros(3, 1)
    g = gen(14)
    draws = torch.stack([mixup(x, y, 2, 0.5, g, per_sample=True)[1] for _ in range(2000)])
    onehot = np.eye(2)[y.numpy()]
    expected = 0.5 * onehot + 0.5 * onehot.mean(0, keepdims=True)
    se = draws.double().std(0).numpy() / math.sqrt(len(draws))
    assert (np.abs(draws.double().mean(0).numpy() - expected) < 5 * se + 1e-12).all()


# --------------------------------------------------------------------------------------------
# Boxes
# --------------------------------------------------------------------------------------------


def _box(cy, cx, h, w, H=8, W=8):
    t = lambda v: torch.tensor([v])  # noqa: E731
    return boxes_from_centres(t(cy), t(cx), t(h), t(w), H, W)[0].tolist()


def test_boxes_hand_computed():
    assert _box(4, 4, 4, 4) == [2, 2, 6, 6]  # centred, unclipped: exact size
    assert _box(4, 4, 3, 3) == [3, 3, 6, 6]  # odd side: top = cy - 1
    assert _box(0, 0, 4, 4) == [0, 0, 2, 2]  # clipped at the top-left corner: 2x2 left
    assert _box(7, 7, 4, 4) == [5, 5, 8, 8]  # clipped at the bottom-right corner: 3x3 left
    assert _box(0, 5, 4, 6) == [0, 2, 2, 8]  # clipped on two different sides
    assert _box(3, 3, 20, 20) == [0, 0, 8, 8]  # larger than the image: the whole image
    assert _box(3, 3, 0, 0) == [3, 3, 3, 3]  # empty


def test_box_masks_match_loop_reference():
    g = gen(15)
    boxes = torch.randint(0, 9, (20, 4), generator=g)
    boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:]), boxes[:, :2].maximum(boxes[:, 2:])], 1)
    masks = box_masks(boxes, 8, 7)
    for box, mask in zip(boxes.tolist(), masks, strict=True):
        ref = torch.zeros(8, 7, dtype=torch.bool)
        ref[box[0] : box[2], box[1] : box[3]] = True
        assert torch.equal(mask, ref)


# --------------------------------------------------------------------------------------------
# CutMix
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_cutmix_pixels_boxes_and_corrected_lambda(per_sample, batch):
    x, y = _images(batch, h=9, w=7)
    out, t, p = cutmix(x, y, 4, 1.0, gen(16), per_sample=per_sample)
    inside = box_masks(p.boxes, 9, 7)[:, None].expand_as(x)
    assert torch.equal(out[inside], x[p.perm][inside])
    assert torch.equal(out[~inside], x[~inside])
    area = (p.boxes[:, 2] - p.boxes[:, 0]) * (p.boxes[:, 3] - p.boxes[:, 1])
    np.testing.assert_allclose(p.lam.numpy(), 1 - area.numpy() / 63, atol=1e-7)
    onehot = np.eye(4)[y.numpy()]
    lam = p.lam.double().numpy()[:, None]
    np.testing.assert_allclose(t.numpy(), lam * onehot + (1 - lam) * onehot[p.perm], atol=1e-6)
    np.testing.assert_allclose(t.sum(1).numpy(), 1.0, atol=1e-6)
    if not per_sample:
        assert (p.boxes == p.boxes[0]).all()


def test_cutmix_per_sample_boxes_differ():
    x, y = _images(16, h=16, w=16)
    _, _, p = cutmix(x, y, 4, 1.0, gen(17), per_sample=True)
    assert p.boxes.unique(dim=0).shape[0] > 1


def test_cutmix_pixel_label_fractions_equal_targets():
    # Each image is filled with its own label, so the share of pixels holding class k must be
    # exactly the target's weight on k, clipped boxes included.
    y = torch.tensor([0, 1, 2, 3, 4, 5, 1, 2, 3])
    x = y.view(-1, 1, 1, 1).expand(-1, 1, 10, 12).to(torch.uint8).contiguous()
    for seed in range(5):
        out, t, _ = cutmix(x, y, 6, 0.5, gen(seed), per_sample=True)
        assert out.dtype == torch.uint8
        share = torch.nn.functional.one_hot(out.long().flatten(1), 6).float().mean(1)
        torch.testing.assert_close(share, t, atol=1e-6, rtol=0)


def test_cutmix_uncorrected_lambda_sets_box_size():
    x, y = _images(64, h=12, w=12)
    _, _, p = cutmix(x, y, 4, 1.0, gen(18), per_sample=True, correct_lambda=False)
    side = torch.round(12 * torch.sqrt(1 - p.lam.double())).long()
    h = p.boxes[:, 2] - p.boxes[:, 0]
    w = p.boxes[:, 3] - p.boxes[:, 1]
    assert (h <= side).all() and (w <= side).all()
    interior = (p.boxes[:, 0] > 0) & (p.boxes[:, 2] < 12)
    assert interior.any() and torch.equal(h[interior], side[interior])
    # and the target weight is then the drawn lam, not the pixel share, where a box was clipped
    area = (h * w).double()
    assert not torch.allclose(p.lam.double(), 1 - area / 144)


# --------------------------------------------------------------------------------------------
# Cutout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cutout_zero_fill_and_box_sizes(dtype):
    x, _ = _images(32, h=10, w=10, dtype=dtype)
    x = x.clamp_min(1) if dtype == torch.uint8 else x + 1  # so that zeros mark the cut
    out, p = cutout(x, 4, gen(19))
    assert out.dtype == dtype and p.boxes.shape == (32, 1, 4)
    inside = box_masks(p.boxes[:, 0], 10, 10)[:, None].expand_as(x)
    assert (out[inside] == 0).all() and torch.equal(out[~inside], x[~inside])
    h = p.boxes[..., 2] - p.boxes[..., 0]
    interior = (p.boxes[..., 0] > 0) & (p.boxes[..., 2] < 10)
    assert (h <= 4).all() and (h[interior] == 4).all()
    assert (h < 4).any()  # some boxes were clipped at a border, as in the paper


def test_cutout_several_boxes_are_unioned():
    x = torch.ones(6, 2, 12, 12)
    out, p = cutout(x, 3, gen(20), count=3)
    assert p.boxes.shape == (6, 3, 4)
    union = box_masks(p.boxes, 12, 12).any(1)[:, None].expand_as(x)
    assert torch.equal(out == 0, union)


def test_cutout_centres_are_uniform():
    # size 1 cuts exactly the centre pixel: every pixel must be hit equally often (5 SE).
    n, h, w = 16_000, 4, 4
    _, p = cutout(torch.ones(n, 1, h, w), 1, gen(21))
    counts = torch.bincount((p.boxes[:, 0, 0] * w + p.boxes[:, 0, 1]), minlength=h * w)
    expected = n / (h * w)
    se = math.sqrt(n * (1 / (h * w)) * (1 - 1 / (h * w)))
    assert (counts.double() - expected).abs().max() < 5 * se


def test_cutout_probability():
    x = torch.ones(20_000, 1, 5, 5)
    out, p = cutout(x, 2, gen(22), p=0.3)
    applied = (out == 0).flatten(1).any(1).double()
    se = math.sqrt(0.3 * 0.7 / len(x))
    assert abs(applied.mean().item() - 0.3) < 5 * se
    empty = (p.boxes[..., 2] == p.boxes[..., 0]).squeeze(1)
    assert torch.equal(empty, applied == 0)
    out0, _ = cutout(x, 2, gen(22), p=0.0)
    assert torch.equal(out0, x)


def test_cutout_mean_fill():
    mean = (0.25, 0.5, 0.75)
    xu = torch.full((4, 3, 8, 8), 7, dtype=torch.uint8)
    out, p = cutout(xu, 3, gen(23), fill="mean", mean=mean)
    inside = box_masks(p.boxes[:, 0], 8, 8)
    for c, m in enumerate(mean):
        assert (out[:, c][inside] == round(m * 255)).all()
    xf = torch.full((4, 3, 8, 8), 7.0)
    out, p = cutout(xf, 3, gen(23), fill="mean", mean=mean)
    inside = box_masks(p.boxes[:, 0], 8, 8)
    for c, m in enumerate(mean):
        assert (out[:, c][inside] == m).all()
    with pytest.raises(RegistryError, match="3 channel values"):
        cutout(xf, 3, gen(), fill="mean", mean=(0.1, 0.2))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cutout_noise_fill(dtype):
    x = torch.zeros(8, 3, 16, 16, dtype=dtype) + (255 if dtype == torch.uint8 else 2)
    out, p = cutout(x, 8, gen(24), fill="noise")
    inside = box_masks(p.boxes[:, 0], 16, 16)[:, None].expand_as(x)
    vals = out[inside].double()
    hi = 255 if dtype == torch.uint8 else 1
    assert (vals >= 0).all() and (vals <= hi).all() and vals.unique().numel() > 50
    assert abs(vals.mean().item() / hi - 0.5) < 0.05


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, "size"),
        ({"size": -2}, "size"),
        ({"size": 2.5}, "size"),
        ({"size": 4, "count": 0}, "count"),
        ({"size": 4, "fill": "blur"}, "fill"),
        ({"size": 4, "p": 1.5}, "probability"),
        ({"size": 4, "p": -0.1}, "probability"),
        ({"size": 4, "fill": "mean"}, "mean"),
    ],
)
def test_cutout_bad_arguments(kwargs, match):
    with pytest.raises(RegistryError, match=match):
        Cutout(**kwargs)
    size = kwargs.pop("size")
    with pytest.raises(RegistryError, match=match):
        cutout(torch.zeros(1, 1, 4, 4), size, gen(), **kwargs)


def test_box_mixes_need_images():
    with pytest.raises(ValueError, match="B, C, H, W"):
        cutmix(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), 3, 1.0, gen())
    with pytest.raises(ValueError, match="batch dimension"):
        mixup(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long), 3, 1.0, gen())


# --------------------------------------------------------------------------------------------
# Registry and the uniform interface
# --------------------------------------------------------------------------------------------

SPECS = ["none", "mixup(0.2)", "mixup(1.0, per_sample=True)", "cutmix(1.0)", "cutout(3, count=2)"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("batch", [1, 5])
def test_registry_uniform_interface(spec, batch):
    mix = MIXES.create(spec)
    x, y = _images(batch, dtype=torch.uint8)
    out, t, p = mix(x, y, 4, gen(25))
    assert out.shape == x.shape
    assert t.dtype == torch.float32 and t.shape == (batch, 4)
    np.testing.assert_allclose(t.sum(1).numpy(), 1.0, atol=1e-6)
    assert p.lam.shape == (batch,)
    again = mix(x, y, 4, gen(25))
    assert torch.equal(out, again[0]) and torch.equal(t, again[1])  # same seed, same batch


@pytest.mark.parametrize("spec", SPECS[1:])
def test_different_seeds_differ(spec):
    mix = MIXES.create(spec)
    x, y = _images(8, h=12, w=12)
    assert not torch.equal(mix(x, y, 4, gen(26))[0], mix(x, y, 4, gen(27))[0])


def test_none_is_identity_with_one_hot_targets():
    x, y = _images(3)
    out, t, _ = MIXES.create("none")(x, y, 4, gen())
    assert out is x
    np.testing.assert_array_equal(t.numpy(), np.eye(4)[y.numpy()])


def test_cutout_mix_keeps_labels():
    x, y = _images(3)
    _, t, _ = MIXES.create("cutout(2)")(x, y, 4, gen())
    np.testing.assert_array_equal(t.numpy(), np.eye(4)[y.numpy()])


@pytest.mark.parametrize(
    "spec",
    ["mixup(0)", "mixup(-0.5)", "cutmix(0)", "cutout(0)", "cutout(4, p=2)", "mixupp(0.2)"],
)
def test_registry_refuses_bad_specs(spec):
    with pytest.raises(RegistryError):
        MIXES.create(spec)


def test_registry_names():
    assert MIXES.names() == ["cutmix", "cutout", "mixup", "none"]
    assert repr(MIXES.create("cutmix(0.5)")).startswith("cutmix(0.5")


@pytest.mark.parametrize(
    "factory, args, kwargs, name",
    [
        ("mixup", (), {"alpha": -1}, "alpha"),
        ("mixup", (float("nan"),), {}, "alpha"),
        ("cutmix", (float("inf"),), {}, "alpha"),
        ("mixup", (1.0,), {"per_sample": "yes"}, "per_sample"),
        ("cutmix", (1.0,), {"correct_lambda": 1}, "correct_lambda"),
        ("cutout", (), {"size": 0}, "size"),
        ("cutout", (8,), {"count": 1.5}, "count"),
        ("cutout", (8,), {"p": float("nan")}, "p"),
        ("cutout", (8,), {"fill": "mean", "mean": (0.5, float("nan"), 0.5)}, "mean"),
        ("cutout", (8,), {"fill": "mean", "mean": (0.5, 2.0, 0.5)}, "mean"),
    ],
)
def test_factories_refuse_values_by_meaning(factory, args, kwargs, name):
    # ValueError naming the argument and its value, at construction
    with pytest.raises(ValueError, match=rf"{name}.* must be .*got"):
        MIXES.get(factory)(*args, **kwargs)
