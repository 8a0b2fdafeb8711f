"""Everything measured about one set of directions: attribute scores at fixed and calibrated strengths,
cosine to the true edits, and the group-VAE distillation scored with FactorVAE / MIG / DCI."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contrafeat.discovery.directions import Directions
from contrafeat.discovery.subspace import PCABasis
from contrafeat.evaluation.attribute_scores import AttributePredictor, AttributeScores, ExactFactors, attribute_change_matrix, score_matrix
from contrafeat.evaluation.calibration import DEFAULT_TARGET, Calibration, calibrate_strengths
from contrafeat.evaluation.dead_directions import DEAD_CHECK_SAMPLES, dead_directions
from contrafeat.evaluation.distillation import DistillSettings, distil, truth_metrics
from contrafeat.evaluation.true_edits import reference_directions, true_edit_agreement
from contrafeat.gan.interface import GeneratorLike, has_factors, has_true_edits, seeded_codes
from contrafeat.options import COUNT, FRACTION, INDEX, POSITIVE
from contrafeat.shapes3d.truth import TRUE_EDIT_STRENGTH

SCORING_VERSION = 2
"""Changes whenever the scoring itself changes (2: dead directions judged against real edits, effect-space cosine,
published metric counts), so results stored by an older scoring are never reused."""
DEFAULT_FIXED_STRENGTH = TRUE_EDIT_STRENGTH
"""The fixed-protocol strength: every true shapes3d edit at this strength changes its factor alone (score 1, six found)."""


@dataclass
class EvaluationSettings:
    """How directions are judged; the defaults follow the published protocol where one exists."""

    fixed_strength: float = DEFAULT_FIXED_STRENGTH
    calibration_target: float = DEFAULT_TARGET
    num_samples: int = 500
    truncation_psi: float = 0.5
    seed: int = 0
    distill: DistillSettings | None = field(default_factory=DistillSettings)

    def validate(self) -> None:
        """The `contrafeat evaluate` flags' domains, for settings built without the parser."""
        POSITIVE.check(self.fixed_strength, "--fixed-strength")
        POSITIVE.check(self.calibration_target, "--calibration-target")
        COUNT.check(self.num_samples, "--samples")
        FRACTION.check(self.truncation_psi, "--truncation")
        INDEX.check(self.seed, "--seed")
        if self.distill is not None:
            self.distill.validate()


def protocol_of(settings: EvaluationSettings) -> dict[str, Any]:
    """The attribute-matrix arguments every direction set is judged with."""
    return dict(num_samples=settings.num_samples, seed=settings.seed, truncation_psi=settings.truncation_psi)


def fixed_strength_matrix(generator: GeneratorLike, directions: Directions, predictor: AttributePredictor, settings: EvaluationSettings) -> torch.Tensor:
    """[K, A] attribute changes with every direction at the fixed strength."""
    strengths = torch.full((directions.count,), settings.fixed_strength)
    return attribute_change_matrix(generator, directions, predictor, strengths, **protocol_of(settings))


def fixed_strength_scores(
    generator: GeneratorLike, directions: Directions, predictor: AttributePredictor, settings: EvaluationSettings, matrix: torch.Tensor | None = None
) -> AttributeScores:
    """The fixed-protocol scores, the directions that do not move the image at the fixed strength scoring 0 (`matrix`:
    their fixed_strength_matrix when already made)."""
    strengths = torch.full((directions.count,), settings.fixed_strength)
    codes = seeded_codes(generator, DEAD_CHECK_SAMPLES, settings.seed, settings.truncation_psi)
    dead, _ = dead_directions(generator, directions, strengths, codes)
    return score_matrix(matrix if matrix is not None else fixed_strength_matrix(generator, directions, predictor, settings), dead)


def attribute_comparison(
    generator: GeneratorLike, directions: Directions, pca: PCABasis, matrix: torch.Tensor | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """Directions next to plain PCA and random ones: fixed-strength attribute-matrix score and attributes found
    (exact factors, EvaluationSettings defaults), for a generator that knows its factors (`matrix`: the directions'
    fixed_strength_matrix when already made)."""
    settings, predictor = EvaluationSettings(distill=None), ExactFactors(generator)
    candidates = {directions.method: directions, **reference_directions(generator, pca, directions.count, seed)}
    rows = []
    for name, candidate in candidates.items():
        scores = fixed_strength_scores(generator, candidate, predictor, settings, matrix if candidate is directions else None)
        rows.append({"directions": name, "score": scores.score, "per_factor_score": scores.factor_score, "attributes_found": scores.found})
    return rows


def calibration_of(generator: GeneratorLike, directions: Directions, sensor: nn.Module, settings: EvaluationSettings) -> Calibration:
    """Per direction, the strength that moves the sensor features by the calibration target."""
    return calibrate_strengths(
        generator, directions, sensor, target=settings.calibration_target, seed=settings.seed, truncation_psi=settings.truncation_psi
    )


def evaluate_directions(
    generator: GeneratorLike,
    directions: Directions,
    sensor: nn.Module,
    predictor: AttributePredictor,
    settings: EvaluationSettings,
    work: Path,
    progress: bool = True,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """The metrics (flat, for tables) plus the matrices and strengths behind them (for evaluation.json);
    `calibration` is calibration_of's result when it was made already."""
    settings.validate()
    directions.check_shape_of(generator)
    fixed = fixed_strength_matrix(generator, directions, predictor, settings)
    calibration = calibration or calibration_of(generator, directions, sensor, settings)
    calibrated = attribute_change_matrix(generator, directions, predictor, calibration.strengths, **protocol_of(settings))
    fixed_scores, calibrated_scores = score_matrix(fixed, calibration.dead), score_matrix(calibrated, calibration.dead)
    metrics: dict[str, Any] = {
        "score_fixed": fixed_scores.score,
        "found_fixed": fixed_scores.found,
        "factor_score_fixed": fixed_scores.factor_score,
        "score_calibrated": calibrated_scores.score,
        "found_calibrated": calibrated_scores.found,
        "factor_score_calibrated": calibrated_scores.factor_score,
        "dead": len(calibration.dead),
    }
    if has_true_edits(generator):
        metrics.update(true_edit_agreement(generator, directions))
    if has_factors(generator):
        if settings.distill is not None:
            model, kept = distil(work, generator, directions, sensor, calibration, settings.distill, progress)
            metrics.update(truth_metrics(generator, model, settings.distill))
            metrics["directions_kept"] = len(kept)
    details = {
        "attributes": list(predictor.names),
        "fixed_matrix": fixed.tolist(),
        "calibrated_matrix": calibrated.tolist(),
        "calibrated_strengths": calibration.strengths.tolist(),
        "calibrated_movement": calibration.movement.tolist(),
        "calibration_unreached": calibration.unreached,
        "dead_directions": calibration.dead,
        "image_change": calibration.image_change.tolist(),
        "row_argmax_fixed": fixed_scores.row_argmax,
        "row_argmax_calibrated": calibrated_scores.row_argmax,
    }
    return {"metrics": metrics, "details": details}
