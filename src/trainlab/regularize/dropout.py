"""Dropout, inverted and classic, element-wise or channel-wise, and Monte-Carlo prediction.

**Dropout** (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting"): keep each unit with probability ``1 - p``, ``y = x * m, m ~ Bernoulli(1 - p)``;
``inverted`` scales kept units by ``1 / (1 - p)`` in training, ``classic`` (the paper's) scales
by ``1 - p`` at test. Either way ``E[y_train] = y_eval``. **Channel-wise** (Tompson et al. 2015,
SpatialDropout) drops whole feature maps, whose neighbouring activations are correlated.
**Monte-Carlo dropout** (Gal & Ghahramani 2016): average ``K`` stochastic passes at test.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from trainlab.checks import check_choice, check_flag, check_int, check_probability
from trainlab.errors import RegistryError
from trainlab.registry import Registry
from trainlab.seeding import RandomModule, Seed, reseed_all  # noqa: F401 (train.py imports it here)


class Dropout(RandomModule):
    """Dropout (Srivastava et al. 2014): ``y = x * m / (1 - p)``, ``m ~ Bernoulli(1 - p)``.

    ``mode='inverted'``: kept units scaled by ``1/(1-p)`` in training, identity at test.
    ``mode='classic'``: kept units unscaled in training, ``y = (1-p) x`` at test.
    ``channelwise=True``: one mask value per (sample, channel), shared over all remaining
    dimensions, so whole feature maps drop (Tompson et al. 2015); for (B, C) inputs it is the
    same as element-wise dropout. ``E[train output] = eval output`` in both modes.
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
        self.p = check_probability(p, "p", below_one=True)
        self.mode = check_choice(mode, "mode", ("inverted", "classic"))
        self.channelwise = check_flag(channelwise, "channelwise")

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, channelwise={self.channelwise}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.p
        if not self.training:
            return x if self.mode == "inverted" else x * keep
        if self.p == 0.0:
            return x
        shape = (*x.shape[:2], *([1] * (x.dim() - 2))) if self.channelwise else x.shape
        mask = torch.empty(shape, device=x.device, dtype=x.dtype)
        mask.bernoulli_(keep, generator=self.generator_for(x.device))
        if self.mode == "inverted":
            mask.div_(keep)
        return x * mask


@torch.no_grad()
def mc_predict(
    model: nn.Module, x: torch.Tensor, k: int, *, return_var: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo dropout (Gal & Ghahramani 2016): average ``k`` stochastic forward passes.

    Only modules marked ``monte_carlo`` (trainlab's dropout and DropConnect) run in training mode;
    the rest, BatchNorm included, stay in eval (``torch.nn.Dropout`` draws from the global RNG, so
    it stays off). Modes are restored afterwards, even on error. ``return_var`` also returns the
    per-element variance of the ``k`` passes.
    """
    check_int(k, "k (number of Monte-Carlo passes)")
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
        total = total_sq = 0.0
        for _ in range(k):
            out = model(x).double()
            total = total + out
            if return_var:
                total_sq = total_sq + out.square()
    finally:
        for module, mode in modes.items():
            module.training = mode
    dtype = x.dtype if x.is_floating_point() else torch.float32
    mean = total / k
    if not return_var:
        return mean.to(dtype)
    var = (total_sq / k - mean.square()).clamp_min(0.0) * (k / max(k - 1, 1))
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
