"""Where each pillar's registry lives, so recipes can check a technique name before any work.

Registries are imported lazily: checking a recipe's activation does not import augmentation.
"""

from __future__ import annotations

import importlib
from typing import Any

from trainlab.registry import parse_spec

_REGISTRIES: dict[str, tuple[str, str]] = {
    "activation": ("trainlab.activations", "ACTIVATIONS"),
    "init": ("trainlab.init", "INITS"),
    "normalizer": ("trainlab.preprocess", "NORMALIZERS"),
    "dropout": ("trainlab.regularize.dropout", "DROPOUT"),
    "pool": ("trainlab.models", "POOLS"),
    "linear": ("trainlab.models", "LINEARS"),
    "penalty": ("trainlab.regularize.penalties", "PENALTIES"),
}  # augment and mix specs are checked by building them: see validate_technique


def validate_technique(kind: str, spec: str) -> None:
    """Raise `RegistryError` (listing the valid names) unless ``spec`` names a known technique
    with arguments its factory accepts: the technique is built, so out-of-range values are
    caught too, before any data loads."""
    if kind == "augment":  # pipeline specs may carry a per-op probability, p=...
        import torch

        from trainlab.augment import make_pipeline

        # PCA lighting needs the data's eigen pairs and random erasing's fill='mean' its channel
        # mean; placeholders check everything else.
        placeholder = {"eigvals": torch.ones(3), "eigvecs": torch.eye(3), "channel_mean": [0.5] * 3}
        make_pipeline([spec], stats=placeholder)
        return
    if kind == "mix":
        make_mix(spec, channel_mean=(0.0,))
        return
    if kind == "dropout" and spec == "none":
        return
    module, attr = _REGISTRIES[kind]
    registry = getattr(importlib.import_module(module), attr)
    if kind == "normalizer":  # a tiny placeholder shape: the arguments are what is checked
        registry.create(spec, shape=(1, 2, 2))
    else:  # every factory checks its arguments' meaning, and builds nothing heavy
        registry.create(spec)


def make_mix(spec: str, channel_mean: tuple[float, ...] | None = None) -> Any:
    """The configured mix; cutout's ``fill='mean'`` gets the training set's channel mean
    (on the [0, 1] scale) unless the recipe gives one."""
    from trainlab.regularize.mix import MIXES

    name, _, kwargs = parse_spec(spec)
    if name == "cutout" and kwargs.get("fill") == "mean" and "mean" not in kwargs:
        return MIXES.create(spec, mean=channel_mean)
    return MIXES.create(spec)
