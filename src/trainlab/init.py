"""Weight initialization: schemes by name, gains for any activation, LSUV, residual zero-init.

The rule behind every scale here: for ``y = W x`` with zero-mean weights of variance ``s^2``
and ``n = fan_in`` inputs, ``Var[y] = n s^2 E[x^2]``. If ``x = f(z)`` with ``z ~ N(0, 1)``
(the previous layer's pre-activations), keeping ``Var[y] = 1`` layer after layer needs

    s = g / sqrt(fan_in),   g = 1 / sqrt(E[f(z)^2])

(He et al. 2015; LeCun et al. 1998 for the linear case). ``gain`` computes ``g`` for any
activation. Note it is the *second moment* ``E[f^2]`` that matters, not the variance: a
non-zero-centred unit such as the sigmoid (mean 1/2) feeds its mean squared into ``Var[y]``.

Schemes are chosen by name in recipes (``"kaiming(fan_in)"``, ``"normal(0.01)"``, ``"xavier"``)
from ``INITS``; ``initialize(model, scheme)`` applies one to every Linear and Conv layer, sets
biases to zero and norm layers to the identity, and returns a table of what it did.
``signal_check`` runs one forward and backward pass and says which layer collapses or explodes.

Randomness: every draw uses the caller's ``torch.Generator`` (drawn on the generator's device
and copied into the weight, so a seed gives the same weights on any device).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainlab.activations import (
    ELU,
    SELU,
    SELU_ALPHA,
    SELU_SCALE,
    Activation,
    Identity,
    LeakyReLU,
    PReLU,
    ReLU,
    make_activation,
)
from trainlab.errors import RegistryError, TrainlabError
from trainlab.registry import Registry

__all__ = [
    "INITS",
    "InitScheme",
    "InitReport",
    "InitRow",
    "SignalReport",
    "SignalRow",
    "fans",
    "gain",
    "initialize",
    "lsuv",
    "make_init",
    "normal_expectation",
    "signal_check",
    "zero_init_residual",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_WEIGHTED = (nn.Linear, *_CONV, *_CONV_T)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)

# torch.nn activation modules signal_check also watches, with their trainlab spec.
_TORCH_ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.ELU: "elu",
    nn.SELU: "selu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
}


# ---------------------------------------------------------------------------------------------
# Fans
# ---------------------------------------------------------------------------------------------
def fans(module: nn.Module) -> tuple[float, float]:
    """(fan_in, fan_out) of a Linear, Conv or ConvTranspose layer: how many terms are summed.

    * fan_in: inputs summed into one output element (what the forward variance depends on);
    * fan_out: outputs one input element feeds (what the backward variance depends on).

    Linear ``(out, in)``: ``in``, ``out``. ConvNd, weight ``(out, in/groups, *k)``: each output
    sums ``in/groups * prod(k)`` inputs; each input reaches ``out/groups * prod(k) / prod(stride)``
    outputs on average. ConvTransposeNd, weight ``(in, out/groups, *k)``, is the adjoint of a
    conv, so the roles swap: each input *scatters* to ``out/groups * prod(k)`` outputs (fan_out)
    and each output *gathers* ``in/groups * prod(k) / prod(stride)`` inputs (fan_in).
    PyTorch's own ``_calculate_fan_in_and_fan_out`` reads the transposed weight like a conv's,
    which makes its fan_in the true fan_out, and ignores groups and stride for fan_out.
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


# ---------------------------------------------------------------------------------------------
# Gains
# ---------------------------------------------------------------------------------------------
def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _elu_second_moment(alpha: float, scale: float) -> float:
    """E[f(z)^2] for ``f = scale * elu_alpha`` in closed form, z ~ N(0, 1).

    Positive half: E[z^2; z > 0] = 1/2. Negative half: E[(e^z - 1)^2; z < 0] expands with
    E[e^{tz}; z < 0] = e^{t^2/2} Phi(-t) into e^2 Phi(-2) - 2 e^{1/2} Phi(-1) + 1/2.
    """
    neg = math.exp(2.0) * _normal_cdf(-2.0) - 2.0 * math.exp(0.5) * _normal_cdf(-1.0) + 0.5
    return scale**2 * (0.5 + alpha**2 * neg)


@lru_cache(maxsize=1)
def _gauss_legendre_panels() -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [-10, 0] and [0, 10]: 40 panels of 20 points each side.

    Split at 0 because every piecewise activation has its kink there, where Gauss-Hermite
    converges slowly; beyond 10 sigma the normal density is below 1e-22.
    """
    t, w = np.polynomial.legendre.leggauss(20)
    edges = np.linspace(-10.0, 10.0, 81)
    lo, hi = edges[:-1, None], edges[1:, None]
    nodes = (0.5 * (hi - lo) * t + 0.5 * (hi + lo)).ravel()
    weights = (0.5 * (hi - lo) * w).ravel()
    return nodes, weights


def normal_expectation(fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """E[fn(z)] for z ~ N(0, 1) by composite Gauss-Legendre quadrature (float64)."""
    z, w = _gauss_legendre_panels()
    density = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return float(np.sum(w * density * fn(z)))


def _as_activation(activation: str | Activation | None) -> Activation:
    if activation is None:
        return Identity()
    if isinstance(activation, Activation):
        return activation
    return make_activation(activation)


def _exact_second_moment(act: Activation) -> float:
    """E[f(z)^2], z ~ N(0, 1): closed form where known, quadrature otherwise."""
    if isinstance(act, Identity):
        return 1.0
    if isinstance(act, ReLU):
        return 0.5
    if isinstance(act, LeakyReLU):
        return 0.5 * (1.0 + act.negative_slope**2)
    if isinstance(act, PReLU) and act.num_parameters == 1:
        return 0.5 * (1.0 + float(act.weight.detach()) ** 2)
    if isinstance(act, ELU):
        return _elu_second_moment(act.alpha, 1.0)
    if isinstance(act, SELU):
        return _elu_second_moment(SELU_ALPHA, SELU_SCALE)
    if isinstance(act, PReLU):  # per-channel slopes: average the second moment over channels
        a = act.weight.detach().double().cpu().numpy()
        return float(np.mean(0.5 * (1.0 + a**2)))
    return normal_expectation(lambda z: act.f(z) ** 2)


def gain(activation: str | Activation | None = None, convention: str = "exact") -> float:
    """The factor ``g`` for ``std = g / sqrt(fan_in)``.

    ``convention='exact'``: ``g = 1 / sqrt(E[f(z)^2])``, z ~ N(0, 1), which keeps the second
    moment of pre-activations at 1 through depth (He et al. 2015). Closed forms: identity 1,
    ReLU sqrt(2), leaky ReLU / PReLU(a) sqrt(2 / (1 + a^2)), ELU and SELU via the normal
    distribution function (SELU gives 1 up to the rounding of its published constants,
    Klambauer et al. 2017); tanh, sigmoid, GELU, SiLU by quadrature. The sigmoid's value
    (~1.85) includes its mean of 1/2, since Var[Wx] depends on E[x^2].

    ``convention='pytorch'``: ``torch.nn.init.calculate_gain``'s conventional values (tanh 5/3,
    SELU 3/4, sigmoid 1, ...). PReLU maps to leaky_relu at its slope; PyTorch has no value for
    ELU, GELU or SiLU, which raise ``RegistryError``.
    """
    act = _as_activation(activation)
    if convention == "exact":
        return 1.0 / math.sqrt(_exact_second_moment(act))
    if convention != "pytorch":
        raise RegistryError(f"gain convention must be 'exact' or 'pytorch', got {convention!r}")
    if isinstance(act, Identity):
        return nn.init.calculate_gain("linear")
    if isinstance(act, LeakyReLU):
        return nn.init.calculate_gain("leaky_relu", act.negative_slope)
    if isinstance(act, PReLU) and act.num_parameters == 1:
        return nn.init.calculate_gain("leaky_relu", float(act.weight.detach()))
    if act.name in ("relu", "tanh", "sigmoid", "selu"):
        return nn.init.calculate_gain(act.name)
    raise RegistryError(
        f"PyTorch has no conventional gain for activation {act.spec!r}; "
        f"use convention='exact' (gives {gain(act):.4f})"
    )


# ---------------------------------------------------------------------------------------------
# Schemes
# ---------------------------------------------------------------------------------------------
INITS: Registry[InitScheme] = Registry("init scheme")


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _require(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        raise TrainlabError(
            "this init scheme draws random numbers: pass generator=torch.Generator().manual_seed(s)"
        )
    return generator


def _draw(weight: Tensor, generator: torch.Generator | None, sampler: str, scale: float) -> None:
    """Fill ``weight`` with N(0, scale^2) or U(-scale, scale), drawn from ``generator``."""
    generator = _require(generator)
    buf = torch.empty(weight.shape, dtype=_draw_dtype(weight), device=generator.device)
    if sampler == "normal":
        nn.init.normal_(buf, 0.0, scale, generator=generator)
    else:
        nn.init.uniform_(buf, -scale, scale, generator=generator)
    with torch.no_grad():
        weight.copy_(buf)


def _draw_dtype(weight: Tensor) -> torch.dtype:
    """float64 weights get float64 draws; everything else is drawn in float32 and cast."""
    return torch.float64 if weight.dtype == torch.float64 else torch.float32


class InitScheme:
    """How to set one layer's weight. Subclasses say ``std`` (or override ``apply``)."""

    name: str = ""
    distribution: str = "normal"

    def spec_args(self) -> list[tuple[Any, Any]]:
        return []

    @property
    def spec(self) -> str:
        args = self.spec_args()
        last = max((i for i, (v, d) in enumerate(args) if v != d), default=-1)
        if last < 0:
            return self.name
        return f"{self.name}({', '.join(repr(v) for v, _ in args[: last + 1])})"

    def __repr__(self) -> str:
        return f"InitScheme({self.spec!r})"

    def std(self, fan_in: float, fan_out: float, activation: Activation) -> float:
        raise NotImplementedError

    def rule(self) -> str:
        """The formula as a reader would write it."""
        return self.spec

    def apply(
        self, weight: Tensor, fan_in: float, fan_out: float, activation: Activation, generator
    ) -> float | None:
        """Set ``weight`` in place and return the std it now has in expectation."""
        std = self.std(fan_in, fan_out, activation)
        if self.distribution == "uniform":
            _draw(weight, generator, "uniform", std * math.sqrt(3.0))  # U(-a, a): std a/sqrt(3)
        else:
            _draw(weight, generator, "normal", std)
        return std


@INITS.register("default")
class Default(InitScheme):
    """Leave PyTorch's own initialization (Kaiming-uniform with a=sqrt(5)) and norms alone."""

    name = "default"

    def apply(self, weight, fan_in, fan_out, activation, generator):
        return None

    def rule(self):
        return "pytorch default (unchanged)"


@INITS.register("zeros")
class Zeros(InitScheme):
    """All weights 0: every unit computes the same thing, so symmetry is never broken."""

    name = "zeros"

    def apply(self, weight, fan_in, fan_out, activation, generator):
        with torch.no_grad():
            weight.zero_()
        return 0.0

    def rule(self):
        return "w = 0"


@INITS.register("constant")
class Constant(InitScheme):
    """All weights ``value``: like zeros, symmetric, and a demonstration of why that fails."""

    name = "constant"

    def __init__(self, value: float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"value must be a number, got {value!r}")
        self.value = float(value)

    def spec_args(self):
        return [(self.value, None)]

    def apply(self, weight, fan_in, fan_out, activation, generator):
        with torch.no_grad():
            weight.fill_(self.value)
        return 0.0

    def rule(self):
        return f"w = {self.value:g}"


@INITS.register("normal")
class Normal(InitScheme):
    """``w ~ N(0, std^2)`` with a fixed std (0.01: the small-random-numbers recipe that makes
    deep nets' activations collapse toward zero, cs231n / Glorot & Bengio 2010, Fig. 3)."""

    name = "normal"

    def __init__(self, std: float = 0.01):
        self.fixed = _check_positive("std", std)

    def spec_args(self):
        return [(self.fixed, 0.01)]

    def std(self, fan_in, fan_out, activation):
        return self.fixed

    def rule(self):
        return f"N(0, {self.fixed:g}^2)"


@INITS.register("uniform")
class Uniform(InitScheme):
    """``w ~ U(-a, a)`` with a fixed ``a`` (std a / sqrt(3))."""

    name = "uniform"
    distribution = "uniform"

    def __init__(self, a: float = 0.01):
        self.a = _check_positive("a", a)

    def spec_args(self):
        return [(self.a, 0.01)]

    def std(self, fan_in, fan_out, activation):
        return self.a / math.sqrt(3.0)

    def rule(self):
        return f"U(-{self.a:g}, {self.a:g})"


@INITS.register("xavier")
class Xavier(InitScheme):
    """The lecture / Caffe form of Xavier: ``std = 1 / sqrt(fan_in)``.

    Glorot & Bengio 2010 as taught (cs231n) and as Caffe's "xavier" filler implements it (which
    draws U(-sqrt(3/fan_in), sqrt(3/fan_in)), the same std); keeps Var[y] = Var[x] for a linear
    or tanh-like unit near 0. The paper's compromise of forward and backward is
    ``glorot_normal`` / ``glorot_uniform``.
    """

    name = "xavier"

    def __init__(self, distribution: str = "normal"):
        self.distribution = _check_choice("distribution", distribution, ("normal", "uniform"))

    def spec_args(self):
        return [(self.distribution, "normal")]

    def std(self, fan_in, fan_out, activation):
        return 1.0 / math.sqrt(fan_in)

    def rule(self):
        return "std = 1/sqrt(fan_in)"


@INITS.register("lecun_normal")
class LecunNormal(InitScheme):
    """``std = 1 / sqrt(fan_in)`` (LeCun et al. 1998, Efficient BackProp), the init SELU's
    self-normalization assumes (Klambauer et al. 2017). Same rule as ``xavier``, other name."""

    name = "lecun_normal"

    def std(self, fan_in, fan_out, activation):
        return 1.0 / math.sqrt(fan_in)

    def rule(self):
        return "std = 1/sqrt(fan_in)"


class _Glorot(InitScheme):
    """Glorot & Bengio 2010, eq. 16: ``Var[w] = 2 / (fan_in + fan_out)``, a compromise between
    keeping forward (1/fan_in) and backward (1/fan_out) variances; times ``gain^2``."""

    def __init__(self, gain: float = 1.0):
        self.gain = _check_positive("gain", gain)

    def spec_args(self):
        return [(self.gain, 1.0)]

    def std(self, fan_in, fan_out, activation):
        return self.gain * math.sqrt(2.0 / (fan_in + fan_out))

    def rule(self):
        g = "" if self.gain == 1.0 else f"{self.gain:g} * "
        return f"std = {g}sqrt(2/(fan_in+fan_out))"


@INITS.register("glorot_normal")
class GlorotNormal(_Glorot):
    __doc__ = _Glorot.__doc__
    name = "glorot_normal"


@INITS.register("glorot_uniform")
class GlorotUniform(_Glorot):
    __doc__ = "U(-a, a), a = gain sqrt(6 / (fan_in + fan_out)). " + (_Glorot.__doc__ or "")
    name = "glorot_uniform"
    distribution = "uniform"


@INITS.register("kaiming", "he")
class Kaiming(InitScheme):
    """He et al. 2015 (Delving Deep into Rectifiers): ``std = g / sqrt(fan)``.

    ``mode='fan_in'`` keeps forward activations' variance (eq. 10), ``'fan_out'`` the backward
    gradients' (eq. 14). ``g = gain(activation)``: by default the activation given to
    ``initialize`` (ReLU if none), exact or PyTorch's ``convention``.
    """

    name = "kaiming"

    def __init__(
        self,
        mode: str = "fan_in",
        activation: str | None = None,
        distribution: str = "normal",
        convention: str = "exact",
    ):
        self.mode = _check_choice("mode", mode, ("fan_in", "fan_out"))
        self.distribution = _check_choice("distribution", distribution, ("normal", "uniform"))
        self.convention = _check_choice("convention", convention, ("exact", "pytorch"))
        self.activation = activation
        if activation is not None:
            gain(activation, convention)  # fail at construction on a bad name or convention

    def spec_args(self):
        return [
            (self.mode, "fan_in"),
            (self.activation, None),
            (self.distribution, "normal"),
            (self.convention, "exact"),
        ]

    def _act(self, activation: Activation | None) -> Activation:
        if self.activation is not None:
            return make_activation(self.activation)
        return ReLU() if activation is None else activation

    def std(self, fan_in, fan_out, activation):
        fan = fan_in if self.mode == "fan_in" else fan_out
        return gain(self._act(activation), self.convention) / math.sqrt(fan)

    def rule(self):
        return f"std = g/sqrt({self.mode})"


@INITS.register("orthogonal")
class Orthogonal(InitScheme):
    """A random orthogonal matrix times ``gain`` (Saxe, McClelland & Ganguli 2014).

    The weight is viewed as ``(out, in * prod(k))``; its rows (or columns) are orthonormal, so
    every singular value is ``gain`` and the layer preserves norms exactly in that subspace.
    """

    name = "orthogonal"

    def __init__(self, gain: float = 1.0):
        self.gain = _check_positive("gain", gain)

    def spec_args(self):
        return [(self.gain, 1.0)]

    def apply(self, weight, fan_in, fan_out, activation, generator):
        generator = _require(generator)
        buf = torch.empty(weight.shape, dtype=_draw_dtype(weight), device=generator.device)
        nn.init.orthogonal_(buf, self.gain, generator=generator)
        with torch.no_grad():
            weight.copy_(buf)
        rows, cols = weight.shape[0], weight[0].numel()
        return self.gain * math.sqrt(min(rows, cols) / (rows * cols))

    def rule(self):
        return f"orthogonal * {self.gain:g}"


@INITS.register("lsuv")
class LSUV(InitScheme):
    """Layer-sequential unit variance (Mishkin & Matas 2016, "All you need is a good init").

    Orthogonal pre-init, then for each layer in forward order: run the data batch, divide the
    weight by the std of the layer's output, until ``|Var - 1| < tol`` or ``max_iter`` rounds.
    Needs ``initialize(..., batch=x)``.
    """

    name = "lsuv"

    def __init__(self, tol: float = 0.05, max_iter: int = 10):
        self.tol = _check_positive("tol", tol)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
        self.max_iter = max_iter

    def spec_args(self):
        return [(self.tol, 0.05), (self.max_iter, 10)]

    def apply(self, weight, fan_in, fan_out, activation, generator):
        return Orthogonal().apply(weight, fan_in, fan_out, activation, generator)

    def rule(self):
        return "orthogonal, then w /= std(output) until Var = 1"


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
            (
                r.name or "(model)",
                r.type,
                _num(r.fan_in),
                _num(r.fan_out),
                "-" if r.std is None else f"{r.std:.4g}",
                r.rule,
            )
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


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> list[str]:
    rows = list(rows)
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
    if isinstance(init, Kaiming) and activation is None:
        act = ReLU()
    else:
        act = _as_activation(activation)
    if isinstance(init, LSUV) and batch is None:
        raise TrainlabError("init scheme 'lsuv' needs a data batch: initialize(..., batch=x)")
    report = InitReport(scheme=init.spec, activation=act.spec)
    for name, module in model.named_modules():
        row = _init_module(name, module, init, act, generator)
        if row is not None:
            report.rows.append(row)
    if isinstance(init, LSUV):
        report.lsuv_variance = lsuv(model, batch, tol=init.tol, max_iter=init.max_iter)
        # LSUV's scale is measured, not set by a formula: report the std it left.
        weights = {
            n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, _WEIGHTED)
        }
        report.rows = [
            replace(r, std=float(weights[r.name].std())) if r.name in weights else r
            for r in report.rows
        ]
    if zero_residual:
        report.zeroed_residual = zero_init_residual(model)
    return report


def _init_module(
    name: str, module: nn.Module, init: InitScheme, act: Activation, generator
) -> InitRow | None:
    kind = type(module).__name__
    if isinstance(module, _WEIGHTED):
        fan_in, fan_out = fans(module)
        std = init.apply(module.weight, fan_in, fan_out, act, generator)
        if module.bias is not None and not isinstance(init, Default):
            with torch.no_grad():
                module.bias.zero_()
        return InitRow(name, kind, fan_in, fan_out, std, init.rule())
    if isinstance(module, _NORMS) and not isinstance(init, Default):
        with torch.no_grad():
            if getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
        return InitRow(name, kind, None, None, None, "weight 1, bias 0")
    return None


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
    """Zero the last scale of every residual branch, so each block starts as the identity.

    Goyal et al. 2017 (zero gamma of each block's last BN); He et al. 2019 (Bag of Tricks).
    Protocol: a block marks the module to zero as ``block.residual_last``; a norm layer gets
    ``weight = 0`` (its bias stays), a Linear / Conv gets ``weight = 0``. Returns the names of
    the modules zeroed.
    """
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
        zeroed.append(names.get(id(last), type(last).__name__))
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


def _watched(module: nn.Module) -> bool:
    return isinstance(module, (*_WEIGHTED, Activation, *_TORCH_ACTIVATIONS))


def _activation_spec(model: nn.Module) -> str | None:
    for m in model.modules():
        if isinstance(m, Activation) and not isinstance(m, Identity):
            return m.spec
        for cls, spec in _TORCH_ACTIVATIONS.items():
            if type(m) is cls:
                return spec
    return None


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
    x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
    names = [(n, m) for n, m in model.named_modules() if _watched(m)]
    stats: dict[str, list[float]] = {n: [math.nan, math.nan, 0] for n, _ in names}
    handles = [m.register_forward_hook(_signal_hook(stats[n])) for n, m in names]
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
    rows = _flag_rows(names, stats, factor, skip=residual_last)
    act = _activation_spec(model)
    findings, advice = _findings(rows, act, factor)
    return SignalReport(rows=rows, activation=act, findings=findings, advice=advice, factor=factor)


def _signal_hook(slot: list[float]) -> Callable[..., None]:
    def hook(_mod, _inp, out):
        if not isinstance(out, Tensor):
            return
        slot[0] = float(out.detach().float().std())
        slot[2] = out[0].numel() if out.dim() > 1 else 1
        if out.requires_grad:
            out.register_hook(lambda g: slot.__setitem__(1, float(g.detach().float().std())))

    return hook


def _kind(module: nn.Module) -> str:
    return "layer" if isinstance(module, _WEIGHTED) else "activation"


def _flag_rows(names, stats, factor: float, skip: set[int]) -> list[SignalRow]:
    """Compare each layer with the first of its kind (Linear/Conv outputs with the first
    Linear/Conv, activation outputs with the first activation): a norm layer in between rescales
    by design, so only like with like is a fair comparison. Modules in ``skip`` (the zeroed
    ``residual_last`` of residual blocks, silent by design) are never flagged."""
    refs: dict[str, float] = {}
    for n, m in names:
        refs.setdefault(_kind(m), stats[n][0])
    rows = []
    for n, m in names:
        a, g, size = stats[n]
        ref = refs[_kind(m)]
        flag = ""
        if ref > 0 and math.isfinite(a) and id(m) not in skip:
            if a < ref / factor:
                flag = "collapse"
            elif a > ref * factor:
                flag = "explode"
        rows.append(SignalRow(n, type(m).__name__, _kind(m), int(size), a, g, flag))
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


def _findings(rows: list[SignalRow], act: str | None, factor: float) -> tuple[list, list]:
    findings, advice = [], []
    collapse = [r.name for r in rows if r.flag == "collapse"]
    explode = [r.name for r in rows if r.flag == "explode"]
    if collapse:
        findings.append(
            f"activations collapse: {len(collapse)} layer(s) below 1/{factor:g} of the std of "
            f"the first of their kind, from {collapse[0]!r}; the weights are too small"
        )
    if explode:
        findings.append(
            f"activations explode: {len(explode)} layer(s) above {factor:g}x the std of the "
            f"first of their kind, from {explode[0]!r}; the weights are too large"
        )
    # Pooling, resolution changes and norm layers rescale per-element gradients by design, so
    # the first layer is compared with the deepest of the same kind and size per sample.
    first = rows[0] if rows else None
    same = [
        r
        for r in rows
        if first and (r.kind, r.size) == (first.kind, first.size) and math.isfinite(r.grad_std)
    ]
    if len(same) >= 2 and same[-1].grad_std > 0:
        ratio = same[0].grad_std / same[-1].grad_std
        if ratio < 1.0 / factor or ratio > factor:
            trend = "vanish" if ratio < 1.0 else "explode"
            findings.append(
                f"gradients {trend} toward the input: {same[0].name!r}'s gradient std is "
                f"{ratio:.3g}x that of {same[-1].name!r} (same kind and size, deeper)"
            )
    if findings:
        advice.append(_recommendation(act))
    return findings, advice
