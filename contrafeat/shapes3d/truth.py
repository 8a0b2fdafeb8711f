"""The answer keys of the built-in worlds: each factor's span, circular hue differences, the exact per-factor edits."""
from __future__ import annotations

import torch

from contrafeat.gan.interface import TrueEditWorld

FACTOR_RANGES = torch.tensor([1.0, 1.0, 1.0, 0.5, 3.0, 60.0])
"""Span of each shapes3d factor (floor, wall, object hue, scale, shape, orientation) used to normalise changes."""
CIRCULAR_FACTORS = (0, 1, 2)
"""Hues wrap around: their differences are taken on the circle."""
TRUE_EDIT_STRENGTH = 0.5
"""A strength at which every true shapes3d edit changes its factor alone, by a clearly visible amount."""


def true_edit_tensor(generator: TrueEditWorld) -> torch.Tensor:
    """The generator's exact per-factor edits as [F, L, C] (layer weights outer direction)."""
    return torch.stack([weights[:, None] * direction[None, :] for direction, weights in generator.true_edits()]).float().cpu()


def factor_difference(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """after - before per factor, wrapped to [-0.5, 0.5) for hues, divided by each factor's span."""
    difference = after - before
    for column in CIRCULAR_FACTORS:
        difference[:, column] = torch.remainder(difference[:, column] + 0.5, 1.0) - 0.5
    return difference / FACTOR_RANGES.to(difference.device)
