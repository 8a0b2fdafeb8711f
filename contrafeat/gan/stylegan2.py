"""The StyleGAN2 generator (mapping + skip-architecture synthesis) with NVIDIA stylegan2-ada-pytorch state-dict keys.

Every size (z/w dims, mapping depth, per-resolution widths, resolution) is a constructor argument; checkpoint
loaders read them from the file. The forward pass follows the official code step for step.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from contrafeat.checks import check_shape
from contrafeat.gan.interface import WPlusCodes, last, rms_normalise, toward_average
from contrafeat.gan.layers import FullyConnectedLayer, resolution_channels
from contrafeat.gan.ops import DEFAULT_FILTER, LRELU_GAIN, bias_act, filter_taps, modulated_conv2d, setup_filter, upsample2d
from contrafeat.gan.stylegan2_discriminator import Discriminator

NOISE_MODES = ("const", "random", "none")


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: 2nd-moment normalisation, then `num_layers` leaky-ReLU FC layers; buffer `w_avg`."""

    w_avg: torch.Tensor

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, layer_features: int | None = None, lr_multiplier: float = 0.01) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the mapping network needs at least one layer, got {num_layers}")
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.num_layers = num_layers
        self.layer_features = layer_features or w_dim
        self.lr_multiplier = lr_multiplier
        features = [z_dim] + [self.layer_features] * (num_layers - 1) + [w_dim]
        for index in range(num_layers):
            layer = FullyConnectedLayer(features[index], features[index + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            setattr(self, f"fc{index}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """w = MLP(normalise(z)), lerped towards `w_avg` by truncation_psi."""
        check_shape(z, ["B", self.z_dim], "z")
        x = rms_normalise(z, dim=1)
        for index in range(self.num_layers):
            x = getattr(self, f"fc{index}")(x)
        return toward_average(self.w_avg, x, truncation_psi)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally up-sampling x2), per-pixel noise, bias, leaky ReLU, clamp."""

    resample_filter: torch.Tensor
    noise_const: torch.Tensor  # only when use_noise

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def style_weight(self) -> torch.Tensor:
        """Effective affine weight [C_in, w_dim] mapping w to this layer's styles."""
        return self.affine.effective_weight()

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | None = None) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype) * self.noise_strength
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x, self.weight, styles, noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=self.up == 1, fused=fused_modconv,
        )
        return bias_act(x, self.bias, "lrelu", gain=LRELU_GAIN, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution without demodulation to image channels, plus bias and clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def style_weight(self) -> torch.Tensor:
        """Effective affine weight [C_in, w_dim] mapping w to this layer's styles (including the 1/sqrt(C_in) gain)."""
        return self.affine.effective_weight() * self.weight_gain

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = None) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip architecture: const input or up-sampling conv0, conv1, and a toRGB added to the image."""

    resample_filter: torch.Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_noise: bool,
        resample_filter: Sequence[float],
        conv_clamp: float | None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        layer_kwargs: dict[str, Any] = dict(w_dim=w_dim, resolution=resolution, use_noise=use_noise, resample_filter=resample_filter, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def layers(self) -> list[SynthesisLayer | ToRGBLayer]:
        """The style-consuming layers in w order: (conv0,) conv1, torgb."""
        convs: list[SynthesisLayer | ToRGBLayer] = [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]
        return convs + [self.torgb]

    def forward(self, x, img, ws: torch.Tensor, noise_mode: str, fused_modconv: bool | None):
        """(features, image so far, ws [B, num_conv + 1, w_dim]) -> (features, image) at this resolution."""
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x, next(w_iter), noise_mode, fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode, fused_modconv)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv)
        return x, img + y if img is not None else y


class SynthesisNetwork(nn.Module):
    """W+ codes [B, num_ws, w_dim] -> images [B, img_channels, R, R]; `channels` gives the width at 4, 8, ..., R px."""

    def __init__(
        self,
        w_dim: int,
        channels: dict,
        img_channels: int = 3,
        use_noise: bool = True,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = resolution_channels(channels)
        self.img_resolution = max(self.channels)
        self.img_channels = img_channels
        self.block_resolutions = list(self.channels)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = self.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_channels, self.channels[res], w_dim, res, img_channels, use_noise, resample_filter, conv_clamp)
            setattr(self, f"b{res}", block)
            self.num_ws += block.num_conv
        self.num_ws += 1  # the last toRGB

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | None = None) -> torch.Tensor:
        """noise_mode: 'const' (the stored noise maps), 'random' (fresh N(0,1) maps) or 'none'; fused_modconv None = automatic."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        return last(self.iterate_blocks(ws, noise_mode, fused_modconv))[1]

    def iterate_blocks(
        self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: bool | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Run the blocks one by one, yielding each block's feature map and the image so far."""
        x = img = None
        w_index = 0
        for block in self.blocks():
            x, img = block(x, img, ws.narrow(1, w_index, block.num_conv + 1), noise_mode, fused_modconv)
            w_index += block.num_conv
            yield x, img


class Generator(WPlusCodes, nn.Module):
    """StyleGAN2 generator: `mapping` (z -> w), `synthesis` (W+ -> image) and an optional `discriminator`.

    The constructor arguments are exactly `config`, so `Generator.from_config(G.config)` rebuilds the architecture.
    """

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        channels: dict,
        img_channels: int = 3,
        mapping_layers: int = 8,
        mapping_layer_features: int | None = None,
        mapping_lr_multiplier: float = 0.01,
        use_noise: bool = True,
        conv_clamp: float | None = None,
        resample_filter: Sequence[float] = DEFAULT_FILTER,
        discriminator: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.w_dim = w_dim
        self.img_channels = img_channels
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.resample_filter = filter_taps(setup_filter(resample_filter))  # normalised taps
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_layer_features, mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(w_dim, channels, img_channels, use_noise, resample_filter, conv_clamp)
        self.img_resolution = self.synthesis.img_resolution
        self.num_ws = self.synthesis.num_ws
        self.discriminator = Discriminator.from_config(discriminator) if discriminator is not None else None

    @property
    def w_avg(self) -> torch.Tensor:
        """The average w [w_dim] used for truncation (the mapping network's buffer)."""
        return self.mapping.w_avg

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (dims, mapping depth and lr multiplier, widths, clamp, discriminator)."""
        return {
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "channels": {str(res): width for res, width in self.synthesis.channels.items()},
            "img_channels": self.img_channels,
            "mapping_layers": self.mapping.num_layers,
            "mapping_layer_features": self.mapping.layer_features,
            "mapping_lr_multiplier": self.mapping.lr_multiplier,
            "use_noise": self.use_noise,
            "conv_clamp": self.conv_clamp,
            "resample_filter": self.resample_filter,
            "discriminator": self.discriminator.config if self.discriminator is not None else None,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Generator":
        return cls(**config)

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        fused_modconv: bool | None = None,
    ) -> torch.Tensor:
        """z [B, z_dim] -> images [B, img_channels, R, R] in about [-1, 1]."""
        ws = self.truncate(self.broadcast(self.mapping(z)), truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)

    def style_affine_weights(self) -> list[torch.Tensor]:
        """Each synthesis layer's effective style-affine weight [C_in, w_dim], convs and toRGBs in layer (w) order."""
        return [layer.style_weight() for block in self.synthesis.blocks() for layer in block.layers()]
