"""The training-progress picture and the verdict on whether a run settled."""
import numpy as np
import pytest

from contrafeat.viz.progress import convergence_verdict, moving_mean, write_progress_curves


def looks(contrast: list[float], angles: list[float]) -> list[dict]:
    entries = [{"step": 100 * index, "validation_contrast": value} for index, value in enumerate(contrast)]
    for entry, angle in zip(entries[1:], angles):
        entry.update(angle_mean=angle, angle_max=2 * angle)
    return entries


def test_moving_mean_averages_the_last_values():
    assert moving_mean([1.0, 3.0, 5.0, 7.0], window=2).tolist() == pytest.approx([1.0, 2.0, 4.0, 6.0])


def test_a_run_that_stopped_moving_has_settled():
    contrast = [0.0, -0.03, -0.05, -0.06, -0.061, -0.0612, -0.0611, -0.0612]
    verdict = convergence_verdict(looks(contrast, [20, 8, 4, 2, 1, 0.5, 0.4]))
    assert verdict.startswith("The run has settled") and "0.40 degrees" in verdict


def test_a_run_still_turning_or_still_falling_has_not_settled():
    falling = [0.0, -0.01, -0.02, -0.03, -0.04, -0.05, -0.06, -0.07]
    assert "still moving" in convergence_verdict(looks(falling, [1.0] * 7))
    flat = [0.0, -0.05, -0.06, -0.06, -0.06, -0.06, -0.06, -0.06]
    assert "still moving" in convergence_verdict(looks(flat, [5.0] * 7))
    assert convergence_verdict(looks([0.0, -0.1], [3.0])).startswith("Too few looks")


def test_the_picture_has_a_row_for_training_and_one_for_validation(tmp_path):
    log = [{"step": step, "loss": float(np.cos(step)), "images_per_s": 10.0} for step in range(10, 110, 10)]
    validation = looks([0.0, -0.01, -0.02], [5.0, 3.0])
    for entry in validation:
        entry.update(validation_positive_0=0.2, validation_negative_0=0.1, score=0.5, found=4.0)
    path = write_progress_curves(log, validation, tmp_path / "curves.png")
    assert path is not None and path.stat().st_size > 10_000
    assert write_progress_curves([], [], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
