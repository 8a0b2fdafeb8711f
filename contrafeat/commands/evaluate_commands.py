"""`contrafeat evaluate`: score runs with the attribute matrix, the true edits and the group-VAE distillation."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from contrafeat.commands.common import add_command, run_checkpoint
from contrafeat.discovery.config import load_config
from contrafeat.discovery.directions import load_directions
from contrafeat.discovery.methods import method_label
from contrafeat.errors import UserError
from contrafeat.evaluation.attribute_scores import build_predictor
from contrafeat.evaluation.calibration import DEFAULT_TARGET
from contrafeat.evaluation.disentanglement import metric_counts
from contrafeat.evaluation.distillation import VARIANTS, DistillSettings, reference_vae, truth_metrics
from contrafeat.evaluation.evaluate_run import DEFAULT_FIXED_STEP, EvaluationSettings, evaluate_directions
from contrafeat.evaluation.tables import aggregate, to_markdown, write_tables
from contrafeat.evaluation.true_edits import has_true_edits
from contrafeat.features import build_sensor
from contrafeat.gan.zoo import load_generator
from contrafeat.io_utils import atomic_write_text
from contrafeat.viz.attribute_matrix import write_attribute_matrices

RESULT_FILE = "evaluation.json"
REFERENCE_KINDS = ("beta-vae", "factor-vae")


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = add_command(
        subparsers, "evaluate", "Score runs: attribute-change matrix (fixed and calibrated steps), true-edit cosine, group-VAE FVM / MIG / DCI."
    )
    evaluate.add_argument("runs", type=Path, nargs="*", help="run folders written by `contrafeat discover`")
    evaluate.add_argument("--out", type=Path, default=Path("evaluation"), help="folder of the summary tables (evaluation.csv / .md)")
    evaluate.add_argument("--checkpoint", default=None, help="generator (default: the one each run was trained on)")
    evaluate.add_argument(
        "--predictor", default="exact", help="attribute predictor: exact (shapes3d factors), cnn (bundled shapes3d CNN) or MODULE:CALLABLE"
    )
    evaluate.add_argument("--sensor", default=None, help="sensor of the step calibration and duplicate check (default: each run's own)")
    evaluate.add_argument("--fixed-step", type=float, default=DEFAULT_FIXED_STEP, help="the one step e of the fixed protocol")
    evaluate.add_argument("--calibration-target", type=float, default=DEFAULT_TARGET, help="relative sensor-feature movement of calibrated steps")
    evaluate.add_argument("--samples", type=int, default=500, help="samples per direction of the attribute matrix")
    evaluate.add_argument("--truncation", type=float, default=0.5, help="truncation psi of the attribute-matrix samples")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of samples, pairs, VAE and metrics")
    evaluate.add_argument("--no-distill", action="store_true", help="skip the pairs / group VAE / FVM, MIG, DCI part")
    evaluate.add_argument("--pairs", type=int, default=DistillSettings.num_pairs, help="pairs rendered for the group VAE")
    evaluate.add_argument("--vae-steps", type=int, default=DistillSettings.vae_steps, help="group-VAE (and reference VAE) training steps")
    evaluate.add_argument("--vae-variant", default=DistillSettings.variant, choices=VARIANTS, help="label: latent i is direction i; ada: inferred")
    evaluate.add_argument("--beta", type=float, default=DistillSettings.beta, help="KL weight of the VAEs")
    evaluate.add_argument("--full-metrics", action="store_true", help="the full disentanglement_lib sample counts (slow) instead of the quick ones")
    evaluate.add_argument("--metric-fraction", type=float, default=1.0, help="scale the metric sample counts down by this factor (a faster, noisier look)")
    evaluate.add_argument("--references", action="store_true", help="add beta-VAE and FactorVAE rows trained on the procedural images")
    evaluate.add_argument("--recompute", action="store_true", help=f"ignore {RESULT_FILE} files made earlier with the same settings")
    evaluate.add_argument("--no-progress", action="store_true", help="hide progress bars")
    evaluate.set_defaults(handler=run_evaluate)


def settings_from(args: argparse.Namespace) -> EvaluationSettings:
    metric_counts(not args.full_metrics, args.metric_fraction)
    distill = None
    if not args.no_distill:
        distill = DistillSettings(
            num_pairs=args.pairs, vae_steps=args.vae_steps, variant=args.vae_variant, beta=args.beta, seed=args.seed,
            quick_metrics=not args.full_metrics, metric_fraction=args.metric_fraction,
        )
    settings = EvaluationSettings(
        fixed_step=args.fixed_step, calibration_target=args.calibration_target, num_samples=args.samples,
        truncation_psi=args.truncation, seed=args.seed, distill=distill,
    )
    settings.validate()
    return settings


def fingerprint(args: argparse.Namespace, settings: EvaluationSettings, sensor: str) -> dict[str, Any]:
    """What a stored result depends on besides the run itself."""
    return {"settings": asdict(settings), "predictor": args.predictor, "sensor": sensor}


def earlier_result(path: Path, key: dict[str, Any], recompute: bool) -> dict[str, Any] | None:
    """The result stored at `path` when it was made with the same fingerprint (and no recompute was asked)."""
    if recompute or not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored if stored.get("fingerprint") == key else None


def evaluate_run(folder: Path, args: argparse.Namespace, settings: EvaluationSettings) -> dict[str, Any]:
    """The metric row of one run folder, reusing its evaluation.json when made with the same settings."""
    directions = load_directions(folder)
    config = load_config(folder / "config.yaml") if (folder / "config.yaml").is_file() else None
    checkpoint = run_checkpoint(folder, args.checkpoint)
    sensor_name = args.sensor or (config.sensor if config else "mobilenet_v2")
    identity = {"run": folder.name, "method": method_label(config) if config else directions.method, "seed": config.seed if config else None}
    key = fingerprint(args, settings, sensor_name)
    stored = folder / RESULT_FILE
    previous = earlier_result(stored, key, args.recompute)
    if previous is not None:
        print(f"{folder}: using {RESULT_FILE} made earlier with these settings", file=sys.stderr)
        return {**identity, **previous["metrics"]}
    generator = load_generator(checkpoint)
    sensor_weights = config.sensor_weights if config and sensor_name == config.sensor else None
    sensor = build_sensor(sensor_name, weights=sensor_weights, generator=generator)
    predictor = build_predictor(args.predictor, generator)
    print(f"evaluating {folder} ({identity['method']})", file=sys.stderr)
    result = evaluate_directions(generator, directions, sensor, predictor, settings, folder / "evaluation", progress=not args.no_progress)
    details = result["details"]
    panels = {f"fixed e = {settings.fixed_step}": details["fixed_matrix"], "calibrated e": details["calibrated_matrix"]}
    write_attribute_matrices({k: np.asarray(v) for k, v in panels.items()}, details["attributes"], folder / "attribute_matrix.png", identity["method"])
    atomic_write_text(stored, json.dumps({"fingerprint": key, **result}, indent=2))
    return {**identity, **result["metrics"]}


def reference_rows(args: argparse.Namespace, settings: EvaluationSettings) -> list[dict[str, Any]]:
    """beta-VAE and FactorVAE trained on the procedural images, scored like the distilled encoders."""
    if settings.distill is None:
        raise UserError("--references needs the distillation part (leave out --no-distill)")
    generator = load_generator(args.checkpoint or "shapes3d")
    if not has_true_edits(generator):
        raise UserError("--references: the reference VAEs need the shapes3d world's true factors")
    rows = []
    for kind in REFERENCE_KINDS:
        work = args.out / "references"
        stored = work / f"{kind}.json"
        key = {"settings": asdict(settings.distill)}
        previous = earlier_result(stored, key, args.recompute)
        if previous is not None:
            metrics = previous["metrics"]
        else:
            model = reference_vae(work, generator, kind, settings.distill, progress=not args.no_progress)
            metrics = truth_metrics(generator, model, settings.distill)
            atomic_write_text(stored, json.dumps({"fingerprint": key, "metrics": metrics}, indent=2))
        rows.append({"run": f"reference {kind}", "method": f"{kind} (on the data)", "seed": settings.seed, **metrics})
    return rows


def run_evaluate(args: argparse.Namespace) -> int:
    if not args.runs and not args.references:
        raise UserError("give run folders to evaluate (and/or --references)")
    settings = settings_from(args)
    rows = [evaluate_run(folder, args, settings) for folder in args.runs]
    if args.references:
        rows += reference_rows(args, settings)
    per_run = write_tables(rows, args.out / "evaluation_runs")
    summary = aggregate(rows)
    paths = write_tables(summary, args.out / "evaluation")
    print(to_markdown(summary))
    print(f"tables: {paths[0]}, {paths[1]}, per run {per_run[0]}", file=sys.stderr)
    return 0
