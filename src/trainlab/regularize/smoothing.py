"""Label smoothing and the soft-target cross-entropy that mixes and smoothing share.

Label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", sec. 7) trains
against ``(1 - eps) * onehot(y) + eps / K``, so the logits are not pushed to infinite confidence.
It changes the target, not the model: nothing is random and ``eval()`` output is untouched.
Every target here is float (B, K) with rows summing to 1: the engine has one loss path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainlab.checks import check_choice, check_int, check_number

_REDUCTIONS = ("mean", "sum", "none")


def as_soft_targets(y: Tensor, num_classes: int) -> Tensor:
    """Class indices (B,) become one-hot float32 rows (B, K); soft targets (B, K) pass through
    as float32, so mixes can be chained and smoothing applied after a mix."""
    check_int(num_classes, "num_classes")
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
    """``(1 - eps) * t + eps / K`` with ``t = onehot(y)`` (or ``y`` when already soft); Szegedy
    et al. 2016, sec. 7. ``eps = 0`` returns the targets unchanged."""
    eps = check_number(eps, "label smoothing eps", 0.0, 1.0, hi_open=True)
    t = as_soft_targets(y, num_classes)
    return t if eps == 0 else t * (1.0 - eps) + eps / num_classes


def soft_target_cross_entropy(
    logits: Tensor, soft_targets: Tensor, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy against a distribution: ``-sum_k t_k * log_softmax(z)_k`` per row.

    Equals ``F.cross_entropy`` with probability targets. The log-softmax is taken in float32 at
    least, since under autocast half precision loses the small targets.
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    if logits.shape != soft_targets.shape or logits.dim() != 2:
        raise ValueError(
            f"logits and soft targets must both be (B, K), got {tuple(logits.shape)} and "
            f"{tuple(soft_targets.shape)}"
        )
    log_p = F.log_softmax(logits.float(), dim=1)
    per_sample = -(soft_targets.to(log_p.dtype) * log_p).sum(dim=1)
    return per_sample if reduction == "none" else getattr(per_sample, reduction)()


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against ``(1 - eps) * t + eps / K`` (Szegedy et al. 2016).

    Takes class indices (B,) or soft targets (B, K), so smoothing composes with any mix. With
    class indices it equals ``F.cross_entropy(logits, y, label_smoothing=eps)``.
    """

    def __init__(self, eps: float = 0.1, reduction: str = "mean"):
        super().__init__()
        self.eps = check_number(eps, "label smoothing eps", 0.0, 1.0, hi_open=True)
        self.reduction = check_choice(reduction, "reduction", _REDUCTIONS)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        soft = smooth_targets(target, logits.shape[1], self.eps)
        return soft_target_cross_entropy(logits, soft, self.reduction)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"
