"""A small CNN that reads the six shapes3d factors off 64x64 images of the procedural world.

It is trained on renders made with the render settings of `ShapesGenerator`, so it reads that generator's
images. Every training sample is a grid index of the training split with each factor moved by up to half a
grid step, and its targets split the mass linearly between the two nearest classes (wrapping for hues).
The argmax of each head is the grid class; the softmax expectation of the class values
(`predict_values`) is a continuous reading that follows small changes of a factor. A fixed share of the
480,000 indices is held out: it is never rendered during training and measures the accuracy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from contrafeat.checks import check_shape
from contrafeat.errors import UserError
from contrafeat.gan.tagged_weights import load_tagged_weights, save_tagged_weights
from contrafeat.options import COUNT, INDEX, POSITIVE
from contrafeat.resumable import cosine_step, run_steps, start_or_resume, state_path, state_saver
from contrafeat.shapes3d.grid import FACTOR_NAMES, FACTOR_SIZES, FACTOR_VALUES, NUM_IMAGES, factor_values, index_to_factors
from contrafeat.shapes3d.linear_generator import ShapesGenerator
from contrafeat.shapes3d.renderer import render
from contrafeat.shapes3d.truth import CIRCULAR_FACTORS

RESOLUTION = 64
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "shapes3d_factor_cnn.safetensors"
FORMAT_TAG = "contrafeat-shapes3d-factor-cnn"
FORMAT_VERSION = "1"
HELD_OUT_FRACTION = 0.1
SPLIT_SEED = 0
"""The held-out split depends on this seed and the fraction only, never on the training seed."""
DEFAULT_STEPS = 4000
DEFAULT_BATCH = 64
DEFAULT_LR = 1e-3
EVAL_COUNT = 2000
SAVE_EVERY = 100
EVAL_BATCH = 250
HIDDEN = 128
GRID_STEPS = torch.tensor([float(values[1] - values[0]) for values in FACTOR_VALUES])
LOWEST = torch.tensor([float(values[0]) for values in FACTOR_VALUES])
HIGHEST = torch.tensor([float(values[-1]) for values in FACTOR_VALUES])
IS_CIRCULAR = torch.tensor([column in CIRCULAR_FACTORS for column in range(len(FACTOR_NAMES))])


class RenderSettings(NamedTuple):
    resolution: int
    supersample: int
    trace_steps: int


@lru_cache(maxsize=1)
def generator_render_settings() -> RenderSettings:
    """The render settings of a default `ShapesGenerator`, whose images the predictor reads."""
    generator = ShapesGenerator()
    return RenderSettings(generator.img_resolution, generator.supersample, generator.trace_steps)


def render_images(values: torch.Tensor, settings: RenderSettings) -> torch.Tensor:
    """Factor values [B, 6] -> images [B, 3, R, R] in [-1, 1], exactly as the generator renders them."""
    with torch.no_grad():
        return render(values, *settings) * 2.0 - 1.0


class FactorCNN(nn.Module):
    """Five ReLU convolutions (64 -> 4 px, 32-64 channels), a 128-unit layer, one classification head per factor."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, HIDDEN), nn.ReLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(HIDDEN, size) for size in FACTOR_SIZES)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images [B, 3, 64, 64] in [-1, 1] -> six logits tensors [B, FACTOR_SIZES[k]]."""
        check_shape(images, ["B", 3, RESOLUTION, RESOLUTION], "images")
        hidden = self.trunk(images)
        return [head(hidden) for head in self.heads]

    def predict_indices(self, images: torch.Tensor) -> torch.Tensor:
        """The most likely grid class per factor [B, 6] (long)."""
        return torch.stack([logits.argmax(1) for logits in self(images)], dim=1)

    def predict_values(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous factor values [B, 6] in the units of `ShapesGenerator.factors` (hues in [0, 1))."""
        return torch.stack([expected_value(logits, column) for column, logits in enumerate(self(images))], dim=1)


def expected_value(logits: torch.Tensor, column: int) -> torch.Tensor:
    """The softmax expectation of one factor's class values [B]; for hues the angle of the mean phasor, in [0, 1)."""
    probabilities = logits.softmax(dim=1)
    values = torch.as_tensor(FACTOR_VALUES[column], dtype=probabilities.dtype, device=probabilities.device)
    if column not in CIRCULAR_FACTORS:
        return probabilities @ values
    angles = 2.0 * math.pi * values
    mean_angle = torch.atan2(probabilities @ angles.sin(), probabilities @ angles.cos())
    hue = torch.remainder(mean_angle / (2.0 * math.pi), 1.0)
    return torch.where(hue < 1.0, hue, hue - 1.0)  # a tiny negative angle rounds up to 1.0


def soft_targets(values: torch.Tensor, column: int) -> torch.Tensor:
    """Continuous values [B] of one factor -> class weights [B, size] split linearly between the two nearest classes."""
    size = FACTOR_SIZES[column]
    position = (values - LOWEST[column]) / GRID_STEPS[column]
    if column in CIRCULAR_FACTORS:
        lower = torch.floor(torch.remainder(position, size))
        fraction = torch.remainder(position, size) - lower
        lower = lower.long() % size
        upper = (lower + 1) % size
    else:
        position = position.clamp(0.0, size - 1.0)
        lower = torch.floor(position).clamp(max=size - 2)
        fraction = position - lower
        lower = lower.long()
        upper = lower + 1
    targets = torch.zeros(len(values), size, dtype=values.dtype)
    targets.scatter_(1, lower[:, None], (1.0 - fraction)[:, None])
    return targets.scatter_add_(1, upper[:, None], fraction[:, None])


def jittered_values(indices: np.ndarray, rng: torch.Generator) -> torch.Tensor:
    """Factor values [B, 6] of grid indices, each moved uniformly by up to half a grid step (hues wrap, others stay in range)."""
    values = torch.from_numpy(factor_values(index_to_factors(indices))).float()
    values = values + (torch.rand(values.shape, generator=rng) - 0.5) * GRID_STEPS
    return torch.where(IS_CIRCULAR, torch.remainder(values, 1.0), torch.clamp(values, LOWEST, HIGHEST))


def held_out_split(fraction: float = HELD_OUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, held-out indices), both sorted; a fixed permutation puts `fraction` of all indices aside."""
    cut = round(fraction * NUM_IMAGES)
    if not 0 < cut < NUM_IMAGES:
        raise UserError(f"held_out_fraction: expected a share strictly between 0 and 1 of {NUM_IMAGES} indices, got {fraction}")
    order = np.random.default_rng(SPLIT_SEED).permutation(NUM_IMAGES)
    return np.sort(order[cut:]), np.sort(order[:cut])


@dataclass(frozen=True)
class TrainingConfig:
    steps: int = DEFAULT_STEPS
    batch: int = DEFAULT_BATCH
    lr: float = DEFAULT_LR
    seed: int = 0
    held_out_fraction: float = HELD_OUT_FRACTION

    def validate(self) -> None:
        """UserError for a value training cannot use, named by its `contrafeat shapes3d train-predictor` flag."""
        COUNT.check(self.steps, "steps")
        COUNT.check(self.batch, "batch")
        POSITIVE.check(self.lr, "lr")
        INDEX.check(self.seed, "seed")
        held_out_split(self.held_out_fraction)


class PredictorTraining:
    """Model, Adam and the random stream of one run; `step` trains on one fresh batch, `state_dict` resumes it exactly."""

    def __init__(self, config: TrainingConfig, settings: RenderSettings) -> None:
        self.config, self.settings = config, settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = FactorCNN()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.rng = torch.Generator().manual_seed(config.seed)
        self.rng_after_step = self.rng.get_state()
        self.train_indices = held_out_split(config.held_out_fraction)[0]
        self.step_count = 0
        self.total_steps = config.steps

    def train_step(self) -> dict[str, float]:
        """One Adam step on a batch of jittered renders; returns the summed cross-entropy of the six heads (as `loss`)."""
        picks = torch.randint(len(self.train_indices), (self.config.batch,), generator=self.rng).numpy()
        values = jittered_values(self.train_indices[picks], self.rng)
        logits = self.model(render_images(values, self.settings))
        loss = sum(F.cross_entropy(head, soft_targets(values[:, column], column)) for column, head in enumerate(logits))
        assert isinstance(loss, torch.Tensor)  # six heads
        cosine_step(self.optimizer, loss, self.config.lr, self.step_count, self.config.steps)
        self.step_count += 1
        self.rng_after_step = self.rng.get_state()
        return {"loss": float(loss.detach())}

    def state_dict(self) -> dict:
        """The state after the last completed step (a step cut short leaves no trace)."""
        return {
            "config": asdict(self.config),
            "step": self.step_count,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng_after_step,
        }

    def load_state_dict(self, state: Mapping, path: Path) -> None:
        if state.get("config") != asdict(self.config):
            raise UserError(f"{path}: the training state was made with {state.get('config')}, not {asdict(self.config)}; resume with the same options")
        self.step_count = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        self.rng_after_step = self.rng.get_state()


def train_factor_predictor(
    out: Path,
    steps: int = DEFAULT_STEPS,
    batch: int = DEFAULT_BATCH,
    lr: float = DEFAULT_LR,
    seed: int = 0,
    held_out_fraction: float = HELD_OUT_FRACTION,
    resume: bool = False,
    progress: bool = True,
    eval_count: int = EVAL_COUNT,
    save_every: int = SAVE_EVERY,
) -> dict[str, float]:
    """Train a FactorCNN, write it to `out` (safetensors) and return its held-out accuracy per factor.

    While the run is unfinished, `out`.state.pt holds everything needed to resume it bit-exactly."""
    out = Path(out)
    config = TrainingConfig(steps, batch, lr, seed, held_out_fraction)
    config.validate()
    check_count(eval_count, held_out_split(held_out_fraction)[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    state_file = state_path(out)
    training = PredictorTraining(config, generator_render_settings())
    start_or_resume(training, state_file, resume)
    run_steps(training, state_saver(training, state_file), save_every, progress, "factor predictor")
    model = training.model.eval()
    accuracy = held_out_accuracy(model, eval_count, seed, held_out_fraction)
    save_factor_predictor(model, out, {**asdict(config), **training.settings._asdict(), "held_out_accuracy": accuracy})
    state_file.unlink(missing_ok=True)
    return accuracy


def save_factor_predictor(model: FactorCNN, path: Path, details: Mapping[str, object]) -> None:
    """Write the weights as safetensors, atomically, with the format tag and `details` (as JSON) in the metadata."""
    save_tagged_weights(model, path, FORMAT_TAG, FORMAT_VERSION, details)


def load_factor_predictor(path: Path | None = None) -> FactorCNN:
    """The predictor in `path` (default: the bundled weights) in eval mode; UserError naming the file when unusable."""
    path = DEFAULT_WEIGHTS if path is None else Path(path)
    expected = f"the safetensors weights of a FactorCNN written by `contrafeat shapes3d train-predictor` (format {FORMAT_TAG} v{FORMAT_VERSION})"
    model = FactorCNN()
    load_tagged_weights(model, path, FORMAT_TAG, FORMAT_VERSION, expected)
    return model.eval()


def check_count(count: int, held_out: np.ndarray) -> None:
    if not 1 <= count <= len(held_out):
        raise UserError(f"evaluation count: expected between 1 and {len(held_out)} held-out indices, got {count}")


@torch.no_grad()
def held_out_accuracy(
    model: FactorCNN, count: int = EVAL_COUNT, seed: int = 0, held_out_fraction: float = HELD_OUT_FRACTION
) -> dict[str, float]:
    """Share of correct argmax classes per factor on renders of `count` distinct held-out grid indices drawn with `seed`."""
    held_out = held_out_split(held_out_fraction)[1]
    check_count(count, held_out)
    factors = index_to_factors(np.random.default_rng(seed).choice(held_out, size=count, replace=False))
    values = torch.from_numpy(factor_values(factors)).float()
    settings = generator_render_settings()
    predicted = torch.cat([model.predict_indices(render_images(chunk, settings)) for chunk in values.split(EVAL_BATCH)])
    correct = (predicted == torch.from_numpy(factors)).double().mean(dim=0)
    return dict(zip(FACTOR_NAMES, correct.tolist()))
