"""How a shapes3d generator's factors depend on W: the measured properties that tell a learned world from a written one.

All measures read the generator's factor levels (`levels(ws)`, six coordinates in (0, 1), one per factor) and
their Jacobians with respect to the W+ codes of samples drawn as a user draws them (z -> w on every layer).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from contrafeat.gan.interface import MeasurableWorld, StyleAffineGenerator, seeded_codes
from contrafeat.shapes3d.factor_levels import COLOUR_FACTORS, GEOMETRY_FACTORS, level_jacobians

RANK_TOLERANCE = 1e-4
"""Singular values below this fraction of the largest count as zero (span and rank of matrices)."""
MUTUAL_INFORMATION_BINS = 8


def gradient_consistency(jacobians: torch.Tensor) -> torch.Tensor:
    """[6]: per factor, the mean |cos| between different samples' gradients with respect to W+ (1: the same edit everywhere)."""
    gradients = torch.nn.functional.normalize(jacobians.flatten(2).double(), dim=2)  # [N, 6, L*C]
    cos = torch.einsum("afd,bfd->fab", gradients, gradients).abs()  # [6, N, N]
    count = cos.shape[1]
    return ((cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(dim=1)) / (count * (count - 1))).float()


def layer_sensitivity(jacobians: torch.Tensor) -> torch.Tensor:
    """[6, L]: per factor, each W+ layer's share of the mean squared gradient (rows sum to 1)."""
    energy = jacobians.double().square().sum(dim=3).mean(dim=0)  # [6, L]
    return (energy / energy.sum(dim=1, keepdim=True)).float()


def coarse_share(sensitivity: torch.Tensor) -> torch.Tensor:
    """[6]: the share of each factor's sensitivity on the coarse half of the layers."""
    return sensitivity[:, : sensitivity.shape[1] // 2].sum(dim=1)


def span_overlap(jacobians: torch.Tensor, pairs: int = 2000, seed: int = 0) -> float:
    """Mean overlap of two samples' spans of the factor gradients with respect to w on every layer (1: one fixed span).

    Overlap of spans with orthonormal bases P, Q: |P^T Q|_F^2 / max(rank P, rank Q), 1 exactly when they are equal.
    """
    gradients = torch.nn.functional.normalize(jacobians.double().sum(dim=2), dim=2)  # [N, 6, C]: w on every layer, unit rows
    bases = []
    for matrix in gradients:
        _, singular, right = torch.linalg.svd(matrix, full_matrices=False)
        bases.append(right[singular > RANK_TOLERANCE * singular.max()])  # [r, C]
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, len(bases), (2, pairs))
    keep = first != second
    overlaps = [
        float((bases[a] @ bases[b].T).square().sum()) / max(len(bases[a]), len(bases[b])) for a, b in zip(first[keep], second[keep])
    ]
    return float(np.mean(overlaps))


def span_rank(jacobians: torch.Tensor) -> float:
    """Mean rank of the factor gradients with respect to w on every layer (6 when every factor has its own direction)."""
    gradients = torch.nn.functional.normalize(jacobians.double().sum(dim=2), dim=2)  # [N, 6, C], unit rows
    singular = torch.linalg.svdvals(gradients)  # [N, 6]
    return float((singular > RANK_TOLERANCE * singular[:, :1]).sum(dim=1).double().mean())


def style_rank(generator: StyleAffineGenerator) -> int:
    """Rank of every style-affine matrix stacked along the rows."""
    stacked = torch.cat([weight.detach().double().cpu() for weight in generator.style_affine_weights()])
    singular = torch.linalg.svdvals(stacked)
    return int((singular > RANK_TOLERANCE * singular.max()).sum())


def uniformity(levels: np.ndarray) -> np.ndarray:
    """[6]: each level's Kolmogorov-Smirnov distance from the uniform distribution on (0, 1)."""
    ordered = np.sort(levels, axis=0)  # [N, 6]
    count = len(ordered)
    above = np.arange(1, count + 1)[:, None] / count - ordered
    below = ordered - np.arange(count)[:, None] / count
    return np.maximum(above.max(axis=0), below.max(axis=0))


def pairwise_dependence(levels: np.ndarray) -> dict[str, float]:
    """The largest |Spearman correlation| and the mean binned mutual information (nats) over pairs of factor levels."""
    ranks = levels.argsort(axis=0).argsort(axis=0).astype(np.float64)
    correlation = np.corrcoef(ranks.T)  # [6, 6]
    assert isinstance(correlation, np.ndarray)  # a matrix for more than one variable
    bins = np.clip((levels * MUTUAL_INFORMATION_BINS).astype(int), 0, MUTUAL_INFORMATION_BINS - 1)
    informations = []
    for a, b in itertools.combinations(range(levels.shape[1]), 2):
        joint = np.histogram2d(bins[:, a], bins[:, b], bins=MUTUAL_INFORMATION_BINS, range=[[0, MUTUAL_INFORMATION_BINS]] * 2)[0]
        joint = joint / joint.sum()
        outer = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
        nonzero = joint > 0
        informations.append(float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum()))
    off_diagonal = np.abs(correlation[~np.eye(len(correlation), dtype=np.bool_)])
    return {"max_abs_spearman": float(off_diagonal.max()), "mean_mutual_information": float(np.mean(informations))}


@dataclass
class WorldProperties:
    """The measured properties of one generator (see the module docstring and `measure`)."""

    gradient_consistency: list[float]
    coarse_share: list[float]
    sensitivity: list[list[float]]
    span_overlap: float
    span_rank: float
    style_rank: int
    uniformity: list[float]
    dependence: dict[str, float]
    independent_reference: dict[str, float]
    geometry_coarse: float
    colour_fine: float


def measure(generator: MeasurableWorld, samples: int = 256, marginal_samples: int = 20_000, seed: int = 0) -> WorldProperties:
    """Every property on `samples` codes (gradients) and `marginal_samples` codes (distributions)."""
    jacobians = level_jacobians(generator, seeded_codes(generator, samples, seed))
    sensitivity = layer_sensitivity(jacobians)
    coarse = coarse_share(sensitivity)
    with torch.no_grad():
        levels = generator.levels(seeded_codes(generator, marginal_samples, seed + 1)).double().numpy()
    reference = np.random.default_rng(seed).random(levels.shape)
    return WorldProperties(
        gradient_consistency=gradient_consistency(jacobians).tolist(),
        coarse_share=coarse.tolist(),
        sensitivity=sensitivity.tolist(),
        span_overlap=span_overlap(jacobians, seed=seed),
        span_rank=span_rank(jacobians),
        style_rank=style_rank(generator),
        uniformity=uniformity(levels).tolist(),
        dependence=pairwise_dependence(levels),
        independent_reference=pairwise_dependence(reference),
        geometry_coarse=float(coarse[list(GEOMETRY_FACTORS)].mean()),
        colour_fine=float(1.0 - coarse[list(COLOUR_FACTORS)].mean()),
    )
