"""Subcommands of the `contrafeat` command, one module per group.

Each module defines `register(subparsers)`, which adds its parsers and sets `handler` on them.
"""
from contrafeat.commands import gan_commands

COMMAND_MODULES = [gan_commands]
