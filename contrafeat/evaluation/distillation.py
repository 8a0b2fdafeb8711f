"""Distil directions into an encoder through their paired dataset and a group VAE, then score it on the true factors.

Also the reference rows: a beta-VAE and a FactorVAE trained directly on the procedural images.
Everything lives in one work folder (pairs, VAE checkpoint) so an interrupted evaluation resumes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation.disentanglement import disentanglement_metrics, metric_counts
from contrafeat.evaluation.group_vae import VAE, encode_mean, train_vae
from contrafeat.evaluation.pairs import PairDataset, PairSettings, directions_digest, distinct_directions, write_pairs
from contrafeat.evaluation.shapes3d_truth import Shapes3DSampler, generator_render_cache
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike

PAIRS_FOLDER = "pairs"
"""The pair folder inside a distillation work folder."""
VARIANTS = ("label", "ada")
"""Group-VAE variants: `label` ties latent i to direction i (the pairs' labels); `ada` finds the changed dims itself."""


@dataclass
class DistillSettings:
    """Sizes of the distillation; the defaults fit a CPU (the published run used 240,000 pairs and 300,000 steps)."""

    num_pairs: int = 20_000
    shard_size: int = 2_000
    vae_steps: int = 3_000
    batch: int = 64
    beta: float = 1.0
    lr: float = 1e-4
    variant: str = "label"
    duplicate_threshold: float = 0.5
    seed: int = 0
    quick_metrics: bool = True
    metric_fraction: float = 1.0

    def validate(self) -> None:
        for name in ("num_pairs", "shard_size", "vae_steps", "batch"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected a positive integer")
        if self.variant not in VARIANTS:
            raise UserError(f"--vae-variant {self.variant!r}: expected one of {', '.join(VARIANTS)}")
        if self.beta <= 0:
            raise UserError(f"--beta {self.beta}: expected a positive number")
        metric_counts(self.quick_metrics, self.metric_fraction)


def truth_metrics(generator: GeneratorLike, model: VAE, settings: DistillSettings) -> dict[str, float]:
    """FactorVAE score, MIG and DCI disentanglement of the encoder means on the shapes3d grid."""
    sampler = Shapes3DSampler(generator_render_cache(generator))
    counts = metric_counts(settings.quick_metrics, settings.metric_fraction)
    scores = disentanglement_metrics(sampler, lambda images: encode_mean(model, images), seed=settings.seed, counts=counts)
    return {
        "fvm": scores["factorvae"]["eval_accuracy"],
        "mig": scores["mig"]["mig"],
        "dci": scores["dci"]["disentanglement"],
    }


def pair_settings(generator: GeneratorLike, directions: Directions, sensor: nn.Module, steps: torch.Tensor, settings: DistillSettings) -> PairSettings:
    """The paired dataset of the distinct directions at `steps`."""
    kept = distinct_directions(generator, directions, sensor, steps, seed=settings.seed, threshold=settings.duplicate_threshold)
    return PairSettings(
        generator_id=generator_identity(generator),
        directions_digest=directions_digest(directions),
        kept=kept,
        steps=[float(steps[index]) for index in kept],
        num_pairs=settings.num_pairs,
        shard_size=settings.shard_size,
        seed=settings.seed,
    )


def distil(
    work: Path, generator: GeneratorLike, directions: Directions, sensor: nn.Module, steps: torch.Tensor, settings: DistillSettings,
    progress: bool = True,
) -> tuple[VAE, list[int]]:
    """Pairs of the distinct directions at `steps`, then a group VAE on them; returns the model and the kept directions."""
    settings.validate()
    pairs = pair_settings(generator, directions, sensor, steps, settings)
    dataset = PairDataset(write_pairs(work / PAIRS_FOLDER, generator, directions, pairs, progress))

    def sample_batch(batch: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
        first, second, labels = dataset.sample_batch(batch, rng)
        return (first, second, labels) if settings.variant == "label" else (first, second)

    model = train_vae(
        "ada-gvae", sample_batch, settings.vae_steps, lr=settings.lr, batch=settings.batch, beta=settings.beta,
        latent_dim=directions.count, seed=settings.seed, progress=progress, checkpoint_path=work / f"group_vae_{settings.variant}.pt",
    )
    return model, pairs.kept


def reference_vae(work: Path, generator: GeneratorLike, kind: str, settings: DistillSettings, progress: bool = True) -> VAE:
    """A beta-VAE or FactorVAE (`kind`) trained on uniformly drawn grid renders, 10 latents, resumable."""
    settings.validate()
    sampler = Shapes3DSampler(generator_render_cache(generator))
    return train_vae(
        kind, sampler.sample_batch, settings.vae_steps, lr=settings.lr, batch=settings.batch, beta=settings.beta,
        latent_dim=10, seed=settings.seed, progress=progress, checkpoint_path=work / f"{kind}.pt",
    )
