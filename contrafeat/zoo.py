"""Named built-in generators and the one entry point that loads a generator from a name or a path."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from contrafeat.gan.interface import GeneratorLike


def _build_shapes3d() -> GeneratorLike:
    from contrafeat.shapes3d.linear_generator import ShapesGenerator

    return ShapesGenerator()


def _build_shapes3d_learned() -> GeneratorLike:
    from contrafeat.shapes3d.learned_generator import load_learned_world

    return load_learned_world()


ZOO: dict[str, Callable[[], GeneratorLike]] = {"shapes3d": _build_shapes3d, "shapes3d-learned": _build_shapes3d_learned}


def load_generator(spec: str | Path, device: str | torch.device = "cpu") -> GeneratorLike:
    """Load a generator by zoo name or from a file.

    Args:
        spec: a zoo name (`shapes3d`, `shapes3d-learned`), a world file written by `contrafeat shapes3d train-world`,
            or a checkpoint: an NVIDIA `.pkl` (read without running code from it), a rosinality `.pt` or a native
            folder (`contrafeat convert`).
        device: where the generator's weights go.

    Returns:
        The generator (`gan.interface.GeneratorLike`, a torch Module) in eval mode, without gradients.

    Raises:
        CheckpointError: a UserError: the file is missing, of an unknown kind, truncated or unsafe.
    """
    from contrafeat.gan.checkpoints import load_checkpoint
    from contrafeat.gan.tagged_weights import weights_tag
    from contrafeat.shapes3d.learned_generator import FORMAT_TAG, load_learned_world

    name = str(spec)
    if name in ZOO:
        generator = ZOO[name]()
    elif Path(name).is_file() and weights_tag(Path(name)) == FORMAT_TAG:
        generator = load_learned_world(Path(name))
    else:
        generator = load_checkpoint(Path(name))
    assert isinstance(generator, torch.nn.Module)  # every built-in generator and every checkpoint's is one
    return generator.eval().requires_grad_(False).to(device)
