"""The StyleGAN2 discriminator (resnet architecture, minibatch-stddev epilogue) with NVIDIA's state-dict key names."""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from contrafeat.checks import check_shape
from contrafeat.gan.layers import Conv2dLayer, FullyConnectedLayer, resolution_channels
from contrafeat.gan.ops import DEFAULT_FILTER, filter_taps, setup_filter

SKIP_GAIN = math.sqrt(0.5)


class DiscriminatorBlock(nn.Module):
    """Residual block at one resolution: (fromrgb,) conv0, down-sampling conv1, and a 1x1 down-sampling skip."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        resample_filter: Sequence[float],
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (or, for the first block, the image) at this resolution -> features at half the resolution."""
        if self.in_channels == 0:
            x = self.fromrgb(x)
        y = self.skip(x, gain=SKIP_GAIN)
        x = self.conv1(self.conv0(x), gain=SKIP_GAIN)
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the mean standard deviation over groups of samples (None: the whole batch) as extra feature channels."""

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = n if self.group_size is None else min(self.group_size, n)
        while n % group:  # the reference code fails here; the largest group size that divides the batch keeps it usable
            group -= 1
        f = self.num_channels
        y = x.reshape(group, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4])
        y = y.reshape(-1, f, 1, 1).repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: minibatch stddev, conv, fully connected, one logit."""

    def __init__(
        self, in_channels: int, mbstd_group_size: int | None, mbstd_num_channels: int, conv_clamp: float | None, resample_filter: Sequence[float]
    ) -> None:
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp, resample_filter=resample_filter)
        self.fc = FullyConnectedLayer(in_channels * 4 * 4, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits [B, 1], the conv output [B, C, 4, 4])."""
        if self.mbstd is not None:
            x = self.mbstd(x)
        features = self.conv(x)
        return self.out(self.fc(features.flatten(1))), features


class Discriminator(nn.Module):
    """Unconditional StyleGAN2 discriminator; `channels` gives the width at every resolution 4..R."""

    def __init__(
        self,
        channels: dict,
        img_channels: int = 3,
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
    ) -> None:
        super().__init__()
        self.channels = resolution_channels(channels)
        self.img_resolution = max(self.channels)
        if self.img_resolution < 8:
            raise ValueError(f"a discriminator needs a resolution of at least 8 px, got {self.img_resolution}")
        self.img_channels = img_channels
        self.mbstd_group_size = mbstd_group_size
        self.mbstd_num_channels = mbstd_num_channels
        self.conv_clamp = conv_clamp
        self.resample_filter = filter_taps(setup_filter(resample_filter))  # normalised taps
        self.block_resolutions = [res for res in sorted(self.channels, reverse=True) if res > 4]
        for res in self.block_resolutions:
            in_channels = self.channels[res] if res < self.img_resolution else 0
            block = DiscriminatorBlock(in_channels, self.channels[res], self.channels[res // 2], img_channels, resample_filter, conv_clamp)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(self.channels[4], mbstd_group_size, mbstd_num_channels, conv_clamp, resample_filter)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments."""
        return {
            "channels": {str(res): width for res, width in self.channels.items()},
            "img_channels": self.img_channels,
            "mbstd_group_size": self.mbstd_group_size,
            "mbstd_num_channels": self.mbstd_num_channels,
            "conv_clamp": self.conv_clamp,
            "resample_filter": self.resample_filter,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Discriminator":
        return cls(**config)

    def forward(self, img: torch.Tensor, return_features: bool = False):
        """img [B, C, R, R] in [-1, 1] -> logits [B, 1], or (logits, block outputs from R/2 px down to the 4x4 conv)."""
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        check_shape(img, ["B", *expected], "discriminator input")
        features = []
        x = img
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x)
            features.append(x)
        logits, epilogue = self.b4(x)
        features.append(epilogue)
        return (logits, features) if return_features else logits
