"""A short, stable fingerprint of a generator's weights and configuration (keys caches and artefacts)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Protocol

import torch

DIGEST_LENGTH = 16
"""Hex characters kept from the SHA-256 digest (64 bits: collisions are not a practical concern)."""


def _config_text(config: object) -> str:
    """The generator's configuration as canonical JSON (dataclasses and mappings alike)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    return json.dumps(config, sort_keys=True, default=str)


class Weighted(Protocol):
    """Anything with named weights and buffers: a torch.nn.Module, a GeneratorLike."""

    def state_dict(self) -> dict[str, Any]: ...


def generator_identity(generator: Weighted) -> str:
    """Hex digest of the state dict (sorted names, dtypes, shapes, raw bytes) and of `generator.config` if present.

    The same weights give the same identity whatever file format they were read from.
    """
    digest = hashlib.sha256()
    state = generator.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    config = getattr(generator, "config", None)
    if config is not None:
        digest.update(b"config|" + _config_text(config).encode())
    return digest.hexdigest()[:DIGEST_LENGTH]
