"""The best linear W+ edit per factor: the upper bound of any method that applies one fixed edit to every sample.

For factor f an edit is a W vector d (RMS 1) times layer weights a (a softmax over the W+ layers) at a strength s,
as a navigator direction is. Its share on samples w is mean |dl_f| / mean sum_g |dl_g|, where dl = levels(w + s a d)
- levels(w - s a d) are the six factor-level changes; Adam maximises the share while a penalty holds the mean
|dl_f| at SHARE_CHANGE (a quarter of the level range), starting from the mean gradient of level f on every layer.
The share is 1 for an edit that moves its factor alone on every sample (the linear world's true edits).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from contrafeat.errors import UserError

SHARE_CHANGE = 0.25
"""Mean change of the edited factor's level (in (0, 1)) between -s and +s at which shares are measured."""
CHANGE_WEIGHT = 20.0
SAMPLES = 256
STEPS = 300
LEARNING_RATE = 0.03


@dataclass
class LinearEdit:
    """One factor's best linear edit: vector [C] (RMS 1), layer weights [L] (sum 1), strength, and its measured share."""

    vector: torch.Tensor
    weights: torch.Tensor
    strength: float
    share: float
    change: float


def level_changes(generator, ws: torch.Tensor, edit: torch.Tensor, strength: torch.Tensor | float) -> torch.Tensor:
    """|levels(ws + s edit) - levels(ws - s edit)| for codes [N, L, C] and an edit [L, C] -> [N, 6]."""
    return (generator.levels(ws + strength * edit) - generator.levels(ws - strength * edit)).abs()


def share_of(changes: torch.Tensor, factor: int) -> torch.Tensor:
    """The edited factor's share of the mean total level change, for changes [N, 6]."""
    return changes[:, factor].mean() / changes.sum(dim=1).mean().clamp_min(1e-12)


def optimise_edit(generator, factor: int, ws: torch.Tensor, held_out: torch.Tensor, steps: int = STEPS) -> LinearEdit:
    """Adam on (vector, layer logits, log strength) for one factor, from its mean gradient; share measured on held-out codes."""
    ws = ws.detach()
    with torch.enable_grad():
        probe = ws.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(generator.levels(probe)[:, factor].sum(), probe)  # [N, L, C]
    energy = gradient.square().sum(dim=2).mean(dim=0)  # [L]
    vector = gradient.sum(dim=1).mean(dim=0)  # [C]
    vector = (vector / vector.square().mean().sqrt().clamp_min(1e-12)).requires_grad_(True)
    logits = (energy / energy.sum()).clamp_min(1e-6).log().requires_grad_(True)
    linear = float((gradient * (logits.softmax(0)[:, None] * vector)).sum(dim=(1, 2)).abs().mean().detach())
    log_strength = torch.tensor(SHARE_CHANGE / max(2.0 * linear, 1e-6)).log().requires_grad_(True)
    optimiser = torch.optim.Adam([vector, logits, log_strength], lr=LEARNING_RATE)
    for _ in range(steps):
        with torch.enable_grad():
            edit = edit_of(vector, logits)
            changes = level_changes(generator, ws, edit, log_strength.exp())
            loss = -share_of(changes, factor) + CHANGE_WEIGHT * (changes[:, factor].mean() - SHARE_CHANGE).square()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        unit = vector / vector.square().mean().sqrt()
        changes = level_changes(generator, held_out, edit_of(unit, logits), log_strength.exp())
        return LinearEdit(
            unit.detach().clone(),
            logits.softmax(0).detach().clone(),
            float(log_strength.exp()),
            float(share_of(changes, factor)),
            float(changes[:, factor].mean()),
        )


def edit_of(vector: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Layer weights (softmax of logits [L]) outer the RMS-1 vector [C] -> edit [L, C]."""
    unit = vector / vector.square().mean().sqrt().clamp_min(1e-12)
    return logits.softmax(0)[:, None] * unit[None, :]


def best_linear_edits(generator, samples: int = SAMPLES, steps: int = STEPS, seed: int = 0) -> list[LinearEdit]:
    """The best linear edit of each factor of a generator with `levels(ws)`, fitted on `samples` codes, shares on as many others."""
    if not callable(getattr(generator, "levels", None)):
        raise UserError("best-linear: the generator has no factor levels (levels(ws)); only the shapes3d worlds have them")
    z = torch.randn(2 * samples, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ws = generator.broadcast(generator.mapping(z))
    fitted, held_out = ws[:samples], ws[samples:]
    count = generator.levels(fitted[:1]).shape[1]
    return [optimise_edit(generator, factor, fitted, held_out, steps) for factor in range(count)]
