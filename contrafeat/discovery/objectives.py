"""Training objectives on a navigator: each renders what it needs, compares features, returns loss terms."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from contrafeat.discovery.latentclr import SynthesisBlockFeatures, nt_xent_loss
from contrafeat.discovery.losses import Prototypes, bi_loss, feature_changes, pt_loss, sample_bi_indices, sample_steps
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.reconstructor import Reconstructor
from contrafeat.gan.interface import GeneratorLike


class FeatureSource:
    """Renders of W+ codes and sensor features of them or of given images (kept out of the objectives' state).

    `sensor` is None for objectives that read no sensor features (Recog, LatentCLR on generator features).
    """

    def __init__(self, generator: GeneratorLike, sensor: nn.Module | None, noise_mode: str) -> None:
        self.generator, self.sensor, self.noise_mode = generator, sensor, noise_mode

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] of W+ codes [B, L, C], with the training noise mode."""
        return self.generator.synthesis(ws, noise_mode=self.noise_mode)

    def of_codes(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Features of the images rendered from W+ codes [B, L, C], with the training noise mode."""
        return self.sensor(self.render(ws))

    def of_images(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features of images [B, 3, H, W] in [-1, 1]."""
        return self.sensor(images)


class Objective(nn.Module):
    """A loss on top of the navigator; its own parameters (prototypes, a reconstructor) train alongside.

    `images_per_code` is the number of generator renders per code of the batch (for the images/s log).
    """

    images_per_code: float = 1.0

    def forward(self, ws: torch.Tensor, navigator: Navigator, features: FeatureSource, rng: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class ContrastBi(Objective):
    """The binary contrast: the same edit on two codes agrees, another edit disagrees (2.5 B renders)."""

    images_per_code = 2.5

    def __init__(self, step_scale: float, mask: str, cos_mode: str) -> None:
        super().__init__()
        self.step_scale, self.mask, self.cos_mode = step_scale, mask, cos_mode

    def forward(self, ws: torch.Tensor, navigator: Navigator, features: FeatureSource, rng: torch.Generator) -> dict[str, torch.Tensor]:
        half = ws.shape[0] // 2
        w1, w2 = ws[:half], ws[half : 2 * half]
        i, j, s, s_negative = sample_bi_indices(navigator.num_directions, half, rng, self.step_scale)
        i, j, s, s_negative = (t.to(ws.device) for t in (i, j, s, s_negative))
        with torch.no_grad():
            base = features.of_codes(torch.cat([w1, w2]))
        edited = features.of_codes(torch.cat([navigator.apply(w1, i, s), navigator.apply(w2, i, s), navigator.apply(w2, j, s_negative)]))
        base1 = [f[:half] for f in base]
        base2 = [f[half:] for f in base]
        query = feature_changes([f[:half] for f in edited], base1)
        positive = feature_changes([f[half : 2 * half] for f in edited], base2)
        negative = feature_changes([f[2 * half :] for f in edited], base2)
        return {"contrast": bi_loss(query, positive, negative, mask_mode=self.mask, cos_mode=self.cos_mode)}


class ContrastPt(Objective):
    """The prototype contrast: each direction's change matches its own learned RGB pattern (2 B renders)."""

    images_per_code = 2.0

    def __init__(
        self, num_directions: int, resolution: int, step_scale: float, mask: str, cos_mode: str, seed: int
    ) -> None:
        super().__init__()
        self.prototypes = Prototypes(num_directions, resolution, seed=seed)
        self.step_scale, self.mask, self.cos_mode = step_scale, mask, cos_mode

    def forward(self, ws: torch.Tensor, navigator: Navigator, features: FeatureSource, rng: torch.Generator) -> dict[str, torch.Tensor]:
        batch = ws.shape[0]
        query = torch.randint(navigator.num_directions, (batch,), generator=rng).to(ws.device)
        strength = sample_steps(batch, rng, self.step_scale).to(ws.device)
        mirror = bool(torch.rand((), generator=rng) < 0.5)
        edited = features.of_codes(torch.cat([navigator.apply(ws, query, strength / 2), navigator.apply(ws, query, -strength / 2)]))
        change = feature_changes([f[:batch] for f in edited], [f[batch:] for f in edited])
        prototype_features = features.of_images(self.prototypes.patterns(mirror))
        loss = pt_loss(change, prototype_features, query, mask_mode=self.mask, cos_mode=self.cos_mode)
        return {"contrast": loss}


class LatentCLR(Objective):
    """LatentCLR: every direction on every code; NT-Xent with the same direction on other codes as positives.

    Features come from the generator's first synthesis blocks when `generator` is given, else from the
    sensor. Renders (K + 1) B codes per step.
    """

    def __init__(
        self,
        num_directions: int,
        step_scale: float,
        temperature: float,
        temperature_mode: str,
        cos_mode: str,
        generator: GeneratorLike | None = None,
        noise_mode: str = "random",
    ) -> None:
        super().__init__()
        self.images_per_code = num_directions + 1.0
        self.step_scale, self.temperature, self.temperature_mode, self.cos_mode = step_scale, temperature, temperature_mode, cos_mode
        self.block_features = SynthesisBlockFeatures(generator, noise_mode) if generator is not None else None

    def forward(self, ws: torch.Tensor, navigator: Navigator, features: FeatureSource, rng: torch.Generator) -> dict[str, torch.Tensor]:
        extract = self.block_features.of_codes if self.block_features is not None else features.of_codes
        count, batch = navigator.num_directions, ws.shape[0]
        index = torch.arange(count).repeat_interleave(batch).to(ws.device)
        strength = sample_steps(count * batch, rng, self.step_scale).to(ws.device)
        with torch.no_grad():
            base = extract(ws)
        edited = extract(navigator.apply(ws.repeat(count, 1, 1), index, strength))
        changes = feature_changes(edited, [f.repeat(count, *([1] * (f.ndim - 1))) for f in base])
        loss = sum(
            nt_xent_loss(change.reshape(count, batch, -1), self.temperature, self.temperature_mode, self.cos_mode) for change in changes
        )
        return {"nt_xent": loss}


class Recog(Objective):
    """Voynov & Babenko: a reconstructor sees (G(w), G(w + s edit_k)) and predicts k (cross-entropy) and s (L1).

    The reconstructor trains with the navigator; 2 B renders per step.
    """

    images_per_code = 2.0

    def __init__(self, num_directions: int, step_scale: float, shift_weight: float, width: int, depth: int, seed: int) -> None:
        super().__init__()
        self.reconstructor = Reconstructor(num_directions, width, depth, seed)
        self.step_scale, self.shift_weight = step_scale, shift_weight

    def forward(self, ws: torch.Tensor, navigator: Navigator, features: FeatureSource, rng: torch.Generator) -> dict[str, torch.Tensor]:
        batch = ws.shape[0]
        index = torch.randint(navigator.num_directions, (batch,), generator=rng).to(ws.device)
        strength = sample_steps(batch, rng, self.step_scale).to(ws.device)
        with torch.no_grad():
            images = features.render(ws)
        return self.loss(images, features.render(navigator.apply(ws, index, strength)), index, strength)

    def loss(self, images: torch.Tensor, edited: torch.Tensor, index: torch.Tensor, strength: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy on the direction index and weighted L1 on the step, for image pairs made by edit `index` at `strength`."""
        logits, predicted = self.reconstructor(images, edited)
        return {
            "recognition": F.cross_entropy(logits, index),
            "shift": self.shift_weight * (predicted - strength).abs().mean(),
        }
