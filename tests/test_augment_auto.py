"""RandAugment, TrivialAugmentWide and random erasing against independent references.

Every operation is checked against Pillow's own (Image.transform AFFINE and Image.rotate with
NEAREST and fill 0, ImageEnhance, ImageOps), image by image, at every magnitude bin and sign
of both spaces, on CIFAR-10 test images (skipped where CIFAR-10 is not installed), Fashion-
MNIST (mode "L") and synthetic images of odd sizes: the agreement is exact, level for level.
The magnitude tables are checked against torchvision's published values, RandAugment's chain
of operations against Pillow applied in the same order, the draws against their distributions,
and random erasing against the authors' algorithm run image by image in plain Python.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from trainlab.augment import RandAugment, RandomErasing, TrivialAugmentWide, auto, make_pipeline
from trainlab.errors import RecipeError, RegistryError
from trainlab.recipe import recipe_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def to_pil(image: torch.Tensor) -> Image.Image:
    pixels = image.permute(1, 2, 0).numpy()
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def from_pil(im: Image.Image, channels: int) -> torch.Tensor:
    return (
        torch.from_numpy(np.asarray(im).copy())
        .reshape(im.height, im.width, channels)
        .permute(2, 0, 1)
    )


def pillow_chain(x: torch.Tensor, ops: torch.Tensor, mags: torch.Tensor) -> torch.Tensor:
    """Each image through its own operations (B, rounds) in turn, with Pillow."""
    out = []
    for image, image_ops, image_mags in zip(x, ops.tolist(), mags.tolist(), strict=True):
        im = to_pil(image)
        for op, m in zip(image_ops, image_mags, strict=True):
            im = auto.pillow_op(im, op, m)
        out.append(from_pil(im, x.shape[1]))
    return torch.stack(out)


@pytest.fixture(scope="module")
def cifar(cifar10) -> torch.Tensor:
    """8 CIFAR-10 test images (skipped where CIFAR-10 is not installed)."""
    return cifar10.test_images[::1250].contiguous()


def synthetic(n: int = 6, c: int = 3, h: int = 24, w: int = 17, seed: int = 0) -> torch.Tensor:
    """Smooth colour ramps with noise and a saturated patch, on an odd, non-square size."""
    g = gen(seed)
    base = torch.rand(n, c, 1, 1, generator=g) * 200 + 20
    ramp = torch.linspace(-60, 60, w)[None, None, None, :] * torch.rand(n, c, 1, 1, generator=g)
    x = base + ramp + torch.randn(n, c, h, w, generator=g) * 15
    x[:, :, :5, :4] = 255
    return x.round().clamp(0, 255).to(torch.uint8)


def every_bin(x: torch.Tensor, aug: auto.RandomOps) -> tuple[torch.Tensor, dict]:
    """x repeated once per (operation, bin, sign), with the parameters that say which."""
    cases = [
        (op, level, negate)
        for op in range(len(auto.OPS))
        for level in range(aug.bins)
        for negate in (False, True)
    ]
    op, level, negate = torch.tensor(cases).repeat_interleave(x.shape[0], dim=0).unbind(1)
    params = {"op": op[:, None], "level": level[:, None], "negate": negate[:, None].bool()}
    return x.repeat(len(cases), 1, 1, 1), params


def check_every_operation(x: torch.Tensor, aug: auto.RandomOps) -> None:
    batch, params = every_bin(x, aug)
    ours = aug.apply(batch, params)
    mags = aug.magnitudes(params, tuple(x.shape[-2:]))
    reference = pillow_chain(batch, params["op"], mags)
    differs = (ours != reference).flatten(1).any(1)
    wrong = {
        (auto.OPS[int(params["op"][i])], int(params["level"][i]), bool(params["negate"][i]))
        for i in differs.nonzero().flatten().tolist()
    }
    assert not wrong, f"(operation, bin, negated) unlike Pillow: {sorted(wrong)[:10]}"


SPACES = [RandAugment(1, 9), TrivialAugmentWide()]


@pytest.mark.parametrize("aug", SPACES, ids=["randaugment", "wide"])
def test_every_operation_bin_and_sign_is_pillows_on_cifar10(cifar, aug):
    check_every_operation(cifar, aug)


@pytest.mark.parametrize("aug", SPACES, ids=["randaugment", "wide"])
def test_every_operation_is_pillows_on_fashion_mnist_mode_L(fashion_mnist, aug):
    check_every_operation(fashion_mnist.test_images[::2000].contiguous(), aug)


@pytest.mark.parametrize("channels", [1, 3])
def test_every_operation_is_pillows_on_odd_sized_images(channels):
    # 24 x 17: Pillow rotates a non-square image by a quarter turn with its affine path
    check_every_operation(synthetic(4, channels), TrivialAugmentWide())
    check_every_operation(synthetic(4, channels, 13, 30, seed=1), RandAugment(1, 30))


def test_general_affine_maps_are_pillows_fixed_point_transform():
    x = synthetic(12, 3, 20, 23)
    g = gen(5)
    data = torch.rand(12, 6, generator=g, dtype=torch.float64) * 2 - 1
    data[:, [2, 5]] *= 15  # shifts of up to 15 pixels
    ours = auto.pillow_affine(x, data)
    for image, row, y in zip(x, data.tolist(), ours, strict=True):
        im = to_pil(image)
        ref = im.transform(im.size, Image.Transform.AFFINE, tuple(row), Image.Resampling.NEAREST)
        assert torch.equal(y, from_pil(ref, 3))


def test_equalize_and_autocontrast_edge_cases_match_pillow():
    x = torch.zeros(4, 1, 20, 20, dtype=torch.uint8)
    x[0, 0, :1, :5] = 255  # step = 1: Pillow's table passes 255 and is clipped to it
    x[0, 0, 5:] = 3
    x[0, 0, 10:] = 7
    x[1] = 77  # a single level: left as it is
    x[2, 0, :, :10] = 9  # two levels
    x[2, 0, :, 10:] = 10
    x[3] = torch.arange(400).reshape(20, 20) % 256
    for fn, ref in ((auto.equalize, ImageOps.equalize), (auto.autocontrast, ImageOps.autocontrast)):
        expected = torch.stack([from_pil(ref(to_pil(image)), 1) for image in x])
        assert torch.equal(fn(x), expected), fn.__name__


def test_magnitude_tables_are_torchvisions():
    # torchvision's _augmentation_space: float32 linspace(0, top, 31)[k]
    ra = auto.magnitude_table(auto.RANDAUGMENT_SPACE, 31, (32, 28))
    expected_m9 = {
        auto.SHEAR_X: 0.09, auto.SHEAR_Y: 0.09,
        auto.TRANSLATE_X: 150 / 331 * 28 * 9 / 30, auto.TRANSLATE_Y: 150 / 331 * 32 * 9 / 30,
        auto.ROTATE: 9.0, auto.BRIGHTNESS: 0.27, auto.COLOR: 0.27, auto.CONTRAST: 0.27,
        auto.SHARPNESS: 0.27, auto.POSTERIZE: 7, auto.SOLARIZE: 178.5,
    }  # fmt: skip
    for op, value in expected_m9.items():
        assert ra[op, 9].item() == pytest.approx(value, rel=1e-6), auto.OPS[op]
    assert ra[auto.POSTERIZE].tolist()[::5] == [8, 7, 7, 6, 5, 5, 4]
    wide = auto.magnitude_table(auto.WIDE_SPACE, 31, (32, 32))
    expected_top = {
        auto.SHEAR_X: 0.99, auto.TRANSLATE_Y: 32.0, auto.ROTATE: 135.0, auto.COLOR: 0.99,
        auto.POSTERIZE: 2, auto.SOLARIZE: 0.0,
    }  # fmt: skip
    for op, value in expected_top.items():
        assert wide[op, 30].item() == pytest.approx(value, rel=1e-6), auto.OPS[op]
    assert wide[auto.POSTERIZE].tolist()[::5] == [8, 7, 6, 5, 4, 3, 2]
    assert (ra[[auto.IDENTITY, auto.AUTOCONTRAST, auto.EQUALIZE]] == 0).all()


@pytest.mark.parametrize("aug", [RandAugment(2, 14), RandAugment(3, 5)], ids=repr)
def test_randaugment_chains_its_operations_like_pillow(aug):
    x = synthetic(40, 3, 32, 32, seed=3)
    y, params = aug(x, gen(11), return_params=True)
    mags = aug.magnitudes(params, (32, 32))
    assert torch.equal(y, pillow_chain(x, params["op"], mags))


def test_draws_are_uniform_per_image_and_from_the_generator():
    b = 14_000
    ta = TrivialAugmentWide()
    params = ta.sample_params((b, 3, 8, 8), gen(2))
    counts = torch.bincount(params["op"].flatten(), minlength=14).double()
    sd = math.sqrt(b / 14 * (1 - 1 / 14))
    assert (counts - b / 14).abs().max() < 4.5 * sd
    levels = torch.bincount(params["level"].flatten(), minlength=31).double()
    assert (levels - b / 31).abs().max() < 4.5 * math.sqrt(b / 31)
    assert abs(params["negate"].double().mean().item() - 0.5) < 4.5 * 0.5 / math.sqrt(b)
    ra = RandAugment(2, 7).sample_params((b, 3, 8, 8), gen(2))
    assert ra["op"].shape == (b, 2) and (ra["level"] == 7).all()
    assert (ra["op"][:, 0] != ra["op"][:, 1]).double().mean() > 0.9  # rounds draw their own


def test_seeded_replayable_and_never_the_global_rng():
    x = synthetic(16, 3, 32, 32)
    for spec in ("randaugment(2, 9)", "trivialaugment", "random_erasing(0.5, fill='noise')"):
        pipe = make_pipeline([spec])
        state = torch.random.get_rng_state()
        y1, params = pipe(x, gen(4), return_params=True)
        assert torch.equal(torch.random.get_rng_state(), state)
        assert torch.equal(pipe(x, gen(4)), y1)
        assert torch.equal(pipe.replay(x, params), y1)
        assert not torch.equal(pipe(x, gen(5)), y1)
        assert y1.dtype == torch.uint8 and y1.shape == x.shape


def test_pipeline_probability_leaves_skipped_images_untouched():
    x = synthetic(50, 3, 16, 16)
    y, params = make_pipeline(["randaugment(2, 20, p=0.5)"])(x, gen(6), return_params=True)
    applied = params[0]["applied"]
    assert 10 < int(applied.sum()) < 40
    assert torch.equal(y[~applied], x[~applied])
    assert (params[0]["op"][~applied] == auto.IDENTITY).all()


def test_only_uint8_images_with_one_or_three_channels():
    with pytest.raises(TypeError, match="uint8"):
        RandAugment()(torch.rand(2, 3, 8, 8), gen())
    with pytest.raises(TypeError, match="C=4"):
        TrivialAugmentWide()(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), gen())


# ----------------------------------------------------------------------------- random erasing


def authors_erasing(h: int, w: int, rng: random.Random, scale, ratio, tries=10):
    """The authors' algorithm (Zhong et al., github.com/zhunzhong07/Random-Erasing), one image:
    ``(top, left, height, width)`` of the rectangle, or None."""
    for _ in range(tries):
        area = rng.uniform(*scale) * h * w
        aspect = rng.uniform(*ratio)
        eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if eh < h and ew < w:
            return rng.randint(0, h - eh), rng.randint(0, w - ew), eh, ew
    return None


def test_random_erasing_boxes_follow_the_authors_algorithm():
    n, h, w = 6000, 16, 12
    scale, ratio = (0.02, 0.4), (0.3, 1 / 0.3)
    box = RandomErasing(1.0, scale, ratio).sample_params((n, 3, h, w), gen(8))["box"].double()
    rng = random.Random(0)
    ref = torch.tensor([authors_erasing(h, w, rng, scale, ratio) for _ in range(n)]).double()
    # same distribution: the mean and spread of each coordinate agree within 4.5 standard errors
    for k, name in enumerate(("top", "left", "height", "width")):
        a, b = box[:, k], ref[:, k]
        se = math.sqrt(a.var() / n + b.var() / n)
        assert abs(a.mean() - b.mean()) < 4.5 * se, name
        assert abs(a.std() / b.std() - 1) < 0.06, name
    assert (box[:, 0] + box[:, 2] <= h).all() and (box[:, 1] + box[:, 3] <= w).all()
    assert (box[:, 2] < h).all() and (box[:, 3] < w).all()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("fill", ["zero", "noise", "mean"])
def test_random_erasing_fills_the_box_and_keeps_the_rest(fill, dtype):
    x = synthetic(400, 3, 16, 16)
    x = x if dtype == torch.uint8 else x.float() / 255
    mean = (0.2, 0.5, 0.8)
    pipe = make_pipeline([f"random_erasing(0.5, fill={fill!r})"], stats={"channel_mean": mean})
    y, params = pipe(x, gen(9), return_params=True)
    top, left, eh, ew = params[0]["box"].unbind(1)
    rows, cols = torch.arange(16)[None, :], torch.arange(16)[None, :]
    inside = ((rows >= top[:, None]) & (rows < (top + eh)[:, None]))[:, :, None] & (
        (cols >= left[:, None]) & (cols < (left + ew)[:, None])
    )[:, None, :]
    inside = inside[:, None].expand_as(x)
    erased = (eh > 0).double().mean().item()
    assert abs(erased - 0.5) < 4.5 * 0.5 / math.sqrt(400)
    assert torch.equal(y[~inside], x[~inside])
    white = 255.0 if dtype == torch.uint8 else 1.0
    values = y.double().div(white).permute(1, 0, 2, 3)[inside.permute(1, 0, 2, 3)]
    if fill == "zero":
        assert (values == 0).all()
    elif fill == "mean":
        expected = torch.tensor(mean, dtype=torch.float64)[:, None, None, None].expand(
            3, 400, 16, 16
        )
        want = expected[inside.permute(1, 0, 2, 3)]
        tolerance = 0.5 / 255 if dtype == torch.uint8 else 1e-7
        assert (values - want).abs().max() <= tolerance
    else:  # uniform noise: mean 1/2 (uint8: 127.5 / 255), standard deviation about 0.289
        assert abs(values.mean() - 0.5) < 0.01 and abs(values.std() - 0.2887) < 0.01


def test_random_erasing_probability_extremes():
    x = synthetic(64, 1, 16, 16)
    assert torch.equal(RandomErasing(0.0)(x, gen()), x)
    box = RandomErasing(1.0).sample_params(x.shape, gen())["box"]
    assert (box[:, 2] * box[:, 3] > 0).all()


def test_mean_fill_needs_the_data_mean():
    with pytest.raises(RegistryError, match="channel mean"):
        make_pipeline(["random_erasing(fill='mean')"])
    pipe = make_pipeline(["random_erasing(1.0, fill='mean', mean=(0.0, 1.0, 0.0))"])
    assert pipe.ops[0].mean == (0.0, 1.0, 0.0)


# ----------------------------------------------------------------------------- recipes


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("randaugment(n=-1)", "randaugment n"),
        ("randaugment(2, 31)", "randaugment m"),
        ("randaugment(2, 9.5)", "randaugment m"),
        ("trivialaugment(bins=1)", "trivialaugment bins"),
        ("random_erasing(p=2)", "random_erasing p"),
        ("random_erasing(scale=(0.5, 0.1))", "random_erasing scale"),
        ("random_erasing(ratio=(0, 2))", "random_erasing ratio"),
        ("random_erasing(fill='blue')", "random_erasing fill"),
        ("random_erasing(fill='mean', mean=(2, 0, 0))", "random_erasing mean"),
    ],
)
def test_recipe_load_refuses_bad_arguments_in_one_line(spec, needle):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"augment": {"train": ["hflip", spec]}}, where="r.toml")
    message = str(info.value)
    assert "\n" not in message and "augment.train" in message and needle in message


def test_recipe_load_accepts_the_new_augmentations():
    train = [
        "pad_crop(4)", "hflip", "randaugment(2, 9)", "trivialaugment",
        "random_erasing(0.25)", "random_erasing(fill='mean')",
    ]  # fmt: skip
    assert recipe_from_dict({"augment": {"train": train}}).augment.train == train
