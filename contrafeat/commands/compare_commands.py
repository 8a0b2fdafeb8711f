"""`contrafeat compare`: the traversals of several runs side by side in one HTML page."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contrafeat.commands.common import add_command, add_force_option, add_traversal_options, check_generator_match
from contrafeat.discovery.config import load_config
from contrafeat.discovery.directions import load_directions
from contrafeat.errors import UserError
from contrafeat.viz.compare import ComparedRun, write_comparison
from contrafeat.zoo import load_generator


def register(subparsers: argparse._SubParsersAction) -> None:
    compare = add_command(subparsers, "compare", "Traversals of several runs side by side in one HTML page (same samples, same generator).")
    compare.add_argument("runs", type=Path, nargs="+", help="run folders written by `contrafeat discover`")
    compare.add_argument("--out", type=Path, default=Path("compare.html"), help="the HTML page to write")
    compare.add_argument("--checkpoint", default=None, help="generator (default: the one the first run was trained on)")
    add_traversal_options(compare, samples=3)
    add_force_option(compare)
    compare.set_defaults(handler=run_compare)


def _load_run(folder: Path) -> tuple[ComparedRun, str | None]:
    """A run's label and directions, and the generator its config names (None without config.yaml)."""
    directions = load_directions(folder)
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        return ComparedRun(f"{folder.name}: {directions.method}", directions), None
    config = load_config(config_path)
    return ComparedRun(f"{folder.name}: {config.plan().label}", directions), config.checkpoint


def run_compare(args: argparse.Namespace) -> int:
    loaded = [_load_run(folder) for folder in args.runs]
    runs = [run for run, _ in loaded]
    identities = {run.directions.generator_id for run in runs}
    if len(identities) > 1:
        listing = "; ".join(f"{folder}: {run.directions.generator_id}" for folder, run in zip(args.runs, runs))
        raise UserError(f"the runs were found on different generators ({listing}); compare runs of one generator")
    checkpoint = args.checkpoint or loaded[0][1]
    if checkpoint is None:
        raise UserError(f"{args.runs[0]}: no config.yaml to tell the generator; pass --checkpoint")
    generator = load_generator(checkpoint)
    check_generator_match(runs[0].directions, generator, checkpoint, args.force)
    page = write_comparison(
        generator, runs, args.out, num_samples=args.samples, num_frames=args.frames, seed=args.seed, strength_multiplier=args.strength_multiplier
    )
    print(f"comparison: {page}", file=sys.stderr)
    return 0
