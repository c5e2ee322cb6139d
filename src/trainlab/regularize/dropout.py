"""Dropout and the randomness every stochastic regularizer shares.

**Dropout** (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting"): in training each unit is kept with probability ``1 - p`` and zeroed otherwise,
``y = x * m, m ~ Bernoulli(1 - p)``. Two equivalent scalings:

* ``inverted`` (the common one): ``y = x * m / (1 - p)`` in training, ``y = x`` at test;
* ``classic`` (the paper's): ``y = x * m`` in training, ``y = (1 - p) x`` at test.

Both follow trainlab's rule: random in ``train()``, deterministic in ``eval()``, and the eval
output equals the expected train output, ``E[y_train] = y_eval``.

**Channel-wise dropout** (Tompson et al. 2015, "Efficient Object Localization Using
Convolutional Networks", SpatialDropout) drops whole feature maps: one mask value per
(sample, channel), shared over the spatial positions, because neighbouring activations are
strongly correlated and element-wise dropout barely regularizes them.

**Monte-Carlo dropout** (Gal & Ghahramani 2016, "Dropout as a Bayesian Approximation"): keep
dropout on at test time and average ``K`` stochastic passes; see :func:`mc_predict`.

**Randomness.** Dropout is a :class:`~trainlab.seeding.RandomModule`: it draws from its own
generators, never the global RNG, and ``reseed_all`` restarts it (see :mod:`trainlab.seeding`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from trainlab import checks
from trainlab.errors import RegistryError
from trainlab.registry import Registry

# The home of the shared randomness is trainlab.seeding; these names are re-exported so that
# older imports (train.py, dropconnect.py) keep working.
from trainlab.seeding import (  # noqa: F401
    RandomModule,
    Seed,
    derive_seed,
    random_modules,
    reseed_all,
)


def check_probability(name: str, value: float) -> float:
    """Deprecated adapter, (name, value) order, kept only for dropconnect.py's import until it
    calls :func:`trainlab.checks.check_probability` (value first) itself."""
    return checks.check_probability(value, name, below_one=True)


class Dropout(RandomModule):
    """Dropout (Srivastava et al. 2014): ``y = x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)``.

    ``mode='inverted'``: kept units scaled by ``1/(1-p)`` in training, identity at test.
    ``mode='classic'``: kept units unscaled in training, ``y = (1-p) x`` at test.
    ``channelwise=True``: one mask value per (sample, channel), shared over all remaining
    dimensions, so whole feature maps drop (Tompson et al. 2015); for (B, C) inputs it is the
    same as element-wise dropout.

    Random in ``train()``, deterministic in ``eval()``, and ``E[train output] = eval output``
    in both modes.
    """

    monte_carlo: ClassVar[bool] = True

    def __init__(
        self,
        p: float = 0.5,
        mode: str = "inverted",
        channelwise: bool = False,
        *,
        seed: Seed = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(seed=seed, generator=generator)
        self.p = checks.check_probability(p, "p", below_one=True)
        if mode not in ("inverted", "classic"):
            raise RegistryError(f"mode must be 'inverted' or 'classic', got {mode!r}")
        self.mode = mode
        self.channelwise = bool(channelwise)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, channelwise={self.channelwise}"

    def _mask_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        if self.channelwise and x.dim() > 2:
            return (*x.shape[:2], *([1] * (x.dim() - 2)))
        return tuple(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.p
        if not self.training:
            return x if self.mode == "inverted" else x * keep
        if self.p == 0.0:
            return x
        mask = torch.empty(self._mask_shape(x), device=x.device, dtype=x.dtype)
        mask.bernoulli_(keep, generator=self.generator_for(x.device))
        if self.mode == "inverted":
            mask.div_(keep)
        return x * mask


@torch.no_grad()
def mc_predict(
    model: nn.Module, x: torch.Tensor, k: int, *, return_var: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo dropout (Gal & Ghahramani 2016): average ``k`` stochastic forward passes.

    Only modules marked ``monte_carlo`` (trainlab's dropout and DropConnect layers) are put in
    training mode; everything else, BatchNorm included, runs in eval mode, so running
    statistics are used and left untouched. ``torch.nn.Dropout`` is not switched on: it draws
    from the global RNG. Every module's mode is restored afterwards, even on error.
    With ``return_var`` also returns the per-element variance of the ``k`` passes
    (the model's predictive spread).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RegistryError(f"k (number of Monte-Carlo passes) must be an int >= 1, got {k!r}")
    modes = {module: module.training for module in model.modules()}
    stochastic = [m for m in model.modules() if getattr(m, "monte_carlo", False)]
    if not stochastic:
        raise RegistryError(
            "mc_predict: the model has no Monte-Carlo-capable module "
            "(trainlab Dropout or DropConnect layers); its output would be deterministic"
        )
    try:
        model.eval()
        for module in stochastic:
            module.train(True)
        total = model(x).double()
        total_sq = total.square() if return_var else None
        for _ in range(k - 1):
            out = model(x).double()
            total += out
            if return_var:
                total_sq += out.square()
    finally:
        for module, mode in modes.items():
            module.training = mode
    mean = total / k
    if not return_var:
        return mean.to(x.dtype if x.is_floating_point() else torch.float32)
    var = (total_sq / k - mean.square()).clamp_min(0.0) * (k / max(k - 1, 1))
    dtype = x.dtype if x.is_floating_point() else torch.float32
    return mean.to(dtype), var.to(dtype)


DROPOUT: Registry[nn.Module] = Registry("dropout")


@DROPOUT.register("dropout")
def dropout(
    p: float = 0.5, channelwise: bool = False, mode: str = "inverted", seed: Seed = 0
) -> Dropout:
    """``"dropout(0.5)"``, ``"dropout(0.5, channelwise=True)"``: inverted dropout."""
    return Dropout(p, mode=mode, channelwise=channelwise, seed=seed)


@DROPOUT.register("dropout2d", "spatial_dropout")
def dropout2d(p: float = 0.1, mode: str = "inverted", seed: Seed = 0) -> Dropout:
    """``"dropout2d(0.1)"``: channel-wise dropout of whole feature maps (Tompson et al. 2015)."""
    return Dropout(p, mode=mode, channelwise=True, seed=seed)


@DROPOUT.register("classic_dropout")
def classic_dropout(p: float = 0.5, channelwise: bool = False, seed: Seed = 0) -> Dropout:
    """``"classic_dropout(0.5)"``: unscaled in training, scaled by ``1 - p`` at test."""
    return Dropout(p, mode="classic", channelwise=channelwise, seed=seed)
