"""`contrafeat sensors`: the feature extractors, and whether each one's weights can be found here (and the face
detector's)."""
from __future__ import annotations

import argparse

from contrafeat.commands.common import add_command
from contrafeat.editing.face_detection import mtcnn_weights_status
from contrafeat.errors import UserError
from contrafeat.features import build_sensor
from contrafeat.features.registry import SENSOR_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "sensors", "List the feature extractors and whether their weights are available.")
    parser.set_defaults(handler=run_sensors)


def availability(name: str) -> str:
    """'ready', or the first line of the reason it cannot be built without more input."""
    if name == "discriminator":
        return "needs a checkpoint with a discriminator"
    try:
        build_sensor(name)
    except UserError as error:
        return f"missing: {error}"
    return "ready"


def run_sensors(args: argparse.Namespace) -> int:
    for name, description in SENSOR_HELP.items():
        print(f"{name:20s} {description}\n{'':20s} [{availability(name)}]")
    present, where = mtcnn_weights_status()
    state = f"ready: {where}" if present else f"missing: run `{where}`"
    print(f"{'mtcnn':20s} MTCNN face detector (P-, R- and O-Net) that finds and aligns faces in photos; not a --sensor\n{'':20s} [{state}]")
    return 0
