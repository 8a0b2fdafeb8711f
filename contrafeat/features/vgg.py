"""VGG16's convolutional trunk with torchvision's layer numbering (`features.N.*`)."""
from __future__ import annotations

from torch import nn

from contrafeat.features.weights import WeightFile

# Output channels per conv layer, "M" = 2x2 max-pool (torchvision's configuration "D", without the last pool).
LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)

STAGES = (("relu1_2", 3), ("relu2_2", 8), ("relu3_3", 15), ("relu4_3", 22), ("relu5_3", 29))

WEIGHTS = WeightFile("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth")


def vgg16_features() -> nn.Sequential:
    """torchvision's `vgg16().features` up to relu5_3."""
    layers: list[nn.Module] = []
    channels = 3
    for item in LAYOUT:
        if isinstance(item, str):  # "M"
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    return nn.Sequential(*layers)
