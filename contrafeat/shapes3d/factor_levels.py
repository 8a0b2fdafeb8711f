"""Factor levels: the six coordinates in (0, 1) that the shapes3d generators produce, and the factor values they mean.

Both embedded generators (the written-down linear world and the learned one) decide a level per factor; the
same map turns levels into the values the renderer draws, so a level that is uniform on (0, 1) gives that
factor's uniform distribution over its grid range.
"""
from __future__ import annotations

import torch

HUE_OFFSETS = (0.1, 0.55, 0.85)
"""Added to the floor, wall and object hue levels so that the middle level shows three different colours."""
SHAPE_STEP_WIDTH = 0.03
"""The shape coordinate is a soft staircase of its level: sigmoid steps of this width at 1/4, 1/2, 3/4, so each
of the four shapes gets a quarter of the levels and in-between blends are rare, yet the slope is never zero."""
SCALE_RANGE = (0.75, 1.25)
ORIENTATION_RANGE = (-30.0, 30.0)
GEOMETRY_FACTORS = (3, 4, 5)
"""Scale, shape and orientation; the other three factors are the floor, wall and object hues."""
COLOUR_FACTORS = (0, 1, 2)


def levels_to_factors(levels: torch.Tensor) -> torch.Tensor:
    """Levels [B, 6] in (0, 1) -> factor values [B, 6]: floor, wall, object hue, scale, shape, orientation."""
    hues = torch.remainder(levels[:, :3] + levels.new_tensor(HUE_OFFSETS), 1.0)
    steps = levels.new_tensor([0.25, 0.5, 0.75])
    shape = torch.sigmoid((levels[:, 4:5] - steps) / SHAPE_STEP_WIDTH).sum(dim=1)
    scale = SCALE_RANGE[0] + (SCALE_RANGE[1] - SCALE_RANGE[0]) * levels[:, 3]
    orientation = ORIENTATION_RANGE[0] + (ORIENTATION_RANGE[1] - ORIENTATION_RANGE[0]) * levels[:, 5]
    return torch.cat([hues, torch.stack([scale, shape, orientation], dim=1)], dim=1)


def level_jacobians(generator, ws: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """d levels / d ws of a generator with `levels(ws)`, for codes [N, L, C] -> [N, 6, L, C]: one backward pass per
    factor (samples are independent); with `create_graph` the result can itself be back-propagated (penalties)."""
    ws = ws if create_graph and ws.requires_grad else ws.detach().requires_grad_(True)
    with torch.enable_grad():
        levels = generator.levels(ws)  # [N, 6]
        rows = [torch.autograd.grad(levels[:, f].sum(), ws, retain_graph=True, create_graph=create_graph)[0] for f in range(levels.shape[1])]
    jacobians = torch.stack(rows, dim=1)
    return jacobians if create_graph else jacobians.detach()
