"""Building a Generator from an architecture config and a flat state dict, with errors that name the checkpoint file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from contrafeat.errors import CheckpointError, one_line
from contrafeat.gan.stylegan2 import Generator


def few(names: list[str], count: int = 3) -> str:
    """'a', 'b', 'c' and N more."""
    shown = ", ".join(repr(name) for name in names[:count])
    return shown + (f" and {len(names) - count} more" if len(names) > count else "") if names else "none"


def note(message: str) -> None:
    """A one-line note to stderr (for things the user should know but that do not stop the load)."""
    print(f"note: {message}", file=sys.stderr)


def build_generator(config: dict[str, Any], path: Path) -> Generator:
    """Generator.from_config, with an invalid config reported as a CheckpointError naming `path`."""
    try:
        return Generator.from_config(config)
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: invalid StyleGAN2 architecture ({one_line(error)})") from None


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str = "the weights") -> None:
    """Load a flat state dict that must match `module` key for key and shape for shape (cast to its dtypes)."""
    template = module.state_dict()
    missing = [key for key in template if key not in state]
    unexpected = [key for key in state if key not in template]
    if missing or unexpected:
        raise CheckpointError(f"{path}: {what} do not match a StyleGAN2 network: missing {few(missing)}; unexpected {few(unexpected)}")
    for key, reference in template.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(reference.shape):
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckpointError(f"{path}: {what}: '{key}' has shape {shape}, expected {list(reference.shape)}")
    module.load_state_dict({key: state[key].detach().to(template[key].dtype) for key in template})


def finish(generator: Generator) -> Generator:
    """A loaded generator ready for inference: eval mode, no gradients."""
    return generator.eval().requires_grad_(False)
