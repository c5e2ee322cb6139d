"""The trained model: the normalizer (the training split's statistics) as its first module, then
the network from the recipe, initialized by the recipe's scheme from the seed alone."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainlab.data import derive_seed
from trainlab.engine.splits import Splits
from trainlab.engine.step import STREAM_INIT
from trainlab.recipe import Recipe


def build_training_model(recipe: Recipe, splits: Splits, stats: Any = None) -> nn.Module:
    """Normalizer from the training split's statistics, model from its spec, then initialization;
    the weights depend on the seed alone."""
    from trainlab.init import initialize, zero_init_residual
    from trainlab.models import build_model
    from trainlab.preprocess import make_normalizer

    x = splits.train[0]
    normalize = make_normalizer(
        recipe.data.normalize, _stats_for(recipe.data.normalize, x, stats), shape=splits.in_shape
    )
    seed = derive_seed(recipe.train.seed, STREAM_INIT)
    generator = torch.Generator().manual_seed(seed)
    probe = x[torch.randperm(len(x), generator=generator)[:256]]  # data-driven schemes (LSUV)
    with torch.random.fork_rng(devices=[]):  # PyTorch's default init draws from the global RNG
        torch.manual_seed(seed)
        model = build_model(recipe.model, splits.in_shape, len(splits.classes), normalize)
    if recipe.init.scheme != "default":
        initialize(
            model,
            recipe.init.scheme,
            activation=recipe.model.activation,
            generator=generator,
            batch=probe,
        )
    if recipe.model.kind == "resnet" and recipe.init.zero_init_residual:
        zero_init_residual(model)
    return model


def _stats_for(spec: str, images: torch.Tensor, stats: Any = None) -> Any:
    """The statistics a normalizer needs, computed from the training split alone."""
    from trainlab.preprocess import compute_flat_stats, compute_stats
    from trainlab.registry import parse_spec

    name = parse_spec(spec)[0]
    if name in ("scale", "none"):
        return None
    if name in ("pca_whiten", "zca_whiten"):
        return compute_flat_stats(images)
    return stats if stats is not None else compute_stats(images)


def empty_model(recipe: Recipe, in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The model's shape with placeholder statistics, ready for a checkpoint's state_dict."""
    from trainlab.models import build_model
    from trainlab.preprocess import make_normalizer

    normalize = make_normalizer(recipe.data.normalize, None, shape=in_shape)
    return build_model(recipe.model, in_shape, num_classes, normalize)


def uses_channels_last(recipe: Recipe) -> bool:
    """NHWC lets oneDNN and cuDNN run conv, batch norm and pooling without layout shuffles: on
    this project's 2-core CPU it halves the default CNN's forward pass (max pooling in NCHW
    alone was 39% of it). An MLP has nothing to gain."""
    return recipe.train.channels_last and recipe.model.kind != "mlp"
