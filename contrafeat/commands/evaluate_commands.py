"""`contrafeat evaluate`: score runs with the attribute matrix, the true edits and the group-VAE distillation."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from contrafeat.commands.common import add_command, add_force_option, force_hint, run_checkpoint
from contrafeat.discovery import distributed
from contrafeat.discovery.directions import Directions, load_directions
from contrafeat.discovery.distributed import Runtime
from contrafeat.errors import UserError
from contrafeat.evaluation.api import RESULT_FILE, WORK_FOLDER, Models, fingerprint, load_models, run_config, run_sensor, score
from contrafeat.evaluation.calibration import DEFAULT_TARGET, Calibration
from contrafeat.evaluation.disentanglement import COUNTS, metric_counts
from contrafeat.evaluation.distillation import (
    PAIRS_FOLDER,
    REFERENCE_BETA,
    REFERENCE_GAMMA,
    VARIANTS,
    DistillSettings,
    pair_settings,
    recipe_note,
    reference_vae,
    truth_metrics,
)
from contrafeat.evaluation.evaluate_run import DEFAULT_FIXED_STRENGTH, SCORING_VERSION, EvaluationSettings, calibration_of
from contrafeat.evaluation.group_vae import RESOLUTIONS, SCHEDULES
from contrafeat.evaluation.pairs import PairSettings, write_pairs
from contrafeat.evaluation.tables import aggregate, to_markdown, write_tables
from contrafeat.gan.interface import has_factors
from contrafeat.io_utils import atomic_write_text
from contrafeat.options import COUNT, FRACTION, INDEX, POSITIVE
from contrafeat.viz.attribute_matrix import write_attribute_matrices
from contrafeat.zoo import load_generator

REFERENCE_KINDS = {"beta-vae": f"beta {REFERENCE_BETA:g}", "factor-vae": f"gamma {REFERENCE_GAMMA:g}"}
"""The reference VAEs trained on the images, with the weight each is run at."""


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = add_command(
        subparsers, "evaluate", "Score runs: attribute-change matrix (fixed and calibrated strengths), true-edit cosine, group-VAE FVM / MIG / DCI."
    )
    evaluate.add_argument("runs", type=Path, nargs="*", help="run folders written by `contrafeat discover`")
    evaluate.add_argument("--out", type=Path, default=Path("evaluation"), help="folder of the summary tables (evaluation.csv / .md)")
    evaluate.add_argument("--checkpoint", default=None, help="generator (default: the one each run was trained on)")
    evaluate.add_argument(
        "--predictor", default="exact", help="attribute predictor: exact (shapes3d factors), cnn (bundled shapes3d CNN) or MODULE:CALLABLE"
    )
    evaluate.add_argument("--sensor", default=None, help="sensor of the strength calibration and duplicate check (default: each run's own)")
    evaluate.add_argument("--fixed-strength", type=POSITIVE, default=DEFAULT_FIXED_STRENGTH, help="the one strength e of the fixed protocol")
    evaluate.add_argument("--calibration-target", type=POSITIVE, default=DEFAULT_TARGET, help="relative sensor-feature movement of calibrated strengths")
    evaluate.add_argument("--samples", type=COUNT, default=500, help="samples per direction of the attribute matrix")
    evaluate.add_argument("--truncation", type=FRACTION, default=0.5, help="truncation psi of the attribute-matrix samples")
    evaluate.add_argument("--seed", type=INDEX, default=0, help="seed of samples, pairs, VAE and metrics")
    evaluate.add_argument("--no-distill", action="store_true", help="skip the pairs / group VAE / FVM, MIG, DCI part")
    evaluate.add_argument("--pairs", type=COUNT, default=DistillSettings.num_pairs, help="pairs rendered for the group VAE")
    evaluate.add_argument("--vae-steps", type=COUNT, default=DistillSettings.vae_steps, help="group-VAE (and reference VAE) training steps")
    evaluate.add_argument("--vae-variant", default=DistillSettings.variant, choices=VARIANTS, help="label: latent i is direction i; ada: inferred")
    evaluate.add_argument("--beta", type=POSITIVE, default=DistillSettings.beta, help="KL weight of the group VAE (1: a plain VAE's ELBO, as the authors)")
    evaluate.add_argument("--vae-lr", type=POSITIVE, default=DistillSettings.lr, help="Adam learning rate of the group VAE and the reference VAEs")
    evaluate.add_argument("--vae-batch", type=COUNT, default=DistillSettings.batch, help="pairs (reference VAEs: images) per VAE step")
    evaluate.add_argument(
        "--vae-resolution", type=int, default=DistillSettings.resolution, choices=RESOLUTIONS,
        help="VAE input side: 64 is the published architecture; 32 drops one stride-2 stage and area-downsamples the images",
    )
    evaluate.add_argument(
        "--vae-schedule", default=DistillSettings.schedule, choices=SCHEDULES, help="learning-rate schedule of the VAEs (published: constant)"
    )
    evaluate.add_argument(
        "--metric-counts", default=DistillSettings.metric_counts, choices=list(COUNTS),
        help="sample counts of FVM / MIG / DCI: full (disentanglement_lib's, as the published tables), "
        "authors (MIG and DCI on 1,000 points) or quick (a quick look only)",
    )
    evaluate.add_argument("--metric-fraction", type=FRACTION, default=1.0, help="scale the metric sample counts down by this factor (a faster, noisier look)")
    evaluate.add_argument("--references", action="store_true", help="add beta-VAE and FactorVAE rows trained on the procedural images")
    evaluate.add_argument("--recompute", action="store_true", help=f"ignore {RESULT_FILE} files made earlier with the same settings")
    evaluate.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_force_option(evaluate)
    evaluate.set_defaults(handler=run_evaluate)


def settings_from(args: argparse.Namespace) -> EvaluationSettings:
    metric_counts(args.metric_counts, args.metric_fraction)
    distill = None
    if not args.no_distill:
        distill = DistillSettings(
            num_pairs=args.pairs, vae_steps=args.vae_steps, variant=args.vae_variant, beta=args.beta, lr=args.vae_lr, batch=args.vae_batch, seed=args.seed,
            metric_counts=args.metric_counts, metric_fraction=args.metric_fraction, resolution=args.vae_resolution, schedule=args.vae_schedule,
        )
    settings = EvaluationSettings(
        fixed_strength=args.fixed_strength, calibration_target=args.calibration_target, num_samples=args.samples,
        truncation_psi=args.truncation, seed=args.seed, distill=distill,
    )
    settings.validate()
    return settings


def earlier_result(path: Path, key: dict[str, Any], recompute: bool) -> dict[str, Any] | None:
    """The result stored at `path` when it was made with the same fingerprint (and no recompute was asked)."""
    if recompute or not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored if stored.get("fingerprint") == key else None


@dataclass
class RunFolder:
    """A run folder to evaluate: its directions, what it is judged with, and a stored result that may be reused."""

    directions: Directions
    checkpoint: str
    sensor: tuple[str, str | None]
    identity: dict[str, Any]
    key: dict[str, Any]
    previous: dict[str, Any] | None


def read_run(folder: Path, args: argparse.Namespace, settings: EvaluationSettings) -> RunFolder:
    """The run folder's directions and config as the options judge them, and its evaluation.json if made with the same settings."""
    directions, config = load_directions(folder), run_config(folder)
    sensor = run_sensor(config, args.sensor)
    key = fingerprint(settings, args.predictor, sensor[0])
    return RunFolder(
        directions=directions,
        checkpoint=run_checkpoint(folder, args.checkpoint),
        sensor=sensor,
        identity={"run": folder.name, "method": config.plan().label if config else directions.method, "seed": config.seed if config else None},
        key=key,
        previous=earlier_result(folder / RESULT_FILE, key, args.recompute),
    )


def run_models(run: RunFolder, args: argparse.Namespace) -> Models:
    """The generator, sensor and attribute predictor a run is judged with (another generator's only with --force)."""
    with force_hint():
        return load_models(run.directions, run.checkpoint, run.sensor, args.predictor, strict=not args.force)


def evaluate_run(folder: Path, args: argparse.Namespace, settings: EvaluationSettings, calibration: Calibration | None = None) -> dict[str, Any]:
    """The metric row of one run folder, reusing its evaluation.json when made with the same settings
    (`calibration`: the run's calibrated strengths when they were found already)."""
    run = read_run(folder, args, settings)
    if run.previous is not None:
        print(f"{folder}: using {RESULT_FILE} made earlier with these settings", file=sys.stderr)
        return {**run.identity, **run.previous["metrics"]}
    models = run_models(run, args)
    print(f"evaluating {folder} ({run.identity['method']})", file=sys.stderr)
    result = score(run.directions, models, settings, run.key, folder, progress=not args.no_progress, calibration=calibration)
    details = result["details"]
    panels = {f"fixed e = {settings.fixed_strength}": details["fixed_matrix"], "calibrated e": details["calibrated_matrix"]}
    write_attribute_matrices({k: np.asarray(v) for k, v in panels.items()}, details["attributes"], folder / "attribute_matrix.png", run.identity["method"])
    return {**run.identity, **result["metrics"]}


@dataclass
class PairPlan:
    """What rendering the pairs of a run takes: its generator, its calibrated strengths and the pairs to render at them."""

    checkpoint: str
    calibration: Calibration
    pairs: PairSettings


def plan_pairs(folder: Path, args: argparse.Namespace, settings: EvaluationSettings) -> PairPlan | None:
    """The pairs evaluating a run renders; None when it renders none
    (its stored result is reused, the distillation is off, or the generator has no known factors)."""
    run = read_run(folder, args, settings)
    if run.previous is not None or settings.distill is None:
        return None
    generator, sensor, _ = run_models(run, args)
    if not has_factors(generator):
        return None
    calibration = calibration_of(generator, run.directions, sensor, settings)
    return PairPlan(run.checkpoint, calibration, pair_settings(generator, run.directions, sensor, calibration, settings.distill))


def render_pairs(args: argparse.Namespace, settings: EvaluationSettings, runtime: Runtime) -> dict[Path, Calibration]:
    """Every rank renders its share of the pairs of each run, as rank 0 plans them; the calibrations the plans found."""
    calibrations: dict[Path, Calibration] = {}
    for folder in args.runs:
        plan = distributed.decided_on_main(partial(plan_pairs, folder, args, settings), runtime)
        if plan is None:
            continue
        if runtime.is_main:
            print(f"rendering the pairs of {folder} in {runtime.world_size} processes", file=sys.stderr)
        generator, directions = load_generator(plan.checkpoint), load_directions(folder)
        write_pairs(folder / WORK_FOLDER / PAIRS_FOLDER, generator, directions, plan.pairs, progress=not args.no_progress, runtime=runtime)
        calibrations[folder] = plan.calibration
    return calibrations


def reference_rows(args: argparse.Namespace, settings: EvaluationSettings) -> list[dict[str, Any]]:
    """beta-VAE and FactorVAE trained on the procedural images, scored like the distilled encoders."""
    if settings.distill is None:
        raise UserError("--references needs the distillation part (leave out --no-distill)")
    generator = load_generator(args.checkpoint or "shapes3d")
    if not has_factors(generator):
        raise UserError("--references: the reference VAEs need a shapes3d world's factors (--checkpoint shapes3d or shapes3d-learned)")
    rows = []
    for kind in REFERENCE_KINDS:
        work = args.out / "references"
        stored = work / f"{kind}.json"
        key = {"settings": asdict(settings.distill), "beta": REFERENCE_BETA, "gamma": REFERENCE_GAMMA, "scoring": SCORING_VERSION}
        previous = earlier_result(stored, key, args.recompute)
        if previous is not None:
            metrics = previous["metrics"]
        else:
            model = reference_vae(work, generator, kind, settings.distill, progress=not args.no_progress)
            metrics = truth_metrics(generator, model, settings.distill)
            atomic_write_text(stored, json.dumps({"fingerprint": key, "metrics": metrics}, indent=2))
        rows.append({"run": f"reference {kind}", "method": f"{kind} ({REFERENCE_KINDS[kind]}, on the data)", "seed": settings.seed, **metrics})
    return rows


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate the runs and write the tables; under torchrun every process first renders a share of the pairs, then rank 0 alone goes on."""
    if not args.runs and not args.references:
        raise UserError("give run folders to evaluate (and/or --references)")
    settings = settings_from(args)
    runtime = distributed.start("cpu")
    calibrations: dict[Path, Calibration] = {}
    try:
        if runtime.distributed:
            calibrations = render_pairs(args, settings, runtime)
    finally:
        distributed.stop(runtime)
    if not runtime.is_main:
        return 0
    rows = [evaluate_run(folder, args, settings, calibrations.get(folder)) for folder in args.runs]
    if args.references:
        rows += reference_rows(args, settings)
    per_run = write_tables(rows, args.out / "evaluation_runs")
    summary = aggregate(rows)
    paths = write_tables(summary, args.out / "evaluation")
    print(to_markdown(summary))
    if settings.distill is not None and (settings.distill.metric_counts != "full" or settings.distill.metric_fraction < 1):
        counts = f"{settings.distill.metric_counts} metric counts x {settings.distill.metric_fraction:g}"
        print(f"FVM / MIG / DCI at {counts}: a quick look, not comparable with published numbers (--metric-counts full)")
    if settings.distill is not None and recipe_note(settings.distill) is not None:
        print(f"{recipe_note(settings.distill)}: FVM / MIG / DCI not comparable with published numbers (--vae-resolution 64 --vae-schedule constant)")
    print(f"tables: {paths[0]}, {paths[1]}, per run {per_run[0]}", file=sys.stderr)
    return 0
