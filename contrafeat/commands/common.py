"""Helpers shared by the subcommand modules."""
from __future__ import annotations

import argparse


def add_command(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add a subcommand whose --help shows every option's default."""
    return subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
