"""`contrafeat ablate STUDY...`: the paper's ablations on the shapes3d world, mean +- std over seeds, tables and figures."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from contrafeat.commands.common import add_command
from contrafeat.experiments.ablations import AblationSettings, StudyOutput, run_studies
from contrafeat.experiments.studies import MASK_STUDY, TRAINING_STUDIES, check_study_names
from contrafeat.options import COUNT, INDEX
from contrafeat.viz.ablation_figure import write_mask_figure, write_study_figure

STUDY_HELP = ", ".join(f"{name} ({study.paper})" for name, study in TRAINING_STUDIES.items()) + f", {MASK_STUDY} (Table 8)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "ablate", "Run ablation studies on the shapes3d world over several seeds; write tables and a figure per study.")
    parser.add_argument("studies", nargs="+", metavar="STUDY", help=f"one or more of: {STUDY_HELP}; or all")
    defaults = AblationSettings()
    quick = defaults.quick()
    seeds = " ".join(map(str, defaults.seeds))
    parser.add_argument("--seeds", nargs="+", type=INDEX, default=None, help=f"discovery seeds (default {seeds}; --quick: the first)")
    parser.add_argument("--steps", type=COUNT, default=None, help=f"training steps per run (default {defaults.steps}; --quick: {quick.steps})")
    parser.add_argument("--pca-samples", type=COUNT, default=None, help=f"mapped samples of the PCA of W (default {defaults.pca_samples})")
    parser.add_argument("--samples", type=COUNT, default=None, help=f"samples of each attribute-change matrix (default {defaults.samples})")
    parser.add_argument("--mask-samples", type=COUNT, default=None, help=f"samples per factor pair of the mask study (default {defaults.mask_samples})")
    parser.add_argument("--quick", action="store_true", help=f"the ten-minute version: one seed, {quick.steps} steps, fewer samples")
    parser.add_argument("--jobs", type=COUNT, default=defaults.jobs, help="runs at once, in worker processes sharing the cores (1: in this process)")
    parser.add_argument(
        "--job-threads", type=COUNT, default=defaults.job_threads, help="torch threads of each run; numbers reproduce exactly for the same seeds and value"
    )
    parser.add_argument("--alexnet-weights", default=None, help="torchvision's ImageNet AlexNet file: adds it to the sensor study")
    parser.add_argument("--work", type=Path, default=Path("ablation_runs"), help="folder of the runs (finished ones are reused, interrupted ones resumed)")
    parser.add_argument("--out", type=Path, default=Path("ablation_results"), help="folder of the tables and figures")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run_ablate)


def settings_from(args: argparse.Namespace) -> AblationSettings:
    """Defaults, then --quick, then the options given explicitly."""
    settings = AblationSettings(jobs=args.jobs, job_threads=args.job_threads, alexnet_weights=args.alexnet_weights)
    if args.quick:
        settings = settings.quick()
    explicit = {
        "seeds": tuple(args.seeds) if args.seeds is not None else None,
        "steps": args.steps,
        "pca_samples": args.pca_samples,
        "samples": args.samples,
        "mask_samples": args.mask_samples,
    }
    return replace(settings, **{name: value for name, value in explicit.items() if value is not None})


def draw_figure(output: StudyOutput, settings: AblationSettings) -> Path:
    path = output.folder / f"{output.name}.png"
    seeds = f"{len(settings.seeds)} seed(s)"
    if output.name == MASK_STUDY:
        return write_mask_figure(output.table, path, f"{output.title} ({seeds}, {settings.mask_samples} samples per pair)")
    return write_study_figure(output.table, path, f"{output.title} ({seeds}, {settings.steps} steps)")


def run_ablate(args: argparse.Namespace) -> int:
    names = check_study_names(args.studies)
    settings = settings_from(args)
    outputs = run_studies(names, settings, args.work, args.out, progress=not args.no_progress)
    for output in outputs:
        figure = draw_figure(output, settings)
        print(output.markdown)
        print(f"tables and figure: {output.folder} ({figure.name})\n", file=sys.stderr)
    return 0

