"""Recog's reconstructor: a small ResNet that sees an image pair and tells which direction moved and how far."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from contrafeat.features.base import seeded_build


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (no running statistics, so training and evaluation behave alike at any batch size)."""
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (1x1 projection when the stride or width changes), ResNet's basic block."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            _norm(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            _norm(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), _norm(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _rename_legacy_head(state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Training states saved before the strength head was named so called it `step_head`."""
    for key in [key for key in state if key.startswith(prefix + "step_head.")]:
        state[prefix + "strength_head." + key.removeprefix(prefix + "step_head.")] = state.pop(key)


class Reconstructor(nn.Module):
    """(image, edited image) [B, 3, H, W] each -> direction logits [B, K] and predicted strength [B].

    The pair enters as 6 channels: the image and the change (edited - image), an invertible re-coding
    of the stacked pair that trains several times faster; a stride-2 stem of `width` channels, then `depth` stride-2
    residual blocks doubling the width from the second on (64 px, depth 3: 32 -> 16 -> 8 -> 4 px),
    global average pooling, and two linear heads.
    """

    def __init__(self, num_directions: int, width: int = 32, depth: int = 3, seed: int = 0, in_channels: int = 3) -> None:
        super().__init__()
        widths = [width * 2 ** max(stage - 1, 0) for stage in range(depth + 1)]
        self.trunk = seeded_build(
            lambda: nn.Sequential(
                nn.Conv2d(2 * in_channels, width, 3, 2, 1, bias=False),
                _norm(width),
                nn.ReLU(inplace=True),
                *(ResidualBlock(widths[stage], widths[stage + 1], 2) for stage in range(depth)),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            ),
            seed,
        )
        self.direction_head = seeded_build(lambda: nn.Linear(widths[-1], num_directions), seed + 1)
        self.strength_head = seeded_build(lambda: nn.Linear(widths[-1], 1), seed + 2)
        self._register_load_state_dict_pre_hook(_rename_legacy_head)

    def forward(self, images: torch.Tensor, edited: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.trunk(torch.cat([images, edited - images], dim=1))
        return self.direction_head(pooled), self.strength_head(pooled)[:, 0]
