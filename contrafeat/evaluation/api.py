"""`evaluate`: what `contrafeat evaluate` measures, from Python, on a run folder or a Directions object."""
from __future__ import annotations

import json
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from contrafeat.discovery.config import DiscoveryConfig, load_config
from contrafeat.discovery.directions import Directions
from contrafeat.errors import UserError
from contrafeat.evaluation.attribute_scores import AttributePredictor, build_predictor
from contrafeat.evaluation.calibration import Calibration
from contrafeat.evaluation.distillation import DistillSettings
from contrafeat.evaluation.evaluate_run import SCORING_VERSION, EvaluationSettings, evaluate_directions
from contrafeat.features import build_sensor
from contrafeat.gan.interface import GeneratorLike
from contrafeat.io_utils import atomic_write_text
from contrafeat.zoo import load_generator

RESULT_FILE = "evaluation.json"
WORK_FOLDER = "evaluation"
"""Inside the output folder: the pairs and group-VAE training state of the evaluation (an interrupted one resumes)."""

Models = tuple[GeneratorLike, nn.Module, AttributePredictor]
"""What directions are judged with: the generator, the sensor (calibration, duplicate check), the attribute predictor."""


def run_config(folder: Path) -> DiscoveryConfig | None:
    """The run folder's config.yaml; None when it has none."""
    path = folder / "config.yaml"
    return load_config(path) if path.is_file() else None


def run_sensor(config: DiscoveryConfig | None, sensor: str | None = None) -> tuple[str, str | None]:
    """The sensor name and weights file a run is judged with: `sensor`, else the run's own (the run's weights go with
    the run's sensor only)."""
    name = sensor or (config.sensor if config else DiscoveryConfig.sensor)
    return name, (config.sensor_weights if config and name == config.sensor else None)


def fingerprint(settings: EvaluationSettings, predictor: str, sensor: str) -> dict[str, Any]:
    """What a result depends on besides the directions and the generator (a stored one is reused only under the same)."""
    return {"settings": asdict(settings), "predictor": predictor, "sensor": sensor, "scoring": SCORING_VERSION}


def load_models(
    directions: Directions, generator: GeneratorLike | str | Path, sensor: tuple[str, str | None], predictor: str, strict: bool = True
) -> Models:
    """The generator (loaded when a name or path, checked by `Directions.check_compatible`), the sensor (name, weights)
    and the attribute predictor (`exact`, `cnn` or MODULE:CALLABLE)."""
    if isinstance(generator, (str, Path)):
        model, label = load_generator(generator), str(generator)
    else:
        model, label = generator, "the given generator"
    directions.check_compatible(model, strict=strict, label=label)
    name, weights = sensor
    return model, build_sensor(name, weights=weights, generator=model), build_predictor(predictor, model)


def work_folder(out: Path | None) -> AbstractContextManager[str]:
    """out/evaluation, or a temporary folder that is removed on leaving (out None)."""
    if out is None:
        return tempfile.TemporaryDirectory(prefix="contrafeat-evaluate-")
    return nullcontext(str(out / WORK_FOLDER))


def score(
    directions: Directions,
    models: Models,
    settings: EvaluationSettings,
    key: dict[str, Any],
    out: Path | None = None,
    progress: bool = True,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """`evaluate_directions` plus its fingerprint; with `out`, the work folder lives there and the result is written to
    out/evaluation.json, else the work goes to a temporary folder that is removed."""
    generator, sensor, predictor = models
    with work_folder(out) as work:
        result = {"fingerprint": key, **evaluate_directions(generator, directions, sensor, predictor, settings, Path(work), progress, calibration)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RESULT_FILE, json.dumps(result, indent=2))
    return result


def evaluate(
    run_or_directions: str | Path | Directions,
    generator: GeneratorLike | str | Path | None = None,
    *,
    out: str | Path | None = None,
    sensor: str | None = None,
    predictor: str = "exact",
    strict: bool = True,
    progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Score directions as `contrafeat evaluate` does, with its defaults: the attribute-change matrix at the fixed and
    the calibrated strengths, dead directions, the agreement with the true edits (worlds that know them) and the
    group-VAE FVM / MIG / DCI (worlds that know their factors).

    Args:
        run_or_directions: a run folder written by `contrafeat discover`, or a Directions object.
        generator: a generator, a zoo name (`shapes3d`, `shapes3d-learned`) or a checkpoint path; None (run folders
            only) is the checkpoint in the run's config.yaml.
        out: folder that gets evaluation.json and the work folder (pairs, group VAE) as `contrafeat evaluate` writes
            into a run folder; None writes nothing (the work goes to a temporary folder that is removed).
        sensor: sensor of the strength calibration and duplicate check; None is the run's own (a Directions object:
            DiscoveryConfig's default).
        predictor: attribute predictor: `exact` (the world's own factors), `cnn` (bundled shapes3d CNN) or MODULE:CALLABLE.
        strict: refuse directions found in another generator (False: a logged warning, like `--force`).
        progress: show progress bars.
        **settings: EvaluationSettings fields (fixed_strength, calibration_target, num_samples, truncation_psi, seed,
            distill: a DistillSettings or None to skip the distillation); without `distill`, the distillation
            uses `seed` as `--seed` does.

    Returns:
        What evaluation.json holds: `fingerprint` (settings, predictor, sensor, scoring version), `metrics`
        (score_fixed, found_fixed, score_calibrated, ..., dead; true_edit_cos, fvm, mig, dci where the world allows)
        and `details` (the matrices, calibrated strengths, dead directions).

    Raises:
        UserError: no such run, a Directions object without a generator, a generator the directions do not belong
            to (strict) or of another W+ shape, or a setting out of its domain.
    """
    if "seed" in settings and "distill" not in settings:
        settings["distill"] = DistillSettings(seed=settings["seed"])
    evaluation = EvaluationSettings(**settings)
    evaluation.validate()
    if isinstance(run_or_directions, Directions):
        directions, config = run_or_directions, None
    else:
        directions, config = Directions.load(run_or_directions), run_config(Path(run_or_directions))
    if generator is None:
        if config is None:
            source = "a Directions object" if isinstance(run_or_directions, Directions) else f"{run_or_directions} (no config.yaml)"
            raise UserError(f"evaluate: {source} does not tell the generator; pass one (an object, a zoo name or a checkpoint path)")
        generator = config.checkpoint
    chosen_sensor = run_sensor(config, sensor)
    models = load_models(directions, generator, chosen_sensor, predictor, strict)
    key = fingerprint(evaluation, predictor, chosen_sensor[0])
    return score(directions, models, evaluation, key, None if out is None else Path(out), progress)
