"""RandAugment and TrivialAugment (wide): random operations per image, on whole uint8 batches.

RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation with a
reduced search space") applies N operations one after another, each drawn uniformly from the 14
below, all at one magnitude M. TrivialAugment (Mueller & Hutter 2021, "TrivialAugment:
Tuning-free yet state-of-the-art data augmentation") applies one operation, drawn uniformly, at
a magnitude drawn uniformly from the bins, over the "wide" ranges. Signed operations (marked +-)
take a random sign. Every image draws its own operations, magnitude bins and signs.

The operations and their magnitude at the last of 31 bins, as torchvision's
``_augmentation_space`` defines them (torchvision/transforms/autoaugment.py, the de-facto
reference of both papers' spaces); bin ``k`` holds ``k / 30`` of it (float32 ``linspace``):

    operation       Pillow operation (m = the signed magnitude)   RandAugment   wide
    identity        none
    shear_x +-      transform(AFFINE, (1, m, 0, 0, 1, 0))          0.3           0.99
    shear_y +-      transform(AFFINE, (1, 0, 0, m, 1, 0))          0.3           0.99
    translate_x +-  transform(AFFINE, (1, 0, -int(m), 0, 1, 0))    150/331 W     32 pixels
    translate_y +-  transform(AFFINE, (1, 0, 0, 0, 1, -int(m)))    150/331 H     32 pixels
    rotate +-       rotate(m) degrees about the centre             30            135
    brightness +-   ImageEnhance.Brightness(1 + m)                 0.9           0.99
    color +-        ImageEnhance.Color(1 + m)                      0.9           0.99
    contrast +-     ImageEnhance.Contrast(1 + m)                   0.9           0.99
    sharpness +-    ImageEnhance.Sharpness(1 + m)                  0.9           0.99
    posterize       ImageOps.posterize(bits), bits at bin k:       8 - round(k / 7.5)
                                                                   (8 to 4)      8 - round(k / 5)
                                                                                 (8 to 2)
    solarize        ImageOps.solarize(threshold)                   255 (1 - k / 30), both
    autocontrast    ImageOps.autocontrast
    equalize        ImageOps.equalize

Geometric operations sample the nearest pixel and fill with 0 (torchvision's defaults); the
shears are about the top-left corner, as in AutoAugment and torchvision. Each operation is
Pillow's, level for level, on uint8 images with 1 channel (mode "L", where color is the
identity) or 3 (RGB): the affine transforms reproduce Pillow's 16.16 fixed-point nearest
neighbour (libImaging/Geometry.c, ``affine_fixed``; Pillow moves pure translations with
``ImagingScaleAffine`` and turns a square image by 90 degrees with a transpose, which give the
same pixels), the enhancers reuse the colour jitter's
Pillow arithmetic (:mod:`trainlab.augment.color`), and posterize, solarize, autocontrast and
equalize build Pillow's lookup tables per image and channel.

On a batch the images are sorted by the operation they drew and each operation runs once, on
its contiguous slice (the five geometric operations together, as one affine gather); one host
synchronisation per round reads how many images drew each operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainlab.augment import color
from trainlab.augment._base import Augmentation, Params, check_images, rand
from trainlab.checks import check_int

OPS = (
    "identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate",
    "brightness", "color", "contrast", "sharpness",
    "posterize", "solarize", "autocontrast", "equalize",
)  # fmt: skip
(IDENTITY, SHEAR_X, SHEAR_Y, TRANSLATE_X, TRANSLATE_Y, ROTATE, BRIGHTNESS, COLOR, CONTRAST,
 SHARPNESS, POSTERIZE, SOLARIZE, AUTOCONTRAST, EQUALIZE) = range(len(OPS))  # fmt: skip
GEOMETRIC = range(SHEAR_X, ROTATE + 1)
SIGNED = range(SHEAR_X, SHARPNESS + 1)  # the operations whose magnitude takes a random sign
ENHANCERS = {
    BRIGHTNESS: color.BRIGHTNESS,
    COLOR: color.SATURATION,
    CONTRAST: color.CONTRAST,
    SHARPNESS: color.SHARPNESS,
}
# operations applied together on one slice of the sorted batch: the geometric ones are one gather
GROUPS = [(IDENTITY,), tuple(GEOMETRIC), *((k,) for k in range(BRIGHTNESS, len(OPS)))]


@dataclass(frozen=True)
class MagnitudeSpace:
    """Each operation's magnitude at the last bin (torchvision's ``_augmentation_space``)."""

    shear: float
    translate: float  # pixels, or a fraction of the image's width (x) and height (y)
    translate_relative: bool
    rotate: float  # degrees
    enhance: float  # the factor is 1 + m
    posterize: int  # bits removed at the last bin


RANDAUGMENT_SPACE = MagnitudeSpace(0.3, 150.0 / 331.0, True, 30.0, 0.9, 4)
WIDE_SPACE = MagnitudeSpace(0.99, 32.0, False, 135.0, 0.99, 6)


def magnitude_table(space: MagnitudeSpace, bins: int, hw: tuple[int, int]) -> Tensor:
    """(14, bins) float64: each operation's unsigned magnitude at each bin, for H x W images.

    torchvision's values: float32 ``linspace(0, top, bins)``, posterize's bits
    ``8 - round(k / ((bins - 1) / removed))`` and solarize's threshold ``linspace(255, 0, bins)``.
    """
    h, w = hw
    table = torch.zeros(len(OPS), bins)
    table[SHEAR_X] = table[SHEAR_Y] = torch.linspace(0.0, space.shear, bins)
    tx, ty = (space.translate * w, space.translate * h) if space.translate_relative else (
        space.translate, space.translate)  # fmt: skip
    table[TRANSLATE_X] = torch.linspace(0.0, tx, bins)
    table[TRANSLATE_Y] = torch.linspace(0.0, ty, bins)
    table[ROTATE] = torch.linspace(0.0, space.rotate, bins)
    for k in ENHANCERS:
        table[k] = torch.linspace(0.0, space.enhance, bins)
    table[POSTERIZE] = 8 - (torch.arange(bins) / ((bins - 1) / space.posterize)).round()
    table[SOLARIZE] = torch.linspace(255.0, 0.0, bins)
    return table.double()


# --------------------------------------------------------------------------- geometry


def rotation_data(degrees: float, hw: tuple[int, int]) -> tuple[float, ...]:
    """Pillow's AFFINE data for ``Image.rotate(degrees)`` (counter-clockwise, about the centre
    ``(W / 2, H / 2)``, same size): the inverse rotation, its cosine and sine rounded to 15
    decimals as Image.rotate rounds them."""
    h, w = hw
    cx, cy = w / 2.0, h / 2.0
    angle = -math.radians(degrees % 360.0)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    return (cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy)


def affine_data(op: int, magnitude: float, hw: tuple[int, int]) -> tuple[float, ...]:
    """Pillow's AFFINE data ``(a, b, c, d, e, f)`` of a geometric operation: output pixel
    ``(x, y)`` (column, row) reads input ``(a x + b y + c, d x + e y + f)``."""
    if op == SHEAR_X:
        return (1.0, magnitude, 0.0, 0.0, 1.0, 0.0)
    if op == SHEAR_Y:
        return (1.0, 0.0, 0.0, magnitude, 1.0, 0.0)
    if op == TRANSLATE_X:  # torchvision truncates the shift to whole pixels
        return (1.0, 0.0, -float(int(magnitude)), 0.0, 1.0, 0.0)
    if op == TRANSLATE_Y:
        return (1.0, 0.0, 0.0, 0.0, 1.0, -float(int(magnitude)))
    if op == ROTATE:
        return rotation_data(magnitude, hw)
    return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def fixed_point(data: Tensor) -> Tensor:
    """Pillow's 16.16 fixed-point form (B, 6) int32 of AFFINE data (B, 6) float64:
    ``FIX(a), FIX(b), FIX(c + a/2 + b/2), FIX(d), FIX(e), FIX(f + d/2 + e/2)`` with
    ``FIX(v) = floor(v 65536 + 1/2)`` (libImaging/Geometry.c, ``affine_fixed``), in float64 as
    Pillow computes it; the constant terms move the map to pixel centres."""
    a, b, c, d, e, f = data.to(torch.float64).unbind(-1)
    terms = torch.stack((a, b, c + a * 0.5 + b * 0.5, d, e, f + d * 0.5 + e * 0.5), dim=-1)
    return torch.floor(terms * 65536.0 + 0.5).int()


def affine_fixed(x: Tensor, fixed: Tensor) -> Tensor:
    """Pillow's fixed-point nearest-neighbour affine transform, fill 0, of every image.

    ``fixed`` (B, 6) is :func:`fixed_point` of the AFFINE data: output pixel ``(x, y)`` reads
    input ``(X >> 16, Y >> 16)`` with ``X = fixed[2] + x fixed[0] + y fixed[1]`` and ``Y =
    fixed[5] + x fixed[3] + y fixed[4]``, or 0 outside the image. int32, as Pillow's own
    arithmetic (which it uses while every mapped corner is within 32768 pixels). One gather.
    """
    b, c, h, w = x.shape
    k = fixed.to(x.device)[:, :, None, None].unbind(1)  # six (B, 1, 1)
    cols = torch.arange(w, device=x.device, dtype=torch.int32)[None, None, :]
    rows = torch.arange(h, device=x.device, dtype=torch.int32)[None, :, None]
    # (B, 1, W) + (B, H, 1): one full-size pass per coordinate; a coordinate outside the image
    # is clamped to -1 or the size, which a one-pixel zero border turns into the fill
    src_x = (k[2] + cols * k[0]) + rows * k[1]
    src_y = (k[5] + cols * k[3]) + rows * k[4]
    src_x = src_x.bitwise_right_shift_(16).clamp_(-1, w)
    src_y = src_y.bitwise_right_shift_(16).clamp_(-1, h)
    index = torch.add(src_x, src_y, alpha=w + 2).add_(w + 3).reshape(b, 1, h * w).long()
    planes = F.pad(x, (1, 1, 1, 1)).reshape(b, c, (h + 2) * (w + 2))
    return planes.gather(2, index.expand(b, c, h * w)).reshape(b, c, h, w)


def pillow_affine(x: Tensor, data: Tensor) -> Tensor:
    """``Image.transform(size, AFFINE, data[b], NEAREST, fillcolor=0)`` for every image:
    ``data`` (B, 6) holds Pillow's inverse map per image (see :func:`affine_data`)."""
    return affine_fixed(x, fixed_point(data))


# --------------------------------------------------------------------------- lookup tables


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """``ImageOps.posterize``: keep the top ``bits[b]`` bits (1-8) of every level, ``x & mask``."""
    drop = (8 - bits.to(x.device).long()).view(-1, 1, 1, 1)
    return x & ((255 >> drop) << drop).to(torch.uint8)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """``ImageOps.solarize``: levels at or above ``threshold[b]`` become ``255 - level``."""
    at_least = torch.ceil(threshold.to(x.device, torch.float64)).clamp(0, 256).view(-1, 1, 1, 1)
    flip = x >= at_least.clamp(max=255).to(torch.uint8)
    # 255 - v is v ^ 255 on uint8; a threshold above 255 flips nothing
    flip = flip.view(torch.uint8).mul_((at_least <= 255).to(torch.uint8)).neg_()
    return x ^ flip


def apply_tables(x: Tensor, tables: Tensor) -> Tensor:
    """``out[b, c] = tables[b, c][x[b, c]]``: a 256-level lookup table per image and channel."""
    b, c = x.shape[:2]
    base = torch.arange(0, b * c * 256, 256, device=x.device, dtype=torch.int32).view(b, c, 1, 1)
    return tables.reshape(-1).index_select(0, x.int().add_(base).reshape(-1)).view(x.shape)


def autocontrast(x: Tensor) -> Tensor:
    """``ImageOps.autocontrast`` per image and channel: levels lo..hi stretched to 0..255.

    Pillow's table, ``int(v scale + offset)`` with ``scale = 255 / (hi - lo)``, ``offset = -lo
    scale``, in float64 as Python computes it; a flat channel (``hi <= lo``) is left as it is.
    """
    lo = x.amin(dim=(2, 3)).double()[..., None]
    hi = x.amax(dim=(2, 3)).double()[..., None]
    flat = hi <= lo
    # a true division: ``255.0 / t`` is 255 times the reciprocal, an ulp off Python's quotient
    scale = torch.full_like(lo, 255.0).div_(torch.where(flat, 1.0, hi - lo))
    levels = torch.arange(256, device=x.device, dtype=torch.float64)
    table = (levels * scale).add_(-lo * scale).clamp_(0.0, 255.0)
    table = torch.where(flat, levels, table).to(torch.uint8)
    return apply_tables(x, table)


def equalize(x: Tensor) -> Tensor:
    """``ImageOps.equalize`` per image and channel (Pillow 13's table).

    With the channel's histogram ``h`` over ``n`` pixels and ``top`` its highest level,
    ``step = (n - h[top]) // 255`` and level ``i`` maps to ``(step // 2 + h[0] + ... +
    h[i - 1]) // step``, at most 255. A channel with ``step = 0`` (which includes a channel of
    one level, where ``h[top] = n``) is unchanged.
    """
    b, c, h, w = x.shape
    base = torch.arange(0, b * c * 256, 256, device=x.device, dtype=torch.int32).view(b, c, 1, 1)
    counts = x.int().add_(base).reshape(-1).bincount(minlength=b * c * 256).view(b, c, 256)
    step = (h * w - counts.gather(2, x.amax(dim=(2, 3)).long()[..., None])) // 255
    before = counts.cumsum(2).sub_(counts).add_(step // 2)
    table = before.div_(step.clamp(min=1), rounding_mode="floor").clamp_(max=255)
    table = torch.where(step == 0, torch.arange(256, device=x.device), table)
    return apply_tables(x, table.to(torch.uint8))


def enhance(x: Tensor, op: int, factor: Tensor) -> Tensor:
    """Pillow's ``ImageEnhance`` ``op`` (brightness, color, contrast, sharpness) with factor
    ``factor[b]`` on uint8 images: :func:`trainlab.augment.color.enhance_levels`, truncated to
    a level as Pillow's blend does."""
    z = color.enhance_levels(x.to(torch.float32), ENHANCERS[op], factor)
    return color.truncate_levels(z).to(torch.uint8)


def pillow_op(image: Any, op: int, magnitude: float) -> Any:
    """Operation ``op`` with signed ``magnitude`` done by Pillow on one PIL image, as
    torchvision's ``_apply_op`` calls Pillow: the reference the batched forms are checked
    against (tests/test_augment_auto.py) and timed against (benchmarks/bench_augment.py)."""
    from PIL import Image, ImageEnhance, ImageOps

    m = magnitude
    data = {  # written out here, not taken from affine_data, so that the check is independent
        SHEAR_X: (1, m, 0, 0, 1, 0),
        SHEAR_Y: (1, 0, 0, m, 1, 0),
        TRANSLATE_X: (1, 0, -int(m), 0, 1, 0),
        TRANSLATE_Y: (1, 0, 0, 0, 1, -int(m)),
    }
    if op in data:
        return image.transform(
            image.size, Image.Transform.AFFINE, data[op], Image.Resampling.NEAREST
        )
    if op == ROTATE:
        return image.rotate(m, resample=Image.Resampling.NEAREST, fillcolor=0)
    enhancers = {
        BRIGHTNESS: ImageEnhance.Brightness,
        COLOR: ImageEnhance.Color,
        CONTRAST: ImageEnhance.Contrast,
        SHARPNESS: ImageEnhance.Sharpness,
    }
    if op in enhancers:
        return enhancers[op](image).enhance(1.0 + m)
    if op == POSTERIZE:
        return ImageOps.posterize(image, int(m))
    if op == SOLARIZE:
        return ImageOps.solarize(image, m)
    if op == AUTOCONTRAST:
        return ImageOps.autocontrast(image)
    return ImageOps.equalize(image) if op == EQUALIZE else image.copy()


# --------------------------------------------------------------------------- the augmentations


def apply_sorted(x: Tensor, op: Tensor, magnitude: Tensor, fixed: Tensor, counts: list[int]):
    """Apply to each image of ``x``, in place, its operation ``op[b]`` with signed
    ``magnitude[b]`` and affine ``fixed[b]`` (:func:`fixed_point`); the images are sorted by
    ``op``, ``counts[k]`` of them drew operation k, so each operation runs on one slice."""
    start = 0
    for group in GROUPS:
        stop = start + sum(counts[k] for k in group)
        part, m, k = x[start:stop], magnitude[start:stop], group[0]
        if stop == start or k == IDENTITY:
            pass
        elif k == SHEAR_X:  # every geometric operation: one affine gather
            part.copy_(affine_fixed(part, fixed[start:stop]))
        elif k in ENHANCERS:
            part.copy_(enhance(part, k, 1.0 + m))
        elif k == POSTERIZE:
            part.copy_(posterize(part, m))
        elif k == SOLARIZE:
            part.copy_(solarize(part, m))
        elif k == AUTOCONTRAST:
            part.copy_(autocontrast(part))
        else:
            part.copy_(equalize(part))
        start = stop


class RandomOps(Augmentation):
    """Operations drawn per image from :data:`OPS` (see the module docstring), ``rounds`` in
    turn. Parameters per image and round: ``op`` (index into OPS), ``level`` (magnitude bin)
    and ``negate`` (the sign of signed operations)."""

    kind = "pixel"

    def __init__(self, space: MagnitudeSpace, bins: int, rounds: int):
        self.space, self.bins, self.rounds = space, bins, rounds
        self._tables: dict[tuple[int, int, str], tuple[Tensor, Tensor]] = {}

    def draw_levels(self, u: Tensor) -> Tensor:
        """Each image's magnitude bin per round from uniforms ``u`` (B, rounds)."""
        raise NotImplementedError

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        u = rand((batch_shape[0], self.rounds, 3), generator, device)
        op = (u[..., 0] * len(OPS)).long().clamp_(max=len(OPS) - 1)
        return {"op": op, "level": self.draw_levels(u[..., 1]), "negate": u[..., 2] < 0.5}

    def identity_params(self, batch_shape, device=None) -> Params:
        zeros = torch.zeros(batch_shape[0], self.rounds, dtype=torch.long, device=device)
        return {"op": zeros, "level": zeros.clone(), "negate": zeros.bool()}

    def tables(self, hw: tuple[int, int], device: Any) -> tuple[Tensor, Tensor]:
        """For H x W images: the (14, bins) magnitudes and the (14, bins, 2, 6) fixed-point
        affine maps (:func:`fixed_point`), by operation, bin and sign (+, -)."""
        key = (*hw, str(device))
        if key not in self._tables:
            mags = magnitude_table(self.space, self.bins, hw)
            data = torch.tensor(
                [[[affine_data(k, s * m, hw) for s in (1.0, -1.0)] for m in row.tolist()]
                 for k, row in enumerate(mags)],
                dtype=torch.float64,
            )  # fmt: skip
            self._tables[key] = (mags.to(device), fixed_point(data).to(device))
        return self._tables[key]

    def magnitudes(self, params: Params, hw: tuple[int, int]) -> Tensor:
        """The signed magnitude (B, rounds) each image drew, in its operation's units."""
        mags, _ = self.tables(hw, params["op"].device)
        op, negate = params["op"], params["negate"]
        signed = negate & (op >= SIGNED.start) & (op < SIGNED.stop)
        return mags[op, params["level"]] * torch.where(signed, -1.0, 1.0).double()

    def apply(self, x: Tensor, params: Params) -> Tensor:
        check_images(x)
        if x.dtype != torch.uint8 or x.shape[1] not in (1, 3):
            raise TypeError(
                f"{self!r} works on uint8 images with 1 or 3 channels (Pillow's L and RGB), "
                f"got {x.dtype} with C={x.shape[1]}"
            )
        hw, batch = (x.shape[2], x.shape[3]), x.shape[0]
        _, fixed = self.tables(hw, x.device)
        op, level = params["op"].to(x.device), params["level"].to(x.device)
        negate = params["negate"].to(x.device)
        magnitude = self.magnitudes({"op": op, "level": level, "negate": negate}, hw)
        # each round sorts the batch by operation; ``where[i]`` is image i's current row
        where = torch.arange(batch, device=x.device)
        for r in range(self.rounds):
            order = torch.argsort(op[:, r], stable=True)  # the image at each sorted row
            # index_select, not x[rows]: many times faster for uint8 rows on the CPU
            x = x.index_select(0, where[order])
            where = torch.empty_like(order).scatter_(0, order, torch.arange(batch, device=x.device))
            counts = torch.bincount(op[:, r], minlength=len(OPS)).tolist()  # the one sync
            k, lv, sign = op[order, r], level[order, r], negate[order, r].long()
            apply_sorted(x, k, magnitude[order, r], fixed[k, lv, sign], counts)
        return x.index_select(0, where)


class RandAugment(RandomOps):
    """RandAugment (Cubuk et al. 2020): ``n`` operations per image in turn, each drawn uniformly
    from the 14 of :data:`OPS` (identity included), all at magnitude level ``m``, each signed
    operation with a random sign. ``m`` is on the linear 0-30 scale (``bins = 31`` levels) of
    the paper's magnitude studies and of torchvision (ResNet-50 on ImageNet: N = 2, M = 9,
    torchvision's defaults; the paper's text also describes AutoAugment's 0-10 levels, which
    are M / 3 here). uint8 images only."""

    def __init__(self, n: int = 2, m: int = 9, bins: int = 31):
        check_int(bins, "randaugment bins (magnitude levels)", 2)
        check_int(n, "randaugment n (operations per image)", 1)
        check_int(m, "randaugment m (magnitude level)", 0, bins - 1)
        super().__init__(RANDAUGMENT_SPACE, bins, n)
        self.n, self.m = n, m

    def __repr__(self) -> str:
        return f"RandAugment(n={self.n}, m={self.m}, bins={self.bins})"

    def draw_levels(self, u: Tensor) -> Tensor:
        return torch.full(u.shape, self.m, dtype=torch.long, device=u.device)


class TrivialAugmentWide(RandomOps):
    """TrivialAugment (Mueller & Hutter 2021), wide space: one operation per image, drawn
    uniformly from the 14 of :data:`OPS`, at a magnitude bin drawn uniformly from ``bins``, with
    a random sign where the operation is signed. No parameter to tune. uint8 images only."""

    def __init__(self, bins: int = 31):
        check_int(bins, "trivialaugment bins (magnitude levels)", 2)
        super().__init__(WIDE_SPACE, bins, 1)

    def __repr__(self) -> str:
        return f"TrivialAugmentWide(bins={self.bins})"

    def draw_levels(self, u: Tensor) -> Tensor:
        return (u * self.bins).long().clamp_(max=self.bins - 1)
