"""Regularization, the fourth technique: random in ``train()``, deterministic in ``eval()``, with
the eval output equal to the expected train output. One module per technique: penalties,
dropout, dropconnect, pooling (fractional max), depth (stochastic), mix (mixup, CutMix, Cutout),
smoothing (labels). RandomModule, random_modules and reseed_all live in trainlab.seeding.
"""

# ruff: noqa: F401 (this module re-exports)
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
