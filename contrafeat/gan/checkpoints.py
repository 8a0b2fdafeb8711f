"""StyleGAN2 checkpoint formats, recognised by content (never by file name) and loaded without running code.

- `nvidia-pkl`: NVIDIA stylegan2-ada-pytorch / stylegan3 (StyleGAN2 config) network snapshot (a pickle);
- `rosinality-pt`: rosinality/stylegan2-pytorch checkpoint (a torch file with `g_ema`);
- `native`: a folder with model.safetensors + config.json, written by `save_native` / `contrafeat convert`.
"""
from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

from contrafeat.errors import CheckpointError
from contrafeat.gan.native import CONFIG_FILE, FORMAT_TAG, WEIGHTS_FILE, load_native, save_native
from contrafeat.gan.nvidia_pickle import load_nvidia_pickle
from contrafeat.gan.rosinality import load_rosinality
from contrafeat.gan.stylegan2 import Generator

__all__ = ["FORMATS", "detect_format", "load_checkpoint", "save_native"]

FORMATS = ("nvidia-pkl", "rosinality-pt", "native")
NOT_A_CHECKPOINT = "not a StyleGAN2 checkpoint: expected a .pkl network snapshot, a rosinality .pt or a native folder"
ZIP_MAGIC = b"PK\x03\x04"
LEGACY_TORCH_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
"""How torch.save's pre-1.6 (non-zip) files begin: the pickled magic number."""
HEAD_BYTES = 64


def _is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length followed by a JSON header."""
    return len(head) > 8 and head[8:9] == b"{" and 8 + struct.unpack("<Q", head[:8])[0] <= size


def _is_native_config(path: Path, head: bytes) -> bool:
    if not head.lstrip().startswith(b"{"):
        return False
    try:
        document = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and document.get("format") == FORMAT_TAG


def _detect_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path}: truncated or corrupt zip archive (a torch checkpoint cut short?)") from None
    if any(name.endswith("data.pkl") for name in names):
        return "rosinality-pt"
    raise CheckpointError(f"{path}: a zip archive that is not a torch file; {NOT_A_CHECKPOINT}")


def detect_format(path: Path) -> str:
    """One of FORMATS, from the content of `path`; unreadable or foreign files raise CheckpointError."""
    path = Path(path)
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file():
            return "native"
        raise CheckpointError(f"{path}: a folder without {WEIGHTS_FILE} and {CONFIG_FILE}; {NOT_A_CHECKPOINT}")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file; {NOT_A_CHECKPOINT}")
    if head.startswith(ZIP_MAGIC):
        return _detect_zip(path)
    if head.startswith(LEGACY_TORCH_MAGIC):
        return "rosinality-pt"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "nvidia-pkl"
    if _is_safetensors(head, size) or _is_native_config(path, head):
        return "native"
    raise CheckpointError(f"{path}: {NOT_A_CHECKPOINT}")


LOADERS = {"nvidia-pkl": load_nvidia_pickle, "rosinality-pt": load_rosinality, "native": load_native}


def load_checkpoint(path: Path) -> Generator:
    """Any supported checkpoint -> Generator in eval mode with gradients off (on CPU)."""
    path = Path(path)
    return LOADERS[detect_format(path)](path)
