"""The shapes3d factor predictor: bundled accuracy, continuous readings, exact resume, file and CLI errors."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import safetensors.torch
import torch

from contrafeat.cli import main
from contrafeat.errors import UserError
from contrafeat.shapes3d import factor_predictor
from contrafeat.shapes3d.factor_predictor import (
    DEFAULT_WEIGHTS,
    FORMAT_TAG,
    FORMAT_VERSION,
    GRID_STEPS,
    FactorCNN,
    expected_value,
    generator_render_settings,
    held_out_accuracy,
    held_out_split,
    load_factor_predictor,
    render_images,
    soft_targets,
    state_path,
    train_factor_predictor,
)
from contrafeat.shapes3d.grid import FACTOR_NAMES, FACTOR_VALUES
from contrafeat.shapes3d.linear_generator import ShapesGenerator
from contrafeat.shapes3d.truth import FACTOR_RANGES, factor_difference

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundled() -> FactorCNN:
    return load_factor_predictor()


def test_bundled_predictor_is_small_and_accurate_on_fresh_held_out_renders(bundled: FactorCNN) -> None:
    assert DEFAULT_WEIGHTS.stat().st_size < 2_000_000
    accuracy = held_out_accuracy(bundled, count=300, seed=2024)
    assert list(accuracy) == list(FACTOR_NAMES)
    assert min(accuracy.values()) >= 0.99, accuracy


@pytest.mark.parametrize("psi", [0.5, 1.0])
def test_predicted_values_follow_the_generator_factors(bundled: FactorCNN, psi: float) -> None:
    generator = ShapesGenerator()
    z = torch.randn(150, generator.z_dim, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        ws = generator.broadcast(generator.mapping(z, truncation_psi=psi))
        error = factor_difference(bundled.predict_values(generator.synthesis(ws)), generator.factors(ws)).abs() * FACTOR_RANGES
    mean_error_in_steps = error.mean(dim=0) / GRID_STEPS
    assert bool((mean_error_in_steps < 0.15).all()), dict(zip(FACTOR_NAMES, mean_error_in_steps.tolist()))


@pytest.mark.parametrize("column, low, high", [(3, 0.76, 1.24), (5, -29.0, 29.0)])
def test_small_factor_changes_move_the_reading_a_little(bundled: FactorCNN, column: int, low: float, high: float) -> None:
    values = torch.tensor([0.1, 0.55, 0.85, 1.0, 0.0, 10.0]).repeat(25, 1)
    values[:, column] = torch.linspace(low, high, 25)
    with torch.no_grad():
        readings = bundled.predict_values(render_images(values, generator_render_settings()))[:, column]
    assert bool((readings.diff() > 0).all()), readings.tolist()
    assert float((readings - values[:, column]).abs().max()) < 0.25 * GRID_STEPS[column].item()


def test_hue_expectation_is_circular_and_others_linear() -> None:
    split = torch.full((1, 10), -math.inf)
    split[0, [9, 1]] = 0.0  # half the mass on hue 0.9, half on 0.1
    hue = expected_value(split, 0).item()
    assert 0.0 <= hue < 1.0 and min(hue, 1.0 - hue) < 1e-6
    split = torch.full((1, 10), -math.inf)
    split[0, [2, 3]] = 0.0
    assert expected_value(split, 1).item() == pytest.approx(0.25, abs=1e-6)
    scale = torch.tensor([[0.0, 0.0, -math.inf, -math.inf, -math.inf, -math.inf, -math.inf, -math.inf]])
    assert expected_value(scale, 3).item() == pytest.approx((0.75 + 0.75 + 0.5 / 7) / 2, abs=1e-6)


def test_soft_targets_split_mass_between_neighbours_and_their_expectation_is_the_value() -> None:
    hue = soft_targets(torch.tensor([0.96]), 2)[0]
    assert hue[9].item() == pytest.approx(0.4, abs=1e-5) and hue[0].item() == pytest.approx(0.6, abs=1e-5)
    assert hue.sum().item() == pytest.approx(1.0)
    values = torch.tensor([0.75, 0.8, 1.0, 1.2, 1.25])
    recovered = expected_value(soft_targets(values, 3).log(), 3)
    torch.testing.assert_close(recovered, values, atol=1e-5, rtol=0)
    orientation = torch.tensor([-30.0, -7.5, 0.0, 29.0])
    torch.testing.assert_close(expected_value(soft_targets(orientation, 5).log(), 5), orientation, atol=1e-4, rtol=0)
    assert FACTOR_VALUES[5][1] - FACTOR_VALUES[5][0] == pytest.approx(GRID_STEPS[5].item())


def test_held_out_split_is_disjoint_and_fixed() -> None:
    train, held_out = held_out_split()
    assert len(held_out) == 48_000 and len(train) == 432_000
    assert len(set(train[:5000].tolist()) & set(held_out.tolist())) == 0
    assert (held_out_split()[1] == held_out).all()


class InterruptOnCall:
    """Wraps render_images and raises KeyboardInterrupt once, on its `at`-th call."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0
        self.render_images = factor_predictor.render_images

    def __call__(self, *args: object) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.render_images(*args)


def tiny_run(out: Path, resume: bool = False) -> dict[str, float]:
    return train_factor_predictor(out, steps=5, batch=3, seed=3, resume=resume, progress=False, eval_count=4, save_every=2)


def test_interrupted_run_resumes_to_bit_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight.safetensors"
    accuracy = tiny_run(straight)
    assert set(accuracy) == set(FACTOR_NAMES) and not state_path(straight).exists()

    resumed = tmp_path / "resumed.safetensors"
    monkeypatch.setattr(factor_predictor, "render_images", InterruptOnCall(at=4))
    with pytest.raises(KeyboardInterrupt):
        tiny_run(resumed)
    state = torch.load(state_path(resumed), weights_only=True)
    assert state["step"] == 3 and not resumed.exists()
    with pytest.raises(UserError, match="--resume"):
        tiny_run(resumed)
    assert tiny_run(resumed, resume=True) == accuracy

    expected, got = safetensors.torch.load_file(str(straight)), safetensors.torch.load_file(str(resumed))
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert not state_path(resumed).exists()
    with pytest.raises(UserError, match="no training state"):
        tiny_run(resumed, resume=True)


def write_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    return path


def test_unusable_weight_files_are_user_errors_naming_the_file(tmp_path: Path) -> None:
    tag = {"format": FORMAT_TAG, "version": FORMAT_VERSION}
    state = {key: value.clone() for key, value in FactorCNN().state_dict().items()}
    missing = tmp_path / "missing.safetensors"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    untagged = write_weights(tmp_path / "untagged.safetensors", state, {})
    wrong_keys = write_weights(tmp_path / "keys.safetensors", {"weight": torch.zeros(3)}, tag)
    wrong_shape = write_weights(tmp_path / "shape.safetensors", {**state, "heads.0.bias": torch.zeros(11)}, tag)
    cases = [
        (missing, "not found"),
        (garbage, "unreadable"),
        (untagged, FORMAT_TAG),
        (wrong_keys, "missing trunk"),
        (wrong_shape, r"heads\.0\.bias has shape \[11\]"),
    ]
    for path, reason in cases:
        with pytest.raises(UserError, match=reason) as error:
            load_factor_predictor(path)
        assert str(path) in str(error.value)


@pytest.mark.parametrize("option, value", [("--steps", "0"), ("--batch", "-1"), ("--lr", "0"), ("--eval-count", "999999")])
def test_cli_rejects_bad_values_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
    code = main(["shapes3d", "train-predictor", "--out", str(tmp_path / "w.safetensors"), option, value, "--no-progress"])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and error.startswith("contrafeat: error:") and value in error
    assert not any(tmp_path.iterdir())
