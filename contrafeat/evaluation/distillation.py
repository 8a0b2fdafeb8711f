"""Distil directions into an encoder through their paired dataset and a group VAE, then score it on the true factors.

Also the reference rows: a beta-VAE and a FactorVAE trained directly on the procedural images.
Everything lives in one work folder (pairs, VAE training state) so an interrupted evaluation resumes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation.calibration import Calibration
from contrafeat.evaluation.disentanglement import disentanglement_metrics, metric_counts
from contrafeat.evaluation.group_vae import RESOLUTION, RESOLUTIONS, SCHEDULES, VAE, encode_mean, train_vae
from contrafeat.evaluation.pairs import PairDataset, PairSettings, directions_digest, distinct_directions, write_pairs
from contrafeat.evaluation.shapes3d_truth import Shapes3DSampler, generator_render_cache, grid_representation
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike
from contrafeat.io_utils import short_hash
from contrafeat.options import COUNT, POSITIVE

PAIRS_FOLDER = "pairs"
"""The pair folder inside a distillation work folder."""
REFERENCE_BETA = 4.0
"""beta of the beta-VAE reference row: Higgins et al. (2017), in the middle of the sweep {1, 2, 4, 6, 8, 16} of
Locatello et al. (2019); beta = 1 would be a plain VAE."""
REFERENCE_GAMMA = 10.0
"""gamma of the FactorVAE reference row: the first value of the sweep {10, 20, 30, 40, 50, 100} of Kim & Mnih (2018)
and Locatello et al. (2019)."""
REFERENCE_LATENTS = 10
"""Latent size of the reference VAEs, as in the published 3DShapes rows."""
VARIANTS = ("label", "ada")
"""Group-VAE variants: `label` ties latent i to direction i (the pairs' labels); `ada` finds the changed dims itself."""


@dataclass
class DistillSettings:
    """Sizes of the distillation. The defaults are the recipe chosen from benchmarks/distillation_budget.py to fit
    30 minutes on 2 CPU cores (docs/distillation.md); the published run used 240,000 pairs, 300,000 steps, lr 1e-4."""

    num_pairs: int = 20_000
    shard_size: int = 2_000
    vae_steps: int = 10_000
    batch: int = 64
    beta: float = 1.0
    lr: float = 1e-3
    variant: str = "label"
    duplicate_threshold: float = 0.5
    seed: int = 0
    metric_counts: str = "full"
    metric_fraction: float = 1.0
    resolution: int = RESOLUTION
    """VAE input side: 64 is the published architecture; 32 drops one stride-2 stage and sees the images area-downsampled."""
    schedule: str = "constant"
    """Learning-rate schedule over the vae_steps: `constant` (published) or `warmup-cosine`."""

    def validate(self) -> None:
        for flag, value in (("--pairs", self.num_pairs), ("--shard-size", self.shard_size), ("--vae-steps", self.vae_steps), ("--vae-batch", self.batch)):
            COUNT.check(value, flag)
        if self.variant not in VARIANTS:
            raise UserError(f"--vae-variant {self.variant!r}: expected one of {', '.join(VARIANTS)}")
        POSITIVE.check(self.beta, "--beta")
        POSITIVE.check(self.lr, "--vae-lr")
        if self.resolution not in RESOLUTIONS:
            raise UserError(f"--vae-resolution {self.resolution!r}: expected one of {', '.join(map(str, RESOLUTIONS))}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"--vae-schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        metric_counts(self.metric_counts, self.metric_fraction)


def vae_fingerprint(settings: DistillSettings, **extra: Any) -> dict[str, Any]:
    """What a trained VAE depends on besides its data: a training state is resumed only under the same fingerprint.

    The resolution and the schedule enter it only when they differ from the published 64 px / constant rate, so
    the training states made before they existed keep their names."""
    fields = ("vae_steps", "batch", "beta", "lr", "variant", "seed")
    published = {"resolution": RESOLUTION, "schedule": "constant"}
    departures = {name: getattr(settings, name) for name, value in published.items() if getattr(settings, name) != value}
    return {**{name: getattr(settings, name) for name in fields}, **departures, **extra}


def recipe_note(settings: DistillSettings) -> str | None:
    """One line saying how the group VAE departs from the published recipe's architecture and rate, or None."""
    departures = []
    if settings.resolution != RESOLUTION:
        departures.append(
            f"{settings.resolution} px VAE (one stride-2 stage fewer than the published 64 px encoder and decoder; images area-downsampled)"
        )
    if settings.schedule != "constant":
        departures.append(f"{settings.schedule} learning-rate schedule (published: constant)")
    return "group VAE: " + "; ".join(departures) if departures else None


def truth_metrics(generator: GeneratorLike, model: VAE, settings: DistillSettings) -> dict[str, float]:
    """FactorVAE score, MIG and DCI disentanglement of the encoder means on the shapes3d grid."""
    world, represent = grid_representation(generator_render_cache(generator), lambda images: encode_mean(model, images))
    counts = metric_counts(settings.metric_counts, settings.metric_fraction)
    scores = disentanglement_metrics(world, represent, seed=settings.seed, counts=counts)
    return {
        "fvm": scores["factorvae"]["eval_accuracy"],
        "mig": scores["mig"]["mig"],
        "dci": scores["dci"]["disentanglement"],
    }


def pair_settings(generator: GeneratorLike, directions: Directions, sensor: nn.Module, calibration: Calibration, settings: DistillSettings) -> PairSettings:
    """The paired dataset of the live, distinct directions at their calibrated strengths."""
    strengths = calibration.strengths
    kept = distinct_directions(
        generator, directions, sensor, strengths, seed=settings.seed, threshold=settings.duplicate_threshold, dead=calibration.dead
    )
    return PairSettings(
        generator_id=generator_identity(generator),
        directions_digest=directions_digest(directions),
        kept=kept,
        strengths=[float(strengths[index]) for index in kept],
        num_pairs=settings.num_pairs,
        shard_size=settings.shard_size,
        seed=settings.seed,
    )


def distil(
    work: Path, generator: GeneratorLike, directions: Directions, sensor: nn.Module, calibration: Calibration, settings: DistillSettings,
    progress: bool = True,
) -> tuple[VAE, list[int]]:
    """Pairs of the live, distinct directions at their calibrated strengths, then a group VAE on them; returns the model and the kept directions."""
    settings.validate()
    pairs = pair_settings(generator, directions, sensor, calibration, settings)
    dataset = PairDataset(write_pairs(work / PAIRS_FOLDER, generator, directions, pairs, progress))

    def sample_batch(batch: int, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
        first, second, labels = dataset.sample_batch(batch, rng)
        return (first, second, labels) if settings.variant == "label" else (first, second)

    model = train_vae(
        "ada-gvae", sample_batch, settings.vae_steps, lr=settings.lr, batch=settings.batch, beta=settings.beta,
        latent_dim=directions.count, seed=settings.seed, progress=progress, resolution=settings.resolution, schedule=settings.schedule,
        state_path=work / f"group_vae-{short_hash(vae_fingerprint(settings, pairs=asdict(pairs)))}.pt",
    )
    return model, pairs.kept


def reference_vae(work: Path, generator: GeneratorLike, kind: str, settings: DistillSettings, progress: bool = True) -> VAE:
    """A beta-VAE (beta REFERENCE_BETA) or FactorVAE (gamma REFERENCE_GAMMA) trained on uniformly drawn grid renders,
    REFERENCE_LATENTS latents, with the group VAE's steps, learning rate and batch; resumable."""
    settings.validate()
    sampler = Shapes3DSampler(generator_render_cache(generator))
    return train_vae(
        kind, sampler.sample_batch, settings.vae_steps, lr=settings.lr, batch=settings.batch, beta=REFERENCE_BETA, gamma=REFERENCE_GAMMA,
        latent_dim=REFERENCE_LATENTS, seed=settings.seed, progress=progress, resolution=settings.resolution, schedule=settings.schedule,
        state_path=work / f"{kind}-{short_hash(vae_fingerprint(settings, kind=kind, beta=REFERENCE_BETA, gamma=REFERENCE_GAMMA))}.pt",
    )
