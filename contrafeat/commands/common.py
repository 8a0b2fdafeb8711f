"""Helpers shared by the subcommand modules."""
from __future__ import annotations

import argparse
from pathlib import Path

from contrafeat.discovery.config import load_config
from contrafeat.errors import UserError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none or the help text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "default" in text:
            return text
        return super()._get_help_string(action)


def add_command(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add a subcommand whose --help shows every option's default."""
    return subparsers.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter)


def add_traversal_options(parser: argparse.ArgumentParser, samples: int) -> None:
    """--samples, --frames, --step-multiplier, --seed: the shape of traversal grids."""
    parser.add_argument("--samples", type=int, default=samples, help="rows of each grid")
    parser.add_argument("--frames", type=int, default=7, help="columns of each grid")
    parser.add_argument("--step-multiplier", type=float, default=1.0, help="scales the suggested step of every direction")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples (the same for every run compared)")


def run_checkpoint(run_dir: Path, explicit: str | None) -> str:
    """The generator to use with a run: the explicit one, else the checkpoint in the run's config.yaml."""
    if explicit is not None:
        return explicit
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{run_dir}: no config.yaml to tell the generator; pass --checkpoint")
    return load_config(config_path).checkpoint
