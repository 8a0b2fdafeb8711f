"""`contrafeat discover` (train directions, resumable) and `contrafeat traverse` (pictures and report of a run)."""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import torch

from contrafeat.commands.common import add_command, add_force_option, add_traversal_options, check_generator_match, run_checkpoint
from contrafeat.discovery import distributed
from contrafeat.discovery.config import (
    DEFAULT_PRESET,
    PRESETS,
    RESUME_OVERRIDABLE,
    DiscoveryConfig,
    build_config,
    config_fields,
    config_text,
    effective_defaults,
    load_config,
    save_config,
)
from contrafeat.discovery.directions import META_FILE, Directions, load_directions
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.precision import check_precision
from contrafeat.discovery.registry import METHODS
from contrafeat.discovery.run import train_run
from contrafeat.discovery.subspace import PCABasis, load_or_compute_pca
from contrafeat.discovery.trainer import STATE_FILE, saved_state
from contrafeat.errors import UserError
from contrafeat.evaluation.attribute_scores import ExactFactors
from contrafeat.evaluation.evaluate_run import EvaluationSettings, attribute_comparison, fixed_strength_matrix
from contrafeat.evaluation.progress_measures import factor_measures
from contrafeat.evaluation.true_edits import comparison_table, per_direction_table
from contrafeat.gan.interface import GeneratorLike, has_factors, has_true_edits
from contrafeat.options import flag
from contrafeat.paths import cache_dir
from contrafeat.viz.attention import write_attention_heatmap
from contrafeat.viz.attribute_matrix import write_attribute_matrices
from contrafeat.viz.images import save_image_grid
from contrafeat.viz.report import write_report
from contrafeat.viz.traversal import write_traversals
from contrafeat.zoo import load_generator


def register(subparsers: argparse._SubParsersAction) -> None:
    discover = add_command(subparsers, "discover", "Learn K semantic directions with layer attention (default: the learned shapes3d world).")
    discover.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="hyper-parameter preset")
    discover.add_argument("--config", type=Path, default=None, help="YAML file of option values (applied over the preset)")
    discover.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<timestamp>)")
    discover.add_argument("--resume", type=Path, default=None, help="continue the run in this folder where it stopped")
    discover.add_argument("--no-progress", action="store_true", help="hide progress bars")
    discover.add_argument(
        "--dry-run", action="store_true", help="print the merged configuration (preset < YAML < flags) as config.yaml would hold it, and exit"
    )
    for spec in config_fields():
        _add_config_option(discover, spec)
    discover.set_defaults(handler=run_discover)

    traverse = add_command(subparsers, "traverse", "Write traversal grids, the attention heat-map and report.html of a run.")
    traverse.add_argument("run", type=Path, help="run folder written by `contrafeat discover`")
    traverse.add_argument("--checkpoint", default=None, help="generator (default: the one the run was trained on)")
    add_traversal_options(traverse, samples=4)
    add_force_option(traverse)
    traverse.set_defaults(handler=run_traverse)


def _add_config_option(parser: argparse.ArgumentParser, spec: dataclasses.Field) -> None:
    """--option-name for a DiscoveryConfig field, typed by its domain or choices; the help states the value each
    preset and method really gets."""
    help_text = f"{spec.metadata['help']} ({default_summary(spec.name)})"
    option = flag(spec.name)
    if spec.type in (bool, "bool"):
        parser.add_argument(option, dest=spec.name, default=None, action=argparse.BooleanOptionalAction, help=help_text)
        return
    kind = spec.metadata.get("domain") or str
    parser.add_argument(option, dest=spec.name, type=kind, choices=spec.metadata.get("choices"), default=None, help=help_text)


def default_summary(name: str) -> str:
    """The values an option really gets without a flag, e.g. 'default 1500; ganspace, sefa, truth, best-linear: 0;
    preset ffhq: contra-bi: 16667; contra-pt: 20000; ...': the default preset's, then what each other preset changes."""
    values = effective_defaults(name)
    base = {method: values[(DEFAULT_PRESET, method)] for method in METHODS}
    default = base[DiscoveryConfig.method]
    parts = [f"default {default}", *_grouped({method: value for method, value in base.items() if value != default})]
    for preset in PRESETS:
        changed = {method: values[(preset, method)] for method in METHODS if values[(preset, method)] != base[method]}
        if changed:
            parts.append(f"preset {preset}: " + "; ".join(_grouped(changed, every=len(METHODS))))
    return "; ".join(parts)


def _grouped(values: dict[str, object], every: int | None = None) -> list[str]:
    """'m1, m2: v' per distinct value (just 'v' when the methods are all `every` of them)."""
    groups: dict[str, list[str]] = {}
    for method, value in values.items():
        groups.setdefault(str(value), []).append(method)
    return [value if len(methods) == every else f"{', '.join(methods)}: {value}" for value, methods in groups.items()]


def _overrides(args: argparse.Namespace) -> dict:
    return {spec.name: getattr(args, spec.name) for spec in config_fields()}


def _read_run(args: argparse.Namespace) -> tuple[DiscoveryConfig, Path, bool]:
    """The config and run folder (nothing written): a new run, or an existing one to resume (only some options may change)."""
    overrides = _overrides(args)
    if args.resume is None:
        return build_config(args.preset, args.config, overrides), args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"), False
    run_dir = args.resume
    if not (run_dir / "config.yaml").is_file() or saved_state(run_dir) is None:
        raise UserError(f"--resume {run_dir}: expected a run folder with config.yaml and {STATE_FILE}")
    config = load_config(run_dir / "config.yaml")
    changed = [name for name, value in overrides.items() if value is not None and name not in RESUME_OVERRIDABLE and value != getattr(config, name)]
    if changed:
        raise UserError(f"--resume: {', '.join(changed)} cannot change in a resumed run (only {', '.join(RESUME_OVERRIDABLE)} can)")
    for name in RESUME_OVERRIDABLE:
        if overrides[name] is not None:
            setattr(config, name, overrides[name])
    if overrides["renders"] is not None and overrides["steps"] is None:
        config.steps = config.budget_steps()
    config.validate()
    return config, run_dir, True


def _write_run(config: DiscoveryConfig, run_dir: Path, resuming: bool) -> None:
    """Create a new run folder (refusing to overwrite a run) and save config.yaml."""
    if not resuming:
        if saved_state(run_dir) is not None or (run_dir / META_FILE).exists():
            raise UserError(f"--out {run_dir}: already holds a run; use --resume {run_dir} to continue it or choose another folder")
        run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")


def run_discover(args: argparse.Namespace) -> int:
    """Train (data-parallel under torchrun) and, on rank 0, write the directions, pictures and report."""
    config, run_dir, resuming = _read_run(args)
    if args.dry_run:
        sys.stdout.write(config_text(config))
        return 0
    runtime = distributed.start(config.device)
    try:
        check_precision(config.precision, runtime.device)
        created = runtime.is_main and not resuming and not run_dir.exists()
        if runtime.is_main:
            _write_run(config, run_dir, resuming)
            print(f"run folder: {run_dir} ({runtime.world_size} process(es) on {runtime.device})", file=sys.stderr)
        try:
            _discover(config, run_dir, resuming, runtime, progress=not args.no_progress)
        except BaseException:
            if created and saved_state(run_dir) is None:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing to resume: leave no half-made run behind
            raise
    finally:
        distributed.stop(runtime)
    return 0


def _discover(config: DiscoveryConfig, run_dir: Path, resuming: bool, runtime: Runtime, progress: bool) -> None:
    """Everything after the run folder exists: training, then rank 0's artefacts."""
    trained = train_run(config, run_dir, resuming, runtime, progress, measures=factor_measures)
    if trained.directions is None:
        return
    trained.directions.save(run_dir)
    prototypes = getattr(trained.objective, "prototypes", None)
    if prototypes is not None:
        with torch.no_grad():
            save_image_grid(prototypes.patterns(False).cpu(), run_dir / "prototypes.png", columns=min(trained.directions.count, 10))
    publish(run_dir, trained.generator, trained.directions, trained.pca)


def publish(run_dir: Path, generator: GeneratorLike, directions: Directions, pca: PCABasis, **traversal_options) -> None:
    """Traversal grids, attention heat-map, the ground-truth tables and attribute matrix where they exist, and report.html."""
    write_traversals(generator, directions, run_dir / "traversals", **traversal_options)
    write_attention_heatmap(directions, run_dir / "attention.png")
    if has_factors(generator):
        matrix = fixed_strength_matrix(generator, directions, ExactFactors(generator), EvaluationSettings(distill=None))
        picture = run_dir / "attribute_matrix.png"
        write_attribute_matrices({directions.method: matrix.numpy()}, list(generator.factor_names), picture, "exact factors, fixed strength")
    tables = []
    if has_true_edits(generator):
        names = list(generator.factor_names)
        per_direction = per_direction_table(directions, generator, names)
        comparison = comparison_table(generator, directions, pca)
        tables = [("directions judged with the true edits", per_direction), ("against plain PCA and random directions", comparison)]
    elif has_factors(generator):
        tables = [("attribute matrix at the fixed strength, against plain PCA and random directions", attribute_comparison(generator, directions, pca))]
    for caption, rows in tables:
        print_table(caption, rows)
    report = write_report(run_dir, tables, title=f"contrafeat: {directions.method} on {run_dir.name}")
    print(f"report: {report}", file=sys.stderr)


def print_table(caption: str, rows: list[dict]) -> None:
    """A fixed-width text table on stdout."""
    keys = list(rows[0])
    cells = [[f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print(f"\n{caption}")
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for cell_row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(cell_row, widths)))


def run_traverse(args: argparse.Namespace) -> int:
    run_dir = args.run
    directions = load_directions(run_dir)
    checkpoint = run_checkpoint(run_dir, args.checkpoint)
    generator = load_generator(checkpoint)
    check_generator_match(directions, generator, checkpoint, args.force)
    pca_path = run_dir / "pca.safetensors"
    pca = PCABasis.load(pca_path) if pca_path.is_file() else load_or_compute_pca(generator, cache_dir("pca"), 1_000_000)
    publish(
        run_dir,
        generator,
        directions,
        pca,
        num_samples=args.samples,
        num_frames=args.frames,
        seed=args.seed,
        strength_multiplier=args.strength_multiplier,
    )
    return 0
