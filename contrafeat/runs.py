"""`discover`: the one owner of a discovery run. It builds and checks the configuration, creates the run folder (or
trains in memory), trains resumably, and writes the Directions artefact, the pictures and report.html."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from contrafeat.console import LOG, RESULTS
from contrafeat.discovery import distributed
from contrafeat.discovery.config import (
    DEFAULT_PRESET,
    RESUME_OVERRIDABLE,
    DiscoveryConfig,
    build_config,
    config_fields,
    load_config,
    save_config,
)
from contrafeat.discovery.directions import META_FILE, Directions
from contrafeat.discovery.distributed import Runtime
from contrafeat.discovery.run import TrainedRun, train_run
from contrafeat.discovery.subspace import PCABasis
from contrafeat.discovery.trainer import STATE_FILE, saved_state
from contrafeat.errors import UserError
from contrafeat.evaluation.attribute_scores import ExactFactors
from contrafeat.evaluation.evaluate_run import EvaluationSettings, attribute_comparison, fixed_strength_matrix
from contrafeat.evaluation.progress_measures import factor_measures
from contrafeat.evaluation.true_edits import comparison_table, per_direction_table
from contrafeat.gan.interface import GeneratorLike, has_factors, has_true_edits
from contrafeat.viz.attention import write_attention_heatmap
from contrafeat.viz.attribute_matrix import write_attribute_matrices
from contrafeat.viz.images import save_image_grid
from contrafeat.viz.report import write_report
from contrafeat.viz.traversal import write_traversals

IN_MEMORY = "in-memory generator"
"""config.yaml's checkpoint when `discover` was handed a generator object (name the file with --checkpoint to reuse the run)."""


def discover(
    generator_or_spec: GeneratorLike | str | Path | None = None,
    config: DiscoveryConfig | str | Path | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    *,
    preset: str = DEFAULT_PRESET,
    pictures: bool = True,
    **options: Any,
) -> Directions | None:
    """Discover directions in a generator: the run `contrafeat discover` makes, from Python.

    Args:
        generator_or_spec: a generator object, or a zoo name (`shapes3d-learned`, `shapes3d`) or checkpoint path;
            None takes the preset's (or the config's) checkpoint.
        config: a DiscoveryConfig, or a YAML file of option values applied over the preset.
        out: the run folder to write (refused when it already holds a run); None trains in memory and writes nothing.
        resume: continue the unfinished run in `out` (only `steps`, `renders` and how it executes may change).
        progress: show progress bars.
        preset: the hyper-parameter preset under `config` and `options`.
        pictures: write traversals, the attention heat-map, the attribute matrix and report.html (with `out`).
        **options: any option of `contrafeat discover` by its Python name (`steps=50`, `method="contra-pt"`).

    Returns:
        The trained Directions (None on the ranks other than 0 of a torchrun run).

    Raises:
        UserError: bad options, a folder that holds a run already, or an operating-system error while writing the
            run (one line naming the path; what was trained before it stays resumable).
    """
    run_dir = Path(out) if out is not None else None
    generator = None if generator_or_spec is None or isinstance(generator_or_spec, (str, Path)) else generator_or_spec
    check_options(options)
    if resume:
        if run_dir is None:
            raise UserError("resume: give out, the folder of the run to continue")
        settings = resumed_config(run_dir, options)
        if generator is None and generator_or_spec is not None and str(generator_or_spec) != settings.checkpoint:
            raise UserError(f"resume: the run in {run_dir} trains on {settings.checkpoint}, not {generator_or_spec}")
    else:
        if generator_or_spec is not None:
            options = {**options, "checkpoint": str(generator_or_spec) if generator is None else options.get("checkpoint", IN_MEMORY)}
        settings = new_config(config, preset, options)
    runtime = distributed.start(settings.device)
    try:
        return own_run(settings, run_dir, resume, runtime, progress, pictures, generator)
    finally:
        distributed.stop(runtime)


def check_options(options: dict[str, Any]) -> None:
    known = {spec.name for spec in config_fields()}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"discover: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def new_config(config: DiscoveryConfig | str | Path | None, preset: str, options: dict[str, Any]) -> DiscoveryConfig:
    """A new run's configuration: a given DiscoveryConfig with the options over it, or preset < YAML file < options."""
    if isinstance(config, DiscoveryConfig):
        settings = replace(config, **{name: value for name, value in options.items() if value is not None})
        settings.validate()
        return settings
    return build_config(preset, Path(config) if config is not None else None, options)


def resumed_config(run_dir: Path, options: dict[str, Any]) -> DiscoveryConfig:
    """The configuration of the run in `run_dir` to resume: its config.yaml with the options that may change."""
    if not (run_dir / "config.yaml").is_file() or saved_state(run_dir) is None:
        raise UserError(f"--resume {run_dir}: expected a run folder with config.yaml and {STATE_FILE}")
    config = load_config(run_dir / "config.yaml")
    changed = [name for name, value in options.items() if value is not None and name not in RESUME_OVERRIDABLE and value != getattr(config, name)]
    if changed:
        raise UserError(f"--resume: {', '.join(changed)} cannot change in a resumed run (only {', '.join(RESUME_OVERRIDABLE)} can)")
    for name in RESUME_OVERRIDABLE:
        if options.get(name) is not None:
            setattr(config, name, options[name])
    if options.get("renders") is not None and options.get("steps") is None:
        config.steps = config.budget_steps()
    config.validate()
    return config


def own_run(
    config: DiscoveryConfig,
    run_dir: Path | None,
    resuming: bool,
    runtime: Runtime,
    progress: bool,
    pictures: bool,
    generator: GeneratorLike | None,
) -> Directions | None:
    """The run folder, the training and rank 0's artefacts; an operating-system error becomes one UserError line."""
    created = False
    try:
        if runtime.is_main and run_dir is not None:
            created = not resuming and not run_dir.exists()
            write_run(config, run_dir, resuming)
            LOG.info(f"run folder: {run_dir} ({runtime.world_size} process(es) on {runtime.device})")
        try:
            trained = train_run(config, run_dir, resuming, runtime, progress, measures=factor_measures, generator=generator)
            if trained.directions is not None and run_dir is not None:
                save_artefacts(run_dir, trained, trained.directions, pictures)
        except BaseException:
            if created and run_dir is not None and saved_state(run_dir) is None:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing to resume: leave no half-made run behind
            raise
    except OSError as error:
        raise UserError(write_failure(error, run_dir)) from error
    return trained.directions


def write_failure(error: OSError, run_dir: Path | None) -> str:
    """One line: the path, the cause, and where the run stands."""
    where = error.filename or run_dir
    line = f"{where}: {error.strerror or error}"
    if run_dir is not None and saved_state(run_dir) is not None:
        line += f" (the training state saved before stays in {run_dir}; continue with --resume {run_dir})"
    return line


def write_run(config: DiscoveryConfig, run_dir: Path, resuming: bool) -> None:
    """Create a new run folder (refusing to overwrite a run) and save config.yaml."""
    if not resuming:
        if saved_state(run_dir) is not None or (run_dir / META_FILE).exists():
            raise UserError(f"--out {run_dir}: already holds a run; use --resume {run_dir} to continue it or choose another folder")
        run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")


def save_artefacts(run_dir: Path, trained: TrainedRun, directions: Directions, pictures: bool) -> None:
    """The Directions artefact, the objective's learned images (Pt: prototypes.png) and, with `pictures`, the rest."""
    directions.save(run_dir)
    if trained.objective is not None:
        with torch.no_grad():
            for name, images in trained.objective.images().items():
                save_image_grid(images.cpu(), run_dir / name, columns=min(directions.count, 10))
    if pictures:
        publish(run_dir, trained.generator, directions, trained.pca)


def publish(run_dir: Path, generator: GeneratorLike, directions: Directions, pca: PCABasis, **traversal_options: Any) -> None:
    """Traversal grids, attention heat-map, the ground-truth tables and attribute matrix where they exist, and report.html."""
    write_traversals(generator, directions, run_dir / "traversals", **traversal_options)
    write_attention_heatmap(directions, run_dir / "attention.png")
    tables = []
    if has_factors(generator):
        matrix = fixed_strength_matrix(generator, directions, ExactFactors(generator), EvaluationSettings(distill=None))
        picture = run_dir / "attribute_matrix.png"
        write_attribute_matrices({directions.method: matrix.numpy()}, list(generator.factor_names), picture, "exact factors, fixed strength")
    if has_true_edits(generator):
        names = list(generator.factor_names)
        per_direction = per_direction_table(directions, generator, names)
        comparison = comparison_table(generator, directions, pca)
        tables = [("directions judged with the true edits", per_direction), ("against plain PCA and random directions", comparison)]
    elif has_factors(generator):
        rows = attribute_comparison(generator, directions, pca, matrix)
        tables = [("attribute matrix at the fixed strength, against plain PCA and random directions", rows)]
    for caption, table in tables:
        log_table(caption, table)
    report = write_report(run_dir, tables, title=f"contrafeat: {directions.method} on {run_dir.name}")
    LOG.info(f"report: {report}")


def log_table(caption: str, rows: Sequence[dict]) -> None:
    """A fixed-width text table on the results logger (stdout from the command line)."""
    keys = list(rows[0])
    cells = [[f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys] for row in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = [f"\n{caption}", "  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell_row, widths)) for cell_row in cells]
    RESULTS.info("\n".join(lines))
