"""trainlab.augment: every operation against an independent reference.

References: torch.flip and slicing of F.pad'ed images (geometry, exact), Pillow's ImageEnhance
(brightness/contrast/saturation on uint8, Pillow's own arithmetic, within 1 grey level),
colorsys (hue, float64 HSV round trip), the definition V diag(lambda^2 sigma^2) V^T (PCA
lighting covariance), F.interpolate (resizing), and the float64 definitions of the jitter chain.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

from trainlab.augment import (
    AUGMENTATIONS,
    ColorJitter,
    HFlip,
    PadCrop,
    PCALighting,
    RandomGrayscale,
    RandomResizedCrop,
    ScaleAug,
    VFlip,
    center_crop,
    five_crop,
    hflip,
    hue_shift,
    make_pipeline,
    plot_augment,
    resample_boxes,
    ten_crop,
)
from trainlab.errors import RegistryError

LUMA = np.array([0.299, 0.587, 0.114])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 6, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=gen(seed))


def smooth_images(b: int = 6, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    """Natural-ish images: a random colour gradient plus noise, so contrast/saturation matter."""
    g = gen(seed)
    base = torch.rand(b, 3, 1, 1, generator=g) * 160 + 40
    ramp = torch.linspace(-50, 50, w)[None, None, None, :] * torch.rand(b, 3, 1, 1, generator=g)
    noise = torch.randn(b, 3, h, w, generator=g) * 20
    return (base + ramp + noise).round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("cls,dim", [(HFlip, -1), (VFlip, -2)])
def test_flips_match_torch_flip(cls, dim):
    x = images(16)
    op = cls(p=0.5)
    y, params = op(x, gen(3), return_params=True)
    assert 0 < int(params["flip"].sum()) < 16  # both branches exercised
    for i in range(16):
        expected = x[i].flip(dim) if params["flip"][i] else x[i]
        assert torch.equal(y[i], expected)


def test_hflip_draws_one_uniform_per_image_and_mirrors_exactly():
    # reference: the loader's former flip, mask = U[0, 1) < p from the same generator
    x = images(2000, c=3, h=4, w=6)
    out = hflip(x, gen(7))
    mask = torch.rand(2000, generator=gen(7)) < 0.5
    assert out.dtype == torch.uint8
    assert torch.equal(out, torch.where(mask[:, None, None, None], x.flip(-1), x))
    # Bernoulli(0.5) over 2000 draws: 5 sigma is +-0.056.
    assert abs(mask.double().mean().item() - 0.5) < 0.056


def test_hflip_probability_extremes_validation_and_data_reexport():
    from trainlab.data import random_hflip

    assert random_hflip is hflip  # one flip; trainlab.data keeps the old name
    x = images(8, c=1, h=3, w=3, seed=1)
    assert torch.equal(hflip(x, gen(), p=0.0), x)
    assert torch.equal(hflip(x, gen(), p=1.0), x.flip(-1))
    with pytest.raises(ValueError, match="p must be in"):
        hflip(x, gen(), p=1.5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        hflip(x[0], gen())


@pytest.mark.parametrize(
    "mode,torch_mode", [("zero", "constant"), ("reflect", "reflect"), ("replicate", "replicate")]
)
def test_pad_crop_matches_slicing_of_padded_image(mode, torch_mode):
    x, pad = images(20, h=9, w=7), 3
    y, params = PadCrop(pad, mode=mode)(x, gen(1), return_params=True)
    padded = F.pad(x.float(), (pad,) * 4, mode=torch_mode).to(torch.uint8)
    for i in range(20):
        dy, dx = int(params["dy"][i]), int(params["dx"][i])
        assert torch.equal(y[i], padded[i, :, dy : dy + 9, dx : dx + 7])
    assert set(params["dy"].tolist()) <= set(range(2 * pad + 1))


def test_pad_crop_shifts_cover_the_range_uniformly():
    params = PadCrop(4).sample_params((9000, 3, 8, 8), gen(2))
    counts = torch.bincount(params["dx"], minlength=9).float()
    assert counts.numel() == 9
    # each of 9 shifts: 1000 expected, binomial std ~31; 5 std
    assert (counts - 1000).abs().max() < 160


def test_fused_crop_and_flip_equal_the_operations_one_by_one():
    x = images(12)
    pipe = make_pipeline(["pad_crop(2, mode='reflect')", "hflip", "vflip", "pad_crop(3)"])
    y, params = pipe(x, gen(5), return_params=True)
    step = x
    for op, p in zip(pipe.ops, params, strict=True):
        step = op.apply(step, p)
    assert torch.equal(y, step)
    assert y.dtype == torch.uint8


def test_center_five_and_ten_crop_match_slicing():
    x = images(2, h=11, w=9)
    assert torch.equal(center_crop(x, 5), x[..., 3:8, 2:7])
    views = five_crop(x, (4, 5))
    expected = [x[..., :4, :5], x[..., :4, 4:], x[..., 7:, :5], x[..., 7:, 4:], x[..., 4:8, 2:7]]
    for view, ref in zip(views, expected, strict=True):
        assert torch.equal(view, ref)
    ten = ten_crop(x, (4, 5))
    assert ten.shape[0] == 10
    assert torch.equal(ten[5], x.flip(-1)[..., :4, :5])
    assert torch.equal(ten[6], x[..., :4, :5].flip(-1))  # mirror's TR corner = TL corner mirrored


def test_resample_full_box_is_identity_and_integer_box_is_slicing():
    x = images(3, h=24, w=20)
    full = torch.tensor([[0.0, 0.0, 24.0, 20.0]]).expand(3, 4)
    assert torch.equal(resample_boxes(x, full, (24, 20)), x)
    box = torch.tensor([[3.0, 5.0, 12.0, 9.0]]).expand(3, 4)
    assert torch.equal(resample_boxes(x, box, (12, 9)), x[..., 3:15, 5:14])


def test_resample_matches_interpolate_of_the_crop():
    x = torch.rand(2, 3, 24, 20, generator=gen(1))
    box = torch.tensor([[2.0, 4.0, 16.0, 12.0], [0.0, 0.0, 24.0, 20.0]])
    out = resample_boxes(x, box, (10, 7))
    for i in range(2):
        t, l, h, w = (int(v) for v in box[i])
        ref = F.interpolate(
            x[i : i + 1, :, t : t + h, l : l + w],
            size=(10, 7),
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-5, rtol=0)


def test_random_resized_crop_boxes_follow_the_requested_distribution():
    h = w = 64
    op = RandomResizedCrop(32, scale=(0.1, 0.3), ratio=(3 / 4, 4 / 3))
    box = op.sample_params((4000, 3, h, w), gen(7))["box"].double()
    top, left, bh, bw = box.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= h).all() and (left + bw <= w).all()
    area = bh * bw / (h * w)
    aspect = bw / bh
    # rounding w and h to pixels moves area and ratio a little beyond the drawn range
    assert area.min() > 0.1 * 0.8 and area.max() < 0.3 * 1.2
    assert aspect.min() > 0.75 * 0.85 and aspect.max() < (4 / 3) * 1.15
    # every candidate fits here, so area ~ U(0.1, 0.3), log ratio ~ U(-log 4/3, log 4/3)
    assert abs(area.mean().item() - 0.2) < 0.01
    half = math.log(4 / 3)
    assert abs(aspect.log().mean().item()) < 0.02
    assert abs(aspect.log().std().item() - 2 * half / math.sqrt(12)) < 0.02
    # position uniform over the valid range: the mean relative offset is 1/2
    assert abs((top / (h - bh + 1)).mean().item() - 0.5) < 0.03


def test_random_resized_crop_falls_back_to_a_central_crop():
    op = RandomResizedCrop(8, scale=(0.95, 1.0), ratio=(3.0, 4.0), tries=5)
    box = op.sample_params((5, 3, 30, 30), gen(0))["box"]
    # no candidate can be 3x wider than high at 95% of a square: whole width, h = round(30 / 3)
    assert torch.equal(box, torch.tensor([[10.0, 0.0, 10.0, 30.0]]).expand(5, 4))


def test_random_resized_crop_output_and_replay():
    x = images(8, h=32, w=32)
    op = AUGMENTATIONS.create("random_resized_crop(16, scale=(0.35, 1))")
    y, params = op(x, gen(2), return_params=True)
    assert y.shape == (8, 3, 16, 16) and y.dtype == torch.uint8
    assert torch.equal(op.apply(x, params), y)


def test_scale_aug_equals_resize_then_crop():
    x = torch.rand(6, 3, 20, 20, generator=gen(4))
    op = ScaleAug(20, 30, 16)
    y, params = op(x, gen(9), return_params=True)
    box = params["box"]
    for i in range(6):
        side = int(params["side"][i])
        s = side / 20
        assert 20 <= side <= 30
        resized = F.interpolate(
            x[i : i + 1], size=(side, side), mode="bilinear", align_corners=False, antialias=False
        )
        top, left = round(float(box[i, 0]) * s), round(float(box[i, 1]) * s)
        assert 0 <= top <= side - 16 and 0 <= left <= side - 16
        ref = resized[..., top : top + 16, left : left + 16]
        torch.testing.assert_close(y[i : i + 1], ref, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- colour vs Pillow


def pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(img.permute(1, 2, 0).numpy())


def from_pil(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


@pytest.mark.parametrize(
    "name,enhancer",
    [
        ("brightness", ImageEnhance.Brightness),
        ("contrast", ImageEnhance.Contrast),
        ("saturation", ImageEnhance.Color),
    ],
)
def test_single_colour_ops_within_one_grey_level_of_pillow(name, enhancer):
    x = smooth_images(10)
    op = ColorJitter(**{name: 0.6})  # factors in [0.4, 1.6]: both blend and extrapolation
    y, params = op(x, gen(11), return_params=True)
    index = ["brightness", "contrast", "saturation"].index(name)
    for i in range(10):
        factor = float(params["factors"][i, index])
        ref = from_pil(enhancer(pil(x[i])).enhance(factor))
        diff = (y[i].int() - ref.int()).abs().max().item()
        assert diff <= 1, (name, factor, diff)


def reference_jitter(
    img: np.ndarray, factors, order, clamp_each: bool, levels: bool = False
) -> np.ndarray:
    """The definitions in float64 on one (3, H, W) image on [0, 255]. ``levels``: as uint8 images
    are done, Pillow's arithmetic for brightness, contrast, saturation (integer grey
    ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, contrast level ``int(mean + 0.5)``, the blend
    ``d + f (x - d)`` in float32, truncated) and hue rounded to a level."""
    x = img.astype(np.float64)
    for op in order:
        f = float(factors[op])
        if op == 3 and f == 0.0:
            continue  # hue disabled
        if levels and op < 3:
            g = np.floor((19595 * x[0] + 38470 * x[1] + 7471 * x[2] + 32768) / 65536)
            d = (0.0, np.floor(g.mean() + 0.5), g[None])[op]
            d32 = np.float32(d) if op < 2 else d.astype(np.float32)
            blend = d32 + np.float32(f) * (x.astype(np.float32) - d32)
            x = np.floor(np.clip(blend, 0, 255)).astype(np.float64)
            continue
        if levels:
            x = np.floor(np.clip(hsv_reference(x / 255.0, f) * 255.0 + 0.5, 0, 255))
            continue
        grey = np.tensordot(LUMA, x, axes=1)
        if op == 0:
            x = f * x
        elif op == 1:
            x = f * x + (1 - f) * grey.mean()
        elif op == 2:
            x = f * x + (1 - f) * grey[None]
        else:
            x = hsv_reference(np.clip(x, 0, 255) / 255.0, f) * 255.0
        if clamp_each:
            x = np.clip(x, 0, 255)
    return np.clip(x, 0, 255)


def hsv_reference(x: np.ndarray, shift: float) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*x[:, i, j])
            out[:, i, j] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    return out


@pytest.mark.parametrize("order", ["fixed", "random"])
def test_jitter_sequential_matches_the_definition_with_clamping(order):
    x = smooth_images(8, h=8, w=8)
    op = ColorJitter(0.5, 0.5, 0.5, 0.2, order=order, fused=False)
    y, params = op(x, gen(12), return_params=True)
    yf = op.apply(x.double() / 255, params) * 255  # float images: not quantized
    for i in range(8):
        factors, steps = params["factors"][i].tolist(), params["order"][i].tolist()
        ref = reference_jitter(x[i].numpy(), factors, steps, clamp_each=True)
        np.testing.assert_allclose(yf[i].numpy(), ref, atol=1e-9)
        # uint8: the same level as the reference; float32 vs float64 hue may move one value
        # across a rounding boundary, and the later steps carry that level on
        levels = reference_jitter(x[i].numpy(), factors, steps, clamp_each=True, levels=True)
        d = np.abs(y[i].numpy().astype(np.float64) - levels)
        assert d.max() <= 2 and (d > 0).mean() < 0.02, (d.max(), (d > 0).mean())


@pytest.mark.parametrize("order", ["fixed", "random"])
def test_fused_jitter_matches_the_definition_clamped_once(order):
    x = smooth_images(8, h=8, w=8)
    op = ColorJitter(0.5, 0.5, 0.5, order=order, fused=True)
    assert op.kind == "affine"
    y, params = op(x, gen(13), return_params=True)
    for i in range(8):
        ref = reference_jitter(
            x[i].numpy(),
            params["factors"][i].tolist(),
            params["order"][i].tolist(),
            clamp_each=False,
        )
        assert np.abs(y[i].numpy().astype(np.float64) - ref).max() <= 0.5 + 1e-3


def test_fused_with_hue_equals_sequential_when_nothing_clips():
    # float images, which are not quantized between steps (uint8 ones are, as Pillow does)
    x = (smooth_images(8, h=8, w=8).float() * 0.5 + 64) / 255  # [64, 192] / 255
    kwargs = dict(brightness=0.15, contrast=0.15, saturation=0.15, hue=0.3, order="random")
    params = ColorJitter(**kwargs).sample_params(x.shape, gen(14))
    fused = ColorJitter(**kwargs, fused=True).apply(x, params)
    sequential = ColorJitter(**kwargs).apply(x, params)
    torch.testing.assert_close(fused, sequential, atol=1e-5, rtol=0)


def test_chain_of_pillow_enhancers_is_the_sequential_jitter_on_uint8():
    # uint8 jitter follows Pillow's arithmetic step by step (0 levels apart on this machine;
    # one level allowed for float rounding). tests/test_color_jitter.py checks every corner.
    x = smooth_images(6)
    op = ColorJitter(0.3, 0.3, 0.3, fused=False)
    y, params = op(x, gen(15), return_params=True)
    for i in range(6):
        fb, fc, fs = params["factors"][i, :3].tolist()
        im = ImageEnhance.Brightness(pil(x[i])).enhance(fb)
        im = ImageEnhance.Contrast(im).enhance(fc)
        ref = from_pil(ImageEnhance.Color(im).enhance(fs))
        assert (y[i].int() - ref.int()).abs().max() <= 1


def test_hue_matches_colorsys_round_trip():
    x = torch.rand(4, 3, 5, 6, generator=gen(16), dtype=torch.float64)
    shift = torch.tensor([-0.5, -0.13, 0.27, 0.5], dtype=torch.float64)
    y = hue_shift(x, shift)
    for i in range(4):
        ref = hsv_reference(x[i].numpy(), float(shift[i]))
        np.testing.assert_allclose(y[i].numpy(), ref, atol=1e-12)


def test_hue_jitter_on_uint8_within_one_level_of_colorsys():
    x = smooth_images(4, h=6, w=6)
    y, params = ColorJitter(hue=0.5)(x, gen(17), return_params=True)
    for i in range(4):
        ref = hsv_reference(x[i].numpy() / 255.0, float(params["factors"][i, 3])) * 255
        assert np.abs(y[i].numpy() - ref).max() <= 0.5 + 1e-3


def test_grayscale_matches_pillow_convert_L():
    x = images(40)
    y, params = RandomGrayscale(0.5)(x, gen(18), return_params=True)
    chosen = params["grey"]
    assert 5 < int(chosen.sum()) < 35
    for i in range(40):
        if chosen[i]:
            ref = torch.from_numpy(np.asarray(pil(x[i]).convert("L")).copy())
            assert (y[i].int() - ref.int()[None]).abs().max() <= 1
        else:
            assert torch.equal(y[i], x[i])


def test_single_channel_saturation_and_hue_are_no_ops_brightness_is_not():
    x = images(4, c=1)
    assert torch.equal(ColorJitter(saturation=0.9, hue=0.4)(x, gen(0)), x)
    y, params = ColorJitter(brightness=0.5)(x, gen(1), return_params=True)
    # uint8: Pillow's blend with black, f x in float32, clipped and truncated to a level
    ref = (x.float() * params["factors"][:, 0, None, None, None]).clamp(0, 255).floor()
    assert torch.equal(y, ref.to(torch.uint8))


# ----------------------------------------------------------------------------- PCA lighting


def test_pca_lighting_noise_covariance_matches_definition():
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(20), dtype=torch.float64))
    eigvals = torch.tensor([0.2, 0.05, 0.01], dtype=torch.float64)
    op = PCALighting(0.1, eigvals, q)
    n = 20000
    x = torch.full((n, 3, 1, 1), 0.5)
    y = op(x, gen(21))
    noise = (y - x).reshape(n, 3).double()
    expected = q @ torch.diag(eigvals**2 * 0.1**2) @ q.T
    # sample covariance error ~ sqrt(2/n) of the largest variance; 5 standard errors
    tol = 5 * math.sqrt(2 / n) * float(eigvals[0] ** 2 * 0.01)
    assert (noise.T @ noise / n - expected).abs().max() < tol
    assert noise.mean(0).abs().max() < 5 * float(eigvals[0] * 0.1) / math.sqrt(n)


def test_pca_lighting_on_uint8_adds_255_times_the_noise():
    eigvals, eigvecs = torch.tensor([0.1, 0.02, 0.005]), torch.eye(3)
    op = PCALighting(0.1, eigvals, eigvecs)
    x = torch.full((5, 3, 2, 2), 128, dtype=torch.uint8)
    y, params = op(x, gen(22), return_params=True)
    ref = (128 + 255 * params["alpha"] * eigvals).round()
    assert torch.equal(y[:, :, 0, 0].float(), ref)


def test_pca_lighting_reads_eigen_from_stats_objects():
    @dataclasses.dataclass
    class Stats:
        mean: torch.Tensor
        eigvals: torch.Tensor
        eigvecs: torch.Tensor

    stats = Stats(torch.zeros(3), torch.tensor([0.1, 0.02, 0.005]), torch.eye(3))
    pipe = make_pipeline(["pca_lighting(0.1)"], stats=stats)
    assert torch.equal(pipe.ops[0].eigvals, stats.eigvals)
    with pytest.raises(RegistryError, match="stats"):
        make_pipeline(["pca_lighting(0.1)"])


def test_pca_lighting_from_trainlab_preprocess_stats():
    from trainlab.preprocess import StatsAccumulator

    stats = StatsAccumulator().update(smooth_images(20)).result()
    op = make_pipeline(["pca_lighting(0.1)"], stats=stats).ops[0]
    torch.testing.assert_close(op.eigvals, stats.eigenvalues.float())
    torch.testing.assert_close(op.eigvecs, stats.eigenvectors.float())


# ----------------------------------------------------------------------------- pipelines

FULL = [
    "pad_crop(4, mode='reflect')",
    "hflip",
    "vflip(0.3)",
    "jitter(0.4, 0.4, 0.4, p=0.8)",
    "grayscale(0.2)",
    "pca_lighting(0.1)",
    "jitter(hue=0.1, order='random')",
    "random_resized_crop(12, scale=(0.35, 1))",
]
STATS = (torch.tensor([0.05, 0.01, 0.002]), torch.eye(3))


def test_pipeline_is_reproducible_and_replayable():
    x = images(10, h=16, w=16)
    pipe = make_pipeline(FULL, stats=STATS)
    y1, params = pipe(x, gen(30), return_params=True)
    y2 = pipe(x, gen(30))
    assert torch.equal(y1, y2)
    assert torch.equal(pipe.replay(x, params), y1)
    assert not torch.equal(pipe(x, gen(31)), y1)
    assert y1.shape == (10, 3, 12, 12) and y1.dtype == torch.uint8


def test_pipeline_never_touches_the_global_rng():
    state = torch.get_rng_state()
    make_pipeline(FULL, stats=STATS)(images(4, h=16, w=16), gen(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_pipeline_works_on_float_like_on_uint8():
    x = images(10, h=16, w=16)
    pipe = make_pipeline(FULL, stats=STATS)
    y8, params = pipe(x, gen(32), return_params=True)
    yf = pipe.replay(x.float() / 255, params)
    assert yf.dtype == torch.float32 and yf.min() >= 0 and yf.max() <= 1
    # uint8 rounds at each resampling stage and truncates after brightness, contrast and
    # saturation as Pillow does (each up to 1 level down, scaled by the later factors up to
    # 1.4 and 1.71); float does neither. 60 seeds reached 5.2.
    assert (yf * 255 - y8.float()).abs().max() <= 6


def test_pipeline_fused_colour_run_equals_ops_one_by_one_when_nothing_clips():
    x = (smooth_images(6).float() * 0.5 + 64).round().to(torch.uint8)
    pipe = make_pipeline(
        ["jitter(0.1, 0.1, 0.1, fused=True)", "grayscale(0.5)", "pca_lighting(0.1)"], stats=STATS
    )
    assert [op.kind for op in pipe.ops] == ["affine"] * 3  # the default jitter is not fused
    y, params = pipe(x, gen(33), return_params=True)
    step = x.float()
    for op, p in zip(pipe.ops, params, strict=True):
        step = op.apply(step / 255, p) * 255  # float path: no intermediate rounding
    assert (y.float() - step).abs().max() <= 0.5 + 1e-3


def test_per_op_probability_skips_images():
    x = smooth_images(60, h=6, w=6)
    pipe = make_pipeline(["jitter(0.5, 0.5, 0.5, p=0.4)"])
    y, params = pipe(x, gen(34), return_params=True)
    applied = params[0]["applied"]
    assert 10 < int(applied.sum()) < 40
    assert torch.equal(y[~applied], x[~applied])
    assert (y[applied] != x[applied]).flatten(1).any(1).all()


def test_registry_errors_name_the_problem():
    with pytest.raises(RegistryError, match="valid names"):
        make_pipeline(["hflop"])
    with pytest.raises(RegistryError, match="pad"):
        make_pipeline(["pad_crop(-1)"])
    with pytest.raises(RegistryError, match="probability"):
        make_pipeline(["jitter(0.4, p=1.5)"])
    with pytest.raises(RegistryError, match="skipped"):
        make_pipeline(["scale_aug(20, 30, 16, p=0.5)"])
    assert {"hflip", "pad_crop", "jitter", "pca_lighting", "scale_aug"} <= set(AUGMENTATIONS)


def test_plot_augment_writes_a_grid(tmp_path):
    pipe = make_pipeline(["pad_crop(2)", "hflip", "jitter(0.4, 0.4, 0.4)"])
    path = plot_augment(
        images(3, h=16, w=16), tmp_path / "aug.png", pipe, gen(0), n_images=3, n_versions=2
    )
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] == im.size[1]  # 3 rows, 1 + 2 columns
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize(
    "factory, args, kwargs, name",
    [
        ("pad_crop", (-1,), {}, "pad"),
        ("pad_crop", (1.5,), {}, "pad"),
        ("pad_crop", (4,), {"mode": "wrap"}, "mode"),
        ("hflip", (float("nan"),), {}, "p"),
        ("vflip", (float("inf"),), {}, "p"),
        ("center_crop", (0,), {}, "size"),
        ("random_resized_crop", (8,), {"scale": (0.08, float("inf"))}, "scale"),
        ("random_resized_crop", (8,), {"ratio": (float("nan"), 1.0)}, "ratio"),
        ("random_resized_crop", (8,), {"tries": 0}, "tries"),
        ("scale_aug", (16, 20, 0), {}, "crop"),
    ],
)
def test_geometric_factories_refuse_values_by_meaning(factory, args, kwargs, name):
    # ValueError naming the argument and its value, at construction
    with pytest.raises(ValueError, match=rf"{name}.* must be .*got"):
        AUGMENTATIONS.get(factory)(*args, **kwargs)
