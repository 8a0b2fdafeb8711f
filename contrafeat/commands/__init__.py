"""Subcommands of the `contrafeat` command, one module per group.

Each module defines `register(subparsers)`, which adds its parsers and sets `handler` on them.
"""
from contrafeat.commands import (
    ablate_commands,
    compare_commands,
    consensus_commands,
    discover_commands,
    editing_commands,
    evaluate_commands,
    gan_commands,
    mask_analysis_commands,
    sensor_commands,
    shapes3d_commands,
    ui_commands,
)

COMMAND_MODULES = [
    gan_commands,
    shapes3d_commands,
    discover_commands,
    compare_commands,
    evaluate_commands,
    consensus_commands,
    sensor_commands,
    mask_analysis_commands,
    ablate_commands,
    editing_commands,
    ui_commands,
]
