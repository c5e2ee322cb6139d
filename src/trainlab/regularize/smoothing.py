"""Label smoothing and the soft-target cross-entropy that mixup, CutMix and smoothing share.

Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7) trains
against ``(1 - eps) * onehot(y) + eps / K`` instead of the one-hot target, so the network is not
pushed to make its logits infinitely confident.

Train vs eval: label smoothing is deterministic; it changes the training target, not the model,
so there is nothing random in ``train()`` and the model's ``eval()`` output is untouched. The
loss is the same function in both modes (a smoothed validation loss is still reported as such).

Every target here is a float tensor of shape (B, K) whose rows sum to 1, so the training engine
has one loss path whatever mixes and smoothing are configured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.errors import RegistryError

__all__ = [
    "LabelSmoothingCrossEntropy",
    "as_soft_targets",
    "smooth_targets",
    "soft_target_cross_entropy",
]


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise RegistryError(f"num_classes must be a positive integer, got {num_classes!r}")


def _check_eps(eps: float) -> None:
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0.0 <= eps < 1.0:
        raise RegistryError(f"label smoothing eps must be a number in [0, 1), got {eps!r}")


def as_soft_targets(y: Tensor, num_classes: int) -> Tensor:
    """Class indices (B,) become one-hot float32 rows (B, K); soft targets (B, K) pass through.

    Soft targets are returned as float32 (a copy only when the dtype changes), so mixes can be
    chained and smoothing applied after a mix.
    """
    _check_num_classes(num_classes)
    if y.dim() == 1 and not y.is_floating_point():
        # F.one_hot rejects labels outside [0, K) itself; a second check would cost a sync.
        return F.one_hot(y.long(), num_classes).to(torch.float32)
    if y.dim() == 2 and y.is_floating_point():
        if y.shape[1] != num_classes:
            raise ValueError(
                f"soft targets must have num_classes={num_classes} columns, got shape "
                f"{tuple(y.shape)}"
            )
        return y.to(torch.float32)
    raise ValueError(
        "targets must be integer class indices of shape (B,) or float soft targets of shape "
        f"(B, K), got dtype {y.dtype} and shape {tuple(y.shape)}"
    )


def smooth_targets(y: Tensor, num_classes: int, eps: float) -> Tensor:
    """``(1 - eps) * t + eps / K`` with ``t = onehot(y)`` (or ``t = y`` when already soft).

    Szegedy et al. 2016, sec. 7. Rows still sum to 1; ``eps = 0`` returns the targets unchanged.
    """
    _check_eps(eps)
    t = as_soft_targets(y, num_classes)
    if eps == 0:
        return t
    return t * (1.0 - eps) + eps / num_classes


def soft_target_cross_entropy(
    logits: Tensor, soft_targets: Tensor, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy against a distribution: ``-sum_k t_k * log_softmax(z)_k`` per row.

    The same value as ``F.cross_entropy(logits, soft_targets)`` with probability targets; written
    out so the loss is explicit about what mixup and CutMix train against. The log-softmax is
    taken in float32 at least, since under autocast half precision loses the small targets.
    """
    if logits.shape != soft_targets.shape or logits.dim() != 2:
        raise ValueError(
            f"logits and soft targets must both be (B, K), got {tuple(logits.shape)} and "
            f"{tuple(soft_targets.shape)}"
        )
    log_p = F.log_softmax(logits.float(), dim=1)
    per_sample = -(soft_targets.to(log_p.dtype) * log_p).sum(dim=1)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise RegistryError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against smoothed targets ``(1 - eps) * t + eps / K`` (Szegedy et al. 2016).

    Accepts class indices (B,) or soft targets (B, K) (for example mixup's), so smoothing composes
    with any mix explicitly rather than hiding inside it. With class indices it equals
    ``F.cross_entropy(logits, y, label_smoothing=eps)``.
    """

    def __init__(self, eps: float = 0.1, reduction: str = "mean"):
        super().__init__()
        _check_eps(eps)
        if reduction not in ("mean", "sum", "none"):
            raise RegistryError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.eps = float(eps)
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        soft = smooth_targets(target, logits.shape[1], self.eps)
        return soft_target_cross_entropy(logits, soft, self.reduction)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"
