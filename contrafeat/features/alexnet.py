"""AlexNet's convolutional trunk with torchvision's layer numbering (`features.{0,3,6,8,10}.*`)."""
from __future__ import annotations

from torch import nn

from contrafeat.features.weights import WeightFile

# Stages cut after each ReLU: features[0:2], [2:5], [5:8], [8:10], [10:12].
STAGES = (("relu1", 1), ("relu2", 4), ("relu3", 7), ("relu4", 9), ("relu5", 11))

WEIGHTS = WeightFile("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")


def alexnet_features() -> nn.Sequential:
    """torchvision's `AlexNet.features` up to relu5 (the final max-pool is not needed by any stage)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )
