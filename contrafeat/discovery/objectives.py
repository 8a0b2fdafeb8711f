"""Training objectives on a navigator: each renders what it needs, compares features, returns loss terms."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from contrafeat.discovery.latentclr import SynthesisBlockFeatures, nt_xent_loss
from contrafeat.discovery.losses import (
    Prototypes,
    bi_similarities,
    contrast_of,
    feature_changes,
    pt_similarities,
    sample_bi_indices,
    sample_strengths,
    tensor_sum,
)
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.precision import autocast
from contrafeat.discovery.reconstructor import Reconstructor
from contrafeat.discovery.registry import RENDER_COUNTS, RenderCount
from contrafeat.gan.interface import GeneratorLike

Draws = dict[str, torch.Tensor]
"""One step's random values: tensors [U, ...] hold one row per unit of the batch, 0-d tensors one value per step."""

MIN_STRENGTH_FRACTION = 0.5 / 6.0
"""Recog's smallest |strength| as a fraction of the strength range: the reference's min_shift 0.5 of shift_scale 6."""


class FeatureSource:
    """Renders of W+ codes and sensor features of them or of given images (kept out of the objectives' state).

    `sensor` is None for objectives that read no sensor features (Recog, LatentCLR on generator features).
    Both forward passes run under the autocast of `precision` (see `contrafeat.discovery.precision`); what
    they return is float32, so the losses never see reduced precision.
    """

    def __init__(
        self,
        generator: GeneratorLike,
        sensor: nn.Module | None,
        noise_mode: str,
        precision: str = "fp32",
        channels_last: bool = False,
    ) -> None:
        self.generator, self.sensor, self.noise_mode = generator, sensor, noise_mode
        self.precision, self.channels_last = precision, channels_last

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] of W+ codes [B, L, C], with the training noise mode."""
        with autocast(self.precision, ws.device):
            return self.generator.synthesis(ws, noise_mode=self.noise_mode).float()

    def of_codes(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """Features of the images rendered from W+ codes [B, L, C], with the training noise mode."""
        return self.of_images(self.render(ws))

    def of_images(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features of images [B, 3, H, W] in [-1, 1]."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sensor = self.sensor
        assert sensor is not None, "this objective reads no sensor features"
        with autocast(self.precision, images.device):
            return [features.float() for features in sensor(images)]


class Objective(nn.Module):
    """A loss on top of the navigator; its own parameters (prototypes, a reconstructor) train alongside.

    A batch of codes is arranged in units of `codes_per_unit` codes (Bi: a pair w1, w2); `draw` makes every
    random value of a step for all units at once, and `compute` takes any subset of units with their rows of
    the draws. Each loss term is a mean over units (except in a CoupledObjective), so a batch split into shares
    (ranks, micro-batches) gives the full batch's loss as the share-size-weighted sum of the shares' losses.
    `render_count` (the registry's) counts the generator renders of one unit; runs are compared by renders,
    since methods render very different numbers of images per step.
    """

    codes_per_unit: int = 1
    render_count: RenderCount

    def __init_subclass__(cls, objective: str | None = None, **kwargs: object) -> None:
        """`class X(Objective, objective="bi")` takes the unit size and render count of the registry's entry."""
        super().__init_subclass__(**kwargs)
        if objective is not None:
            cls.render_count = RENDER_COUNTS[objective]
            cls.codes_per_unit = cls.render_count.codes_per_unit

    @classmethod
    def renders_per_batch(cls, num_directions: int, batch_size: int) -> int:
        """Generator renders of one step on `batch_size` codes (codes beyond whole units are not used)."""
        return cls.render_count.per_batch(num_directions, batch_size)

    def own_optimisers(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        """Parameters trained by an Adam of their own, not the navigator's: name -> (parameters, learning rate)."""
        return {}

    def units(self, ws: torch.Tensor) -> torch.Tensor:
        """Codes [B, L, C] -> units [B // c, c, L, C]; unit u holds codes u, u + B//c, ... (c = codes_per_unit)."""
        count = ws.shape[0] // self.codes_per_unit
        return ws[: count * self.codes_per_unit].unflatten(0, (self.codes_per_unit, count)).transpose(0, 1)

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> Draws:
        raise NotImplementedError

    def shared_inputs(self, draws: Draws, features: FeatureSource) -> list[torch.Tensor]:
        """What every share of a step's batch reads alike, computed once per step with autograd (Pt: the
        prototypes' features); `compute` takes them as `shared` ([] for most objectives, which then ignore it)."""
        return []

    def compute(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, shared: Sequence[torch.Tensor] = ()
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def validation_terms(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> dict[str, torch.Tensor]:
        """The loss terms of fixed units and draws, with whatever else tells how training goes (a contrast: per-stage similarities)."""
        return self.compute(units, draws, navigator, features)

    def forward(self, ws: torch.Tensor, navigator: Navigator, features: FeatureSource, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """The loss terms of a whole batch of codes [B, L, C]."""
        units = self.units(ws)
        return self.compute(units, self.draw(units.shape[0], navigator.num_directions, rng), navigator, features)


class Contrast(Objective):
    """A contrast objective: per feature stage, each edit's similarity to its positive and to its negatives."""

    def similarities(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, shared: Sequence[torch.Tensor] = ()
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per stage, the similarity to the positive and to the negative(s), each [U]."""
        raise NotImplementedError

    def compute(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, shared: Sequence[torch.Tensor] = ()
    ) -> dict[str, torch.Tensor]:
        return {"contrast": contrast_of(self.similarities(units, draws, navigator, features, shared))}

    def validation_terms(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> dict[str, torch.Tensor]:
        """The contrast and, per stage l, the mean similarity to the positive (`positive_l`) and to the negatives (`negative_l`)."""
        stages = self.similarities(units, draws, navigator, features)
        terms = {"contrast": contrast_of(stages)}
        for stage, (positive, negative) in enumerate(stages):
            terms[f"positive_{stage}"], terms[f"negative_{stage}"] = positive.mean(), negative.mean()
        return terms


class ContrastBi(Contrast, objective="bi"):
    """The binary contrast: the same edit on two codes agrees, another edit disagrees (2.5 B renders)."""

    def __init__(self, strength_range: float, mask: str, cos_mode: str) -> None:
        super().__init__()
        self.strength_range, self.mask, self.cos_mode = strength_range, mask, cos_mode

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> Draws:
        i, j, s, s_negative = sample_bi_indices(num_directions, units, rng, self.strength_range)
        return {"i": i, "j": j, "s": s, "s_negative": s_negative}

    def similarities(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, shared: Sequence[torch.Tensor] = ()
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        half = units.shape[0]
        w1, w2 = units[:, 0], units[:, 1]
        i, j, s, s_negative = (draws[name].to(units.device) for name in ("i", "j", "s", "s_negative"))
        with torch.no_grad():
            base = features.of_codes(torch.cat([w1, w2]))
        edited = features.of_codes(torch.cat([navigator.apply(w1, i, s), navigator.apply(w2, i, s), navigator.apply(w2, j, s_negative)]))
        base1 = [f[:half] for f in base]
        base2 = [f[half:] for f in base]
        query = feature_changes([f[:half] for f in edited], base1)
        positive = feature_changes([f[half : 2 * half] for f in edited], base2)
        negative = feature_changes([f[2 * half :] for f in edited], base2)
        return bi_similarities(query, positive, negative, mask_mode=self.mask, cos_mode=self.cos_mode)


class ContrastPt(Contrast, objective="pt"):
    """The prototype contrast: each direction's change matches its own learned RGB pattern (2 B renders)."""

    def __init__(
        self, num_directions: int, resolution: int, strength_range: float, mask: str, cos_mode: str, seed: int
    ) -> None:
        super().__init__()
        self.prototypes = Prototypes(num_directions, resolution, seed=seed)
        self.strength_range, self.mask, self.cos_mode = strength_range, mask, cos_mode

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> Draws:
        query = torch.randint(num_directions, (units,), generator=rng)
        strength = sample_strengths(units, rng, self.strength_range)
        return {"query": query, "strength": strength, "mirror": torch.rand((), generator=rng) < 0.5}

    def similarities(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, shared: Sequence[torch.Tensor] = ()
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ws, batch = units[:, 0], units.shape[0]
        query, strength = draws["query"].to(ws.device), draws["strength"].to(ws.device)
        images = features.render(torch.cat([navigator.apply(ws, query, strength / 2), navigator.apply(ws, query, -strength / 2)]))
        if shared:  # a split batch: the prototypes' features [K, ...] per stage, made once for the step
            stages, prototype_stages = features.of_images(images), list(shared)
        else:  # one sensor pass over the 2B renders and the K prototypes: [2B + K, ...] per stage
            both = features.of_images(torch.cat([images, self.prototypes.patterns(bool(draws["mirror"]))]))
            stages, prototype_stages = [f[: 2 * batch] for f in both], [f[2 * batch :] for f in both]
        change = feature_changes([f[:batch] for f in stages], [f[batch:] for f in stages])
        return pt_similarities(change, prototype_stages, query, mask_mode=self.mask, cos_mode=self.cos_mode)

    def shared_inputs(self, draws: Draws, features: FeatureSource) -> list[torch.Tensor]:
        """The K prototypes' features, so that a batch cut into micro-batches passes them through the sensor once."""
        return features.of_images(self.prototypes.patterns(bool(draws["mirror"])))


class CoupledObjective(Objective):
    """An objective whose loss couples every code of the batch: per-code feature changes, then one loss over all of them.

    A split batch (ranks, micro-batches) is trained by caching the loss gradient: the changes of every share
    are computed without autograd and gathered, the loss and its gradient with respect to the changes are
    computed on the whole batch, and each share's changes are computed again with autograd and back-propagated
    with their slice of that gradient. The parameters' gradients equal the whole batch's, up to float rounding.
    A split batch is thus rendered twice; `render_count` counts the method's renders, once.
    """

    def changes(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> list[torch.Tensor]:
        """Per feature stage, the changes [K, U, D] of the given units (unit order kept along dim 1)."""
        raise NotImplementedError

    def loss_of_changes(self, changes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def compute(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, shared: Sequence[torch.Tensor] = ()
    ) -> dict[str, torch.Tensor]:
        return self.loss_of_changes(self.changes(units, draws, navigator, features))


class LatentCLR(CoupledObjective, objective="latentclr"):
    """LatentCLR: every direction on every code; NT-Xent with the same direction on other codes as positives.

    Features come from the generator's first synthesis blocks when `generator` is given, else from the
    sensor. Renders (K + 1) B codes per step (on generator features, passes through the first blocks only).
    """

    def __init__(
        self,
        num_directions: int,
        strength_range: float,
        temperature: float,
        temperature_mode: str,
        cos_mode: str,
        generator: GeneratorLike | None = None,
        noise_mode: str = "random",
    ) -> None:
        super().__init__()
        self.strength_range, self.temperature, self.temperature_mode, self.cos_mode = strength_range, temperature, temperature_mode, cos_mode
        self.block_features = SynthesisBlockFeatures(generator, noise_mode) if generator is not None else None

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> Draws:
        """Strengths [U, K] of every direction on every code (drawn direction-major, as the reference code)."""
        return {"strength": sample_strengths(num_directions * units, rng, self.strength_range).view(num_directions, units).T}

    def changes(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> list[torch.Tensor]:
        extract = self.block_features.of_codes if self.block_features is not None else features.of_codes
        ws, count, batch = units[:, 0], navigator.num_directions, units.shape[0]
        index = torch.arange(count).repeat_interleave(batch).to(ws.device)
        strength = draws["strength"].T.reshape(-1).to(ws.device)
        with torch.no_grad():
            base = extract(ws)
        edited = extract(navigator.apply(ws.repeat(count, 1, 1), index, strength))
        changes = feature_changes(edited, [f.repeat(count, *([1] * (f.ndim - 1))) for f in base])
        return [change.reshape(count, batch, -1) for change in changes]

    def loss_of_changes(self, changes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"nt_xent": tensor_sum(nt_xent_loss(change, self.temperature, self.temperature_mode, self.cos_mode) for change in changes)}


class Recog(Objective, objective="recog"):
    """Voynov & Babenko: a reconstructor sees (G(w), G(w + s edit_k)) and predicts k (cross-entropy) and s (L1).

    The reconstructor trains alongside the navigator with an Adam of its own at learning rate `lr`, as the
    reference code (anvoynov/GANLatentDiscovery) trains its deformator and reconstructor; 2 B renders per step.
    """

    def __init__(self, num_directions: int, strength_range: float, strength_weight: float, width: int, depth: int, seed: int, lr: float) -> None:
        super().__init__()
        self.reconstructor = Reconstructor(num_directions, width, depth, seed)
        self.strength_range, self.strength_weight, self.lr = strength_range, strength_weight, lr

    def own_optimisers(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"reconstructor": (list(self.reconstructor.parameters()), self.lr)}

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> Draws:
        """Index k uniform and strength s ~ U(-1, 1) * strength_range with |s| raised to MIN_STRENGTH_FRACTION * strength_range.

        As the reference's `make_shifts`: a near-zero strength barely changes the image, so neither its direction
        nor its sign could be told from the pair.
        """
        index = torch.randint(num_directions, (units,), generator=rng)
        return {"index": index, "strength": sample_strengths(units, rng, self.strength_range, min_magnitude=MIN_STRENGTH_FRACTION * self.strength_range)}

    def compute(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, shared: Sequence[torch.Tensor] = ()
    ) -> dict[str, torch.Tensor]:
        ws = units[:, 0]
        index, strength = draws["index"].to(ws.device), draws["strength"].to(ws.device)
        with torch.no_grad():
            images = features.render(ws)
        return self.loss(images, features.render(navigator.apply(ws, index, strength)), index, strength)

    def loss(self, images: torch.Tensor, edited: torch.Tensor, index: torch.Tensor, strength: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy on the direction index and weighted L1 on the strength, for image pairs made by edit `index` at `strength`."""
        logits, predicted = self.reconstructor(images, edited)
        return {
            "recognition": F.cross_entropy(logits, index),
            "strength": self.strength_weight * (predicted - strength).abs().mean(),
        }
