"""Colour jitter against Pillow's ImageEnhance, applied one operation after another, on real images.

Pillow (``Image.blend`` in libImaging/Blend.c) computes ``d + f (x - d)`` in float32, clips
when ``f`` is outside [0, 1] and truncates to uint8 after every operation; its grey is
``convert("L")``, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, and Contrast blends with
``int(mean + 0.5)`` of that grey image. trainlab does the same on uint8 images, so the chain
agrees with Pillow's to the level (0 on this machine; the tests allow 1 level, mean 0.01, at
every corner of the factor cube of ``jitter(0.4, 0.4, 0.4)``, and for each operation alone).
Before it quantized between steps, the float chain rounded once and reached 4 levels (mean
1.16) where contrast and saturation were both 1.4.

Also here: the uint8 chain against an independent NumPy copy of Pillow's integer arithmetic,
and the float chain (no quantization) against its float64 definition, in edge cases (a factor
of 0, one operation at a time, random order, single-channel images).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from trainlab.augment import ColorJitter, make_pipeline

ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
CORNERS = list(itertools.product((0.6, 1.0, 1.4), repeat=3))  # jitter(0.4, 0.4, 0.4)
LUMA = np.array([0.299, 0.587, 0.114])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cifar() -> torch.Tensor:
    """100 CIFAR-10 test images (every 100th), or a clean skip where CIFAR-10 is not installed."""
    from trainlab.data import load_dataset
    from trainlab.errors import DataError

    try:
        return load_dataset("cifar10").test_images[::100].contiguous()
    except DataError as exc:
        pytest.skip(f"CIFAR-10 is not installed: {exc}")


def synthetic_rgb(n: int = 48, size: int = 24, seed: int = 0) -> torch.Tensor:
    """Colourful stand-ins that always exist: gradients, saturated patches, noise, clipped spots."""
    g = gen(seed)
    base = torch.rand(n, 3, 1, 1, generator=g) * 255
    ramp = torch.linspace(-1, 1, size)[None, None, None, :] * torch.rand(n, 3, 1, 1, generator=g)
    noise = torch.randn(n, 3, size, size, generator=g) * 25
    x = base + 120 * ramp + noise
    x[:, :, : size // 4, : size // 4] = torch.rand(n, 3, 1, 1, generator=g).round() * 255
    return x.round().clamp(0, 255).to(torch.uint8)


def fixed_params(b: int, factors) -> dict[str, torch.Tensor]:
    fb, fc, fs = factors
    return {
        "factors": torch.tensor([fb, fc, fs, 0.0]).expand(b, 4).clone(),
        "order": torch.arange(4).expand(b, 4).clone(),
    }


def pillow_chain(x: torch.Tensor, factors, ops=(0, 1, 2)) -> torch.Tensor:
    """Pillow's ImageEnhance, one operation after another (uint8 in between), image by image."""
    out = []
    for img in x.permute(0, 2, 3, 1).numpy():
        im = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        for k in ops:
            im = ENHANCERS[k](im).enhance(factors[k])
        out.append(torch.from_numpy(np.asarray(im).copy()).reshape(img.shape))
    return torch.stack(out).permute(0, 3, 1, 2)


def level_diffs(x: torch.Tensor, cases, ops=(0, 1, 2)) -> list[torch.Tensor]:
    """``ours - Pillow`` in levels for each factor triple in ``cases``, all cases in one batch."""
    b = x.shape[0]
    batch = x.repeat(len(cases), 1, 1, 1)
    params = {
        "factors": torch.tensor([[*f, 0.0] for f in cases]).repeat_interleave(b, dim=0),
        "order": torch.arange(4).expand(b * len(cases), 4).clone(),
    }
    ours = ColorJitter(0.9, 0.9, 0.9).apply(batch, params).split(b)
    return [y.int() - pillow_chain(x, f, ops).int() for y, f in zip(ours, cases, strict=True)]


# ----------------------------------------------------------------------------- against Pillow


def check_chain(x: torch.Tensor, at_most: int = 1, mean_at_most: float = 0.01) -> None:
    """Every corner of the factor cube within ``at_most`` levels of Pillow's chain (issue 16
    asks for 3; the arithmetic is Pillow's, so 1 leaves room only for float rounding)."""
    failed = []
    for factors, d in zip(CORNERS, level_diffs(x, CORNERS), strict=True):
        worst, mean = int(d.abs().max()), float(d.abs().float().mean())
        if worst > at_most or mean > mean_at_most:
            failed.append((factors, worst, round(mean, 4)))
    assert not failed, f"(factors, max, mean |ours - Pillow|): {failed}"


def test_chain_within_1_level_of_pillow_on_cifar10(cifar):
    check_chain(cifar)


def test_chain_within_1_level_of_pillow_on_synthetic_rgb():
    check_chain(synthetic_rgb())


def test_chain_within_1_level_of_pillow_on_fashion_mnist(fashion_mnist):
    # single channel: Pillow's Color leaves an "L" image unchanged, and so does our saturation
    check_chain(fashion_mnist.test_images[::200].contiguous())


@pytest.mark.parametrize("op", [0, 1, 2], ids=["brightness", "contrast", "saturation"])
def test_each_operation_within_1_level_of_pillow(cifar, op):
    cases = []
    for f in (0.0, 0.3, 0.6, 1.4, 1.9):
        factors = [1.0, 1.0, 1.0]
        factors[op] = f
        cases.append(tuple(factors))
    for x in (cifar, synthetic_rgb()):
        for factors, d in zip(cases, level_diffs(x, cases, ops=(op,)), strict=True):
            assert d.abs().max() <= 1, factors


def test_fused_form_is_not_pillow_where_a_step_clips(cifar):
    # the reason for the default: brightness 1.4 pushes bright pixels past white, contrast 0.6
    # pulls them back; clamping only at the end brings back detail Pillow has already lost
    factors = (1.4, 0.6, 1.0)
    params = fixed_params(cifar.shape[0], factors)
    fused = ColorJitter(fused=True).apply(cifar, params)
    assert (fused.int() - pillow_chain(cifar, factors).int()).abs().max() > 30
    assert level_diffs(cifar, [factors])[0].abs().max() <= 1


# ----------------------------------------------------------------------------- the definition


def definition(x: np.ndarray, factors, order=(0, 1, 2, 3)) -> np.ndarray:
    """Float images: the chain in float64 on [0, 1], clamping after each step, no quantization."""
    y = x.astype(np.float64)
    c = y.shape[1]
    w = LUMA if c == 3 else np.ones(1)
    for op in order:
        f = np.asarray(factors, dtype=np.float64)[:, op][:, None, None, None]
        grey = np.einsum("c,bchw->bhw", w, y)[:, None]
        if op == 0:
            y = f * y
        elif op == 1:
            y = f * y + (1 - f) * grey.mean(axis=(2, 3), keepdims=True)
        elif op == 2 and c == 3:
            y = f * y + (1 - f) * grey
        y = np.clip(y, 0, 1)
    return y


def pillow_levels(x: np.ndarray, factors, order=(0, 1, 2)) -> np.ndarray:
    """uint8 images: Pillow's arithmetic in NumPy. Grey in integers, ``(19595 R + 38470 G +
    7471 B + 2^15) >> 16``; Contrast's level ``int(mean + 0.5)``; the blend ``d + f (y - d)`` in
    float32, clipped and truncated after every operation."""
    y = x.astype(np.int64)
    c = y.shape[1]
    for op in order:
        if op == 2 and c == 1:
            continue
        if c == 3:
            grey = (19595 * y[:, 0] + 38470 * y[:, 1] + 7471 * y[:, 2] + 32768) >> 16
        else:
            grey = y[:, 0]
        grey = grey[:, None]
        if op == 0:
            d = np.zeros_like(grey[:, :, :1, :1])
        elif op == 1:
            d = (grey.mean(axis=(1, 2, 3)) + 0.5).astype(np.int64)[:, None, None, None]
        else:
            d = grey
        f = np.asarray(factors, dtype=np.float32)[:, op][:, None, None, None]
        d32 = d.astype(np.float32)
        blend = d32 + f * (y.astype(np.float32) - d32)
        y = np.clip(blend, 0, 255).astype(np.int64)
    return y.astype(np.uint8)


@pytest.mark.parametrize(
    "active", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 1, 1)]
)
@pytest.mark.parametrize("channels", [3, 1])
def test_uint8_chain_is_pillows_arithmetic(active, channels):
    x = synthetic_rgb(40, 12, seed=sum(active))[:, :channels]
    op = ColorJitter(*(1.2 * a for a in active))  # factors in [0, 2.2]
    _, params = op(x, gen(3), return_params=True)
    f = params["factors"].numpy()
    f[:5, :3] = np.where(np.array(active, dtype=bool), 0.0, 1.0)  # exact zeros too
    y = op.apply(x, {**params, "factors": torch.from_numpy(f)})
    np.testing.assert_array_equal(y.numpy(), pillow_levels(x.numpy(), f))


@pytest.mark.parametrize(
    "active", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 1, 1)]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [3, 1])
def test_float_chain_matches_float64_definition(active, dtype, channels):
    x = synthetic_rgb(40, 12, seed=sum(active))[:, :channels].to(dtype) / 255
    op = ColorJitter(*(1.2 * a for a in active))  # factors in [0, 2.2]
    _, params = op(x, gen(3), return_params=True)
    f = params["factors"].numpy()
    f[:5, :3] = np.where(np.array(active, dtype=bool), 0.0, 1.0)  # exact zeros too
    y = op.apply(x, {**params, "factors": torch.from_numpy(f)})
    assert y.dtype == dtype
    ref = definition(x.numpy(), f)
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-5 if dtype == torch.float32 else 1e-12)


def test_random_order_per_image_uint8_and_float():
    x = synthetic_rgb(24, 10)
    op = ColorJitter(0.5, 0.5, 0.5, order="random")
    y, params = op(x, gen(4), return_params=True)
    f, order = params["factors"].numpy(), params["order"].numpy()
    assert len({tuple(o) for o in order}) > 4  # images do get different orders
    xf = x.double() / 255
    yf = op.apply(xf, params)
    for i in range(x.shape[0]):
        ops = [k for k in order[i] if k != 3]  # hue's range is 0 here
        np.testing.assert_array_equal(
            y[i : i + 1].numpy(), pillow_levels(x[i : i + 1].numpy(), f[i : i + 1], ops)
        )
        ref = definition(xf[i : i + 1].numpy(), f[i : i + 1], order[i])
        np.testing.assert_allclose(yf[i : i + 1].numpy(), ref, atol=1e-12)


def test_grey_and_contrast_level_are_pillows():
    from trainlab.augment.color import pillow_grey, pillow_mean

    x = torch.randint(0, 256, (4, 3, 40, 50), generator=gen(5), dtype=torch.uint8)
    x[0, :, :5] = 255  # the largest sum, exact in float32
    grey = pillow_grey(x.float())
    for i in range(4):
        ref = np.asarray(Image.fromarray(x[i].permute(1, 2, 0).numpy()).convert("L"))
        np.testing.assert_array_equal(grey[i, 0].numpy(), ref)
    # int(mean + 0.5) with ties, on both sides of the float32 limit (2 S + n < 2^24)
    for h, w in ((8, 8), (181, 181), (200, 200)):
        levels = torch.randint(0, 256, (6, 1, h, w), generator=gen(h), dtype=torch.int32)
        levels[0], levels[1] = 255, 0
        levels[2] = 10
        levels[2].view(-1)[: h * w // 2] = 11  # mean exactly 10.5 when h w is even
        ref = [int(float(t.sum()) / (h * w) + 0.5) for t in levels]
        assert pillow_mean(levels.float()).tolist() == ref


def test_input_untouched_and_identity_factors_exact():
    for x in (synthetic_rgb(8), synthetic_rgb(8).float() / 255):
        before = x.clone()
        y = ColorJitter(0.4, 0.4, 0.4).apply(x, fixed_params(8, (1.0, 1.0, 1.0)))
        assert torch.equal(x, before)
        assert torch.allclose(y.double(), x.double(), atol=1e-6)


def test_recipe_specs_build_the_sequential_form():
    pipe = make_pipeline(["pad_crop(4)", "hflip", "jitter(0.4, 0.4, 0.4)"])
    jitter = pipe.ops[-1]
    assert not jitter.fused and jitter.kind == "pixel" and jitter.order == "fixed"
    fused = make_pipeline(["jitter(0.4, 0.4, 0.4, fused=True)"]).ops[0]
    assert fused.fused and fused.kind == "affine"
    with pytest.raises(Exception, match="fused"):
        make_pipeline(["jitter(0.4, fused=1)"])
