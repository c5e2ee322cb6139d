"""Colour augmentations: jitter, random greyscale, PCA lighting, per image, on whole batches.

Definitions are Pillow's ``ImageEnhance`` / torchvision's, with grey ``g = w . x``,
``w = (0.299, 0.587, 0.114)`` (ITU-R BT.601):

- brightness ``f``: ``x' = f x`` (blend with black);
- contrast ``f``: ``x' = f x + (1 - f) m``, ``m`` the image's mean grey level (blend with grey);
- saturation ``f``: ``x' = f x + (1 - f) g`` (blend with the greyscale image);
- hue ``h`` in [-0.5, 0.5]: rotate the HSV hue, ``H' = (H + h) mod 1``.

All but hue are affine maps ``x' = A x + t`` per image, and the mean grey after an affine map is
itself affine in the image's channel means (``m' = w . (A mu + t)``; saturation keeps the grey
level). So a chain of them composes into **one 3x3 matrix and offset per image**, applied in a
single float pass. The sequential definition clamps to [0, white] after each operation; the fused
path clamps once at the end (and before and after hue, which needs values in [0, 1]). The two
differ only where an intermediate value leaves the valid range, e.g. a bright pixel pushed past
white by brightness 1.4 and then pulled back by contrast 0.6. ``fused=False`` gives the
sequential definition exactly.

Single-channel images: grey is the channel itself, so saturation, greyscale and hue leave them
unchanged (saturation's matrix reduces to 1 by itself; hue is skipped).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trainlab.augment._base import (
    Augmentation,
    Params,
    bernoulli,
    blocks,
    channel_means,
    from_work,
    grey_weights,
    rand,
    randn,
    to_work,
    value_scale,
)
from trainlab.checks import check_probability

Affine = tuple[Tensor, Tensor]  # A (B, C, C), t (B, C)

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


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


class AffineColor(Augmentation):
    """A colour operation that is an affine map per image (see module docstring)."""

    kind = "affine"

    def affine(self, params: Params, means: Tensor, white: float) -> Affine:
        """The per-image map, given the images' current channel means (B, C) on [0, white]."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return finish_affine(x, self.affine(params, channel_means(x), value_scale(x)), x)


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
        out[part].copy_(y.clamp_(0.0, white))  # float -> uint8 copy truncates
    return out


class ColorJitter(AffineColor):
    """Random brightness, contrast, saturation and hue (Howard 2013; torchvision ColorJitter).

    Factors are drawn per image, uniform in ``[max(0, 1 - b), 1 + b]`` (brightness, contrast,
    saturation; a pair gives the range) and ``[-hue, hue]`` for the hue shift (hue <= 0.5).
    ``order="fixed"`` applies brightness, contrast, saturation, hue; ``"random"`` draws a
    permutation per image. ``fused`` composes the linear operations into one colour matrix (see
    the module docstring for where clamping happens).
    """

    def __init__(
        self,
        brightness: Any = 0.0,
        contrast: Any = 0.0,
        saturation: Any = 0.0,
        hue: Any = 0.0,
        order: str = "fixed",
        fused: bool = True,
    ):
        self.ranges = (
            _factor_range(brightness, "brightness"),
            _factor_range(contrast, "contrast"),
            _factor_range(saturation, "saturation"),
            self._hue_range(hue),
        )
        if order not in ("fixed", "random"):
            raise ValueError(f"order must be 'fixed' or 'random', got {order!r}")
        self.order, self.fused = order, bool(fused)
        self.has_hue = self.ranges[HUE] != (0.0, 0.0)
        self.kind = "pixel" if (self.has_hue or not self.fused) else "affine"

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

    # -- composition ------------------------------------------------------------------------

    def _step(self, op: Tensor, f: Tensor, affine: Affine, means: Tensor) -> Affine:
        """One position of the chain: each image applies its own op (3 = hue/skip: unchanged)."""
        a, t = affine
        c = a.shape[-1]
        w = grey_weights(c, a.device)
        grey = ((a @ means[..., None]).squeeze(-1) + t) @ w  # mean grey after the chain so far
        eye = torch.eye(c, device=a.device)
        fb = f[:, None, None]
        sat = fb * eye + (1 - fb) * w[None, None, :].expand(-1, c, -1)  # f I + (1 - f) 1 w^T
        a_new = torch.where((op == SATURATION)[:, None, None], sat @ a, fb * a)
        t_new = torch.where(
            (op == SATURATION)[:, None], (sat @ t[..., None]).squeeze(-1), f[:, None] * t
        )
        t_new = t_new + ((op == CONTRAST) * (1 - f) * grey)[:, None]
        keep = (op == HUE)[:, None]
        return torch.where(keep[..., None], a, a_new), torch.where(keep, t, t_new)

    def _chain(self, params: Params, means: Tensor, positions: Tensor) -> Affine:
        """Compose the linear ops at the selected ``positions`` (B, 4) into one affine map."""
        affine = identity_affine(means.shape[0], means.shape[1], means.device)
        factors, order = params["factors"].to(means.device), params["order"].to(means.device)
        for k in range(4):
            op = torch.where(positions[:, k], order[:, k], HUE)
            affine = self._step(op, factors.gather(1, op[:, None]).squeeze(1), affine, means)
        return affine

    def affine(self, params: Params, means: Tensor, white: float) -> Affine:
        if self.order == "fixed":
            return self._fixed_chain(params["factors"].to(means.device), means)
        every = torch.ones_like(params["order"], dtype=torch.bool, device=means.device)
        return self._chain(params, means, every)

    @staticmethod
    def _fixed_chain(factors: Tensor, means: Tensor) -> Affine:
        """Brightness, contrast, saturation in that order, in closed form (the common case).

        ``A = f_b f_c S(f_s)``, ``t = (1 - f_c) f_b (w . mu) 1``: saturation maps the grey
        offset to itself because ``S 1 = 1``.
        """
        b, c = means.shape
        w = grey_weights(c, means.device)
        fb, fc, fs = factors[:, BRIGHTNESS], factors[:, CONTRAST], factors[:, SATURATION]
        eye = torch.eye(c, device=means.device)
        fsb = fs[:, None, None]
        sat = fsb * eye + (1 - fsb) * w.expand(c, c)
        a = (fb * fc)[:, None, None] * sat
        t = ((1 - fc) * fb * (means @ w))[:, None].expand(b, c)
        return a, t

    # -- application ------------------------------------------------------------------------

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if x.shape[1] not in (1, 3):
            raise ValueError(f"colour jitter needs 1 or 3 channels, got C={x.shape[1]}")
        if not self.fused:
            return self._apply_sequential(x, params)
        white, means = value_scale(x), channel_means(x)
        if not self.has_hue or x.shape[1] == 1:
            return finish_affine(x, self.affine(params, means, white), x)
        work = to_work(x).float()
        order = params["order"].to(x.device)
        hue_at = (order == HUE).to(torch.uint8).argmax(dim=1, keepdim=True)
        position = torch.arange(4, device=x.device)[None]
        y = apply_affine(work, self._chain(params, means, position < hue_at)).clamp_(0, white)
        y = hue_shift(y / white, params["factors"][:, HUE].to(x.device)).mul_(white)
        after = self._chain(params, y.mean(dim=(2, 3)).float(), position > hue_at)
        return finish_affine(y, after, x)

    def _apply_sequential(self, x: Tensor, params: Params) -> Tensor:
        """The definition: one operation at a time, clamping to [0, white] after each."""
        y, white = to_work(x), value_scale(x)
        factors, order = params["factors"].to(x.device), params["order"].to(x.device)
        for k in range(4):
            op = order[:, k]
            only = torch.zeros_like(order, dtype=torch.bool)
            only[:, k] = True
            step = self._chain(params, y.mean(dim=(2, 3)), only)
            y = apply_affine(y, step).clamp_(0, white)
            if self.has_hue and y.shape[1] == 3:
                shift = torch.where(op == HUE, factors[:, HUE], 0.0)
                y = hue_shift(y / white, shift).mul_(white).clamp_(0, white)
        return from_work(y, x)


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
