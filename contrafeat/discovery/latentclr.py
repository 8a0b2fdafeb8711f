"""LatentCLR's pieces: the NT-Xent loss over feature changes and the generator's early block features.

NT-Xent as the reference code (catlab-team/latentclr, `colat/loss.py`, ContrastiveLoss with its default
`reduce: mean`) computes it: K directions applied to B codes give K*B change vectors; for each one, the
same direction on the other B - 1 codes are the positives and the (K - 1) B changes of the other directions
the negatives; loss = -log(mean_pos exp(t(sim)) / mean_neg exp(t(sim))), mean over the K*B anchors, so the
denominator holds the negatives alone. sim = |cos| (or cos^2) and t(sim) = sim * temperature (`multiply`,
what the reference code does: temperature 0.5 there is a conventional temperature of 2) or sim / temperature
(`divide`, textbook). (The reference's `reduce: sum` differs by the constant log((K - 1) B / (B - 1)).)
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator, Protocol, TypeGuard

import torch
import torch.nn.functional as F

from contrafeat.discovery.losses import COS_EPS
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike

TEMPERATURE_MODES = ("multiply", "divide")
GENERATOR_BLOCKS = 3
"""LatentCLR's generator features are read after this many synthesis blocks (the authors' `vart_g`)."""


def nt_xent_loss(changes: torch.Tensor, temperature: float = 0.5, temperature_mode: str = "multiply", cos_mode: str = "abs") -> torch.Tensor:
    """NT-Xent over changes [K, B, D] (direction k applied to code b): -log(mean_pos / mean_neg), mean over the K*B anchors."""
    if temperature_mode not in TEMPERATURE_MODES:
        raise ValueError(f"temperature mode {temperature_mode!r}: expected one of {', '.join(TEMPERATURE_MODES)}")
    count, batch = changes.shape[:2]
    if count < 2 or batch < 2:
        raise ValueError(f"changes of {count} direction(s) on {batch} code(s): NT-Xent needs at least 2 of each")
    units = F.normalize(changes.flatten(0, 1).flatten(1), dim=1, eps=COS_EPS)  # [K*B, D]
    cos = units @ units.T  # [K*B, K*B]
    similarity = cos.square() if cos_mode == "squared" else cos.abs()
    logits = similarity * temperature if temperature_mode == "multiply" else similarity / temperature
    labels = torch.arange(count, device=changes.device).repeat_interleave(batch)  # [K*B], direction-major as the reference
    same = labels[:, None] == labels[None, :]  # [K*B, K*B]: the blocks of one direction
    itself = torch.eye(count * batch, dtype=torch.bool, device=changes.device)
    positives = torch.logsumexp(logits.masked_fill(~same | itself, float("-inf")), dim=1) - math.log(batch - 1)  # [K*B]
    negatives = torch.logsumexp(logits.masked_fill(same, float("-inf")), dim=1) - math.log((count - 1) * batch)  # [K*B]
    return (negatives - positives).mean()


class BlockSynthesis(Protocol):
    """A synthesis network that runs block by block (StyleGAN2's and shapes3d-learned's)."""

    def iterate_blocks(self, ws: torch.Tensor, noise_mode: str = "const") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per block: its feature map and the output so far."""
        ...


def runs_blocks(synthesis: object) -> TypeGuard[BlockSynthesis]:
    """Whether a synthesis network exposes its blocks (`iterate_blocks`)."""
    return callable(getattr(synthesis, "iterate_blocks", None))


def has_synthesis_blocks(generator: GeneratorLike) -> bool:
    """Whether the generator's synthesis network exposes its blocks (StyleGAN2 and shapes3d-learned do, shapes3d does not)."""
    return runs_blocks(getattr(generator, "synthesis", None))


class SynthesisBlockFeatures:
    """The feature maps after the first `num_blocks` synthesis blocks of a StyleGAN2 generator (not a module: no state)."""

    def __init__(self, generator: GeneratorLike, noise_mode: str, num_blocks: int = GENERATOR_BLOCKS) -> None:
        synthesis = generator.synthesis
        assert runs_blocks(synthesis)  # only given generators with has_synthesis_blocks
        self.synthesis = synthesis
        self.noise_mode, self.num_blocks = noise_mode, num_blocks

    def of_codes(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """W+ codes [B, L, C] -> one map [B, C_b, R_b, R_b] per block, fed the same W+ layers as the full synthesis."""
        blocks = self.synthesis.iterate_blocks(ws, self.noise_mode)
        return [features for features, _ in itertools.islice(blocks, self.num_blocks)]


class FeatureChoice(Protocol):
    """The setting that says where LatentCLR reads its features (a DiscoveryConfig has it)."""

    latentclr_features: str


def latentclr_source(config: FeatureChoice, generator: GeneratorLike) -> str:
    """Where LatentCLR reads its features: `generator` (first synthesis blocks) or `sensor`; resolves `auto`."""
    if config.latentclr_features == "auto":
        return "generator" if has_synthesis_blocks(generator) else "sensor"
    if config.latentclr_features == "generator" and not has_synthesis_blocks(generator):
        raise UserError("--latentclr-features generator: this generator has no synthesis blocks to read features from; use sensor or auto")
    return config.latentclr_features
