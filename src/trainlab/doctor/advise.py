"""``trainlab advise RECIPE``: the recipe checked against the lecture's rules, with no training.

Each rule below has a stated threshold and names a problem code of
:mod:`trainlab.doctor.problems`, the same codes the doctor finds in training; its advice is the
doctor's repairs for that code (:mod:`trainlab.doctor.repairs`), none of which the recipe
already does, each citing the lab.

=====================  =========================================================================
code                   fires when
=====================  =========================================================================
``vanishing_grad``     a saturating activation (sigmoid, tanh) in at least DEEP_LAYERS hidden
                       layers of a plain net (no batch norm, no residual connections)
``symmetric``          ``init.scheme`` is ``zeros`` or ``constant``: every unit of a layer starts
                       as a copy of the others and, with equal gradients, stays one
``collapse``           a fixed init std (normal(std), uniform(a)) in a plain net whose layers,
                       multiplied through, scale the signal by less than 1/DEPTH_RATIO of what
                       the activation's right init (gain / sqrt(fan_in)) would keep
``explode``            ... or by more than DEPTH_RATIO
``input_not_centred``  ``data.normalize`` is ``none`` or ``scale``: raw or [0, 1] pixels, all
                       positive
``dropout_placement``  dropout in a conv net where it acts after global average pooling
                       (``head = "avg"``, or a ResNet), not on large fully-connected layers
``overfitting``        no augmentation and no mixing on a small training set (fewer than
                       SMALL_DATA images)
``large_updates``      the learning rate above LR_FAR x the reference for the optimizer and
                       batch size (:func:`trainlab.doctor.repairs.reference_lr`)
``stalled``            ... or below 1/LR_FAR x the reference
=====================  =========================================================================

Reading the recipe imports no torch, so a check takes a fraction of a second: fields are checked
by type and range as ``load_recipe`` does, and technique names against the names the registries
hold (:data:`KNOWN_NAMES`); a name not among them, or a data set it does not know, is checked by
the registries themselves (slower, and exact).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainlab.doctor.problems import PROBLEMS
from trainlab.doctor.repairs import (
    SATURATING,
    Change,
    Context,
    reference_lr,
    repairs_for,
)
from trainlab.errors import RecipeError, RegistryError
from trainlab.recipe import Recipe
from trainlab.registry import parse_spec

DEEP_LAYERS = 5
DEPTH_RATIO = 10.0  # as trainlab.diagnostics.findings' collapse/explode rule
SMALL_DATA = 10_000
LR_FAR = 10.0

# The registries' names (tests/test_advise.py keeps this equal to them): a recipe whose names
# are all here needs no torch to be checked.
KNOWN_NAMES: dict[str, frozenset[str]] = {
    "activation": frozenset({"elu", "gelu", "identity", "leaky_relu", "linear", "logistic",
                             "none", "prelu", "relu", "selu", "sigmoid", "silu", "swish",
                             "tanh"}),
    "init": frozenset({"constant", "default", "glorot_normal", "glorot_uniform", "he", "kaiming",
                       "keep", "lecun_normal", "lsuv", "normal", "orthogonal", "uniform",
                       "xavier", "zeros"}),
    "normalizer": frozenset({"channel_mean", "mean_image", "none", "pca_whiten", "scale",
                             "standardize", "zca_whiten"}),
    "dropout": frozenset({"classic_dropout", "dropout", "dropout2d", "spatial_dropout"}),
    "pool": frozenset({"avg", "fractional", "max"}),
    "linear": frozenset({"dropconnect", "linear"}),
    "penalty": frozenset({"elastic_net", "l1", "l2", "none", "weight_penalty"}),
    "augment": frozenset({"brightness", "center_crop", "color_jitter", "contrast", "grayscale",
                          "greyscale", "hflip", "hue", "jitter", "pad_crop", "pca_lighting",
                          "randaugment", "random_erasing", "random_resized_crop", "saturation",
                          "scale_aug", "trivialaugment", "vflip"}),
    "mix": frozenset({"cutmix", "cutout", "mixup", "none"}),
}  # fmt: skip
# Image shape (C, H, W) and training images of the data sets advise knows by name.
DATA_SHAPES = {"fashion-mnist": (1, 28, 28), "mnist": (1, 28, 28), "cifar10": (3, 32, 32),
               "cifar100": (3, 32, 32), "cifar10-jpeg": (3, 32, 32)}  # fmt: skip
DATA_SIZES = {"fashion-mnist": 60_000, "mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000,
              "cifar10-jpeg": 50_000}  # fmt: skip
# trainlab.init.gain of each activation (the exact gain; tests check these against it).
GAINS = {"relu": 1.4142, "leaky_relu": 1.4141, "prelu": 1.372, "elu": 1.2452, "gelu": 1.5335,
         "silu": 1.6765, "swish": 1.6765, "tanh": 1.5925, "sigmoid": 1.8462,
         "logistic": 1.8462, "selu": 1.0, "identity": 1.0, "linear": 1.0, "none": 1.0}  # fmt: skip


@dataclass(frozen=True)
class Advice:
    code: str
    message: str
    changes: tuple[Change, ...]

    def line(self) -> str:
        fix = "; or ".join(c.sentence() for c in self.changes[:2])
        return f"{self.code}: {self.message}" + (f": {fix}" if fix else "")

    def to_dict(self) -> dict[str, Any]:
        changes = [c.to_dict() for c in self.changes]
        severity = PROBLEMS[self.code].severity
        return {"code": self.code, "severity": severity, "message": self.message,
                "changes": changes}  # fmt: skip


# -- reading a recipe without torch -------------------------------------------------------------
def read_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """The recipe, checked as :func:`trainlab.recipe.load_recipe` checks it; torch is imported
    only for a technique or data set name outside :data:`KNOWN_NAMES` (to check it exactly)."""
    from trainlab import recipe as recipes

    where = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"{where}: recipe file not found")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise RecipeError(f"{where}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise RecipeError(f"{where}: not a text file") from None
    for item in overrides:
        recipes._apply_override(raw, item)
    if not _all_known(raw):
        return recipes.recipe_from_dict(raw, where=where)  # the registries decide, exactly
    sections = {}
    for name, body in raw.items():
        if name not in recipes.SECTIONS:
            raise RecipeError(
                f"{where}: unknown section [{name}]; valid sections: {', '.join(recipes.SECTIONS)}"
            )
        if not isinstance(body, dict):
            raise RecipeError(f"{where}: [{name}] must be a table")
        sections[name] = recipes._build_section(name, body, where)
    return Recipe(**sections)


def _all_known(raw: dict[str, Any]) -> bool:
    """Every technique spec parses to a known name, and the data set is one advise knows."""
    try:
        for section, cls in typing.get_type_hints(Recipe).items():
            body = raw.get(section, {})
            if not isinstance(body, dict):
                return True  # the structural check names the problem
            defaults = cls()
            for f in dataclasses.fields(cls):
                kind = f.metadata.get("registry")
                if kind is None:
                    continue
                value = body.get(f.name, getattr(defaults, f.name))
                for spec in value if isinstance(value, list) else [value]:
                    if not isinstance(spec, str):
                        return True
                    if parse_spec(spec)[0] not in KNOWN_NAMES[kind] and spec != "none":
                        return False
        name = raw.get("data", {}).get("name", "fashion-mnist")
        return not isinstance(name, str) or _known_data(name)
    except RegistryError:
        return False


def _known_data(name: str) -> bool:
    name = name.strip()
    if name in DATA_SHAPES or name == "synthetic" or name.startswith("imagefolder:"):
        return True
    if not name.startswith("synthetic("):
        return False
    try:
        _, args, kwargs = parse_spec(name)
    except RegistryError:
        return False
    allowed = {"n", "classes", "channels", "size", "seed", "test_n", "noise"}
    return not args and set(kwargs) <= allowed and all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0
        for k, v in kwargs.items() if k not in ("seed", "test_n", "noise")
    )  # fmt: skip


# -- the rules ---------------------------------------------------------------------------------
def _data_shape(recipe: Recipe) -> tuple[int, int, int] | None:
    name = recipe.data.name.strip()
    if name in DATA_SHAPES:
        return DATA_SHAPES[name]
    if name.startswith("synthetic"):
        kwargs = parse_spec(name)[2] if "(" in name else {}
        size = int(kwargs.get("size", 16))
        return (int(kwargs.get("channels", 1)), size, size)
    return None


def _training_images(recipe: Recipe) -> int | None:
    name = recipe.data.name.strip()
    total = DATA_SIZES.get(name)
    if name.startswith("synthetic"):
        total = int(parse_spec(name)[2].get("n", 2048)) if "(" in name else 2048
    if total is None:
        return None
    if recipe.data.subset:
        total = min(total, recipe.data.subset)
    return int(total * (1 - recipe.data.val_fraction))


def _hidden_layers(recipe: Recipe) -> int:
    cfg = recipe.model
    return len(cfg.widths) * (cfg.depth if cfg.kind == "cnn" else 1)


def _plain(recipe: Recipe) -> bool:
    return recipe.model.norm == "none" and recipe.model.kind in ("mlp", "cnn")


def _fan_ins(recipe: Recipe) -> list[int] | None:
    """The fan-in of each hidden layer, first to last (None: the data's shape is unknown)."""
    shape = _data_shape(recipe)
    if shape is None:
        return None
    cfg = recipe.model
    if cfg.kind == "mlp":
        return [shape[0] * shape[1] * shape[2], *cfg.widths[:-1]]
    fans, c_in = [], shape[0]
    for width in cfg.widths:
        for _ in range(cfg.depth):
            fans.append(9 * c_in)
            c_in = width
    return fans


def _fixed_std(recipe: Recipe) -> float | None:
    name, args, kwargs = parse_spec(recipe.init.scheme)
    if name == "normal":
        return float(args[0] if args else kwargs.get("std", 0.01))
    if name == "uniform":
        return float(args[0] if args else kwargs.get("a", 0.01)) / math.sqrt(3)
    return None


def _rule_saturating_depth(recipe: Recipe) -> tuple[str, str] | None:
    act = parse_spec(recipe.model.activation)[0]
    layers = _hidden_layers(recipe)
    if act in SATURATING and _plain(recipe) and layers >= DEEP_LAYERS:
        return "vanishing_grad", (
            f"model.activation = {recipe.model.activation!r} in {layers} hidden layers without "
            f"batch norm or residual connections (rule: >= {DEEP_LAYERS}): the gradient shrinks "
            "through every saturating unit"
        )
    return None


def _rule_symmetric_init(recipe: Recipe) -> tuple[str, str] | None:
    if parse_spec(recipe.init.scheme)[0] not in ("zeros", "constant"):
        return None
    return "symmetric", (
        f"init.scheme = {recipe.init.scheme!r}: every unit of a layer starts with the same "
        "weights, gets the same gradient and stays a copy of the others"
    )


def _rule_fixed_init(recipe: Recipe) -> tuple[str, str] | None:
    std, fans = _fixed_std(recipe), _fan_ins(recipe)
    if std is None or fans is None or not _plain(recipe):
        return None
    gain = GAINS.get(parse_spec(recipe.model.activation)[0], 1.0)
    # each layer scales the signal by std * sqrt(fan_in) / gain against the right init
    log_scale = sum(math.log(std * math.sqrt(n) / gain) for n in fans)
    scale = math.exp(log_scale)
    if 1 / DEPTH_RATIO <= scale <= DEPTH_RATIO:
        return None
    code, word = ("collapse", "shrinks") if scale < 1 else ("explode", "grows")
    return code, (
        f"init.scheme = {recipe.init.scheme!r} over {len(fans)} layers without batch norm: the "
        f"signal {word} {scale if scale > 1 else 1 / scale:.3g}x against "
        f"{recipe.model.activation}'s right init (rule: {DEPTH_RATIO:g}x)"
    )


def _rule_input(recipe: Recipe) -> tuple[str, str] | None:
    name = parse_spec(recipe.data.normalize)[0]
    if name in ("none", "scale"):
        what = "raw pixels 0..255" if name == "none" else "pixels on [0, 1]"
        return "input_not_centred", (
            f"data.normalize = {recipe.data.normalize!r}: {what}, all positive, so every "
            "weight of a first-layer unit gets a gradient of the same sign"
        )
    return None


def _rule_dropout(recipe: Recipe) -> tuple[str, str] | None:
    cfg = recipe.model
    if cfg.dropout == "none" or cfg.kind == "mlp" or (cfg.kind == "cnn" and cfg.head == "flatten"):
        return None
    where = "a ResNet" if cfg.kind == "resnet" else 'a conv net with head = "avg"'
    return "dropout_placement", (
        f"model.dropout = {cfg.dropout!r} in {where}: it drops pooled features before a small "
        "classifier; dropout helps most on large fully-connected layers (Srivastava et al. 2014)"
    )


def _rule_small_data(recipe: Recipe) -> tuple[str, str] | None:
    images = _training_images(recipe)
    if images is None or images >= SMALL_DATA:
        return None
    if recipe.augment.train or recipe.regularize.mix != "none":
        return None
    return "overfitting", (
        f"{images} training images (rule: < {SMALL_DATA}) with no augmentation "
        "(augment.train = []) and no mixing: a network this size will over-fit them"
    )


def _rule_rate(recipe: Recipe) -> tuple[str, str] | None:
    ref, lr = reference_lr(recipe), recipe.optim.lr
    opt = f"{recipe.optim.name} (momentum {recipe.optim.momentum:g})"
    detail = f"{opt} at batch {recipe.train.batch_size}, whose reference is {ref:.3g}"
    if lr > LR_FAR * ref:
        return "large_updates", (
            f"optim.lr = {lr:g} is {lr / ref:.3g}x the reference for {detail} (rule: > {LR_FAR:g}x)"
        )
    if lr < ref / LR_FAR:
        return "stalled", (
            f"optim.lr = {lr:g} is 1/{ref / lr:.3g} of the reference for {detail} "
            f"(rule: < 1/{LR_FAR:g})"
        )
    return None


RULES = (_rule_symmetric_init, _rule_saturating_depth, _rule_fixed_init, _rule_input,
         _rule_dropout, _rule_small_data, _rule_rate)  # fmt: skip


def advise(recipe: Recipe) -> list[Advice]:
    """Every rule that fires for ``recipe``, each with the doctor's repairs for its code."""
    own = recipe.model.kind not in ("mlp", "cnn", "resnet")
    out = []
    for rule in RULES:
        if own and rule in (_rule_saturating_depth, _rule_fixed_init, _rule_dropout):
            continue  # they read model.* keys, which do not describe a user's network
        fired = rule(recipe)
        if fired is not None:
            code, message = fired
            changes = tuple(repairs_for(code, recipe, Context(own_model=own)))
            out.append(Advice(code, message, changes))
    return out
