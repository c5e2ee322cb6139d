"""Data set statistics, computed in one streaming pass, and the normalizers built from them.

Statistics are taken on the [0, 1] scale (``uint8`` images are read as ``x / 255``; float images
are taken to be in [0, 1] already) and use the *population* variance ``sum((x - mean)^2) / n``:
they describe a fixed training set rather than estimate a larger population.

Chunks of images are turned into float64 centred moments and merged with the parallel update
of Chan, Golub & LeVeque (1979): for parts with counts ``n_a, n_b``, means ``m_a, m_b`` and
centred second moments ``M_a, M_b``,

    n = n_a + n_b,   d = m_b - m_a,   m = m_a + d n_b / n,   M = M_a + M_b + d d^T n_a n_b / n,

so any batch split gives the one-shot float64 result to about 1e-14, without a float64 copy of
the whole data set.

The statistics behind each classic preprocessing:

- mean image, subtracted per pixel (AlexNet: Krizhevsky, Sutskever & Hinton, 2012);
- per-channel mean, subtracted (VGG: Simonyan & Zisserman, 2014);
- per-channel mean and std, standardized (ResNet: He, Zhang, Ren & Sun, 2016);
- per-channel (RGB) covariance and its eigen decomposition, for PCA lighting (AlexNet);
- covariance of the flattened image, for PCA and ZCA whitening (LeCun, Bottou, Orr & Mueller,
  "Efficient BackProp", 1998; Bell & Sejnowski, 1997; Krizhevsky, 2009, appendix A).

A normalizer is a model's first module: ``uint8`` in, ``float32`` out, with the training
statistics held as buffers so that they travel in the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainlab.checks import check_int, check_number
from trainlab.errors import DataError
from trainlab.fileio import cache_dir, write_json, write_with
from trainlab.registry import Registry, parse_spec

__all__ = [
    "StatsAccumulator",
    "DatasetStats",
    "compute_stats",
    "dataset_stats",
    "FlatStatsAccumulator",
    "FlatStats",
    "compute_flat_stats",
    "dataset_flat_stats",
    "NORMALIZERS",
    "make_normalizer",
    "fit_normalizer",
    "format_stats",
]

STATS_FORMAT = "trainlab.stats/1"
CHUNK_ELEMENTS = 1 << 20  # values per chunk: an 8 MiB float64 working copy
MAX_FLAT_DIM = 4096  # a (D, D) float64 covariance of 4096 inputs is 128 MiB


# ============================================================================ statistics


@dataclass(frozen=True, eq=False)
class DatasetStats:
    """Statistics of a set of images (N, C, H, W) on the [0, 1] scale; float64 CPU tensors.

    Attributes:
        count: number of images N.
        mean, std: over every value of every image (0-d tensors).
        mean_image: (C, H, W) mean over images, per pixel (AlexNet's mean image).
        pixel_std: (C, H, W) std over images, per pixel (for the record).
        channel_mean, channel_std: (C,) over images and positions (VGG, ResNet).
        channel_cov: (C, C) covariance of a pixel's channel vector over images and positions.
        eigenvalues: (C,) of ``channel_cov``, descending.
        eigenvectors: (C, C), column ``k`` belongs to ``eigenvalues[k]``; each column's largest
            entry is made positive so the decomposition is unique. AlexNet's PCA lighting adds
            ``eigenvectors @ (alpha * eigenvalues)``, ``alpha ~ N(0, 0.1^2)``, to every pixel.
    """

    count: int
    mean: Tensor
    std: Tensor
    mean_image: Tensor
    pixel_std: Tensor
    channel_mean: Tensor
    channel_std: Tensor
    channel_cov: Tensor
    eigenvalues: Tensor
    eigenvectors: Tensor

    # each tensor field and its shape, written in the letters of the image's (C, H, W)
    _TENSORS = {
        "mean": "",
        "std": "",
        "mean_image": "CHW",
        "pixel_std": "CHW",
        "channel_mean": "C",
        "channel_std": "C",
        "channel_cov": "CC",
        "eigenvalues": "C",
        "eigenvectors": "CC",
    }

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.mean_image.shape)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; floats are written in full so :meth:`from_dict` round-trips exactly."""
        out: dict[str, Any] = {"format": STATS_FORMAT, "count": self.count, "shape": self.shape}
        out.update({name: getattr(self, name).tolist() for name in self._TENSORS})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "statistics") -> DatasetStats:
        """Rebuild from :meth:`to_dict`'s output, checking the format and every shape."""
        if not isinstance(data, dict) or data.get("format") != STATS_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise DataError(f"{where}: expected format {STATS_FORMAT!r}, got {found!r}")
        try:
            size = dict(zip("CHW", (int(v) for v in data["shape"]), strict=True))
            values = {n: torch.tensor(data[n], dtype=torch.float64) for n in cls._TENSORS}
            count = int(data["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed statistics ({exc})") from None
        for name, letters in cls._TENSORS.items():
            expected = tuple(size[letter] for letter in letters)
            if tuple(values[name].shape) != expected:
                raise DataError(
                    f"{where}: field {name!r} has shape {tuple(values[name].shape)}, "
                    f"expected {expected}"
                )
        return cls(count=count, **values)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DatasetStats:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read statistics file {str(path)!r}: {exc}") from None
        return cls.from_dict(data, where=str(path))


@dataclass(frozen=True, eq=False)
class FlatStats:
    """Mean (D,) and population covariance (D, D) of flattened images; float64 CPU tensors."""

    count: int
    shape: tuple[int, int, int]
    mean: Tensor
    cov: Tensor

    def to_tensors(self) -> dict[str, Tensor]:
        """Plain tensors for ``torch.save`` (loadable with ``weights_only=True``)."""
        return {
            "count": torch.tensor(self.count),
            "shape": torch.tensor(self.shape),
            "mean": self.mean,
            "cov": self.cov,
        }

    @classmethod
    def from_tensors(cls, data: dict[str, Tensor], *, where: str = "statistics") -> FlatStats:
        try:
            shape = tuple(int(v) for v in data["shape"].tolist())
            d = math.prod(shape)
            mean, cov = data["mean"].to(torch.float64), data["cov"].to(torch.float64)
            count = int(data["count"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"{where}: malformed flat statistics ({exc})") from None
        if tuple(mean.shape) != (d,) or tuple(cov.shape) != (d, d):
            raise DataError(f"{where}: mean/cov shapes do not match image shape {shape}")
        return cls(count, shape, mean, cov)


def _merge(na: int, ma: Tensor, m2a: Tensor, nb: int, mb: Tensor, m2b: Tensor, outer: bool):
    """Chan, Golub & LeVeque (1979): ``M = M_a + M_b + d d^T n_a n_b / n``, ``d = m_b - m_a``;
    ``outer=False`` keeps only the diagonal (element-wise variances). Returns (mean, M)."""
    n, d = na + nb, mb - ma
    return ma + d * (nb / n), m2a + m2b + (torch.outer(d, d) if outer else d * d) * (na * nb / n)


def _as_tensor(batch: Any) -> Tensor:
    if isinstance(batch, np.ndarray):
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    if not isinstance(batch, Tensor):
        raise TypeError(f"expected a tensor of images (B, C, H, W), got {type(batch).__name__}")
    return batch


class _Accumulator:
    """Streaming moments of images (B, C, H, W): ``update`` batches, ``merge`` partial results.

    A subclass says what a chunk's moments are (``_chunk``), how two parts' moments merge
    (``_merge_parts``) and what the result is. Accumulators are float64 on the first batch's
    device (CPU for MPS, which has no float64); results are on the CPU.
    """

    def __init__(self) -> None:
        self._shape: tuple[int, int, int] | None = None
        self._n = 0
        self._parts: tuple[Tensor, ...] = ()

    @property
    def count(self) -> int:
        return self._n

    @property
    def shape(self) -> tuple[int, int, int] | None:
        return self._shape

    def update(self, batch: Tensor | np.ndarray) -> _Accumulator:
        """Add a batch (B, C, H, W), uint8 or float, in float64 chunks; returns ``self``."""
        x = _as_tensor(batch)
        if x.dim() != 4:
            raise ValueError(f"batch: expected images (B, C, H, W), got shape {tuple(x.shape)}")
        if not (x.dtype == torch.uint8 or x.dtype.is_floating_point):
            raise TypeError(f"batch: expected uint8 or float images, got {x.dtype}")
        self._check_shape(tuple(x.shape[1:]))
        if x.device.type == "mps":
            x = x.cpu()
        step = max(1, CHUNK_ELEMENTS // math.prod(self._shape))
        for start in range(0, x.shape[0], step):
            chunk = x[start : start + step]
            self._add(chunk.shape[0], self._chunk(chunk))
        return self

    def merge(self, other: _Accumulator) -> _Accumulator:
        """Fold ``other``'s data into this accumulator (Chan's merge); returns ``self``."""
        if not isinstance(other, type(self)):
            raise TypeError(f"other: expected a {type(self).__name__}, got {type(other).__name__}")
        if other._n:
            self._check_shape(other._shape)
            device = (self._parts or other._parts)[0].device
            self._add(other._n, tuple(t.to(device) for t in other._parts))
        return self

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self._shape is None:
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"batch: expected images of shape (C, H, W), got {shape}")
            self._shape = tuple(int(s) for s in shape)
        elif tuple(shape) != self._shape:
            raise ValueError(f"batch: image shape {tuple(shape)} differs from {self._shape} seen")

    def _add(self, n: int, parts: tuple[Tensor, ...]) -> None:
        self._parts = self._merge_parts(self._n, self._parts, n, parts) if self._n else parts
        self._n += n

    def _moments(self) -> tuple[Tensor, ...]:
        if not self._n:
            raise ValueError("no images seen yet: call update() with at least one image")
        return tuple(t.cpu() for t in self._parts)


class StatsAccumulator(_Accumulator):
    """Streaming :class:`DatasetStats`; any split of the data into batches, and any merge
    order, gives the one-shot result up to float64 rounding.

    >>> acc = StatsAccumulator()
    >>> for batch in batches:       # doctest: +SKIP
    ...     acc.update(batch)
    >>> stats = acc.result()        # doctest: +SKIP

    Its moments: per pixel (C, P) mean and sum of squared deviations over the images; per
    channel (C,) mean and (C, C) co-moment ``sum (x - m)(x - m)^T`` over all pixel vectors.
    """

    def _chunk(self, x: Tensor) -> tuple[Tensor, ...]:
        """Means, then deviations, in float64. The channel co-moment is the within-pixel part
        plus the between-pixel part (pixel means around the channel mean): total covariance."""
        scale = 255.0 if x.dtype == torch.uint8 else 1.0  # uint8 moments are scaled at the end
        c, h, w = self._shape
        x = x.to(torch.float64, copy=True).reshape(-1, c, h * w)  # a copy: deviations overwrite it
        pixel_mean = x.mean(0)
        channel_mean = pixel_mean.mean(1)  # every pixel has b values, so this is the channel mean
        dev = x.sub_(pixel_mean)
        within = torch.bmm(dev, dev.transpose(1, 2)).sum(0)  # per image (C, P) @ (P, C)
        pixel_m2 = dev.square_().sum(0)
        spread = pixel_mean - channel_mean[:, None]
        channel_m2 = within + x.shape[0] * (spread @ spread.T)
        s2 = scale * scale
        return pixel_mean / scale, pixel_m2 / s2, channel_mean / scale, channel_m2 / s2

    def _merge_parts(self, na: int, a: tuple, nb: int, b: tuple) -> tuple[Tensor, ...]:
        positions = self._shape[1] * self._shape[2]  # channel moments count every position
        pixel = _merge(na, a[0], a[1], nb, b[0], b[1], outer=False)
        channel = _merge(na * positions, a[2], a[3], nb * positions, b[2], b[3], outer=True)
        return *pixel, *channel

    def result(self) -> DatasetStats:
        """The statistics so far, as float64 CPU tensors."""
        pixel_mean, pixel_m2, channel_mean, channel_m2 = self._moments()
        c, h, w = self._shape
        channel_cov = channel_m2 / (self._n * h * w)
        channel_var = channel_cov.diagonal().clone()
        # Every channel counts the same number of values, so the global mean is the mean of the
        # channel means and the law of total variance gives the global variance.
        mean = channel_mean.mean()
        var = (channel_var + (channel_mean - mean) ** 2).mean()
        eigenvalues, eigenvectors = _sorted_eigh(channel_cov)
        return DatasetStats(
            count=self._n,
            mean=mean,
            std=var.clamp_min(0).sqrt(),
            mean_image=pixel_mean.reshape(c, h, w),
            pixel_std=(pixel_m2 / self._n).clamp_min(0).sqrt().reshape(c, h, w),
            channel_mean=channel_mean,
            channel_std=channel_var.clamp_min(0).sqrt(),
            channel_cov=channel_cov,
            eigenvalues=eigenvalues,
            eigenvectors=eigenvectors,
        )


class FlatStatsAccumulator(_Accumulator):
    """Streaming mean and (D, D) covariance of flattened images, D = C*H*W, for PCA/ZCA
    whitening of whole images (for MLPs). Memory grows as D^2 and time as N D^2, so D above
    ``max_dim`` is refused (Fashion-MNIST's 784 and CIFAR's 3072 are within it)."""

    def __init__(self, max_dim: int = MAX_FLAT_DIM) -> None:
        super().__init__()
        self.max_dim = check_int(max_dim, "max_dim")

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self._shape is None and math.prod(shape) > self.max_dim:
            raise ValueError(
                f"flattened images have D = {math.prod(shape)} values ({shape}); a (D, D) "
                f"covariance is only computed for D <= max_dim = {self.max_dim} (memory grows "
                "as D^2); use a per-channel normalizer such as 'standardize' instead"
            )
        super()._check_shape(shape)

    def _chunk(self, x: Tensor) -> tuple[Tensor, ...]:
        xd = x.reshape(x.shape[0], -1).to(torch.float64)
        if x.dtype == torch.uint8:
            xd = xd / 255.0
        mean = xd.mean(0)
        dev = xd - mean
        return mean, dev.T @ dev

    def _merge_parts(self, na: int, a: tuple, nb: int, b: tuple) -> tuple[Tensor, ...]:
        return _merge(na, a[0], a[1], nb, b[0], b[1], outer=True)

    def result(self) -> FlatStats:
        mean, m2 = self._moments()
        return FlatStats(self._n, self._shape, mean, m2 / self._n)


def _sorted_eigh(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Eigen decomposition of a symmetric matrix, descending, with a fixed sign per vector."""
    values, vectors = torch.linalg.eigh(cov)
    values, vectors = values.flip(0), vectors.flip(1)
    pivot = vectors.abs().argmax(0)
    signs = torch.sign(vectors[pivot, torch.arange(vectors.shape[1])])
    signs[signs == 0] = 1
    return values.clamp_min(0), vectors * signs


def _stream(acc: _Accumulator, images: Tensor | np.ndarray, batch_size: int) -> Any:
    check_int(batch_size, "batch_size")
    images = _as_tensor(images)
    for start in range(0, images.shape[0], batch_size):
        acc.update(images[start : start + batch_size])
    return acc.result()


def compute_stats(images: Tensor | np.ndarray, batch_size: int = 65_536) -> DatasetStats:
    """Statistics of a whole image tensor (N, C, H, W), streamed in batches of ``batch_size``."""
    return _stream(StatsAccumulator(), images, batch_size)


def compute_flat_stats(
    images: Tensor | np.ndarray, batch_size: int = 4096, max_dim: int = MAX_FLAT_DIM
) -> FlatStats:
    """Mean and covariance of flattened images (N, C, H, W), streamed in batches."""
    return _stream(FlatStatsAccumulator(max_dim), images, batch_size)


# ============================================================================ caching


def _fingerprint(images: Tensor) -> str:
    """A cheap content hash: shape, dtype, the sum of all values (numpy's integer sum, the
    faster one) and ~1 MB of strided values."""
    array = images.detach().cpu().numpy().reshape(-1)
    total = array.sum(dtype=np.float64 if array.dtype.kind == "f" else np.uint64)
    step = max(1, array.size // (1 << 20))
    digest = hashlib.sha256(f"{tuple(images.shape)}|{images.dtype}|{total!r}|".encode())
    digest.update(np.ascontiguousarray(array[::step]).tobytes())
    return digest.hexdigest()


def _train_images(dataset: Any) -> Tensor:
    images = getattr(dataset, "train_images", None)
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise TypeError(
            "dataset: expected an ImageDataset-like object whose train_images is an "
            f"(N, C, H, W) tensor, got {type(dataset).__name__}"
        )
    return images


def _cached(dataset: Any, cache: bool, kind: str, suffix: str, compute, load, save) -> Any:
    """``compute(images)`` of a data set's training split, kept in ``cache_dir()/stats/`` under
    a key of the data set's name, source and a content fingerprint: changed data is recomputed,
    unchanged data never is, and a stale or damaged entry is recomputed and overwritten."""
    images = _train_images(dataset)
    if not cache:
        return compute(images)
    parts = [kind, str(dataset.name), str(dataset.source), _fingerprint(images)]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(dataset.name))[:60]
    path = cache_dir() / "stats" / f"{safe}-{kind}-{key}{suffix}"
    if path.is_file():
        try:
            return load(path)
        except (DataError, OSError, RuntimeError, ValueError, TypeError):
            pass
    stats = compute(images)
    save(stats, path)
    return stats


def dataset_stats(dataset: Any, cache: bool = True) -> DatasetStats:
    """Statistics of a data set's training split (``dataset.train_images``, uint8 N x C x H x W),
    cached as JSON."""
    return _cached(
        dataset, cache, "stats", ".json", compute_stats, DatasetStats.load, DatasetStats.save
    )


def dataset_flat_stats(dataset: Any, cache: bool = True, max_dim: int = MAX_FLAT_DIM) -> FlatStats:
    """Flattened-image mean and covariance of a training split, cached as tensors (a (D, D)
    matrix is too large for JSON)."""
    return _cached(
        dataset,
        cache,
        "flat",
        ".pt",
        lambda images: compute_flat_stats(images, max_dim=max_dim),
        lambda path: FlatStats.from_tensors(torch.load(path, weights_only=True), where=str(path)),
        lambda stats, path: write_with(path, lambda tmp: torch.save(stats.to_tensors(), tmp)),
    )


# ============================================================================ normalizers


def to_unit(x: Tensor) -> Tensor:
    """uint8 -> float32 on [0, 1]; float inputs are already on that scale and kept as they are."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if not x.dtype.is_floating_point:
        raise TypeError(f"normalizer input: expected uint8 or float images, got {x.dtype}")
    return x


class Normalizer(nn.Module):
    """Base: the first module of a model; ``uint8`` in, float out."""

    def __init__(self, shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.shape = shape

    def _check_input(self, x: Tensor) -> None:
        if self.shape is not None and tuple(x.shape[-3:]) != self.shape:
            raise ValueError(
                f"{type(self).__name__}: expected images (..., {', '.join(map(str, self.shape))})"
                f", got shape {tuple(x.shape)}"
            )

    def _buffer(self, name: str, value: Tensor, shape: tuple[int, ...]) -> None:
        self.register_buffer(name, value.to(torch.float32).reshape(shape).clone())

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Scale(Normalizer):
    """``x / 255``: uint8 to float on [0, 1], no statistics."""

    def forward(self, x: Tensor) -> Tensor:
        return to_unit(x)


class Raw(Normalizer):
    """No preprocessing: the raw values 0..255 as float (float input on [0, 1] is multiplied
    by 255, so a uint8 image and its float version give the same output)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            return x.to(torch.float32)
        return to_unit(x) * 255.0


class MeanImage(Normalizer):
    """``x - mean_image``, the mean over training images of each pixel (AlexNet, 2012)."""

    def __init__(self, shape: tuple[int, int, int], mean_image: Tensor | None = None) -> None:
        super().__init__(shape)
        self._buffer("mean_image", torch.zeros(shape) if mean_image is None else mean_image, shape)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        if x.dtype == torch.uint8:  # -mean + x / 255 in one fused op
            return torch.add(-self.mean_image, x.to(torch.float32), alpha=1 / 255.0)
        return to_unit(x) - self.mean_image.to(x.dtype)


class ChannelAffine(Normalizer):
    """``(x - mean_c) / std_c`` per channel, computed as ``x * (1/std_c) + (-mean_c/std_c)``.

    With ``std = 1`` this is the per-channel mean subtraction of VGG (Simonyan & Zisserman,
    2014); with the training std it is the standardization of ResNet (He et al., 2016).
    """

    def __init__(
        self, shape: tuple[int, int, int], mean: Tensor | None = None, std: Tensor | None = None
    ) -> None:
        super().__init__(shape)
        self.channels = c = shape[0]
        self._buffer("mean", torch.zeros(c) if mean is None else mean, (c, 1, 1))
        self._buffer("std", torch.ones(c) if std is None else std, (c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[-3] != self.channels:
            raise ValueError(
                f"{type(self).__name__}: expected images (..., {self.channels}, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        scale = 1.0 / self.std
        shift = -self.mean * scale
        if x.dtype == torch.uint8:  # the 1/255 is folded into the scale: one pass over x
            return torch.addcmul(shift, x.to(torch.float32), scale / 255.0)
        return torch.addcmul(shift.to(x.dtype), to_unit(x), scale.to(x.dtype))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class Whiten(Normalizer):
    """``W (x - mean)`` on the flattened image (D = C*H*W), output reshaped to (..., C, H, W).

    With ``cov = U diag(lambda) U^T`` (eigen decomposition of the training covariance):

    - PCA whitening: ``W = diag(1 / sqrt(lambda + eps)) U^T``; output "pixels" are the
      principal components, largest first (meaningful to an MLP only);
    - ZCA whitening: ``W = U diag(1 / sqrt(lambda + eps)) U^T``, the whitening closest to the
      input (Bell & Sejnowski, 1997; Krizhevsky, 2009), so outputs still look like images.

    Whitened training data has covariance ``diag(lambda / (lambda + eps))`` (in the PCA basis),
    which is the identity where ``lambda >> eps``; ``eps`` damps directions of near-zero variance
    instead of amplifying their noise (LeCun et al., 1998, "Efficient BackProp", sec. 4.3).
    """

    def __init__(
        self, shape: tuple[int, int, int], kind: str, eps: float, stats: FlatStats | None = None
    ) -> None:
        super().__init__(shape)
        self.kind, self.eps = kind, float(eps)
        d = math.prod(shape)
        if d > MAX_FLAT_DIM:
            raise ValueError(
                f"{kind}_whiten: images of shape {shape} have D = {d} values; whitening "
                f"needs a (D, D) matrix and is limited to D <= {MAX_FLAT_DIM}"
            )
        mean, matrix = torch.zeros(d), torch.eye(d)
        if stats is not None:
            mean, matrix = stats.mean, _whitening_matrix(stats.cov, kind, self.eps)
        self._buffer("mean", mean, (d,))
        self._buffer("matrix", matrix, (d, d))

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        lead = x.shape[:-3]
        flat = x.reshape(-1, self.mean.numel())
        alpha = 1.0
        if flat.dtype == torch.uint8:  # the 1/255 rides on addmm's alpha: no extra pass
            flat, alpha = flat.to(torch.float32), 1 / 255.0
        flat = to_unit(flat)
        shift = -(self.matrix @ self.mean).to(flat.dtype)  # W (x - mean) = W x - W mean
        out = torch.addmm(shift, flat, self.matrix.T.to(flat.dtype), alpha=alpha)
        return out.reshape(*lead, *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, kind={self.kind!r}, eps={self.eps}"


def _whitening_matrix(cov: Tensor, kind: str, eps: float) -> Tensor:
    """PCA: ``diag(1/sqrt(lambda+eps)) U^T``; ZCA: ``U diag(1/sqrt(lambda+eps)) U^T`` (float64)."""
    values, vectors = _sorted_eigh(cov.to(torch.float64))
    pca = vectors.T / torch.sqrt(values + eps)[:, None]
    return pca if kind == "pca" else vectors @ pca


NORMALIZERS: Registry[Normalizer] = Registry("normalizer")


def _image_shape(spec: str, stats: Any, shape: Any, kind: type | None) -> Any:
    """The (C, H, W) a normalizer is built for: the statistics' (which must be of ``kind``),
    else ``shape``. With ``kind=None`` the normalizer needs no statistics and no shape."""
    if kind is not None and stats is not None:
        if not isinstance(stats, kind):
            helper = "compute_stats" if kind is DatasetStats else "compute_flat_stats"
            raise TypeError(
                f"{spec}: expected {kind.__name__} (from {helper}), got {type(stats).__name__}"
            )
        if shape is not None and tuple(shape) != tuple(stats.shape):
            raise ValueError(f"shape: {tuple(shape)} differs from the statistics' {stats.shape}")
        shape = stats.shape
    if shape is None:
        if kind is None:
            return None
        raise ValueError(f"{spec}: give statistics to fit it, or shape=(C, H, W) for an empty one")
    if not (
        isinstance(shape, tuple | list)
        and len(shape) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(f"shape: expected (C, H, W) of positive integers, got {shape!r}")
    return tuple(shape)


@NORMALIZERS.register("scale")
def _scale(*, stats: Any = None, shape: Any = None) -> Normalizer:
    return Scale(_image_shape("scale", stats, shape, None))


@NORMALIZERS.register("none")
def _none(*, stats: Any = None, shape: Any = None) -> Normalizer:
    return Raw(_image_shape("none", stats, shape, None))


@NORMALIZERS.register("mean_image")
def _mean_image(*, stats: DatasetStats | None = None, shape: Any = None) -> Normalizer:
    shape = _image_shape("mean_image", stats, shape, DatasetStats)
    return MeanImage(shape, None if stats is None else stats.mean_image)


@NORMALIZERS.register("channel_mean")
def _channel_mean(*, stats: DatasetStats | None = None, shape: Any = None) -> Normalizer:
    shape = _image_shape("channel_mean", stats, shape, DatasetStats)
    return ChannelAffine(shape, None if stats is None else stats.channel_mean)


@NORMALIZERS.register("standardize")
def _standardize(*, stats: DatasetStats | None = None, shape: Any = None) -> Normalizer:
    shape = _image_shape("standardize", stats, shape, DatasetStats)
    if stats is None:
        return ChannelAffine(shape)
    zero = (stats.channel_std <= 0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(f"standardize: channel(s) {zero} are constant (std 0) in the statistics")
    return ChannelAffine(shape, stats.channel_mean, stats.channel_std)


def _whiten(kind: str) -> Callable[..., Normalizer]:
    def factory(eps: float = 1e-3, *, stats: FlatStats | None = None, shape: Any = None):
        # The argument first, so that a recipe check without data reports a bad eps.
        check_number(eps, "eps", 0, lo_open=True)
        return Whiten(_image_shape(f"{kind}_whiten", stats, shape, FlatStats), kind, eps, stats)

    return factory


NORMALIZERS.register("pca_whiten")(_whiten("pca"))
NORMALIZERS.register("zca_whiten")(_whiten("zca"))

# The statistics each normalizer is fitted from; the rest take DatasetStats.
_NEEDS = {"scale": None, "none": None, "pca_whiten": "flat", "zca_whiten": "flat"}


def make_normalizer(
    spec: str,
    stats: DatasetStats | FlatStats | None = None,
    shape: tuple[int, int, int] | None = None,
) -> Normalizer:
    """Build a normalizer by name (see ``NORMALIZERS.names()``) from training statistics.

    ``"scale"`` (x/255), ``"none"`` (raw 0..255), ``"mean_image"``, ``"channel_mean"``,
    ``"standardize"`` take :class:`DatasetStats`; ``"pca_whiten(eps)"`` and
    ``"zca_whiten(eps)"`` take :class:`FlatStats`. With ``stats=None`` and ``shape=(C, H, W)``
    the normalizer is built empty, with buffers of the right shapes, ready for
    ``load_state_dict`` from a checkpoint.
    """
    return NORMALIZERS.create(spec, stats=stats, shape=shape)


def fit_normalizer(spec: str, dataset: Any, cache: bool = True) -> Normalizer:
    """Build a normalizer fitted to a data set's training split, computing (or loading from the
    cache) whichever statistics it needs."""
    NORMALIZERS.validate(spec)  # a wrong name fails before any statistics are computed
    needs = _NEEDS.get(parse_spec(spec)[0], "stats")
    if needs == "flat":
        return make_normalizer(spec, dataset_flat_stats(dataset, cache=cache))
    if needs is None:
        return make_normalizer(spec, shape=tuple(_train_images(dataset).shape[1:]))
    return make_normalizer(spec, dataset_stats(dataset, cache=cache))


# ============================================================================ report


def format_stats(stats: DatasetStats) -> str:
    """A readable table: per-channel mean/std, global values, covariance and its eigen pairs."""
    c, h, w = stats.shape
    names = ["R", "G", "B"] if c == 3 else [str(i) for i in range(c)]
    lines = [
        f"{stats.count} images of {c}x{h}x{w}; values on the [0, 1] scale, "
        "population (biased) variance",
        "",
        f"{'channel':>8} {'mean':>10} {'std':>10}",
    ]
    for i in range(c):
        lines.append(f"{names[i]:>8} {stats.channel_mean[i]:>10.6f} {stats.channel_std[i]:>10.6f}")
    lines.append(f"{'all':>8} {float(stats.mean):>10.6f} {float(stats.std):>10.6f}")
    lines += ["", "channel covariance:"]
    for i in range(c):
        row = " ".join(f"{float(v):>11.3e}" for v in stats.channel_cov[i])
        lines.append(f"{names[i]:>8} {row}")
    lines += ["", "eigen decomposition (PCA lighting, AlexNet): value, vector"]
    for k in range(c):
        vec = ", ".join(f"{float(v):+.4f}" for v in stats.eigenvectors[:, k])
        lines.append(f"{k + 1:>8} {float(stats.eigenvalues[k]):>11.3e}  [{vec}]")
    lines += [
        "",
        f"mean image: min {float(stats.mean_image.min()):.4f}, "
        f"max {float(stats.mean_image.max()):.4f}",
        f"per-pixel std: min {float(stats.pixel_std.min()):.4f}, "
        f"max {float(stats.pixel_std.max()):.4f}",
    ]
    return "\n".join(lines)
