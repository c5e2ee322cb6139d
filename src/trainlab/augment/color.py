"""Colour augmentations: jitter, random greyscale, PCA lighting, per image, on whole batches.

Jitter means what Pillow's ``ImageEnhance`` and torchvision's ``ColorJitter`` mean: each
operation is a blend ``x' = clamp(f x + (1 - f) d)`` of the image with a "degenerate" image ``d``,
clamped to [0, white] before the next operation starts. With grey ``g = w . x``,
``w = (0.299, 0.587, 0.114)`` (ITU-R BT.601):

- brightness ``f``: ``d = 0`` (blend with black);
- contrast ``f``: ``d = m``, the mean grey level of the image as it is at that point;
- saturation ``f``: ``d = g`` (blend with the greyscale image);
- hue ``h`` in [-0.5, 0.5]: rotate the HSV hue, ``H' = (H + h) mod 1``.

Pillow (``ImageEnhance``, ``Image.blend`` in libImaging/Blend.c) computes
``out = d + f (x - d)`` in float32, clips to [0, 255] when ``f`` is outside [0, 1] and truncates
to uint8 after every operation; its grey is ``convert("L")``, ``(19595 R + 38470 G + 7471 B +
2^15) >> 16`` (libImaging/Convert.c, the BT.601 weights in 16-bit fixed point), and Contrast's
``d`` is the mean of that grey image rounded to a level, ``int(mean + 0.5)``. uint8 images (the
data path: uint8 on the device until normalization) follow that arithmetic step by step: the
same float32 expression, the same grey and mean, each result truncated to a level before the
next operation (hue, not a Pillow operation, rounds to the nearest level), so the default
``jitter`` on uint8 images gives Pillow's own chain. Float images are not quantized: the same
blends with the decimal weights ``w``, exact up to float rounding.

Brightness, contrast and saturation are each an affine map ``x' = A x + t`` per image, so
without the intermediate clamps a chain of them composes into one 3x3 matrix and offset per
image. ``ColorJitter(fused=True)`` does that (one float pass, one clamp and, for uint8, one
rounding at the end, no quantization between operations); it differs from the definition
wherever an intermediate value leaves [0, white], e.g. a bright pixel pushed past white by
brightness 1.4 and pulled back by contrast 0.6 (docs/benchmarks.md measures how much on
CIFAR-10), and on uint8 by the levels Pillow's truncation drops. The default, ``fused=False``,
is the definition.

Single-channel images: grey is the channel itself, so saturation, greyscale and hue leave them
unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trainlab.augment._base import (
    LUMA,
    Augmentation,
    Params,
    bernoulli,
    blocks,
    channel_means,
    grey_weights,
    rand,
    randn,
    to_work,
    value_scale,
)
from trainlab.checks import check_probability

Affine = tuple[Tensor, Tensor]  # A (B, C, C), t (B, C)

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
SHARPNESS = 4  # ImageEnhance's fourth enhancer: not part of the jitter, used by RandAugment

# Images per block of the sequential jitter on the CPU: each block costs some 30 small tensor
# operations on per-image scalars, so blocks larger than the usual 64 pay off (3x32x32 float32
# images: 1.5 MB per block; 3.1 vs 3.9 us per image at 64, torch 2.13, one thread).
SEQUENTIAL_BLOCK = 128


def apply_affine(x: Tensor, affine: Affine, extra_offset: float = 0.0) -> Tensor:
    """``y[b] = A[b] x[b] + t[b] (+ extra_offset)`` over all pixels, one batched matmul."""
    a, t = affine
    if extra_offset:
        t = t + extra_offset
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    if flat.dtype != a.dtype:
        a, t = a.to(flat.dtype), t.to(flat.dtype)
    return torch.baddbmm(t[:, :, None], a, flat).reshape(b, c, h, w)


def compose_affine(first: Affine, second: Affine) -> Affine:
    """``second`` after ``first``: ``A2 (A1 x + t1) + t2``."""
    (a1, t1), (a2, t2) = first, second
    return a2 @ a1, (a2 @ t1[..., None]).squeeze(-1) + t2


def identity_affine(batch: int, channels: int, device: Any = None) -> Affine:
    eye = torch.eye(channels, device=device).expand(batch, channels, channels).clone()
    return eye, torch.zeros(batch, channels, device=device)


def hue_shift(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of RGB images in [0, 1] by ``shift[b]`` turns (exact HSV round trip).

    RGB -> HSV as in ``colorsys`` (Smith 1978, "Color gamut transform pairs"): ``V = max``,
    ``S V = max - min``, ``H`` piecewise from the ordering of R, G, B. Back with the closed form
    ``channel_n = V - S V clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 H) mod 6``, n = 5, 3, 1.
    """
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    h6 = torch.remainder(h + shift.to(x.dtype)[:, None, None], 1.0) * 6.0
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h6, 6.0)
        out.append(maxc - delta * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, dim=1)


def _factor_range(value: Any, name: str, centre: float = 1.0) -> tuple[float, float]:
    """``b`` -> ``[max(0, 1 - b), 1 + b]`` (torchvision); a pair is taken as the range itself."""
    if isinstance(value, tuple | list):
        if len(value) != 2 or not 0 <= value[0] <= value[1]:
            raise ValueError(f"{name} must be a number >= 0 or a range (low, high), got {value!r}")
        return float(value[0]), float(value[1])
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number >= 0 or a range (low, high), got {value!r}")
    return max(0.0, centre - value), centre + value


def _luma(channels: int, like: Tensor) -> Tensor:
    """``grey_weights`` in ``like``'s dtype, made from the decimal weights (exact in float64)."""
    if channels == 3:
        return torch.tensor(LUMA, dtype=like.dtype, device=like.device)
    return grey_weights(channels, like.device).to(like.dtype)


def _col(v: Tensor) -> Tensor:
    """A per-image scalar (B,) shaped to broadcast over (B, C, H, W)."""
    return v[:, None, None, None]


# Pillow's convert("L") weights, 16-bit fixed point (libImaging/Convert.c)
PILLOW_GREY = (19595.0, 38470.0, 7471.0)


def pillow_grey(z: Tensor) -> Tensor:
    """Pillow's grey level (B, 1, H, W) of images holding integer levels (B, C, H, W) in float.

    ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``, computed as ``floor(sum_c (w_c / 2^16) z_c +
    1/2)``: exact in float32, as every product and partial sum is an integer below 2^24 scaled by
    a power of two. Elementwise rather than a matmul, which may run in reduced precision (TF32,
    bfloat16) where ``torch.set_float32_matmul_precision`` allows it. One channel is its own grey.
    """
    if z.shape[1] == 1:
        return z
    wr, wg, wb = (w / 65536.0 for w in PILLOW_GREY)
    grey = torch.mul(z[:, 0:1], wr).add_(z[:, 1:2], alpha=wg).add_(z[:, 2:3], alpha=wb)
    return grey.add_(0.5).floor_()


def pillow_mean(grey: Tensor) -> Tensor:
    """Contrast's degenerate level per image, ``int(mean + 0.5)`` of the grey image, as (B,).

    ``floor((2 S + n) / 2n)`` for the sum ``S`` of ``n`` levels: in float32 while ``2 S + n``
    stays below 2^24 (then exact, and the quotient's rounding, under 2^-17, is smaller than its
    distance 1/2n to the next integer), else in int64. No float64, which some devices lack.
    """
    n = grey.shape[-1] * grey.shape[-2]
    if 511 * n < 2**24:
        total = grey.sum(dim=(1, 2, 3))
        return total.mul_(2.0).add_(n).div_(2.0 * n).floor_()
    total = grey.to(torch.int64).sum(dim=(1, 2, 3))
    return torch.div(2 * total + n, 2 * n, rounding_mode="floor").to(grey.dtype)


def pillow_smooth(z: Tensor) -> Tensor:
    """Pillow's ``filter(ImageFilter.SMOOTH)`` of integer levels (B, C, H, W) held in float.

    The 3x3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13`` (ImageFilter.SMOOTH), summed in
    float32 from an offset of 1/2 and truncated (libImaging/Filter.c), with the border rows and
    columns copied unchanged. With ``S`` the integer weighted sum that is
    ``floor((2 S + 13) / 26)``: ``S / 13 + 1/2`` is never within 1/26 of an integer, so the
    float32 rounding of Pillow's sum cannot change the level, nor can that of
    ``(S + 6.5) / 13``, computed here.
    """
    rows = z[..., :-2, :] + z[..., 1:-1, :]
    rows += z[..., 2:, :]  # in place: several times faster than a third fresh buffer on the CPU
    box = rows[..., :-2] + rows[..., 1:-1]
    box += rows[..., 2:]
    inner = box.add_(z[..., 1:-1, 1:-1], alpha=4.0).add_(6.5).div_(13.0).floor_()
    out = z.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def enhance_levels(z: Tensor, kind: int, factor: Tensor) -> Tensor:
    """Pillow's ``ImageEnhance`` on integer levels (B, C, H, W) held in float32, in place.

    ``kind`` is BRIGHTNESS (``d = 0``), CONTRAST (``d`` = the mean grey level), SATURATION
    (``ImageEnhance.Color``, ``d`` = the grey image) or SHARPNESS (``d`` = the SMOOTH-filtered
    image); ``factor`` (B,) is each image's ``f``. Returns ``clamp(d + f (z - d), 0, 255)``,
    Blend.c's float32 expression (a pixel equal to ``d`` stays ``d`` exactly), not yet
    truncated to a level. One channel is its own grey, so SATURATION leaves it unchanged, as
    Pillow does for mode "L".
    """
    f = _col(factor.to(z.device, torch.float32))
    if kind == BRIGHTNESS:  # d = 0, f >= 0: only white can be passed
        return z.mul_(f).clamp_max_(255.0)
    if kind == SATURATION and z.shape[1] == 1:
        return z
    if kind == SHARPNESS:
        d = pillow_smooth(z)
    else:
        grey = pillow_grey(z)
        d = _col(pillow_mean(grey)) if kind == CONTRAST else grey
    return z.sub_(d).mul_(f).add_(d).clamp_(0.0, 255.0)


class AffineColor(Augmentation):
    """A colour operation that is an affine map per image (see module docstring)."""

    kind = "affine"

    def affine(self, params: Params, means: Tensor, white: float) -> Affine:
        """The per-image map, given the images' current channel means (B, C) on [0, white]."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return finish_affine(x, self.affine(params, channel_means(x), value_scale(x)), x)


def truncate_levels(y: Tensor) -> Tensor:
    """Float values in [0, 256) truncated, as int32: the uint8 copy from int32 is several times
    faster than from float on the CPU (torch 2.x), for the same values."""
    return y.to(torch.int32)


def finish_affine(x: Tensor, affine: Affine, like: Tensor) -> Tensor:
    """``clamp(A x + t)`` in ``like``'s dtype; ``x`` may be uint8 (converted block by block).

    One float pass per block of images; uint8 rounding is folded into the offset (+0.5, then
    truncation), and the result is written straight into the output.
    """
    a, t = affine
    white = value_scale(like)
    if like.dtype == torch.uint8:
        t = t + 0.5
    out = torch.empty(x.shape, dtype=like.dtype, device=x.device)
    for part in blocks(x):
        y = apply_affine(to_work(x[part]), (a[part], t[part]))
        y = y.clamp_(0.0, white)
        out[part].copy_(truncate_levels(y) if like.dtype == torch.uint8 else y)
    return out


class ColorJitter(AffineColor):
    """Random brightness, contrast, saturation and hue (Howard 2013; torchvision ColorJitter).

    Factors are drawn per image, uniform in ``[max(0, 1 - b), 1 + b]`` (brightness, contrast,
    saturation; a pair gives the range) and ``[-hue, hue]`` for the hue shift (hue <= 0.5).
    Each operation is applied on its own and clamped to [0, white] before the next (the module
    docstring gives the definitions), on the whole batch at once. uint8 images are truncated to
    a level after each operation, as Pillow does; float images are not quantized.

    ``order="fixed"`` (the default) applies brightness, contrast, saturation, hue: the order in
    which Pillow users chain ``ImageEnhance`` and the order torchvision's ColorJitter lists; it is
    also the cheapest (operations whose range is the identity are skipped). ``order="random"``
    draws a permutation per image, as torchvision's ColorJitter does when it is called once per
    image in a Dataset (called on a batch, torchvision draws one permutation for the whole
    batch). ``fused=True`` composes brightness, contrast and saturation into one colour matrix
    per image and clamps once (faster, not the definition; see the module docstring).
    """

    def __init__(
        self,
        brightness: Any = 0.0,
        contrast: Any = 0.0,
        saturation: Any = 0.0,
        hue: Any = 0.0,
        order: str = "fixed",
        fused: bool = False,
    ):
        self.ranges = (
            _factor_range(brightness, "brightness"),
            _factor_range(contrast, "contrast"),
            _factor_range(saturation, "saturation"),
            self._hue_range(hue),
        )
        if order not in ("fixed", "random"):
            raise ValueError(f"order must be 'fixed' or 'random', got {order!r}")
        if not isinstance(fused, bool):
            raise ValueError(f"fused must be True or False, got {fused!r}")
        self.order, self.fused = order, fused
        identity = ((1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (0.0, 0.0))
        self.active = tuple(r != i for r, i in zip(self.ranges, identity, strict=True))
        self.has_hue = self.active[HUE]
        # only the fused form without hue is one affine map, which a pipeline may merge with
        # its affine neighbours (greyscale, PCA lighting)
        self.kind = "affine" if (self.fused and not self.has_hue) else "pixel"

    @staticmethod
    def _hue_range(hue: Any) -> tuple[float, float]:
        if isinstance(hue, tuple | list):
            lo, hi = (float(v) for v in hue)
        elif isinstance(hue, int | float) and not isinstance(hue, bool) and hue >= 0:
            lo, hi = -float(hue), float(hue)
        else:
            lo, hi = 1.0, 0.0  # fails below
        if not -0.5 <= lo <= hi <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] or a range within [-0.5, 0.5], got {hue!r}")
        return lo, hi

    def __repr__(self) -> str:
        return f"ColorJitter(ranges={self.ranges}, order={self.order!r}, fused={self.fused})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        b = batch_shape[0]
        u = rand((b, 4), generator, device)
        lo = torch.tensor([r[0] for r in self.ranges], device=u.device)
        hi = torch.tensor([r[1] for r in self.ranges], device=u.device)
        factors = lo + (hi - lo) * u
        if self.order == "random":
            order = rand((b, 4), generator, device).argsort(dim=1)
        else:
            order = torch.arange(4, device=u.device).expand(b, 4).clone()
        return {"factors": factors, "order": order}

    def identity_params(self, batch_shape, device=None) -> Params:
        b = batch_shape[0]
        factors = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device).expand(b, 4).clone()
        return {"factors": factors, "order": torch.arange(4, device=device).expand(b, 4).clone()}

    # -- one position of the chain as an affine map ----------------------------------------

    @staticmethod
    def _position_affine(op: Tensor, factors: Tensor, means: Tensor) -> Affine:
        """Each image's own operation ``op[b]`` as ``(A, t)``, given its channel means (B, C).

        Brightness ``f I``; contrast ``f I`` and ``t = (1 - f) (w . mu) 1``; saturation
        ``f I + (1 - f) 1 w^T``; hue (not affine) is the identity here.
        """
        b, c = means.shape
        w = _luma(c, means)
        f = factors.gather(1, op[:, None]).squeeze(1).to(means.dtype)
        f = torch.where(op == HUE, torch.ones_like(f), f)
        fb = f[:, None, None]
        eye = torch.eye(c, device=means.device, dtype=means.dtype)
        sat = fb * eye + (1 - fb) * w.expand(c, c)
        a = torch.where((op == SATURATION)[:, None, None], sat, fb * eye)
        grey = means @ w
        t = torch.where(op == CONTRAST, (1 - f) * grey, torch.zeros_like(f))
        return a, t[:, None].expand(b, c)

    def affine(self, params: Params, means: Tensor, white: float) -> Affine:
        """The fused map: every linear operation composed, no intermediate clamp."""
        means = means.float()
        factors, order = params["factors"].to(means.device), params["order"].to(means.device)
        a, t = identity_affine(means.shape[0], means.shape[1], means.device)
        for k in range(4):
            current = (a @ means[..., None]).squeeze(-1) + t  # channel means after the chain
            a, t = compose_affine((a, t), self._position_affine(order[:, k], factors, current))
        return a, t

    # -- application ------------------------------------------------------------------------

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if x.shape[1] not in (1, 3):
            raise ValueError(f"colour jitter needs 1 or 3 channels, got C={x.shape[1]}")
        if self.fused:
            return self._apply_fused(x, params)
        levels = x.dtype == torch.uint8
        out = torch.empty_like(x)
        for part in blocks(x, SEQUENTIAL_BLOCK):
            sub = {k: v[part] for k, v in params.items()}
            if self.order == "random":
                y = self._random(x[part], sub, levels)
            elif levels:
                y = self._fixed_levels(x[part], sub)
            else:
                y = self._fixed(x[part], sub)
            out[part].copy_(truncate_levels(y) if levels else y)
        return out

    def _steps(self, channels: int) -> list[int]:
        """The active operations in the fixed order; one channel has no saturation or hue."""
        return [k for k in range(4) if self.active[k] and (channels == 3 or k < SATURATION)]

    def _fixed_levels(self, x: Tensor, params: Params) -> Tensor:
        """uint8: Pillow's arithmetic, operation by operation (see the module docstring).

        Each blend is ``d + f (z - d)`` in float32, as Blend.c writes it (so a pixel equal to
        ``d`` stays ``d`` exactly), clamped, and floored to a level; the last floor is the
        truncating conversion to uint8 in ``apply``.
        """
        f = params["factors"].to(x.device, torch.float32)
        z = x.to(torch.float32)
        steps = self._steps(x.shape[1])
        for k in steps:
            if k == HUE:  # always last; rounded to the nearest level by the conversion
                return hue_shift(z.div_(255.0), f[:, HUE]).mul_(255.0).add_(0.5).clamp_(0, 255)
            enhance_levels(z, k, f[:, k])
            if k != steps[-1]:
                z.floor_()
        return z

    def _fixed(self, x: Tensor, params: Params) -> Tensor:
        """Float images: brightness, contrast, saturation, hue in that order, each clamped.

        Brightness and contrast scale every channel by one factor ``f >= 0`` and shift it, so
        the image is carried as ``y = s z + u`` (per-image scalars ``s``, ``u``) and the clamp
        of ``y`` to [0, W] is the clamp of ``z`` to ``[-u / s, (W - u) / s]``: the same values,
        without a pass for the scaling. Saturation, ``y' = f y + (1 - f) (w . y)``, takes ``s``
        and ``u`` in (``w`` sums to 1).
        """
        white = value_scale(x)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        b, c, h, w = x.shape
        f = params["factors"].to(x.device, dtype)
        luma = _luma(c, f)
        s = torch.ones(b, device=x.device, dtype=dtype)
        u = torch.zeros_like(s)
        lazy = False  # whether y = s z + u still has to be applied to z
        z = None  # the float working copy, made by the first pass that needs it
        steps = self._steps(c)
        for k in steps:
            if k in (BRIGHTNESS, CONTRAST):
                fk = f[:, k]
                shift = 0.0
                if k == CONTRAST:  # blend with the mean grey of the image as it is now
                    means = (x if z is None else z).to(dtype).mean(dim=(2, 3))
                    shift = (1 - fk) * (s * (means @ luma) + u)
                s, u = fk * s, fk * u + shift
                # y in [0, W] <=> z in [-u / s, (W - u) / s]. A factor of 0 makes y the constant
                # u, already in [0, W] (0 after brightness, the mean after contrast): the bounds
                # 1e30 wide leave z as it is.
                inv = 1.0 / s.clamp_min(1e-30)
                hi = ((white - u) * inv).view(-1, 1, 1, 1)
                # tensor-bound clamp_ is not vectorized; maximum/minimum are
                z = torch.minimum(x.to(dtype), hi) if z is None else torch.minimum(z, hi, out=z)
                torch.maximum(z, (-u * inv).view(-1, 1, 1, 1), out=z)
                lazy = True
            elif k == SATURATION:
                if z is None:
                    z = x.to(dtype, copy=True)
                fs = f[:, SATURATION]
                grey = (luma @ z.reshape(b, c, h * w)).reshape(b, 1, h, w)
                grey.mul_(_col((1 - fs) * s)).add_(_col(u))
                z.mul_(_col(fs * s)).add_(grey).clamp_(0.0, white)
                s, u, lazy = torch.ones_like(s), torch.zeros_like(u), False
                continue
            else:  # hue is last
                if z is None:
                    z = x.to(dtype, copy=True)
                if lazy:
                    z.mul_(_col(s)).add_(_col(u)).clamp_(0.0, white)
                    lazy = False
                z = hue_shift(z.div_(white), f[:, HUE]).mul_(white).clamp_(0.0, white)
                continue
            if k == steps[-1]:
                z.mul_(s.view(-1, 1, 1, 1)).add_(u.view(-1, 1, 1, 1)).clamp_(0.0, white)
        return x.to(dtype, copy=True) if z is None else z

    def _random(self, x: Tensor, params: Params, levels: bool) -> Tensor:
        """A permutation per image: at position k each image applies its own ``order[b, k]``.

        Every position is the blend ``d + f (y - d)`` with the image's own ``d`` (0, the mean
        grey, the grey image; hue has ``f = 1``); uint8 (``levels``) quantizes as
        ``_fixed_levels`` does.
        """
        white = value_scale(x)
        y = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32, copy=True)
        f = params["factors"].to(x.device, y.dtype)
        order = params["order"].to(x.device)
        b, c = y.shape[:2]
        hue = self.has_hue and c == 3
        luma = _luma(c, y)
        for k in range(4):
            op = order[:, k]
            fk = f.gather(1, op[:, None]).squeeze(1)
            fk = torch.where(op == HUE, torch.ones_like(fk), fk)
            if levels:
                grey = pillow_grey(y)
                mean = pillow_mean(grey)
            else:
                grey = (luma @ y.reshape(b, c, -1)).reshape(b, 1, *y.shape[2:])
                mean = grey.mean(dim=(1, 2, 3))
            flat = torch.where(op == CONTRAST, mean, torch.zeros_like(mean))
            d = torch.where(_col(op == SATURATION), grey, _col(flat))
            y.sub_(d).mul_(_col(fk)).add_(d).clamp_(0.0, white)
            if levels:
                y.floor_()
            if hue:
                at = op == HUE  # a few images per position; boolean indexing keeps it exact
                z = hue_shift(y[at].div_(white), f[at, HUE]).mul_(white)
                y[at] = z.add_(0.5).floor_().clamp_(0.0, white) if levels else z.clamp_(0, white)
        return y

    def _apply_fused(self, x: Tensor, params: Params) -> Tensor:
        """One colour matrix per image, clamped once; with hue, the maps before and after it."""
        white, means = value_scale(x), channel_means(x)
        if not self.has_hue or x.shape[1] == 1:
            return finish_affine(x, self.affine(params, means, white), x)
        factors, order = params["factors"].to(x.device), params["order"].to(x.device)
        hue_at = (order == HUE).to(torch.uint8).argmax(dim=1)
        b = x.shape[0]

        def chain(means: Tensor, before: bool) -> Affine:
            a, t = identity_affine(b, means.shape[1], x.device)
            for k in range(4):
                keep = (k < hue_at) if before else (k > hue_at)
                op = torch.where(keep, order[:, k], HUE)
                current = (a @ means[..., None]).squeeze(-1) + t
                a, t = compose_affine((a, t), self._position_affine(op, factors, current))
            return a, t

        y = apply_affine(to_work(x).float(), chain(means, True)).clamp_(0, white)
        y = hue_shift(y / white, factors[:, HUE]).mul_(white)
        return finish_affine(y, chain(y.mean(dim=(2, 3)), False), x)


class RandomGrayscale(AffineColor):
    """Replace each image by its grey level ``g = w . x`` in every channel, with probability p."""

    def __init__(self, p: float = 0.1):
        self.p = check_probability(p)

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        return {"grey": bernoulli(batch_shape[0], self.p, generator, device)}

    def identity_params(self, batch_shape, device=None) -> Params:
        return {"grey": torch.zeros(batch_shape[0], dtype=torch.bool, device=device)}

    def affine(self, params: Params, means: Tensor, white: float) -> Affine:
        b, c = means.shape
        eye, offset = identity_affine(b, c, means.device)
        grey = grey_weights(c, means.device)[None, :].expand(c, c)  # every row is w
        use = params["grey"].to(means.device)[:, None, None]
        return torch.where(use, grey, eye), offset


class PCALighting(AffineColor):
    """PCA colour augmentation (Krizhevsky et al. 2012, "ImageNet classification with deep CNNs").

    Adds ``V (alpha * lambda)`` to every pixel, ``alpha_i ~ N(0, std^2)`` per image, where
    ``V[:, i]`` and ``lambda_i`` are the eigenvectors (columns) and eigenvalues of the data set's
    RGB covariance on the [0, 1] scale (``trainlab.preprocess``). The noise covariance is
    ``V diag(lambda^2 std^2) V^T``. uint8 images get the noise times 255.
    """

    def __init__(self, std: float = 0.1, eigvals: Any = None, eigvecs: Any = None):
        if isinstance(std, bool) or not isinstance(std, int | float) or std < 0:
            raise ValueError(f"std must be a number >= 0, got {std!r}")
        if eigvals is None or eigvecs is None:
            raise ValueError(
                "pca_lighting needs the data set's eigvals (C,) and eigvecs (C, C): "
                "pass them, or stats= to make_pipeline"
            )
        vals = torch.as_tensor(eigvals, dtype=torch.float32)
        vecs = torch.as_tensor(eigvecs, dtype=torch.float32)
        if vals.dim() != 1 or vecs.shape != (vals.numel(), vals.numel()):
            raise ValueError(
                f"eigvals must be (C,) and eigvecs (C, C), got {tuple(vals.shape)} "
                f"and {tuple(vecs.shape)}"
            )
        self.std, self.eigvals, self.eigvecs = float(std), vals, vecs

    def __repr__(self) -> str:
        return f"PCALighting(std={self.std}, eigvals={self.eigvals.tolist()})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        return {
            "alpha": randn((batch_shape[0], self.eigvals.numel()), generator, device) * self.std
        }

    def identity_params(self, batch_shape, device=None) -> Params:
        return {"alpha": torch.zeros(batch_shape[0], self.eigvals.numel(), device=device)}

    def noise(self, params: Params, white: float = 1.0) -> Tensor:
        """The per-image RGB offset (B, C): ``white * V (alpha * lambda)``."""
        alpha = params["alpha"]
        vals, vecs = self.eigvals.to(alpha.device), self.eigvecs.to(alpha.device)
        return white * (alpha * vals) @ vecs.T

    def affine(self, params: Params, means: Tensor, white: float) -> Affine:
        b, c = means.shape
        if c != self.eigvals.numel():
            raise ValueError(f"pca_lighting has {self.eigvals.numel()} channels, images have {c}")
        eye, _ = identity_affine(b, c, means.device)
        return eye, self.noise(params, white).to(means.device)


def eigen_from_stats(stats: Any) -> tuple[Tensor, Tensor]:
    """Find the covariance eigenvalues and eigenvectors in a statistics object.

    Accepts a pair ``(eigvals, eigvecs)``, a mapping, or an object (e.g.
    ``trainlab.preprocess.DatasetStats``) with one attribute whose name holds "eigval"/"eigenval"
    and one with "eigvec"/"eigenvec".
    """
    if isinstance(stats, tuple | list) and len(stats) == 2:
        return torch.as_tensor(stats[0]), torch.as_tensor(stats[1])
    fields = (
        dict(stats)
        if isinstance(stats, dict)
        else {k: getattr(stats, k) for k in dir(stats) if not k.startswith("_")}
    )
    found: dict[str, Any] = {}
    for key, value in fields.items():
        low = key.lower()
        for want, marks in (("vals", ("eigval", "eigenval")), ("vecs", ("eigvec", "eigenvec"))):
            if any(m in low for m in marks) and not callable(value):
                found.setdefault(want, value)
    if set(found) != {"vals", "vecs"}:
        raise ValueError(
            f"cannot find covariance eigenvalues and eigenvectors in {type(stats).__name__}: "
            "expected fields named like 'eigvals' and 'eigvecs', or a pair (eigvals, eigvecs)"
        )
    return torch.as_tensor(found["vals"]), torch.as_tensor(found["vecs"])
