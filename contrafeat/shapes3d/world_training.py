"""Train the learned shapes3d world: its factor levels must be independent and uniform, with no image rendered.

Each step maps a batch of z to W+ codes, mixes two codes' layers at a random crossover for part of the batch
(StyleGAN2's style mixing), and pulls the batch of six factor levels towards independent uniform levels with a
sliced Wasserstein distance (random projections of the 6-D levels plus the six axes, sorted and compared).
Every few steps two penalties act on the Jacobian of the levels with respect to W+: StyleGAN2's path-length
penalty (|J^T y| for random y should not depend on w: a smooth map) and the orthogonal-Jacobian penalty of
OroJaR (Wei et al., 2021: two factors' gradients at the same code should be orthogonal), which lets fixed
linear edits move one factor mostly alone although the gradients turn with w. Seeded and resumable from an
atomic save of its training state, bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from contrafeat.errors import UserError
from contrafeat.gan.tagged_weights import save_tagged_weights
from contrafeat.options import COUNT, INDEX, MAX_COUNT, NON_NEGATIVE, POSITIVE, SHARE, Domain, check_settings, option
from contrafeat.resumable import cosine_step, run_steps, start_or_resume, state_path, state_saver
from contrafeat.shapes3d.factor_levels import level_jacobians
from contrafeat.shapes3d.learned_generator import FORMAT_TAG, FORMAT_VERSION, LearnedShapesGenerator

W_AVG_SAMPLES = 100_000
DISTANCE_SCALE = 100.0
"""The sliced Wasserstein distance of levels in (0, 1) is small; scaled so that Adam's steps are not dominated by the penalties."""


CODE_BATCH = Domain(int, 8, MAX_COUNT, "at least 8 codes (the distance compares distributions)")
DECAY = Domain(float, 0, 1, "a decay in (0, 1]", open_low=True)


@dataclass(frozen=True)
class WorldSettings:
    """Everything a training run of the learned world depends on (the flags of `contrafeat shapes3d train-world`)."""

    steps: int = option(4000, "optimisation steps (cosine learning-rate decay to 0)", COUNT)
    batch: int = option(1024, "codes per step", CODE_BATCH)
    lr: float = option(2e-3, "initial Adam learning rate", POSITIVE)
    mixing: float = option(0.5, "share of the batch whose layers from a random crossover on come from a second code", SHARE)
    projections: int = option(64, "random projections of the sliced Wasserstein distance (the six axes are added)", COUNT)
    path_weight: float = option(2.0, "weight of the path-length penalty", NON_NEGATIVE)
    orthogonal_weight: float = option(2.0, "weight of the orthogonal-Jacobian penalty", NON_NEGATIVE)
    regularise_every: int = option(4, "steps between the two penalties (lazy regularisation, weights scaled to match)", COUNT)
    path_decay: float = option(0.01, "decay of the path-length running mean", DECAY)
    seed: int = option(0, "seed of the initialisation and of every draw", INDEX)

    def validate(self) -> None:
        """Reject values no run can use, naming the flag."""
        check_settings(self)


def sliced_wasserstein(samples: torch.Tensor, target: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the sorted projections of samples [B, D] and target [B, D] on projections [D, P]."""
    projected = torch.sort(samples @ projections, dim=0).values  # [B, P]
    reference = torch.sort(target @ projections, dim=0).values
    return (projected - reference).square().mean()


class WorldTraining:
    """The model, its Adam state, the random stream and the path-length mean: what a training state holds."""

    def __init__(self, settings: WorldSettings) -> None:
        self.settings = settings
        with torch.random.fork_rng():
            torch.manual_seed(settings.seed)
            self.model = LearnedShapesGenerator()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr, betas=(0.9, 0.99))
        self.rng = torch.Generator().manual_seed(settings.seed + 1)
        self.rng_after_step = self.rng.get_state()
        self.path_mean = torch.zeros(())
        self.step_count = 0
        self.total_steps = settings.steps

    def codes(self, batch: int) -> torch.Tensor:
        """W+ codes [B, L, C] of fresh z, a share `mixing` of them mixed with a second code from a random layer on."""
        z = torch.randn(2, batch, self.model.z_dim, generator=self.rng)
        first, second = self.model.mapping_network(z.flatten(0, 1)).unflatten(0, (2, batch))  # [B, C] each
        layers = torch.arange(self.model.num_ws)
        crossover = torch.randint(1, self.model.num_ws, (batch, 1), generator=self.rng)
        mixed = torch.rand(batch, 1, generator=self.rng) < self.settings.mixing
        take_second = (layers[None, :] >= crossover) & mixed  # [B, L]
        return torch.where(take_second[:, :, None], second[:, None, :], first[:, None, :])

    def train_step(self) -> dict[str, float]:
        """One Adam step; returns the distance term of the loss (as `loss`)."""
        settings = self.settings
        ws = self.codes(settings.batch)
        levels = self.model.levels(ws)  # [B, 6]
        target = torch.rand(levels.shape, generator=self.rng)
        directions = torch.nn.functional.normalize(torch.randn(6, settings.projections, generator=self.rng), dim=0)
        projections = torch.cat([torch.eye(6), directions], dim=1)  # [6, 6 + P]
        distance = sliced_wasserstein(levels, target, projections) * DISTANCE_SCALE
        loss = distance
        if self.step_count % settings.regularise_every == 0:
            path, orthogonality = self.regularisers()
            loss = loss + (path * settings.path_weight + orthogonality * settings.orthogonal_weight) * settings.regularise_every
        cosine_step(self.optimizer, loss, settings.lr, self.step_count, settings.steps)
        self.step_count += 1
        self.rng_after_step = self.rng.get_state()
        return {"loss": float(distance.detach())}

    def regularisers(self) -> tuple[torch.Tensor, torch.Tensor]:
        """On a quarter batch: StyleGAN2's path-length penalty on the levels, (|J^T y| - running mean)^2 for
        y ~ N(0, I / 6), and the orthogonal-Jacobian penalty (OroJaR), the mean squared cosine between two
        factors' gradients with respect to W+ at the same code."""
        ws = self.codes(max(2, self.settings.batch // 4)).detach().requires_grad_(True)
        jacobian = level_jacobians(self.model, ws, create_graph=True).flatten(2)  # [B, 6, L*C]
        probe = torch.randn(jacobian.shape[:2], generator=self.rng) / math.sqrt(jacobian.shape[1])
        lengths = (probe[:, :, None] * jacobian).sum(dim=1).square().sum(dim=1).div(self.model.num_ws).sqrt()  # [B]
        self.path_mean = self.path_mean.lerp(lengths.mean().detach(), self.settings.path_decay)
        units = torch.nn.functional.normalize(jacobian, dim=2)
        cos = units @ units.transpose(1, 2)  # [B, 6, 6]
        off_diagonal = ~torch.eye(jacobian.shape[1], dtype=torch.bool)
        return (lengths - self.path_mean).square().mean(), cos[:, off_diagonal].square().mean()

    def state_dict(self) -> dict[str, Any]:
        """The state after the last completed step (a step cut short leaves no trace)."""
        return {
            "settings": asdict(self.settings),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng_after_step,
            "path_mean": self.path_mean,
            "step": self.step_count,
        }

    def load_state_dict(self, state: Mapping[str, Any], path: Path) -> None:
        if state.get("settings") != asdict(self.settings):
            raise UserError(f"{path}: the training state was made with {state.get('settings')}, not {asdict(self.settings)}; resume with the same options")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.rng_after_step = self.rng.get_state()
        self.path_mean = state["path_mean"]
        self.step_count = int(state["step"])

    @torch.no_grad()
    def finish(self) -> LearnedShapesGenerator:
        """The trained model with w_avg set from W_AVG_SAMPLES mapped samples of a fixed stream."""
        stream = torch.Generator().manual_seed(self.settings.seed + 2)
        self.model.w_avg.copy_(self.model.mapping_network(torch.randn(W_AVG_SAMPLES, self.model.z_dim, generator=stream)).mean(0))
        return self.model.eval()


def train_world(
    out: Path, settings: WorldSettings, save_every: int = 500, resume: bool = False, progress: bool = True
) -> LearnedShapesGenerator:
    """Train the learned world into `out` (safetensors). While unfinished, `out`.state.pt resumes it bit-exactly."""
    settings.validate()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    state_file = state_path(out)
    training = WorldTraining(settings)
    start_or_resume(training, state_file, resume)
    run_steps(training, state_saver(training, state_file), save_every, progress, "train world")
    model = training.finish()
    save_tagged_weights(model, out, FORMAT_TAG, FORMAT_VERSION, asdict(settings))
    state_file.unlink(missing_ok=True)
    return model
