"""Per-direction edit strengths calibrated on the sensor: the strength at which an edit moves the features by a set amount.

Movement of a strength e for direction i: the mean over samples and sensor stages of
||F(G(w + e d_i)) - F(G(w - e d_i))|| / ||F(G(w))||. Strengths are found by doubling then bisection, all
directions at once, so methods whose directions differ in length or attention are compared at equal
visible effect instead of at a hand-picked strength.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation.dead_directions import dead_directions
from contrafeat.gan.interface import GeneratorLike, seeded_codes

DEFAULT_TARGET = 0.4
"""Relative feature movement the calibrated strengths aim at; every true shapes3d edit reaches it (their peaks are 0.53 to 0.68)."""
START_DIVISOR = 16.0
"""The search starts at the direction's suggested strength divided by this and doubles from there."""


@dataclass
class Calibration:
    """Calibrated strengths [K], the movement they reach [K], which directions never reached the target, and which
    do not move the image at their strength (dead, see `dead_directions`) with every direction's RMS pixel change [K]."""

    strengths: torch.Tensor
    movement: torch.Tensor
    unreached: list[int]
    dead: list[int]
    image_change: torch.Tensor


def stage_norms(features: list[torch.Tensor]) -> torch.Tensor:
    """Per sample and stage, the L2 norm of the whole map: [B, S]."""
    return torch.stack([stage.flatten(1).norm(dim=1) for stage in features], dim=1)


class MovementProbe:
    """Measures the relative feature movement of edits on fixed codes, rendering in chunks."""

    def __init__(self, generator: GeneratorLike, directions: Directions, sensor: nn.Module, codes: torch.Tensor, batch_size: int) -> None:
        self.generator, self.directions, self.sensor, self.batch_size = generator, directions, sensor, batch_size
        self.codes = codes
        self.base_norms = torch.cat([stage_norms(self._features(chunk)) for chunk in codes.split(batch_size)]).clamp_min(1e-8)

    def _features(self, ws: torch.Tensor) -> list[torch.Tensor]:
        return self.sensor(self.generator.synthesis(ws, noise_mode="const"))

    def movement(self, index: int, strength: float) -> float:
        """Mean relative movement of direction `index` at `strength` over the probe's codes."""
        changes = []
        for chunk in self.codes.split(self.batch_size):
            plus = self._features(self.directions.apply(chunk, index, strength))
            minus = self._features(self.directions.apply(chunk, index, -strength))
            changes.append(stage_norms([a - b for a, b in zip(plus, minus)]))
        return float((torch.cat(changes) / self.base_norms).mean())


@torch.no_grad()
def calibrate_strengths(
    generator: GeneratorLike,
    directions: Directions,
    sensor: nn.Module,
    target: float = DEFAULT_TARGET,
    num_samples: int = 32,
    seed: int = 0,
    truncation_psi: float = 0.5,
    iterations: int = 8,
    max_doublings: int = 12,
    batch_size: int = 64,
) -> Calibration:
    """Per direction, the strength whose movement equals `target` (within 2**-iterations of the bracket)."""
    if not 0 < target < float("inf"):
        raise UserError(f"--calibration-target {target}: expected a positive relative feature movement")
    probe = MovementProbe(generator, directions, sensor, seeded_codes(generator, num_samples, seed, truncation_psi), batch_size)
    strengths, reached, unreached = [], [], []
    for index in range(directions.count):
        low, high, moved = bracket(probe, index, max(float(directions.strengths[index]), 1e-3) / START_DIVISOR, target, max_doublings)
        if moved < target:
            unreached.append(index)
            strengths.append(high)
            reached.append(moved)
            continue
        for _ in range(iterations):
            middle = 0.5 * (low + high)
            moved_middle = probe.movement(index, middle)
            if moved_middle < target:
                low = middle
            else:
                high, moved = middle, moved_middle
        strengths.append(high)
        reached.append(moved)
    dead, image_change = dead_directions(generator, directions, torch.tensor(strengths), probe.codes)
    return Calibration(torch.tensor(strengths), torch.tensor(reached), unreached, dead, image_change)


def bracket(probe: MovementProbe, index: int, start: float, target: float, max_doublings: int) -> tuple[float, float, float]:
    """(low, high, movement at high): doubling from `start` until the target is reached.

    Stops early when the movement falls (a periodic factor such as a hue wrapping around) and then
    returns the strength of the largest movement seen, which is below the target.
    """
    low, high = 0.0, start
    moved = probe.movement(index, high)
    for _ in range(max_doublings):
        if moved >= target:
            break
        larger = probe.movement(index, 2 * high)
        if larger < moved:
            break
        low, high, moved = high, 2 * high, larger
    return low, high, moved
