"""Activation functions: the module a model uses, the float64 formula a reader learns from.

Each activation is an ``nn.Module`` chosen by name in recipes (``"leaky_relu(0.1)"``) through
``make_activation``; its forward pass is PyTorch's kernel. Its formula is written once, in
``reference``: the derivative (autograd), the gains of ``trainlab.init``, the figures and the
tests all take it from there. ``activation_info`` adds what a diagnosis needs: output range,
zero-centred or not, where it saturates, whether a unit can die.

A unit is *saturated* where its derivative has fallen below ``eps`` (default 0.02) times the
function's peak slope, so almost no gradient passes: for tanh that is ``|y| > 0.99``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.checks import check_choice, check_flag, check_int, check_number
from trainlab.registry import Registry

ACTIVATIONS: Registry[Activation] = Registry("activation")

# Klambauer et al. 2017, eq. 14: the constants that make mean 0 / variance 1 a stable fixed
# point of a SELU layer with LeCun-normal weights.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

_GRID = np.linspace(-12.0, 12.0, 24001)  # where peak slopes and output minima are read off


def _f64(x: Any) -> Tensor:
    return torch.from_numpy(np.array(x, dtype=np.float64))


def _spec(name: str, *args: tuple[Any, Any]) -> str:
    """The recipe string ``name(v1, v2)`` from (value, default) pairs, up to the last value that
    is not its default. Shared with trainlab.init."""
    last = max((i for i, (v, d) in enumerate(args) if v != d), default=-1)
    return name if last < 0 else f"{name}({', '.join(repr(v) for v, _ in args[: last + 1])})"


def _sigmoid(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.tanh(0.5 * x))  # 1 / (1 + e^-x) without overflow for x << 0


def _elu(x: Tensor, alpha: float) -> Tensor:
    # clamp: where() still differentiates the branch it discards, and e^x there must stay finite
    return torch.where(x > 0, x, alpha * torch.expm1(x.clamp(max=0)))


@dataclass(frozen=True)
class ActivationInfo:
    """What a diagnosis or a figure needs to know about one activation.

    ``f``/``df`` are float64 numpy formulas; ``grad`` is the derivative in torch (any device);
    ``grad_from_output`` gives it from the output alone, for monotone functions (else None).
    """

    spec: str
    f: Callable[[np.ndarray], np.ndarray]
    df: Callable[[np.ndarray], np.ndarray]
    forward: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    grad_from_output: Callable[[Tensor], Tensor] | None
    output_range: tuple[float, float]
    zero_centred: bool
    saturates: str | None
    can_die: bool
    peak_slope: float

    def saturated(self, pre_activation: Tensor, eps: float = 0.02) -> Tensor:
        """Boolean mask: True where ``|f'(x)| < eps * peak_slope`` (x is the pre-activation).

        For GELU and SiLU the output must also be within ``eps * peak_slope`` of zero, so the
        stationary point at the bottom of their dip does not count: saturation is the tail.
        """
        if self.saturates is None:
            return torch.zeros_like(pre_activation, dtype=torch.bool)
        flat = self.grad(pre_activation).abs() < eps * self.peak_slope
        if self.grad_from_output is None:
            flat &= self.forward(pre_activation).abs() < eps * self.peak_slope
        return flat

    def saturated_np(self, x: np.ndarray, eps: float = 0.02) -> np.ndarray:
        """The rule of ``saturated`` on numpy values, in float64 (used for figures)."""
        return self.saturated(_f64(x), eps).numpy()

    def saturated_from_output(self, output: Tensor, eps: float = 0.02) -> Tensor:
        """The same mask decided from the output ``y = f(x)``: ``|tanh| > 0.99`` at eps=0.02.

        Monotone activations only: GELU and SiLU dip below zero and come back, so one output
        has two inputs with different slopes; pass the pre-activation to ``saturated``.
        """
        if self.saturates is None:
            return torch.zeros_like(output, dtype=torch.bool)
        if self.grad_from_output is None:
            raise ValueError(
                f"activation {self.spec!r} is not monotone, so its output does not decide "
                "saturation; call saturated(pre_activation) instead"
            )
        return self.grad_from_output(output).abs() < eps * self.peak_slope


class Activation(nn.Module):
    """Base of trainlab's activations: ``forward`` is PyTorch's kernel, ``reference`` the formula.

    Monotone subclasses also write f' in terms of the output, ``grad_from_output(y)``; the
    others set ``monotone = False``. Without an ``output_range``, the range is the minimum on
    [-12, 12] and unbounded above (GELU, SiLU).
    """

    name: ClassVar[str]
    zero_centred: ClassVar[bool]
    saturates: ClassVar[str | None] = None
    can_die: ClassVar[bool] = False
    monotone: ClassVar[bool] = True  # False: one output value has inputs with different slopes
    output_range: tuple[float, float] | None = None

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = check_flag(inplace, "inplace")

    def reference(self, x: Tensor) -> Tensor:
        """The formula, written once; with float64 input it is the reference the tests trust."""
        raise NotImplementedError

    def f(self, x: np.ndarray) -> np.ndarray:
        """``reference`` on numpy values, in float64."""
        return self.reference(_f64(x)).numpy()

    def df(self, x: np.ndarray) -> np.ndarray:
        """f' on numpy values, by float64 autograd through ``reference``."""
        return self.grad(_f64(x)).numpy()

    def grad(self, x: Tensor) -> Tensor:
        """f'(x) by autograd through ``reference``, in x's dtype and on x's device."""
        # A hook may run under no_grad or inference mode; the derivative needs a graph anyway.
        with torch.inference_mode(False), torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            (dx,) = torch.autograd.grad(self.reference(x).sum(), x)
        return dx

    def peak_slope(self) -> float:
        """max |f'(x)|, read off a fine grid on [-12, 12]."""
        return float(np.max(np.abs(self.df(_GRID))))

    def spec_args(self) -> list[tuple[Any, Any]]:
        """(value, default) per constructor argument, in order; the spec shows non-defaults."""
        return []

    @property
    def spec(self) -> str:
        """The recipe string that rebuilds this module, e.g. ``"leaky_relu(0.1)"``."""
        return _spec(self.name, *self.spec_args())

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}" + (", inplace=True" if self.inplace else "")

    def info(self) -> ActivationInfo:
        """A frozen snapshot of this activation's math and properties (PReLU: current slope)."""
        return ActivationInfo(
            spec=self.spec,
            f=self.f,
            df=self.df,
            forward=self.forward,
            grad=self.grad,
            grad_from_output=self.grad_from_output if self.monotone else None,
            output_range=self.output_range or (float(self.f(_GRID).min()), math.inf),
            zero_centred=self.zero_centred,
            saturates=self.saturates,
            can_die=self.can_die,
            peak_slope=self.peak_slope(),
        )


@ACTIVATIONS.register("sigmoid", "logistic")
class Sigmoid(Activation):
    """``f(x) = 1 / (1 + e^-x)`` (Rumelhart, Hinton & Williams 1986). Not zero-centred and
    saturating both sides, which is why LeCun et al. 1998 (Efficient BackProp) advise tanh."""

    name = "sigmoid"
    zero_centred = False
    saturates = "|x| > ~5.3 both sides"
    output_range = (0.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid_() if self.inplace else torch.sigmoid(x)

    def reference(self, x):
        return _sigmoid(x)

    def grad_from_output(self, y):
        return y * (1 - y)


@ACTIVATIONS.register("tanh")
class Tanh(Activation):
    """``f(x) = tanh x``, the zero-centred sigmoid of LeCun et al. 1998 (Efficient BackProp)."""

    name = "tanh"
    zero_centred = True
    saturates = "|x| > ~2.6 both sides"
    output_range = (-1.0, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh_() if self.inplace else torch.tanh(x)

    def reference(self, x):
        return torch.tanh(x)

    def grad_from_output(self, y):
        return 1 - y * y


@ACTIVATIONS.register("relu")
class ReLU(Activation):
    """``f(x) = max(0, x)`` (Nair & Hinton 2010; Glorot, Bordes & Bengio 2011). A unit whose
    input stays negative gets no gradient and can die."""

    name = "relu"
    zero_centred = False
    saturates = "x < 0 (zero gradient)"
    can_die = True
    output_range = (0.0, math.inf)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu_(x) if self.inplace else torch.relu(x)

    def reference(self, x):
        return torch.where(x > 0, x, 0.0)  # f'(0) = 0, as PyTorch's backward has it

    def grad_from_output(self, y):
        return (y > 0).to(y.dtype)


@ACTIVATIONS.register("leaky_relu")
class LeakyReLU(Activation):
    """``f(x) = x if x > 0 else a x`` (Maas, Hannun & Ng 2013): units cannot die."""

    name = "leaky_relu"
    zero_centred = False

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace)
        self.negative_slope = check_number(negative_slope, "negative_slope", 0, 1, hi_open=True)
        self.output_range = (-math.inf if self.negative_slope > 0 else 0.0, math.inf)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope, self.inplace)

    def spec_args(self):
        return [(self.negative_slope, 0.01)]

    def reference(self, x):
        return torch.where(x > 0, x, self.negative_slope * x)

    def grad_from_output(self, y):
        return torch.where(y > 0, torch.ones_like(y), self.negative_slope)


@ACTIVATIONS.register("prelu")
class PReLU(Activation):
    """Leaky ReLU with learned slopes, ``f(x) = x if x > 0 else a_c x`` (He et al. 2015).

    ``num_parameters=1`` shares one slope, ``C`` learns one per channel (dimension 1); slopes
    start at ``init`` (0.25 in the paper). The reference formula uses the current slopes.
    """

    name = "prelu"
    zero_centred = False
    output_range = (-math.inf, math.inf)

    def __init__(self, num_parameters: int = 1, init: float = 0.25, inplace: bool = False):
        super().__init__(inplace)  # F.prelu has no in-place form; the flag is accepted and ignored
        self.num_parameters = check_int(num_parameters, "num_parameters")
        self.init = check_number(init, "init")
        self.weight = nn.Parameter(torch.full((num_parameters,), self.init))

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x, self.weight)

    def spec_args(self):
        return [(self.num_parameters, 1), (self.init, 0.25)]

    def _slope(self, x: Tensor) -> Tensor:
        a = self.weight.detach().to(x.dtype)
        if a.numel() == 1:
            return a.reshape(())
        if x.dim() < 2:  # same rule as F.prelu: channels live on dimension 1
            raise ValueError(f"per-channel prelu needs inputs with a channel dim, got {x.shape}")
        return a.reshape((1, -1) + (1,) * (x.dim() - 2))

    def reference(self, x):
        return torch.where(x > 0, x, self._slope(x) * x)

    def grad_from_output(self, y):
        # only used when monotone (every slope >= 0), where sign(y) is sign(x)
        return torch.where(y > 0, torch.ones_like(y), self._slope(y))

    @property
    def monotone(self) -> bool:  # type: ignore[override]
        return bool((self.weight.detach() >= 0).all())

    def peak_slope(self) -> float:
        return max(1.0, float(self.weight.detach().abs().max()))


@ACTIVATIONS.register("elu")
class ELU(Activation):
    """``f(x) = x if x > 0 else alpha (e^x - 1)`` (Clevert, Unterthiner & Hochreiter 2016).
    Negative outputs pull the mean activation toward zero; saturates to ``-alpha``."""

    name = "elu"
    zero_centred = False
    saturates = "x < ~-4 (to -alpha)"

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = check_number(alpha, "alpha", 0, lo_open=True)
        self.output_range = (-self.alpha, math.inf)

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(x, self.alpha, self.inplace)

    def spec_args(self):
        return [(self.alpha, 1.0)]

    def reference(self, x):
        return _elu(x, self.alpha)

    def grad_from_output(self, y):
        return torch.where(y > 0, torch.ones_like(y), y + self.alpha)


@ACTIVATIONS.register("selu")
class SELU(Activation):
    """``f(x) = lambda elu_alpha(x)``, alpha ~ 1.6733, lambda ~ 1.0507 (Klambauer et al. 2017,
    "Self-Normalizing Neural Networks"): E[f(z)] = 0 and E[f(z)^2] = 1 for z ~ N(0, 1)."""

    name = "selu"
    zero_centred = True
    saturates = "x < ~-4 (to -lambda alpha)"
    output_range = (-SELU_SCALE * SELU_ALPHA, math.inf)

    def forward(self, x: Tensor) -> Tensor:
        return F.selu(x, self.inplace)

    def reference(self, x):
        return SELU_SCALE * _elu(x, SELU_ALPHA)

    def grad_from_output(self, y):
        return torch.where(y > 0, torch.full_like(y, SELU_SCALE), y + SELU_SCALE * SELU_ALPHA)


@ACTIVATIONS.register("gelu")
class GELU(Activation):
    """``f(x) = x Phi(x)`` (Hendrycks & Gimpel 2016, "Gaussian Error Linear Units");
    ``approximate='tanh'`` is the paper's ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``."""

    name = "gelu"
    zero_centred = False
    saturates = "x < ~-2.8 (to 0)"
    monotone = False  # dips to about -0.17 near x = -0.75

    def __init__(self, approximate: str = "none", inplace: bool = False):
        super().__init__(inplace)  # F.gelu has no in-place form; the flag is accepted and ignored
        self.approximate = check_choice(approximate, "approximate", ("none", "tanh"))

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def spec_args(self):
        return [(self.approximate, "none")]

    def reference(self, x):
        if self.approximate == "tanh":
            return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
        return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))


@ACTIVATIONS.register("silu", "swish")
class SiLU(Activation):
    """``f(x) = x sigmoid(x)``, a.k.a. swish (Elfwing, Uchibe & Doya 2018; Ramachandran,
    Zoph & Le 2017)."""

    name = "silu"
    zero_centred = False
    saturates = "x < ~-5.5 (to 0)"
    monotone = False  # dips to about -0.28 near x = -1.28

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x, self.inplace)

    def reference(self, x):
        return x * _sigmoid(x)


@ACTIVATIONS.register("identity", "linear", "none")
class Identity(Activation):
    """No non-linearity, ``f(x) = x``: stacked linear layers stay one linear map."""

    name = "identity"
    zero_centred = True
    output_range = (-math.inf, math.inf)

    def forward(self, x: Tensor) -> Tensor:
        return x

    def reference(self, x):
        return x

    def grad_from_output(self, y):
        return torch.ones_like(y)


def make_activation(spec: str, inplace: bool = False) -> Activation:
    """Build the activation a recipe names: ``make_activation("leaky_relu(0.1)")``.

    ``inplace=True`` overwrites the input where PyTorch has an in-place kernel (sigmoid, tanh,
    relu, leaky_relu, elu, selu, silu) and is ignored elsewhere.
    """
    return ACTIVATIONS.create(spec, **({"inplace": True} if inplace else {}))


@lru_cache(maxsize=64)
def _info_cached(spec: str) -> ActivationInfo:
    return make_activation(spec).info()


def activation_info(spec: str | Activation) -> ActivationInfo:
    """Properties and reference math of an activation, by spec or from a module."""
    return spec.info() if isinstance(spec, Activation) else _info_cached(spec)


PLOT_SPECS = tuple("sigmoid tanh relu leaky_relu(0.1) prelu elu selu gelu silu identity".split())


def plot_activations(
    path: str | os.PathLike[str], specs: tuple[str, ...] = PLOT_SPECS, eps: float = 0.02
) -> None:
    """Draw every activation and its derivative on [-6, 6], shading where it saturates.

    The figure is written atomically; its format follows the file suffix (png, pdf, svg).
    """
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    from trainlab.fileio import write_with

    x = np.linspace(-6.0, 6.0, 1201)
    cols = 5
    rows = math.ceil(len(specs) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, spec in zip(axes, specs, strict=False):
        info = activation_info(spec)
        ax.fill_between(x, -2.0, 3.0, where=info.saturated_np(x, eps), color="0.88", lw=0)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.axvline(0.0, color="0.6", lw=0.6)
        ax.plot(x, info.f(x), color="C0", lw=1.6, label="f(x)")
        ax.plot(x, info.df(x), color="C3", lw=1.2, ls="--", label="f'(x)")
        ax.set_title(info.spec, fontsize=10)
        ax.set_xlim(-6, 6)
        ax.set_ylim(-2.0, 3.0)
    for ax in axes[len(specs) :]:
        ax.set_visible(False)
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Activations and derivatives (grey: |f'| < {eps:g} x peak slope)")
    suffix = os.fspath(path).rsplit(".", 1)[-1].lower() if "." in os.fspath(path) else "png"
    write_with(path, lambda tmp: fig.savefig(tmp, format=suffix, dpi=110))
