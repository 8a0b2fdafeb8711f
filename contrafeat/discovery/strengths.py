"""Suggested edit strengths: comparable across methods because they are measured in W's own spread."""
from __future__ import annotations

import torch

from contrafeat.discovery.subspace import PCABasis


def suggest_strengths(vectors: torch.Tensor, attention: torch.Tensor, pca: PCABasis, num_std: float = 2.0) -> torch.Tensor:
    """Per direction, the strength s at which the most-attended layer moves `num_std` standard deviations of W.

    The standard deviation is W's spread along the direction (u^T Cov u for the unit vector u), so a
    direction along a rarely varying axis of W gets a small strength and a dominant one a large strength.
    """
    basis = pca.basis.to(torch.float64)
    covariance = basis @ torch.diag(pca.eigenvalues.to(torch.float64).clamp_min(0)) @ basis.T
    vectors = vectors.to(torch.float64)
    norms = vectors.norm(dim=1)
    units = vectors / norms[:, None]
    spread = torch.einsum("kc,cd,kd->k", units, covariance, units).clamp_min(0).sqrt()
    peak = attention.to(torch.float64).max(dim=1).values.clamp_min(1e-8)
    return (num_std * spread / (norms * peak)).float()
