"""VAEs for the paired-data study: disentanglement_lib's 64x64 conv VAE, Ada-GVAE, beta-VAE and FactorVAE.

Also a 32x32 variant of the same VAE (one stride-2 stage fewer in the encoder and the decoder) that sees the 64 px
images area-downsampled, and an optional learning-rate schedule (linear warm-up then cosine decay)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from contrafeat.checks import check_shape
from contrafeat.errors import UserError
from contrafeat.io_utils import atomic_torch_save
from contrafeat.resumable import run_steps

RESOLUTION = 64
"""Side of the images the VAEs are fed (the published architecture's input)."""
RESOLUTIONS = (64, 32)
"""Input sides of the VAE: 64 is disentanglement_lib's architecture; 32 drops one stride-2 stage of the encoder and
of the decoder and sees the 64 px images area-downsampled (about a third of the work per step)."""
SCHEDULES = ("constant", "warmup-cosine")
"""Learning-rate schedules: the constant rate (the published one), or a linear warm-up over WARMUP_FRACTION of the
steps then a cosine decay to zero at the last step."""
WARMUP_FRACTION = 0.05
MODEL_KINDS = ("ada-gvae", "beta-vae", "factor-vae")
Batch = Union[torch.Tensor, Sequence[torch.Tensor]]
BatchSampler = Callable[[int, torch.Generator], Batch]
"""Draws one training batch: (batch size, generator) -> images [B, C, 64, 64] in [0, 1] for beta-VAE and
FactorVAE (a tuple's first entry is used), or (x1, x2) / (x1, x2, labels) pairs for Ada-GVAE. Images larger than
the VAE's resolution are area-downsampled to it before the step."""


def check_resolution(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise UserError(f"resolution: expected one of {', '.join(map(str, RESOLUTIONS))}, got {resolution!r}")
    return resolution


def to_resolution(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Float images [B, C, R, R] -> [B, C, resolution, resolution], area-averaged when R is a larger multiple."""
    side = images.shape[-1]
    if side == resolution:
        return images
    if side < resolution or side % resolution:
        raise UserError(f"images: {side} px cannot be area-downsampled to {resolution} px")
    return F.avg_pool2d(images, side // resolution)


def lr_factor(schedule: str, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at 0-based `step` of a run of `total_steps` steps."""
    if schedule == "constant":
        return 1.0
    if schedule != "warmup-cosine":
        raise UserError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
    warmup = max(1, round(WARMUP_FRACTION * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class Encoder(nn.Module):
    """conv 32 k4 s2 p1, 32 k4 s2 p1, 64 k2 s2, 64 k2 s2 -> 1024 -> FC 256 -> mean and log-variance heads.

    At resolution 32 the second conv (32 k4 s2 p1) is left out, so the trunk still ends at 64 x 4 x 4."""

    def __init__(self, latent_dim: int, channels: int = 3, resolution: int = RESOLUTION) -> None:
        super().__init__()
        second = [nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU()] if check_resolution(resolution) == 64 else []
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),
            *second,
            nn.Conv2d(32, 64, 2, 2), nn.ReLU(),
            nn.Conv2d(64, 64, 2, 2), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(1024, 256), nn.ReLU(),
        )
        self.mean = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(images)
        return self.mean(hidden), self.logvar(hidden)


class Decoder(nn.Module):
    """FC 256 -> FC 1024 -> 64x4x4 -> ConvT 64, 32, 32, C (k4 s2 p1) -> pixel logits.

    At resolution 32 the ConvT 32 -> 32 is left out (4 -> 8 -> 16 -> 32)."""

    def __init__(self, latent_dim: int, channels: int = 3, resolution: int = RESOLUTION) -> None:
        super().__init__()
        third = [nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU()] if check_resolution(resolution) == 64 else []
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 1024), nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            *third,
            nn.ConvTranspose2d(32, channels, 4, 2, 1),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)


class VAE(nn.Module):
    """Gaussian encoder and Bernoulli decoder for resolution x resolution images in [0, 1] (64: the published one)."""

    def __init__(self, latent_dim: int = 10, channels: int = 3, resolution: int = RESOLUTION) -> None:
        super().__init__()
        self.latent_dim, self.channels, self.resolution = latent_dim, channels, check_resolution(resolution)
        self.encoder = Encoder(latent_dim, channels, resolution)
        self.decoder = Decoder(latent_dim, channels, resolution)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance [B, d] of images at the VAE's resolution."""
        return self.encoder(images)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Pixel logits [B, C, resolution, resolution]."""
        return self.decoder(codes)


class Discriminator(nn.Module):
    """FactorVAE's total-correlation discriminator: 6 x FC 1000 with LeakyReLU 0.2 -> 2 logits (joint, permuted)."""

    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for index in range(layers):
            blocks += [nn.Linear(latent_dim if index == 0 else hidden, hidden), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*blocks, nn.Linear(hidden, 2))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net(codes)


def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mean + std * eps; eps drawn from `generator` (on the CPU) when given, else from the global stream."""
    if generator is None:
        noise = torch.randn_like(mean)
    else:
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    return mean + torch.exp(0.5 * logvar) * noise


def bernoulli_reconstruction(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Batch mean of the per-image summed sigmoid cross-entropy."""
    return F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1).mean()


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(N(mean, exp(logvar)) || N(0, I)) summed over dims."""
    return (0.5 * (mean.square() + logvar.exp() - logvar - 1.0)).sum(1).mean()


def pair_divergence(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Per-dim 2 * KL(q1 || q2) = var1/var2 + (mean2-mean1)^2/var2 - 1 + logvar2 - logvar1, shape [B, d]."""
    var2 = logvar2.exp()
    return logvar1.exp() / var2 + (mean2 - mean1).square() / var2 - 1.0 + logvar2 - logvar1


def ada_shared_mask(divergence: torch.Tensor) -> torch.Tensor:
    """Shared dims per pair: divergence below the midpoint of its min and max (none when all are equal)."""
    threshold = 0.5 * (divergence.min(1, keepdim=True).values + divergence.max(1, keepdim=True).values)
    return divergence < threshold


def label_shared_mask(labels: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """Shared dims per pair: every dim except the labelled one."""
    if labels.ndim != 1 or bool(((labels < 0) | (labels >= latent_dim)).any()):
        raise UserError(f"label: expected one integer in 0..{latent_dim - 1} per pair, got {labels.tolist()}")
    return ~F.one_hot(labels.long(), latent_dim).bool()


def aggregate_posteriors(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor, shared: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GVAE averaging on the shared dims: mean of the means and of the variances; own posterior elsewhere."""
    mean = 0.5 * (mean1 + mean2)
    logvar = torch.log(0.5 * (logvar1.exp() + logvar2.exp()))
    return (
        torch.where(shared, mean, mean1),
        torch.where(shared, logvar, logvar1),
        torch.where(shared, mean, mean2),
        torch.where(shared, logvar, logvar2),
    )


def ada_gvae_loss(
    model: VAE,
    x1: torch.Tensor,
    x2: torch.Tensor,
    beta: float,
    label: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Ada-GVAE: 0.5 (rec1 + rec2) + beta * 0.5 (KL1 + KL2) on the aggregated posteriors of each pair."""
    mean1, logvar1 = model.encode(x1)
    mean2, logvar2 = model.encode(x2)
    if label is None:
        shared = ada_shared_mask(pair_divergence(mean1, logvar1, mean2, logvar2))
    else:
        shared = label_shared_mask(label.to(mean1.device), mean1.shape[1])
    mean1, logvar1, mean2, logvar2 = aggregate_posteriors(mean1, logvar1, mean2, logvar2, shared)
    reconstruction = 0.5 * (
        bernoulli_reconstruction(model.decode(reparameterise(mean1, logvar1, generator)), x1)
        + bernoulli_reconstruction(model.decode(reparameterise(mean2, logvar2, generator)), x2)
    )
    kl = 0.5 * (gaussian_kl(mean1, logvar1) + gaussian_kl(mean2, logvar2))
    return {
        "loss": reconstruction + beta * kl,
        "reconstruction": reconstruction,
        "kl": kl,
        "shared_dims": shared.float().sum(1).mean(),
    }


def beta_vae_loss(model: VAE, x: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """beta-VAE: reconstruction + beta * KL."""
    mean, logvar = model.encode(x)
    reconstruction = bernoulli_reconstruction(model.decode(reparameterise(mean, logvar, generator)), x)
    kl = gaussian_kl(mean, logvar)
    return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction, "kl": kl}


def permute_dims(codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each latent dim independently across the batch: samples of the product of the marginals."""
    columns = [column[torch.randperm(len(codes), generator=generator).to(codes.device)] for column in codes.T]
    return torch.stack(columns, dim=1)


def factor_vae_loss(
    model: VAE, discriminator: Discriminator, x: torch.Tensor, gamma: float, generator: torch.Generator | None = None
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """FactorVAE: reconstruction + KL + gamma * TC, TC estimated by the discriminator's logit difference.

    Returns the terms and the sampled codes (for the discriminator's update)."""
    mean, logvar = model.encode(x)
    codes = reparameterise(mean, logvar, generator)
    reconstruction = bernoulli_reconstruction(model.decode(codes), x)
    kl = gaussian_kl(mean, logvar)
    logits = discriminator(codes)
    total_correlation = (logits[:, 0] - logits[:, 1]).mean()
    terms = {"loss": reconstruction + kl + gamma * total_correlation, "reconstruction": reconstruction, "kl": kl, "tc": total_correlation}
    return terms, codes


def discriminator_loss(discriminator: Discriminator, codes: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy of telling joint codes (class 0) from dimension-permuted codes (class 1)."""
    codes = codes.detach()
    joint = F.cross_entropy(discriminator(codes), torch.zeros(len(codes), dtype=torch.long, device=codes.device))
    permuted = F.cross_entropy(discriminator(permute_dims(codes, generator)), torch.ones(len(codes), dtype=torch.long, device=codes.device))
    return 0.5 * (joint + permuted)


def factor_vae_step(
    model: VAE,
    discriminator: Discriminator,
    vae_optimizer: torch.optim.Optimizer,
    discriminator_optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    gamma: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """One simultaneous update of the VAE and the discriminator, both from gradients at the current parameters."""
    terms, codes = factor_vae_loss(model, discriminator, x, gamma, generator)
    vae_optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    discriminator_optimizer.zero_grad(set_to_none=True)
    terms["discriminator"] = discriminator_loss(discriminator, codes, generator)
    terms["discriminator"].backward()
    vae_optimizer.step()
    discriminator_optimizer.step()
    return terms


class VAETraining:
    """Networks, optimisers and the random stream of one VAE run; `step` advances it by one batch."""

    def __init__(
        self, model_kind: str, latent_dim: int, channels: int, lr: float, beta: float, gamma: float, seed: int, device: str,
        resolution: int = RESOLUTION, schedule: str = "constant", total_steps: int = 0,
    ) -> None:
        if model_kind not in MODEL_KINDS:
            raise UserError(f"model_kind: expected one of {', '.join(MODEL_KINDS)}, got {model_kind!r}")
        if schedule not in SCHEDULES:
            raise UserError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")
        self.model_kind, self.beta, self.gamma = model_kind, beta, gamma
        self.lr, self.schedule, self.total_steps = lr, schedule, total_steps
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = VAE(latent_dim, channels, resolution).to(device)
            self.discriminator = Discriminator(latent_dim).to(device) if model_kind == "factor-vae" else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
        self.discriminator_optimizer = (
            torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.9)) if self.discriminator is not None else None
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.step_count = 0

    def step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on `batch`; returns the loss terms as floats."""
        device = next(self.model.parameters()).device
        tensors = [batch] if isinstance(batch, torch.Tensor) else list(batch)
        tensors = [tensor.to(device) for tensor in tensors]
        tensors = [to_resolution(tensor, self.model.resolution) if tensor.ndim == 4 else tensor for tensor in tensors]
        rate = self.lr * lr_factor(self.schedule, self.step_count, self.total_steps)
        for optimizer in (self.optimizer, self.discriminator_optimizer):
            for group in optimizer.param_groups if optimizer is not None else ():
                group["lr"] = rate
        if self.model_kind == "factor-vae":
            assert self.discriminator is not None and self.discriminator_optimizer is not None  # both made for factor-vae
            terms = factor_vae_step(
                self.model, self.discriminator, self.optimizer, self.discriminator_optimizer, tensors[0], self.gamma, self.generator
            )
        else:
            if self.model_kind == "ada-gvae":
                if len(tensors) not in (2, 3):
                    raise UserError("sample_batch: Ada-GVAE expects batches (x1, x2) or (x1, x2, labels)")
                terms = ada_gvae_loss(self.model, tensors[0], tensors[1], self.beta, tensors[2] if len(tensors) == 3 else None, self.generator)
            else:
                terms = beta_vae_loss(self.model, tensors[0], self.beta, self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            self.optimizer.step()
        self.step_count += 1
        return {name: float(value.detach()) for name, value in terms.items()}

    def state_dict(self) -> dict:
        return {
            "model_kind": self.model_kind,
            "resolution": self.model.resolution,
            "step": self.step_count,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator is not None else {},
            "discriminator_optimizer": self.discriminator_optimizer.state_dict() if self.discriminator_optimizer is not None else {},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["model_kind"] != self.model_kind:
            raise UserError(f"state_path: holds a {state['model_kind']} run, cannot resume it as {self.model_kind}")
        if int(state.get("resolution", RESOLUTION)) != self.model.resolution:
            raise UserError(f"state_path: holds a {state.get('resolution', RESOLUTION)} px VAE, cannot resume it at {self.model.resolution} px")
        self.step_count = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.discriminator is not None:
            assert self.discriminator_optimizer is not None  # made with the discriminator
            self.discriminator.load_state_dict(state["discriminator"])
            self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        self.generator.set_state(state["generator"])


class SampledTraining:
    """A VAE training fed `batch` images a step by a sampler, to `total_steps` steps (what the training loop runs)."""

    def __init__(self, training: VAETraining, sample_batch: BatchSampler, batch: int, total_steps: int) -> None:
        self.training, self.sample_batch, self.batch, self.total_steps = training, sample_batch, batch, total_steps

    @property
    def step_count(self) -> int:
        return self.training.step_count

    def train_step(self) -> dict[str, float]:
        return self.training.step(self.sample_batch(self.batch, self.training.generator))


def load_training_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, KeyError) as error:
        raise UserError(f"state_path: cannot resume from {path} ({error})") from error


def train_vae(
    model_kind: str,
    sample_batch: BatchSampler,
    steps: int,
    lr: float = 1e-4,
    batch: int = 64,
    beta: float = 1.0,
    gamma: float = 10.0,
    latent_dim: int = 10,
    channels: int = 3,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    state_path: Path | None = None,
    save_every: int = 1000,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    resolution: int = RESOLUTION,
    schedule: str = "constant",
    schedule_steps: int | None = None,
) -> VAE:
    """Train an Ada-GVAE, beta-VAE or FactorVAE for `steps` total steps; resumes from and writes state_path.

    Batches come from sample_batch(batch, generator) with the run's own generator, so a resumed run draws
    exactly the batches (and noise) an uninterrupted one would. on_step(step, terms) sees every step.
    `resolution` 32 trains the 32 px VAE on the batches area-downsampled; `schedule` sets the learning rate per
    step over a run of `schedule_steps` steps (default `steps`; a longer one stops part-way along its schedule)."""
    training = VAETraining(
        model_kind, latent_dim, channels, lr, beta, gamma, seed, device, resolution, schedule, steps if schedule_steps is None else schedule_steps
    )
    state_path = Path(state_path) if state_path is not None else None
    if state_path is not None and state_path.is_file():
        training.load_state_dict(load_training_state(state_path))

    def save() -> None:
        if state_path is not None:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(training.state_dict(), state_path)

    def after_step(terms: dict[str, float]) -> dict[str, float]:
        if on_step is not None:
            on_step(training.step_count, terms)
        return terms

    training.model.train()
    run_steps(SampledTraining(training, sample_batch, batch, steps), save, save_every, progress, model_kind, after_step)
    save()
    return training.model.eval()


@torch.no_grad()
def encode_mean(model: VAE, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Encoder means [N, d] of images [N, C, 64, 64] (float in [0, 1], or uint8 0..255), area-downsampled to the
    model's resolution first (a 32 px model also takes 32 px images)."""
    images = torch.as_tensor(images)
    side = model.resolution if images.ndim == 4 and images.shape[-1] == model.resolution else RESOLUTION
    check_shape(images, ["N", model.channels, side, side], "images")
    scale = 1.0 / 255.0 if images.dtype == torch.uint8 else 1.0
    device = next(model.parameters()).device
    means = [model.encode(to_resolution(chunk.to(device).float() * scale, model.resolution))[0].cpu() for chunk in images.split(batch_size)]
    return torch.cat(means).double().numpy()
