"""Regularization, the fourth technique: random in ``train()``, deterministic in ``eval()``, with
the eval output equal to the expected train output.

- penalties: L2, L1, elastic net in the loss; decoupled weight decay through parameter groups
- dropout: inverted and classic dropout, channel-wise, Monte-Carlo prediction
- RandomModule, random_modules, reseed_all: re-exported from trainlab.seeding, their home
- dropconnect: DropConnect for Linear and Conv2d, per batch or per sample; mean or Gaussian
  inference
- pooling: fractional max pooling, random regions in training, fixed regions in eval
- depth: stochastic depth for residual blocks, with the linear decay rule
- mix: mixup, CutMix, Cutout on whole batches
- smoothing: label smoothing and soft-target cross-entropy
"""

from trainlab.regularize.depth import (
    DropPath,
    StochasticDepth,
    drop_path,
    linear_decay,
    survival_probs,
)
from trainlab.regularize.dropconnect import (
    DROPCONNECT,
    DropConnectConv2d,
    DropConnectLinear,
    dropconnect_layer,
    keep_mask,
)
from trainlab.regularize.dropout import DROPOUT, Dropout, mc_predict
from trainlab.regularize.mix import (
    MIXES,
    CutMix,
    Cutout,
    Mix,
    MixParams,
    Mixup,
    NoMix,
    box_masks,
    cutmix,
    cutout,
    mixup,
    sample_beta,
    sample_gamma,
)
from trainlab.regularize.penalties import (
    PENALTIES,
    ElasticNetPenalty,
    L1Penalty,
    L2Penalty,
    NoPenalty,
    Penalty,
    decay_param_groups,
    penalized_parameters,
)
from trainlab.regularize.pooling import POOLING, FractionalMaxPool2d
from trainlab.regularize.smoothing import (
    LabelSmoothingCrossEntropy,
    as_soft_targets,
    smooth_targets,
    soft_target_cross_entropy,
)
from trainlab.seeding import RandomModule, random_modules, reseed_all  # home: trainlab.seeding

__all__ = [
    "DropPath",
    "StochasticDepth",
    "drop_path",
    "linear_decay",
    "survival_probs",
    "DROPCONNECT",
    "DropConnectConv2d",
    "DropConnectLinear",
    "dropconnect_layer",
    "keep_mask",
    "DROPOUT",
    "Dropout",
    "RandomModule",
    "mc_predict",
    "random_modules",
    "reseed_all",
    "MIXES",
    "CutMix",
    "Cutout",
    "Mix",
    "MixParams",
    "Mixup",
    "NoMix",
    "box_masks",
    "cutmix",
    "cutout",
    "mixup",
    "sample_beta",
    "sample_gamma",
    "PENALTIES",
    "ElasticNetPenalty",
    "L1Penalty",
    "L2Penalty",
    "NoPenalty",
    "Penalty",
    "decay_param_groups",
    "penalized_parameters",
    "POOLING",
    "FractionalMaxPool2d",
    "LabelSmoothingCrossEntropy",
    "as_soft_targets",
    "smooth_targets",
    "soft_target_cross_entropy",
]
