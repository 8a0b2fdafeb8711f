"""contrafeat: discover interpretable directions in StyleGAN2 latent spaces by contrasting deep features."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contrafeat.discovery.directions import Directions, load_directions
    from contrafeat.evaluation.api import evaluate
    from contrafeat.runs import discover
    from contrafeat.zoo import load_generator

__all__ = ["Directions", "discover", "evaluate", "load_directions", "load_generator"]
__version__ = "0.1.0"

PUBLIC = {
    "Directions": "contrafeat.discovery.directions",
    "discover": "contrafeat.runs",
    "evaluate": "contrafeat.evaluation.api",
    "load_directions": "contrafeat.discovery.directions",
    "load_generator": "contrafeat.zoo",
}
"""Where each public name lives; imported on first use, so that `import contrafeat.x` does not pull in torch."""


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'contrafeat' has no attribute {name!r}")
    return getattr(importlib.import_module(PUBLIC[name]), name)
