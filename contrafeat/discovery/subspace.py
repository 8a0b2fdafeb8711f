"""Informative subspaces of W: the PCA of mapped samples (cached per generator) and SeFa's closed form."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from contrafeat.discovery.distributed import Runtime, all_gather_objects, broadcast_from_main
from contrafeat.errors import UserError
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike, has_style_affine_weights
from contrafeat.io_utils import atomic_replace

TENSOR_NAMES = ("w_avg", "basis", "eigenvalues", "stds")


@dataclass
class PCABasis:
    """PCA of W: mean, principal axes as columns (decreasing eigenvalue), eigenvalues and per-PC stds."""

    w_avg: torch.Tensor
    basis: torch.Tensor
    eigenvalues: torch.Tensor
    stds: torch.Tensor
    num_samples: int
    generator_id: str

    def __post_init__(self) -> None:
        """Row-major tensors, as `load` gives them: a computed basis and its reloaded copy then take the same
        matrix-product paths and round alike (eigh returns column-major eigenvectors)."""
        for name in TENSOR_NAMES:
            setattr(self, name, getattr(self, name).contiguous())

    def save(self, path: Path) -> None:
        """Write a safetensors file (tensors + num_samples and generator_id as metadata), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(self, name).detach().cpu().contiguous() for name in TENSOR_NAMES}
        metadata = {"num_samples": str(self.num_samples), "generator_id": self.generator_id}
        temporary = path.with_name(path.name + ".tmp")
        save_file(tensors, str(temporary), metadata=metadata)
        atomic_replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> PCABasis:
        """Read a file written by `save`; a missing or malformed file is a UserError naming it."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such PCA file")
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in TENSOR_NAMES}
            return cls(**tensors, num_samples=int(metadata["num_samples"]), generator_id=metadata["generator_id"])
        except (SafetensorError, KeyError, ValueError, OSError) as error:
            raise UserError(
                f"{path}: not a PCA file written by contrafeat (expected tensors {', '.join(TENSOR_NAMES)} "
                f"and metadata num_samples, generator_id; {error})"
            ) from error


def orient_columns(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each column so that its entry of largest magnitude is positive (a deterministic sign)."""
    largest = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors.gather(0, largest[None, :]))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


def sorted_eigh(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (decreasing) and oriented eigenvectors (columns) of a symmetric matrix."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return eigenvalues.flip(0), orient_columns(eigenvectors.flip(1))


@dataclass(frozen=True)
class Moments:
    """Count, mean and scatter (sum of outer products of the deviations from the mean) of a set of vectors."""

    count: int = 0
    mean: torch.Tensor | None = None
    scatter: torch.Tensor | None = None

    @classmethod
    def of(cls, vectors: torch.Tensor) -> Moments:
        """The moments of the rows of `vectors` [N, D]."""
        mean = vectors.mean(dim=0)
        centred = vectors - mean
        return cls(len(vectors), mean, centred.T @ centred)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, scatter) of a non-empty set."""
        assert self.mean is not None and self.scatter is not None, "an empty set has no mean"
        return self.mean, self.scatter

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets (Chan's pairwise update); merging with an empty set returns the other unchanged."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        (self_mean, self_scatter), (other_mean, other_scatter) = self.tensors(), other.tensors()
        delta = other_mean - self_mean
        total = self.count + other.count
        mean = self_mean + delta * (other.count / total)
        scatter = self_scatter + other_scatter + torch.outer(delta, delta) * (self.count * other.count / total)
        return Moments(total, mean, scatter)

    def to(self, device: torch.device | str) -> Moments:
        """The same moments with their tensors on `device` (an exact copy)."""
        if self.count == 0:
            return self
        mean, scatter = self.tensors()
        return Moments(self.count, mean.to(device), scatter.to(device))


@torch.no_grad()
def compute_pca(
    generator: GeneratorLike,
    num_samples: int = 1_000_000,
    batch_size: int = 10_000,
    seed: int = 0,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> PCABasis:
    """PCA of w = mapping(z), z ~ N(0, I), truncation 1: streaming float64 mean and covariance (ddof 1).

    Batches are merged with Chan's pairwise update, so the result does not suffer from the
    cancellation of a raw sum of squares. The samples are fixed by `seed` (and `batch_size`).
    Under data parallelism every rank draws every batch's z, maps only the batches b with
    b % world_size == rank, and the ranks' moments are merged in rank order, so that every
    rank returns the same basis (equal to the single-process one up to rounding).
    """
    runtime = runtime or Runtime()
    if num_samples < 2:
        raise UserError(f"PCA samples {num_samples}: expected at least 2")
    if batch_size < 1:
        raise UserError(f"PCA batch size {batch_size}: expected at least 1")
    rng = torch.Generator().manual_seed(seed)
    device = generator.w_avg.device
    own = Moments()
    with tqdm(total=num_samples, disable=not (progress and runtime.is_main), desc="PCA of W", unit="w", unit_scale=True) as bar:
        for index, start in enumerate(range(0, num_samples, batch_size)):
            size = min(batch_size, num_samples - start)
            z = torch.randn(size, generator.z_dim, generator=rng)
            if index % runtime.world_size == runtime.rank:
                own = own.merge(Moments.of(generator.mapping(z.to(device), truncation_psi=1.0).to(torch.float64)))
            bar.update(size)
    moments = Moments()
    for partial in all_gather_objects(own.to("cpu"), runtime):
        moments = moments.merge(partial.to(device))
    mean, scatter = moments.tensors()
    covariance = scatter / (moments.count - 1)
    eigenvalues, basis = sorted_eigh((covariance + covariance.T) / 2)
    return PCABasis(
        w_avg=mean.cpu(),
        basis=basis.cpu(),
        eigenvalues=eigenvalues.cpu(),
        stds=eigenvalues.clamp_min(0).sqrt().cpu(),
        num_samples=moments.count,
        generator_id=generator_identity(generator),
    )


def pca_cache_path(cache_dir: Path, generator_id: str, num_samples: int, seed: int) -> Path:
    """Where the PCA of one generator, sample count and seed is cached."""
    return Path(cache_dir) / f"pca-{generator_id}-n{num_samples}-seed{seed}.safetensors"


def load_or_compute_pca(
    generator: GeneratorLike,
    cache_dir: Path,
    num_samples: int = 1_000_000,
    seed: int = 0,
    batch_size: int = 10_000,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> PCABasis:
    """The cached PCA for this generator (by identity), sample count and seed; computed and cached on a miss.

    Rank 0 alone reads and writes the cache and sends a hit to the other ranks; on a miss every rank
    computes its share of the PCA.
    """
    runtime = runtime or Runtime()
    path = pca_cache_path(cache_dir, generator_identity(generator), num_samples, seed) if runtime.is_main else None
    cached = broadcast_from_main(PCABasis.load(path) if path is not None and path.is_file() else None, runtime)  # path: rank 0's
    if cached is not None:
        return cached
    pca = compute_pca(generator, num_samples=num_samples, batch_size=batch_size, seed=seed, progress=progress, runtime=runtime)
    if path is not None:
        pca.save(path)
    return pca


def sefa_basis(generator: GeneratorLike) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa's closed-form directions [C, C] (columns, decreasing eigenvalue) and the eigenvalues [C].

    A stacks every style-affine matrix [C_l, w_dim] of the synthesis layers along the rows; each row
    (one output channel's weight vector over W) is scaled to unit L2 norm, which is genforce/sefa's
    `weight / norm(weight, axis=0)` on its transposed [w_dim, C_l] layout; the directions are the
    eigenvectors of A^T A [w_dim, w_dim], oriented like the PCA axes.
    """
    if not has_style_affine_weights(generator):
        raise UserError("SeFa: the generator reports no style-affine weights")
    weights = [weight.detach().to(torch.float64).cpu() for weight in generator.style_affine_weights()]
    if not weights:
        raise UserError("SeFa: the generator reports no style-affine weights")
    stacked = torch.cat(weights, dim=0)
    stacked = stacked / stacked.norm(dim=1, keepdim=True)
    eigenvalues, directions = sorted_eigh(stacked.T @ stacked)
    return directions, eigenvalues
