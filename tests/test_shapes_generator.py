"""The shapes3d ground-truth generator: StyleGAN2 interface, factor readout, exact edits, entanglement, truncation."""
from __future__ import annotations

import pytest
import torch

from contrafeat.gan.interface import GeneratorLike
from contrafeat.shapes3d.linear_generator import FACTOR_BANDS, FACTOR_READOUT, ShapesGenerator
from contrafeat.shapes3d.renderer import render
from contrafeat.zoo import ZOO

HUES = (0, 1, 2)
SHARED_PAIRS = ((4, 2), (5, 1), (3, 0))
"""(shape, object hue), (orientation, wall hue), (scale, floor hue)."""


@pytest.fixture(scope="module")
def generator() -> ShapesGenerator:
    return ShapesGenerator()


def codes(generator: ShapesGenerator, count: int, seed: int, psi: float = 1.0) -> torch.Tensor:
    """Style-mixed W+ codes: layers [0, 5) from one z, the rest from another."""
    z = torch.randn(2 * count, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    w = generator.mapping(z, truncation_psi=psi)
    ws = generator.broadcast(w[:count])
    ws[:, generator.num_ws // 2 :] = w[count:, None]
    return ws


def factor_change(after: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """Absolute change per factor, hues on the circle."""
    change = after - before
    change[:, HUES] = torch.remainder(change[:, HUES] + 0.5, 1.0) - 0.5
    return change.abs()


def test_interface(generator: ShapesGenerator) -> None:
    assert isinstance(generator, GeneratorLike)
    assert (generator.z_dim, generator.w_dim, generator.num_ws, generator.img_resolution, generator.img_channels) == (64, 64, 10, 64, 3)
    assert generator.discriminator is None and generator.w_avg.shape == (64,)
    assert generator.config["kind"] == "shapes3d" and generator.config["seed"] == 0
    z = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    images = generator(z)
    assert images.shape == (3, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert generator.broadcast(generator.mapping(z)).shape == (3, 10, 64)
    assert ShapesGenerator(img_resolution=32).synthesis(generator.broadcast(generator.mapping(z))).shape == (3, 3, 32, 32)
    assert torch.equal(generator.synthesis(generator.broadcast(generator.mapping(z)), noise_mode="random"), images)
    with pytest.raises(ValueError, match="ws"):
        generator.synthesis(torch.zeros(1, 9, 64))


def test_built_from_the_seed(generator: ShapesGenerator) -> None:
    again = ZOO["shapes3d"]()
    other = ShapesGenerator(seed=1)
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(again.mapping(z), generator.mapping(z)) and torch.equal(again.w_avg, generator.w_avg)
    assert not torch.allclose(other.mapping(z), generator.mapping(z))


def test_w_is_anisotropic_and_not_gaussian(generator: ShapesGenerator) -> None:
    w = generator.mapping(torch.randn(20_000, 64, generator=torch.Generator().manual_seed(3))).double()
    eigenvalues = torch.linalg.eigvalsh(torch.cov(w.T)).flip(0)
    assert eigenvalues[0] / eigenvalues[19] > 5
    standard = (w - w.mean(0)) / w.std(0)
    assert standard.pow(3).mean(0).abs().mean() > 0.5
    torch.testing.assert_close(w.mean(0).float(), generator.w_avg, atol=0.05, rtol=0)


def test_synthesis_renders_the_factors(generator: ShapesGenerator) -> None:
    ws = codes(generator, 4, seed=4)
    factors = generator.factors(ws)
    assert torch.equal(generator.synthesis(ws), render(factors, 64, generator.supersample, generator.trace_steps) * 2 - 1)
    assert ((factors[:, HUES] >= 0) & (factors[:, HUES] < 1)).all()
    assert ((factors[:, 3] > 0.75) & (factors[:, 3] < 1.25)).all()
    assert ((factors[:, 4] >= 0) & (factors[:, 4] <= 3)).all()
    assert ((factors[:, 5] > -30) & (factors[:, 5] < 30)).all()


def test_factors_cover_their_ranges(generator: ShapesGenerator) -> None:
    z = torch.randn(2000, generator.z_dim, generator=torch.Generator().manual_seed(5))
    factors = generator.factors(generator.broadcast(generator.mapping(z)))
    for column in (0, 1, 2, 3, 5):
        histogram = torch.histc(factors[:, column], bins=4, min=float(factors[:, column].min()), max=float(factors[:, column].max()))
        assert histogram.min() > 300, (column, histogram)
    shapes = torch.bincount(factors[:, 4].round().long(), minlength=4)
    assert shapes.min() > 300, shapes


def test_true_edits_move_one_factor_each(generator: ShapesGenerator) -> None:
    ws = codes(generator, 64, seed=6)
    before = generator.factors(ws)
    edits = generator.true_edits()
    assert len(edits) == 6
    for factor, (direction, weights) in enumerate(edits):
        assert direction.shape == (64,) and weights.shape == (10,)
        torch.testing.assert_close(direction.norm(), torch.tensor(8.0))
        torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
        assert torch.nonzero(weights).flatten().tolist() == list(FACTOR_BANDS[factor])
        change = factor_change(generator.factors(ws + 1.0 * weights[:, None] * direction), before).mean(0)
        others = [column for column in range(6) if column != factor]
        spans = torch.tensor([1.0, 1.0, 1.0, 0.5, 3.0, 60.0])
        assert change[factor] / spans[factor] > 0.05, (factor, change)
        assert (change[others] < 1e-4 * spans[others]).all(), (factor, change)


def test_shared_readouts_entangle_pairs_across_layers(generator: ShapesGenerator) -> None:
    ws = codes(generator, 64, seed=7)
    before = generator.factors(ws)
    edits = generator.true_edits()
    spans = torch.tensor([1.0, 1.0, 1.0, 0.5, 3.0, 60.0])
    for first, second in SHARED_PAIRS:
        assert FACTOR_READOUT[first] == FACTOR_READOUT[second]
        assert not set(FACTOR_BANDS[first]) & set(FACTOR_BANDS[second])
        direction = edits[first][0]
        torch.testing.assert_close(direction, edits[second][0])
        change = factor_change(generator.factors(ws + 3.0 / generator.num_ws * direction), before).mean(0) / spans
        assert change[first] > 0.03 and change[second] > 0.03, (first, second, change)
        untouched = [column for column in range(6) if column not in (first, second)]
        assert (change[untouched] < 1e-5).all()


def test_overlapping_bands_read_orthogonal_vectors(generator: ShapesGenerator) -> None:
    readouts = torch.stack([direction for direction, _ in generator.true_edits()]) / 8.0
    for first in range(6):
        for second in range(first + 1, 6):
            if set(FACTOR_BANDS[first]) & set(FACTOR_BANDS[second]):
                assert abs(float(readouts[first] @ readouts[second])) < 1e-5, (first, second)


def test_readouts_lie_in_the_top_principal_components(generator: ShapesGenerator) -> None:
    w = generator.mapping(torch.randn(50_000, 64, generator=torch.Generator().manual_seed(8))).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(w.T))
    top = eigenvectors[:, eigenvalues.argsort(descending=True)[:20]]
    readouts = torch.stack([direction for direction, _ in generator.true_edits()]).double() / 8.0
    assert ((readouts @ top).norm(dim=1) > 0.97).all()


def test_the_rest_of_w_changes_nothing(generator: ShapesGenerator) -> None:
    ws = codes(generator, 16, seed=9)
    readouts = torch.stack([direction for direction, _ in generator.true_edits()[:3]]) / 8.0
    noise = torch.randn(ws.shape, generator=torch.Generator().manual_seed(10))
    noise = noise - (noise @ readouts.T) @ readouts
    torch.testing.assert_close(generator.factors(ws + 3.0 * noise), generator.factors(ws), atol=1e-4, rtol=0)


def test_style_mixing_takes_coarse_factors_from_the_first_code(generator: ShapesGenerator) -> None:
    z = torch.randn(8, 64, generator=torch.Generator().manual_seed(11))
    w = generator.mapping(z)
    mixed = generator.broadcast(w[:4])
    mixed[:, 5:] = w[4:, None]
    factors = generator.factors(mixed)
    torch.testing.assert_close(factors[:, 3:], generator.factors(generator.broadcast(w[:4]))[:, 3:])
    torch.testing.assert_close(factors[:, :2], generator.factors(generator.broadcast(w[4:]))[:, :2])


def test_truncation(generator: ShapesGenerator) -> None:
    z = torch.randn(3, 64, generator=torch.Generator().manual_seed(12))
    torch.testing.assert_close(generator.mapping(z, truncation_psi=0.0), generator.w_avg.expand(3, 64))
    ws = generator.broadcast(generator.mapping(z))
    truncated = generator.truncate(ws, 0.0, cutoff=4)
    torch.testing.assert_close(truncated[:, :4], generator.w_avg.expand(3, 4, 64))
    assert torch.equal(truncated[:, 4:], ws[:, 4:])
    torch.testing.assert_close(generator.truncate(ws, 0.5), generator.w_avg + 0.5 * (ws - generator.w_avg))
    images = generator(z, truncation_psi=0.0)
    assert torch.equal(images[0], images[1]) and torch.equal(images[1], images[2])


def test_style_affine_weights_read_each_layer(generator: ShapesGenerator) -> None:
    weights = generator.style_affine_weights()
    assert [w.shape[0] for w in weights] == [2, 2, 1, 1, 2, 1, 1, 1, 2, 1]
    assert all(w.shape[1] == 64 for w in weights)
    torch.testing.assert_close(torch.cat(weights).norm(dim=1), torch.ones(14))


def test_synthesis_is_differentiable(generator: ShapesGenerator) -> None:
    ws = codes(generator, 4, seed=13).requires_grad_(True)
    generator.synthesis(ws).square().sum().backward()
    gradient = ws.grad
    assert torch.isfinite(gradient).all()
    assert (gradient.flatten(1).norm(dim=1) > 0).all()
    distinct = torch.stack([direction for direction, _ in generator.true_edits()[:3]]) / 8.0
    outside = gradient - (gradient @ distinct.T) @ distinct
    assert outside.norm() < 1e-4 * gradient.norm()
