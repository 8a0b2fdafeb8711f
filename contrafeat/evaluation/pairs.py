"""The paired dataset of a set of directions: (G(w - e_i d_i), G(w + e_i d_i)) labelled i, in resumable shards.

Dead and near-duplicate directions are dropped first: the dead ones (that do not move the image, see
`dead_directions`) as the caller lists them, and direction i when, for each sample, the cosine between its
feature change (from w - e d to w + e d; all sensor stages, each relative to its features) and an earlier kept
direction's, in absolute value and averaged over samples, exceeds the threshold.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from contrafeat.discovery.directions import Directions
from contrafeat.discovery.distributed import Runtime, barrier, decided_on_main
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike, seeded_codes
from contrafeat.io_utils import atomic_write_text

MANIFEST_FILE = "pairs.json"
SHARD_PATTERN = "pairs-{:05d}.npz"
DEFAULT_DUPLICATE_THRESHOLD = 0.5
"""Mean |cos| of two directions' feature changes above which the later one is dropped (between the true shapes3d edits: at most 0.12)."""

@torch.no_grad()
def change_vectors(generator: GeneratorLike, directions: Directions, sensor: nn.Module, strengths: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """[K, N, D]: per direction and sample, the feature change from w - e_i d_i to w + e_i d_i, relative per stage.

    Symmetric, so a direction and its opposite give exactly opposite changes (|cos| 1: duplicates)."""
    vectors = []
    for index in range(directions.count):
        strength = float(strengths[index])
        plus = sensor(generator.synthesis(directions.apply(codes, index, strength), noise_mode="const"))
        minus = sensor(generator.synthesis(directions.apply(codes, index, -strength), noise_mode="const"))
        stages = [(a - b).flatten(1) / (a + b).flatten(1).norm(dim=1, keepdim=True).clamp_min(1e-8) for a, b in zip(plus, minus)]
        vectors.append(torch.cat(stages, dim=1))
    return torch.stack(vectors)


def direction_similarity(changes: torch.Tensor) -> torch.Tensor:
    """[K, K]: mean over samples of |cos| between the feature changes of two directions."""
    unit = F.normalize(changes, dim=2, eps=1e-12)
    return torch.einsum("ind,jnd->ijn", unit, unit).abs().mean(dim=2)


def keep_distinct(changes: torch.Tensor, threshold: float = DEFAULT_DUPLICATE_THRESHOLD, dead: Sequence[int] = ()) -> list[int]:
    """Indices of the directions kept: not `dead`, with some feature change, and not within `threshold` of an earlier kept one."""
    similarity = direction_similarity(changes)
    magnitude = changes.norm(dim=2).mean(dim=1)
    kept: list[int] = []
    for index in range(changes.shape[0]):
        if index in dead or not magnitude[index] > 0:
            continue
        if all(similarity[index, other] <= threshold for other in kept):
            kept.append(index)
    return kept


def distinct_directions(
    generator: GeneratorLike, directions: Directions, sensor: nn.Module, strengths: torch.Tensor, num_samples: int = 64, seed: int = 0,
    threshold: float = DEFAULT_DUPLICATE_THRESHOLD, dead: Sequence[int] = (),
) -> list[int]:
    """The directions worth making pairs of (see keep_distinct), judged on `num_samples` codes at truncation 1."""
    codes = seeded_codes(generator, num_samples, seed, truncation_psi=1.0)
    return keep_distinct(change_vectors(generator, directions, sensor, strengths, codes), threshold, dead)


@dataclass
class PairSettings:
    """What a pair folder holds; a folder is only resumed with exactly these settings."""

    generator_id: str
    directions_digest: str
    kept: list[int]
    strengths: list[float]
    num_pairs: int
    shard_size: int
    seed: int
    truncation_psi: float = 1.0
    resolution: int = 64

    @property
    def num_shards(self) -> int:
        return -(-self.num_pairs // self.shard_size)


def directions_digest(directions: Directions) -> str:
    """A hash of the edits themselves, so pairs of other directions are never mixed in."""
    return hashlib.sha1(directions.edits().numpy().tobytes()).hexdigest()[:16]


def to_uint8_chw(images: torch.Tensor, resolution: int) -> np.ndarray:
    """Generator images [B, 3, H, W] in [-1, 1] -> uint8 [B, 3, resolution, resolution] (area-resized when larger)."""
    if images.shape[-1] != resolution:
        images = F.interpolate(images, size=(resolution, resolution), mode="area")
    return ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def render_shard(generator: GeneratorLike, directions: Directions, settings: PairSettings, shard: int) -> dict[str, np.ndarray]:
    """One shard's pairs, drawn from its own seed so shards can be made in any order."""
    count = min(settings.shard_size, settings.num_pairs - shard * settings.shard_size)
    rng = torch.Generator().manual_seed(settings.seed * 1_000_003 + shard)
    z = torch.randn(count, generator.z_dim, generator=rng)
    labels = torch.tensor(settings.kept)[torch.randint(len(settings.kept), (count,), generator=rng)]
    strengths = torch.tensor(settings.strengths)[torch.searchsorted(torch.tensor(settings.kept), labels)]
    w = generator.mapping(z.to(generator.w_avg.device), truncation_psi=settings.truncation_psi)
    ws = generator.broadcast(w)
    device_labels, device_strengths = labels.to(ws.device), strengths.to(ws.device)
    first = generator.synthesis(directions.apply(ws, device_labels, -device_strengths), noise_mode="const")
    second = generator.synthesis(directions.apply(ws, device_labels, device_strengths), noise_mode="const")
    return {
        "first": to_uint8_chw(first, settings.resolution),
        "second": to_uint8_chw(second, settings.resolution),
        "labels": labels.numpy().astype(np.int64),
    }


def read_manifest(manifest: Path) -> dict[str, Any]:
    """A pair folder's settings as stored (older folders named the strengths `steps`)."""
    stored = json.loads(manifest.read_text())
    if "steps" in stored and "strengths" not in stored:
        stored["strengths"] = stored.pop("steps")
    return stored


def check_manifest(folder: Path, settings: PairSettings) -> None:
    """Write the manifest of a new folder, or refuse to mix in a folder made with other settings."""
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        stored = read_manifest(manifest)
        if stored != asdict(settings):
            differing = sorted(key for key in stored.keys() | asdict(settings).keys() if stored.get(key) != asdict(settings).get(key))
            raise UserError(f"{folder}: holds pairs made with other settings ({', '.join(differing)} differ); choose another folder")
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(manifest, json.dumps(asdict(settings), indent=2))


def write_pairs(
    folder: Path, generator: GeneratorLike, directions: Directions, settings: PairSettings, progress: bool = True, runtime: Runtime | None = None
) -> Path:
    """Render every missing shard of the pair folder (an interrupted run continues where it stopped).

    Under data parallelism every rank calls this with the same settings: rank 0 checks or writes the manifest,
    rank r renders the missing shards s with s % world_size == r, and every shard exists when any rank returns."""
    runtime = runtime or Runtime()
    if not settings.kept:
        raise UserError("pairs: no direction left after dropping dead and duplicate ones")
    decided_on_main(lambda: check_manifest(folder, settings), runtime)
    shards = range(runtime.rank, settings.num_shards, runtime.world_size)
    for shard in tqdm(shards, disable=not (progress and runtime.is_main), desc="pairs", unit="shard"):
        path = folder / SHARD_PATTERN.format(shard)
        if path.is_file():
            continue
        arrays: dict[str, Any] = render_shard(generator, directions, settings, shard)  # Any: savez would match ndarray against allow_pickle
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    barrier(runtime)
    return folder


class PairDataset:
    """All shards of a pair folder in memory; batches are (first, second, labels) with images in [0, 1]."""

    def __init__(self, folder: Path) -> None:
        manifest = folder / MANIFEST_FILE
        if not manifest.is_file():
            raise UserError(f"{folder}: no {MANIFEST_FILE}; expected a folder written by write_pairs")
        self.settings = PairSettings(**read_manifest(manifest))
        shards = []
        for shard in range(self.settings.num_shards):
            path = folder / SHARD_PATTERN.format(shard)
            if not path.is_file():
                raise UserError(f"{folder}: shard {path.name} is missing; run the pair writing again to finish it")
            with np.load(path) as data:
                shards.append({key: data[key] for key in ("first", "second", "labels")})
        self.first = torch.from_numpy(np.concatenate([s["first"] for s in shards]))
        self.second = torch.from_numpy(np.concatenate([s["second"] for s in shards]))
        self.labels = torch.from_numpy(np.concatenate([s["labels"] for s in shards]))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sample_batch(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A uniformly drawn batch of pairs (with replacement)."""
        rows = torch.randint(len(self), (batch,), generator=generator)
        return self.first[rows].float() / 255.0, self.second[rows].float() / 255.0, self.labels[rows]
