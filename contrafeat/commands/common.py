"""Helpers shared by the subcommand modules."""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from contrafeat.discovery.config import load_config
from contrafeat.discovery.directions import Directions, GeneratorMismatch
from contrafeat.errors import UserError
from contrafeat.gan.interface import GeneratorLike
from contrafeat.options import COUNT, INDEX, POSITIVE


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none or the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


def add_command(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add a subcommand whose --help shows every option's default."""
    return subparsers.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter)


def add_traversal_options(parser: argparse.ArgumentParser, samples: int) -> None:
    """--samples, --frames, --strength-multiplier, --seed: the shape of traversal grids."""
    parser.add_argument("--samples", type=COUNT, default=samples, help="rows of each grid")
    parser.add_argument("--frames", type=COUNT, default=7, help="columns of each grid")
    parser.add_argument("--strength-multiplier", type=POSITIVE, default=1.0, help="scales the suggested strength of every direction")
    parser.add_argument("--seed", type=INDEX, default=0, help="seed of the samples (the same for every run compared)")


def run_checkpoint(run_dir: Path, explicit: str | None) -> str:
    """The generator to use with a run: the explicit one, else the checkpoint in the run's config.yaml."""
    if explicit is not None:
        return explicit
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: no config.yaml to tell the generator; pass --checkpoint")
    return load_config(config_path).checkpoint


def add_force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="apply the directions to a generator other than the one they were found in (a warning, not an error)"
    )


@contextmanager
def force_hint() -> Iterator[None]:
    """Directions refused for another generator (`Directions.check_compatible`) get a line that names --force."""
    try:
        yield
    except GeneratorMismatch as error:
        raise UserError(f"{error}; pass --force to apply them anyway") from error


def check_generator_match(directions: Directions, generator: GeneratorLike, checkpoint: str, force: bool) -> None:
    """`Directions.check_compatible` with the checkpoint named: another generator's directions are refused, with
    --force only warned about."""
    with force_hint():
        directions.check_compatible(generator, strict=not force, label=checkpoint)
