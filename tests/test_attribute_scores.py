"""The attribute-change matrix, its scores, the predictors and the calibrated strengths."""
from __future__ import annotations

import pytest
import torch
from tiny_world import TinyGenerator
from true_edit_directions import true_directions

from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation.attribute_scores import (
    ExactFactors,
    attribute_change_matrix,
    build_predictor,
    score_matrix,
    top_two_gap,
)
from contrafeat.evaluation.calibration import calibrate_strengths
from contrafeat.features import build_sensor


def test_score_matrix_normalises_rows_and_counts_distinct_argmaxes():
    matrix = torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 1.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    scores = score_matrix(matrix)
    assert scores.row_argmax == [0, 1, 1, None]
    assert scores.found == 2
    assert scores.score == pytest.approx((0.5 + 0.5 + 1.0 + 0.0) / 4)
    assert scores.score_before_norm == pytest.approx((0.5 + 1.0 + 4.0 + 0.0) / 4)


def test_per_factor_score_takes_each_attributes_purest_direction_and_zero_for_a_missed_one():
    matrix = torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 1.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    assert score_matrix(matrix).factor_score == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert score_matrix(matrix, dead=[2]).factor_score == pytest.approx((0.5 + 0.5 + 0.0) / 3)


def test_spare_mixed_directions_lower_the_papers_score_but_not_the_per_factor_score():
    pure = torch.eye(6)
    mixed = torch.tensor([[1.0, 1.0, 0, 0, 0, 0], [0, 0, 0.8, 1.0, 0, 0], [0, 0, 0, 0, 1.0, 0.9], [1.0, 0, 0, 0, 0, 1.0]])
    scores = score_matrix(torch.cat([pure, mixed]))
    assert scores.factor_score == pytest.approx(1.0)
    assert scores.score == pytest.approx((6 + 0.0 + 0.2 + 0.1 + 0.0) / 10)
    assert score_matrix(mixed).factor_score == pytest.approx((0.0 + 0.2 + 0.1) / 6)


def test_top_two_gap_of_a_single_attribute_is_the_value():
    assert top_two_gap(torch.tensor([[0.3], [1.0]])).tolist() == pytest.approx([0.3, 1.0])


def test_true_edits_score_one_and_find_all_six_attributes(shapes):
    directions = true_directions(shapes)
    matrix = attribute_change_matrix(shapes, directions, ExactFactors(shapes), torch.full((6,), 0.5), num_samples=100)
    scores = score_matrix(matrix)
    assert scores.score == pytest.approx(1.0, abs=1e-3)
    assert scores.factor_score == pytest.approx(1.0, abs=1e-3)
    assert scores.found == 6
    assert scores.row_argmax == list(range(6))


def test_a_mixed_direction_lowers_the_score(shapes):
    (scale_vector, scale_weights), (shape_vector, shape_weights) = shapes.true_edits()[3], shapes.true_edits()[4]
    edit = scale_weights[:, None] * scale_vector + shape_weights[:, None] * shape_vector
    mixed = Directions(edit.sum(0, keepdim=True) / edit.sum(0).pow(2).mean().sqrt(), torch.full((1, 10), 0.1), torch.ones(1), "mix", "x")
    matrix = attribute_change_matrix(shapes, mixed, ExactFactors(shapes), torch.full((1,), 0.5), num_samples=100)
    assert score_matrix(matrix).score < 0.9


class SignFlippingPredictor:
    """An attribute whose change has the sign of another coordinate: its |mean| is near 0, its mean |.| is not."""

    names = ["flip"]

    def predict(self, generator, ws):
        other = ws[:, 0, 1]
        return (ws[:, 0, 0] * torch.sign(other - other.median()))[:, None]

    def difference(self, after, before):
        return after - before


def test_the_matrix_takes_the_absolute_mean_of_signed_changes():
    generator = TinyGenerator()
    vector = torch.zeros(1, generator.w_dim)
    vector[0, 0] = 1.0
    directions = Directions(vector, torch.full((1, generator.num_ws), 0.25), torch.ones(1), "x", "tiny")
    matrix = attribute_change_matrix(generator, directions, SignFlippingPredictor(), torch.ones(1), num_samples=400, truncation_psi=1.0)
    assert 0.0 <= float(matrix[0, 0]) < 0.05  # per sample the change is +-0.5


def user_model(images: torch.Tensor) -> torch.Tensor:
    return images.mean(dim=(2, 3))


user_model.names = ["red", "green", "blue"]


def test_user_callable_predictor_renders_and_names_its_outputs():
    generator = TinyGenerator()
    predictor = build_predictor("test_attribute_scores:user_model", generator)
    assert predictor.names == ["red", "green", "blue"]
    ws = generator.mapping(torch.randn(5, generator.z_dim))[:, None].repeat(1, generator.num_ws, 1)
    assert torch.allclose(predictor.predict(generator, ws), generator.synthesis(ws).mean(dim=(2, 3)))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("exact", "no known factors"),
        ("cnn", "shapes3d images only"),
        ("no_colon", "MODULE:CALLABLE"),
        ("no_such_module_xyz:f", "cannot import"),
        ("test_attribute_scores:top_two_gap", "names"),
    ],
)
def test_bad_predictor_specs_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        build_predictor(spec, TinyGenerator())


def test_calibrated_steps_reach_the_target_movement_even_for_wrapping_hues(shapes):
    directions = true_directions(shapes, rows=[0, 3], extra=[(torch.zeros(shapes.w_dim), torch.full((10,), 0.1))])
    sensor = build_sensor("random-alexnet", generator=shapes)
    calibration = calibrate_strengths(shapes, directions, sensor, target=0.2, num_samples=6, iterations=6)
    assert calibration.unreached == [2]  # the zero direction moves nothing
    assert calibration.movement[:2].tolist() == pytest.approx([0.2, 0.2], abs=0.02)
    assert bool((calibration.strengths[:2] > 0).all())
    assert float(calibration.strengths[0]) < 0.5  # a hue wraps around at larger steps: the search stops before that


def test_calibration_refuses_a_non_positive_target(shapes):
    with pytest.raises(UserError, match="calibration-target"):
        calibrate_strengths(shapes, true_directions(shapes, rows=[0]), build_sensor("random-alexnet", generator=shapes), target=0.0)
