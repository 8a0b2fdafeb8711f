"""The native checkpoint: a folder with `model.safetensors` (the Generator state dict, discriminator included)
and `config.json` (the architecture, i.e. `Generator.config`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import safetensors.torch
from safetensors import SafetensorError

from contrafeat.errors import CheckpointError, one_line
from contrafeat.gan.assembly import build_generator, finish, load_state
from contrafeat.gan.stylegan2 import Generator
from contrafeat.io_utils import atomic_replace, atomic_write_text

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_TAG = "contrafeat-stylegan2"
FORMAT_VERSION = 1


def native_folder(path: Path) -> Path:
    """The checkpoint folder for a folder path or a path to one of its two files."""
    return path if path.is_dir() else path.parent


def save_native(generator: Generator, out_dir: Path) -> Path:
    """Write `out_dir`/model.safetensors and config.json, each atomically; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().cpu().contiguous() for key, value in generator.state_dict().items()}
    temporary = out_dir / (WEIGHTS_FILE + ".tmp")
    temporary.write_bytes(safetensors.torch.save(tensors, metadata={"format": FORMAT_TAG}))
    atomic_replace(temporary, out_dir / WEIGHTS_FILE)
    document = {"format": FORMAT_TAG, "version": FORMAT_VERSION, "generator": generator.config}
    atomic_write_text(out_dir / CONFIG_FILE, json.dumps(document, indent=2) + "\n")
    return out_dir


def read_config(path: Path) -> dict[str, Any]:
    """The generator config stored in a native config.json."""
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable native config ({one_line(error)})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_TAG or not isinstance(document.get("generator"), dict):
        raise CheckpointError(f"{path}: not a contrafeat config (expected a JSON object with \"format\": \"{FORMAT_TAG}\" and a \"generator\" section)")
    if document.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: native format version {document.get('version')!r} is not supported (expected {FORMAT_VERSION})")
    return document["generator"]


def load_native(path: Path) -> Generator:
    """A native folder (or either of its files) -> Generator."""
    folder = native_folder(path)
    weights, config_file = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    for required in (weights, config_file):
        if not required.is_file():
            raise CheckpointError(f"{folder}: a native checkpoint needs both {WEIGHTS_FILE} and {CONFIG_FILE}; {required.name} is missing")
    generator = build_generator(read_config(config_file), config_file)
    try:
        state = safetensors.torch.load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights}: truncated or corrupt safetensors file ({one_line(error)})") from None
    load_state(generator, state, weights)
    return finish(generator)
