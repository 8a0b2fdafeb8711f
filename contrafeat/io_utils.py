"""Atomic file writes: a reader (or a resumed run) never sees a half-written file."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


def atomic_replace(temporary: Path, target: Path) -> None:
    """Flush `temporary` to disk and rename it over `target` in one step."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)


def atomic_write_text(target: Path, text: str) -> None:
    """Write text to `target` through a temporary file in the same folder."""
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(text)
    atomic_replace(temporary, target)


def atomic_torch_save(obj: Any, target: Path) -> None:
    """torch.save to `target` through a temporary file in the same folder."""
    temporary = target.with_name(target.name + ".tmp")
    torch.save(obj, temporary)
    atomic_replace(temporary, target)


def short_hash(data: dict[str, Any]) -> str:
    """12 hex digits naming a JSON-able fingerprint (keys sorted), for folder and file names."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
