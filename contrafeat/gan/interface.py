"""The generator interface every part of the project relies on (StyleGAN2 and shapes3d alike)."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class GeneratorLike(Protocol):
    """A StyleGAN2-style generator: z -> w (mapping), W+ codes [B, num_ws, w_dim] -> images in [-1, 1]."""

    z_dim: int
    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int
    w_avg: torch.Tensor
    discriminator: torch.nn.Module | None

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        """Map latents z [B, z_dim] to w [B, w_dim], lerped towards w_avg by truncation_psi."""
        ...

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """Render W+ codes [B, num_ws, w_dim] to images [B, img_channels, R, R] in about [-1, 1]."""
        ...


def has_factors(generator: object) -> bool:
    """Whether the generator renders the procedural 3DShapes world and knows the factor values of what it renders
    (`factors(ws)`): both embedded shapes3d worlds do."""
    return callable(getattr(generator, "factors", None))


def has_true_edits(generator: object) -> bool:
    """Whether the generator knows its exact per-factor edits (`true_edits()`) and factor values (`factors(ws)`)."""
    return callable(getattr(generator, "true_edits", None)) and callable(getattr(generator, "factors", None))


class WPlusCodes:
    """Broadcast and truncation of W+ codes for a generator with `num_ws` and `w_avg` (StyleGAN2 semantics)."""

    num_ws: int
    w_avg: torch.Tensor

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, w_dim] -> W+ [B, num_ws, w_dim] (the same w for every layer)."""
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def truncate(self, ws: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """Lerp the first `cutoff` layers (all when None) of W+ codes towards w_avg by psi."""
        if psi == 1:
            return ws
        cutoff = self.num_ws if cutoff is None else cutoff
        return torch.cat([self.w_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)
