"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth").

A residual block ``y = x + f(x)`` keeps its branch with survival probability ``p_l`` in
training, ``y = x + b * f(x)`` with ``b ~ Bernoulli(p_l)``, and uses ``y = x + p_l * f(x)`` at
test (the paper's eq. 5). The survival probability decays linearly with depth,
``p_l = 1 - l / L * (1 - p_L)`` (the paper's eq. 4, ``p_L = 0.5``).

Two scalings, both unbiased:

* ``scale_by_keep=False`` (the paper's): train ``x + b f(x)``, eval ``x + p f(x)``;
* ``scale_by_keep=True`` (as in many later codebases): train ``x + b f(x) / p``, eval ``x + f(x)``.

Train vs eval: random in ``train()``, deterministic in ``eval()``, and the eval output equals
the expected train output, ``E_b[x + b s f(x)] = x + p s f(x)`` (``s`` = 1 or 1/p).

Gates are drawn per sample (one Bernoulli per example, as one tensor) or per batch (the
paper's: the whole block is dropped for a mini-batch, and its branch is then not computed at all,
which is where the paper's training speed-up comes from).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainlab.errors import RegistryError
from trainlab.seeding import RandomModule, Seed

__all__ = ["DropPath", "StochasticDepth", "drop_path", "linear_decay", "survival_probs"]

_MODES = ("sample", "batch")


def _check_survival(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise RegistryError(f"{name} must be a survival probability in (0, 1], got {value!r}")
    return float(value)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegistryError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def linear_decay(l: int, L: int, p_L: float) -> float:
    """Survival probability of block ``l`` of ``L``: ``p_l = 1 - l / L * (1 - p_L)``.

    Huang et al. 2016, eq. 4: ``p_0 = 1`` (the input is never dropped), ``p_L`` for the last
    block; the paper uses ``p_L = 0.5``.
    """
    _check_count("L (number of blocks)", L)
    if isinstance(l, bool) or not isinstance(l, int) or not 0 <= l <= L:
        raise RegistryError(f"block index l must be an integer in [0, {L}], got {l!r}")
    p_L = _check_survival("p_L", p_L)
    return 1.0 - l / L * (1.0 - p_L)


def survival_probs(num_blocks: int, p_L: float) -> list[float]:
    """``[p_1, ..., p_L]`` of the linear decay rule for ``num_blocks`` residual blocks."""
    _check_count("num_blocks", num_blocks)
    return [linear_decay(l, num_blocks, p_L) for l in range(1, num_blocks + 1)]


def _gate_shape(x: Tensor, per_sample: bool) -> tuple[int, ...]:
    # One gate per example, broadcast over every other dimension.
    return (x.shape[0] if per_sample else 1, *([1] * (x.dim() - 1)))


def drop_path(
    x_branch: Tensor,
    survival_prob: float,
    generator: torch.Generator | None,
    training: bool,
    scale_by_keep: bool = False,
    per_sample: bool = True,
) -> Tensor:
    """Gate a residual branch's output: the functional form of stochastic depth.

    Returns what to add to the skip path (identity or projection), so a block computes
    ``skip(x) + drop_path(f(x), p, generator, self.training)``. Training: ``b * f(x)`` (``/ p``
    with ``scale_by_keep``), ``b ~ Bernoulli(p)`` per sample (or one ``b`` for the batch);
    eval: ``p * f(x)`` (``f(x)`` with ``scale_by_keep``), the expected training value.
    ``survival_prob`` is the probability of *keeping* the branch (Huang et al. 2016), not a
    drop rate. ``generator`` may be None only when it will not be used (eval or p = 1).
    """
    p = _check_survival("survival_prob", survival_prob)
    if not training:
        return x_branch if scale_by_keep or p == 1.0 else x_branch * p
    if p == 1.0:
        return x_branch
    if generator is None:
        raise RegistryError("drop_path in training needs a torch.Generator (generator=...)")
    gate = torch.empty(
        _gate_shape(x_branch, per_sample), dtype=x_branch.dtype, device=generator.device
    )
    gate = gate.bernoulli_(p, generator=generator).to(x_branch.device)
    if scale_by_keep:
        gate = gate / p
    return x_branch * gate


class StochasticDepth(RandomModule):
    """A residual block with stochastic depth: ``y = x + b * branch(x)``, ``b ~ Bernoulli(p)``.

    Huang et al. 2016. Eval: ``y = x + p * branch(x)`` (the paper's test rule), or with
    ``scale_by_keep=True`` training uses ``b / p`` and eval is ``x + branch(x)``; in both the
    eval output equals the expected training output. ``mode='sample'``: one gate per example,
    drawn as one tensor; ``mode='batch'``: one gate for the whole batch, and a dropped branch is
    not computed at all. The branch must map x to x's shape (use :func:`drop_path` inside
    blocks whose skip is a projection).

    Randomness comes from the module's own generators (:class:`RandomModule`: ``seed=`` or
    ``generator=``, reseeded by ``reseed_all``). The batch-mode gate is drawn from the CPU
    generator so deciding whether to run the branch never waits on the accelerator.
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
        super().__init__(seed=seed, generator=generator)
        if not isinstance(branch, nn.Module):
            raise RegistryError(f"branch must be a torch.nn.Module, got {type(branch).__name__}")
        if mode not in _MODES:
            raise RegistryError(f"mode must be 'sample' or 'batch', got {mode!r}")
        self.branch = branch
        self.survival_prob = _check_survival("survival_prob", survival_prob)
        self.mode = mode
        self.scale_by_keep = bool(scale_by_keep)

    def extra_repr(self) -> str:
        return (
            f"survival_prob={self.survival_prob}, mode={self.mode!r}, "
            f"scale_by_keep={self.scale_by_keep}"
        )

    def forward(self, x: Tensor) -> Tensor:
        p = self.survival_prob
        if not self.training or p == 1.0 or self.mode == "sample":
            generator = self.generator_for(x.device) if self.training and p < 1.0 else None
            return x + drop_path(self.branch(x), p, generator, self.training, self.scale_by_keep)
        cpu = self.generator_for("cpu")
        if torch.rand((), generator=cpu).item() >= p:
            return x  # dropped for this batch: skip the branch's compute entirely
        out = self.branch(x)
        return x + (out / p if self.scale_by_keep else out)


class DropPath(RandomModule):
    """Module form of :func:`drop_path`: gates a branch's *output*, ``b * f(x)`` in training.

    For blocks that add the branch to their own skip path, typically a projection:
    ``y = shortcut(x) + drop(branch(x))``. Eval: ``p * f(x)`` (``f(x)`` with ``scale_by_keep``),
    the expected training output. ``mode='batch'`` shares one gate across the batch, but unlike
    :class:`StochasticDepth` cannot skip computing a branch it only sees the output of.
    """

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
        if mode not in _MODES:
            raise RegistryError(f"mode must be 'sample' or 'batch', got {mode!r}")
        self.survival_prob = _check_survival("survival_prob", survival_prob)
        self.mode = mode
        self.scale_by_keep = bool(scale_by_keep)

    def extra_repr(self) -> str:
        return (
            f"survival_prob={self.survival_prob}, mode={self.mode!r}, "
            f"scale_by_keep={self.scale_by_keep}"
        )

    def forward(self, x_branch: Tensor) -> Tensor:
        use_rng = self.training and self.survival_prob < 1.0
        generator = self.generator_for(x_branch.device) if use_rng else None
        return drop_path(
            x_branch,
            self.survival_prob,
            generator,
            self.training,
            self.scale_by_keep,
            per_sample=self.mode == "sample",
        )
