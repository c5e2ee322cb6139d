"""DropConnect for Linear and Conv2d layers (Wan et al. 2013, "Regularization of Neural Networks
using DropConnect").

Dropout zeroes activations; DropConnect zeroes **weights**: in training each weight is kept with
probability ``1 - p``, ``u = (W * M / (1 - p)) x + b``, ``M_ij ~ Bernoulli(1 - p)`` (the inverted
scaling, so ``E[u] = W x + b``; the bias is never dropped). Masks come from the layer's own
generator (:class:`~trainlab.seeding.RandomModule`), never the global RNG.

* ``mode='batch'``: one mask per forward pass, shared by the batch.
* ``mode='sample'`` (the paper's): every sample has its own mask, ``u_b = (W * M_b) x_b``.
  Autograd keeps the B masked weight matrices for backward, so memory grows as
  ``B * out * in`` (see docs/benchmarks/dropconnect.md).

Test time (``eval()``, deterministic):

* ``inference='mean'``: the mean weights, ``u = W x + b`` (the paper's ``(1 - p) W`` under its
  unscaled training masks). The eval output equals the expected train output **before** any
  activation.
* ``inference='gaussian'``: the paper's moment matching. Each unit's input is approximately
  Gaussian, ``u ~ N(W x + b, p/(1 - p) * (W o W)(x o x))`` (the paper's
  ``N((1-p) W x, p(1-p) (W o W)(x o x))`` divided by ``1 - p`` for the inverted scaling);
  ``mc_samples`` draws of ``u`` pass through ``activation`` and are averaged, which
  approximates ``E[activation(u)]`` under DropConnect better than ``activation(E[u])``. This
  needs the activation, so the layer then applies it in every mode. The draws come from a
  generator re-seeded from ``seed`` on every call, so eval stays deterministic.

Random in ``train()``, deterministic in ``eval()``; ``E[train pre-activation] = eval
pre-activation`` (exactly for ``'mean'``).

Masks compare 16-bit lanes of random 64-bit words with a threshold, four entries per draw, so
the keep probability is ``1 - p`` rounded to a multiple of 2^-16 (:func:`realised_keep`; exact
for p = 0.5, 0.25, ..., off by at most 7.7e-6 otherwise). The scale and the Gaussian variance
use that realised value, so the expectation stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.checks import check_probability
from trainlab.errors import RegistryError
from trainlab.registry import Registry
from trainlab.seeding import RandomModule, Seed, derive_seed

Activation = nn.Module | Callable[[torch.Tensor], torch.Tensor]
_MODES = ("batch", "sample")
_INFERENCES = ("mean", "gaussian")
_LEVELS = 1 << 16  # resolution of the keep probability


def realised_keep(p: float) -> float:
    """The keep probability the masks actually use: ``1 - p`` rounded to a multiple of 2^-16."""
    return round((1.0 - p) * _LEVELS) / _LEVELS


def keep_mask(
    shape: tuple[int, ...],
    p: float,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype = torch.bool,
) -> torch.Tensor:
    """Keep mask, 1 with probability ``realised_keep(p)``, as ``dtype`` (bool, or 0/1 floats).

    Each entry compares a 16-bit lane of a random 64-bit word with a threshold: one draw per
    four entries, which is what keeps per-batch DropConnect within its time target on the CPU
    (``torch.rand(shape) >= p`` misses it; docs/benchmarks/dropconnect.md).
    """
    n = math.prod(shape)
    words = torch.randint(
        -(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), generator=generator, device=device
    )
    lanes = words.view(torch.int16)[:n].view(shape)  # uniform on [-2^15, 2^15)
    threshold = _LEVELS // 2 - round(realised_keep(p) * _LEVELS)
    return torch.ge(lanes, threshold, out=torch.empty(shape, dtype=dtype, device=device))


class _DropConnect(RandomModule):
    """What DropConnectLinear and DropConnectConv2d share; subclasses supply the operation."""

    monte_carlo: ClassVar[bool] = True

    def _configure(
        self,
        p: float,
        mode: str,
        inference: str,
        mc_samples: int,
        activation: Activation | None,
    ) -> None:
        self.p = check_probability(p, "p", below_one=True)
        if realised_keep(self.p) == 0.0:
            raise RegistryError(f"p must leave a keep probability of at least 2^-16, got {p!r}")
        if mode not in _MODES:
            raise RegistryError(f"mode must be one of {_MODES}, got {mode!r}")
        if inference not in _INFERENCES:
            raise RegistryError(f"inference must be one of {_INFERENCES}, got {inference!r}")
        if inference == "gaussian" and activation is None:
            raise RegistryError(
                "inference='gaussian' needs activation= (a module or callable): the moment-"
                "matched samples are averaged after the nonlinearity"
            )
        if activation is not None and not callable(activation):
            raise RegistryError(f"activation must be an nn.Module or callable, got {activation!r}")
        if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
            raise RegistryError(f"mc_samples must be an int >= 1, got {mc_samples!r}")
        self.mode, self.inference = mode, inference
        self.mc_samples = mc_samples
        self.activation = activation

    # -- supplied by subclasses: the layer's operation without bias, per batch and per sample
    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _op_per_sample(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, p={self.p}, mode={self.mode!r}, inference={self.inference!r}"
        )

    def _train_pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        per_sample = self.mode == "sample"
        shape = (x.shape[0], *self.weight.shape) if per_sample else tuple(self.weight.shape)
        generator = self.generator_for(x.device)
        mask = keep_mask(shape, self.p, generator, x.device, self.weight.dtype)
        weight = self.weight * mask.div_(realised_keep(self.p))  # autograd does the backward
        y = self._op_per_sample(x, weight) if per_sample else self._op(x, weight)
        return self._add_bias(y)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of each pre-activation unit under the training masks."""
        mean = self._add_bias(self._op(x, self.weight))
        keep = realised_keep(self.p)
        var = self._op(x.square(), self.weight.square()) * ((1.0 - keep) / keep)
        return mean, var

    def _gaussian_inference(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = self.moments(x)
        generator = torch.Generator(device=x.device).manual_seed(derive_seed(self.seed, "eval"))
        noise = torch.randn(
            (self.mc_samples, *mean.shape), generator=generator, device=x.device, dtype=x.dtype
        )
        return self.activation(mean + var.sqrt() * noise).mean(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0:
            y = self._train_pre_activation(x)
        elif self.inference == "gaussian" and self.p > 0:
            return self._gaussian_inference(x)
        else:
            y = self._add_bias(self._op(x, self.weight))
        return y if self.activation is None else self.activation(y)


class DropConnectLinear(_DropConnect, nn.Linear):
    """``nn.Linear`` with DropConnect (Wan et al. 2013): ``u = (W * M / (1-p)) x + b``.

    ``p``: drop probability in [0, 1). ``mode``: ``'batch'`` (one mask per forward) or
    ``'sample'`` (one mask per sample, the paper's). ``inference``: ``'mean'`` or
    ``'gaussian'`` (moment matching, needs ``activation``; ``mc_samples`` draws).
    ``activation``: applied after the layer in every mode when given.
    A subclass of ``nn.Linear``: init schemes and penalties treat it as one.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        p: float = 0.5,
        mode: str = "batch",
        inference: str = "mean",
        mc_samples: int = 64,
        activation: Activation | None = None,
        bias: bool = True,
        *,
        seed: Seed = 0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_features,
            out_features,
            bias=bias,
            device=device,
            dtype=dtype,
            seed=seed,
            generator=generator,
        )
        self._configure(p, mode, inference, mc_samples, activation)

    @classmethod
    def from_linear(cls, layer: nn.Linear, p: float = 0.5, **kwargs) -> DropConnectLinear:
        """Wrap an existing layer's parameters (shared, not copied)."""
        new = cls(
            layer.in_features,
            layer.out_features,
            p,
            bias=layer.bias is not None,
            device=layer.weight.device,
            dtype=layer.weight.dtype,
            **kwargs,
        )
        new.weight, new.bias = layer.weight, layer.bias
        return new

    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def _op_per_sample(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # x: (B, *, in), weights: (B, out, in) -> (B, *, out). Weights first: the gradient
        # autograd forms for them is then laid out like them, and reducing it is 2x faster.
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        y = torch.bmm(weights, flat.transpose(1, 2)).transpose(1, 2)
        return y.reshape(*x.shape[:-1], weights.shape[1])

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias


class DropConnectConv2d(_DropConnect, nn.Conv2d):
    """``nn.Conv2d`` with DropConnect on its kernel: ``u = conv(x, W * M / (1-p)) + b``.

    Same options as :class:`DropConnectLinear`. In ``'sample'`` mode each sample's masked
    kernel is applied through one grouped convolution (the samples become groups).
    The mask is on the kernel, so it is shared by all spatial positions of a sample.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        p: float = 0.5,
        mode: str = "batch",
        inference: str = "mean",
        mc_samples: int = 64,
        activation: Activation | None = None,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        seed: Seed = 0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
            seed=seed,
            generator=generator,
        )
        self._configure(p, mode, inference, mc_samples, activation)

    @classmethod
    def from_conv(cls, layer: nn.Conv2d, p: float = 0.5, **kwargs) -> DropConnectConv2d:
        """Wrap an existing layer's parameters (shared, not copied)."""
        new = cls(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            p,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=layer.bias is not None,
            padding_mode=layer.padding_mode,
            device=layer.weight.device,
            dtype=layer.weight.dtype,
            **kwargs,
        )
        new.weight, new.bias = layer.weight, layer.bias
        return new

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, int | tuple[int, ...] | str]:
        if self.padding_mode == "zeros":
            return x, self.padding
        return F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0

    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x, padding = self._padded(x)
        return F.conv2d(x, weight, None, self.stride, padding, self.dilation, self.groups)

    def _op_per_sample(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # samples become groups: (B, C, H, W) -> (1, B*C, H, W), kernels (B*O, C/g, kh, kw)
        x, padding = self._padded(x)
        count = x.shape[0]
        y = F.conv2d(
            x.reshape(1, -1, *x.shape[2:]),
            weights.reshape(-1, *weights.shape[2:]),
            None,
            self.stride,
            padding,
            self.dilation,
            self.groups * count,
        )
        return y.reshape(count, -1, *y.shape[2:])

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def dropconnect_layer(layer: nn.Module, p: float = 0.5, **kwargs) -> _DropConnect:
    """The DropConnect version of an ``nn.Linear`` or ``nn.Conv2d``, sharing its parameters."""
    if isinstance(layer, nn.Linear):
        return DropConnectLinear.from_linear(layer, p, **kwargs)
    if isinstance(layer, nn.Conv2d):
        return DropConnectConv2d.from_conv(layer, p, **kwargs)
    raise RegistryError(
        f"DropConnect applies to nn.Linear or nn.Conv2d, got {type(layer).__name__}"
    )


DROPCONNECT: Registry[nn.Module] = Registry("dropconnect")


@DROPCONNECT.register("dropconnect")
def dropconnect(
    p: float = 0.5,
    mode: str = "batch",
    inference: str = "mean",
    mc_samples: int = 64,
    seed: Seed = 0,
    *,
    layer: nn.Module | None = None,
    activation: Activation | None = None,
) -> nn.Module:
    """``"dropconnect(0.5)"``: build with ``DROPCONNECT.create(spec, layer=nn.Linear(...))``.

    The layer to convert comes from the model builder (a recipe names only the technique).
    """
    if layer is None:
        raise RegistryError(
            "dropconnect needs the layer it replaces: DROPCONNECT.create(spec, layer=...)"
        )
    return dropconnect_layer(
        layer,
        p,
        mode=mode,
        inference=inference,
        mc_samples=mc_samples,
        activation=activation,
        seed=seed,
    )
