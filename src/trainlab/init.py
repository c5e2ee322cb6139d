"""Weight initialization: schemes by name, gains for any activation, LSUV, residual zero-init.

The rule behind every scale here: for ``y = W x`` with zero-mean weights of variance ``s^2``
and ``n = fan_in`` inputs, ``Var[y] = n s^2 E[x^2]``. If ``x = f(z)`` with ``z ~ N(0, 1)``,
keeping ``Var[y] = 1`` layer after layer needs ``s = g / sqrt(fan_in)``, ``g = 1 / sqrt(E[f(z)^2])``
(He et al. 2015; LeCun et al. 1998 for the linear case). It is the *second moment* that
matters, not the variance: the sigmoid's mean of 1/2 feeds into ``Var[y]`` too.

Schemes are chosen by name in recipes (``"kaiming(fan_in)"``, ``"normal(0.01)"``, ``"xavier"``)
from ``INITS``. Every draw uses the caller's ``torch.Generator``, on the generator's device,
so a seed gives the same weights on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainlab.activations import (
    Activation,
    Identity,
    LeakyReLU,
    PReLU,
    _spec,
    make_activation,
)
from trainlab.checks import check_choice, check_int, check_number
from trainlab.errors import RegistryError, TrainlabError
from trainlab.registry import Registry

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_WEIGHTED = (nn.Linear, *_CONV, *_CONV_T)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def fans(module: nn.Module) -> tuple[float, float]:
    """(fan_in, fan_out) of a Linear, Conv or ConvTranspose layer: inputs summed into one output
    (the forward variance), outputs one input feeds (the backward variance).

    ConvNd, weight ``(out, in/groups, *k)``: each output sums ``in/groups * prod(k)`` inputs;
    each input reaches ``out/groups * prod(k) / prod(stride)`` outputs on average; a
    ConvTransposeNd, a conv's adjoint, swaps the roles. PyTorch's ``_calculate_fan_in_and_fan_out``
    takes a transposed conv's fan_out for its fan_in and ignores groups and stride for fan_out.
    """
    if isinstance(module, nn.Linear):
        return float(module.in_features), float(module.out_features)
    if isinstance(module, _CONV + _CONV_T):
        k = math.prod(module.kernel_size)
        s = math.prod(module.stride)
        g = module.groups
        if isinstance(module, _CONV_T):
            return module.in_channels / g * k / s, module.out_channels / g * k
        return module.in_channels / g * k, module.out_channels / g * k / s
    raise TypeError(f"fans() expects a Linear, Conv or ConvTranspose layer, got {type(module)}")


def normal_expectation(fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """E[fn(z)] for z ~ N(0, 1) in float64: Gauss-Legendre, 20 points on each of 80 panels of
    [-10, 10] (the density beyond is below 1e-22). A panel edge at 0, where piecewise
    activations have their kink, keeps them exact."""
    t, w = np.polynomial.legendre.leggauss(20)
    half = 10.0 / 80  # half a panel's width
    z = (np.linspace(-10.0 + half, 10.0 - half, 80)[:, None] + half * t).ravel()
    density = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return float(np.sum(np.tile(half * w, 80) * density * fn(z)))


def _as_activation(activation: str | Activation | None) -> Activation:
    if activation is None:
        return Identity()
    return activation if isinstance(activation, Activation) else make_activation(activation)


def gain(activation: str | Activation | None = None, convention: str = "exact") -> float:
    """The factor ``g`` for ``std = g / sqrt(fan_in)``.

    ``convention='exact'``: ``g = 1 / sqrt(E[f(z)^2])``, z ~ N(0, 1) (He et al. 2015), by
    quadrature of the activation's formula: ReLU sqrt(2), leaky ReLU / PReLU(a)
    sqrt(2 / (1 + a^2)), SELU 1 (Klambauer et al. 2017), sigmoid ~1.85 (its mean counts).

    ``convention='pytorch'``: ``torch.nn.init.calculate_gain``'s values (tanh 5/3, SELU 3/4,
    sigmoid 1); PReLU maps to leaky_relu at its slope; ELU, GELU and SiLU have none and raise
    ``RegistryError``.
    """
    act = _as_activation(activation)
    if check_choice(convention, "gain convention", ("exact", "pytorch")) == "exact":
        # f of a column: per-channel PReLU slopes broadcast across it, and are averaged.
        second_moment = normal_expectation(lambda z: np.mean(act.f(z[:, None]) ** 2, axis=1))
        return 1.0 / math.sqrt(second_moment)
    if isinstance(act, LeakyReLU):
        return nn.init.calculate_gain("leaky_relu", act.negative_slope)
    if isinstance(act, PReLU) and act.num_parameters == 1:
        return nn.init.calculate_gain("leaky_relu", float(act.weight.detach()))
    if act.name in ("identity", "relu", "tanh", "sigmoid", "selu"):
        return nn.init.calculate_gain("linear" if act.name == "identity" else act.name)
    raise RegistryError(
        f"PyTorch has no conventional gain for activation {act.spec!r}; "
        f"use convention='exact' (gives {gain(act):.4f})"
    )


# ---------------------------------------------------------------------------------------------
# Schemes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InitScheme:
    """A scheme as a spec builds it. ``apply(weight, fan_in, fan_out, activation, generator)``
    sets the weight in place and returns the std it has in expectation (None: left as it was)."""

    spec: str
    rule: str  # the formula as a reader would write it
    apply: Callable[..., float | None] = field(repr=False)
    activation: str = "identity"  # the activation assumed when initialize is given none
    resets: bool = True  # biases to 0, norm layers to the identity
    lsuv: tuple[float, int] | None = None  # (tol, max_iter) of the LSUV pass that follows
    # the std follows each layer's fans (False: fixed by the user, or left to the network)
    sized_by_fans: bool = True


INITS: Registry[InitScheme] = Registry("init scheme")


def _draw(weight: Tensor, generator: torch.Generator | None, kind: str, scale: float) -> None:
    """Fill ``weight`` with N(0, scale^2), U(-a, a) of std ``scale`` or an orthogonal matrix
    times ``scale``: drawn on the generator's device (float32, float64 for float64 weights)."""
    if generator is None:
        raise TrainlabError(
            "this init scheme draws random numbers: pass generator=torch.Generator().manual_seed(s)"
        )
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    buf = torch.empty(weight.shape, dtype=dtype, device=generator.device)
    if kind == "normal":
        nn.init.normal_(buf, 0.0, scale, generator=generator)
    elif kind == "uniform":  # U(-a, a) has std a / sqrt(3)
        nn.init.uniform_(buf, -scale * math.sqrt(3.0), scale * math.sqrt(3.0), generator=generator)
    else:
        nn.init.orthogonal_(buf, scale, generator=generator)
    with torch.no_grad():
        weight.copy_(buf)


def _random(
    spec: str, rule: str, std: Callable[..., float], distribution: str = "normal", **options: Any
) -> InitScheme:
    """A scheme that draws zero-mean weights of std ``std(fan_in, fan_out, activation)``."""

    def apply(weight, fan_in, fan_out, activation, generator):
        s = std(fan_in, fan_out, activation)
        _draw(weight, generator, distribution, s)
        return s

    return InitScheme(spec, rule, apply, **options)


def _fill(value: float) -> Callable[..., float]:
    def apply(weight, *_):
        with torch.no_grad():
            weight.fill_(value)
        return 0.0

    return apply


def _orthogonal_apply(g: float) -> Callable[..., float]:
    def apply(weight, fan_in, fan_out, activation, generator):
        _draw(weight, generator, "orthogonal", g)
        rows, cols = weight.shape[0], weight[0].numel()
        return g * math.sqrt(min(rows, cols) / (rows * cols))

    return apply


def _lecun_std(fan_in: float, fan_out: float, activation: Activation) -> float:
    return 1.0 / math.sqrt(fan_in)


@INITS.register("default", "keep")
def _default() -> InitScheme:
    """Leave the network's own initialization alone: PyTorch's (Kaiming-uniform with a=sqrt(5))
    for trainlab's kinds, whatever a user's own network does for itself ("keep")."""
    return InitScheme(
        "default", "pytorch default (unchanged)", lambda *_: None, resets=False, sized_by_fans=False
    )


@INITS.register("zeros")
def _zeros() -> InitScheme:
    """All weights 0: every unit computes the same thing, so symmetry is never broken."""
    return InitScheme("zeros", "w = 0", _fill(0.0), sized_by_fans=False)


@INITS.register("constant")
def _constant(value: float) -> InitScheme:
    """All weights ``value``: symmetric like zeros, a demonstration of why that fails."""
    value = check_number(value, "value")
    return InitScheme(
        _spec("constant", (value, None)), f"w = {value:g}", _fill(value), sized_by_fans=False
    )


@INITS.register("normal")
def _normal(std: float = 0.01) -> InitScheme:
    """``w ~ N(0, std^2)``; 0.01 is the small-random-numbers recipe under which deep nets'
    activations collapse toward zero (cs231n; Glorot & Bengio 2010, Fig. 3)."""
    std = check_number(std, "std", 0, lo_open=True)
    return _random(
        _spec("normal", (std, 0.01)), f"N(0, {std:g}^2)", lambda *_: std, sized_by_fans=False
    )


@INITS.register("uniform")
def _uniform(a: float = 0.01) -> InitScheme:
    """``w ~ U(-a, a)`` (std a / sqrt(3))."""
    a = check_number(a, "a", 0, lo_open=True)
    std = a / math.sqrt(3.0)
    return _random(
        _spec("uniform", (a, 0.01)),
        f"U(-{a:g}, {a:g})",
        lambda *_: std,
        "uniform",
        sized_by_fans=False,
    )


@INITS.register("xavier")
def _xavier(distribution: str = "normal") -> InitScheme:
    """``std = 1 / sqrt(fan_in)``: Glorot & Bengio 2010 as taught (cs231n) and as Caffe's
    "xavier" filler has it. The paper's compromise of both fans is ``glorot_normal``."""
    distribution = check_choice(distribution, "distribution", ("normal", "uniform"))
    spec = _spec("xavier", (distribution, "normal"))
    return _random(spec, "std = 1/sqrt(fan_in)", _lecun_std, distribution)


@INITS.register("lecun_normal")
def _lecun_normal() -> InitScheme:
    """``std = 1 / sqrt(fan_in)`` (LeCun et al. 1998, Efficient BackProp), the init SELU's
    self-normalization assumes (Klambauer et al. 2017)."""
    return _random("lecun_normal", "std = 1/sqrt(fan_in)", _lecun_std)


def _glorot(name: str, gain: float, distribution: str) -> InitScheme:
    g = check_number(gain, "gain", 0, lo_open=True)
    rule = "std = " + ("" if g == 1.0 else f"{g:g} * ") + "sqrt(2/(fan_in+fan_out))"

    def std(fan_in, fan_out, activation):
        return g * math.sqrt(2.0 / (fan_in + fan_out))

    return _random(_spec(name, (g, 1.0)), rule, std, distribution)


@INITS.register("glorot_normal")
def _glorot_normal(gain: float = 1.0) -> InitScheme:
    """``std = gain sqrt(2 / (fan_in + fan_out))`` (Glorot & Bengio 2010, eq. 16), between
    keeping forward (1/fan_in) and backward (1/fan_out) variances."""
    return _glorot("glorot_normal", gain, "normal")


@INITS.register("glorot_uniform")
def _glorot_uniform(gain: float = 1.0) -> InitScheme:
    """``U(-a, a)``, ``a = gain sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010, eq. 16)."""
    return _glorot("glorot_uniform", gain, "uniform")


@INITS.register("kaiming", "he")
def _kaiming(
    mode: str = "fan_in",
    activation: str | None = None,
    distribution: str = "normal",
    convention: str = "exact",
) -> InitScheme:
    """``std = g / sqrt(fan)`` (He et al. 2015, Delving Deep into Rectifiers): ``fan_in`` keeps
    forward variances (eq. 10), ``fan_out`` backward ones (eq. 14). ``g = gain(activation,
    convention)``; without an activation, the one given to ``initialize`` (ReLU if none)."""
    mode = check_choice(mode, "mode", ("fan_in", "fan_out"))
    distribution = check_choice(distribution, "distribution", ("normal", "uniform"))
    convention = check_choice(convention, "convention", ("exact", "pytorch"))
    if not isinstance(activation, str | None):
        raise ValueError(
            f"activation must be an activation spec such as 'relu', got {activation!r}"
        )
    own = None if activation is None else gain(activation, convention)  # a bad name fails now

    def std(fan_in, fan_out, act):
        g = gain(act, convention) if own is None else own
        return g / math.sqrt(fan_in if mode == "fan_in" else fan_out)

    args = (mode, "fan_in"), (activation, None), (distribution, "normal"), (convention, "exact")
    return _random(
        _spec("kaiming", *args), f"std = g/sqrt({mode})", std, distribution, activation="relu"
    )


@INITS.register("orthogonal")
def _orthogonal(gain: float = 1.0) -> InitScheme:
    """A random orthogonal matrix times ``gain`` (Saxe, McClelland & Ganguli 2014): the weight,
    viewed as ``(out, in * prod(k))``, has every singular value equal to ``gain``."""
    g = check_number(gain, "gain", 0, lo_open=True)
    return InitScheme(_spec("orthogonal", (g, 1.0)), f"orthogonal * {g:g}", _orthogonal_apply(g))


@INITS.register("lsuv")
def _lsuv(tol: float = 0.05, max_iter: int = 10) -> InitScheme:
    """Layer-sequential unit variance (Mishkin & Matas 2016, "All you need is a good init"):
    orthogonal weights, then each layer's weight divided by its output std on a data batch,
    in forward order, until ``|Var - 1| < tol``. Needs ``initialize(..., batch=x)``."""
    tol = check_number(tol, "tol", 0, lo_open=True)
    max_iter = check_int(max_iter, "max_iter")
    spec = _spec("lsuv", (tol, 0.05), (max_iter, 10))
    rule = "orthogonal, then w /= std(output) until Var = 1"
    return InitScheme(spec, rule, _orthogonal_apply(1.0), lsuv=(tol, max_iter))


def make_init(spec: str | InitScheme) -> InitScheme:
    """Build the scheme a recipe names: ``make_init("kaiming(fan_in)")``."""
    return spec if isinstance(spec, InitScheme) else INITS.create(spec)


# ---------------------------------------------------------------------------------------------
# initialize
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InitRow:
    name: str
    type: str
    fan_in: float | None
    fan_out: float | None
    std: float | None
    rule: str


@dataclass
class InitReport:
    """What ``initialize`` did, one row per layer it touched."""

    scheme: str
    activation: str
    rows: list[InitRow] = field(default_factory=list)
    zeroed_residual: list[str] = field(default_factory=list)
    lsuv_variance: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        header = ("layer", "type", "fan_in", "fan_out", "std", "rule")
        body = [
            (r.name or "(model)", r.type, _num(r.fan_in), _num(r.fan_out), _num(r.std), r.rule)
            for r in self.rows
        ]
        lines = [f"init {self.scheme} (activation {self.activation})", *_table(header, body)]
        if self.zeroed_residual:
            lines.append("zero-init residual: " + ", ".join(self.zeroed_residual))
        if self.lsuv_variance:
            worst = max(self.lsuv_variance.values(), key=lambda v: abs(v - 1.0))
            lines.append(f"lsuv: output variance per layer within {abs(worst - 1.0):.3g} of 1")
        return "\n".join(lines)


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.4g}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [
        fmt.format(*r) for r in rows
    ]


def initialize(
    model: nn.Module,
    scheme: str | InitScheme,
    activation: str | Activation | None = None,
    *,
    generator: torch.Generator | None = None,
    batch: Tensor | None = None,
    zero_residual: bool = False,
) -> InitReport:
    """Initialize every Linear / Conv / ConvTranspose weight of ``model`` with ``scheme``.

    Biases are set to 0 and BatchNorm / LayerNorm / GroupNorm to the identity (weight 1,
    bias 0), except under ``"default"``, which leaves everything as PyTorch made it.
    ``activation`` is the non-linearity whose gain gain-aware schemes use (kaiming; ReLU if
    omitted). ``batch`` is required by ``lsuv``. ``zero_residual`` then applies
    ``zero_init_residual``.
    """
    init = make_init(scheme)
    act = _as_activation(init.activation if activation is None else activation)
    if init.lsuv is not None and batch is None:
        raise TrainlabError("init scheme 'lsuv' needs a data batch: initialize(..., batch=x)")
    report = InitReport(scheme=init.spec, activation=act.spec)
    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, _WEIGHTED):
            fan_in, fan_out = fans(module)
            std = init.apply(module.weight, fan_in, fan_out, act, generator)
            report.rows.append(InitRow(name, kind, fan_in, fan_out, std, init.rule))
        elif isinstance(module, _NORMS) and init.resets:
            report.rows.append(InitRow(name, kind, None, None, None, "weight 1, bias 0"))
        else:
            continue
        if init.resets:
            with torch.no_grad():
                if isinstance(module, _NORMS) and module.weight is not None:
                    module.weight.fill_(1.0)
                if module.bias is not None:
                    module.bias.zero_()
    if init.lsuv is not None:
        report.lsuv_variance = lsuv(model, batch, *init.lsuv)
        modules = dict(model.named_modules())  # LSUV's scale is measured: report what it left
        report.rows = [
            r if r.fan_in is None else replace(r, std=float(modules[r.name].weight.detach().std()))
            for r in report.rows
        ]
    if zero_residual:
        report.zeroed_residual = zero_init_residual(model)
    return report


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the layer of interest has run."""


def lsuv(
    model: nn.Module, batch: Tensor, tol: float = 0.05, max_iter: int = 10
) -> dict[str, float]:
    """Rescale each layer, in forward order, until its output variance on ``batch`` is 1.

    Mishkin & Matas 2016, Algorithm 1 (the orthogonal pre-init is ``initialize``'s job). Each
    round runs the model only up to the layer being fixed. Returns the final variance per layer.
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    final: dict[str, float] = {}
    with torch.no_grad():
        for name, layer in layers:
            for _ in range(max_iter):
                var = _output_variance(model, layer, batch)
                if abs(var - 1.0) < tol or var == 0.0:
                    break
                layer.weight.div_(math.sqrt(var))
            final[name] = _output_variance(model, layer, batch)
    return final


def _output_variance(model: nn.Module, layer: nn.Module, batch: Tensor) -> float:
    seen: list[float] = []

    def hook(_mod, _inp, out):
        seen.append(float(out.float().var()))
        raise _StopForward

    handle = layer.register_forward_hook(hook)
    try:
        model(batch)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not seen:
        raise TrainlabError(f"lsuv: layer {type(layer).__name__} did not run on the batch")
    return seen[0]


def zero_init_residual(model: nn.Module) -> list[str]:
    """Zero the weight of each block's ``residual_last`` (a norm, Linear or Conv module), so
    every residual block starts as the identity (Goyal et al. 2017; He et al. 2019, Bag of
    Tricks). Returns the names of the modules zeroed."""
    names = {id(m): n for n, m in model.named_modules()}
    zeroed: list[str] = []
    for block in model.modules():
        last = getattr(block, "residual_last", None)
        if last is None:
            continue
        if not isinstance(last, nn.Module) or getattr(last, "weight", None) is None:
            raise TrainlabError(
                f"{type(block).__name__}.residual_last must be a norm, Linear or Conv module "
                f"with a weight, got {type(last).__name__}"
            )
        with torch.no_grad():
            last.weight.zero_()
        zeroed.append(names[id(last)])
    return zeroed


# ---------------------------------------------------------------------------------------------
# signal_check
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignalRow:
    name: str
    type: str
    kind: str  # "layer" (Linear/Conv) or "activation"
    size: int  # output elements per sample: gradient stds compare only at equal sizes
    act_std: float
    grad_std: float
    flag: str  # "", "collapse" or "explode"


@dataclass
class SignalReport:
    """Per-layer std of activations and of the gradients w.r.t. them, with findings."""

    rows: list[SignalRow]
    activation: str | None
    findings: list[str]
    advice: list[str]
    factor: float = 10.0

    @property
    def flagged(self) -> list[SignalRow]:
        return [r for r in self.rows if r.flag]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}

    def __str__(self) -> str:
        header = ("layer", "type", "size", "act std", "grad std", "flag")
        body = [
            (r.name, r.type, str(r.size), f"{r.act_std:.3g}", f"{r.grad_std:.3g}", r.flag)
            for r in self.rows
        ]
        lines = ["signal check (one forward + backward pass)", *_table(header, body)]
        lines += [f"finding: {f}" for f in self.findings] or ["finding: signal propagates"]
        lines += [f"advice: {a}" for a in self.advice]
        return "\n".join(lines)


def signal_check(
    model: nn.Module,
    batch: Tensor | tuple[Tensor, Tensor],
    loss_fn: Callable[..., Tensor] | None = None,
    *,
    factor: float = 10.0,
    generator: torch.Generator | None = None,
) -> SignalReport:
    """One forward and backward pass on a real batch, watching every layer's signal.

    Records, for each Linear / Conv / activation module, the std of its output and of the
    gradient of the loss w.r.t. that output. A layer whose output std is below ``1/factor`` of
    the first layer of its kind (Linear/Conv or activation) *collapses*; above ``factor`` times
    it *explodes* (the failure modes of Glorot & Bengio 2010, Fig. 3-7). Gradients are
    compared between the first layer and the deepest of the same kind and size.

    ``batch`` is ``x`` or ``(x, y)``; ``loss_fn(output[, y])`` gives the loss; without one, the
    output is back-propagated with a unit-variance random gradient (from ``generator``, else a
    fixed seed 0), which tests the backward path independently of the output's scale.
    Parameter gradients are cleared afterwards.
    """
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(
            f"signal_check: loss_fn must be callable, got {type(loss_fn).__name__}; "
            "pass targets inside the batch: signal_check(model, (x, y), loss_fn)"
        )
    from trainlab.diagnostics.collect import activation_spec  # trainlab's and torch.nn's

    x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
    specs = {n: activation_spec(m) for n, m in model.named_modules()}
    watched = [
        (n, m, "layer" if isinstance(m, _WEIGHTED) else "activation")
        for n, m in model.named_modules()
        if isinstance(m, _WEIGHTED) or specs[n] is not None
    ]
    stats: dict[str, list[float]] = {n: [math.nan, math.nan, 0] for n, _, _ in watched}
    handles = [m.register_forward_hook(_signal_hook(stats[n])) for n, m, _ in watched]
    try:
        with torch.enable_grad():
            out = model(x)
            if loss_fn is not None:
                loss = loss_fn(out, y) if y is not None else loss_fn(out)
                loss.backward()
            else:
                gen = generator or torch.Generator(device=out.device).manual_seed(0)
                noise = torch.randn(out.shape, generator=gen, device=gen.device)
                out.backward(noise.to(device=out.device, dtype=out.dtype))
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    residual_last = {id(getattr(m, "residual_last", None)) for m in model.modules()}
    rows = _flag_rows(watched, stats, factor, skip=residual_last)
    act = next((s for s in specs.values() if s not in (None, "identity")), None)
    findings = _findings(rows, factor)
    advice = [_recommendation(act)] if findings else []
    return SignalReport(rows=rows, activation=act, findings=findings, advice=advice, factor=factor)


def _signal_hook(slot: list[float]) -> Callable[..., None]:
    def hook(_mod, _inp, out):
        slot[0] = float(out.detach().float().std())
        slot[2] = out[0].numel() if out.dim() > 1 else 1
        if out.requires_grad:
            out.register_hook(lambda g: slot.__setitem__(1, float(g.detach().float().std())))

    return hook


def _flag_rows(watched, stats, factor: float, skip: set[int]) -> list[SignalRow]:
    """Compare each output with the first of its kind (Linear/Conv or activation): a norm layer
    in between rescales by design, so only like with like is fair. Modules in ``skip`` (zeroed
    ``residual_last`` of residual blocks, silent by design) are never flagged."""
    refs: dict[str, float] = {}
    for n, _, kind in watched:
        refs.setdefault(kind, stats[n][0])
    rows = []
    for n, m, kind in watched:
        a, g, size = stats[n]
        ref = refs[kind]
        flag = ""
        if ref > 0 and math.isfinite(a) and id(m) not in skip:
            if a < ref / factor:
                flag = "collapse"
            elif a > ref * factor:
                flag = "explode"
        rows.append(SignalRow(n, type(m).__name__, kind, int(size), a, g, flag))
    return rows


def _recommendation(act: str | None) -> str:
    if act is None:
        return "use xavier (std 1/sqrt(fan_in)) for a linear stack"
    name = act.split("(")[0]
    if name in ("tanh", "sigmoid"):
        return (
            f"use xavier (std 1/sqrt(fan_in)) or kaiming(fan_in) with the exact gain "
            f"g = {gain(act):.3g} for {act}"
        )
    if name == "selu":
        return "use lecun_normal (std 1/sqrt(fan_in)) for selu"
    return f"use kaiming(fan_in) with gain g = {gain(act):.3g} for {act}"


def _findings(rows: list[SignalRow], factor: float) -> list[str]:
    findings = []
    for flag, bound, size in (
        ("collapse", f"below 1/{factor:g} of", "small"),
        ("explode", f"above {factor:g}x", "large"),
    ):
        names = [r.name for r in rows if r.flag == flag]
        if names:
            findings.append(
                f"activations {flag}: {len(names)} layer(s) {bound} the std of the first of "
                f"their kind, from {names[0]!r}; the weights are too {size}"
            )
    # Pooling, resolution changes and norm layers rescale per-element gradients by design, so
    # the first layer is compared with the deepest of the same kind and size per sample.
    same = [
        r
        for r in rows
        if (r.kind, r.size) == (rows[0].kind, rows[0].size) and math.isfinite(r.grad_std)
    ]
    if len(same) >= 2 and same[-1].grad_std > 0:
        ratio = same[0].grad_std / same[-1].grad_std
        if ratio < 1.0 / factor or ratio > factor:
            trend = "vanish" if ratio < 1.0 else "explode"
            findings.append(
                f"gradients {trend} toward the input: {same[0].name!r}'s gradient std is "
                f"{ratio:.3g}x that of {same[-1].name!r} (same kind and size, deeper)"
            )
    return findings
