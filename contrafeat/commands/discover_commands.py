"""`contrafeat discover` (train directions, resumable) and `contrafeat traverse` (pictures and report of a run)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from contrafeat.commands.common import add_command, add_force_option, add_traversal_options, check_generator_match, run_checkpoint
from contrafeat.discovery.config import DEFAULT_PRESET, PRESETS, DiscoveryConfig, build_config, config_fields, config_text, effective_defaults
from contrafeat.discovery.directions import load_directions
from contrafeat.discovery.registry import METHODS
from contrafeat.discovery.subspace import PCABasis, load_or_compute_pca
from contrafeat.options import flag
from contrafeat.paths import cache_dir
from contrafeat.runs import discover, publish, resumed_config
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


def run_discover(args: argparse.Namespace) -> int:
    """Train (data-parallel under torchrun) and, on rank 0, write the directions, pictures and report (`runs.discover`)."""
    overrides = _overrides(args)
    if args.dry_run:
        config = resumed_config(args.resume, overrides) if args.resume is not None else build_config(args.preset, args.config, overrides)
        sys.stdout.write(config_text(config))
        return 0
    if args.resume is not None:
        discover(out=args.resume, resume=True, progress=not args.no_progress, **overrides)
    else:
        out = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        discover(config=args.config, out=out, progress=not args.no_progress, preset=args.preset, **overrides)
    return 0


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
