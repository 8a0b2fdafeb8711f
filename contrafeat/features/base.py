"""The sensor base class: a frozen module mapping images in [-1, 1] to one feature map per stage."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def seeded_build(build: Callable[[], ModuleT], seed: int) -> ModuleT:
    """Build a network whose default random initialisation is drawn with `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class Sensor(nn.Module):
    """Frozen feature extractor: `forward(images [B, 3, H, W] in [-1, 1]) -> [one [B, C, h, w] map per stage]`.

    `input_size` None feeds images as given; an int resizes them bilinearly to that square size first.
    `normalize` maps [-1, 1] to [0, 1] and applies the ImageNet mean and std.
    The sensor never trains: its parameters do not require gradients and `train()` keeps it in eval mode.
    """

    mean: torch.Tensor  # [1, 3, 1, 1]
    std: torch.Tensor  # [1, 3, 1, 1]

    def __init__(self, name: str, stage_names: Sequence[str], input_size: int | None, normalize: bool) -> None:
        super().__init__()
        if input_size is not None and input_size < 1:
            raise ValueError(f"input_size {input_size}: expected a positive number of pixels")
        self.name = name
        self.stage_names = tuple(stage_names)
        self.input_size = input_size
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Resize and normalise images in [-1, 1] the way this sensor's network expects them."""
        if self.input_size is not None and tuple(images.shape[-2:]) != (self.input_size, self.input_size):
            size = (self.input_size, self.input_size)
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
        if self.normalize:
            images = ((images + 1) / 2 - self.mean) / self.std
        return images

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Run the network on prepared images and return the stage outputs."""
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.extract(self.prepare(images))

    def train(self, mode: bool = True) -> Sensor:
        """Stay in eval mode whatever a parent asks, so BatchNorm statistics never change."""
        return super().train(False)

    def freeze(self) -> Sensor:
        """Stop gradients into the parameters and switch to eval mode (gradients still reach the input)."""
        self.requires_grad_(False)
        return self.eval()


class TrunkSensor(Sensor):
    """A sensor over a torchvision-style `features` Sequential, read out after the given layer indices."""

    def __init__(self, name: str, features: nn.Sequential, stages: Sequence[tuple[str, int]], input_size: int | None, normalize: bool) -> None:
        super().__init__(name, [stage for stage, _ in stages], input_size, normalize)
        if len(features) != stages[-1][1] + 1:
            raise ValueError(f"{name}: the trunk has {len(features)} layers but its last stage ends at layer {stages[-1][1]}")
        self.features = features
        self.stage_ends = frozenset(end for _, end in stages)
        self.freeze()

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.stage_ends:
                outputs.append(x)
        return outputs
