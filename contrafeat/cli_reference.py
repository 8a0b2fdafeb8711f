"""The `--help` of every subcommand as one Markdown page (docs/cli.md): `python -m contrafeat.cli_reference`."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Iterator

from contrafeat.cli import build_parser

HELP_WIDTH = 100
"""Columns of the help text in the page, whatever the terminal."""


def subcommand_parsers(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(full command, parser) for the parser and every nested subcommand, in registration order."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subcommand_parsers(child, f"{prefix} {name}")


def cli_reference() -> str:
    """The Markdown page: one section per command with its help text."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(HELP_WIDTH)
    try:
        sections = [
            "# Command reference\n\nThe `--help` of every `contrafeat` command, written by "
            "`python -m contrafeat.cli_reference > docs/cli.md` (a test checks that this page is current).\n"
        ]
        for command, parser in subcommand_parsers(build_parser(), "contrafeat"):
            sections.append(f"## `{command}`\n\n```\n{parser.format_help().rstrip()}\n```\n")
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


if __name__ == "__main__":
    sys.stdout.write(cli_reference())
