"""Generator images (float tensors in [-1, 1]) -> uint8 arrays, PIL images, PNG files and grids."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] or [C, H, W] in [-1, 1] -> uint8 [B, H, W, C] or [H, W, C] (NVIDIA's x * 127.5 + 128, clamped)."""
    if images.ndim not in (3, 4):
        raise ValueError(f"expected images [B, C, H, W] or [C, H, W], got shape {list(images.shape)}")
    pixels = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return pixels.movedim(-3, -1).cpu().numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    """One image [C, H, W] in [-1, 1] (C = 1 or 3) -> PIL image ('L' or 'RGB')."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected one image [1 or 3, H, W], got shape {list(image.shape)}")
    pixels = to_uint8(image)
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def save_png(image: torch.Tensor, path: Path) -> Path:
    """Save one image [C, H, W] in [-1, 1] as a PNG (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path, format="PNG")
    return path


def image_grid(images: torch.Tensor, columns: int | None = None, padding: int = 0, pad_value: float = -1.0) -> torch.Tensor:
    """[B, C, H, W] -> one image [C, rows * (H + p) - p, columns * (W + p) - p], row-major; columns default ceil(sqrt(B))."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch [B, C, H, W], got shape {list(images.shape)}")
    count, channels, height, width = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    if columns < 1:
        raise ValueError(f"columns must be positive, got {columns}")
    rows = math.ceil(count / columns)
    grid = images.new_full((channels, rows * (height + padding) - padding, columns * (width + padding) - padding), pad_value)
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + padding), (index % columns) * (width + padding)
        grid[:, top : top + height, left : left + width] = image
    return grid


def save_image_grid(images: torch.Tensor, path: Path, columns: int | None = None, padding: int = 0) -> Path:
    """Save a batch [B, C, H, W] in [-1, 1] as one PNG grid (see image_grid)."""
    return save_png(image_grid(images.detach().cpu(), columns, padding), path)
