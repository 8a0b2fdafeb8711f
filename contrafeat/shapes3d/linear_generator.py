"""A ground-truth generator with the StyleGAN2 interface over the procedural 3DShapes world.

Built from a seed, with no training: a fixed random mapping network z -> w, and each of the six factors read
from its own band of W+ layers through a fixed unit readout vector lying in the top principal components
of W. Three pairs of factors share a readout vector but read disjoint layer bands, so an edit applied to
every layer moves both factors of a pair and only the choice of layers separates them. Factors whose
bands overlap read orthogonal vectors, so every factor has an exact edit that moves it alone
(`true_edits`), the answer key for evaluation. The synthesis renders the factors with the differentiable
renderer of `contrafeat.shapes3d.renderer`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from contrafeat.checks import check_shape
from contrafeat.gan.interface import WPlusCodes, rms_normalise, toward_average
from contrafeat.shapes3d.factor_levels import levels_to_factors
from contrafeat.shapes3d.grid import FACTOR_NAMES
from contrafeat.shapes3d.renderer import render

Z_DIM = 64
W_DIM = 64
NUM_WS = 10
MAPPING_LAYERS = 4
STATISTICS_SAMPLES = 100_000
"""Mapped samples behind w_avg, the covariance of W and its principal components."""
READOUT_SUBSPACE = 20
"""The readout vectors are random combinations of this many top principal components of W."""
FACTOR_BANDS = ((8, 9), (7, 8), (4, 5, 6), (3, 4), (0, 1), (0, 1, 2))
"""W+ layers read by floor_hue, wall_hue, object_hue, scale, shape and orientation."""
FACTOR_READOUT = (2, 1, 0, 2, 0, 1)
"""Which of the three readout vectors each factor uses: shape & object hue, orientation & wall hue, scale & floor hue share one."""


def random_top_subspace_basis(covariance: torch.Tensor, subspace: int, count: int, rng: torch.Generator) -> torch.Tensor:
    """`count` orthonormal rows [count, C]: random combinations of the top `subspace` principal components.

    Built from the projector onto the subspace, so it does not depend on the signs the eigensolver picks.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    top = eigenvectors[:, eigenvalues.argsort(descending=True)[:subspace]]
    mixed = top @ (top.T @ torch.randn(covariance.shape[0], count, generator=rng, dtype=covariance.dtype))
    basis, triangle = torch.linalg.qr(mixed)
    return (basis * torch.sign(torch.diagonal(triangle))).T


def band_weights() -> torch.Tensor:
    """[6, num_ws]: each factor's mean over its band of layers (1 / band size on the band, 0 elsewhere)."""
    weights = torch.zeros(6, NUM_WS)
    for factor, layers in enumerate(FACTOR_BANDS):
        weights[factor, list(layers)] = 1.0 / len(layers)
    return weights


class ShapesGenerator(WPlusCodes, nn.Module):
    """z [B, 64] -> w [B, 64] -> W+ [B, 10, 64] -> factors [B, 6] -> image [B, 3, R, R] in [-1, 1]."""

    factor_names = FACTOR_NAMES
    mapping_weights: torch.Tensor  # [MAPPING_LAYERS, w_dim, w_dim]
    mapping_biases: torch.Tensor  # [MAPPING_LAYERS, w_dim]
    output_gain: torch.Tensor  # []
    w_avg: torch.Tensor  # [w_dim]
    readouts: torch.Tensor  # [6, w_dim]
    readout_spreads: torch.Tensor  # [6]
    band_weights: torch.Tensor  # [6, num_ws]

    def __init__(self, seed: int = 0, img_resolution: int = 64, supersample: int = 1, trace_steps: int = 24) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = Z_DIM, W_DIM, NUM_WS
        self.img_resolution, self.img_channels = img_resolution, 3
        self.supersample, self.trace_steps = supersample, trace_steps
        self.discriminator: nn.Module | None = None
        self.config = {
            "kind": "shapes3d",
            "seed": seed,
            "z_dim": Z_DIM,
            "w_dim": W_DIM,
            "num_ws": NUM_WS,
            "img_resolution": img_resolution,
            "img_channels": 3,
            "supersample": supersample,
            "trace_steps": trace_steps,
        }
        rng = torch.Generator().manual_seed(seed)
        gain = math.sqrt(2.0 / (1.0 + 0.2**2))
        self.register_buffer("mapping_weights", torch.randn(MAPPING_LAYERS, W_DIM, W_DIM, generator=rng) * gain / math.sqrt(W_DIM))
        self.register_buffer("mapping_biases", torch.randn(MAPPING_LAYERS, W_DIM, generator=rng) * 0.2)
        self.register_buffer("output_gain", torch.ones(()))  # set below so that W has unit mean variance per dimension
        samples = self._map(torch.randn(STATISTICS_SAMPLES, Z_DIM, generator=rng)).double()
        self.output_gain.fill_(1.0 / float(samples.var(0).mean().sqrt()))
        samples = samples * float(self.output_gain)
        covariance = torch.cov(samples.T)
        readouts = random_top_subspace_basis(covariance, READOUT_SUBSPACE, 3, rng)
        spreads = torch.einsum("kc,cd,kd->k", readouts, covariance, readouts).sqrt()
        self.register_buffer("w_avg", samples.mean(0).float())
        self.register_buffer("readouts", readouts[list(FACTOR_READOUT)].float())
        self.register_buffer("readout_spreads", spreads[list(FACTOR_READOUT)].float())
        self.register_buffer("band_weights", band_weights())

    def _map(self, z: torch.Tensor) -> torch.Tensor:
        x = rms_normalise(z, dim=1)
        for weight, bias in zip(self.mapping_weights, self.mapping_biases):
            x = nn.functional.leaky_relu(x @ weight.T + bias, 0.2)
        return x * self.output_gain

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """z [B, z_dim] -> w [B, w_dim]: pixel norm, 4 leaky-ReLU layers, then truncation towards w_avg."""
        w = self._map(z)
        return toward_average(self.w_avg, w, truncation_psi)

    def levels(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> factor levels [B, 6] in (0, 1): the normal CDF of each standardised readout."""
        band_means = torch.einsum("blc,fl->bfc", ws - self.w_avg, self.band_weights)
        standard = torch.einsum("bfc,fc->bf", band_means, self.readouts) / self.readout_spreads
        return 0.5 * (1.0 + torch.erf(standard / math.sqrt(2.0)))

    def factors(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> factor values [B, 6]: floor, wall, object hue, scale, shape, orientation."""
        return levels_to_factors(self.levels(ws))

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> images [B, 3, R, R] in [-1, 1].

        The world has no per-pixel noise: `noise_mode` is accepted for the StyleGAN2 interface and ignored.
        """
        check_shape(ws, ["B", self.num_ws, self.w_dim], "ws")
        images = render(self.factors(ws), self.img_resolution, self.supersample, self.trace_steps)
        return images * 2.0 - 1.0

    def forward(
        self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None, noise_mode: str = "const"
    ) -> torch.Tensor:
        ws = self.truncate(self.broadcast(self.mapping(z)), truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode)

    def true_edits(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per factor (floor, wall, object hue, scale, shape, orientation): (direction [w_dim], layer weights [num_ws]).

        Directions have RMS 1 and layer weights sum to 1 over the factor's band, so that
        `ws + s * layer_weights[:, None] * direction` changes that factor alone. The answer key for evaluation.
        """
        return [(readout * math.sqrt(self.w_dim), weights.clone()) for readout, weights in zip(self.readouts, self.band_weights)]

    def style_affine_weights(self) -> list[torch.Tensor]:
        """Per W+ layer, the unit readout vectors [n_l, w_dim] that read that layer."""
        return [self.readouts[self.band_weights[:, layer] > 0] for layer in range(self.num_ws)]
