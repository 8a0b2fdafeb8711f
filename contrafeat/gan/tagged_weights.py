"""Bundled network weights as safetensors with a format tag and version: written atomically, read without executing anything."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from contrafeat.errors import UserError, one_line
from contrafeat.io_utils import atomic_replace


def save_tagged_weights(module: nn.Module, path: Path, tag: str, version: str, details: Mapping[str, Any]) -> None:
    """Write the module's state as safetensors, atomically, with the tag, version and `details` (as JSON) in the metadata."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in module.state_dict().items()}
    metadata = {"format": tag, "version": version, "details": json.dumps(details)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(safetensors.torch.save(tensors, metadata=metadata))
    atomic_replace(temporary, path)


def weights_tag(path: Path) -> str | None:
    """The format tag in a safetensors file's metadata; None for any other file (nothing in it is executed)."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format")
    except (SafetensorError, OSError, ValueError):
        return None


def load_tagged_weights(module: nn.Module, path: Path, tag: str, version: str, expected: str) -> dict[str, Any]:
    """Load the file's tensors into `module` and return its details; UserError naming the file and `expected` when unusable."""
    if not path.is_file():
        raise UserError(f"{path}: file not found; expected {expected}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable ({one_line(error)}); expected {expected}") from None
    if metadata.get("format") != tag or metadata.get("version") != version:
        raise UserError(f"{path}: not of this format and version; expected {expected}")
    problems = state_problems(state, module.state_dict())
    if problems:
        raise UserError(f"{path}: {'; '.join(problems)}; expected {expected}")
    module.load_state_dict(state)
    try:
        return json.loads(metadata.get("details", "{}"))
    except json.JSONDecodeError:
        raise UserError(f"{path}: its details are not JSON; expected {expected}") from None


def state_problems(given: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> list[str]:
    """Missing and unexpected keys and shape mismatches, described briefly (empty when the state fits)."""
    problems = [f"missing {key}" for key in expected if key not in given]
    problems += [f"unexpected {key}" for key in given if key not in expected]
    problems += [
        f"{key} has shape {list(given[key].shape)}, expected {list(value.shape)}"
        for key, value in expected.items()
        if key in given and given[key].shape != value.shape
    ]
    return problems[:4] + ([f"and {len(problems) - 4} more"] if len(problems) > 4 else [])
