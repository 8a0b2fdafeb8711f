"""A shapes3d run folder of true edits and an editor server serving it from a thread, for the editor's tests."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from true_edit_directions import true_directions

from contrafeat.cli import build_parser
from contrafeat.commands.ui_commands import open_server
from contrafeat.discovery.config import build_config, save_config
from contrafeat.ui.server import EditorServer
from contrafeat.zoo import load_generator


def write_true_edit_run(folder: Path) -> Path:
    """A run folder: the shapes3d generator's six true edits (named after their factors, step 0.5) and a config.yaml."""
    generator = load_generator("shapes3d")
    directions = true_directions(generator)
    directions.names = list(generator.factor_names)
    directions.save(folder)
    save_config(build_config("shapes3d"), folder / "config.yaml")
    return folder


@contextmanager
def running_editor(run: Path, *options: str) -> Iterator[EditorServer]:
    """`contrafeat ui --directions RUN --port 0 OPTIONS...` served from a daemon thread until the block ends."""
    server = open_server(build_parser().parse_args(["ui", "--directions", str(run), "--port", "0", *options]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
