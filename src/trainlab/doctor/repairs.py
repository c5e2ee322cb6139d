"""The lecture's fixes as recipe changes, the order the doctor tries them in, and their evidence.

A fix is a function of the recipe that returns a :class:`Change` (the keys to set, why, and the
lab experiment behind it), or None where the recipe already does it or it does not apply (a
user's own model has no ``model.*`` keys to change). So advice never repeats what a recipe
already does, and every piece of it names the key and a value: ``--set optim.lr=0.005``.

The order per problem (:data:`REPAIR_ORDER`) follows the lecture: a lower rate or warm-up for
divergence and large updates; the right initialization for the activation for collapse or
explosion; Leaky ReLU, ELU or a lower rate for dead units; batch norm; standardized input (for
an input not centred, at the rate x 3 or x 1/3 where the old rate does not verify it);
gradient clipping; dropout, weight decay or augmentation for over-fitting; a higher rate when
the loss stalls. Learning rates are anchored to a reference for the optimizer and batch size
(:func:`reference_lr`). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trainlab.recipe import Recipe
from trainlab.registry import parse_spec

# Activations by what the right initialization is for them (trainlab.activations has the
# formulas; tests/test_advise.py checks these names against it).
SATURATING = ("sigmoid", "logistic", "tanh")
RELU_LIKE = ("relu", "leaky_relu", "prelu", "elu", "gelu", "silu", "swish")
# Schemes that already fit the activation: Kaiming uses the activation's exact gain in trainlab,
# LSUV measures it, LeCun normal is SELU's; Xavier/Glorot is the classic choice for tanh.
FITTING_INIT = {
    "relu_like": ("kaiming", "he", "lsuv", "orthogonal"),
    "saturating": (
        "kaiming",
        "he",
        "lsuv",
        "orthogonal",
        "xavier",
        "glorot_normal",
        "glorot_uniform",
        "lecun_normal",
    ),
    "selu": ("lecun_normal", "lsuv"),
}
# The rate check's steps (trainlab.doctor.doctor.rate_check): half a decade down and up. The
# standardizing fixes retry at the same factors.
RATE_FACTORS = (1 / 3, 3.0)
FLIP_SAFE_DATA = ("fashion-mnist", "cifar10", "cifar100", "cifar10-jpeg")  # mirror keeps labels
IMAGE_SIZE = {"fashion-mnist": 28, "mnist": 28, "cifar10": 32, "cifar100": 32, "cifar10-jpeg": 32}


@dataclass(frozen=True)
class Change:
    """One recipe change: the keys to set, why (the lecture's reason) and the lab experiment
    that measured it (None: no experiment backs it)."""

    settings: dict[str, Any]
    because: str
    lab: str | None = None
    name: str = ""  # the fix's name, e.g. "lower_rate"

    def flags(self) -> str:
        return " ".join(
            f"--set {shlex.quote(f'{k}={format_value(v)}')}" for k, v in self.settings.items()
        )

    def sentence(self) -> str:
        return f"{self.because}: {self.flags()} ({cite(self.lab)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "change": dict(self.settings),
            "because": self.because,
            "lab": cite(self.lab),
        }


@dataclass(frozen=True)
class Context:
    """What a fix may need besides the recipe."""

    own_model: bool = False  # the user's nn.Module: model.* keys do not describe it
    tried: frozenset[str] = field(default_factory=frozenset)  # changes already tried
    activation: str | None = None  # a user's network's own activation, where it differs


def format_value(value: Any) -> str:
    """A value as ``--set`` reads it: TOML where TOML reads it back the same, else a bare word
    (``leaky_relu(0.1)``)."""
    text = _toml(value)
    if isinstance(value, str):
        try:
            tomllib.loads(f"v = {value}")
        except tomllib.TOMLDecodeError:
            return value  # a bare word or a spec, read as a string by --set
    return text


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def cite(experiment: str | None) -> str:
    """``"dead-relu: held"``: the lab's verdict as recorded (trainlab.lab.ledger), or plainly
    that no experiment backs the advice. ``"small-data#batch_norm beats the baseline"`` cites
    that one comparison of the experiment, where the advice rests on it and not on the claim."""
    if experiment is None:
        return "no experiment backs it"
    experiment, _, comparison = experiment.partition("#")
    try:
        from trainlab.lab.ledger import comparison_verdict, current_verdict
    except ImportError:
        return f"{experiment}: no verdict recorded"
    if comparison:
        found = comparison_verdict(experiment, comparison)
        return f"{experiment} ({comparison}): {found or 'no verdict recorded'}"
    verdict = current_verdict(experiment)
    if verdict is None:
        return f"{experiment}: no verdict recorded"
    return f"{experiment}: {verdict['verdict']}"


def reference_lr(recipe: Recipe) -> float:
    """The learning rate the lecture's recipes would start from for this optimizer and batch.

    SGD: 0.1 per 256 images at momentum 0.9 (Goyal et al. 2017, "Accurate, Large Minibatch
    SGD"), held as an effective step ``lr / (1 - momentum)`` of ``B / 256``, so plain SGD gets
    ten times the rate. Adam, AdamW and RMSprop: 1e-3 (Kingma & Ba 2015; Hinton's lecture 6
    for RMSprop) scaled by ``sqrt(B / 256)`` (Malladi et al. 2022, the square-root rule for
    adaptive methods)."""
    batch = recipe.train.batch_size
    if recipe.optim.name in ("adam", "adamw", "rmsprop"):  # RMSprop's 1e-3: Hinton's lecture 6
        return 1e-3 * math.sqrt(batch / 256)
    return batch / 256 * (1 - recipe.optim.momentum)


def round_rate(lr: float) -> float:
    """Three significant digits: a rate a person would write (0.0125, not 0.012500000000000001)."""
    return float(f"{lr:.3g}")


def activation_family(spec: str) -> str:
    name = parse_spec(spec)[0]
    if name in SATURATING:
        return "saturating"
    if name == "selu":
        return "selu"
    return "relu_like" if name in RELU_LIKE else "other"


# -- the fixes ---------------------------------------------------------------------------------
def lower_rate(recipe: Recipe, ctx: Context) -> Change | None:
    """A tenth of the rate, or the reference rate if that is lower: a rate far above the
    reference is cut to it in one step."""
    lr = recipe.optim.lr
    new = round_rate(min(lr / 10, reference_lr(recipe)))
    return Change({"optim.lr": new}, "lower the learning rate", None, "lower_rate")


def lower_rate_gently(recipe: Recipe, ctx: Context) -> Change | None:
    """A third of the rate: for a loss that swings but does not diverge."""
    new = round_rate(recipe.optim.lr / 3)
    return Change({"optim.lr": new}, "lower the learning rate", None, "lower_rate_gently")


def higher_rate(recipe: Recipe, ctx: Context) -> Change | None:
    """The reference rate if the recipe's is below a third of it, else three times the rate;
    nothing if the rate is already above three times the reference."""
    lr, ref = recipe.optim.lr, reference_lr(recipe)
    if lr > 3 * ref:
        return None
    new = round_rate(ref if lr < ref / 3 else 3 * lr)
    return Change({"optim.lr": new}, "raise the learning rate", None, "higher_rate")


def warm_up(recipe: Recipe, ctx: Context) -> Change | None:
    """A linear warm-up over a twentieth of the run (at least a tenth of an epoch), so the first
    steps, where gradients are largest, are small (Goyal et al. 2017)."""
    if recipe.schedule.warmup_epochs > 0:
        return None
    epochs = recipe.train.epochs
    warm = min(float(epochs), max(0.1, round(epochs / 20, 1)))
    return Change({"schedule.warmup_epochs": warm}, "warm the learning rate up", None, "warm_up")


def right_init(recipe: Recipe, ctx: Context) -> Change | None:
    """The initialization that keeps the activations' variance through depth for this
    activation: Kaiming with its exact gain (He et al. 2015), LeCun normal for SELU. For a
    user's network the gain comes from ``model.activation``, so the change names it too."""
    activation = ctx.activation or recipe.model.activation
    family = activation_family(activation)
    scheme = parse_spec(recipe.init.scheme)[0]
    if family == "other" or (
        scheme in FITTING_INIT[family] and activation == recipe.model.activation
    ):
        return None
    new, lab = ("lecun_normal", "selu") if family == "selu" else ("kaiming", "deep-init")
    if family == "saturating":
        lab = "init-statistics"
    settings: dict[str, Any] = {"init.scheme": new}
    if activation != recipe.model.activation:
        settings["model.activation"] = activation
    return Change(settings, f"initialize for {activation} ({new})", lab, "right_init")


def break_symmetry(recipe: Recipe, ctx: Context) -> Change | None:
    """Random weights in place of copies: zero or constant weights give every unit of a layer
    the same output and gradient, so the units stay copies (cs231n, "Pitfall: all zero
    initialization"); the random scheme is the one that fits the activation."""
    fitting = right_init(recipe, ctx)
    if fitting is not None:
        settings = fitting.settings
    elif parse_spec(recipe.init.scheme)[0] != "kaiming":  # no activation to fit: Kaiming's
        settings = {"init.scheme": "kaiming"}
    else:
        return None
    scheme = settings["init.scheme"]
    return Change(settings, f"break the symmetry: initialize at random ({scheme})", "zero-init",
                  "break_symmetry")  # fmt: skip


def _swap_activation(
    recipe: Recipe, ctx: Context, now: tuple[str, ...], settings: dict[str, Any], because: str,
    lab: str, name: str,
) -> Change | None:  # fmt: skip
    """Another activation where the recipe's is one of ``now`` (not for a user's network)."""
    if ctx.own_model or parse_spec(recipe.model.activation)[0] not in now:
        return None
    return Change(settings, because, lab, name)


def leaky_relu(recipe: Recipe, ctx: Context) -> Change | None:
    """Leaky ReLU (Maas et al. 2013): a slope of 0.1 below zero keeps every unit learning."""
    settings = {"model.activation": "leaky_relu(0.1)"}
    return _swap_activation(recipe, ctx, ("relu",), settings, "use Leaky ReLU, which cannot die",
                            "dead-relu", "leaky_relu")  # fmt: skip


def elu(recipe: Recipe, ctx: Context) -> Change | None:
    """ELU (Clevert et al. 2016): smooth and negative below zero, so it cannot die either."""
    settings = {"model.activation": "elu"}
    return _swap_activation(recipe, ctx, ("relu",), settings, "use ELU, which cannot die",
                            "dead-relu", "elu")  # fmt: skip


def relu_instead(recipe: Recipe, ctx: Context) -> Change | None:
    """ReLU and Kaiming in place of a saturating activation in a deep stack (Krizhevsky et al.
    2012; Glorot et al. 2011)."""
    settings = {"model.activation": "relu", "init.scheme": "kaiming"}
    return _swap_activation(recipe, ctx, SATURATING, settings,
                            "use ReLU, whose gradient does not saturate", "relu-vs-tanh",
                            "relu_instead")  # fmt: skip


def tanh_instead(recipe: Recipe, ctx: Context) -> Change | None:
    """tanh for sigmoid: zero-centred outputs (LeCun et al. 1998, "Efficient BackProp")."""
    settings = {"model.activation": "tanh"}
    return _swap_activation(recipe, ctx, ("sigmoid", "logistic"), settings,
                            "use tanh, which is zero-centred", "not-zero-centred",
                            "tanh_instead")  # fmt: skip


def batch_norm(recipe: Recipe, ctx: Context) -> Change | None:
    if ctx.own_model or recipe.model.norm != "none":
        return None
    return Change(
        {"model.norm": "batch"},
        "add batch norm (Ioffe & Szegedy 2015)",
        "small-data#batch_norm beats the baseline",
        "batch_norm",
    )


def standardize(recipe: Recipe, ctx: Context) -> Change | None:
    if parse_spec(recipe.data.normalize)[0] not in ("none", "scale", "mean_image", "channel_mean"):
        return None
    return Change(
        {"data.normalize": "standardize"},
        "standardize the input per channel",
        "preprocessing",
        "standardize",
    )


def standardize_raise_rate(recipe: Recipe, ctx: Context) -> Change | None:
    """Standardizing with three times the rate. A centred input of unit scale changes the
    curvature the rate must fit (LeCun et al. 1998, "Efficient BackProp"), so the rate chosen
    for the raw input need not be the standardized input's: where standardizing at the old rate
    lost, it is verified again at the rate check's factors, x 3 first (where it was kept, the
    check moved the rate up). Adopted after seeds 33 and 142-153 (docs/doctor.md)."""
    return _standardize_at(recipe, ctx, RATE_FACTORS[1], "raise")


def standardize_lower_rate(recipe: Recipe, ctx: Context) -> Change | None:
    """Standardizing with a third of the rate: the other way (see standardize_raise_rate)."""
    return _standardize_at(recipe, ctx, RATE_FACTORS[0], "lower")


def _standardize_at(recipe: Recipe, ctx: Context, factor: float, way: str) -> Change | None:
    change = standardize(recipe, ctx)
    if change is None:
        return None
    lr = round_rate(recipe.optim.lr * factor)
    return Change({**change.settings, "optim.lr": lr},
                  f"standardize the input per channel and {way} the rate with it", change.lab,
                  f"standardize_{way}_rate")  # fmt: skip


def clip_gradients(recipe: Recipe, ctx: Context) -> Change | None:
    if recipe.optim.clip_grad_norm > 0:
        return None
    return Change(
        {"optim.clip_grad_norm": 1.0},
        "clip the gradient norm (Pascanu et al. 2013)",
        None,
        "clip_gradients",
    )


def dropout(recipe: Recipe, ctx: Context) -> Change | None:
    """Dropout(0.5) on the fully-connected layers (Srivastava et al. 2014): where trainlab's MLP
    has them and a flatten head feeds its classifier; not after global pooling."""
    cfg = recipe.model
    fc = cfg.kind == "mlp" or (cfg.kind == "cnn" and cfg.head == "flatten")
    if ctx.own_model or cfg.dropout != "none" or not fc:
        return None
    return Change({"model.dropout": "dropout(0.5)"}, "add dropout", "dropout", "dropout")


def weight_decay(recipe: Recipe, ctx: Context) -> Change | None:
    wd = recipe.optim.weight_decay
    if wd >= 5e-3:
        return None
    new = 5e-4 if wd < 5e-4 else 5e-3
    return Change({"optim.weight_decay": new}, "add weight decay", None, "weight_decay")


def strong_weight_decay(recipe: Recipe, ctx: Context) -> Change | None:
    """Weight decay at 5e-3 beside the first step's 5e-4, as another alternative for
    over-fitting, where the recipe has less than 5e-4 (from 5e-4 on, :func:`weight_decay` offers
    5e-3 itself). In the order of over-fitting's fixes only where the benchmark measures it
    (bench_doctor's DOCTOR_RULES): a candidate after a probe at seeds 23 and 24, where on the
    small Fashion-MNIST MLP 5e-4 left it over-fitting and 5e-3 cleared it; not adopted at seeds
    171-180 (it lost ten points on the small CIFAR-10 CNN at one seed; docs/doctor.md)."""
    if recipe.optim.weight_decay >= 5e-4:
        return None
    return Change({"optim.weight_decay": 5e-3}, "add strong weight decay", None,
                  "strong_weight_decay")  # fmt: skip


def augmentation(recipe: Recipe, ctx: Context) -> Change | None:
    """Random crops of a padded image and, where a mirror image keeps its label, flips
    (Krizhevsky et al. 2012)."""
    name = recipe.data.name
    base = name.split("(")[0]
    size = IMAGE_SIZE.get(base) or _synthetic_size(name)
    ops = list(recipe.augment.train)
    have = {parse_spec(op)[0] for op in ops}
    wanted = []
    if base in FLIP_SAFE_DATA and "hflip" not in have:
        wanted.append("hflip")
    if "pad_crop" not in have and "random_resized_crop" not in have:
        wanted.append(f"pad_crop({max(1, size // 8)})")
    if not wanted:
        return None
    return Change(
        {"augment.train": ops + wanted},
        "augment the training images",
        "augmentation",
        "augmentation",
    )


def _synthetic_size(name: str) -> int:
    if name.startswith("synthetic("):
        return int(parse_spec(name)[2].get("size", 16))
    return 16 if name == "synthetic" else 32


Fix = Callable[[Recipe, Context], Change | None]

# The order in which the doctor tries the fixes for each problem, and in which advice lists them.
REPAIR_ORDER: dict[str, tuple[Fix, ...]] = {
    "non_finite": (lower_rate, warm_up, right_init, batch_norm, standardize, clip_gradients),
    "exploding_grad": (lower_rate, warm_up, right_init, batch_norm, standardize, clip_gradients),
    "symmetric": (break_symmetry,),
    # No recipe key reaches a cut graph, a softmax or a missing activation inside the user's
    # forward: their advice says what to change in the code.
    "no_gradient": (),
    "probability_output": (),
    "linear_network": (),
    "large_updates": (lower_rate, warm_up),
    "explode": (right_init, batch_norm, standardize),
    "collapse": (right_init, batch_norm),
    "vanishing_grad": (right_init, batch_norm, relu_instead),
    "saturated": (right_init, batch_norm, relu_instead, lower_rate),
    "dead_units": (leaky_relu, elu, lower_rate),
    "input_not_centred": (standardize, standardize_raise_rate, standardize_lower_rate),
    "not_zero_centred": (tanh_instead, batch_norm),
    "oscillating": (lower_rate_gently, warm_up, batch_norm, clip_gradients),
    "stalled": (higher_rate, batch_norm, standardize, right_init),
    "overfitting": (dropout, weight_decay, augmentation),
    "dropout_placement": (),
}


# For sigmoid and tanh hidden layers the lecture's advice comes first: "don't use sigmoid; try
# tanh, but don't expect much" (cs231n). A better init or batch norm makes such a stack train,
# but not as well as ReLU (at seed 3 two deep sigmoid MLPs repaired by batch norm ended 8-10
# points below their ReLU variant). First for vanishing_grad and saturated only; at seed 4 that
# never acted, since both sigmoid setups showed collapse first and batch norm repaired it (81%
# against ReLU's 92.7%): so for every problem of the signal's scale through such a stack.
RELU_FIRST_CODES = ("explode", "collapse", "vanishing_grad", "saturated")
# The activations that rule covers. tanh: not adopted at seeds 10-13 (16/16
# held-out tanh setups repaired against 10/16, a per-seed interval of -0.6 to +3.7 points),
# adopted at its second judgement, seeds 36 and 154-165, at a 97.5% interval (docs/doctor.md).
RELU_FIRST_FOR = ("sigmoid", "logistic", "tanh")


def _order(code: str, recipe: Recipe) -> tuple[Fix, ...]:
    order = REPAIR_ORDER.get(code, ())
    if code in RELU_FIRST_CODES and parse_spec(recipe.model.activation)[0] in RELU_FIRST_FOR:
        order = (relu_instead, *(fix for fix in order if fix is not relu_instead))
    return order


def repairs_for(code: str, recipe: Recipe, ctx: Context | None = None) -> list[Change]:
    """The changes that apply to ``recipe`` for problem ``code``, in the order to try them:
    nothing the recipe already does, nothing already tried."""
    ctx = ctx or Context()
    changes = (fix(recipe, ctx) for fix in _order(code, recipe))
    return [c for c in changes if c is not None and change_key(c) not in ctx.tried]


# The activation swaps as changes to a user's own network, which no recipe key reaches.
IN_CODE = {
    "relu_instead": "use nn.ReLU in place of {activation} and initialize for it (Kaiming)",
    "tanh_instead": "use nn.Tanh in place of nn.Sigmoid",
    "leaky_relu": "use nn.LeakyReLU(0.1) in place of nn.ReLU",
    "elu": "use nn.ELU in place of nn.ReLU",
}


def code_changes(code: str, recipe: Recipe, activation: str | None) -> list[str]:
    """For a user's own network whose modules use ``activation`` most: the lecture's activation
    swaps for ``code``, worded as changes to the network's code, each citing the lab."""
    if activation is None:
        return []
    as_built = dataclasses.replace(
        recipe, model=dataclasses.replace(recipe.model, activation=activation)
    )
    out = []
    for fix in _order(code, as_built):
        change = fix(as_built, Context()) if fix.__name__ in IN_CODE else None
        if change is not None:
            text = IN_CODE[fix.__name__].format(activation=activation)
            out.append(f"{text} ({cite(change.lab)})")
    return out


def change_key(change: Change) -> str:
    return json.dumps(change.settings, sort_keys=True)


def advice(
    code: str,
    recipe: Recipe,
    *,
    own_model: bool = False,
    activation: str | None = None,
    limit: int = 2,
) -> str | None:
    """The first ``limit`` changes for ``code`` in one sentence, or None if none applies. For a
    user's own network (``activation``: the one its modules use most) the activation swaps
    follow, as changes to its code."""
    ctx = Context(own_model=own_model, activation=activation if own_model else None)
    changes = repairs_for(code, recipe, ctx)[:limit]
    parts = [c.sentence() for c in changes]
    in_code = code_changes(code, recipe, activation)[:limit] if own_model else []
    if in_code:
        parts.append("in your network's code: " + "; or ".join(in_code))
    return "; or ".join(parts) if parts else None
