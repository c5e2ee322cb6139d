"""Networks written as users write them, with the faults that published fault benchmarks
collected from real programs; `bench_doctor_cases.py` trains them through
``model.kind = "import:benchmarks/doctor_cases.py:NAME"``, with ``init.scheme = "keep"``, so
each network starts as its own code initializes it.

Every factory takes the image shape (channels, height, width) and the number of classes, as
trainlab calls a user's factory. The faults, and where they were described:

* a softmax (or sigmoid) as the last layer before a loss that applies its own: "redundant
  softmax" in the taxonomy of real faults of Humbatova et al. (ICSE 2020); activations out of
  their expected range in DeepDiagnosis (Wardat et al., ICSE 2022);
* every weight zero or one constant: "wrong weight initialisation" (Humbatova et al.); weights
  that do not change, DeepDiagnosis's "unchanged weight";
* a graph cut between the features and the loss (``.detach()``, ``.data``): DeepDiagnosis's
  unchanged weights, in PyTorch's idiom;
* sigmoid through a deep stack: AutoTrainer's vanishing gradient (Zhang et al., ICSE 2021);
* layers stacked with no activation between them: the activation faults of DeepFD (Cao et al.,
  ICSE 2022);
* biases that push ReLUs below zero: AutoTrainer's dying ReLU, DeepDiagnosis's dead node;
* weights drawn far too large: DeepDiagnosis's exploding tensor, AutoTrainer's exploding
  gradient.

The healthy controls are the same networks written right. The faults of the training set-up (a
rate far too high or low, raw pixels) are recipe settings in the benchmark, on the controls.
"""

from __future__ import annotations

import math

import torch
from torch import nn

DEEP = (128,) * 6


def _mlp(shape, classes, widths=(256, 256), act=nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    n = math.prod(shape)
    for w in widths:
        layers += [nn.Linear(n, w), act()]
        n = w
    return nn.Sequential(*layers, nn.Linear(n, classes))


def _features(shape) -> nn.Sequential:
    c, h, w = shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
    )  # fmt: skip


def _features_width(shape) -> int:
    return 32 * (shape[1] // 4) * (shape[2] // 4)


# -- the healthy controls --------------------------------------------------------------------------
def mlp(shape, classes):
    return _mlp(shape, classes)


def cnn(shape, classes):
    return nn.Sequential(_features(shape), nn.Linear(_features_width(shape), classes))


def deep_mlp(shape, classes):
    """Six ReLU layers, Kaiming-initialized (torch's default init would shrink the signal about
    2.4x a layer: gain 1/sqrt(3) against ReLU's sqrt(2))."""
    net = _mlp(shape, classes, DEEP)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


# -- the faults in the network -------------------------------------------------------------------
def redundant_softmax(shape, classes):
    return nn.Sequential(_mlp(shape, classes), nn.Softmax(dim=1))


def sigmoid_output(shape, classes):
    return nn.Sequential(cnn(shape, classes), nn.Sigmoid())


def zero_init(shape, classes):
    net = _mlp(shape, classes)
    for p in net.parameters():
        nn.init.zeros_(p)
    return net


def constant_init(shape, classes):
    """tanh units all started at one constant (as Keras's Constant initializer does)."""
    net = _mlp(shape, classes, act=nn.Tanh)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.01)
            nn.init.zeros_(m.bias)
    return net


class DetachedFeatures(nn.Module):
    """The conv features detached before the classifier: only the classifier learns."""

    def __init__(self, shape, classes):
        super().__init__()
        self.features = _features(shape)
        self.classifier = nn.Linear(_features_width(shape), classes)

    def forward(self, x):
        return self.classifier(self.features(x).detach())


class DataAttribute(nn.Module):
    """The hidden layer's output read through ``.data``, which autograd does not follow."""

    def __init__(self, shape, classes):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 256), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x):
        return self.out(self.hidden(x).data)


def linear_stack(shape, classes):
    """Three linear layers and no activation between them: one linear classifier."""
    n = math.prod(shape)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(n, 256), nn.Linear(256, 256), nn.Linear(256, classes)
    )


def deep_sigmoid(shape, classes):
    """Six sigmoid layers, torch's default init."""
    return _mlp(shape, classes, DEEP, act=nn.Sigmoid)


def negative_bias(shape, classes):
    """Six ReLU layers, Kaiming weights, every hidden bias at -2: most units never fire."""
    net = deep_mlp(shape, classes)
    with torch.no_grad():
        for m in list(net)[:-1]:
            if isinstance(m, nn.Linear):
                m.bias.fill_(-2.0)
    return net


def large_init(shape, classes):
    """Six ReLU layers with weights of std 0.5: 10x Kaiming's in the first, 4x in the others."""
    net = _mlp(shape, classes, DEEP)
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.5)
            nn.init.zeros_(m.bias)
    return net
