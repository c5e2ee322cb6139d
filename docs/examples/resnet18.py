"""A ResNet-18 for 32x32 images (CIFAR-10), written in plain PyTorch: the example network of
docs/own_model.md, trained by trainlab as a network of the user's own.

He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition": four stages of two
basic blocks (3x3 conv, batch norm, ReLU, 3x3 conv, batch norm, plus the shortcut), widths
64-128-256-512, stride 2 at the start of each stage after the first. For 32x32 inputs the stem is
a single 3x3 convolution with no max pooling, as in the CIFAR variants that reach 95%.

trainlab calls ``resnet18(in_shape, num_classes, **model.args)`` and puts the data set's
normalizer in front of it; this file imports nothing of trainlab.
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks, c_in = [], widths[0]
        for stage, c_out in enumerate(widths):
            for block in range(2):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and block == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def resnet18(in_shape: tuple[int, int, int], num_classes: int, width: int = 64) -> ResNet18:
    """The factory trainlab calls: ``model.kind = "import:docs/examples/resnet18.py:resnet18"``."""
    return ResNet18(in_shape[0], num_classes, width)
