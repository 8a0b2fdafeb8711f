"""Traversal grids: rows are samples, columns are strengths from -s to +s along one direction."""
from __future__ import annotations

from pathlib import Path

import torch

from contrafeat.discovery.directions import Directions
from contrafeat.gan.interface import GeneratorLike, seeded_codes
from contrafeat.viz.images import save_image_grid


@torch.no_grad()
def traversal_images(
    generator: GeneratorLike, directions: Directions, index: int, codes: torch.Tensor, strengths: torch.Tensor
) -> torch.Tensor:
    """Images [N * S, 3, H, W] in row-major order (sample, strength) with constant noise."""
    rows = [generator.synthesis(directions.apply(codes, index, float(s)), noise_mode="const") for s in strengths]
    return torch.stack(rows, dim=1).flatten(0, 1).cpu()


def write_traversals(
    generator: GeneratorLike,
    directions: Directions,
    out_dir: Path,
    num_samples: int = 4,
    num_frames: int = 7,
    seed: int = 0,
    truncation_psi: float = 0.7,
    strength_multiplier: float = 1.0,
) -> list[Path]:
    """One PNG per direction, traversal_XX.png, each walking -s..+s with s the suggested strength."""
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = seeded_codes(generator, num_samples, seed, truncation_psi)
    paths = []
    for index in range(directions.count):
        strength = float(directions.strengths[index]) * strength_multiplier
        images = traversal_images(generator, directions, index, codes, torch.linspace(-strength, strength, num_frames))
        path = out_dir / f"traversal_{index:02d}.png"
        save_image_grid(images, path, columns=num_frames)
        paths.append(path)
    return paths
