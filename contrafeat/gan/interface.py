"""The generator interface every part of the project relies on (StyleGAN2 and shapes3d alike), and the W-code
arithmetic all generators share: RMS normalisation, truncation towards w_avg, broadcast to W+."""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence, TypeGuard, TypeVar, runtime_checkable

import torch

T = TypeVar("T")


@runtime_checkable
class GeneratorLike(Protocol):
    """A StyleGAN2-style generator: z -> w (mapping), W+ codes [B, num_ws, w_dim] -> images in [-1, 1]."""

    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int

    @property
    def discriminator(self) -> torch.nn.Module | None:
        """The checkpoint's discriminator, if it came with one (read-only here: each generator narrows its type)."""
        ...

    @property
    def w_avg(self) -> torch.Tensor:
        """The average w [w_dim] that truncation lerps towards (a buffer)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Weights and buffers by name (every generator is a torch.nn.Module; `generator_identity` digests them)."""
        ...

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """Map latents z [B, z_dim] to w [B, w_dim], lerped towards w_avg by truncation_psi."""
        ...

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, w_dim] -> W+ [B, num_ws, w_dim]."""
        ...

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """W+ codes lerped towards w_avg by psi (the first `cutoff` layers)."""
        ...

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Render W+ codes [B, num_ws, w_dim] to images [B, img_channels, R, R] in about [-1, 1]."""
        ...


class StyleAffineGenerator(GeneratorLike, Protocol):
    """A generator that reports the style-affine matrices reading each W+ layer (StyleGAN2 and both shapes3d worlds)."""

    def style_affine_weights(self) -> list[torch.Tensor]:
        """Per style-consuming layer, in w order, its affine matrix [C_l, w_dim] from w to that layer's styles."""
        ...


class FactorWorld(GeneratorLike, Protocol):
    """A generator that renders the procedural 3DShapes world and knows the factors of what it renders (both shapes3d worlds)."""

    @property
    def factor_names(self) -> Sequence[str]:
        """The six factors: floor, wall and object hue, scale, shape, orientation."""
        ...

    def levels(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> factor levels [B, 6] in (0, 1)."""
        ...

    def factors(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ codes [B, num_ws, w_dim] -> factor values [B, 6]."""
        ...


class TrueEditWorld(FactorWorld, Protocol):
    """A shapes3d world that also knows its exact per-factor edits (the linear world)."""

    def true_edits(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per factor: (direction [w_dim], layer weights [num_ws])."""
        ...


class MeasurableWorld(FactorWorld, StyleAffineGenerator, Protocol):
    """A shapes3d world with its style-affine matrices (both embedded worlds): what `world_properties.measure` reads."""


def has_style_affine_weights(generator: object) -> TypeGuard[StyleAffineGenerator]:
    """Whether the generator reports its style-affine matrices (`style_affine_weights()`): every built-in one does."""
    return callable(getattr(generator, "style_affine_weights", None))


def has_factors(generator: object) -> TypeGuard[FactorWorld]:
    """Whether the generator renders the procedural 3DShapes world and knows the factor values of what it renders
    (`factors(ws)`): both embedded shapes3d worlds do."""
    return callable(getattr(generator, "factors", None))


def has_true_edits(generator: object) -> TypeGuard[TrueEditWorld]:
    """Whether the generator knows its exact per-factor edits (`true_edits()`) and factor values (`factors(ws)`)."""
    return callable(getattr(generator, "true_edits", None)) and callable(getattr(generator, "factors", None))


def last(items: Iterable[T]) -> T:
    """The last item of an iterable, holding no earlier one (a generator's earlier blocks are freed as it runs)."""
    return deque(items, maxlen=1)[0]


def rms_normalise(x: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) along `dim` (StyleGAN's normalize_2nd_moment): RMS 1, L2 norm sqrt(n)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def toward_average(w_avg: torch.Tensor, w: torch.Tensor, psi: float) -> torch.Tensor:
    """Truncation: w lerped towards w_avg by psi (w itself, exactly, at psi 1)."""
    return w if psi == 1 else w_avg.lerp(w, psi)


@torch.no_grad()
def seeded_codes(generator: GeneratorLike, count: int, seed: int, truncation_psi: float = 1.0) -> torch.Tensor:
    """W+ codes [N, L, C] of `count` seeded samples: z from torch.Generator().manual_seed(seed), mapped with
    truncation psi, the same w on every layer."""
    z = torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    return generator.broadcast(generator.mapping(z.to(generator.w_avg.device), truncation_psi=truncation_psi))


class WPlusCodes:
    """Broadcast and truncation of W+ codes for a generator with `num_ws` and `w_avg` (StyleGAN2 semantics)."""

    num_ws: int

    if TYPE_CHECKING:  # a buffer or a read-only property in the generators; no class attribute at run time (register_buffer)

        @property
        def w_avg(self) -> torch.Tensor: ...

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, w_dim] -> W+ [B, num_ws, w_dim] (the same w for every layer)."""
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """Lerp the first `cutoff` layers (all when None) of W+ codes towards w_avg by psi."""
        cutoff = self.num_ws if cutoff is None else cutoff
        return torch.cat([toward_average(self.w_avg, ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)
