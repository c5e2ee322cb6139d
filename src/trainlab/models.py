"""The models trainlab trains: an MLP, a plain VGG-style CNN and a ResNet-style CNN.

Each is built from a `ModelConfig` (widths, depth, activation, normalization, dropout, pooling,
linear layer kind, stochastic depth) and always starts with the data set's normalizer, so the
training statistics travel inside the model and its checkpoint:

    Classifier(normalize -> features -> head)

Inputs are uint8 images (B, C, H, W) straight from the loader, or floats on the [0, 1] scale.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trainlab.activations import make_activation
from trainlab.recipe import ModelConfig
from trainlab.registry import Registry

POOLS: Registry[Callable[[], nn.Module]] = Registry("pool")
LINEARS: Registry[Callable[[int, int], nn.Module]] = Registry("linear layer")


def make_dropout(spec: str) -> nn.Module:
    """``"none"`` or any name of `trainlab.regularize.dropout.DROPOUT`."""
    from trainlab.regularize.dropout import DROPOUT

    return nn.Identity() if spec == "none" else DROPOUT.create(spec)


@POOLS.register("max")
def _max_pool() -> Callable[[], nn.Module]:
    return lambda: nn.MaxPool2d(2)


@POOLS.register("avg")
def _avg_pool() -> Callable[[], nn.Module]:
    return lambda: nn.AvgPool2d(2)


@POOLS.register("fractional")
def _fractional_pool(
    ratio: float = 2**0.5, pseudo_random: bool = True, overlapping: bool = True
) -> Callable[[], nn.Module]:
    from trainlab.regularize.pooling import FractionalMaxPool2d

    FractionalMaxPool2d(ratio, pseudo_random=pseudo_random, overlapping=overlapping)  # validate now
    return lambda: FractionalMaxPool2d(ratio, pseudo_random=pseudo_random, overlapping=overlapping)


@LINEARS.register("linear")
def _linear() -> Callable[[int, int], nn.Module]:
    return nn.Linear


@LINEARS.register("dropconnect")
def _dropconnect(p: float = 0.5, mode: str = "batch") -> Callable[[int, int], nn.Module]:
    from trainlab.regularize.dropconnect import DropConnectLinear

    DropConnectLinear(1, 1, p, mode=mode)  # validate now, not after data loading
    return lambda n_in, n_out: DropConnectLinear(n_in, n_out, p, mode=mode)


class Classifier(nn.Module):
    """normalize -> features -> head; the normalizer's statistics are buffers of the model."""

    def __init__(self, normalize: nn.Module, features: nn.Module, head: nn.Module):
        super().__init__()
        self.normalize = normalize
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.normalize(x)))


def _norm2d(kind: str, channels: int) -> nn.Module:
    return nn.Identity() if kind == "none" else nn.BatchNorm2d(channels)


def _norm1d(kind: str, features: int) -> nn.Module:
    return nn.Identity() if kind == "none" else nn.BatchNorm1d(features)


def _conv_unit(c_in: int, c_out: int, cfg: ModelConfig, stride: int = 1) -> list[nn.Module]:
    # A conv feeding batch norm needs no bias: the norm's shift replaces it.
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=cfg.norm == "none"),
        _norm2d(cfg.norm, c_out),
        make_activation(cfg.activation),
    ]


def build_mlp(
    cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int
) -> tuple[nn.Module, nn.Module]:
    """Flatten -> [linear -> norm -> activation -> dropout] per width -> linear."""
    make_linear = LINEARS.create(cfg.linear)
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = int(torch.tensor(in_shape).prod())
    for width in cfg.widths:
        layers += [
            make_linear(n_in, width),
            _norm1d(cfg.norm, width),
            make_activation(cfg.activation),
            make_dropout(cfg.dropout),
        ]
        n_in = width
    return nn.Sequential(*layers), make_linear(n_in, num_classes)


def build_cnn(
    cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int
) -> tuple[nn.Module, nn.Module]:
    """VGG-style (Simonyan & Zisserman 2014): stages of 3x3 conv units, pooling between stages,
    then global average pooling (Lin et al. 2014, "avg") or every feature of the last stage
    ("flatten", as VGG's classifier sees them), dropout, linear classifier."""
    make_pool = POOLS.create(cfg.pool)
    layers: list[nn.Module] = []
    c_in = in_shape[0]
    for stage, width in enumerate(cfg.widths):
        if stage > 0:
            layers.append(make_pool())
        for _ in range(cfg.depth):
            layers += _conv_unit(c_in, width, cfg)
            c_in = width
    if cfg.head == "avg":
        layers.append(nn.AdaptiveAvgPool2d(1))
    layers += [nn.Flatten(), make_dropout(cfg.dropout)]
    features = nn.Sequential(*layers)
    features.eval()  # count the features of one image without moving norm statistics
    with torch.no_grad():
        n = features(torch.zeros(1, *in_shape)).shape[1]
    features.train()
    return features, LINEARS.create(cfg.linear)(n, num_classes)


class BasicBlock(nn.Module):
    """He et al. 2016: out = act(shortcut(x) + gate * branch(x)), branch = conv-norm-act-conv-norm.

    ``residual_last`` names the module `trainlab.init.zero_init_residual` zeroes, so that each
    block starts as the identity (Goyal et al. 2017). With ``survival_prob < 1`` the branch is
    dropped per sample in training and scaled by its survival probability in eval (stochastic
    depth, Huang et al. 2016).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, cfg: ModelConfig, survival_prob: float):
        super().__init__()
        branch = [
            *_conv_unit(c_in, c_out, cfg, stride),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=cfg.norm == "none"),
            _norm2d(cfg.norm, c_out),
        ]
        self.branch = nn.Sequential(*branch)
        self.residual_last = branch[4] if cfg.norm != "none" else branch[3]
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=cfg.norm == "none"),
                _norm2d(cfg.norm, c_out),
            )
        self.drop: nn.Module = nn.Identity()
        if survival_prob < 1.0:
            from trainlab.regularize.depth import DropPath

            self.drop = DropPath(survival_prob)
        self.act = make_activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.drop(self.branch(x)))


def build_resnet(
    cfg: ModelConfig, in_shape: tuple[int, ...], num_classes: int
) -> tuple[nn.Module, nn.Module]:
    """ResNet-style: a 3x3 stem, stages of basic blocks (stride 2 between stages), global average
    pooling, dropout, linear classifier. Survival probabilities decay linearly with block index
    to ``survival_prob`` at the last block (Huang et al. 2016)."""
    from trainlab.regularize.depth import survival_probs

    probs = iter(survival_probs(len(cfg.widths) * cfg.depth, cfg.survival_prob))
    layers: list[nn.Module] = _conv_unit(in_shape[0], cfg.widths[0], cfg)
    c_in = cfg.widths[0]
    for stage, width in enumerate(cfg.widths):
        for block in range(cfg.depth):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(c_in, width, stride, cfg, next(probs)))
            c_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), make_dropout(cfg.dropout)]
    return nn.Sequential(*layers), LINEARS.create(cfg.linear)(c_in, num_classes)


BUILDERS = {"mlp": build_mlp, "cnn": build_cnn, "resnet": build_resnet}


def build_model(
    cfg: ModelConfig, in_shape: tuple[int, int, int], num_classes: int, normalize: nn.Module
) -> Classifier:
    """The classifier a model config describes, for images of ``in_shape`` = (C, H, W)."""
    features, head = BUILDERS[cfg.kind](cfg, tuple(in_shape), num_classes)
    return Classifier(normalize, features, head)


# The classifier starts with logits near zero: std = HEAD_STD / sqrt(fan_in).
HEAD_STD = 0.1


def classifier_layer(model: nn.Module, num_classes: int) -> nn.Linear | None:
    """The layer before the softmax: the last ``nn.Linear`` (in module order) with
    ``num_classes`` outputs, in trainlab's networks and in a user's own alike; None if there is
    none (a convolutional head, say)."""
    layers = [
        m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]
    return layers[-1] if layers else None


def init_classifier(head: nn.Module, generator: torch.Generator | None = None) -> None:
    """Small weights for the layer before the softmax: ``w ~ N(0, (0.1 / sqrt(fan_in))^2)``,
    bias 0, so the logits start near zero, the prediction near uniform and the first loss near
    ln(classes), the loss of a guess (the lecture's sanity check: "look for the correct loss at
    chance performance", Karpathy, CS231n).

    Why it is needed: ``trainlab.init.initialize`` gives every layer of a ReLU network Kaiming's
    gain sqrt(2), the classifier too, though no ReLU follows it. Its logits then have about the
    variance of its inputs' second moment times 2 (about 1 after batch norm and ReLU), and the
    first loss of the default recipe is 2.53-2.67 against ln 10 = 2.30. Zero weights would
    give ln(classes) exactly but no gradient to the features at the first step, and an
    update-to-weight ratio with nothing to divide by. A ``DropConnectLinear`` head is a Linear
    too; any other head is left as it is."""
    if not isinstance(head, nn.Linear):
        return
    std = HEAD_STD / head.in_features**0.5
    with torch.no_grad():
        head.weight.normal_(0.0, std, generator=generator)
        if head.bias is not None:
            head.bias.zero_()
