"""The trained model: the normalizer (the training split's statistics) as its first module, then
the network, initialized by the recipe's scheme from the seed alone.

The network is one of trainlab's kinds (``model.kind`` = mlp, cnn, resnet) or the user's own:

- ``model.kind = "import:package.module:factory"`` (or ``"import:path/to/file.py:factory"``)
  imports ``factory`` from the user's environment and calls ``factory(in_shape, num_classes,
  **model.args)``; such a recipe runs that code, as any Python configuration does;
- ``fit(recipe, out, model=...)`` takes an ``nn.Module`` or a factory ``(in_shape,
  num_classes) -> nn.Module`` from Python; its recipe records ``model.kind = "python:NAME"``,
  and a resume or an evaluation is given the same ``model=`` again.

Either way the network maps a float (B, C, H, W) batch to (B, classes) logits and becomes
``Classifier(normalize, network, identity)``, so it gets what a built-in model gets. Before
training, :func:`check_model_fits` runs one batch through it, so that a network too deep for
the images, or one whose logits have the wrong shape, is one line naming the key.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from trainlab.data import derive_seed
from trainlab.engine.splits import Splits
from trainlab.engine.step import STREAM_INIT
from trainlab.errors import RecipeError, summary
from trainlab.model_kinds import BUILT_IN_KINDS, Factory, import_factory
from trainlab.recipe import Recipe

ModelSource = nn.Module | Factory | None  # what fit(model=...) takes


def python_kind(model: ModelSource) -> str:
    """The ``model.kind`` a recipe records for ``fit(model=...)``: what was passed, by name."""
    named = model if not isinstance(model, nn.Module) else type(model)
    qualname = getattr(named, "__qualname__", type(named).__name__)
    return f"python:{getattr(named, '__module__', '?')}.{qualname}"


def _user_network(recipe: Recipe, model: ModelSource, in_shape: tuple[int, int, int],
                  num_classes: int) -> nn.Module:  # fmt: skip
    kind = recipe.model.kind
    if isinstance(model, nn.Module):
        return model
    if model is None and kind.startswith("python:"):
        raise RecipeError(
            f"model.kind = {kind!r}: this run's network came from Python; pass it again "
            "(fit(..., model=...), model_from_checkpoint(..., model=...))"
        )
    factory = model if model is not None else import_factory(kind)
    args = dict(recipe.model.args) if model is None else {}
    try:
        network = factory(tuple(in_shape), num_classes, **args)
    except Exception as exc:
        raise RecipeError(
            f"model.kind = {kind!r}: the factory failed for images of "
            f"{'x'.join(map(str, in_shape))} and {num_classes} classes ({summary(exc)})"
        ) from exc
    if not isinstance(network, nn.Module):
        raise RecipeError(
            f"model.kind = {kind!r}: the factory returned a {type(network).__name__}, "
            "not an nn.Module"
        )
    return network


def _network(
    recipe: Recipe,
    model: ModelSource,
    in_shape: tuple[int, int, int],
    num_classes: int,
    normalize: nn.Module,
) -> nn.Module:
    from trainlab.models import Classifier, build_model

    if model is not None or recipe.model.kind not in BUILT_IN_KINDS:
        network = _user_network(recipe, model, in_shape, num_classes)
        return Classifier(normalize, network, nn.Identity())
    try:
        return build_model(recipe.model, in_shape, num_classes, normalize)
    except RuntimeError as exc:  # the CNN counts its features with one pass at build time
        raise _misfit(recipe, in_shape, exc) from exc


def _misfit(recipe: Recipe, in_shape: tuple[int, ...], exc: BaseException) -> RecipeError:
    cfg, size = recipe.model, "x".join(map(str, in_shape))
    if cfg.kind in BUILT_IN_KINDS:
        where = (
            f"model.widths = {cfg.widths} (model.depth = {cfg.depth}, model.kind = {cfg.kind!r})"
        )
        hint = "fewer stages in model.widths, or larger images"
        return RecipeError(
            f"{where}: the network does not fit {size} images: {hint} ({summary(exc)})"
        )
    return RecipeError(
        f"model.kind = {cfg.kind!r}: the network fails on a batch of {size} images ({summary(exc)})"
    )


# ---------------------------------------------------------------------------------------------
# Building and checking.


def build_training_model(
    recipe: Recipe, splits: Splits, stats: Any = None, model: ModelSource = None
) -> nn.Module:
    """Normalizer from the training split's statistics, network from its spec (or ``model``),
    then initialization; the weights depend on the seed alone (a module passed in keeps its own
    weights until the scheme, unless ``init.scheme = "keep"``)."""
    from trainlab.init import initialize, make_init, zero_init_residual
    from trainlab.models import classifier_layer, init_classifier
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
        network = _network(recipe, model, splits.in_shape, len(splits.classes), normalize)
        # before the scheme: one pass also gives lazy layers (nn.LazyLinear) their shapes
        check_model_fits(network, recipe, splits)
    if recipe.init.scheme not in ("default", "keep"):
        initialize(
            network,
            recipe.init.scheme,
            activation=recipe.model.activation,
            generator=generator,
            batch=probe,
        )
        if recipe.init.small_head and make_init(recipe.init.scheme).sized_by_fans:
            head = classifier_layer(network, len(splits.classes))
            if head is not None:
                init_classifier(head, generator=generator)
    if recipe.model.kind == "resnet" and recipe.init.zero_init_residual:
        zero_init_residual(network)
    return network


def check_model_fits(model: nn.Module, recipe: Recipe, splits: Splits) -> None:
    """One forward pass of two training images (on the CPU, where the model is built), in eval
    mode and without gradients, so that no statistic moves: a network that cannot take the
    images, or whose logits are not (batch, classes), is one `RecipeError` naming the key and
    the sizes, before any training."""
    images = splits.train[0][:2]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(images)
    except RuntimeError as exc:
        raise _misfit(recipe, splits.in_shape, exc) from exc
    finally:
        model.train(was_training)
    expected = (len(images), len(splits.classes))
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        key = "model.kind" if recipe.model.kind not in BUILT_IN_KINDS else "model"
        raise RecipeError(
            f"{key} = {recipe.model.kind!r}: for a batch of {expected[0]} images of "
            f"{'x'.join(map(str, splits.in_shape))} the network returns {got}; expected logits "
            f"{expected} = [batch, classes]"
        )


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


def empty_model(
    recipe: Recipe,
    in_shape: tuple[int, int, int],
    num_classes: int,
    model: ModelSource = None,
) -> nn.Module:
    """The model's shape with placeholder statistics, ready for a checkpoint's state_dict."""
    from trainlab.preprocess import make_normalizer

    normalize = make_normalizer(recipe.data.normalize, None, shape=in_shape)
    return _network(recipe, model, tuple(in_shape), num_classes, normalize)


def uses_channels_last(recipe: Recipe) -> bool:
    """NHWC lets oneDNN and cuDNN run conv, batch norm and pooling without layout shuffles: on
    this project's 2-core CPU it halves the default CNN's forward pass (max pooling in NCHW
    alone was 39% of it). An MLP has nothing to gain."""
    return recipe.train.channels_last and recipe.model.kind != "mlp"
