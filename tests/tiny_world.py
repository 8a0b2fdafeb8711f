"""A tiny generator and sensor with the project's interfaces, for fast tests of the training machinery."""
from __future__ import annotations

import torch
from torch import nn

from contrafeat.gan.interface import WPlusCodes, toward_average


class TinyGenerator(WPlusCodes, nn.Module):
    """z [B, 8] -> w [B, 6] by a fixed MLP; W+ [B, 4, 6] -> 3 x 16 x 16 images by a fixed linear map + tanh."""

    z_dim, w_dim, num_ws, img_resolution, img_channels = 8, 6, 4, 16, 3
    discriminator = None

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Parameter(torch.randn(8, 16, generator=generator) / 8**0.5)
        self.fc2 = nn.Parameter(torch.randn(16, 6, generator=generator) / 16**0.5)
        self.render = nn.Parameter(torch.randn(4 * 6, 3 * 16 * 16, generator=generator) / 24**0.5)
        self.register_buffer("w_avg", self.mapping(torch.randn(1000, 8, generator=generator)).mean(0).detach())
        self.requires_grad_(False)

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        w = torch.nn.functional.leaky_relu(z @ self.fc1, 0.2) @ self.fc2
        return toward_average(self.w_avg, w, truncation_psi) if hasattr(self, "w_avg") else w

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        return torch.tanh(ws.flatten(1) @ self.render).view(-1, 3, 16, 16)

    def style_affine_weights(self) -> list[torch.Tensor]:
        return [self.render.view(4, 6, -1)[layer].T for layer in range(4)]


class TinySensor(nn.Module):
    """Two conv stages (16 and 8 px), frozen."""

    name = "tiny"
    stage_names = ["stage1", "stage2"]

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        self.requires_grad_(False).eval()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        first = torch.relu(self.conv1(images))
        return [first, torch.relu(self.conv2(first))]
