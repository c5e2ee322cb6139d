"""Batch-level mixes: mixup, CutMix and Cutout, with a registry the training engine calls.

* **Mixup** (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"):
  ``x = lam * x_i + (1 - lam) * x_j``, ``t = lam * t_i + (1 - lam) * t_j``, ``lam ~ Beta(a, a)``.
* **CutMix** (Yun et al. 2019, "CutMix"): paste a box of area fraction ``1 - lam`` from the
  partner image; targets are mixed by the pixel fractions actually used.
* **Cutout** (DeVries & Taylor 2017, "Improved Regularization of CNNs with Cutout"): blank
  square boxes of side ``size`` centred uniformly over the image (clipped at the borders).

Like augmentation, they are random in training and not applied at test time. What holds is
about labels: targets are mixed with exactly the weights used for the pixels; Cutout leaves
labels untouched. Draws come from the caller's ``generator``, as whole tensors; partners are a
permutation of the batch, so any batch size works. Every mix returns float32 soft targets
(B, K), so the loss is always :func:`~trainlab.regularize.smoothing.soft_target_cross_entropy`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from trainlab.checks import check_choice, check_flag, check_int, check_number, check_probability
from trainlab.errors import RegistryError
from trainlab.registry import Registry
from trainlab.regularize.smoothing import as_soft_targets

_CANDIDATES = 16


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
    # float64 keeps the rejection test exact for large shapes; MPS has no float64.
    dtype = torch.float32 if device.type == "mps" else torch.float64
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


def _check_alpha(name: str, value: float) -> float:
    return check_number(value, name, 0.0, lo_open=True)


def sample_gamma(shape: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws from Gamma(shape, scale=1) on the generator's device.

    ``torch.distributions`` cannot take a generator, so this implements Marsaglia & Tsang (2000)
    with ``torch.randn``/``torch.rand`` drawing from ``generator``.
    """
    shape = _check_alpha("Gamma shape", shape)
    return torch.exp(_log_gamma(shape, n, generator))


def sample_beta(alpha: float, beta: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws from Beta(alpha, beta) on the generator's device.

    ``X / (X + Y)`` with ``X ~ Gamma(alpha)``, ``Y ~ Gamma(beta)``, computed as
    ``sigmoid(log X - log Y)``: exact in log space, so small shapes (draws piled against 0 and
    1, where both gammas underflow) never give 0/0.
    """
    alpha, beta = _check_alpha("alpha", alpha), _check_alpha("beta", beta)
    return torch.sigmoid(_log_gamma(alpha, n, generator) - _log_gamma(beta, n, generator))


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


def _soft_targets(x: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """``y`` as float32 soft targets (B, K), after checking it matches the batch ``x``."""
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must share the batch dimension, got shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    return as_soft_targets(y, num_classes)


def _check_image(x: Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{what} expects images of shape (B, C, H, W), got {tuple(x.shape)}")


def _permutation(batch: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randperm(batch, generator=generator, device=generator.device).to(device)


def _mix_targets(t: Tensor, lam: Tensor, perm: Tensor) -> Tensor:
    lam = lam.to(t.device, t.dtype)[:, None]
    return lam * t + (1.0 - lam) * t[perm]


def mixup(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    alpha: float,
    generator: torch.Generator,
    per_sample: bool = False,
) -> tuple[Tensor, Tensor, MixParams]:
    """Mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[perm]`` and the same for targets.

    ``lam ~ Beta(alpha, alpha)``, one per batch (the paper) or per sample; ``alpha > 0`` (for
    "off" use the ``"none"`` mix). ``x`` is (B, ...); uint8 comes back as float32 on the [0, 1]
    scale. ``y`` is class indices (B,) or soft targets (B, K).
    """
    alpha = _check_alpha("mixup alpha", alpha)
    targets = _soft_targets(x, y, num_classes)
    batch = x.shape[0]
    lam = sample_beta(alpha, alpha, batch if per_sample else 1, generator).to(torch.float32)
    lam = lam.expand(batch).to(x.device)
    perm = _permutation(batch, generator, x.device)
    # A blend of uint8 images is not an integer: it leaves on the [0, 1] scale of float inputs.
    if x.dtype == torch.uint8:
        xf = x.to(torch.float32) / 255.0
    elif x.is_floating_point():
        xf = x
    else:
        raise ValueError(f"mixup expects uint8 or floating-point inputs, got {x.dtype}")
    lam_x = lam.to(xf.dtype).view(batch, *([1] * (x.dim() - 1)))
    mixed = lam_x * xf + (1.0 - lam_x) * xf[perm]
    return mixed, _mix_targets(targets, lam, perm), MixParams(lam=lam, perm=perm)


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


def _centres(
    n: Sequence[int], height: int, width: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor]:
    cy = torch.randint(0, height, tuple(n), generator=generator, device=generator.device)
    cx = torch.randint(0, width, tuple(n), generator=generator, device=generator.device)
    return cy.to(device), cx.to(device)


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
    With ``correct_lambda`` the target weight is the pixel fraction actually kept,
    ``1 - box_area / (H W)``; without, the drawn lam. One box per batch (the paper) or per
    sample. ``x`` is (B, C, H, W) of any dtype (pixels are copied, never blended).
    """
    alpha = _check_alpha("cutmix alpha", alpha)
    _check_image(x, "cutmix")
    targets = _soft_targets(x, y, num_classes)
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
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        lam = 1.0 - area.to(torch.float32) / (height * width)
    lam = lam.to(torch.float32).expand(batch)
    inside = box_masks(boxes, height, width)[:, None]  # (B, 1, H, W)
    mixed = torch.where(inside, x[perm], x)
    return mixed, _mix_targets(targets, lam, perm), MixParams(lam=lam, perm=perm, boxes=boxes)


def _check_cutout_args(size: int, count: int, fill: str, p: float, mean: object) -> None:
    check_int(size, "cutout size (pixels)")
    check_int(count, "cutout count")
    check_choice(fill, "cutout fill", ("zero", "mean", "noise"))
    check_probability(p, "cutout probability p")
    if fill == "mean":
        if mean is None:
            raise RegistryError("cutout fill='mean' needs the per-channel data mean: pass mean=...")
        for m in torch.as_tensor(mean, dtype=torch.float64).reshape(-1).tolist():
            check_number(m, "cutout mean (per channel, on the [0, 1] scale)", 0.0, 1.0)


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

    Centres are uniform over the pixels, so a square near a border is clipped (as in the paper).
    Each image is cut with probability ``p`` (the others get empty boxes). ``fill``: ``'zero'``;
    ``'mean'``, the per-channel data mean on the [0, 1] scale; or ``'noise'``, uniform noise.
    Keeps the dtype of uint8 or float (B, C, H, W) images; ``MixParams.boxes`` is (B, count, 4).
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


class Mix:
    """A configured mix, called on training batches only (evaluation uses clean inputs):
    ``mix(x, y, num_classes, generator) -> (x, soft_targets, params)``."""

    def __call__(
        self, x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, MixParams]:
        raise NotImplementedError


class NoMix(Mix):
    """No mix: the batch as it is, targets as one-hot float32 rows."""

    def __call__(self, x, y, num_classes, generator):
        targets = _soft_targets(x, y, num_classes)
        lam = torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
        return x, targets, MixParams(lam=lam)

    def __repr__(self) -> str:
        return "none"


class Mixup(Mix):
    """Mixup (Zhang et al. 2018) with ``lam ~ Beta(alpha, alpha)``; see :func:`mixup`."""

    def __init__(self, alpha: float, per_sample: bool = False):
        self.alpha = _check_alpha("mixup alpha", alpha)
        self.per_sample = check_flag(per_sample, "per_sample")

    def __call__(self, x, y, num_classes, generator):
        return mixup(x, y, num_classes, self.alpha, generator, self.per_sample)

    def __repr__(self) -> str:
        return f"mixup({self.alpha}, per_sample={self.per_sample})"


class CutMix(Mix):
    """CutMix (Yun et al. 2019) with ``lam ~ Beta(alpha, alpha)``; see :func:`cutmix`."""

    def __init__(self, alpha: float, per_sample: bool = False, correct_lambda: bool = True):
        self.alpha = _check_alpha("cutmix alpha", alpha)
        self.per_sample = check_flag(per_sample, "per_sample")
        self.correct_lambda = check_flag(correct_lambda, "correct_lambda")

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
        targets = _soft_targets(x, y, num_classes)
        out, params = cutout(x, self.size, generator, self.count, self.fill, self.p, self.mean)
        return out, targets, params

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
