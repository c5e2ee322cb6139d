"""DropConnect for Linear and Conv2d layers (Wan et al. 2013, "Regularization of Neural Networks
using DropConnect").

DropConnect zeroes **weights**: in training ``u = (W * M / (1 - p)) x + b``,
``M_ij ~ Bernoulli(1 - p)`` (inverted scaling, so ``E[u] = W x + b``; the bias is never
dropped). ``mode='batch'``: one mask per forward; ``mode='sample'`` (the paper's): one per
sample, so autograd keeps B masked weight matrices (memory ``B * out * in``,
docs/benchmarks/dropconnect.md). Test time, deterministic:

* ``inference='mean'``: ``u = W x + b``, the expected training pre-activation;
* ``inference='gaussian'``: the paper's moment matching,
  ``u ~ N(W x + b, p/(1 - p) (W o W)(x o x))``; ``mc_samples`` draws pass through
  ``activation`` and are averaged, approximating ``E[activation(u)]``. The draws come from a
  generator re-seeded from ``seed`` on every call.

Masks compare 16-bit lanes of random 64-bit words with a threshold, four entries per draw, so
the keep probability is ``1 - p`` rounded to a multiple of 2^-16 (:func:`realised_keep`, off by
at most 7.7e-6); the scale and the variance use that value, so expectations stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.checks import check_choice, check_int, check_probability
from trainlab.errors import RegistryError
from trainlab.registry import Registry
from trainlab.seeding import RandomModule, Seed, derive_seed

Activation = nn.Module | Callable[[torch.Tensor], torch.Tensor]
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

    One random 64-bit word per four entries: ``torch.rand(shape) >= p`` misses per-batch
    DropConnect's time target on the CPU (docs/benchmarks/dropconnect.md).
    """
    n = math.prod(shape)
    words = torch.randint(
        -(1 << 63), (1 << 63) - 1, ((n + 3) // 4,), generator=generator, device=device
    )
    lanes = words.view(torch.int16)[:n].view(shape)  # uniform on [-2^15, 2^15)
    threshold = _LEVELS // 2 - round(realised_keep(p) * _LEVELS)
    return torch.ge(lanes, threshold, out=torch.empty(shape, dtype=dtype, device=device))


class _DropConnect(RandomModule):
    """What DropConnectLinear and DropConnectConv2d share. Subclasses supply ``_op(x, weight)``
    (the layer without bias), ``_op_per_sample(x, weights)`` and ``_add_bias(y)``."""

    monte_carlo: ClassVar[bool] = True

    def _configure(
        self, p: float, mode: str, inference: str, mc_samples: int, activation: Activation | None
    ) -> None:
        self.p = check_probability(p, "p", below_one=True)
        if realised_keep(self.p) == 0.0:
            raise RegistryError(f"p must leave a keep probability of at least 2^-16, got {p!r}")
        self.mode = check_choice(mode, "mode", ("batch", "sample"))
        self.inference = check_choice(inference, "inference", ("mean", "gaussian"))
        if inference == "gaussian" and activation is None:
            raise RegistryError(
                "inference='gaussian' needs activation= (a module or callable): the moment-"
                "matched samples are averaged after the nonlinearity"
            )
        if activation is not None and not callable(activation):
            raise RegistryError(f"activation must be an nn.Module or callable, got {activation!r}")
        self.mc_samples = check_int(mc_samples, "mc_samples")
        self.activation = activation

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
        keep = realised_keep(self.p)
        mean = self._add_bias(self._op(x, self.weight))
        return mean, self._op(x.square(), self.weight.square()) * ((1.0 - keep) / keep)

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
            in_features, out_features, bias, device, dtype, seed=seed, generator=generator
        )
        self._configure(p, mode, inference, mc_samples, activation)

    @classmethod
    def from_linear(cls, layer: nn.Linear, p: float = 0.5, **kwargs) -> DropConnectLinear:
        """Wrap an existing layer's parameters (shared, not copied)."""
        return dropconnect_layer(layer, p, **kwargs)

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
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            device,
            dtype,
            seed=seed,
            generator=generator,
        )
        self._configure(p, mode, inference, mc_samples, activation)

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
    if not isinstance(layer, nn.Linear | nn.Conv2d):
        raise RegistryError(
            f"DropConnect applies to nn.Linear or nn.Conv2d, got {type(layer).__name__}"
        )
    like = {
        "bias": layer.bias is not None,
        "device": layer.weight.device,
        "dtype": layer.weight.dtype,
    }
    if isinstance(layer, nn.Linear):
        new = DropConnectLinear(layer.in_features, layer.out_features, p, **like, **kwargs)
    else:
        new = DropConnectConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            p,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            padding_mode=layer.padding_mode,
            **like,
            **kwargs,
        )
    new.weight, new.bias = layer.weight, layer.bias
    return new


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
