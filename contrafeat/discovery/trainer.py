"""The discovery loop: seeded codes, objective + diversity, Adam, logs, atomic checkpoints, exact resume."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm import tqdm

from contrafeat.discovery.config import DiscoveryConfig
from contrafeat.discovery.directions import Directions
from contrafeat.discovery.losses import diversity_loss
from contrafeat.discovery.navigator import Navigator
from contrafeat.discovery.objectives import FeatureSource, Objective
from contrafeat.discovery.steps import suggest_steps
from contrafeat.discovery.subspace import PCABasis
from contrafeat.errors import UserError
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike
from contrafeat.io_utils import atomic_torch_save

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"


def sample_start_codes(generator: GeneratorLike, batch: int, config: DiscoveryConfig, rng: torch.Generator) -> torch.Tensor:
    """W+ codes [B, L, C]; style-mixed from two z (layers [0, L/2) and [L/2, L)) when configured."""
    sources = 2 if config.style_mix else 1
    z = torch.randn(sources * batch, generator.z_dim, generator=rng).to(generator.w_avg.device)
    with torch.no_grad():
        w = generator.mapping(z, truncation_psi=config.truncation)
    ws = w[:batch, None, :].repeat(1, generator.num_ws, 1)
    if config.style_mix:
        ws[:, generator.num_ws // 2 :] = w[batch:, None, :]
    return ws


def tensorboard_writer(run_dir: Path):
    """A TensorBoard SummaryWriter into the run folder when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


class Trainer:
    """Owns the navigator, the objective, the optimiser and every random state of one run."""

    def __init__(
        self,
        config: DiscoveryConfig,
        generator: GeneratorLike,
        sensor: torch.nn.Module | None,
        pca: PCABasis,
        navigator: Navigator,
        objective: Objective,
        run_dir: Path,
    ) -> None:
        self.config, self.generator, self.pca = config, generator, pca
        self.features = FeatureSource(generator, sensor, config.noise_mode)
        self.navigator, self.objective, self.run_dir = navigator, objective, run_dir
        parameters = [p for p in list(navigator.parameters()) + list(objective.parameters()) if p.requires_grad]
        self.optimizer = torch.optim.Adam(parameters, lr=config.lr, betas=(config.beta1, config.beta2)) if parameters else None
        self.rng = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.step = 0

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns the loss terms as floats."""
        ws = sample_start_codes(self.generator, self.config.batch_size, self.config, self.rng)
        terms = self.objective(ws, self.navigator, self.features, self.rng)
        if self.config.diversity_weight:
            terms["diversity"] = diversity_loss(self.navigator.edits())
        total = sum((self.config.diversity_weight if name == "diversity" else 1.0) * value for name, value in terms.items())
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            for group in self.optimizer.param_groups:
                for parameter in group["params"]:
                    if parameter.grad is not None:
                        torch.nan_to_num_(parameter.grad, nan=0.0, posinf=1e5, neginf=-1e5)
            self.optimizer.step()
        self.step += 1
        return {"loss": float(total.detach()), **{name: float(value.detach()) for name, value in terms.items()}}

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "navigator": self.navigator.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer else {},
            "rng": self.rng.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def save_checkpoint(self) -> None:
        atomic_torch_save(self.state_dict(), self.run_dir / CHECKPOINT_FILE)

    def load_checkpoint(self) -> None:
        """Restore everything saved by save_checkpoint, so the run continues bit-exactly."""
        path = self.run_dir / CHECKPOINT_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as error:
            raise UserError(f"{path}: cannot resume from this checkpoint ({error})") from error
        self.step = int(state["step"])
        self.navigator.load_state_dict(state["navigator"])
        self.objective.load_state_dict(state["objective"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self._truncate_log()

    def _truncate_log(self) -> None:
        """Drop log lines written after the checkpoint being resumed (they will be written again)."""
        path = self.run_dir / LOG_FILE
        if path.is_file():
            kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= self.step]
            path.write_text("".join(line + "\n" for line in kept))

    def run(self, progress: bool = True) -> None:
        """Train until config.steps, logging and checkpointing; Ctrl-C saves a checkpoint first."""
        images_per_step = self.objective.images_per_code * self.config.batch_size
        bar = tqdm(total=self.config.steps, initial=self.step, disable=not progress, desc="discover", unit="step")
        started, started_step = time.perf_counter(), self.step
        board = tensorboard_writer(self.run_dir)
        try:
            with open(self.run_dir / LOG_FILE, "a") as log:
                while self.step < self.config.steps:
                    terms = self.train_step()
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in terms.items()})
                    if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                        elapsed = time.perf_counter() - started
                        rate = images_per_step * (self.step - started_step) / max(elapsed, 1e-9)
                        log.write(json.dumps({"step": self.step, **terms, "images_per_s": rate}) + "\n")
                        log.flush()
                        if board is not None:
                            for name, value in terms.items():
                                board.add_scalar(name, value, self.step)
                    if self.step % self.config.checkpoint_every == 0:
                        self.save_checkpoint()
        except KeyboardInterrupt:
            self.save_checkpoint()
            raise
        finally:
            bar.close()
            if board is not None:
                board.close()
        self.save_checkpoint()

    def directions(self) -> Directions:
        """The trained directions as the artefact every consumer reads."""
        return navigator_directions(self.navigator, self.pca, self.config.method, self.generator)


@torch.no_grad()
def navigator_directions(navigator: Navigator, pca: PCABasis, method: str, generator: GeneratorLike) -> Directions:
    """A navigator's directions, attention and suggested steps as the Directions artefact."""
    vectors = navigator.directions()
    attention = navigator.attention()
    return Directions(
        vectors=vectors,
        attention=attention,
        steps=suggest_steps(vectors, attention, pca),
        method=method,
        generator_id=generator_identity(generator),
    )
