"""DropConnect for Linear and Conv2d layers (Wan et al. 2013, "Regularization of Neural Networks
using DropConnect").

Dropout zeroes activations; DropConnect zeroes **weights**: in training each weight is kept with
probability ``1 - p``, ``u = (W * M / (1 - p)) x + b``, ``M_ij ~ Bernoulli(1 - p)`` (the inverted
scaling, so ``E[u] = W x + b``; the bias is never dropped).

Two mask granularities:

* ``mode='batch'``: one mask per forward pass, shared by the batch (cheap: one Bernoulli draw
  of the weight's size).
* ``mode='sample'`` (the paper's): every sample has its own mask, ``u_b = (W * M_b) x_b``.
  Masks are drawn for a chunk of samples at a time (at most ``chunk_elements`` mask entries),
  and the backward pass **re-draws** the same masks from the saved generator state instead of
  keeping them, so memory is bounded by the chunk size, not by ``B * out * in`` (a naive
  implementation stores all B masks and all B masked weights for autograd).

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

Masks are drawn from 16-bit uniforms (four per 64-bit random word, about 5x cheaper than one
float per weight), so the keep probability is ``1 - p`` rounded to a multiple of 2^-16
(:func:`realised_keep`; exact for p = 0.5, 0.25, ..., off by at most 7.7e-6 otherwise). The
scale and the Gaussian variance use that realised value, so the expectation stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from trainlab.errors import RegistryError
from trainlab.registry import Registry
from trainlab.regularize.dropout import RandomModule, Seed, check_probability, derive_seed

Activation = nn.Module | Callable[[torch.Tensor], torch.Tensor]
_MODES = ("batch", "sample")
_LEVELS = 1 << 16  # resolution of the keep probability
_INFERENCES = ("mean", "gaussian")


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegistryError(f"{name} must be an int >= 1, got {value!r}")
    return value


def realised_keep(p: float) -> float:
    """The keep probability the masks actually use: ``1 - p`` rounded to a multiple of 2^-16."""
    return round((1.0 - p) * _LEVELS) / _LEVELS


def _uniform16(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """int16 uniform on [-2^15, 2^15): the four 16-bit lanes of each random 64-bit word."""
    n = math.prod(shape)
    words = torch.randint(
        -(1 << 63),
        (1 << 63) - 1,
        ((n + 3) // 4,),
        generator=generator,
        device=device,
        dtype=torch.int64,
    )
    return words.view(torch.int16)[:n].view(shape)


def _threshold(p: float) -> int:
    """A lane is kept iff it is >= this; P(keep) = realised_keep(p)."""
    return _LEVELS // 2 - round(realised_keep(p) * _LEVELS)


def keep_mask(
    shape: tuple[int, ...], p: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Boolean keep mask, True with probability ``realised_keep(p)``.

    Each entry compares a 16-bit uniform lane of a random 64-bit word with a threshold: four
    entries per draw instead of one float per entry, which makes the mask about 5x cheaper
    than ``torch.rand(shape) >= p`` (the CPU generator's cost per call dominates).
    """
    return _uniform16(shape, generator, device) >= _threshold(p)


def _keep_float(
    shape: tuple[int, ...], p: float, generator: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    """``keep_mask`` as 0/1 in ``like``'s dtype, written by the compare itself (a bool mask
    would be cast again by every multiply, forward and backward). The 1/keep scale is applied
    by the caller, on whichever of kernel and output is smaller."""
    out = torch.empty(shape, dtype=like.dtype, device=like.device)
    return torch.ge(_uniform16(shape, generator, like.device), _threshold(p), out=out)


def _sample_chunks(
    x: torch.Tensor, weight: torch.Tensor, p: float, generator: torch.Generator, chunk: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, masks) for consecutive chunks of samples; the draw order is the replay order."""
    for start in range(0, x.shape[0], chunk):
        rows = slice(start, min(start + chunk, x.shape[0]))
        count = rows.stop - rows.start
        yield rows, _keep_float((count, *weight.shape), p, generator, weight)


class _PerSampleMasked(torch.autograd.Function):
    """``y_b = op(x_b, W o M_b)`` with 0/1 masks re-drawn in backward from the saved RNG state.

    ``layer`` supplies ``_op_per_sample(x, weights)`` and
    ``_op_per_sample_backward(x, weight, masks, grad, need_x, need_w)``.
    """

    @staticmethod
    def forward(ctx, x, weight, layer, p, generator, chunk):
        state = generator.get_state()
        with torch.no_grad():
            chunks = _sample_chunks(x, weight, p, generator, chunk)
            out = torch.cat(
                [layer._op_per_sample(x[rows], weight * masks) for rows, masks in chunks]
            )
        ctx.save_for_backward(x, weight)
        ctx.layer, ctx.p, ctx.chunk, ctx.state = layer, p, chunk, state
        ctx.device = generator.device
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        replay = torch.Generator(device=ctx.device)
        replay.set_state(ctx.state)
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros_like(weight) if need_w else None
        for rows, masks in _sample_chunks(x, weight, ctx.p, replay, ctx.chunk):
            gx, gw = ctx.layer._op_per_sample_backward(
                x[rows], weight, masks, grad_out[rows], need_x, need_w
            )
            if need_x:
                grad_x[rows] = gx
            if need_w:
                grad_w += gw
        return grad_x, grad_w, None, None, None, None


class _DropConnect(RandomModule):
    """What DropConnectLinear and DropConnectConv2d share; subclasses supply the operation."""

    monte_carlo: ClassVar[bool] = True
    # per-batch mode scales by 1/keep on the output (Linear: B*out < out*in, typically) or on
    # the mask (Conv: the kernel is smaller than the feature maps)
    _scale_output: ClassVar[bool] = True

    def _configure(
        self,
        p: float,
        mode: str,
        inference: str,
        mc_samples: int,
        activation: Activation | None,
        chunk_elements: int,
    ) -> None:
        self.p = check_probability("p", p)
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
        self.mode, self.inference = mode, inference
        self.mc_samples = _positive_int("mc_samples", mc_samples)
        self.chunk_elements = _positive_int("chunk_elements", chunk_elements)
        self.activation = activation

    # -- supplied by subclasses: the layer's operation without bias, per batch and per sample
    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _op_per_sample(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _op_per_sample_backward(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        masks: torch.Tensor,
        grad: torch.Tensor,
        need_x: bool,
        need_w: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Gradients of one chunk by recomputing it under autograd (any layer type)."""
        with torch.enable_grad():
            xc = x.detach().requires_grad_(need_x)
            w = weight.detach().requires_grad_(need_w)
            out = self._op_per_sample(xc, w * masks)
            inputs = [t for t, need in ((xc, need_x), (w, need_w)) if need]
            grads = iter(torch.autograd.grad(out, inputs, grad))
        return (next(grads) if need_x else None), (next(grads) if need_w else None)

    def _train_pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        generator = self.generator_for(x.device)
        scale = 1.0 / realised_keep(self.p)
        if self.mode == "batch":
            masked = self.weight * _keep_float(
                tuple(self.weight.shape), self.p, generator, self.weight
            )
            if self._scale_output:
                return self._add_bias(self._op(x, masked) * scale)
            return self._add_bias(self._op(x, masked * scale))
        chunk = max(1, self.chunk_elements // self.weight.numel())
        y = _PerSampleMasked.apply(x, self.weight, self, self.p, generator, chunk)
        return self._add_bias(y * scale)

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
    ``chunk_elements``: per-sample mode's memory bound, in mask entries per chunk.
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
        chunk_elements: int = 1 << 22,
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
        self._configure(p, mode, inference, mc_samples, activation, chunk_elements)

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

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, p={self.p}, mode={self.mode!r}, inference={self.inference!r}"
        )

    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def _op_per_sample(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # x: (c, *, in), weights: (c, out, in) -> (c, *, out)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])
        y = torch.bmm(flat, weights.transpose(1, 2))
        return y.reshape(*x.shape[:-1], weights.shape[1])

    def _op_per_sample_backward(self, x, weight, masks, grad, need_x, need_w):
        # y_b = x_b (W o M_b)^T: dx_b = g_b (W o M_b), dW = sum_b (g_b^T x_b) o M_b. Explicit
        # formulas skip the forward recompute and autograd's slow broadcast reduction.
        flat_x = x.reshape(x.shape[0], -1, x.shape[-1])
        flat_g = grad.reshape(grad.shape[0], -1, grad.shape[-1])
        grad_x = torch.bmm(flat_g, weight * masks).reshape(x.shape) if need_x else None
        grad_w = None
        if need_w:
            grad_w = torch.bmm(flat_g.transpose(1, 2), flat_x).mul_(masks).sum(0)
        return grad_x, grad_w

    def _add_bias(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.bias is None else y + self.bias


class DropConnectConv2d(_DropConnect, nn.Conv2d):
    """``nn.Conv2d`` with DropConnect on its kernel: ``u = conv(x, W * M / (1-p)) + b``.

    Same options as :class:`DropConnectLinear`. In ``'sample'`` mode each sample's masked
    kernel is applied through one grouped convolution per chunk (the samples become groups).
    The mask is on the kernel, so it is shared by all spatial positions of a sample.
    """

    _scale_output: ClassVar[bool] = False

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
        chunk_elements: int = 1 << 22,
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
        self._configure(p, mode, inference, mc_samples, activation, chunk_elements)

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

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, p={self.p}, mode={self.mode!r}, inference={self.inference!r}"
        )

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, int | tuple[int, ...] | str]:
        if self.padding_mode == "zeros":
            return x, self.padding
        return F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0

    def _op(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x, padding = self._padded(x)
        return F.conv2d(x, weight, None, self.stride, padding, self.dilation, self.groups)

    def _op_per_sample(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # samples become groups: (c, C, H, W) -> (1, c*C, H, W), kernels (c*O, C/g, kh, kw)
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
