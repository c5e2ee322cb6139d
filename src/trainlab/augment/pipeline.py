"""Augmentation pipelines built from recipe specs, fused where the operations allow.

``make_pipeline(["pad_crop(4)", "hflip", "jitter(0.4, 0.4, 0.4, p=0.8)"])`` builds a
:class:`Pipeline`, the ``transform(x_uint8, generator)`` the training loader calls on each batch.
Runs of index operations (crops, flips) become one gather on uint8; runs of affine colour
operations (brightness, contrast, saturation, greyscale, PCA lighting) become one colour matrix
per image and one float pass. The result equals applying the operations one by one (exactly for
the index runs; for colour runs up to the clamping noted in :mod:`trainlab.augment.color`).
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from trainlab.augment import auto, color, erasing, geometric
from trainlab.augment._base import (
    Augmentation,
    Params,
    bernoulli,
    channel_means,
    check_images,
    value_scale,
)
from trainlab.checks import check_probability
from trainlab.errors import RegistryError
from trainlab.registry import Registry, parse_spec

AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")

AUGMENTATIONS.register("hflip")(geometric.HFlip)
AUGMENTATIONS.register("vflip")(geometric.VFlip)
AUGMENTATIONS.register("pad_crop")(geometric.PadCrop)
AUGMENTATIONS.register("center_crop")(geometric.CenterCrop)
AUGMENTATIONS.register("random_resized_crop")(geometric.RandomResizedCrop)
AUGMENTATIONS.register("scale_aug")(geometric.ScaleAug)
AUGMENTATIONS.register("jitter", "color_jitter")(color.ColorJitter)
AUGMENTATIONS.register("grayscale", "greyscale")(color.RandomGrayscale)
AUGMENTATIONS.register("pca_lighting")(color.PCALighting)
AUGMENTATIONS.register("randaugment")(auto.RandAugment)
AUGMENTATIONS.register("trivialaugment")(auto.TrivialAugmentWide)
AUGMENTATIONS.register("random_erasing")(erasing.RandomErasing)


def _one_jitter(name: str, default: float):
    """A factory for jitter of one property: ``"brightness(0.4)"`` is ``jitter(brightness=0.4)``."""

    def factory(value: Any = default) -> color.ColorJitter:
        return color.ColorJitter(**{name: value})

    return factory


for _name, _default in (("brightness", 0.4), ("contrast", 0.4), ("saturation", 0.4), ("hue", 0.1)):
    AUGMENTATIONS.register(_name)(_one_jitter(_name, _default))


def _where_params(mask: Tensor, chosen: Params, otherwise: Params) -> Params:
    """Per image, ``chosen`` where ``mask`` else ``otherwise``."""
    out = {}
    for key, value in chosen.items():
        m = mask.to(value.device).reshape(-1, *([1] * (value.dim() - 1)))
        out[key] = torch.where(m, value, otherwise[key].to(value.device))
    return out


class Pipeline:
    """Operations applied in order, each to a random subset of images with probability ``probs[i]``.

    ``pipeline(x, generator)`` draws every parameter from ``generator`` and returns the augmented
    batch in the input's dtype; ``return_params=True`` also returns the parameters (one dict per
    operation, with the per-image ``"applied"`` mask), and ``replay(x, params)`` reproduces the
    output from them.
    """

    def __init__(self, ops: Sequence[Augmentation], probs: Sequence[float] | None = None):
        ops = list(ops)
        for op in ops:
            if not isinstance(op, Augmentation):
                raise TypeError(f"pipeline operations must be Augmentation objects, got {op!r}")
        probs = [1.0] * len(ops) if probs is None else list(probs)
        if len(probs) != len(ops):
            raise ValueError(f"got {len(ops)} operations but {len(probs)} probabilities")
        self.ops = ops
        self.probs = [check_probability(p, f"probs[{i}]") for i, p in enumerate(probs)]
        for op, p in zip(ops, self.probs, strict=True):
            if p < 1 and not op.skippable:
                raise ValueError(f"{op!r} cannot be skipped per image: use p=1, got p={p}")

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{op!r} p={p}" if p < 1 else repr(op)
            for op, p in zip(self.ops, self.probs, strict=True)
        )
        return f"Pipeline([{inner}])"

    def __len__(self) -> int:
        return len(self.ops)

    def sample_params(
        self,
        batch_shape: torch.Size | tuple[int, ...],
        generator: torch.Generator,
        device: Any = None,
    ) -> list[Params]:
        shape = tuple(batch_shape)
        params = []
        for op, p in zip(self.ops, self.probs, strict=True):
            drawn = op.sample_params(shape, generator, device)
            if p < 1.0:
                applied = bernoulli(shape[0], p, generator, device)
                drawn = _where_params(applied, drawn, op.identity_params(shape, device))
                drawn["applied"] = applied
            params.append(drawn)
            shape = (*shape[:2], *op.output_hw(shape[-2:]))
        return params

    def apply(self, x: Tensor, params: Sequence[Params]) -> Tensor:
        check_images(x)
        if len(params) != len(self.ops):
            raise ValueError(
                f"got parameters for {len(params)} operations, pipeline has {len(self.ops)}"
            )
        for kind, group in itertools.groupby(range(len(self.ops)), lambda k: self.ops[k].kind):
            run = list(group)
            if kind == "index":
                x = self._gather_run(x, run, params)
            elif kind == "affine":
                x = self._affine_run(x, run, params)
            else:  # "pixel" operations do not fuse
                for k in run:
                    x = self.ops[k].apply(x, params[k])
        return x

    def _gather_run(self, x: Tensor, run: list[int], params: Sequence[Params]) -> Tensor:
        hw = tuple(x.shape[-2:])
        maps = None
        for k in run:
            step = self.ops[k].index_maps(params[k], hw)
            maps = step if maps is None else geometric.compose_maps(maps, step)
            hw = (step[0].shape[1], step[1].shape[1])
        zero_fill = any(self.ops[k].zero_fill for k in run)
        return geometric.gather_maps(x, maps, zero_fill)

    def _affine_run(self, x: Tensor, run: list[int], params: Sequence[Params]) -> Tensor:
        white, means0 = value_scale(x), channel_means(x)
        affine = self.ops[run[0]].affine(params[run[0]], means0, white)
        for k in run[1:]:
            # channel means after the maps so far are affine in the input's means
            means = (affine[0] @ means0[..., None]).squeeze(-1) + affine[1]
            affine = color.compose_affine(affine, self.ops[k].affine(params[k], means, white))
        return color.finish_affine(x, affine, x)

    def __call__(
        self, x: Tensor, generator: torch.Generator, *, return_params: bool = False
    ) -> Tensor | tuple[Tensor, list[Params]]:
        check_images(x)
        params = self.sample_params(x.shape, generator, x.device)
        out = self.apply(x, params)
        return (out, params) if return_params else out

    def replay(self, x: Tensor, params: Sequence[Params]) -> Tensor:
        """The output that ``params`` (from ``return_params=True``) produce on ``x``."""
        return self.apply(x, params)


def _build(spec: str | Augmentation, stats: Any) -> tuple[Augmentation, float]:
    if isinstance(spec, Augmentation):
        return spec, 1.0
    name, args, kwargs = parse_spec(spec)
    factory = AUGMENTATIONS.get(name)
    p = 1.0
    if "p" in kwargs and "p" not in inspect.signature(factory).parameters:
        p = kwargs.pop("p")  # the pipeline's probability of applying this op to an image
    if name == "pca_lighting" and "eigvals" not in kwargs:
        if stats is None:
            raise RegistryError(
                f"augmentation {spec!r} needs data set statistics: make_pipeline(..., stats=...)"
            )
        kwargs["eigvals"], kwargs["eigvecs"] = color.eigen_from_stats(stats)
    if name == "random_erasing" and "mean" not in kwargs:
        try:  # fill given by keyword or position
            fill = inspect.signature(factory).bind(*args, **kwargs).arguments.get("fill")
        except TypeError:
            fill = None  # the factory's own call below says what is wrong
        if fill == "mean":
            kwargs["mean"] = _channel_mean(spec, stats)
    try:
        op = factory(*args, **kwargs)
        p = check_probability(p, "probability p")
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"bad arguments for augmentation {spec!r}: {exc}") from exc
    return op, p


def _channel_mean(spec: str, stats: Any) -> Any:
    """The data set's per-channel mean (on the [0, 1] scale) from a statistics object or dict."""
    mean = (
        stats.get("channel_mean")
        if isinstance(stats, dict)
        else getattr(stats, "channel_mean", None)
    )
    if mean is None:
        raise RegistryError(
            f"augmentation {spec!r} needs the data set's channel mean: make_pipeline(..., "
            "stats=...) with a channel_mean, or mean=... in the spec"
        )
    return mean


def make_pipeline(specs: Sequence[str | Augmentation], stats: Any = None) -> Pipeline:
    """Build a :class:`Pipeline` from specs such as ``"pad_crop(4, mode='reflect')"``.

    A spec may carry ``p=...``, the probability that an image gets that operation; for
    operations with their own ``p`` (hflip, vflip, grayscale, random_erasing) it is theirs.
    ``stats`` supplies the covariance eigenvalues/eigenvectors that ``pca_lighting`` needs and
    the channel mean of ``random_erasing(fill='mean')``.
    """
    if isinstance(specs, str):
        specs = [specs]
    built = [_build(spec, stats) for spec in specs]
    try:
        return Pipeline([op for op, _ in built], [p for _, p in built])
    except ValueError as exc:
        raise RegistryError(f"bad augmentation pipeline {list(specs)!r}: {exc}") from exc
