"""Test-time augmentation: average a model's predictions over flipped and cropped views."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trainlab.augment._base import check_images, check_size
from trainlab.augment.geometric import center_crop, five_crop, ten_crop
from trainlab.checks import check_choice, check_flag, check_int


class TTA(nn.Module):
    """Average ``model`` over views of each image (Krizhevsky et al. 2012; Simonyan et al. 2014).

    Views: the image (centre-cropped to ``crop_size`` if given) and, with ``flips``, its mirror;
    ``crops=5`` uses the four corner crops and the centre crop, ``crops=10`` those and their
    mirrors. ``average="logits"`` returns the mean logit over views; ``"probs"`` returns
    ``log(mean_v softmax(z_v))``, a log-probability, so its softmax is the mean probability and
    its argmax the usual prediction. All views go through the model in one batch, split into
    chunks of at most ``max_batch`` images.
    """

    def __init__(
        self,
        model: nn.Module,
        flips: bool = True,
        crops: int | None = None,
        crop_size: int | tuple[int, int] | None = None,
        average: str = "logits",
        max_batch: int | None = None,
    ):
        super().__init__()
        check_choice(crops, "crops", (None, 1, 5, 10))
        if crops in (5, 10) and crop_size is None:
            raise ValueError(f"crops={crops} needs crop_size")
        check_choice(average, "average", ("logits", "probs"))
        if max_batch is not None:
            check_int(max_batch, "max_batch")
        check_flag(flips, "flips")
        self.model = model
        self.flips, self.crops, self.average, self.max_batch = flips, crops, average, max_batch
        self.crop_size = None if crop_size is None else check_size(crop_size, "crop_size")

    def views(self, x: Tensor) -> Tensor:
        """All views of the batch, (V, B, C, h, w)."""
        check_images(x)
        if self.crops in (5, 10):
            ten = self.flips or self.crops == 10
            return ten_crop(x, self.crop_size) if ten else five_crop(x, self.crop_size)
        base = x if self.crop_size is None else center_crop(x, self.crop_size)
        return torch.stack([base, base.flip(-1)]) if self.flips else base[None]

    def forward(self, x: Tensor) -> Tensor:
        views = self.views(x)
        n_views, batch = views.shape[:2]
        flat = views.reshape(n_views * batch, *views.shape[2:])
        step = flat.shape[0] if self.max_batch is None else self.max_batch
        outs = torch.cat([self.model(flat[i : i + step]) for i in range(0, flat.shape[0], step)])
        outs = outs.reshape(n_views, batch, *outs.shape[1:])
        if self.average == "logits":
            return outs.mean(dim=0)
        log_probs = torch.log_softmax(outs.float(), dim=-1)
        return torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(n_views)))
