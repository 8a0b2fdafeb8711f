"""A shapes3d generator whose W -> factor structure is learned: a small StyleGAN2-like network over factor levels.

z -> w through a StyleGAN2 mapping network (pixel norm, leaky-ReLU layers); per W+ layer a style affine
s_l = A_l w_l + b_l modulates and demodulates a fully connected layer that carries a hidden state from a learned
constant through num_ws = 10 layers, two per block as StyleGAN2 has two per resolution. Each block ends in a
modulated "to factors" layer (StyleGAN2's toRGB) whose outputs are summed over the blocks (the skip
architecture); the sum goes through a sigmoid to the six factor levels, which the unchanged renderer draws.
The resolution hierarchy is mirrored by how much each block's output can reach the geometry and the colours
(BLOCK_GAINS): the coarse blocks speak mostly to scale, shape and orientation, the fine ones mostly to the hues,
as low resolutions fix a StyleGAN2 image's layout and high ones its colours. Which directions of W move what,
on which layers, and how that depends on w, is left to the optimiser (`contrafeat.shapes3d.world_training`):
there are no readout vectors and no layer bands.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from contrafeat.checks import check_shape
from contrafeat.gan.interface import WPlusCodes, last, rms_normalise, toward_average
from contrafeat.gan.tagged_weights import load_tagged_weights
from contrafeat.shapes3d.factor_levels import COLOUR_FACTORS, GEOMETRY_FACTORS, levels_to_factors
from contrafeat.shapes3d.grid import FACTOR_NAMES
from contrafeat.shapes3d.renderer import render

Z_DIM = 64
W_DIM = 64
NUM_WS = 10
HIDDEN = 64
MAPPING_LAYERS = 4
LAYERS_PER_BLOCK = 2
NUM_BLOCKS = NUM_WS // LAYERS_PER_BLOCK
BLOCK_GAINS = {"geometry": (1.0, 1.0, 0.8, 0.5, 0.3), "colour": (0.3, 0.5, 0.8, 1.0, 1.0)}
"""Per block (coarse to fine), the gain of its "to factors" output on the geometry and on the colour levels."""
LEAKY_SLOPE = 0.2
LEAKY_GAIN = math.sqrt(2.0)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "shapes3d_learned_world.safetensors"
FORMAT_TAG = "contrafeat-shapes3d-learned-world"
FORMAT_VERSION = "1"


def leaky(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.leaky_relu(x, LEAKY_SLOPE) * LEAKY_GAIN


def block_gains() -> torch.Tensor:
    """[NUM_BLOCKS, 6]: each block's gain on each factor level (BLOCK_GAINS spread over the factors)."""
    gains = torch.zeros(NUM_BLOCKS, 6)
    gains[:, list(GEOMETRY_FACTORS)] = torch.tensor(BLOCK_GAINS["geometry"])[:, None]
    gains[:, list(COLOUR_FACTORS)] = torch.tensor(BLOCK_GAINS["colour"])[:, None]
    return gains


class Mapping(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: pixel norm, then leaky-ReLU fully connected layers."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(Z_DIM if index == 0 else W_DIM, W_DIM) for index in range(MAPPING_LAYERS))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = rms_normalise(z, dim=1)
        for layer in self.layers:
            x = leaky(layer(x))
        return x


class StyleLayer(nn.Module):
    """A modulated, demodulated fully connected layer: hidden [B, H] and w [B, C] -> hidden [B, H]."""

    def __init__(self, demodulate: bool = True, out_features: int = HIDDEN) -> None:
        super().__init__()
        self.affine = nn.Linear(W_DIM, HIDDEN)
        nn.init.ones_(self.affine.bias)
        self.weight = nn.Parameter(torch.randn(out_features, HIDDEN) / math.sqrt(HIDDEN))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.demodulate = demodulate

    def forward(self, hidden: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w)  # [B, H]
        out = (hidden * styles) @ self.weight.T  # [B, O]
        if self.demodulate:
            out = out * torch.rsqrt(styles.square() @ self.weight.square().T + 1e-8)
        return out + self.bias


class LearnedSynthesis(nn.Module):
    """W+ codes [B, num_ws, w_dim] -> factor levels [B, 6] -> images [B, 3, R, R] in [-1, 1]."""

    gains: torch.Tensor  # [NUM_BLOCKS, 6]

    def __init__(self, img_resolution: int = 64, supersample: int = 1, trace_steps: int = 24) -> None:
        super().__init__()
        self.img_resolution, self.supersample, self.trace_steps = img_resolution, supersample, trace_steps
        self.constant = nn.Parameter(torch.randn(HIDDEN))
        self.layers = nn.ModuleList(StyleLayer() for _ in range(NUM_WS))
        self.to_factors = nn.ModuleList(nn.Linear(HIDDEN, 6) for _ in range(NUM_BLOCKS))
        self.register_buffer("gains", block_gains())

    def iterate_blocks(self, ws: torch.Tensor, noise_mode: str = "const") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per block: its hidden state as a [B, H, 1, 1] feature map and the factor logits [B, 6] summed so far."""
        hidden = self.constant.expand(ws.shape[0], -1)  # [B, H]
        logits = ws.new_zeros(ws.shape[0], 6)
        for block, to_factors in enumerate(self.to_factors):
            for layer in range(block * LAYERS_PER_BLOCK, (block + 1) * LAYERS_PER_BLOCK):
                hidden = leaky(self.layers[layer](hidden, ws[:, layer]))
            logits = logits + self.gains[block] * to_factors(hidden)
            yield hidden[:, :, None, None], logits

    def levels(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> factor levels [B, 6] in (0, 1)."""
        check_shape(ws, ["B", NUM_WS, W_DIM], "ws")
        return torch.sigmoid(last(self.iterate_blocks(ws))[1])

    def forward(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Images [B, 3, R, R] in [-1, 1]; the world has no per-pixel noise, `noise_mode` is accepted and ignored."""
        images = render(levels_to_factors(self.levels(ws)), self.img_resolution, self.supersample, self.trace_steps)
        return images * 2.0 - 1.0


class LearnedShapesGenerator(WPlusCodes, nn.Module):
    """z [B, 64] -> w [B, 64] -> W+ [B, 10, 64] -> factor levels [B, 6] -> image [B, 3, R, R] in [-1, 1]."""

    factor_names = FACTOR_NAMES
    w_avg: torch.Tensor  # [w_dim]

    def __init__(self, img_resolution: int = 64, supersample: int = 1, trace_steps: int = 24) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = Z_DIM, W_DIM, NUM_WS
        self.img_resolution, self.img_channels = img_resolution, 3
        self.discriminator: nn.Module | None = None
        self.mapping_network = Mapping()
        self.synthesis = LearnedSynthesis(img_resolution, supersample, trace_steps)
        self.register_buffer("w_avg", torch.zeros(W_DIM))
        self.config = {"kind": "shapes3d-learned", "z_dim": Z_DIM, "w_dim": W_DIM, "num_ws": NUM_WS, "img_resolution": img_resolution}

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z [B, z_dim] -> w [B, w_dim], lerped towards w_avg by truncation_psi."""
        w = self.mapping_network(z)
        return toward_average(self.w_avg, w, truncation_psi)

    def levels(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> factor levels [B, 6] in (0, 1)."""
        return self.synthesis.levels(ws)

    def factors(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> the factor values it renders [B, 6]: floor, wall, object hue, scale, shape, orientation."""
        return levels_to_factors(self.levels(ws))

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None, noise_mode: str = "const"
    ) -> torch.Tensor:
        ws = self.truncate(self.broadcast(self.mapping(z)), truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def style_affine_weights(self) -> list[torch.Tensor]:
        """Per W+ layer, the style-affine matrix [hidden, w_dim] that reads it."""
        return [layer.affine.weight for layer in self.synthesis.layers if isinstance(layer, StyleLayer)]  # every layer is one


def load_learned_world(path: Path = DEFAULT_WEIGHTS) -> LearnedShapesGenerator:
    """The trained world from its safetensors file (tensors only: nothing in the file is executed)."""
    expected = f"the safetensors weights written by `contrafeat shapes3d train-world` (format {FORMAT_TAG} v{FORMAT_VERSION})"
    generator = LearnedShapesGenerator()
    load_tagged_weights(generator, Path(path), FORMAT_TAG, FORMAT_VERSION, expected)
    return generator
