"""A lazily filled on-disk store of shapes3d grid renders, shared by every process that evaluates on the world.

Metrics and reference VAEs draw hundreds of thousands of grid images, many of them again and again
(the metric protocols use fixed seeds). Each image is rendered once per render setting and kept in a
memory-mapped file of all 480,000 grid images (a sparse file: only rendered images take disk space).
A flags file records which images are there; it is written after the images are flushed, so a flag
never points at an unwritten image, even with several processes filling the store at once.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

import numpy as np
import torch

from contrafeat.shapes3d import renderer
from contrafeat.shapes3d.grid import NUM_IMAGES, factor_values, index_to_factors, to_uint8
from contrafeat.shapes3d.renderer import render

RENDER_BATCH = 256


def renderer_version() -> str:
    """A short hash of the renderer's source: a changed renderer never reads images of an old one."""
    return hashlib.sha1(inspect.getsource(renderer).encode()).hexdigest()[:12]


class RenderCache:
    """Grid images [R, R, 3] uint8 by index, rendered on first use with one (resolution, supersample, trace_steps)."""

    def __init__(self, folder: Path, resolution: int = 64, supersample: int = 1, trace_steps: int = 24) -> None:
        self.resolution, self.supersample, self.trace_steps = resolution, supersample, trace_steps
        folder.mkdir(parents=True, exist_ok=True)
        key = f"r{resolution}-s{supersample}-t{trace_steps}-{renderer_version()}"
        self.images_path = folder / f"{key}.u8"
        self.flags_path = folder / f"{key}.flags.npy"
        shape = (NUM_IMAGES, resolution, resolution, 3)
        create_sparse(self.images_path, int(np.prod(shape)))
        self.store = np.memmap(self.images_path, dtype=np.uint8, mode="r+", shape=shape)
        self.filled = self._read_flags()

    def _read_flags(self) -> np.ndarray:
        if self.flags_path.is_file():
            flags = np.load(self.flags_path)
            if flags.shape == (NUM_IMAGES,) and flags.dtype == np.bool_:
                return flags
        return np.zeros(NUM_IMAGES, dtype=np.bool_)

    def _write_flags(self) -> None:
        """Merge with flags other processes wrote meanwhile, then replace the file atomically."""
        self.filled |= self._read_flags()
        temporary = self.flags_path.with_name(f"{self.flags_path.name}.{os.getpid()}.tmp.npy")
        np.save(temporary, self.filled)
        os.replace(temporary, self.flags_path)

    def images(self, indices: np.ndarray) -> np.ndarray:
        """uint8 images [n, R, R, 3] of grid indices [n], rendering the ones not stored yet."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        missing = np.unique(indices[~self.filled[indices]])
        if len(missing):
            self.filled |= self._read_flags()
            missing = missing[~self.filled[missing]]
        if len(missing):
            self._render(missing)
        return np.asarray(self.store[indices])

    def _render(self, indices: np.ndarray) -> None:
        values = torch.from_numpy(factor_values(index_to_factors(indices))).float()
        for start in range(0, len(indices), RENDER_BATCH):
            with torch.no_grad():
                rendered = render(values[start : start + RENDER_BATCH], self.resolution, self.supersample, self.trace_steps)
            self.store[indices[start : start + RENDER_BATCH]] = to_uint8(rendered)
        self.store.flush()
        self.filled[indices] = True
        self._write_flags()


def create_sparse(path: Path, size: int) -> None:
    """Create `path` as a sparse file of `size` bytes unless it exists (safe when processes race)."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    try:
        os.ftruncate(descriptor, size)
    finally:
        os.close(descriptor)
