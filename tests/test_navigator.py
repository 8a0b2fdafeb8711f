"""Navigator math: RMS-normalised directions in the PCA subspace, smoothed attention, outer-product edits."""
import math

import pytest
import torch

from contrafeat.discovery.navigator import Navigator, gaussian_kernel1d
from contrafeat.gan.interface import rms_normalise

G0 = 1 / (1 + 2 * math.exp(-0.5))
G1 = math.exp(-0.5) * G0
"""Taps of the size-3, sigma-1 Gaussian: [G1, G0, G1] ~ [0.274, 0.452, 0.274]."""


def orthonormal_basis(size: int, seed: int = 0) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(size, size, generator=torch.Generator().manual_seed(seed)))[0]


def make_navigator(**overrides) -> Navigator:
    options = dict(
        num_directions=4, num_ws=5, w_dim=8, basis=orthonormal_basis(8), subspace_dim=3,
        direction_mode="learned", attention_mode="softmax", seed=0,
    )
    options.update(overrides)
    return Navigator(**options)


def set_logits(navigator: Navigator, logits: list[list[float]]) -> None:
    with torch.no_grad():
        navigator.attention_branch.logits.copy_(torch.tensor(logits))


def test_rms_normalise_gives_unit_second_moment():
    x = torch.tensor([[3.0, 4.0], [1.0, -1.0]])
    expected = x / torch.sqrt(torch.tensor([[12.5], [1.0]]) + 1e-8)
    assert torch.allclose(rms_normalise(x), expected)


def test_gaussian_kernel_values():
    kernel = gaussian_kernel1d(3, 1.0)
    assert torch.allclose(kernel, torch.tensor([G1, G0, G1]), atol=1e-7)
    assert torch.allclose(kernel, torch.tensor([0.27406862, 0.45186276, 0.27406862]), atol=1e-7)
    assert float(kernel.sum()) == pytest.approx(1.0)


def test_learned_directions_have_rms_one_and_lie_in_the_subspace():
    basis = orthonormal_basis(8)
    navigator = make_navigator(basis=basis)
    directions = navigator.directions()
    assert directions.shape == (4, 8)
    assert torch.allclose(directions.square().mean(dim=1), torch.ones(4), atol=1e-6)
    assert torch.allclose(directions.norm(dim=1), torch.full((4,), math.sqrt(8)), atol=1e-5)
    top = basis[:, :3]
    residual = directions - (directions @ top) @ top.T
    assert residual.abs().max() < 1e-5
    outside = directions @ basis[:, 3:]
    assert outside.abs().max() < 1e-5


def test_learned_parameters_are_seeded():
    same_a, same_b = make_navigator(seed=3), make_navigator(seed=3)
    other = make_navigator(seed=4)
    assert torch.equal(same_a.directions(), same_b.directions())
    assert torch.equal(same_a.attention(), same_b.attention())
    assert not torch.allclose(same_a.directions(), other.directions())


def test_fixed_directions_are_the_scaled_basis_columns():
    basis = orthonormal_basis(8)
    navigator = make_navigator(basis=basis, direction_mode="fixed")
    assert torch.allclose(navigator.directions(), basis[:, :4].T * math.sqrt(8), atol=1e-5)
    assert list(navigator.direction_branch.parameters()) == []


def test_softmax_attention_with_one_hot_logits_matches_the_hand_computation():
    navigator = make_navigator(num_directions=2, num_ws=3)
    set_logits(navigator, [[0.0, 0.0, 100.0], [100.0, 0.0, 0.0]])
    # softmax [0, 0, 1] -> reflect pad [0, 0, 0, 1, 0] -> filter [G1, G0, G1]
    expected = torch.tensor([[0.0, G1, G0], [G0, G1, 0.0]])
    assert torch.allclose(navigator.attention(), expected, atol=1e-6)


def test_softmax_attention_of_equal_logits_is_uniform():
    navigator = make_navigator(num_directions=1, num_ws=3)
    set_logits(navigator, [[0.5, 0.5, 0.5]])
    assert torch.allclose(navigator.attention(), torch.full((1, 3), 1 / 3))


def test_attended_layers_zero_the_upper_layers_before_filtering():
    navigator = make_navigator(num_directions=1, num_ws=4, attended_layers=2)
    set_logits(navigator, [[0.0, 0.0]])
    # [0.5, 0.5, 0, 0] -> reflect pad [0.5, 0.5, 0.5, 0, 0, 0] -> filter
    expected = torch.tensor([[0.5 * (G0 + 2 * G1), 0.5 * (G0 + G1), 0.5 * G1, 0.0]])
    assert torch.allclose(navigator.attention(), expected, atol=1e-6)


def test_no_attention_is_uniform_and_has_no_parameters():
    navigator = make_navigator(attention_mode="none")
    assert torch.equal(navigator.attention(), torch.full((4, 5), 0.2))
    assert list(navigator.attention_branch.parameters()) == []
    partial = make_navigator(num_ws=4, attention_mode="none", attended_layers=2)
    assert torch.equal(partial.attention()[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))


def test_edits_are_outer_products():
    navigator = make_navigator()
    edits = navigator.edits()
    attention, directions = navigator.attention(), navigator.directions()
    assert edits.shape == (4, 5, 8)
    for k in range(4):
        assert torch.allclose(edits[k], torch.outer(attention[k], directions[k]))


def test_apply_equals_the_explicit_formula():
    navigator = make_navigator()
    ws = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(1))
    index = torch.tensor([2, 0, 2])
    strength = torch.tensor([0.5, -1.0, 2.0])
    edited = navigator.apply_to(ws, index, strength)
    attention, directions = navigator.attention(), navigator.directions()
    for b in range(3):
        expected = ws[b] + strength[b] * torch.outer(attention[index[b]], directions[index[b]])
        assert torch.allclose(edited[b], expected, atol=1e-6)
    assert torch.allclose(navigator.apply_to(ws, index, 0.0), ws)


def test_only_branch_parameters_train():
    navigator = make_navigator()
    names = {name for name, _ in navigator.named_parameters()}
    assert names == {"direction_branch.coefficients", "attention_branch.logits"}
    navigator.edits().square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in navigator.parameters())


def test_invalid_sizes_are_value_errors():
    with pytest.raises(ValueError, match=r"subspace_dim 9: expected 1\.\.8"):
        make_navigator(subspace_dim=9)
    with pytest.raises(ValueError, match=r"basis: expected shape \[8, n\], got \[6, 6\]"):
        make_navigator(basis=orthonormal_basis(6))
    with pytest.raises(ValueError, match="num_directions 9"):
        make_navigator(num_directions=9, direction_mode="fixed")
    with pytest.raises(ValueError, match="attended_layers 6"):
        make_navigator(attended_layers=6)
