"""Building blocks shared by the StyleGAN2 generator and discriminator: equalised-lr layers (NVIDIA parameter names), width tables."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from contrafeat.gan.ops import DEFAULT_FILTER, LRELU_GAIN, bias_act, conv2d_resample, setup_filter


class FullyConnectedLayer(nn.Module):
    """y = act(x W^T * lr / sqrt(in) + b * lr); parameters stored unscaled (`weight` [out, in], `bias` [out])."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        """The weight matrix [out, in] as applied at run time."""
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.effective_weight()
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation)


class Conv2dLayer(nn.Module):
    """Equalised-lr 2-D convolution with optional FIR down-sampling, bias, activation and output clamp."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = LRELU_GAIN if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.activation, gain=self.act_gain * gain, clamp=clamp)


def resolution_channels(channels: dict) -> dict[int, int]:
    """Validate per-resolution widths {4: C4, 8: C8, ..., R: CR} (keys may be strings, as in JSON) -> int keys, sorted."""
    try:
        table = {int(res): int(width) for res, width in channels.items()}
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"channels must map resolutions to widths, got {channels!r}") from error
    resolution = max(table, default=0)
    expected = [2**i for i in range(2, int(math.log2(resolution)) + 1)] if resolution >= 4 else []
    if sorted(table) != expected or any(width <= 0 for width in table.values()):
        raise ValueError(f"channels must give a positive width for every resolution 4, 8, ..., R (a power of 2), got {table}")
    return dict(sorted(table.items()))
