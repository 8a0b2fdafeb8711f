"""Directions that do not move the image, judged against the change real edits make rather than an absolute epsilon.

A direction in the null space of what the generator reads (SeFa's null eigenvectors on the shapes3d world, say)
still changes the image by float noise; an absolute threshold counts that noise as an effect. Here a direction is
dead when its mean RMS pixel change is below DEAD_FRACTION of the reference change: the median change of the
generator's true edits at TRUE_EDIT_STRENGTH where it knows them, else the change of the set's own strongest direction.
"""
from __future__ import annotations

import torch

from contrafeat.discovery.directions import Directions
from contrafeat.gan.interface import GeneratorLike, has_true_edits
from contrafeat.shapes3d.truth import TRUE_EDIT_STRENGTH, true_edit_tensor

DEAD_FRACTION = 0.01
"""Below this fraction of the reference change a direction moves nothing: 1 % of a true shapes3d edit's RMS change is
about a third of a grey level, which the uint8 pairs and the eye lose (float-noise directions sit near 1e-7)."""
DEAD_CHECK_SAMPLES = 32
"""Codes the check renders when no other codes are at hand (the calibration's own number)."""


@torch.no_grad()
def edit_image_change(generator: GeneratorLike, codes: torch.Tensor, edit: torch.Tensor, strength: float, batch_size: int = 64) -> float:
    """Mean over the codes [N, L, C] of the RMS pixel change from ws - strength*edit to ws + strength*edit (edit [L, C])."""
    edit = edit.to(codes.device, codes.dtype)
    changes = []
    for chunk in codes.split(batch_size):
        plus = generator.synthesis(chunk + strength * edit, noise_mode="const")
        minus = generator.synthesis(chunk - strength * edit, noise_mode="const")
        changes.append((plus - minus).flatten(1).square().mean(1).sqrt())  # [B]
    return float(torch.cat(changes).mean())


def image_changes(generator: GeneratorLike, directions: Directions, strengths: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """[K]: each direction's mean RMS pixel change at its own strength."""
    edits = directions.edits()  # [K, L, C]
    return torch.tensor([edit_image_change(generator, codes, edits[index], float(strengths[index])) for index in range(directions.count)])


def reference_change(generator: GeneratorLike, changes: torch.Tensor, codes: torch.Tensor) -> float:
    """The change a real edit makes: the true edits' median at TRUE_EDIT_STRENGTH, else the largest of `changes`."""
    if has_true_edits(generator):
        truth = true_edit_tensor(generator)  # [F, L, C]
        return float(torch.tensor([edit_image_change(generator, codes, edit, TRUE_EDIT_STRENGTH) for edit in truth]).median())
    return float(changes.max()) if len(changes) else 0.0


def dead_indices(changes: torch.Tensor, reference: float, fraction: float = DEAD_FRACTION) -> list[int]:
    """Indices whose change is below `fraction` of the reference (all of them when the reference itself is 0)."""
    return [index for index, change in enumerate(changes.tolist()) if not change > fraction * reference or reference <= 0]


def dead_directions(generator: GeneratorLike, directions: Directions, strengths: torch.Tensor, codes: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The directions that do not move the image at `strengths`, and every direction's RMS pixel change [K]."""
    changes = image_changes(generator, directions, strengths, codes)
    return dead_indices(changes, reference_change(generator, changes, codes)), changes
