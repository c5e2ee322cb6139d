"""Where each pillar's registry lives, so recipes can check a technique name before any work.

Registries are imported lazily: checking a recipe's activation does not import augmentation.
"""

from __future__ import annotations

import importlib

from trainlab.registry import Registry

_REGISTRIES: dict[str, tuple[str, str]] = {
    "activation": ("trainlab.activations", "ACTIVATIONS"),
    "init": ("trainlab.init", "INITS"),
    "normalizer": ("trainlab.preprocess", "NORMALIZERS"),
    "dropout": ("trainlab.models", "DROPOUTS"),
    "pool": ("trainlab.models", "POOLS"),
    "linear": ("trainlab.models", "LINEARS"),
    "penalty": ("trainlab.regularize.penalties", "PENALTIES"),
    "mix": ("trainlab.regularize.mix", "MIXES"),
    "augment": ("trainlab.augment", "AUGMENTATIONS"),
}


def registry_for(kind: str) -> Registry:
    module, attr = _REGISTRIES[kind]
    return getattr(importlib.import_module(module), attr)


def validate_technique(kind: str, spec: str) -> None:
    """Raise `RegistryError` (listing the valid names) unless ``spec`` names a known technique
    with arguments its factory accepts; factories that build nothing heavy are built, so that
    out-of-range values are caught too."""
    if kind == "augment":  # pipeline specs may carry a per-op probability, p=...
        from trainlab.augment import make_pipeline

        make_pipeline([spec])
        return
    registry = registry_for(kind)
    if kind in ("dropout", "pool", "linear", "penalty", "mix"):
        registry.create(spec)
    else:
        registry.validate(spec)
