"""The shapes3d world as ground truth for the disentanglement metrics and the reference VAEs."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from contrafeat.evaluation.disentanglement import Representation, uniform_factors
from contrafeat.gan.interface import GeneratorLike
from contrafeat.paths import cache_dir
from contrafeat.shapes3d.grid import FACTOR_SIZES, NUM_IMAGES, factors_to_index
from contrafeat.shapes3d.render_cache import RenderCache


def generator_render_cache(generator: GeneratorLike, folder: Path | None = None) -> RenderCache:
    """The grid-render store at the generator's own render settings, so metric images look like its samples."""
    return RenderCache(
        folder or cache_dir("shapes3d"),
        resolution=generator.img_resolution,
        supersample=getattr(generator, "supersample", 1),
        trace_steps=getattr(generator, "trace_steps", 24),
    )


class Shapes3DSampler:
    """FactorSampler over the 480,000-image grid: uniform integer factors and their renders in [0, 1]."""

    factor_sizes = list(FACTOR_SIZES)

    def __init__(self, cache: RenderCache) -> None:
        self.cache = cache

    def sample_factors(self, n: int, random_state: np.random.RandomState) -> np.ndarray:
        return uniform_factors(self.factor_sizes, n, random_state)

    def observations(self, factors: np.ndarray) -> torch.Tensor | np.ndarray:
        """Images [n, 3, R, R] float in [0, 1] of factor index rows [n, 6] (GridIndices: their grid indices [n])."""
        return to_float_images(self.cache.images(factors_to_index(factors)))

    def sample_batch(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Uniformly drawn grid images [batch, 3, R, R] in [0, 1]: the training data of the reference VAEs."""
        indices = torch.randint(NUM_IMAGES, (batch,), generator=generator).numpy()
        return to_float_images(self.cache.images(indices))


def to_float_images(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, R, R, 3] -> float [n, 3, R, R] in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


class GridIndices(Shapes3DSampler):
    """The same world, whose observations are grid indices [n] instead of images; pair it with GridCodes."""

    def observations(self, factors: np.ndarray) -> np.ndarray:
        return factors_to_index(factors)


class GridCodes:
    """A representation of grid indices that encodes each grid image once, however often the metrics draw it.

    The FactorVAE score alone draws about a million images from the 480,000 of the grid; the codes of an
    image are the same every time (the encoder mean), so they are kept, [480,000, D] float64."""

    def __init__(self, cache: RenderCache, encode: Callable[[torch.Tensor], np.ndarray], batch_size: int = 1024) -> None:
        self.cache, self.encode, self.batch_size = cache, encode, batch_size
        self.codes: np.ndarray | None = None
        self.known = np.zeros(NUM_IMAGES, dtype=np.bool_)

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        missing = np.unique(indices[~self.known[indices]])
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            codes = np.asarray(self.encode(to_float_images(self.cache.images(chunk))), dtype=np.float64)  # [n, D]
            if self.codes is None:
                self.codes = np.zeros((NUM_IMAGES, codes.shape[1]), dtype=np.float64)
            self.codes[chunk] = codes
            self.known[chunk] = True
        assert self.codes is not None, "no index to encode"
        return self.codes[indices]


def grid_representation(cache: RenderCache, encode: Callable[[torch.Tensor], np.ndarray]) -> tuple[GridIndices, Representation]:
    """The metric world and representation for an encoder of grid images, each image encoded once."""
    return GridIndices(cache), GridCodes(cache, encode)
