"""The procedural 3DShapes world: the exact factor grid of DeepMind's 3DShapes, a dataset and an .npz export.

Index layout as in the original file: every combination once, row-major in the order floor_hue, wall_hue,
object_hue, scale, shape, orientation (orientation fastest).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from contrafeat.data.shapes3d_renderer import render
from contrafeat.errors import UserError

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
FACTOR_BASES = (48000, 4800, 480, 60, 15, 1)
NUM_IMAGES = 480_000
SHAPE_NAMES = ("cube", "cylinder", "sphere", "capsule")
FACTOR_VALUES: tuple[np.ndarray, ...] = (
    np.arange(10) / 10,
    np.arange(10) / 10,
    np.arange(10) / 10,
    np.linspace(0.75, 1.25, 8),
    np.arange(4, dtype=np.float64),
    np.linspace(-30.0, 30.0, 15),
)
"""The stored label values of each factor (hue, hue, hue, scale, shape id, orientation in degrees)."""
RENDER_SIZE = 256
"""Images are rendered at this size (or twice the resolution, if larger) and box-filtered down."""
TRACE_STEPS = 32


def index_to_factors(index: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Image index (or indices) -> factor indices [..., 6]."""
    index = np.asarray(index, dtype=np.int64)
    if np.any(index < 0) or np.any(index >= NUM_IMAGES):
        raise UserError(f"index: expected integers in [0, {NUM_IMAGES}), got {index.min()}..{index.max()}")
    return (index[..., None] // np.asarray(FACTOR_BASES)) % np.asarray(FACTOR_SIZES)


def factors_to_index(factors: Sequence[int] | np.ndarray) -> np.ndarray:
    """Factor indices [..., 6] -> image index (or indices)."""
    factors = np.asarray(factors, dtype=np.int64)
    if factors.shape[-1] != 6 or np.any(factors < 0) or np.any(factors >= np.asarray(FACTOR_SIZES)):
        raise UserError(f"factors: expected [..., 6] indices below {list(FACTOR_SIZES)}, got shape {list(factors.shape)}")
    return factors @ np.asarray(FACTOR_BASES)


def factor_values(factors: Sequence[int] | np.ndarray) -> np.ndarray:
    """Factor indices [..., 6] -> the label values [..., 6] float64, as stored in the original file."""
    factors = np.asarray(factors, dtype=np.int64)
    return np.stack([FACTOR_VALUES[column][factors[..., column]] for column in range(6)], axis=-1)


def supersample_for(resolution: int) -> int:
    return max(2, RENDER_SIZE // resolution)


def render_indices(indices: Sequence[int] | np.ndarray, resolution: int = 64, batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Render images by index -> uint8 array [N, resolution, resolution, 3] (the layout of the original file)."""
    values = torch.from_numpy(factor_values(index_to_factors(indices)).reshape(-1, 6)).float()
    batches = []
    for start in tqdm(range(0, len(values), batch_size), disable=not progress, desc="render", unit="batch"):
        with torch.no_grad():
            images = render(values[start : start + batch_size], resolution, supersample_for(resolution), TRACE_STEPS)
        batches.append(to_uint8(images))
    return np.concatenate(batches) if batches else np.zeros((0, resolution, resolution, 3), np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images [B, 3, R, R] in [0, 1] -> uint8 [B, R, R, 3]."""
    return (images.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def export_npz(path: Path, indices: Sequence[int] | np.ndarray, resolution: int = 64, progress: bool = False) -> None:
    """Write `images` uint8 [N, R, R, 3] and `labels` float64 [N, 6] (factor values) like the original 3dshapes file."""
    images = render_indices(indices, resolution, progress=progress)
    labels = factor_values(index_to_factors(indices)).reshape(-1, 6)
    np.savez_compressed(path, images=images, labels=labels)


class Shapes3DDataset(Dataset):
    """(image [3, R, R] float in [-1, 1], factor indices [6] long) for any of the 480,000 indices, rendered on demand.

    Images are the uint8 renders of the export, scaled to the generator's range [-1, 1].
    """

    def __init__(self, resolution: int = 64, indices: Sequence[int] | np.ndarray | None = None) -> None:
        self.resolution = resolution
        self.indices = np.arange(NUM_IMAGES) if indices is None else np.asarray(indices, dtype=np.int64)
        index_to_factors(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(self.indices[item])
        image = torch.from_numpy(render_indices([index], self.resolution)[0]).permute(2, 0, 1).float() / 127.5 - 1.0
        return image, torch.from_numpy(index_to_factors(index))
