"""LatentCLR's pieces: the NT-Xent loss over feature changes and the generator's early block features.

NT-Xent as LatentCLR computes it: K directions applied to B codes give K*B change vectors; for each
one, the same direction on the other codes are the positives and every other direction's changes
the negatives; loss = -log(sum_pos exp(t(sim)) / sum_{all others} exp(t(sim))), mean over anchors,
with sim = |cos| (or cos^2) and t(sim) = sim * temperature (`multiply`, what the reference code does:
temperature 0.5 there is a conventional temperature of 2) or sim / temperature (`divide`, textbook).
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from contrafeat.discovery.losses import COS_EPS
from contrafeat.gan.interface import GeneratorLike

TEMPERATURE_MODES = ("multiply", "divide")
GENERATOR_BLOCKS = 3
"""LatentCLR's generator features are read after this many synthesis blocks (the authors' `vart_g`)."""


def nt_xent_loss(changes: torch.Tensor, temperature: float = 0.5, temperature_mode: str = "multiply", cos_mode: str = "abs") -> torch.Tensor:
    """NT-Xent over changes [K, B, D] (direction k applied to code b), positives = same k, mean over the K*B anchors."""
    if temperature_mode not in TEMPERATURE_MODES:
        raise ValueError(f"temperature mode {temperature_mode!r}: expected one of {', '.join(TEMPERATURE_MODES)}")
    count, batch = changes.shape[:2]
    units = F.normalize(changes.flatten(0, 1).flatten(1), dim=1, eps=COS_EPS)
    cos = units @ units.T
    similarity = cos.square() if cos_mode == "squared" else cos.abs()
    logits = similarity * temperature if temperature_mode == "multiply" else similarity / temperature
    labels = torch.arange(count, device=changes.device).repeat_interleave(batch)
    itself = torch.eye(count * batch, dtype=torch.bool, device=changes.device)
    logits = logits.masked_fill(itself, float("-inf"))
    positives = logits.masked_fill(labels[:, None] != labels[None, :], float("-inf"))
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(positives, dim=1)).mean()


def has_synthesis_blocks(generator: GeneratorLike) -> bool:
    """Whether the generator's synthesis network exposes its blocks (StyleGAN2 does, shapes3d does not)."""
    return callable(getattr(getattr(generator, "synthesis", None), "iterate_blocks", None))


class SynthesisBlockFeatures:
    """The feature maps after the first `num_blocks` synthesis blocks of a StyleGAN2 generator (not a module: no state)."""

    def __init__(self, generator: GeneratorLike, noise_mode: str, num_blocks: int = GENERATOR_BLOCKS) -> None:
        self.synthesis = generator.synthesis
        self.noise_mode, self.num_blocks = noise_mode, num_blocks

    def of_codes(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """W+ codes [B, L, C] -> one map [B, C_b, R_b, R_b] per block, fed the same W+ layers as the full synthesis."""
        blocks = self.synthesis.iterate_blocks(ws, self.noise_mode)
        return [features for features, _ in itertools.islice(blocks, self.num_blocks)]
