"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth").

A residual block keeps its branch with survival probability ``p``: training
``y = x + b f(x)``, ``b ~ Bernoulli(p)``; eval ``y = x + p f(x)`` (the paper's eq. 5), the
expected training output. With ``scale_by_keep`` (later codebases) training uses ``b / p`` and
eval ``x + f(x)``. ``p`` decays linearly with depth, ``p_l = 1 - l / L * (1 - p_L)`` (eq. 4).
Gates are per sample, or per batch as in the paper, where a dropped branch is not computed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainlab.checks import check_choice, check_flag, check_int, check_number
from trainlab.errors import RegistryError
from trainlab.seeding import RandomModule, Seed


def _check_survival(name: str, value: float) -> float:
    return check_number(value, f"{name} (a survival probability)", 0.0, 1.0, lo_open=True)


def linear_decay(l: int, L: int, p_L: float) -> float:
    """Survival probability of block ``l`` of ``L``: ``p_l = 1 - l / L * (1 - p_L)``.

    Huang et al. 2016, eq. 4: ``p_0 = 1`` (the input is never dropped); the paper's ``p_L = 0.5``.
    """
    check_int(L, "L (number of blocks)")
    check_int(l, "block index l", 0, L)
    return 1.0 - l / L * (1.0 - _check_survival("p_L", p_L))


def survival_probs(num_blocks: int, p_L: float) -> list[float]:
    """``[p_1, ..., p_L]`` of the linear decay rule for ``num_blocks`` residual blocks."""
    check_int(num_blocks, "num_blocks")
    return [linear_decay(l, num_blocks, p_L) for l in range(1, num_blocks + 1)]


def drop_path(
    x_branch: Tensor,
    survival_prob: float,
    generator: torch.Generator | None,
    training: bool,
    scale_by_keep: bool = False,
    per_sample: bool = True,
) -> Tensor:
    """Stochastic depth on a branch's output: add the result to the skip path.

    Training: ``b * f(x)`` (``/ p`` with ``scale_by_keep``), ``b ~ Bernoulli(p)`` per sample or
    one for the batch; eval: ``p * f(x)`` (``f(x)`` with ``scale_by_keep``). ``survival_prob``
    is the probability of *keeping* the branch. ``generator`` may be None in eval or for p = 1.
    """
    p = _check_survival("survival_prob", survival_prob)
    if not training:
        return x_branch if scale_by_keep or p == 1.0 else x_branch * p
    if p == 1.0:
        return x_branch
    if generator is None:
        raise RegistryError("drop_path in training needs a torch.Generator (generator=...)")
    shape = (x_branch.shape[0] if per_sample else 1, *([1] * (x_branch.dim() - 1)))
    gate = torch.empty(shape, dtype=x_branch.dtype, device=generator.device)
    gate = gate.bernoulli_(p, generator=generator).to(x_branch.device)
    return x_branch * (gate / p if scale_by_keep else gate)


class DropPath(RandomModule):
    """Module form of :func:`drop_path`, for blocks that add a branch to their own (projection)
    skip path: ``y = shortcut(x) + drop(branch(x))``. Eval: ``p * f(x)`` (``f(x)`` with
    ``scale_by_keep``). ``mode='batch'`` shares one gate across the batch."""

    def __init__(
        self,
        survival_prob: float,
        mode: str = "sample",
        scale_by_keep: bool = False,
        *,
        seed: Seed = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(seed=seed, generator=generator)
        self.survival_prob = _check_survival("survival_prob", survival_prob)
        self.mode = check_choice(mode, "mode", ("sample", "batch"))
        self.scale_by_keep = check_flag(scale_by_keep, "scale_by_keep")

    def extra_repr(self) -> str:
        return (
            f"survival_prob={self.survival_prob}, mode={self.mode!r}, "
            f"scale_by_keep={self.scale_by_keep}"
        )

    def forward(self, x_branch: Tensor) -> Tensor:
        p = self.survival_prob
        generator = self.generator_for(x_branch.device) if self.training and p < 1.0 else None
        per_sample = self.mode == "sample"
        return drop_path(x_branch, p, generator, self.training, self.scale_by_keep, per_sample)


class StochasticDepth(DropPath):
    """A residual block ``y = x + b * branch(x)``, ``b ~ Bernoulli(p)`` (Huang et al. 2016).

    The branch must keep x's shape (use :class:`DropPath` for a projection skip). Options as
    :class:`DropPath`; with ``mode='batch'`` a dropped branch is not computed at all, and the
    gate comes from the CPU generator so that choice never waits on the accelerator.
    """

    def __init__(
        self,
        branch: nn.Module,
        survival_prob: float,
        mode: str = "sample",
        scale_by_keep: bool = False,
        *,
        seed: Seed = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(survival_prob, mode, scale_by_keep, seed=seed, generator=generator)
        if not isinstance(branch, nn.Module):
            raise RegistryError(f"branch must be a torch.nn.Module, got {type(branch).__name__}")
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        p = self.survival_prob
        if not self.training or p == 1.0 or self.mode == "sample":
            return x + super().forward(self.branch(x))
        if torch.rand((), generator=self.generator_for("cpu")).item() >= p:
            return x  # dropped for this batch: skip the branch's compute entirely
        out = self.branch(x)
        return x + (out / p if self.scale_by_keep else out)
