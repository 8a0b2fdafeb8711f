"""The procedural 3DShapes world: the exact factor grid of DeepMind's 3DShapes, a dataset and an .npz export.

Index layout as in the original file: every combination once, row-major in the order floor_hue, wall_hue,
object_hue, scale, shape, orientation (orientation fastest).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from contrafeat.errors import UserError
from contrafeat.shapes3d.renderer import render

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
"""Images are rendered at about this size (at least twice the resolution) and box-filtered down."""
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


def iter_renders(
    indices: Sequence[int] | np.ndarray, resolution: int = 64, batch_size: int = 16, progress: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Render images by index in batches -> (indices [b], uint8 images [b, resolution, resolution, 3]) per batch."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    values = torch.from_numpy(factor_values(index_to_factors(indices))).float()
    for start in tqdm(range(0, len(indices), batch_size), disable=not progress, desc="render", unit="batch"):
        with torch.no_grad():
            images = render(values[start : start + batch_size], resolution, supersample_for(resolution), TRACE_STEPS)
        yield indices[start : start + batch_size], to_uint8(images)


def render_indices(indices: Sequence[int] | np.ndarray, resolution: int = 64) -> np.ndarray:
    """Render images by index -> uint8 array [N, resolution, resolution, 3] (the layout of the original file)."""
    batches = [images for _, images in iter_renders(indices, resolution)]
    return np.concatenate(batches) if batches else np.zeros((0, resolution, resolution, 3), np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images [B, 3, R, R] in [0, 1] -> uint8 [B, R, R, 3]."""
    return (images.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class NpzWriter:
    """Collects rendered batches in a memory-mapped scratch file and writes the .npz on close.

    Keys as in the original 3dshapes file: `images` uint8 [N, R, R, 3] and `labels` float64 [N, 6] (factor values).
    """

    def __init__(self, path: Path, indices: Sequence[int] | np.ndarray, resolution: int) -> None:
        self.path = Path(path)
        self.labels = factor_values(index_to_factors(indices)).reshape(-1, 6)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.scratch = self.path.with_name(self.path.name + ".images.tmp.npy")
        shape = (len(self.labels), resolution, resolution, 3)
        self.images = np.lib.format.open_memmap(self.scratch, mode="w+", dtype=np.uint8, shape=shape)
        self.filled = 0

    def write(self, images: np.ndarray) -> None:
        """Append the next batch of images, in the order of the indices given at construction."""
        self.images[self.filled : self.filled + len(images)] = images
        self.filled += len(images)

    def close(self) -> None:
        if self.filled != len(self.labels):
            raise ValueError(f"npz: {self.filled} images written for {len(self.labels)} labels")
        np.savez_compressed(self.path, images=self.images, labels=self.labels)
        del self.images
        self.scratch.unlink()


def export_npz(path: Path, indices: Sequence[int] | np.ndarray, resolution: int = 64, progress: bool = False) -> None:
    """Render `indices` into an .npz laid out like the original 3dshapes file."""
    writer = NpzWriter(path, indices, resolution)
    for _, images in iter_renders(indices, resolution, progress=progress):
        writer.write(images)
    writer.close()


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
