"""A run's whole configuration: TOML in, validated dataclasses out.

Every field of every section is checked before any work starts: an unknown key, a wrong type or
an out-of-range value is one `RecipeError` that names the file, the key and what was expected.
Technique names (activations, initializations, normalizers, regularizers, augmentations) are
checked against their registries, so a typo fails in a second rather than after data loading.

``--set section.key=value`` overrides any field; the value is read as a TOML value
(``train.epochs=3``, ``model.widths=[16,32]``) and, if it is not one, as a plain string
(``model.activation=leaky_relu(0.1)``).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainlab.errors import RecipeError, RegistryError

# --------------------------------------------------------------------------------------------
# Sections. Each field's metadata may carry a range check: (lo, hi, lo_inclusive, hi_inclusive).


def _f(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    choices: tuple[str, ...] | None = None,
    registry: str | None = None,
    help: str = "",
) -> Any:
    meta = {
        "lo": lo,
        "hi": hi,
        "lo_open": lo_open,
        "hi_open": hi_open,
        "choices": choices,
        "registry": registry,
        "help": help,
    }
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = _f(
        "fashion-mnist",
        help="data set: fashion-mnist, mnist, cifar10, cifar100, imagefolder:PATH, synthetic(...)",
    )
    data_dir: str = _f("", help="folder to look in first (empty: $TRAINLAB_DATA, then defaults)")
    subset: int = _f(0, lo=0, help="train on this many images, drawn by seed (0: all)")
    test_subset: int = _f(0, lo=0, help="evaluate on this many test images (0: all)")
    val_fraction: float = _f(
        0.0,
        lo=0.0,
        hi=0.5,
        hi_open=True,
        help="fraction of training images held out for validation",
    )
    normalize: str = _f(
        "standardize", registry="normalizer", help="preprocessing computed from the training set"
    )


@dataclass
class ModelConfig:
    kind: str = _f(
        "cnn",
        help="mlp, cnn, resnet, or import:package.module:factory (import:file.py:factory) for a "
        "network of your own, called as factory(in_shape, num_classes, **model.args)",
    )
    args: dict[str, Any] = _f({}, help="keyword arguments of an import: factory (a table)")
    widths: list[int] = _f(
        [32, 64, 128], help="channels per stage (cnn/resnet) or hidden units (mlp)"
    )
    depth: int = _f(1, lo=1, hi=64, help="conv layers (cnn) or residual blocks (resnet) per stage")
    activation: str = _f("relu", registry="activation")
    norm: str = _f("batch", choices=("none", "batch"))
    dropout: str = _f(
        "none", registry="dropout", help="before the classifier (and after each MLP layer)"
    )
    pool: str = _f("max", registry="pool", help="downsampling between stages (cnn)")
    head: str = _f(
        "flatten",
        choices=("avg", "flatten"),
        help="cnn: global average pooling (NiN), or all features of the last stage (VGG)",
    )
    linear: str = _f(
        "linear", registry="linear", help="hidden and output layers: linear or dropconnect(p)"
    )
    survival_prob: float = _f(
        1.0,
        lo=0.0,
        hi=1.0,
        lo_open=True,
        help="stochastic depth: survival probability of the last residual block",
    )


@dataclass
class InitConfig:
    scheme: str = _f("kaiming", registry="init")
    zero_init_residual: bool = _f(True, help="zero the last norm scale of each residual block")
    small_head: bool = _f(
        True,
        help="the classifier (the last Linear to the classes) drawn at std 0.1/sqrt(fan_in), so "
        "the first loss is ln(classes); under the schemes that size weights by their fans",
    )


@dataclass
class OptimConfig:
    name: str = _f(
        "sgd",
        choices=("sgd", "adam", "adamw", "rmsprop"),
        help="sgd (optim.nesterov), adam, adamw (decoupled decay), rmsprop",
    )
    lr: float = _f(0.05, lo=0.0, lo_open=True)
    momentum: float = _f(0.9, lo=0.0, hi=1.0, hi_open=True)
    nesterov: bool = _f(True)
    beta2: float = _f(
        0.999,
        lo=0.0,
        hi=1.0,
        lo_open=True,
        hi_open=True,
        help="second-moment decay: Adam's and AdamW's beta2, RMSprop's alpha",
    )
    weight_decay: float = _f(
        5e-4,
        lo=0.0,
        help="on weights only (not biases or norms): decoupled for adamw, added to the "
        "gradient (L2) for sgd, adam and rmsprop",
    )
    clip_grad_norm: float = _f(
        0.0, lo=0.0, help="rescale the gradient to at most this global L2 norm (0: off)"
    )


@dataclass
class ScheduleConfig:
    name: str = _f("cosine", choices=("constant", "step", "cosine", "linear"))
    warmup_epochs: float = _f(0.0, lo=0.0, help="linear warm-up from 0, in epochs")
    step_epochs: int = _f(30, lo=1, help="step: decay every this many epochs")
    gamma: float = _f(0.1, lo=0.0, hi=1.0, lo_open=True, help="step: decay factor")
    final_lr: float = _f(0.0, lo=0.0, hi=1.0, help="cosine/linear: final lr as a fraction of lr")


@dataclass
class TrainConfig:
    epochs: int = _f(8, lo=1)
    batch_size: int = _f(128, lo=1)
    eval_batch_size: int = _f(1024, lo=1)
    seed: int = _f(0, lo=0)
    device: str = _f("auto", help="auto, cpu, cuda, cuda:N")
    channels_last: bool = _f(True, help="NHWC memory format for conv models (CPU and CUDA)")
    autocast: str = _f(
        "bf16", choices=("none", "bf16", "fp16"), help="on CUDA (and see cpu_autocast)"
    )
    cpu_autocast: bool = _f(
        False, help="autocast on the CPU too (bf16 only): pays where the CPU has native bf16"
    )
    eval_every: int = _f(1, lo=0, help="test every N epochs (0: after the last epoch only)")
    compile: bool = _f(False, help="torch.compile the training forward (pays on GPU, not CPU)")
    compile_mode: str = _f(
        "default",
        choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        help="torch.compile's mode; reduce-overhead replays the step as CUDA graphs",
    )
    compile_scope: str = _f(
        "model",
        choices=("model", "step"),
        help="what torch.compile captures: the model's forward, or forward, backward and "
        "optimizer step together (needs diagnostics.every = 0)",
    )
    log_every: int = _f(
        20, lo=1, help="on a terminal: steps between progress-bar updates (a host sync on GPU)"
    )
    log_steps: int = _f(
        0, lo=0, help="not on a terminal: a progress line every N steps (0: one line per epoch)"
    )
    sync_batchnorm: bool = _f(
        False, help="under torchrun: batch-norm statistics over the global batch (GPUs only)"
    )
    ema_decay: float = _f(
        0.0,
        lo=0.0,
        hi=1.0,
        hi_open=True,
        help="exponential moving average of the weights, evaluated and checkpointed (0: off)",
    )
    select_on: str = _f(
        "none",
        choices=("none", "val_loss", "val_acc"),
        help="keep best.pt, the epoch best on the validation split (needs data.val_fraction)",
    )
    early_stop_patience: int = _f(
        0, lo=0, help="stop after this many evaluations without a better select_on (0: never)"
    )
    tensorboard: bool = _f(
        False,
        help="TensorBoard events in OUT/tensorboard: epoch metrics, and the loss and lr every "
        "train.log_steps steps (needs trainlab[tensorboard])",
    )


@dataclass
class RegularizeConfig:
    penalty: str = _f("none", registry="penalty", help="added to the loss: l2(lam), l1(lam), ...")
    label_smoothing: float = _f(0.0, lo=0.0, hi=1.0, hi_open=True)
    mix: str = _f("none", registry="mix", help="mixup(alpha), cutmix(alpha), cutout(size)")


@dataclass
class AugmentConfig:
    train: list[str] = _f(["hflip"], registry="augment", help="batched ops applied in training")
    tta: str = _f("none", choices=("none", "flip"), help="test-time averaging")


@dataclass
class DiagnosticsConfig:
    every: int = _f(
        50, lo=0, help="sample activation and gradient statistics every N steps (0: off)"
    )
    window: int = _f(200, lo=1, help="steps per window of the time series (dead since step N)")


@dataclass
class Recipe:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    regularize: RegularizeConfig = field(default_factory=RegularizeConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(Recipe)}  # type: ignore[misc]
_SECTION_TYPES = typing.get_type_hints(Recipe)


# --------------------------------------------------------------------------------------------
# Loading and validation.


def load_recipe(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Recipe:
    """Read a TOML recipe (or the defaults, when ``path`` is None) and apply ``--set`` overrides."""
    where = str(path) if path is not None else "<defaults>"
    text = ""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise RecipeError(f"{where}: recipe file not found")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RecipeError(f"{where}: not a text file") from None
    return recipe_from_toml(text, overrides, where)


def recipe_from_toml(
    text: str, overrides: list[str] | tuple[str, ...] = (), where: str = "<recipe>"
) -> Recipe:
    """A recipe from TOML text (a file's, or the one a checkpoint keeps), with ``--set``
    overrides applied."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{where}: not valid TOML: {exc}") from None
    for item in overrides:
        _apply_override(raw, item)
    return recipe_from_dict(raw, where=where)


def recipe_from_dict(raw: dict[str, Any], where: str = "<recipe>") -> Recipe:
    sections: dict[str, Any] = {}
    for name, body in raw.items():
        if name not in SECTIONS:
            raise RecipeError(
                f"{where}: unknown section [{name}]; valid sections: {', '.join(SECTIONS)}"
            )
        if not isinstance(body, dict):
            raise RecipeError(f"{where}: [{name}] must be a table, got {_tname(body)}")
        sections[name] = _build_section(name, body, where)
    recipe = Recipe(**sections)
    _check_registries(recipe, where)
    _check_data_name(recipe.data.name, where)
    _resolve_paths(recipe, where)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", recipe.train.device):
        raise RecipeError(
            f"{where}: train.device = {recipe.train.device!r}: expected auto, cpu, cuda or cuda:N"
        )
    if recipe.schedule.warmup_epochs > recipe.train.epochs:
        raise RecipeError(
            f"{where}: schedule.warmup_epochs = {recipe.schedule.warmup_epochs!r}: expected at "
            f"most train.epochs = {recipe.train.epochs} (the rate would never reach optim.lr)"
        )
    if recipe.train.compile_scope == "step" and recipe.diagnostics.every > 0:
        raise RecipeError(
            f'{where}: train.compile_scope = "step" needs diagnostics.every = 0 (the diagnostics '
            f"hooks run between backward and the optimizer step, inside the captured update), "
            f"got {recipe.diagnostics.every}"
        )
    if recipe.train.select_on != "none" and recipe.data.val_fraction == 0:
        raise RecipeError(
            f"{where}: train.select_on = {recipe.train.select_on!r} needs data.val_fraction > 0: "
            "the best epoch is chosen on the validation split, never the test split"
        )
    if recipe.train.early_stop_patience > 0 and recipe.train.select_on == "none":
        raise RecipeError(
            f"{where}: train.early_stop_patience = {recipe.train.early_stop_patience} needs "
            'train.select_on = "val_loss" or "val_acc": the metric whose improvement it waits for'
        )
    if recipe.train.cpu_autocast and recipe.train.autocast != "bf16":
        raise RecipeError(
            f'{where}: train.cpu_autocast = true needs train.autocast = "bf16", '
            f"got {recipe.train.autocast!r} (the CPU autocasts to bfloat16 only)"
        )
    return recipe


def _build_section(name: str, body: dict[str, Any], where: str) -> Any:
    cls = _SECTION_TYPES[name]
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in body.items():
        if key not in fields:
            raise RecipeError(
                f"{where}: unknown key {name}.{key}; valid keys in [{name}]: {', '.join(fields)}"
            )
        values[key] = _check_value(f"{name}.{key}", value, hints[key], fields[key].metadata, where)
    return cls(**values)


def _check_value(key: str, value: Any, hint: Any, meta: Any, where: str) -> Any:
    expected = _expected(hint)
    origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: {key} = {value!r}: expected a table, got {_tname(value)}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise RecipeError(
                f"{where}: {key} = {value!r}: expected a list of {_expected(item_type)}"
            )
        value = [_check_scalar(f"{key}[{i}]", v, item_type, where) for i, v in enumerate(value)]
        if item_type is int and meta.get("lo") is None and any(v <= 0 for v in value):
            raise RecipeError(f"{where}: {key} = {value!r}: expected positive integers")
        if item_type is int and not value:
            raise RecipeError(f"{where}: {key} = []: expected at least one value")
        return value
    value = _check_scalar(key, value, hint, where)
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta["lo_open"] and value == lo)):
        op = ">" if meta["lo_open"] else ">="
        raise RecipeError(f"{where}: {key} = {value!r}: expected {expected} {op} {lo}")
    if hi is not None and (value > hi or (meta["hi_open"] and value == hi)):
        op = "<" if meta["hi_open"] else "<="
        raise RecipeError(f"{where}: {key} = {value!r}: expected {expected} {op} {hi}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise RecipeError(f"{where}: {key} = {value!r}: expected one of {', '.join(choices)}")
    return value


def _check_scalar(key: str, value: Any, hint: Any, where: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not ok:
        raise RecipeError(
            f"{where}: {key} = {value!r}: expected {_expected(hint)}, got {_tname(value)}"
        )
    if hint is float and not math.isfinite(value):  # NaN passes every `<` check; inf, every `>`
        raise RecipeError(f"{where}: {key} = {value!r}: expected a finite number")
    return float(value) if hint is float else value


def _expected(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        return f"a list of {_expected(typing.get_args(hint)[0])}"
    if typing.get_origin(hint) is dict:
        return "a table"
    if isinstance(hint, types.UnionType):
        return " or ".join(_expected(h) for h in typing.get_args(hint))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, str(hint)
    )


def _tname(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected section.key=value")
    dotted, text = item.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise RecipeError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=3")
    section, key = parts
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare word or a spec such as leaky_relu(0.1)
    body = raw.setdefault(section, {})
    if not isinstance(body, dict):
        raise RecipeError(f"--set {item!r}: [{section}] is not a table")
    body[key] = value


def _check_registries(recipe: Recipe, where: str) -> None:
    """Every technique name must exist before any work starts."""
    for section in dataclasses.fields(recipe):
        body = getattr(recipe, section.name)
        for f in dataclasses.fields(body):
            kind = f.metadata.get("registry")
            if kind is None:
                continue
            value = getattr(body, f.name)
            for spec in value if isinstance(value, list) else [value]:
                try:
                    validate_spec(kind, spec)
                except RegistryError as exc:
                    raise RecipeError(
                        f"{where}: {section.name}.{f.name} = {spec!r}: {exc}"
                    ) from None


def _resolve_paths(recipe: Recipe, where: str) -> None:
    """Paths in a recipe are made absolute (image folders, data_dir, a model's .py file), so the
    run's recipe finds them from any working folder; a user's network is imported now, so a
    failure to import it comes before any data loads."""
    from trainlab.data.datasets import resolved_dataset_name
    from trainlab.model_kinds import resolved_model_kind

    recipe.data.name = resolved_dataset_name(recipe.data.name)
    if recipe.data.data_dir:
        recipe.data.data_dir = str(Path(recipe.data.data_dir).expanduser().absolute())
    try:
        recipe.model.kind = resolved_model_kind(recipe.model.kind)
    except RecipeError as exc:
        raise RecipeError(f"{where}: {exc}") from exc.__cause__


def _check_data_name(name: str, where: str) -> None:
    from trainlab.data.datasets import check_dataset_name
    from trainlab.errors import DataError

    try:
        check_dataset_name(name)
    except DataError as exc:
        raise RecipeError(f"{where}: data.name = {name!r}: {exc}") from None


def validate_spec(kind: str, spec: str) -> None:
    """Check a technique spec against the registry of its pillar (imported lazily)."""
    from trainlab.techniques import validate_technique

    validate_technique(kind, spec)


# --------------------------------------------------------------------------------------------
# Writing.


def dump_toml(data: dict[str, dict[str, Any]]) -> str:
    """A minimal TOML writer for recipes (tables of scalars, lists and inline tables)."""
    lines = []
    for section, body in data.items():
        lines.append(f"[{section}]")
        for key, value in body.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")
