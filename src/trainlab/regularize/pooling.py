"""Fractional max pooling (Graham 2014, "Fractional Max-Pooling").

Shrinks each spatial dimension by ``ratio`` in (1, 2) with pooling regions between boundaries
``0 = a_0 < ... < a_n = L`` whose increments are 1 or 2: **random** (a random order of the
increments) or **pseudo-random**, ``a_i = ceil(alpha (i + u)) - ceil(alpha u)``, ``alpha = L / n``,
``u ~ U(0, 1)``. Regions are disjoint, ``[a_{i-1}, a_i - 1]`` (``L = N``), or overlapping,
``[a_{i-1}, a_i]`` (``L = N - 1``); ``n = floor(N / ratio)`` clamped to ``[ceil(L / 2), L]``.

``train()`` draws new regions every forward, per batch (the paper's) or per sample. Max pooling
is not linear, so no fixed rule equals the expected training output; eval uses the canonical
layout (``u = 1/2``) or, with ``test_samples=k``, the paper's average of ``k`` draws from a
generator re-seeded from ``seed`` on every call. Both are deterministic, unlike
``torch.nn.functional.fractional_max_pool2d``, which draws from the global RNG even in eval.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from trainlab.checks import check_flag, check_int, check_number
from trainlab.errors import RegistryError
from trainlab.registry import Registry
from trainlab.seeding import RandomModule, Seed, derive_seed


def pseudo_random_boundaries(length: int, n_out: int, u: torch.Tensor) -> torch.Tensor:
    """``a_i = ceil(L (i + u) / n) - ceil(L u / n)`` for i = 0..n; one row per value of ``u``.

    ``u``: shape (S,) in [0, 1). Returns int64 (S, n + 1) with ``a_0 = 0`` and ``a_n = L``.
    """
    i = torch.arange(n_out + 1, device=u.device, dtype=torch.float64)
    u = u.to(torch.float64).unsqueeze(-1)
    # (L * (i + u)) / n rather than alpha * (i + u): exact when the true value is an integer
    a = torch.ceil(length * (i + u) / n_out) - torch.ceil(length * u / n_out)
    return a.to(torch.int64)


def random_boundaries(
    length: int, n_out: int, count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Boundaries from a random order of ``L - n`` increments of 2 and ``2n - L`` of 1.

    Returns int64 (count, n + 1); each row is an independent random permutation.
    """
    keys = torch.rand((count, n_out), generator=generator, device=device)
    rank = keys.argsort(dim=-1).argsort(dim=-1)  # a uniform random permutation per row
    increments = 1 + (rank < length - n_out).to(torch.int64)
    zero = torch.zeros((count, 1), dtype=torch.int64, device=device)
    return torch.cat([zero, increments.cumsum(-1)], dim=-1)


def output_length(n_in: int, ratio: float, overlapping: bool) -> int:
    """``floor(N / ratio)`` clamped to the sizes boundaries with increments 1-2 can reach."""
    length = n_in - 1 if overlapping else n_in
    return min(max(math.floor(n_in / ratio), math.ceil(length / 2)), length)


def _pool_dim(x: torch.Tensor, dim: int, bounds: torch.Tensor, overlapping: bool) -> torch.Tensor:
    """Max over regions along ``dim`` (2 or 3) of (B, C, H, W); ``bounds`` (1 or B, n + 1).

    Regions hold 1-3 positions, so the max is over at most 3 gathers; offsets past a region's
    end are clamped to the end, repeating a position without changing the max.
    """
    starts, ends = bounds[:, :-1], bounds[:, 1:] - (0 if overlapping else 1)
    widest = 3 if overlapping else 2
    pooled = None
    for offset in range(widest):
        index = torch.minimum(starts + offset, ends)
        if bounds.shape[0] == 1:
            picked = x.index_select(dim, index[0])
        else:
            shape = [x.shape[0], 1, 1, 1]
            shape[dim] = index.shape[1]
            expanded = list(x.shape)
            expanded[dim] = index.shape[1]
            picked = x.gather(dim, index.view(shape).expand(expanded))
        pooled = picked if pooled is None else torch.maximum(pooled, picked)
    return pooled


def _pair(value: Any, name: str) -> tuple:
    pair = tuple(value) if isinstance(value, tuple | list) else (value, value)
    if len(pair) != 2:
        raise RegistryError(f"{name} must be a number or a pair, got {value!r}")
    return pair


class FractionalMaxPool2d(RandomModule):
    """Fractional max pooling (Graham 2014) over (B, C, H, W); see the module docstring.

    ``ratio`` in (1, 2), a number or (rh, rw), default sqrt(2); or ``output_size``.
    ``pseudo_random``: Graham's sequence, else a random order of the increments.
    ``test_samples``: 0 for the canonical layout in eval, k > 0 to average k draws.
    """

    def __init__(
        self,
        ratio: float | tuple[float, float] | None = None,
        output_size: int | tuple[int, int] | None = None,
        pseudo_random: bool = True,
        overlapping: bool = False,
        per_sample: bool = False,
        test_samples: int = 0,
        *,
        seed: Seed = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(seed=seed, generator=generator)
        if ratio is not None and output_size is not None:
            raise RegistryError(
                f"give ratio or output_size, not both (got ratio={ratio!r}, "
                f"output_size={output_size!r})"
            )
        self.ratio = self.output_size = None
        if output_size is not None:
            self.output_size = tuple(
                check_int(n, "output_size") for n in _pair(output_size, "output_size")
            )
        else:
            pair = _pair(math.sqrt(2) if ratio is None else ratio, "ratio")
            self.ratio = tuple(
                check_number(r, "ratio", 1.0, 2.0, lo_open=True, hi_open=True) for r in pair
            )
        self.test_samples = check_int(test_samples, "test_samples", 0)
        self.pseudo_random = check_flag(pseudo_random, "pseudo_random")
        self.overlapping = check_flag(overlapping, "overlapping")
        self.per_sample = check_flag(per_sample, "per_sample")

    def extra_repr(self) -> str:
        size = f"output_size={self.output_size}" if self.ratio is None else f"ratio={self.ratio}"
        return (
            f"{size}, pseudo_random={self.pseudo_random}, overlapping={self.overlapping}, "
            f"per_sample={self.per_sample}, test_samples={self.test_samples}"
        )

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H_out, W_out) for an input of (height, width); validates ``output_size``."""
        if min(height, width) < (2 if self.overlapping else 1):
            raise RegistryError(f"input of {height}x{width} is too small to pool")
        if self.ratio is not None:
            return (
                output_length(height, self.ratio[0], self.overlapping),
                output_length(width, self.ratio[1], self.overlapping),
            )
        for n_in, n_out in zip((height, width), self.output_size, strict=True):
            length = n_in - 1 if self.overlapping else n_in
            if not math.ceil(length / 2) <= n_out <= length:
                raise RegistryError(
                    f"output_size={self.output_size} cannot be reached from {height}x{width} "
                    f"with regions of 1-2 steps: expected each in [ceil(L/2), L], L={length}"
                )
        return self.output_size

    def _boundaries(
        self, n_in: int, n_out: int, count: int, generator: torch.Generator | None, device
    ) -> torch.Tensor:
        length = n_in - 1 if self.overlapping else n_in
        if generator is None:  # the canonical eval layout
            return pseudo_random_boundaries(length, n_out, torch.full((1,), 0.5, device=device))
        if self.pseudo_random:
            u = torch.rand((count,), generator=generator, device=device, dtype=torch.float64)
            return pseudo_random_boundaries(length, n_out, u)
        return random_boundaries(length, n_out, count, generator, device)

    def _pool(self, x: torch.Tensor, generator: torch.Generator | None, count: int) -> torch.Tensor:
        h_out, w_out = self.output_shape(x.shape[2], x.shape[3])
        rows = self._boundaries(x.shape[2], h_out, count, generator, x.device)
        cols = self._boundaries(x.shape[3], w_out, count, generator, x.device)
        return _pool_dim(_pool_dim(x, 2, rows, self.overlapping), 3, cols, self.overlapping)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise RegistryError(f"FractionalMaxPool2d expects (B, C, H, W), got {tuple(x.shape)}")
        if self.training:
            count = x.shape[0] if self.per_sample else 1
            return self._pool(x, self.generator_for(x.device), count)
        if self.test_samples == 0:
            return self._pool(x, None, 1)
        generator = torch.Generator(device=x.device).manual_seed(derive_seed(self.seed, "eval"))
        total = self._pool(x, generator, 1)
        for _ in range(self.test_samples - 1):
            total = total + self._pool(x, generator, 1)
        return total / self.test_samples


POOLING: Registry[FractionalMaxPool2d] = Registry("pooling")


@POOLING.register("fractional_max_pool", "fmp")
def fractional_max_pool(
    ratio: float = math.sqrt(2),
    pseudo_random: bool = True,
    overlapping: bool = False,
    per_sample: bool = False,
    test_samples: int = 0,
    seed: Seed = 0,
) -> FractionalMaxPool2d:
    """``"fractional_max_pool(1.414)"``, ``"fmp(1.5, overlapping=True, test_samples=8)"``."""
    return FractionalMaxPool2d(
        ratio, None, pseudo_random, overlapping, per_sample, test_samples, seed=seed
    )
