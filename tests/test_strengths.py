"""suggest_strengths against strengths worked out by hand: s = num_std * sqrt(u^T Cov u) / (|v| * max attention)."""
from __future__ import annotations

import math

import pytest
import torch

from contrafeat.discovery.strengths import suggest_strengths
from contrafeat.discovery.subspace import PCABasis


def pca(basis: list[list[float]], eigenvalues: list[float]) -> PCABasis:
    """A PCA of a 2-d W with the given axes (columns) and variances."""
    values = torch.tensor(eigenvalues)
    return PCABasis(torch.zeros(2), torch.tensor(basis), values, values.clamp_min(0).sqrt(), 100, "g")


AXES = pca([[1.0, 0.0], [0.0, 1.0]], [4.0, 1.0])
"""Var 4 along the first axis of W, 1 along the second."""
VECTORS = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
ATTENTION = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.75, 0.0]])


def test_the_strengths_worked_out_by_hand():
    # row 0: unit (1, 0), spread sqrt(4) = 2, |v| = 3, peak 0.5 -> 2 * 2 / 1.5
    # row 1: unit (0, 1), spread 1, |v| = 2, peak 1 -> 2 * 1 / 2
    # row 2: unit (1, 1) / sqrt 2, spread sqrt((4 + 1) / 2), |v| = sqrt 2, peak 0.75
    expected = [8 / 3, 1.0, 2 * math.sqrt(2.5) / (math.sqrt(2) * 0.75)]
    assert suggest_strengths(VECTORS, ATTENTION, AXES).tolist() == pytest.approx(expected, rel=1e-6)
    assert suggest_strengths(VECTORS, ATTENTION, AXES, num_std=3.0).tolist() == pytest.approx([1.5 * e for e in expected], rel=1e-6)


def test_a_rotated_pca_moves_the_spread_to_the_diagonal():
    half = math.sqrt(0.5)
    rotated = pca([[half, -half], [half, half]], [4.0, 1.0])  # var 4 along (1, 1) / sqrt 2, 1 along (-1, 1) / sqrt 2
    strengths = suggest_strengths(VECTORS, ATTENTION, rotated).tolist()
    # rows 0 and 1 now lie half on each axis: spread sqrt(2.5); row 2 lies on the wide axis: spread 2
    expected = [2 * math.sqrt(2.5) / 1.5, 2 * math.sqrt(2.5) / 2, 2 * 2 / (math.sqrt(2) * 0.75)]
    assert strengths == pytest.approx(expected, rel=1e-6)
    assert strengths != pytest.approx(suggest_strengths(VECTORS, ATTENTION, AXES).tolist(), rel=1e-3)


def test_the_edit_size_not_the_vector_length_is_what_is_suggested():
    doubled = suggest_strengths(2 * VECTORS, ATTENTION, AXES)
    assert doubled.tolist() == pytest.approx((suggest_strengths(VECTORS, ATTENTION, AXES) / 2).tolist(), rel=1e-6)
    spread_out = suggest_strengths(VECTORS, torch.tensor([[1.0, 0.0, 0.0]] * 3), AXES)
    assert spread_out[0] == pytest.approx(4 / 3, rel=1e-6)  # peak 1 instead of 0.5: half the strength


def test_no_spread_no_strength():
    flat = pca([[1.0], [0.0]], [-0.5])  # one axis, its (rounding-negative) variance clamped to 0
    assert suggest_strengths(VECTORS, ATTENTION, flat).tolist() == [0.0, 0.0, 0.0]
    one_axis = pca([[1.0], [0.0]], [4.0])
    assert suggest_strengths(VECTORS[1:2], ATTENTION[1:2], one_axis).tolist() == [0.0]  # orthogonal to every PC
