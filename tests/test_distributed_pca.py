"""The PCA of W sharded over 2 gloo processes on the CPU equals the single-process PCA; rank 0 alone caches it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from distributed_worker import free_port
from tiny_world import TinyGenerator

from contrafeat.discovery import distributed
from contrafeat.discovery.subspace import PCABasis, compute_pca, load_or_compute_pca, sorted_eigh
from contrafeat.gan.identity import generator_identity

SAMPLES, BATCH, SEED = 1150, 250, 3
"""5 batches (250, 250, 250, 250, 150): rank 0 maps batches 0, 2 and 4, rank 1 maps batches 1 and 3."""
ONE_BATCH = 100
"""Fewer samples than one batch: rank 1 maps nothing."""
TENSORS = ("w_avg", "basis", "eigenvalues", "stds")


class CountingGenerator(TinyGenerator):
    """The tiny generator, recording the size of every batch mapped after its construction."""

    def __init__(self) -> None:
        super().__init__()
        self.mapped: list[int] = []

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        if hasattr(self, "mapped"):
            self.mapped.append(len(z))
        return super().mapping(z, truncation_psi)


def as_record(pca: PCABasis, mapped: list[int]) -> dict:
    """A PCA and the batch sizes mapped so far, in a form torch.load(weights_only=True) reads back."""
    return {**{name: getattr(pca, name) for name in TENSORS}, "num_samples": pca.num_samples,
            "generator_id": pca.generator_id, "mapped": list(mapped)}


def rank_main(rank: int, world_size: int, port: int, root: Path) -> None:
    """One spawned rank: a cache miss, a cache hit and a one-batch PCA; its records go to root/rank<N>.pt."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size), RANK=str(rank),
                      LOCAL_RANK=str(rank), CONTRAFEAT_CACHE=str(root / "default-cache"))
    torch.set_num_threads(1)
    runtime = distributed.start("cpu")
    try:
        generator = CountingGenerator()
        cache = root / f"cache-rank{rank}"
        options = {"num_samples": SAMPLES, "batch_size": BATCH, "seed": SEED, "progress": False, "runtime": runtime}
        miss = as_record(load_or_compute_pca(generator, cache, **options), generator.mapped)
        hit = as_record(load_or_compute_pca(generator, cache, **options), generator.mapped)
        generator.mapped.clear()
        small = compute_pca(generator, num_samples=ONE_BATCH, batch_size=BATCH, seed=SEED, progress=False, runtime=runtime)
        torch.save({"miss": miss, "hit": hit, "one-batch": as_record(small, generator.mapped)}, root / f"rank{rank}.pt")
    finally:
        distributed.stop(runtime)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[list[dict], Path]:
    """One spawn of 2 ranks; each rank's records and the root folder."""
    root = tmp_path_factory.mktemp("distributed-pca")
    torch.multiprocessing.spawn(rank_main, args=(2, free_port(), root), nprocs=2, join=True)
    return [torch.load(root / f"rank{rank}.pt", weights_only=True) for rank in range(2)], root


@torch.no_grad()
def reference_pca(generator: TinyGenerator, num_samples: int, batch_size: int, seed: int) -> PCABasis:
    """The single-process computation as it was before sharding (merge written out inline)."""
    rng = torch.Generator().manual_seed(seed)
    count, mean, scatter = 0, None, None
    while count < num_samples:
        size = min(batch_size, num_samples - count)
        z = torch.randn(size, generator.z_dim, generator=rng)
        w = generator.mapping(z, truncation_psi=1.0).to(torch.float64)
        batch_mean = w.mean(dim=0)
        centred = w - batch_mean
        batch_scatter = centred.T @ centred
        if mean is None:
            mean, scatter = batch_mean, batch_scatter
        else:
            delta = batch_mean - mean
            total = count + size
            mean = mean + delta * (size / total)
            scatter = scatter + batch_scatter + torch.outer(delta, delta) * (count * size / total)
        count += size
    covariance = scatter / (count - 1)
    eigenvalues, basis = sorted_eigh((covariance + covariance.T) / 2)
    return PCABasis(mean, basis, eigenvalues, eigenvalues.clamp_min(0).sqrt(), count, generator_identity(generator))


def test_single_process_is_bit_for_bit_the_unsharded_computation():
    for num_samples in (SAMPLES, ONE_BATCH):
        pca = compute_pca(TinyGenerator(), num_samples=num_samples, batch_size=BATCH, seed=SEED, progress=False)
        reference = reference_pca(TinyGenerator(), num_samples, BATCH, SEED)
        for name in TENSORS:
            assert torch.equal(getattr(pca, name), getattr(reference, name)), name
        assert (pca.num_samples, pca.generator_id) == (reference.num_samples, reference.generator_id)


def test_two_ranks_equal_one_process(ranks):
    records, _ = ranks
    single = compute_pca(TinyGenerator(), num_samples=SAMPLES, batch_size=BATCH, seed=SEED, progress=False)
    for record in records:
        for name in TENSORS:
            assert torch.allclose(record["miss"][name], getattr(single, name), rtol=1e-9, atol=1e-12), name
        assert (record["miss"]["num_samples"], record["miss"]["generator_id"]) == (SAMPLES, single.generator_id)
    other_seed = compute_pca(TinyGenerator(), num_samples=SAMPLES, batch_size=BATCH, seed=SEED + 1, progress=False)
    assert not torch.allclose(other_seed.eigenvalues, single.eigenvalues, rtol=1e-9, atol=1e-12)


def test_ranks_hold_the_same_basis_and_share_the_batches(ranks):
    (first, second), _ = ranks
    for name in TENSORS:
        assert torch.equal(first["miss"][name], second["miss"][name]), name
    assert first["miss"]["mapped"] == [250, 250, 150] and second["miss"]["mapped"] == [250, 250]


def test_one_batch_leaves_rank_one_idle(ranks):
    (first, second), _ = ranks
    single = compute_pca(TinyGenerator(), num_samples=ONE_BATCH, batch_size=BATCH, seed=SEED, progress=False)
    assert first["one-batch"]["mapped"] == [ONE_BATCH] and second["one-batch"]["mapped"] == []
    for record in (first, second):
        for name in TENSORS:
            assert torch.equal(record["one-batch"][name], getattr(single, name)), name


def test_rank_zero_writes_the_cache_once_and_every_rank_reads_it(ranks):
    (first, second), root = ranks
    assert [path.name for path in (root / "cache-rank0").iterdir()] == [f"pca-{first['miss']['generator_id']}-n{SAMPLES}-seed{SEED}.safetensors"]
    assert not (root / "cache-rank1").exists() and not (root / "default-cache").exists()
    for record in (first, second):
        assert record["hit"]["mapped"] == record["miss"]["mapped"]
        for name in TENSORS:
            assert torch.equal(record["hit"][name], first["miss"][name]), name
