"""Batch-level mixes: mixup, CutMix and Cutout, with a registry the training engine calls.

* **Mixup** (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"):
  ``x = lam * x_i + (1 - lam) * x_j``, ``t = lam * t_i + (1 - lam) * t_j``, ``lam ~ Beta(a, a)``.
* **CutMix** (Yun et al. 2019, "CutMix"): paste a box of area fraction ``1 - lam`` from the
  partner image, with sides ``H * sqrt(1 - lam)`` and ``W * sqrt(1 - lam)`` and a centre uniform
  over the image, clipped to it; the targets are mixed by the pixel fractions actually used.
* **Cutout** (DeVries & Taylor 2017, "Improved Regularization of CNNs with Cutout"): blank
  square boxes of side ``size`` centred uniformly over the image (clipped at the borders).

Train vs eval: these are batch transforms like data augmentation. They are random in training
and *not applied* at test time, where the model sees clean inputs. The "eval output equals the
expected train output" rule cannot hold for the inputs (the expected mixup of a batch is not the
clean batch), so what trainlab guarantees is about the labels: targets are mixed with exactly the
weights used for the pixels (for CutMix, the pixel fraction actually pasted, after clipping), so
a mixed input's target is the label mix of its pixels; Cutout leaves labels untouched. Tests
check this pixel/target consistency and the expected target ``E[lam] t_i + E[1 - lam] t_perm``.

Randomness: every draw comes from the ``generator`` the caller passes, on the generator's device,
and the parameters are moved to the data's device. Per-sample parameters are drawn as whole
tensors. Partners are a seeded permutation of the batch, so any batch size works (odd, or 1,
where an image is mixed with itself and nothing changes).

Every mix returns ``(x, targets, params)`` with float32 soft targets (B, K) whose rows sum to 1,
so the loss path is always :func:`~trainlab.regularize.smoothing.soft_target_cross_entropy`.
None of them smooths labels; label smoothing is a separate, explicit option (smoothing.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from trainlab.checks import check_probability
from trainlab.errors import RegistryError
from trainlab.registry import Registry
from trainlab.regularize.smoothing import as_soft_targets

__all__ = [
    "MIXES",
    "CutMix",
    "Cutout",
    "Mix",
    "MixParams",
    "Mixup",
    "NoMix",
    "box_masks",
    "boxes_from_centres",
    "cutmix",
    "cutout",
    "mixup",
    "sample_beta",
    "sample_gamma",
]

_CANDIDATES = 16


# --------------------------------------------------------------------------------------------
# Gamma and Beta draws that honour an explicit generator
# --------------------------------------------------------------------------------------------


def _sample_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps the rejection test exact for large shapes; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _log_gamma_at_least_one(shape: float, n: int, generator: torch.Generator) -> Tensor:
    """log of Gamma(shape, 1) draws, shape >= 1, by Marsaglia & Tsang (2000).

    ``d = shape - 1/3``, ``c = 1 / sqrt(9 d)``, ``v = (1 + c z)^3`` with ``z ~ N(0, 1)``; accept
    ``d v`` when ``log u < z^2 / 2 + d - d v + d log v``. Each draw takes the first accepted of
    ``_CANDIDATES`` proposals drawn at once, which is exactly rejection sampling, with a fixed
    use of the generator's stream and no host sync (no "are we done yet?" loop on the GPU).
    Acceptance is above 95 % for shape >= 1, so all proposals are rejected with probability
    below 0.05 ** 16 ~ 1e-21 per draw; that draw then keeps its first proposal.
    """
    device = generator.device
    dtype = _sample_dtype(device)
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    z = torch.randn((_CANDIDATES, n), generator=generator, dtype=dtype, device=device)
    u = torch.rand((_CANDIDATES, n), generator=generator, dtype=dtype, device=device)
    v = (1.0 + c * z) ** 3
    log_v = torch.log(v.clamp_min(torch.finfo(dtype).tiny))
    accept = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * log_v)
    first = accept.to(torch.uint8).argmax(dim=0, keepdim=True)  # argmax returns the first max
    return math.log(d) + log_v.gather(0, first).squeeze(0)


def _log_gamma(shape: float, n: int, generator: torch.Generator) -> Tensor:
    """log Gamma(shape, 1) draws for any shape > 0.

    For shape < 1 uses ``Gamma(a) = Gamma(a + 1) * U^(1/a)`` (Marsaglia & Tsang 2000, sec. 7),
    kept in log space because ``U^(1/a)`` underflows for small ``a`` (mixup's alpha = 0.2).
    """
    if shape >= 1.0:
        return _log_gamma_at_least_one(shape, n, generator)
    log_g = _log_gamma_at_least_one(shape + 1.0, n, generator)
    u = 1.0 - torch.rand(n, generator=generator, dtype=log_g.dtype, device=log_g.device)
    return log_g + torch.log(u) / shape


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise RegistryError(f"{name} must be a number > 0, got {value!r}")
    if not math.isfinite(value):
        raise RegistryError(f"{name} must be finite, got {value!r}")
    return float(value)


def sample_gamma(shape: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws from Gamma(shape, scale=1) on the generator's device.

    ``torch.distributions`` cannot take a generator, so this implements Marsaglia & Tsang (2000)
    with ``torch.randn``/``torch.rand`` drawing from ``generator``.
    """
    shape = _check_positive("Gamma shape", shape)
    return torch.exp(_log_gamma(shape, n, generator))


def sample_beta(alpha: float, beta: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws from Beta(alpha, beta) on the generator's device.

    ``X / (X + Y)`` with ``X ~ Gamma(alpha)``, ``Y ~ Gamma(beta)``, computed as
    ``sigmoid(log X - log Y)``: exact in log space, so small shapes (draws piled against 0 and
    1, where both gammas underflow) never give 0/0.
    """
    alpha = _check_positive("alpha", alpha)
    beta = _check_positive("beta", beta)
    log_x = _log_gamma(alpha, n, generator)
    log_y = _log_gamma(beta, n, generator)
    return torch.sigmoid(log_x - log_y)


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixParams:
    """What a mix did, for tests, logging and users.

    lam:   (B,) float32 weight of each sample's own image and target (1 = untouched).
    perm:  (B,) int64 partner index of each sample (``x[perm]`` was mixed in), or None.
    boxes: int64 boxes ``(top, left, bottom, right)`` with exclusive bottom/right, already
           clipped to the image: (B, 4) for CutMix, (B, count, 4) for Cutout, else None. An empty
           box has ``top == bottom`` or ``left == right``.
    """

    lam: Tensor
    perm: Tensor | None = None
    boxes: Tensor | None = None


def _check_batch(x: Tensor, y: Tensor) -> None:
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must share the batch dimension, got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )


def _check_image(x: Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what} expects images of shape (B, C, H, W), got {tuple(x.shape)}")


def _permutation(batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randperm(batch, generator=generator, device=generator.device).to(device)


def _lam_draw(alpha: float, batch: int, per_sample: bool, generator: torch.Generator) -> Tensor:
    """(B,) lambdas: one per sample, or one per batch expanded."""
    lam = sample_beta(alpha, alpha, batch if per_sample else 1, generator).to(torch.float32)
    return lam.expand(batch) if not per_sample else lam


def _mix_targets(t: Tensor, lam: Tensor, perm: Tensor) -> Tensor:
    lam = lam.to(t.device, t.dtype)[:, None]
    return lam * t + (1.0 - lam) * t[perm]


def _as_float_image(x: Tensor) -> Tensor:
    # Stored images are uint8; a convex blend is not an integer, so it leaves on the [0, 1]
    # scale the normalizer expects of float inputs (architecture.md, "Images").
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if not x.is_floating_point():
        raise ValueError(f"mixup expects uint8 or floating-point inputs, got {x.dtype}")
    return x


# --------------------------------------------------------------------------------------------
# Mixup
# --------------------------------------------------------------------------------------------


def mixup(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    alpha: float,
    generator: torch.Generator,
    per_sample: bool = False,
) -> tuple[Tensor, Tensor, MixParams]:
    """Mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[perm]`` and the same for targets.

    ``lam ~ Beta(alpha, alpha)``, one per batch (the paper) or one per sample (``per_sample``);
    ``perm`` is a seeded permutation of the batch. ``x`` may have any shape (B, ...); uint8 inputs
    come back as float32 on the [0, 1] scale, float inputs keep their dtype. ``y`` is class
    indices (B,) or soft targets (B, K); the returned targets are float32 (B, K).

    ``alpha`` must be > 0 (``alpha = 0`` would mean "off": use the ``"none"`` mix instead). Not
    applied at test time (see the module docstring for how the train/eval rule reads here).
    """
    alpha = _check_positive("mixup alpha", alpha)
    _check_batch(x, y)
    targets = as_soft_targets(y, num_classes)
    batch = x.shape[0]
    lam = _lam_draw(alpha, batch, per_sample, generator).to(x.device)
    perm = _permutation(batch, generator, x.device)
    xf = _as_float_image(x)
    lam_x = lam.to(xf.dtype).view(batch, *([1] * (x.dim() - 1)))
    mixed = lam_x * xf + (1.0 - lam_x) * xf[perm]
    return mixed, _mix_targets(targets, lam, perm), MixParams(lam=lam, perm=perm)


# --------------------------------------------------------------------------------------------
# Boxes: CutMix and Cutout
# --------------------------------------------------------------------------------------------


def boxes_from_centres(
    cy: Tensor, cx: Tensor, box_h: Tensor, box_w: Tensor, height: int, width: int
) -> Tensor:
    """Boxes of size ``box_h x box_w`` centred at integer pixels ``(cy, cx)``, clipped to the image.

    Returns int64 ``(..., 4)`` rows ``(top, left, bottom, right)`` with exclusive bottom/right;
    ``top = cy - box_h // 2`` so an unclipped box has exactly the requested size. A box reaching
    past a border is cut there, as in both papers, so it may be smaller than requested.
    """
    top = cy - box_h // 2
    left = cx - box_w // 2
    bottom = top + box_h
    right = left + box_w
    boxes = torch.stack([top, left, bottom, right], dim=-1)
    limits = torch.tensor([height, width, height, width], device=boxes.device)
    return torch.minimum(boxes.clamp_min(0), limits)


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """Boolean masks (..., H, W), True inside each box, built by broadcasting comparisons."""
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    top, left, bottom, right = (boxes[..., i, None] for i in range(4))
    in_rows = (rows >= top) & (rows < bottom)
    in_cols = (cols >= left) & (cols < right)
    return in_rows[..., :, None] & in_cols[..., None, :]


def _union(masks: Tensor) -> Tensor:
    """(B, count, H, W) -> (B, H, W). A loop over the few boxes per image, not over samples:
    ``Tensor.any(dim=1)`` takes a slow reduction path on bool and costs ~20x more."""
    union = masks[:, 0]
    for k in range(1, masks.shape[1]):
        union = union | masks[:, k]
    return union


def _box_areas(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _centres(
    n: Sequence[int], height: int, width: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor]:
    cy = torch.randint(0, height, tuple(n), generator=generator, device=generator.device)
    cx = torch.randint(0, width, tuple(n), generator=generator, device=generator.device)
    return cy.to(device), cx.to(device)


# --------------------------------------------------------------------------------------------
# CutMix
# --------------------------------------------------------------------------------------------


def cutmix(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    alpha: float,
    generator: torch.Generator,
    per_sample: bool = False,
    correct_lambda: bool = True,
) -> tuple[Tensor, Tensor, MixParams]:
    """CutMix (Yun et al. 2019): paste a box of ``x[perm]`` into ``x``; mix targets by area.

    ``lam ~ Beta(alpha, alpha)``; the box has sides ``round(H sqrt(1 - lam))`` and
    ``round(W sqrt(1 - lam))`` and a centre uniform over the pixels, clipped to the image.
    With ``correct_lambda`` (default) the target weight is the pixel fraction actually kept,
    ``lam = 1 - box_area / (H W)``, so targets match pixels even when a box is clipped; without
    it the drawn lam is used (as some implementations do). One lam and box per batch (the
    paper) or one per sample (``per_sample``), all drawn as tensors. ``x`` is (B, C, H, W) of
    any dtype (pixels are copied, never blended); targets come back float32 (B, K).
    Not applied at test time (see the module docstring).
    """
    alpha = _check_positive("cutmix alpha", alpha)
    _check_image(x, "cutmix")
    _check_batch(x, y)
    targets = as_soft_targets(y, num_classes)
    batch, _, height, width = x.shape
    n = batch if per_sample else 1
    lam = sample_beta(alpha, alpha, n, generator).to(x.device)
    cut = torch.sqrt(1.0 - lam)
    box_h = torch.round(height * cut).long()
    box_w = torch.round(width * cut).long()
    cy, cx = _centres((n,), height, width, generator, x.device)
    boxes = boxes_from_centres(cy, cx, box_h, box_w, height, width).expand(batch, 4)
    perm = _permutation(batch, generator, x.device)
    if correct_lambda:
        lam = 1.0 - _box_areas(boxes).to(torch.float32) / (height * width)
    lam = lam.to(torch.float32).expand(batch)
    inside = box_masks(boxes, height, width)[:, None]  # (B, 1, H, W)
    mixed = torch.where(inside, x[perm], x)
    return mixed, _mix_targets(targets, lam, perm), MixParams(lam=lam, perm=perm, boxes=boxes)


# --------------------------------------------------------------------------------------------
# Cutout
# --------------------------------------------------------------------------------------------

_FILLS = ("zero", "mean", "noise")


def _check_cutout_args(size: int, count: int, fill: str, p: float, mean: object) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RegistryError(f"cutout size must be an integer >= 1 (pixels), got {size!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise RegistryError(f"cutout count must be an integer >= 1, got {count!r}")
    if fill not in _FILLS:
        raise RegistryError(f"cutout fill must be one of {', '.join(_FILLS)}, got {fill!r}")
    check_probability(p, "cutout probability p")
    if fill == "mean" and mean is None:
        raise RegistryError("cutout fill='mean' needs the per-channel data mean: pass mean=(...)")


def _fill_values(
    x: Tensor, fill: str, mean: Sequence[float] | Tensor | None, generator: torch.Generator
) -> Tensor | float:
    """What blanked pixels become, broadcastable to x, on x's scale."""
    if fill == "zero":
        return 0
    if fill == "mean":
        m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(-1)
        if m.numel() not in (1, x.shape[1]):
            raise RegistryError(f"cutout mean needs {x.shape[1]} channel values, got {m.numel()}")
        # Statistics live on the [0, 1] scale (architecture.md); uint8 data is 255 times that.
        if x.dtype == torch.uint8:
            m = (m * 255.0).round().clamp(0, 255)
        return m.to(x.dtype).view(1, -1, 1, 1)
    if x.dtype == torch.uint8:
        noise = torch.randint(
            0, 256, x.shape, generator=generator, device=generator.device, dtype=torch.uint8
        )
    else:
        noise = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device)


def cutout(
    x: Tensor,
    size: int,
    generator: torch.Generator,
    count: int = 1,
    fill: str = "zero",
    p: float = 1.0,
    mean: Sequence[float] | Tensor | None = None,
) -> tuple[Tensor, MixParams]:
    """Cutout (DeVries & Taylor 2017): blank ``count`` squares of side ``size`` per image.

    Centres are uniform over the pixels, so a square near a border is clipped (the paper's
    choice: it lets the network also see images with less removed). Each image is cut with
    probability ``p``; for the others the boxes are empty. ``fill``: ``'zero'``; ``'mean'``, the
    per-channel data mean given on the [0, 1] scale (scaled to 0..255 for uint8 data); or
    ``'noise'``, uniform noise from the generator (0..255 for uint8, [0, 1) for float).
    Works on (B, C, H, W) uint8 or float and keeps the dtype. Returns the images and
    ``MixParams(lam=1, boxes=(B, count, 4))``. Not applied at test time.
    """
    _check_cutout_args(size, count, fill, p, mean)
    _check_image(x, "cutout")
    batch, _, height, width = x.shape
    cy, cx = _centres((batch, count), height, width, generator, x.device)
    side = torch.full_like(cy, size)
    boxes = boxes_from_centres(cy, cx, side, side, height, width)
    if p < 1.0:
        keep = torch.rand(batch, generator=generator, device=generator.device) < p
        boxes = boxes * keep.to(x.device)[:, None, None]  # skipped images get empty boxes
    inside = _union(box_masks(boxes, height, width))[:, None]  # (B, 1, H, W)
    filled = torch.where(inside, _fill_values(x, fill, mean, generator), x)
    lam = torch.ones(batch, dtype=torch.float32, device=x.device)
    return filled, MixParams(lam=lam, boxes=boxes)


# --------------------------------------------------------------------------------------------
# Registry: one interface for the training engine
# --------------------------------------------------------------------------------------------


class Mix:
    """A configured mix: ``mix(x, y, num_classes, generator) -> (x, soft_targets, params)``.

    The engine calls it on training batches only; evaluation uses clean inputs.
    """

    def __call__(
        self, x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, MixParams]:
        raise NotImplementedError


class NoMix(Mix):
    """No mix: the batch as it is, targets as one-hot float32 rows."""

    def __call__(self, x, y, num_classes, generator):
        _check_batch(x, y)
        lam = torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
        return x, as_soft_targets(y, num_classes), MixParams(lam=lam)

    def __repr__(self) -> str:
        return "none"


class Mixup(Mix):
    """Mixup (Zhang et al. 2018) with ``lam ~ Beta(alpha, alpha)``; see :func:`mixup`."""

    def __init__(self, alpha: float, per_sample: bool = False):
        self.alpha = _check_positive("mixup alpha", alpha)
        self.per_sample = bool(per_sample)

    def __call__(self, x, y, num_classes, generator):
        return mixup(x, y, num_classes, self.alpha, generator, self.per_sample)

    def __repr__(self) -> str:
        return f"mixup({self.alpha}, per_sample={self.per_sample})"


class CutMix(Mix):
    """CutMix (Yun et al. 2019) with ``lam ~ Beta(alpha, alpha)``; see :func:`cutmix`."""

    def __init__(self, alpha: float, per_sample: bool = False, correct_lambda: bool = True):
        self.alpha = _check_positive("cutmix alpha", alpha)
        self.per_sample = bool(per_sample)
        self.correct_lambda = bool(correct_lambda)

    def __call__(self, x, y, num_classes, generator):
        return cutmix(
            x, y, num_classes, self.alpha, generator, self.per_sample, self.correct_lambda
        )

    def __repr__(self) -> str:
        return (
            f"cutmix({self.alpha}, per_sample={self.per_sample}, "
            f"correct_lambda={self.correct_lambda})"
        )


class Cutout(Mix):
    """Cutout (DeVries & Taylor 2017); labels unchanged (one-hot); see :func:`cutout`."""

    def __init__(
        self,
        size: int,
        count: int = 1,
        fill: str = "zero",
        p: float = 1.0,
        mean: Sequence[float] | None = None,
    ):
        _check_cutout_args(size, count, fill, p, mean)
        self.size, self.count, self.fill, self.p = size, count, fill, float(p)
        self.mean = None if mean is None else tuple(float(m) for m in mean)

    def __call__(self, x, y, num_classes, generator):
        _check_batch(x, y)
        out, params = cutout(x, self.size, generator, self.count, self.fill, self.p, self.mean)
        return out, as_soft_targets(y, num_classes), params

    def __repr__(self) -> str:
        return (
            f"cutout({self.size}, count={self.count}, fill={self.fill!r}, p={self.p}, "
            f"mean={self.mean})"
        )


MIXES: Registry[Mix] = Registry("mix")
MIXES.register("none")(NoMix)
MIXES.register("mixup")(Mixup)
MIXES.register("cutmix")(CutMix)
MIXES.register("cutout")(Cutout)
