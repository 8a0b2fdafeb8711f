"""What a run logs to show whether it converged: a fixed validation batch, how far each direction moved, and
any further measures of the directions (a world's exact-factor score, given by the caller)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from contrafeat.discovery.directions import Directions
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.objectives import FeatureSource, Objective

VALIDATION_FILE = "validation.jsonl"
VALIDATION_SEED = 20_231_207
"""Seed of the validation codes and draws: the same batch for every run, whatever its training seed."""
VALIDATION_CODES = 32
"""Codes in the validation batch (Bi: 16 pairs)."""

DirectionsMeasure = Callable[[Directions], dict[str, float]]
"""A measure of the directions a run would return now, e.g. a world's exact-factor score (named values)."""


def direction_angles(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """[K] angle in degrees between each row of two direction sets [K, C]."""
    cosines = torch.nn.functional.cosine_similarity(before.double(), after.double(), dim=1).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cosines)).float()


class Validation:
    """The loss terms of one fixed batch (codes and draws), constant synthesis noise, scored without gradients."""

    def __init__(self, objective: Objective, features: FeatureSource, ws: torch.Tensor, num_directions: int, rng: torch.Generator) -> None:
        """`ws` [B, L, C]: the validation codes, drawn from `rng`, which then draws the objective's random values."""
        self.units = objective.units(ws)
        self.draws = objective.draw(self.units.shape[0], num_directions, rng)
        self.objective = objective
        self.features = FeatureSource(features.generator, features.sensor, "const", features.precision, features.channels_last)

    @torch.no_grad()
    def terms(self, navigator: Navigator) -> dict[str, float]:
        """`validation_<term>` for each term of the objective's validation terms."""
        values = self.objective.validation_terms(self.units, self.draws, navigator, self.features)
        return {f"validation_{name}": float(value) for name, value in values.items()}


class Progress:
    """Everything logged at a look: validation terms, the angle each direction moved since the last look, the measures."""

    def __init__(self, validation: Validation | None, measures: Sequence[DirectionsMeasure] = ()) -> None:
        self.validation, self.measures = validation, list(measures)
        self.previous: torch.Tensor | None = None

    def look(self, navigator: Navigator, directions: Directions) -> dict[str, float]:
        """One look at the directions the run would return now (`navigator` makes them)."""
        values: dict[str, float] = self.validation.terms(navigator) if self.validation is not None else {}
        vectors = directions.vectors
        if self.previous is not None:
            angles = direction_angles(self.previous, vectors)
            values.update(angle_mean=float(angles.mean()), angle_max=float(angles.max()))
        self.previous = vectors.clone()
        for measure in self.measures:
            values.update(measure(directions))
        return {name: value for name, value in values.items() if math.isfinite(value)}
