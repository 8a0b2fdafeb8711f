"""Training objectives on a navigator: each renders what it needs, compares features, returns loss terms."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from contrafeat.discovery import distributed
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.latentclr import SynthesisBlockFeatures, latentclr_source, nt_xent_loss
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

if TYPE_CHECKING:
    from contrafeat.discovery.config import DiscoveryConfig

D = TypeVar("D", bound="Draws")


@dataclass(frozen=True)
class Draws:
    """One step's random values of an objective: tensor fields hold one row per unit of the batch, other fields one value per step."""

    def rows(self: D, index: torch.Tensor) -> D:
        """The draws of the units `index` (per-step values as they are)."""
        values = {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)}
        return dataclasses.replace(self, **{name: value[index] for name, value in values.items() if isinstance(value, torch.Tensor)})


@dataclass(frozen=True)
class BiDraws(Draws):
    direction: torch.Tensor  # [U] i, edited on both codes
    other: torch.Tensor  # [U] j != i, the negative's direction
    strength: torch.Tensor  # [U] s
    other_strength: torch.Tensor  # [U] s'


@dataclass(frozen=True)
class PtDraws(Draws):
    direction: torch.Tensor  # [U] q
    strength: torch.Tensor  # [U] s, edited by +s/2 and -s/2
    mirror: bool  # the prototypes of this step are mirrored


@dataclass(frozen=True)
class StrengthDraws(Draws):
    strength: torch.Tensor  # [U, K]: every direction on every code


@dataclass(frozen=True)
class RecogDraws(Draws):
    direction: torch.Tensor  # [U] k
    strength: torch.Tensor  # [U] s


@dataclass(frozen=True)
class Share:
    """This rank's part of one step's batch: micro-batches of unit indices out of `total` units, and how to back-propagate.

    `scale` is the gradient scaler's scale (identity unless fp16); `runtime` gathers what a coupled loss needs from the other ranks.
    """

    batches: list[torch.Tensor]
    total: int
    runtime: Runtime
    scale: Callable[[torch.Tensor], torch.Tensor]

    @property
    def split(self) -> bool:
        """Whether the step's batch is shared by ranks or cut into micro-batches."""
        return self.runtime.distributed or len(self.batches) > 1

    def weight(self, index: torch.Tensor) -> float:
        return len(index) / self.total


Terms = dict[str, torch.Tensor]

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


OBJECTIVES: dict[str, type[Objective]] = {}
"""The Objective class of each objective name of the registry (filled by `class X(Objective, objective="name")`)."""


class Objective(nn.Module):
    """A loss on top of the navigator; its own parameters (prototypes, a reconstructor) train alongside.

    A batch of codes is arranged in units of `codes_per_unit` codes (Bi: a pair w1, w2); `draw` makes every
    random value of a step for all units at once, and `compute` takes any subset of units with their rows of
    the draws. Each loss term is a mean over units (except in a CoupledObjective), so a batch split into shares
    (ranks, micro-batches) gives the full batch's loss as the share-size-weighted sum of the shares' losses;
    `backward` is where an objective says how its share of a step is back-propagated.
    `render_count` (the registry's) counts the generator renders of one unit.
    """

    codes_per_unit: ClassVar[int] = 1
    render_count: ClassVar[RenderCount]

    def __init_subclass__(cls, objective: str | None = None, **kwargs: object) -> None:
        """`class X(Objective, objective="bi")` takes the unit size and render count of the registry's entry and
        is what `build` makes for that objective."""
        super().__init_subclass__(**kwargs)
        if objective is not None:
            cls.render_count = RENDER_COUNTS[objective]
            cls.codes_per_unit = cls.render_count.codes_per_unit
            OBJECTIVES[objective] = cls

    @classmethod
    def from_config(cls, config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
        """The objective with the run's settings."""
        raise NotImplementedError

    def own_optimisers(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        """Parameters trained by an Adam of their own, not the navigator's: name -> (parameters, learning rate)."""
        return {}

    def images(self) -> dict[str, torch.Tensor]:
        """Images the objective learned, [N, 3, H, W] in [-1, 1], by the file name a run folder keeps them under."""
        return {}

    def units(self, ws: torch.Tensor) -> torch.Tensor:
        """Codes [B, L, C] -> units [B // c, c, L, C]; unit u holds codes u, u + B//c, ... (c = codes_per_unit)."""
        count = ws.shape[0] // self.codes_per_unit
        return ws[: count * self.codes_per_unit].unflatten(0, (self.codes_per_unit, count)).transpose(0, 1)

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> Draws:
        raise NotImplementedError

    def compute(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> Terms:
        raise NotImplementedError

    def backward(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, share: Share) -> Terms:
        """Back-propagate this rank's share of a step (each micro-batch's loss weighted by its share of the units); the
        weighted loss terms, summed over the share."""
        return self.accumulate(units, draws, share, lambda part, rows: self.compute(part, rows, navigator, features))

    @staticmethod
    def accumulate(units: torch.Tensor, draws: Draws, share: Share, loss: Callable[[torch.Tensor, Draws], Terms]) -> Terms:
        """Backward of `loss` on each micro-batch, weighted by its share of the units; the weighted terms, summed."""
        totals: Terms = {}
        for index in share.batches:
            terms = loss(units[index], draws.rows(index))
            weight = share.weight(index)
            share.scale(weight * tensor_sum(terms.values())).backward()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0) + weight * value.detach()
        return totals

    def validation_terms(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> Terms:
        """The loss terms of fixed units and draws, with whatever else tells how training goes (a contrast: per-stage similarities)."""
        return self.compute(units, draws, navigator, features)

    def forward(self, ws: torch.Tensor, navigator: Navigator, features: FeatureSource, rng: torch.Generator) -> Terms:
        """The loss terms of a whole batch of codes [B, L, C]."""
        units = self.units(ws)
        return self.compute(units, self.draw(units.shape[0], navigator.num_directions, rng), navigator, features)


class Contrast(Objective):
    """A contrast objective: per feature stage, each edit's similarity to its positive and to its negatives."""

    def similarities(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per stage, the similarity to the positive and to the negative(s), each [U]."""
        raise NotImplementedError

    def compute(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> Terms:
        return {"contrast": contrast_of(self.similarities(units, draws, navigator, features))}

    def validation_terms(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> Terms:
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

    @classmethod
    def from_config(cls, config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
        return cls(config.strength_range, config.mask, config.cos_mode)

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> BiDraws:
        return BiDraws(*sample_bi_indices(num_directions, units, rng, self.strength_range))

    def similarities(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> list[tuple[torch.Tensor, torch.Tensor]]:
        assert isinstance(draws, BiDraws)  # made by draw()
        half = units.shape[0]
        w1, w2 = units[:, 0], units[:, 1]
        i, j, s, s_negative = (value.to(units.device) for value in (draws.direction, draws.other, draws.strength, draws.other_strength))
        with torch.no_grad():
            base = features.of_codes(torch.cat([w1, w2]))
        edited = features.of_codes(torch.cat([navigator.apply_to(w1, i, s), navigator.apply_to(w2, i, s), navigator.apply_to(w2, j, s_negative)]))
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

    @classmethod
    def from_config(cls, config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
        return cls(config.num_directions, generator.img_resolution, config.strength_range, config.mask, config.cos_mode, seed=config.seed)

    def images(self) -> dict[str, torch.Tensor]:
        return {"prototypes.png": self.prototypes.patterns(False)}

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> PtDraws:
        query = torch.randint(num_directions, (units,), generator=rng)
        strength = sample_strengths(units, rng, self.strength_range)
        return PtDraws(query, strength, bool(torch.rand((), generator=rng) < 0.5))

    def similarities(
        self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, prototype_stages: Sequence[torch.Tensor] = ()
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`prototype_stages`: the prototypes' features [K, ...] per stage when made once for a split step; else they
        go through the sensor with the renders."""
        assert isinstance(draws, PtDraws)  # made by draw()
        ws, batch = units[:, 0], units.shape[0]
        query, strength = draws.direction.to(ws.device), draws.strength.to(ws.device)
        images = features.render(torch.cat([navigator.apply_to(ws, query, strength / 2), navigator.apply_to(ws, query, -strength / 2)]))
        if prototype_stages:
            stages = features.of_images(images)
        else:  # one sensor pass over the 2B renders and the K prototypes: [2B + K, ...] per stage
            both = features.of_images(torch.cat([images, self.prototypes.patterns(draws.mirror)]))
            stages, prototype_stages = [f[: 2 * batch] for f in both], [f[2 * batch :] for f in both]
        change = feature_changes([f[:batch] for f in stages], [f[batch:] for f in stages])
        return pt_similarities(change, list(prototype_stages), query, mask_mode=self.mask, cos_mode=self.cos_mode)

    def backward(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, share: Share) -> Terms:
        """Over several micro-batches the prototypes go through the sensor once: each micro-batch reads their features as
        leaves whose gradients add up, and one backward through them at the end carries that sum on."""
        if len(share.batches) == 1:
            return super().backward(units, draws, navigator, features, share)
        assert isinstance(draws, PtDraws)  # made by draw()
        shared = features.of_images(self.prototypes.patterns(draws.mirror))
        leaves = [stage.detach().requires_grad_(True) for stage in shared]
        totals = self.accumulate(
            units, draws, share, lambda part, rows: {"contrast": contrast_of(self.similarities(part, rows, navigator, features, leaves))}
        )
        torch.autograd.backward(shared, [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves])
        return totals


def random_state(device: torch.device) -> list[torch.Tensor]:
    """The torch RNG states that feed synthesis noise on `device` (CPU, plus the CUDA device's)."""
    return [torch.get_rng_state()] + ([torch.cuda.get_rng_state(device)] if device.type == "cuda" else [])


def set_random_state(state: list[torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


class CoupledObjective(Objective):
    """An objective whose loss couples every code of the batch: per-code feature changes, then one loss over all of them.

    A split batch (ranks, micro-batches) is trained by caching the loss gradient: the changes of every share
    are computed without autograd and gathered, the loss and its gradient with respect to the changes are
    computed on the whole batch, and each share's changes are computed again with autograd (the synthesis
    noise replayed) and back-propagated with their slice of that gradient. The parameters' gradients equal the
    whole batch's, up to float rounding. A split batch is thus rendered twice; `render_count` counts the
    method's renders, once.
    """

    def changes(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> list[torch.Tensor]:
        """Per feature stage, the changes [K, U, D] of the given units (unit order kept along dim 1)."""
        raise NotImplementedError

    def loss_of_changes(self, changes: list[torch.Tensor]) -> Terms:
        raise NotImplementedError

    def compute(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> Terms:
        return self.loss_of_changes(self.changes(units, draws, navigator, features))

    def backward(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource, share: Share) -> Terms:
        if not share.split:
            return super().backward(units, draws, navigator, features, share)
        device = share.runtime.device
        states, pieces = [], []
        with torch.no_grad():
            for index in share.batches:
                states.append(random_state(device))
                pieces.append(self.changes(units[index], draws.rows(index), navigator, features))
        after = random_state(device)
        whole = [torch.cat(stage, dim=1) for stage in zip(*pieces)]  # per stage [K, U_share, D]
        del pieces
        if share.runtime.distributed:
            gathered = distributed.all_gather_objects([stage.cpu() for stage in whole], share.runtime)
            whole = [torch.cat(stage, dim=1).to(device) for stage in zip(*gathered)]  # per stage [K, U, D]
        whole = [stage.requires_grad_(True) for stage in whole]
        terms = self.loss_of_changes(whole)
        share.scale(tensor_sum(terms.values())).backward()
        gradients = []
        for stage in whole:
            assert stage.grad is not None  # every stage is a leaf of the loss just back-propagated
            gradients.append(stage.grad)
        start = int(share.batches[0][0])
        position = start
        for index, state in zip(share.batches, states):
            set_random_state(state, device)
            changes = self.changes(units[index], draws.rows(index), navigator, features)
            torch.autograd.backward(changes, [gradient[:, position : position + len(index)] for gradient in gradients])
            position += len(index)
        set_random_state(after, device)
        weight = (position - start) / share.total
        return {name: weight * value.detach() for name, value in terms.items()}


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

    @classmethod
    def from_config(cls, config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
        source = generator if latentclr_source(config, generator) == "generator" else None
        return cls(
            config.num_directions,
            config.strength_range,
            config.latentclr_temperature,
            config.latentclr_temperature_mode,
            config.cos_mode,
            source,
            config.noise_mode,
        )

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> StrengthDraws:
        """Strengths [U, K] of every direction on every code (drawn direction-major, as the reference code)."""
        return StrengthDraws(sample_strengths(num_directions * units, rng, self.strength_range).view(num_directions, units).T)

    def changes(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> list[torch.Tensor]:
        assert isinstance(draws, StrengthDraws)  # made by draw()
        extract = self.block_features.of_codes if self.block_features is not None else features.of_codes
        ws, count, batch = units[:, 0], navigator.num_directions, units.shape[0]
        index = torch.arange(count).repeat_interleave(batch).to(ws.device)
        strength = draws.strength.T.reshape(-1).to(ws.device)
        with torch.no_grad():
            base = extract(ws)
        edited = extract(navigator.apply_to(ws.repeat(count, 1, 1), index, strength))
        changes = feature_changes(edited, [f.repeat(count, *([1] * (f.ndim - 1))) for f in base])
        return [change.reshape(count, batch, -1) for change in changes]

    def loss_of_changes(self, changes: list[torch.Tensor]) -> Terms:
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

    @classmethod
    def from_config(cls, config: DiscoveryConfig, generator: GeneratorLike) -> Objective:
        return cls(
            config.num_directions, config.strength_range, config.recog_strength_weight, config.recog_width, config.recog_depth, config.seed, config.recog_lr
        )

    def own_optimisers(self) -> dict[str, tuple[list[nn.Parameter], float]]:
        return {"reconstructor": (list(self.reconstructor.parameters()), self.lr)}

    def draw(self, units: int, num_directions: int, rng: torch.Generator) -> RecogDraws:
        """Index k uniform and strength s ~ U(-1, 1) * strength_range with |s| raised to MIN_STRENGTH_FRACTION * strength_range.

        As the reference's `make_shifts`: a near-zero strength barely changes the image, so neither its direction
        nor its sign could be told from the pair.
        """
        index = torch.randint(num_directions, (units,), generator=rng)
        return RecogDraws(index, sample_strengths(units, rng, self.strength_range, min_magnitude=MIN_STRENGTH_FRACTION * self.strength_range))

    def compute(self, units: torch.Tensor, draws: Draws, navigator: Navigator, features: FeatureSource) -> Terms:
        assert isinstance(draws, RecogDraws)  # made by draw()
        ws = units[:, 0]
        index, strength = draws.direction.to(ws.device), draws.strength.to(ws.device)
        with torch.no_grad():
            images = features.render(ws)
        return self.loss(images, features.render(navigator.apply_to(ws, index, strength)), index, strength)

    def loss(self, images: torch.Tensor, edited: torch.Tensor, index: torch.Tensor, strength: torch.Tensor) -> Terms:
        """Cross-entropy on the direction index and weighted L1 on the strength, for image pairs made by edit `index` at `strength`."""
        logits, predicted = self.reconstructor(images, edited)
        return {
            "recognition": F.cross_entropy(logits, index),
            "strength": self.strength_weight * (predicted - strength).abs().mean(),
        }


def build_objective(config: DiscoveryConfig, generator: GeneratorLike) -> Objective | None:
    """The loss the run's method trains with (the class its plan names); None for methods with nothing to train."""
    name = config.plan().objective
    return None if name is None else OBJECTIVES[name].from_config(config, generator)
