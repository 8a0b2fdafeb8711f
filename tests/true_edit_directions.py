"""The shapes3d generator's true edits as a Directions artefact, for tests of the evaluation."""
from __future__ import annotations

import torch

from contrafeat.discovery.directions import Directions
from contrafeat.gan.identity import generator_identity


def true_directions(generator, rows: list[int] | None = None, extra: list[tuple[torch.Tensor, torch.Tensor]] = (), strength: float = 0.5) -> Directions:
    """The true edits (optionally a subset), plus extra (vector, attention) rows, each with suggested strength `strength`."""
    edits = [edit for i, edit in enumerate(generator.true_edits()) if rows is None or i in rows] + list(extra)
    vectors = torch.stack([vector for vector, _ in edits])
    attention = torch.stack([weights for _, weights in edits])
    return Directions(vectors, attention, torch.full((len(edits),), strength), "truth", generator_identity(generator))
