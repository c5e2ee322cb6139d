"""The contract every augmentation follows, and the helpers they share.

An augmentation draws per-image parameters as whole tensors from the caller's generator
(``sample_params``), then applies them (``apply``); calling it does both. Replaying the same
parameters gives the same output, so a batch can be re-augmented exactly or inspected.

Each operation also says how it can be fused with its neighbours (``kind``):

- ``"index"``: every output pixel copies one input pixel (or zero), and the row it copies
  depends only on the output row, the column only on the output column. Crops, flips and
  translations are of this kind; a run of them composes into one gather on uint8.
- ``"affine"``: a per-image colour map ``y = A x + t`` (A is C x C) whose coefficients may depend
  on the image's channel means. Brightness, contrast, saturation, greyscale and PCA lighting are
  of this kind; a run of them composes into one matrix per image and one float pass.
- ``"pixel"``: anything else (resampling, hue rotation); applied on its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

Params = dict[str, Tensor]

# ITU-R BT.601 luma weights, the grey level used by Pillow's convert("L") and torchvision.
LUMA = (0.299, 0.587, 0.114)


def check_images(x: Any, name: str = "x") -> Tensor:
    """Check that ``x`` is a (B, C, H, W) uint8 or floating tensor; return it."""
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}"
        )
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8 and not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be uint8 or floating point, got {x.dtype}")
    return x


def value_scale(x: Tensor) -> float:
    """The white level: 255 for uint8 images, 1 for float images (taken to be in [0, 1])."""
    return 255.0 if x.dtype == torch.uint8 else 1.0


def to_work(x: Tensor) -> Tensor:
    """Float working tensor on the input's own scale (uint8 stays on [0, 255], no division).

    uint8 and half precision become float32; float32 and float64 are used as they are.
    """
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def from_work(y: Tensor, like: Tensor, *, half_added: bool = False) -> Tensor:
    """Clamp to the valid range and return in ``like``'s dtype; uint8 rounds half up.

    ``y`` may be modified in place. ``half_added=True`` says the caller already added 0.5 (folded
    into an offset, saving a pass over the batch).
    """
    if like.dtype == torch.uint8:
        # y + 0.5 truncated is round-half-up once y >= 0
        if not half_added:
            y = y.add_(0.5)
        return y.clamp_(0.0, 255.0).to(torch.uint8)
    return y.clamp(0.0, 1.0).to(like.dtype)


# Images per block when a CPU pass is split so that its float intermediates stay in cache and
# are recycled by the allocator (fresh multi-megabyte buffers page-fault on every batch).
CPU_BLOCK = 64


def blocks(x: Tensor, block: int | None = CPU_BLOCK) -> list[slice]:
    """Slices of the batch dimension: blocks of ``block`` images on the CPU, one piece elsewhere."""
    n = x.shape[0]
    if block is None or x.device.type != "cpu" or n <= block:
        return [slice(0, n)]
    return [slice(s, min(s + block, n)) for s in range(0, n, block)]


def channel_means(x: Tensor) -> Tensor:
    """Per-image channel means (B, C) in float32 on the input's own scale, without a float copy."""
    b, c = x.shape[:2]
    if x.dtype == torch.uint8:
        # exact integer sums: at most 255 * H * W, far below 2^31 for any image that fits
        sums = x.reshape(b, c, -1).sum(dim=2, dtype=torch.int32)
        return sums.float() / (x.shape[2] * x.shape[3])
    return x.float().mean(dim=(2, 3))


def grey_weights(channels: int, device: torch.device | None = None) -> Tensor:
    """Luma weights w with ``grey = w . x``: BT.601 for RGB, 1 for a single channel."""
    if channels == 3:
        return torch.tensor(LUMA, dtype=torch.float32, device=device)
    if channels == 1:
        return torch.ones(1, dtype=torch.float32, device=device)
    raise ValueError(f"colour operations need 1 or 3 channels, got C={channels}")


def rand(shape: tuple[int, ...] | int, generator: torch.Generator, device: Any = None) -> Tensor:
    """U[0, 1) draws made on the generator's device, then moved to ``device``.

    Drawing where the generator lives keeps a seed's stream the same whatever device the
    images are on (a CPU generator with CUDA images gives the CPU draws).
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    u = torch.rand(shape, generator=generator, device=generator.device)
    return u.to(device) if device is not None else u


def randn(shape: tuple[int, ...] | int, generator: torch.Generator, device: Any = None) -> Tensor:
    """N(0, 1) draws made on the generator's device, then moved to ``device``."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    z = torch.randn(shape, generator=generator, device=generator.device)
    return z.to(device) if device is not None else z


def bernoulli(n: int, p: float, generator: torch.Generator, device: Any) -> Tensor:
    """n booleans, each True with probability p."""
    return rand(n, generator, device) < p


def check_size(size: Any, name: str = "size") -> tuple[int, int]:
    """Accept ``s`` or ``(h, w)`` positive ints; return ``(h, w)``."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"{name} must be a positive int or a pair (h, w) of them, got {size!r}")
    return int(size[0]), int(size[1])


class Augmentation:
    """Base class: ``sample_params`` draws, ``apply`` applies, calling does both.

    Subclasses set ``kind`` (see the module docstring) and implement the pieces that kind needs:
    ``index_maps`` for "index", ``affine`` for "affine", ``apply`` for all.
    """

    kind: str = "pixel"
    skippable: bool = True  # has identity parameters, so a pipeline can apply it with p < 1

    def sample_params(
        self,
        batch_shape: torch.Size | tuple[int, ...],
        generator: torch.Generator,
        device: Any = None,
    ) -> Params:
        raise NotImplementedError

    def identity_params(
        self, batch_shape: torch.Size | tuple[int, ...], device: Any = None
    ) -> Params:
        """Parameters that leave every image unchanged (used to skip images, per-op ``p``)."""
        raise ValueError(f"{self!r} has no identity: it cannot be skipped per image (use p=1)")

    def apply(self, x: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    def output_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """Spatial size of the output for an input of spatial size ``hw``."""
        return hw

    def __call__(
        self, x: Tensor, generator: torch.Generator, *, return_params: bool = False
    ) -> Tensor | tuple[Tensor, Params]:
        check_images(x)
        params = self.sample_params(x.shape, generator, x.device)
        y = self.apply(x, params)
        return (y, params) if return_params else y
