"""Geometric augmentations: translations, flips, crops and rescaling, per image, on whole batches.

Index operations (pad-and-crop, flips) give per image the input row of every output row and the
input column of every output column (``-1`` reads zero); maps compose, so a chain of them is one
gather on the uint8 batch (:func:`gather_maps`). Rescaling operations give a box per image,
read by one bilinear ``F.grid_sample`` (:func:`resample_boxes`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainlab.augment._base import (
    Augmentation,
    Params,
    bernoulli,
    check_size,
    from_work,
    rand,
    to_work,
)
from trainlab.checks import check_choice, check_int, check_number, check_probability

Maps = tuple[Tensor, Tensor]  # rows (B, H_out), cols (B, W_out); long, -1 = zero


# --------------------------------------------------------------------------- index maps


def compose_maps(first: Maps, second: Maps) -> Maps:
    """Maps of ``second`` applied after ``first``: out[i] reads first[second[i]]."""

    def chain(a: Tensor, b: Tensor) -> Tensor:
        picked = a.gather(1, b.clamp(min=0))
        return torch.where(b >= 0, picked, -1)

    return chain(first[0], second[0]), chain(first[1], second[1])


def gather_maps(x: Tensor, maps: Maps, zero_fill: bool = True) -> Tensor:
    """Read ``out[b, c, i, j] = x[b, c, rows[b, i], cols[b, j]]`` (0 where an index is -1).

    Separable, so two cheap steps in the input's dtype (uint8 stays uint8): ``index_select`` of
    whole image rows, then a ``gather`` of columns whose index is shared by every row. With
    ``zero_fill`` a one-pixel zero border is added first and -1 points into it; without, no
    index may be -1.
    """
    rows, cols = maps
    b, c = x.shape[:2]
    ho, wo = rows.shape[1], cols.shape[1]
    if zero_fill:
        x, rows, cols = F.pad(x, (1, 1, 1, 1)), rows + 1, cols + 1
    h, w = x.shape[-2:]
    planes = torch.arange(b * c, device=x.device).reshape(b, c, 1) * h
    picked = x.reshape(b * c * h, w).index_select(0, (planes + rows[:, None, :]).reshape(-1))
    out = picked.reshape(b, c * ho, w).gather(2, cols[:, None, :].expand(b, c * ho, wo))
    return out.reshape(b, c, ho, wo)


def _pad_index(src: Tensor, size: int, mode: str) -> Tensor:
    """Where a coordinate of a padded image reads from the unpadded one (-1 = zero padding)."""
    if mode == "zero":
        return torch.where((src >= 0) & (src < size), src, -1)
    if mode == "replicate":
        return src.clamp(0, size - 1)
    # reflect without repeating the edge, as F.pad(mode="reflect"): -1 -> 1, size -> size - 2
    src = src.abs()
    return torch.where(src >= size, 2 * (size - 1) - src, src)


class IndexAugmentation(Augmentation):
    """An augmentation that is a per-image separable pixel copy (see module docstring)."""

    kind = "index"
    zero_fill = False  # True when the maps can hold -1

    def index_maps(self, params: Params, hw: tuple[int, int]) -> Maps:
        raise NotImplementedError

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return gather_maps(x, self.index_maps(params, x.shape[-2:]), self.zero_fill)


class PadCrop(IndexAugmentation):
    """Random translation: pad by ``pad`` on every side, then crop back to H x W at random.

    ``out[i, j] = padded[i + dy, j + dx]`` with ``dy, dx ~ U{0, ..., 2 pad}`` per image, which is
    a shift by up to ``pad`` pixels. Padding is ``"zero"`` (Krizhevsky et al. 2012; He et al. 2016,
    CIFAR), ``"reflect"`` (mirror without repeating the edge) or ``"replicate"``. The padded image
    is never built: rows and columns are mapped back into the original (index clamping/reflection).
    """

    def __init__(self, pad: int = 4, mode: str = "zero"):
        check_int(pad, "pad", 0)
        check_choice(mode, "mode", ("zero", "reflect", "replicate"))
        self.pad, self.mode = pad, mode
        self.zero_fill = mode == "zero"

    def __repr__(self) -> str:
        return f"PadCrop({self.pad}, mode={self.mode!r})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        n = 2 * self.pad + 1
        shift = (rand((batch_shape[0], 2), generator, device) * n).long().clamp_(max=n - 1)
        return {"dy": shift[:, 0], "dx": shift[:, 1]}

    def identity_params(self, batch_shape, device=None) -> Params:
        centre = torch.full((batch_shape[0],), self.pad, dtype=torch.long, device=device)
        return {"dy": centre, "dx": centre.clone()}

    def index_maps(self, params: Params, hw: tuple[int, int]) -> Maps:
        h, w = hw
        if self.mode == "reflect" and self.pad >= min(h, w):
            raise ValueError(f"reflect padding needs pad < image size, got pad={self.pad}, {h}x{w}")
        dev = params["dy"].device
        src_rows = torch.arange(h, device=dev)[None] + (params["dy"] - self.pad)[:, None]
        src_cols = torch.arange(w, device=dev)[None] + (params["dx"] - self.pad)[:, None]
        return _pad_index(src_rows, h, self.mode), _pad_index(src_cols, w, self.mode)


class _Flip(IndexAugmentation):
    """Mirror each image with probability ``p`` (drawn per image)."""

    axis = 1  # 0 = rows (vertical flip), 1 = columns (horizontal flip)

    def __init__(self, p: float = 0.5):
        self.p = check_probability(p)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        return {"flip": bernoulli(batch_shape[0], self.p, generator, device)}

    def identity_params(self, batch_shape, device=None) -> Params:
        return {"flip": torch.zeros(batch_shape[0], dtype=torch.bool, device=device)}

    def index_maps(self, params: Params, hw: tuple[int, int]) -> Maps:
        flip = params["flip"]
        maps = [torch.arange(n, device=flip.device).expand(flip.shape[0], n) for n in hw]
        maps[self.axis] = torch.where(flip[:, None], maps[self.axis].flip(1), maps[self.axis])
        return maps[0], maps[1]


class HFlip(_Flip):
    """Horizontal flip ``out[i, j] = x[i, W - 1 - j]``, probability p (Krizhevsky et al. 2012)."""

    axis = 1


class VFlip(_Flip):
    """Vertical flip ``out[i, j] = x[H - 1 - i, j]``, probability p (aerial, medical images)."""

    axis = 0


def hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image of a (B, C, H, W) batch left-right with probability ``p``: :class:`HFlip`
    as a function, the ``transform(x, generator)`` a loader takes; the dtype is kept."""
    return HFlip(p)(x, generator)


def centre_offsets(hw: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the centred ``size`` crop (rounded as torchvision does)."""
    (h, w), (ch, cw) = hw, size
    if ch > h or cw > w:
        raise ValueError(f"crop size {ch}x{cw} is larger than the image, {h}x{w}")
    return int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))


def center_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The centred ``size`` crop of every image (a view, no copy)."""
    return CenterCrop(size).apply(x, {})


def five_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The four corner crops and the centre crop: (5, B, C, h, w), order TL, TR, BL, BR, centre.

    The multi-crop test of Krizhevsky et al. (2012): average predictions over these views.
    """
    ch, cw = check_size(size)
    h, w = x.shape[-2:]
    centre = center_crop(x, (ch, cw))
    return torch.stack([x[..., :ch, :cw], x[..., :ch, w - cw :], x[..., h - ch :, :cw],
                        x[..., h - ch :, w - cw :], centre])  # fmt: skip


def ten_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """:func:`five_crop` of the image and of its horizontal mirror: (10, B, C, h, w)."""
    return torch.cat([five_crop(x, size), five_crop(x.flip(-1), size)])


# --------------------------------------------------------------------------- resampling


def resample_boxes(x: Tensor, boxes: Tensor, out_hw: tuple[int, int]) -> Tensor:
    """Bilinear resampling of each image's box ``(top, left, height, width)`` to ``out_hw``.

    Output pixel centre ``(i + 1/2)`` maps to ``top + (i + 1/2) * height / H_out`` in the input,
    the pixel-centre convention of ``F.interpolate(align_corners=False)``; one ``F.grid_sample``
    reads every image's box (a per-image axis-aligned affine grid). No antialiasing: shrinking by
    more than 2x aliases, as torchvision's tensor resize did before ``antialias=True``.
    """
    b, _, h, w = x.shape
    ho, wo = out_hw
    boxes = boxes.to(device=x.device, dtype=torch.float32)
    top, left, bh, bw = boxes.unbind(1)
    centres_y = torch.arange(ho, device=x.device, dtype=torch.float32) + 0.5
    centres_x = torch.arange(wo, device=x.device, dtype=torch.float32) + 0.5
    src_y = top[:, None] + centres_y[None] * (bh / ho)[:, None]  # pixel-edge coordinates
    src_x = left[:, None] + centres_x[None] * (bw / wo)[:, None]
    grid_y = (2 * src_y / h - 1)[:, :, None].expand(b, ho, wo)
    grid_x = (2 * src_x / w - 1)[:, None, :].expand(b, ho, wo)
    grid = torch.stack((grid_x, grid_y), dim=-1)
    work = to_work(x)
    if not work.dtype.is_floating_point or work.dtype == torch.float64:
        work = work.float()
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return from_work(out, x)


class _BoxAugmentation(Augmentation):
    """Crop a box per image and resample it to a fixed ``size``."""

    kind = "pixel"

    def __init__(self, size: int | tuple[int, int]):
        self.size = check_size(size)

    def output_hw(self, hw):
        return self.size

    def identity_params(self, batch_shape, device=None) -> Params:
        h, w = batch_shape[-2:]
        if (h, w) != self.size:
            raise ValueError(
                f"{self!r} changes the image size ({h}x{w} -> {self.size[0]}x{self.size[1]}), "
                "so it cannot be skipped per image: use p=1"
            )
        full = torch.tensor([0.0, 0.0, h, w], device=device)
        return {"box": full.expand(batch_shape[0], 4).clone()}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return resample_boxes(x, params["box"], self.size)


class CenterCrop(_BoxAugmentation):
    """Deterministic centre crop to ``size`` (the single-view test-time crop); a view, no copy."""

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        return {}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        top, left = centre_offsets(x.shape[-2:], self.size)
        return x[..., top : top + self.size[0], left : left + self.size[1]]


class RandomResizedCrop(_BoxAugmentation):
    """Inception-style crop (Szegedy et al. 2015, "Going deeper with convolutions").

    Per image: area fraction ``s ~ U[scale]``, aspect ratio ``r`` log-uniform in ``ratio``; the box
    is ``w = round(sqrt(s H W r))``, ``h = round(sqrt(s H W / r))`` at a uniform position, then
    resized to ``size`` (bilinear). ``tries`` candidates are drawn per image at once and the first
    that fits is kept; if none fits, the whole image is used, cropped centrally to the nearest
    allowed aspect ratio (torchvision's fallback).
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        tries: int = 10,
    ):
        super().__init__(size)
        for name, pair in (("scale", scale), ("ratio", ratio)):
            if len(pair) != 2:
                raise ValueError(f"{name} must be a pair (low, high), got {pair!r}")
            low = check_number(pair[0], f"{name} low", 0, lo_open=True)
            check_number(pair[1], f"{name} high", low)
        check_int(tries, "tries")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.tries = tries

    def __repr__(self) -> str:
        return f"RandomResizedCrop({self.size}, scale={self.scale}, ratio={self.ratio})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        b, (h, w), k = batch_shape[0], batch_shape[-2:], self.tries
        draws = rand((b, k, 4), generator, device).double()
        area = h * w * (self.scale[0] + (self.scale[1] - self.scale[0]) * draws[..., 0])
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * draws[..., 1])
        cw = torch.round(torch.sqrt(area * aspect))
        chh = torch.round(torch.sqrt(area / aspect))
        fits = (cw > 0) & (cw <= w) & (chh > 0) & (chh <= h)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting candidate

        def pick(t: Tensor) -> Tensor:
            return t.gather(1, first).squeeze(1)

        ch_, cw_ = pick(chh), pick(cw)
        top = torch.floor(pick(draws[..., 2]) * (h - ch_ + 1))
        left = torch.floor(pick(draws[..., 3]) * (w - cw_ + 1))
        box = torch.stack((top, left, ch_, cw_), dim=1)
        box = torch.where(fits.any(dim=1, keepdim=True), box, self._fallback(h, w, box.device))
        return {"box": box.float()}

    def _fallback(self, h: int, w: int, device: Any) -> Tensor:
        aspect = w / h
        if aspect < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif aspect > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            ch, cw = h, w
        top, left = (h - ch) // 2, (w - cw) // 2
        return torch.tensor([top, left, ch, cw], dtype=torch.float64, device=device)


class ScaleAug(_BoxAugmentation):
    """Scale augmentation (Simonyan & Zisserman 2014; He et al. 2016).

    Per image the shorter side is resized to ``L ~ U{min_size, ..., max_size}`` and a random
    ``crop x crop`` window is taken from the resized image. Done as one resampling from the
    original: the window is the box ``(top / s, left / s, crop / s, crop / s)`` with
    ``s = L / min(H, W)`` and ``top ~ U{0, ..., round(H s) - crop}`` (likewise ``left``).
    """

    def __init__(self, min_size: int = 256, max_size: int = 480, crop: int = 224):
        for name, v in (("min_size", min_size), ("max_size", max_size), ("crop", crop)):
            check_int(v, name)
        if not crop <= min_size <= max_size:
            raise ValueError(
                f"need crop <= min_size <= max_size, got crop={crop}, "
                f"min_size={min_size}, max_size={max_size}"
            )
        super().__init__(crop)
        self.min_size, self.max_size, self.crop = min_size, max_size, crop

    def __repr__(self) -> str:
        return f"ScaleAug({self.min_size}, {self.max_size}, {self.crop})"

    def sample_params(self, batch_shape, generator, device=None) -> Params:
        b, (h, w) = batch_shape[0], batch_shape[-2:]
        draws = rand((b, 3), generator, device).double()
        n_sizes = self.max_size - self.min_size + 1
        side = self.min_size + (draws[:, 0] * n_sizes).floor().clamp(max=n_sizes - 1)
        s = side / min(h, w)
        room_y = torch.round(h * s) - self.crop
        room_x = torch.round(w * s) - self.crop
        top = (draws[:, 1] * (room_y + 1)).floor().clamp(max=room_y)
        left = (draws[:, 2] * (room_x + 1)).floor().clamp(max=room_x)
        box = torch.stack((top / s, left / s, self.crop / s, self.crop / s), dim=1)
        return {"box": box.float(), "side": side.long()}

    skippable = False  # it rescales every image
    identity_params = Augmentation.identity_params
