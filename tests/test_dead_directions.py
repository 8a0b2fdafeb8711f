"""Directions that do not move the image are dead whatever float noise they make; agreement with the truth is
measured on what the generator reads, so a null-space component costs nothing."""
import pytest
import torch
from true_edit_directions import true_directions

from contrafeat.discovery.directions import Directions
from contrafeat.discovery.subspace import sefa_basis
from contrafeat.evaluation.attribute_scores import ExactFactors, attribute_change_matrix, score_matrix
from contrafeat.evaluation.dead_directions import DEAD_FRACTION, dead_directions, dead_indices, image_changes
from contrafeat.evaluation.pairs import keep_distinct
from contrafeat.evaluation.true_edits import edit_cosines, read_projectors, true_edit_agreement
from contrafeat.gan.interface import seeded_codes
from contrafeat.shapes3d.truth import true_edit_tensor


def null_vector(shapes) -> torch.Tensor:
    """A unit-RMS W vector orthogonal to every readout: it changes no factor of the shapes3d world."""
    readouts = shapes.readouts.double()
    vector = torch.randn(shapes.w_dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    vector -= readouts.T @ torch.linalg.lstsq(readouts @ readouts.T, readouts @ vector).solution
    return (vector / vector.square().mean().sqrt()).float()


def float_noise_direction(shapes) -> tuple[torch.Tensor, torch.Tensor]:
    """A null vector plus 1e-6 of a true edit: what it reads is float noise, not an exact zero."""
    scale_vector, _ = shapes.true_edits()[3]
    return null_vector(shapes) + 1e-6 * scale_vector, torch.full((shapes.num_ws,), 1.0 / shapes.num_ws)


def tiny_edit_direction(shapes) -> tuple[torch.Tensor, torch.Tensor]:
    """A millionth of the floor-hue edit: it changes the floor colour by float-noise amounts, not an exact zero.

    (A null vector is no good for the image check: its read part of ~1e-7 flips edge pixels of the renderer
    chaotically, up to 4 % of a real edit's change, depending on the thread count.)"""
    floor_vector, _ = shapes.true_edits()[0]
    return 1e-6 * floor_vector, torch.full((shapes.num_ws,), 1.0 / shapes.num_ws)


def test_a_float_noise_direction_is_dead_scores_zero_and_finds_nothing(shapes):
    directions = true_directions(shapes, rows=[0, 3], extra=[tiny_edit_direction(shapes)])
    strengths = torch.full((3,), 0.5)
    codes = seeded_codes(shapes, 16, 0, 0.5)
    dead, changes = dead_directions(shapes, directions, strengths, codes)
    assert dead == [2]
    assert 0 < float(changes[2]) < DEAD_FRACTION * float(changes[:2].min())  # noise, yet not an exact zero
    matrix = attribute_change_matrix(shapes, directions, ExactFactors(shapes), strengths, num_samples=64)
    assert float(matrix[2].max()) > 0  # the factor readout sees the noise too
    counted = score_matrix(matrix)
    assert counted.row_argmax[2] is not None and counted.score > 2 / 3  # counted as an effect without the dead list
    scores = score_matrix(matrix, dead)
    assert scores.row_argmax == [0, 3, None]
    assert scores.found == 2
    assert scores.score == pytest.approx(2 / 3, abs=1e-3)  # the two true edits score 1, the dead one 0


def test_dead_indices_are_relative_to_the_reference():
    changes = torch.tensor([0.2, 0.5 * DEAD_FRACTION, 2 * DEAD_FRACTION, float("nan")])
    assert dead_indices(changes, reference=1.0) == [1, 3]
    assert dead_indices(changes * 1e-6, reference=1e-6) == [1, 3]  # scale-free
    assert dead_indices(changes, reference=0.0) == [0, 1, 2, 3]


def test_sefa_null_vectors_are_dead_on_the_shapes3d_world(shapes):
    vectors = sefa_basis(shapes)[0].T[:6].float() * shapes.w_dim**0.5  # [6, C]: 3 read axes, then null axes
    directions = Directions(vectors, torch.full((6, shapes.num_ws), 1.0 / shapes.num_ws), torch.ones(6), "sefa", "shapes3d")
    dead, changes = dead_directions(shapes, directions, torch.full((6,), 100.0), seeded_codes(shapes, 8, 0, 0.5))
    assert dead == [3, 4, 5], changes  # even at a strength of 100 the null axes move nothing
    assert (image_changes(shapes, directions, torch.full((6,), 0.5), seeded_codes(shapes, 8, 0, 0.5))[:3] > 0.01).all()


def test_pairs_leave_out_the_dead_directions():
    changes = torch.randn(3, 10, 40, generator=torch.Generator().manual_seed(0))
    assert keep_distinct(changes, dead=[1]) == [0, 2]


def test_a_null_space_component_costs_no_read_span_agreement(shapes):
    truth = true_edit_tensor(shapes)
    scale_vector, scale_weights = shapes.true_edits()[3]
    noisy = (scale_vector + 2.0 * null_vector(shapes)) / 5**0.5  # 80 % of its length in the null space
    directions = true_directions(shapes, rows=[3], extra=[(noisy, scale_weights), float_noise_direction(shapes)])
    edits = directions.edits().double()  # as true_edit_agreement computes them: float32 rounding stays far below the tolerance
    read = edit_cosines(edits, truth.double(), read_projectors(shapes))
    flat = edit_cosines(edits, truth.double())
    assert float(read[0, 3]) == pytest.approx(1.0, abs=1e-5) and float(read[1, 3]) == pytest.approx(1.0, abs=1e-5)
    assert float(flat[1, 3]) == pytest.approx(5**-0.5, abs=1e-4)  # the flat cosine is fooled
    assert float(read[2].max()) == 0.0  # a direction that reads as float noise agrees with nothing
    agreement = true_edit_agreement(shapes, true_directions(shapes))
    assert agreement == pytest.approx({"true_edit_cos": 1.0, "flat_edit_cos": 1.0}, abs=1e-5)


def test_read_projectors_are_the_identity_for_a_full_rank_generator():
    from tiny_world import TinyGenerator

    generator = TinyGenerator()
    projectors = read_projectors(generator)
    assert projectors.shape == (generator.num_ws, generator.w_dim, generator.w_dim)
    assert torch.allclose(projectors, torch.eye(generator.w_dim, dtype=torch.float64).expand_as(projectors), atol=1e-10)
