"""Contrast losses: masks, masked squared-cosine similarity, Bi / Pt signs, diversity, and where gradients go."""
import math

import pytest
import torch
from torch import nn

from contrafeat.discovery.losses import (
    Prototypes,
    bi_loss,
    diversity_loss,
    feature_changes,
    masked_similarity,
    pt_loss,
    sample_bi_indices,
    sample_strengths,
    similarity_matrix,
    spatial_mask,
)
from contrafeat.discovery.navigator import Navigator

EPS = 1e-6
ROOT_HALF = math.sqrt(0.5)


def maps(*vectors: tuple[float, float]) -> torch.Tensor:
    """One sample [1, 2, 1, N] from per-position 2-channel vectors."""
    return torch.tensor(vectors, dtype=torch.float64).T.reshape(1, 2, 1, len(vectors))


# a: norms 1, 2, 3; b: norms 3, 2, 1; cos per position 0, 1/sqrt(2), 1
A = maps((1.0, 0.0), (0.0, 2.0), (3.0, 0.0))
B = maps((0.0, 3.0), (math.sqrt(2), math.sqrt(2)), (1.0, 0.0))


def test_feature_changes_are_differences_per_stage():
    a = [torch.ones(1, 2, 2, 2), torch.full((1, 3, 1, 1), 5.0)]
    b = [torch.zeros(1, 2, 2, 2), torch.full((1, 3, 1, 1), 2.0)]
    changes = feature_changes(a, b)
    assert torch.equal(changes[0], torch.ones(1, 2, 2, 2))
    assert torch.equal(changes[1], torch.full((1, 3, 1, 1), 3.0))
    with pytest.raises(ValueError, match="2 and 1 stages"):
        feature_changes(a, b[:1])


def test_spatial_mask_is_min_max_of_channel_norms_per_sample():
    change = torch.tensor([[[[3.0, 0.0, 0.0]], [[4.0, 0.0, 1.0]]], [[[1.0, 1.0, 2.0]], [[0.0, 0.0, 0.0]]]])
    mask = spatial_mask(change)
    assert mask.shape == (2, 1, 3)
    assert torch.allclose(mask[0, 0], torch.tensor([5.0, 0.0, 1.0]) / (5 + EPS))
    assert torch.allclose(mask[1, 0], torch.tensor([0.0, 0.0, 1.0]) / (1 + EPS))


def test_masked_squared_cosine_matches_the_hand_computation():
    m_a = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64) / (2 + EPS)
    m_b = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64) / (2 + EPS)
    m = m_a * m_b  # only the middle position survives
    cos = torch.tensor([0.0, ROOT_HALF, 1.0], dtype=torch.float64)
    expected = ((m * cos) ** 2).sum() / (m.sum() + EPS)
    assert float(expected) == pytest.approx(0.125, rel=1e-5)
    assert float(masked_similarity(A, B)) == pytest.approx(float(expected), rel=1e-9)
    expected_abs = (m * cos.abs()).sum() / (m.sum() + EPS)
    assert float(masked_similarity(A, B, cos_mode="abs")) == pytest.approx(float(expected_abs), rel=1e-9)


def test_no_focus_and_pooled_similarities_match_the_hand_computation():
    assert float(masked_similarity(A, B, mask_mode="none")) == pytest.approx((0 + 0.5 + 1) / 3)
    mean_a = torch.tensor([4 / 3, 2 / 3], dtype=torch.float64)
    mean_b = torch.tensor([(math.sqrt(2) + 1) / 3, (3 + math.sqrt(2)) / 3], dtype=torch.float64)
    cos = float(mean_a @ mean_b / (mean_a.norm() * mean_b.norm()))
    assert float(masked_similarity(A, B, mask_mode="pooled")) == pytest.approx(cos**2)
    assert float(masked_similarity(A, B, mask_mode="pooled", cos_mode="abs")) == pytest.approx(abs(cos))


def test_similarity_is_invariant_to_scale_and_sign():
    change = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    same = masked_similarity(change, change)
    assert torch.allclose(masked_similarity(change, -3 * change), same)
    mask = spatial_mask(change)
    assert torch.allclose(same, (mask**4).sum((1, 2)) / ((mask**2).sum((1, 2)) + EPS))


@pytest.mark.parametrize("mask_mode", ["l2", "none", "pooled"])
def test_similarity_matrix_agrees_with_pairwise_similarity(mask_mode):
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 4, 5, 5, generator=generator), torch.randn(2, 4, 5, 5, generator=generator)
    matrix = similarity_matrix(a, b, mask_mode)
    assert matrix.shape == (3, 2)
    for k in range(2):
        assert torch.allclose(matrix[:, k], masked_similarity(a, b[k].expand(3, -1, -1, -1), mask_mode), atol=1e-6)


def orthogonal_pair(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Changes that are orthogonal over channels at every position (channel 0 vs channel 1)."""
    spatial = torch.rand(batch, 1, 4, 4, generator=torch.Generator().manual_seed(2)) + 0.1
    zero = torch.zeros_like(spatial)
    return torch.cat([spatial, zero], 1), torch.cat([zero, spatial.flip(-1)], 1)


def test_bi_loss_signs():
    q, orthogonal = orthogonal_pair()
    assert float(masked_similarity(q, orthogonal).abs().max()) == 0.0
    best = masked_similarity(q, q)
    # identical positive and orthogonal negative: the most negative value, summed over two stages
    assert float(bi_loss([q, q], [q, q], [orthogonal, orthogonal])) == pytest.approx(float(-2 * best.mean()))
    assert float(bi_loss([q], [orthogonal], [q])) == pytest.approx(float(best.mean()))
    assert float(bi_loss([q], [q], [q])) == 0.0


def test_sample_bi_indices_never_pair_a_direction_with_itself():
    generator = torch.Generator().manual_seed(0)
    i, j, s, s_negative = sample_bi_indices(3, 600, generator, scale=0.5)
    assert i.shape == j.shape == s.shape == s_negative.shape == (600,)
    assert bool((i != j).all())
    assert set(i.tolist()) == {0, 1, 2} and {(a, b) for a, b in zip(i.tolist(), j.tolist())} == {
        (a, b) for a in range(3) for b in range(3) if a != b
    }
    assert float(s.abs().max()) <= 0.5 and float(s_negative.abs().max()) <= 0.5
    assert not torch.equal(s, s_negative)
    again = sample_bi_indices(3, 600, torch.Generator().manual_seed(0), scale=0.5)
    assert all(torch.equal(x, y) for x, y in zip((i, j, s, s_negative), again))


def test_sample_steps_are_uniform_in_the_scaled_range():
    strengths = sample_strengths(20_000, torch.Generator().manual_seed(0), scale=2.0)
    assert float(strengths.min()) >= -2.0 and float(strengths.max()) <= 2.0
    assert float(strengths.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(strengths.abs().mean()) == pytest.approx(1.0, abs=0.05)


def channel_prototypes(size: int = 4) -> torch.Tensor:
    """Three prototype feature maps [3, 3, size, size], prototype k living in channel k only."""
    spatial = torch.rand(3, size, size, generator=torch.Generator().manual_seed(3)) + 0.1
    return torch.eye(3)[:, :, None, None] * spatial[:, None]


def test_pt_loss_rewards_the_own_prototype_and_averages_all_others():
    phi = channel_prototypes()
    self_similarity = masked_similarity(phi, phi)
    query = torch.tensor([0, 2])
    matching = pt_loss([phi[query]], [phi], query)
    assert float(matching) == pytest.approx(float(-self_similarity[query].mean()))
    # query 0 but the change is prototype 1: no own credit, the mean over the K-1 = 2 others is s_11 / 2
    mismatched = pt_loss([phi[1:2]], [phi], torch.tensor([0]))
    assert float(mismatched) == pytest.approx(float(self_similarity[1]) / 2)


def test_pt_loss_resizes_prototype_features_to_each_stage():
    phi = channel_prototypes(2)
    blocky = phi.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    change = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    query = torch.tensor([1, 0])
    assert torch.allclose(pt_loss([change], [blocky], query), pt_loss([change], [phi], query))


def test_prototypes_init_and_mirroring():
    prototypes = Prototypes(4, 16, seed=0)
    assert prototypes.raw.shape == (4, 3, 16, 16)
    assert float(prototypes.raw.detach().std()) == pytest.approx(0.01, rel=0.1)
    plain = prototypes.patterns(mirror=False)
    assert torch.equal(plain, torch.tanh(prototypes.raw))
    assert torch.equal(prototypes.patterns(mirror=True), -plain.flip(-1))
    assert torch.equal(Prototypes(4, 16, seed=0).raw, prototypes.raw)


def test_diversity_is_a_sum_over_ordered_pairs():
    orthogonal = torch.eye(6)[:3].reshape(3, 2, 3)
    assert float(diversity_loss(orthogonal)) == 0.0
    parallel = torch.randn(1, 2, 3).repeat(4, 1, 1) * torch.tensor([1.0, -2.0, 3.0, 0.5])[:, None, None]
    assert float(diversity_loss(parallel)) == pytest.approx(4 * 3)
    sixty_degrees = torch.tensor([[[1.0, 0.0]], [[0.5, math.sqrt(3) / 2]]])
    assert float(diversity_loss(sixty_degrees)) == pytest.approx(2 * 0.25)


class FrozenWorld(nn.Module):
    """A linear 'synthesis' W+ [B, 3, 4] -> 3x8x8 images and a two-stage conv 'sensor', both frozen."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.synthesis_layer = nn.Linear(12, 3 * 8 * 8)
        self.stage1 = nn.Conv2d(3, 4, 3, padding=1)
        self.stage2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.requires_grad_(False)

    def synthesis(self, ws: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.synthesis_layer(ws.flatten(1))).view(-1, 3, 8, 8)

    def sensor(self, images: torch.Tensor) -> list[torch.Tensor]:
        first = torch.relu(self.stage1(images))
        return [first, torch.relu(self.stage2(first))]


def test_only_navigator_and_prototypes_receive_gradients():
    world = FrozenWorld()
    frozen = {name: p.clone() for name, p in world.state_dict().items()}
    basis = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(5)))[0]
    navigator = Navigator(num_directions=3, num_ws=3, w_dim=4, basis=basis, subspace_dim=2, seed=0)
    prototypes = Prototypes(3, 8, seed=0)
    optimizer = torch.optim.Adam(list(navigator.parameters()) + list(prototypes.parameters()), lr=0.05)
    rng = torch.Generator().manual_seed(0)
    ws = torch.randn(4, 3, 4, generator=rng)
    w1, w2 = ws[:2], ws[2:]
    i, j, s, s_negative = sample_bi_indices(3, 2, rng)
    base1, base2 = world.sensor(world.synthesis(w1)), world.sensor(world.synthesis(w2))
    query = feature_changes(world.sensor(world.synthesis(navigator.apply_to(w1, i, s))), base1)
    positive = feature_changes(world.sensor(world.synthesis(navigator.apply_to(w2, i, s))), base2)
    negative = feature_changes(world.sensor(world.synthesis(navigator.apply_to(w2, j, s_negative))), base2)
    change = feature_changes(
        world.sensor(world.synthesis(navigator.apply_to(ws, i.repeat(2), s.repeat(2) / 2))),
        world.sensor(world.synthesis(navigator.apply_to(ws, i.repeat(2), -s.repeat(2) / 2))),
    )
    loss = (
        bi_loss(query, positive, negative)
        + pt_loss(change, world.sensor(prototypes.patterns(True)), i.repeat(2))
        + 0.1 * diversity_loss(navigator.edits())
    )
    loss.backward()
    assert all(p.grad is None for p in world.parameters())
    trained = list(navigator.parameters()) + list(prototypes.parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in trained)
    before = [p.detach().clone() for p in trained]
    optimizer.step()
    assert all(not torch.equal(p, b) for p, b in zip(trained, before))
    assert all(torch.equal(world.state_dict()[name], value) for name, value in frozen.items())
