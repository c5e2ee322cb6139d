"""Batched, per-image random augmentations on (B, C, H, W) tensors, and test-time averaging.

Every augmentation works on uint8 or float images, on any device, draws each image's own
parameters as whole tensors from the caller's ``torch.Generator`` (no Python loop over images),
can return the parameters it drew (``return_params=True``, or ``sample_params`` / ``apply``),
and reproduces its output when they are replayed.

- geometric: :class:`PadCrop`, :class:`HFlip` (:func:`hflip`), :class:`VFlip`,
  :class:`RandomResizedCrop`, :class:`ScaleAug`, :class:`CenterCrop`, :func:`five_crop`,
  :func:`ten_crop`
- colour: :class:`ColorJitter`, :class:`RandomGrayscale`, :class:`PCALighting`
- automatic: :class:`RandAugment`, :class:`TrivialAugmentWide` (Pillow's operations, per image);
  :class:`RandomErasing`
- pipelines: :data:`AUGMENTATIONS`, :class:`Pipeline`, :func:`make_pipeline`
- test time: :class:`TTA`; figures: :func:`plot_augment`
"""

# ruff: noqa: F401 (this module re-exports)
from trainlab.augment._base import Augmentation, Params
from trainlab.augment.auto import OPS, RandAugment, TrivialAugmentWide
from trainlab.augment.color import (
    ColorJitter,
    PCALighting,
    RandomGrayscale,
    eigen_from_stats,
    hue_shift,
)
from trainlab.augment.erasing import RandomErasing
from trainlab.augment.geometric import (
    CenterCrop,
    HFlip,
    PadCrop,
    RandomResizedCrop,
    ScaleAug,
    VFlip,
    center_crop,
    five_crop,
    gather_maps,
    hflip,
    resample_boxes,
    ten_crop,
)
from trainlab.augment.pipeline import AUGMENTATIONS, Pipeline, make_pipeline
from trainlab.augment.plot import plot_augment
from trainlab.augment.tta import TTA
