"""The training of one discovery run from its config: generator, sensor, PCA, training (resumable), trained directions.
`contrafeat.runs.discover` owns the run around it (config, folder, artefact, pictures)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from contrafeat.console import LOG
from contrafeat.discovery.best_linear import best_linear_edits
from contrafeat.discovery.config import DiscoveryConfig, run_budget
from contrafeat.discovery.directions import Directions
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.methods import build_navigator, describe_method, uses_sensor
from contrafeat.discovery.objectives import Objective, build_objective
from contrafeat.discovery.precision import accelerate_sensor
from contrafeat.discovery.registry import ANSWER_KEYS
from contrafeat.discovery.strengths import suggest_strengths
from contrafeat.discovery.subspace import PCABasis, load_or_compute_pca
from contrafeat.discovery.trainer import Trainer, navigator_directions
from contrafeat.discovery.validation import DirectionsMeasure
from contrafeat.errors import UserError
from contrafeat.features import build_sensor
from contrafeat.gan.identity import generator_identity
from contrafeat.gan.interface import GeneratorLike, has_factors, has_true_edits
from contrafeat.paths import cache_dir
from contrafeat.zoo import load_generator


@dataclass
class TrainedRun:
    """What a finished run holds in memory; `directions` is None on ranks other than 0."""

    generator: GeneratorLike
    pca: PCABasis
    objective: Objective | None
    directions: Directions | None


def check_fits_generator(config: DiscoveryConfig, generator: GeneratorLike) -> None:
    """Refuse sizes the generator's W cannot hold: a subspace or a fixed basis larger than w_dim."""
    kind = config.plan().spec.directions
    if kind == "learned" and config.subspace_dim > generator.w_dim:
        raise UserError(f"--subspace-dim {config.subspace_dim}: this generator's W has {generator.w_dim} dimensions; expected at most {generator.w_dim}")
    if kind in ("ganspace", "sefa") and config.num_directions > generator.w_dim:
        raise UserError(
            f"--num-directions {config.num_directions}: {config.method} has only {generator.w_dim} directions in this generator's W; "
            f"expected at most {generator.w_dim}"
        )


def train_run(
    config: DiscoveryConfig,
    run_dir: Path | None,
    resuming: bool,
    runtime: Runtime,
    progress: bool,
    measures: Callable[[GeneratorLike], Sequence[DirectionsMeasure]] | None = None,
    generator: GeneratorLike | None = None,
) -> TrainedRun:
    """Models, the PCA of W (shared by the ranks), training from scratch or the run's training state; rank 0 saves pca.safetensors.

    `run_dir` None trains in memory (no logs, no training state). `generator`: the one to train on, else
    config.checkpoint is loaded. `measures` makes, from the generator, what the trainer measures of the
    directions at each look (validation.jsonl)."""
    progress = progress and runtime.is_main
    generator = generator if generator is not None else load_generator(config.checkpoint, device=runtime.device)
    kind = config.plan().spec.directions
    check_answer_key(kind, generator, config)
    check_fits_generator(config, generator)
    if runtime.is_main:
        LOG.info(describe_method(config, generator))
    sensor: torch.nn.Module | None = None  # a Sensor, or its torch.compile wrapper
    if uses_sensor(config, generator):
        sensor = build_sensor(config.sensor, weights=config.sensor_weights, generator=generator, input_size=config.sensor_input_size)
        sensor = accelerate_sensor(sensor.to(runtime.device), runtime.device, config.channels_last, config.compile)
    pca = load_or_compute_pca(generator, cache_dir("pca"), config.pca_samples, seed=0, progress=progress, runtime=runtime)
    if runtime.is_main and run_dir is not None:
        pca.save(run_dir / "pca.safetensors")
    if kind in ANSWER_KEYS:
        directions = answer_key_directions(kind, generator, pca, config) if runtime.is_main else None
        return TrainedRun(generator, pca, None, directions)
    navigator, objective = build_navigator(config, generator, pca), build_objective(config, generator)
    if objective is not None:
        trainer = Trainer(config, generator, sensor, pca, navigator, objective, run_dir, runtime, measures(generator) if measures else ())
        if runtime.is_main:
            budget = run_budget(config)
            LOG.info(f"budget: {config.steps} steps of {budget['renders_per_step']} generator renders = {budget['total_renders']} renders")
        if resuming:
            trainer.load_state()
            if runtime.is_main:
                LOG.info(f"resuming at step {trainer.step_count} of {config.steps}")
        trainer.run(progress=progress)
        directions = trainer.directions() if runtime.is_main else None
    else:
        directions = navigator_directions(navigator, pca, config.method, generator) if runtime.is_main else None
    return TrainedRun(generator, pca, objective, directions)


def check_answer_key(kind: str, generator: GeneratorLike, config: DiscoveryConfig) -> None:
    """A UserError when an answer-key method is asked of a generator that cannot give it."""
    if kind == "truth" and not has_true_edits(generator):
        raise UserError(
            f"--method {config.method}: generator {config.checkpoint} does not know its exact per-factor edits "
            "(no true_edits() and factors()); only the linear world shapes3d has a truth row (shapes3d-learned: --method best-linear)"
        )
    if kind == "best-linear" and not callable(getattr(generator, "levels", None)):
        raise UserError(
            f"--method {config.method}: generator {config.checkpoint} has no factor levels (levels(ws)); "
            "only the shapes3d worlds have a best-linear row"
        )


def answer_key_directions(kind: str, generator: GeneratorLike, pca: PCABasis, config: DiscoveryConfig) -> Directions:
    """The world's exact per-factor edits (`truth`) or its optimised linear ones (`best-linear`), named after the factors."""
    assert has_factors(generator)  # check_answer_key let only the shapes3d worlds through
    if kind == "truth":
        assert has_true_edits(generator)  # ditto: only the linear world
        edits = generator.true_edits()
    else:
        found = best_linear_edits(generator, seed=config.seed)
        shares = ", ".join(f"{name} {edit.share:.3f}" for name, edit in zip(generator.factor_names, found))
        LOG.info(f"best-linear share of each factor: {shares}")
        edits = [(edit.vector, edit.weights) for edit in found]
    vectors = torch.stack([vector for vector, _ in edits]).float().cpu()  # [F, C]
    attention = torch.stack([weights for _, weights in edits]).float().cpu()  # [F, L]
    return Directions(
        vectors, attention, suggest_strengths(vectors, attention, pca), config.method, generator_identity(generator), names=list(generator.factor_names)
    )
