"""A sensor made of a StyleGAN2 discriminator's intermediate block outputs."""
from __future__ import annotations

import torch
from torch import nn

from contrafeat.features.base import Sensor


class DiscriminatorSensor(Sensor):
    """Features = the block outputs of `discriminator(img, return_features=True) -> (logits, [block outputs])`.

    Images go in as the discriminator was trained on them: range [-1, 1], no ImageNet normalisation.
    """

    def __init__(self, discriminator: nn.Module, resolution: int, channels: int, input_size: int | None) -> None:
        size = input_size or resolution
        parameter = next(discriminator.parameters())
        with torch.no_grad():
            _, blocks = discriminator(torch.zeros(1, channels, size, size, device=parameter.device, dtype=parameter.dtype), return_features=True)
        names = [f"block{index}_{block.shape[-1]}px" for index, block in enumerate(blocks)]
        super().__init__("discriminator", names, input_size, normalize=False)
        self.discriminator = discriminator
        self.freeze()

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        _, blocks = self.discriminator(images, return_features=True)
        return list(blocks)
