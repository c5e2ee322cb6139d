"""Weight penalties added to the loss, and decoupled weight decay through optimizer groups.

* **L2** (Tikhonov; Krogh & Hertz 1992 for networks): ``R(w) = lam/2 * sum w^2``, gradient
  ``lam * w``, so for plain SGD it is exactly ``torch.optim.SGD(weight_decay=lam)``.
* **L1** (Tibshirani 1996): ``R(w) = lam * sum |w|``.
* **Elastic net** (Zou & Hastie 2005; glmnet's form):
  ``R(w) = lam * (l1_ratio * sum |w| + (1 - l1_ratio)/2 * sum w^2)``.

By default only the ``weight`` of Linear, Bilinear and Conv layers (subclasses included) is
penalized: shrinking biases or normalization scales does not reduce capacity and can hurt (a
BatchNorm scale of 0 kills the unit). Adam divides an L2 penalty's gradient by ``sqrt(v)``, so
weights with large gradients are barely regularized; AdamW (Loshchilov & Hutter 2019, "Decoupled
Weight Decay Regularization") decays outside the adaptive update: :func:`decay_param_groups`.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from trainlab.checks import check_flag, check_number
from trainlab.registry import Registry

_WEIGHT_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear)


def penalized_parameters(
    model: nn.Module, exclude_bias_and_norm: bool = True
) -> Iterator[tuple[str, nn.Parameter]]:
    """The parameters a penalty or weight decay acts on, with their names.

    Default: the ``weight`` of every Linear, Bilinear and Conv layer (and subclasses).
    ``exclude_bias_and_norm=False``: every trainable parameter.
    """
    if not exclude_bias_and_norm:
        for name, param in model.named_parameters():
            if param.requires_grad:
                yield name, param
        return
    for module_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, _WEIGHT_LAYERS) and isinstance(weight, nn.Parameter):
            if weight.requires_grad:
                yield (f"{module_name}.weight" if module_name else "weight"), weight


PENALTIES: Registry[Penalty] = Registry("penalty")


class Penalty:
    """A loss term over the penalized parameters: ``loss = task_loss + penalty(model)``."""

    def __init__(self, lam: float, exclude_bias_and_norm: bool = True) -> None:
        self.lam = check_number(lam, "lam", 0.0)
        self.exclude_bias_and_norm = check_flag(exclude_bias_and_norm, "exclude_bias_and_norm")

    def term(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """The penalty as a 0-dim tensor on the parameters' device (0 if nothing to penalize)."""
        params = [p for _, p in penalized_parameters(model, self.exclude_bias_and_norm)]
        if not params:
            first = next(model.parameters(), None)
            return torch.zeros((), device=first.device if first is not None else None)
        return torch.stack([self.term(p) for p in params]).sum()

    __call__ = penalty

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lam={self.lam})"


@PENALTIES.register("none")
class NoPenalty(Penalty):
    """No penalty: always 0."""

    def __init__(self) -> None:
        super().__init__(0.0)

    def term(self, w: torch.Tensor) -> torch.Tensor:
        return w.new_zeros(())

    def __repr__(self) -> str:
        return "NoPenalty()"


class L2Penalty(Penalty):
    """``lam/2 * sum w^2``; gradient ``lam * w`` (equals SGD ``weight_decay=lam``)."""

    def term(self, w: torch.Tensor) -> torch.Tensor:
        return (self.lam / 2) * w.square().sum()


class L1Penalty(Penalty):
    """``lam * sum |w|``: drives weights to exactly 0 under proximal steps, towards 0 under SGD."""

    def term(self, w: torch.Tensor) -> torch.Tensor:
        return self.lam * w.abs().sum()


class ElasticNetPenalty(Penalty):
    """``lam * (l1_ratio * sum |w| + (1 - l1_ratio)/2 * sum w^2)`` (Zou & Hastie 2005)."""

    def __init__(self, lam: float, l1_ratio: float = 0.5, exclude_bias_and_norm: bool = True):
        super().__init__(lam, exclude_bias_and_norm)
        self.l1_ratio = check_number(l1_ratio, "l1_ratio", 0.0, 1.0)

    def term(self, w: torch.Tensor) -> torch.Tensor:
        l1 = w.abs().sum()
        l2 = w.square().sum()
        return self.lam * (self.l1_ratio * l1 + (1.0 - self.l1_ratio) / 2 * l2)

    def __repr__(self) -> str:
        return f"ElasticNetPenalty(lam={self.lam}, l1_ratio={self.l1_ratio})"


def decay_param_groups(
    model: nn.Module, weight_decay: float, exclude_bias_and_norm: bool = True
) -> list[dict]:
    """Optimizer parameter groups for decoupled weight decay (AdamW, Loshchilov & Hutter 2019).

    Group 0 holds the decayed parameters (same selection as the penalties) with
    ``weight_decay``; group 1 everything else with ``weight_decay=0``. Empty groups are
    dropped. Pass the result to ``torch.optim.AdamW`` (or SGD).
    """
    weight_decay = check_number(weight_decay, "weight_decay", 0.0)
    decayed = [p for _, p in penalized_parameters(model, exclude_bias_and_norm)]
    chosen = {id(p) for p in decayed}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


@PENALTIES.register("l2", "weight_penalty")
def l2(lam: float = 5e-4, exclude_bias_and_norm: bool = True) -> Penalty:
    """``"l2(5e-4)"``: ``lam/2 * sum w^2``."""
    return L2Penalty(lam, exclude_bias_and_norm)


@PENALTIES.register("l1")
def l1(lam: float = 1e-5, exclude_bias_and_norm: bool = True) -> Penalty:
    """``"l1(1e-5)"``: ``lam * sum |w|``."""
    return L1Penalty(lam, exclude_bias_and_norm)


@PENALTIES.register("elastic_net")
def elastic_net(
    lam: float = 1e-4, l1_ratio: float = 0.5, exclude_bias_and_norm: bool = True
) -> Penalty:
    """``"elastic_net(1e-4, 0.5)"``: ``lam * (r sum |w| + (1 - r)/2 sum w^2)``."""
    return ElasticNetPenalty(lam, l1_ratio, exclude_bias_and_norm)
