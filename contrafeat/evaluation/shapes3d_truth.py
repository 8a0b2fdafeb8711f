"""The shapes3d world as ground truth for the disentanglement metrics and the reference VAEs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from contrafeat.data.shapes3d import FACTOR_SIZES, NUM_IMAGES, factors_to_index
from contrafeat.data.shapes3d_cache import RenderCache
from contrafeat.evaluation.disentanglement import uniform_factors
from contrafeat.gan.interface import GeneratorLike
from contrafeat.paths import cache_dir


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

    def observations(self, factors: np.ndarray) -> torch.Tensor:
        """Images [n, 3, R, R] float in [0, 1] of factor index rows [n, 6]."""
        return to_float_images(self.cache.images(factors_to_index(factors)))

    def sample_batch(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Uniformly drawn grid images [batch, 3, R, R] in [0, 1]: the training data of the reference VAEs."""
        indices = torch.randint(NUM_IMAGES, (batch,), generator=generator).numpy()
        return to_float_images(self.cache.images(indices))


def to_float_images(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, R, R, 3] -> float [n, 3, R, R] in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
