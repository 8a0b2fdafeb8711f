"""Measures of a run's directions while it trains, on a world that knows its factors (logged in validation.jsonl)."""
from __future__ import annotations

from contrafeat.discovery.directions import Directions
from contrafeat.discovery.validation import DirectionsMeasure
from contrafeat.evaluation.attribute_scores import ExactFactors, score_matrix
from contrafeat.evaluation.evaluate_run import EvaluationSettings, fixed_strength_matrix
from contrafeat.evaluation.true_edits import true_edit_agreement
from contrafeat.gan.interface import GeneratorLike, has_factors, has_true_edits


def factor_measures(generator: GeneratorLike) -> list[DirectionsMeasure]:
    """The exact-factor score, per-factor score and attributes found at the fixed strength (the evaluation protocol but
    the dead-direction check, which renders), and on the linear world the read-span cosine to the true edits; [] elsewhere."""
    if not has_factors(generator):
        return []
    settings, predictor = EvaluationSettings(distill=None), ExactFactors(generator)

    def exact_factor_scores(directions: Directions) -> dict[str, float]:
        scores = score_matrix(fixed_strength_matrix(generator, directions, predictor, settings))
        return {"score": scores.score, "factor_score": scores.factor_score, "found": float(scores.found)}

    measures: list[DirectionsMeasure] = [exact_factor_scores]
    if has_true_edits(generator):
        world = generator
        measures.append(lambda directions: {"true_edit_cos": true_edit_agreement(world, directions)["true_edit_cos"]})
    return measures
