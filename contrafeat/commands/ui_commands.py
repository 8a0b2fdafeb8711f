"""`contrafeat ui`: a local web editor with one slider per direction of a run, for seeds and uploaded images."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contrafeat.commands.common import add_command, add_force_option, check_generator_match, run_checkpoint
from contrafeat.discovery.directions import load_directions
from contrafeat.errors import UserError
from contrafeat.options import COUNT, PORT, POSITIVE
from contrafeat.ui.server import EditorServer, create_server
from contrafeat.zoo import load_generator


def register(subparsers: argparse._SubParsersAction) -> None:
    ui = add_command(
        subparsers,
        "ui",
        "Serve a web editor: pick a seed or upload an image (projected into W+), move one slider per direction, "
        "download the PNG or the W+ code. The page keeps its own editing state, so several tabs edit independently.",
    )
    ui.add_argument("--directions", type=Path, required=True, help="run folder written by `contrafeat discover`")
    ui.add_argument("--checkpoint", default=None, help="generator (default: the one the run was trained on)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback exposes the editor to the network")
    ui.add_argument("--port", type=PORT, default=7860, help="port to listen on; 0 takes a free port")
    ui.add_argument("--project-steps", type=COUNT, default=200, help="optimisation steps of the projection of an uploaded image")
    ui.add_argument("--max-upload-mb", type=POSITIVE, default=20.0, help="largest accepted upload, in MiB")
    add_force_option(ui)
    ui.set_defaults(handler=run_ui)


def open_server(args: argparse.Namespace) -> EditorServer:
    """The editor server for the parsed options, bound and ready to serve."""
    directions = load_directions(args.directions)
    checkpoint = run_checkpoint(args.directions, args.checkpoint)
    generator = load_generator(checkpoint)
    check_generator_match(directions, generator, checkpoint, args.force)
    try:
        return create_server(generator, directions, checkpoint, args.host, args.port, args.project_steps, int(args.max_upload_mb * 2**20))
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({error.strerror or error})") from None


def run_ui(args: argparse.Namespace) -> int:
    server = open_server(args)
    print(f"contrafeat editor at {server.url} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
