"""PCA of W (exactness, recovery, cache), generator identity, and SeFa's closed form."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from contrafeat.discovery.subspace import Moments, PCABasis, compute_pca, load_or_compute_pca, sefa_basis
from contrafeat.errors import UserError
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import WPlusCodes

ROTATION = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
SCALES = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
"""The fake's W = ROTATION diag(SCALES) z + offset: covariance eigenvectors ROTATION, eigenvalues 9, 4, 1."""


class LinearGaussianGenerator(WPlusCodes, nn.Module):
    """A fake generator whose mapping is linear in z, recording every w it returns."""

    z_dim = w_dim = 3
    num_ws = 2

    def __init__(self, affines: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.register_buffer("matrix", (ROTATION * SCALES).float())
        self.register_buffer("offset", torch.tensor([1.0, -2.0, 0.5]))
        self.register_buffer("w_avg", self.offset.clone())
        self.affines = affines or []
        self.mapped: list[torch.Tensor] = []

    def mapping(self, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
        w = z @ self.matrix.T + self.offset
        self.mapped.append(w)
        return self.w_avg.lerp(w, truncation_psi)

    def style_affine_weights(self) -> list[torch.Tensor]:
        return self.affines


def test_pca_equals_numpy_on_the_same_samples():
    generator = LinearGaussianGenerator()
    pca = compute_pca(generator, num_samples=1000, batch_size=300, progress=False)
    samples = torch.cat(generator.mapped).double().numpy()
    assert samples.shape == (1000, 3) and pca.num_samples == 1000
    covariance = pca.basis @ torch.diag(pca.eigenvalues) @ pca.basis.T
    assert np.allclose(covariance.numpy(), np.cov(samples.T), rtol=1e-10, atol=1e-12)
    assert np.allclose(pca.w_avg.numpy(), samples.mean(axis=0), rtol=1e-12)
    numpy_values = np.sort(np.linalg.eigvalsh(np.cov(samples.T)))[::-1]
    assert np.allclose(pca.eigenvalues.numpy(), numpy_values, rtol=1e-10)


def test_pca_recovers_the_known_covariance():
    pca = compute_pca(LinearGaussianGenerator(), num_samples=20_000, batch_size=4096, seed=1, progress=False)
    assert torch.allclose(pca.eigenvalues, SCALES**2, rtol=0.05)
    assert torch.allclose(pca.stds, SCALES, rtol=0.03)
    alignment = (pca.basis.T @ ROTATION).abs()
    assert torch.all(alignment.diagonal() > 0.99)


def test_moments_merge_equals_the_moments_of_the_union():
    generator = torch.Generator().manual_seed(2)
    first = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    second = torch.randn(4, 3, generator=generator, dtype=torch.float64) * 3 + 5
    merged = Moments.of(first).merge(Moments.of(second))
    whole = Moments.of(torch.cat([first, second]))
    assert merged.count == 11
    assert torch.allclose(merged.mean, whole.mean, rtol=1e-12) and torch.allclose(merged.scatter, whole.scatter, rtol=1e-12)
    part = Moments.of(first)
    assert Moments().merge(part) is part and part.merge(Moments()) is part


def test_pca_rejects_bad_sizes():
    with pytest.raises(UserError, match="PCA samples 1: expected at least 2"):
        compute_pca(LinearGaussianGenerator(), num_samples=1, progress=False)
    with pytest.raises(UserError, match="PCA batch size 0: expected at least 1"):
        compute_pca(LinearGaussianGenerator(), num_samples=10, batch_size=0, progress=False)


def test_pca_basis_is_orthonormal_sorted_and_sign_fixed():
    pca = compute_pca(LinearGaussianGenerator(), num_samples=500, batch_size=128, progress=False)
    assert torch.allclose(pca.basis.T @ pca.basis, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert bool((pca.eigenvalues[:-1] >= pca.eigenvalues[1:]).all())
    largest = pca.basis.abs().argmax(dim=0)
    assert bool((pca.basis[largest, torch.arange(3)] > 0).all())
    assert torch.equal(pca.stds, pca.eigenvalues.sqrt())


def test_pca_is_deterministic_for_a_seed():
    first = compute_pca(LinearGaussianGenerator(), num_samples=300, batch_size=100, seed=7, progress=False)
    second = compute_pca(LinearGaussianGenerator(), num_samples=300, batch_size=100, seed=7, progress=False)
    other = compute_pca(LinearGaussianGenerator(), num_samples=300, batch_size=100, seed=8, progress=False)
    assert torch.equal(first.basis, second.basis) and torch.equal(first.eigenvalues, second.eigenvalues)
    assert not torch.equal(first.eigenvalues, other.eigenvalues)


def test_save_load_round_trip(tmp_path):
    pca = compute_pca(LinearGaussianGenerator(), num_samples=200, batch_size=64, progress=False)
    pca.save(tmp_path / "pca.safetensors")
    loaded = PCABasis.load(tmp_path / "pca.safetensors")
    for name in ("w_avg", "basis", "eigenvalues", "stds"):
        assert torch.equal(getattr(loaded, name), getattr(pca, name))
    assert (loaded.num_samples, loaded.generator_id) == (200, pca.generator_id)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.safetensors: no such PCA file"):
        PCABasis.load(tmp_path / "missing.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="garbage.safetensors: not a PCA file"):
        PCABasis.load(garbage)


def test_cache_hit_returns_identical_tensors_without_mapping(tmp_path):
    generator = LinearGaussianGenerator()
    computed = load_or_compute_pca(generator, tmp_path, num_samples=256, batch_size=100, progress=False)
    calls = len(generator.mapped)
    assert calls == 3 and len(list(tmp_path.glob("*.safetensors"))) == 1
    cached = load_or_compute_pca(generator, tmp_path, num_samples=256, batch_size=100, progress=False)
    assert len(generator.mapped) == calls
    for name in ("w_avg", "basis", "eigenvalues", "stds"):
        assert torch.equal(getattr(cached, name), getattr(computed, name))
    load_or_compute_pca(generator, tmp_path, num_samples=128, batch_size=100, progress=False)
    assert len(generator.mapped) == calls + 2
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_generator_identity_follows_weights_and_config():
    first, second = LinearGaussianGenerator(), LinearGaussianGenerator()
    identity = generator_identity(first)
    assert len(identity) == 16 and int(identity, 16) >= 0
    assert generator_identity(second) == identity
    with torch.no_grad():
        second.offset[0] += 1e-3
    assert generator_identity(second) != identity
    first.config = {"channel_base": 16384}
    assert generator_identity(first) != identity
    assert generator_identity(first) == generator_identity(first)


def test_sefa_on_hand_made_affines():
    # rows normalised: [1, 0], [0.6, 0.8] -> A^T A = [[1.36, 0.48], [0.48, 0.64]], eigenvalues 1 +- 0.6
    affines = [torch.tensor([[3.0, 0.0]]), torch.tensor([[1.5, 2.0]])]
    directions, eigenvalues = sefa_basis(LinearGaussianGenerator(affines))
    assert torch.allclose(eigenvalues, torch.tensor([1.6, 0.4], dtype=torch.float64))
    # eigenvectors (2, 1)/sqrt(5) and (1, -2)/sqrt(5), the latter flipped so its largest entry is positive
    expected = torch.tensor([[2.0, -1.0], [1.0, 2.0]], dtype=torch.float64) / math.sqrt(5)
    assert torch.allclose(directions, expected)


def test_sefa_matches_numpy_genforce_form():
    generator = torch.Generator().manual_seed(0)
    affines = [torch.randn(5, 4, generator=generator), torch.randn(3, 4, generator=generator) * 10]
    directions, eigenvalues = sefa_basis(LinearGaussianGenerator(affines))
    weight = np.concatenate([a.double().numpy().T for a in affines], axis=1)  # genforce layout [w_dim, sum C]
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    values, vectors = np.linalg.eig(weight @ weight.T)
    order = np.argsort(values)[::-1]
    assert np.allclose(eigenvalues.numpy(), values[order])
    assert np.allclose(np.abs(directions.numpy().T @ vectors[:, order]), np.eye(4), atol=1e-8)
