"""One check of a tensor's shape, for every function that takes tensors from its caller."""
from __future__ import annotations

from collections.abc import Sequence

import torch


def check_shape(tensor: torch.Tensor, expected: Sequence[int | str], name: str) -> None:
    """A ValueError unless `tensor` has len(expected) dimensions of the given sizes; a str entry ('B', 'n') is a
    dimension of any size, named in the message: `ws: expected shape [B, 10, 64], got [3, 9, 64]`."""
    shape = tuple(tensor.shape)
    fits = len(shape) == len(expected) and all(isinstance(want, str) or size == want for size, want in zip(shape, expected))
    if not fits:
        wanted = ", ".join(str(want) for want in expected)
        raise ValueError(f"{name}: expected shape [{wanted}], got {list(shape)}")
